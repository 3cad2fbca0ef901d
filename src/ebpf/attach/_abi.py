"""The attach layer's edge to the kernel ABI: link attrs, ``perf_event_open``, ``mount`` and ioctls.

Above the kernel line; the only module of ``ebpf.attach`` that uses ctypes. ``bpf(2)``
itself still goes through the one choke point, :func:`ebpf.kernel._syscall.bpf`; this
module only describes the ``union bpf_attr`` variants for the link commands and makes the
two other system calls attaching needs (``perf_event_open(2)`` and ``mount(2)``).

Rule 1: every number and layout is the UAPI's as of Linux 6.18 (``include/uapi/linux/bpf.h``,
``include/uapi/linux/perf_event.h``); ``tests/attach/test_abi.py`` pins the sizes.

Rule 2: unions whose members differ per attach kind are a raw byte area that the caller
fills with :func:`struct.pack_into` at the documented offsets, instead of one ctypes class
per member.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import fcntl
import functools
import os
import platform
import struct
from enum import IntEnum

from ebpf.errors import NotSupportedError, SyscallError
from ebpf.kernel._syscall import bpf
from ebpf.kernel.uapi import Cmd

__all__ = [
    "IterCreateAttr",
    "LinkCreateAttr",
    "LinkDetachAttr",
    "LinkUpdateAttr",
    "ObjPinAttr",
    "PerfEventAttr",
    "PerfType",
    "RawTracepointOpenAttr",
    "cstr",
    "link_create",
    "mount",
    "perf_event_open",
    "perf_ioctl",
]

_u32 = ctypes.c_uint32
_s32 = ctypes.c_int32
_u64 = ctypes.c_uint64


class LinkCreateAttr(ctypes.Structure):
    """``union bpf_attr`` for ``BPF_LINK_CREATE``; ``extra`` is the per-kind union at offset 16."""

    _fields_ = [
        ("prog_fd", _u32),  # union with map_fd
        ("target_fd", _u32),  # union with target_ifindex
        ("attach_type", _u32),
        ("flags", _u32),
        ("extra", ctypes.c_uint8 * 48),
    ]


class LinkUpdateAttr(ctypes.Structure):
    """``union bpf_attr`` for ``BPF_LINK_UPDATE``."""

    _fields_ = [("link_fd", _u32), ("new_prog_fd", _u32), ("flags", _u32), ("old_prog_fd", _u32)]


class LinkDetachAttr(ctypes.Structure):
    """``union bpf_attr`` for ``BPF_LINK_DETACH``."""

    _fields_ = [("link_fd", _u32)]


class ObjPinAttr(ctypes.Structure):
    """``union bpf_attr`` for ``BPF_OBJ_PIN`` / ``BPF_OBJ_GET``."""

    _fields_ = [("pathname", _u64), ("bpf_fd", _u32), ("file_flags", _u32), ("path_fd", _s32)]


class RawTracepointOpenAttr(ctypes.Structure):
    """``union bpf_attr`` for ``BPF_RAW_TRACEPOINT_OPEN``."""

    _fields_ = [("name", _u64), ("prog_fd", _u32), ("_pad", _u32), ("cookie", _u64)]


class IterCreateAttr(ctypes.Structure):
    """``union bpf_attr`` for ``BPF_ITER_CREATE``."""

    _fields_ = [("link_fd", _u32), ("flags", _u32)]


class LinkInfoAttr(ctypes.Structure):
    """``struct bpf_link_info``: a 16-byte header and the per-type union (``info``)."""

    _fields_ = [("type", _u32), ("id", _u32), ("prog_id", _u32), ("_pad", _u32), ("info", _u64 * 6)]


def link_info_raw(fd: int, union: bytes = b"") -> tuple[int, int, int, bytes]:
    """``BPF_OBJ_GET_INFO_BY_FD`` on a link: ``(type, id, prog_id, union bytes)``.

    ``union`` pre-fills the per-type area (buffer pointers and lengths for names).
    """
    from ebpf.kernel.uapi import ObjInfoAttr

    info = LinkInfoAttr()
    if union:
        ctypes.memmove(ctypes.addressof(info.info), union, min(len(union), ctypes.sizeof(info.info)))
    attr = ObjInfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    bpf(Cmd.OBJ_GET_INFO_BY_FD, attr)
    return int(info.type), int(info.id), int(info.prog_id), bytes(info.info)


class CString:
    """A NUL-terminated buffer whose address can go into an attr (kept alive by the holder)."""

    __slots__ = ("buf",)

    def __init__(self, text: str | bytes | int) -> None:
        if isinstance(text, int):
            self.buf = ctypes.create_string_buffer(text)
        else:
            self.buf = ctypes.create_string_buffer(text.encode() if isinstance(text, str) else text)

    @property
    def address(self) -> int:
        return ctypes.addressof(self.buf)

    @property
    def value(self) -> bytes:
        return self.buf.value


def cstr(text: str | bytes | int) -> CString:
    """A C string (or, for an ``int``, a zeroed buffer of that size) to pass by address."""
    return CString(text)


class U64Array:
    """A ``__u64[]`` buffer whose address can go into an attr."""

    __slots__ = ("buf",)

    def __init__(self, values: list[int]) -> None:
        self.buf = (_u64 * max(1, len(values)))(*values)

    @property
    def address(self) -> int:
        return ctypes.addressof(self.buf)


def link_create(prog_fd: int, target_fd: int, attach_type: int, flags: int = 0, extra: bytes = b"") -> int:
    """``BPF_LINK_CREATE``; returns the new link fd (the caller owns it)."""
    attr = LinkCreateAttr(prog_fd=prog_fd, target_fd=target_fd, attach_type=attach_type, flags=flags)
    if extra:
        ctypes.memmove(ctypes.addressof(attr.extra), extra, len(extra))
    return bpf(Cmd.LINK_CREATE, attr)


# --- perf_event_open(2) ------------------------------------------------------------------------


class PerfType(IntEnum):
    """``enum perf_type_id``: fixed PMU types (dynamic PMUs such as uprobe read theirs from sysfs)."""

    HARDWARE = 0  # PERF_TYPE_HARDWARE
    SOFTWARE = 1  # PERF_TYPE_SOFTWARE
    TRACEPOINT = 2  # PERF_TYPE_TRACEPOINT
    HW_CACHE = 3  # PERF_TYPE_HW_CACHE
    RAW = 4  # PERF_TYPE_RAW
    BREAKPOINT = 5  # PERF_TYPE_BREAKPOINT


class PerfEventAttr(ctypes.Structure):
    """``struct perf_event_attr`` (``PERF_ATTR_SIZE_VER8``, 136 bytes); ``flags`` holds the bit fields."""

    _fields_ = [
        ("type", _u32),
        ("size", _u32),
        ("config", _u64),
        ("sample_period", _u64),  # union with sample_freq
        ("sample_type", _u64),
        ("read_format", _u64),
        ("flags", _u64),  # disabled:1, inherit:1, ..., freq (bit 10), ...
        ("wakeup_events", _u32),
        ("bp_type", _u32),
        ("config1", _u64),  # kprobe_func / uprobe_path / bp_addr
        ("config2", _u64),  # probe_offset / kprobe_addr / bp_len
        ("branch_sample_type", _u64),
        ("sample_regs_user", _u64),
        ("sample_stack_user", _u32),
        ("clockid", _s32),
        ("sample_regs_intr", _u64),
        ("aux_watermark", _u32),
        ("sample_max_stack", ctypes.c_uint16),
        ("_reserved_2", ctypes.c_uint16),
        ("aux_sample_size", _u32),
        ("_reserved_3", _u32),
        ("sig_data", _u64),
        ("config3", _u64),
    ]


PERF_FLAG_DISABLED = 1 << 0
PERF_FLAG_FREQ = 1 << 10
PERF_FLAG_FD_CLOEXEC = 1 << 3  # perf_event_open flags argument

_SYS_PERF_EVENT_OPEN = {"x86_64": 298, "amd64": 298, "aarch64": 241, "arm64": 241, "riscv64": 241}

# _IO('$', n) / _IOW('$', 8, __u32): the perf ioctls attaching needs.
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_EVENT_IOC_SET_BPF = 0x40042408


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _sysno(table: dict[str, int], what: str) -> int:
    machine = platform.machine().lower()
    try:
        return table[machine]
    except KeyError:
        raise NotSupportedError(what, detail=f"the syscall number for {machine!r} is not known") from None


def perf_event_open(attr: PerfEventAttr, pid: int, cpu: int, group_fd: int = -1, flags: int = 0) -> int:
    """``perf_event_open(2)`` with ``PERF_FLAG_FD_CLOEXEC``; returns the event fd.

    Raises:
        SyscallError: with ``cmd="perf_event_open"`` and the errno.
    """
    attr.size = ctypes.sizeof(PerfEventAttr)
    fn = _libc().syscall
    fn.restype = ctypes.c_long
    while True:
        ret = fn(
            ctypes.c_long(_sysno(_SYS_PERF_EVENT_OPEN, "perf_event_open")),
            ctypes.byref(attr),
            ctypes.c_int(pid),
            ctypes.c_int(cpu),
            ctypes.c_int(group_fd),
            ctypes.c_ulong(flags | PERF_FLAG_FD_CLOEXEC),
        )
        if ret >= 0:
            return int(ret)
        err = ctypes.get_errno()
        if err != _errno.EINTR:
            raise SyscallError("perf_event_open", err, _perf_hint(err))


def _perf_hint(err: int) -> str | None:
    if err == _errno.EACCES or err == _errno.EPERM:
        paranoid = _read("/proc/sys/kernel/perf_event_paranoid")
        return f"perf events denied (kernel.perf_event_paranoid = {paranoid}, euid {os.geteuid()})"
    if err == _errno.ENOENT:
        return "the PMU or event does not exist (config out of range, or no such hardware counter)"
    if err == _errno.EINVAL:
        return "the kernel rejected the perf_event_attr (unknown type/config, bad offset or path)"
    return None


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def perf_ioctl(fd: int, request: int, arg: int = 0) -> None:
    """``ioctl(fd, request, arg)`` on a perf event fd, as a :class:`SyscallError` on failure."""
    try:
        fcntl.ioctl(fd, request, arg)
    except OSError as err:
        raise SyscallError("ioctl(perf event)", err.errno or _errno.EIO) from None


def mount(source: str, target: str, fstype: str) -> None:
    """``mount(2)`` a pseudo file system (tracefs, bpf, securityfs) with no flags.

    Raises:
        SyscallError: with ``cmd="mount"`` (EPERM without CAP_SYS_ADMIN).
    """
    fn = _libc().mount
    fn.restype = ctypes.c_int
    ret = fn(source.encode(), target.encode(), fstype.encode(), ctypes.c_ulong(0), None)
    if ret != 0:
        err = ctypes.get_errno()
        raise SyscallError("mount", err, f"could not mount {fstype} at {target}")


def pack_u64s(*values: int) -> bytes:
    """Little helper for the ``extra`` union: native-endian u64 values back to back."""
    return struct.pack(f"={len(values)}Q", *values)


def map_update(map_fd: int, key: bytes, value: bytes) -> None:
    """``BPF_MAP_UPDATE_ELEM`` with ``BPF_ANY`` (USDT spec maps)."""
    from ebpf.kernel.uapi import MapElemAttr

    kbuf = ctypes.create_string_buffer(key, len(key))
    vbuf = ctypes.create_string_buffer(value, len(value))
    bpf(
        Cmd.MAP_UPDATE_ELEM,
        MapElemAttr(map_fd=map_fd, key=ctypes.addressof(kbuf), value=ctypes.addressof(vbuf)),
    )


def map_delete(map_fd: int, key: bytes) -> None:
    """``BPF_MAP_DELETE_ELEM`` (USDT ip map cleanup); a missing key is not an error."""
    from ebpf.kernel.uapi import MapElemAttr

    kbuf = ctypes.create_string_buffer(key, len(key))
    try:
        bpf(Cmd.MAP_DELETE_ELEM, MapElemAttr(map_fd=map_fd, key=ctypes.addressof(kbuf)))
    except SyscallError as err:
        if err.errno != _errno.ENOENT:
            raise
