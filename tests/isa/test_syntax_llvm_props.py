"""Property tests of the LLVM syntax: random programs round-trip, random text only raises AssemblerError."""

from __future__ import annotations

import re
from dataclasses import replace

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from ebpf.errors import AssemblerError
from ebpf.isa import Instruction, Program
from ebpf.isa.encoding import validate
from ebpf.isa.opcodes import OP_CALL, OP_GOTOL, OP_LDDW, CallKind, InsnClass, JmpOp, PseudoSrc
from ebpf.isa.syntax_llvm import assemble_llvm, disassemble_llvm, format_llvm

from .llvm_corpus import sample_instructions

SAMPLES = sample_instructions()
VALID_OPCODES = sorted({insn.opcode for insn in SAMPLES})
# Values that make fields valid for some opcode: atomic ops, swap widths, movsx widths, sdiv.
SPECIAL_IMMS = sorted({insn.imm for insn in SAMPLES if insn.opcode != OP_LDDW and -256 < insn.imm < 256})
SPECIAL_OFFSETS = [0, 1, 8, 16, 32]


@st.composite
def instructions(draw: st.DrawFn) -> Instruction:
    """Any valid instruction: all opcodes of the tables, field values valid for the opcode."""
    opcode = draw(st.sampled_from(VALID_OPCODES))
    dst = draw(st.integers(0, 10))
    src = draw(st.one_of(st.integers(0, 10), st.sampled_from(list(PseudoSrc))))
    offset = draw(st.one_of(st.sampled_from(SPECIAL_OFFSETS), st.integers(-(1 << 15), (1 << 15) - 1)))
    if opcode == OP_LDDW:
        imm = draw(st.one_of(st.integers(0, (1 << 64) - 1), st.integers(0, 0xFFFFFFFF)))
    else:
        imm = draw(st.one_of(st.sampled_from(SPECIAL_IMMS), st.integers(-(1 << 31), (1 << 31) - 1)))
    # Reserved fields must be zero for most opcodes: try the draw, then with fields cleared.
    for keep_src, keep_offset, keep_imm in (
        (1, 1, 1),
        (1, 1, 0),
        (1, 0, 1),
        (0, 1, 1),
        (1, 0, 0),
        (0, 1, 0),
        (0, 0, 1),
        (0, 0, 0),
    ):
        insn = Instruction(opcode, dst, src * keep_src, offset * keep_offset, imm * keep_imm)
        if validate(insn) is None:
            return insn
    assume(False)
    raise AssertionError("unreachable")


def _is_jump(insn: Instruction) -> bool:
    cls = insn.opcode & 0x07
    if cls not in (InsnClass.JMP, InsnClass.JMP32):
        return False
    return insn.opcode & 0xF0 not in (JmpOp.CALL, JmpOp.EXIT)


@st.composite
def programs(draw: st.DrawFn) -> Program:
    """Programs whose jumps and local calls land on slots inside the program."""
    insns = draw(st.lists(instructions(), max_size=40))
    slots = [0]
    for insn in insns:
        slots.append(slots[-1] + insn.slots)
    out = []
    for i, insn in enumerate(insns):
        here = slots[i] + 1
        target = draw(st.sampled_from(slots))
        if insn.opcode == OP_GOTOL or (insn.opcode == OP_CALL and insn.src == CallKind.LOCAL):
            insn = replace(insn, imm=target - here)
        elif _is_jump(insn):
            insn = replace(insn, offset=target - here)
        out.append(insn)
    starts = slots[:-1] + [slots[-1]]
    names = st.one_of(
        st.from_regex(r"[A-Za-z_.][A-Za-z0-9_.$]{0,10}", fullmatch=True),
        st.from_regex(r"[a-z0-9+:-]{1,8}", fullmatch=True),  # needs <angle> form
        st.text(max_size=5),  # may not be writable at all
    )
    labels = draw(st.dictionaries(st.sampled_from(starts), names, max_size=5))
    unique: dict[int, str] = {}
    for slot, name in labels.items():
        if name not in unique.values():
            unique[slot] = name
    return Program(out, unique)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(programs())
def test_disassemble_assemble_round_trip(program: Program) -> None:
    text = disassemble_llvm(program)
    again = assemble_llvm(text)
    assert again == program
    # Labels survive when they can be written (and are not shadowed by a numeric name clash).
    for slot, name in again.labels.items():
        assert program.labels.get(slot) == name


