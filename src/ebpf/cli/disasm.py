"""CLI layer: ``ebpf disasm``, bytecode or an ELF object to text, laid out like ``llvm-objdump -d``.

Rule 1: works without root or a kernel; reads raw bytecode, hex text or a BPF ELF object
(detected from the content, ``--input-format`` to force).

Rule 2: invalid bytecode is an error (exit status 1) naming the instruction slot; nothing is
printed for a section that does not decode.
"""

from __future__ import annotations

from typing import Any

import click

from ebpf.cli._common import Printer, json_option
from ebpf.cli._input import (
    BYTEORDER_CHOICE,
    InputFormat,
    Section,
    decode_section,
    display_name,
    load_bytecode,
    read_input,
)
from ebpf.isa import ByteOrder, Program, Syntax

__all__ = ["disasm"]


@click.command(short_help="Disassemble bytecode or an ELF object (like llvm-objdump -d).")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option(
    "--syntax",
    type=click.Choice(["llvm", "ubpf"]),
    default="llvm",
    show_default=True,
    help="Output syntax: llvm ('r0 = 1', as llvm-objdump) or ubpf ('mov %r0, 1').",
)
@click.option("--section", "-j", "section", metavar="NAME", help="Only this ELF section (llvm-objdump -j).")
@click.option(
    "--input-format",
    type=click.Choice([f.value for f in InputFormat if f is not InputFormat.ASM]),
    default="auto",
    show_default=True,
    help="What FILE holds; auto: ELF magic, else hex text, else raw bytecode.",
)
@click.option(
    "--byteorder",
    type=BYTEORDER_CHOICE,
    default="little",
    show_default=True,
    help="Byte order of raw/hex input (ELF objects say their own).",
)
@click.option(
    "--style",
    type=click.Choice(["listing", "asm"]),
    default="listing",
    show_default=True,
    help="listing: slots, raw bytes and text (llvm-objdump -d); asm: text with labels at jump targets, "
    "which 'ebpf asm' reads back.",
)
@click.option(
    "--no-show-raw-insn", "no_raw", is_flag=True, help="Listing without the raw bytes (as llvm-objdump)."
)
@json_option
def disasm(
    file: str,
    syntax: str,
    section: str | None,
    input_format: str,
    byteorder: ByteOrder,
    style: str,
    no_raw: bool,
    as_json: bool,
) -> None:
    """Disassemble FILE: raw bytecode, hex text (e.g. 'b7 00 00 00 ...') or an eBPF ELF object.

    \b
    ebpf disasm prog.o               every executable section, like llvm-objdump -d
    ebpf disasm prog.o -j xdp        one section
    ebpf disasm prog.bin --syntax ubpf
    echo 'b7 00 00 00 2a 00 00 00 95 00 00 00 00 00 00 00' | ebpf disasm -

    Needs no root and no kernel.
    """
    from ebpf.cli._listing import listing_lines, listing_rows, row_json

    source = display_name(file)
    fmt, sections = load_bytecode(
        read_input(file), InputFormat(input_format), source=source, byteorder=byteorder, section=section
    )
    stx = Syntax(syntax)
    decoded: list[tuple[Section, Program]] = [(sec, decode_section(sec, source=source)) for sec in sections]

    if as_json:
        doc: dict[str, Any] = {"file": source, "format": fmt.value, "syntax": stx.value, "sections": []}
        for sec, program in decoded:
            symbols = _symbols(sec)
            doc["sections"].append(
                {
                    "name": sec.name,
                    "byteorder": sec.byteorder,
                    "relocations": sec.relocations,
                    "symbols": [{"name": name, "offset": offset} for offset, name in sec.symbols],
                    "instructions": [
                        row_json(row, symbols) for row in listing_rows(program, stx, sec.byteorder)
                    ],
                }
            )
        Printer.json(doc)
        return

    out = Printer()
    if style == "asm":  # every line is valid input for 'ebpf asm': headers are comments
        for i, (sec, program) in enumerate(decoded):
            if sec.name is not None:
                out.line(f"{'' if i == 0 else chr(10)}# {source}: section {sec.name}")
            for text in _reassemblable(program, sec, stx).splitlines():
                out.line(text)
        return
    if fmt is InputFormat.ELF:  # llvm-objdump's header, blank line first
        out.line()
        out.line(f"{source}:\tfile format elf64-bpf")
    for sec, program in decoded:
        if sec.name is not None:
            out.line()
            out.line(f"Disassembly of section {sec.name}:")
        symbols = _symbols(sec)
        for text in listing_lines(listing_rows(program, stx, sec.byteorder), symbols, raw=not no_raw):
            out.line(text)


def _symbols(sec: Section) -> list[tuple[int, str]]:
    """The section's symbols; like llvm-objdump, the section name labels code before the first one."""
    if sec.name is None:
        return []
    if not sec.symbols or sec.symbols[0][0] != 0:
        return [(0, sec.name), *sec.symbols]
    return list(sec.symbols)


def _reassemblable(program: Program, sec: Section, syntax: Syntax) -> str:
    """Assembly text with a label at every jump target (``L<slot>``) and at every symbol."""
    from ebpf.cli._listing import jump_targets
    from ebpf.isa import disassemble

    labels = {target: f"L{target}" for target in jump_targets(program).values()}
    labels.update({offset // 8: name for offset, name in sec.symbols if offset % 8 == 0})
    return disassemble(Program(program.instructions, labels), syntax)
