"""Shared helpers of the helper/context tests: run hand-assembled programs on both engines."""

from __future__ import annotations

from ebpf.isa.asm import assemble
from ebpf.spec import ProgramType
from ebpf.testrun import TestRunResult
from ebpf.vm import ENGINES, Interpreter, RunResult
from ebpf.vm._helpers_callback import engine_callback
from ebpf.vm.context import Input, SkbInput, XdpInput
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


M32 = 0xFFFFFFFF


def user_test_run(
    text: str,
    prog_type: ProgramType,
    data_in: bytes,
    ctx_in: bytes | None = None,
    *,
    engine: str = "interp",
    env: RunEnv | None = None,
) -> TestRunResult:
    """``BPF_PROG_TEST_RUN`` in user space: the runtime's input for ``prog_type``, one run."""
    env = env or RunEnv(deterministic=True)
    env.program_type = prog_type
    eng = make_engine(text, env, engine)
    inp: Input
    if prog_type == ProgramType.XDP:
        inp = XdpInput.from_test_run(data_in, ctx_in)
    else:
        inp = SkbInput(data_in, prog_type, ctx_in=ctx_in)
    mapped = inp.map(env.memory)
    env.begin_run(context=mapped)
    try:
        r0, _ = eng.execute(mapped, env, eng.max_insns)
        data_out = mapped.data()
        ctx_out = mapped.ctx_out() if ctx_in is not None else None
    finally:
        for region in mapped.regions:
            env.memory.unmap(region)
    return TestRunResult(r0 & M32, data_out, ctx_out, 0)


def kernel_test_run(
    text: str, prog_type: ProgramType, data_in: bytes, ctx_in: bytes | None = None
) -> TestRunResult:
    """The same through the kernel's ``BPF_PROG_TEST_RUN``."""
    from ebpf.kernel.program import Program

    with Program.load(assemble(text), prog_type) as prog:
        res = prog.test_run(data_in, ctx_in=ctx_in)
    return TestRunResult(res.retval, res.data_out, res.ctx_out, 0)
