"""BenchReport statistics and rendering on hand-made figures. Pure."""

from __future__ import annotations

import json
import math

import pytest

from ebpf.bench import (
    COMPUTE_KERNELS,
    KERNEL_ENGINE,
    BenchReport,
    EngineResult,
    ProgramResult,
    Trial,
    geometric_mean,
    render_markdown,
    render_text,
)
from ebpf.bench.render import number


def _engine(name: str, times: list[float]) -> EngineResult:
    return EngineResult(name, [Trial(t, 1, i % 2) for i, t in enumerate(times)])


def _program(name: str, insns: int, interp: list[float], kernel: list[float]) -> ProgramResult:
    p = ProgramResult(name, instructions=10, slots=10, insns=insns, retval=1)
    p.engines = {"interp": _engine("interp", interp), KERNEL_ENGINE: _engine(KERNEL_ENGINE, kernel)}
    return p


def _report(programs: list[ProgramResult]) -> BenchReport:
    return BenchReport(
        programs=programs,
        engines=["interp", KERNEL_ENGINE],
        options={"trials": 3, "min_time": 0.1, "kernel_time": 0.025, "cpu": None},
        environment={"cpu": "Test CPU", "cpus": 2, "system": "Linux", "kernel": "6.18", "python": "CPython"},
        started="2026-01-01T00:00:00+00:00",
        duration_s=12.0,
        command="python -m ebpf.bench --markdown",
    )


def test_geometric_mean() -> None:
    assert geometric_mean([2.0, 8.0]) == pytest.approx(4.0)
    assert geometric_mean([]) is None
    assert geometric_mean([1.0, 0.0]) is None


def test_ratios_are_min_based_and_paired() -> None:
    # Trial 1 of the kernel was slow; the paired ratios see the interpreter slow too.
    p = _program("fib", 1000, interp=[400.0, 900.0, 500.0], kernel=[4.0, 10.0, 4.0])
    assert p.ratio_min("interp") == pytest.approx(100.0)
    assert p.trial_ratios("interp") == pytest.approx([100.0, 90.0, 125.0])
    assert p.ratio_median("interp") == pytest.approx(100.0)
    assert p.ns_per_insn("interp") == pytest.approx(0.4)
    assert p.mips("interp") == pytest.approx(2500.0)
    assert p.ratio_min("py") is None and p.trial_ratios("py") == [] and p.ratio_median("py") is None


def test_geomeans_cover_compute_kernels_only() -> None:
    programs = [_program("nop", 2, [1000.0] * 3, [1.0] * 3)]  # a ratio of 1000, left out
    programs += [_program(name, 100, [200.0] * 3, [2.0] * 3) for name in COMPUTE_KERNELS[:2]]
    programs += [_program(name, 100, [400.0] * 3, [1.0] * 3) for name in COMPUTE_KERNELS[2:4]]
    report = _report(programs)
    assert [p.name for p in report.compute_kernels()] == list(COMPUTE_KERNELS[:4])
    assert report.geomean_ratio("interp", "min") == pytest.approx(200.0)
    assert report.geomean_ratio("interp", "median") == pytest.approx(200.0)
    assert report.geomean_ns_per_insn("interp") == pytest.approx(math.sqrt(2.0 * 4.0))
    with pytest.raises(ValueError):
        report.geomean_ratio("interp", "mean")


def test_json_has_raw_trials_and_summary() -> None:
    report = _report([_program("fib", 1000, [400.0, 900.0, 500.0], [4.0, 10.0, 4.0])])
    data = json.loads(json.dumps(report.to_json()))
    assert data["command"] == "python -m ebpf.bench --markdown"
    fib = data["programs"][0]
    assert fib["executed_insns"] == 1000 and fib["compute_kernel"] is True
    interp = fib["engines"]["interp"]
    assert [t["ns_per_run"] for t in interp["trials"]] == [400.0, 900.0, 500.0]
    assert interp["ratio_to_kernel_min"] == pytest.approx(100.0)
    assert fib["engines"][KERNEL_ENGINE]["ratio_to_kernel_min"] is None
    assert data["summary"]["interp"]["geomean_ratio_to_kernel_min"] == pytest.approx(100.0)
    assert data["summary"][KERNEL_ENGINE]["geomean_ratio_to_kernel_min"] is None


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "-"),
        (0.0464, "0.0464"),
        (0.000163, "0.000163"),
        (0.0, "0"),
        (4.583, "4.58"),
        (45.14, "45.1"),
        (1322.4, "1,322"),
        (3_841_690.0, "3,841,690"),
    ],
)
def test_number(value: float | None, text: str) -> None:
    assert number(value) == text


def test_markdown_is_ready_to_paste() -> None:
    report = _report([_program("fib", 24588, [400.0, 900.0, 500.0], [4.0, 10.0, 4.0])])
    md = render_markdown(report)
    assert md.startswith("Command: `python -m ebpf.bench --markdown`\n")
    assert "Machine: Test CPU, 2 CPUs; Linux 6.18; CPython" in md
    assert (
        "| program | exec. insns/run | interp ÷ kernel (min-based) | interp ÷ kernel (median of trial ratios) |"
        in md
    )
    assert "| fib | 24,588 | 100 | 100 |" in md
    assert "| fib | 24,588 | 400 [500] | 0.0163 | 61,470 | 4.00 [4.00] | 0.000163 | 6,147,000 |" in md
    assert "over the 1 compute kernel measured (fib)" in md
    rows = [line for line in md.splitlines() if line.startswith("| ---")]
    assert rows and all(set(line) <= set("|-: ") for line in rows)


def test_text_is_aligned() -> None:
    report = _report(
        [_program("fib", 24588, [400.0] * 3, [4.0] * 3), _program("nop", 2, [9.0] * 3, [3.0] * 3)]
    )
    text = render_text(report)
    table = text.split("\n\n")[0].splitlines()
    assert table[0].startswith("Ratios to the kernel JIT")
    assert len({len(line) for line in table[1:]}) == 1  # header, rule and rows share column edges
