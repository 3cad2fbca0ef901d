"""Every bpf_conformance case through every user-space engine; every negative case refused."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ebpf.conformance import conformance_dir, iter_cases, program
from ebpf.conformance.runner import judge
from ebpf.isa import encode
from ebpf.vm import ENGINES

ROOT = conformance_dir()
pytestmark = pytest.mark.skipif(
    ROOT is None,
    reason="bpf_conformance data not found: set EBPF_CONFORMANCE_DIR to its folder (holding tests/)",
)

POSITIVE = sorted((ROOT / "tests").glob("*.data")) if ROOT else []
NEGATIVE = sorted((ROOT / "negative").glob("*.data")) if ROOT else []


def test_suite_is_complete() -> None:
    assert len(POSITIVE) == 313 and len(NEGATIVE) == 60


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_every_case_passes(engine: str) -> None:
    failures = [v for v in (judge(c, engine) for c in iter_cases(ROOT / "tests")) if not v.passed]  # type: ignore[operator]
    assert not failures, "\n".join(f"{v.name}: {v.detail}" for v in failures)


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_every_negative_case_is_refused(engine: str) -> None:
    accepted = [v for v in (judge(c, engine) for c in iter_cases(ROOT / "negative")) if v.passed]  # type: ignore[operator]
    assert not accepted, "\n".join(f"{v.name}: {v.detail}" for v in accepted)


PLUGIN_SAMPLE = [
    "add.data",
    "lddw.data",
    "callx.data",
    "call_unwind_fail.data",
    "mem-len.data",
    "incorrect_return_value_high_bits.data",
    "unused-call-dst.data",
]


@pytest.mark.parametrize("name", PLUGIN_SAMPLE)
def test_plugin_protocol_in_a_subprocess(name: str) -> None:
    """The console script speaks the runner's protocol: hex on stdin, memory in argv[1], r0 in hex."""
    from ebpf.conformance import parse_data_file

    path = (ROOT / "tests" / name) if (ROOT / "tests" / name).exists() else ROOT / "negative" / name  # type: ignore[operator]
    case = parse_data_file(path)
    code = case.raw if case.raw else encode(program(case).instructions)
    argv = [sys.executable, "-m", "ebpf.conformance.plugin"]
    argv.append(" ".join(f"{b:02x}" for b in case.mem))
    argv.append("--engine interp")
    proc = subprocess.run(
        argv,
        input=" ".join(f"{b:02x}" for b in code),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if path.parent.name == "tests":
        assert proc.returncode == 0, proc.stderr
        assert int(proc.stdout, 16) == case.result
    else:
        assert proc.returncode != 0 or int(proc.stdout, 16) != case.result
