"""Fuzzing the VM: any bytes, any valid program, any input -> a result or a typed error, never a crash."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebpf.errors import BPFError
from ebpf.isa import Instruction, Program, decode, validate
from ebpf.vm import RawInput, XdpInput, run, ubpf_test_helpers

HELPERS = ubpf_test_helpers()


def _templates() -> list[Instruction]:
    """One valid instruction per (opcode, field shape): the seeds the fuzzer mutates."""
    out = []
    for opcode in range(256):
        for src in (0, 1, 2):
            for offset in (0, 1, 8, 16, 32):
                for imm in (0, 1, 16, 32, 64, 0x41, 0xE1, 0xF1):
                    insn = Instruction(opcode, dst=1, src=src, offset=offset, imm=imm)
                    if validate(insn) is None:
                        out.append(insn)
    return out


TEMPLATES = _templates()


@st.composite
def valid_instruction(draw: st.DrawFn) -> Instruction:
    """A valid instruction: a template with its registers, offset and immediate mutated where allowed."""
    base = draw(st.sampled_from(TEMPLATES))
    dst = draw(st.integers(0, 10))
    src = draw(st.integers(0, 10))
    offset = draw(st.one_of(st.integers(-8, 8), st.integers(-(1 << 15), (1 << 15) - 1)))
    imm = draw(st.one_of(st.integers(-16, 64), st.integers(-(1 << 31), (1 << 31) - 1)))
    for field, value in (("dst", dst), ("src", src), ("offset", offset), ("imm", imm)):
        candidate = Instruction(**{**_fields(base), field: value})
        if validate(candidate) is None:
            base = candidate
    return base


def _fields(insn: Instruction) -> dict[str, int]:
    return {"opcode": insn.opcode, "dst": insn.dst, "src": insn.src, "offset": insn.offset, "imm": insn.imm}


@settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(st.lists(valid_instruction(), min_size=1, max_size=12), st.binary(max_size=32), st.booleans())
def test_random_programs_raise_only_typed_errors(insns: list[Instruction], mem: bytes, xdp: bool) -> None:
    program = Program([*insns, Instruction(0x95)])
    data = XdpInput(mem + bytes(14)) if xdp else RawInput(mem)
    try:
        result = run(program, data, helpers=HELPERS, max_insns=2000)
    except BPFError:
        return
    assert 0 <= result.retval < (1 << 64)
    assert result.insns <= 2000


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=96), st.binary(max_size=16))
def test_random_bytes_raise_only_typed_errors(code: bytes, mem: bytes) -> None:
    try:
        program = Program(decode(code))
        run(program, mem, helpers=HELPERS, max_insns=1000)
    except BPFError:
        pass
