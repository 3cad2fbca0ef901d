"""The committed corpus is what tests/data/elf/build.sh produces (reproducible builds)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from tests.elf.conftest import DATA

_TOOLS = ("clang-19", "bpftool", "gcc")
_VMLINUX = Path("/sys/kernel/btf/vmlinux")


@pytest.mark.skipif(
    any(shutil.which(t) is None for t in _TOOLS) or not _VMLINUX.exists(),
    reason="needs clang-19, bpftool, gcc and /sys/kernel/btf/vmlinux to rebuild the corpus",
)
def test_build_check_reproduces_committed_objects() -> None:
    proc = subprocess.run(
        ["sh", str(DATA / "build.sh"), "--check"], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all objects up to date" in proc.stdout
