"""Bad input: every malformation is an ELFError (or BTFError) with a clear message; fuzzing."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.elf.conftest import DATA

from ebpf.elf import load_collection_spec
from ebpf.errors import ELFError, ParseError

SMALL = ["xdp_fw.o", "tc_cls.be.o", "tailcall.o", "map_in_map.o", "legacy_maps.o", "socket_filter.o"]
OBJECTS = {name: (DATA / name).read_bytes() for name in SMALL}


def _hot_regions(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges worth mutating: section headers, code, symbols, relocations, BTF, maps."""
    import io

    from elftools.elf.elffile import ELFFile

    elf = ELFFile(io.BytesIO(data))
    shoff, entsize, num = elf["e_shoff"], elf["e_shentsize"], elf["e_shnum"]
    regions = [(0, 64), (shoff, shoff + entsize * num)]
    for sec in elf.iter_sections():
        if sec.name.startswith(".debug") or sec["sh_type"] == "SHT_NOBITS" or not sec["sh_size"]:
            continue
        regions.append((sec["sh_offset"], sec["sh_offset"] + sec["sh_size"]))
    return regions


HOT = {name: _hot_regions(data) for name, data in OBJECTS.items()}


def _shdrs(data: bytes) -> tuple[int, int, int]:
    e_shoff = struct.unpack_from("<Q", data, 0x28)[0]
    e_shentsize, e_shnum = struct.unpack_from("<HH", data, 0x3A)
    return e_shoff, e_shentsize, e_shnum


def _section(data: bytes, name: str) -> int:
    """Offset of the section header of ``name`` (little-endian objects)."""
    shoff, entsize, num = _shdrs(data)
    shstrndx = struct.unpack_from("<H", data, 0x3E)[0]
    str_off = struct.unpack_from("<Q", data, shoff + shstrndx * entsize + 0x18)[0]
    for i in range(num):
        hdr = shoff + i * entsize
        name_off = struct.unpack_from("<I", data, hdr)[0]
        end = data.index(b"\0", str_off + name_off)
        if data[str_off + name_off : end].decode() == name:
            return hdr
    raise AssertionError(name)


def test_missing_file(tmp_path: object) -> None:
    with pytest.raises(ELFError, match="cannot read"):
        load_collection_spec("/nonexistent/x.o")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not an ELF file"),
        (b"\x7fELF" + bytes(10), "not an ELF file"),
        (b"garbage" * 20, "not an ELF file"),
        (b"\x7fELF\x01" + bytes(80), "not a 64-bit ELF"),
    ],
)
def test_not_elf(data: bytes, message: str) -> None:
    with pytest.raises(ELFError, match=message):
        load_collection_spec(data)


def test_wrong_machine() -> None:
    data = bytearray(OBJECTS["xdp_fw.o"])
    data[18:20] = (62).to_bytes(2, "little")  # EM_X86_64
    with pytest.raises(ELFError, match="not an eBPF object"):
        load_collection_spec(bytes(data))


def test_not_relocatable() -> None:
    data = bytearray(OBJECTS["xdp_fw.o"])
    data[16:18] = (2).to_bytes(2, "little")  # ET_EXEC
    with pytest.raises(ELFError, match="not a relocatable object"):
        load_collection_spec(bytes(data))