@settings(max_examples=1000, suppress_health_check=[HealthCheck.filter_too_much])
@given(instructions())
def test_every_instruction_round_trips(insn: Instruction) -> None:
    text = disassemble_llvm(Program([insn]))
    assert assemble_llvm(text).instructions == (insn,), text
    # format_llvm is the same text except for the calls llvm-objdump cannot tell apart.
    if not (insn.opcode == OP_CALL and insn.src != CallKind.HELPER):
        assert text == format_llvm(insn) + "\n"


@settings(max_examples=300, suppress_health_check=[HealthCheck.filter_too_much])
@given(instructions())
def test_listing_line_round_trips(insn: Instruction) -> None:
    """An llvm-objdump-style line (address, raw bytes, text) assembles to its bytes."""
    from ebpf.isa.encoding import encode

    raw = " ".join(f"{b:02x}" for b in encode([insn]))
    assert assemble_llvm(f"      7:\t{raw}\t{format_llvm(insn)}").instructions == (insn,)


# --- Fuzz: nothing but AssemblerError escapes --------------------------------------------------


def _check_error(text: str, err: AssemblerError) -> None:
    lines = text.split("\n")
    assert 1 <= err.line <= len(lines)
    assert 1 <= err.column <= len(lines[err.line - 1]) + 1
    assert err.message


def _assemble_or_error(text: str) -> None:
    try:
        assemble_llvm(text)
    except AssemblerError as err:
        _check_error(text, err)


ALPHABET = st.sampled_from(
    list("rw0123456789x+-*/%&|^<>=!()[],:;#<> \t\nsabcdefgklnopqtuz._$@")
    + ["r1", "w2", "r11", "0x", "ll", "goto", "if", "call", "lock", "skb", "u32", "s8", "pc", "exit", "<a>"]
)


@settings(max_examples=1500)
@given(st.text())
@example("r1 = 0x" + "f" * 100)
@example("\x00\x85")
@example("r1 = ٣")  # non-ASCII digit
@example("0:\t" + "85 " * 16)
@example("<>:")
def test_fuzz_text(text: str) -> None:
    _assemble_or_error(text)


@settings(max_examples=1500)
@given(st.lists(ALPHABET, max_size=30).map("".join))
def test_fuzz_token_soup(text: str) -> None:
    _assemble_or_error(text)


@st.composite
def mutated_lines(draw: st.DrawFn) -> str:
    """A valid line (plain, or as an llvm-objdump / verifier-log line) with a few random edits."""
    insn = draw(instructions())
    line = disassemble_llvm(Program([insn])).rstrip("\n")
    style = draw(st.sampled_from(["plain", "listing", "log"]))
    if style == "listing":
        from ebpf.isa.encoding import encode

        raw = " ".join(f"{b:02x}" for b in encode([insn]))
        line = f"      3:\t{raw}\t{format_llvm(insn)}"
    elif style == "log":
        line = f"3: ({insn.opcode:02x}) {line}"
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(line)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        piece = draw(ALPHABET)
        if action == "insert":
            line = line[:pos] + piece + line[pos:]
        elif action == "delete":
            line = line[:pos] + line[pos + 1 :]
        elif action == "replace":
            line = line[:pos] + piece + line[pos + 1 :]
        else:
            line = line[:pos] + line[pos:] + line[pos:]
    return line


@settings(max_examples=2000, suppress_health_check=[HealthCheck.filter_too_much])
@given(mutated_lines())
def test_fuzz_mutated_lines(line: str) -> None:
    _assemble_or_error(line)


@settings(max_examples=300, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.lists(mutated_lines(), max_size=8))
def test_fuzz_mutated_programs_report_the_right_line(lines: list[str]) -> None:
    text = "\n".join(lines)
    try:
        assemble_llvm(text)
    except AssemblerError as err:
        _check_error(text, err)
        assert err.text == text.split("\n")[err.line - 1]


def test_register_numbers_in_text_are_exact() -> None:
    """No register number outside 0-10 is ever printed."""
    for insn in SAMPLES:
        for reg in re.findall(r"\b[rw](\d+)\b", format_llvm(insn)):
            assert 0 <= int(reg) <= 10
