"""``python -m ebpf.bench.btf`` in quick mode: the figures are there, consistent and checked."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ebpf import btf
from ebpf.bench.btf import BTFBenchReport, main, render_text, run_btf_bench

VMLINUX = Path("/sys/kernel/btf/vmlinux")
BPFTOOL = shutil.which("bpftool")

pytestmark = pytest.mark.skipif(not VMLINUX.exists(), reason=f"{VMLINUX} is absent")


@pytest.fixture(scope="module")
def report() -> BTFBenchReport:
    return run_btf_bench(trials=1)


def test_ours_is_measured(report: BTFBenchReport) -> None:
    assert report.types == len(btf.Spec.from_file(VMLINUX)) - 1 > 100_000
    for name in ("ours_decode", "ours_c"):
        m = report.measurements[name]
        assert len(m.trials) == 1 and 0 < m.best < 30
    # decode + dump + write costs more than the decode alone (same trial order, same host)
    assert report.header_lines > 100_000


@pytest.mark.skipif(BPFTOOL is None, reason="bpftool is not installed")
def test_bpftool_figures_and_checks(report: BTFBenchReport) -> None:
    assert report.bpftool_unavailable is None
    assert report.bpftool_types == report.types
    assert report.bpftool_header_lines == report.header_lines
    assert report.header_diff_lines is not None and report.header_diff_lines < 50
    assert report.decode_ratio is not None and report.c_dump_ratio is not None
    assert report.decode_ratio == pytest.approx(
        report.measurements["ours_decode"].best / report.measurements["bpftool_raw"].best
    )
    text = render_text(report)
    assert "decode  (ours_decode / bpftool_raw)" in text and "C dump  (ours_c / bpftool_c)" in text


def test_without_bpftool(tmp_path: Path) -> None:
    """A tiny BTF file and no bpftool: ours only, and the report says why."""
    small = tmp_path / "small.btf"
    small.write_bytes(btf.Spec.build([btf.Int("int", 4, btf.IntEncoding.SIGNED, bits=32)]).to_bytes())
    report = run_btf_bench(path=small, trials=2, use_bpftool=False)
    assert report.types == 1
    assert report.bpftool_unavailable == "disabled (--no-bpftool)"
    assert set(report.measurements) == {"ours_decode", "ours_c"}
    assert report.decode_ratio is None and report.bpftool_types is None
    assert len(report.measurements["ours_c"].trials) == 2
    assert "bpftool not measured" in render_text(report)


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--json", "-q", "--no-bpftool"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["types"] > 100_000
    assert set(doc["measurements"]) >= {"ours_decode", "ours_c"}
    assert doc["targets"] == {"decode_ratio": 2.0, "c_dump_ratio": 4.0}


def test_module_runs(tmp_path: Path) -> None:
    small = tmp_path / "small.btf"
    small.write_bytes(btf.Spec.build([btf.Int("int", 4, btf.IntEncoding.SIGNED, bits=32)]).to_bytes())
    result = subprocess.run(
        [sys.executable, "-m", "ebpf.bench.btf", "--quick", "-q", "--no-bpftool", "--file", str(small)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "BTF benchmark" in result.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "ebpf.bench.btf", "--trials", "0"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2
