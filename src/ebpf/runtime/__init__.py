"""The user-space engine: a :class:`~ebpf.spec.CollectionSpec` as live maps and programs.

Core layer. Pure: no kernel access. The kernel engine (:mod:`ebpf.kernel`) gives the same
shape (``Collection`` with ``programs``, ``maps``, ``close()``; ``Program.test_run`` returning
:class:`~ebpf.testrun.TestRunResult`).

>>> from ebpf.isa import assemble
>>> from ebpf.spec import CollectionSpec, ProgramSpec, ProgramType
>>> prog = ProgramSpec("one", "syscall", ProgramType.SYSCALL, assemble("r0 = 1\\nexit"))
>>> with Collection(CollectionSpec(programs={"one": prog})) as coll:
...     coll.programs["one"].test_run().retval
1
"""

from __future__ import annotations

from ebpf.runtime._collection import Collection, ContextInput, Program, Variable, Variables, freeze
from ebpf.runtime._kconfig import KconfigValue, encode_kconfig, kernel_version_code
from ebpf.testrun import TestRunResult
from ebpf.vm.helpers import MAX_TAIL_CALL_CNT, RunEnv

__all__ = [
    "MAX_TAIL_CALL_CNT",
    "Collection",
    "ContextInput",
    "KconfigValue",
    "Program",
    "RunEnv",
    "TestRunResult",
    "Variable",
    "Variables",
    "encode_kconfig",
    "freeze",
    "kernel_version_code",
]
