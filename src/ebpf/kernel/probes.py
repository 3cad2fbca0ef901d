"""What this kernel supports: program types, map types, helpers and attach types, probed by asking it.

Kernel layer (calls bpf(2)); used by ``ebpf features`` (like ``bpftool feature probe``).

Each probe performs the smallest real request and reads the kernel's answer, never a list of
versions:

* **program type**: load ``r0 = 0; exit`` (with the expected attach type that type needs).
  Loaded, or rejected *with* a verifier log (the verifier ran, so the type exists): supported.
  ``EINVAL`` with an empty log (``find_prog_type`` failed): unsupported. ``EPERM``/``EACCES``:
  the type exists but this process was refused; reported as ``refused`` with the errno and the
  lockdown mode read from securityfs (never as "unsupported").
* **map type**: create a small map with attributes valid for the type (BTF for local-storage
  maps, an inner map for map-in-map). Created: supported; ``EINVAL``: unsupported;
  ``EPERM``: refused.
* **helper** (per program type): load ``call N; exit``; the verifier's "invalid func" /
  "unknown func" / "cannot use helper" / "not supported" messages mean unavailable, any other
  outcome (success, or a complaint about the arguments) means available.
* **attach type**: ``BPF_PROG_QUERY`` on a target of the right kind (the root cgroup v2, this
  network namespace, the loopback device); the kernel answers ``EINVAL`` for attach types it
  does not know. Attach types with no queryable target are reported as ``not probed``.

Results are cached per process (:func:`functools.cache`); a full probe takes about a second.
"""

from __future__ import annotations

import ctypes
import enum
import errno as _errno
import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass

from ebpf.errors import NotSupportedError, SyscallError
from ebpf.kernel._syscall import _lockdown_mode, bpf
from ebpf.kernel.uapi import Cmd, MapCreateAttr, ProgLoadAttr
from ebpf.spec import AttachType, MapType, ProgramType

__all__ = [
    "MIN_KERNEL_MAP",
    "MIN_KERNEL_PROG",
    "Probe",
    "Status",
    "probe_attach_type",
    "probe_helper",
    "probe_map_type",
    "probe_program_type",
    "require_map_type",
    "require_program_type",
]

_TRIVIAL = bytes.fromhex("b700000000000000 9500000000000000")
_LOG_SIZE = 4096


class Status(enum.Enum):
    SUPPORTED = "supported"
    UNSUPPORTED = "unsupported"
    REFUSED = "refused"  # exists, but this process may not use it (EPERM/EACCES): see detail
    NOT_PROBED = "not probed"


@dataclass(frozen=True)
class Probe:
    """The answer of one probe and what the kernel said."""

    status: Status
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status is Status.SUPPORTED


