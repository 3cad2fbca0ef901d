"""The result of ``BPF_PROG_TEST_RUN``, shared by the user-space runtime and the kernel engine.

Core layer. Pure: no kernel access.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TestRunResult"]


@dataclass(frozen=True, slots=True)
class TestRunResult:
    """What ``BPF_PROG_TEST_RUN`` reports (``union bpf_attr.test``).

    Attributes:
        retval: the program's return value (``test.retval``: the low 32 bits of r0, unsigned).
        data_out: the packet (``data_in``) after the last run, as the kernel copies it out.
        ctx_out: the context after the last run, or ``None`` when the program type has none
            to copy out or none was given.
        duration_ns: average wall time of one run in nanoseconds (``test.duration``).
    """

    __test__ = False  # not a pytest test class, despite the name

    retval: int
    data_out: bytes = b""
    ctx_out: bytes | None = None
    duration_ns: int = 0
