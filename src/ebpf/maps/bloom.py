"""``BPF_MAP_TYPE_BLOOM_FILTER``: push values, peek for membership. Pure: no kernel access.

Rule 1 (``kernel/bpf/bloom_filter.c``): ``key_size`` 0, ``value_size`` > 0,
``max_entries`` > 0; ``map_extra`` bits 0-3 are the number of hash functions (0 means 5),
any higher bit is ``EINVAL``. The bit array has ``max_entries * nr_hashes / 5 * 7`` bits
(about ``n * k / ln 2``), at least 64, rounded up to a power of two, as in the kernel.

Rule 2: :meth:`push` only accepts ``BPF_ANY``; :meth:`peek` is ``ENOENT`` when the value is
certainly absent. No false negatives: every pushed value peeks as present. False
positives happen, as in the kernel (the hash functions differ: BLAKE2b here, jhash there,
so which values collide differs). ``delete`` and ``get_next_key`` are ``EOPNOTSUPP``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from ebpf.errors import KeyNotFoundError
from ebpf.maps._base import ACCESS_MASK, BPF_ANY, Map, MapDef, MapFlags
from ebpf.maps._errors import InvalidMapArgumentError, MapOperationNotSupportedError
from ebpf.spec import MapType
from ebpf.vm.memory import Memory

__all__ = ["BloomFilterMap"]

BLOOM_CREATE_FLAG_MASK = MapFlags.NUMA_NODE | MapFlags.ZERO_SEED | ACCESS_MASK
BLOOM_NR_HASH_FUNCS_MASK = 0xF


class BloomFilterMap(Map):
    """A bloom filter (``BPF_MAP_TYPE_BLOOM_FILTER``)."""

    types = (MapType.BLOOM_FILTER,)

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        super().__init__(defn, memory, ncpus=ncpus)
        if (
            defn.key_size != 0
            or defn.value_size == 0
            or defn.max_entries == 0
            or defn.flags & ~BLOOM_CREATE_FLAG_MASK
            or defn.map_extra & ~BLOOM_NR_HASH_FUNCS_MASK
        ):
            raise InvalidMapArgumentError(
                f"{self.label}: bloom filter needs key_size 0, value_size > 0, max_entries > 0, "
                f"map_extra <= 15; got key_size {defn.key_size}, value_size {defn.value_size}, "
                f"max_entries {defn.max_entries}, flags {defn.flags:#x}, map_extra {defn.map_extra:#x}"
            )
        self.nr_hashes = defn.map_extra & BLOOM_NR_HASH_FUNCS_MASK or 5
        nr_bits = defn.max_entries * self.nr_hashes // 5 * 7
        self.nr_bits = 64 if nr_bits <= 64 else 1 << (nr_bits - 1).bit_length()
        self.nr_bits = min(self.nr_bits, 1 << 31)
        self._bits = bytearray(self.nr_bits // 8)
        self._pushed = 0

    def _positions(self, value: bytes) -> list[int]:
        digest = hashlib.blake2b(value, digest_size=4 * self.nr_hashes).digest()
        mask = self.nr_bits - 1
        return [int.from_bytes(digest[4 * i : 4 * i + 4], "little") & mask for i in range(self.nr_hashes)]

    def push(self, value: bytes, flags: int = BPF_ANY) -> None:
        """``bpf_map_push_elem``: add ``value`` (only ``BPF_ANY``, else ``EINVAL``)."""
        if flags != BPF_ANY:
            raise InvalidMapArgumentError(f"{self.label}: bloom filter push takes only BPF_ANY")
        for bit in self._positions(self._value(value)):
            self._bits[bit >> 3] |= 1 << (bit & 7)
        self._pushed += 1

    def peek(self, value: bytes) -> None:
        """``bpf_map_peek_elem``: return if ``value`` may be present.

        Raises:
            KeyNotFoundError: ``value`` was certainly never pushed (``ENOENT``).
        """
        for bit in self._positions(self._value(value)):
            if not self._bits[bit >> 3] & (1 << (bit & 7)):
                raise KeyNotFoundError(None, f"{self.label}: value is not in the filter")

    def __contains__(self, value: object) -> bool:
        """``value in bloom``: ``True`` if it may be present."""
        if not isinstance(value, (bytes, bytearray, memoryview)):
            return False
        try:
            self.peek(bytes(value))
        except KeyNotFoundError:
            return False
        return True

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        """``BPF_MAP_UPDATE_ELEM`` with no key: push."""
        self._key(key)
        self.push(value, flags)

    def delete(self, key: bytes) -> None:
        raise MapOperationNotSupportedError(f"{self.label}: cannot delete from a bloom filter")

    def get_next_key(self, key: bytes | None) -> bytes:
        raise MapOperationNotSupportedError(f"{self.label}: a bloom filter has no keys")

    def __iter__(self) -> Iterator[bytes]:
        raise MapOperationNotSupportedError(f"{self.label}: a bloom filter has no keys")

    def __len__(self) -> int:
        """How many values were pushed (bookkeeping of this implementation; the kernel has none)."""
        return self._pushed
