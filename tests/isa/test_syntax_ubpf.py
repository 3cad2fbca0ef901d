"""Tests of ebpf.isa.syntax_ubpf: encodings, formatting, labels, errors, round trips."""

from __future__ import annotations

import itertools

import pytest

from ebpf.errors import AssemblerError
from ebpf.isa import Instruction, Program, assemble, disassemble, encode, format_instruction, validate
from ebpf.isa.opcodes import ATOMIC_IMMS, OP_LDDW
from ebpf.isa.syntax_ubpf import MNEMONICS, assemble_ubpf, disassemble_ubpf, format_ubpf


def asm_hex(text: str) -> str:
    """The little-endian bytecode of ``text`` as space-separated hex, 8 bytes per group."""
    raw = assemble_ubpf(text).encode()
    return " ".join(raw[i : i + 8].hex() for i in range(0, len(raw), 8))


# --- Encodings, checked against facts read in bpf_conformance's src/bpf_assembler.cc and ------
# --- src/ebpf.h (EBPF_OP_* values), and against RFC 9669 Appendix A. ---------------------------

BPF_CONFORMANCE_FACTS = [
    # ALU: no suffix = ALU64, "32" = ALU; imm or %reg source (EBPF_SRC_IMM / EBPF_SRC_REG).
    ("mov32 %r0, 0", "b400000000000000"),
    ("mov %r1, -1", "b7010000ffffffff"),
    ("add32 %r0, %r1", "0c10000000000000"),
    ("add32 %r0, -3", "04000000fdffffff"),
    # sdiv / smod: offset 1; movsx<from><to>: offset = source width from the mnemonic.
    ("sdiv32 %r0, %r1", "3c10010000000000"),
    ("smod %r0, 3", "9700010003000000"),
    ("movsx832 %r0, %r1", "bc10080000000000"),
    ("movsx3264 %r0, %r1", "bf10200000000000"),
    # EBPF_OP_LE = ALU|IMM|END, EBPF_OP_BE = ALU|REG|END, EBPF_OP_SWAP = ALU64|IMM|END; imm = width.
    ("le64 %r0", "d400000040000000"),
    ("be16 %r0", "dc00000010000000"),
    ("swap32 %r0", "d700000020000000"),
    ("bswap32 %r0", "d700000020000000"),
    # Memory: [reg+off] with + or - and decimal or hex offsets.
    ("ldxb %r0, [%r1+0x2]", "7110020000000000"),
    ("ldxsb %r0, [%r10-1]", "91a0ffff00000000"),
    ("stw [%r10-4], 0xaa", "620afcffaa000000"),
    ("stxdw [%r10-8], %r1", "7b1af8ff00000000"),
    # Atomics: EBPF_OP_ATOMIC(32)_STORE with imm = op | FETCH; xchg 0xe1, cmpxchg 0xf1.
    ("lock add [%r10-8], %r1", "db1af8ff00000000"),
    ("lock fetch add [%r10-8], %r1", "db1af8ff01000000"),
    ("lock xchg [%r10-8], %r1", "db1af8ffe1000000"),
    ("lock cmpxchg32 [%r10-8], %r1", "c31af8fff1000000"),
    ("lock fetch xor32 [%r10-4], %r3", "c33afcffa1000000"),
    # lddw: two slots, low word then high word.
    ("lddw %r0, 0x1122334455667788", "1800000088776655 0000000044332211"),
    ("lddw %r0, 2147483648", "1800000000000080 0000000000000000"),
    # Calls: default mode helper; "call %r2" is helper mode with a register (0x8d, reg in dst).
    ("call 5", "8500000005000000"),
    ("call helper 5", "8500000005000000"),
    ("call %r2", "8d02000000000000"),
    ("call runtime 7", "8520000007000000"),
    ("exit", "9500000000000000"),
]


@pytest.mark.parametrize(
    ("text", "expected"), BPF_CONFORMANCE_FACTS, ids=[t for t, _ in BPF_CONFORMANCE_FACTS]
)
def test_encoding_matches_bpf_conformance(text: str, expected: str) -> None:
    assert asm_hex(text).replace(" ", "") == expected.replace(" ", "")


