"""CO-RE against the kernel's own answer: libbpf (inside ``bpftool prog loadall``) relocates
tests/data/core/tracer.o against the running kernel, the kernel keeps the relocated values in
its xlated instructions, and ours must be the same instructions.

Only helper calls differ (the kernel replaces the helper number by the helper's address
offset); tracer.c has no branches on relocated values, so the verifier removes nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ebpf import btf, isa
from ebpf.btf.core import relocate_program

from .test_core import VMLINUX, load

pytestmark = pytest.mark.kernel

BPFTOOL = shutil.which("bpftool")
BPFFS = Path("/sys/fs/bpf")


def kernel_xlated(obj: Path, tmp_path: Path) -> dict[str, isa.Program]:
    """``bpftool prog loadall`` the object, then each program's xlated instructions."""
    pins = BPFFS / f"ebpf_test_core_{os.getpid()}"
    subprocess.run([BPFTOOL, "prog", "loadall", str(obj), str(pins)], check=True, capture_output=True)
    try:
        out = {}
        for pin in sorted(pins.iterdir()):
            raw = tmp_path / f"{pin.name}.xlated"
            subprocess.run(
                [BPFTOOL, "prog", "dump", "xlated", "pinned", str(pin), "file", str(raw)],
                check=True,
                capture_output=True,
            )
            out[pin.name] = isa.Program(isa.decode(raw.read_bytes(), strict=False))
        return out
    finally:
        for pin in pins.iterdir():
            pin.unlink()
        pins.rmdir()


def same_except_helper_ids(ours: isa.Program, kernel: isa.Program) -> list[str]:
    diffs = []
    for i, (a, b) in enumerate(zip(ours, kernel, strict=True)):
        if a.opcode == b.opcode == 0x85 and a.src == b.src == 0:
            continue  # helper call: the kernel stores the helper's address offset
        if a != b:
            diffs.append(f"insn {i}: ours {a} kernel {b}")
    return diffs


@pytest.mark.skipif(BPFTOOL is None, reason="bpftool is not installed")
@pytest.mark.skipif(not VMLINUX.exists(), reason="no /sys/kernel/btf/vmlinux")
def test_tracer_equals_libbpf_in_the_kernel(tmp_path: Path) -> None:
    obj = load("tracer.o")
    vmlinux = btf.Spec.from_file(VMLINUX)
    kernel = kernel_xlated(Path(__file__).parent.parent / "data" / "core" / "tracer.o", tmp_path)
    assert set(kernel) == {p.name for p in obj.programs.values()}
    for prog in obj.programs.values():
        ours = relocate_program(prog, vmlinux)
        # vmlinux.h came from this kernel, so only flavors, missing types and bitfield
        # sizes (libbpf's choice differs from clang's) change
        assert (ours != prog.instructions) == (prog.name == "task_fields")
        theirs = kernel[prog.name]
        assert len(ours) == len(theirs), prog.name
        assert same_except_helper_ids(ours, theirs) == [], prog.name


@pytest.mark.skipif(BPFTOOL is None, reason="bpftool is not installed")
@pytest.mark.skipif(not VMLINUX.exists(), reason="no /sys/kernel/btf/vmlinux")
def test_our_whole_pipeline_loads_what_libbpf_loads(tmp_path: Path) -> None:
    """ebpf.elf + relocate (in kernel.Collection) + BPF_PROG_LOAD give the kernel the very
    program libbpf gives it: same xlated bytes, same tag."""
    from ebpf import kernel
    from ebpf.elf import load_collection_spec

    path = Path(__file__).parent.parent / "data" / "core" / "tracer.o"
    theirs = kernel_xlated(path, tmp_path)
    with kernel.Collection(load_collection_spec(path)) as coll:
        for name, prog in coll.programs.items():
            assert isa.Program(isa.decode(prog.xlated(), strict=False)) == theirs[name], name
