"""Assemble and disassemble eBPF in either text syntax. Foundation layer: pure.

Two syntaxes, one :class:`Program`:

* ``Syntax.LLVM``: the C-like syntax of LLVM and the kernel verifier log
  (``r0 = 1``, ``*(u32 *)(r10 - 4) = r1``, ``if r1 > r2 goto +3``); see
  :mod:`ebpf.isa.syntax_llvm`.
* ``Syntax.UBPF``: the mnemonic syntax of uBPF, rbpf and bpf_conformance
  (``mov %r0, 1``, ``ldxw %r0, [%r1+4]``); see :mod:`ebpf.isa.syntax_ubpf`.

Rule: ``assemble(disassemble(p, syntax=s), syntax=s) == p`` for every valid program and
both syntaxes; bad text raises :class:`ebpf.errors.AssemblerError` with line and column.
"""

from __future__ import annotations

import enum

from ebpf.isa.instruction import Instruction
from ebpf.isa.program import Program

__all__ = ["Syntax", "assemble", "disassemble", "format_instruction"]


class Syntax(enum.Enum):
    """An assembly syntax."""

    LLVM = "llvm"  # LLVM / kernel C-like syntax
    UBPF = "ubpf"  # uBPF / rbpf / bpf_conformance mnemonic syntax


def assemble(text: str, syntax: Syntax | str = Syntax.LLVM, *, source: str | None = None) -> Program:
    """Assemble text into a program.

    Args:
        text: assembly source.
        syntax: :class:`Syntax` or its value (``"llvm"`` / ``"ubpf"``).
        source: a name for the input, used in error messages.

    Raises:
        AssemblerError: the text is not valid assembly (with ``.line`` and ``.column``).
    """
    syntax = Syntax(syntax)
    if syntax is Syntax.LLVM:
        from ebpf.isa.syntax_llvm import assemble_llvm

        return assemble_llvm(text, source=source)
    from ebpf.isa.syntax_ubpf import assemble_ubpf

    return assemble_ubpf(text, source=source)


def disassemble(program: Program, syntax: Syntax | str = Syntax.LLVM) -> str:
    """Disassemble a program to text that :func:`assemble` reads back to the same program."""
    syntax = Syntax(syntax)
    if syntax is Syntax.LLVM:
        from ebpf.isa.syntax_llvm import disassemble_llvm

        return disassemble_llvm(program)
    from ebpf.isa.syntax_ubpf import disassemble_ubpf

    return disassemble_ubpf(program)


def format_instruction(insn: Instruction, syntax: Syntax | str = Syntax.LLVM) -> str:
    """One instruction as text (jump offsets relative, as the syntax writes them)."""
    syntax = Syntax(syntax)
    if syntax is Syntax.LLVM:
        from ebpf.isa.syntax_llvm import format_llvm

        return format_llvm(insn)
    from ebpf.isa.syntax_ubpf import format_ubpf

    return format_ubpf(insn)
