"""Encoding, decoding and validation of raw bytecode (RFC 9669 §3)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ebpf.errors import DecodeError
from ebpf.isa import Instruction, decode, encode, validate
from ebpf.isa.ir import (
    Atomic,
    Bin,
    BinOp,
    Branch,
    Call,
    CallLocal,
    CallReg,
    Exit,
    Jump,
    LegacyLoad,
    Load,
    LoadImm64,
    Store,
    Un,
    UnOp,
    decode_ops,
)
from ebpf.isa.opcodes import AtomicOp, JmpOp, Mode, PseudoSrc


def raw(opcode: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", opcode, src << 4 | dst, off, imm)


def test_little_endian_layout() -> None:
    insn = Instruction(0x79, dst=1, src=2, offset=-8, imm=0)
    assert encode([insn]) == bytes.fromhex("7921f8ff00000000")


def test_big_endian_swaps_register_nibbles() -> None:
    insn = Instruction(0xB7, dst=1, src=0, offset=0, imm=0x12345678)
    assert encode([insn], "big") == bytes.fromhex("b710000012345678")
    assert decode(encode([insn], "big"), "big") == [insn]


def test_lddw_two_slots() -> None:
    data = raw(0x18, dst=3, imm=0x55667788) + raw(0, imm=0x11223344)
    (insn,) = decode(data)
    assert insn.imm == 0x1122334455667788 and insn.slots == 2
    assert encode([insn]) == data


def test_lddw_negative_value_normalised() -> None:
    assert Instruction(0x18, imm=-1).imm == (1 << 64) - 1


def test_lddw_truncated() -> None:
    with pytest.raises(DecodeError, match="second slot"):
        decode(raw(0x18, dst=1))


def test_lddw_second_slot_reserved() -> None:
    with pytest.raises(DecodeError, match="second slot") as info:
        decode(raw(0x18, dst=1) + raw(0, dst=1))
    assert info.value.index == 1


def test_length_not_multiple_of_8() -> None:
    with pytest.raises(DecodeError, match="multiple of 8"):
        decode(b"\x95" * 9)


@pytest.mark.parametrize(
    ("insn", "fragment"),
    [
        (raw(0x07, dst=1, off=1, imm=1), "offset must be 0"),  # add64 imm with offset
        (raw(0x07, dst=1, src=1, imm=1), "src must be 0"),
        (raw(0x0F, dst=1, src=2, imm=1), "imm must be 0"),
        (raw(0x0F, dst=1, src=2, off=1), "offset must be 0"),
        (raw(0xD4, dst=1, src=1, imm=16), "BPF_END"),
        (raw(0xD4, dst=1, imm=17), "swap width"),
        (raw(0xDF, dst=1, imm=16), "unknown opcode"),  # ALU64 | END | X is reserved
        (raw(0x85, dst=1, imm=1), "dst must be 0"),
        (raw(0x85, off=1, imm=1), "offset must be 0"),
        (raw(0x85, src=3, imm=1), "call kind"),
        (raw(0x95, dst=1), "BPF_EXIT"),
        (raw(0x95, imm=1), "BPF_EXIT"),
        (raw(0x05, dst=1), "BPF_JA"),
        (raw(0x05, imm=1), "BPF_JA"),
        (raw(0x06, off=1, imm=1), "gotol"),
        (raw(0x15, dst=1, src=1), "src must be 0"),
        (raw(0x1D, dst=1, src=2, imm=1), "imm must be 0"),
        (raw(0x79, dst=1, src=2, imm=1), "BPF_LDX"),
        (raw(0x7A, dst=1, src=2), "BPF_ST "),
        (raw(0x7B, dst=1, src=2, imm=1), "BPF_STX"),
        (raw(0x87, dst=1, imm=1), "BPF_NEG"),
        (raw(0x87, dst=1, off=1), "BPF_NEG"),
        (raw(0x8F, dst=1), "unknown opcode"),
        (raw(0xBF, dst=1, src=2, off=7), "movsx"),
        (raw(0xBC, dst=1, src=2, off=32), "movsx"),  # 32-bit movsx has no 32-bit source form
        (raw(0x3F, dst=1, src=2, off=2), "div/mod"),
        (raw(0xB7, dst=11), "invalid register r11"),
        (raw(0xBF, dst=1, src=12), "invalid register r12"),
        (raw(0xDB, dst=1, src=2, imm=0x02), "atomic"),
        (raw(0xDB, dst=1, src=2, imm=0xE0), "atomic"),  # xchg without fetch
        (raw(0x20, dst=1, imm=1), "ABS|IND"),
        (raw(0x38, imm=1), "unknown opcode"),  # ld_abs dw
        (raw(0x99, dst=1, src=2), "unknown opcode"),  # ldxsx dw
        (raw(0x96), "unknown opcode"),  # JMP32 exit
        (raw(0x86), "unknown opcode"),  # JMP32 call
        (raw(0x8D, dst=1, imm=1), "callx"),
        (raw(0xE7, dst=1), "unknown opcode"),
        (raw(0xFF), "unknown opcode"),
    ],
)
def test_reserved_fields_rejected(insn: bytes, fragment: str) -> None:
    with pytest.raises(DecodeError, match=fragment.replace("|", r"\|")):
        decode(insn)


def test_decode_error_index() -> None:
    with pytest.raises(DecodeError) as info:
        decode(raw(0xB7) + raw(0x18, dst=1) + raw(0) + raw(0xFF))
    assert info.value.index == 3
    assert "instruction 3" in str(info.value)


def test_non_strict_accepts_anything() -> None:
    assert decode(raw(0xFF, dst=15, src=15), strict=False)[0].dst == 15


# --- typed IR ---------------------------------------------------------------------------------------


def ops_of(*chunks: bytes) -> list[object]:
    return list(decode_ops(decode(b"".join(chunks))))


def test_ir_forms() -> None:
    ops = ops_of(
        raw(0x07, dst=1, imm=-1),  # r1 += -1
        raw(0x3C, dst=1, src=2, off=1),  # w1 s/= w2
        raw(0xBF, dst=1, src=2, off=16),  # r1 = (s16) r2
        raw(0x87, dst=1),
        raw(0xDC, dst=1, imm=16),
        raw(0xD7, dst=1, imm=64),
        raw(0x91, dst=1, src=2, off=3),
        raw(0x72, dst=10, off=-1, imm=7),
        raw(0xDB, dst=1, src=2, imm=0xF1),
        raw(0xC3, dst=1, src=2, imm=0x41),
        raw(0x18, dst=1, src=2, imm=5) + raw(0, imm=8),
        raw(0x28, imm=12),
        raw(0x50, src=7, imm=2),
        raw(0x1D, dst=1, src=2, off=1),
        raw(0x06, imm=-2),
        raw(0x85, imm=1),
        raw(0x85, src=1, imm=1),
        raw(0x8D, dst=3),
        raw(0x95),
        raw(0x95),
    )
    assert ops[0] == Bin(BinOp.ADD, 1, None, -1, True)
    assert ops[1] == Bin(BinOp.SDIV, 1, 2, 0, False)
    assert ops[2] == Bin(BinOp.MOVSX16, 1, 2, 0, True)
    assert ops[3] == Un(UnOp.NEG, 1, True, 64)
    assert ops[4] == Un(UnOp.BE, 1, False, 16)
    assert ops[5] == Un(UnOp.BSWAP, 1, True, 64)
    assert ops[6] == Load(1, 2, 3, 1, True)
    assert ops[7] == Store(10, -1, 1, None, 7)
    assert ops[8] == Atomic(AtomicOp.CMPXCHG, True, 1, 0, 2, 8)
    assert ops[9] == Atomic(AtomicOp.OR, True, 1, 0, 2, 4)
    assert ops[10] == LoadImm64(1, (8 << 32) | 5, PseudoSrc.MAP_VALUE)
    assert isinstance(ops[10], LoadImm64) and ops[10].imm_lo == 5 and ops[10].imm_hi == 8
    assert ops[11] is None
    assert ops[12] == LegacyLoad(Mode.ABS, 2, None, 12)
    assert ops[13] == LegacyLoad(Mode.IND, 1, 7, 2)
    assert ops[14] == Branch(JmpOp.JEQ, 1, 2, 0, True, 16)
    assert ops[15] == Jump(14, True)
    assert ops[16] == Call(1)
    assert ops[17] == CallLocal(19)
    assert ops[18] == CallReg(3)
    assert ops[19] == Exit()


@pytest.mark.parametrize(
    "chunks",
    [
        [raw(0x05, off=5), raw(0x95)],
        [raw(0x05, off=-3), raw(0x95)],
        [raw(0x05, off=1), raw(0x18, dst=1), raw(0), raw(0x95)],  # into the lddw's second slot
        [raw(0x85, src=1, imm=7), raw(0x95)],
        [raw(0x06, imm=100), raw(0x95)],
    ],
)
def test_ir_rejects_out_of_range_targets(chunks: list[bytes]) -> None:
    with pytest.raises(DecodeError, match="out of range"):
        ops_of(*chunks)


# --- properties -------------------------------------------------------------------------------------

slot = st.binary(min_size=8, max_size=8)


@settings(max_examples=2000, deadline=None)
@given(st.lists(slot, max_size=8))
def test_decode_random_bytes_only_raises_decode_error(slots: list[bytes]) -> None:
    data = b"".join(slots)
    try:
        insns = decode(data)
    except DecodeError:
        return
    assert encode(insns) == data  # encode(decode(b)) == b for every valid b
    for insn in insns:
        assert validate(insn) is None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_decode_any_length(data: bytes) -> None:
    try:
        decode(data, "big")
    except DecodeError:
        pass
