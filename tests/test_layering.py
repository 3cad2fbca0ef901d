"""The kernel line (STYLE §1): every core module imports and works with no kernel layer at all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ebpf

SRC = Path(ebpf.__file__).resolve().parent
ABOVE_THE_LINE = ("kernel", "cli", "attach", "events", "tools", "bench")


def core_modules() -> list[str]:
    names = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[0] in ABOVE_THE_LINE or rel.name == "__main__.py":
            continue
        parts = ["ebpf", *rel.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def test_core_imports_without_the_kernel_layer() -> None:
    modules = core_modules()
    assert "ebpf.vm.interpreter" in modules and "ebpf.isa.encoding" in modules
    code = (
        "import sys\n"
        "sys.modules['ebpf.kernel'] = None\n"
        "import importlib\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "from ebpf.isa import assemble\n"
        "from ebpf.vm import run\n"
        "assert run(assemble('r0 = 7\\nexit')).retval == 7\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
