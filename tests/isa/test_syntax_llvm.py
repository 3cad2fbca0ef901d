"""Golden tests of the LLVM / kernel C-like syntax (ebpf.isa.syntax_llvm).

The expected strings were read off ``llvm-objdump-19 -d --mcpu=v4`` output (see
tests/data/llvm/) and ``kernel/bpf/disasm.c``'s formats; the corpus tests check them against
llvm-objdump itself.
"""

from __future__ import annotations

import pytest

from ebpf.errors import AssemblerError
from ebpf.isa import Instruction, Program
from ebpf.isa.asm import Syntax, assemble, disassemble, format_instruction
from ebpf.isa.syntax_llvm import assemble_llvm, disassemble_llvm, format_llvm

I = Instruction

# (instruction, llvm-objdump-19 --mcpu=v4 text); every line also assembles back to the instruction.
GOLDEN: list[tuple[Instruction, str]] = [
    # ALU64 / ALU, immediate and register (RFC 9669 §4.1)
    (I(0xB7, 0), "r0 = 0x0"),
    (I(0xB4, 0), "w0 = 0x0"),
    (I(0xB7, 1, imm=-7), "r1 = -0x7"),
    (I(0xB7, 1, imm=-(1 << 31)), "r1 = -0x80000000"),
    (I(0xB4, 1, imm=0x7FFFFFFF), "w1 = 0x7fffffff"),
    (I(0xBF, 1, 10), "r1 = r10"),
    (I(0xBC, 1, 2), "w1 = w2"),
    (I(0x07, 1, imm=-8), "r1 += -0x8"),
    (I(0x04, 1, imm=5), "w1 += 0x5"),
    (I(0x0F, 1, 2), "r1 += r2"),
    (I(0x0C, 1, 2), "w1 += w2"),
    (I(0x17, 1, imm=1), "r1 -= 0x1"),
    (I(0x1C, 1, 2), "w1 -= w2"),
    (I(0x27, 1, imm=13), "r1 *= 0xd"),
    (I(0x2C, 1, 2), "w1 *= w2"),
    (I(0x37, 1, imm=10), "r1 /= 0xa"),
    (I(0x3F, 1, 2), "r1 /= r2"),
    (I(0x37, 1, offset=1, imm=10), "r1 s/= 0xa"),
    (I(0x3F, 1, 2, offset=1), "r1 s/= r2"),
    (I(0x3C, 1, 2, offset=1), "w1 s/= w2"),
    (I(0x47, 1, imm=0x40), "r1 |= 0x40"),
    (I(0x4C, 1, 2), "w1 |= w2"),
    (I(0x57, 1, imm=-1), "r1 &= -0x1"),
    (I(0x5F, 1, 2), "r1 &= r2"),
    (I(0x67, 1, imm=3), "r1 <<= 0x3"),
    (I(0x6C, 1, 2), "w1 <<= w2"),
    (I(0x77, 3, imm=0x10), "r3 >>= 0x10"),
    (I(0x7F, 1, 2), "r1 >>= r2"),
    (I(0x87, 4), "r4 = -r4"),
    (I(0x84, 4), "w4 = -w4"),
    (I(0x97, 1, imm=3), "r1 %= 0x3"),
    (I(0x94, 1, offset=1, imm=3), "w1 s%= 0x3"),
    (I(0x9F, 1, 2, offset=1), "r1 s%= r2"),
    (I(0xA7, 1, imm=0x5555), "r1 ^= 0x5555"),
    (I(0xAC, 1, 2), "w1 ^= w2"),
    (I(0xC7, 1, imm=2), "r1 s>>= 0x2"),
    (I(0xCC, 1, 2), "w1 s>>= w2"),
    # MOVSX (RFC 9669 §4.1, offset 8/16/32)
    (I(0xBF, 1, 2, offset=8), "r1 = (s8)r2"),
    (I(0xBF, 1, 2, offset=16), "r1 = (s16)r2"),
    (I(0xBF, 3, 4, offset=32), "r3 = (s32)r4"),
    (I(0xBC, 4, 2, offset=8), "w4 = (s8)w2"),
    (I(0xBC, 1, 2, offset=16), "w1 = (s16)w2"),
    # Byte swaps (RFC 9669 §4.2)
    (I(0xD4, 1, imm=16), "r1 = le16 r1"),
    (I(0xD4, 1, imm=64), "r1 = le64 r1"),
    (I(0xDC, 1, imm=16), "r1 = be16 r1"),
    (I(0xDC, 2, imm=32), "r2 = be32 r2"),
    (I(0xD7, 1, imm=16), "r1 = bswap16 r1"),
    (I(0xD7, 7, imm=64), "r7 = bswap64 r7"),
    # Jumps (RFC 9669 §4.3)
    (I(0x05, offset=2), "goto +0x2"),
    (I(0x05, offset=-1), "goto -0x1"),
    (I(0x05), "goto +0x0"),
    (I(0x06, imm=0x10), "gotol +0x10"),
    (I(0x06, imm=-3), "gotol -0x3"),
    (I(0x2D, 3, 2, offset=6), "if r3 > r2 goto +0x6"),
    (I(0xC6, 1, offset=-3, imm=5), "if w1 s< 0x5 goto -0x3"),
    (I(0x15, 0, offset=1), "if r0 == 0x0 goto +0x1"),
    (I(0x15, 1, offset=3, imm=-1), "if r1 == -0x1 goto +0x3"),
    (I(0x1D, 1, 2, offset=1), "if r1 == r2 goto +0x1"),
    (I(0x1E, 1, 2, offset=-8), "if w1 == w2 goto -0x8"),
    (I(0x25, 1, offset=1, imm=9), "if r1 > 0x9 goto +0x1"),
    (I(0x35, 1, offset=1, imm=9), "if r1 >= 0x9 goto +0x1"),
    (I(0x3E, 1, 2, offset=1), "if w1 >= w2 goto +0x1"),
    (I(0x45, 1, offset=1, imm=0x10), "if r1 & 0x10 goto +0x1"),
    (I(0x4E, 1, 2, offset=1), "if w1 & w2 goto +0x1"),
    (I(0x55, 1, offset=1, imm=0), "if r1 != 0x0 goto +0x1"),
    (I(0x5E, 1, 2, offset=1), "if w1 != w2 goto +0x1"),
    (I(0x65, 1, offset=1, imm=-7), "if r1 s> -0x7 goto +0x1"),
    (I(0x6E, 1, 2, offset=1), "if w1 s> w2 goto +0x1"),
    (I(0x75, 1, offset=1, imm=0), "if r1 s>= 0x0 goto +0x1"),
    (I(0x7D, 1, 2, offset=1), "if r1 s>= r2 goto +0x1"),
    (I(0xA5, 1, offset=1, imm=4), "if r1 < 0x4 goto +0x1"),
    (I(0xAE, 1, 2, offset=1), "if w1 < w2 goto +0x1"),
    (I(0xB5, 1, offset=1, imm=4), "if r1 <= 0x4 goto +0x1"),
    (I(0xBE, 1, 2, offset=1), "if w1 <= w2 goto +0x1"),
    (I(0xCD, 1, 2, offset=1), "if r1 s< r2 goto +0x1"),
    (I(0xD5, 1, offset=1, imm=4), "if r1 s<= 0x4 goto +0x1"),
    (I(0xDE, 1, 2, offset=1), "if w1 s<= w2 goto +0x1"),
    # Calls and exit
    (I(0x85, imm=1), "call 0x1"),
    (I(0x85, imm=0xB5), "call 0xb5"),
    (I(0x8D, 2), "callx r2"),
    (I(0x95), "exit"),
    # lddw (RFC 9669 §5.4): llvm prints the 64-bit value signed
    (I(0x18, 0, imm=1), "r0 = 0x1 ll"),
    (I(0x18, 1, imm=0x123456789ABCDEF0), "r1 = 0x123456789abcdef0 ll"),
    (I(0x18, 1, imm=0xFFFFFFFF), "r1 = 0xffffffff ll"),
    (I(0x18, 1, imm=(1 << 64) - 7), "r1 = -0x7 ll"),
    # Loads and stores (RFC 9669 §5.1, 5.2): v4 prints w registers for narrow accesses
    (I(0x61, 2, 1, offset=4), "w2 = *(u32 *)(r1 + 0x4)"),
    (I(0x69, 2, 1, offset=-2), "w2 = *(u16 *)(r1 - 0x2)"),
    (I(0x71, 0, 1, offset=0), "w0 = *(u8 *)(r1 + 0x0)"),
    (I(0x79, 1, 10, offset=-8), "r1 = *(u64 *)(r10 - 0x8)"),
    (I(0x81, 0, 1, offset=4), "r0 = *(s32 *)(r1 + 0x4)"),
    (I(0x89, 0, 1, offset=2), "r0 = *(s16 *)(r1 + 0x2)"),
    (I(0x91, 0, 1, offset=-0x8000), "r0 = *(s8 *)(r1 - 0x8000)"),
    (I(0x62, 10, offset=-4, imm=5), "*(u32 *)(r10 - 0x4) = 0x5"),
    (I(0x6A, 10, offset=-2, imm=-1), "*(u16 *)(r10 - 0x2) = -0x1"),
    (I(0x72, 10, offset=-1, imm=0x7F), "*(u8 *)(r10 - 0x1) = 0x7f"),
    (I(0x7A, 10, offset=0x7FFF, imm=1), "*(u64 *)(r10 + 0x7fff) = 0x1"),
    (I(0x63, 10, 1, offset=-4), "*(u32 *)(r10 - 0x4) = w1"),
    (I(0x6B, 10, 1, offset=-2), "*(u16 *)(r10 - 0x2) = w1"),
    (I(0x73, 10, 1, offset=-1), "*(u8 *)(r10 - 0x1) = w1"),
    (I(0x7B, 10, 1, offset=-8), "*(u64 *)(r10 - 0x8) = r1"),
    # Atomics (RFC 9669 §5.3)
    (I(0xDB, 1, 2, imm=0x00), "lock *(u64 *)(r1 + 0x0) += r2"),
    (I(0xDB, 1, 2, offset=-8, imm=0x40), "lock *(u64 *)(r1 - 0x8) |= r2"),
    (I(0xDB, 1, 2, imm=0x50), "lock *(u64 *)(r1 + 0x0) &= r2"),
    (I(0xDB, 1, 2, imm=0xA0), "lock *(u64 *)(r1 + 0x0) ^= r2"),
    (I(0xC3, 1, 2, imm=0x00), "lock *(u32 *)(r1 + 0x0) += w2"),
    (I(0xC3, 1, 2, imm=0x50), "lock *(u32 *)(r1 + 0x0) &= w2"),
    (I(0xDB, 0, 1, imm=0x01), "r1 = atomic_fetch_add((u64 *)(r0 + 0x0), r1)"),
    (I(0xDB, 1, 2, offset=0x10, imm=0x41), "r2 = atomic_fetch_or((u64 *)(r1 + 0x10), r2)"),
    (I(0xDB, 1, 2, imm=0x51), "r2 = atomic_fetch_and((u64 *)(r1 + 0x0), r2)"),
    (I(0xDB, 1, 2, imm=0xA1), "r2 = atomic_fetch_xor((u64 *)(r1 + 0x0), r2)"),
    (I(0xC3, 1, 2, imm=0x01), "w2 = atomic_fetch_add((u32 *)(r1 + 0x0), w2)"),
    (I(0xC3, 1, 2, offset=-4, imm=0xA1), "w2 = atomic_fetch_xor((u32 *)(r1 - 0x4), w2)"),
    (I(0xDB, 1, 2, offset=0x10, imm=0xE1), "r2 = xchg_64(r1 + 0x10, r2)"),
    (I(0xC3, 1, 2, offset=-8, imm=0xE1), "w2 = xchg32_32(r1 - 0x8, w2)"),
    (I(0xDB, 1, 2, imm=0xF1), "r0 = cmpxchg_64(r1 + 0x0, r0, r2)"),
    (I(0xC3, 1, 2, offset=0x10, imm=0xF1), "w0 = cmpxchg32_32(r1 + 0x10, w0, w2)"),
    # Legacy packet access (RFC 9669 §5.5)
    (I(0x30, imm=12), "r0 = *(u8 *)skb[0xc]"),
    (I(0x28, imm=0xE), "r0 = *(u16 *)skb[0xe]"),
    (I(0x20, imm=-7), "r0 = *(u32 *)skb[-0x7]"),
    (I(0x50, src=6), "r0 = *(u8 *)skb[r6]"),
    (I(0x48, src=7), "r0 = *(u16 *)skb[r7]"),
    (I(0x40, src=2), "r0 = *(u32 *)skb[r2]"),
]

