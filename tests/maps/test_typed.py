"""Typed views: keys and values from MapSpec BTF or given classes, per-CPU lists, queues, ctypes input."""

from __future__ import annotations

import ctypes
import struct

import pytest

from ebpf import btf
from ebpf.btf import Int, IntEncoding, Member, Struct
from ebpf.btf.records import Record, record_class
from ebpf.maps import InvalidMapArgumentError, MapDef, TypedMap, create
from ebpf.spec import MapSpec, MapType

U32, INT, CHAR, NAME, VAL = 1, 2, 3, 4, 5
SPEC = btf.Spec.build(
    [
        Int("unsigned int", 4, IntEncoding.NONE, 0, 32),
        Int("int", 4, IntEncoding.SIGNED, 0, 32),
        Int("char", 1, IntEncoding.SIGNED, 0, 8),
        btf.Array(CHAR, U32, 4),
        Struct("val", 12, (Member("count", INT, 0), Member("name", NAME, 32), Member("hits", U32, 64))),
    ]
)


class CVal(ctypes.Structure):
    _fields_ = [("count", ctypes.c_int32), ("name", ctypes.c_char * 4), ("hits", ctypes.c_uint32)]


def spec(mtype: MapType, key_size: int = 4, key_id: int = U32, max_entries: int = 8) -> MapSpec:
    return MapSpec("m", mtype, key_size, 12, max_entries, key_type_id=key_id, value_type_id=VAL, btf=SPEC)


def test_hash_view_from_spec_btf() -> None:
    with create(spec(MapType.HASH)) as m:
        t = m.typed()
        assert isinstance(t, TypedMap)
        Val = t.value_class
        assert issubclass(Val, Record)
        t[1] = Val(count=-1, name=b"ab", hits=3)
        t[2] = {"count": 5}
        t[3] = CVal(7, b"cd", 9)  # a ctypes instance: its bytes
        assert t[1].count == -1 and t[1].name.text == "ab" and t[1].hits == 3
        assert t[2] == Val(count=5) and t[3].name == b"cd\0\0"
        assert m.lookup(struct.pack("<I", 3)) == bytes(CVal(7, b"cd", 9))
        assert sorted(t) == [1, 2, 3] and 2 in t and 9 not in t and "x" not in t
        assert t.get(9) is None and len(t) == 3
        del t[2]
        assert sorted(k for k, _ in t.items()) == [1, 3]
        assert sorted(k for k, _ in t.items_batch(1)) == [1, 3]
        assert t.update_batch([(4, Val(hits=1))]) == 1 and t[4].hits == 1
        with pytest.raises(InvalidMapArgumentError):
            t[1] = b"short"
        with pytest.raises(InvalidMapArgumentError):
            t[1] = {"nope": 1}
        with pytest.raises(InvalidMapArgumentError):
            t[-1] = Val()  # does not fit an unsigned key


def test_percpu_values_are_lists() -> None:
    with create(spec(MapType.PERCPU_ARRAY), ncpus=3) as m:
        t = m.typed()
        Val = t.value_class
        t[0] = Val(count=1)  # every CPU
        assert [v.count for v in t[0]] == [1, 1, 1]
        t[1] = [Val(count=i) for i in range(3)]
        assert [v.count for v in t[1]] == [0, 1, 2]
        with pytest.raises(InvalidMapArgumentError):
            t[1] = [Val(), Val()]


def test_queue_and_given_classes() -> None:
    Val = record_class(SPEC, VAL)
    with create(MapDef(MapType.QUEUE, 0, 12, 4)) as q:
        t = q.typed(value=Val)
        t.push(Val(count=1))
        t.push({"count": 2})
        assert t.peek().count == 1 and t.pop().count == 1 and t.pop().count == 2
    with create(MapDef(MapType.ARRAY, 4, 12, 2)) as a:
        raw = a.typed()  # no BTF: bytes values, u32 index keys
        assert raw[0] == raw[b"\0\0\0\0"] == bytes(12) and list(raw) == [0, 1]
        t = a.typed(key=record_class(SPEC, U32), value=Val)
        t[1] = Val(hits=5)
        assert t[1].hits == 5
        with pytest.raises(InvalidMapArgumentError):
            a.typed(value=record_class(SPEC, U32))  # 4 bytes for a 12-byte value
        with pytest.raises(InvalidMapArgumentError):
            t.pop()
