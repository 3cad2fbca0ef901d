"""The eBPF instruction set (RFC 9669): opcodes, instructions, encoding, typed IR, assembly.

Foundation layer: pure, no kernel access.
"""

from __future__ import annotations

from ebpf.isa.asm import Syntax, assemble, disassemble, format_instruction
from ebpf.isa.encoding import ByteOrder, decode, encode, validate
from ebpf.isa.instruction import Instruction
from ebpf.isa.ir import decode_ops
from ebpf.isa.opcodes import (
    AluOp,
    AtomicOp,
    CallKind,
    InsnClass,
    JmpOp,
    Mode,
    PseudoSrc,
    Reg,
    Size,
    Source,
)
from ebpf.isa.program import Program

__all__ = [
    "AluOp",
    "AtomicOp",
    "ByteOrder",
    "CallKind",
    "InsnClass",
    "Instruction",
    "JmpOp",
    "Mode",
    "Program",
    "PseudoSrc",
    "Reg",
    "Size",
    "Source",
    "Syntax",
    "assemble",
    "decode",
    "decode_ops",
    "disassemble",
    "encode",
    "format_instruction",
    "validate",
]
