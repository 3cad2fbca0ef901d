"""HASH / PERCPU_HASH / LRU_HASH / LRU_PERCPU_HASH: kernel behaviours and the LRU contract."""

from __future__ import annotations

import errno
import struct

import pytest

from ebpf.errors import KeyNotFoundError, VMError
from ebpf.maps import (
    BPF_EXIST,
    BPF_NOEXIST,
    HashMap,
    InvalidMapArgumentError,
    KeyExistsError,
    LRUPerCPUHashMap,
    MapDef,
    MapFlags,
    MapFullError,
    PerCPUHashMap,
    create,
    errno_of,
)
from ebpf.spec import MapType
from ebpf.vm.memory import Memory


def k(i: int) -> bytes:
    return struct.pack("<I", i)


def v(i: int) -> bytes:
    return struct.pack("<Q", i)


def hmap(mtype: MapType = MapType.HASH, max_entries: int = 3, flags: int = 0, **kw: object) -> HashMap:
    mem = kw.get("memory")
    assert mem is None or isinstance(mem, Memory)
    ncpus = kw.get("ncpus", 1)
    assert isinstance(ncpus, int)
    m = create(MapDef(mtype, 4, 8, max_entries, flags, "h"), mem, ncpus=ncpus)
    assert isinstance(m, HashMap)
    return m


def test_basic_operations() -> None:
    with hmap() as m:
        assert len(m) == 0 and list(m) == []
        m[k(1)] = v(10)
        m.update(k(2), v(20), BPF_NOEXIST)
        m.update(k(2), v(21), BPF_EXIST)
        assert m[k(2)] == v(21) and len(m) == 2 and k(1) in m and k(3) not in m
        assert sorted(m.items()) == [(k(1), v(10)), (k(2), v(21))]
        del m[k(1)]
        assert list(m) == [k(2)]
        with pytest.raises(KeyNotFoundError):
            m.delete(k(1))
        with pytest.raises(KeyNotFoundError):
            m.lookup(k(1))
        assert m.get(k(1)) is None


def test_flag_errors() -> None:
    with hmap() as m:
        m[k(1)] = v(1)
        with pytest.raises(KeyExistsError) as exists:
            m.update(k(1), v(2), BPF_NOEXIST)
        assert exists.value.errno == errno.EEXIST
        with pytest.raises(KeyNotFoundError) as missing:
            m.update(k(9), v(2), BPF_EXIST)
        assert errno_of(missing.value) == errno.ENOENT
        with pytest.raises(InvalidMapArgumentError):
            m.update(k(1), v(2), 7)
        assert m[k(1)] == v(1)


def test_full_is_e2big_and_flags_checked_first() -> None:
    with hmap(max_entries=2, flags=MapFlags.NO_PREALLOC) as m:
        m[k(1)] = v(1)
        m[k(2)] = v(2)
        with pytest.raises(MapFullError) as full:
            m[k(3)] = v(3)
        assert full.value.errno == errno.E2BIG
        with pytest.raises(KeyNotFoundError):  # ENOENT before E2BIG
            m.update(k(3), v(3), BPF_EXIST)
        m[k(1)] = v(11)  # an existing key can still be updated
        assert m[k(1)] == v(11)


def test_get_next_key() -> None:
    with hmap() as m:
        with pytest.raises(KeyNotFoundError):
            m.get_next_key(None)
        for i in (5, 3, 4):
            m[k(i)] = v(i)
        order = list(m)
        assert sorted(order) == [k(3), k(4), k(5)]
        assert m.get_next_key(None) == order[0]
        assert m.get_next_key(k(99)) == order[0]  # a missing key restarts
        assert [m.get_next_key(order[0]), m.get_next_key(order[1])] == order[1:]
        with pytest.raises(KeyNotFoundError):
            m.get_next_key(order[2])


def test_bucket_order() -> None:
    """Buckets in index order, newest first within one; a replaced HASH element moves to the head."""
    with hmap(max_entries=8) as m:
        assert m.n_buckets == 8
        keys = [k(i) for i in range(64)]
        b0 = m.bucket_of(keys[0])
        same = [key for key in keys if m.bucket_of(key) == b0][:2]
        later = next(key for key in keys if m.bucket_of(key) > b0)
        earlier = next((key for key in keys if m.bucket_of(key) < b0), None)
        for key in (later, *same):
            m[key] = v(0)
        assert m.bucket_keys(b0) == [same[1], same[0]]  # newest first
        assert list(m) == [same[1], same[0], later]  # bucket index order
        m[same[0]] = v(1)  # replaced: linked again at the head
        assert list(m) == [same[0], same[1], later]
        if earlier is not None:
            m[earlier] = v(2)
            assert next(iter(m)) == earlier
    with hmap(MapType.PERCPU_HASH, max_entries=8) as p:
        for key in same:
            p[key] = v(0)
        p[same[0]] = v(1)  # per-CPU maps write in place
        assert list(p) == [same[1], same[0]]


