"""Kernel helper functions: their UAPI numbers and one prototype table.

Core layer: pure, no kernel access.

:class:`HelperId` holds ``enum bpf_func_id`` (uapi ``bpf.h``, ``___BPF_FUNC_MAPPER``) up to
Linux 6.18: helper numbers never change and no helper was added after 6.2 (new kernel
functionality comes as kfuncs). :data:`PROTOTYPES` says, per helper, what the verifier checks
(the kernel's ``struct bpf_func_proto``): the argument types, the return type, whether the
helper is GPL-only and which program types may call it. The user-space runtime
(:mod:`ebpf.vm.helpers`) and the verifier read the same table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, IntEnum, IntFlag
from types import MappingProxyType

from ebpf.spec import ProgramType

__all__ = [
    "PROTOTYPES",
    "Arg",
    "ArgFlag",
    "ArgType",
    "HelperId",
    "HelperProto",
    "Ret",
    "RetType",
    "prototype",
]


class HelperId(IntEnum):
    """``enum bpf_func_id``: the ``imm`` of a helper ``call`` (``BPF_FUNC_<name>``)."""

    UNSPEC = 0  # BPF_FUNC_unspec
    MAP_LOOKUP_ELEM = 1  # BPF_FUNC_map_lookup_elem
    MAP_UPDATE_ELEM = 2  # BPF_FUNC_map_update_elem
    MAP_DELETE_ELEM = 3  # BPF_FUNC_map_delete_elem
    PROBE_READ = 4  # BPF_FUNC_probe_read
    KTIME_GET_NS = 5  # BPF_FUNC_ktime_get_ns
    TRACE_PRINTK = 6  # BPF_FUNC_trace_printk
    GET_PRANDOM_U32 = 7  # BPF_FUNC_get_prandom_u32
    GET_SMP_PROCESSOR_ID = 8  # BPF_FUNC_get_smp_processor_id
    SKB_STORE_BYTES = 9  # BPF_FUNC_skb_store_bytes
    L3_CSUM_REPLACE = 10  # BPF_FUNC_l3_csum_replace
    L4_CSUM_REPLACE = 11  # BPF_FUNC_l4_csum_replace
    TAIL_CALL = 12  # BPF_FUNC_tail_call
    CLONE_REDIRECT = 13  # BPF_FUNC_clone_redirect
    GET_CURRENT_PID_TGID = 14  # BPF_FUNC_get_current_pid_tgid
    GET_CURRENT_UID_GID = 15  # BPF_FUNC_get_current_uid_gid
    GET_CURRENT_COMM = 16  # BPF_FUNC_get_current_comm
    GET_CGROUP_CLASSID = 17  # BPF_FUNC_get_cgroup_classid
    SKB_VLAN_PUSH = 18  # BPF_FUNC_skb_vlan_push
    SKB_VLAN_POP = 19  # BPF_FUNC_skb_vlan_pop
    SKB_GET_TUNNEL_KEY = 20  # BPF_FUNC_skb_get_tunnel_key
    SKB_SET_TUNNEL_KEY = 21  # BPF_FUNC_skb_set_tunnel_key
    PERF_EVENT_READ = 22  # BPF_FUNC_perf_event_read
    REDIRECT = 23  # BPF_FUNC_redirect
    GET_ROUTE_REALM = 24  # BPF_FUNC_get_route_realm
    PERF_EVENT_OUTPUT = 25  # BPF_FUNC_perf_event_output
    SKB_LOAD_BYTES = 26  # BPF_FUNC_skb_load_bytes
    GET_STACKID = 27  # BPF_FUNC_get_stackid
    CSUM_DIFF = 28  # BPF_FUNC_csum_diff
    SKB_GET_TUNNEL_OPT = 29  # BPF_FUNC_skb_get_tunnel_opt
    SKB_SET_TUNNEL_OPT = 30  # BPF_FUNC_skb_set_tunnel_opt
    SKB_CHANGE_PROTO = 31  # BPF_FUNC_skb_change_proto
    SKB_CHANGE_TYPE = 32  # BPF_FUNC_skb_change_type
    SKB_UNDER_CGROUP = 33  # BPF_FUNC_skb_under_cgroup
    GET_HASH_RECALC = 34  # BPF_FUNC_get_hash_recalc
    GET_CURRENT_TASK = 35  # BPF_FUNC_get_current_task
    PROBE_WRITE_USER = 36  # BPF_FUNC_probe_write_user
    CURRENT_TASK_UNDER_CGROUP = 37  # BPF_FUNC_current_task_under_cgroup
    SKB_CHANGE_TAIL = 38  # BPF_FUNC_skb_change_tail
    SKB_PULL_DATA = 39  # BPF_FUNC_skb_pull_data
    CSUM_UPDATE = 40  # BPF_FUNC_csum_update
    SET_HASH_INVALID = 41  # BPF_FUNC_set_hash_invalid
    GET_NUMA_NODE_ID = 42  # BPF_FUNC_get_numa_node_id
    SKB_CHANGE_HEAD = 43  # BPF_FUNC_skb_change_head
    XDP_ADJUST_HEAD = 44  # BPF_FUNC_xdp_adjust_head
    PROBE_READ_STR = 45  # BPF_FUNC_probe_read_str
    GET_SOCKET_COOKIE = 46  # BPF_FUNC_get_socket_cookie
    GET_SOCKET_UID = 47  # BPF_FUNC_get_socket_uid
    SET_HASH = 48  # BPF_FUNC_set_hash
    SETSOCKOPT = 49  # BPF_FUNC_setsockopt
    SKB_ADJUST_ROOM = 50  # BPF_FUNC_skb_adjust_room
    REDIRECT_MAP = 51  # BPF_FUNC_redirect_map
    SK_REDIRECT_MAP = 52  # BPF_FUNC_sk_redirect_map
    SOCK_MAP_UPDATE = 53  # BPF_FUNC_sock_map_update
    XDP_ADJUST_META = 54  # BPF_FUNC_xdp_adjust_meta
    PERF_EVENT_READ_VALUE = 55  # BPF_FUNC_perf_event_read_value
    PERF_PROG_READ_VALUE = 56  # BPF_FUNC_perf_prog_read_value
    GETSOCKOPT = 57  # BPF_FUNC_getsockopt
    OVERRIDE_RETURN = 58  # BPF_FUNC_override_return
    SOCK_OPS_CB_FLAGS_SET = 59  # BPF_FUNC_sock_ops_cb_flags_set
    MSG_REDIRECT_MAP = 60  # BPF_FUNC_msg_redirect_map
    MSG_APPLY_BYTES = 61  # BPF_FUNC_msg_apply_bytes
    MSG_CORK_BYTES = 62  # BPF_FUNC_msg_cork_bytes
    MSG_PULL_DATA = 63  # BPF_FUNC_msg_pull_data
    BIND = 64  # BPF_FUNC_bind
    XDP_ADJUST_TAIL = 65  # BPF_FUNC_xdp_adjust_tail
    SKB_GET_XFRM_STATE = 66  # BPF_FUNC_skb_get_xfrm_state
    GET_STACK = 67  # BPF_FUNC_get_stack
    SKB_LOAD_BYTES_RELATIVE = 68  # BPF_FUNC_skb_load_bytes_relative
    FIB_LOOKUP = 69  # BPF_FUNC_fib_lookup
    SOCK_HASH_UPDATE = 70  # BPF_FUNC_sock_hash_update
    MSG_REDIRECT_HASH = 71  # BPF_FUNC_msg_redirect_hash
    SK_REDIRECT_HASH = 72  # BPF_FUNC_sk_redirect_hash
    LWT_PUSH_ENCAP = 73  # BPF_FUNC_lwt_push_encap
    LWT_SEG6_STORE_BYTES = 74  # BPF_FUNC_lwt_seg6_store_bytes
    LWT_SEG6_ADJUST_SRH = 75  # BPF_FUNC_lwt_seg6_adjust_srh
    LWT_SEG6_ACTION = 76  # BPF_FUNC_lwt_seg6_action
    RC_REPEAT = 77  # BPF_FUNC_rc_repeat
    RC_KEYDOWN = 78  # BPF_FUNC_rc_keydown
    SKB_CGROUP_ID = 79  # BPF_FUNC_skb_cgroup_id
    GET_CURRENT_CGROUP_ID = 80  # BPF_FUNC_get_current_cgroup_id
    GET_LOCAL_STORAGE = 81  # BPF_FUNC_get_local_storage
    SK_SELECT_REUSEPORT = 82  # BPF_FUNC_sk_select_reuseport
    SKB_ANCESTOR_CGROUP_ID = 83  # BPF_FUNC_skb_ancestor_cgroup_id
    SK_LOOKUP_TCP = 84  # BPF_FUNC_sk_lookup_tcp
    SK_LOOKUP_UDP = 85  # BPF_FUNC_sk_lookup_udp
    SK_RELEASE = 86  # BPF_FUNC_sk_release
    MAP_PUSH_ELEM = 87  # BPF_FUNC_map_push_elem
    MAP_POP_ELEM = 88  # BPF_FUNC_map_pop_elem
    MAP_PEEK_ELEM = 89  # BPF_FUNC_map_peek_elem
    MSG_PUSH_DATA = 90  # BPF_FUNC_msg_push_data
    MSG_POP_DATA = 91  # BPF_FUNC_msg_pop_data
    RC_POINTER_REL = 92  # BPF_FUNC_rc_pointer_rel
    SPIN_LOCK = 93  # BPF_FUNC_spin_lock
    SPIN_UNLOCK = 94  # BPF_FUNC_spin_unlock
    SK_FULLSOCK = 95  # BPF_FUNC_sk_fullsock
    TCP_SOCK = 96  # BPF_FUNC_tcp_sock
    SKB_ECN_SET_CE = 97  # BPF_FUNC_skb_ecn_set_ce
    GET_LISTENER_SOCK = 98  # BPF_FUNC_get_listener_sock
    SKC_LOOKUP_TCP = 99  # BPF_FUNC_skc_lookup_tcp
    TCP_CHECK_SYNCOOKIE = 100  # BPF_FUNC_tcp_check_syncookie
    SYSCTL_GET_NAME = 101  # BPF_FUNC_sysctl_get_name
    SYSCTL_GET_CURRENT_VALUE = 102  # BPF_FUNC_sysctl_get_current_value
    SYSCTL_GET_NEW_VALUE = 103  # BPF_FUNC_sysctl_get_new_value
    SYSCTL_SET_NEW_VALUE = 104  # BPF_FUNC_sysctl_set_new_value
    STRTOL = 105  # BPF_FUNC_strtol
    STRTOUL = 106  # BPF_FUNC_strtoul
    SK_STORAGE_GET = 107  # BPF_FUNC_sk_storage_get
    SK_STORAGE_DELETE = 108  # BPF_FUNC_sk_storage_delete
    SEND_SIGNAL = 109  # BPF_FUNC_send_signal
    TCP_GEN_SYNCOOKIE = 110  # BPF_FUNC_tcp_gen_syncookie
    SKB_OUTPUT = 111  # BPF_FUNC_skb_output
    PROBE_READ_USER = 112  # BPF_FUNC_probe_read_user
    PROBE_READ_KERNEL = 113  # BPF_FUNC_probe_read_kernel
    PROBE_READ_USER_STR = 114  # BPF_FUNC_probe_read_user_str
    PROBE_READ_KERNEL_STR = 115  # BPF_FUNC_probe_read_kernel_str
    TCP_SEND_ACK = 116  # BPF_FUNC_tcp_send_ack
    SEND_SIGNAL_THREAD = 117  # BPF_FUNC_send_signal_thread
    JIFFIES64 = 118  # BPF_FUNC_jiffies64
    READ_BRANCH_RECORDS = 119  # BPF_FUNC_read_branch_records
    GET_NS_CURRENT_PID_TGID = 120  # BPF_FUNC_get_ns_current_pid_tgid
    XDP_OUTPUT = 121  # BPF_FUNC_xdp_output
    GET_NETNS_COOKIE = 122  # BPF_FUNC_get_netns_cookie
    GET_CURRENT_ANCESTOR_CGROUP_ID = 123  # BPF_FUNC_get_current_ancestor_cgroup_id
    SK_ASSIGN = 124  # BPF_FUNC_sk_assign
    KTIME_GET_BOOT_NS = 125  # BPF_FUNC_ktime_get_boot_ns
    SEQ_PRINTF = 126  # BPF_FUNC_seq_printf
    SEQ_WRITE = 127  # BPF_FUNC_seq_write
    SK_CGROUP_ID = 128  # BPF_FUNC_sk_cgroup_id
    SK_ANCESTOR_CGROUP_ID = 129  # BPF_FUNC_sk_ancestor_cgroup_id
    RINGBUF_OUTPUT = 130  # BPF_FUNC_ringbuf_output
    RINGBUF_RESERVE = 131  # BPF_FUNC_ringbuf_reserve
    RINGBUF_SUBMIT = 132  # BPF_FUNC_ringbuf_submit
    RINGBUF_DISCARD = 133  # BPF_FUNC_ringbuf_discard
    RINGBUF_QUERY = 134  # BPF_FUNC_ringbuf_query
    CSUM_LEVEL = 135  # BPF_FUNC_csum_level
    SKC_TO_TCP6_SOCK = 136  # BPF_FUNC_skc_to_tcp6_sock
    SKC_TO_TCP_SOCK = 137  # BPF_FUNC_skc_to_tcp_sock
    SKC_TO_TCP_TIMEWAIT_SOCK = 138  # BPF_FUNC_skc_to_tcp_timewait_sock
    SKC_TO_TCP_REQUEST_SOCK = 139  # BPF_FUNC_skc_to_tcp_request_sock
    SKC_TO_UDP6_SOCK = 140  # BPF_FUNC_skc_to_udp6_sock
    GET_TASK_STACK = 141  # BPF_FUNC_get_task_stack
    LOAD_HDR_OPT = 142  # BPF_FUNC_load_hdr_opt
    STORE_HDR_OPT = 143  # BPF_FUNC_store_hdr_opt
    RESERVE_HDR_OPT = 144  # BPF_FUNC_reserve_hdr_opt
    INODE_STORAGE_GET = 145  # BPF_FUNC_inode_storage_get
    INODE_STORAGE_DELETE = 146  # BPF_FUNC_inode_storage_delete
    D_PATH = 147  # BPF_FUNC_d_path
    COPY_FROM_USER = 148  # BPF_FUNC_copy_from_user
    SNPRINTF_BTF = 149  # BPF_FUNC_snprintf_btf
    SEQ_PRINTF_BTF = 150  # BPF_FUNC_seq_printf_btf
    SKB_CGROUP_CLASSID = 151  # BPF_FUNC_skb_cgroup_classid
    REDIRECT_NEIGH = 152  # BPF_FUNC_redirect_neigh
    PER_CPU_PTR = 153  # BPF_FUNC_per_cpu_ptr
    THIS_CPU_PTR = 154  # BPF_FUNC_this_cpu_ptr
    REDIRECT_PEER = 155  # BPF_FUNC_redirect_peer
    TASK_STORAGE_GET = 156  # BPF_FUNC_task_storage_get
    TASK_STORAGE_DELETE = 157  # BPF_FUNC_task_storage_delete
    GET_CURRENT_TASK_BTF = 158  # BPF_FUNC_get_current_task_btf
    BPRM_OPTS_SET = 159  # BPF_FUNC_bprm_opts_set
    KTIME_GET_COARSE_NS = 160  # BPF_FUNC_ktime_get_coarse_ns
    IMA_INODE_HASH = 161  # BPF_FUNC_ima_inode_hash
    SOCK_FROM_FILE = 162  # BPF_FUNC_sock_from_file
    CHECK_MTU = 163  # BPF_FUNC_check_mtu
    FOR_EACH_MAP_ELEM = 164  # BPF_FUNC_for_each_map_elem
    SNPRINTF = 165  # BPF_FUNC_snprintf
    SYS_BPF = 166  # BPF_FUNC_sys_bpf
    BTF_FIND_BY_NAME_KIND = 167  # BPF_FUNC_btf_find_by_name_kind
    SYS_CLOSE = 168  # BPF_FUNC_sys_close
    TIMER_INIT = 169  # BPF_FUNC_timer_init
    TIMER_SET_CALLBACK = 170  # BPF_FUNC_timer_set_callback
    TIMER_START = 171  # BPF_FUNC_timer_start
    TIMER_CANCEL = 172  # BPF_FUNC_timer_cancel
    GET_FUNC_IP = 173  # BPF_FUNC_get_func_ip
    GET_ATTACH_COOKIE = 174  # BPF_FUNC_get_attach_cookie
    TASK_PT_REGS = 175  # BPF_FUNC_task_pt_regs
    GET_BRANCH_SNAPSHOT = 176  # BPF_FUNC_get_branch_snapshot
    TRACE_VPRINTK = 177  # BPF_FUNC_trace_vprintk
    SKC_TO_UNIX_SOCK = 178  # BPF_FUNC_skc_to_unix_sock
    KALLSYMS_LOOKUP_NAME = 179  # BPF_FUNC_kallsyms_lookup_name
    FIND_VMA = 180  # BPF_FUNC_find_vma
    LOOP = 181  # BPF_FUNC_loop
    STRNCMP = 182  # BPF_FUNC_strncmp
    GET_FUNC_ARG = 183  # BPF_FUNC_get_func_arg
    GET_FUNC_RET = 184  # BPF_FUNC_get_func_ret
    GET_FUNC_ARG_CNT = 185  # BPF_FUNC_get_func_arg_cnt
    GET_RETVAL = 186  # BPF_FUNC_get_retval
    SET_RETVAL = 187  # BPF_FUNC_set_retval
    XDP_GET_BUFF_LEN = 188  # BPF_FUNC_xdp_get_buff_len
    XDP_LOAD_BYTES = 189  # BPF_FUNC_xdp_load_bytes
    XDP_STORE_BYTES = 190  # BPF_FUNC_xdp_store_bytes
    COPY_FROM_USER_TASK = 191  # BPF_FUNC_copy_from_user_task
    SKB_SET_TSTAMP = 192  # BPF_FUNC_skb_set_tstamp
    IMA_FILE_HASH = 193  # BPF_FUNC_ima_file_hash
    KPTR_XCHG = 194  # BPF_FUNC_kptr_xchg
    MAP_LOOKUP_PERCPU_ELEM = 195  # BPF_FUNC_map_lookup_percpu_elem
    SKC_TO_MPTCP_SOCK = 196  # BPF_FUNC_skc_to_mptcp_sock
    DYNPTR_FROM_MEM = 197  # BPF_FUNC_dynptr_from_mem
    RINGBUF_RESERVE_DYNPTR = 198  # BPF_FUNC_ringbuf_reserve_dynptr
    RINGBUF_SUBMIT_DYNPTR = 199  # BPF_FUNC_ringbuf_submit_dynptr
    RINGBUF_DISCARD_DYNPTR = 200  # BPF_FUNC_ringbuf_discard_dynptr
    DYNPTR_READ = 201  # BPF_FUNC_dynptr_read
    DYNPTR_WRITE = 202  # BPF_FUNC_dynptr_write
    DYNPTR_DATA = 203  # BPF_FUNC_dynptr_data
    TCP_RAW_GEN_SYNCOOKIE_IPV4 = 204  # BPF_FUNC_tcp_raw_gen_syncookie_ipv4
    TCP_RAW_GEN_SYNCOOKIE_IPV6 = 205  # BPF_FUNC_tcp_raw_gen_syncookie_ipv6
    TCP_RAW_CHECK_SYNCOOKIE_IPV4 = 206  # BPF_FUNC_tcp_raw_check_syncookie_ipv4
    TCP_RAW_CHECK_SYNCOOKIE_IPV6 = 207  # BPF_FUNC_tcp_raw_check_syncookie_ipv6
    KTIME_GET_TAI_NS = 208  # BPF_FUNC_ktime_get_tai_ns
    USER_RINGBUF_DRAIN = 209  # BPF_FUNC_user_ringbuf_drain
    CGRP_STORAGE_GET = 210  # BPF_FUNC_cgrp_storage_get
    CGRP_STORAGE_DELETE = 211  # BPF_FUNC_cgrp_storage_delete


# --- the prototype table --------------------------------------------------------------------------


class ArgType(Enum):
    """The base of an argument type (``enum bpf_arg_type``, names without ``ARG_``)."""

    DONTCARE = "dontcare"  # unused argument
    CONST_MAP_PTR = "const_map_ptr"  # a map (lddw of a map)
    PTR_TO_MAP_KEY = "ptr_to_map_key"  # key_size readable bytes
    PTR_TO_MAP_VALUE = "ptr_to_map_value"  # value_size bytes
    PTR_TO_MEM = "ptr_to_mem"  # memory whose size is the next CONST_SIZE argument
    CONST_SIZE = "const_size"  # a size > 0 known to the verifier
    CONST_SIZE_OR_ZERO = "const_size_or_zero"
    CONST_ALLOC_SIZE_OR_ZERO = "const_alloc_size_or_zero"  # the size of returned memory
    PTR_TO_CTX = "ptr_to_ctx"  # the program's context
    ANYTHING = "anything"  # any scalar (or pointer the helper does not dereference)
    PTR_TO_SPIN_LOCK = "ptr_to_spin_lock"  # a struct bpf_spin_lock in a map value
    PTR_TO_SOCK_COMMON = "ptr_to_sock_common"
    PTR_TO_SOCKET = "ptr_to_socket"
    PTR_TO_BTF_ID = "ptr_to_btf_id"  # a kernel object of a BTF type
    PTR_TO_RINGBUF_MEM = "ptr_to_ringbuf_mem"  # a sample from bpf_ringbuf_reserve (released)
    PTR_TO_FUNC = "ptr_to_func"  # a callback (lddw of a function)
    PTR_TO_STACK = "ptr_to_stack"  # a pointer into the stack (callback context)
    PTR_TO_CONST_STR = "ptr_to_const_str"  # a NUL-terminated string in a read-only map
    PTR_TO_TIMER = "ptr_to_timer"
    PTR_TO_DYNPTR = "ptr_to_dynptr"


class ArgFlag(IntFlag):
    """Modifiers of an argument type (``PTR_MAYBE_NULL``, ``MEM_RDONLY``, ``MEM_UNINIT``...)."""

    NONE = 0
    MAYBE_NULL = 1  # PTR_MAYBE_NULL: NULL is allowed
    RDONLY = 2  # MEM_RDONLY: the helper only reads the memory
    UNINIT = 4  # MEM_UNINIT | MEM_WRITE: the helper writes it; it need not be initialised
    FIXED_SIZE = 8  # MEM_FIXED_SIZE: the prototype fixes the size (bpf_strtol's 8-byte result)


@dataclass(frozen=True)
class Arg:
    """One argument: its type and modifiers."""

    type: ArgType
    flags: ArgFlag = ArgFlag.NONE


class RetType(Enum):
    """The base of a return type (``enum bpf_return_type``, names without ``RET_``)."""

    INTEGER = "integer"
    VOID = "void"
    PTR_TO_MAP_VALUE = "ptr_to_map_value"
    PTR_TO_SOCKET = "ptr_to_socket"
    PTR_TO_TCP_SOCK = "ptr_to_tcp_sock"
    PTR_TO_SOCK_COMMON = "ptr_to_sock_common"
    PTR_TO_MEM = "ptr_to_mem"  # size from the CONST_ALLOC_SIZE_OR_ZERO argument
    PTR_TO_RINGBUF_MEM = "ptr_to_ringbuf_mem"  # RET_PTR_TO_MEM | MEM_RINGBUF
    PTR_TO_MEM_OR_BTF_ID = "ptr_to_mem_or_btf_id"
    PTR_TO_BTF_ID = "ptr_to_btf_id"


@dataclass(frozen=True)
class Ret:
    """The return type: its base and whether it may be NULL (``RET_*_OR_NULL``)."""

    type: RetType
    maybe_null: bool = False


@dataclass(frozen=True)
class HelperProto:
    """What the verifier knows about a helper (``struct bpf_func_proto``).

    Attributes:
        id: the helper number.
        ret: the return type.
        args: the argument types of r1.. (only the used ones).
        gpl_only: the program's license must be GPL-compatible.
        program_types: the program types that may call it; ``None``: every type
            (``bpf_base_func_proto``; some need CAP_BPF/CAP_PERFMON).
        changes_pkt_data: the helper may move or resize the packet, so packet pointers
            are invalid after it (``bpf_helper_changes_pkt_data``).
    """

    id: HelperId
    ret: Ret
    args: tuple[Arg, ...]
    gpl_only: bool = False
    program_types: frozenset[ProgramType] | None = None
    changes_pkt_data: bool = False

    @property
    def name(self) -> str:
        """The kernel's name, ``bpf_<helper>``."""
        return f"bpf_{self.id.name.lower()}"

    def allowed_in(self, program_type: ProgramType) -> bool:
        """Whether a program of ``program_type`` may call this helper."""
        return self.program_types is None or program_type in self.program_types


