"""The bpf(2) ABI: command numbers, flags and ``union bpf_attr`` variants as ctypes structures.

Pure: no kernel access. It only describes the memory that bpf(2) reads and writes;
the calls go through :mod:`ebpf.kernel._syscall`. It sits in ``kernel/`` because it
is ctypes, which stays above the kernel line.

Rule 1: every number and layout here comes from ``include/uapi/linux/bpf.h`` as of
Linux 6.18. ``tests/kernel/test_uapi.py`` pins each size and offset to the header, so
a mistake cannot hide.

Rule 2: each ``union bpf_attr`` variant is its own :class:`ctypes.Structure` holding
the fields of that command only, in UAPI order. The kernel accepts an attr shorter
than its own union (it zero-fills the rest) and a longer one whose unknown tail is
zero, so sending exactly one variant is always correct.

Rule 3: ``__aligned_u64`` fields are :class:`ctypes.c_uint64`; that matches the
header on every 64-bit ABI (and the tests fail loudly on any other).

Written by hand for now; it will be generated from kernel BTF by ``ebpf.btf`` later
(and then say "generated; do not edit").
"""

from __future__ import annotations

import ctypes
from enum import IntEnum, IntFlag

from ebpf.maps._base import UpdateFlags

__all__ = [
    "BPF_OBJ_NAME_LEN",
    "BPF_PSEUDO_CALL",
    "BPF_PSEUDO_KFUNC_CALL",
    "BPF_TAG_SIZE",
    "BpfBtfInfo",
    "BpfFuncInfo",
    "BpfLineInfo",
    "BpfMapInfo",
    "BpfProgInfo",
    "BtfLoadAttr",
    "Cmd",
    "EnableStatsAttr",
    "GetIdAttr",
    "LogLevel",
    "MapBatchAttr",
    "MapCreateAttr",
    "MapElemAttr",
    "MapElemFlags",
    "ObjInfoAttr",
    "ObjPinAttr",
    "ProgLoadAttr",
    "ProgLoadFlags",
    "PseudoSrc",
    "StatsType",
    "TestRunAttr",
    "TestRunFlags",
]

BPF_OBJ_NAME_LEN = 16
"""Size of the ``prog_name`` / ``map_name`` arrays, including the terminating NUL."""

BPF_TAG_SIZE = 8
"""Size of a program tag (a truncated SHA-1 of the instructions)."""

_u8 = ctypes.c_uint8
_u32 = ctypes.c_uint32
_s32 = ctypes.c_int32
_u64 = ctypes.c_uint64


