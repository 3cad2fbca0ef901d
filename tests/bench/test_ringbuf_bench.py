"""The ring buffer benchmark runs end to end (small sizes) and cross-checks every reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from ebpf.bench import ringbuf

pytestmark = pytest.mark.kernel


def test_measure_small(tmp_path: Path) -> None:
    fig = ringbuf.measure(records=3000, trials=1, cache=tmp_path)
    assert fig.records == 3000
    assert fig.callback_ns > 0 and fig.numpy_ns > 0 and fig.zero_copy_ns > 0
    if fig.c_skipped is None:
        assert fig.c_ns is not None and fig.c_ns > 0


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert ringbuf.main(["--records", "2000", "--trials", "1", "--json"]) == 0
    assert '"records": 2000' in capsys.readouterr().out