def test_label_offsets_are_slot_distances_like_bpf_conformance() -> None:
    # Fix-up rule of bpf_conformance: offset (or imm for call local / ja32) = target - index - 1,
    # with lddw counting two slots.
    prog = assemble_ubpf(
        """
        lddw %r0, 1
        jeq %r0, 1, done
        call local func
        ja32 done
        func:
        mov %r0, 2
        done:
        exit
        """.replace("        ", "")
    )
    jeq, call, ja32 = prog[1], prog[2], prog[3]
    assert (jeq.opcode, jeq.offset) == (0x15, 3)  # slot 2 -> slot 6
    assert (call.opcode, call.src, call.imm) == (0x85, 1, 1)  # slot 3 -> slot 5
    assert (ja32.opcode, ja32.imm, ja32.offset) == (0x06, 1, 0)  # slot 4 -> slot 6
    assert prog.labels == {5: "func", 6: "done"}


def test_implicit_exit_label() -> None:
    prog = assemble_ubpf("mov %r0, 1\njne %r0, 1, exit\nmov %r0, 2\nexit\nexit\n")
    assert prog[1].offset == 1
    assert prog.labels == {3: "exit"}


def test_explicit_exit_label_wins_even_when_defined_later() -> None:
    prog = assemble_ubpf("ja exit\nexit\nmov %r0, 1\nexit:\nexit\n")
    assert prog[0].offset == 2
    assert prog.labels == {3: "exit"}


def test_unused_implicit_exit_label_is_not_recorded() -> None:
    assert assemble_ubpf("mov %r0, 0\nexit").labels == {}


# --- Syntax details --------------------------------------------------------------------------


def test_comments_blank_lines_whitespace_and_crlf() -> None:
    text = "# header\r\n\r\n\tmov %r0 ,  1   # trailing\r\n  L:  exit#x\r\n"
    prog = assemble_ubpf(text)
    assert [i.opcode for i in prog] == [0xB7, 0x95]
    assert prog.labels == {1: "L"}


def test_label_and_instruction_on_one_line_and_several_labels_per_slot() -> None:
    prog = assemble_ubpf("a: b: mov %r0, 0\nja a\nja b\nexit")
    assert prog[1].offset == -2 and prog[2].offset == -3
    assert prog.labels == {0: "a"}


def test_label_at_end_of_program() -> None:
    prog = assemble_ubpf("ja end\nexit\nend:")
    assert prog[0].offset == 1
    assert prog.labels == {2: "end"}
    assert assemble_ubpf(disassemble_ubpf(prog)) == prog


@pytest.mark.parametrize(
    ("text", "imm"),
    [
        ("mov32 %r0, 2147483647", 2147483647),
        ("mov32 %r0, -2147483648", -2147483648),
        ("mov32 %r0, 0xffffffff", -1),
        ("mov32 %r0, 0x80000000", -2147483648),
        ("mov32 %r0, -0x80000000", -2147483648),
        ("mov32 %r0, +7", 7),
        ("mov32 %r0, 0X1F", 31),
        ("mov32 %r0, 007", 7),
    ],
)
def test_imm32_accepted(text: str, imm: int) -> None:
    assert assemble_ubpf(text)[0].imm == imm


@pytest.mark.parametrize(
    "text",
    [
        "mov32 %r0, 2147483648",  # signed decimal only (negative/invalid_imm32_dec_range)
        "mov32 %r0, 0x100000000",  # negative/invalid_imm32_hex_range
        "mov32 %r0, -2147483649",
        "mov32 %r0, -0x80000001",
        "stw [%r1], 4294967295",
        "jeq %r1, 0x1ffffffff, +1",
        "call 0x100000000",
    ],
)
def test_imm32_refused(text: str) -> None:
    with pytest.raises(AssemblerError, match="out of range"):
        assemble_ubpf(text)


@pytest.mark.parametrize(
    ("text", "imm"),
    [
        ("lddw %r0, 18446744073709551615", 2**64 - 1),
        ("lddw %r0, 0xffffffffffffffff", 2**64 - 1),
        ("lddw %r0, -1", 2**64 - 1),
        ("lddw %r0, -9223372036854775808", 2**63),
    ],
)
def test_imm64_range(text: str, imm: int) -> None:
    assert assemble_ubpf(text)[0].imm == imm


@pytest.mark.parametrize("text", ["lddw %r0, 18446744073709551616", "lddw %r0, -9223372036854775809"])
def test_imm64_refused(text: str) -> None:
    with pytest.raises(AssemblerError, match="out of range for a 64-bit field"):
        assemble_ubpf(text)