_ARGS: dict[str, Arg] = {
    "map": Arg(ArgType.CONST_MAP_PTR),
    "key": Arg(ArgType.PTR_TO_MAP_KEY),
    "value": Arg(ArgType.PTR_TO_MAP_VALUE),
    "value_out": Arg(ArgType.PTR_TO_MAP_VALUE, ArgFlag.UNINIT),
    "mem": Arg(ArgType.PTR_TO_MEM, ArgFlag.RDONLY),
    "mem?": Arg(ArgType.PTR_TO_MEM, ArgFlag.RDONLY | ArgFlag.MAYBE_NULL),
    "out": Arg(ArgType.PTR_TO_MEM, ArgFlag.UNINIT),
    "out?": Arg(ArgType.PTR_TO_MEM, ArgFlag.UNINIT | ArgFlag.MAYBE_NULL),
    "inout": Arg(ArgType.PTR_TO_MEM),  # read and written (a fixed-size u32 for bpf_check_mtu)
    "size": Arg(ArgType.CONST_SIZE),
    "size0": Arg(ArgType.CONST_SIZE_OR_ZERO),
    "alloc": Arg(ArgType.CONST_ALLOC_SIZE_OR_ZERO),
    "ctx": Arg(ArgType.PTR_TO_CTX),
    "ctx?": Arg(ArgType.PTR_TO_CTX, ArgFlag.MAYBE_NULL),
    "out8": Arg(ArgType.PTR_TO_MEM, ArgFlag.UNINIT | ArgFlag.FIXED_SIZE),
    "any": Arg(ArgType.ANYTHING),
    "lock": Arg(ArgType.PTR_TO_SPIN_LOCK),
    "sample": Arg(ArgType.PTR_TO_RINGBUF_MEM),
    "func": Arg(ArgType.PTR_TO_FUNC),
    "stack?": Arg(ArgType.PTR_TO_STACK, ArgFlag.MAYBE_NULL),
    "cstr": Arg(ArgType.PTR_TO_CONST_STR),
    "sock_common": Arg(ArgType.PTR_TO_SOCK_COMMON),
    "btf_id": Arg(ArgType.PTR_TO_BTF_ID),
    "btf_id?": Arg(ArgType.PTR_TO_BTF_ID, ArgFlag.MAYBE_NULL),
    "value?": Arg(ArgType.PTR_TO_MAP_VALUE, ArgFlag.MAYBE_NULL),
    "timer": Arg(ArgType.PTR_TO_TIMER),
    "dynptr": Arg(ArgType.PTR_TO_DYNPTR),
    "dynptr_out": Arg(ArgType.PTR_TO_DYNPTR, ArgFlag.UNINIT),
}
_RETS: dict[str, Ret] = {
    "int": Ret(RetType.INTEGER),
    "void": Ret(RetType.VOID),
    "map_value?": Ret(RetType.PTR_TO_MAP_VALUE, True),
    "map_value": Ret(RetType.PTR_TO_MAP_VALUE),
    "ringbuf_mem?": Ret(RetType.PTR_TO_RINGBUF_MEM, True),
    "btf_id": Ret(RetType.PTR_TO_BTF_ID),
    "dynptr_mem?": Ret(RetType.PTR_TO_MEM, True),
    "socket?": Ret(RetType.PTR_TO_SOCKET, True),
    "sock_common?": Ret(RetType.PTR_TO_SOCK_COMMON, True),
    "tcp_sock?": Ret(RetType.PTR_TO_TCP_SOCK, True),
    "btf_id?": Ret(RetType.PTR_TO_BTF_ID, True),
}

