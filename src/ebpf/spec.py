"""Specs of BPF objects (what an object file describes) and the kernel's kinds of objects.

Core layer. Pure: no kernel access. Parsing an object gives an equal spec on every machine.

Specs (:class:`CollectionSpec`, :class:`ProgramSpec`, :class:`MapSpec`, :class:`VariableSpec`)
are plain mutable dataclasses with a deep ``copy()``, edited by users before loading (cilium's
``CollectionSpec``). Both engines turn the same spec into live objects: the user-space runtime
(:mod:`ebpf.runtime`) and the kernel engine (the ``kernel`` package).

Program instructions in a spec are *linked but not relocated*: subprograms are appended to the
program that calls them and bpf-to-bpf calls hold their final relative offsets, while each
``lddw`` that names a map, a global variable or a kernel symbol (and each kfunc call) keeps a
placeholder immediate and is listed in :attr:`ProgramSpec.relocations` by slot index; an engine
fills those in when it loads the program. CO-RE relocations are applied by
:func:`ebpf.btf.core.relocate_core` against a target BTF given as an argument.

The kinds of objects, as closed numeric sets:

Rule 1: every value equals the number in the Linux UAPI header
(``include/uapi/linux/bpf.h``, as of Linux 6.18), so a member can be passed to
``bpf(2)`` as is and a number read back from the kernel converts with ``ProgramType(n)``.

Rule 2: names drop the UAPI prefix (``BPF_PROG_TYPE_``, ``BPF_MAP_TYPE_``, ``BPF_``);
the comment beside each member names the UAPI constant, so a search for the kernel
spelling finds it.

Where the UAPI has two names for one number, the current name is the member and the
older one an alias (``MapType.CGROUP_STORAGE_DEPRECATED is MapType.CGROUP_STORAGE``).
"""

from __future__ import annotations

import copy as _copy
import enum
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ebpf.btf.ext import CoreRelo, FuncInfo, LineInfo
    from ebpf.btf.spec import Spec as BTFSpec
    from ebpf.isa.program import Program

__all__ = [
    "AttachType",
    "CollectionSpec",
    "MapFlags",
    "MapSpec",
    "MapType",
    "PinType",
    "ProgramSpec",
    "ProgramType",
    "RelocKind",
    "Relocation",
    "VariableSpec",
]


class ProgramType(IntEnum):
    """The kind of a BPF program (``enum bpf_prog_type``): decides its context, helpers and hooks."""

    UNSPEC = 0  # BPF_PROG_TYPE_UNSPEC
    SOCKET_FILTER = 1  # BPF_PROG_TYPE_SOCKET_FILTER
    KPROBE = 2  # BPF_PROG_TYPE_KPROBE
    SCHED_CLS = 3  # BPF_PROG_TYPE_SCHED_CLS
    SCHED_ACT = 4  # BPF_PROG_TYPE_SCHED_ACT
    TRACEPOINT = 5  # BPF_PROG_TYPE_TRACEPOINT
    XDP = 6  # BPF_PROG_TYPE_XDP
    PERF_EVENT = 7  # BPF_PROG_TYPE_PERF_EVENT
    CGROUP_SKB = 8  # BPF_PROG_TYPE_CGROUP_SKB
    CGROUP_SOCK = 9  # BPF_PROG_TYPE_CGROUP_SOCK
    LWT_IN = 10  # BPF_PROG_TYPE_LWT_IN
    LWT_OUT = 11  # BPF_PROG_TYPE_LWT_OUT
    LWT_XMIT = 12  # BPF_PROG_TYPE_LWT_XMIT
    SOCK_OPS = 13  # BPF_PROG_TYPE_SOCK_OPS
    SK_SKB = 14  # BPF_PROG_TYPE_SK_SKB
    CGROUP_DEVICE = 15  # BPF_PROG_TYPE_CGROUP_DEVICE
    SK_MSG = 16  # BPF_PROG_TYPE_SK_MSG
    RAW_TRACEPOINT = 17  # BPF_PROG_TYPE_RAW_TRACEPOINT
    CGROUP_SOCK_ADDR = 18  # BPF_PROG_TYPE_CGROUP_SOCK_ADDR
    LWT_SEG6LOCAL = 19  # BPF_PROG_TYPE_LWT_SEG6LOCAL
    LIRC_MODE2 = 20  # BPF_PROG_TYPE_LIRC_MODE2
    SK_REUSEPORT = 21  # BPF_PROG_TYPE_SK_REUSEPORT
    FLOW_DISSECTOR = 22  # BPF_PROG_TYPE_FLOW_DISSECTOR
    CGROUP_SYSCTL = 23  # BPF_PROG_TYPE_CGROUP_SYSCTL
    RAW_TRACEPOINT_WRITABLE = 24  # BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE
    CGROUP_SOCKOPT = 25  # BPF_PROG_TYPE_CGROUP_SOCKOPT
    TRACING = 26  # BPF_PROG_TYPE_TRACING
    STRUCT_OPS = 27  # BPF_PROG_TYPE_STRUCT_OPS
    EXT = 28  # BPF_PROG_TYPE_EXT
    LSM = 29  # BPF_PROG_TYPE_LSM
    SK_LOOKUP = 30  # BPF_PROG_TYPE_SK_LOOKUP
    SYSCALL = 31  # BPF_PROG_TYPE_SYSCALL
    NETFILTER = 32  # BPF_PROG_TYPE_NETFILTER


