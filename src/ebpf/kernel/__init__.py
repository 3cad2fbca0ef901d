"""The kernel layer: turns bytecode and specs into live kernel objects.

Calls bpf(2). This package is the only code in ``ebpf`` that calls bpf(2) and the only
code that uses ctypes (besides the user-space memory model and the JIT's entry point).

Rule 1: every bpf() call goes through ``ebpf.kernel._syscall.bpf``; tests swap the
backend with :func:`override_backend`.

Rule 2: every kernel object is owned by exactly one Python object (:class:`FD`,
:class:`Program`), which is a context manager; leaks warn with ``ResourceWarning``.
"""

from __future__ import annotations

from ebpf.kernel._syscall import Backend, bpf, override_backend, set_backend
from ebpf.kernel.fd import FD
from ebpf.kernel.features import bpf_unavailable_reason
from ebpf.kernel.program import (
    Program,
    ProgramInfo,
    TestRunResult,
    enable_stats,
    program_ids,
    test_run,
)
from ebpf.kernel.uapi import Cmd, LogLevel, StatsType, TestRunFlags
from ebpf.kernel.version import kernel_version

__all__ = [
    "FD",
    "Backend",
    "Cmd",
    "LogLevel",
    "Program",
    "ProgramInfo",
    "StatsType",
    "TestRunFlags",
    "TestRunResult",
    "bpf",
    "bpf_unavailable_reason",
    "enable_stats",
    "kernel_version",
    "override_backend",
    "program_ids",
    "set_backend",
    "test_run",
]
