"""The XDP redirect maps: ``DEVMAP``, ``DEVMAP_HASH``, ``CPUMAP`` and ``XSKMAP``.

Core layer: no ``bpf()``. Like the kernel, updates consult the host: network devices
(``if_indextoname``), ``NR_CPUS`` and RAM (``/sys``, ``sysconf``) and the caller's socket fds.
These maps are the targets of ``bpf_redirect_map``; the runtime's helper asks
:meth:`RedirectMap.redirect_lookup` (the kernel's per-type ``map_redirect`` lookup) whether an
entry is there. Behaviour measured against Linux 6.18 (``kernel/bpf/devmap.c``, ``cpumap.c``,
``net/xdp/xskmap.c``; the differential tests in ``tests/differential/test_devmap_kernel.py``).

Rule 1 (creation, ``EINVAL`` unless said): ``key_size`` 4 and ``max_entries`` > 0 for all.
``DEVMAP`` / ``DEVMAP_HASH``: ``value_size`` 4 (``ifindex``) or 8 (``struct bpf_devmap_val``:
``ifindex`` then a program fd in, a program id out); flags only ``BPF_F_NUMA_NODE``,
``BPF_F_RDONLY``, ``BPF_F_WRONLY``; the kernel adds ``BPF_F_RDONLY_PROG`` itself (a program's
lookup gives a read-only pointer to the value), and so does :attr:`Map.flags` here.
``DEVMAP_HASH`` with more than 2^31 entries is ``EINVAL``. ``CPUMAP``: ``value_size`` 4
(``qsize``) or 8 (``struct bpf_cpumap_val``), flags only ``BPF_F_NUMA_NODE``, more entries
than the kernel's ``NR_CPUS`` is ``E2BIG``. ``XSKMAP``: ``value_size`` 4 (a socket fd), the
devmap flags. ``DEVMAP`` / ``XSKMAP`` whose pointer array exceeds the host's RAM are
``ENOMEM`` (vmalloc's own limit).

Rule 2 (updates; ``BPF_F_LOCK`` and flags above ``BPF_EXIST`` are ``EINVAL`` first):

- ``DEVMAP``: an index past the end is ``E2BIG``, ``BPF_NOEXIST`` is always ``EEXIST``
  (array slots "exist"), ``ifindex`` 0 empties the slot; the device must exist (on this host:
  ``socket.if_indextoname``, or the map's :attr:`DevMap.device_exists`), else ``EINVAL``.
- ``DEVMAP_HASH``: ``ifindex`` 0 is ``EINVAL``; ``BPF_NOEXIST`` on a present key ``EEXIST``;
  ``BPF_EXIST`` on a missing key inserts (the kernel does not check it); a new key in a full
  map ``E2BIG``; the element goes to the head of bucket ``key & (n_buckets - 1)``.
- ``CPUMAP``: past the end ``E2BIG``, ``BPF_NOEXIST`` ``EEXIST``, ``qsize`` > 16384
  ``EOVERFLOW``, a CPU that is not possible (``ncpus`` of the runtime) ``ENODEV``, ``qsize``
  0 empties the slot.
- ``XSKMAP``: past the end ``E2BIG``; the value is a socket fd of the caller, looked up as the
  kernel does: not open ``EBADF``, not a socket ``ENOTSOCK``, not AF_XDP ``EOPNOTSUPP``.
- a program fd > 0 in an 8-byte value (devmap / cpumap programs) and an AF_XDP socket need
  kernel objects user space does not have: :class:`RedirectMapNotSupportedError` (a
  ``NotSupportedError`` and a ``MapError``) whose errno is the kernel's answer for a fd that
  is not such an object (devmap ``EINVAL``, cpumap ``ENOMEM``, xskmap ``EOPNOTSUPP``).

Rule 3 (other operations): lookups from user space return the value as stored with the
program id 0; ``XSKMAP`` lookups are ``EOPNOTSUPP``. Deletes of the array types only check the
index (past the end ``EINVAL``; an empty slot is fine); ``DEVMAP_HASH`` deletes of a missing
key are ``ENOENT``. ``get_next_key`` walks every index of the array types (the first after a
key past the end) and the buckets of ``DEVMAP_HASH`` (the first key after a missing one).
A program's ``bpf_map_lookup_elem`` gets a read-only pointer to a devmap value (written in
place on update); ``CPUMAP`` lookups are refused by the kernel's verifier, ``XSKMAP`` ones find
no socket: both give ``NULL`` here. No batch operations (``ENOTSUPP``), as in the kernel.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from ebpf.errors import KeyNotFoundError, NotSupportedError
from ebpf.maps._base import BPF_F_LOCK, BPF_NOEXIST, Map, MapDef, MapFlags
from ebpf.maps._errors import (
    InvalidMapArgumentError,
    KeyExistsError,
    MapError,
    MapFullError,
    MapOperationNotSupportedError,
)
from ebpf.maps.array import array_next_key
from ebpf.spec import MapType
from ebpf.vm.memory import HostBuffer, Memory, Region

__all__ = [
    "CPUMAP_QSIZE_MAX",
    "CpuMap",
    "DevMap",
    "DevMapHash",
    "RedirectMap",
    "RedirectMapNotSupportedError",
    "XskMap",
    "host_device_exists",
    "nr_cpus_limit",
]

_U32 = struct.Struct("<I")
_S32 = struct.Struct("<i")
DEV_CREATE_FLAG_MASK = MapFlags.NUMA_NODE | MapFlags.RDONLY | MapFlags.WRONLY
CPUMAP_QSIZE_MAX = 16384
"""The kernel's sanity limit on a CPUMAP entry's queue size (larger is ``EOVERFLOW``)."""
NR_CPUS_DEFAULT = 8192
"""``CONFIG_NR_CPUS`` assumed when the host does not tell (``/sys/devices/system/cpu/kernel_max``)."""
_POINTER = 8


def host_device_exists(ifindex: int) -> bool:
    """Whether this host (the caller's network namespace) has a device ``ifindex``."""
    if not 0 < ifindex <= 0xFFFFFFFF:
        return False
    try:
        socket.if_indextoname(ifindex)
    except (OSError, OverflowError, ValueError):
        return False
    return True


def nr_cpus_limit() -> int:
    """The kernel's ``NR_CPUS`` (CPUMAP ``max_entries`` above it are ``E2BIG``): ``kernel_max + 1``."""
    try:
        return int(Path("/sys/devices/system/cpu/kernel_max").read_text().strip()) + 1
    except (OSError, ValueError):
        return NR_CPUS_DEFAULT


def _vmalloc_fits(size: int) -> bool:
    """vmalloc's own limit: an area larger than the host's RAM pages fails (``ENOMEM``)."""
    try:
        pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return True
    return pages <= 0 or page <= 0 or size // page <= pages


AF_XDP = 44


def _socket_family(fd: int) -> int | None:
    """The address family of the caller's socket ``fd``; -1: not a socket; ``None``: not open."""
    if fd < 0:
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    if not stat.S_ISSOCK(st.st_mode):
        return -1
    try:
        # explicit family/type: Python would otherwise probe the socket (and fail on AF_XDP)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, os.dup(fd)) as s:
            family: int = s.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)
    except OSError:
        return -1
    return family


