"""Opcode tables of the eBPF instruction set (RFC 9669). Foundation layer: pure, no kernel access.

Rule 1: every fact about an opcode lives here, once. The encoder's validator, the decoder,
both assemblers, both disassemblers, the interpreter and the docs read these tables.

Rule 2: enum values equal the kernel UAPI numbers (``include/uapi/linux/bpf_common.h`` and
``bpf.h``); names drop the ``BPF_`` prefix.

The opcode byte, RFC 9669 §3 ("Instruction encoding")::

    ALU / ALU64 / JMP / JMP32            LD / LDX / ST / STX
    +-----------+--------+-----------+   +--------+--------+-----------+
    |  op (4)   | src(1) | class (3) |   |mode (3)|size (2)| class (3) |
    +-----------+--------+-----------+   +--------+--------+-----------+
     7         4    3     2         0     7      5 4      3 2         0
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "ATOMIC_FETCH",
    "SIZE_BYTES",
    "AluOp",
    "AtomicOp",
    "CallKind",
    "InsnClass",
    "JmpOp",
    "Mode",
    "PseudoSrc",
    "Reg",
    "Size",
    "Source",
]


class InsnClass(IntEnum):
    """RFC 9669 §3.1: the 3 low bits of the opcode."""

    LD = 0x00  # BPF_LD: non-standard loads (lddw, legacy packet access)
    LDX = 0x01  # BPF_LDX: load into register
    ST = 0x02  # BPF_ST: store immediate
    STX = 0x03  # BPF_STX: store register (and atomics)
    ALU = 0x04  # BPF_ALU: 32-bit arithmetic
    JMP = 0x05  # BPF_JMP: 64-bit jumps, calls, exit
    JMP32 = 0x06  # BPF_JMP32: 32-bit jumps
    ALU64 = 0x07  # BPF_ALU64: 64-bit arithmetic


class Source(IntEnum):
    """RFC 9669 §3.2: bit 3 of arithmetic and jump opcodes."""

    K = 0x00  # BPF_K: use the 32-bit immediate
    X = 0x08  # BPF_X: use the src register


class AluOp(IntEnum):
    """RFC 9669 §4.1 Table 5: the 4 high bits of ALU / ALU64 opcodes."""

    ADD = 0x00  # BPF_ADD
    SUB = 0x10  # BPF_SUB
    MUL = 0x20  # BPF_MUL
    DIV = 0x30  # BPF_DIV (offset 1: SDIV)
    OR = 0x40  # BPF_OR
    AND = 0x50  # BPF_AND
    LSH = 0x60  # BPF_LSH
    RSH = 0x70  # BPF_RSH
    NEG = 0x80  # BPF_NEG
    MOD = 0x90  # BPF_MOD (offset 1: SMOD)
    XOR = 0xA0  # BPF_XOR
    MOV = 0xB0  # BPF_MOV (offset 8/16/32: MOVSX)
    ARSH = 0xC0  # BPF_ARSH
    END = 0xD0  # BPF_END: byte swap


class JmpOp(IntEnum):
    """RFC 9669 §4.3 Table 6: the 4 high bits of JMP / JMP32 opcodes."""

    JA = 0x00  # BPF_JA
    JEQ = 0x10  # BPF_JEQ
    JGT = 0x20  # BPF_JGT
    JGE = 0x30  # BPF_JGE
    JSET = 0x40  # BPF_JSET
    JNE = 0x50  # BPF_JNE
    JSGT = 0x60  # BPF_JSGT
    JSGE = 0x70  # BPF_JSGE
    CALL = 0x80  # BPF_CALL
    EXIT = 0x90  # BPF_EXIT
    JLT = 0xA0  # BPF_JLT
    JLE = 0xB0  # BPF_JLE
    JSLT = 0xC0  # BPF_JSLT
    JSLE = 0xD0  # BPF_JSLE


class Size(IntEnum):
    """RFC 9669 §5.1: bits 3-4 of load and store opcodes."""

    W = 0x00  # BPF_W: 4 bytes
    H = 0x08  # BPF_H: 2 bytes
    B = 0x10  # BPF_B: 1 byte
    DW = 0x18  # BPF_DW: 8 bytes


SIZE_BYTES: dict[Size, int] = {Size.W: 4, Size.H: 2, Size.B: 1, Size.DW: 8}


class Mode(IntEnum):
    """RFC 9669 §5.1: the 3 high bits of load and store opcodes."""

    IMM = 0x00  # BPF_IMM: 64-bit immediate (lddw)
    ABS = 0x20  # BPF_ABS: legacy packet access, absolute offset
    IND = 0x40  # BPF_IND: legacy packet access, register + offset
    MEM = 0x60  # BPF_MEM: regular load/store
    MEMSX = 0x80  # BPF_MEMSX: sign-extending load
    ATOMIC = 0xC0  # BPF_ATOMIC: atomic read-modify-write


ATOMIC_FETCH = 0x01  # BPF_FETCH: RFC 9669 §5.3, atomic returns the old value


class AtomicOp(IntEnum):
    """RFC 9669 §5.3 Table 9: the ``imm`` of an atomic instruction (without BPF_FETCH)."""

    ADD = 0x00  # BPF_ADD
    OR = 0x40  # BPF_OR
    AND = 0x50  # BPF_AND
    XOR = 0xA0  # BPF_XOR
    XCHG = 0xE0  # BPF_XCHG (always with BPF_FETCH: imm 0xe1)
    CMPXCHG = 0xF0  # BPF_CMPXCHG (always with BPF_FETCH: imm 0xf1)


class PseudoSrc(IntEnum):
    """RFC 9669 §5.4 Table 10: the ``src`` field of ``lddw`` (``BPF_PSEUDO_*`` in uapi bpf.h)."""

    IMM64 = 0  # dst = imm64
    MAP_FD = 1  # BPF_PSEUDO_MAP_FD: dst = map_by_fd(imm)
    MAP_VALUE = 2  # BPF_PSEUDO_MAP_VALUE: dst = map_val(map_by_fd(imm)) + next_imm
    BTF_ID = 3  # BPF_PSEUDO_BTF_ID: dst = var_addr(imm)
    FUNC = 4  # BPF_PSEUDO_FUNC: dst = code_addr(imm), imm relative to the next insn
    MAP_IDX = 5  # BPF_PSEUDO_MAP_IDX: dst = map_by_idx(imm)
    MAP_IDX_VALUE = 6  # BPF_PSEUDO_MAP_IDX_VALUE: dst = map_val(map_by_idx(imm)) + next_imm


class CallKind(IntEnum):
    """RFC 9669 §4.3.1: the ``src`` field of ``call``."""

    HELPER = 0  # call a helper function by static id
    LOCAL = 1  # BPF_PSEUDO_CALL: program-local function, imm relative to the next insn
    KFUNC = 2  # BPF_PSEUDO_KFUNC_CALL: helper by BTF id


class Reg(IntEnum):
    """The eleven registers (RFC 9669 §2.4): R0 return value, R1-R5 arguments, R10 frame pointer."""

    R0 = 0
    R1 = 1
    R2 = 2
    R3 = 3
    R4 = 4
    R5 = 5
    R6 = 6
    R7 = 7
    R8 = 8
    R9 = 9
    R10 = 10

    FP = 10  # alias: the read-only frame pointer


# --- Opcode bytes used by name elsewhere (RFC 9669 Appendix A) ----------------------------------

OP_LDDW = InsnClass.LD | Mode.IMM | Size.DW  # 0x18
OP_CALL = InsnClass.JMP | JmpOp.CALL  # 0x85
OP_CALLX = InsnClass.JMP | JmpOp.CALL | Source.X  # 0x8d (not in RFC 9669; bpf_conformance/LLVM)
OP_EXIT = InsnClass.JMP | JmpOp.EXIT  # 0x95
OP_JA = InsnClass.JMP | JmpOp.JA  # 0x05
OP_GOTOL = InsnClass.JMP32 | JmpOp.JA  # 0x06 (gotol / ja32)

# Conditional jumps: the comparison each performs and whether it is signed.
COND_JUMPS: tuple[JmpOp, ...] = (
    JmpOp.JEQ,
    JmpOp.JGT,
    JmpOp.JGE,
    JmpOp.JSET,
    JmpOp.JNE,
    JmpOp.JSGT,
    JmpOp.JSGE,
    JmpOp.JLT,
    JmpOp.JLE,
    JmpOp.JSLT,
    JmpOp.JSLE,
)
SIGNED_JUMPS = frozenset({JmpOp.JSGT, JmpOp.JSGE, JmpOp.JSLT, JmpOp.JSLE})

# Binary ALU operations (everything except NEG and END, which are unary).
BINARY_ALU: tuple[AluOp, ...] = (
    AluOp.ADD,
    AluOp.SUB,
    AluOp.MUL,
    AluOp.DIV,
    AluOp.OR,
    AluOp.AND,
    AluOp.LSH,
    AluOp.RSH,
    AluOp.MOD,
    AluOp.XOR,
    AluOp.MOV,
    AluOp.ARSH,
)

# Valid atomic imm values: RFC 9669 §5.3 plus BPF_FETCH where allowed.
ATOMIC_IMMS: frozenset[int] = frozenset(
    {int(op) for op in (AtomicOp.ADD, AtomicOp.OR, AtomicOp.AND, AtomicOp.XOR)}
    | {int(op) | ATOMIC_FETCH for op in AtomicOp}
)

# Byte swap widths (imm of END): RFC 9669 §4.2.
SWAP_WIDTHS = frozenset({16, 32, 64})
# MOVSX source widths (offset of MOV X): RFC 9669 §4.1.
MOVSX_WIDTHS_64 = frozenset({8, 16, 32})
MOVSX_WIDTHS_32 = frozenset({8, 16})