# Encodings llvm-objdump prints lossily, in this module's lossless spelling (format_llvm).
EXTENSIONS: list[tuple[Instruction, str]] = [
    (I(0x40, src=2, imm=4), "r0 = *(u32 *)skb[r2 + 0x4]"),
    (I(0x48, src=3, imm=-5), "r0 = *(u16 *)skb[r3 - 0x5]"),
    (I(0x18, 1, src=1, imm=3), "r1 = map_fd(0x3) ll"),
    (I(0x18, 1, src=2, imm=(8 << 32) | 3), "r1 = map_value(0x3) + 0x8 ll"),
    (I(0x18, 1, src=2, imm=3), "r1 = map_value(0x3) + 0x0 ll"),
    (I(0x18, 1, src=3, imm=0x1C), "r1 = btf_id(0x1c) ll"),
    (I(0x18, 1, src=3, imm=(5 << 32) | 0x1C), "r1 = btf_id(0x1c) + 0x5 ll"),
    (I(0x18, 2, src=4, imm=(1 << 32) - 3), "r2 = func(-0x3) ll"),
    (I(0x18, 1, src=5, imm=0), "r1 = map_idx(0x0) ll"),
    (I(0x18, 1, src=6, imm=(0xFFFFFFFF << 32) | 2), "r1 = map_idx_value(0x2) - 0x1 ll"),
]