class RedirectMapNotSupportedError(MapOperationNotSupportedError, NotSupportedError):
    """An operation needs a kernel object the user-space runtime does not have.

    AF_XDP sockets (``XSKMAP`` values) and program fds in ``struct bpf_devmap_val`` /
    ``struct bpf_cpumap_val``. Both a :class:`~ebpf.errors.NotSupportedError` (``.feature``)
    and a :class:`~ebpf.maps.MapError` whose ``errno`` is the kernel's answer for a fd that is
    not such an object.
    """

    def __init__(self, message: str, *, feature: str, errno: int) -> None:
        NotSupportedError.__init__(self, feature, None, message)
        self.message = message
        self.errno = errno


class RedirectMap(Map):
    """The shared shape of the redirect maps: ``u32`` keys and the kernel's creation checks."""

    kind: ClassVar[str] = "redirect map"
    value_sizes: ClassVar[tuple[int, ...]] = (4, 8)
    flag_mask: ClassVar[int] = DEV_CREATE_FLAG_MASK
    broadcast: ClassVar[bool] = False
    """Whether ``bpf_redirect_map`` takes ``BPF_F_BROADCAST`` / ``BPF_F_EXCLUDE_INGRESS`` here."""

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        super().__init__(defn, memory, ncpus=ncpus)
        if (
            defn.max_entries == 0
            or defn.key_size != 4
            or defn.value_size not in self.value_sizes
            or defn.flags & ~self.flag_mask
        ):
            sizes = " or ".join(map(str, self.value_sizes))
            raise InvalidMapArgumentError(
                f"{self.label}: {self.kind} needs key_size 4, value_size {sizes}, max_entries > 0 "
                f"and flags in {int(self.flag_mask):#x}; got key_size {defn.key_size}, value_size "
                f"{defn.value_size}, max_entries {defn.max_entries}, flags {defn.flags:#x}"
            )

    def redirect_lookup(self, index: int) -> int | None:
        """The kernel's ``map_redirect`` lookup for ``bpf_redirect_map(map, index, ...)``.

        Returns:
            The target (an ifindex for devmaps, the CPU for a cpumap), or ``None``: no entry,
            so the helper returns the action in the low bits of its flags.
        """
        return None

    def _index(self, key: bytes) -> int:
        index: int = _U32.unpack(self._key(key))[0]
        return index

    def _check_index(self, index: int, *, errno_: int = errno.E2BIG) -> None:
        if index >= self.max_entries:
            cls = MapFullError if errno_ == errno.E2BIG else InvalidMapArgumentError
            raise cls(f"{self.label}: index {index} >= max_entries {self.max_entries}", errno=errno_)

    def _check_alloc(self) -> None:
        if not _vmalloc_fits(self.max_entries * _POINTER):
            raise MapError(
                f"{self.label}: {self.max_entries} entries need more memory than the host has",
                errno=errno.ENOMEM,
            )

    def _present_items(self) -> list[tuple[bytes, bytes]]:
        out = []
        for key in self:
            try:
                out.append((key, self.lookup(key)))
            except KeyNotFoundError:
                continue
        return out

    def items(self) -> list[tuple[bytes, bytes]]:
        """Every present ``(key, value)``, in key order (empty slots are skipped)."""
        return self._present_items()

    def values(self) -> list[bytes]:
        """Every present value, in key order."""
        return [v for _, v in self.items()]


