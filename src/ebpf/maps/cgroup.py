"""Legacy cgroup storage (``CGROUP_STORAGE``, ``PERCPU_CGROUP_STORAGE``) and ``CGROUP_ARRAY``. Pure.

Core layer: no kernel access (user-space keys name cgroups of this host: a cgroup v2
directory's inode number is its cgroup id).

Rule 1 (``cgroup_storage_map_alloc``, Linux 6.18; checked in ``tests/maps/test_cgroup_maps.py``
and against the kernel in ``tests/differential/test_cgroup_maps_kernel.py``): ``key_size`` is
16 (``struct bpf_cgroup_storage_key {u64 cgroup_inode_id; u32 attach_type;}``: one storage
per cgroup and attach type) or 8 (a ``u64`` cgroup id: one storage per cgroup, shared by
every attach type); ``value_size`` from 1 to 65407 (``BPF_LOCAL_STORAGE_MAX_VALUE_SIZE``;
per-CPU: 32768, ``PCPU_MIN_UNIT_SIZE``; ``E2BIG`` above); flags only ``BPF_F_NUMA_NODE``
and the access flags (not ``RDONLY_PROG`` with ``WRONLY_PROG``); ``max_entries`` 0. All
else ``EINVAL``. A key BTF must be the ``u64`` or the two-member struct.

Rule 2 (life of a storage): the kernel creates a zeroed storage per (cgroup, attach type)
when a program using the map is attached to the cgroup (:meth:`CgroupStorageMap.attach`),
and frees it when the cgroup is released, not on detach (measured: the key stays after the
links are closed; :meth:`CgroupStorageMap.release_cgroup`). ``get_next_key`` walks the
newest storage first (the kernel's ``list_add``); a key that names no storage is ``ENOENT``
(not the first key). A ``BPF_PROG_TEST_RUN`` uses a temporary zeroed storage that no key
reaches (:meth:`CgroupStorageMap.new_run_storage`), shared by the runs of one ``repeat``
and fresh for each test run (measured; see :mod:`ebpf.vm._helpers_cgroup`).

Rule 3 (user space): ``lookup`` / ``update`` of an existing storage only: update flags
``BPF_ANY`` or ``BPF_EXIST`` (``BPF_NOEXIST`` is ``EINVAL``; a missing key ``ENOENT``),
``BPF_F_LOCK`` with a ``bpf_spin_lock`` in the value; ``delete`` is ``EINVAL``;
``lookup_and_delete`` ``ENOTSUPP``. The padding of a 16-byte key is ignored on input and
zero on output. Per-CPU values are ``ncpus`` values, each padded to 8 bytes.

Rule 4 (``CGROUP_ARRAY``, an fd array): ``key_size`` and ``value_size`` 4, ``max_entries`` >
0. Update takes a cgroup v2 directory fd of this process (``EBADF`` for anything else, cgroup
v1 included), only ``BPF_ANY`` (``EINVAL``), an index past the end is ``E2BIG`` (update and
delete); delete of an empty slot ``ENOENT``; ``lookup`` is ``ENOTSUPP`` (the kernel has no
user-space view of a cgroup pointer); :meth:`CgroupArrayMap.cgroup_at` is what the
``*_under_cgroup`` helpers read.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar

from ebpf.errors import BTFError, KeyNotFoundError
from ebpf.maps._base import (
    ACCESS_MASK,
    BPF_ANY,
    BPF_EXIST,
    BPF_F_LOCK,
    ENOTSUPP,
    Map,
    MapDef,
    MapFlags,
    round_up,
)
from ebpf.maps._errors import InvalidMapArgumentError, MapFullError, MapOperationNotSupportedError
from ebpf.maps.array import FdArrayMap, percpu_values, split_percpu
from ebpf.maps.storage import MAX_VALUE_SIZE, OwnerError, _fdinfo, _mount_fstype
from ebpf.spec import MapType
from ebpf.vm.memory import HostBuffer, Memory, Region

__all__ = [
    "CGROUP_STORAGE_KEY",
    "PCPU_MIN_UNIT_SIZE",
    "CgroupArrayMap",
    "CgroupRef",
    "CgroupStorage",
    "CgroupStorageMap",
    "CgroupStorageType",
    "PerCPUCgroupStorageMap",
    "cgroup_storage_key",
    "is_descendant",
    "resolve_cgroup_fd",
]

CGROUP_STORAGE_KEY = struct.Struct("<QI4x")
"""``struct bpf_cgroup_storage_key``: ``cgroup_inode_id``, ``attach_type`` (16 bytes, padded)."""
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
PCPU_MIN_UNIT_SIZE = 32768
"""The largest per-CPU cgroup storage value on x86-64 (``PCPU_MIN_UNIT_SIZE``)."""
CREATE_FLAG_MASK = MapFlags.NUMA_NODE | ACCESS_MASK
"""``LOCAL_STORAGE_CREATE_FLAG_MASK`` of ``bpf_local_storage.c``: what cgroup storage accepts."""


class CgroupStorageType(IntEnum):
    """``enum bpf_cgroup_storage_type``: which storage ``bpf_get_local_storage`` returns."""

    SHARED = 0  # BPF_CGROUP_STORAGE_SHARED
    PERCPU = 1  # BPF_CGROUP_STORAGE_PERCPU


def cgroup_storage_key(cgroup_id: int, attach_type: int = 0) -> bytes:
    """A 16-byte ``struct bpf_cgroup_storage_key``."""
    return CGROUP_STORAGE_KEY.pack(cgroup_id, attach_type)


@dataclass(eq=False)
class CgroupStorage:
    """One storage: a value region (per-CPU maps: one per CPU)."""

    regions: list[Region] = field(default_factory=list)

    def address(self, cpu: int = 0) -> int:
        """Where the value of ``cpu`` starts (what ``bpf_get_local_storage`` returns)."""
        return self.regions[cpu if len(self.regions) > 1 else 0].start


def _check_key_btf(defn: MapDef, label: str) -> None:
    """``cgroup_storage_check_btf``: a ``u64`` key, or the two-member key struct."""
    from ebpf.btf.types import Int, Struct

    assert defn.btf is not None
    btf = defn.btf
    try:
        t = btf[btf.resolve_id(defn.key_type_id)]
        if defn.key_size == CGROUP_STORAGE_KEY.size:
            ok = isinstance(t, Struct) and len(t.members) == 2
            if ok:
                assert isinstance(t, Struct)
                for member, (offset, size) in zip(t.members, ((0, 8), (64, 4)), strict=True):
                    mt = btf[btf.resolve_id(member.type)]
                    ok = ok and (
                        isinstance(mt, Int)
                        and member.offset == offset
                        and not member.bitfield_size
                        and mt.size == size
                        and mt.bits == size * 8
                        and mt.offset == 0
                    )
        else:
            ok = isinstance(t, Int) and t.bits == 64 and t.offset == 0
    except (BTFError, IndexError, KeyError) as err:
        raise InvalidMapArgumentError(f"{label}: bad BTF key type {defn.key_type_id}: {err}") from None
    if not ok:
        raise InvalidMapArgumentError(
            f"{label}: the BTF key of cgroup storage must be a u64 or struct bpf_cgroup_storage_key"
        )


class CgroupStorageMap(Map):
    """Legacy cgroup storage (``BPF_MAP_TYPE_CGROUP_STORAGE``; see the module docstring)."""

    types: ClassVar[tuple[MapType, ...]] = (MapType.CGROUP_STORAGE,)
    storage_type: ClassVar[CgroupStorageType] = CgroupStorageType.SHARED
    max_value_size: ClassVar[int] = MAX_VALUE_SIZE

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        super().__init__(defn, memory, ncpus=ncpus)
        label = self.label
        if defn.key_size not in (CGROUP_STORAGE_KEY.size, _U64.size):
            raise InvalidMapArgumentError(f"{label}: key_size must be 16 or 8, got {defn.key_size}")
        if defn.value_size == 0:
            raise InvalidMapArgumentError(f"{label}: value_size must be > 0")
        if defn.value_size > self.max_value_size:
            raise InvalidMapArgumentError(
                f"{label}: value_size {defn.value_size} > {self.max_value_size}", errno=errno.E2BIG
            )
        both = MapFlags.RDONLY_PROG | MapFlags.WRONLY_PROG
        if defn.flags & ~CREATE_FLAG_MASK or defn.flags & both == both:
            raise InvalidMapArgumentError(f"{label}: invalid flags {defn.flags:#x}")
        if defn.max_entries:
            raise InvalidMapArgumentError(f"{label}: max_entries must be 0 (storage is per cgroup)")
        if defn.btf is not None and defn.key_type_id:
            _check_key_btf(defn, label)
        self._storages: dict[tuple[int, int], CgroupStorage] = {}
        self._temporary: list[CgroupStorage] = []

    @property
    def shared(self) -> bool:
        """8-byte keys: one storage per cgroup, whatever the attach type."""
        return self.key_size == _U64.size

    # --- life of storages (Rule 2) --------------------------------------------------------------

    def _ident(self, cgroup_id: int, attach_type: int) -> tuple[int, int]:
        return (cgroup_id, 0 if self.shared else attach_type)

    def _new_storage(self, suffix: str) -> CgroupStorage:
        percpu = self.storage_type is CgroupStorageType.PERCPU
        count, size = (self.ncpus, round_up(self.value_size)) if percpu else (1, self.value_size)
        return CgroupStorage(
            [self.memory.map_buffer(f"{self.label}:{suffix}", HostBuffer(size)) for _ in range(count)]
        )

    def _free(self, storage: CgroupStorage) -> None:
        for region in storage.regions:
            self.memory.unmap(region)
        storage.regions.clear()

    def attach(self, cgroup_id: int, attach_type: int) -> bool:
        """What attaching a program that uses this map to a cgroup does: create the zeroed
        storage of ``(cgroup_id, attach_type)`` (of ``cgroup_id`` alone with 8-byte keys).

        Returns:
            Whether a storage was created (``False``: it existed).
        """
        ident = self._ident(cgroup_id, attach_type)
        if ident in self._storages:
            return False
        self._storages[ident] = self._new_storage(f"cgroup{cgroup_id}/{ident[1]}")
        return True

    def release_cgroup(self, cgroup_id: int) -> int:
        """The cgroup's release: drop its storages; how many there were."""
        gone = [ident for ident in self._storages if ident[0] == cgroup_id]
        for ident in gone:
            self._free(self._storages.pop(ident))
        return len(gone)

    def new_run_storage(self) -> CgroupStorage:
        """A temporary zeroed storage for one test run (``bpf_cgroup_storage_alloc``); no key
        reaches it. Free it with :meth:`free_run_storage` (closing the map frees it too)."""
        storage = self._new_storage("test_run")
        self._temporary.append(storage)
        return storage

    def free_run_storage(self, storage: CgroupStorage) -> None:
        """Unmap a storage from :meth:`new_run_storage`."""
        if storage in self._temporary:
            self._temporary.remove(storage)
            self._free(storage)

    def storage_of(self, cgroup_id: int, attach_type: int = 0) -> CgroupStorage | None:
        """The storage of ``(cgroup_id, attach_type)``, if a program was attached there."""
        return self._storages.get(self._ident(cgroup_id, attach_type))

    # --- user space (Rule 3) --------------------------------------------------------------------

    def _parse(self, key: bytes) -> tuple[int, int]:
        key = self._key(key)
        if self.shared:
            return (_U64.unpack(key)[0], 0)
        cgroup_id, attach_type = CGROUP_STORAGE_KEY.unpack(key)
        return (cgroup_id, attach_type)

    def _find(self, key: bytes) -> CgroupStorage:
        storage = self._storages.get(self._parse(key))
        if storage is None:
            raise KeyNotFoundError(key, f"{self.label}: no storage for this cgroup")
        return storage

    def _pack(self, ident: tuple[int, int]) -> bytes:
        return _U64.pack(ident[0]) if self.shared else CGROUP_STORAGE_KEY.pack(*ident)

    def lookup(self, key: bytes) -> bytes:
        storage = self._find(key)
        return self._mask_lock(storage.regions[0].view.tobytes())

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        if flags & ~(BPF_F_LOCK | int(BPF_EXIST)):
            raise InvalidMapArgumentError(f"{self.label}: invalid update flags {flags:#x}")
        self._check_lock_flag(flags)
        storage = self._find(key)
        self._write_value(storage.regions[0].view, self._value(value))

    def delete(self, key: bytes) -> None:
        raise MapOperationNotSupportedError(
            f"{self.label}: cgroup storage cannot be deleted (it lives as long as its cgroup)",
            errno=errno.EINVAL,
        )

    def get_next_key(self, key: bytes | None) -> bytes:
        order = list(reversed(self._storages))  # newest first, as the kernel's list_add
        if key is None:
            if not order:
                raise KeyNotFoundError(key, f"{self.label}: no storage")
            return self._pack(order[0])
        ident = self._parse(key)
        if ident not in self._storages:
            raise KeyNotFoundError(key, f"{self.label}: no storage for this key")
        position = order.index(ident)
        if position + 1 == len(order):
            raise KeyNotFoundError(key, f"{self.label}: the last key")
        return self._pack(order[position + 1])

    def value_address(self, key: bytes, cpu: int = 0) -> int | None:
        self._check_cpu(cpu)
        storage = self._storages.get(self._parse(key))
        return None if storage is None else storage.address(cpu)

    def __iter__(self) -> Iterator[bytes]:
        return iter([self._pack(ident) for ident in reversed(self._storages)])

    def __len__(self) -> int:
        return len(self._storages)

    def _lock_word_address(self, address: int) -> int | None:
        off = self._lock_offset
        if off is None:
            return None
        for storage in (*self._storages.values(), *self._temporary):
            for region in storage.regions:
                if address == region.start + off:
                    return region.start
        return None

    def _release(self) -> None:
        for storage in (*self._storages.values(), *self._temporary):
            self._free(storage)
        self._storages.clear()
        self._temporary.clear()