# disassemble_llvm's spellings of the calls llvm-objdump prints like helper calls.
CALLS: list[tuple[Instruction, str, str]] = [
    (I(0x85, src=1, imm=-5), "call -0x5", "call pc-0x5"),
    (I(0x85, src=1, imm=3), "call 0x3", "call pc+0x3"),
    (I(0x85, src=2, imm=0x4D), "call 0x4d", "call kfunc(0x4d)"),
    (I(0x85, src=2, offset=2, imm=0x4D), "call 0x4d", "call kfunc(0x4d, 0x2)"),
]


@pytest.mark.parametrize(("insn", "text"), GOLDEN + EXTENSIONS, ids=[t for _, t in GOLDEN + EXTENSIONS])
def test_format_golden(insn: Instruction, text: str) -> None:
    assert format_llvm(insn) == text
    assert format_instruction(insn, Syntax.LLVM) == text


@pytest.mark.parametrize(("insn", "text"), GOLDEN + EXTENSIONS, ids=[t for _, t in GOLDEN + EXTENSIONS])
def test_golden_assembles_back(insn: Instruction, text: str) -> None:
    assert assemble_llvm(text).instructions == (insn,)


@pytest.mark.parametrize(("insn", "llvm", "exact"), CALLS, ids=[e for _, _, e in CALLS])
def test_calls_llvm_and_exact(insn: Instruction, llvm: str, exact: str) -> None:
    assert format_llvm(insn) == llvm
    assert disassemble_llvm(Program([insn])) == exact + "\n"
    assert assemble_llvm(exact).instructions == (insn,)
    assert assemble_llvm(llvm).instructions == (I(0x85, imm=insn.imm),)  # helper: llvm's text is lossy


