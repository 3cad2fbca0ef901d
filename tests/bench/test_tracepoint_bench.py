"""The tracepoint cost benchmark runs and counts every call it makes."""

from __future__ import annotations

import pytest

from ebpf.bench import tracepoint

pytestmark = pytest.mark.kernel


def test_measure_small() -> None:
    fig = tracepoint.measure(calls=2000)
    assert fig.runs >= 3 * 2000
    assert 0 < fig.program_ns < 100_000
    assert fig.syscall_ns_with > 0 and fig.syscall_ns_without > 0
