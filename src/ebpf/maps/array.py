"""``BPF_MAP_TYPE_ARRAY`` and ``BPF_MAP_TYPE_PERCPU_ARRAY`` in host memory. Pure: no kernel access.

Rule 1: all ``max_entries`` elements exist from creation, zero-filled; keys are ``u32``
indices (little-endian). Delete is ``EINVAL``; ``BPF_NOEXIST`` is ``EEXIST``; an index
past the end is ``ENOENT`` on lookup and ``E2BIG`` on update, as in ``kernel/bpf/arraymap.c``.

Rule 2: the values are one contiguous buffer (per CPU), element ``i`` at
``i * round_up(value_size, 8)`` — the kernel's layout, and what ``BPF_F_MMAPABLE`` maps
into user space (:attr:`ArrayMap.data` is that view). One region covers the whole array.

Per-CPU maps: :meth:`lookup` returns the kernel's user-space layout (``ncpus`` values,
each padded to 8 bytes); :meth:`update` takes that layout or one ``value_size`` value for
every CPU; :meth:`lookup_percpu` / :meth:`update_percpu` use a list of per-CPU values.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Sequence
from typing import ClassVar, Generic, TypeVar

from ebpf.errors import KeyNotFoundError
from ebpf.maps._base import (
    ACCESS_MASK,
    BPF_F_LOCK,
    BPF_NOEXIST,
    Map,
    MapDef,
    MapFlags,
    round_up,
)
from ebpf.maps._errors import InvalidMapArgumentError, KeyExistsError, MapFullError
from ebpf.spec import MapType
from ebpf.vm.memory import Memory, Region

__all__ = ["ArrayMap", "FdArrayMap", "PerCPUArrayMap"]

_U32 = struct.Struct("<I")
INT_MAX = (1 << 31) - 1

ARRAY_CREATE_FLAG_MASK = (
    MapFlags.NUMA_NODE | MapFlags.MMAPABLE | ACCESS_MASK | MapFlags.PRESERVE_ELEMS | MapFlags.INNER_MAP
)


def check_array_flags(label: str, defn: MapDef) -> None:
    """The kernel's per-type array flag rules: MMAPABLE and INNER_MAP only on plain ARRAY,
    PRESERVE_ELEMS only on PERF_EVENT_ARRAY (``EINVAL``)."""
    if defn.type != MapType.ARRAY and defn.flags & (MapFlags.MMAPABLE | MapFlags.INNER_MAP):
        raise InvalidMapArgumentError(f"{label}: BPF_F_MMAPABLE / BPF_F_INNER_MAP are only for ARRAY")
    if defn.type != MapType.PERF_EVENT_ARRAY and defn.flags & MapFlags.PRESERVE_ELEMS:
        raise InvalidMapArgumentError(f"{label}: BPF_F_PRESERVE_ELEMS is only for PERF_EVENT_ARRAY")


def array_next_key(label: str, key: bytes | None, index: int, max_entries: int) -> bytes:
    """``get_next_key`` of every array-like map: 0 after ``None`` or an index past the end."""
    if index >= max_entries:
        return _U32.pack(0)
    if index == max_entries - 1:
        raise KeyNotFoundError(key, f"{label}: index {index} is the last")
    return _U32.pack(index + 1)


class ArrayMap(Map):
    """An array map (``BPF_MAP_TYPE_ARRAY``; ``BPF_F_MMAPABLE`` accepted)."""

    types = (MapType.ARRAY,)
    batch_ops = frozenset({"lookup", "update"})
    percpu = False

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        super().__init__(defn, memory, ncpus=ncpus)
        if (
            defn.max_entries == 0
            or defn.key_size != 4
            or defn.value_size == 0
            or defn.flags & ~ARRAY_CREATE_FLAG_MASK
        ):
            raise InvalidMapArgumentError(
                f"{self.label}: array needs key_size 4, value_size > 0, max_entries > 0 and "
                f"flags in {int(ARRAY_CREATE_FLAG_MASK):#x}; got key_size {defn.key_size}, "
                f"value_size {defn.value_size}, max_entries {defn.max_entries}, flags {defn.flags:#x}"
            )
        check_array_flags(self.label, defn)
        if defn.value_size > INT_MAX:  # the kernel's overflow guard for round_up(value_size)
            raise InvalidMapArgumentError(
                f"{self.label}: value_size {defn.value_size} exceeds {INT_MAX}", errno=errno.E2BIG
            )
        self.stride = round_up(defn.value_size)
        ncopies = ncpus if self.percpu else 1
        self._regions: list[Region] = [
            self._new_region(f"[cpu{cpu}]" if self.percpu else "", defn.max_entries * self.stride)
            for cpu in range(ncopies)
        ]

    @property
    def data(self) -> memoryview:
        """The whole value buffer (of CPU 0), writable: what ``mmap()`` of the map shows."""
        return self._regions[0].view

    def _release(self) -> None:
        for region in self._regions:
            self.memory.unmap(region)

    def _index(self, key: bytes) -> int:
        index: int = _U32.unpack(self._key(key))[0]
        return index

    def _slot(self, index: int, cpu: int = 0) -> memoryview:
        off = index * self.stride
        return self._regions[cpu].view[off : off + self.value_size]

    def lookup(self, key: bytes) -> bytes:
        index = self._index(key)
        if index >= self.max_entries:
            raise KeyNotFoundError(key, f"{self.label}: index {index} >= max_entries {self.max_entries}")
        return self._mask_lock(self._slot(index).tobytes())

    def _lock_word_address(self, address: int) -> int | None:
        region = self._regions[0]
        if self.percpu or not region.start <= address < region.end:
            return None
        index, rem = divmod(address - region.start, self.stride)
        return region.start + index * self.stride if rem == self._lock_offset else None

    def _prepare_update(self, key: bytes, flags: int) -> int:
        self._check_update_flags(flags)
        index = self._index(key)
        if index >= self.max_entries:
            raise MapFullError(f"{self.label}: index {index} >= max_entries {self.max_entries}")
        if flags & ~BPF_F_LOCK == BPF_NOEXIST:
            raise KeyExistsError(f"{self.label}: BPF_NOEXIST on an array element (they always exist)")
        return index

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        index = self._prepare_update(key, flags)
        self._write_value(self._slot(index), self._value(value))
        if self.free_hooks:  # array_map_update_elem: bpf_obj_free_fields on the old fields
            self._free_fields(self._regions[0].start + index * self.stride)

    def delete(self, key: bytes) -> None:
        self._index(key)
        raise InvalidMapArgumentError(f"{self.label}: array elements cannot be deleted")

    def get_next_key(self, key: bytes | None) -> bytes:
        index = 0xFFFFFFFF if key is None else self._index(key)
        return array_next_key(self.label, key, index, self.max_entries)

    def value_address(self, key: bytes, cpu: int = 0) -> int | None:
        self._check_cpu(cpu)
        index = self._index(key)
        if index >= self.max_entries:
            return None
        return self._regions[cpu if self.percpu else 0].start + index * self.stride

    def __len__(self) -> int:
        return self.max_entries


class PerCPUArrayMap(ArrayMap):
    """A per-CPU array (``BPF_MAP_TYPE_PERCPU_ARRAY``): one value per simulated CPU."""

    types = (MapType.PERCPU_ARRAY,)
    percpu = True

    def lookup_percpu(self, key: bytes) -> list[bytes]:
        """The value of every CPU, CPU 0 first."""
        index = self._index(key)
        if index >= self.max_entries:
            raise KeyNotFoundError(key, f"{self.label}: index {index} >= max_entries {self.max_entries}")
        return [self._slot(index, cpu).tobytes() for cpu in range(self.ncpus)]

    def lookup(self, key: bytes) -> bytes:
        return b"".join(v.ljust(self.stride, b"\0") for v in self.lookup_percpu(key))

    def update_percpu(self, key: bytes, values: Sequence[bytes], flags: int = 0) -> None:
        """Set the value of every CPU (``len(values) == ncpus``)."""
        index = self._prepare_update(key, flags)
        checked = percpu_values(self, values)
        for cpu, value in enumerate(checked):
            self._slot(index, cpu)[:] = value

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        self.update_percpu(key, split_percpu(self, value), flags)


def split_percpu(m: Map, value: bytes) -> list[bytes]:
    """A per-CPU update value: the kernel layout (``ncpus`` x 8-aligned) or one value for all CPUs."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise InvalidMapArgumentError(f"{m.label}: value must be bytes, got {type(value).__name__}")
    value = bytes(value)
    stride = round_up(m.value_size)
    if len(value) == stride * m.ncpus:
        return [value[i * stride : i * stride + m.value_size] for i in range(m.ncpus)]
    if len(value) == m.value_size:
        return [value] * m.ncpus
    raise InvalidMapArgumentError(
        f"{m.label}: per-CPU value is {len(value)} bytes, expected value_size {m.value_size} "
        f"or {m.ncpus} CPUs x {stride} = {m.ncpus * stride}"
    )