_H = HelperId


def _types(*names: str) -> frozenset[ProgramType]:
    return frozenset(ProgramType[name] for name in names)


# The tracing program types (bpf_tracing_func_proto's users), which share many helpers.
_TRACING_TYPES = _types(
    "EXT",
    "KPROBE",
    "LSM",
    "PERF_EVENT",
    "RAW_TRACEPOINT",
    "RAW_TRACEPOINT_WRITABLE",
    "STRUCT_OPS",
    "SYSCALL",
    "TRACEPOINT",
    "TRACING",
)

# bpf_skc_to_* (bpf_sk_base_func_proto's socket casts, probed on Linux 6.18; SK_LOOKUP with
# tests/differential/test_progtypes_kernel.py's attach type).
_SKC_TO = (
    _H.SKC_TO_TCP6_SOCK,
    _H.SKC_TO_TCP_SOCK,
    _H.SKC_TO_TCP_TIMEWAIT_SOCK,
    _H.SKC_TO_TCP_REQUEST_SOCK,
    _H.SKC_TO_UDP6_SOCK,
    _H.SKC_TO_UNIX_SOCK,
    _H.SKC_TO_MPTCP_SOCK,
)
_SKC_TO_TYPES = _types(
    "CGROUP_SKB",
    "FLOW_DISSECTOR",
    "LWT_IN",
    "LWT_OUT",
    "LWT_XMIT",
    "SCHED_ACT",
    "SCHED_CLS",
    "SK_LOOKUP",
    "SK_MSG",
    "SK_SKB",
    "SOCKET_FILTER",
    "SOCK_OPS",
    "XDP",
)

