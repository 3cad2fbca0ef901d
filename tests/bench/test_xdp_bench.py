"""The xdp run benchmark runs end to end on a small capture and cross-checks verdicts with the kernel."""

from __future__ import annotations

import pytest

from ebpf.bench import xdp


def test_measure_small() -> None:
    fig = xdp.measure(packets=200)
    assert fig.packets == 200
    assert fig.cli_pps > 0 and set(fig.engines_pps) == {"py", "interp"}
    if fig.kernel_skipped is None:
        assert fig.kernel_pps is not None and fig.kernel_pps > 0


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert xdp.main(["--packets", "120", "--json"]) == 0
    assert '"packets": 120' in capsys.readouterr().out
