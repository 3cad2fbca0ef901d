"""CLI layer: ``ebpf asm``, assembly text to bytecode (calls :func:`ebpf.isa.assemble`).

Rule: like ``clang -c`` / ``as``, the default output is a file next to the input
(``prog.s`` -> ``prog.bin``); ``-o -`` writes to stdout, as hex text unless ``--format raw``
is asked for (and never raw bytes to a terminal).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ebpf.cli._common import Printer, fail, format_hex_bytes, json_option
from ebpf.cli._input import BYTEORDER_CHOICE, assemble_text, display_name, read_input
from ebpf.isa import ByteOrder, Syntax

__all__ = ["asm", "format_hex_listing"]


def format_hex_listing(code: bytes) -> str:
    """Bytecode as hex text, one 8-byte slot per line (what ``ebpf disasm`` and bpf_conformance read)."""
    return "".join(format_hex_bytes(code[i : i + 8]) + "\n" for i in range(0, len(code), 8))


@click.command(short_help="Assemble text into eBPF bytecode.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option(
    "-o",
    "--output",
    metavar="OUT",
    help="Output file; '-' for stdout. Default: FILE with the suffix .bin (or .hex with --format hex).",
)
@click.option(
    "--syntax",
    type=click.Choice(["auto", "llvm", "ubpf"]),
    default="auto",
    show_default=True,
    help="Assembly syntax: llvm ('r0 = 1'), ubpf ('mov %r0, 1'), or auto: whichever reads the text.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "raw", "hex"]),
    default="auto",
    show_default=True,
    help="Output encoding: raw bytes, or hex text (one 8-byte slot per line). auto: raw to a file, hex to stdout.",
)
@click.option("--byteorder", type=BYTEORDER_CHOICE, default="little", show_default=True, help="Byte order.")
@json_option
def asm(file: str, output: str | None, syntax: str, fmt: str, byteorder: ByteOrder, as_json: bool) -> None:
    """Assemble FILE (eBPF assembly text; '-' for stdin) into bytecode.

    \b
    ebpf asm prog.s                  writes prog.bin (raw bytecode)
    ebpf asm prog.s -o -             prints hex, one instruction slot per line
    ebpf asm prog.s --format hex     writes prog.hex
    ebpf asm prog.s --json -o -      prints {"bytecode": "...", ...} only

    Prints a one-line summary when writing a file. Errors name the line and column:
    "error: prog.s:3:5: ...".
    """
    source = display_name(file)
    data = read_input(file)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise fail(f"{source}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    program, used = assemble_text(text, None if syntax == "auto" else Syntax(syntax), source=source)
    code = program.encode(byteorder)

    if output is None:
        if file == "-":
            output = "-"
        else:
            output = str(Path(file).with_suffix(".hex" if fmt == "hex" else ".bin"))
    to_stdout = output == "-"
    if not to_stdout and file != "-" and Path(output).resolve() == Path(file).resolve():
        raise fail(f"{source}: the output would overwrite the input; choose another name with -o")
    if fmt == "auto":
        fmt = "hex" if to_stdout else "raw"
    payload = code if fmt == "raw" else format_hex_listing(code).encode("ascii")

    summary = {
        "source": source,
        "syntax": used.value,
        "output": output,
        "format": fmt,
        "byteorder": byteorder,
        "instructions": len(program),
        "slots": program.slots,
        "bytes": len(code),
        "bytecode": code.hex(),
    }
    if to_stdout:
        if as_json:  # the JSON document is the output
            Printer.json(summary)
            return
        if fmt == "raw" and sys.stdout.isatty():
            raise fail("refusing to write raw bytecode to a terminal; use --format hex or redirect stdout")
        stream = sys.stdout.buffer
        stream.write(payload)
        stream.flush()
        return
    Path(output).write_bytes(payload)
    if as_json:
        Printer.json(summary)
        return
    Printer().line(
        f"{source}: {len(program)} instructions ({program.slots} slots, {len(code)} bytes) -> {output}"
    )