class Cmd(IntEnum):
    """A bpf(2) command (``enum bpf_cmd``). ``str(cmd)`` is not the UAPI name: use :meth:`uapi_name`."""

    MAP_CREATE = 0  # BPF_MAP_CREATE
    MAP_LOOKUP_ELEM = 1  # BPF_MAP_LOOKUP_ELEM
    MAP_UPDATE_ELEM = 2  # BPF_MAP_UPDATE_ELEM
    MAP_DELETE_ELEM = 3  # BPF_MAP_DELETE_ELEM
    MAP_GET_NEXT_KEY = 4  # BPF_MAP_GET_NEXT_KEY
    PROG_LOAD = 5  # BPF_PROG_LOAD
    OBJ_PIN = 6  # BPF_OBJ_PIN
    OBJ_GET = 7  # BPF_OBJ_GET
    PROG_ATTACH = 8  # BPF_PROG_ATTACH
    PROG_DETACH = 9  # BPF_PROG_DETACH
    PROG_TEST_RUN = 10  # BPF_PROG_TEST_RUN
    PROG_RUN = 10  # BPF_PROG_RUN (alias of BPF_PROG_TEST_RUN)
    PROG_GET_NEXT_ID = 11  # BPF_PROG_GET_NEXT_ID
    MAP_GET_NEXT_ID = 12  # BPF_MAP_GET_NEXT_ID
    PROG_GET_FD_BY_ID = 13  # BPF_PROG_GET_FD_BY_ID
    MAP_GET_FD_BY_ID = 14  # BPF_MAP_GET_FD_BY_ID
    OBJ_GET_INFO_BY_FD = 15  # BPF_OBJ_GET_INFO_BY_FD
    PROG_QUERY = 16  # BPF_PROG_QUERY
    RAW_TRACEPOINT_OPEN = 17  # BPF_RAW_TRACEPOINT_OPEN
    BTF_LOAD = 18  # BPF_BTF_LOAD
    BTF_GET_FD_BY_ID = 19  # BPF_BTF_GET_FD_BY_ID
    TASK_FD_QUERY = 20  # BPF_TASK_FD_QUERY
    MAP_LOOKUP_AND_DELETE_ELEM = 21  # BPF_MAP_LOOKUP_AND_DELETE_ELEM
    MAP_FREEZE = 22  # BPF_MAP_FREEZE
    BTF_GET_NEXT_ID = 23  # BPF_BTF_GET_NEXT_ID
    MAP_LOOKUP_BATCH = 24  # BPF_MAP_LOOKUP_BATCH
    MAP_LOOKUP_AND_DELETE_BATCH = 25  # BPF_MAP_LOOKUP_AND_DELETE_BATCH
    MAP_UPDATE_BATCH = 26  # BPF_MAP_UPDATE_BATCH
    MAP_DELETE_BATCH = 27  # BPF_MAP_DELETE_BATCH
    LINK_CREATE = 28  # BPF_LINK_CREATE
    LINK_UPDATE = 29  # BPF_LINK_UPDATE
    LINK_GET_FD_BY_ID = 30  # BPF_LINK_GET_FD_BY_ID
    LINK_GET_NEXT_ID = 31  # BPF_LINK_GET_NEXT_ID
    ENABLE_STATS = 32  # BPF_ENABLE_STATS
    ITER_CREATE = 33  # BPF_ITER_CREATE
    LINK_DETACH = 34  # BPF_LINK_DETACH
    PROG_BIND_MAP = 35  # BPF_PROG_BIND_MAP
    TOKEN_CREATE = 36  # BPF_TOKEN_CREATE
    PROG_STREAM_READ_BY_FD = 37  # BPF_PROG_STREAM_READ_BY_FD

    def uapi_name(self) -> str:
        """The UAPI spelling, e.g. ``"BPF_PROG_LOAD"`` (used in error messages)."""
        return f"BPF_{self.name}"


class LogLevel(IntFlag):
    """Verifier log verbosity for ``BPF_PROG_LOAD``'s ``log_level`` (kernel ``BPF_LOG_*``)."""

    NONE = 0
    BRANCH = 1  # BPF_LOG_LEVEL1: the state at each branch, and the error
    INSTRUCTION = 2  # BPF_LOG_LEVEL2: every instruction with the register state
    STATS = 4  # BPF_LOG_STATS: verification statistics only


MapElemFlags = UpdateFlags
"""``flags`` of ``BPF_MAP_UPDATE_ELEM`` / ``BPF_MAP_LOOKUP_ELEM``: :class:`ebpf.maps.UpdateFlags`
(one definition for the user-space maps and the kernel; ``ANY NOEXIST EXIST LOCK``)."""


class TestRunFlags(IntFlag):
    """``flags`` of ``BPF_PROG_TEST_RUN``."""

    __test__ = False  # not a pytest test class, despite the name

    NONE = 0
    RUN_ON_CPU = 1  # BPF_F_TEST_RUN_ON_CPU: run on attr.cpu
    XDP_LIVE_FRAMES = 2  # BPF_F_TEST_XDP_LIVE_FRAMES: XDP frames really get transmitted


class StatsType(IntEnum):
    """``enum bpf_stats_type`` for ``BPF_ENABLE_STATS``."""

    RUN_TIME = 0  # BPF_STATS_RUN_TIME


