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

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, ClassVar, Self

from ebpf.errors import KeyNotFoundError
from ebpf.maps._errors import InvalidMapArgumentError, MapOperationNotSupportedError
from ebpf.spec import MapFlags, MapSpec, MapType
from ebpf.vm.memory import HostBuffer, Memory, Region

if TYPE_CHECKING:
    from ebpf.btf.spec import Spec as BTFSpec

__all__ = [
    "BPF_ANY",
    "BPF_EXIST",
    "BPF_NOEXIST",
    "Map",
    "MapDef",
    "MapFlags",
    "UpdateFlags",
    "round_up",
]


class UpdateFlags(IntEnum):
    """``flags`` of ``BPF_MAP_UPDATE_ELEM`` (``BPF_ANY`` / ``BPF_NOEXIST`` / ``BPF_EXIST``)."""

    ANY = 0  # BPF_ANY: create or update
    NOEXIST = 1  # BPF_NOEXIST: create only
    EXIST = 2  # BPF_EXIST: update only


BPF_ANY = UpdateFlags.ANY
BPF_NOEXIST = UpdateFlags.NOEXIST
BPF_EXIST = UpdateFlags.EXIST


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

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        if ncpus < 1:
            raise InvalidMapArgumentError(f"ncpus must be >= 1, got {ncpus}")
        self.defn = defn
        self.memory = memory if memory is not None else Memory()
        self.ncpus = ncpus
        self.spec: MapSpec | None = None
        """The ``MapSpec`` this map was created from, if any (set by ``maps.create``)."""
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
        if flags not in (BPF_ANY, BPF_NOEXIST, BPF_EXIST):
            raise InvalidMapArgumentError(f"{self.label}: invalid update flags {flags:#x}")

    def _check_cpu(self, cpu: int) -> None:
        if not 0 <= cpu < self.ncpus:
            raise InvalidMapArgumentError(f"{self.label}: cpu {cpu} out of range (ncpus {self.ncpus})")

    def _new_region(self, suffix: str, size: int) -> Region:
        return self.memory.map_buffer(f"{self.label}{suffix}", HostBuffer(size))


def check_name(name: str) -> None:
    """The kernel's ``bpf_obj_name_cpy`` rule: up to 15 of ``[A-Za-z0-9_.]`` (``EINVAL``)."""
    if _NAME.fullmatch(name) is None:
        raise InvalidMapArgumentError(f"invalid map name {name!r}: at most 15 of [A-Za-z0-9_.]")