# The first kernel with each type (bpf.h history, as in bcc's docs/kernel-versions.md). Used only
# to fill NotSupportedError.min_kernel; a probe's answer never comes from this table.
MIN_KERNEL_PROG: dict[ProgramType, str] = {
    ProgramType.SOCKET_FILTER: "3.19", ProgramType.KPROBE: "4.1", ProgramType.SCHED_CLS: "4.1",
    ProgramType.SCHED_ACT: "4.1", ProgramType.TRACEPOINT: "4.7", ProgramType.XDP: "4.8",
    ProgramType.PERF_EVENT: "4.9", ProgramType.CGROUP_SKB: "4.10", ProgramType.CGROUP_SOCK: "4.10",
    ProgramType.LWT_IN: "4.10", ProgramType.LWT_OUT: "4.10", ProgramType.LWT_XMIT: "4.10",
    ProgramType.SOCK_OPS: "4.13", ProgramType.SK_SKB: "4.14", ProgramType.CGROUP_DEVICE: "4.15",
    ProgramType.SK_MSG: "4.17", ProgramType.RAW_TRACEPOINT: "4.17", ProgramType.CGROUP_SOCK_ADDR: "4.17",
    ProgramType.LWT_SEG6LOCAL: "4.18", ProgramType.LIRC_MODE2: "4.18", ProgramType.SK_REUSEPORT: "4.19",
    ProgramType.FLOW_DISSECTOR: "4.20", ProgramType.CGROUP_SYSCTL: "5.2",
    ProgramType.RAW_TRACEPOINT_WRITABLE: "5.2", ProgramType.CGROUP_SOCKOPT: "5.3", ProgramType.TRACING: "5.5",
    ProgramType.STRUCT_OPS: "5.6", ProgramType.EXT: "5.6", ProgramType.LSM: "5.7", ProgramType.SK_LOOKUP: "5.9",
    ProgramType.SYSCALL: "5.14", ProgramType.NETFILTER: "6.4",
}  # fmt: skip
MIN_KERNEL_MAP: dict[MapType, str] = {
    MapType.HASH: "3.19", MapType.ARRAY: "3.19", MapType.PROG_ARRAY: "4.2", MapType.PERF_EVENT_ARRAY: "4.3",
    MapType.PERCPU_HASH: "4.6", MapType.PERCPU_ARRAY: "4.6", MapType.STACK_TRACE: "4.6",
    MapType.CGROUP_ARRAY: "4.8", MapType.LRU_HASH: "4.10", MapType.LRU_PERCPU_HASH: "4.10",
    MapType.LPM_TRIE: "4.11", MapType.ARRAY_OF_MAPS: "4.12", MapType.HASH_OF_MAPS: "4.12",
    MapType.DEVMAP: "4.14", MapType.SOCKMAP: "4.14", MapType.CPUMAP: "4.15", MapType.XSKMAP: "4.18",
    MapType.SOCKHASH: "4.18", MapType.CGROUP_STORAGE: "4.19", MapType.REUSEPORT_SOCKARRAY: "4.19",
    MapType.PERCPU_CGROUP_STORAGE: "4.20", MapType.QUEUE: "4.20", MapType.STACK: "4.20",
    MapType.SK_STORAGE: "5.2", MapType.DEVMAP_HASH: "5.4", MapType.STRUCT_OPS: "5.6", MapType.RINGBUF: "5.8",
    MapType.INODE_STORAGE: "5.10", MapType.TASK_STORAGE: "5.11", MapType.BLOOM_FILTER: "5.16",
    MapType.USER_RINGBUF: "6.1", MapType.CGRP_STORAGE: "6.2", MapType.ARENA: "6.9",
}  # fmt: skip
# Types that exist only with a kernel option: "unsupported" on a new kernel is then legitimate.
_CONFIG: dict[object, str] = {
    ProgramType.LIRC_MODE2: "CONFIG_BPF_LIRC_MODE2",
    ProgramType.LWT_SEG6LOCAL: "CONFIG_IPV6_SEG6_BPF",
    ProgramType.LWT_IN: "CONFIG_LWTUNNEL_BPF",
    ProgramType.LWT_OUT: "CONFIG_LWTUNNEL_BPF",
    ProgramType.LWT_XMIT: "CONFIG_LWTUNNEL_BPF",
    ProgramType.LSM: "CONFIG_BPF_LSM",
    ProgramType.STRUCT_OPS: "CONFIG_BPF_JIT",
    ProgramType.NETFILTER: "CONFIG_NETFILTER_BPF_LINK",
    ProgramType.KPROBE: "CONFIG_BPF_EVENTS",
    MapType.XSKMAP: "CONFIG_XDP_SOCKETS",
    MapType.INODE_STORAGE: "CONFIG_BPF_LSM",
    MapType.STRUCT_OPS: "CONFIG_BPF_JIT",
    MapType.ARENA: "CONFIG_BPF_ARENA",
}