def _devmap_value(m: Map, value: bytes) -> tuple[int, int]:
    """``(ifindex, prog_fd)`` of a devmap/cpumap value (fd 0 for a 4-byte value)."""
    first: int = _U32.unpack_from(value, 0)[0]
    fd: int = _S32.unpack_from(value, 4)[0] if len(value) >= 8 else 0
    return first, fd


class _DevMapBase(RedirectMap):
    """What ``DEVMAP`` and ``DEVMAP_HASH`` share: read-only value regions and device checks."""

    broadcast = True

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        super().__init__(defn, memory, ncpus=ncpus)
        self.device_exists: Callable[[int], bool] = host_device_exists
        """Whether a device exists (default: this host's); replace it to simulate devices."""
        self._entries: dict[int, Region] = {}

    @property
    def flags(self) -> int:
        """``map_flags`` as the kernel reports them: with ``BPF_F_RDONLY_PROG``, which it adds
        (a program's lookup points into the entry). ``defn.flags`` stays as created, which is
        what map-in-map templates compare (both sides have the bit in the kernel)."""
        return self.defn.flags | MapFlags.RDONLY_PROG

    def _new_entry(self, key: int, ifindex: int, fd: int) -> bytes:
        """The stored value of a new entry, after the kernel's ``__dev_map_alloc_node`` checks."""
        if not self.device_exists(ifindex):
            raise InvalidMapArgumentError(f"{self.label}: no network device with ifindex {ifindex}")
        if fd > 0:
            raise RedirectMapNotSupportedError(
                f"{self.label}: program fd {fd} in a devmap value: the user-space runtime has no "
                "program fds (devmap programs, BPF_XDP_DEVMAP)",
                feature="devmap entry programs",
                errno=errno.EINVAL,
            )
        return _U32.pack(ifindex) + bytes(self.value_size - 4)  # bpf_prog.id 0: no program

    def _store(self, key: int, stored: bytes) -> None:
        region = self._entries.get(key)
        if region is None:
            buf = HostBuffer(self.value_size)
            region = self.memory.map_buffer(f"{self.label}[{key}]", buf, writable=False)
            self._entries[key] = region
        region.view[:] = stored

    def _drop(self, key: int) -> bool:
        region = self._entries.pop(key, None)
        if region is None:
            return False
        self.memory.unmap(region)
        return True

    def _lookup_index(self, key: bytes) -> int:
        index = self._index(key)
        if index not in self._entries:
            raise KeyNotFoundError(key, f"{self.label}: no device at key {index}")
        return index

    def lookup(self, key: bytes) -> bytes:
        return self._entries[self._lookup_index(key)].view.tobytes()

    def value_address(self, key: bytes, cpu: int = 0) -> int | None:
        region = self._entries.get(self._index(key))
        return None if region is None else region.start

    def redirect_lookup(self, index: int) -> int | None:
        region = self._entries.get(index & 0xFFFFFFFF)
        if region is None:
            return None
        ifindex: int = _U32.unpack_from(region.view, 0)[0]
        return ifindex

    def _release(self) -> None:
        for key in list(self._entries):
            self._drop(key)