@pytest.mark.parametrize(
    ("insn", "text"),
    [
        (I(0x61, 2, 1, offset=4), "r2 = *(u32 *)(r1 + 0x4)"),
        (I(0x71, 0, 1), "r0 = *(u8 *)(r1 + 0x0)"),
        (I(0x63, 10, 1, offset=-4), "*(u32 *)(r10 - 0x4) = r1"),
        (I(0x6B, 10, 1, offset=-2), "*(u16 *)(r10 - 0x2) = r1"),
        (I(0xC3, 1, 2, imm=0x00), "lock *(u32 *)(r1 + 0x0) += r2"),
        (I(0x79, 1, 10, offset=-8), "r1 = *(u64 *)(r10 - 0x8)"),  # unchanged
        (I(0xBC, 1, 2), "w1 = w2"),  # unchanged
    ],
)
def test_format_without_alu32(insn: Instruction, text: str) -> None:
    """llvm-objdump's default cpu (v1) prints narrow loads and stores with r registers."""
    assert format_llvm(insn, alu32=False) == text
    assert assemble_llvm(text).instructions == (insn,)


def test_invalid_instruction_prints_unknown() -> None:
    assert format_llvm(I(0x00)) == "<unknown>"
    assert format_llvm(I(0x07, 1, src=3, imm=1)) == "<unknown>"  # reserved src field set


def test_every_opcode_has_a_spelling() -> None:
    """Every opcode the tables accept prints (not <unknown>) and assembles back."""
    from .llvm_corpus import sample_instructions

    insns = sample_instructions()
    assert len({i.opcode for i in insns}) == 126
    for insn in insns:
        text = disassemble_llvm(Program([insn]))
        assert "<unknown>" not in text
        assert assemble_llvm(text).instructions == (insn,), text


