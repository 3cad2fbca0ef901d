"""``BPF_MAP_TYPE_LPM_TRIE``: longest-prefix-match lookups. Pure: no kernel access.

Keys are ``struct bpf_lpm_trie_key``::

    +------------------+------------------------------------------+
    | prefixlen: u32   | data[key_size - 4]  (network byte order; |
    | (little-endian)  |  bit 0 of the prefix = MSB of data[0])   |
    +------------------+------------------------------------------+

Rule 1 (``kernel/bpf/lpm_trie.c``): ``BPF_F_NO_PREALLOC`` is required; ``key_size`` is
5..260 (1..256 data bytes); ``value_size`` is 1..4194024; ``max_entries`` > 0; else ``EINVAL``.
An update with ``prefixlen`` above ``8 * (key_size - 4)`` is ``EINVAL``; a new prefix in a
full trie is ``ENOSPC``; ``BPF_NOEXIST`` / ``BPF_EXIST`` give ``EEXIST`` / ``ENOENT``.

Rule 2: an element is identified by its prefix (``prefixlen`` and the first ``prefixlen``
bits); the stored key keeps the bytes of the last update, as the kernel's node does.
:meth:`lookup` returns the value of the longest stored prefix that matches the first
``prefixlen`` bits of the key (``/0`` matches everything). :meth:`delete` is exact.

Rule 3: :meth:`get_next_key` walks the kernel's post-order: more specific prefixes before
the prefixes that contain them, and the ``0`` branch before the ``1`` branch. A missing
key (or ``None``) restarts from the first.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from ebpf.errors import KeyNotFoundError
from ebpf.maps._base import ACCESS_MASK, BPF_EXIST, BPF_NOEXIST, VALUE_SIZE_MAX, Map, MapDef, MapFlags
from ebpf.maps._errors import InvalidMapArgumentError, KeyExistsError, MapFullError
from ebpf.spec import MapType
from ebpf.vm.memory import Memory, Region

__all__ = ["LPMTrieMap", "lpm_key"]

LPM_CREATE_FLAG_MASK = MapFlags.NO_PREALLOC | MapFlags.NUMA_NODE | ACCESS_MASK
LPM_DATA_SIZE_MAX = 256
LPM_VAL_SIZE_MAX = VALUE_SIZE_MAX - LPM_DATA_SIZE_MAX - 24  # - sizeof(struct lpm_trie_node)
_U32 = struct.Struct("<I")


def lpm_key(prefixlen: int, data: bytes) -> bytes:
    """A ``bpf_lpm_trie_key``: ``lpm_key(24, bytes([192, 168, 1, 0]))``."""
    return _U32.pack(prefixlen) + bytes(data)


@dataclass(eq=False)
class _Node:
    key: bytes  # the full key of the last update
    region: Region
    order: str  # post-order sort key


def _prefix_bits(data: bytes, prefixlen: int) -> str:
    return format(int.from_bytes(data, "big"), f"0{8 * len(data)}b")[:prefixlen]


class LPMTrieMap(Map):
    """A longest-prefix-match trie (``BPF_MAP_TYPE_LPM_TRIE``)."""

    types = (MapType.LPM_TRIE,)
    batch_ops = frozenset({"lookup", "update", "delete"})

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        super().__init__(defn, memory, ncpus=ncpus)
        if (
            defn.max_entries == 0
            or not defn.flags & MapFlags.NO_PREALLOC
            or defn.flags & ~LPM_CREATE_FLAG_MASK
            or not 5 <= defn.key_size <= 4 + LPM_DATA_SIZE_MAX
            or not 1 <= defn.value_size <= LPM_VAL_SIZE_MAX
        ):
            raise InvalidMapArgumentError(
                f"{self.label}: LPM trie needs BPF_F_NO_PREALLOC, key_size 5..260, value_size > 0 "
                f"and max_entries > 0; got key_size {defn.key_size}, value_size {defn.value_size}, "
                f"max_entries {defn.max_entries}, flags {defn.flags:#x}"
            )
        self.max_prefixlen = 8 * (defn.key_size - 4)
        self._nodes: dict[str, _Node] = {}  # prefix bit string -> node

    def _split(self, key: bytes) -> tuple[int, bytes]:
        key = self._key(key)
        prefixlen: int = _U32.unpack_from(key)[0]
        return prefixlen, key[4:]

    def _match(self, key: bytes) -> _Node | None:
        prefixlen, data = self._split(key)
        bits = _prefix_bits(data, min(prefixlen, self.max_prefixlen))
        for n in range(len(bits), -1, -1):
            node = self._nodes.get(bits[:n])
            if node is not None:
                return node
        return None

    def _exact(self, key: bytes) -> tuple[str, _Node | None]:
        prefixlen, data = self._split(key)
        bits = _prefix_bits(data, min(prefixlen, self.max_prefixlen))
        node = self._nodes.get(bits) if prefixlen <= self.max_prefixlen else None
        return bits, node

    def _release(self) -> None:
        for node in self._nodes.values():
            self.memory.unmap(node.region)
        self._nodes.clear()

    def lookup(self, key: bytes) -> bytes:
        node = self._match(key)
        if node is None:
            raise KeyNotFoundError(key, f"{self.label}: no prefix matches")
        return node.region.view.tobytes()

    def value_address(self, key: bytes, cpu: int = 0) -> int | None:
        self._check_cpu(cpu)
        node = self._match(key)
        return None if node is None else node.region.start

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        self._check_update_flags(flags)
        prefixlen, _ = self._split(key)
        value = self._value(value)
        if prefixlen > self.max_prefixlen:
            raise InvalidMapArgumentError(
                f"{self.label}: prefixlen {prefixlen} exceeds {self.max_prefixlen} bits of key data"
            )
        bits, node = self._exact(key)
        if node is not None and flags == BPF_NOEXIST:
            raise KeyExistsError(f"{self.label}: prefix /{prefixlen} exists (BPF_NOEXIST)")
        if node is None and flags == BPF_EXIST:
            raise KeyNotFoundError(key, f"{self.label}: prefix does not exist (BPF_EXIST)")
        if node is None:
            if len(self._nodes) >= self.max_entries:
                raise MapFullError(f"{self.label}: full (max_entries {self.max_entries})", errno=errno.ENOSPC)
            region = self._new_region(f"[/{prefixlen}:{bits}]", self.value_size)
            node = self._nodes[bits] = _Node(bytes(key), region, bits + "2")
        node.key = bytes(key)
        node.region.view[:] = value

    def delete(self, key: bytes) -> None:
        prefixlen, _ = self._split(key)
        if prefixlen > self.max_prefixlen:
            raise InvalidMapArgumentError(
                f"{self.label}: prefixlen {prefixlen} exceeds {self.max_prefixlen} bits of key data"
            )
        bits, node = self._exact(key)
        if node is None:
            raise KeyNotFoundError(key, f"{self.label}: prefix does not exist")
        del self._nodes[bits]
        self.memory.unmap(node.region)

    def _ordered(self) -> list[_Node]:
        return sorted(self._nodes.values(), key=lambda node: node.order)

    def get_next_key(self, key: bytes | None) -> bytes:
        nodes = self._ordered()
        current = None if key is None else self._exact(key)[1]
        if current is None:
            if not nodes:
                raise KeyNotFoundError(key, f"{self.label}: trie is empty")
            return nodes[0].key
        i = nodes.index(current) + 1
        if i == len(nodes):
            raise KeyNotFoundError(key, f"{self.label}: last prefix")
        return nodes[i].key

    def __iter__(self) -> Iterator[bytes]:
        return iter([node.key for node in self._ordered()])

    def __contains__(self, key: object) -> bool:
        """Whether ``key``'s exact prefix is stored (``lookup`` would also match shorter ones)."""
        if not isinstance(key, (bytes, bytearray, memoryview)):
            return False
        return self._exact(bytes(key))[1] is not None

    def __len__(self) -> int:
        return len(self._nodes)
