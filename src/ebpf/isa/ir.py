"""The typed decoded form of a program, shared by the interpreter, fast tier, verifier and JIT.

Foundation layer: pure, no kernel access.

Rule 1: decoding happens once, here, and is tested once. Consumers ``match`` on these small
frozen dataclasses instead of testing opcode bits (PREVAIL's instruction IR).

Rule 2: an IR program is indexed by *slot*: ``ops[pc]`` is the operation at slot ``pc``, and
the second slot of an ``lddw`` holds ``None``. Jump and call targets are absolute slot indices,
checked to land on an instruction inside the program.

Immediates are kept signed as encoded (32-bit, sign-extended); consumers apply the RFC 9669
rule for the operation width (ALU64/JMP: sign-extend to 64 bits; ALU/JMP32: low 32 bits).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from ebpf.errors import DecodeError
from ebpf.isa.encoding import validate
from ebpf.isa.instruction import Instruction
from ebpf.isa.opcodes import (
    ATOMIC_FETCH,
    OP_CALLX,
    OP_GOTOL,
    OP_JA,
    OP_LDDW,
    SIZE_BYTES,
    AluOp,
    AtomicOp,
    CallKind,
    InsnClass,
    JmpOp,
    Mode,
    PseudoSrc,
    Size,
    Source,
)

__all__ = [
    "Atomic",
    "Bin",
    "BinOp",
    "Branch",
    "Call",
    "CallKfunc",
    "CallLocal",
    "CallReg",
    "Exit",
    "Jump",
    "LegacyLoad",
    "Load",
    "LoadImm64",
    "Op",
    "Store",
    "Un",
    "UnOp",
    "decode_one",
    "decode_ops",
]


class BinOp(enum.Enum):
    """Binary ALU operations, with the signed and sign-extending variants split out."""

    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    SDIV = "sdiv"
    OR = "or"
    AND = "and"
    LSH = "lsh"
    RSH = "rsh"
    MOD = "mod"
    SMOD = "smod"
    XOR = "xor"
    MOV = "mov"
    MOVSX8 = "movsx8"
    MOVSX16 = "movsx16"
    MOVSX32 = "movsx32"
    ARSH = "arsh"


class UnOp(enum.Enum):
    """Unary ALU operations (RFC 9669 §4.1 NEG, §4.2 byte swaps)."""

    NEG = "neg"
    LE = "le"  # convert to little-endian (a truncation on little-endian hosts)
    BE = "be"  # convert to big-endian
    BSWAP = "bswap"  # unconditional byte swap (ALU64 | END)


_BIN_FROM_ALU: dict[int, BinOp] = {
    AluOp.ADD: BinOp.ADD,
    AluOp.SUB: BinOp.SUB,
    AluOp.MUL: BinOp.MUL,
    AluOp.DIV: BinOp.DIV,
    AluOp.OR: BinOp.OR,
    AluOp.AND: BinOp.AND,
    AluOp.LSH: BinOp.LSH,
    AluOp.RSH: BinOp.RSH,
    AluOp.MOD: BinOp.MOD,
    AluOp.XOR: BinOp.XOR,
    AluOp.MOV: BinOp.MOV,
    AluOp.ARSH: BinOp.ARSH,
}
_MOVSX = {8: BinOp.MOVSX8, 16: BinOp.MOVSX16, 32: BinOp.MOVSX32}


@dataclass(frozen=True, slots=True)
class Bin:
    """``dst = dst <op> (src register | imm)``; 32-bit ops zero-extend the result."""

    op: BinOp
    dst: int
    src: int | None  # None: use imm
    imm: int
    is64: bool


@dataclass(frozen=True, slots=True)
class Un:
    """``dst = -dst`` or a byte swap of ``width`` bits."""

    op: UnOp
    dst: int
    is64: bool
    width: int  # 16/32/64 for swaps, 32/64 for NEG


@dataclass(frozen=True, slots=True)
class Load:
    """``dst = *(size *)(base + offset)``, zero- or sign-extended."""

    dst: int
    base: int
    offset: int
    size: int  # bytes: 1, 2, 4, 8
    signed: bool


@dataclass(frozen=True, slots=True)
class Store:
    """``*(size *)(base + offset) = src register | imm``."""

    base: int
    offset: int
    size: int
    src: int | None  # None: store imm
    imm: int


@dataclass(frozen=True, slots=True)
class Atomic:
    """RFC 9669 §5.3 atomic read-modify-write on ``*(size *)(base + offset)``."""

    op: AtomicOp
    fetch: bool
    base: int
    offset: int
    src: int
    size: int  # 4 or 8


@dataclass(frozen=True, slots=True)
class LoadImm64:
    """``lddw``: ``dst = value`` interpreted according to ``kind`` (RFC 9669 §5.4)."""

    dst: int
    value: int  # the full 64-bit immediate, unsigned
    kind: PseudoSrc

    @property
    def imm_lo(self) -> int:
        """The first slot's imm (signed 32-bit): the map fd/index, BTF id or function offset."""
        lo = self.value & 0xFFFFFFFF
        return lo - (1 << 32) if lo >> 31 else lo

    @property
    def imm_hi(self) -> int:
        """The second slot's imm (unsigned 32-bit): the offset into a map value."""
        return self.value >> 32


