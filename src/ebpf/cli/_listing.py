"""CLI layer: ``llvm-objdump -d``-style listings (slot, raw bytes, text) of a program.

Rule 1: the text of each instruction comes from :func:`ebpf.isa.format_instruction`, the
raw bytes from :func:`ebpf.isa.encode`, jump targets from the typed IR
(:meth:`ebpf.isa.Program.ops`); this module only lays them out.

Rule 2: the plain layout is llvm-objdump's, byte for byte where the instruction text
agrees: ``"%8d:\\t<hex bytes>\\t<text>"`` per instruction (an ``lddw`` shows its 16 bytes on
one line), a blank line and ``"%016x <symbol>:"`` before each symbol, and jump targets
annotated ``<symbol+0xoff>`` when the code has symbols.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ebpf.cli._common import format_hex_bytes
from ebpf.errors import DecodeError
from ebpf.isa import ByteOrder, Instruction, Program, Syntax, encode, format_instruction

__all__ = ["Row", "jump_targets", "labeled_text", "listing_lines", "listing_rows", "row_json"]

SLOT = 8


@dataclass(frozen=True)
class Row:
    """One listed instruction."""

    pc: int  # slot index
    insn: Instruction
    raw: bytes
    text: str
    target: int | None  # absolute slot of a jump's target, if any


def jump_targets(program: Program) -> dict[int, int]:
    """Slot -> target slot of jumps (not calls: llvm-objdump annotates jumps only).

    Empty when the IR cannot be built (an out-of-range jump): the code is shown anyway.
    """
    from ebpf.isa.ir import Branch, Jump

    try:
        ops = program.ops()
    except DecodeError:
        return {}
    out: dict[int, int] = {}
    for pc, op in enumerate(ops):
        match op:
            case Jump(target=t) | Branch(target=t):
                out[pc] = t
    return out


def listing_rows(program: Program, syntax: Syntax, byteorder: ByteOrder = "little") -> list[Row]:
    """One :class:`Row` per instruction."""
    targets = jump_targets(program)
    rows: list[Row] = []
    pc = 0
    for insn in program:
        raw = encode([insn], byteorder)
        rows.append(Row(pc, insn, raw, format_instruction(insn, syntax), targets.get(pc)))
        pc += insn.slots
    return rows


def labeled_text(row: Row, labels: Mapping[int, str]) -> str:
    """The row's text, with ``<label>`` after a jump or call whose target slot has a label."""
    if row.target is not None and row.target in labels:
        return f"{row.text} <{labels[row.target]}>"
    return row.text


def _symbolize(offset: int, symbols: Sequence[tuple[int, str]]) -> str | None:
    """``sym`` or ``sym+0xoff`` for a byte offset, as llvm-objdump prints jump targets."""
    index = bisect.bisect_right(symbols, (offset, "\uffff")) - 1
    if index < 0:
        return None
    start, name = symbols[index]
    return name if offset == start else f"{name}+{offset - start:#x}"


def listing_lines(
    rows: Sequence[Row], symbols: Sequence[tuple[int, str]] = (), *, raw: bool = True
) -> list[str]:
    """The llvm-objdump layout of ``rows`` (Rule 2); ``symbols`` are (byte offset, name), sorted."""
    by_offset: dict[int, list[str]] = {}
    for offset, name in symbols:
        by_offset.setdefault(offset, []).append(name)
    lines: list[str] = []
    for row in rows:
        for name in by_offset.get(row.pc * SLOT, ()):
            lines += ["", f"{row.pc * SLOT:016x} <{name}>:"]
        text = row.text
        if symbols and row.target is not None:
            label = _symbolize(row.target * SLOT, symbols)
            if label is not None:
                text += f" <{label}>"
        lines.append(f"{row.pc:8d}:\t{format_hex_bytes(row.raw)}\t{text}" if raw else f"{row.pc:8d}:\t{text}")
    return lines


def row_json(row: Row, symbols: Sequence[tuple[int, str]] = ()) -> dict[str, Any]:
    """The JSON form of a row (bpftool's ``prog dump -j`` fields, plus the raw bytes)."""
    out: dict[str, Any] = {
        "pc": row.pc,
        "bytes": format_hex_bytes(row.raw),
        "text": row.text,
        "opcode": row.insn.opcode,
        "dst": int(row.insn.dst),
        "src": int(row.insn.src),
        "offset": row.insn.offset,
        "imm": row.insn.imm,
    }
    if row.target is not None:
        out["target"] = row.target
        label = _symbolize(row.target * SLOT, symbols) if symbols else None
        if label is not None:
            out["target_symbol"] = label
    return out
