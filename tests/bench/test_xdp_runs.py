"""``python -m ebpf.bench.xdp --runs``: per-call test_run figures, cross-checked with the kernel."""

from __future__ import annotations

import pytest

from ebpf.bench import xdp
from ebpf.kernel.features import bpf_unavailable_reason


def test_measure_runs_small() -> None:
    figures = xdp.measure_runs(20)  # raises when an engine's retval or data_out is not the kernel's
    assert set(figures) == {"nop_xdp", "xdp_firewall", "tc_skb"}
    expected = {"py", "interp"} | ({"kernel"} if bpf_unavailable_reason() is None else set())
    for row in figures.values():
        assert set(row) == expected
        assert all(us > 0 for us in row.values())


def test_main_prints_the_runs_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert xdp.main(["--packets", "40", "--runs", "10"]) == 0
    out = capsys.readouterr().out
    assert "per test_run call" in out and "tc_skb" in out and "nop_xdp" in out