class MapType(IntEnum):
    """The kind of a BPF map (``enum bpf_map_type``)."""

    UNSPEC = 0  # BPF_MAP_TYPE_UNSPEC
    HASH = 1  # BPF_MAP_TYPE_HASH
    ARRAY = 2  # BPF_MAP_TYPE_ARRAY
    PROG_ARRAY = 3  # BPF_MAP_TYPE_PROG_ARRAY
    PERF_EVENT_ARRAY = 4  # BPF_MAP_TYPE_PERF_EVENT_ARRAY
    PERCPU_HASH = 5  # BPF_MAP_TYPE_PERCPU_HASH
    PERCPU_ARRAY = 6  # BPF_MAP_TYPE_PERCPU_ARRAY
    STACK_TRACE = 7  # BPF_MAP_TYPE_STACK_TRACE
    CGROUP_ARRAY = 8  # BPF_MAP_TYPE_CGROUP_ARRAY
    LRU_HASH = 9  # BPF_MAP_TYPE_LRU_HASH
    LRU_PERCPU_HASH = 10  # BPF_MAP_TYPE_LRU_PERCPU_HASH
    LPM_TRIE = 11  # BPF_MAP_TYPE_LPM_TRIE
    ARRAY_OF_MAPS = 12  # BPF_MAP_TYPE_ARRAY_OF_MAPS
    HASH_OF_MAPS = 13  # BPF_MAP_TYPE_HASH_OF_MAPS
    DEVMAP = 14  # BPF_MAP_TYPE_DEVMAP
    SOCKMAP = 15  # BPF_MAP_TYPE_SOCKMAP
    CPUMAP = 16  # BPF_MAP_TYPE_CPUMAP
    XSKMAP = 17  # BPF_MAP_TYPE_XSKMAP
    SOCKHASH = 18  # BPF_MAP_TYPE_SOCKHASH
    CGROUP_STORAGE = 19  # BPF_MAP_TYPE_CGROUP_STORAGE
    CGROUP_STORAGE_DEPRECATED = 19  # BPF_MAP_TYPE_CGROUP_STORAGE_DEPRECATED (alias)
    REUSEPORT_SOCKARRAY = 20  # BPF_MAP_TYPE_REUSEPORT_SOCKARRAY
    PERCPU_CGROUP_STORAGE = 21  # BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE
    PERCPU_CGROUP_STORAGE_DEPRECATED = 21  # BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE_DEPRECATED (alias)
    QUEUE = 22  # BPF_MAP_TYPE_QUEUE
    STACK = 23  # BPF_MAP_TYPE_STACK
    SK_STORAGE = 24  # BPF_MAP_TYPE_SK_STORAGE
    DEVMAP_HASH = 25  # BPF_MAP_TYPE_DEVMAP_HASH
    STRUCT_OPS = 26  # BPF_MAP_TYPE_STRUCT_OPS
    RINGBUF = 27  # BPF_MAP_TYPE_RINGBUF
    INODE_STORAGE = 28  # BPF_MAP_TYPE_INODE_STORAGE
    TASK_STORAGE = 29  # BPF_MAP_TYPE_TASK_STORAGE
    BLOOM_FILTER = 30  # BPF_MAP_TYPE_BLOOM_FILTER
    USER_RINGBUF = 31  # BPF_MAP_TYPE_USER_RINGBUF
    CGRP_STORAGE = 32  # BPF_MAP_TYPE_CGRP_STORAGE
    ARENA = 33  # BPF_MAP_TYPE_ARENA


