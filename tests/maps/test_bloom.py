"""BLOOM_FILTER: push/peek, no false negatives, nr_hashes from map_extra, errors."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ebpf.errors import KeyNotFoundError
from ebpf.maps import (
    BPF_EXIST,
    BloomFilterMap,
    InvalidMapArgumentError,
    MapDef,
    MapOperationNotSupportedError,
    create,
)
from ebpf.spec import MapType


def bloom(max_entries: int = 100, map_extra: int = 0, value_size: int = 4) -> BloomFilterMap:
    m = create(MapDef(MapType.BLOOM_FILTER, 0, value_size, max_entries, map_extra=map_extra))
    assert isinstance(m, BloomFilterMap)
    return m


def test_push_peek() -> None:
    b = bloom()
    b.push(b"abcd")
    b.peek(b"abcd")
    assert b"abcd" in b
    b.update(b"", b"efgh")
    assert b"efgh" in b
    with pytest.raises(KeyNotFoundError):
        b.peek(b"zzzz")  # one value in 1024 bits with 5 hashes: certainly absent


def test_nr_hashes_and_size() -> None:
    assert bloom(map_extra=0).nr_hashes == 5
    b = bloom(1000, map_extra=3)
    assert b.nr_hashes == 3 and b.nr_bits == 8192  # 1000 * 3 / 5 * 7 = 4200, rounded up to 2**13
    assert bloom(1).nr_bits == 64


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(min_size=8, max_size=8), max_size=200), st.integers(1, 15))
def test_no_false_negatives(values: list[bytes], nr_hashes: int) -> None:
    b = bloom(50, map_extra=nr_hashes, value_size=8)
    for value in values:
        b.push(value)
    assert all(value in b for value in values)


def test_errors() -> None:
    b = bloom()
    with pytest.raises(InvalidMapArgumentError):
        b.push(b"abcd", BPF_EXIST)
    for op in (lambda: b.delete(b""), lambda: b.get_next_key(None)):
        with pytest.raises(MapOperationNotSupportedError) as exc:
            op()
        assert exc.value.errno == errno.EOPNOTSUPP
    with pytest.raises(InvalidMapArgumentError):
        create(MapDef(MapType.BLOOM_FILTER, 0, 4, 10, map_extra=16))
    with pytest.raises(InvalidMapArgumentError):
        create(MapDef(MapType.BLOOM_FILTER, 4, 4, 10))
