"""Hand-built BTF: every kind through the builder, the Spec queries, and every malformation."""

from __future__ import annotations

import struct

import pytest

from ebpf import btf
from ebpf.errors import BTFError

INT = btf.Int("int", 4, btf.IntEncoding.SIGNED, 0, 32)
EVERY_KIND: list[btf.Type] = [
    INT,  # 1
    btf.Pointer(1),  # 2
    btf.Array(1, 1, 10),  # 3
    btf.Struct("s", 16, (btf.Member("a", 1, 0), btf.Member("p", 2, 64)), False),  # 4
    btf.Union("u", 4, (btf.Member("x", 1, 0, 3), btf.Member("y", 1, 0, 5)), True),  # 5
    btf.Enum("e", 4, (btf.EnumValue("A", -2), btf.EnumValue("B", 7)), signed=True),  # 6
    btf.Enum64("e64", 8, (btf.EnumValue("BIG", 1 << 40), btf.EnumValue("MAX", 2**64 - 1))),  # 7
    btf.Fwd("later", union=True),  # 8
    btf.Typedef("int_t", 1),  # 9
    btf.Volatile(9),  # 10
    btf.Const(10),  # 11
    btf.Restrict(2),  # 12
    btf.FuncProto(1, (btf.FuncParam("a", 1), btf.FuncParam("", 0))),  # 13
    btf.Func("f", 13, btf.FuncLinkage.EXTERN),  # 14
    btf.Var("v", 3, btf.VarLinkage.GLOBAL_ALLOCATED),  # 15
    btf.Datasec(".data", 40, (btf.VarSecinfo(15, 0, 40),)),  # 16
    btf.Float("float", 4),  # 17
    btf.DeclTag("tag", 4, 1, attribute=True),  # 18
    btf.TypeTag("user", 1, attribute=False),  # 19
    btf.Enum("small", 1, (btf.EnumValue("Z", 255),)),  # 20
]


def header(type_len: int, str_len: int, *, order: str = "<", **fields: int) -> bytes:
    values = {"magic": 0xEB9F, "version": 1, "flags": 0, "hdr_len": 24, "type_off": 0}
    values.update(type_len=type_len, str_off=type_len, str_len=str_len)
    values.update(fields)
    return struct.pack(order + "HBBIIIII", *values.values())


def blob(words: list[int], strings: bytes = b"\0int\0") -> bytes:
    types = struct.pack(f"<{len(words)}I", *words)
    return header(len(types), len(strings)) + types + strings


INT_WORDS = [1, 1 << 24, 4, 1 << 24 | 32]  # "int", INT, size 4, signed 32 bits


def test_every_kind_round_trips() -> None:
    spec = btf.Spec.build(EVERY_KIND)
    assert {t.kind for t in spec} == set(btf.Kind)
    for order in ("little", "big"):
        raw = spec.to_bytes(byteorder=order)
        again = btf.Spec.from_bytes(raw, byteorder=order)
        assert again == spec
        assert again.to_bytes() == raw


def test_hand_encoded_int_matches_the_builder() -> None:
    raw = blob(INT_WORDS)
    assert btf.Spec.build([INT]).to_bytes() == raw
    assert btf.Spec.from_bytes(raw)[1] == INT


def test_new_strings_are_appended_to_a_parsed_table() -> None:
    spec = btf.Spec.from_bytes(blob(INT_WORDS))
    assert spec.strings is not None
    grown = btf.Spec([*spec.types, btf.Typedef("myint", 1)], strings=spec.strings)
    raw = grown.to_bytes()
    assert raw.endswith(b"\0int\0myint\0")
    assert btf.Spec.from_bytes(raw) == grown


def test_sizes_and_alignments() -> None:
    spec = btf.Spec.build(EVERY_KIND)
    sizes = {1: 4, 2: 8, 3: 40, 4: 16, 5: 4, 6: 4, 7: 8, 9: 4, 10: 4, 11: 4, 12: 8, 15: 40, 16: 40, 17: 4}
    assert {i: spec.sizeof(i) for i in sizes} == sizes
    assert spec.sizeof(19) == 4  # type tags are skipped like modifiers
    assert spec.alignof(3) == 4 and spec.alignof(4) == 8 and spec.alignof(20) == 1
    for no_size in (0, 8, 13, 14):
        with pytest.raises(BTFError, match="has no size"):
            spec.sizeof(no_size)
    assert spec.resolve(11) == INT and spec.resolve_id(12) == 2
    packed = btf.Spec.build([INT, btf.Struct("packed", 5, (btf.Member("c", 1, 8),))])
    assert packed.alignof(2) == 1
    nested = btf.Spec.build([INT, btf.Array(1, 1, 3), btf.Array(2, 1, 2)])
    assert nested.sizeof(3) == 24


def test_lookups() -> None:
    spec = btf.Spec.build([*EVERY_KIND, btf.Struct("e", 0)])
    assert spec.ids_by_name("e") == (6, 21)
    assert [t.kind for t in spec.types_by_name("e")] == [btf.Kind.ENUM, btf.Kind.STRUCT]
    assert spec.find("e", btf.Enum) is spec[6]
    assert spec.find_id("e", btf.Struct) == 21
    with pytest.raises(BTFError, match="no Union named 'e'"):
        spec.find("e", btf.Union)
    twice = btf.Spec.build([INT, INT])
    with pytest.raises(BTFError, match="2 types Int named 'int'"):
        twice.find("int", btf.Int)
    with pytest.raises(BTFError, match="out of range"):
        spec.type_by_id(99)
    assert next(iter(spec)) == btf.Void() and len(spec) == 22


def test_modifier_loop() -> None:
    spec = btf.Spec.build([btf.Typedef("a", 2), btf.Const(1)])
    with pytest.raises(BTFError, match="loops"):
        spec.resolve(1)


