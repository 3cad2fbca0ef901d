"""run_benchmarks: interleaving, mismatch detection, the kernel gate. Pure unless marked kernel."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest

from ebpf.bench import (
    KERNEL_ENGINE,
    BenchOptions,
    MismatchError,
    render_markdown,
    render_text,
    run_benchmarks,
)
from ebpf.bench import runner as runner_module
from ebpf.isa.program import Program
from ebpf.vm import ENGINES, Interpreter, RunResult

FAST = {"trials": 3, "min_time": 0.0, "kernel_time": 0.001}


def _options(bench_dir: Path, **kw: Any) -> BenchOptions:
    return BenchOptions(bench_dir=bench_dir, **{**FAST, **kw})


class _Wrong(Interpreter):
    """An engine that runs the interpreter, then corrupts one field of the result."""

    field = "retval"

    def run(self, input: Any = b"", **kw: Any) -> RunResult:
        result = super().run(input, **kw)
        if self.field == "retval":
            return dataclasses.replace(result, retval=result.retval + 1)
        data = bytearray(result.data)
        data[-1] ^= 0xFF
        return dataclasses.replace(result, data=bytes(data))


class _WrongData(_Wrong):
    field = "data"


class _WrongLater(Interpreter):
    """Right on the warm-up run, wrong from the third run on."""

    def __init__(self, program: Program, **kw: Any) -> None:
        super().__init__(program, **kw)
        self.calls = 0

    def run(self, input: Any = b"", **kw: Any) -> RunResult:
        self.calls += 1
        result = super().run(input, **kw)
        return dataclasses.replace(result, retval=7) if self.calls >= 3 else result


def test_user_engines_only(bench_dir: Path) -> None:
    report = run_benchmarks(_options(bench_dir, programs=["nop", "fib"], engines=["interp"]))
    assert report.engines == ["interp"]
    assert report.kernel_unavailable is None and not report.has_kernel
    assert [p.name for p in report.programs] == ["nop", "fib"]
    fib = report.programs[1]
    assert (fib.insns, fib.retval, fib.instructions, fib.slots) == (24_588, 283446722, 19, 19)
    res = fib.engines["interp"]
    assert len(res.trials) == 3 and all(t.runs == 1 and t.ns_per_run > 0 for t in res.trials)
    assert all(
        t.engine_ns_per_run is not None and 0 < t.engine_ns_per_run <= t.ns_per_run for t in res.trials
    )
    assert res.reported_insns == 24_588
    assert res.min_ns <= res.median_ns <= res.max_ns
    assert fib.ratio_min("interp") is None and report.geomean_ratio("interp") is None
    assert fib.mips("interp") == pytest.approx(24_588 * 1e3 / res.min_ns)
    text = render_text(report)
    assert "not selected (--engines)" in text and "÷ kernel" not in text
    json.dumps(report.to_json())


def test_min_time_repeats_runs(bench_dir: Path) -> None:
    report = run_benchmarks(
        _options(bench_dir, programs=["nop"], engines=["interp"], trials=1, min_time=0.02)
    )
    trial = report.programs[0].engines["interp"].trials[0]
    assert trial.runs > 1 and trial.ns_per_run * trial.runs >= 0.02e9


def test_engine_order_rotates(bench_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ENGINES, "interp2", Interpreter)
    monkeypatch.setitem(ENGINES, "interp3", Interpreter)
    engines = ["interp", "interp2", "interp3"]
    report = run_benchmarks(_options(bench_dir, programs=["add_mem"], engines=engines, trials=4))
    results = report.programs[0].engines
    assert list(results) == engines
    positions = [[results[e].trials[t].position for e in engines] for t in range(4)]
    assert positions == [[0, 1, 2], [2, 0, 1], [1, 2, 0], [0, 1, 2]]


def test_rounds_spread_each_programs_trials_over_the_run(
    bench_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    class Recording(Interpreter):
        def run(self, input: Any = b"", **kw: Any) -> RunResult:
            calls.append(len(self.program))
            return super().run(input, **kw)

    monkeypatch.setitem(ENGINES, "recording", Recording)
    run_benchmarks(_options(bench_dir, programs=["nop", "add_mem"], engines=["recording"], trials=2))
    nop, add_mem = 2, 13  # instructions: tells the programs apart
    assert calls == [nop, add_mem, nop, add_mem, nop, add_mem]  # warm-ups, round 0, round 1


@pytest.mark.parametrize(("engine", "what"), [(_Wrong, "return value"), (_WrongData, "output packet")])
def test_a_wrong_result_is_a_hard_error(
    engine: type[Interpreter], what: str, bench_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(ENGINES, "wrong", engine)
    with pytest.raises(MismatchError) as info:
        run_benchmarks(_options(bench_dir, programs=["memcpy"], engines=["interp", "wrong"]))
    err = info.value
    assert (err.program, err.engine, err.trial, err.what) == ("memcpy", "wrong", None, what)
    assert "warm-up run" in str(err)


def test_a_wrong_result_in_a_trial_is_caught(bench_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ENGINES, "later", _WrongLater)
    with pytest.raises(MismatchError, match=r"later return value differs .*\(trial 1\): expected 2, got 7"):
        run_benchmarks(_options(bench_dir, programs=["nop"], engines=["later"]))


def test_kernel_unavailable_is_explained(bench_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reason = "bpf(): EPERM — needs CAP_BPF or root"
    monkeypatch.setattr(runner_module, "_kernel_unavailable_reason", lambda: reason)
    report = run_benchmarks(_options(bench_dir, programs=["fib"]))
    assert report.kernel_unavailable == reason
    assert KERNEL_ENGINE not in report.engines and "interp" in report.engines
    assert reason in render_text(report) and reason in render_markdown(report)
    assert report.to_json()["kernel_unavailable"] == reason
    with pytest.raises(ValueError, match="no engine left"):
        run_benchmarks(_options(bench_dir, programs=["fib"], engines=[KERNEL_ENGINE]))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"trials": 0}, "trials"),
        ({"engines": ["nope"]}, "unknown engine 'nope'"),
        ({"engines": []}, "not empty"),
        ({"programs": []}, "no programs"),
        ({"programs": ["fib", "fib"]}, "twice"),
        ({"min_time": -1.0}, "min_time"),
        ({"cpu": 100_000}, "CPU 100000 is not available to this process"),
    ],
)
def test_bad_options(kw: dict[str, Any], message: str, bench_dir: Path) -> None:
    with pytest.raises(ValueError, match=message):
        run_benchmarks(_options(bench_dir, **kw))


def test_calibrate_reaches_the_target() -> None:
    calls: list[int] = []

    def run(repeat: int) -> int:
        calls.append(repeat)
        return 50  # ns per repetition

    assert runner_module._calibrate(run, 25_000_000) == 500_000
    assert calls == [1, 10, 100, 1000, 10000, 100000]


@pytest.mark.kernel
def test_with_the_kernel(bench_dir: Path) -> None:
    report = run_benchmarks(_options(bench_dir, programs=["nop", "memcpy"], engines=None))
    assert report.engines == [*ENGINES, KERNEL_ENGINE]
    memcpy = report.programs[1]
    kernel = memcpy.engines[KERNEL_ENGINE]
    assert len(kernel.trials) == 3 and all(t.runs >= 1 and t.engine_ns_per_run is None for t in kernel.trials)
    assert memcpy.kernel is not None and memcpy.kernel.jited_bytes > 0
    assert memcpy.kernel.verified_insns > 0 and memcpy.kernel.xlated_bytes == 16 * 8
    ratio = memcpy.ratio_min("interp")
    assert ratio is not None and ratio > 1
    assert len(memcpy.trial_ratios("interp")) == 3
    assert report.geomean_ratio("interp", "min") == pytest.approx(ratio)
    assert "÷ kernel" in render_markdown(report)


def test_pinning_is_undone(bench_dir: Path) -> None:
    before = os.sched_getaffinity(0)
    cpu = min(before)
    report = run_benchmarks(_options(bench_dir, programs=["nop"], engines=["interp"], trials=1, cpu=cpu))
    assert report.options["cpu"] == cpu
    assert os.sched_getaffinity(0) == before
