"""``ebpf``: the eBPF platform for Python.

Two engines behind one API: a user-space runtime (ISA, assembler, interpreter; no root, any
OS) and the Linux kernel through ``bpf(2)`` (:mod:`ebpf.kernel`).
"""

from __future__ import annotations

from ebpf import errors
from ebpf.errors import AssemblerError, BPFError, DecodeError, ParseError, VMError
from ebpf.isa import Instruction, Program, Syntax, assemble, disassemble

__version__ = "0.1.0"

__all__ = [
    "AssemblerError",
    "BPFError",
    "DecodeError",
    "Instruction",
    "ParseError",
    "Program",
    "Syntax",
    "VMError",
    "__version__",
    "assemble",
    "disassemble",
    "errors",
]