class MapFlags(IntFlag):
    """``map_flags`` of ``BPF_MAP_CREATE`` (``BPF_F_*``); also :attr:`MapSpec.flags`."""

    NO_PREALLOC = 1 << 0  # BPF_F_NO_PREALLOC
    NO_COMMON_LRU = 1 << 1  # BPF_F_NO_COMMON_LRU
    NUMA_NODE = 1 << 2  # BPF_F_NUMA_NODE
    RDONLY = 1 << 3  # BPF_F_RDONLY
    WRONLY = 1 << 4  # BPF_F_WRONLY
    STACK_BUILD_ID = 1 << 5  # BPF_F_STACK_BUILD_ID
    ZERO_SEED = 1 << 6  # BPF_F_ZERO_SEED
    RDONLY_PROG = 1 << 7  # BPF_F_RDONLY_PROG
    WRONLY_PROG = 1 << 8  # BPF_F_WRONLY_PROG
    CLONE = 1 << 9  # BPF_F_CLONE
    MMAPABLE = 1 << 10  # BPF_F_MMAPABLE
    PRESERVE_ELEMS = 1 << 11  # BPF_F_PRESERVE_ELEMS
    INNER_MAP = 1 << 12  # BPF_F_INNER_MAP
    LINK = 1 << 13  # BPF_F_LINK
    PATH_FD = 1 << 14  # BPF_F_PATH_FD
    VTYPE_BTF_OBJ_FD = 1 << 15  # BPF_F_VTYPE_BTF_OBJ_FD
    TOKEN_FD = 1 << 16  # BPF_F_TOKEN_FD
    SEGV_ON_FAULT = 1 << 17  # BPF_F_SEGV_ON_FAULT
    NO_USER_CONV = 1 << 18  # BPF_F_NO_USER_CONV


