"""The bpf_conformance suite through the kernel (BPF_PROG_TEST_RUN), as a check of the suite and of us.

Every case the kernel accepts must return the expected r0 (low 32 bits: all the kernel returns);
every case it refuses must be in the checked-in allowlist with the log text that explains it,
and every allowlisted case must still be refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ebpf.conformance import conformance_dir, iter_cases
from ebpf.errors import VerifierError
from ebpf.spec import ProgramType

from .conformance_kernel import wrap_as_xdp

ROOT = conformance_dir()
pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(ROOT is None, reason="bpf_conformance data not found: set EBPF_CONFORMANCE_DIR"),
]

ALLOWLIST = {
    name.strip(): (text.strip(), reason.strip())
    for line in (Path(__file__).parent / "kernel_conformance_allowlist.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
    for name, text, reason in [line.split("|", 2)]
}


def test_conformance_suite_in_kernel() -> None:
    from ebpf import kernel

    accepted = 0
    problems: list[str] = []
    refused: set[str] = set()
    for case in iter_cases(ROOT / "tests"):  # type: ignore[operator]
        prog, packet = wrap_as_xdp(case)
        try:
            with kernel.Program.load(prog, ProgramType.XDP) as loaded:
                retval = loaded.test_run(packet).retval
        except VerifierError as err:
            refused.add(case.name)
            expected = ALLOWLIST.get(case.name)
            if expected is None:
                problems.append(f"{case.name}: refused by the kernel but not allowlisted: {err}")
            elif expected[0] not in "\n".join(err.log):
                problems.append(f"{case.name}: refused for another reason than {expected[0]!r}: {err}")
            continue
        accepted += 1
        assert case.result is not None
        if retval != case.result & 0xFFFFFFFF:
            problems.append(
                f"{case.name}: kernel returned {retval:#x}, expected {case.result & 0xFFFFFFFF:#x}"
            )
    stale = set(ALLOWLIST) - refused
    problems += [f"{name}: allowlisted but the kernel now accepts it" for name in sorted(stale)]
    assert not problems, "\n".join(problems)
    assert accepted == 300
