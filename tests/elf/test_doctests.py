"""The examples in ebpf.elf docstrings run."""

from __future__ import annotations

import doctest

import ebpf.elf.sections


def test_sections_doctests() -> None:
    result = doctest.testmod(ebpf.elf.sections)
    assert result.attempted >= 3 and result.failed == 0