# bpf_sk_storage_get/_delete (bpf_sk_storage_get_cg_sock_proto: CGROUP_SOCK gets only get).
_SK_STORAGE_TYPES = _types(
    "CGROUP_SKB",
    "CGROUP_SOCK_ADDR",
    "CGROUP_SOCKOPT",
    "LSM",
    "SCHED_ACT",
    "SCHED_CLS",
    "SK_MSG",
    "SOCK_OPS",
    "STRUCT_OPS",
    "TRACING",
)


# (helper, return, arguments, gpl_only, program types (None: all), changes packet data)
# (helper, return, arguments, gpl_only, changes packet data)
_TABLE: tuple[tuple[HelperId, str, str, bool, bool], ...] = (
    (_H.MAP_LOOKUP_ELEM, "map_value?", "map key", False, False),
    (_H.MAP_UPDATE_ELEM, "int", "map key value any", False, False),
    (_H.MAP_DELETE_ELEM, "int", "map key", False, False),
    (_H.MAP_PUSH_ELEM, "int", "map value any", False, False),
    (_H.MAP_POP_ELEM, "int", "map value_out", False, False),
    (_H.MAP_PEEK_ELEM, "int", "map value_out", False, False),
    (_H.MAP_LOOKUP_PERCPU_ELEM, "map_value?", "map key any", False, False),
    (_H.PROBE_READ, "int", "out size0 any", True, False),
    (_H.PROBE_READ_STR, "int", "out size0 any", True, False),
    (_H.PROBE_READ_KERNEL, "int", "out size0 any", True, False),
    (_H.PROBE_READ_KERNEL_STR, "int", "out size0 any", True, False),
    (_H.PROBE_READ_USER, "int", "out size0 any", True, False),
    (_H.PROBE_READ_USER_STR, "int", "out size0 any", True, False),
    (_H.KTIME_GET_NS, "int", "", False, False),
    (_H.KTIME_GET_BOOT_NS, "int", "", False, False),
    (_H.KTIME_GET_COARSE_NS, "int", "", False, False),
    (_H.KTIME_GET_TAI_NS, "int", "", False, False),
    (_H.JIFFIES64, "int", "", False, False),
    (_H.TRACE_PRINTK, "int", "mem size", True, False),
    (_H.TRACE_VPRINTK, "int", "mem size mem? size0", True, False),
    (_H.SNPRINTF, "int", "out? size0 cstr mem? size0", True, False),
    (_H.STRNCMP, "int", "mem size cstr", False, False),
    (_H.GET_PRANDOM_U32, "int", "", False, False),
    (_H.GET_SMP_PROCESSOR_ID, "int", "", False, False),
    (_H.GET_NUMA_NODE_ID, "int", "", False, False),
    (_H.TAIL_CALL, "void", "ctx map any", False, False),
    (_H.GET_CURRENT_PID_TGID, "int", "", False, False),
    (_H.GET_CURRENT_UID_GID, "int", "", False, False),
    (_H.GET_CURRENT_COMM, "int", "out size", False, False),
    (_H.GET_CURRENT_TASK, "int", "", True, False),
    (_H.GET_CURRENT_TASK_BTF, "btf_id", "", True, False),
    (_H.GET_CURRENT_CGROUP_ID, "int", "", False, False),
    (_H.GET_FUNC_IP, "int", "ctx", True, False),
    (_H.GET_ATTACH_COOKIE, "int", "ctx", False, False),
    (_H.GET_STACKID, "int", "ctx map any", True, False),
    (_H.GET_STACK, "int", "ctx out size0 any", True, False),
    (_H.GET_TASK_STACK, "int", "btf_id out size0 any", False, False),
    (_H.TASK_STORAGE_GET, "map_value?", "map btf_id? value? any", False, False),
    (_H.TASK_STORAGE_DELETE, "int", "map btf_id", False, False),
    (_H.CGRP_STORAGE_GET, "map_value?", "map btf_id? value? any", False, False),
    (_H.CGRP_STORAGE_DELETE, "int", "map btf_id", False, False),
    (_H.GET_LOCAL_STORAGE, "map_value", "map any", False, False),
    (_H.CURRENT_TASK_UNDER_CGROUP, "int", "map any", False, False),
    (_H.SKB_UNDER_CGROUP, "int", "ctx map any", False, False),
    (_H.INODE_STORAGE_GET, "map_value?", "map btf_id? value? any", False, False),
    (_H.INODE_STORAGE_DELETE, "int", "map btf_id", False, False),
    (_H.SK_STORAGE_GET, "map_value?", "map sock_common value? any", False, False),
    (_H.SK_STORAGE_DELETE, "int", "map sock_common", False, False),
    (_H.SEND_SIGNAL, "int", "any", False, False),
    (_H.SEND_SIGNAL_THREAD, "int", "any", False, False),
    (_H.OVERRIDE_RETURN, "int", "ctx any", True, False),
    (_H.PERF_EVENT_OUTPUT, "int", "ctx map any mem size0", True, False),
    (_H.SKB_OUTPUT, "int", "btf_id map any mem size0", True, False),
    (_H.XDP_OUTPUT, "int", "btf_id map any mem size0", True, False),
    (_H.PERF_EVENT_READ, "int", "map any", True, False),
    (_H.PERF_EVENT_READ_VALUE, "int", "map any out size", True, False),
    (_H.STRTOL, "int", "mem size any out8", False, False),
    (_H.STRTOUL, "int", "mem size any out8", False, False),
    (_H.GET_CURRENT_ANCESTOR_CGROUP_ID, "int", "any", False, False),
    (_H.GET_NS_CURRENT_PID_TGID, "int", "any any out size", False, False),  # size 0: refused
    (_H.RINGBUF_OUTPUT, "int", "map mem size0 any", False, False),
    (_H.RINGBUF_RESERVE, "ringbuf_mem?", "map alloc any", False, False),
    (_H.RINGBUF_SUBMIT, "void", "sample any", False, False),
    (_H.RINGBUF_DISCARD, "void", "sample any", False, False),
    (_H.RINGBUF_QUERY, "int", "map any", False, False),
    (_H.FOR_EACH_MAP_ELEM, "int", "map func stack? any", False, False),
    (_H.LOOP, "int", "any func stack? any", False, False),
    (_H.USER_RINGBUF_DRAIN, "int", "map func stack? any", False, False),
    (_H.SPIN_LOCK, "void", "lock", False, False),
    (_H.SPIN_UNLOCK, "void", "lock", False, False),
    (_H.TIMER_INIT, "int", "timer map any", True, False),
    (_H.TIMER_SET_CALLBACK, "int", "timer func", True, False),
    (_H.TIMER_START, "int", "timer any any", True, False),
    (_H.TIMER_CANCEL, "int", "timer", True, False),
    (_H.SKB_LOAD_BYTES, "int", "ctx any out size", False, False),
    (_H.SKB_LOAD_BYTES_RELATIVE, "int", "ctx any out size any", False, False),
    (_H.SKB_STORE_BYTES, "int", "ctx any mem size any", False, True),
    (_H.L3_CSUM_REPLACE, "int", "ctx any any any any", False, True),
    (_H.L4_CSUM_REPLACE, "int", "ctx any any any any", False, True),
    (_H.CSUM_DIFF, "int", "mem? size0 mem? size0 any", False, False),
    (_H.CSUM_UPDATE, "int", "ctx any", False, False),
    (_H.CLONE_REDIRECT, "int", "ctx any any", False, True),
    (_H.REDIRECT, "int", "any any", False, False),
    (_H.REDIRECT_MAP, "int", "map any any", False, False),
    (_H.XDP_ADJUST_HEAD, "int", "ctx any", False, True),
    (_H.XDP_ADJUST_TAIL, "int", "ctx any", False, True),
    (_H.XDP_ADJUST_META, "int", "ctx any", False, True),
    (_H.XDP_LOAD_BYTES, "int", "ctx any out size", False, False),
    (_H.XDP_STORE_BYTES, "int", "ctx any mem size", False, False),
    (_H.XDP_GET_BUFF_LEN, "int", "ctx", False, False),
    (_H.GET_HASH_RECALC, "int", "ctx", False, False),
    (_H.SET_HASH_INVALID, "int", "ctx", False, False),
    (_H.SET_HASH, "int", "ctx any", False, False),
    (_H.DYNPTR_FROM_MEM, "int", "out size0 any dynptr_out", False, False),
    (_H.RINGBUF_RESERVE_DYNPTR, "int", "map any any dynptr_out", False, False),
    (_H.RINGBUF_SUBMIT_DYNPTR, "void", "dynptr any", False, False),
    (_H.RINGBUF_DISCARD_DYNPTR, "void", "dynptr any", False, False),
    (_H.DYNPTR_READ, "int", "out size0 dynptr any any", False, False),
    (_H.DYNPTR_WRITE, "int", "dynptr any mem size0 any", False, False),
    (_H.DYNPTR_DATA, "dynptr_mem?", "dynptr any alloc", False, False),
    (_H.SKB_ECN_SET_CE, "int", "ctx", False, False),
    (_H.CSUM_LEVEL, "int", "ctx any", False, False),
    (_H.CHECK_MTU, "int", "ctx any inout any any", True, False),
    (_H.GET_CGROUP_CLASSID, "int", "ctx", False, False),
    (_H.SKB_CHANGE_PROTO, "int", "ctx any any", False, True),
    (_H.SKB_CHANGE_TYPE, "int", "ctx any", False, False),
    (_H.SKB_CHANGE_TAIL, "int", "ctx any any", False, True),
    (_H.SKB_CHANGE_HEAD, "int", "ctx any any", False, True),
    (_H.SKB_PULL_DATA, "int", "ctx any", False, True),
    (_H.SKB_ADJUST_ROOM, "int", "ctx any any any", False, True),
    (_H.SKB_VLAN_PUSH, "int", "ctx any any", False, True),
    (_H.SKB_VLAN_POP, "int", "ctx", False, True),
    (_H.SKB_GET_TUNNEL_KEY, "int", "ctx out size any", False, False),
    (_H.SKB_SET_TUNNEL_KEY, "int", "ctx mem size any", False, False),
    (_H.GET_SOCKET_COOKIE, "int", "ctx", False, False),
    (_H.GET_SOCKET_UID, "int", "ctx", False, False),
    (_H.GET_NETNS_COOKIE, "int", "ctx?", False, False),
    (_H.SKB_CGROUP_ID, "int", "ctx", False, False),
    (_H.SKB_ANCESTOR_CGROUP_ID, "int", "ctx any", False, False),
    (_H.SK_LOOKUP_TCP, "socket?", "ctx mem size any any", False, False),
    (_H.SK_LOOKUP_UDP, "socket?", "ctx mem size any any", False, False),
    (_H.SK_RELEASE, "int", "sock_common", False, False),
    (_H.SK_FULLSOCK, "socket?", "sock_common", False, False),
    (_H.TCP_SOCK, "tcp_sock?", "sock_common", False, False),
    (_H.GET_LISTENER_SOCK, "tcp_sock?", "sock_common", False, False),
    # ARG_PTR_TO_BTF_ID_SOCK_COMMON: a socket pointer of any kind (sock_common, sock, tcp_sock...)
    (_H.SK_CGROUP_ID, "int", "sock_common", False, False),
    (_H.SK_ANCESTOR_CGROUP_ID, "int", "sock_common any", False, False),
    (_H.SKC_TO_TCP6_SOCK, "btf_id?", "sock_common", False, False),
    (_H.SKC_TO_TCP_SOCK, "btf_id?", "sock_common", False, False),
    (_H.SKC_TO_TCP_TIMEWAIT_SOCK, "btf_id?", "sock_common", False, False),
    (_H.SKC_TO_TCP_REQUEST_SOCK, "btf_id?", "sock_common", False, False),
    (_H.SKC_TO_UDP6_SOCK, "btf_id?", "sock_common", False, False),
    (_H.SKC_TO_UNIX_SOCK, "btf_id?", "sock_common", False, False),
    (_H.SKC_TO_MPTCP_SOCK, "btf_id?", "sock_common", False, False),
    (_H.SK_ASSIGN, "int", "ctx sock_common any", False, False),
    (_H.FIB_LOOKUP, "int", "ctx out size any", True, False),
    (_H.SKC_LOOKUP_TCP, "sock_common?", "ctx mem size any any", False, False),
    (_H.REDIRECT_NEIGH, "int", "any mem? size0 any", False, False),
    (_H.REDIRECT_PEER, "int", "any any", False, False),
    (_H.SKB_GET_TUNNEL_OPT, "int", "ctx out size", False, False),
    (_H.SKB_SET_TUNNEL_OPT, "int", "ctx mem size", False, False),
    (_H.GET_ROUTE_REALM, "int", "ctx", False, False),
)