def test_build_checks_references() -> None:
    with pytest.raises(BTFError, match=r"type \[1\] PTR refers to type id 5"):
        btf.Spec.build([btf.Pointer(5)])


@pytest.mark.parametrize(
    ("t", "message"),
    [
        (btf.Struct("s", 4, (btf.Member("b", 0, 0, 3),)), "kind_flag is clear"),
        (btf.Int("i", 4, bits=300), "do not fit"),
        (btf.Datasec("d", 2**33), "does not fit in 32 bits"),
    ],
)
def test_unencodable(t: btf.Type, message: str) -> None:
    with pytest.raises(BTFError, match=message):
        btf.Spec.build([t]).to_bytes()


def malformed() -> list[tuple[bytes, str, int]]:
    good = blob(INT_WORDS)
    ptr = [0, 2 << 24]
    cases = [
        (b"\x9f\xeb\x01", "truncated BTF header", 0),
        (b"\x00\x00" + good[2:], "bad magic", 0),
        (good[:2] + b"\x02" + good[3:], "unsupported BTF version 2", 2),
        (good[:3] + b"\x01" + good[4:], "unsupported header flags", 3),
        (header(16, 5, hdr_len=8), "shorter than 24", 4),
        (header(16, 5, hdr_len=99), "exceeds the blob", 4),
        (header(16, 5, hdr_len=28) + b"\0\0\0\1", "non-zero header fields", 24),
        (header(1000, 5) + good[24:], r"type section \[0, 1000\) out of bounds", 8),
        (header(16, 5, type_off=2) + good[24:], "not 4-byte aligned", 8),
        (header(14, 5, str_off=16) + good[24:], "not a multiple of 4", 12),
        (header(16, 50) + good[24:], r"string section \[16, 66\) out of bounds", 16),
        (header(16, 5, str_off=0) + good[24:], "overlap", 8),
        (blob(INT_WORDS, b"int\0"), "does not start with an empty string", 40),
        (blob(INT_WORDS, b"\0int"), "does not end with NUL", 43),
        (blob([0, 20 << 24, 0]), "unknown kind 20", 24),
        (blob([0, 0, 0]), "unknown kind 0", 24),
        (blob([*INT_WORDS, 99, 1 << 24, 4, 32]), "string offset 99 out of range", 40),
        (blob([0, 4 << 24 | 2, 8, 0, 0]), "2 members overruns the type section", 24),
        (blob([0, 13 << 24 | 1, 0]), "1 parameters overruns", 24),
        (blob([1, 1 << 24, 4]), "INT data overruns", 24),
        (blob(ptr[:2]), "type header overruns", 24),
        (blob([*INT_WORDS, *ptr, 5]), r"type \[2\] PTR refers to type id 5, beyond the table", 40),
        (blob([0, 2 << 24 | 1 << 16, 0]), "unused bits set in info", 24),
        (blob([1, 1 << 24, 4, 3 << 24 | 32]), "unsupported INT encoding", 24),
        (blob([1, 1 << 24, 4, 1 << 12]), "unused bits set in INT data", 24),
        (blob([1, 2 << 24, 0]), "PTR has a name", 24),
        (blob([0, 3 << 24, 4, 0, 0, 1]), "ARRAY with a name, vlen, kind_flag or size", 24),
        (blob([1, 12 << 24 | 3, 0]), "FUNC with linkage 3", 24),
        (blob([1, 14 << 24, 0, 3]), "unknown linkage 3", 24),
        (blob([1, 17 << 24, 0, 0xFFFFFFFE]), "component_idx -2", 24),
        (blob([1, 7 << 24, 3]), "FWD with vlen 0 / type 3", 24),
        (blob([1, 4 << 24, 4], b"\0\xff\0"), "not valid UTF-8", 24),
        (blob([*INT_WORDS, 1, 12 << 24, 1]), "a INT, not a FUNC_PROTO", 40),
        (blob([*INT_WORDS, 1, 17 << 24, 1, 2**32 - 1]), "tags type id 1, a INT", 40),
        (blob([0, 4 << 24, 0, 1, 17 << 24, 1, 0]), "component_idx 0 beyond the 0 of type id 1", 36),
        (blob([*INT_WORDS, 1, 15 << 24 | 1, 4, 1, 0, 4]), "a INT, not a VAR or FUNC", 40),
    ]
    return cases


@pytest.mark.parametrize(
    ("raw", "message", "offset"), malformed(), ids=[c[1].replace("\\", "") for c in malformed()]
)
def test_malformations_name_offset_and_problem(raw: bytes, message: str, offset: int) -> None:
    with pytest.raises(BTFError, match=message) as info:
        btf.Spec.from_bytes(raw, source="test.btf")
    assert info.value.offset == offset
    assert info.value.source == "test.btf"
    assert str(info.value).startswith(f"test.btf: offset {offset:#x}: ")


def test_expected_byte_order_is_checked() -> None:
    with pytest.raises(BTFError, match="blob is little-endian, big-endian expected"):
        btf.Spec.from_bytes(blob(INT_WORDS), byteorder="big")


def test_suffix_and_duplicate_strings_keep_their_offsets() -> None:
    """pahole and clang share suffixes and may repeat strings; re-encoding keeps every offset used."""
    words = [3, 1 << 24, 4, 1 << 24 | 32, 9, 8 << 24, 1]  # INT "int" inside "myint"; TYPEDEF "t" (2nd copy)
    raw = blob(words, b"\0myint\0t\0t\0")
    spec = btf.Spec.from_bytes(raw)
    assert spec[1] == INT and spec[2] == btf.Typedef("t", 1)
    assert spec.to_bytes() == raw
