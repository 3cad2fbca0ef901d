"""The user-space runtime: memory model, helpers, program inputs and execution engines.

Core layer: pure, no kernel access (the memory model uses ctypes only for host buffers).

Engines share one memory model and one helper registry; :data:`ENGINES` names them
(``"interp"``: the reference interpreter; ``"py"``: the fast
pure-Python tier, :mod:`ebpf.vm.pytier`). :func:`run` is the one-call entry point.
"""

from __future__ import annotations

from collections.abc import Callable

from ebpf.isa.program import Program
from ebpf.vm.context import Input, RawInput, XdpInput
from ebpf.vm.helpers import Helper, HelperRegistry, ProgramExit, ubpf_test_helpers
from ebpf.vm.interpreter import (
    DEFAULT_MAX_INSNS,
    MAX_CALL_FRAMES,
    STACK_SIZE,
    Interpreter,
    RunResult,
    TailCall,
)
from ebpf.vm.memory import GUARD, HostBuffer, Memory, Region
from ebpf.vm.pytier import PyTier

__all__ = [
    "DEFAULT_MAX_INSNS",
    "ENGINES",
    "GUARD",
    "MAX_CALL_FRAMES",
    "STACK_SIZE",
    "Helper",
    "HelperRegistry",
    "HostBuffer",
    "Input",
    "Interpreter",
    "Memory",
    "ProgramExit",
    "PyTier",
    "RawInput",
    "Region",
    "RunResult",
    "TailCall",
    "XdpInput",
    "create_engine",
    "run",
    "ubpf_test_helpers",
]

EngineFactory = Callable[..., Interpreter]

# Engine name -> factory(program, helpers=, max_insns=). Later tiers register here.
ENGINES: dict[str, EngineFactory] = {"interp": Interpreter, "py": PyTier}


def create_engine(
    program: Program,
    engine: str = "interp",
    *,
    helpers: HelperRegistry | None = None,
    max_insns: int = DEFAULT_MAX_INSNS,
) -> Interpreter:
    """Prepare ``program`` for repeated runs on the named engine.

    Raises:
        ValueError: unknown engine name.
        DecodeError: invalid program.
    """
    try:
        factory = ENGINES[engine]
    except KeyError:
        raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(sorted(ENGINES))}") from None
    return factory(program, helpers=helpers, max_insns=max_insns)


def run(
    program: Program,
    input: Input | bytes | bytearray = b"",
    *,
    engine: str = "interp",
    helpers: HelperRegistry | None = None,
    max_insns: int = DEFAULT_MAX_INSNS,
) -> RunResult:
    """Run ``program`` once on ``input`` and return r0, the instruction count and the memory after.

    Args:
        program: the program.
        input: raw bytes (r1 = pointer, r2 = length) or an :class:`Input` such as :class:`XdpInput`.
        engine: engine name (see :data:`ENGINES`).
        helpers: helper registry (default: none registered).
        max_insns: instruction budget.

    Raises:
        VMError: a run-time fault; BudgetExceededError when the budget runs out.
    """
    return create_engine(program, engine, helpers=helpers, max_insns=max_insns).run(input)
