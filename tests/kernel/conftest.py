"""Fixtures for the kernel-layer tests.

Every test in this directory also fails on an unraisable exception, so the
``ResourceWarning`` that ``FD.__del__`` emits for a leaked descriptor fails the test
instead of becoming a warning-summary line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ebpf.kernel._syscall import override_backend

from ._fakes import FakeKernel

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"))


@pytest.fixture
def fake_kernel() -> Iterator[FakeKernel]:
    """A scripted bpf() backend, installed for the test and removed afterwards."""
    fake = FakeKernel()
    with override_backend(fake):
        yield fake
