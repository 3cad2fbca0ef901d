"""The examples in the btf docstrings run (STYLE §9: doctest small pure APIs)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["ebpf.btf", "ebpf.btf.types", "ebpf.btf.spec", "ebpf.btf.parse", "ebpf.btf.marshal"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0