class AttachType(IntEnum):
    """Where a program attaches (``enum bpf_attach_type``); also a program's expected attach type."""

    CGROUP_INET_INGRESS = 0  # BPF_CGROUP_INET_INGRESS
    CGROUP_INET_EGRESS = 1  # BPF_CGROUP_INET_EGRESS
    CGROUP_INET_SOCK_CREATE = 2  # BPF_CGROUP_INET_SOCK_CREATE
    CGROUP_SOCK_OPS = 3  # BPF_CGROUP_SOCK_OPS
    SK_SKB_STREAM_PARSER = 4  # BPF_SK_SKB_STREAM_PARSER
    SK_SKB_STREAM_VERDICT = 5  # BPF_SK_SKB_STREAM_VERDICT
    CGROUP_DEVICE = 6  # BPF_CGROUP_DEVICE
    SK_MSG_VERDICT = 7  # BPF_SK_MSG_VERDICT
    CGROUP_INET4_BIND = 8  # BPF_CGROUP_INET4_BIND
    CGROUP_INET6_BIND = 9  # BPF_CGROUP_INET6_BIND
    CGROUP_INET4_CONNECT = 10  # BPF_CGROUP_INET4_CONNECT
    CGROUP_INET6_CONNECT = 11  # BPF_CGROUP_INET6_CONNECT
    CGROUP_INET4_POST_BIND = 12  # BPF_CGROUP_INET4_POST_BIND
    CGROUP_INET6_POST_BIND = 13  # BPF_CGROUP_INET6_POST_BIND
    CGROUP_UDP4_SENDMSG = 14  # BPF_CGROUP_UDP4_SENDMSG
    CGROUP_UDP6_SENDMSG = 15  # BPF_CGROUP_UDP6_SENDMSG
    LIRC_MODE2 = 16  # BPF_LIRC_MODE2
    FLOW_DISSECTOR = 17  # BPF_FLOW_DISSECTOR
    CGROUP_SYSCTL = 18  # BPF_CGROUP_SYSCTL
    CGROUP_UDP4_RECVMSG = 19  # BPF_CGROUP_UDP4_RECVMSG
    CGROUP_UDP6_RECVMSG = 20  # BPF_CGROUP_UDP6_RECVMSG
    CGROUP_GETSOCKOPT = 21  # BPF_CGROUP_GETSOCKOPT
    CGROUP_SETSOCKOPT = 22  # BPF_CGROUP_SETSOCKOPT
    TRACE_RAW_TP = 23  # BPF_TRACE_RAW_TP
    TRACE_FENTRY = 24  # BPF_TRACE_FENTRY
    TRACE_FEXIT = 25  # BPF_TRACE_FEXIT
    MODIFY_RETURN = 26  # BPF_MODIFY_RETURN
    LSM_MAC = 27  # BPF_LSM_MAC
    TRACE_ITER = 28  # BPF_TRACE_ITER
    CGROUP_INET4_GETPEERNAME = 29  # BPF_CGROUP_INET4_GETPEERNAME
    CGROUP_INET6_GETPEERNAME = 30  # BPF_CGROUP_INET6_GETPEERNAME
    CGROUP_INET4_GETSOCKNAME = 31  # BPF_CGROUP_INET4_GETSOCKNAME
    CGROUP_INET6_GETSOCKNAME = 32  # BPF_CGROUP_INET6_GETSOCKNAME
    XDP_DEVMAP = 33  # BPF_XDP_DEVMAP
    CGROUP_INET_SOCK_RELEASE = 34  # BPF_CGROUP_INET_SOCK_RELEASE
    XDP_CPUMAP = 35  # BPF_XDP_CPUMAP
    SK_LOOKUP = 36  # BPF_SK_LOOKUP
    XDP = 37  # BPF_XDP
    SK_SKB_VERDICT = 38  # BPF_SK_SKB_VERDICT
    SK_REUSEPORT_SELECT = 39  # BPF_SK_REUSEPORT_SELECT
    SK_REUSEPORT_SELECT_OR_MIGRATE = 40  # BPF_SK_REUSEPORT_SELECT_OR_MIGRATE
    PERF_EVENT = 41  # BPF_PERF_EVENT
    TRACE_KPROBE_MULTI = 42  # BPF_TRACE_KPROBE_MULTI
    LSM_CGROUP = 43  # BPF_LSM_CGROUP
    STRUCT_OPS = 44  # BPF_STRUCT_OPS
    NETFILTER = 45  # BPF_NETFILTER
    TCX_INGRESS = 46  # BPF_TCX_INGRESS
    TCX_EGRESS = 47  # BPF_TCX_EGRESS
    TRACE_UPROBE_MULTI = 48  # BPF_TRACE_UPROBE_MULTI
    CGROUP_UNIX_CONNECT = 49  # BPF_CGROUP_UNIX_CONNECT
    CGROUP_UNIX_SENDMSG = 50  # BPF_CGROUP_UNIX_SENDMSG
    CGROUP_UNIX_RECVMSG = 51  # BPF_CGROUP_UNIX_RECVMSG
    CGROUP_UNIX_GETPEERNAME = 52  # BPF_CGROUP_UNIX_GETPEERNAME
    CGROUP_UNIX_GETSOCKNAME = 53  # BPF_CGROUP_UNIX_GETSOCKNAME
    NETKIT_PRIMARY = 54  # BPF_NETKIT_PRIMARY
    NETKIT_PEER = 55  # BPF_NETKIT_PEER
    TRACE_KPROBE_SESSION = 56  # BPF_TRACE_KPROBE_SESSION
    TRACE_UPROBE_SESSION = 57  # BPF_TRACE_UPROBE_SESSION


# --- specs ----------------------------------------------------------------------------------------


class PinType(IntEnum):
    """``pinning`` of a BTF-defined map (libbpf's ``enum libbpf_pin_type``)."""

    NONE = 0  # LIBBPF_PIN_NONE
    BY_NAME = 1  # LIBBPF_PIN_BY_NAME: pinned at <pin root>/<map name>, reused when present


