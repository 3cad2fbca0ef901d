"""A program: a sequence of instructions with optional labels. Foundation layer: pure.

:class:`Program` is the unit the assemblers produce, the disassemblers print, the VM runs and
the kernel layer loads. ``str(program)`` is the canonical disassembly (LLVM syntax, as
``llvm-objdump -d`` prints it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, overload

from ebpf.isa.encoding import ByteOrder, decode, encode
from ebpf.isa.instruction import Instruction

if TYPE_CHECKING:
    from ebpf.isa.ir import Op

__all__ = ["Program"]


@dataclass(frozen=True, eq=False)
class Program:
    """An immutable eBPF program.

    Attributes:
        instructions: the instructions (``lddw`` is one instruction of two slots).
        labels: slot index -> label name, for display and re-assembly (not part of equality).
    """

    instructions: tuple[Instruction, ...]
    labels: Mapping[int, str] = field(default_factory=dict)

    def __init__(self, instructions: Iterable[Instruction], labels: Mapping[int, str] | None = None) -> None:
        object.__setattr__(self, "instructions", tuple(instructions))
        object.__setattr__(self, "labels", dict(labels or {}))

    @classmethod
    def from_bytes(
        cls,
        data: bytes | bytearray | memoryview,
        byteorder: ByteOrder = "little",
        *,
        source: str | None = None,
    ) -> Program:
        """Decode raw bytecode (see :func:`ebpf.isa.encoding.decode`).

        Raises:
            DecodeError: invalid bytecode.
        """
        return cls(decode(data, byteorder, source=source))

    def encode(self, byteorder: ByteOrder = "little") -> bytes:
        """Raw bytecode, 8 bytes per slot."""
        return encode(self.instructions, byteorder)

    @property
    def slots(self) -> int:
        """Length in 8-byte slots (what the kernel counts as ``insn_cnt``)."""
        return sum(insn.slots for insn in self.instructions)

    def ops(self) -> list[Op | None]:
        """The typed decoded form, indexed by slot (see :func:`ebpf.isa.ir.decode_ops`)."""
        cached: list[Op | None] | None = self.__dict__.get("_ops")
        if cached is None:
            from ebpf.isa.ir import decode_ops

            cached = decode_ops(self.instructions)
            object.__setattr__(self, "_ops", cached)
        return cached

    def __len__(self) -> int:
        return len(self.instructions)

    def __iter__(self) -> Iterator[Instruction]:
        return iter(self.instructions)

    @overload
    def __getitem__(self, index: int) -> Instruction: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Instruction, ...]: ...
    def __getitem__(self, index: int | slice) -> Instruction | tuple[Instruction, ...]:
        return self.instructions[index]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Program):
            return NotImplemented
        return self.instructions == other.instructions

    def __hash__(self) -> int:
        return hash(self.instructions)

    def __repr__(self) -> str:
        return f"Program(<{len(self.instructions)} instructions, {self.slots} slots>)"

    def __str__(self) -> str:
        from ebpf.isa.asm import disassemble

        return disassemble(self)