@pytest.mark.parametrize(
    ("operand", "offset"),
    [
        ("[%r1]", 0),
        ("[%r1+32767]", 32767),
        ("[%r1-32768]", -32768),
        ("[%r1+0xffff]", -1),
        ("[%r1 + 8]", 8),
        ("[ %r1 - 8 ]", -8),
        ("[%r1-0x8000]", -32768),
    ],
)
def test_memory_operands(operand: str, offset: int) -> None:
    insn = assemble_ubpf(f"ldxw %r0, {operand}")[0]
    assert (insn.src, insn.offset) == (1, offset)


@pytest.mark.parametrize("operand", ["[%r1+32768]", "[%r1-32769]", "[%r1+0x10000]", "[%r1-0x8001]"])
def test_memory_offset_refused(operand: str) -> None:
    with pytest.raises(AssemblerError, match="offset .* out of range for a 16-bit field"):
        assemble_ubpf(f"ldxw %r0, {operand}")


def test_jump_offsets_signed_and_bare() -> None:
    prog = assemble_ubpf("ja +3\nja -1\nja 0\nja32 -70000\njeq %r1, %r2, +32767\njne %r1, 1, -32768")
    assert [i.offset for i in prog[:3]] == [3, -1, 0]
    assert prog[3].imm == -70000
    assert prog[4].offset == 32767 and prog[5].offset == -32768


def test_aliases() -> None:
    assert assemble_ubpf("add64 %r1, 2") == assemble_ubpf("add %r1, 2")
    assert assemble_ubpf("neg64 %r1") == assemble_ubpf("neg %r1")
    assert assemble_ubpf("sdiv64 %r1, %r2") == assemble_ubpf("sdiv %r1, %r2")
    assert assemble_ubpf("swap64 %r1") == assemble_ubpf("bswap64 %r1")
    assert assemble_ubpf("lock fetch xchg [%r1], %r2") == assemble_ubpf("lock xchg [%r1], %r2")
    assert assemble_ubpf("call kfunc 3") == assemble_ubpf("call runtime 3")


def test_legacy_packet_loads() -> None:
    # rbpf / old uBPF spelling: ldabs<size> imm, ldind<size> %src, imm (RFC 9669 §5.5).
    assert asm_hex("ldabsw 0x10") == "2000000010000000"
    assert asm_hex("ldabsh 2") == "2800000002000000"
    assert asm_hex("ldabsb -1") == "30000000ffffffff"
    assert asm_hex("ldindw %r1, 4") == "4010000004000000"
    assert asm_hex("ldindb %r7, 0") == "5070000000000000"
    assert format_ubpf(Instruction(0x48, src=3, imm=8)) == "ldindh %r3, 8"


def test_lddw_pseudo_sources() -> None:
    prog = assemble_ubpf(
        "lddw %r1, map_fd 3\n"
        "lddw %r1, map_value 3, 16\n"
        "lddw %r1, map_value 4\n"
        "lddw %r2, btf_id 0x1234\n"
        "lddw %r3, func target\n"
        "lddw %r4, map_idx 2\n"
        "lddw %r5, map_idx_value 2, 0xffffffff\n"
        "lddw %r6, func -2\n"
        "target:\n"
        "exit\n"
    )
    fields = [(i.src, i.imm) for i in prog[:8]]
    assert fields == [
        (1, 3),
        (2, 3 | 16 << 32),
        (2, 4),
        (3, 0x1234),
        (4, 7),  # slot 8 -> slot 16 (after eight 2-slot lddw)
        (5, 2),
        (6, 2 | 0xFFFFFFFF << 32),
        (4, 0xFFFFFFFE),
    ]
    text = disassemble_ubpf(prog)
    assert "lddw %r1, map_fd 3\n" in text
    assert "lddw %r1, map_value 3, 16\n" in text
    assert "lddw %r1, map_value 4\n" in text
    assert "lddw %r3, func target\n" in text
    assert "lddw %r6, func -2\n" in text
    assert assemble_ubpf(text) == prog


def test_lddw_func_with_high_bits_is_a_raw_value() -> None:
    insn = Instruction(OP_LDDW, dst=1, src=4, imm=(1 << 32) | 5)
    assert format_ubpf(insn) == "lddw %r1, func 0x100000005"
    assert assemble_ubpf(format_ubpf(insn))[0] == insn


def test_call_runtime_with_offset() -> None:
    insn = assemble_ubpf("call runtime 42, 3")[0]
    assert (insn.src, insn.imm, insn.offset) == (2, 42, 3)
    assert format_ubpf(insn) == "call runtime 42, 3"


