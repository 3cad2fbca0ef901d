"""Helpers for the llvm-objdump corpus tests: read objects, read objdump text, write objects.

Used by ``tests/isa/test_syntax_llvm*.py`` and ``tests/data/llvm/gen_all_opcodes.py``.
"""

from __future__ import annotations

import io
import itertools
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from ebpf.isa.encoding import ByteOrder, validate
from ebpf.isa.instruction import Instruction

DATA = Path(__file__).resolve().parent.parent / "data" / "llvm"
OBJ = DATA / "obj"

EM_BPF = 247


@dataclass(frozen=True)
class CodeSection:
    """An executable section of an object: its name, raw bytes and byte order."""

    name: str
    data: bytes
    byteorder: ByteOrder


def code_sections(path: Path) -> list[CodeSection]:
    """The sections with SHF_EXECINSTR and content, in section-header order."""
    with path.open("rb") as f:
        elf = ELFFile(io.BytesIO(f.read()))
    order: ByteOrder = "little" if elf.little_endian else "big"
    out = []
    for section in elf.iter_sections():
        if section["sh_flags"] & SH_FLAGS.SHF_EXECINSTR and section["sh_size"]:
            out.append(CodeSection(section.name, section.data(), order))
    return out


@dataclass(frozen=True)
class ListingLine:
    """One instruction line of an llvm-objdump listing."""

    slot: int
    raw: str  # "b7 00 00 00 00 00 00 00"
    text: str  # "r0 = 0x0", without the trailing "<target>" annotation
    line: str  # the whole line


_SECTION = re.compile(r"^Disassembly of section (.*):$")
_INSN = re.compile(r"^\s*(\d+):\t((?:[0-9a-f]{2} ?)+)\t(.*)$")
_ANNOTATION = re.compile(r" <[^<>]*>$")


def read_listing(text: str) -> dict[str, list[ListingLine]]:
    """Instruction lines of ``llvm-objdump -d [-r]`` output, per section name."""
    sections: dict[str, list[ListingLine]] = {}
    current: list[ListingLine] | None = None
    for line in text.splitlines():
        m = _SECTION.match(line)
        if m:
            current = sections.setdefault(m.group(1), [])
            continue
        m = _INSN.match(line)
        if m and current is not None:
            text_part = _ANNOTATION.sub("", m.group(3))
            current.append(ListingLine(int(m.group(1)), m.group(2).strip(), text_part, line))
    return sections


def make_object(code: bytes, section: str = ".text", byteorder: ByteOrder = "little") -> bytes:
    """A minimal relocatable ELF64 for BPF holding ``code`` in one executable section."""
    end = "<" if byteorder == "little" else ">"
    name = section.encode()
    shstrtab = b"\0" + name + b"\0.shstrtab\0"
    text_off = 64
    shstr_off = text_off + len(code)
    sh_off = (shstr_off + len(shstrtab) + 7) & ~7
    ident = b"\x7fELF" + bytes([2, 1 if byteorder == "little" else 2, 1, 0]) + bytes(8)
    header = ident + struct.pack(end + "HHIQQQIHHHHHH", 1, EM_BPF, 1, 0, 0, sh_off, 0, 64, 0, 0, 64, 3, 2)

    def shdr(name_off: int, kind: int, flags: int, off: int, size: int, align: int) -> bytes:
        return struct.pack(end + "IIQQQQIIQQ", name_off, kind, flags, 0, off, size, 0, 0, align, 0)

    body = header + code + shstrtab
    body += bytes(sh_off - len(body))
    SHT_PROGBITS, SHT_STRTAB = 1, 3
    headers = bytes(64)
    headers += shdr(1, SHT_PROGBITS, SH_FLAGS.SHF_ALLOC | SH_FLAGS.SHF_EXECINSTR, text_off, len(code), 8)
    headers += shdr(2 + len(name), SHT_STRTAB, 0, shstr_off, len(shstrtab), 1)
    return body + headers


# Field values tried for every opcode; the first valid combinations are kept.
_DSTS = (1, 10, 0)
_SRCS = (2, 0, 1, 3, 4, 5, 6, 10)
_OFFSETS = (0x10, -8, 0, 1, 8, 16, 32, 0x7FFF, -0x8000)
_IMMS = (0, 5, -7, 16, 32, 64, 0x7FFFFFFF, -0x80000000, 0x40, 0x50, 0xA0, 0x01, 0x41, 0x51, 0xA1, 0xE1, 0xF1)
_WIDE_IMMS = (0x123456789ABCDEF0, 0xFFFFFFFFFFFFFFFF, (8 << 32) | 3, 0x80000000, 1)


def sample_instructions(per_opcode: int = 6) -> list[Instruction]:
    """Valid instructions covering every opcode byte that :func:`validate` accepts.

    For each opcode, up to ``per_opcode`` valid field combinations, spread over the
    combinations tried so that registers, signs, sizes and special immediates all appear.
    """
    out: list[Instruction] = []
    for opcode in range(256):
        imms = _IMMS + (_WIDE_IMMS if opcode == 0x18 else ())
        valid = []
        for dst, src, offset, imm in itertools.product(_DSTS, _SRCS, _OFFSETS, imms):
            insn = Instruction(opcode, dst, src, offset, imm)
            if validate(insn) is None:
                valid.append(insn)
        if not valid:
            continue
        distinct = list(dict.fromkeys(valid))
        step = max(1, len(distinct) // per_opcode)
        picked = distinct[::step][:per_opcode]
        # Where the immediate selects the operation (atomics, byte swaps) or is 64-bit (lddw),
        # make sure each value tried appears.
        special = opcode in (0xC3, 0xDB, 0xD4, 0xDC, 0xD7, 0x18)
        seen_imms = {i.imm for i in picked}
        for insn in distinct if special else ():
            if insn.imm not in seen_imms:
                picked.append(insn)
                seen_imms.add(insn.imm)
        out.extend(picked)
    return out
