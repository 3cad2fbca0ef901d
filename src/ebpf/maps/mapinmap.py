"""``ARRAY_OF_MAPS`` and ``HASH_OF_MAPS``: maps whose values are other maps. Pure.

Rule 1 (``kernel/bpf/map_in_map.c``, ``arraymap.c``, ``hashtab.c``): ``value_size`` is 4
(an fd in the syscall) and ``MapDef.inner`` is the template every inner map must match:
same type, ``key_size``, ``value_size`` and ``flags``, and for an array template without
``BPF_F_INNER_MAP`` the same ``max_entries``; a mismatch is ``EINVAL``. A template that is
itself a map-in-map is ``EINVAL``; a ``PROG_ARRAY`` template is ``ENOTSUPP`` (524).

Rule 2: values are :class:`~ebpf.maps.Map` objects: :meth:`update_map` / :meth:`lookup_map`.
The syscall's ``bytes`` view (fd in, map id out) has no meaning without kernel ids, so
:meth:`lookup` / :meth:`update` are ``EINVAL`` and say which method to use. The outer map
holds references only: closing it does not close the inner maps.

Array of maps: only ``BPF_ANY`` (else ``EINVAL``); an index past the end is ``E2BIG`` on
update and delete, ``ENOENT`` on lookup; an empty slot is ``ENOENT``; ``get_next_key``
walks every index. Hash of maps: the flag, full (``E2BIG``) and iteration rules of
``HASH`` (see ``hash.py``), including its bucket order.

Not yet: what ``bpf_map_lookup_elem`` on the outer map returns to a *program* (a pointer
to the inner map) depends on how the VM refers to maps; :meth:`value_address` is ``None``.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterator

from ebpf.errors import KeyNotFoundError
from ebpf.maps._base import BPF_ANY, BPF_EXIST, BPF_NOEXIST, Map, MapDef, MapFlags
from ebpf.maps._errors import (
    InvalidMapArgumentError,
    KeyExistsError,
    MapFullError,
    MapOperationNotSupportedError,
)
from ebpf.maps._jhash import htab_hash
from ebpf.maps.array import ARRAY_CREATE_FLAG_MASK, array_next_key, check_array_flags
from ebpf.maps.hash import ENOTSUPP, HTAB_CREATE_FLAG_MASK
from ebpf.spec import MapType
from ebpf.vm.memory import Memory

__all__ = ["ArrayOfMapsMap", "HashOfMapsMap", "inner_compatible"]

_U32 = struct.Struct("<I")
MAP_IN_MAP_TYPES = (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS)


def inner_compatible(template: MapDef, inner: MapDef) -> bool:
    """The kernel's ``map_meta_equal``: can ``inner`` be stored where ``template`` was declared?"""
    same = (template.type, template.key_size, template.value_size, template.flags) == (
        inner.type,
        inner.key_size,
        inner.value_size,
        inner.flags,
    )
    if same and template.type in (MapType.ARRAY, MapType.PERCPU_ARRAY):
        return bool(template.flags & MapFlags.INNER_MAP) or template.max_entries == inner.max_entries
    return same


class _MapOfMaps(Map):
    array = False

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        super().__init__(defn, memory, ncpus=ncpus)
        inner = defn.inner
        if inner is None:
            raise InvalidMapArgumentError(f"{self.label}: a map-in-map needs an inner map template")
        if inner.type in MAP_IN_MAP_TYPES:
            raise InvalidMapArgumentError(f"{self.label}: the inner map cannot be a map-in-map")
        if inner.type == MapType.PROG_ARRAY:
            raise InvalidMapArgumentError(
                f"{self.label}: a PROG_ARRAY cannot be an inner map", errno=ENOTSUPP
            )
        from ebpf.maps import create  # the template must be a valid map itself

        create(inner, Memory(), ncpus=ncpus).close()
        if defn.value_size != 4:
            raise InvalidMapArgumentError(
                f"{self.label}: a map-in-map value is a u32 (fd): value_size must be 4, got {defn.value_size}"
            )
        self.inner = inner
        self._slots: dict[bytes, Map] = {}

    def _check_inner(self, inner: Map) -> None:
        if not isinstance(inner, Map):
            raise InvalidMapArgumentError(f"{self.label}: value must be a Map, got {type(inner).__name__}")
        if not inner_compatible(self.inner, inner.defn):
            raise InvalidMapArgumentError(
                f"{self.label}: inner map {inner!r} does not match the template {self.inner!r}"
            )

    def lookup_map(self, key: bytes) -> Map:
        """The inner map stored at ``key``.

        Raises:
            KeyNotFoundError: no inner map there (``ENOENT``).
        """
        inner = self._slots.get(self._key(key))
        if inner is None:
            raise KeyNotFoundError(key, f"{self.label}: no inner map at this key")
        return inner

    def update_map(self, key: bytes, inner: Map, flags: int = BPF_ANY) -> None:
        """Store ``inner`` at ``key`` (``BPF_MAP_UPDATE_ELEM`` with the inner map's fd)."""
        raise NotImplementedError

    def lookup(self, key: bytes) -> bytes:
        raise MapOperationNotSupportedError(
            f"{self.label}: values are maps; use lookup_map()", errno=errno.EINVAL
        )

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        raise MapOperationNotSupportedError(
            f"{self.label}: values are maps; use update_map()", errno=errno.EINVAL
        )

    def __contains__(self, key: object) -> bool:
        return isinstance(key, (bytes, bytearray, memoryview)) and bytes(key) in self._slots

    def _release(self) -> None:
        self._slots.clear()


