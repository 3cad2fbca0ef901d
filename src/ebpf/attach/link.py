"""``Link``: one protocol for every attachment, and the BPF-link implementation most kinds share.

Above the kernel line. Calls bpf(2) (link commands) through :mod:`ebpf.kernel._syscall`.

Rule 1: every ``attach.*`` function returns a :class:`Link`: ``update`` (swap the program),
``pin``/``unpin`` (in bpffs), ``detach`` (break the attachment but keep the object),
``info`` (``BPF_OBJ_GET_INFO_BY_FD``) and ``close``. A link is a context manager and
``close()`` is idempotent.

Rule 2: closing a link detaches it unless it is pinned; a pinned link lives on in the
kernel until its pin is removed (``unpin()`` or ``os.unlink``) and every fd to it is closed.
A link that is garbage-collected while open is a leak: its :class:`~ebpf.kernel.FD` closes
it and emits a ``ResourceWarning``.

Rule 3: attachments that are not kernel links (socket filters, classic tc filters) follow
the same protocol; what they cannot do (pin, info) raises
:class:`~ebpf.errors.NotSupportedError` saying why.
"""

from __future__ import annotations

import errno as _errno
import os
import struct
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from ebpf.attach import _abi
from ebpf.errors import NotSupportedError, SyscallError
from ebpf.kernel._syscall import bpf
from ebpf.kernel.fd import FD
from ebpf.kernel.uapi import Cmd, GetIdAttr
from ebpf.spec import AttachType

__all__ = [
    "Closeable",
    "FDLink",
    "Link",
    "LinkInfo",
    "LinkType",
    "PerfEventType",
    "ProgramLike",
    "link_ids",
    "open_link",
    "open_pinned_link",
]


class Closeable(Protocol):
    """Anything a link owns besides its fd (a perf event fd, a tracefs probe)."""

    def close(self) -> None: ...


@runtime_checkable
class ProgramLike(Protocol):
    """A loaded program: anything with the program's fd (``ebpf.kernel.Program``)."""

    @property
    def fd(self) -> int: ...


class LinkType(IntEnum):
    """``enum bpf_link_type``."""

    UNSPEC = 0  # BPF_LINK_TYPE_UNSPEC
    RAW_TRACEPOINT = 1  # BPF_LINK_TYPE_RAW_TRACEPOINT
    TRACING = 2  # BPF_LINK_TYPE_TRACING
    CGROUP = 3  # BPF_LINK_TYPE_CGROUP
    ITER = 4  # BPF_LINK_TYPE_ITER
    NETNS = 5  # BPF_LINK_TYPE_NETNS
    XDP = 6  # BPF_LINK_TYPE_XDP
    PERF_EVENT = 7  # BPF_LINK_TYPE_PERF_EVENT
    KPROBE_MULTI = 8  # BPF_LINK_TYPE_KPROBE_MULTI
    STRUCT_OPS = 9  # BPF_LINK_TYPE_STRUCT_OPS
    NETFILTER = 10  # BPF_LINK_TYPE_NETFILTER
    TCX = 11  # BPF_LINK_TYPE_TCX
    UPROBE_MULTI = 12  # BPF_LINK_TYPE_UPROBE_MULTI
    NETKIT = 13  # BPF_LINK_TYPE_NETKIT
    SOCKMAP = 14  # BPF_LINK_TYPE_SOCKMAP


class PerfEventType(IntEnum):
    """``enum bpf_perf_event_type``: what a ``PERF_EVENT`` link is attached to."""

    UNSPEC = 0  # BPF_PERF_EVENT_UNSPEC
    UPROBE = 1  # BPF_PERF_EVENT_UPROBE
    URETPROBE = 2  # BPF_PERF_EVENT_URETPROBE
    KPROBE = 3  # BPF_PERF_EVENT_KPROBE
    KRETPROBE = 4  # BPF_PERF_EVENT_KRETPROBE
    TRACEPOINT = 5  # BPF_PERF_EVENT_TRACEPOINT
    EVENT = 6  # BPF_PERF_EVENT_EVENT


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """What the kernel reports about a link (``struct bpf_link_info``).

    ``details`` holds the fields of the link type's union member, by their UAPI names
    (``tp_name``, ``ifindex``, ``attach_type``, ``cgroup_id``, ``target_name``, ``map_id``,
    ``perf_event_type``, ``file_name``, ``offset``, ``cookie``, ...).
    """

    type: LinkType | int
    id: int
    prog_id: int
    details: Mapping[str, int | str] = field(default_factory=dict)


