"""Lexer of the C-like eBPF assembly (grammar in :mod:`ebpf.isa.syntax_llvm`). Pure: no kernel access.

Rule 1: tokens are numbers (``0x10``, ``16``, ``0b1``), registers (``r0``-``r10``,
``w0``-``w10``), identifiers (``goto``, ``u32``, labels), angle names (``<prog+0x40>``) and
operators (longest match first: ``<<=`` before ``<``). Whitespace separates tokens and is
otherwise ignored, as in LLVM; ``s>=`` and ``s >=`` are the same operator.

Rule 2: every lexical error (a stray character, ``r11``, ``0x``) is an
:class:`~ebpf.errors.AssemblerError` with the column of the offending character.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ebpf.errors import AssemblerError

__all__ = [
    "BITS16",
    "IMM32",
    "IMM64",
    "SIGNED32",
    "Cursor",
    "Token",
    "is_angle_label",
    "is_plain_label",
    "range_text",
    "strip_comment",
]

_TOKEN_RE = re.compile(
    r"""
      (?P<ws>\s+)
    | (?P<angle><[^<>\s]+>)
    | (?P<num>[0-9][0-9A-Za-z_]*)
    | (?P<ident>[A-Za-z_.$][0-9A-Za-z_.$]*)
    | (?P<op><<=|>>=|<<|>>|==|!=|<=|>=|\+=|-=|\*=|/=|%=|\|=|&=|\^=|[=<>&+\-*/%|^()\[\],:\#])
    """,
    re.VERBOSE | re.ASCII,
)
_IDENT_RE = re.compile(r"[A-Za-z_.$][0-9A-Za-z_.$]*", re.ASCII)
_REGLIKE_RE = re.compile(r"[rw][0-9]+", re.ASCII)
_REG_RE = re.compile(r"([rw])(10|[0-9])", re.ASCII)
_ANGLE_RE = re.compile(r"[^<>\s]+", re.ASCII)

_MAX_NUMBER_CHARS = 70  # 0b + 64 binary digits, with room to spare
_NUMBER_RE = re.compile(r"0[xX][0-9a-fA-F]+|0[bB][01]+|[0-9]+", re.ASCII)

BITS16 = (-(1 << 15), (1 << 15) - 1)
SIGNED32 = (-(1 << 31), (1 << 31) - 1)
IMM32 = (-(1 << 31), (1 << 32) - 1)  # signed or unsigned 32-bit: 0xffffffff is -1
IMM64 = (-(1 << 63), (1 << 64) - 1)


def is_plain_label(name: str) -> bool:
    """True if ``name`` can be written bare (``name:``, ``goto name``)."""
    return _IDENT_RE.fullmatch(name) is not None and _REGLIKE_RE.fullmatch(name) is None


def is_angle_label(name: str) -> bool:
    """True if ``name`` can be written in angle brackets (``<name>:``, ``goto <name>``)."""
    return _ANGLE_RE.fullmatch(name) is not None and ";" not in name and "//" not in name


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "num", "ident", "reg", "op", "angle"
    text: str
    column: int  # 1-based
    value: int = 0  # number value; register number
    wide: bool = False  # register: r (64-bit) rather than w (32-bit)


def strip_comment(line: str) -> str:
    """Cut ``;`` and ``//`` comments, and ``#`` comments at line start or after whitespace."""
    cut = len(line)
    for marker in (";", "//"):
        pos = line.find(marker)
        if pos >= 0:
            cut = min(cut, pos)
    for m in re.finditer("#", line[:cut]):
        pos = m.start()
        if pos == 0 or line[pos - 1].isspace():
            cut = pos
            break
    return line[:cut]


def range_text(lo: int, hi: int) -> str:
    if hi > 0xFFFF:
        return f"{'-' if lo < 0 else ''}{abs(lo):#x}..{hi:#x}"
    return f"{lo}..{hi}"


class Cursor:
    """Tokens of one line and the position of the parser in them."""

    def __init__(self, line: str, body: str, start: int, line_no: int, source: str | None) -> None:
        self.line = line  # the whole line, for error reports
        self.body = body  # the line without its comment, which is tokenized
        self.line_no = line_no
        self.source = source
        self.tokens: list[Token] = []
        self.pos = 0
        self._tokenize(start)

    def error(self, message: str, token: Token | None = None, column: int | None = None) -> AssemblerError:
        if column is None:
            column = token.column if token is not None else self._end_column()
        return AssemblerError(message, line=self.line_no, column=column, text=self.line, source=self.source)

    def _end_column(self) -> int:
        return len(self.body.rstrip()) + 1

    def _tokenize(self, start: int) -> None:
        pos = start
        line = self.body
        while pos < len(line):
            m = _TOKEN_RE.match(line, pos)
            if m is None:
                raise self.error(f"unexpected character {line[pos]!r}", column=pos + 1)
            kind = m.lastgroup
            text = m.group()
            column = pos + 1
            pos = m.end()
            if kind == "ws":
                continue
            if kind == "num":
                self.tokens.append(Token("num", text, column, self._number(text, column)))
            elif kind == "ident" and _REGLIKE_RE.fullmatch(text):
                reg = _REG_RE.fullmatch(text)
                if reg is None:
                    raise self.error(
                        f"unknown register {text!r} (registers are r0-r10 and w0-w10)", column=column
                    )
                self.tokens.append(Token("reg", text, column, int(reg.group(2)), reg.group(1) == "r"))
            else:
                assert kind is not None
                self.tokens.append(Token(kind, text, column))

    def _number(self, text: str, column: int) -> int:
        if _NUMBER_RE.fullmatch(text) is None:
            raise self.error(f"invalid number {text!r}", column=column)
        if len(text) > _MAX_NUMBER_CHARS:  # also keeps int() clear of its digit limit
            raise self.error(f"number {text[:20]}... is too large", column=column)
        return int(text, 10) if text.isdigit() else int(text, 0)

    # -- token access --

    def peek(self, ahead: int = 0) -> Token | None:
        i = self.pos + ahead
        return self.tokens[i] if i < len(self.tokens) else None

    def at_end(self) -> bool:
        return self.pos >= len(self.tokens)

    def found(self, token: Token | None) -> str:
        return "end of line" if token is None else repr(token.text)

    def next(self, what: str) -> Token:
        token = self.peek()
        if token is None:
            raise self.error(f"expected {what}, found end of line")
        self.pos += 1
        return token

    def is_op(self, text: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token is not None and token.kind == "op" and token.text == text

    def is_ident(self, text: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token is not None and token.kind == "ident" and token.text == text

    def accept_op(self, text: str) -> Token | None:
        if self.is_op(text):
            return self.next(text)
        return None

    def expect_op(self, text: str, what: str | None = None) -> Token:
        token = self.peek()
        if token is None or token.kind != "op" or token.text != text:
            raise self.error(f"expected {what or repr(text)}, found {self.found(token)}", token)
        self.pos += 1
        return token

    def expect_ident(self, text: str) -> Token:
        token = self.peek()
        if token is None or token.kind != "ident" or token.text != text:
            raise self.error(f"expected {text!r}, found {self.found(token)}", token)
        self.pos += 1
        return token

    def expect_reg(self, what: str = "a register") -> Token:
        token = self.peek()
        if token is None or token.kind != "reg":
            raise self.error(f"expected {what}, found {self.found(token)}", token)
        self.pos += 1
        return token

    def expect_reg64(self, what: str) -> Token:
        token = self.expect_reg(what)
        if not token.wide:
            raise self.error(f"{what} must be a 64-bit register (r{token.value}), not {token.text}", token)
        return token

    def integer(self, what: str, bounds: tuple[int, int]) -> tuple[int, Token]:
        """An optionally signed number within ``bounds``; returns it and its first token."""
        first = self.peek()
        negative = False
        if self.is_op("-") or self.is_op("+"):
            negative = self.next("a sign").text == "-"
        token = self.peek()
        if token is None or token.kind != "num":
            raise self.error(f"expected {what}, found {self.found(token)}", token)
        self.pos += 1
        value = -token.value if negative else token.value
        lo, hi = bounds
        if not lo <= value <= hi:
            raise self.error(f"{what} {value} is out of range ({range_text(lo, hi)})", first)
        assert first is not None
        return value, first

    def signed_part(self, what: str, bounds: tuple[int, int]) -> int:
        """``+ N`` / ``- N`` (the sign is required), e.g. a memory offset."""
        sign = self.peek()
        if sign is None or sign.kind != "op" or sign.text not in "+-":
            raise self.error(f"expected '+' or '-', found {self.found(sign)}", sign)
        self.pos += 1
        token = self.peek()
        if token is None or token.kind != "num":
            raise self.error(f"expected {what}, found {self.found(token)}", token)
        self.pos += 1
        value = -token.value if sign.text == "-" else token.value
        lo, hi = bounds
        if not lo <= value <= hi:
            raise self.error(f"{what} {value} is out of range ({range_text(lo, hi)})", sign)
        return value

    def done(self) -> None:
        token = self.peek()
        if token is not None:
            raise self.error(f"unexpected {token.text!r} after the instruction", token)