def test_raw_insn_directive() -> None:
    bad = Instruction(0x07, dst=1, src=2, offset=3, imm=-4)  # ALU64 ADD K with src and offset set
    assert validate(bad) is not None
    assert format_ubpf(bad) == ".insn 0x07, 1, 2, 3, -4"
    assert assemble_ubpf(".insn 0x07, 1, 2, 3, -4")[0] == bad
    wide = Instruction(OP_LDDW, dst=1, src=9, imm=2**64 - 1)
    assert assemble_ubpf(format_ubpf(wide))[0] == wide
    assert format_ubpf(Instruction(0xFF, 15, 15, -1, 0x7FFFFFFF)) == ".insn 0xff, 15, 15, -1, 0x7fffffff"


# --- Formatting ------------------------------------------------------------------------------

FORMATS = [
    (Instruction(0xB7, dst=0, imm=1), "mov %r0, 1"),
    (Instruction(0xB4, dst=0, imm=-1), "mov32 %r0, -1"),
    (Instruction(0xB4, dst=0, imm=0x12345678), "mov32 %r0, 0x12345678"),
    (Instruction(0xB4, dst=0, imm=-0x80000000), "mov32 %r0, 0x80000000"),
    (Instruction(0x0C, dst=1, src=2), "add32 %r1, %r2"),
    (Instruction(0x3F, dst=1, src=2, offset=1), "sdiv %r1, %r2"),
    (Instruction(0x94, dst=1, offset=1, imm=3), "smod32 %r1, 3"),
    (Instruction(0xBF, dst=1, src=2, offset=16), "movsx1664 %r1, %r2"),
    (Instruction(0x87, dst=3), "neg %r3"),
    (Instruction(0xDC, dst=3, imm=16), "be16 %r3"),
    (Instruction(0xD4, dst=3, imm=64), "le64 %r3"),
    (Instruction(0xD7, dst=3, imm=32), "bswap32 %r3"),
    (Instruction(0x61, dst=0, src=1, offset=4), "ldxw %r0, [%r1+4]"),
    (Instruction(0x89, dst=0, src=10, offset=-2), "ldxsh %r0, [%r10-2]"),
    (Instruction(0x79, dst=0, src=1), "ldxdw %r0, [%r1]"),
    (Instruction(0x6A, dst=1, offset=2, imm=0x1234), "sth [%r1+2], 0x1234"),
    (Instruction(0x73, dst=10, src=1, offset=-1), "stxb [%r10-1], %r1"),
    (Instruction(0xDB, dst=1, src=0), "lock add [%r1], %r0"),
    (Instruction(0xC3, dst=10, src=1, offset=-8, imm=0x41), "lock fetch or32 [%r10-8], %r1"),
    (Instruction(0xDB, dst=10, src=1, offset=-8, imm=0xF1), "lock cmpxchg [%r10-8], %r1"),
    (Instruction(0x18, dst=0, imm=0x1122334455667788), "lddw %r0, 0x1122334455667788"),
    (Instruction(0x18, dst=1, src=1, imm=3), "lddw %r1, map_fd 3"),
    (Instruction(0x15, dst=1, imm=16, offset=2), "jeq %r1, 16, +2"),
    (Instruction(0x2E, dst=1, src=2, offset=-3), "jgt32 %r1, %r2, -3"),
    (Instruction(0x05, offset=0), "ja +0"),
    (Instruction(0x06, imm=-5), "ja32 -5"),
    (Instruction(0x85, imm=1), "call 1"),
    (Instruction(0x85, src=1, imm=4), "call local +4"),
    (Instruction(0x85, src=2, imm=9), "call runtime 9"),
    (Instruction(0x8D, dst=2), "call %r2"),
    (Instruction(0x95), "exit"),
]


@pytest.mark.parametrize(("insn", "text"), FORMATS, ids=[t for _, t in FORMATS])
def test_format(insn: Instruction, text: str) -> None:
    assert format_ubpf(insn) == text
    assert format_instruction(insn, "ubpf") == text
    assert assemble_ubpf(text)[0] == insn