def _enum(cls: type[IntEnum], value: int) -> IntEnum | int:
    try:
        return cls(value)
    except ValueError:
        return value


_NAME_BUF = 4096


# ``struct bpf_link_info``'s union, per link type (include/uapi/linux/bpf.h, Linux 6.18):
# (member name, byte offset in the union, struct format, enum to convert to). A name is
# fetched in a second call with (pointer, length) at NAMES[type]. Checked against the kernel's
# BTF in tests/attach/test_abi.py.
_Field = tuple[str, int, str, "type[IntEnum] | None"]
FIELDS: dict[LinkType, tuple[_Field, ...]] = {
    LinkType.RAW_TRACEPOINT: (("cookie", 16, "Q", None),),
    LinkType.TRACING: (
        ("attach_type", 0, "I", AttachType),
        ("target_obj_id", 4, "I", None),
        ("target_btf_id", 8, "I", None),
        ("cookie", 16, "Q", None),
    ),
    LinkType.CGROUP: (("cgroup_id", 0, "Q", None), ("attach_type", 8, "I", AttachType)),
    LinkType.ITER: (("map_id", 12, "I", None),),
    LinkType.NETNS: (("netns_ino", 0, "I", None), ("attach_type", 4, "I", AttachType)),
    LinkType.XDP: (("ifindex", 0, "I", None),),
    LinkType.STRUCT_OPS: (("map_id", 0, "I", None),),
    LinkType.NETFILTER: (
        ("pf", 0, "I", None),
        ("hooknum", 4, "I", None),
        ("priority", 8, "i", None),
        ("flags", 12, "I", None),
    ),
    LinkType.KPROBE_MULTI: (("count", 8, "I", None), ("flags", 12, "I", None), ("missed", 16, "Q", None)),
    LinkType.UPROBE_MULTI: (("count", 36, "I", None), ("flags", 40, "I", None), ("pid", 44, "I", None)),
    LinkType.TCX: (("ifindex", 0, "I", None), ("attach_type", 4, "I", AttachType)),
    LinkType.NETKIT: (("ifindex", 0, "I", None), ("attach_type", 4, "I", AttachType)),
    LinkType.SOCKMAP: (("map_id", 0, "I", None), ("attach_type", 4, "I", AttachType)),
}
NAMES: dict[LinkType, tuple[str, int, int]] = {
    LinkType.RAW_TRACEPOINT: ("tp_name", 0, 8),
    LinkType.ITER: ("target_name", 0, 8),
    LinkType.UPROBE_MULTI: ("path", 0, 32),
}
# perf_event links: the member after ``type`` (offset 8 of the union) depends on it.
PERF_FIELDS: dict[PerfEventType, tuple[tuple[str, int, int] | None, tuple[_Field, ...]]] = {
    PerfEventType.UPROBE: (
        ("file_name", 8, 16),
        (("offset", 20, "I", None), ("cookie", 24, "Q", None), ("ref_ctr_offset", 32, "Q", None)),
    ),
    PerfEventType.KPROBE: (
        ("func_name", 8, 16),
        (
            ("offset", 20, "I", None),
            ("addr", 24, "Q", None),
            ("missed", 32, "Q", None),
            ("cookie", 40, "Q", None),
        ),
    ),
    PerfEventType.TRACEPOINT: (("tp_name", 8, 16), (("cookie", 24, "Q", None),)),
    PerfEventType.EVENT: (
        None,
        (("config", 8, "Q", None), ("type", 16, "I", None), ("cookie", 24, "Q", None)),
    ),
}
PERF_FIELDS[PerfEventType.URETPROBE] = PERF_FIELDS[PerfEventType.UPROBE]
PERF_FIELDS[PerfEventType.KRETPROBE] = PERF_FIELDS[PerfEventType.KPROBE]