def test_truncated() -> None:
    data = OBJECTS["xdp_fw.o"]
    for cut in (64, 200, len(data) // 2, len(data) - 1):
        with pytest.raises(ParseError):
            load_collection_spec(data[:cut])


def test_section_beyond_file() -> None:
    data = bytearray(OBJECTS["xdp_fw.o"])
    hdr = _section(data, "xdp")
    struct.pack_into("<Q", data, hdr + 0x18, len(data) - 4)  # sh_offset
    with pytest.raises(ELFError, match="extends beyond the file"):
        load_collection_spec(bytes(data))


def test_relocation_to_missing_symbol() -> None:
    data = bytearray(OBJECTS["xdp_fw.o"])
    hdr = _section(data, ".relxdp")
    off = struct.unpack_from("<Q", data, hdr + 0x18)[0]
    info = struct.unpack_from("<Q", data, off + 8)[0]
    struct.pack_into("<Q", data, off + 8, (9999 << 32) | (info & 0xFFFFFFFF))
    with pytest.raises(ELFError, match="beyond the table"):
        load_collection_spec(bytes(data))


def test_relocation_on_wrong_instruction() -> None:
    data = bytearray(OBJECTS["xdp_fw.o"])
    hdr = _section(data, ".relxdp")
    off = struct.unpack_from("<Q", data, hdr + 0x18)[0]
    struct.pack_into("<Q", data, off, 0)  # r_offset 0: `r1 = *(u32 *)(r1 + 4)`-like, not lddw
    with pytest.raises(ELFError, match="neither lddw nor call|relocation type"):
        load_collection_spec(bytes(data))


def test_relocation_outside_section() -> None:
    data = bytearray(OBJECTS["xdp_fw.o"])
    hdr = _section(data, ".relxdp")
    off = struct.unpack_from("<Q", data, hdr + 0x18)[0]
    struct.pack_into("<Q", data, off, 0x100000)
    with pytest.raises(ELFError, match="outside every function"):
        load_collection_spec(bytes(data))


def test_unknown_map_type() -> None:
    data = bytearray(OBJECTS["legacy_maps.o"])
    hdr = _section(data, "maps")
    off = struct.unpack_from("<Q", data, hdr + 0x18)[0]
    struct.pack_into("<I", data, off, 0xBEEF)
    with pytest.raises(ELFError, match="unknown map type 48879"):
        load_collection_spec(bytes(data))


def test_bad_bytecode_names_the_section() -> None:
    data = bytearray(OBJECTS["socket_filter.o"])
    hdr = _section(data, "socket")
    off = struct.unpack_from("<Q", data, hdr + 0x18)[0]
    data[off] = 0xFF  # no such opcode
    with pytest.raises(ELFError, match="section 'socket'"):
        load_collection_spec(bytes(data))


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(SMALL))
    data = bytearray(OBJECTS[name])
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.integers(0, 3))
        lo, hi = draw(st.sampled_from(HOT[name]))
        pos = min(draw(st.integers(lo, max(lo, hi - 1))), len(data) - 1)
        if kind == 0:
            data[pos] = draw(st.integers(0, 255))
        elif kind == 1:
            width = draw(st.sampled_from([2, 4, 8]))
            if pos + width <= len(data):
                value = draw(st.sampled_from([0, 1, 0xFF, 0xFFFF, 0xFFFFFFFF, 0x7FFFFFFF, len(data)]))
                data[pos : pos + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
        elif kind == 2:
            del data[pos:]
            if len(data) < 2:
                break
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@settings(
    max_examples=int(os.environ.get("ELF_FUZZ", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(_mutated())
def test_fuzz_only_parse_errors(data: bytes) -> None:
    """cilium's FuzzLoadCollectionSpec: mutated real objects parse or raise a ParseError."""
    try:
        load_collection_spec(data)
    except ParseError:
        pass


def test_rela_relocations_of_code() -> None:
    data = bytearray(OBJECTS["xdp_fw.o"])
    hdr = _section(data, ".relxdp")
    struct.pack_into("<I", data, hdr + 4, 4)  # sh_type = SHT_RELA
    struct.pack_into("<Q", data, hdr + 0x38, 24)  # sh_entsize of Elf64_Rela
    with pytest.raises(ELFError, match="RELA relocations of code"):
        load_collection_spec(bytes(data))


def test_relocation_against_non_map_section() -> None:
    """An lddw relocated against a symbol in a section that holds no map, data or code."""
    data = bytearray(OBJECTS["xdp_fw.o"])
    rel = _section(data, ".relxdp")
    off = struct.unpack_from("<Q", data, rel + 0x18)[0]
    info = struct.unpack_from("<Q", data, off + 8)[0]
    # point the first relocation (an lddw of packets_seen) at the '_license' symbol
    import io

    from elftools.elf.elffile import ELFFile

    symtab = ELFFile(io.BytesIO(bytes(data))).get_section_by_name(".symtab")
    index = next(i for i, s in enumerate(symtab.iter_symbols()) if s.name == "_license")
    struct.pack_into("<Q", data, off + 8, (index << 32) | (info & 0xFFFFFFFF))
    with pytest.raises(ELFError, match="holds no map, data or code"):
        load_collection_spec(bytes(data))


def _other_objects() -> list[str]:
    root = DATA.parent.parent
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.o") if DATA not in p.parents)


@pytest.mark.parametrize("path", _other_objects())
def test_other_objects_of_the_repository(path: str) -> None:
    """Every other BPF object the test suite carries loads, or is refused with a ParseError
    (e.g. a '.maps' section compiled without -g)."""
    try:
        spec = load_collection_spec(DATA.parent.parent / path)
    except ParseError as err:
        assert str(err)
    else:
        assert spec.byteorder in ("little", "big")
