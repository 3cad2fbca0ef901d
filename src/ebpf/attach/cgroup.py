"""Cgroup and socket attachments: cgroup links, sockmap links and ``SO_ATTACH_BPF`` filters.

Above the kernel line. Calls bpf(2) (``BPF_LINK_CREATE`` on a cgroup directory fd) and
``setsockopt(2)``.

Rule 1: a cgroup program attaches to a cgroup v2 directory (the unified hierarchy; here
``/sys/fs/cgroup/unified``) through a BPF link, which runs alongside other programs on the
same hook (multi-attach) and detaches when the link closes.

Rule 2: a socket filter is not a kernel link: the socket holds the program until
``SO_DETACH_BPF`` or until the socket closes. Its ``Link`` can be updated (re-attach) and
detached, not pinned.
"""

from __future__ import annotations

import errno as _errno
import os
import socket
from typing import Protocol

from ebpf.attach import _abi
from ebpf.attach.link import FDLink, Link, LinkInfo, ProgramLike, _LinkBase
from ebpf.errors import NotSupportedError, SyscallError
from ebpf.kernel.fd import FD
from ebpf.spec import AttachType

__all__ = ["CGROUP_ATTACH_TYPES", "cgroup", "cgroup2_root", "reuseport", "socket_filter", "sockmap"]

CGROUP_ATTACH_TYPES = frozenset(
    {
        AttachType.CGROUP_INET_INGRESS,
        AttachType.CGROUP_INET_EGRESS,
        AttachType.CGROUP_INET_SOCK_CREATE,
        AttachType.CGROUP_SOCK_OPS,
        AttachType.CGROUP_DEVICE,
        AttachType.CGROUP_INET4_BIND,
        AttachType.CGROUP_INET6_BIND,
        AttachType.CGROUP_INET4_CONNECT,
        AttachType.CGROUP_INET6_CONNECT,
        AttachType.CGROUP_INET4_POST_BIND,
        AttachType.CGROUP_INET6_POST_BIND,
        AttachType.CGROUP_UDP4_SENDMSG,
        AttachType.CGROUP_UDP6_SENDMSG,
        AttachType.CGROUP_SYSCTL,
        AttachType.CGROUP_UDP4_RECVMSG,
        AttachType.CGROUP_UDP6_RECVMSG,
        AttachType.CGROUP_GETSOCKOPT,
        AttachType.CGROUP_SETSOCKOPT,
        AttachType.CGROUP_INET4_GETPEERNAME,
        AttachType.CGROUP_INET6_GETPEERNAME,
        AttachType.CGROUP_INET4_GETSOCKNAME,
        AttachType.CGROUP_INET6_GETSOCKNAME,
        AttachType.CGROUP_INET_SOCK_RELEASE,
        AttachType.LSM_CGROUP,
        AttachType.CGROUP_UNIX_CONNECT,
        AttachType.CGROUP_UNIX_SENDMSG,
        AttachType.CGROUP_UNIX_RECVMSG,
        AttachType.CGROUP_UNIX_GETPEERNAME,
        AttachType.CGROUP_UNIX_GETSOCKNAME,
    }
)
"""Attach types that take a cgroup as target."""

_SO_ATTACH_BPF = 50
_SO_DETACH_BPF = 27  # == SO_DETACH_FILTER
_SO_ATTACH_REUSEPORT_EBPF = 52
_SO_DETACH_REUSEPORT_BPF = 68


def cgroup2_root() -> str:
    """Where the cgroup v2 (unified) hierarchy is mounted, from ``/proc/mounts``.

    Raises:
        NotSupportedError: no cgroup2 mount.
    """
    from ebpf.attach._tracefs import mounted_at

    point = mounted_at("cgroup2")
    if point is None:
        raise NotSupportedError("cgroup v2", detail="no cgroup2 file system in /proc/mounts")
    return point


