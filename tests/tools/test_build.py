"""The bundled tool objects are what src/ebpf/tools/bpf/build.sh makes (reproducible builds)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_BUILD = Path(__file__).resolve().parents[2] / "src" / "ebpf" / "tools" / "bpf" / "build.sh"
_VMLINUX = Path("/sys/kernel/btf/vmlinux")


@pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("clang-19", "llvm-strip-19", "bash")) or not _VMLINUX.exists(),
    reason="needs clang-19, llvm-strip-19 and /sys/kernel/btf/vmlinux to rebuild the tool objects",
)
def test_build_check_reproduces_bundled_objects() -> None:
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(
        ["bash", str(_BUILD), "--check"], capture_output=True, text=True, timeout=300, check=False, env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
