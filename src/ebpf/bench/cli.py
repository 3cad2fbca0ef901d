"""``python -m ebpf.bench``: run the benchmark suite and print a table, Markdown or JSON.

Tool layer: parses arguments, calls :func:`~ebpf.bench.runner.run_benchmarks` and formats
the report; uses the kernel layer (through the runner) when bpf() is available.

Rule: only the tables (or Markdown) go to stdout; progress and errors go to stderr, so
``python -m ebpf.bench --markdown > table.md`` gives a file ready to paste.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from ebpf.bench.objects import COMPUTE_KERNELS, PROGRAMS, default_bench_dir
from ebpf.bench.render import render_markdown, render_text
from ebpf.bench.runner import BenchOptions, MismatchError, available_engines, run_benchmarks
from ebpf.errors import BPFError

__all__ = ["main", "parser"]

PROG = "python -m ebpf.bench"


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for the docs and tests)."""
    defaults = BenchOptions()
    p = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Run the eBPF compute-kernel benchmarks (benchmarks/) on every user-space engine and "
            "on the Linux kernel JIT (BPF_PROG_TEST_RUN), interleaved, and report ns per run, "
            "ns per executed instruction and ratios to the kernel JIT."
        ),
    )
    p.add_argument(
        "--programs",
        type=_names,
        default=list(PROGRAMS),
        metavar="A,B,...",
        help=f"benchmarks to run (default: all: {','.join(PROGRAMS)})",
    )
    p.add_argument(
        "--engines",
        type=_names,
        default=None,
        metavar="A,B,...",
        help=f"engines to measure (default: all: {','.join(available_engines())})",
    )
    p.add_argument(
        "--trials", type=int, default=defaults.trials, help="rounds per program (default: %(default)s)"
    )
    p.add_argument(
        "--min-time",
        type=float,
        default=defaults.min_time,
        metavar="SECONDS",
        help="time per trial of a user-space engine, whole runs (default: %(default)s)",
    )
    p.add_argument(
        "--kernel-time",
        type=float,
        default=defaults.kernel_time,
        metavar="SECONDS",
        help="time per kernel trial; sets BPF_PROG_TEST_RUN's repeat (default: %(default)s)",
    )
    p.add_argument(
        "--dir",
        type=Path,
        default=None,
        help=f"the benchmarks directory with obj/ and inputs/ (default: {default_bench_dir()})",
    )
    p.add_argument("--cpu", type=int, default=None, help="pin the run to this CPU")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="write every raw figure to FILE")
    p.add_argument(
        "--markdown", action="store_true", help="print Markdown tables, with the command line, for a README"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--list", action="store_true", help="list the programs and engines, and exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 failure or mismatch, 2 usage)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(args_list)
    if args.list:
        for name in PROGRAMS:
            kind = "compute kernel" if name in COMPUTE_KERNELS else "overhead"
            print(f"program {name} ({kind})")
        for engine in available_engines():
            print(f"engine {engine}")
        return 0

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    options = BenchOptions(
        programs=args.programs,
        engines=args.engines,
        trials=args.trials,
        min_time=args.min_time,
        kernel_time=args.kernel_time,
        bench_dir=args.dir,
        cpu=args.cpu,
        progress=None if args.quiet else progress,
    )
    try:
        options.validate()
        unknown = [name for name in options.programs if name not in PROGRAMS]
        if unknown:
            raise ValueError(f"unknown program {unknown[0]!r}; choose from {', '.join(PROGRAMS)}")
    except ValueError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    try:
        report = run_benchmarks(options)
    except MismatchError as err:
        print(f"{PROG}: MISMATCH: {err}", file=sys.stderr)
        return 1
    except (BPFError, OSError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    report.command = " ".join([PROG, *(shlex.quote(a) for a in args_list)])
    if report.kernel_unavailable is not None and not args.quiet:
        progress(f"kernel JIT not measured: {report.kernel_unavailable}")
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    sys.stdout.write(render_markdown(report) if args.markdown else render_text(report))
    return 0
