"""The benchmark suite: our engines against the Linux kernel JIT on the same bytecode.

Tool layer: uses the core (``ebpf.isa``, ``ebpf.vm``) and the kernel layer when bpf() is
available (``BPF_PROG_TEST_RUN``); without it, the user-space engines only, with the reason.

The corpus is the repository's ``benchmarks/`` directory: twelve XDP programs
(``src/*.c``, prebuilt ``obj/*.o``) and their deterministic input packets (``inputs/``).
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

__all__ = [
    "COMPUTE_KERNELS",
    "PROGRAMS",
    "Benchmark",
    "ObjectProgram",
    "default_bench_dir",
    "load_benchmark",
    "read_object",
]