@pytest.mark.parametrize(
    ("mtype", "key_size", "value_size", "max_entries", "flags", "err"),
    [
        (MapType.HASH, 0, 8, 1, 0, errno.EINVAL),
        (MapType.HASH, 4, 0, 1, 0, errno.EINVAL),
        (MapType.HASH, 4, 8, 0, 0, errno.EINVAL),
        (MapType.HASH, (1 << 22) - 48 - 8, 8, 1, 0, errno.E2BIG),
        (MapType.HASH, 4, 8, 1, MapFlags.NO_COMMON_LRU, errno.EINVAL),
        (MapType.HASH, 4, 8, 1, MapFlags.MMAPABLE, errno.EINVAL),
        (MapType.LRU_HASH, 4, 8, 1, MapFlags.NO_PREALLOC, 524),
        (MapType.PERCPU_HASH, 4, 32769, 1, 0, errno.E2BIG),
    ],
)
def test_create_rejects(
    mtype: MapType, key_size: int, value_size: int, max_entries: int, flags: int, err: int
) -> None:
    with pytest.raises(InvalidMapArgumentError) as exc:
        create(MapDef(mtype, key_size, value_size, max_entries, flags))
    assert exc.value.errno == err


def test_value_address_stable_and_unmapped_on_delete() -> None:
    mem = Memory()
    with hmap(memory=mem) as m:
        m[k(1)] = v(1)
        addr = m.value_address(k(1))
        assert addr is not None and m.value_address(k(2)) is None
        mem.store(addr, 8, 42)
        assert m[k(1)] == v(42)
        m[k(1)] = v(43)  # in place
        assert m.value_address(k(1)) == addr and mem.load(addr, 8) == 43
        with pytest.raises(VMError):  # exactly value_size bytes are mapped
            mem.load(addr + 8, 1)
        del m[k(1)]
        with pytest.raises(VMError):
            mem.load(addr, 8)
        m[k(2)] = v(2)
    assert len(mem) == 0  # close unmaps everything


def test_percpu_hash() -> None:
    mem = Memory()
    m = create(MapDef(MapType.PERCPU_HASH, 4, 4, 2), mem, ncpus=2)
    assert isinstance(m, PerCPUHashMap)
    with m:
        m.update_percpu(k(1), [b"aaaa", b"bbbb"])
        assert m[k(1)] == b"aaaa\0\0\0\0bbbb\0\0\0\0"
        a0, a1 = m.value_address(k(1), 0), m.value_address(k(1), 1)
        assert a0 is not None and a1 is not None and a0 != a1
        mem.write_bytes(a1, b"BBBB")
        assert m.lookup_percpu(k(1)) == [b"aaaa", b"BBBB"]
        m[k(2)] = b"cccc"
        assert m.lookup_percpu(k(2)) == [b"cccc", b"cccc"]
        with pytest.raises(MapFullError):
            m[k(3)] = b"dddd"
        with pytest.raises(InvalidMapArgumentError):
            m.update_percpu(k(1), [b"aaaa"])


def test_lru_evicts_least_recently_used() -> None:
    with hmap(MapType.LRU_HASH, max_entries=3) as m:
        for i in (1, 2, 3):
            m[k(i)] = v(i)
        m[k(1)] = v(11)  # update touches 1: order 2, 3, 1
        assert m.value_address(k(2)) is not None  # program lookup touches 2: order 3, 1, 2
        m.lookup(k(3))  # a user-space lookup does not touch
        m[k(4)] = v(4)  # evicts 3
        assert sorted(m.keys()) == [k(1), k(2), k(4)]
        m[k(5)] = v(5)  # evicts 1
        assert sorted(m.keys()) == [k(2), k(4), k(5)]
        with pytest.raises(KeyExistsError):
            m.update(k(5), v(0), BPF_NOEXIST)
        with pytest.raises(KeyNotFoundError):
            m.update(k(1), v(0), BPF_EXIST)


def test_lru_eviction_unmaps_the_victim() -> None:
    mem = Memory()
    with hmap(MapType.LRU_HASH, max_entries=1, memory=mem) as m:
        m[k(1)] = v(1)
        addr = m.value_address(k(1))
        assert addr is not None
        m[k(2)] = v(2)
        with pytest.raises(VMError):
            mem.load(addr, 8)
        assert len(mem) == 1


def test_lru_percpu() -> None:
    m = hmap(MapType.LRU_PERCPU_HASH, max_entries=2, ncpus=4)
    assert isinstance(m, LRUPerCPUHashMap)
    with m:
        for i in range(5):
            m[k(i)] = v(i)
        assert sorted(m.keys()) == [k(3), k(4)]
        assert m.lookup_percpu(k(4)) == [v(4)] * 4


def test_lookup_and_delete_unmaps() -> None:
    mem = Memory()
    with hmap(memory=mem) as m:
        m[k(1)] = v(5)
        addr = m.value_address(k(1))
        assert addr is not None
        assert m.lookup_and_delete(k(1)) == v(5)
        assert len(m) == 0 and len(mem) == 0
        with pytest.raises(KeyNotFoundError):
            m.lookup_and_delete(k(1))