# --- Parsing: number forms, whitespace, comments ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "insn"),
    [
        ("r0 = 1", I(0xB7, 0, imm=1)),
        ("r0=1", I(0xB7, 0, imm=1)),
        ("  r0   =   0x1  ", I(0xB7, 0, imm=1)),
        ("r0 = 0X1F", I(0xB7, 0, imm=0x1F)),
        ("r0 = 0b101", I(0xB7, 0, imm=5)),
        ("r0 = -1", I(0xB7, 0, imm=-1)),
        ("r0 = 0xffffffff", I(0xB7, 0, imm=-1)),  # as llvm-mc: 32-bit pattern, sign-extended
        ("r0 = 4294967295", I(0xB7, 0, imm=-1)),
        ("goto +6", I(0x05, offset=6)),
        ("goto 6", I(0x05, offset=6)),
        ("goto -6", I(0x05, offset=-6)),
        ("if r1 s> r2 goto +1", I(0x6D, 1, 2, offset=1)),
        ("if r1 s >r2 goto +1", I(0x6D, 1, 2, offset=1)),
        ("if r1>r2 goto+1", I(0x2D, 1, 2, offset=1)),
        ("r1 s>>= 3", I(0xC7, 1, imm=3)),
        ("w1 s%= -3", I(0x94, 1, offset=1, imm=-3)),
        ("*(u32*)(r1+4)=r2", I(0x63, 1, 2, offset=4)),
        ("r2 = *(u32 *)(r1)", I(0x61, 2, 1)),
        ("r1 = 1 ll", I(0x18, 1, imm=1)),
        ("r1 = 0x100000000 ll", I(0x18, 1, imm=1 << 32)),
        ("r1 = -1 ll", I(0x18, 1, imm=(1 << 64) - 1)),
        ("r0 = *(u16 *)skb[r2 + 0x4]", I(0x48, src=2, imm=4)),
        ("r1 = swap32 r1", I(0xD7, 1, imm=32)),  # PREVAIL
        ("callx r5", I(0x8D, 5)),
        ("exit ; comment", I(0x95)),
        ("exit // comment", I(0x95)),
        ("exit # comment", I(0x95)),
        ("exit\r", I(0x95)),
        ("ld_pseudo r1, 1, 3", I(0x18, 1, src=1, imm=3)),
        ("ld_pseudo\tr1, 0x2, 0xfffffff9", I(0x18, 1, src=2, imm=0xFFFFFFF9)),
        ("r1 = map_fd 3", I(0x18, 1, src=1, imm=3)),  # PREVAIL
        ("r1 = map_val(3) + 8", I(0x18, 1, src=2, imm=(8 << 32) | 3)),  # PREVAIL
        ("r1 = map_fd(3)", I(0x18, 1, src=1, imm=3)),  # "ll" is optional for pseudo sources
        ("lock *(u32 *)(r1 + 0) += r2", I(0xC3, 1, 2)),
        ("r2 = atomic_fetch_add((u32 *)(r1 + 0), r2)", I(0xC3, 1, 2, imm=1)),
        ("w0 = cmpxchg32_32(r1 + 0, w0, w2)", I(0xC3, 1, 2, imm=0xF1)),
        ("r2 = xchg_64(r1, r2)", I(0xDB, 1, 2, imm=0xE1)),
    ],
)
def test_parse_variants(text: str, insn: Instruction) -> None:
    assert assemble_llvm(text).instructions == (insn,)


def test_comments_blank_lines_and_empty_text() -> None:
    text = "\n; header comment\n// another\n# and another\n\n  r0 = 0   ; set r0\n\texit\n"
    assert assemble_llvm(text).instructions == (I(0xB7, 0), I(0x95))
    assert assemble_llvm("").instructions == ()
    assert disassemble_llvm(Program([])) == ""


def test_hash_inside_kernel_call_is_not_a_comment() -> None:
    assert assemble_llvm("call bpf_map_lookup_elem#1").instructions == (I(0x85, imm=1),)


# --- Kernel verifier log ----------------------------------------------------------------------

VERIFIER_LOG = """\
0: (b7) r0 = 0
1: (61) r2 = *(u32 *)(r1 +4)
2: (85) call bpf_map_lookup_elem#1
3: (05) goto pc+6
4: (15) if r0 == 0x0 goto pc+1
5: (18) r1 = 0xffff888100a4c000
7: (95) exit
8: (bf) r1 = r10
9: (07) r1 += -8
10: (7b) *(u64 *)(r10 -8) = r1          ; R1_w=fp-8 R10=fp0 fp-8_w=fp
(db) lock *(u64 *)(r1 +0) += r2
12: (c3) r2 = atomic_fetch_add((u32 *)(r1 +0), r2)
13: (db) r3 = atomic64_fetch_xor((u64 *)(r1 -16), r3)
14: (db) r0 = atomic64_cmpxchg((u64 *)(r1 +8), r0, r3)
15: (c3) r3 = atomic_xchg((u32 *)(r1 -8), r3)
16: (85) call pc+2
17: (30) r0 = *(u8 *)skb[12]
18: (40) r0 = *(u32 *)skb[r6 + 0]
19: (d7) r1 = bswap32 r1
20: (dc) r1 = be16 r1
21: (bf) r1 = (s8)r2
22: (3f) r1 s/= r2
23: (b4) w0 = 0
24: (55) if r1 != 0xfffffff9 goto pc-3
25: (85) call kernel-function#1234
26: (06) gotol pc+100000
27: (85) call unknown#195896080
28: (62) *(u32 *)(r10 -4) = -1
29: (84) w1 = -w1
30: (6e) if w1 s> w2 goto pc+0
"""

