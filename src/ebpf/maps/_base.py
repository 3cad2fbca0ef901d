"""The map definition, flags and the :class:`Map` base shared by every user-space map. Pure.

Rule 1: keys and values are ``bytes`` of exactly ``key_size`` / ``value_size``; anything
else is an :class:`InvalidMapArgumentError` naming the expected and the given size.

Rule 2: values that a program can point at live in :class:`~ebpf.vm.memory.HostBuffer`\\ s
registered as regions of the map's :class:`~ebpf.vm.memory.Memory`. A value's address is
fixed while its element exists (updates write in place); deleting an element unmaps its
region, so a stale pointer faults in the VM instead of reading freed memory.

Rule 3: operations behave like ``bpf(BPF_MAP_*_ELEM)`` on the same map type: the same
update-flag rules, the same errno for each failure (see ``_errors.py``).
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntFlag
from typing import TYPE_CHECKING, ClassVar, Self, TypeVar

from ebpf.errors import KeyNotFoundError
from ebpf.maps._errors import InvalidMapArgumentError, MapError, MapOperationNotSupportedError
from ebpf.spec import MapFlags, MapSpec, MapType
from ebpf.vm.memory import HostBuffer, Memory, Region

if TYPE_CHECKING:
    from ebpf.btf.spec import Spec as BTFSpec
    from ebpf.maps.typed import TypedMap

__all__ = [
    "BPF_ANY",
    "BPF_EXIST",
    "BPF_F_LOCK",
    "BPF_NOEXIST",
    "ENOTSUPP",
    "Batch",
    "Map",
    "MapDef",
    "MapFlags",
    "UpdateFlags",
    "round_up",
]


class UpdateFlags(IntFlag):
    """``flags`` of ``BPF_MAP_UPDATE_ELEM`` / ``BPF_MAP_LOOKUP_ELEM`` (``BPF_ANY`` /
    ``BPF_NOEXIST`` / ``BPF_EXIST``, or-ed with ``BPF_F_LOCK``).

    The one definition: ``ebpf.kernel.uapi.MapElemFlags`` is this class.
    """

    ANY = 0  # BPF_ANY: create or update
    NOEXIST = 1  # BPF_NOEXIST: create only
    EXIST = 2  # BPF_EXIST: update only
    LOCK = 4  # BPF_F_LOCK: take the value's bpf_spin_lock


BPF_ANY = UpdateFlags.ANY
BPF_NOEXIST = UpdateFlags.NOEXIST
BPF_EXIST = UpdateFlags.EXIST
BPF_F_LOCK = 4
"""Element flag: copy values under the value's ``bpf_spin_lock`` (update and lookup)."""
ENOTSUPP = 524
"""The kernel-internal errno some map operations return (batch ops a type lacks, ...)."""


_T = TypeVar("_T")

ACCESS_MASK = MapFlags.RDONLY | MapFlags.WRONLY | MapFlags.RDONLY_PROG | MapFlags.WRONLY_PROG

VALUE_SIZE_MAX = 1 << 22
"""``KMALLOC_MAX_SIZE`` on x86-64 (4 MiB): larger values are ``E2BIG``."""

_NAME = re.compile(r"[A-Za-z0-9_.]{0,15}")


def round_up(n: int, align: int = 8) -> int:
    """``n`` rounded up to a multiple of ``align`` (the kernel's ``round_up``)."""
    return (n + align - 1) // align * align


