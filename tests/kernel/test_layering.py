"""The kernel line (STYLE §1): ctypes stays in ``ebpf.kernel`` (plus the memory model and JIT entry).

Pure: reads source files only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ebpf.kernel
import ebpf.kernel.program

SRC = Path(ebpf.kernel.__file__).resolve().parent.parent
ALLOWED = (
    "kernel/",
    "vm/memory.py",
    "jit/native.py",
    "attach/_abi.py",
)  # attach/_abi: link attrs, perf_event_open, mount


def _imports_ctypes(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "ctypes" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ctypes":
            return True
    return False


def test_only_the_kernel_layer_imports_ctypes() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if not rel.startswith(ALLOWED) and _imports_ctypes(path):
            offenders.append(rel)
    assert offenders == []


def test_spec_is_pure() -> None:
    assert not _imports_ctypes(SRC / "spec.py")
    text = (SRC / "spec.py").read_text(encoding="utf-8")
    assert "Pure: no kernel access." in text
    assert "ebpf.kernel" not in text


def test_kernel_package_reexports_its_public_api() -> None:
    assert sorted(ebpf.kernel.__all__) == sorted(set(ebpf.kernel.__all__))
    for name in ebpf.kernel.__all__:
        assert getattr(ebpf.kernel, name) is not None, name
    assert ebpf.kernel.test_run is ebpf.kernel.program.test_run  # the UAPI-spelled alias
