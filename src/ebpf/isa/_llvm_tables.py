"""Spelling tables of the LLVM / kernel C-like assembly syntax. Foundation layer: pure, no kernel access.

Rule 1: these tables hold *syntax* only (how an operation is written); what an opcode
means lives in :mod:`ebpf.isa.opcodes`. The printer (:mod:`ebpf.isa.syntax_llvm`) and the
parser (:mod:`ebpf.isa._llvm_parser`) both read them, so a spelling is defined once.

Rule 2: the spellings are those of ``llvm-objdump-19 -d --mcpu=v4`` (LLVM's
``BPFInstrInfo.td``), plus the aliases the kernel verifier log prints
(``kernel/bpf/disasm.c``), marked as such.
"""

from __future__ import annotations

from ebpf.isa.opcodes import AluOp, AtomicOp, JmpOp, PseudoSrc, Size

__all__ = [
    "ALU_OP",
    "ALU_SIGNED_OP",
    "ATOMIC_FETCH_NAME",
    "ATOMIC_LOCK_OP",
    "JMP_OP",
    "LOAD_SIZE",
    "PSEUDO_NAME",
    "SIGNED_LOAD_SIZE",
]

# RFC 9669 §4.1 Table 5: binary ALU operations as compound assignments (``r1 += r2``).
ALU_OP: dict[AluOp, str] = {
    AluOp.ADD: "+=",
    AluOp.SUB: "-=",
    AluOp.MUL: "*=",
    AluOp.DIV: "/=",
    AluOp.OR: "|=",
    AluOp.AND: "&=",
    AluOp.LSH: "<<=",
    AluOp.RSH: ">>=",
    AluOp.MOD: "%=",
    AluOp.XOR: "^=",
    AluOp.MOV: "=",
    AluOp.ARSH: "s>>=",
}

# RFC 9669 §4.1: DIV and MOD with offset 1 are the signed SDIV / SMOD.
ALU_SIGNED_OP: dict[AluOp, str] = {AluOp.DIV: "s/=", AluOp.MOD: "s%="}

# RFC 9669 §4.3 Table 6: conditional jumps as comparisons (``if r1 s> r2 goto +0x3``).
JMP_OP: dict[JmpOp, str] = {
    JmpOp.JEQ: "==",
    JmpOp.JGT: ">",
    JmpOp.JGE: ">=",
    JmpOp.JSET: "&",
    JmpOp.JNE: "!=",
    JmpOp.JSGT: "s>",
    JmpOp.JSGE: "s>=",
    JmpOp.JLT: "<",
    JmpOp.JLE: "<=",
    JmpOp.JSLT: "s<",
    JmpOp.JSLE: "s<=",
}

# RFC 9669 §5.1: access widths as C types (``*(u32 *)(r1 + 0x4)``).
LOAD_SIZE: dict[Size, str] = {Size.B: "u8", Size.H: "u16", Size.W: "u32", Size.DW: "u64"}
# RFC 9669 §5.2: BPF_MEMSX sign-extending loads (``*(s16 *)``); there is no s64.
SIGNED_LOAD_SIZE: dict[Size, str] = {Size.B: "s8", Size.H: "s16", Size.W: "s32"}

# RFC 9669 §5.3 Table 9: atomic operations without BPF_FETCH (``lock *(u64 *)(r1 + 0x0) += r2``).
ATOMIC_LOCK_OP: dict[AtomicOp, str] = {
    AtomicOp.ADD: "+=",
    AtomicOp.OR: "|=",
    AtomicOp.AND: "&=",
    AtomicOp.XOR: "^=",
}
# ... and with BPF_FETCH (``r2 = atomic_fetch_add((u64 *)(r1 + 0x0), r2)``).
ATOMIC_FETCH_NAME: dict[AtomicOp, str] = {
    AtomicOp.ADD: "add",
    AtomicOp.OR: "or",
    AtomicOp.AND: "and",
    AtomicOp.XOR: "xor",
}

# RFC 9669 §5.4 Table 10: our spelling of ``lddw`` with a pseudo source (LLVM prints a lossy
# ``ld_pseudo r1, 0x2, 0x3`` that drops the second immediate): ``r1 = map_fd(0x3) ll``,
# ``r1 = map_value(0x3) + 0x8 ll``.
PSEUDO_NAME: dict[PseudoSrc, str] = {
    PseudoSrc.MAP_FD: "map_fd",
    PseudoSrc.MAP_VALUE: "map_value",
    PseudoSrc.BTF_ID: "btf_id",
    PseudoSrc.FUNC: "func",
    PseudoSrc.MAP_IDX: "map_idx",
    PseudoSrc.MAP_IDX_VALUE: "map_idx_value",
}
# Pseudo sources whose second immediate is an offset, always printed (``+ 0x0`` included).
PSEUDO_WITH_OFFSET = frozenset({PseudoSrc.MAP_VALUE, PseudoSrc.MAP_IDX_VALUE})