def _decode_info(fd: int) -> LinkInfo:
    ltype, lid, prog_id, raw = _abi.link_info_raw(fd)
    details: dict[str, int | str] = {}
    name: tuple[str, int, int] | None = None
    fields: tuple[_Field, ...] = ()
    prefix = b""
    if ltype == LinkType.PERF_EVENT:
        ptype = int(struct.unpack_from("=I", raw, 0)[0])
        details["perf_event_type"] = _enum(PerfEventType, ptype)
        name, fields = PERF_FIELDS.get(ptype, (None, ()))  # type: ignore[call-overload]
        prefix = struct.pack("=I", ptype)
    elif ltype in FIELDS or ltype in NAMES:
        name, fields = NAMES.get(ltype), FIELDS.get(ltype, ())  # type: ignore[call-overload]
    if name is not None:
        key, ptr_off, len_off = name
        buf = _abi.cstr(_NAME_BUF)
        union = bytearray(prefix.ljust(48, b"\0"))
        struct.pack_into("=Q", union, ptr_off, buf.address)
        struct.pack_into("=I", union, len_off, _NAME_BUF)
        _, _, _, raw = _abi.link_info_raw(fd, bytes(union))
        details[key] = buf.value.decode("utf-8", "replace")
    for key, offset, fmt, enum in fields:
        value = int(struct.unpack_from("=" + fmt, raw, offset)[0])
        details[key] = _enum(enum, value) if enum is not None else value
    return LinkInfo(type=_enum(LinkType, ltype), id=lid, prog_id=prog_id, details=details)


@runtime_checkable
class Link(Protocol):
    """An attachment of a program to a hook. Context manager; ``close()`` is idempotent."""

    @property
    def closed(self) -> bool: ...

    def update(self, program: ProgramLike, *, old: ProgramLike | None = None) -> None:
        """Atomically replace the attached program (``BPF_LINK_UPDATE``)."""

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the link in bpffs so it outlives this process (``BPF_OBJ_PIN``)."""

    def unpin(self) -> None:
        """Remove the pin made by :meth:`pin` (does nothing if not pinned)."""

    def detach(self) -> None:
        """Detach from the hook now, even if pinned (``BPF_LINK_DETACH``); close still needed."""

    def info(self) -> LinkInfo:
        """What the kernel reports about the link."""

    def close(self) -> None:
        """Release this process's hold on the link; detaches it unless pinned."""

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class _LinkBase:
    """Context-manager plumbing shared by every link class."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _warn_unclosed(self) -> None:
        """For links without an FD: detach on garbage collection, with a ResourceWarning."""
        if getattr(self, "_closed", True):
            return
        what = repr(self)
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110 - nothing to report to from a finalizer
            pass
        warnings.warn(f"unclosed link {what} (call close())", ResourceWarning, source=self)


class FDLink(_LinkBase):
    """A kernel BPF link (an fd from ``BPF_LINK_CREATE`` / ``BPF_RAW_TRACEPOINT_OPEN``).

    Owns the fd; ``extra`` resources (a perf event fd, a mounted helper) are closed with it.
    """

    def __init__(self, fd: FD, *, kind: str, extra: tuple[Closeable, ...] = ()) -> None:
        self._fd = fd
        self._extra = extra
        self.kind = kind
        self.pinned_path: str | None = None

    @property
    def fd(self) -> int:
        """The link's file descriptor (still owned by this object).

        Raises:
            ValueError: the link is closed.
        """
        return self._fd.fileno()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._fd.closed

    def update(self, program: ProgramLike, *, old: ProgramLike | None = None) -> None:
        """Replace the program atomically (``BPF_LINK_UPDATE``).

        Args:
            program: the new program (same type and attach type as the old one).
            old: if given, the update only happens while ``old`` is attached
                (``BPF_F_REPLACE``); otherwise ``EPERM``.

        Raises:
            SyscallError: the kernel refused (``EINVAL``: this link type cannot be updated,
                or the program does not fit; ``EPERM``: ``old`` is not the attached program).

        Requires Linux >= 5.7.
        """
        attr = _abi.LinkUpdateAttr(link_fd=self.fd, new_prog_fd=program.fd)
        if old is not None:
            attr.flags = 1 << 2  # BPF_F_REPLACE
            attr.old_prog_fd = old.fd
        try:
            bpf(Cmd.LINK_UPDATE, attr)
        except SyscallError as err:
            err.add_note(f"while updating the program of {self!r}")
            raise

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the link at ``path`` on a bpffs mount (``BPF_OBJ_PIN``).

        Missing parent folders are created, and bpffs is mounted on ``/sys/fs/bpf`` when a
        path below it is not on bpffs yet (as libbpf's pinning does).

        Raises:
            BPFError: the folder is not on a bpf file system.
            SyscallError: ``EEXIST`` (path taken), ``EPERM``, ``ENOENT``.

        Requires Linux >= 5.7 for links.
        """
        from ebpf.kernel.map import ensure_bpffs

        text = os.fspath(path)
        ensure_bpffs(os.path.dirname(os.path.abspath(text)))
        name = _abi.cstr(text)
        try:
            bpf(Cmd.OBJ_PIN, _abi.ObjPinAttr(pathname=name.address, bpf_fd=self.fd))
        except SyscallError as err:
            err.add_note(f"while pinning {self!r} at {text!r} (is it on a bpf file system?)")
            raise
        self.pinned_path = text

    def unpin(self) -> None:
        """Remove the pin (the link is freed once its last fd closes)."""
        path, self.pinned_path = self.pinned_path, None
        if path is not None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def detach(self) -> None:
        """Detach now (``BPF_LINK_DETACH``): the hook stops running the program, pinned or not.

        Raises:
            NotSupportedError: the kernel cannot detach this link type (``EOPNOTSUPP``; on
                Linux 6.18 e.g. raw tracepoint and perf event links): close it and unpin it.

        Requires Linux >= 5.9.
        """
        try:
            bpf(Cmd.LINK_DETACH, _abi.LinkDetachAttr(link_fd=self.fd))
        except SyscallError as err:
            if err.errno in (_errno.EOPNOTSUPP, 524):  # EOPNOTSUPP / the kernel's ENOTSUPP
                raise NotSupportedError(
                    f"detaching a {self.kind} link",
                    detail="BPF_LINK_DETACH failed with EOPNOTSUPP for this link type; close (and unpin) it",
                ) from err
            raise

    def info(self) -> LinkInfo:
        """``BPF_OBJ_GET_INFO_BY_FD`` on the link. Requires Linux >= 5.8."""
        return _decode_info(self.fd)

    def close(self) -> None:
        """Close the link fd (and any helper fds). Calling it again does nothing."""
        self._fd.close()
        for extra in self._extra:
            extra.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._fd.fileno()}"
        pin = f", pinned at {self.pinned_path!r}" if self.pinned_path else ""
        return f"<{self.kind} link {state}{pin}>"


