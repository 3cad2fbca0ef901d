"""Judge bpf_conformance cases the way the public runner does, in-process.

Core layer: pure, no kernel access.

The public runner passes a test when the plugin exits 0 and prints the expected r0, or exits
non-zero with exactly the expected ``-- error`` text. A case is *refused* when it does not pass:
bad assembly, invalid bytecode, a run-time fault, or a wrong result. Unlike some versions of the
public runner, r0 is compared with all 64 bits.
"""

from __future__ import annotations

from dataclasses import dataclass

from ebpf.conformance.datafile import ConformanceCase, program
from ebpf.errors import BPFError
from ebpf.vm import DEFAULT_MAX_INSNS, create_engine, ubpf_test_helpers

__all__ = ["Verdict", "judge"]


@dataclass(frozen=True)
class Verdict:
    """The outcome of one case: ``passed``, r0 (if it ran) and why it failed."""

    name: str
    passed: bool
    retval: int | None
    detail: str


def judge(case: ConformanceCase, engine: str = "interp", *, max_insns: int = DEFAULT_MAX_INSNS) -> Verdict:
    """Assemble (or decode), run and compare one case on ``engine``."""
    try:
        prog = program(case)
        retval = (
            create_engine(prog, engine, helpers=ubpf_test_helpers(), max_insns=max_insns).run(case.mem).retval
        )
    except BPFError as err:
        message = str(err)
        if case.error and case.error == message:
            return Verdict(case.name, True, None, "expected error")
        return Verdict(case.name, False, None, f"{type(err).__name__}: {message}")
    if case.result is None:
        return Verdict(
            case.name, False, retval, f"ran and returned {retval:#x}, but the case expects no result"
        )
    if retval != case.result:
        return Verdict(case.name, False, retval, f"returned {retval:#x}, expected {case.result:#x}")
    return Verdict(case.name, True, retval, "ok")
