"""The benchmark suite: our engines against the Linux kernel JIT on the same bytecode.

Tool layer: uses the core (``ebpf.isa``, ``ebpf.vm``) and the kernel layer when bpf() is
available (``BPF_PROG_TEST_RUN``); without it, the user-space engines only, with the reason.

The corpus is the repository's ``benchmarks/`` directory: twelve XDP programs
(``src/*.c``, prebuilt ``obj/*.o``) and their deterministic input packets (``inputs/``).
Every engine in :data:`ebpf.vm.ENGINES` and the kernel runs the identical bytecode on the
identical packet, interleaved, and must agree on the result of every run.

Example::

    from ebpf.bench import BenchOptions, run_benchmarks, render_text
    report = run_benchmarks(BenchOptions(programs=["fib"], trials=3, min_time=0.05))
    print(render_text(report))

From the shell: ``python -m ebpf.bench --markdown`` (see ``--help``).
"""

from __future__ import annotations

from ebpf.bench.objects import (
    COMPUTE_KERNELS,
    PROGRAMS,
    Benchmark,
    ObjectProgram,
    default_bench_dir,
    load_benchmark,
    read_object,
)
from ebpf.bench.render import render_markdown, render_text
from ebpf.bench.report import (
    KERNEL_ENGINE,
    BenchReport,
    EngineResult,
    KernelFacts,
    ProgramResult,
    Trial,
    geometric_mean,
)
from ebpf.bench.runner import BenchOptions, MismatchError, available_engines, run_benchmarks

__all__ = [
    "COMPUTE_KERNELS",
    "KERNEL_ENGINE",
    "PROGRAMS",
    "BenchOptions",
    "BenchReport",
    "Benchmark",
    "EngineResult",
    "KernelFacts",
    "MismatchError",
    "ObjectProgram",
    "ProgramResult",
    "Trial",
    "available_engines",
    "default_bench_dir",
    "geometric_mean",
    "load_benchmark",
    "read_object",
    "render_markdown",
    "render_text",
    "run_benchmarks",
]
