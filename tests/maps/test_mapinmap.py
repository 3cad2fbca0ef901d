"""ARRAY_OF_MAPS / HASH_OF_MAPS: the inner template rule, flags, errors, iteration."""

from __future__ import annotations

import errno
import struct

import pytest

from ebpf.errors import KeyNotFoundError
from ebpf.maps import (
    BPF_EXIST,
    BPF_NOEXIST,
    ArrayOfMapsMap,
    HashOfMapsMap,
    InvalidMapArgumentError,
    KeyExistsError,
    MapDef,
    MapFlags,
    MapFullError,
    MapOperationNotSupportedError,
    create,
    errno_of,
)
from ebpf.spec import MapType

INNER = MapDef(MapType.HASH, 4, 8, 4)


def k(i: int) -> bytes:
    return struct.pack("<I", i)


def test_array_of_maps() -> None:
    outer = create(MapDef(MapType.ARRAY_OF_MAPS, 4, 4, 2, inner=INNER))
    assert isinstance(outer, ArrayOfMapsMap)
    with outer, create(INNER) as a, create(MapDef(MapType.HASH, 4, 8, 99)) as bigger:
        with pytest.raises(KeyNotFoundError):
            outer.lookup_map(k(0))
        outer.update_map(k(0), a)
        a[k(7)] = bytes(8)
        assert outer.lookup_map(k(0)) is a and k(7) in outer.lookup_map(k(0))
        outer.update_map(k(1), bigger)  # a hash inner map may differ in max_entries
        for flags in (BPF_NOEXIST, BPF_EXIST):
            with pytest.raises(InvalidMapArgumentError):
                outer.update_map(k(0), a, flags)
        with pytest.raises(MapFullError):
            outer.update_map(k(2), a)
        wrong = create(MapDef(MapType.HASH, 4, 4, 4))
        with pytest.raises(InvalidMapArgumentError, match="does not match the template"):
            outer.update_map(k(0), wrong)
        with pytest.raises(MapOperationNotSupportedError, match="lookup_map"):
            outer.lookup(k(0))
        with pytest.raises(MapOperationNotSupportedError, match="update_map"):
            outer[k(0)] = k(3)
        assert list(outer) == [k(0), k(1)] and len(outer) == 2
        del outer[k(1)]
        with pytest.raises(KeyNotFoundError):
            del outer[k(1)]
        with pytest.raises(MapFullError):
            del outer[k(5)]
    assert a.memory is not None  # the outer map never closes its inner maps


def test_array_inner_max_entries_rule() -> None:
    five = create(MapDef(MapType.ARRAY, 4, 8, 5))
    nine = create(MapDef(MapType.ARRAY, 4, 8, 9, MapFlags.INNER_MAP))
    strict = create(MapDef(MapType.ARRAY_OF_MAPS, 4, 4, 1, inner=MapDef(MapType.ARRAY, 4, 8, 4)))
    flexible = MapDef(MapType.ARRAY, 4, 8, 4, MapFlags.INNER_MAP)
    loose = create(MapDef(MapType.ARRAY_OF_MAPS, 4, 4, 1, inner=flexible))
    assert isinstance(strict, ArrayOfMapsMap) and isinstance(loose, ArrayOfMapsMap)
    with pytest.raises(InvalidMapArgumentError):
        strict.update_map(k(0), five)  # an array template fixes max_entries
    loose.update_map(k(0), nine)  # ... unless it has BPF_F_INNER_MAP
    with pytest.raises(InvalidMapArgumentError):  # flags must match too
        loose.update_map(k(0), five)
    for m in (five, nine, strict, loose):
        m.close()


def test_hash_of_maps() -> None:
    outer = create(MapDef(MapType.HASH_OF_MAPS, 8, 4, 2, inner=INNER))
    assert isinstance(outer, HashOfMapsMap)
    with outer, create(INNER) as a, create(INNER) as b:
        key = bytes(range(8))
        outer.update_map(key, a, BPF_NOEXIST)
        with pytest.raises(KeyExistsError):
            outer.update_map(key, b, BPF_NOEXIST)
        with pytest.raises(KeyNotFoundError):
            outer.update_map(bytes(8), b, BPF_EXIST)
        outer.update_map(key, b, BPF_EXIST)
        assert outer.lookup_map(key) is b
        outer.update_map(bytes(8), a)
        with pytest.raises(MapFullError):
            outer.update_map(b"\1" * 8, a)
        assert list(outer) == [key, bytes(8)] and len(outer) == 2
        del outer[key]
        with pytest.raises(KeyNotFoundError):
            outer.delete(key)


@pytest.mark.parametrize(
    ("defn", "err"),
    [
        (MapDef(MapType.ARRAY_OF_MAPS, 4, 4, 1), errno.EINVAL),
        (MapDef(MapType.ARRAY_OF_MAPS, 4, 8, 1, inner=INNER), errno.EINVAL),
        (MapDef(MapType.ARRAY_OF_MAPS, 8, 4, 1, inner=INNER), errno.EINVAL),
        (MapDef(MapType.HASH_OF_MAPS, 4, 8, 1, inner=INNER), errno.EINVAL),
        (
            MapDef(MapType.HASH_OF_MAPS, 4, 4, 1, inner=MapDef(MapType.ARRAY_OF_MAPS, 4, 4, 1, inner=INNER)),
            errno.EINVAL,
        ),
        (MapDef(MapType.HASH_OF_MAPS, 4, 4, 1, inner=MapDef(MapType.PROG_ARRAY, 4, 4, 1)), 524),
        (MapDef(MapType.HASH_OF_MAPS, 4, 4, 1, inner=MapDef(MapType.HASH, 0, 4, 1)), errno.EINVAL),
    ],
)
def test_create_rejects(defn: MapDef, err: int) -> None:
    with pytest.raises(InvalidMapArgumentError) as exc:
        create(defn)
    assert errno_of(exc.value) == err
