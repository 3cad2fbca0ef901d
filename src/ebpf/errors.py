"""The whole exception hierarchy of ``ebpf``. Foundation layer: pure, no kernel access.

Rule 1: every error a user can provoke with bad input is one of these types, never a
``struct.error``, ``IndexError`` or ``KeyError`` escaping from deep inside a parser.

Rule 2: errors carry the data a user needs (offsets, line/column, pc, errno, log) as
attributes, and a one-line ``str()`` that says what went wrong and where.

::

    BPFError
    ├── ParseError             .source, .offset
    │   ├── AssemblerError     .line, .column, .text
    │   ├── DecodeError        .index (instruction slot)
    │   ├── ELFError
    │   └── BTFError
    ├── RelocationError        .program, .insn_index
    ├── VerifierError          .source, .log, .insn_index, .errno
    ├── VMError                .pc, .insn, .address
    │   └── BudgetExceededError
    ├── SyscallError           .cmd, .errno   (also an OSError)
    ├── NotSupportedError      .feature, .min_kernel
    └── KeyNotFoundError       (also a KeyError)
"""

from __future__ import annotations

import enum
import errno as _errno
import os
from collections.abc import Sequence
from typing import Any

__all__ = [
    "AssemblerError",
    "BPFError",
    "BTFError",
    "BudgetExceededError",
    "DecodeError",
    "ELFError",
    "KernelTestRunError",
    "KeyNotFoundError",
    "NotSupportedError",
    "ParseError",
    "RelocationError",
    "SyscallError",
    "TestRunError",
    "VMError",
    "VerifierError",
    "VerifierSource",
]


class BPFError(Exception):
    """Base class of every error raised by ``ebpf``."""


