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

from typing import TYPE_CHECKING, Any

from ebpf.runtime._collection import Collection, ContextInput, Program, Variable, Variables, freeze
from ebpf.runtime._kconfig import KconfigValue, encode_kconfig, kernel_version_code
from ebpf.testrun import TestRunResult
from ebpf.vm.helpers import MAX_TAIL_CALL_CNT, RunEnv

if TYPE_CHECKING:
    from ebpf.vm._helpers_misc import SignalLog, signal_log
    from ebpf.vm._helpers_skb import Fib, FibDevice, FibRoute, RouteType

# Parts of the run environment a caller may set or read (``coll.env``), imported on first use:
# a FIB for ``bpf_fib_lookup`` (``env.fib = Fib(...)``), the signals programs sent.
_LAZY = {
    "Fib": "ebpf.vm._helpers_skb",
    "FibDevice": "ebpf.vm._helpers_skb",
    "FibRoute": "ebpf.vm._helpers_skb",
    "RouteType": "ebpf.vm._helpers_skb",
    "SignalLog": "ebpf.vm._helpers_misc",
    "signal_log": "ebpf.vm._helpers_misc",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ebpf.runtime' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "MAX_TAIL_CALL_CNT",
    "Collection",
    "ContextInput",
    "Fib",
    "FibDevice",
    "FibRoute",
    "KconfigValue",
    "Program",
    "RouteType",
    "RunEnv",
    "SignalLog",
    "TestRunResult",
    "Variable",
    "Variables",
    "encode_kconfig",
    "freeze",
    "kernel_version_code",
    "signal_log",
]