VERIFIER_EXPECTED = [
    I(0xB7, 0),
    I(0x61, 2, 1, offset=4),
    I(0x85, imm=1),
    I(0x05, offset=6),
    I(0x15, 0, offset=1),
    I(0x18, 1, imm=0xFFFF888100A4C000),
    I(0x95),
    I(0xBF, 1, 10),
    I(0x07, 1, imm=-8),
    I(0x7B, 10, 1, offset=-8),
    I(0xDB, 1, 2),
    I(0xC3, 1, 2, imm=0x01),
    I(0xDB, 1, 3, offset=-16, imm=0xA1),
    I(0xDB, 1, 3, offset=8, imm=0xF1),
    I(0xC3, 1, 3, offset=-8, imm=0xE1),
    I(0x85, src=1, imm=2),
    I(0x30, imm=12),
    I(0x40, src=6),
    I(0xD7, 1, imm=32),
    I(0xDC, 1, imm=16),
    I(0xBF, 1, 2, offset=8),
    I(0x3F, 1, 2, offset=1),
    I(0xB4, 0),
    I(0x55, 1, offset=-3, imm=-7),
    I(0x85, src=2, imm=1234),
    I(0x06, imm=100000),
    I(0x85, imm=195896080),
    I(0x62, 10, offset=-4, imm=-1),
    I(0x84, 1),
    I(0x6E, 1, 2),
]


def test_verifier_log() -> None:
    program = assemble_llvm(VERIFIER_LOG, source="verifier.log")
    assert list(program.instructions) == VERIFIER_EXPECTED


def test_verifier_log_opcode_prefix_makes_lddw_and_is_checked() -> None:
    assert assemble_llvm("(18) r1 = 0x5").instructions == (I(0x18, 1, imm=5),)
    assert assemble_llvm("(b7) r1 = 0x5").instructions == (I(0xB7, 1, imm=5),)
    with pytest.raises(AssemblerError) as err:
        assemble_llvm("3: (61) r2 = *(u8 *)(r1 +4)")
    assert (err.value.line, err.value.column) == (1, 4)
    assert "opcode prefix (61)" in err.value.message and "(71)" in err.value.message


# --- llvm-objdump listings, labels --------------------------------------------------------------

LISTING = """
prog.o:\tfile format elf64-bpf

Disassembly of section xdp:

0000000000000000 <prog>:
       0:\t18 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00\tr1 = 0x0 ll
\t\t0000000000000000:  R_BPF_64_64\tglob
       2:\t61 11 00 00 00 00 00 00\tw1 = *(u32 *)(r1 + 0x0)
       3:\t85 10 00 00 ff ff ff ff\tcall -0x1
\t\t0000000000000018:  R_BPF_64_32\t.text
       4:\tc6 01 01 00 0b 00 00 00\tif w1 s< 0xb goto +0x1 <prog+0x30>
       5:\tb4 00 00 00 02 00 00 00\tw0 = 0x2
       6:\t95 00 00 00 00 00 00 00\texit

0000000000000038 <second>:
       7:\t95 00 00 00 00 00 00 00\texit
"""


def test_listing_uses_bytes_and_headers() -> None:
    program = assemble_llvm(LISTING)
    assert list(program.instructions) == [
        I(0x18, 1),
        I(0x61, 1, 1),
        I(0x85, src=1, imm=-1),  # the raw bytes say local call; the text cannot
        I(0xC6, 1, offset=1, imm=11),
        I(0xB4, 0, imm=2),
        I(0x95),
        I(0x95),
    ]
    assert dict(program.labels) == {0: "prog", 7: "second"}


def test_listing_big_endian_bytes() -> None:
    text = "       3:\t85 01 00 00 ff ff ff ff\tcall -0x1\n       4:\t24 00 00 00 00 00 00 03\tw0 *= 0x3\n"
    assert assemble_llvm(text).instructions == (I(0x85, src=1, imm=-1), I(0x24, imm=3))