class MapCreateAttr(ctypes.Structure):
    """``union bpf_attr`` for ``BPF_MAP_CREATE``."""

    _fields_ = [
        ("map_type", _u32),
        ("key_size", _u32),
        ("value_size", _u32),
        ("max_entries", _u32),
        ("map_flags", _u32),
        ("inner_map_fd", _u32),
        ("numa_node", _u32),
        ("map_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("map_ifindex", _u32),
        ("btf_fd", _u32),
        ("btf_key_type_id", _u32),
        ("btf_value_type_id", _u32),
        ("btf_vmlinux_value_type_id", _u32),
        ("map_extra", _u64),
        ("value_type_btf_obj_fd", _s32),
        ("map_token_fd", _s32),
        ("excl_prog_hash", _u64),
        ("excl_prog_hash_size", _u32),
    ]


class _ValueOrNextKey(ctypes.Union):
    _fields_ = [("value", _u64), ("next_key", _u64)]


class MapElemAttr(ctypes.Structure):
    """``union bpf_attr`` for ``BPF_MAP_{LOOKUP,UPDATE,DELETE}_ELEM`` and ``BPF_MAP_GET_NEXT_KEY``.

    ``value`` and ``next_key`` share one slot, as in the UAPI.
    """

    _anonymous_ = ("_u",)
    _fields_ = [
        ("map_fd", _u32),
        ("key", _u64),
        ("_u", _ValueOrNextKey),
        ("flags", _u64),
    ]


class _AttachProgOrBtfObjFd(ctypes.Union):
    _fields_ = [("attach_prog_fd", _u32), ("attach_btf_obj_fd", _u32)]


class ProgLoadAttr(ctypes.Structure):
    """``union bpf_attr`` for ``BPF_PROG_LOAD``."""

    _anonymous_ = ("_u",)
    _fields_ = [
        ("prog_type", _u32),
        ("insn_cnt", _u32),
        ("insns", _u64),
        ("license", _u64),
        ("log_level", _u32),
        ("log_size", _u32),
        ("log_buf", _u64),
        ("kern_version", _u32),
        ("prog_flags", _u32),
        ("prog_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("prog_ifindex", _u32),
        ("expected_attach_type", _u32),
        ("prog_btf_fd", _u32),
        ("func_info_rec_size", _u32),
        ("func_info", _u64),
        ("func_info_cnt", _u32),
        ("line_info_rec_size", _u32),
        ("line_info", _u64),
        ("line_info_cnt", _u32),
        ("attach_btf_id", _u32),
        ("_u", _AttachProgOrBtfObjFd),
        ("core_relo_cnt", _u32),
        ("fd_array", _u64),
        ("core_relos", _u64),
        ("core_relo_rec_size", _u32),
        ("log_true_size", _u32),
        ("prog_token_fd", _s32),
        ("fd_array_cnt", _u32),
        ("signature", _u64),
        ("signature_size", _u32),
        ("keyring_id", _s32),
    ]


class TestRunAttr(ctypes.Structure):
    """``union bpf_attr``'s ``test`` member, for ``BPF_PROG_TEST_RUN``."""

    __test__ = False  # not a pytest test class, despite the name

    _fields_ = [
        ("prog_fd", _u32),
        ("retval", _u32),
        ("data_size_in", _u32),
        ("data_size_out", _u32),
        ("data_in", _u64),
        ("data_out", _u64),
        ("repeat", _u32),
        ("duration", _u32),
        ("ctx_size_in", _u32),
        ("ctx_size_out", _u32),
        ("ctx_in", _u64),
        ("ctx_out", _u64),
        ("flags", _u32),
        ("cpu", _u32),
        ("batch_size", _u32),
    ]


class _StartOrObjId(ctypes.Union):
    _fields_ = [
        ("start_id", _u32),
        ("prog_id", _u32),
        ("map_id", _u32),
        ("btf_id", _u32),
        ("link_id", _u32),
    ]


class GetIdAttr(ctypes.Structure):
    """``union bpf_attr`` for ``BPF_*_GET_NEXT_ID`` and ``BPF_*_GET_FD_BY_ID``.

    ``start_id``, ``prog_id``, ``map_id``, ``btf_id`` and ``link_id`` share one slot.
    """

    _anonymous_ = ("_u",)
    _fields_ = [
        ("_u", _StartOrObjId),
        ("next_id", _u32),
        ("open_flags", _u32),
        ("fd_by_id_token_fd", _s32),
    ]


class ObjInfoAttr(ctypes.Structure):
    """``union bpf_attr``'s ``info`` member, for ``BPF_OBJ_GET_INFO_BY_FD``."""

    _fields_ = [
        ("bpf_fd", _u32),
        ("info_len", _u32),
        ("info", _u64),
    ]


class EnableStatsAttr(ctypes.Structure):
    """``union bpf_attr``'s ``enable_stats`` member, for ``BPF_ENABLE_STATS``."""

    _fields_ = [("type", _u32)]


class BpfProgInfo(ctypes.Structure):
    """``struct bpf_prog_info``, filled by ``BPF_OBJ_GET_INFO_BY_FD`` on a program fd.

    The kernel copies at most ``info_len`` bytes and reports how many it knows, so an
    older kernel simply leaves the newer fields zero.
    """

    _fields_ = [
        ("type", _u32),
        ("id", _u32),
        ("tag", _u8 * BPF_TAG_SIZE),
        ("jited_prog_len", _u32),
        ("xlated_prog_len", _u32),
        ("jited_prog_insns", _u64),
        ("xlated_prog_insns", _u64),
        ("load_time", _u64),
        ("created_by_uid", _u32),
        ("nr_map_ids", _u32),
        ("map_ids", _u64),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", _u32),
        ("gpl_compatible", _u32, 1),
        ("netns_dev", _u64),
        ("netns_ino", _u64),
        ("nr_jited_ksyms", _u32),
        ("nr_jited_func_lens", _u32),
        ("jited_ksyms", _u64),
        ("jited_func_lens", _u64),
        ("btf_id", _u32),
        ("func_info_rec_size", _u32),
        ("func_info", _u64),
        ("nr_func_info", _u32),
        ("nr_line_info", _u32),
        ("line_info", _u64),
        ("jited_line_info", _u64),
        ("nr_jited_line_info", _u32),
        ("line_info_rec_size", _u32),
        ("jited_line_info_rec_size", _u32),
        ("nr_prog_tags", _u32),
        ("prog_tags", _u64),
        ("run_time_ns", _u64),
        ("run_cnt", _u64),
        ("recursion_misses", _u64),
        ("verified_insns", _u32),
        ("attach_btf_obj_id", _u32),
        ("attach_btf_id", _u32),
    ]


class BtfLoadAttr(ctypes.Structure):
    """``union bpf_attr`` for ``BPF_BTF_LOAD``."""

    _fields_ = [
        ("btf", _u64),
        ("btf_log_buf", _u64),
        ("btf_size", _u32),
        ("btf_log_size", _u32),
        ("btf_log_level", _u32),
        ("btf_log_true_size", _u32),
        ("btf_flags", _u32),
        ("btf_token_fd", _s32),
    ]


class ObjPinAttr(ctypes.Structure):
    """``union bpf_attr`` for ``BPF_OBJ_PIN`` and ``BPF_OBJ_GET``."""

    _fields_ = [
        ("pathname", _u64),
        ("bpf_fd", _u32),
        ("file_flags", _u32),
        ("path_fd", _s32),
    ]


class MapBatchAttr(ctypes.Structure):
    """``union bpf_attr``'s ``batch`` member, for ``BPF_MAP_*_BATCH``."""

    _fields_ = [
        ("in_batch", _u64),
        ("out_batch", _u64),
        ("keys", _u64),
        ("values", _u64),
        ("count", _u32),
        ("map_fd", _u32),
        ("elem_flags", _u64),
        ("flags", _u64),
    ]


class BpfMapInfo(ctypes.Structure):
    """``struct bpf_map_info``, filled by ``BPF_OBJ_GET_INFO_BY_FD`` on a map fd."""

    _fields_ = [
        ("type", _u32),
        ("id", _u32),
        ("key_size", _u32),
        ("value_size", _u32),
        ("max_entries", _u32),
        ("map_flags", _u32),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", _u32),
        ("btf_vmlinux_value_type_id", _u32),
        ("netns_dev", _u64),
        ("netns_ino", _u64),
        ("btf_id", _u32),
        ("btf_key_type_id", _u32),
        ("btf_value_type_id", _u32),
        ("btf_vmlinux_id", _u32),
        ("map_extra", _u64),
        ("hash", _u64),
        ("hash_size", _u32),
    ]


class BpfBtfInfo(ctypes.Structure):
    """``struct bpf_btf_info``, filled by ``BPF_OBJ_GET_INFO_BY_FD`` on a BTF fd."""

    _fields_ = [
        ("btf", _u64),
        ("btf_size", _u32),
        ("id", _u32),
        ("name", _u64),
        ("name_len", _u32),
        ("kernel_btf", _u32),
    ]


class BpfFuncInfo(ctypes.Structure):
    """``struct bpf_func_info``: one record of ``BPF_PROG_LOAD``'s ``func_info`` array."""

    _fields_ = [("insn_off", _u32), ("type_id", _u32)]


class BpfLineInfo(ctypes.Structure):
    """``struct bpf_line_info``: one record of ``BPF_PROG_LOAD``'s ``line_info`` array."""

    _fields_ = [
        ("insn_off", _u32),
        ("file_name_off", _u32),
        ("line_off", _u32),
        ("line_col", _u32),
    ]


class ProgLoadFlags(IntFlag):
    """``prog_flags`` of ``BPF_PROG_LOAD`` (``BPF_F_*``)."""

    NONE = 0
    STRICT_ALIGNMENT = 1 << 0  # BPF_F_STRICT_ALIGNMENT
    ANY_ALIGNMENT = 1 << 1  # BPF_F_ANY_ALIGNMENT
    TEST_RND_HI32 = 1 << 2  # BPF_F_TEST_RND_HI32
    TEST_STATE_FREQ = 1 << 3  # BPF_F_TEST_STATE_FREQ
    SLEEPABLE = 1 << 4  # BPF_F_SLEEPABLE
    XDP_HAS_FRAGS = 1 << 5  # BPF_F_XDP_HAS_FRAGS
    XDP_DEV_BOUND_ONLY = 1 << 6  # BPF_F_XDP_DEV_BOUND_ONLY
    TEST_REG_INVARIANTS = 1 << 7  # BPF_F_TEST_REG_INVARIANTS


class PseudoSrc(IntEnum):
    """``src_reg`` values of ``lddw`` and ``call`` that make the kernel resolve an immediate."""

    MAP_FD = 1  # BPF_PSEUDO_MAP_FD: imm = map fd
    MAP_VALUE = 2  # BPF_PSEUDO_MAP_VALUE: imm = map fd, next imm = offset into the value
    BTF_ID = 3  # BPF_PSEUDO_BTF_ID: imm = BTF id of a kernel variable, next imm = BTF object fd
    MAP_IDX = 5  # BPF_PSEUDO_MAP_IDX: imm = index into fd_array
    MAP_IDX_VALUE = 6  # BPF_PSEUDO_MAP_IDX_VALUE


BPF_PSEUDO_CALL = 1
"""``src_reg`` of a ``call`` to a bpf-to-bpf subprogram."""

BPF_PSEUDO_KFUNC_CALL = 2
"""``src_reg`` of a ``call`` to a kernel function (imm = its BTF id, offset = fd_array index)."""
