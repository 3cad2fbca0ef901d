"""Rendering a :class:`~ebpf.bench.report.BenchReport` as plain-text or Markdown tables.

Tool layer: pure formatting, no kernel access.

Rule 1: both renderers draw the same tables from the same rows (:func:`tables`); only the
framing differs. Markdown output is meant to be pasted into a README as is, so it starts
with the exact command line and the machine it ran on.

Rule 2: numbers keep three significant figures or more (``0.0464``, ``4.58``, ``45.1``,
``1,322``), so a kernel JIT's 0.05 ns per instruction and an interpreter's 200 ns both read
well in one column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ebpf.bench.objects import COMPUTE_KERNELS
from ebpf.bench.report import KERNEL_ENGINE, BenchReport

__all__ = ["Table", "number", "render_markdown", "render_text", "summary_lines", "tables"]


@dataclass(frozen=True)
class Table:
    """A titled table: header cells, rows of cells; the first column is left-aligned."""

    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def number(value: float | None) -> str:
    """A figure with at least three significant digits, thousands separated; ``-`` for none."""
    if value is None:
        return "-"
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    if size == 0:
        return "0"
    return f"{value:.{2 - math.floor(math.log10(size))}f}"


def _label(engine: str) -> str:
    return "kernel JIT" if engine == KERNEL_ENGINE else engine


def tables(report: BenchReport) -> list[Table]:
    """The ratio table (when the kernel was measured) and the timing table."""
    out: list[Table] = []
    users = report.user_engines
    if report.has_kernel and users:
        header = ["program", "exec. insns/run"]
        for engine in users:
            header += [f"{engine} ÷ kernel (min-based)", f"{engine} ÷ kernel (median of trial ratios)"]
        ratio_rows = []
        for p in report.programs:
            row = [p.name, f"{p.insns:,}"]
            for engine in users:
                row += [number(p.ratio_min(engine)), number(p.ratio_median(engine))]
            ratio_rows.append(tuple(row))
        out.append(Table("Ratios to the kernel JIT (lower is faster)", tuple(header), tuple(ratio_rows)))
    header = ["program", "exec. insns/run"]
    for engine in report.engines:
        label = _label(engine)
        header += [f"{label} ns/run: min [median]", f"{label} ns/insn (min)", f"{label} MIPS (min)"]
    rows = []
    for p in report.programs:
        row = [p.name, f"{p.insns:,}"]
        for engine in report.engines:
            res = p.engines[engine]
            row += [
                f"{number(res.min_ns)} [{number(res.median_ns)}]",
                number(p.ns_per_insn(engine)),
                number(p.mips(engine)),
            ]
        rows.append(tuple(row))
    trials = report.options.get("trials", "?")
    out.append(
        Table(f"ns per run and per executed instruction ({trials} trials)", tuple(header), tuple(rows))
    )
    return out


def summary_lines(report: BenchReport) -> list[str]:
    """Geometric means, and why the kernel column is missing when it is."""
    lines: list[str] = []
    measured = [p.name for p in report.compute_kernels()]
    if measured:
        if len(measured) == len(COMPUTE_KERNELS):
            scope = f"the {len(measured)} compute kernels (all but nop, add_mem)"
        else:
            noun = "kernel" if len(measured) == 1 else "kernels"
            scope = f"the {len(measured)} compute {noun} measured ({', '.join(measured)})"
        parts = []
        if report.has_kernel:
            for engine in report.user_engines:
                parts.append(
                    f"{engine} ÷ kernel = {number(report.geomean_ratio(engine, 'min'))} (min-based), "
                    f"{number(report.geomean_ratio(engine, 'median'))} (median of per-trial ratios)"
                )
        per_insn = ", ".join(
            f"{_label(engine)} {number(report.geomean_ns_per_insn(engine))} ns "
            f"({number(_mips(report.geomean_ns_per_insn(engine)))} MIPS)"
            for engine in report.engines
        )
        parts.append(f"ns per executed instruction (min): {per_insn}")
        lines.append(f"Geometric means over {scope}: " + "; ".join(parts) + ".")
    if report.kernel_unavailable is not None:
        lines.append(f"No kernel JIT column: bpf() is unavailable here: {report.kernel_unavailable}.")
    elif not report.has_kernel:
        lines.append("No kernel JIT column: not selected (--engines).")
    return lines


def _mips(ns_per_insn: float | None) -> float | None:
    return 1e3 / ns_per_insn if ns_per_insn else None


def _environment_line(report: BenchReport) -> str:
    env = report.environment
    opts = report.options
    cpu = f"{env.get('cpu', '?')}, {env.get('cpus', '?')} CPUs"
    if opts.get("cpu") is not None:
        cpu += f" (pinned to CPU {opts['cpu']})"
    sysctl = env.get("sysctl") or {}
    harden = sysctl.get("bpf_jit_harden")
    kernel = f"{env.get('system', '?')} {env.get('kernel', '?')}"
    if harden is not None:
        kernel += f" (bpf_jit_harden={harden})"
    return (
        f"Machine: {cpu}; {kernel}; {env.get('python', '?')}; ebpf {env.get('ebpf', '?')}. "
        f"{opts.get('trials', '?')} trials per program, engine order rotated each trial; "
        f"user-space trials ≥ {opts.get('min_time', '?')} s, kernel trials ≈ {opts.get('kernel_time', '?')} s "
        f"(BPF_PROG_TEST_RUN repeat). Started {report.started or '?'}, took {report.duration_s:.0f} s."
    )


def _widths(table: Table) -> list[int]:
    cells = [table.header, *table.rows]
    return [max(len(row[i]) for row in cells) for i in range(len(table.header))]


def render_text(report: BenchReport) -> str:
    """Aligned plain-text tables plus the summary lines."""
    chunks: list[str] = []
    for table in tables(report):
        widths = _widths(table)

        def line(cells: tuple[str, ...], widths: list[int] = widths) -> str:
            first = cells[0].ljust(widths[0])
            rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
            return "  ".join([first, *rest]).rstrip()

        body = [table.title, line(table.header), "  ".join("-" * w for w in widths)]
        body += [line(row) for row in table.rows]
        chunks.append("\n".join(body))
    chunks.append("\n".join(summary_lines(report)))
    return "\n\n".join(chunk for chunk in chunks if chunk) + "\n"


def render_markdown(report: BenchReport) -> str:
    """Markdown tables headed by the command line and the machine, ready to paste."""
    chunks = []
    if report.command:
        chunks.append(f"Command: `{report.command}`")
    chunks.append(_environment_line(report))
    for table in tables(report):
        align = ["---", *("---:" for _ in table.header[1:])]
        body = [f"**{table.title}**", "", _md_row(table.header), _md_row(tuple(align))]
        body += [_md_row(row) for row in table.rows]
        chunks.append("\n".join(body))
    chunks.append("\n".join(summary_lines(report)))
    return "\n\n".join(chunk for chunk in chunks if chunk) + "\n"


def _md_row(cells: tuple[str, ...]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
