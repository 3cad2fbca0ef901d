"""PROG_ARRAY: slots of programs, fd-array flag and index rules, tail-call lookups."""

from __future__ import annotations

import errno
import struct

import pytest

from ebpf.errors import KeyNotFoundError
from ebpf.maps import (
    BPF_NOEXIST,
    InvalidMapArgumentError,
    MapDef,
    MapFlags,
    MapFullError,
    MapOperationNotSupportedError,
    ProgArrayMap,
    create,
)
from ebpf.spec import MapType


def k(i: int) -> bytes:
    return struct.pack("<I", i)


def test_slots() -> None:
    m = create(MapDef(MapType.PROG_ARRAY, 4, 4, 3))
    assert isinstance(m, ProgArrayMap)
    prog = object()
    with m:
        assert m.tail_call_target(0) is None
        with pytest.raises(KeyNotFoundError):
            m.lookup_prog(k(0))
        m.update_prog(k(1), prog)
        assert m.lookup_prog(k(1)) is prog and m.tail_call_target(1) is prog
        assert k(1) in m and k(0) not in m and len(m) == 3 and list(m) == [k(0), k(1), k(2)]
        with pytest.raises(InvalidMapArgumentError):
            m.update_prog(k(1), prog, BPF_NOEXIST)
        with pytest.raises(MapFullError) as full:
            m.update_prog(k(3), prog)
        assert full.value.errno == errno.E2BIG
        with pytest.raises(MapFullError):
            m.delete(k(3))
        m.delete(k(1))
        with pytest.raises(KeyNotFoundError):
            m.delete(k(1))
        with pytest.raises(MapOperationNotSupportedError, match="lookup_prog"):
            m.lookup(k(0))
        with pytest.raises(MapOperationNotSupportedError, match="update_prog"):
            m.update(k(0), k(0))


@pytest.mark.parametrize(
    "defn",
    [
        MapDef(MapType.PROG_ARRAY, 4, 8, 1),
        MapDef(MapType.PROG_ARRAY, 8, 4, 1),
        MapDef(MapType.PROG_ARRAY, 4, 4, 0),
        MapDef(MapType.PROG_ARRAY, 4, 4, 1, MapFlags.MMAPABLE),
        MapDef(MapType.PROG_ARRAY, 4, 4, 1, MapFlags.RDONLY_PROG),
        MapDef(MapType.PROG_ARRAY, 4, 4, 1, MapFlags.NO_PREALLOC),
    ],
)
def test_create_rejects(defn: MapDef) -> None:
    with pytest.raises(InvalidMapArgumentError) as exc:
        create(defn)
    assert exc.value.errno == errno.EINVAL