# Program types per helper: probed against Linux 6.18 (a program that only calls the helper is
# refused with "unknown func" where it is not allowed); types the probe cannot load alone follow
# RAW_TRACEPOINT (TRACING, LSM, STRUCT_OPS, EXT, SYSCALL) or CGROUP_SOCK (CGROUP_SOCK_ADDR,
# CGROUP_SOCKOPT, SK_LOOKUP, NETFILTER). None: every program type.
_PROGRAM_TYPES: dict[HelperId, frozenset[ProgramType] | None] = {
    _H.MAP_LOOKUP_ELEM: None,
    _H.MAP_UPDATE_ELEM: None,
    _H.MAP_DELETE_ELEM: None,
    _H.MAP_PUSH_ELEM: None,
    _H.MAP_POP_ELEM: None,
    _H.MAP_PEEK_ELEM: None,
    _H.MAP_LOOKUP_PERCPU_ELEM: None,
    _H.PROBE_READ: _TRACING_TYPES,
    _H.PROBE_READ_STR: _TRACING_TYPES,
    _H.PROBE_READ_KERNEL: None,
    _H.PROBE_READ_KERNEL_STR: None,
    _H.PROBE_READ_USER: None,
    _H.PROBE_READ_USER_STR: None,
    _H.KTIME_GET_NS: None,
    _H.KTIME_GET_BOOT_NS: None,
    _H.KTIME_GET_COARSE_NS: _types(
        "CGROUP_SKB",
        "CGROUP_SOCK",
        "CGROUP_SOCKOPT",
        "CGROUP_SOCK_ADDR",
        "CGROUP_SYSCTL",
        "FLOW_DISSECTOR",
        "LWT_IN",
        "LWT_OUT",
        "LWT_XMIT",
        "SCHED_ACT",
        "SCHED_CLS",
        "SK_LOOKUP",
        "SK_MSG",
        "SK_REUSEPORT",
        "SK_SKB",
        "SOCKET_FILTER",
        "SOCK_OPS",
        "XDP",
    ),
    _H.KTIME_GET_TAI_NS: None,
    _H.JIFFIES64: None,
    _H.TRACE_PRINTK: None,
    _H.TRACE_VPRINTK: None,
    _H.SNPRINTF: None,
    _H.STRNCMP: None,
    _H.GET_PRANDOM_U32: None,
    _H.GET_SMP_PROCESSOR_ID: None,
    _H.GET_NUMA_NODE_ID: None,
    _H.TAIL_CALL: None,
    _H.GET_CURRENT_PID_TGID: None,
    _H.GET_CURRENT_UID_GID: None,
    _H.GET_CURRENT_COMM: None,
    _H.GET_CURRENT_TASK: None,
    _H.GET_CURRENT_TASK_BTF: None,
    _H.GET_CURRENT_CGROUP_ID: None,
    _H.GET_FUNC_IP: _TRACING_TYPES,
    _H.GET_ATTACH_COOKIE: _TRACING_TYPES,
    _H.GET_STACKID: _TRACING_TYPES,
    _H.GET_STACK: _TRACING_TYPES,
    # bpf_base_func_proto in Linux 6.18 (checked for every loadable type)
    _H.GET_TASK_STACK: None,
    _H.TASK_STORAGE_GET: None,
    _H.TASK_STORAGE_DELETE: None,
    _H.CGRP_STORAGE_GET: None,
    _H.CGRP_STORAGE_DELETE: None,
    # legacy cgroup storage: the cgroup hooks and sock_ops (CGROUP_SOCK_ADDR and CGROUP_SOCKOPT
    # follow CGROUP_SOCK; LSM has it only with the BPF_LSM_CGROUP attach type)
    _H.GET_LOCAL_STORAGE: _types(
        "CGROUP_DEVICE",
        "CGROUP_SKB",
        "CGROUP_SOCK",
        "CGROUP_SOCKOPT",
        "CGROUP_SOCK_ADDR",
        "CGROUP_SYSCTL",
        "SOCK_OPS",
    ),
    _H.CURRENT_TASK_UNDER_CGROUP: None,
    _H.SKB_UNDER_CGROUP: _types("LWT_IN", "LWT_OUT", "LWT_XMIT", "SCHED_ACT", "SCHED_CLS"),
    _H.INODE_STORAGE_GET: _types("LSM"),
    _H.INODE_STORAGE_DELETE: _types("LSM"),
    _H.SK_STORAGE_GET: _SK_STORAGE_TYPES | _types("CGROUP_SOCK"),
    _H.SK_STORAGE_DELETE: _SK_STORAGE_TYPES,
    _H.SEND_SIGNAL: None,
    _H.SEND_SIGNAL_THREAD: None,
    _H.OVERRIDE_RETURN: _types("KPROBE"),  # with CONFIG_BPF_KPROBE_OVERRIDE (off on the probed kernel)
    # tracing_prog_func_proto (TRACING; LSM falls back to it), from the kernel source: neither
    # type loads here, so the probe cannot check them.
    _H.SKB_OUTPUT: _types("LSM", "TRACING"),
    _H.XDP_OUTPUT: _types("LSM", "TRACING"),
    _H.PERF_EVENT_OUTPUT: _types(
        "CGROUP_DEVICE",
        "CGROUP_SKB",
        "CGROUP_SOCK",
        "CGROUP_SOCKOPT",
        "CGROUP_SOCK_ADDR",
        "CGROUP_SYSCTL",
        "EXT",
        "KPROBE",
        "LSM",
        "LWT_IN",
        "LWT_OUT",
        "LWT_XMIT",
        "PERF_EVENT",
        "RAW_TRACEPOINT",
        "RAW_TRACEPOINT_WRITABLE",
        "SCHED_ACT",
        "SCHED_CLS",
        "SK_LOOKUP",
        "SK_MSG",
        "SK_SKB",
        "SOCKET_FILTER",
        "SOCK_OPS",
        "STRUCT_OPS",
        "SYSCALL",
        "TRACEPOINT",
        "TRACING",
        "XDP",
    ),
    _H.PERF_EVENT_READ: None,
    _H.PERF_EVENT_READ_VALUE: None,
    _H.STRTOL: None,
    _H.STRTOUL: None,
    _H.GET_CURRENT_ANCESTOR_CGROUP_ID: None,
    _H.GET_NS_CURRENT_PID_TGID: None,
    _H.RINGBUF_OUTPUT: None,
    _H.RINGBUF_RESERVE: None,
    _H.RINGBUF_SUBMIT: None,
    _H.RINGBUF_DISCARD: None,
    _H.RINGBUF_QUERY: None,
    _H.FOR_EACH_MAP_ELEM: None,
    _H.LOOP: None,
    _H.USER_RINGBUF_DRAIN: None,
    _H.SPIN_LOCK: None,
    _H.SPIN_UNLOCK: None,
    _H.TIMER_INIT: None,
    _H.TIMER_SET_CALLBACK: None,
    _H.TIMER_START: None,
    _H.TIMER_CANCEL: None,
    _H.SKB_LOAD_BYTES: _types(
        "CGROUP_SKB",
        "FLOW_DISSECTOR",
        "LWT_IN",
        "LWT_OUT",
        "LWT_XMIT",
        "SCHED_ACT",
        "SCHED_CLS",
        "SK_REUSEPORT",
        "SK_SKB",
        "SOCKET_FILTER",
    ),
    _H.SKB_LOAD_BYTES_RELATIVE: _types(
        "CGROUP_SKB", "SCHED_ACT", "SCHED_CLS", "SK_REUSEPORT", "SOCKET_FILTER"
    ),
    _H.SKB_STORE_BYTES: _types("LWT_XMIT", "SCHED_ACT", "SCHED_CLS", "SK_SKB"),
    _H.L3_CSUM_REPLACE: _types("LWT_XMIT", "SCHED_ACT", "SCHED_CLS"),
    _H.L4_CSUM_REPLACE: _types("LWT_XMIT", "SCHED_ACT", "SCHED_CLS"),
    _H.CSUM_DIFF: _types("LWT_IN", "LWT_OUT", "LWT_XMIT", "SCHED_ACT", "SCHED_CLS", "XDP"),
    _H.CSUM_UPDATE: _types("LWT_XMIT", "SCHED_ACT", "SCHED_CLS"),
    _H.CLONE_REDIRECT: _types("LWT_XMIT", "SCHED_ACT", "SCHED_CLS"),
    _H.REDIRECT: _types("LWT_XMIT", "SCHED_ACT", "SCHED_CLS", "XDP"),
    _H.REDIRECT_MAP: _types("XDP"),
    _H.XDP_ADJUST_HEAD: _types("XDP"),
    _H.XDP_ADJUST_TAIL: _types("XDP"),
    _H.XDP_ADJUST_META: _types("XDP"),
    _H.XDP_LOAD_BYTES: _types("XDP"),
    _H.XDP_STORE_BYTES: _types("XDP"),
    _H.XDP_GET_BUFF_LEN: _types("XDP"),
    _H.GET_HASH_RECALC: _types("LWT_IN", "LWT_OUT", "LWT_XMIT", "SCHED_ACT", "SCHED_CLS"),
    _H.SET_HASH_INVALID: _types("LWT_XMIT", "SCHED_ACT", "SCHED_CLS"),
    _H.SET_HASH: _types("SCHED_ACT", "SCHED_CLS"),
    _H.DYNPTR_FROM_MEM: None,
    _H.RINGBUF_RESERVE_DYNPTR: None,
    _H.RINGBUF_SUBMIT_DYNPTR: None,
    _H.RINGBUF_DISCARD_DYNPTR: None,
    _H.DYNPTR_READ: None,
    _H.DYNPTR_WRITE: None,
    _H.DYNPTR_DATA: None,
    _H.SKB_ECN_SET_CE: _types("CGROUP_SKB", "SCHED_ACT", "SCHED_CLS"),
    _H.CSUM_LEVEL: _types("LWT_XMIT", "SCHED_ACT", "SCHED_CLS"),
    _H.CHECK_MTU: _types("SCHED_ACT", "SCHED_CLS", "XDP"),
    _H.GET_CGROUP_CLASSID: None,
    _H.SKB_CHANGE_PROTO: _types("SCHED_ACT", "SCHED_CLS"),
    _H.SKB_CHANGE_TYPE: _types("SCHED_ACT", "SCHED_CLS"),
    _H.SKB_CHANGE_TAIL: _types("LWT_XMIT", "SCHED_ACT", "SCHED_CLS", "SK_SKB"),
    _H.SKB_CHANGE_HEAD: _types("LWT_XMIT", "SCHED_ACT", "SCHED_CLS", "SK_SKB"),
    _H.SKB_PULL_DATA: _types("LWT_IN", "LWT_OUT", "LWT_XMIT", "SCHED_ACT", "SCHED_CLS", "SK_SKB"),
    _H.SKB_ADJUST_ROOM: _types("SCHED_ACT", "SCHED_CLS", "SK_SKB"),
    _H.SKB_VLAN_PUSH: _types("SCHED_ACT", "SCHED_CLS"),
    _H.SKB_VLAN_POP: _types("SCHED_ACT", "SCHED_CLS"),
    _H.SKB_GET_TUNNEL_KEY: _types("LWT_XMIT", "SCHED_ACT", "SCHED_CLS"),
    _H.SKB_SET_TUNNEL_KEY: _types("LWT_XMIT", "SCHED_ACT", "SCHED_CLS"),
    _H.GET_SOCKET_COOKIE: _types(
        "CGROUP_SKB",
        "CGROUP_SOCK",
        "CGROUP_SOCKOPT",
        "CGROUP_SOCK_ADDR",
        "SCHED_ACT",
        "SCHED_CLS",
        "SK_REUSEPORT",
        "SK_SKB",
        "SOCKET_FILTER",
        "SOCK_OPS",
    ),
    _H.GET_SOCKET_UID: _types("CGROUP_SKB", "SCHED_ACT", "SCHED_CLS", "SK_SKB", "SOCKET_FILTER"),
    _H.GET_NETNS_COOKIE: _types(
        "CGROUP_SKB",
        "CGROUP_SOCK",
        "CGROUP_SOCKOPT",
        "CGROUP_SOCK_ADDR",
        "SCHED_ACT",
        "SCHED_CLS",
        "SK_MSG",
        "SOCKET_FILTER",
        "SOCK_OPS",
    ),
    _H.SKB_CGROUP_ID: _types("CGROUP_SKB", "SCHED_ACT", "SCHED_CLS"),
    _H.SKB_ANCESTOR_CGROUP_ID: _types("CGROUP_SKB", "SCHED_ACT", "SCHED_CLS"),
    _H.SK_LOOKUP_TCP: _types("CGROUP_SKB", "SCHED_ACT", "SCHED_CLS", "SK_SKB", "XDP"),
    _H.SK_LOOKUP_UDP: _types("CGROUP_SKB", "SCHED_ACT", "SCHED_CLS", "SK_SKB", "XDP"),
    _H.SK_RELEASE: _types("CGROUP_SKB", "SCHED_ACT", "SCHED_CLS", "SK_LOOKUP", "SK_SKB", "XDP"),
    _H.SK_FULLSOCK: _types("CGROUP_SKB", "SCHED_ACT", "SCHED_CLS"),
    _H.TCP_SOCK: _types("CGROUP_SKB", "SCHED_ACT", "SCHED_CLS", "SOCK_OPS"),
    _H.GET_LISTENER_SOCK: _types("CGROUP_SKB", "SCHED_ACT", "SCHED_CLS"),
    **dict.fromkeys(_SKC_TO, _SKC_TO_TYPES),
    _H.SK_CGROUP_ID: _types("CGROUP_SKB"),
    _H.SK_ANCESTOR_CGROUP_ID: _types("CGROUP_SKB"),
    _H.SK_ASSIGN: _types("SCHED_ACT", "SCHED_CLS", "SK_LOOKUP"),
    _H.FIB_LOOKUP: _types("SCHED_ACT", "SCHED_CLS", "XDP"),
    _H.SKC_LOOKUP_TCP: _types("CGROUP_SKB", "SCHED_ACT", "SCHED_CLS", "SK_SKB", "XDP"),
    _H.REDIRECT_NEIGH: _types("SCHED_ACT", "SCHED_CLS"),
    _H.REDIRECT_PEER: _types("SCHED_ACT", "SCHED_CLS"),
    _H.SKB_GET_TUNNEL_OPT: _types("LWT_XMIT", "SCHED_ACT", "SCHED_CLS"),
    _H.SKB_SET_TUNNEL_OPT: _types("LWT_XMIT", "SCHED_ACT", "SCHED_CLS"),
    _H.GET_ROUTE_REALM: _types("LWT_IN", "LWT_OUT", "LWT_SEG6LOCAL", "LWT_XMIT", "SCHED_ACT", "SCHED_CLS"),
}


def _build() -> dict[HelperId, HelperProto]:
    table: dict[HelperId, HelperProto] = {}
    for hid, ret, args, gpl, changes in _TABLE:
        arguments = tuple(_ARGS[a] for a in args.split())
        table[hid] = HelperProto(hid, _RETS[ret], arguments, gpl, _PROGRAM_TYPES[hid], changes)
    return table


PROTOTYPES: Mapping[HelperId, HelperProto] = MappingProxyType(_build())
"""Helper id -> prototype, for the helpers the user-space runtime implements and the common
tracing and networking ones."""


def prototype(helper: int) -> HelperProto | None:
    """The prototype of helper number ``helper``, or ``None`` if the table has none."""
    try:
        return PROTOTYPES.get(HelperId(helper))
    except ValueError:
        return None