class RelocKind(enum.Enum):
    """What a placeholder instruction of a :class:`ProgramSpec` refers to."""

    MAP = "map"
    """``lddw rX, map`` -> ``BPF_PSEUDO_MAP_FD`` (src 1), imm = the map."""
    MAP_VALUE = "map_value"
    """``lddw rX, map + off`` -> ``BPF_PSEUDO_MAP_VALUE`` (src 2): a global variable / data section."""
    KSYM = "ksym"
    """``lddw rX, extern __ksym`` -> ``BPF_PSEUDO_BTF_ID`` (src 3): a kernel variable by BTF id."""
    KFUNC = "kfunc"
    """``call extern_func`` -> ``BPF_PSEUDO_KFUNC_CALL`` (src 2): a kernel function by BTF id."""


@dataclass
class Relocation:
    """A placeholder to fill at load time: ``symbol`` is a map name (MAP / MAP_VALUE, the
    ``CollectionSpec.maps`` key) or an extern's name (KSYM / KFUNC); ``offset`` is the byte
    offset into the map value for MAP_VALUE. ``weak`` externs may be missing (libbpf: 0)."""

    kind: RelocKind
    symbol: str
    offset: int = 0
    weak: bool = False


@dataclass
class MapSpec:
    """What a map will be: ``BPF_MAP_CREATE`` attributes plus BTF and initial contents.

    Attributes:
        name: the map's name in the object (the ``CollectionSpec.maps`` key): the variable
            name of a ``.maps`` / ``maps`` definition, or the section name of global data
            (``.data``, ``.rodata``, ``.bss``, ``.data.foo``, ``.kconfig``).
        type, key_size, value_size, max_entries, flags, map_extra, numa_node: as in
            ``union bpf_attr`` for ``BPF_MAP_CREATE``.
        pinning: libbpf's pinning of the map.
        key_type_id, value_type_id: BTF type ids in ``btf`` (0: no BTF type).
        btf: the object's BTF (shared with the collection), or None.
        inner: the inner map template of ARRAY_OF_MAPS / HASH_OF_MAPS.
        contents: initial ``(key, value)`` pairs written after creation (global data: one pair
            with key ``0`` as 4 bytes and the section's bytes as value).
        slots: initial values of PROG_ARRAY (slot -> program name) and of ARRAY_OF_MAPS /
            HASH_OF_MAPS (slot -> map name), from ``.values = { ... }``.
        freeze: freeze after filling (``.rodata``, ``.kconfig``: read-only for programs).
        section: the ELF section the definition came from.
    """

    name: str
    type: MapType
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    map_extra: int = 0
    numa_node: int = 0
    pinning: PinType = PinType.NONE
    key_type_id: int = 0
    value_type_id: int = 0
    btf: BTFSpec | None = field(default=None, repr=False, compare=False)
    inner: MapSpec | None = None
    contents: list[tuple[bytes, bytes]] = field(default_factory=list)
    slots: dict[int, str] = field(default_factory=dict)
    freeze: bool = False
    section: str = ""

    def copy(self) -> MapSpec:
        """A deep copy (the BTF is immutable and shared)."""
        btf, self.btf = self.btf, None
        try:
            clone = _copy.deepcopy(self)
        finally:
            self.btf = btf
        clone.btf = btf
        if clone.inner is not None and self.inner is not None:
            clone.inner.btf = self.inner.btf
        return clone


