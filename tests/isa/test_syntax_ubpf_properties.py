"""Property tests of ebpf.isa.syntax_ubpf: round trips over random programs, and fuzzing."""

from __future__ import annotations

import dataclasses
import itertools
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from ebpf.errors import AssemblerError
from ebpf.isa import Instruction, Program, decode, encode, validate
from ebpf.isa.encoding import slot_offsets
from ebpf.isa.opcodes import ATOMIC_IMMS, COND_JUMPS, OP_CALL, OP_GOTOL, OP_JA, OP_LDDW, CallKind, PseudoSrc
from ebpf.isa.syntax_ubpf import MNEMONICS, assemble_ubpf, disassemble_ubpf, format_ubpf

_FIELDS = ("imm", "offset", "src", "dst")
# Ways to repair a random instruction: zero these fields (fewest first).
_REPAIRS = [c for n in range(len(_FIELDS) + 1) for c in itertools.combinations(_FIELDS, n)]


def _templates() -> dict[int, Instruction]:
    """One valid instruction per valid opcode (the fallback when repairing fails)."""
    found: dict[int, Instruction] = {}
    for opcode in range(256):
        for src, offset, imm in itertools.product((0, 1), (0, 1, 8), (0, 16, *sorted(ATOMIC_IMMS))):
            insn = Instruction(opcode, 1, src, offset, imm)
            if validate(insn) is None:
                found[opcode] = insn
                break
    return found


TEMPLATES = _templates()
VALID_OPCODES = sorted(TEMPLATES)
REGS = st.integers(0, 10)
OFFSETS = st.sampled_from([0, 1, 8, 16, 32]) | st.integers(-(2**15), 2**15 - 1)
IMMS = st.sampled_from(sorted({0, 1, 16, 32, 64} | ATOMIC_IMMS)) | st.integers(-(2**31), 2**31 - 1)
IMM64 = st.sampled_from([0, 1, 2**32, 2**64 - 1]) | st.integers(0, 2**64 - 1)


@st.composite
def valid_instructions(draw: st.DrawFn) -> Instruction:
    """Any valid instruction: a valid opcode, random fields, unused fields zeroed."""
    opcode = draw(st.sampled_from(VALID_OPCODES))
    if opcode == OP_LDDW:
        return Instruction(opcode, draw(REGS), draw(st.sampled_from(list(PseudoSrc))), 0, draw(IMM64))
    insn = Instruction(opcode, draw(REGS), draw(REGS), draw(OFFSETS), draw(IMMS))
    for fields in _REPAIRS:
        candidate = dataclasses.replace(insn, **dict.fromkeys(fields, 0))
        if validate(candidate) is None:
            return candidate
    template = TEMPLATES[opcode]  # e.g. a byte swap whose imm is not a width
    candidate = dataclasses.replace(template, dst=insn.dst)
    return candidate if validate(candidate) is None else template


any_instructions = st.builds(
    Instruction,
    opcode=st.integers(0, 255),
    dst=st.integers(0, 15),
    src=st.integers(0, 15),
    offset=st.integers(-(2**15), 2**15 - 1),
    imm=st.integers(-(2**31), 2**31 - 1),
)


def _retarget(insn: Instruction, rel: int) -> Instruction:
    """Point a jump / local call / ja32 / lddw func at ``rel`` slots after the next one."""
    op = insn.opcode
    if op & 0x07 in (0x05, 0x06) and (op & 0xF0 in COND_JUMPS or op == OP_JA):
        return dataclasses.replace(insn, offset=rel) if -(2**15) <= rel < 2**15 else insn
    if op == OP_GOTOL or (op == OP_CALL and insn.src == CallKind.LOCAL):
        return dataclasses.replace(insn, imm=rel)
    if op == OP_LDDW and insn.src == PseudoSrc.FUNC:
        return dataclasses.replace(insn, imm=rel & 0xFFFFFFFF)
    return insn


LABEL_NAMES = st.from_regex(r"[A-Za-z_.][A-Za-z0-9_.]{0,6}", fullmatch=True) | st.text(max_size=4)


@st.composite
def programs(draw: st.DrawFn) -> Program:
    """Valid programs, many of whose jumps land on instructions, with some named labels."""
    insns = draw(st.lists(valid_instructions(), min_size=1, max_size=20))
    starts = slot_offsets(insns)
    anchors = [*starts, sum(i.slots for i in insns)]
    out = []
    for slot, insn in zip(starts, insns):
        if draw(st.booleans()):
            insn = _retarget(insn, draw(st.sampled_from(anchors)) - slot - 1)
        out.append(insn)
    labels = draw(st.dictionaries(st.sampled_from(anchors) | st.integers(-2, 100), LABEL_NAMES, max_size=6))
    return Program(out, labels)


@settings(max_examples=300)
@given(programs())
def test_assemble_disassemble_round_trip(prog: Program) -> None:
    text = disassemble_ubpf(prog)
    again = assemble_ubpf(text)
    assert again == prog
    assert disassemble_ubpf(again) == text  # the labels survive, so the text is stable
    assert decode(encode(again.instructions)) == list(prog.instructions)
    # Label names that are valid, unique and on an instruction boundary are kept.
    anchors = {*slot_offsets(prog.instructions), prog.slots}
    seen: set[str] = set()
    for slot, name in sorted(prog.labels.items()):
        if slot in anchors and name not in seen and re.fullmatch(r"[A-Za-z_.][A-Za-z0-9_.]*", name):
            assert again.labels[slot] == name
            seen.add(name)


@settings(max_examples=500)
@given(valid_instructions())
def test_valid_instruction_has_a_mnemonic(insn: Instruction) -> None:
    text = format_ubpf(insn)
    assert not text.startswith(".insn")
    assert assemble_ubpf(text).instructions == (insn,)


@given(any_instructions)
def test_any_instruction_round_trips(insn: Instruction) -> None:
    text = format_ubpf(insn)
    assert assemble_ubpf(text).instructions == (insn,)
    assert text.startswith(".insn") == (validate(insn) is not None)


@settings(max_examples=500)
@given(st.text())
def test_random_text_only_raises_assembler_error(text: str) -> None:
    try:
        assemble_ubpf(text)
    except AssemblerError as err:
        assert err.line >= 1 and err.column >= 1


_VOCABULARY = [
    *MNEMONICS,
    "%r0", "%r1", "%r10", "%r11", "%r", "%x", "[", "]", "+", "-", ",", ":", "#", "fetch", "local",
    "helper", "runtime", "map_fd", "map_value", "func", "exit", "L1", "0", "1", "-1", "+8", "0x10",
    "0xffffffff", "0x100000000", "2147483648", "-2147483649", "18446744073709551616", "[%r1+4]",
    "[%r10-8]", "\t", " ", "\n", "lock", "call", "lddw", "L1:",
]  # fmt: skip


@settings(max_examples=500)
@given(st.lists(st.sampled_from(_VOCABULARY), max_size=25))
def test_token_soup_only_raises_assembler_error(tokens: list[str]) -> None:
    text = " ".join(tokens)
    try:
        prog = assemble_ubpf(text)
    except AssemblerError as err:
        assert 1 <= err.line <= text.count("\n") + 1
        assert err.column >= 1
    else:
        assert assemble_ubpf(disassemble_ubpf(prog)) == prog