@dataclass(frozen=True, slots=True)
class LegacyLoad:
    """Legacy packet access (``ld_abs`` / ``ld_ind``): ``r0 = ntoh(*(size *)(skb + [src +] imm))``."""

    mode: Mode  # Mode.ABS or Mode.IND
    size: int
    src: int | None  # None for ABS
    imm: int


@dataclass(frozen=True, slots=True)
class Jump:
    """Unconditional jump (``ja`` with a 16-bit offset or ``gotol`` with a 32-bit one)."""

    target: int
    long: bool


@dataclass(frozen=True, slots=True)
class Branch:
    """Conditional jump: ``if dst <cond> (src | imm) goto target``."""

    cond: JmpOp
    dst: int
    src: int | None
    imm: int
    is64: bool
    target: int


@dataclass(frozen=True, slots=True)
class Call:
    """Call a helper function by static id."""

    helper: int


@dataclass(frozen=True, slots=True)
class CallLocal:
    """BPF-to-BPF call of a program-local function starting at slot ``target``."""

    target: int


@dataclass(frozen=True, slots=True)
class CallKfunc:
    """Call a kernel function by BTF id (``offset`` selects module BTF)."""

    btf_id: int
    offset: int


@dataclass(frozen=True, slots=True)
class CallReg:
    """``callx``: call the helper whose id is in register ``reg``."""

    reg: int


@dataclass(frozen=True, slots=True)
class Exit:
    """Return ``r0`` to the caller, or end the program."""


Op = (
    Bin
    | Un
    | Load
    | Store
    | Atomic
    | LoadImm64
    | LegacyLoad
    | Jump
    | Branch
    | Call
    | CallLocal
    | CallKfunc
    | CallReg
    | Exit
)


