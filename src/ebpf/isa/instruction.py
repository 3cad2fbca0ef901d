"""The raw instruction value and a small builder DSL. Foundation layer: pure, no kernel access.

An :class:`Instruction` is faithful to RFC 9669 §3 encoding: the opcode byte, two register
nibbles, a signed 16-bit offset and a signed 32-bit immediate. The wide ``lddw`` (opcode
0x18) is *one* ``Instruction`` whose ``imm`` holds the whole 64-bit value; it occupies two
8-byte slots when encoded (:attr:`Instruction.slots`).

Rule 1: values are normalised on construction, so equal encodings give equal objects:
``offset`` to signed 16 bits, ``imm`` to signed 32 bits (unsigned 64 bits for ``lddw``).

Rule 2: an ``Instruction`` can hold any field values that fit its bit widths; whether they
make a *valid* instruction is :func:`ebpf.isa.encoding.validate`'s business.
"""

from __future__ import annotations

from dataclasses import dataclass

from ebpf.isa.opcodes import OP_LDDW, InsnClass

__all__ = ["Instruction"]


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


@dataclass(frozen=True, slots=True)
class Instruction:
    """One eBPF instruction (two slots for ``lddw``).

    Attributes:
        opcode: the 8-bit opcode byte.
        dst: destination register number (0-15 as encoded; 0-10 valid).
        src: source register number, or a pseudo-source code (lddw, call).
        offset: signed 16-bit offset.
        imm: signed 32-bit immediate; for ``lddw`` the 64-bit value (unsigned).
    """

    opcode: int
    dst: int = 0
    src: int = 0
    offset: int = 0
    imm: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.opcode <= 0xFF:
            raise ValueError(f"opcode {self.opcode:#x} does not fit in 8 bits")
        if not 0 <= self.dst <= 0xF or not 0 <= self.src <= 0xF:
            raise ValueError(f"register fields must be 0..15, got dst={self.dst} src={self.src}")
        if not -(1 << 15) <= self.offset < (1 << 16):
            raise ValueError(f"offset {self.offset} does not fit in 16 bits")
        object.__setattr__(self, "offset", _signed(self.offset, 16))
        if self.opcode == OP_LDDW:
            if not -(1 << 63) <= self.imm < (1 << 64):
                raise ValueError(f"lddw immediate {self.imm} does not fit in 64 bits")
            object.__setattr__(self, "imm", self.imm & ((1 << 64) - 1))
        else:
            if not -(1 << 31) <= self.imm < (1 << 32):
                raise ValueError(f"immediate {self.imm} does not fit in 32 bits")
            object.__setattr__(self, "imm", _signed(self.imm, 32))

    @property
    def cls(self) -> InsnClass:
        """The instruction class (RFC 9669 §3.1)."""
        return InsnClass(self.opcode & 0x07)

    @property
    def slots(self) -> int:
        """Number of 8-byte slots this instruction occupies when encoded (2 for lddw)."""
        return 2 if self.opcode == OP_LDDW else 1

    @property
    def is_wide(self) -> bool:
        """True for the 16-byte ``lddw``."""
        return self.opcode == OP_LDDW

    def __repr__(self) -> str:
        fields = [f"opcode={self.opcode:#04x}"]
        if self.dst:
            fields.append(f"dst={self.dst}")
        if self.src:
            fields.append(f"src={self.src}")
        if self.offset:
            fields.append(f"offset={self.offset}")
        if self.imm:
            fields.append(f"imm={self.imm:#x}" if self.is_wide else f"imm={self.imm}")
        return f"Instruction({', '.join(fields)})"