def cgroup(program: ProgramLike, path: str | os.PathLike[str], attach_type: AttachType) -> Link:
    """Attach a cgroup program to the cgroup v2 directory ``path`` through a BPF link.

    Args:
        program: loaded with ``expected_attach_type == attach_type`` where the program type
            needs one (``CGROUP_SOCK_ADDR``, ``CGROUP_SOCKOPT``, ``CGROUP_SOCK`` ...).
        path: a directory in the cgroup v2 hierarchy.
        attach_type: the hook, e.g. ``AttachType.CGROUP_INET4_CONNECT``.

    Raises:
        ValueError: ``attach_type`` is not a cgroup hook.
        FileNotFoundError / NotADirectoryError: ``path`` is not a directory.
        SyscallError: the kernel refused (``EINVAL``: program/attach type mismatch, or not a
            cgroup v2 directory).

    Requires Linux >= 5.7.
    """
    attach_type = AttachType(attach_type)
    if attach_type not in CGROUP_ATTACH_TYPES:
        raise ValueError(f"{attach_type.name} is not a cgroup attach type")
    text = os.fspath(path)
    cg = FD(os.open(text, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    try:
        fd = _abi.link_create(program.fd, cg.fileno(), attach_type)
    except SyscallError as err:
        err.add_note(f"while attaching to cgroup {text!r} at {attach_type.name}")
        raise
    finally:
        cg.close()
    return FDLink(FD(fd), kind=f"cgroup {attach_type.name} {text}")


class _Socket(Protocol):
    def fileno(self) -> int: ...


class SocketFilter(_LinkBase):
    """A ``SOCKET_FILTER`` program attached to one socket with ``SO_ATTACH_BPF``."""

    _attach_opt = _SO_ATTACH_BPF
    _detach_opt = _SO_DETACH_BPF
    _what = "SO_ATTACH_BPF"

    def __init__(self, sock: _Socket, program: ProgramLike) -> None:
        self._sock = sock
        self._attached = False
        self._closed = True  # until attached: a failed __init__ leaves nothing to clean up
        self._set(program)
        self._closed = False

    def _set(self, program: ProgramLike) -> None:
        fd = self._sock.fileno()
        if fd < 0:
            raise ValueError("the socket is closed")
        with socket.socket(fileno=os.dup(fd)) as s:
            try:
                s.setsockopt(socket.SOL_SOCKET, self._attach_opt, program.fd)
            except OSError as err:
                raise SyscallError(
                    f"setsockopt({self._what})",
                    err.errno or _errno.EINVAL,
                    f"{self._what} takes a loaded program of the matching type"
                    if err.errno == _errno.EINVAL
                    else None,
                ) from None
        self._attached = True

    @property
    def closed(self) -> bool:
        return self._closed

    def update(self, program: ProgramLike, *, old: ProgramLike | None = None) -> None:
        """Attach ``program`` instead (``SO_ATTACH_BPF`` replaces the filter atomically)."""
        if self._closed:
            raise ValueError("the socket filter link is closed")
        if old is not None:
            raise NotSupportedError(
                "conditional update of a socket filter", detail="SO_ATTACH_BPF has no compare"
            )
        self._set(program)

    def pin(self, path: str | os.PathLike[str]) -> None:
        raise NotSupportedError("pinning a socket filter", detail=f"{self._what} makes no BPF link")

    def unpin(self) -> None:
        pass

    def detach(self) -> None:
        """Remove the filter from the socket (``SO_DETACH_BPF``)."""
        if not self._attached:
            return
        self._attached = False
        fd = self._sock.fileno()
        if fd < 0:
            return  # the socket is gone, and its filter with it
        with socket.socket(fileno=os.dup(fd)) as s:
            try:
                s.setsockopt(socket.SOL_SOCKET, self._detach_opt, 0)
            except OSError as err:
                if err.errno != _errno.ENOENT:
                    raise SyscallError(
                        f"setsockopt({self._what} detach)", err.errno or _errno.EINVAL
                    ) from None

    def info(self) -> LinkInfo:
        raise NotSupportedError("link info of a socket filter", detail=f"{self._what} makes no BPF link")

    def close(self) -> None:
        """Detach the filter. Calling it again does nothing."""
        if not self._closed:
            self._closed = True
            self.detach()

    def __del__(self) -> None:
        self._warn_unclosed()

    def __repr__(self) -> str:
        return f"<socket filter on fd {self._sock.fileno()} {'closed' if self._closed else 'attached'}>"


class ReuseportSelector(SocketFilter):
    """An ``SK_REUSEPORT`` program attached to a ``SO_REUSEPORT`` group with
    ``SO_ATTACH_REUSEPORT_EBPF``."""

    _attach_opt = _SO_ATTACH_REUSEPORT_EBPF
    _detach_opt = _SO_DETACH_REUSEPORT_BPF
    _what = "SO_ATTACH_REUSEPORT_EBPF"

    def __repr__(self) -> str:
        return f"<reuseport program on fd {self._sock.fileno()} {'closed' if self._closed else 'attached'}>"


def reuseport(program: ProgramLike, sock: _Socket) -> Link:
    """Attach an ``SK_REUSEPORT`` program to the ``SO_REUSEPORT`` group of ``sock``.

    The program picks the socket of the group for each incoming packet or connection
    (``bpf_sk_select_reuseport``) or drops it (``SK_DROP``). Closing the link detaches it
    (``SO_DETACH_REUSEPORT_BPF``).

    Requires Linux >= 4.19 (detach: 5.3).
    """
    return ReuseportSelector(sock, program)


def socket_filter(program: ProgramLike, sock: _Socket) -> Link:
    """Attach a ``SOCKET_FILTER`` program to ``sock`` (``setsockopt(SO_ATTACH_BPF)``).

    The filter sees every packet the socket receives; it returns how many bytes to keep
    (0 drops the packet). Closing the returned link detaches it (``SO_DETACH_BPF``).

    Requires Linux >= 3.19.
    """
    return SocketFilter(sock, program)


_SOCKMAP_ATTACH_TYPES = (
    AttachType.SK_MSG_VERDICT,
    AttachType.SK_SKB_STREAM_PARSER,
    AttachType.SK_SKB_STREAM_VERDICT,
    AttachType.SK_SKB_VERDICT,
)


class _MapLike(Protocol):
    @property
    def fd(self) -> int: ...


def sockmap(program: ProgramLike, map: _MapLike, attach_type: AttachType) -> Link:
    """Attach an ``SK_MSG`` or ``SK_SKB`` program to a ``SOCKMAP``/``SOCKHASH`` through a link.

    The program then runs for the sockets in the map: ``SK_MSG_VERDICT`` on every
    ``sendmsg``, ``SK_SKB_*`` on received data.

    Requires Linux >= 6.10 (sockmap links).
    """
    attach_type = AttachType(attach_type)
    if attach_type not in _SOCKMAP_ATTACH_TYPES:
        raise ValueError(f"{attach_type.name} does not attach to a sockmap")
    try:
        fd = _abi.link_create(program.fd, map.fd, attach_type)
    except SyscallError as err:
        err.add_note(f"while attaching {attach_type.name} to a sockmap")
        raise
    return FDLink(FD(fd), kind=f"sockmap {attach_type.name.lower()}")