def test_disassemble_generates_labels_and_keeps_names() -> None:
    prog = Program(
        [
            Instruction(0xB7, dst=0, imm=0),
            Instruction(0x15, dst=1, imm=0, offset=2),  # -> slot 4
            Instruction(0x85, src=1, imm=1),  # -> slot 4
            Instruction(0x05, offset=-4),  # -> slot 0
            Instruction(0x95),
            Instruction(0x05, offset=100),  # out of the program: stays numeric
        ],
        labels={0: "start", 3: "not valid!", 99: "nowhere"},
    )
    text = disassemble_ubpf(prog)
    assert text == ("start:\nmov %r0, 0\njeq %r1, 0, L4\ncall local L4\nja start\nL4:\nexit\nja +100\n")
    again = assemble_ubpf(text)
    assert again == prog
    assert again.labels == {0: "start", 4: "L4"}
    assert disassemble(prog, "ubpf") == text
    assert assemble(text, "ubpf") == prog


def test_generated_label_avoids_existing_names() -> None:
    prog = Program([Instruction(0x05, offset=0), Instruction(0x95)], labels={0: "L1"})
    text = disassemble_ubpf(prog)
    assert text == "L1:\nja L1_1\nL1_1:\nexit\n"
    assert assemble_ubpf(text) == prog


def test_jump_into_lddw_stays_numeric() -> None:
    prog = Program([Instruction(0x05, offset=1), Instruction(OP_LDDW, imm=1), Instruction(0x95)])
    assert disassemble_ubpf(prog).splitlines()[0] == "ja +1"
    assert assemble_ubpf(disassemble_ubpf(prog)) == prog


def test_empty_program_disassembles_to_nothing() -> None:
    assert disassemble_ubpf(Program([])) == ""


# --- Errors: message, line and column --------------------------------------------------------

ERRORS = [
    ("ldxq %r0, %r1", 1, 1, "unknown mnemonic 'ldxq'; did you mean"),
    ("mov %r0, 1\nor %r0, %r50", 2, 9, "invalid register '%r50'"),
    ("mov %r11, 1", 1, 5, "invalid register '%r11'"),
    ("mov %rx, 1", 1, 5, "invalid register '%rx'"),
    ("mov r1, 1", 1, 5, "expected a register"),
    ("lddw %r0", 1, 1, "'lddw' expects 2 or 3 operands"),
    ("exit 1", 1, 6, "'exit' expects 0 operands"),
    ("neg %r1, %r2", 1, 10, "'neg' expects 1 operand "),
    ("mov %r0, 1, 2", 1, 13, "'mov' expects 2 operands"),
    ("ldxb %r0, %r1", 1, 11, "expected a memory operand"),
    ("ldxb %r0, [%r1+0x10000]", 1, 15, "offset +0x10000 is out of range"),
    ("ldxb %r0, [%r1", 1, 15, "unterminated memory operand"),
    ("ldxb %r0, [%r1*2]", 1, 15, "unexpected character '*'"),
    ("ldxb %r0, [%r1+]", 1, 16, "expected an offset after '+'"),
    ("ldxb %r0, [%r1] 4", 1, 17, "unexpected '4' after memory operand"),
    ("stxb [%r1], 5", 1, 13, "expected a register"),
    ("mov32 %r0, 2147483648", 1, 12, "immediate 2147483648 is out of range"),
    ("ja NOT_A_LABEL\nexit", 1, 4, "unknown label 'NOT_A_LABEL'"),
    ("jeq %r1, 1, lable\nlabel:\nexit", 1, 13, "did you mean label?"),
    ("x:\nx:\nexit", 2, 1, "duplicate label 'x' (first defined on line 1)"),
    ("lock or [%r10-8]", 1, 1, "'lock or' expects 2 operands"),
    ("lock", 1, 1, "'lock' needs an atomic operation"),
    ("lock fetch nand [%r1], %r2", 1, 12, "unknown atomic operation 'nand'"),
    ("mov %r0, 12abc", 1, 10, "invalid number '12abc'"),
    ("mov %r0, 0x", 1, 10, "invalid number '0x'"),
    ("mov %r0 1", 1, 9, "expected ',' before '1'"),
    ("stxb [%r1] %r2", 1, 12, "expected ',' before '%r2'"),
    ("mov %r0, 1 2", 1, 12, "unexpected '2' after the operand"),
    ("mov %r0,, 1", 1, 9, "expected an operand before ','"),
    ("mov %r0, 1,", 1, 12, "expected an operand after ','"),
    ("mov %r0, foo", 1, 10, "expected a register or an immediate"),
    ("movsx832 %r0, 5", 1, 15, "movsx takes a source register"),
    ("ja", 1, 1, "'ja' expects 1 operand "),
    ("ja %r1", 1, 4, "expected a label or a +N/-N slot offset"),
    ("ja +32768", 1, 4, "jump offset +32768 is out of range"),
    ("call foo", 1, 6, "expected a helper id"),
    ("call local", 1, 11, "expected a target after 'local'"),
    ("call runtime", 1, 13, "expected an id after 'runtime'"),
    ("call helper 1, 2", 1, 16, "only 'call runtime' takes an offset"),
    ("lddw %r1, map_fd", 1, 17, "expected a value after 'map_fd'"),
    ("lddw %r1, map_thing 1", 1, 11, "expected a 64-bit immediate or one of"),
    ("lddw %r1, map_fd 1, 2", 1, 21, "map_fd takes no offset"),
    ("lddw %r1, 1, 2", 1, 14, "only map_value and map_idx_value take an offset"),
    (".insn 256, 0, 0, 0, 0", 1, 7, "opcode 256 is out of range"),
    (".insn 0x95, 16, 0, 0, 0", 1, 13, "dst 16 is out of range"),
    ("1: exit", 1, 1, "expected a mnemonic or a label"),
    ("mov %r0, 1 ; exit", 1, 12, "unexpected character ';'"),
    ("", 1, 1, "no instructions"),
    ("# only a comment\nlabel:\n", 1, 1, "no instructions"),
]