class PerCPUCgroupStorageMap(CgroupStorageMap):
    """Per-CPU legacy cgroup storage (``BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE``)."""

    types = (MapType.PERCPU_CGROUP_STORAGE,)
    storage_type = CgroupStorageType.PERCPU
    max_value_size = PCPU_MIN_UNIT_SIZE

    def lookup_percpu(self, key: bytes) -> list[bytes]:
        """The value of every CPU, CPU 0 first."""
        return [region.view[: self.value_size].tobytes() for region in self._find(key).regions]

    def lookup(self, key: bytes) -> bytes:
        """Every CPU's value with its padding to 8 bytes, which the kernel copies too (it
        copies ``round_up(value_size, 8)`` bytes per CPU both ways)."""
        return b"".join(region.view.tobytes() for region in self._find(key).regions)

    def update_percpu(self, key: bytes, values: Sequence[bytes], flags: int = BPF_ANY) -> None:
        """Set the value of every CPU (``len(values) == ncpus``; ``BPF_ANY`` or ``BPF_EXIST``)."""
        if flags not in (BPF_ANY, BPF_EXIST):
            raise InvalidMapArgumentError(f"{self.label}: invalid update flags {flags:#x}")
        storage = self._find(key)
        for region, value in zip(storage.regions, percpu_values(self, values), strict=True):
            region.view[: self.value_size] = value

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        """``ncpus`` values padded to 8 bytes (the padding is stored too, as in the kernel),
        or one ``value_size`` value for every CPU."""
        if flags not in (BPF_ANY, BPF_EXIST):
            raise InvalidMapArgumentError(f"{self.label}: invalid update flags {flags:#x}")
        stride = round_up(self.value_size)
        if isinstance(value, (bytes, bytearray, memoryview)) and len(value) == stride * self.ncpus:
            storage = self._find(key)
            for cpu, region in enumerate(storage.regions):
                region.view[:] = bytes(value[cpu * stride : (cpu + 1) * stride])
            return
        self.update_percpu(key, split_percpu(self, value), flags)