def test_listing_unknown_line_takes_the_bytes() -> None:
    """Default-cpu llvm-objdump prints 32-bit atomics other than add as <unknown>."""
    text = "      0:\tc3 21 10 00 40 00 00 00\t<unknown>\n"
    assert assemble_llvm(text).instructions == (I(0xC3, 1, 2, offset=0x10, imm=0x40),)


def test_listing_bytes_must_match_text() -> None:
    with pytest.raises(AssemblerError) as err:
        assemble_llvm("       2:\t61 11 00 00 00 00 00 00\tw1 = *(u16 *)(r1 + 0x0)")
    assert err.value.column == 11
    assert "decode to opcode 0x61 (little-endian) but the text assembles to 0x69" in err.value.message


def test_labels_forward_backward_and_prevail_style() -> None:
    text = """
    <start>:
        r0 = 0
    loop:
        r0 += 1
        if r0 < 10 goto loop
        if r0 == r1 goto <out>
        call sub
        goto out
    out:
        exit
    sub:
        gotol start
        exit
    """
    program = assemble_llvm(text)
    assert list(program.instructions) == [
        I(0xB7, 0),
        I(0x07, 0, imm=1),
        I(0xA5, 0, offset=-2, imm=10),
        I(0x1D, 0, 1, offset=2),
        I(0x85, src=1, imm=2),
        I(0x05, offset=0),
        I(0x95),
        I(0x06, imm=-8),
        I(0x95),
    ]
    assert dict(program.labels) == {0: "start", 1: "loop", 6: "out", 7: "sub"}


def test_labels_count_lddw_as_two_slots() -> None:
    program = assemble_llvm("goto end\nr1 = 1 ll\nend: exit")
    assert program.instructions[0] == I(0x05, offset=2)
    assert dict(program.labels) == {3: "end"}


def test_disassemble_prints_labels() -> None:
    program = Program(
        [I(0xB7, 0), I(0x18, 1, imm=5), I(0x05, offset=-4), I(0x95)],
        labels={0: "entry", 1: "prog+0x8", 2: "inside", 3: "r1", 4: "has space", 5: "end"},
    )
    text = disassemble_llvm(program)
    # slot 2 is inside the lddw and "has space" cannot be written: both are left out
    assert text == "entry:\nr0 = 0x0\n<prog+0x8>:\nr1 = 0x5 ll\n<r1>:\ngoto -0x4\nexit\nend:\n"
    again = assemble_llvm(text)
    assert again == program
    assert dict(again.labels) == {0: "entry", 1: "prog+0x8", 3: "r1", 5: "end"}


def test_facade_dispatches_here() -> None:
    program = Program([I(0xB7, 0, imm=1), I(0x95)])
    assert disassemble(program) == "r0 = 0x1\nexit\n"
    assert assemble("r0 = 1\nexit", syntax="llvm") == program
    assert str(program) == "r0 = 0x1\nexit\n"


# --- Errors: typed, with line, column and what was expected -------------------------------------

