"""Shared facts for the benchmark tests: the corpus directory and Table 3 of the reference.

Table 3 ("static facts") of the reference figures (``/work/shared/bench/README.md``, taken
with uBPF on the same sources built with clang 19.1.7 -O2 -mcpu=v3): bytecode instructions
(an ``lddw`` counts once), instructions executed per run (uBPF's count) and the return value.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


class Reference(NamedTuple):
    instructions: int
    executed: int
    retval: int


TABLE3: dict[str, Reference] = {
    "nop": Reference(2, 2, 2),
    "add_mem": Reference(13, 13, 1332594756),
    "log2": Reference(49, 1_968, 1773),
    "primes": Reference(31, 52_421, 168),
    "switch": Reference(76, 4_327, 105576827),
    "checksum": Reference(23, 4_622, 39142),
    "fnv1a": Reference(19, 10_249, 691250941),
    "memcpy": Reference(16, 7_176, 26),
    "strcmp": Reference(20, 4_606, 78),
    "collatz": Reference(90, 23_480, 2041),
    "fib": Reference(19, 24_588, 283446722),
    "bsort": Reference(89, 1_322, 2830781533),
}


@pytest.fixture(scope="session")
def bench_dir() -> Path:
    return BENCH_DIR
