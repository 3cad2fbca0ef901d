"""``ebpf prog loadall OBJ PIN_DIR [--pinmaps DIR]``: pins like ``bpftool prog loadall``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result

Invoke = Callable[..., Result]

CORPUS = Path(__file__).resolve().parents[1] / "data" / "elf"

pytestmark = pytest.mark.kernel


@pytest.fixture
def pin_dir() -> Iterator[Path]:
    from ebpf.kernel.map import ensure_bpffs

    root = Path(f"/sys/fs/bpf/ebpf_test_cli_{os.getpid()}")
    ensure_bpffs(root)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_loadall_pins_programs_and_maps_with_bpftools_names(invoke: Invoke, pin_dir: Path) -> None:
    ours = pin_dir / "ours"
    result = invoke("prog", "loadall", str(CORPUS / "tailcall.o"), str(ours), "--pinmaps", str(ours / "maps"))
    assert result.exit_code == 0, result.stderr
    assert "prog tail_entry pinned at" in result.stdout
    if shutil.which("bpftool") is not None:
        ref = pin_dir / "ref"
        ref.mkdir()
        subprocess.run(
            [
                "bpftool",
                "prog",
                "loadall",
                str(CORPUS / "tailcall.o"),
                str(ref),
                "pinmaps",
                str(ref / "maps"),
            ],
            check=True,
            capture_output=True,
        )
        assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in ref.iterdir())
        assert sorted(p.name for p in (ours / "maps").iterdir()) == sorted(
            p.name for p in (ref / "maps").iterdir()
        )
    from ebpf.kernel.map import Map
    from ebpf.kernel.program import Program

    with Program.from_pin(ours / "tail_entry") as prog:  # pinned programs outlive the command
        assert prog.test_run(bytes(64)).retval == 2
    with Map.from_pin(ours / "maps" / "tailcall_bss") as bss:
        assert bss.info().name == "tailcall.bss"


def test_loadall_json_and_a_rejected_object(invoke: Invoke, pin_dir: Path) -> None:
    result = invoke("prog", "loadall", str(CORPUS / "xdp_fw.o"), str(pin_dir / "fw"), "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert {d["name"] for d in doc if d["kind"] == "prog"} == {
        "xdp_firewall",
        "xdp_firewall_frags",
        "xdp_pass",
    }
    bad = invoke("prog", "loadall", str(CORPUS / "sections.o"), str(pin_dir / "bad"))
    assert bad.exit_code == 1
    assert "should have been in [1, 1]" in bad.stderr
    assert not (pin_dir / "bad").exists() or not any((pin_dir / "bad").iterdir())