@pytest.mark.parametrize(("text", "line", "column", "message"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(AssemblerError) as info:
        assemble_ubpf(text, source="prog.s")
    err = info.value
    assert message in err.message
    assert (err.line, err.column) == (line, column), str(err)
    assert err.source == "prog.s"
    assert str(err).startswith(f"prog.s:{line}:{column}: ")
    if "no instructions" not in message:
        assert err.text == text.split("\n")[line - 1]


def test_label_target_out_of_range() -> None:
    body = "mov %r0, 0\n" * 32768
    with pytest.raises(AssemblerError, match="offset 32768 does not fit in 16 signed bits") as info:
        assemble_ubpf("ja far\n" + body + "far:\nexit")
    assert (info.value.line, info.value.column) == (1, 4)
    # ja32 reaches it.
    assert assemble_ubpf("ja32 far\n" + body + "far:\nexit")[0].imm == 32768


# --- Every valid instruction shape round-trips ----------------------------------------------------

_DSTS = (0, 1, 10)
_OFFSETS = (0, 1, 8, 16, 32, -1, 0x7FFF, -0x8000)
_IMMS = (0, 1, 16, 32, 64, -1, 0x7FFFFFFF, -0x80000000, *sorted(ATOMIC_IMMS))


def _valid_instructions() -> list[Instruction]:
    out = []
    for opcode in range(256):
        if opcode == OP_LDDW:
            for src in range(7):
                for imm in (0, 5, 2**32 + 5, 2**64 - 1, 0xFFFFFFFE):
                    out.append(Instruction(opcode, 1, src, 0, imm))
            continue
        for dst, src, off, imm in itertools.product(_DSTS, _DSTS, _OFFSETS, _IMMS):
            insn = Instruction(opcode, dst, src, off, imm)
            if validate(insn) is None:
                out.append(insn)
    return out


VALID = _valid_instructions()


def test_every_valid_opcode_is_covered() -> None:
    opcodes = {i.opcode for i in VALID}
    # RFC 9669 Appendix A: 53 ALU/ALU64, 48 JMP/JMP32 (with gotol), 24 load/store; plus callx.
    assert len(opcodes) == 126
    names = set()
    for insn in VALID:
        words = format_ubpf(insn).split()
        names.add(" ".join(words[: 3 if words[1] == "fetch" else 2]) if words[0] == "lock" else words[0])
    assert ".insn" not in names
    assert names <= set(MNEMONICS)
    # Every printed name is used, and only the documented aliases are never printed.
    aliases = set(MNEMONICS) - names - {".insn"}
    assert {
        a
        for a in aliases
        if not a.endswith("64") and not a.startswith(("swap", "lock fetch x", "lock fetch cmp"))
    } == set()


def test_every_valid_instruction_round_trips() -> None:
    for insn in VALID:
        text = format_ubpf(insn)
        again = assemble_ubpf(text)
        assert again.instructions == (insn,), text
    prog = Program(VALID)
    assert assemble_ubpf(disassemble_ubpf(prog)) == prog
    assert Program.from_bytes(encode(prog.instructions)) == prog