class DevMap(_DevMapBase):
    """A device array (``BPF_MAP_TYPE_DEVMAP``): index -> network device."""

    types = (MapType.DEVMAP,)
    kind = "devmap"

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        super().__init__(defn, memory, ncpus=ncpus)
        self._check_alloc()

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        self._check_update_flags(flags)
        index = self._index(key)
        value = self._value(value)
        self._check_index(index)
        if flags & ~BPF_F_LOCK == BPF_NOEXIST:
            raise KeyExistsError(f"{self.label}: BPF_NOEXIST on a devmap slot (they always exist)")
        ifindex, fd = _devmap_value(self, value)
        if ifindex == 0:
            if fd > 0:
                raise InvalidMapArgumentError(f"{self.label}: a program fd needs an ifindex")
            self._drop(index)
            return
        self._store(index, self._new_entry(index, ifindex, fd))

    def delete(self, key: bytes) -> None:
        index = self._index(key)
        self._check_index(index, errno_=errno.EINVAL)
        self._drop(index)

    def get_next_key(self, key: bytes | None) -> bytes:
        index = 0xFFFFFFFF if key is None else self._index(key)
        return array_next_key(self.label, key, index, self.max_entries)

    def __len__(self) -> int:
        return self.max_entries


class DevMapHash(_DevMapBase):
    """A device hash (``BPF_MAP_TYPE_DEVMAP_HASH``): any ``u32`` key -> network device."""

    types = (MapType.DEVMAP_HASH,)
    kind = "devmap_hash"

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        super().__init__(defn, memory, ncpus=ncpus)
        if defn.max_entries > 1 << 31:  # roundup_pow_of_two would overflow
            raise InvalidMapArgumentError(f"{self.label}: max_entries {defn.max_entries} > 2^31")
        self.n_buckets = 1 << (defn.max_entries - 1).bit_length()
        self._buckets: dict[int, list[int]] = {}  # bucket -> keys, head first

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        self._check_update_flags(flags)
        index = self._index(key)
        value = self._value(value)
        ifindex, fd = _devmap_value(self, value)
        if ifindex == 0:
            raise InvalidMapArgumentError(f"{self.label}: ifindex 0 in a devmap_hash value")
        present = index in self._entries
        if present and flags & ~BPF_F_LOCK == BPF_NOEXIST:
            raise KeyExistsError(f"{self.label}: key {index} exists (BPF_NOEXIST)")
        stored = self._new_entry(index, ifindex, fd)
        if not present and len(self._entries) >= self.max_entries:
            raise MapFullError(f"{self.label}: the map is full ({self.max_entries} entries)")
        bucket = self._buckets.setdefault(index & (self.n_buckets - 1), [])
        if present:
            bucket.remove(index)
        bucket.insert(0, index)  # the kernel's hlist_add_head, also for a replaced element
        self._store(index, stored)

    def delete(self, key: bytes) -> None:
        index = self._index(key)
        if not self._drop(index):
            raise KeyNotFoundError(key, f"{self.label}: no device at key {index}")
        b = index & (self.n_buckets - 1)
        self._buckets[b].remove(index)
        if not self._buckets[b]:
            del self._buckets[b]

    def get_next_key(self, key: bytes | None) -> bytes:
        start = 0
        if key is not None:
            index = self._index(key)
            if index in self._entries:
                b = index & (self.n_buckets - 1)
                chain = self._buckets[b]
                pos = chain.index(index)
                if pos + 1 < len(chain):
                    return _U32.pack(chain[pos + 1])
                start = b + 1
        for b in sorted(k for k in self._buckets if k >= start):
            return _U32.pack(self._buckets[b][0])
        raise KeyNotFoundError(key, f"{self.label}: no key after this one")

    def _release(self) -> None:
        super()._release()
        self._buckets.clear()

    def __len__(self) -> int:
        return len(self._entries)