def open_pinned_link(path: str | os.PathLike[str]) -> FDLink:
    """Open a link pinned at ``path`` (``BPF_OBJ_GET``); the returned link owns a new fd.

    Raises:
        SyscallError: ``ENOENT`` (nothing pinned there), ``EINVAL`` (not a link).
    """
    text = os.fspath(path)
    name = _abi.cstr(text)
    fd = FD(bpf(Cmd.OBJ_GET, _abi.ObjPinAttr(pathname=name.address)))
    link = FDLink(fd, kind="pinned")
    try:
        ltype = link.info().type
    except SyscallError as err:
        link.close()
        err.add_note(f"{text!r} is not a pinned link")
        raise
    link.kind = f"pinned {ltype.name.lower() if isinstance(ltype, LinkType) else ltype}"
    link.pinned_path = text
    return link


def open_link(link_id: int) -> FDLink:
    """Open the link with ID ``link_id`` (``BPF_LINK_GET_FD_BY_ID``). Requires Linux >= 5.8."""
    link = FDLink(FD(bpf(Cmd.LINK_GET_FD_BY_ID, GetIdAttr(link_id=link_id))), kind=f"link {link_id}")
    return link


def link_ids() -> Iterator[int]:
    """IDs of every link in the kernel, increasing (``BPF_LINK_GET_NEXT_ID``). Requires Linux >= 5.8."""
    current = 0
    while True:
        attr = GetIdAttr(start_id=current)
        try:
            bpf(Cmd.LINK_GET_NEXT_ID, attr)
        except SyscallError as err:
            if err.errno == _errno.ENOENT:
                return
            raise
        current = int(attr.next_id)
        yield current