class ArrayOfMapsMap(_MapOfMaps):
    """An array of maps (``BPF_MAP_TYPE_ARRAY_OF_MAPS``)."""

    types = (MapType.ARRAY_OF_MAPS,)

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        if (
            defn.key_size != 4
            or defn.max_entries == 0
            or defn.flags & ~ARRAY_CREATE_FLAG_MASK
            or defn.flags & (MapFlags.RDONLY_PROG | MapFlags.WRONLY_PROG)
        ):
            raise InvalidMapArgumentError(
                f"map:{defn.name}: array of maps needs key_size 4 and max_entries > 0; got key_size "
                f"{defn.key_size}, max_entries {defn.max_entries}, flags {defn.flags:#x}"
            )
        check_array_flags(f"map:{defn.name}", defn)
        super().__init__(defn, memory, ncpus=ncpus)

    def _index(self, key: bytes) -> int:
        index: int = _U32.unpack(self._key(key))[0]
        return index

    def update_map(self, key: bytes, inner: Map, flags: int = BPF_ANY) -> None:
        if flags != BPF_ANY:
            raise InvalidMapArgumentError(f"{self.label}: an array of maps only takes BPF_ANY")
        index = self._index(key)
        if index >= self.max_entries:
            raise MapFullError(f"{self.label}: index {index} >= max_entries {self.max_entries}")
        self._check_inner(inner)
        self._slots[bytes(key)] = inner

    def delete(self, key: bytes) -> None:
        index = self._index(key)
        if index >= self.max_entries:
            raise MapFullError(f"{self.label}: index {index} >= max_entries {self.max_entries}")
        if self._slots.pop(bytes(key), None) is None:
            raise KeyNotFoundError(key, f"{self.label}: no inner map at index {index}")

    def get_next_key(self, key: bytes | None) -> bytes:
        index = 0xFFFFFFFF if key is None else self._index(key)
        return array_next_key(self.label, key, index, self.max_entries)

    def __len__(self) -> int:
        return self.max_entries


class HashOfMapsMap(_MapOfMaps):
    """A hash of maps (``BPF_MAP_TYPE_HASH_OF_MAPS``)."""

    types = (MapType.HASH_OF_MAPS,)

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        if defn.key_size == 0 or defn.max_entries == 0 or defn.flags & ~HTAB_CREATE_FLAG_MASK:
            raise InvalidMapArgumentError(
                f"map:{defn.name}: hash of maps needs key_size > 0 and max_entries > 0; got key_size "
                f"{defn.key_size}, max_entries {defn.max_entries}, flags {defn.flags:#x}"
            )
        super().__init__(defn, memory, ncpus=ncpus)
        self._stamp: dict[bytes, int] = {}
        self._seq = 0

    def update_map(self, key: bytes, inner: Map, flags: int = BPF_ANY) -> None:
        self._check_update_flags(flags)
        key = self._key(key)
        self._check_inner(inner)
        exists = key in self._slots
        if exists and flags == BPF_NOEXIST:
            raise KeyExistsError(f"{self.label}: key {key.hex()} exists (BPF_NOEXIST)")
        if not exists and flags == BPF_EXIST:
            raise KeyNotFoundError(key, f"{self.label}: key does not exist (BPF_EXIST)")
        if not exists and len(self._slots) >= self.max_entries:
            raise MapFullError(f"{self.label}: map is full (max_entries {self.max_entries})")
        self._slots[key] = inner
        self._seq += 1
        self._stamp[key] = self._seq  # a new element at the head of its bucket, as in HASH

    def delete(self, key: bytes) -> None:
        if self._slots.pop(self._key(key), None) is None:
            raise KeyNotFoundError(key, f"{self.label}: key does not exist")
        del self._stamp[bytes(key)]

    def _order(self) -> list[bytes]:
        """The kernel's bucket order (jhash seed 0; newest first within a bucket), as in ``hash.py``."""
        mask = (1 << max(0, self.max_entries - 1).bit_length()) - 1
        return sorted(self._slots, key=lambda k: (htab_hash(k) & mask, -self._stamp[k]))

    def get_next_key(self, key: bytes | None) -> bytes:
        keys = self._order()
        if key is None or self._key(key) not in self._slots:
            if not keys:
                raise KeyNotFoundError(key, f"{self.label}: map is empty")
            return keys[0]
        i = keys.index(bytes(key)) + 1
        if i == len(keys):
            raise KeyNotFoundError(key, f"{self.label}: last key")
        return keys[i]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._order())

    def __len__(self) -> int:
        return len(self._slots)