class ParseError(BPFError):
    """Malformed input: bytecode, assembly text, ELF or BTF.

    Attributes:
        source: a name for the input (file name, ``"<bytes>"``, ...), or ``None``.
        offset: byte offset into the input where the problem was found, or ``None``.
    """

    def __init__(self, message: str, *, source: str | None = None, offset: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.offset = offset

    def __str__(self) -> str:
        where = []
        if self.source is not None:
            where.append(self.source)
        if self.offset is not None:
            where.append(f"offset {self.offset:#x}")
        return f"{': '.join(where)}: {self.message}" if where else self.message


class DecodeError(ParseError):
    """Raw bytecode that is not a valid instruction (unknown opcode, reserved field set, ...).

    Attributes:
        index: the instruction slot (8-byte unit) where decoding failed.
    """

    def __init__(self, message: str, *, index: int, source: str | None = None) -> None:
        super().__init__(message, source=source, offset=index * 8)
        self.index = index

    def __str__(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        return f"{prefix}instruction {self.index}: {self.message}"


class AssemblerError(ParseError):
    """Assembly text that cannot be assembled.

    Attributes:
        line: 1-based line number.
        column: 1-based column number.
        text: the offending line.
    """

    def __init__(
        self,
        message: str,
        *,
        line: int,
        column: int = 1,
        text: str = "",
        source: str | None = None,
    ) -> None:
        super().__init__(message, source=source)
        self.line = line
        self.column = column
        self.text = text

    def __str__(self) -> str:
        prefix = f"{self.source}:" if self.source else ""
        return f"{prefix}{self.line}:{self.column}: {self.message}"


class ELFError(ParseError):
    """Malformed or unsupported ELF object file."""


class BTFError(ParseError):
    """Malformed or unsupported BTF data."""


class RelocationError(BPFError):
    """A relocation (map, data, subprogram, CO-RE) could not be applied."""

    def __init__(self, message: str, *, program: str | None = None, insn_index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.program = program
        self.insn_index = insn_index

    def __str__(self) -> str:
        where = []
        if self.program is not None:
            where.append(f"program {self.program!r}")
        if self.insn_index is not None:
            where.append(f"insn {self.insn_index}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class VerifierSource(enum.Enum):
    """Which verifier produced a :class:`VerifierError`."""

    KERNEL = "kernel"
    EBPF = "ebpf"


class VerifierError(BPFError):
    """A program was rejected by a verifier (the kernel's or ours).

    ``str()`` is a one-line summary: the cause, the last log line (and the line before it
    when that adds context) and how many lines were omitted. ``format(head=..)`` /
    ``format(tail=..)`` print more; ``log`` holds every line.
    """

    def __init__(
        self,
        cause: str,
        *,
        source: VerifierSource,
        log: Sequence[str] = (),
        insn_index: int | None = None,
        errno: int | None = None,
        truncated: bool = False,
    ) -> None:
        super().__init__(cause)
        self.cause = cause
        self.source = source
        self.log: tuple[str, ...] = tuple(log)
        self.insn_index = insn_index
        self.errno = errno
        self.truncated = truncated

    def _tail_lines(self) -> list[str]:
        lines = [line for line in self.log if line.strip()]
        if not lines:
            return []
        last = lines[-1]
        # Like cilium's includePreviousLine: "processed N insns" alone says nothing.
        if len(lines) >= 2 and last.startswith(("processed ", "verification time")):
            return lines[-2:]
        return [last]

    def __str__(self) -> str:
        tail = self._tail_lines()
        text = self.cause
        if tail:
            text += ": " + ": ".join(line.strip() for line in tail)
        omitted = len([line for line in self.log if line.strip()]) - len(tail)
        if omitted > 0:
            text += f" ({omitted} line{'s' if omitted != 1 else ''} omitted)"
        if self.truncated:
            text += " (log truncated)"
        return text

    def format(self, *, head: int | None = None, tail: int | None = None) -> str:
        """Return the cause and the first ``head`` or last ``tail`` log lines (all if neither)."""
        lines = list(self.log)
        if head is not None:
            lines = lines[:head]
        elif tail is not None:
            lines = lines[-tail:] if tail else []
        return "\n".join([self.cause, *lines])


class VMError(BPFError):
    """A run-time fault in the user-space runtime (interpreter, fast tier or JIT).

    Attributes:
        pc: instruction slot index of the faulting instruction, or ``None``.
        insn: the faulting instruction, disassembled, or ``None``.
        address: the faulting address for memory faults, else ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        pc: int | None = None,
        insn: str | None = None,
        address: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.pc = pc
        self.insn = insn
        self.address = address

    def __str__(self) -> str:
        parts = []
        if self.pc is not None:
            parts.append(f"pc {self.pc}")
        if self.insn:
            parts.append(f"({self.insn})")
        prefix = " ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message


class BudgetExceededError(VMError):
    """The instruction budget of a run was exhausted (an endless or too long loop)."""


_ERRNO_HINTS = {
    _errno.EPERM: "needs CAP_BPF (and CAP_PERFMON/CAP_NET_ADMIN for some program types) or root",
    _errno.EACCES: "permission denied by the verifier or a security module",
    _errno.ENOSYS: "the kernel was built without bpf() (CONFIG_BPF_SYSCALL)",
    _errno.E2BIG: "an attribute or key/value is larger than the kernel accepts",
    _errno.ENOSPC: "no space (map full, or the verifier log buffer is too small)",
}


class SyscallError(BPFError, OSError):
    """A ``bpf()`` (or related) system call failed. Raised only from the kernel layer.

    Attributes:
        cmd: name of the command, e.g. ``"BPF_PROG_LOAD"``.
        errno: the errno value.
        hint: what to do about it, or ``None``.
    """

    def __init__(self, cmd: str, errno: int, hint: str | None = None, *, message: str | None = None) -> None:
        self.cmd = cmd
        self.hint = hint if hint is not None else _ERRNO_HINTS.get(errno)
        name = _errno.errorcode.get(errno, str(errno))
        text = message or f"{cmd}: {name} ({os.strerror(errno)})"
        if self.hint:
            text += f" — {self.hint}"
        OSError.__init__(self, errno, text)
        self.errno = errno
        self.message = text

    def __str__(self) -> str:
        return self.message


class NotSupportedError(BPFError):
    """The running kernel (or this platform) lacks a feature.

    Attributes:
        feature: a human-readable feature name.
        min_kernel: the first Linux version that has it, as ``"X.Y"``, or ``None``.
    """

    def __init__(self, feature: str, min_kernel: str | None = None, detail: str | None = None) -> None:
        self.feature = feature
        self.min_kernel = min_kernel
        self.detail = detail
        text = f"{feature} is not supported"
        if min_kernel:
            text += f" (requires Linux >= {min_kernel})"
        if detail:
            text += f": {detail}"
        super().__init__(text)


class TestRunError(BPFError):
    """``BPF_PROG_TEST_RUN`` refused its arguments or could not copy the result out.

    Attributes:
        errno: the kernel's errno for the same call (``EINVAL``, ``ENOSPC``).
        result: what the run produced (``ENOSPC``: ``data_out`` truncated), or ``None``.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, message: str, *, errno: int, result: Any = None) -> None:
        super().__init__(message)
        self.errno = errno
        self.result = result


class KernelTestRunError(SyscallError, TestRunError):  # type: ignore[misc]  # errno: int (OSError's is Optional)
    """The kernel refused a ``BPF_PROG_TEST_RUN`` (``EINVAL``, ``E2BIG``, ``ENOSPC``, ``ENODEV``).

    Raised by ``kernel.Program.test_run``: a :class:`SyscallError` (``cmd``, ``errno``, ``hint``)
    that is also the :class:`TestRunError` the user-space runtime raises for the same refusal, so
    code written for either engine catches one type and compares ``errno``. ``result`` is the
    truncated output for ``ENOSPC`` (what the kernel copied out), else ``None``.
    """

    def __init__(
        self, cmd: str, errno: int, hint: str | None = None, *, message: str | None = None, result: Any = None
    ) -> None:
        SyscallError.__init__(self, cmd, errno, hint, message=message)
        self.result = result


class KeyNotFoundError(BPFError, KeyError):
    """A map lookup or delete found no element for the key (``ENOENT``)."""

    def __init__(self, key: Any = None, message: str = "key does not exist") -> None:
        KeyError.__init__(self, key)
        self.key = key
        self.message = message

    def __str__(self) -> str:
        return self.message if self.key is None else f"{self.message}: {self.key!r}"
