"""CLI layer: ``ebpf run``, one run of a program in the user-space runtime (:func:`ebpf.vm.run`).

Rule 1: no root and no kernel: the program runs on an engine of :data:`ebpf.vm.ENGINES`.

Rule 2: a run-time fault is a library error: ``error: pc N (<instruction>): <what>`` on
stderr and exit status 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ebpf.cli._common import (
    LibraryError,
    Printer,
    fail,
    format_duration,
    format_hex_bytes,
    format_retval,
    json_option,
)
from ebpf.cli._input import BYTEORDER_CHOICE, InputFormat, display_name, load_program, parse_hex, read_input
from ebpf.errors import VMError
from ebpf.isa import ByteOrder, Syntax

if TYPE_CHECKING:
    from ebpf.isa import Program
    from ebpf.vm import RunResult

__all__ = ["XDP_ACTIONS", "hexdump", "run"]

# enum xdp_action, for display only.
XDP_ACTIONS = {0: "XDP_ABORTED", 1: "XDP_DROP", 2: "XDP_PASS", 3: "XDP_TX", 4: "XDP_REDIRECT"}


def hexdump(data: bytes, *, width: int = 16) -> list[str]:
    """``"0000  45 00 ..."`` lines, ``width`` bytes each."""
    return [f"{i:04x}  {format_hex_bytes(data[i : i + width])}" for i in range(0, len(data), width)]


def changed_ranges(before: bytes, after: bytes) -> list[tuple[int, int]]:
    """Half-open byte ranges where ``after`` differs from ``before`` (a length change counts)."""
    ranges: list[tuple[int, int]] = []
    start: int | None = None
    for i in range(max(len(before), len(after))):
        differs = i >= len(before) or i >= len(after) or before[i] != after[i]
        if differs and start is None:
            start = i
        elif not differs and start is not None:
            ranges.append((start, i))
            start = None
    if start is not None:
        ranges.append((start, max(len(before), len(after))))
    return ranges


def format_ranges(ranges: list[tuple[int, int]]) -> str:
    return ", ".join(f"{a}" if b == a + 1 else f"{a}-{b - 1}" for a, b in ranges)


@click.command(short_help="Run a program in the user-space runtime; print r0.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--mem", metavar="HEX", help="Input memory as hex bytes, e.g. '01 02 ff'.")
@click.option(
    "--mem-file",
    type=click.Path(exists=True, dir_okay=False),
    help="Input memory from a file (raw bytes, or hex text when it reads as hex).",
)
@click.option("--xdp", is_flag=True, help="Pass the memory as an XDP packet (r1 = struct xdp_md *).")
@click.option(
    "--engine",
    metavar="NAME",
    default="interp",
    show_default=True,
    help="Execution engine (see ebpf.vm.ENGINES).",
)
@click.option(
    "--max-insns", type=click.IntRange(min=1), help="Instruction budget (default: the engine's, 10 million)."
)
@click.option(
    "--helpers",
    type=click.Choice(["none", "ubpf"]),
    default="none",
    show_default=True,
    help="Helper functions: none, or uBPF's test helpers (as bpf_conformance programs call them).",
)
@click.option(
    "--syntax",
    type=click.Choice(["auto", "llvm", "ubpf"]),
    default="auto",
    show_default=True,
    help="Syntax of assembly text; auto: whichever reads it.",
)
@click.option(
    "--input-format",
    type=click.Choice([f.value for f in InputFormat]),
    default="auto",
    show_default=True,
    help="What FILE holds; auto: ELF magic, hex text, assembly text, else raw bytecode.",
)
@click.option(
    "--section", "-j", metavar="NAME", help="The ELF section to run (needed when there are several)."
)
@click.option(
    "--byteorder",
    type=BYTEORDER_CHOICE,
    default="little",
    show_default=True,
    help="Byte order of raw/hex input.",
)
@click.option("--profile", is_flag=True, help="Also list how often each instruction ran.")
@json_option
def run(
    file: str,
    mem: str | None,
    mem_file: str | None,
    xdp: bool,
    engine: str,
    max_insns: int | None,
    helpers: str,
    syntax: str,
    input_format: str,
    section: str | None,
    byteorder: ByteOrder,
    profile: bool,
    as_json: bool,
) -> None:
    """Run FILE in the user-space runtime and print r0 and the instruction count.

    FILE is assembly text (LLVM or uBPF syntax), raw or hex bytecode, or a self-contained
    section of an ELF object. The input memory is passed as r1 (pointer) and r2 (length),
    or with --xdp as the packet of a struct xdp_md in r1.

    \b
    ebpf run prog.s
    ebpf run subnet.s --mem '00 00 c0 9f ...' --json
    ebpf run prog.o -j xdp --xdp --mem-file packet.bin --profile
    """
    from ebpf import vm

    if mem is not None and mem_file is not None:
        raise click.UsageError("use either --mem or --mem-file, not both")
    if engine not in vm.ENGINES:
        raise click.BadParameter(
            f"{engine!r}; choose from {', '.join(sorted(vm.ENGINES))}", param_hint="--engine"
        )

    source = display_name(file)
    loaded = load_program(
        read_input(file),
        InputFormat(input_format),
        source=source,
        syntax=None if syntax == "auto" else Syntax(syntax),
        byteorder=byteorder,
        section=section,
    )
    memory = _memory(mem, mem_file)
    registry = vm.ubpf_test_helpers() if helpers == "ubpf" else None
    budget = max_insns if max_insns is not None else vm.DEFAULT_MAX_INSNS
    runner = vm.create_engine(loaded.program, engine, helpers=registry, max_insns=budget)
    inp: vm.Input = vm.XdpInput(memory) if xdp else vm.RawInput(memory)
    try:
        result = runner.run(inp, profile=True) if profile else runner.run(inp)
    except VMError as err:  # name the program: "error: prog.s: pc 3 (...): ..."
        raise LibraryError(err, as_json=as_json, context=source) from err

    changes = changed_ranges(memory, result.data)
    if as_json:
        doc: dict[str, Any] = {
            "retval": result.retval,
            "retval_hex": f"{result.retval:#x}",
            "insns": result.insns,
            "wall_ns": result.elapsed_ns,
            "engine": engine,
            "input_format": loaded.format.value,
            "syntax": loaded.syntax.value if loaded.syntax else None,
            "section": loaded.section,
            "data": result.data.hex(),
            "data_changed": [list(r) for r in changes],
        }
        if xdp:
            doc["xdp_action"] = XDP_ACTIONS.get(result.retval)
        if profile:
            doc["profile"] = list(result.profile or ())
        Printer.json(doc)
        return

    out = Printer()
    r0 = format_retval(result.retval)
    if xdp and result.retval in XDP_ACTIONS:
        r0 += f" {XDP_ACTIONS[result.retval]}"
    rows = [
        ("r0", r0),
        ("instructions", str(result.insns)),
        ("time", f"{format_duration(result.elapsed_ns, unicode=out.rich)} (engine {engine})"),
    ]
    if memory or result.data:
        what = "packet" if xdp else "memory"
        rows.append(
            (
                what,
                f"changed at bytes {format_ranges(changes)}"
                if changes
                else f"unchanged ({len(memory)} bytes)",
            )
        )
    out.fields(rows)
    if changes:
        out.line()
        out.line(f"{'packet' if xdp else 'memory'} after the run:")
        for text in hexdump(result.data):
            out.line(text)
    if profile:
        out.line()
        _print_profile(out, loaded.program, result)


def _memory(mem: str | None, mem_file: str | None) -> bytes:
    if mem is not None:
        return parse_hex(mem, source="--mem")
    if mem_file is None:
        return b""
    from ebpf.cli._input import detect_format

    data = read_input(mem_file)
    if data and detect_format(data) is InputFormat.HEX:
        return parse_hex(data.decode("utf-8"), source=mem_file)
    return data


def _print_profile(out: Printer, program: Program, result: RunResult) -> None:
    from ebpf.cli._listing import labeled_text, listing_rows

    counts = result.profile or ()
    if not counts:
        raise fail("this engine does not count executions (--profile)")
    labels = program.labels
    rows: list[list[str]] = []
    for row in listing_rows(program, Syntax.LLVM):
        if row.pc in labels:
            rows.append(["", "", f"{labels[row.pc]}:"])
        rows.append(
            [str(counts[row.pc]) if row.pc < len(counts) else "", f"{row.pc}:", labeled_text(row, labels)]
        )
    out.table(["count", "pc", "instruction"], rows, right=(0, 1), styles=("bold", "dim", "green"))
