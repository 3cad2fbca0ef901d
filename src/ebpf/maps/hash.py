"""Hash maps in host memory: ``HASH``, ``PERCPU_HASH``, ``LRU_HASH``, ``LRU_PERCPU_HASH``. Pure.

Rule 1 (``kernel/bpf/hashtab.c``): a new key in a full map is ``E2BIG`` (LRU maps evict
instead); ``BPF_NOEXIST`` on an existing key is ``EEXIST``; ``BPF_EXIST`` on a missing key
is ``ENOENT``; the flag checks come before the full check. ``BPF_F_NO_PREALLOC`` is accepted
(no difference here); LRU maps reject it (``ENOTSUPP``, 524) as the kernel does; with
``BPF_F_NO_COMMON_LRU`` their ``max_entries`` is rounded up to a multiple of ``ncpus``. Sizes:
``key_size + value_size >= KMALLOC_MAX_SIZE - 48`` is ``E2BIG`` (Linux 6.18; older kernels
also capped ``key_size`` at 512), per-CPU values above 32 KiB are ``E2BIG``.

Rule 2: every element owns one host buffer per CPU, registered as its own region, so an
overrun from one value never lands in another. Updating an existing key writes its value
in place: the address stays valid while the element exists. Deleting (or evicting) an
element unmaps its regions. (The kernel's plain ``HASH`` swaps in a new element on update;
a program that kept the old pointer would see the old value, here it sees the new one.)

Rule 3: iteration (``get_next_key``) is the kernel's bucket order: ``roundup_pow_of_two
(max_entries)`` buckets, a key's bucket is ``jhash(key, seed 0) & (n_buckets - 1)`` (the
kernel's ``htab_map_hash``), a new element goes to the head of its bucket, and so does a
replaced one in ``HASH`` / ``LRU_HASH`` (the kernel swaps in a new element; the per-CPU maps
and ``BPF_F_LOCK`` updates write in place). With ``BPF_F_ZERO_SEED`` the kernel's seed is 0
too and the orders agree exactly; with a random seed only the key *set* is comparable.
Batch operations use the bucket index as their cursor, as the kernel does.

LRU contract (``LRU_HASH``, ``LRU_PERCPU_HASH``): the kernel's eviction, exactly (Linux 6.18,
``kernel/bpf/bpf_lru_list.c``; the model is in ``_lru.py``, checked against the kernel by
``tests/differential/test_lru_kernel.py``). Every update takes a preallocated node first,
on the CPU it runs on (:attr:`LRUHashMap.cpu`; a program's update sets it to the run's
CPU), even when the key exists or the flags then fail it (``LRU_PERCPU_HASH`` skips this
for ``BPF_EXIST``). With no free node a *batch* is evicted: common LRU (default) up to
``clamp(max_entries / ncpus / 2, 1, 128)`` least recently used elements at once (a full
1024-entry map on 2 CPUs drops to 897), per-CPU LRU (``BPF_F_NO_COMMON_LRU``: every CPU
owns ``max_entries / ncpus`` nodes) up to 4 of that CPU's elements. Recency is a
reference bit set by program lookups (:meth:`value_address`) and by replacing updates,
read when nodes rotate between the active and inactive lists; user-space :meth:`lookup`,
iteration, batches and ``bpf_for_each_map_elem`` (:meth:`peek_address`) do not set it, as
in the kernel. A program's update of an ``LRU_PERCPU_HASH`` is :meth:`update_cpu`. The surviving keys equal the
kernel's for the same operations on the same CPUs with ``ncpus`` = the kernel's possible
CPUs (the kernel runs a syscall on the caller's CPU: pin the process to compare).
"""

from __future__ import annotations

import bisect
import dataclasses
import errno
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ebpf.errors import KeyNotFoundError
from ebpf.maps._base import (
    ACCESS_MASK,
    BPF_EXIST,
    BPF_F_LOCK,
    BPF_NOEXIST,
    VALUE_SIZE_MAX,
    Batch,
    Map,
    MapDef,
    MapFlags,
    round_up,
)
from ebpf.maps._errors import InvalidMapArgumentError, KeyExistsError, MapFullError
from ebpf.maps._jhash import htab_hash
from ebpf.maps._lru import LRU, Node
from ebpf.maps.array import percpu_values, split_percpu
from ebpf.spec import MapType
from ebpf.vm.memory import Memory, Region