def decode_one(insn: Instruction, pc: int = 0) -> Op:
    """Decode one valid instruction at slot ``pc`` (jump targets become absolute slots).

    The instruction must already be valid (see :func:`ebpf.isa.encoding.validate`).
    """
    op = insn.opcode
    cls = op & 0x07
    code = op & 0xF0
    if cls in (InsnClass.ALU, InsnClass.ALU64):
        is64 = cls == InsnClass.ALU64
        if code == AluOp.NEG:
            return Un(UnOp.NEG, insn.dst, is64, 64 if is64 else 32)
        if code == AluOp.END:
            kind = UnOp.BSWAP if is64 else (UnOp.BE if op & Source.X else UnOp.LE)
            return Un(kind, insn.dst, is64, insn.imm)
        bop = _BIN_FROM_ALU[code]
        if insn.offset == 1 and code == AluOp.DIV:
            bop = BinOp.SDIV
        elif insn.offset == 1 and code == AluOp.MOD:
            bop = BinOp.SMOD
        elif code == AluOp.MOV and insn.offset:
            bop = _MOVSX[insn.offset]
        if op & Source.X:
            return Bin(bop, insn.dst, insn.src, 0, is64)
        return Bin(bop, insn.dst, None, insn.imm, is64)
    if cls in (InsnClass.JMP, InsnClass.JMP32):
        if op == OP_JA:
            return Jump(pc + 1 + insn.offset, False)
        if op == OP_GOTOL:
            return Jump(pc + 1 + insn.imm, True)
        if code == JmpOp.CALL:
            if op == OP_CALLX:
                return CallReg(insn.dst)
            if insn.src == CallKind.LOCAL:
                return CallLocal(pc + 1 + insn.imm)
            if insn.src == CallKind.KFUNC:
                return CallKfunc(insn.imm, insn.offset)
            return Call(insn.imm)
        if code == JmpOp.EXIT:
            return Exit()
        is64 = cls == InsnClass.JMP
        target = pc + 1 + insn.offset
        if op & Source.X:
            return Branch(JmpOp(code), insn.dst, insn.src, 0, is64, target)
        return Branch(JmpOp(code), insn.dst, None, insn.imm, is64, target)
    size = SIZE_BYTES[Size(op & 0x18)]
    mode = op & 0xE0
    if cls == InsnClass.LD:
        if op == OP_LDDW:
            return LoadImm64(insn.dst, insn.imm, PseudoSrc(insn.src))
        if mode == Mode.ABS:
            return LegacyLoad(Mode.ABS, size, None, insn.imm)
        return LegacyLoad(Mode.IND, size, insn.src, insn.imm)
    if cls == InsnClass.LDX:
        return Load(insn.dst, insn.src, insn.offset, size, mode == Mode.MEMSX)
    if cls == InsnClass.ST:
        return Store(insn.dst, insn.offset, size, None, insn.imm)
    if mode == Mode.ATOMIC:
        imm = insn.imm & 0xFF
        return Atomic(
            AtomicOp(imm & ~ATOMIC_FETCH), bool(imm & ATOMIC_FETCH), insn.dst, insn.offset, insn.src, size
        )
    return Store(insn.dst, insn.offset, size, insn.src, 0)


def _target(op: Op) -> int | None:
    match op:
        case Jump(target=t) | Branch(target=t) | CallLocal(target=t):
            return t
    return None


def decode_ops(instructions: Sequence[Instruction], *, source: str | None = None) -> list[Op | None]:
    """Decode a program into its typed form, indexed by slot.

    Args:
        instructions: the program (e.g. from :func:`ebpf.isa.encoding.decode` or an assembler).
        source: a name for error messages.

    Returns:
        ``ops[pc]`` for every slot ``pc``; ``None`` at the second slot of each ``lddw``.

    Raises:
        DecodeError: an invalid instruction, or a jump/call target outside the program or
            into the middle of an ``lddw`` (the kernel's "jump out of range").
    """
    ops: list[Op | None] = []
    for insn in instructions:
        pc = len(ops)
        problem = validate(insn)
        if problem is not None:
            raise DecodeError(problem, index=pc, source=source)
        ops.append(decode_one(insn, pc))
        if insn.opcode == OP_LDDW:
            ops.append(None)
    n = len(ops)
    for pc, op in enumerate(ops):
        if op is None:
            continue
        target: int | None
        if isinstance(op, LoadImm64) and op.kind == PseudoSrc.FUNC:
            target = pc + 1 + op.imm_lo
        else:
            target = _target(op)
        if target is not None and (not 0 <= target < n or ops[target] is None):
            what = "call" if isinstance(op, (CallLocal, LoadImm64)) else "jump"
            raise DecodeError(f"{what} out of range from insn {pc} to {target}", index=pc, source=source)
    return ops