@dataclass
class ProgramSpec:
    """What a program will be: its type and hook, linked instructions and what to relocate.

    Attributes:
        name: the function name (the ``CollectionSpec.programs`` key).
        section: the ``SEC()`` name (``"xdp"``, ``"tracepoint/syscalls/sys_enter_execve"``).
        type: the program type from the section name (libbpf's table).
        attach_type: the expected attach type (``expected_attach_type``), or None.
        attach_to: what the section name says to attach to (``"syscalls/sys_enter_execve"``,
            a function name, a cgroup hook ...), empty when the section says nothing.
        instructions: linked instructions (subprograms appended, calls resolved).
        license: the object's license string.
        kernel_version: the object's ``version`` section (0 when absent).
        flags: ``prog_flags`` (``BPF_F_SLEEPABLE`` for ``.s`` sections, ``BPF_F_XDP_HAS_FRAGS``).
        relocations: slot index -> placeholder to fill at load time.
        func_info, line_info, core_relos: ``.BTF.ext`` records of this program (slots).
        btf: the object's BTF, or None.
        autoload: load this program with the collection (libbpf's ``autoload``).
    """

    name: str
    section: str
    type: ProgramType
    instructions: Program
    attach_type: AttachType | None = None
    attach_to: str = ""
    license: str = ""
    kernel_version: int = 0
    flags: int = 0
    relocations: dict[int, Relocation] = field(default_factory=dict)
    func_info: list[FuncInfo] = field(default_factory=list)
    line_info: list[LineInfo] = field(default_factory=list)
    core_relos: list[CoreRelo] = field(default_factory=list)
    btf: BTFSpec | None = field(default=None, repr=False, compare=False)
    autoload: bool = True

    def copy(self) -> ProgramSpec:
        """A deep copy (instructions and BTF are immutable and shared)."""
        return ProgramSpec(
            name=self.name,
            section=self.section,
            type=self.type,
            instructions=self.instructions,
            attach_type=self.attach_type,
            attach_to=self.attach_to,
            license=self.license,
            kernel_version=self.kernel_version,
            flags=self.flags,
            relocations={k: _copy.copy(v) for k, v in self.relocations.items()},
            func_info=list(self.func_info),
            line_info=list(self.line_info),
            core_relos=list(self.core_relos),
            btf=self.btf,
            autoload=self.autoload,
        )


@dataclass
class VariableSpec:
    """A global variable: ``size`` bytes at ``offset`` in the value of map ``map``.

    ``extern`` marks a ``.kconfig`` extern (``LINUX_KERNEL_VERSION``, ``CONFIG_*``) that the
    engine fills at load time; ``weak`` ones may stay unknown (0).
    """

    name: str
    map: str
    offset: int
    size: int
    type_id: int = 0
    extern: bool = False
    weak: bool = False


@dataclass
class CollectionSpec:
    """Everything an object file describes: programs, maps, global variables and BTF.

    A dumb container: engines read it, users edit it before loading.
    """

    programs: dict[str, ProgramSpec] = field(default_factory=dict)
    maps: dict[str, MapSpec] = field(default_factory=dict)
    variables: dict[str, VariableSpec] = field(default_factory=dict)
    btf: BTFSpec | None = field(default=None, repr=False, compare=False)
    license: str = ""
    kernel_version: int = 0
    byteorder: str = "little"

    def copy(self) -> CollectionSpec:
        """A deep copy: editing the copy never changes this spec."""
        return CollectionSpec(
            programs={k: v.copy() for k, v in self.programs.items()},
            maps={k: v.copy() for k, v in self.maps.items()},
            variables={k: _copy.copy(v) for k, v in self.variables.items()},
            btf=self.btf,
            license=self.license,
            kernel_version=self.kernel_version,
            byteorder=self.byteorder,
        )

    def set_variable(self, name: str, value: bytes | int) -> None:
        """Set global variable ``name`` before loading (a skeleton's ``skel->rodata->x = v``).

        An ``int`` is encoded in the variable's size and the object's byte order.

        Raises:
            KeyError: no such variable.
            ValueError: the value does not fit the variable.
        """
        var = self.variables[name]
        if isinstance(value, int):
            try:
                data = value.to_bytes(var.size, self.byteorder, signed=value < 0)  # type: ignore[arg-type]
            except OverflowError:
                raise ValueError(f"{value} does not fit variable {name!r} of {var.size} bytes") from None
        else:
            data = bytes(value)
            if len(data) != var.size:
                raise ValueError(f"variable {name!r} is {var.size} bytes, got {len(data)}")
        mspec = self.maps[var.map]
        key, old = mspec.contents[0] if mspec.contents else (bytes(4), bytes(mspec.value_size))
        new = old[: var.offset] + data + old[var.offset + var.size :]
        mspec.contents[:1] = [(key, new)]

    def get_variable(self, name: str) -> bytes:
        """The initial bytes of global variable ``name``."""
        var = self.variables[name]
        mspec = self.maps[var.map]
        value = mspec.contents[0][1] if mspec.contents else bytes(mspec.value_size)
        return value[var.offset : var.offset + var.size]
