"""Fixtures for the CLI tests: an in-process click runner and the checked-in test objects."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ebpf.cli.main import main

Invoke = Callable[..., Result]


@pytest.fixture
def invoke() -> Invoke:
    """``invoke("asm", "x.s", input=...)``: run the CLI in-process, stdout and stderr kept apart.

    Exceptions are not caught: a traceback in a CLI test is a bug, never an expected outcome.
    """
    runner = CliRunner()

    def _invoke(*args: str, input: str | bytes | None = None) -> Result:
        return runner.invoke(main, list(args), input=input, catch_exceptions=False)

    return _invoke


@pytest.fixture
def data_dir() -> Path:
    """``tests/cli/data``: ELF test objects (see its build.sh) and their llvm-objdump listings."""
    return Path(__file__).parent / "data"


@pytest.fixture
def conformance_dir() -> Path:
    """The public bpf_conformance suite, read in place (skip when absent)."""
    from ebpf.conformance import conformance_dir as find

    path = find()
    if path is None:
        pytest.skip("bpf_conformance data not found: set EBPF_CONFORMANCE_DIR to the folder holding tests/")
    return path
