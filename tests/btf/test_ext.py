"""``.BTF.ext`` parsing and encoding (src/ebpf/btf/ext.py) on clang-19 objects and malformed input."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebpf import btf
from ebpf.btf.ext import (
    BTFExt,
    CoreRelo,
    CoreRelocKind,
    FuncInfo,
    LineInfo,
    encode_core_relos,
    encode_func_info,
    encode_line_info,
    parse_btf_ext,
)
from ebpf.errors import BTFError

DATA = Path(__file__).parent.parent / "data" / "core"
OBJECTS = ["local.el.o", "local.eb.o", "tracer.o", "shapes.o"]


def sections(name: str) -> tuple[bytes, bytes, dict[str, int], str]:
    """(.BTF, .BTF.ext, {code section: size}, byteorder) of an object."""
    with (DATA / name).open("rb") as f:
        elf = ELFFile(f)
        order = "little" if elf.little_endian else "big"
        raw = elf.get_section_by_name(".BTF").data()
        ext = elf.get_section_by_name(".BTF.ext").data()
        code = {
            s.name: s.data_size
            for s in elf.iter_sections()
            if s["sh_flags"] & 0x4 and s["sh_type"] == "SHT_PROGBITS"
        }
    return raw, ext, code, order


def parsed(name: str) -> tuple[btf.Spec, BTFExt, bytes, dict[str, int], str]:
    raw, ext, code, order = sections(name)
    spec = btf.Spec.from_bytes(raw)
    return spec, parse_btf_ext(ext, spec, order), ext, code, order


@pytest.mark.parametrize("name", OBJECTS)
def test_round_trip_is_byte_identical(name: str) -> None:
    spec, ext, raw, _, order = parsed(name)
    assert ext.to_bytes(spec.strings or btf.StringTable(b"\0"), order) == raw
    # A builder over the same table finds every string: same bytes again.
    assert ext.to_bytes(btf.StringTableBuilder(spec.strings), order) == raw


CORPUS = sorted(
    str(p.relative_to(DATA.parent.parent)) for p in DATA.parent.parent.rglob("*.o") if p.parent != DATA
)


@pytest.mark.parametrize("path", CORPUS)
def test_every_clang_object_round_trips(path: str) -> None:
    """Every object in the test corpora (ELF, BTF, ...) that has a .BTF.ext."""
    with (DATA.parent.parent / path).open("rb") as f:
        elf = ELFFile(f)
        section = elf.get_section_by_name(".BTF.ext")
        if section is None:
            return
        order = "little" if elf.little_endian else "big"
        spec = btf.Spec.from_bytes(elf.get_section_by_name(".BTF").data())
        raw = section.data()
    ext = parse_btf_ext(raw, spec, order)
    assert spec.strings is not None
    assert ext.to_bytes(spec.strings, order) == raw


@pytest.mark.parametrize("name", OBJECTS)
def test_records_refer_to_code(name: str) -> None:
    spec, ext, _, code, _ = parsed(name)
    assert ext.func_info and set(ext.func_info) <= set(code)
    assert set(ext.line_info) == set(ext.func_info)
    for sec, recs in ext.func_info.items():
        assert recs[0].insn == 0
        for r in recs:
            assert isinstance(spec[r.type_id], btf.Func)
            assert r.insn < code[sec] // 8
    for sec, lines in ext.line_info.items():
        assert [r.insn for r in lines] == sorted(r.insn for r in lines)
        assert all(r.file_name.endswith(".c") and r.line > 0 for r in lines)
        assert all(r.insn < code[sec] // 8 for r in lines)
    for sec, relos in ext.core_relos.items():
        assert all(r.insn < code[sec] // 8 for r in relos)


def test_local_object_content() -> None:
    spec, ext, _, _, _ = parsed("local.el.o")
    big = parsed("local.eb.o")[1]
    assert big.func_info == ext.func_info
    # bitfield reads differ between the byte orders, the relocated accesses do not
    assert {(r.access, r.kind) for rs in big.core_relos.values() for r in rs} == {
        (r.access, r.kind) for rs in ext.core_relos.values() for r in rs
    }
    assert [spec[f.type_id].name for f in ext.func_info["socket/types"]] == ["types"]  # type: ignore[union-attr]
    types = ext.core_relos["socket/types"]
    assert [r.kind for r in types] == [
        CoreRelocKind.TYPE_ID_LOCAL,
        CoreRelocKind.TYPE_ID_TARGET,
        CoreRelocKind.TYPE_EXISTS,
        CoreRelocKind.TYPE_SIZE,
        CoreRelocKind.TYPE_MATCHES,
    ]
    # lddw takes two slots: the second relocation is at slot 2
    assert [r.insn for r in types] == [0, 2, 5, 7, 9]
    assert all(r.access == "0" for r in types)
    offsets = ext.core_relos["socket/offsets"]
    obj = spec.find_id("obj", btf.Struct)
    assert offsets[0] == CoreRelo(0, obj, "0:0", CoreRelocKind.FIELD_BYTE_OFFSET)
    assert [r.access for r in offsets] == ["0:0", "0:1", "0:4", "0:6:2", "0:5:1", "0:9"]
    enums = ext.core_relos["socket/enums"]
    assert [(r.access, r.kind) for r in enums] == [
        ("1", CoreRelocKind.ENUMVAL_EXISTS),
        ("2", CoreRelocKind.ENUMVAL_VALUE),
        ("1", CoreRelocKind.ENUMVAL_VALUE),
    ]


def test_kernel_layouts() -> None:
    strings = btf.StringTableBuilder()
    funcs = [FuncInfo(0, 3), FuncInfo(12, 7)]
    assert encode_func_info(funcs) == struct.pack("<IIII", 0, 3, 12, 7)
    assert encode_func_info(funcs, "big") == struct.pack(">IIII", 0, 3, 12, 7)
    lines = [LineInfo(0, "a.c", "int x;", 5, 3), LineInfo(2, "a.c", "", 6, 0)]
    raw = encode_line_info(lines, strings)
    a, x = strings.add("a.c"), strings.add("int x;")
    assert raw == struct.pack("<IIIIIIII", 0, a, x, 5 << 10 | 3, 2, a, 0, 6 << 10)
    relos = [CoreRelo(3, 5, "0:1", CoreRelocKind.FIELD_EXISTS)]
    assert encode_core_relos(relos, strings) == struct.pack("<IIII", 24, 5, strings.add("0:1"), 2)
    with pytest.raises(BTFError, match="not in the BTF string table"):
        encode_line_info(lines, btf.StringTable(b"\0"))
    with pytest.raises(BTFError, match="line_col"):
        encode_line_info([LineInfo(0, "a.c", "", 5, 1024)], strings)
    with pytest.raises(BTFError, match="32 bits"):
        encode_func_info([FuncInfo(0, 1 << 32)])


def test_kernel_layout_uses_the_loaded_string_table() -> None:
    spec, ext, _, _, _ = parsed("local.el.o")
    assert spec.strings is not None
    lines = ext.line_info["socket/offsets"]
    raw = encode_line_info(lines, spec.strings)
    for i, r in enumerate(lines):
        insn, file_off, line_off, line_col = struct.unpack_from("<IIII", raw, 16 * i)
        assert insn == r.insn and line_col == r.line << 10 | r.column
        assert spec.strings.lookup(file_off) == r.file_name
        assert spec.strings.lookup(line_off) == r.line_text


# --- malformations ------------------------------------------------------------------------

STRINGS = b"\0sec\0a.c\0x\0" + b"0:1\0"
SPEC = btf.Spec(
    [btf.Void(), btf.Int("int", 4, btf.IntEncoding.SIGNED, bits=32)], strings=btf.StringTable(STRINGS)
)


def blob(
    func: bytes = b"", line: bytes = b"", core: bytes | None = None, *, hdr: bytes | None = None
) -> bytes:
    hdr_len = 24 if core is None else 32
    fields = [0, len(func), len(func), len(line)]
    if core is not None:
        fields += [len(func) + len(line), len(core)]
    header = (
        hdr
        if hdr is not None
        else struct.pack("<HBBI", 0xEB9F, 1, 0, hdr_len) + struct.pack(f"<{len(fields)}I", *fields)
    )
    return header + func + line + (core or b"")


def func_sec(*recs: tuple[int, int], rec_size: int = 8, name: int = 1, count: int | None = None) -> bytes:
    body = b"".join(struct.pack("<II", *r) + bytes(rec_size - 8) for r in recs)
    return struct.pack("<III", rec_size, name, len(recs) if count is None else count) + body


def test_minimal_blob_parses() -> None:
    ext = parse_btf_ext(blob(func_sec((16, 1))), SPEC, "little")
    assert ext.func_info == {"sec": [FuncInfo(2, 1)]}
    assert ext.line_info == {} and ext.core_relos == {}
    core = struct.pack("<IIIIIII", 16, 1, 1, 8, 1, 11, 0)
    ext = parse_btf_ext(blob(func_sec((0, 1)), b"", core), SPEC, "little")
    assert ext.core_relos == {"sec": [CoreRelo(1, 1, "0:1", CoreRelocKind.FIELD_BYTE_OFFSET)]}


def test_larger_records_are_accepted() -> None:
    ext = parse_btf_ext(blob(func_sec((0, 1), (8, 1), rec_size=12)), SPEC, "little")
    assert ext.func_info == {"sec": [FuncInfo(0, 1), FuncInfo(1, 1)]}
    assert ext.func_info_rec_size == 12
    assert parse_btf_ext(ext.to_bytes(SPEC.strings or btf.StringTable(b"")), SPEC, "little") == ext


@pytest.mark.parametrize(
    ("data", "offset", "message"),
    [
        (b"\x9f\xeb\x01", 0, "shorter than"),
        (struct.pack("<HBBI", 0xEB9E, 1, 0, 24) + bytes(16), 0, "bad magic"),
        (struct.pack("<HBBI", 0xEB9F, 2, 0, 24) + bytes(16), 2, "version"),
        (struct.pack("<HBBI", 0xEB9F, 1, 1, 24) + bytes(16), 3, "flags"),
        (struct.pack("<HBBI", 0xEB9F, 1, 0, 20) + bytes(16), 4, "header length"),
        (struct.pack("<HBBI", 0xEB9F, 1, 0, 26) + bytes(24), 4, "header length"),
        (struct.pack("<HBBI", 0xEB9F, 1, 0, 64) + bytes(16), 4, "beyond the end"),
        (struct.pack("<HBBI", 0xEB9F, 1, 0, 36) + bytes(24) + b"\1\0\0\0", 32, "not zero"),
        (blob(hdr=struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 100, 0, 0)), 8, "beyond the end"),
        (blob(hdr=struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 2, 4, 0, 0)) + bytes(8), 8, "aligned"),
        (blob(b"\0\0"), 24, "no record size"),
        (blob(struct.pack("<I", 4) + bytes(12)), 24, "record size 4"),
        (blob(struct.pack("<I", 10) + bytes(10)), 24, "record size 10"),
        (blob(func_sec((0, 1))[:-4]), 32, "do not fit"),
        (blob(func_sec((0, 1))[:8]), 28, "truncated section header"),
        (blob(func_sec((0, 1), count=0)[:12]), 32, "no records"),
        (blob(func_sec((0, 1), count=0xFFFFFFFF)), 32, "do not fit"),
        (blob(func_sec((0, 1), name=999)), 28, "section name string offset 999 out of range"),
        (blob(func_sec((0, 1), name=2)), None, None),  # "ec" is a valid suffix string
        (blob(func_sec((3, 1))), 36, "not a multiple of 8"),
        (blob(func_sec((0, 2))), 40, "type id 2 out of range"),
        (blob(b"", struct.pack("<IIIIIII", 16, 1, 1, 0, 500, 1, 0)), 40, "file name string offset 500"),
        (blob(b"", struct.pack("<IIIIIII", 16, 1, 1, 0, 5, 99, 0)), 44, "line string offset 99"),
        (blob(func_sec((0, 1)), b"", struct.pack("<IIIIIII", 16, 1, 1, 0, 1, 11, 13)), 76, "kind 13"),
        (
            blob(func_sec((0, 1)), b"", struct.pack("<IIIIIII", 16, 1, 1, 0, 1, 0, 0)),
            72,
            "access string is empty",
        ),
    ],
)
def test_malformed(data: bytes, offset: int | None, message: str | None) -> None:
    if message is None:
        parse_btf_ext(data, SPEC, "little")
        return
    with pytest.raises(BTFError, match=message) as info:
        parse_btf_ext(data, SPEC, "little")
    assert info.value.offset == offset
    assert info.value.source == ".BTF.ext"


def test_wrong_byte_order_is_bad_magic() -> None:
    raw, ext, _, _ = sections("local.el.o")
    with pytest.raises(BTFError, match="bad magic"):
        parse_btf_ext(ext, btf.Spec.from_bytes(raw), "big")


def test_fresh_spec_has_no_strings() -> None:
    with pytest.raises(BTFError, match="no string table"):
        parse_btf_ext(blob(func_sec((0, 1))), btf.Spec.build([]), "little")


# --- fuzz ---------------------------------------------------------------------------------

_SPEC_EL, _EXT_EL, _RAW_EL, _, _ = parsed("local.el.o")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_RAW_EL) - 1), st.integers(0, 255)), min_size=1, max_size=4))
def test_fuzz_mutations_raise_only_btf_error(edits: list[tuple[int, int]]) -> None:
    data = bytearray(_RAW_EL)
    for pos, value in edits:
        data[pos] = value
    try:
        ext = parse_btf_ext(bytes(data), _SPEC_EL, "little")
    except BTFError:
        return
    assert _SPEC_EL.strings is not None
    again = parse_btf_ext(ext.to_bytes(_SPEC_EL.strings), _SPEC_EL, "little")
    assert again.core_relos == ext.core_relos and again.func_info == ext.func_info


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 200))
def test_fuzz_random_and_truncated(data: bytes, cut: int) -> None:
    for candidate in (data, _RAW_EL[:cut], struct.pack("<HBBI", 0xEB9F, 1, 0, 32) + data):
        try:
            parse_btf_ext(candidate, _SPEC_EL, "little")
        except BTFError:
            pass


def test_split_string_table_offsets() -> None:
    """Line info of a program whose BTF is split (module BTF): offsets count from the base."""
    base = btf.StringTable(b"\0abc\0")
    split = btf.StringTable(b"xyz\0tail\0", base=base)
    raw = encode_line_info([LineInfo(0, "abc", "ail", 1, 0), LineInfo(1, "xyz", "tail", 2, 0)], split)
    assert struct.unpack("<8I", raw) == (0, 1, 5 + 5, 1 << 10, 1, 5, 5 + 4, 2 << 10)
