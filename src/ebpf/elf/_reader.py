"""Raw ELF reading with pyelftools: sections, symbols and relocations as plain values. Core layer. Pure.

Rule 1: every pyelftools exception, and the ``struct`` / index / value errors a malformed file
provokes, becomes :class:`~ebpf.errors.ELFError` naming the input; nothing else escapes.

Rule 2: only what a BPF object needs is read: a 64-bit relocatable ``EM_BPF`` file, its section
headers and contents, the symbol table and the ``SHT_REL`` sections.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ebpf.errors import ELFError
from ebpf.isa import ByteOrder

__all__ = [
    "EM_BPF",
    "ElfFile",
    "RawReloc",
    "RawSection",
    "RawSymbol",
    "read_elf",
]

EM_BPF = 247  # e_machine (EM_BPF in elf.h)
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_NOBITS = 8
SHT_RELA = 4
SHT_REL = 9
SHF_EXECINSTR = 0x4
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHN_ABS = 0xFFF1
SHN_COMMON = 0xFFF2

STB_LOCAL = 0
STB_GLOBAL = 1
STB_WEAK = 2
STT_NOTYPE = 0
STT_OBJECT = 1
STT_FUNC = 2
STT_SECTION = 3

_MAX_SECTIONS = 1 << 16


@dataclass(slots=True)
class RawSection:
    """One section header and its contents (zeros for ``SHT_NOBITS``)."""

    index: int
    name: str
    type: int
    flags: int
    size: int
    link: int
    info: int
    data: bytes = field(repr=False)

    @property
    def executable(self) -> bool:
        return bool(self.flags & SHF_EXECINSTR)


@dataclass(frozen=True, slots=True)
class RawSymbol:
    """One ``Elf64_Sym``."""

    index: int
    name: str
    value: int
    size: int
    type: int
    bind: int
    shndx: int
    visibility: int = 0  # st_other & 3: STV_DEFAULT 0, STV_INTERNAL 1, STV_HIDDEN 2, STV_PROTECTED 3


@dataclass(frozen=True, slots=True)
class RawReloc:
    """One ``Elf64_Rel`` entry of a ``SHT_REL`` section (BPF objects use no addends)."""

    offset: int
    type: int
    symbol: int


@dataclass(slots=True)
class ElfFile:
    """What :func:`read_elf` returns."""

    source: str
    byteorder: ByteOrder
    sections: list[RawSection]
    symbols: list[RawSymbol]
    relocations: dict[int, list[RawReloc]]  # target section index -> entries, in file order

    def section(self, index: int) -> RawSection | None:
        if 0 < index < len(self.sections):
            return self.sections[index]
        return None

    def section_by_name(self, name: str) -> RawSection | None:
        for sec in self.sections:
            if sec.name == name:
                return sec
        return None


def _fail(message: str, source: str, offset: int | None = None) -> NoReturn:
    raise ELFError(message, source=source, offset=offset)


def read_elf(data: bytes, source: str) -> ElfFile:
    """Read the sections, symbols and relocations of a BPF ELF object.

    Raises:
        ELFError: not ELF, not a 64-bit relocatable eBPF object, or malformed headers/tables.
    """
    from elftools.common.exceptions import ELFError as PyELFError
    from elftools.common.exceptions import ELFParseError

    if len(data) < 64 or data[:4] != b"\x7fELF":
        _fail("not an ELF file (bad magic or shorter than an ELF header)", source, 0)
    if data[4] != 2:
        _fail(f"not a 64-bit ELF file (EI_CLASS {data[4]})", source, 4)
    try:
        return _read(data, source)
    except ELFError:
        raise
    except (
        PyELFError,
        ELFParseError,
        struct.error,
        IndexError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        UnicodeDecodeError,
        OverflowError,
        RecursionError,
    ) as err:
        raise ELFError(f"malformed ELF file: {type(err).__name__}: {err}", source=source) from err


def _read(data: bytes, source: str) -> ElfFile:
    from elftools.elf.elffile import ELFFile

    elf: Any = ELFFile(io.BytesIO(data))
    byteorder: ByteOrder = "little" if elf.little_endian else "big"
    machine = elf["e_machine"]
    if machine not in ("EM_BPF", EM_BPF):
        _fail(f"not an eBPF object: e_machine is {machine}, want EM_BPF (247)", source, 18)
    if elf["e_type"] != "ET_REL":
        _fail(f"not a relocatable object: e_type is {elf['e_type']}", source, 16)
    count = elf.num_sections()
    if count > _MAX_SECTIONS:
        _fail(f"too many sections ({count})", source)
    sections: list[RawSection] = []
    for index in range(count):
        sec = elf.get_section(index)
        header = sec.header
        sh_type = header["sh_type"]
        type_num = _SHT.get(sh_type, -1) if isinstance(sh_type, str) else int(sh_type)
        size = int(header["sh_size"])
        offset = int(header["sh_offset"])
        if type_num == SHT_NOBITS or index == 0:
            content = b""
        else:
            if offset + size > len(data):
                _fail(
                    f"section {index} ({sec.name!r}) extends beyond the file "
                    f"(offset {offset:#x} + size {size:#x} > {len(data):#x})",
                    source,
                    offset,
                )
            content = data[offset : offset + size]
        sections.append(
            RawSection(
                index=index,
                name=str(sec.name),
                type=type_num,
                flags=int(header["sh_flags"]),
                size=size,
                link=int(header["sh_link"]),
                info=int(header["sh_info"]),
                data=content,
            )
        )
    symbols = _read_symbols(sections, byteorder, source)
    relocations: dict[int, list[RawReloc]] = {}
    fmt = "<QQ" if byteorder == "little" else ">QQ"
    for sec in sections:
        if sec.type == SHT_RELA and 0 < sec.info < len(sections) and sections[sec.info].executable:
            _fail(f"{sec.name!r}: RELA relocations of code; BPF objects use SHT_REL", source)
        if sec.type != SHT_REL:
            continue
        if sec.size % 16:
            _fail(f"relocation section {sec.name!r}: size {sec.size} is not a multiple of 16", source)
        entries = relocations.setdefault(sec.info, [])
        for r_offset, r_info in struct.iter_unpack(fmt, sec.data):
            sym = r_info >> 32
            if sym >= len(symbols):
                _fail(
                    f"relocation in {sec.name!r} at {r_offset:#x} names symbol {sym}, beyond the table",
                    source,
                )
            entries.append(RawReloc(r_offset, r_info & 0xFFFFFFFF, sym))
    return ElfFile(source, byteorder, sections, symbols, relocations)


_SHT = {
    "SHT_NULL": 0,
    "SHT_PROGBITS": 1,
    "SHT_SYMTAB": 2,
    "SHT_STRTAB": 3,
    "SHT_RELA": 4,
    "SHT_HASH": 5,
    "SHT_DYNAMIC": 6,
    "SHT_NOTE": 7,
    "SHT_NOBITS": 8,
    "SHT_REL": 9,
    "SHT_SHLIB": 10,
    "SHT_DYNSYM": 11,
    "SHT_INIT_ARRAY": 14,
    "SHT_FINI_ARRAY": 15,
    "SHT_PREINIT_ARRAY": 16,
    "SHT_GROUP": 17,
    "SHT_SYMTAB_SHNDX": 18,
    "SHT_LLVM_ADDRSIG": 0x6FFF4C03,
}


def _cstring(table: bytes, offset: int) -> str:
    if offset >= len(table) and offset:
        raise ValueError(f"string offset {offset:#x} beyond the string table")
    end = table.find(b"\0", offset)
    if end < 0:
        end = len(table)
    return table[offset:end].decode("utf-8", "replace")


def _read_symbols(sections: list[RawSection], byteorder: ByteOrder, source: str) -> list[RawSymbol]:
    symtabs = [s for s in sections if s.type == SHT_SYMTAB]
    if not symtabs:
        return []
    if len(symtabs) > 1:
        _fail("more than one symbol table", source)
    symtab = symtabs[0]
    if symtab.size % 24:
        _fail(f"symbol table size {symtab.size} is not a multiple of 24", source)
    if not 0 < symtab.link < len(sections):
        _fail(f"symbol table links to string table {symtab.link}, which does not exist", source)
    strtab = sections[symtab.link].data
    fmt = "<IBBHQQ" if byteorder == "little" else ">IBBHQQ"
    symbols = []
    for index, (name, info, other, shndx, value, size) in enumerate(struct.iter_unpack(fmt, symtab.data)):
        symbols.append(
            RawSymbol(index, _cstring(strtab, name), value, size, info & 0xF, info >> 4, shndx, other & 3)
        )
    return symbols