ERRORS: list[tuple[str, int, int, str]] = [
    ("r11 = 1", 1, 1, "unknown register 'r11'"),
    ("r0 = r12", 1, 6, "unknown register 'r12'"),
    ("w1 += r2", 1, 7, "operand size mismatch"),
    ("r1 = w2", 1, 6, "operand size mismatch"),
    ("if w1 > r2 goto +1", 1, 9, "operand size mismatch"),
    ("goto nowhere", 1, 6, "unknown label 'nowhere'"),
    ("x: exit\nx: exit", 2, 1, "duplicate label 'x'"),
    ("r1 = 0x100000000", 1, 6, "does not fit in 32 bits"),
    ("r1 = 1 2", 1, 8, "unexpected '2'"),
    ("r0 = *(u8 *)skb[r1 + 0", 1, 23, "expected ']'"),
    ("@", 1, 1, "unexpected character '@'"),
    ("goto +0x8000", 1, 6, "out of range (-32768..32767)"),
    ("goto -0x8001", 1, 6, "out of range"),
    ("r1 = *(u32 *)(r1 + 0x8000)", 1, 18, "memory offset 32768 is out of range"),
    ("*(u64 *)(r1 + 0) = w2", 1, 20, "64-bit register"),
    ("w1 = *(u64 *)(r2 + 0)", 1, 1, "needs a 64-bit destination"),
    ("w1 = *(s8 *)(r2 + 0)", 1, 1, "needs a 64-bit destination"),
    ("r1 = *(u32 *)(w2 + 0)", 1, 15, "must be a 64-bit register"),
    ("w1 = 1 ll", 1, 1, "64-bit register"),
    ("r1 = *(u128 *)(r2 + 0)", 1, 8, "expected an access type"),
    ("r1 += ", 1, 6, "expected a register or immediate operand, found end of line"),
    ("r1 ?= 3", 1, 4, "unexpected character '?'"),
    ("r1 == 3", 1, 4, "expected an assignment operator"),
    ("if r1 >> r2 goto +1", 1, 7, "expected a comparison"),
    ("if r1 > r2 goto", 1, 16, "expected a jump offset"),
    ("if r1 > r2 jump +1", 1, 12, "expected 'goto'"),
    ("frobnicate r1", 1, 1, "expected an instruction, found 'frobnicate'"),
    ("r1 = 0x", 1, 6, "invalid number '0x'"),
    ("r1 = 12ab", 1, 6, "invalid number '12ab'"),
    ("r2 = -r3", 1, 7, "negation works in place"),
    ("w1 = le16 w1", 1, 11, "byte swaps work in place on r registers"),
    ("r1 = le8 r1", 1, 6, "expected a register, number"),
    ("w1 = (s32)w2", 1, 7, "s8 or s16 only"),
    ("r1 = (s64)r2", 1, 7, "expected a sign-extension type"),
    ("r1 = *(u8 *)skb[0]", 1, 1, "always write r0"),
    ("r0 = *(u64 *)skb[0]", 1, 8, "u8, u16 or u32"),
    ("lock *(u16 *)(r1 + 0) += r2", 1, 8, "atomic operations take u32 or u64"),
    ("lock *(u64 *)(r1 + 0) -= r2", 1, 23, "expected an atomic operator"),
    ("r3 = atomic_fetch_add((u64 *)(r1 + 0), r2)", 1, 1, "old value goes to the operand register"),
    ("r3 = atomic_fetch_nand((u64 *)(r1 + 0), r3)", 1, 6, "unknown atomic operation"),
    ("r0 = cmpxchg_64(r1 + 0, r3, r2)", 1, 25, "compares with r0"),
    ("r1 = cmpxchg_64(r1 + 0, r0, r2)", 1, 1, "returns the old value in r0"),
    ("r3 = atomic64_xchg((u32 *)(r1 + 0), r3)", 1, 21, "takes u64"),
    ("ld_pseudo r1, 9, 3", 1, 15, "unknown lddw pseudo source 9"),
    ("call", 1, 5, "expected a helper number"),
    ("call 0x100000000", 1, 6, "helper number 4294967296 is out of range"),
    ("call kfunc(1, 0x8000)", 1, 15, "out of range"),
    ("callx w1", 1, 7, "must be a 64-bit register"),
    ("r1: exit", 1, 1, "cannot be a label"),
    ("0: (61)", 1, 8, "expected an instruction after the listing prefix"),
    ("r1 = " + "9" * 100, 1, 6, "too large"),
    ("r1 = map_fd(3) ll ll", 1, 19, "unexpected 'll'"),
    ("w1 = map_fd(3) ll", 1, 1, "64-bit register"),
    ("r1 = 3 ll junk ; comment", 1, 11, "unexpected 'junk'"),
]


@pytest.mark.parametrize(("text", "line", "column", "message"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(AssemblerError) as err:
        assemble_llvm(text, source="t.s")
    e = err.value
    assert message in e.message
    assert (e.line, e.column) == (line, column), str(e)
    assert e.source == "t.s"
    assert e.text == text.split("\n")[line - 1]
    assert str(e).startswith(f"t.s:{line}:{column}: ")


def test_label_out_of_range() -> None:
    text = "goto far\n" + "r0 = 0\n" * 40000 + "far: exit\n"
    with pytest.raises(AssemblerError) as err:
        assemble_llvm(text)
    assert (err.value.line, err.value.column) == (1, 6)
    assert "use gotol" in err.value.message
    assert assemble_llvm(text.replace("goto far", "gotol far")).instructions[0] == I(0x06, imm=40000)


def test_error_reports_line_number_and_keeps_comment_text() -> None:
    with pytest.raises(AssemblerError) as err:
        assemble_llvm("r0 = 0\nr0 += r11 ; oops\nexit")
    assert (err.value.line, err.value.column) == (2, 7)
    assert err.value.text == "r0 += r11 ; oops"


def test_non_string_input_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        assemble_llvm(b"exit")  # type: ignore[arg-type]