def percpu_values(m: Map, values: Sequence[bytes]) -> list[bytes]:
    """Check a list of per-CPU values: one per CPU, each ``value_size`` bytes."""
    if isinstance(values, (bytes, bytearray, memoryview)) or len(values) != m.ncpus:
        raise InvalidMapArgumentError(f"{m.label}: need a list of {m.ncpus} per-CPU values")
    return [m._value(v) for v in values]


_Slot = TypeVar("_Slot")


class FdArrayMap(Map, Generic[_Slot]):
    """The kernel's fd arrays (``fd_array_map_alloc_check``): prog arrays, perf event arrays,
    cgroup arrays.

    ``key_size`` and ``value_size`` are 4 (an index and an fd in the syscall), ``max_entries``
    is not 0, and only the array creation flags without ``BPF_F_RDONLY_PROG`` /
    ``BPF_F_WRONLY_PROG`` are allowed (``EINVAL`` otherwise). Subclasses name their kind in
    :attr:`kind` and what a slot holds in :attr:`entry` for messages. The filled slots are
    :attr:`_slots` (index -> the object the fd stood for); delete, key walks, membership and
    length are the kernel's for every fd array.
    """

    kind: ClassVar[str] = "fd array"
    entry: ClassVar[str] = "entry"

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        super().__init__(defn, memory, ncpus=ncpus)
        if (
            defn.key_size != 4
            or defn.value_size != 4
            or defn.max_entries == 0
            or defn.flags & ~ARRAY_CREATE_FLAG_MASK
            or defn.flags & (MapFlags.RDONLY_PROG | MapFlags.WRONLY_PROG)
        ):
            raise InvalidMapArgumentError(
                f"{self.label}: {self.kind} needs key_size 4, value_size 4, max_entries > 0; got "
                f"key_size {defn.key_size}, value_size {defn.value_size}, max_entries "
                f"{defn.max_entries}, flags {defn.flags:#x}"
            )
        check_array_flags(self.label, defn)
        self._slots: dict[int, _Slot] = {}

    def _index(self, key: bytes) -> int:
        index: int = _FD_INDEX.unpack(self._key(key))[0]
        return index

    def delete(self, key: bytes) -> None:
        index = self._index(key)
        if index >= self.max_entries:
            raise MapFullError(f"{self.label}: index {index} >= max_entries {self.max_entries}")
        if self._slots.pop(index, None) is None:
            raise KeyNotFoundError(key, f"{self.label}: no {self.entry} in slot {index}")

    def get_next_key(self, key: bytes | None) -> bytes:
        index = 0xFFFFFFFF if key is None else self._index(key)
        return array_next_key(self.label, key, index, self.max_entries)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, (bytes, bytearray, memoryview)) or len(key) != 4:
            return False
        return _FD_INDEX.unpack(bytes(key))[0] in self._slots

    def __len__(self) -> int:
        return self.max_entries

    def _release(self) -> None:
        self._slots.clear()


_FD_INDEX = struct.Struct("<I")