__all__ = ["HashMap", "LRUHashMap", "LRUPerCPUHashMap", "PerCPUHashMap"]

HTAB_CREATE_FLAG_MASK = (
    MapFlags.NO_PREALLOC | MapFlags.NO_COMMON_LRU | MapFlags.NUMA_NODE | ACCESS_MASK | MapFlags.ZERO_SEED
)
_U32 = struct.Struct("<I")
ENOTSUPP = 524  # the kernel-internal errno LRU maps return for BPF_F_NO_PREALLOC
PCPU_MIN_UNIT_SIZE = 32768
HTAB_ELEM_SIZE = 48  # sizeof(struct htab_elem): key + value must stay below KMALLOC_MAX_SIZE - 48


@dataclass(eq=False)
class _Elem:
    key: bytes
    regions: list[Region]  # one per CPU (one for non-per-CPU maps)
    bucket: int = 0
    node: Node | None = None  # LRU maps: the element's place in the LRU lists


class HashMap(Map):
    """A hash map (``BPF_MAP_TYPE_HASH``)."""

    types = (MapType.HASH,)
    batch_ops = frozenset({"lookup", "lookup_and_delete", "update", "delete"})
    percpu = False
    lru = False

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        super().__init__(defn, memory, ncpus=ncpus)
        flags = defn.flags
        if flags & ~HTAB_CREATE_FLAG_MASK:
            raise InvalidMapArgumentError(f"{self.label}: unsupported hash map flags {flags:#x}")
        if self.lru and flags & MapFlags.NO_PREALLOC:
            raise InvalidMapArgumentError(
                f"{self.label}: LRU maps are always preallocated (BPF_F_NO_PREALLOC)", errno=ENOTSUPP
            )
        if not self.lru and flags & MapFlags.NO_COMMON_LRU:
            raise InvalidMapArgumentError(f"{self.label}: BPF_F_NO_COMMON_LRU is only for LRU maps")
        if defn.max_entries == 0 or defn.key_size == 0 or defn.value_size == 0:
            raise InvalidMapArgumentError(
                f"{self.label}: hash map needs key_size, value_size and max_entries > 0; got "
                f"key_size {defn.key_size}, value_size {defn.value_size}, max_entries {defn.max_entries}"
            )
        too_big = defn.key_size + defn.value_size >= VALUE_SIZE_MAX - HTAB_ELEM_SIZE
        if too_big or (self.percpu and round_up(defn.value_size) > PCPU_MIN_UNIT_SIZE):
            raise InvalidMapArgumentError(
                f"{self.label}: key_size {defn.key_size} + value_size {defn.value_size} is too large",
                errno=errno.E2BIG,
            )
        self._elems: dict[bytes, _Elem] = {}
        if self.lru and flags & MapFlags.NO_COMMON_LRU:  # per-CPU LRU lists: equal shares per CPU
            rounded = -(-defn.max_entries // ncpus) * ncpus
            if rounded > 0xFFFFFFFF:
                rounded = defn.max_entries // ncpus * ncpus
            self.defn = defn = dataclasses.replace(defn, max_entries=rounded)
        self.n_buckets = 1 << max(0, defn.max_entries - 1).bit_length()
        self._buckets: dict[int, list[bytes]] = {}  # bucket -> keys, head first
        self._used: list[int] = []  # sorted indices of non-empty buckets
        self._by_start: dict[int, _Elem] = {}  # first value region's address -> element
        self._cpu = 0
        self._evicted: list[_Elem] = []  # kept until the new element has its buffers (new addresses)
        if self.lru:
            self._lru = LRU(
                defn.max_entries, ncpus, percpu=bool(flags & MapFlags.NO_COMMON_LRU), evict=self._evict
            )

    @property
    def cpu(self) -> int:
        """LRU maps: the CPU updates run on (whose LRU lists give the new element's node).

        The kernel runs a ``BPF_MAP_UPDATE_ELEM`` syscall on the caller's CPU and a program's
        ``bpf_map_update_elem`` on the run's CPU (the runtime sets this before the call).
        """
        return self._cpu

    @cpu.setter
    def cpu(self, cpu: int) -> None:
        self._check_cpu(cpu)
        self._cpu = cpu

    def _evict(self, node: Node) -> bool:
        """The LRU takes ``node`` back: remove its element (the kernel's ``htab_lru_map_delete_node``)."""
        elem: _Elem | None = node.elem
        if elem is None or self._elems.get(elem.key) is not elem:
            return False
        del self._elems[elem.key]
        self._unlink(elem)
        self._unmap(elem)
        self._evicted.append(elem)
        return True

    def _release(self) -> None:
        for elem in self._elems.values():
            self._unmap(elem)
        self._elems.clear()
        self._buckets.clear()
        self._used.clear()

    # --- buckets --------------------------------------------------------------------------------

    def bucket_of(self, key: bytes) -> int:
        """The kernel's bucket of ``key`` with hash seed 0 (``BPF_F_ZERO_SEED``)."""
        return htab_hash(key) & (self.n_buckets - 1)

    def _link_head(self, elem: _Elem) -> None:
        b = elem.bucket
        chain = self._buckets.get(b)
        if chain is None:
            self._buckets[b] = [elem.key]
            bisect.insort(self._used, b)
        else:
            chain.insert(0, elem.key)

    def _unlink(self, elem: _Elem) -> None:
        b = elem.bucket
        chain = self._buckets[b]
        chain.remove(elem.key)
        if not chain:
            del self._buckets[b]
            del self._used[bisect.bisect_left(self._used, b)]

    def _first_from(self, bucket: int) -> bytes | None:
        i = bisect.bisect_left(self._used, bucket)
        return self._buckets[self._used[i]][0] if i < len(self._used) else None

    def _lookup_batch(self, count: int, in_batch: bytes | None, elem_flags: int, *, delete: bool) -> Batch:
        """The kernel's ``__htab_map_lookup_and_delete_batch``: whole buckets, cursor = bucket index."""
        if count < 0:
            raise InvalidMapArgumentError(f"{self.label}: batch count must be >= 0, got {count}")
        if count == 0:
            return Batch([], [], None, False)
        bucket = 0
        if in_batch is not None:
            if len(in_batch) < 4:
                raise InvalidMapArgumentError(f"{self.label}: a hash batch cursor is a u32 bucket index")
            bucket = _U32.unpack_from(bytes(in_batch))[0]
        if bucket >= self.n_buckets:
            raise KeyNotFoundError(
                in_batch, f"{self.label}: batch cursor {bucket} >= {self.n_buckets} buckets"
            )
        keys: list[bytes] = []
        values: list[bytes] = []
        done = False
        while True:
            chain = self.bucket_keys(bucket)
            if len(chain) > count - len(keys):
                if not keys:
                    raise MapFullError(
                        f"{self.label}: bucket {bucket} holds {len(chain)} elements, more than count {count}",
                        errno=errno.ENOSPC,
                    )
                break
            for key in chain:
                keys.append(key)
                values.append(self.lookup(key))
                if delete:
                    self.delete(key)
            bucket += 1
            if bucket >= self.n_buckets:
                done = True
                break
        return Batch(keys, values, _U32.pack(bucket), done)

    def bucket_keys(self, bucket: int) -> list[bytes]:
        """The keys in ``bucket``, head first (the order the kernel walks them)."""
        return list(self._buckets.get(bucket, ()))

    def _unmap(self, elem: _Elem) -> None:
        if self.free_hooks:
            self._free_fields(elem.regions[0].start)
        self._by_start.pop(elem.regions[0].start, None)
        for region in elem.regions:
            self.memory.unmap(region)

    def _find(self, key: bytes) -> _Elem:
        elem = self._elems.get(self._key(key))
        if elem is None:
            raise KeyNotFoundError(key, f"{self.label}: key does not exist")
        return elem

    # --- operations -----------------------------------------------------------------------------

    def lookup(self, key: bytes) -> bytes:
        return self._mask_lock(self._find(key).regions[0].view.tobytes())

    def _lock_word_address(self, address: int) -> int | None:
        if self.percpu or self._lock_offset is None:
            return None
        start = address - self._lock_offset
        return start if start in self._by_start else None

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        self._store(key, [self._value(value)], flags, in_place=bool(flags & BPF_F_LOCK))

    def _store(self, key: bytes, values: list[bytes], flags: int, *, in_place: bool = False) -> None:
        if self.lru:
            self._lru_store(key, values, flags)
            return
        self._check_update_flags(flags)
        key = self._key(key)
        elem = self._elems.get(key)
        mode = flags & ~BPF_F_LOCK
        if elem is not None and mode == BPF_NOEXIST:
            raise KeyExistsError(f"{self.label}: key {key.hex()} exists (BPF_NOEXIST)")
        if elem is None and mode == BPF_EXIST:
            raise KeyNotFoundError(key, f"{self.label}: key does not exist (BPF_EXIST)")
        if elem is None:
            if len(self._elems) >= self.max_entries:
                raise MapFullError(f"{self.label}: map is full (max_entries {self.max_entries})")
            suffix = f"[{key.hex()}]"
            regions = [
                self._new_region(f"{suffix}[cpu{cpu}]" if self.percpu else suffix, self.value_size)
                for cpu in range(len(values))
            ]
            elem = self._elems[key] = _Elem(key, regions, self.bucket_of(key))
            self._by_start[regions[0].start] = elem
            self._link_head(elem)
        elif not self.percpu and not in_place:  # the kernel links a new element at the head
            self._unlink(elem)
            self._link_head(elem)
            self._free_fields(elem.regions[0].start)  # ... and frees the old one's fields
        for region, value in zip(elem.regions, values, strict=True):
            self._write_value(region.view, value)

    def _lru_store(self, key: bytes, values: list[bytes], flags: int, only_cpu: int | None = None) -> None:
        """An LRU update: ``htab_lru_map_update_elem`` / ``__htab_lru_percpu_map_update_elem``.

        ``only_cpu``: a program's update of a per-CPU map (``values`` is that CPU's value):
        an existing element changes on that CPU only, a new one is zero on the others.
        """
        self._check_update_flags(flags)
        key = self._key(key)
        lru = self._lru
        node = None
        if not (self.percpu and flags == BPF_EXIST):  # first a node, maybe evicting (even `key`)
            node = lru.pop_free(self._cpu)
            if node is None:
                raise MapFullError(f"{self.label}: no free LRU node", errno=errno.ENOMEM)
        elem = self._elems.get(key)
        mode = flags & ~BPF_F_LOCK
        if elem is not None and mode == BPF_NOEXIST or elem is None and mode == BPF_EXIST:
            if node is not None:
                lru.push_free(node)
            self._evicted.clear()
            if elem is not None:
                raise KeyExistsError(f"{self.label}: key {key.hex()} exists (BPF_NOEXIST)")
            raise KeyNotFoundError(key, f"{self.label}: key does not exist (BPF_EXIST)")
        if elem is None:
            assert node is not None
            suffix = f"[{key.hex()}]"
            if only_cpu is not None:
                zero = bytes(self.value_size)
                values = [values[0] if cpu == only_cpu else zero for cpu in range(self.ncpus)]
            regions = [
                self._new_region(f"{suffix}[cpu{cpu}]" if self.percpu else suffix, self.value_size)
                for cpu in range(len(values))
            ]
            self._evicted.clear()
            elem = self._elems[key] = _Elem(key, regions, self.bucket_of(key), node)
            node.elem = elem
            self._by_start[regions[0].start] = elem
            self._link_head(elem)
        else:
            old = elem.node
            assert old is not None
            if self.percpu:  # written in place, the old element stays referenced
                old.ref = 1
                if node is not None:
                    lru.push_free(node)
            else:  # the kernel swaps in a new, referenced element at the bucket head
                assert node is not None
                node.ref = 1
                node.elem = elem
                elem.node = node
                lru.push_free(old)
                self._unlink(elem)
                self._link_head(elem)
                self._free_fields(elem.regions[0].start)
        self._evicted.clear()
        if only_cpu is not None and len(values) == 1:
            self._write_value(elem.regions[only_cpu].view, values[0])
            return
        for region, value in zip(elem.regions, values, strict=True):
            self._write_value(region.view, value)

    def _lookup_and_delete(self, key: bytes, flags: int) -> bytes:
        value = self.lookup(key)
        self.delete(key)
        return value

    def delete(self, key: bytes) -> None:
        elem = self._find(key)
        del self._elems[elem.key]
        self._unlink(elem)
        self._unmap(elem)
        if elem.node is not None:
            self._lru.push_free(elem.node)

    def get_next_key(self, key: bytes | None) -> bytes:
        start = 0
        if key is not None:
            key = self._key(key)
            elem = self._elems.get(key)
            if elem is not None:
                b = elem.bucket
                chain = self._buckets[b]
                i = chain.index(key) + 1
                if i < len(chain):
                    return chain[i]
                start = b + 1
        nxt = self._first_from(start)
        if nxt is None:
            raise KeyNotFoundError(key, f"{self.label}: {'map is empty' if start == 0 else 'last key'}")
        return nxt

    def value_address(self, key: bytes, cpu: int = 0) -> int | None:
        self._check_cpu(cpu)
        elem = self._elems.get(self._key(key))
        if elem is None:
            return None
        if elem.node is not None:  # LRU: a program's lookup sets the reference bit
            elem.node.ref = 1
        return elem.regions[cpu if self.percpu else 0].start

    def peek_address(self, key: bytes, cpu: int = 0) -> int | None:
        """:meth:`value_address` without touching LRU recency: the value pointer
        ``bpf_for_each_map_elem`` hands its callback (the kernel sets no reference bit there)."""
        self._check_cpu(cpu)
        elem = self._elems.get(self._key(key))
        return None if elem is None else elem.regions[cpu if self.percpu else 0].start

    def __iter__(self) -> Iterator[bytes]:
        return iter([key for b in self._used for key in self._buckets[b]])

    def __len__(self) -> int:
        return len(self._elems)


class PerCPUHashMap(HashMap):
    """A per-CPU hash map (``BPF_MAP_TYPE_PERCPU_HASH``); values as in ``PerCPUArrayMap``."""

    types = (MapType.PERCPU_HASH,)
    percpu = True

    def lookup_percpu(self, key: bytes) -> list[bytes]:
        """The value of every CPU, CPU 0 first."""
        return [region.view.tobytes() for region in self._find(key).regions]

    def lookup(self, key: bytes) -> bytes:
        stride = round_up(self.value_size)
        return b"".join(v.ljust(stride, b"\0") for v in self.lookup_percpu(key))

    def update_percpu(self, key: bytes, values: Sequence[bytes], flags: int = 0) -> None:
        """Set the value of every CPU (``len(values) == ncpus``)."""
        self._store(key, percpu_values(self, values), flags)

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        self._store(key, split_percpu(self, value), flags)


class LRUHashMap(HashMap):
    """An LRU hash map (``BPF_MAP_TYPE_LRU_HASH``): full maps evict (see the module docstring)."""

    types = (MapType.LRU_HASH,)
    lru = True


class LRUPerCPUHashMap(PerCPUHashMap):
    """A per-CPU LRU hash map (``BPF_MAP_TYPE_LRU_PERCPU_HASH``)."""

    types = (MapType.LRU_PERCPU_HASH,)
    lru = True

    def update_cpu(self, key: bytes, value: bytes, cpu: int, flags: int = 0) -> None:
        """A program's ``bpf_map_update_elem`` on ``cpu``: that CPU's value only (others of a
        new element are zero), with the node taken from ``cpu``'s lists. Unlike reading the
        other CPUs' values first, this is right when the update evicts ``key`` itself."""
        self.cpu = cpu
        self._lru_store(key, [self._value(value)], flags, only_cpu=cpu)
