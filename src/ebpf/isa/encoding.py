"""Raw bytecode encoding, decoding and validation (RFC 9669 §3). Foundation layer: pure.

Each 8-byte slot, RFC 9669 §3 ("Instruction encoding")::

     0       8      12      16              32                              64
    +--------+-------+-------+---------------+-------------------------------+
    | opcode |  dst  |  src  |    offset     |              imm              |   little-endian
    +--------+-------+-------+---------------+-------------------------------+
              regs byte = src << 4 | dst (little-endian), dst << 4 | src (big-endian)

``lddw`` (opcode 0x18) takes two slots; the second has opcode, registers and offset zero
and carries the upper 32 bits of the immediate.

Rule 1: :func:`decode` accepts only valid instructions: a known opcode, registers 0-10 where
a register is used, and every field the RFC reserves set to zero. Hence
``encode(decode(b)) == b`` for every ``b`` that decodes.

Rule 2: :func:`encode` writes whatever the :class:`Instruction` holds (so tests can build
invalid bytecode); :func:`validate` says whether it is valid.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Literal

from ebpf.errors import DecodeError
from ebpf.isa.instruction import Instruction
from ebpf.isa.opcodes import (
    ATOMIC_IMMS,
    BINARY_ALU,
    COND_JUMPS,
    MOVSX_WIDTHS_32,
    MOVSX_WIDTHS_64,
    OP_CALL,
    OP_CALLX,
    OP_EXIT,
    OP_GOTOL,
    OP_JA,
    OP_LDDW,
    SWAP_WIDTHS,
    AluOp,
    CallKind,
    InsnClass,
    JmpOp,
    Mode,
    PseudoSrc,
    Size,
    Source,
)

__all__ = ["INSN_SIZE", "MAX_REG", "ByteOrder", "decode", "encode", "validate"]

ByteOrder = Literal["little", "big"]
INSN_SIZE = 8
MAX_REG = 10

_LE = struct.Struct("<BBhi")
_BE = struct.Struct(">BBhi")


def _pack_slot(opcode: int, dst: int, src: int, offset: int, imm: int, byteorder: ByteOrder) -> bytes:
    imm32 = imm - (1 << 32) if imm >= (1 << 31) else imm
    if byteorder == "little":
        return _LE.pack(opcode, (src << 4) | dst, offset, imm32)
    return _BE.pack(opcode, (dst << 4) | src, offset, imm32)


def encode(instructions: Iterable[Instruction], byteorder: ByteOrder = "little") -> bytes:
    """Encode instructions to raw bytecode.

    Args:
        instructions: the instructions, in order.
        byteorder: ``"little"`` (default; x86-64, arm64) or ``"big"``.

    Returns:
        8 bytes per slot (16 for ``lddw``).
    """
    if byteorder not in ("little", "big"):
        raise ValueError(f"byteorder must be 'little' or 'big', not {byteorder!r}")
    out = bytearray()
    for insn in instructions:
        if insn.opcode == OP_LDDW:
            lo = insn.imm & 0xFFFFFFFF
            hi = (insn.imm >> 32) & 0xFFFFFFFF
            out += _pack_slot(insn.opcode, insn.dst, insn.src, insn.offset, lo, byteorder)
            out += _pack_slot(0, 0, 0, 0, hi, byteorder)
        else:
            out += _pack_slot(insn.opcode, insn.dst, insn.src, insn.offset, insn.imm & 0xFFFFFFFF, byteorder)
    return bytes(out)


def _unpack_slot(data: bytes | memoryview, pos: int, byteorder: ByteOrder) -> tuple[int, int, int, int, int]:
    if byteorder == "little":
        opcode, regs, offset, imm = _LE.unpack_from(data, pos)
        return opcode, regs & 0x0F, regs >> 4, offset, imm
    opcode, regs, offset, imm = _BE.unpack_from(data, pos)
    return opcode, regs >> 4, regs & 0x0F, offset, imm


def decode(
    data: bytes | bytearray | memoryview,
    byteorder: ByteOrder = "little",
    *,
    source: str | None = None,
    strict: bool = True,
) -> list[Instruction]:
    """Decode raw bytecode into instructions.

    Args:
        data: the bytecode; its length must be a multiple of 8.
        byteorder: ``"little"`` (default) or ``"big"``.
        source: a name for the input, used in error messages.
        strict: validate every instruction (the default). ``False`` accepts any opcode and
            field values, for tools that must show invalid bytecode.

    Returns:
        One :class:`Instruction` per instruction (``lddw`` is one instruction, two slots).

    Raises:
        DecodeError: the length is not a multiple of 8, an ``lddw`` is cut short, or (strict)
            an instruction is invalid. ``.index`` is the slot number.
    """
    if byteorder not in ("little", "big"):
        raise ValueError(f"byteorder must be 'little' or 'big', not {byteorder!r}")
    view = memoryview(bytes(data))
    if len(view) % INSN_SIZE:
        raise DecodeError(
            f"bytecode length {len(view)} is not a multiple of {INSN_SIZE}",
            index=len(view) // INSN_SIZE,
            source=source,
        )
    nslots = len(view) // INSN_SIZE
    out: list[Instruction] = []
    slot = 0
    while slot < nslots:
        opcode, dst, src, offset, imm = _unpack_slot(view, slot * INSN_SIZE, byteorder)
        if opcode == OP_LDDW:
            if slot + 1 >= nslots:
                raise DecodeError("lddw is missing its second slot", index=slot, source=source)
            op2, dst2, src2, off2, imm2 = _unpack_slot(view, (slot + 1) * INSN_SIZE, byteorder)
            if strict and (op2 or dst2 or src2 or off2):
                raise DecodeError(
                    "invalid lddw: second slot must have opcode, registers and offset zero",
                    index=slot + 1,
                    source=source,
                )
            insn = Instruction(opcode, dst, src, offset, (imm & 0xFFFFFFFF) | ((imm2 & 0xFFFFFFFF) << 32))
        else:
            insn = Instruction(opcode, dst, src, offset, imm)
        if strict:
            problem = validate(insn)
            if problem is not None:
                raise DecodeError(problem, index=slot, source=source)
        out.append(insn)
        slot += insn.slots
    return out


def _reg_ok(reg: int) -> bool:
    return 0 <= reg <= MAX_REG


def validate(insn: Instruction) -> str | None:
    """Check one instruction against RFC 9669 (plus ``callx`` as bpf_conformance uses it).

    Returns:
        ``None`` if valid, else a message naming the problem (the kernel's wording where it
        has one, e.g. ``"BPF_ALU uses reserved fields"``).
    """
    op = insn.opcode
    cls = op & 0x07
    if cls in (InsnClass.ALU, InsnClass.ALU64):
        return _validate_alu(insn, cls == InsnClass.ALU64)
    if cls in (InsnClass.JMP, InsnClass.JMP32):
        return _validate_jmp(insn, cls == InsnClass.JMP32)
    if cls == InsnClass.LD:
        return _validate_ld(insn)
    if cls == InsnClass.LDX:
        return _validate_ldx(insn)
    return _validate_store(insn, cls == InsnClass.STX)


def _unknown(op: int) -> str:
    return f"unknown opcode {op:#04x}"


def _regs(insn: Instruction, *, dst: bool, src: bool) -> str | None:
    if dst and not _reg_ok(insn.dst):
        return f"invalid register r{insn.dst} in dst (registers are r0-r10)"
    if src and not _reg_ok(insn.src):
        return f"invalid register r{insn.src} in src (registers are r0-r10)"
    return None


def _validate_alu(insn: Instruction, is64: bool) -> str | None:
    op = insn.opcode
    code = op & 0xF0
    x = op & Source.X
    name = "BPF_ALU64" if is64 else "BPF_ALU"
    if code in BINARY_ALU:
        if x:
            if insn.imm != 0:
                return f"{name} uses reserved fields: imm must be 0 with a register source"
            bad = _regs(insn, dst=True, src=True)
        else:
            if insn.src != 0:
                return f"{name} uses reserved fields: src must be 0 with an immediate source"
            bad = _regs(insn, dst=True, src=False)
        if bad:
            return bad
        if code in (AluOp.DIV, AluOp.MOD):
            if insn.offset not in (0, 1):
                return f"{name} uses reserved fields: offset must be 0 or 1 for div/mod"
        elif code == AluOp.MOV and x:
            allowed = MOVSX_WIDTHS_64 if is64 else MOVSX_WIDTHS_32
            if insn.offset != 0 and insn.offset not in allowed:
                widths = "/".join(str(w) for w in sorted(allowed))
                return f"{name} uses reserved fields: mov offset must be 0 or {widths} (movsx)"
        elif insn.offset != 0:
            return f"{name} uses reserved fields: offset must be 0"
        return None
    if code == AluOp.NEG:
        if x:
            return _unknown(op)
        if insn.src or insn.offset or insn.imm:
            return "BPF_NEG uses reserved fields: src, offset and imm must be 0"
        return _regs(insn, dst=True, src=False)
    if code == AluOp.END:
        if is64 and x:
            return _unknown(op)
        if insn.src or insn.offset:
            return "BPF_END uses reserved fields: src and offset must be 0"
        if insn.imm not in SWAP_WIDTHS:
            return f"BPF_END: invalid swap width {insn.imm} (must be 16, 32 or 64)"
        return _regs(insn, dst=True, src=False)
    return _unknown(op)


def _validate_jmp(insn: Instruction, is32: bool) -> str | None:
    op = insn.opcode
    code = op & 0xF0
    x = op & Source.X
    if code == JmpOp.JA:
        if op == OP_JA:
            if insn.dst or insn.src or insn.imm:
                return "BPF_JA uses reserved fields: dst, src and imm must be 0"
            return None
        if op == OP_GOTOL:
            if insn.dst or insn.src or insn.offset:
                return "BPF_JA uses reserved fields: gotol must have dst, src and offset 0"
            return None
        return _unknown(op)
    if code == JmpOp.CALL and not is32:
        if op == OP_CALL:
            if insn.dst:
                return "BPF_CALL uses reserved fields: dst must be 0"
            if insn.src not in tuple(CallKind):
                return f"BPF_CALL uses reserved fields: src {insn.src} is not a call kind (0, 1, 2)"
            if insn.offset and insn.src != CallKind.KFUNC:
                return "BPF_CALL uses reserved fields: offset must be 0"
            return None
        assert op == OP_CALLX
        if insn.src or insn.offset or insn.imm:
            return "BPF_CALL uses reserved fields: callx must have src, offset and imm 0"
        return _regs(insn, dst=True, src=False)
    if code == JmpOp.EXIT and not is32:
        if op != OP_EXIT:
            return _unknown(op)
        if insn.dst or insn.src or insn.offset or insn.imm:
            return "BPF_EXIT uses reserved fields: dst, src, offset and imm must be 0"
        return None
    if code in COND_JUMPS:
        name = "BPF_JMP32" if is32 else "BPF_JMP"
        if x:
            if insn.imm:
                return f"{name} uses reserved fields: imm must be 0 with a register source"
            return _regs(insn, dst=True, src=True)
        if insn.src:
            return f"{name} uses reserved fields: src must be 0 with an immediate source"
        return _regs(insn, dst=True, src=False)
    return _unknown(op)


def _validate_ld(insn: Instruction) -> str | None:
    op = insn.opcode
    mode = op & 0xE0
    size = op & 0x18
    if op == OP_LDDW:
        if insn.offset:
            return "invalid bpf_ld_imm64 insn: offset must be 0"
        if insn.src not in tuple(PseudoSrc):
            return f"invalid bpf_ld_imm64 insn: unknown pseudo source {insn.src}"
        return _regs(insn, dst=True, src=False)
    if mode in (Mode.ABS, Mode.IND) and size != Size.DW:
        if insn.dst or insn.offset:
            return "BPF_LD_[ABS|IND] uses reserved fields: dst and offset must be 0"
        if mode == Mode.ABS:
            if insn.src:
                return "BPF_LD_[ABS|IND] uses reserved fields: src must be 0 for BPF_ABS"
            return None
        return _regs(insn, dst=False, src=True)
    return _unknown(op)


def _validate_ldx(insn: Instruction) -> str | None:
    op = insn.opcode
    mode = op & 0xE0
    size = op & 0x18
    if mode == Mode.MEM or (mode == Mode.MEMSX and size != Size.DW):
        if insn.imm:
            return "BPF_LDX uses reserved fields: imm must be 0"
        return _regs(insn, dst=True, src=True)
    return _unknown(op)


def _validate_store(insn: Instruction, is_stx: bool) -> str | None:
    op = insn.opcode
    mode = op & 0xE0
    size = op & 0x18
    if mode == Mode.MEM:
        if is_stx:
            if insn.imm:
                return "BPF_STX uses reserved fields: imm must be 0"
            return _regs(insn, dst=True, src=True)
        if insn.src:
            return "BPF_ST uses reserved fields: src must be 0"
        return _regs(insn, dst=True, src=False)
    if is_stx and mode == Mode.ATOMIC and size in (Size.W, Size.DW):
        if insn.imm not in ATOMIC_IMMS:
            return f"BPF_ATOMIC uses invalid atomic opcode {insn.imm & 0xFFFFFFFF:#x}"
        return _regs(insn, dst=True, src=True)
    return _unknown(op)


def slot_offsets(instructions: Sequence[Instruction]) -> list[int]:
    """Slot index of each instruction (``lddw`` takes two slots)."""
    out = []
    slot = 0
    for insn in instructions:
        out.append(slot)
        slot += insn.slots
    return out
