"""The kernel layer: turns bytecode and specs into live kernel objects.

Calls bpf(2). This package is the only code in ``ebpf`` that calls bpf(2) and the only
code that uses ctypes (besides the user-space memory model and the JIT's entry point).

Rule 1: every bpf() call goes through ``ebpf.kernel._syscall.bpf``; tests swap the
backend with :func:`override_backend`.

Rule 2: every kernel object is owned by exactly one Python object (:class:`FD`,
:class:`Program`, :class:`Map`, :class:`KernelBTF`, :class:`Collection`), which is a context manager; leaks warn with ``ResourceWarning``.
"""

from __future__ import annotations

from ebpf.kernel._syscall import Backend, bpf, override_backend, set_backend
from ebpf.kernel.btf import BTFInfo, KernelBTF, KernelBTFError, list_btf, vmlinux_index, vmlinux_spec
from ebpf.kernel.collection import Collection, KconfigError, LoadOptions
from ebpf.kernel.fd import FD
from ebpf.kernel.features import bpf_unavailable_reason
from ebpf.kernel.map import Map, MapInfo, PinMismatchError, map_ids, possible_cpus
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
    "BTFInfo",
    "Backend",
    "Cmd",
    "Collection",
    "KconfigError",
    "KernelBTF",
    "KernelBTFError",
    "LoadOptions",
    "LogLevel",
    "Map",
    "MapInfo",
    "PinMismatchError",
    "Program",
    "ProgramInfo",
    "StatsType",
    "TestRunFlags",
    "TestRunResult",
    "bpf",
    "bpf_unavailable_reason",
    "enable_stats",
    "kernel_version",
    "list_btf",
    "map_ids",
    "override_backend",
    "possible_cpus",
    "program_ids",
    "set_backend",
    "test_run",
    "vmlinux_index",
    "vmlinux_spec",
]
