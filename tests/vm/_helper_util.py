"""Shared helpers of the helper/context tests: run hand-assembled programs on both engines."""

from __future__ import annotations

from ebpf.isa.asm import assemble
from ebpf.vm import ENGINES, Interpreter, RunResult
from ebpf.vm._helpers_callback import engine_callback
from ebpf.vm.context import Input
from ebpf.vm.helpers import HelperRegistry, RunEnv, runtime_helpers
from ebpf.vm.memory import HostBuffer

ENGINE_NAMES = ("interp", "py")
HELPERS = runtime_helpers()


def make_engine(text: str, env: RunEnv, engine: str, helpers: HelperRegistry | None = None) -> Interpreter:
    """An engine for the LLVM-syntax program ``text`` sharing ``env``'s memory and helpers.

    ``lddw rX, FUNC`` gives ``code_base + 8 * slot`` (a read-only "code" region) and
    ``env.callback`` runs such functions.
    """
    program = assemble(text)
    code = env.memory.map_buffer("code", HostBuffer(8 * len(program.encode()) // 8 + 8), writable=False)
    eng = ENGINES[engine](program, helpers=helpers or HELPERS, memory=env.memory, code_base=code.start)
    env.callback = engine_callback(eng, env)
    return eng


def run(text: str, env: RunEnv, engine: str, input: Input | bytes = b"") -> RunResult:
    """Run ``text`` once on ``input`` with ``env``."""
    eng = make_engine(text, env, engine)
    env.begin_run()
    return eng.run(input, env=env)