# Program types whose load needs an expected attach type, and the one to use.
_EXPECTED_ATTACH: dict[ProgramType, AttachType] = {
    ProgramType.CGROUP_SOCK_ADDR: AttachType.CGROUP_INET4_CONNECT,
    ProgramType.CGROUP_SOCKOPT: AttachType.CGROUP_GETSOCKOPT,
    ProgramType.SK_LOOKUP: AttachType.SK_LOOKUP,
    ProgramType.NETFILTER: AttachType.NETFILTER,
    ProgramType.LIRC_MODE2: AttachType.LIRC_MODE2,
}
# Helpers cannot be probed on these without a real attach target (BTF id / struct_ops).
_NO_HELPER_PROBE = {ProgramType.TRACING, ProgramType.EXT, ProgramType.LSM, ProgramType.STRUCT_OPS}
_HELPER_MISSING = (
    "invalid func ",
    "unknown func ",
    "cannot use helper",
    "not supported",
    "helper call might sleep",
)


def _refused(err: SyscallError) -> Probe:
    name = _errno.errorcode.get(err.errno or 0, str(err.errno))
    mode = _lockdown_mode()
    extra = f"; kernel lockdown mode is '{mode}'" if mode else ""
    return Probe(Status.REFUSED, f"{name} from the kernel{extra}")


