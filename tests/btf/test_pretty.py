"""Values printed like ``bpftool map dump`` and decoded to Python; type listings like bpftool's."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from ebpf import btf
from ebpf.btf.pretty import dump_raw, format_type, format_value, to_python, types_json
from ebpf.errors import BTFError

DATA = Path(__file__).parent / "data"
VMLINUX = Path("/sys/kernel/btf/vmlinux")
S = btf.IntEncoding.SIGNED

TYPES: list[btf.Type] = [
    btf.Int("int", 4, S, bits=32),  # 1
    btf.Int("char", 1, S, bits=8),  # 2
    btf.Int("unsigned int", 4, bits=32),  # 3
    btf.Int("_Bool", 1, btf.IntEncoding.BOOL, bits=8),  # 4
    btf.Array(2, 1, 8),  # 5: char[8]
    btf.Enum("color", 4, (btf.EnumValue("RED", 0), btf.EnumValue("BLUE", -1)), signed=True),  # 6
    btf.Pointer(1),  # 7
    btf.Struct(
        "flags",
        4,
        (btf.Member("a", 3, 0, 3), btf.Member("b", 1, 3, 5), btf.Member("c", 3, 8, 24)),
        kind_flag=True,
    ),  # 8
    btf.Array(1, 1, 3),  # 9: int[3]
    btf.Union("u", 4, (btf.Member("i", 1, 0), btf.Member("c", 5, 0))),  # 10 (c: char[8] overlaps; size 4)
    btf.Struct(
        "rec",
        48,
        (
            btf.Member("name", 5, 0),
            btf.Member("color", 6, 64),
            btf.Member("p", 7, 128),
            btf.Member("f", 8, 192),
            btf.Member("v", 9, 224),
            btf.Member("ok", 4, 320),
            btf.Member("", 12, 352),
        ),
    ),  # 11
    btf.Struct("", 4, (btf.Member("x", 1, 0),)),  # 12: anonymous member
    btf.Typedef("rec_t", 11),  # 13
    btf.Float("double", 8),  # 14
    btf.Int("__int128 unsigned", 16, bits=128),  # 15
    btf.Enum64("big", 8, (btf.EnumValue("HUGE", 1 << 40),)),  # 16
    btf.Var("counter", 1, btf.VarLinkage.GLOBAL_ALLOCATED),  # 17
    btf.Datasec(".data", 8, (btf.VarSecinfo(17, 0, 4), btf.VarSecinfo(17, 4, 4))),  # 18
    btf.Const(2),  # 19
    btf.Array(19, 1, 4),  # 20: const char[4]
]
SPEC = btf.Spec.build(TYPES)


def rec_bytes(order: str = "<") -> bytes:
    e = order
    name = b"eth0\0\0\0\0"
    flags_le = 5 | (0x1F << 3) | (1000 << 8)  # a=5, b=-1 (5 bits), c=1000
    flags = struct.pack("<I", flags_le) if e == "<" else struct.pack(">I", (5 << 29) | (0x1F << 24) | 1000)
    return (
        name
        + struct.pack(e + "i", -1)
        + b"\0" * 4
        + struct.pack(e + "Q", 0xFFFF888000001000)
        + flags
        + struct.pack(e + "3i", 1, -2, 3)
        + b"\x01"
        + b"\0" * 3
        + struct.pack(e + "i", 42)
        + b"\0" * 4
    )


EXPECTED = """{
    "name": "eth0",
    "color": "BLUE",
    "p": 0xffff888000001000,
    "f": {
        "a": 0x5,
        "b": 0x1f,
        "c": 0x3e8
    },
    "v": [1,-2,3
    ],
    "ok": true,
    "": {
        "x": 42
    }
}"""


def test_format_struct_like_bpftool() -> None:
    assert format_value(SPEC, 13, rec_bytes()) == EXPECTED


def test_big_endian_reads_the_same_values() -> None:
    big = btf.Spec.build(TYPES, byteorder="big")
    assert format_value(big, 13, rec_bytes(">")) == EXPECTED
    assert format_value(SPEC, 13, rec_bytes(">"), byteorder="big") == EXPECTED


def test_to_python() -> None:
    value = to_python(SPEC, 11, rec_bytes())
    assert value == {
        "name": "eth0",
        "color": "BLUE",
        "p": 0xFFFF888000001000,
        "f": {"a": 5, "b": -1, "c": 1000},  # signed bitfields come back signed
        "v": [1, -2, 3],
        "ok": True,
        "x": 42,  # an anonymous member's fields are the parent's
    }
    json.dumps(value)
    assert type(value["p"]) is int and type(value["f"]["a"]) is int


def test_scalars() -> None:
    assert format_value(SPEC, 1, struct.pack("<i", -7)) == "-7"
    assert format_value(SPEC, 3, struct.pack("<I", 0xFFFFFFFF)) == "4294967295"
    assert format_value(SPEC, 7, bytes(8)) == "(nil)"
    assert format_value(SPEC, 6, struct.pack("<i", 7)) == "7"  # not an enumerator: the number
    assert format_value(SPEC, 14, struct.pack("<d", 1.5)) == "1.5"
    assert format_value(SPEC, 15, (1 << 100).to_bytes(16, "little")) == hex(1 << 100)
    assert format_value(SPEC, 16, struct.pack("<Q", 1 << 40)) == '"HUGE"'
    assert to_python(SPEC, 16, struct.pack("<Q", 1 << 40)) == "HUGE"
    assert format_value(SPEC, 2, b"A") == "65"  # plain char: a number, as bpftool


def test_char_arrays() -> None:
    assert format_value(SPEC, 5, b"hi\0junk\xff") == '"hi"'
    assert format_value(SPEC, 20, b'a"b\0') == '"a\\"b"'  # const char counts, quotes escaped
    # no NUL, or a non-printable byte before it: a list of numbers
    assert format_value(SPEC, 5, b"abcdefgh") == "[97,98,99,100,101,102,103,104\n]"
    assert to_python(SPEC, 5, b"a\x01\0\0\0\0\0\0") == [97, 1, 0, 0, 0, 0, 0, 0]


def test_var_and_datasec() -> None:
    data = struct.pack("<ii", 3, 4)
    assert format_value(SPEC, 17, data) == '{\n    "counter": 3\n}'
    assert to_python(SPEC, 18, data) == {".data": [{"counter": 3}, {"counter": 4}]}
    assert format_value(SPEC, 18, data) == (
        '{\n    ".data": [{\n            "counter": 3\n        },{\n            "counter": 4\n        }\n    ]\n}'
    )


def test_short_data_is_a_typed_error() -> None:
    with pytest.raises(BTFError, match=r"STRUCT rec needs 48 bytes at offset 0, the data has 10"):
        format_value(SPEC, 11, bytes(10))
    with pytest.raises(BTFError, match="INT int needs 4 bytes"):
        to_python(SPEC, 1, b"\0")
    with pytest.raises(BTFError, match="void"):
        to_python(SPEC, 0, b"")
    with pytest.raises(BTFError, match="out of range"):
        to_python(SPEC, 999, b"")


# --- type listings ------------------------------------------------------------------------


def elf_btf(name: str) -> btf.Spec:
    with (DATA / name).open("rb") as f:
        section = ELFFile(f).get_section_by_name(".BTF")
        assert section is not None
        return btf.Spec.from_bytes(section.data())


def test_raw_listing_of_every_kind() -> None:
    spec = elf_btf("kinds.el.o")
    text = dump_raw(spec)
    lines = text.splitlines()
    # bpftool 7.1's output for this object, kind by kind
    for expected in [
        "[1] PTR '(anon)' type_id=0",
        "[3] INT 'int' size=4 bits_offset=0 nr_bits=32 encoding=SIGNED",
        "[5] DECL_TAG 'entry' type_id=4 component_idx=-1",
        "[9] FWD 'fwd_only' fwd_kind=struct",
        "[16] TYPE_TAG 'user' type_id=3",
        "[22] ARRAY '(anon)' type_id=21 index_type_id=23 nr_elems=4",
        "[24] ENUM 'color' encoding=SIGNED size=4 vlen=3",
        "\t'BLUE' val=-1",
        "[25] ENUM64 'big' encoding=UNSIGNED size=8 vlen=1",
        "\t'HUGE' val=1099511627775ULL",
        "[26] FLOAT 'double' size=8",
        "[29] FUNC 'helper' type_id=28 linkage=static",
        "[30] VAR 'counter' type_id=3, linkage=global",
        "\t'a' type_id=20 bits_offset=0 bitfield_size=3",
        "[42] DATASEC '.bss' size=0 vlen=2",
        "\ttype_id=35 offset=0 size=72 (VAR 'global_holder')",
    ]:
        assert expected in lines
    assert format_type(spec, 2) == "[2] FUNC_PROTO '(anon)' ret_type_id=3 vlen=1\n\t'ctx' type_id=1"


def test_json_listing() -> None:
    spec = elf_btf("kinds.el.o")
    doc = types_json(spec)
    assert len(doc["types"]) == len(spec) - 1
    holder = next(t for t in doc["types"] if t["name"] == "bits")
    assert holder["kind"] == "STRUCT" and holder["size"] == 12
    assert holder["members"][0] == {"name": "a", "type_id": 20, "bits_offset": 0, "bitfield_size": 3}
    json.dumps(doc)


@pytest.mark.skipif(shutil.which("bpftool") is None, reason="bpftool is not installed")
@pytest.mark.parametrize("name", ["kinds.el.o", "vars.el.o", "vmlinux"])
def test_json_listing_equals_bpftool_j(name: str) -> None:
    """Equal to ``bpftool -j btf dump``, except that bpftool 7.1 sign-extends the values of
    unsigned 32-bit enums that have bit 31 set (0x80000000 -> 18446744071562067968): ours
    keeps the value."""
    path = VMLINUX if name == "vmlinux" else DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent")
    theirs = json.loads(
        subprocess.run(
            ["bpftool", "-j", "btf", "dump", "file", str(path)], capture_output=True, check=True
        ).stdout
    )
    raw = path.read_bytes()
    if name != "vmlinux":
        with path.open("rb") as f:
            section = ELFFile(f).get_section_by_name(".BTF")
            assert section is not None
            raw = section.data()
    ours = types_json(btf.Spec.from_bytes(raw))
    assert len(ours["types"]) == len(theirs["types"])
    for mine, bpftool in zip(ours["types"], theirs["types"], strict=True):
        if mine != bpftool and mine["kind"] == "ENUM" and mine["encoding"] == "UNSIGNED":
            for value in bpftool["values"]:
                if value["val"] >= 1 << 32:
                    value["val"] -= (1 << 64) - (1 << 32)
        assert mine == bpftool
