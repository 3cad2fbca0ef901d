"""``BPF_MAP_TYPE_SOCKMAP`` / ``SOCKHASH``: socket maps, always empty in user space. Pure.

Rule 1 (``BPF_MAP_CREATE``, measured on Linux 6.18): ``value_size`` 4 or 8 (a socket fd in
the syscall), ``max_entries`` > 0, flags only ``BPF_F_NUMA_NODE``, ``BPF_F_RDONLY`` and
``BPF_F_WRONLY``, else ``EINVAL``; a ``SOCKMAP`` has 4-byte keys (an index), a ``SOCKHASH``
any non-zero key size.

Rule 2 (no sockets): the user-space runtime has no kernel sockets, so nothing can be stored:
:meth:`update` is a :class:`SocketMapNotSupportedError` (a ``NotSupportedError`` whose
``errno`` is the kernel's answer for the fd when it is not a socket: ``EBADF`` for a fd the
calling process has not open, ``ENOTSOCK`` for another file, ``EINVAL`` above ``INT_MAX``;
``EOPNOTSUPP`` for a socket, which the kernel may store and the runtime cannot). The maps stay empty, and answer as the kernel's empty ones do: a lookup is
``ENOENT`` (``ENOSPC`` with 4-byte values: the syscall returns 8-byte socket cookies), a
delete from a ``SOCKMAP`` ``EINVAL`` and from a ``SOCKHASH`` ``ENOENT``; ``get_next_key`` walks
every index of a ``SOCKMAP`` (as an array) and ends at once on a ``SOCKHASH``. A program's
``bpf_map_lookup_elem`` gets NULL (no socket), which sk_lookup, sk_skb and sk_msg programs
handle as "no socket selected".

The dict sugar shows no elements: ``len`` 0, nothing iterated, ``in`` false, ``items()`` empty
(``get_next_key`` still walks a ``SOCKMAP``'s indexes, as the kernel's does).

Rule 3: ``BPF_F_RDONLY`` maps refuse updates and deletes, ``BPF_F_WRONLY`` maps lookups and
``get_next_key`` (``EPERM``), before any other check.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Iterator
from typing import ClassVar

from ebpf.errors import KeyNotFoundError, NotSupportedError
from ebpf.maps._base import BPF_ANY, Map, MapDef, MapFlags
from ebpf.maps._errors import InvalidMapArgumentError, MapError
from ebpf.spec import MapType
from ebpf.vm.memory import Memory

__all__ = ["SockHashMap", "SockMap", "SocketMapNotSupportedError"]

SOCK_CREATE_FLAG_MASK = MapFlags.NUMA_NODE | MapFlags.RDONLY | MapFlags.WRONLY
INT_MAX = 0x7FFFFFFF
COOKIE_SIZE = 8
_U32 = struct.Struct("<I")


def _fd_errno(fd: int) -> int:
    """The kernel's answer for storing ``fd`` of the calling process when it is no usable socket."""
    if fd > INT_MAX:
        return errno.EINVAL
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return errno.EBADF
    return errno.EOPNOTSUPP if stat.S_ISSOCK(mode) else errno.ENOTSOCK


class SocketMapNotSupportedError(MapError, NotSupportedError):
    """A socket map update: the user-space runtime has no sockets to store.

    Both a :class:`~ebpf.errors.NotSupportedError` and a :class:`~ebpf.maps.MapError` whose
    ``errno`` is what the kernel answers for the same fd when it is not a socket.
    """

    def __init__(self, message: str, *, errno: int) -> None:
        NotSupportedError.__init__(self, "sockets in user-space socket maps", None, message)
        self.message = message
        self.errno = errno


class _SocketMap(Map):
    key_sizes: ClassVar[tuple[int, ...] | None] = None  # None: any non-zero size

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        super().__init__(defn, memory, ncpus=ncpus)
        key_ok = defn.key_size > 0 if self.key_sizes is None else defn.key_size in self.key_sizes
        if (
            defn.max_entries == 0
            or not key_ok
            or defn.value_size not in (4, 8)
            or defn.flags & ~SOCK_CREATE_FLAG_MASK
        ):
            raise InvalidMapArgumentError(
                f"{self.label}: a {defn.type.name} needs value_size 4 or 8, max_entries > 0, "
                f"{'key_size 4' if self.key_sizes else 'a key'} and flags in "
                f"{int(SOCK_CREATE_FLAG_MASK):#x}; got key_size {defn.key_size}, value_size "
                f"{defn.value_size}, max_entries {defn.max_entries}, flags {defn.flags:#x}"
            )

    def _access(self, write: bool) -> None:
        refused = MapFlags.RDONLY if write else MapFlags.WRONLY
        if self.flags & refused:
            what = "written" if write else "read"
            raise MapError(f"{self.label}: the map cannot be {what} from user space", errno=errno.EPERM)

    def lookup(self, key: bytes) -> bytes:
        self._access(write=False)
        self._key(key)
        if self.value_size != COOKIE_SIZE:
            raise MapError(
                f"{self.label}: a lookup returns an 8-byte socket cookie; value_size is {self.value_size}",
                errno=errno.ENOSPC,
            )
        raise KeyNotFoundError(key, f"{self.label}: no socket (the user-space runtime has none)")

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        self._access(write=True)
        self._key(key)
        value = self._value(value)
        fd = int.from_bytes(value, "little")
        raise SocketMapNotSupportedError(
            f"{self.label}: cannot store socket fd {fd}: the user-space runtime has no sockets",
            errno=_fd_errno(fd),
        )

    def value_address(self, key: bytes, cpu: int = 0) -> int | None:
        return None  # bpf_map_lookup_elem: NULL, no socket

    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Iterator[bytes]:
        return iter(())  # no elements (get_next_key still walks a SOCKMAP's indexes)

    def __contains__(self, key: object) -> bool:
        return False


class SockMap(_SocketMap):
    """``BPF_MAP_TYPE_SOCKMAP``: sockets by index (always empty here; see the module rules)."""

    types = (MapType.SOCKMAP,)
    key_sizes = (4,)

    def delete(self, key: bytes) -> None:
        self._access(write=True)
        index = _U32.unpack(self._key(key))[0]
        raise InvalidMapArgumentError(f"{self.label}: no socket at index {index}", errno=errno.EINVAL)

    def get_next_key(self, key: bytes | None) -> bytes:
        self._access(write=False)
        index = -1 if key is None else _U32.unpack(self._key(key))[0]
        if index >= self.max_entries:
            return _U32.pack(0)
        if index + 1 >= self.max_entries:
            raise KeyNotFoundError(key, f"{self.label}: index {index} is the last")
        return _U32.pack(index + 1)


class SockHashMap(_SocketMap):
    """``BPF_MAP_TYPE_SOCKHASH``: sockets by key (always empty here; see the module rules)."""

    types = (MapType.SOCKHASH,)

    def delete(self, key: bytes) -> None:
        self._access(write=True)
        raise KeyNotFoundError(self._key(key), f"{self.label}: no socket for this key")

    def get_next_key(self, key: bytes | None) -> bytes:
        self._access(write=False)
        if key is not None:
            self._key(key)
        raise KeyNotFoundError(key, f"{self.label}: the map is empty")