class CpuMap(RedirectMap):
    """A CPU map (``BPF_MAP_TYPE_CPUMAP``): CPU index -> ``struct bpf_cpumap_val`` (queue size).

    The simulated possible CPUs are the runtime's ``ncpus``; no kthreads or queues exist.
    """

    types = (MapType.CPUMAP,)
    kind = "cpumap"
    flag_mask = MapFlags.NUMA_NODE

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        super().__init__(defn, memory, ncpus=ncpus)
        limit = nr_cpus_limit()
        if defn.max_entries > limit:
            raise InvalidMapArgumentError(
                f"{self.label}: max_entries {defn.max_entries} > NR_CPUS {limit}", errno=errno.E2BIG
            )
        self._entries: dict[int, bytes] = {}

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        self._check_update_flags(flags)
        index = self._index(key)
        value = self._value(value)
        self._check_index(index)
        if flags & ~BPF_F_LOCK == BPF_NOEXIST:
            raise KeyExistsError(f"{self.label}: BPF_NOEXIST on a cpumap slot (they always exist)")
        qsize, fd = _devmap_value(self, value)
        if qsize > CPUMAP_QSIZE_MAX:
            raise MapError(f"{self.label}: qsize {qsize} > {CPUMAP_QSIZE_MAX}", errno=errno.EOVERFLOW)
        if index >= self.ncpus:
            raise MapError(
                f"{self.label}: CPU {index} is not possible (ncpus {self.ncpus})", errno=errno.ENODEV
            )
        if qsize == 0:
            self._entries.pop(index, None)
            return
        if fd > 0:
            raise RedirectMapNotSupportedError(
                f"{self.label}: program fd {fd} in a cpumap value: the user-space runtime has no "
                "program fds (cpumap programs, BPF_XDP_CPUMAP)",
                feature="cpumap entry programs",
                errno=errno.ENOMEM,  # the kernel's entry allocation fails for a fd it cannot use
            )
        self._entries[index] = _U32.pack(qsize) + bytes(self.value_size - 4)

    def lookup(self, key: bytes) -> bytes:
        index = self._index(key)
        value = self._entries.get(index)
        if value is None:
            raise KeyNotFoundError(key, f"{self.label}: no entry for CPU {index}")
        return value

    def delete(self, key: bytes) -> None:
        index = self._index(key)
        self._check_index(index, errno_=errno.EINVAL)
        self._entries.pop(index, None)

    def get_next_key(self, key: bytes | None) -> bytes:
        index = 0xFFFFFFFF if key is None else self._index(key)
        return array_next_key(self.label, key, index, self.max_entries)

    def redirect_lookup(self, index: int) -> int | None:
        index &= 0xFFFFFFFF
        return index if index in self._entries else None

    def _release(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return self.max_entries


class XskMap(RedirectMap):
    """An AF_XDP socket map (``BPF_MAP_TYPE_XSKMAP``): always empty in user space.

    The runtime cannot redirect to AF_XDP sockets: updates fail as the kernel's do for fds
    that are not AF_XDP sockets, and raise :class:`RedirectMapNotSupportedError` for one that
    is (the kernel would take it); deletes and ``get_next_key`` work as on an
    empty map; ``lookup`` is ``EOPNOTSUPP`` as the kernel's syscall answers.
    """

    types = (MapType.XSKMAP,)
    kind = "xskmap"
    value_sizes = (4,)

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        super().__init__(defn, memory, ncpus=ncpus)
        self._check_alloc()

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        self._check_update_flags(flags)
        index = self._index(key)
        fd: int = _S32.unpack(self._value(value))[0]
        self._check_index(index)
        family = _socket_family(fd)  # the kernel's sockfd_lookup on the caller's fd
        if family is None:
            raise MapError(f"{self.label}: fd {fd} is not open", errno=errno.EBADF)
        if family < 0:
            raise MapError(f"{self.label}: fd {fd} is not a socket", errno=errno.ENOTSOCK)
        if family != AF_XDP:
            raise MapError(f"{self.label}: fd {fd} is not an AF_XDP socket", errno=errno.EOPNOTSUPP)
        raise RedirectMapNotSupportedError(
            f"{self.label}: fd {fd} is an AF_XDP socket; the user-space runtime cannot redirect to one",
            feature="AF_XDP sockets (XSKMAP updates)",
            errno=errno.EOPNOTSUPP,
        )

    def lookup(self, key: bytes) -> bytes:
        self._index(key)
        raise MapOperationNotSupportedError(f"{self.label}: XSKMAP elements cannot be read from user space")

    def delete(self, key: bytes) -> None:
        index = self._index(key)
        self._check_index(index, errno_=errno.EINVAL)

    def get_next_key(self, key: bytes | None) -> bytes:
        index = 0xFFFFFFFF if key is None else self._index(key)
        return array_next_key(self.label, key, index, self.max_entries)

    def __contains__(self, key: object) -> bool:
        return False

    def items(self) -> list[tuple[bytes, bytes]]:
        """Nothing: no socket is ever in the map."""
        return []

    def __len__(self) -> int:
        return self.max_entries