@dataclass(frozen=True)
class MapDef:
    """What a map is: the ``BPF_MAP_CREATE`` attributes the user-space maps need.

    The kernel-level subset of a :class:`~ebpf.spec.MapSpec` that ``maps.create`` reads:
    ``create(MapDef)`` applies the kernel's rules only, ``create(MapSpec)`` first applies the
    loader's (libbpf's) fix-ups and converts with :meth:`from_spec`.

    Attributes:
        type: the map type.
        key_size, value_size, max_entries: as in ``union bpf_attr``.
        flags: ``map_flags`` (:class:`MapFlags` bits).
        name: the map name (at most 15 characters of ``[A-Za-z0-9_.]``, as in the kernel).
        map_extra: ``map_extra`` (bloom filter: number of hash functions in the low 4 bits).
        inner: the inner map template of ``ARRAY_OF_MAPS`` / ``HASH_OF_MAPS`` (the kernel's
            ``inner_map_fd``; cilium's ``MapSpec.InnerMap``).
        btf, key_type_id, value_type_id: the BTF of key and value (``btf_fd``,
            ``btf_key_type_id``, ``btf_value_type_id``); a value with a ``struct bpf_spin_lock``
            enables ``BPF_F_LOCK``, and :meth:`Map.typed` decodes with these types.
    """

    type: MapType
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    name: str = ""
    map_extra: int = 0
    inner: MapDef | None = None
    btf: BTFSpec | None = field(default=None, repr=False, compare=False)
    key_type_id: int = 0
    value_type_id: int = 0


@dataclass(frozen=True)
class Batch:
    """The result of one ``BPF_MAP_LOOKUP_BATCH`` / ``BPF_MAP_LOOKUP_AND_DELETE_BATCH``.

    Attributes:
        keys, values: the elements returned (``count`` of them), values in the syscall's
            layout (per-CPU maps: ``ncpus`` values, each padded to 8 bytes).
        out_batch: the cursor to pass as ``in_batch`` for the next batch (arrays and other
            maps: the last key returned; hash maps: the next bucket index as a ``u32``), or
            ``None`` when the kernel would leave ``out_batch`` untouched.
        done: the kernel returned ``ENOENT``: there is nothing after this batch.
    """

    keys: list[bytes]
    values: list[bytes]
    out_batch: bytes | None
    done: bool

    def __len__(self) -> int:
        return len(self.keys)

    def items(self) -> list[tuple[bytes, bytes]]:
        """``(key, value)`` pairs, in the order returned."""
        return list(zip(self.keys, self.values, strict=True))


