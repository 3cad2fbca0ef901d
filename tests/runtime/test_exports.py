"""ebpf.runtime re-exports the run-environment types a caller sets or reads, lazily."""

from __future__ import annotations

import pytest

from ebpf import runtime
from ebpf.vm import _helpers_misc, _helpers_skb


def test_run_environment_types_are_exported() -> None:
    assert runtime.Fib is _helpers_skb.Fib
    assert runtime.FibRoute is _helpers_skb.FibRoute
    assert runtime.FibDevice is _helpers_skb.FibDevice
    assert runtime.RouteType is _helpers_skb.RouteType
    assert runtime.signal_log is _helpers_misc.signal_log
    assert set(runtime.__all__) >= {"Fib", "FibRoute", "FibDevice", "RouteType", "SignalLog", "signal_log"}


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = runtime.nope