# --- cgroup arrays (Rule 4) -----------------------------------------------------------------------


@dataclass(frozen=True)
class CgroupRef:
    """A cgroup v2 directory: its id (the directory's inode), device and path."""

    id: int
    dev: int
    path: str


def resolve_cgroup_fd(fd: int) -> CgroupRef:
    """The cgroup v2 directory ``fd`` (a descriptor of this process) names.

    Raises:
        OwnerError: ``EBADF``: not open, or not a directory of a cgroup2 mount (the kernel's
            ``cgroup_get_from_fd`` refuses cgroup v1 too).
    """
    try:
        st = os.fstat(fd) if fd >= 0 else None
    except OSError:
        st = None
    if st is None:
        raise OwnerError(f"fd {fd} is not open", errno=errno.EBADF)
    mnt = _fdinfo(fd).get("mnt_id")
    if not stat.S_ISDIR(st.st_mode) or mnt is None or _mount_fstype(mnt) != "cgroup2":
        raise OwnerError(f"fd {fd} is not a cgroup v2 directory", errno=errno.EBADF)
    try:
        path = os.readlink(f"/proc/self/fd/{fd}")
    except OSError as err:
        raise OwnerError(f"fd {fd}: cannot read its path: {err}", errno=errno.EBADF) from None
    return CgroupRef(st.st_ino, st.st_dev, path)