class Map:
    """A live user-space map: ``lookup``/``update``/``delete``/``get_next_key`` plus dict sugar.

    ``m[k]`` is :meth:`lookup`, ``m[k] = v`` is ``update(k, v)``, ``del m[k]`` is
    :meth:`delete`; iteration walks :meth:`get_next_key` order; ``len``, ``in``, ``keys``,
    ``values``, ``items`` and ``get`` work as on a dict. (Not a ``MutableMapping``
    subclass: :meth:`update` is the kernel's ``update(key, value, flags)``, not
    ``dict.update``.) Maps are context managers;
    :meth:`close` unmaps every value region and is idempotent.
    """

    types: ClassVar[tuple[MapType, ...]] = ()
    batch_ops: ClassVar[frozenset[str]] = frozenset()
    """Which of ``lookup``, ``lookup_and_delete``, ``update``, ``delete`` batches the kernel has."""

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        if ncpus < 1:
            raise InvalidMapArgumentError(f"ncpus must be >= 1, got {ncpus}")
        self.defn = defn
        self.memory = memory if memory is not None else Memory()
        self.ncpus = ncpus
        self.spec: MapSpec | None = None
        """The ``MapSpec`` this map was created from, if any (set by ``maps.create``)."""
        self._lock_offset: int | None = None  # set by maps.create from the value's BTF
        self._timer_offset: int | None = None  # where the value's bpf_timer is (maps/_timer.py)
        self.free_hooks: list[Callable[[Map, int | None], None]] = []
        """Called with ``(map, value address)`` when a value is freed or replaced (the kernel's
        ``bpf_obj_free_fields``: its timers end), with ``(map, None)`` when the map closes."""
        self._closed = False

    # --- attributes -----------------------------------------------------------------------------

    @property
    def type(self) -> MapType:
        return self.defn.type

    @property
    def key_size(self) -> int:
        return self.defn.key_size

    @property
    def value_size(self) -> int:
        return self.defn.value_size

    @property
    def max_entries(self) -> int:
        return self.defn.max_entries

    @property
    def flags(self) -> int:
        return self.defn.flags

    @property
    def name(self) -> str:
        return self.defn.name

    @property
    def label(self) -> str:
        """Region name prefix: ``map:<name>`` (or the type when the map has no name)."""
        return f"map:{self.defn.name or self.defn.type.name.lower()}"

    def __repr__(self) -> str:
        d = self.defn
        return (
            f"{type(self).__name__}(name={d.name!r}, key_size={d.key_size}, "
            f"value_size={d.value_size}, max_entries={d.max_entries}, flags={d.flags:#x})"
        )

    # --- the map operations (overridden per type) -----------------------------------------------

    def lookup(self, key: bytes) -> bytes:
        """``BPF_MAP_LOOKUP_ELEM``: the value of ``key``.

        Raises:
            KeyNotFoundError: no element (``ENOENT``).
            InvalidMapArgumentError: ``key`` has the wrong size.
        """
        raise MapOperationNotSupportedError(f"{self.label}: lookup is not supported")

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        """``BPF_MAP_UPDATE_ELEM``: create or replace, as ``flags`` allow.

        Raises:
            KeyExistsError: ``BPF_NOEXIST`` and the key exists (``EEXIST``).
            KeyNotFoundError: ``BPF_EXIST`` and the key does not exist (``ENOENT``).
            MapFullError: no room for a new element.
            InvalidMapArgumentError: bad flags or sizes (``EINVAL``).
        """
        raise MapOperationNotSupportedError(f"{self.label}: update is not supported")

    def delete(self, key: bytes) -> None:
        """``BPF_MAP_DELETE_ELEM``.

        Raises:
            KeyNotFoundError: no element (``ENOENT``).
        """
        raise MapOperationNotSupportedError(f"{self.label}: delete is not supported")

    def lookup_and_delete(self, key: bytes = b"", flags: int = 0) -> bytes:
        """``BPF_MAP_LOOKUP_AND_DELETE_ELEM``: the value of ``key``, then delete it (queue/stack: pop).

        Raises:
            InvalidMapArgumentError: flags other than ``BPF_F_LOCK`` (with a lock in the value)
                (``EINVAL``, checked first, as the kernel does).
            MapOperationNotSupportedError: the map type has no such operation (``ENOTSUPP``).
            KeyNotFoundError: no element (``ENOENT``).
        """
        if flags & ~BPF_F_LOCK:
            raise InvalidMapArgumentError(f"{self.label}: invalid lookup_and_delete flags {flags:#x}")
        self._check_lock_flag(flags)
        return self._lookup_and_delete(key, flags)

    def _lookup_and_delete(self, key: bytes, flags: int) -> bytes:
        raise MapOperationNotSupportedError(
            f"{self.label}: {self.type.name} has no lookup_and_delete", errno=ENOTSUPP
        )

    def get_next_key(self, key: bytes | None) -> bytes:
        """``BPF_MAP_GET_NEXT_KEY``: the key after ``key`` (the first for ``None`` or a missing key).

        Raises:
            KeyNotFoundError: ``key`` is the last key, or the map is empty (``ENOENT``).
        """
        raise MapOperationNotSupportedError(f"{self.label}: get_next_key is not supported")

    def value_address(self, key: bytes, cpu: int = 0) -> int | None:
        """Address of ``key``'s value in :attr:`memory`, or ``None`` if there is no element.

        This is what ``bpf_map_lookup_elem`` returns to a program (on ``cpu`` for per-CPU
        maps); stores through it are visible to :meth:`lookup`.
        """
        return None

    def __len__(self) -> int:
        raise NotImplementedError

    # --- batches (BPF_MAP_*_BATCH) ---------------------------------------------------------------

    def _check_batch(self, op: str, elem_flags: int) -> None:
        if op not in self.batch_ops:
            raise MapOperationNotSupportedError(
                f"{self.label}: {self.type.name} has no {op} batch operation", errno=ENOTSUPP
            )
        if elem_flags & ~BPF_F_LOCK:
            raise InvalidMapArgumentError(f"{self.label}: invalid batch elem_flags {elem_flags:#x}")
        self._check_lock_flag(elem_flags)

    def _check_lock_flag(self, flags: int) -> None:
        """``BPF_F_LOCK`` needs a value with a ``bpf_spin_lock`` (``EINVAL``)."""
        if flags & BPF_F_LOCK and self.lock_offset is None:
            raise InvalidMapArgumentError(f"{self.label}: BPF_F_LOCK on a value without a bpf_spin_lock")

    @property
    def lock_offset(self) -> int | None:
        """Byte offset of the value's ``struct bpf_spin_lock``, or ``None`` (no lock)."""
        return self._lock_offset

    def _mask_lock(self, value: bytes) -> bytes:
        """A value as user space sees it: the lock word (and a bpf_timer) read as zero."""
        timer = self._timer_offset
        if timer is not None:
            value = value[:timer] + bytes(16) + value[timer + 16 :]
        off = self._lock_offset
        if off is None:
            return value
        return value[:off] + bytes(4) + value[off + 4 :]

    def _write_value(self, view: memoryview, value: bytes) -> None:
        """Store ``value`` into a value slot, leaving the lock word alone (``copy_map_value``)."""
        off = self._lock_offset
        if off is None:
            view[:] = value
        else:
            view[:off] = value[:off]
            view[off + 4 :] = value[off + 4 :]

    def _lock_word_address(self, address: int) -> int | None:
        """The start of the value whose lock word is at ``address``, if it is one of ours."""
        return None

    def spin_lock(self, address: int) -> None:
        """``bpf_spin_lock(address)``: take the lock word of one of this map's values.

        Single-threaded: a lock that is already held would never be released (``EDEADLK``).

        Raises:
            InvalidMapArgumentError: ``address`` is not the lock of a value of this map.
            MapError: the lock is already held (``EDEADLK``).
        """
        view = self._lock_view(address)
        if view[0] or view[1] or view[2] or view[3]:
            raise MapError(
                f"{self.label}: bpf_spin_lock at {address:#x} is already held", errno=errno.EDEADLK
            )
        view[0] = 1  # qspinlock's _Q_LOCKED_VAL

    def spin_unlock(self, address: int) -> None:
        """``bpf_spin_unlock(address)``.

        Raises:
            InvalidMapArgumentError: ``address`` is not the lock of a value of this map.
            MapError: the lock is not held (``EPERM``).
        """
        view = self._lock_view(address)
        if not (view[0] or view[1] or view[2] or view[3]):
            raise MapError(
                f"{self.label}: bpf_spin_unlock of {address:#x}, which is not held", errno=errno.EPERM
            )
        view[:4] = bytes(4)

    def owns_lock(self, address: int) -> bool:
        """Whether ``address`` is the ``bpf_spin_lock`` of one of this map's values."""
        return self._lock_offset is not None and self._lock_word_address(address) is not None

    def _lock_view(self, address: int) -> memoryview:
        if self._lock_offset is None or self._lock_word_address(address) is None:
            raise InvalidMapArgumentError(f"{self.label}: {address:#x} is not a bpf_spin_lock of this map")
        region = self.memory.find(address, 4)
        assert region is not None
        off = address - region.start
        return region.view[off : off + 4]

    def lookup_flags(self, key: bytes, flags: int = 0) -> bytes:
        """``BPF_MAP_LOOKUP_ELEM`` with ``flags`` (``BPF_F_LOCK``: a consistent copy under the lock).

        The lock word itself always reads as zero, as the kernel hides it.

        Raises:
            InvalidMapArgumentError: flags other than ``BPF_F_LOCK``, or ``BPF_F_LOCK``
                without a lock in the value (``EINVAL``).
        """
        if flags & ~BPF_F_LOCK:
            raise InvalidMapArgumentError(f"{self.label}: invalid lookup flags {flags:#x}")
        self._check_lock_flag(flags)
        return self.lookup(key)

    def lookup_batch(self, count: int, in_batch: bytes | None = None, *, elem_flags: int = 0) -> Batch:
        """``BPF_MAP_LOOKUP_BATCH``: up to ``count`` elements after the cursor ``in_batch``.

        ``in_batch=None`` starts at the beginning; pass the previous batch's ``out_batch`` to
        continue. ``count == 0`` returns an empty batch at once, as the kernel does.

        Raises:
            MapOperationNotSupportedError: the map type has no such batch (``ENOTSUPP``, 524).
            InvalidMapArgumentError: bad ``elem_flags`` (``EINVAL``).
            MapFullError: (hash maps) the next bucket holds more than ``count`` elements
                and nothing was returned (``ENOSPC``).
        """
        self._check_batch("lookup", elem_flags)
        return self._lookup_batch(count, in_batch, elem_flags, delete=False)

    def lookup_and_delete_batch(
        self, count: int, in_batch: bytes | None = None, *, elem_flags: int = 0
    ) -> Batch:
        """``BPF_MAP_LOOKUP_AND_DELETE_BATCH``: like :meth:`lookup_batch`, deleting what it returns."""
        self._check_batch("lookup_and_delete", elem_flags)
        return self._lookup_batch(count, in_batch, elem_flags, delete=True)

    def _lookup_batch(self, count: int, in_batch: bytes | None, elem_flags: int, *, delete: bool) -> Batch:
        """The kernel's ``generic_map_lookup_batch``: ``get_next_key`` from the cursor."""
        if count < 0:
            raise InvalidMapArgumentError(f"{self.label}: batch count must be >= 0, got {count}")
        keys: list[bytes] = []
        values: list[bytes] = []
        if count == 0:
            return Batch(keys, values, None, False)
        prev = None if in_batch is None else self._key(in_batch)
        done = False
        while len(keys) < count:
            try:
                key = self.get_next_key(prev)
            except KeyNotFoundError:
                done = True
                break
            prev = key
            try:
                value = self.lookup_flags(key, elem_flags)
            except KeyNotFoundError:  # an empty slot: the kernel skips it
                continue
            keys.append(key)
            values.append(value)
        return Batch(keys, values, prev if keys else None, done)  # out_batch: the last key visited

    def update_batch(self, items: Sequence[tuple[bytes, bytes]], flags: int = 0) -> int:
        """``BPF_MAP_UPDATE_BATCH``: ``update`` each ``(key, value)`` in order with ``flags``.

        Only ``BPF_ANY`` and ``BPF_F_LOCK`` are allowed (``EINVAL`` otherwise). Stops at the
        first failing element, raising its error (a note says how many were written).

        Returns:
            The number of elements written (all of them).
        """
        self._check_batch("update", flags)
        return self._each(items, lambda kv: self.update(kv[0], kv[1], flags), "written")

    def delete_batch(self, keys: Sequence[bytes], flags: int = 0) -> int:
        """``BPF_MAP_DELETE_BATCH``: ``delete`` each key in order, stopping at the first failure."""
        self._check_batch("delete", flags)
        return self._each(keys, self.delete, "deleted")

    def _each(self, elems: Sequence[_T], op: Callable[[_T], None], what: str) -> int:
        for done, elem in enumerate(elems):
            try:
                op(elem)
            except (MapError, KeyNotFoundError) as err:
                err.add_note(f"{done} of {len(elems)} elements were {what}")
                raise
        return len(elems)

    def items_batch(self, count: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Every ``(key, value)``, fetched with :meth:`lookup_batch` ``count`` at a time.

        Hash buckets larger than ``count`` are fetched whole (the kernel's ``ENOSPC`` is
        answered with a larger count, as libbpf users do).
        """
        size = max(1, count if count is not None else min(self.max_entries, 4096))
        cursor: bytes | None = None
        while True:
            try:
                batch = self.lookup_batch(size, cursor)
            except MapError as err:
                if err.errno != errno.ENOSPC:
                    raise
                size *= 2
                continue
            yield from batch.items()
            if batch.done:
                return
            cursor = batch.out_batch

    def typed(self, key: object = None, value: object = None) -> TypedMap:
        """A dict-like view with typed keys and values (see :mod:`ebpf.maps.typed`).

        Without arguments the types come from the map's BTF (``MapSpec.key_type_id`` /
        ``value_type_id``); ``key`` / ``value`` override them with record classes.

        Raises:
            InvalidMapArgumentError: a class whose size is not ``key_size`` / ``value_size``.
        """
        from ebpf.maps.typed import TypedMap

        return TypedMap(self, key, value)

    # --- sugar ----------------------------------------------------------------------------------

    def __getitem__(self, key: bytes) -> bytes:
        return self.lookup(key)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.update(key, value)

    def __delitem__(self, key: bytes) -> None:
        self.delete(key)

    def __iter__(self) -> Iterator[bytes]:
        try:
            key = self.get_next_key(None)
        except KeyNotFoundError:
            return
        while True:
            yield key
            try:
                key = self.get_next_key(key)
            except KeyNotFoundError:
                return

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, (bytes, bytearray, memoryview)):
            return False
        try:
            self.lookup(bytes(key))
        except KeyNotFoundError:
            return False
        return True

    def keys(self) -> list[bytes]:
        """Every key, in :meth:`get_next_key` order."""
        return list(self)

    def values(self) -> list[bytes]:
        """Every value, in key order."""
        return [self.lookup(k) for k in self]

    def items(self) -> list[tuple[bytes, bytes]]:
        """Every ``(key, value)``, in key order."""
        return [(k, self.lookup(k)) for k in self]

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        """The value of ``key``, or ``default`` if there is none."""
        try:
            return self.lookup(key)
        except KeyNotFoundError:
            return default

    def close(self) -> None:
        """Unmap every value region (idempotent)."""
        if not self._closed:
            self._closed = True
            self._free_fields(None)
            self._release()

    def _release(self) -> None:
        """Unmap all regions; overridden by maps that have any."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- helpers for subclasses -----------------------------------------------------------------

    def _key(self, key: bytes) -> bytes:
        if not isinstance(key, (bytes, bytearray, memoryview)):
            raise InvalidMapArgumentError(
                f"{self.label}: key must be bytes of key_size {self.key_size}, got {type(key).__name__}"
            )
        key = bytes(key)
        if len(key) != self.key_size:
            raise InvalidMapArgumentError(
                f"{self.label}: key is {len(key)} bytes, expected key_size {self.key_size}"
            )
        return key

    def _value(self, value: bytes) -> bytes:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise InvalidMapArgumentError(
                f"{self.label}: value must be bytes of value_size {self.value_size}, "
                f"got {type(value).__name__}"
            )
        value = bytes(value)
        if len(value) != self.value_size:
            raise InvalidMapArgumentError(
                f"{self.label}: value is {len(value)} bytes, expected value_size {self.value_size}"
            )
        return value

    def _check_update_flags(self, flags: int) -> None:
        """The kernel's ``(flags & ~BPF_F_LOCK) > BPF_EXIST`` check (BPF_F_LOCK needs a spin lock: EINVAL)."""
        if not 0 <= flags & ~BPF_F_LOCK <= BPF_EXIST:
            raise InvalidMapArgumentError(f"{self.label}: invalid update flags {flags:#x}")
        self._check_lock_flag(flags)

    def _free_fields(self, start: int | None) -> None:
        """Tell :attr:`free_hooks` that the value at ``start`` (``None``: every value) was freed."""
        for hook in list(self.free_hooks):
            hook(self, start)

    def _check_cpu(self, cpu: int) -> None:
        if not 0 <= cpu < self.ncpus:
            raise InvalidMapArgumentError(f"{self.label}: cpu {cpu} out of range (ncpus {self.ncpus})")

    def _new_region(self, suffix: str, size: int) -> Region:
        return self.memory.map_buffer(f"{self.label}{suffix}", HostBuffer(size))


def check_name(name: str) -> None:
    """The kernel's ``bpf_obj_name_cpy`` rule: up to 15 of ``[A-Za-z0-9_.]`` (``EINVAL``)."""
    if _NAME.fullmatch(name) is None:
        raise InvalidMapArgumentError(f"invalid map name {name!r}: at most 15 of [A-Za-z0-9_.]")
