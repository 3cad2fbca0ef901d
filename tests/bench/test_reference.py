"""Every engine on every benchmark against Table 3 of the reference figures, and the kernel.

The interpreter's return values and executed-instruction counts equal uBPF's on the same
objects and inputs (Table 3). The whole corpus runs in ~40 ms on the interpreter (primes,
the heaviest, executes 52,421 instructions), so every program stays in the default run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ebpf.bench import PROGRAMS, load_benchmark
from ebpf.vm import ENGINES, XdpInput, create_engine

from .conftest import TABLE3


@pytest.mark.parametrize("name", PROGRAMS)
def test_interpreter_matches_table3(name: str, bench_dir: Path) -> None:
    bench = load_benchmark(name, bench_dir)
    result = create_engine(bench.program.program, "interp").run(XdpInput(bench.packet))
    assert result.retval == TABLE3[name].retval
    assert result.insns == TABLE3[name].executed


_OTHER_ENGINES: list[Any] = sorted(set(ENGINES) - {"interp"}) or [
    pytest.param("-", marks=pytest.mark.skip(reason="only the interpreter is registered in ebpf.vm.ENGINES"))
]


@pytest.mark.parametrize("engine", _OTHER_ENGINES)
def test_other_engines_agree_with_the_interpreter(engine: str, bench_dir: Path) -> None:
    for name in PROGRAMS:
        bench = load_benchmark(name, bench_dir)
        packet = XdpInput(bench.packet)
        ref = create_engine(bench.program.program, "interp").run(packet)
        got = create_engine(bench.program.program, engine).run(packet)
        assert (name, got.retval, got.data) == (name, ref.retval, ref.data)


@pytest.mark.kernel
@pytest.mark.parametrize("name", PROGRAMS)
def test_kernel_agrees(name: str, bench_dir: Path) -> None:
    from ebpf.kernel import Program

    bench = load_benchmark(name, bench_dir)
    ref = create_engine(bench.program.program, "interp").run(XdpInput(bench.packet))
    with Program.load(bench.program.program, bench.program.type, name=bench.program.function[:15]) as prog:
        for repeat in (1, 3):
            got = prog.test_run(bench.packet, repeat=repeat)
            assert got.retval == TABLE3[name].retval
            assert got.data_out == ref.data
