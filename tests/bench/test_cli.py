"""``python -m ebpf.bench``: a smoke run in a subprocess, and argument errors in-process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ebpf.bench.cli import main


def test_smoke_run_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["--trials", "1", "--programs", "nop,fib", "--min-time", "0.01", "--json", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "ebpf.bench", *args], check=False, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["command"] == "python -m ebpf.bench " + " ".join(args)
    assert [p["name"] for p in data["programs"]] == ["nop", "fib"]
    fib = data["programs"][1]
    assert fib["retval"] == 283446722 and fib["executed_insns"] == 24588
    for engine in data["engines"]:
        assert len(fib["engines"][engine]["trials"]) == 1
    if data["kernel_unavailable"] is None:
        assert "kernel" in data["engines"]
        assert "÷ kernel" in proc.stdout
    else:
        assert data["kernel_unavailable"] in proc.stdout
    assert "fib" in proc.stdout and "fib: min ns/run" in proc.stderr


def test_markdown_prints_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "--markdown",
        "-q",
        "--trials",
        "1",
        "--programs",
        "add_mem",
        "--engines",
        "interp",
        "--min-time",
        "0",
    ]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Command: `python -m ebpf.bench " + " ".join(args) + "`\n")
    assert "| add_mem | 13 |" in out
    assert err == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--programs", "nope"], "unknown program 'nope'"),
        (["--engines", "nope"], "unknown engine 'nope'"),
        (["--trials", "0"], "trials must be at least 1"),
    ],
)
def test_usage_errors(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "program primes (compute kernel)" in out and "program nop (overhead)" in out
    assert "engine interp" in out and "engine kernel" in out


def test_missing_corpus_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dir", str(tmp_path), "--programs", "nop", "-q"]) == 1
    assert "obj/nop.o not found" in capsys.readouterr().err