def is_descendant(cgroup_id: int, ancestor: CgroupRef) -> bool:
    """Whether the cgroup ``cgroup_id`` is ``ancestor`` or below it (``cgroup_is_descendant``).

    Looks for a directory whose inode is ``cgroup_id`` in ``ancestor``'s subtree.
    """
    if cgroup_id == ancestor.id:
        return True
    stack = [ancestor.path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_dev != ancestor.dev:
                continue
            if st.st_ino == cgroup_id:
                return True
            stack.append(entry.path)
    return False


class CgroupArrayMap(FdArrayMap[CgroupRef]):
    """A cgroup array (``BPF_MAP_TYPE_CGROUP_ARRAY``; see the module docstring, Rule 4)."""

    types = (MapType.CGROUP_ARRAY,)
    kind = "cgroup array"
    entry = "cgroup"

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        super().__init__(defn, memory, ncpus=ncpus)

    def update_cgroup(self, key: bytes, cgroup: CgroupRef, flags: int = BPF_ANY) -> None:
        """Put ``cgroup`` in slot ``key`` (what ``update`` does with the fd's cgroup)."""
        self._slots[self._checked_index(key, flags)] = cgroup

    def _checked_index(self, key: bytes, flags: int) -> int:
        if flags != BPF_ANY:
            raise InvalidMapArgumentError(f"{self.label}: a cgroup array only takes BPF_ANY")
        index = self._index(key)
        if index >= self.max_entries:
            raise MapFullError(f"{self.label}: index {index} >= max_entries {self.max_entries}")
        return index

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        """``BPF_MAP_UPDATE_ELEM``: ``value`` is a cgroup v2 directory fd (a ``u32``)."""
        index = self._checked_index(key, flags)
        fd = _U32.unpack(self._value(value))[0]
        self._slots[index] = resolve_cgroup_fd(fd)

    def lookup(self, key: bytes) -> bytes:
        raise MapOperationNotSupportedError(
            f"{self.label}: a cgroup array has no user-space lookup; use cgroup_at()", errno=ENOTSUPP
        )

    def cgroup_at(self, index: int) -> CgroupRef | None:
        """The cgroup in slot ``index``, or ``None``."""
        return self._slots.get(index)
