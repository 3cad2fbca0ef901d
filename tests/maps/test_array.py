"""ARRAY / PERCPU_ARRAY: kernel behaviours, value addresses through the memory model."""

from __future__ import annotations

import errno
import struct

import pytest

from ebpf.errors import KeyNotFoundError, VMError
from ebpf.maps import (
    BPF_ANY,
    BPF_EXIST,
    BPF_NOEXIST,
    ArrayMap,
    InvalidMapArgumentError,
    KeyExistsError,
    MapDef,
    MapFlags,
    MapFullError,
    PerCPUArrayMap,
    create,
    errno_of,
)
from ebpf.spec import MapType
from ebpf.vm.memory import Memory


def k(i: int) -> bytes:
    return struct.pack("<I", i)


def array(
    max_entries: int = 4, value_size: int = 8, flags: int = 0, memory: Memory | None = None
) -> ArrayMap:
    m = create(MapDef(MapType.ARRAY, 4, value_size, max_entries, flags, "arr"), memory)
    assert isinstance(m, ArrayMap)
    return m


def test_preallocated_and_zero_filled() -> None:
    with array() as m:
        assert len(m) == 4
        assert list(m) == [k(0), k(1), k(2), k(3)]
        assert all(v == bytes(8) for v in m.values())
        assert k(3) in m and k(4) not in m


def test_update_flags() -> None:
    with array() as m:
        m.update(k(1), b"A" * 8, BPF_ANY)
        m.update(k(1), b"B" * 8, BPF_EXIST)
        assert m[k(1)] == b"B" * 8
        with pytest.raises(KeyExistsError) as exc:
            m.update(k(1), b"C" * 8, BPF_NOEXIST)
        assert exc.value.errno == errno.EEXIST
        with pytest.raises(InvalidMapArgumentError) as bad:
            m.update(k(1), b"C" * 8, 3)
        assert bad.value.errno == errno.EINVAL


def test_out_of_range() -> None:
    with array() as m:
        with pytest.raises(KeyNotFoundError):
            m.lookup(k(4))
        with pytest.raises(MapFullError) as exc:
            m.update(k(4), bytes(8))
        assert exc.value.errno == errno.E2BIG
        assert m.value_address(k(4)) is None


def test_delete_is_einval() -> None:
    with array() as m:
        with pytest.raises(InvalidMapArgumentError) as exc:
            del m[k(0)]
        assert errno_of(exc.value) == errno.EINVAL


def test_get_next_key() -> None:
    with array(3) as m:
        assert m.get_next_key(None) == k(0)
        assert m.get_next_key(k(0)) == k(1)
        assert m.get_next_key(k(99)) == k(0)
        with pytest.raises(KeyNotFoundError):
            m.get_next_key(k(2))


def test_sizes_named_in_errors() -> None:
    with array() as m:
        with pytest.raises(InvalidMapArgumentError, match="key is 8 bytes, expected key_size 4"):
            m.lookup(bytes(8))
        with pytest.raises(InvalidMapArgumentError, match="value is 3 bytes, expected value_size 8"):
            m.update(k(0), b"abc")


@pytest.mark.parametrize(
    ("key_size", "value_size", "max_entries", "flags"),
    [(8, 4, 1, 0), (4, 0, 1, 0), (4, 4, 0, 0), (4, 4, 1, MapFlags.NO_PREALLOC)],
)
def test_create_rejects(key_size: int, value_size: int, max_entries: int, flags: int) -> None:
    with pytest.raises(InvalidMapArgumentError) as exc:
        create(MapDef(MapType.ARRAY, key_size, value_size, max_entries, flags))
    assert exc.value.errno == errno.EINVAL


def test_bad_name() -> None:
    with pytest.raises(InvalidMapArgumentError):
        create(MapDef(MapType.ARRAY, 4, 4, 1, name="a-name-that-is-too-long"))


def test_value_address_round_trip_through_memory() -> None:
    mem = Memory()
    with array(memory=mem) as m:
        addr = m.value_address(k(2))
        assert addr is not None
        mem.store(addr, 8, 0x1122334455667788)
        assert m[k(2)] == struct.pack("<Q", 0x1122334455667788)
        m[k(2)] = struct.pack("<Q", 7)
        assert mem.load(addr, 8) == 7
        assert m.value_address(k(2)) == addr  # stable
    with pytest.raises(VMError):  # closed: unmapped
        mem.load(addr, 8)


def test_mmapable_is_one_contiguous_buffer() -> None:
    with array(4, value_size=4, flags=MapFlags.MMAPABLE) as m:
        a0, a3 = m.value_address(k(0)), m.value_address(k(3))
        assert a0 is not None and a3 is not None and a3 - a0 == 3 * 8  # 8-byte element stride
        m.data[8:12] = b"\1\2\3\4"
        assert m[k(1)] == b"\1\2\3\4"
        assert len(m.memory) == 1


def test_percpu_array() -> None:
    mem = Memory()
    m = create(MapDef(MapType.PERCPU_ARRAY, 4, 4, 2), mem, ncpus=3)
    assert isinstance(m, PerCPUArrayMap)
    with m:
        assert m.lookup_percpu(k(0)) == [bytes(4)] * 3
        m.update_percpu(k(0), [b"aaaa", b"bbbb", b"cccc"])
        assert m[k(0)] == b"aaaa\0\0\0\0bbbb\0\0\0\0cccc\0\0\0\0"  # kernel layout: 8-aligned per CPU
        m[k(1)] = b"zzzz"  # one value for all CPUs
        assert m.lookup_percpu(k(1)) == [b"zzzz"] * 3
        m[k(1)] = b"1234\0\0\0\0" + b"5678\0\0\0\0" + b"9abc\0\0\0\0"
        assert m.lookup_percpu(k(1)) == [b"1234", b"5678", b"9abc"]
        addr = m.value_address(k(0), cpu=2)
        assert addr is not None and mem.read_bytes(addr, 4) == b"cccc"
        mem.write_bytes(addr, b"CCCC")
        assert m.lookup_percpu(k(0))[2] == b"CCCC"
        with pytest.raises(InvalidMapArgumentError, match="per-CPU value is 5 bytes"):
            m[k(0)] = b"12345"
        with pytest.raises(InvalidMapArgumentError):
            m.value_address(k(0), cpu=3)


def test_percpu_array_rejects_mmapable() -> None:
    with pytest.raises(InvalidMapArgumentError):
        create(MapDef(MapType.PERCPU_ARRAY, 4, 4, 2, MapFlags.MMAPABLE))
