"""The examples in the runtime docstrings run (STYLE §9: doctest small pure APIs)."""

from __future__ import annotations

import doctest

import ebpf.runtime


def test_doctests() -> None:
    failures, tried = doctest.testmod(ebpf.runtime)
    assert tried > 0
    assert failures == 0