def _load(
    prog_type: int, insns: bytes, *, expected_attach_type: int = 0, flags: int = 0
) -> tuple[SyscallError | None, str]:
    """Load and close; ``(None, log)`` on success, ``(error, log)`` on failure."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(_LOG_SIZE)
    attr = ProgLoadAttr(
        prog_type=prog_type,
        insn_cnt=len(insns) // 8,
        insns=ctypes.addressof(code),
        license=ctypes.addressof(lic),
        log_level=1,
        log_size=_LOG_SIZE,
        log_buf=ctypes.addressof(log),
        expected_attach_type=expected_attach_type,
        prog_flags=flags,
    )
    try:
        fd = bpf(Cmd.PROG_LOAD, attr)
    except SyscallError as err:
        return err, log.value.decode("utf-8", "replace")
    os.close(fd)
    return None, log.value.decode("utf-8", "replace")


@functools.cache
def probe_program_type(prog_type: ProgramType) -> Probe:
    """Whether the kernel knows ``prog_type`` (see the module docstring)."""
    eat = _EXPECTED_ATTACH.get(prog_type, 0)
    err, log = _load(prog_type, _TRIVIAL, expected_attach_type=eat)
    if err is None:
        return Probe(Status.SUPPORTED)
    if err.errno in (_errno.EPERM, _errno.EACCES):
        return _refused(err)
    if err.errno == _errno.EINVAL and not log.strip():
        return Probe(Status.UNSUPPORTED, "EINVAL with no verifier log: the kernel does not know this type")
    last = log.strip().splitlines()[-1] if log.strip() else ""
    return Probe(Status.SUPPORTED, f"known (a trivial program is rejected: {last or err})")


def _map_attr(map_type: MapType) -> MapCreateAttr:
    k, v, n, flags, extra = 4, 4, 1, 0, 0
    if map_type in (MapType.QUEUE, MapType.STACK, MapType.BLOOM_FILTER):
        k = 0
    elif map_type in (MapType.RINGBUF, MapType.USER_RINGBUF):
        k, v, n = 0, 0, os.sysconf("SC_PAGE_SIZE")
    elif map_type is MapType.ARENA:
        k, v, n, flags = 0, 0, 1, 1 << 10  # BPF_F_MMAPABLE
    elif map_type is MapType.STACK_TRACE:
        v = 8
    elif map_type is MapType.LPM_TRIE:
        k, flags = 8, 1  # BPF_F_NO_PREALLOC
    elif map_type in (MapType.CGROUP_STORAGE, MapType.PERCPU_CGROUP_STORAGE):
        k, n = 16, 0  # struct bpf_cgroup_storage_key
    elif map_type in (MapType.SK_STORAGE, MapType.INODE_STORAGE, MapType.TASK_STORAGE, MapType.CGRP_STORAGE):
        n, flags = 0, 1
    return MapCreateAttr(
        map_type=map_type, key_size=k, value_size=v, max_entries=n, map_flags=flags, map_extra=extra
    )


@functools.cache
def _int_btf_fd() -> int:
    """A kernel BTF holding ``int`` (type id 1), for local-storage map probes; kept for the process."""
    from ebpf import btf
    from ebpf.kernel.btf import KernelBTF

    spec = btf.Spec.build([btf.Int("int", 4, btf.IntEncoding.SIGNED, 0, 32)])
    kbtf = KernelBTF.load(spec)
    return kbtf._fd.disown()


def _create(attr: MapCreateAttr) -> None:
    os.close(bpf(Cmd.MAP_CREATE, attr))


@functools.cache
def probe_map_type(map_type: MapType) -> Probe:
    """Whether the kernel can create maps of ``map_type`` (see the module docstring)."""
    if map_type is MapType.STRUCT_OPS:
        return Probe(Status.NOT_PROBED, "needs a struct_ops value type from the kernel's BTF")
    attr = _map_attr(map_type)
    inner = -1
    try:
        if map_type in (
            MapType.SK_STORAGE,
            MapType.INODE_STORAGE,
            MapType.TASK_STORAGE,
            MapType.CGRP_STORAGE,
        ):
            attr.btf_fd = _int_btf_fd()
            attr.btf_key_type_id = 1
            attr.btf_value_type_id = 1
        if map_type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
            inner = bpf(Cmd.MAP_CREATE, _map_attr(MapType.ARRAY))
            attr.inner_map_fd = inner
        _create(attr)
    except SyscallError as err:
        if err.errno in (_errno.EPERM, _errno.EACCES):
            return _refused(err)
        if err.errno == _errno.EINVAL:
            return Probe(Status.UNSUPPORTED, "EINVAL creating a map valid for this type")
        return Probe(Status.UNSUPPORTED, f"{_errno.errorcode.get(err.errno or 0, err.errno)} creating a map")
    finally:
        if inner >= 0:
            os.close(inner)
    return Probe(Status.SUPPORTED)


@functools.cache
def probe_helper(prog_type: ProgramType, helper_id: int) -> Probe:
    """Whether programs of ``prog_type`` may call helper ``helper_id`` on this kernel."""
    if prog_type in _NO_HELPER_PROBE:
        return Probe(Status.NOT_PROBED, f"{prog_type.name.lower()} programs need an attach target to load")
    if not probe_program_type(prog_type).ok:
        return Probe(Status.UNSUPPORTED, "the program type is not available")
    call = (0x85).to_bytes(1, "little") + bytes(3) + helper_id.to_bytes(4, "little", signed=False)
    insns = _TRIVIAL[:8] + call + _TRIVIAL[8:]
    err, log = _load(prog_type, insns, expected_attach_type=_EXPECTED_ATTACH.get(prog_type, 0))
    if err is not None and err.errno in (_errno.EPERM, _errno.EACCES) and not log.strip():
        return _refused(err)
    for line in log.splitlines():
        if any(marker in line for marker in _HELPER_MISSING):
            return Probe(Status.UNSUPPORTED, line.strip())
    return Probe(Status.SUPPORTED)


@functools.cache
def _query_targets() -> dict[str, int]:
    fds: dict[str, int] = {}
    for path in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        try:
            with open("/proc/self/mounts") as f:
                mounted = any(line.split()[1] == path and line.split()[2] == "cgroup2" for line in f)
            if mounted:
                fds["cgroup"] = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                break
        except OSError:
            continue
    try:
        fds["netns"] = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        pass
    return fds


_NETNS_TYPES = {AttachType.FLOW_DISSECTOR, AttachType.SK_LOOKUP}
_IFINDEX_TYPES = {
    AttachType.TCX_INGRESS,
    AttachType.TCX_EGRESS,
    AttachType.NETKIT_PRIMARY,
    AttachType.NETKIT_PEER,
}
_CGROUP_TYPES = {t for t in AttachType if t.name.startswith("CGROUP_")} | {AttachType.LSM_CGROUP}


class _QueryAttr(ctypes.Structure):
    """``union bpf_attr``'s ``query`` member (``BPF_PROG_QUERY``)."""

    _fields_ = [
        ("target_fd", ctypes.c_uint32),  # union with target_ifindex
        ("attach_type", ctypes.c_uint32),
        ("query_flags", ctypes.c_uint32),
        ("attach_flags", ctypes.c_uint32),
        ("prog_ids", ctypes.c_uint64),
        ("prog_cnt", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("prog_attach_flags", ctypes.c_uint64),
        ("link_ids", ctypes.c_uint64),
        ("link_attach_flags", ctypes.c_uint64),
        ("revision", ctypes.c_uint64),
    ]


@functools.cache
def probe_attach_type(attach_type: AttachType) -> Probe:
    """Whether the kernel knows ``attach_type``, by querying a target of its kind."""
    targets = _query_targets()
    if attach_type in _CGROUP_TYPES:
        if "cgroup" not in targets:
            return Probe(Status.NOT_PROBED, "no cgroup v2 mount to query")
        target = targets["cgroup"]
    elif attach_type in _NETNS_TYPES:
        if "netns" not in targets:
            return Probe(Status.NOT_PROBED, "cannot open /proc/self/ns/net")
        target = targets["netns"]
    elif attach_type in _IFINDEX_TYPES:
        target = 1  # the loopback device's ifindex
    else:
        return Probe(Status.NOT_PROBED, "no queryable target for this attach type")
    attr = _QueryAttr(target_fd=target, attach_type=attach_type)
    try:
        bpf(Cmd.PROG_QUERY, attr)
    except SyscallError as err:
        if err.errno in (_errno.EPERM, _errno.EACCES):
            return _refused(err)
        if err.errno == _errno.EINVAL:
            return Probe(Status.UNSUPPORTED, "BPF_PROG_QUERY: EINVAL (unknown attach type)")
        if err.errno in (_errno.ENODEV, _errno.ENOENT, _errno.EOPNOTSUPP, 524):  # known, no such device
            return Probe(
                Status.SUPPORTED, f"known ({_errno.errorcode.get(err.errno or 0, err.errno)} from query)"
            )
        return Probe(Status.UNSUPPORTED, f"BPF_PROG_QUERY: {err}")
    return Probe(Status.SUPPORTED)


def _raise_for(probe: Probe, feature: str, key: object, min_kernel: str | None) -> None:
    if probe.ok:
        return
    config = _CONFIG.get(key)
    if probe.status is Status.UNSUPPORTED and config is None:
        raise NotSupportedError(feature, min_kernel=min_kernel, detail=probe.detail)
    detail = probe.detail + (f" (needs {config})" if config else "")
    raise NotSupportedError(feature, detail=detail)


def require_program_type(prog_type: ProgramType) -> None:
    """``None``, or :class:`NotSupportedError` naming the type and the first kernel that has it."""
    name = f"program type {prog_type.name}"
    _raise_for(probe_program_type(prog_type), name, prog_type, MIN_KERNEL_PROG.get(prog_type))


def require_map_type(map_type: MapType) -> None:
    """``None``, or :class:`NotSupportedError` naming the type and the first kernel that has it."""
    _raise_for(probe_map_type(map_type), f"map type {map_type.name}", map_type, MIN_KERNEL_MAP.get(map_type))


def probe_all_helpers(prog_type: ProgramType, helper_ids: Iterable[int]) -> dict[int, Probe]:
    return {h: probe_helper(prog_type, h) for h in helper_ids}
