"""The mnemonic assembly syntax of uBPF, rbpf and bpf_conformance (``mov %r0, 1``).

Pure: no kernel access. Foundation layer, read by :mod:`ebpf.isa.asm` and
:mod:`ebpf.conformance`.

Grammar, one statement per line; ``#`` starts a comment, blank lines are ignored::

    line      := (label ":")* [mnemonic [operand ("," operand)*]] ["#" comment]
    register  := "%r0" .. "%r10"
    number    := ["+" | "-"] (decimal | "0x" hex)
    memory    := "[" register [("+" | "-") number] "]"
    target    := label | number                  (a number is an offset in 8-byte slots)
    label     := [A-Za-z_.][A-Za-z0-9_.]*

Instructions (``[32]``: the 32-bit ALU / JMP32 form, RFC 9669 §4.1 and §4.3)::

    add sub mul div sdiv or and lsh rsh mod smod xor mov arsh[32]   %rd, %rs | imm
    neg[32] %rd       le16 le32 le64  be16 be32 be64  bswap16 bswap32 bswap64  %rd
    movsx832 movsx1632  movsx864 movsx1664 movsx3264  %rd, %rs     (MOVSX, RFC 9669 §4.1)
    ldxb ldxh ldxw ldxdw  ldxsb ldxsh ldxsw  %rd, [%rs+off]       (ldxs*: BPF_MEMSX)
    stb sth stw stdw [%rd+off], imm          stxb stxh stxw stxdw [%rd+off], %rs
    lock [fetch] add|or|and|xor[32] [%rd+off], %rs      lock xchg|cmpxchg[32] [%rd+off], %rs
    lddw %rd, imm64
    lddw %rd, map_fd N | btf_id N | map_idx N | func target       (pseudo sources, §5.4)
    lddw %rd, map_value N[, off] | map_idx_value N[, off]           (off: the second slot's imm)
    ldabsb ldabsh ldabsw imm                 ldindb ldindh ldindw %rs, imm   (legacy packet access)
    jeq jgt jge jset jne jsgt jsge jlt jle jslt jsle[32]  %rd, %rs | imm, target
    ja target                                ja32 target     (gotol: JMP32 | JA, imm offset)
    call N   call helper N   call local target   call runtime N[, off]   call %rN  (callx)
    exit
    .insn opcode, dst, src, offset, imm      (raw escape: any field values, printed for
                                              instructions that fail validation)

Aliases accepted but never printed: ``add64`` ... (a ``64`` suffix on ALU64 names), ``swap16``
... for ``bswap16``, ``call helper N`` for ``call N``, ``lock fetch xchg|cmpxchg``,
``call kfunc N`` for ``call runtime N``.

Rule 1: immediates follow the public bpf_conformance assembler. A 32-bit field takes a *signed*
decimal (-2147483648..2147483647) or a hex value up to 0xffffffff (``-0x...`` down to
-0x80000000); write 2147483648 as 0x80000000. ``lddw`` takes -2**63..2**64-1 in either base.
Offsets take -32768..32767 in decimal, or hex up to 0xffff.

Rule 2: a jump target is a label or a signed slot offset. As in bpf_conformance, ``exit`` names
the first ``exit`` instruction unless the program defines a label ``exit`` itself.

Rule 3: ``assemble_ubpf(disassemble_ubpf(p)) == p`` for every program; instructions that fail
:func:`ebpf.isa.encoding.validate` are printed with ``.insn``. Every error is an
:class:`~ebpf.errors.AssemblerError` with the 1-based line and column of the offending token.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, NoReturn

from ebpf.errors import AssemblerError
from ebpf.isa.encoding import slot_offsets, validate
from ebpf.isa.instruction import Instruction
from ebpf.isa.opcodes import (
    ATOMIC_FETCH,
    BINARY_ALU,
    COND_JUMPS,
    MOVSX_WIDTHS_32,
    MOVSX_WIDTHS_64,
    OP_CALL,
    OP_CALLX,
    OP_EXIT,
    OP_GOTOL,
    OP_JA,
    OP_LDDW,
    SWAP_WIDTHS,
    AluOp,
    AtomicOp,
    CallKind,
    InsnClass,
    Mode,
    PseudoSrc,
    Size,
    Source,
)
from ebpf.isa.program import Program

__all__ = ["MNEMONICS", "assemble_ubpf", "disassemble_ubpf", "format_ubpf"]

_MASK32 = 0xFFFFFFFF
_MAX_REG = 10


# --- The mnemonic table, derived from the enums of opcodes.py -----------------------------------


class _Kind(enum.Enum):
    """The operand shape of a mnemonic (what its operands are and which fields they fill)."""

    ALU = "register, register or immediate"  # RFC 9669 §4.1
    MOVSX = "register, register"  # §4.1 MOVSX: offset = source width
    UNARY = "register"  # NEG (§4.1), END (§4.2)
    LDX = "register, memory"  # §5.1
    ST = "memory, immediate"
    STX = "memory, register"  # also atomics (§5.3)
    LDDW = "register, 64-bit immediate or pseudo source"  # §5.4
    LDABS = "immediate"  # legacy packet access (§5.5)
    LDIND = "register, immediate"
    JCOND = "register, register or immediate, target"  # §4.3
    JA = "target"
    CALL = "helper id, 'local' target, 'runtime' id or register"  # §4.3.1
    EXIT = "no operands"
    RAW = "opcode, dst, src, offset, imm"


@dataclass(frozen=True)
class _Form:
    """How one mnemonic encodes: its kind, opcode (BPF_K form) and fixed offset / imm."""

    kind: _Kind
    opcode: int
    offset: int = 0
    imm: int = 0


def _build_table() -> tuple[dict[str, _Form], dict[tuple[int, int, int], str]]:
    forms: dict[str, _Form] = {}
    reverse: dict[tuple[int, int, int], str] = {}

    def add(name: str, form: _Form, *, alias: bool = False) -> None:
        assert name not in forms, name
        forms[name] = form
        if not alias:
            key = (form.opcode, form.offset, form.imm)
            assert key not in reverse, (name, reverse.get(key))
            reverse[key] = name

    # RFC 9669 §4.1 Table 5: arithmetic; ALU64 has no suffix (``64`` accepted), ALU takes ``32``.
    for cls, suffix in ((InsnClass.ALU64, ""), (InsnClass.ALU, "32")):
        is64 = cls == InsnClass.ALU64
        for op in BINARY_ALU:
            add(op.name.lower() + suffix, _Form(_Kind.ALU, cls | op))
        for op in (AluOp.DIV, AluOp.MOD):  # offset 1: signed division (§4.1)
            add("s" + op.name.lower() + suffix, _Form(_Kind.ALU, cls | op, offset=1))
        add("neg" + suffix, _Form(_Kind.UNARY, cls | AluOp.NEG))
        for width in sorted(MOVSX_WIDTHS_64 if is64 else MOVSX_WIDTHS_32):
            add(f"movsx{width}{64 if is64 else 32}", _Form(_Kind.MOVSX, cls | AluOp.MOV, offset=width))
        if is64:
            for op in BINARY_ALU:
                add(op.name.lower() + "64", _Form(_Kind.ALU, cls | op), alias=True)
            for op in (AluOp.DIV, AluOp.MOD):
                add("s" + op.name.lower() + "64", _Form(_Kind.ALU, cls | op, offset=1), alias=True)
            add("neg64", _Form(_Kind.UNARY, cls | AluOp.NEG), alias=True)
    # RFC 9669 §4.2: byte swaps; the width is the imm.
    for width in sorted(SWAP_WIDTHS):
        add(f"le{width}", _Form(_Kind.UNARY, InsnClass.ALU | Source.K | AluOp.END, imm=width))
        add(f"be{width}", _Form(_Kind.UNARY, InsnClass.ALU | Source.X | AluOp.END, imm=width))
        bswap = _Form(_Kind.UNARY, InsnClass.ALU64 | Source.K | AluOp.END, imm=width)
        add(f"bswap{width}", bswap)
        add(f"swap{width}", bswap, alias=True)
    # RFC 9669 §4.3 Table 6: jumps.
    for cls, suffix in ((InsnClass.JMP, ""), (InsnClass.JMP32, "32")):
        for jop in COND_JUMPS:
            add(jop.name.lower() + suffix, _Form(_Kind.JCOND, cls | jop))
    add("ja", _Form(_Kind.JA, OP_JA))
    add("ja32", _Form(_Kind.JA, OP_GOTOL))
    add("call", _Form(_Kind.CALL, OP_CALL))
    reverse[(OP_CALLX, 0, 0)] = "call"
    add("exit", _Form(_Kind.EXIT, OP_EXIT))
    # RFC 9669 §5.1-5.2: loads and stores; ``ldxs*`` are the sign-extending BPF_MEMSX loads.
    for size in Size:
        s = size.name.lower()
        add("ldx" + s, _Form(_Kind.LDX, InsnClass.LDX | Mode.MEM | size))
        if size != Size.DW:
            add("ldxs" + s, _Form(_Kind.LDX, InsnClass.LDX | Mode.MEMSX | size))
        add("st" + s, _Form(_Kind.ST, InsnClass.ST | Mode.MEM | size))
        add("stx" + s, _Form(_Kind.STX, InsnClass.STX | Mode.MEM | size))
    # RFC 9669 §5.3: atomics, ``lock [fetch] <op>[32]``; xchg / cmpxchg always fetch.
    for size, suffix in ((Size.DW, ""), (Size.W, "32")):
        opcode = InsnClass.STX | Mode.ATOMIC | size
        for aop in AtomicOp:
            name = aop.name.lower() + suffix
            if aop in (AtomicOp.XCHG, AtomicOp.CMPXCHG):
                form = _Form(_Kind.STX, opcode, imm=aop | ATOMIC_FETCH)
                add("lock " + name, form)
                add("lock fetch " + name, form, alias=True)
            else:
                add("lock " + name, _Form(_Kind.STX, opcode, imm=aop))
                add("lock fetch " + name, _Form(_Kind.STX, opcode, imm=aop | ATOMIC_FETCH))
    # RFC 9669 §5.4-5.5: 64-bit immediate and the legacy packet loads (uBPF / rbpf spelling).
    add("lddw", _Form(_Kind.LDDW, OP_LDDW))
    for size in (Size.W, Size.H, Size.B):
        s = size.name.lower()
        add("ldabs" + s, _Form(_Kind.LDABS, InsnClass.LD | Mode.ABS | size))
        add("ldind" + s, _Form(_Kind.LDIND, InsnClass.LD | Mode.IND | size))
    forms[".insn"] = _Form(_Kind.RAW, 0)
    return forms, reverse


_FORMS, _REVERSE = _build_table()

#: Every mnemonic the assembler accepts (aliases included), sorted.
MNEMONICS: tuple[str, ...] = tuple(sorted(_FORMS))

# Keywords inside operands, from the enums (bpf_conformance calls kfunc calls "runtime").
_CALL_KINDS: dict[str, CallKind] = {"helper": CallKind.HELPER, "local": CallKind.LOCAL}
_CALL_KINDS.update(runtime=CallKind.KFUNC, kfunc=CallKind.KFUNC)
_PSEUDO_KINDS: dict[str, PseudoSrc] = {k.name.lower(): k for k in PseudoSrc if k != PseudoSrc.IMM64}
_VALUE_KINDS = frozenset({PseudoSrc.MAP_VALUE, PseudoSrc.MAP_IDX_VALUE})
_ATOMIC_NAMES = [op.name.lower() for op in AtomicOp]


def _insn_key(insn: Instruction) -> tuple[int, int, int]:
    """The ``(opcode, offset, imm)`` key of :data:`_REVERSE` for a valid instruction."""
    op = insn.opcode
    cls = op & 0x07
    code = op & 0xF0
    if cls in (InsnClass.ALU, InsnClass.ALU64):
        if code == AluOp.END:
            return (op, 0, insn.imm)
        if code in (AluOp.DIV, AluOp.MOD) or (code == AluOp.MOV and op & Source.X):
            return (op & ~Source.X, insn.offset, 0)
        return (op & ~Source.X, 0, 0)
    if cls in (InsnClass.JMP, InsnClass.JMP32):
        return (op & ~Source.X, 0, 0) if code in COND_JUMPS else (op, 0, 0)
    if cls == InsnClass.STX and op & 0xE0 == Mode.ATOMIC:
        return (op, 0, insn.imm)
    return (op, 0, 0)


# --- Formatting -----------------------------------------------------------------------------------


def _signed32(value: int) -> int:
    value &= _MASK32
    return value - (1 << 32) if value >> 31 else value


def _num(value: int) -> str:
    """A number as written in the output: small ones in decimal, others in hex."""
    return str(value) if -0x1000 < value < 0x1000 else hex(value)


def _imm32(value: int) -> str:
    """A 32-bit immediate: decimal when small, else hex of its bit pattern (Rule 1 reads both)."""
    return str(value) if -0x1000 < value < 0x1000 else hex(value & _MASK32)


def _reg(n: int) -> str:
    return f"%r{n}"


def _mem(base: int, offset: int) -> str:
    return f"[%r{base}{offset:+d}]" if offset else f"[%r{base}]"


def _relative(offset: int) -> str:
    return f"{offset:+d}"


def _rel_target(insn: Instruction) -> int | None:
    """The pc-relative target offset of a valid jump, local call or ``lddw func``, else None."""
    op = insn.opcode
    if op & 0x07 in (InsnClass.JMP, InsnClass.JMP32):
        if op & 0xF0 in COND_JUMPS or op == OP_JA:
            return insn.offset
        if op == OP_GOTOL or (op == OP_CALL and insn.src == CallKind.LOCAL):
            return insn.imm
    if op == OP_LDDW and insn.src == PseudoSrc.FUNC and insn.imm >> 32 == 0:
        return _signed32(insn.imm)
    return None


def _format_raw(insn: Instruction) -> str:
    imm = _num(insn.imm) if insn.is_wide else _imm32(insn.imm)
    return f".insn {insn.opcode:#04x}, {insn.dst}, {insn.src}, {insn.offset}, {imm}"


def _format(insn: Instruction, target: str | None) -> str:
    if validate(insn) is not None:
        return _format_raw(insn)
    name = _REVERSE[_insn_key(insn)]
    kind = _FORMS[name].kind
    rel = _rel_target(insn)
    where = target if target is not None else _relative(rel) if rel is not None else ""
    is_x = bool(insn.opcode & Source.X)
    dst = _reg(insn.dst)
    if kind is _Kind.ALU:
        return f"{name} {dst}, {_reg(insn.src) if is_x else _imm32(insn.imm)}"
    if kind is _Kind.MOVSX:
        return f"{name} {dst}, {_reg(insn.src)}"
    if kind is _Kind.UNARY:
        return f"{name} {dst}"
    if kind is _Kind.LDX:
        return f"{name} {dst}, {_mem(insn.src, insn.offset)}"
    if kind is _Kind.ST:
        return f"{name} {_mem(insn.dst, insn.offset)}, {_imm32(insn.imm)}"
    if kind is _Kind.STX:
        return f"{name} {_mem(insn.dst, insn.offset)}, {_reg(insn.src)}"
    if kind is _Kind.JCOND:
        return f"{name} {dst}, {_reg(insn.src) if is_x else _imm32(insn.imm)}, {where}"
    if kind is _Kind.JA:
        return f"{name} {where}"
    if kind is _Kind.LDABS:
        return f"{name} {_imm32(insn.imm)}"
    if kind is _Kind.LDIND:
        return f"{name} {_reg(insn.src)}, {_imm32(insn.imm)}"
    if kind is _Kind.EXIT:
        return name
    if kind is _Kind.CALL:
        if insn.opcode == OP_CALLX:
            return f"call {dst}"
        if insn.src == CallKind.LOCAL:
            return f"call local {where}"
        if insn.src == CallKind.KFUNC:
            return f"call runtime {_imm32(insn.imm)}" + (f", {insn.offset}" if insn.offset else "")
        return f"call {_imm32(insn.imm)}"
    assert kind is _Kind.LDDW, kind
    kind_src = PseudoSrc(insn.src)
    if kind_src == PseudoSrc.IMM64:
        return f"lddw {dst}, {_num(insn.imm)}"
    keyword = kind_src.name.lower()
    lo, hi = insn.imm & _MASK32, insn.imm >> 32
    if kind_src in _VALUE_KINDS:
        return f"lddw {dst}, {keyword} {_num(lo)}" + (f", {_num(hi)}" if hi else "")
    if kind_src == PseudoSrc.FUNC and rel is not None:
        return f"lddw {dst}, func {where}"
    return f"lddw {dst}, {keyword} {_num(insn.imm)}"


def format_ubpf(insn: Instruction) -> str:
    """One instruction in uBPF syntax, with pc-relative targets written as ``+N`` / ``-N``.

    Args:
        insn: any instruction; one that fails :func:`ebpf.isa.encoding.validate` is printed
            as ``.insn opcode, dst, src, offset, imm``.

    Returns:
        The text, e.g. ``"ldxw %r0, [%r1+4]"``; :func:`assemble_ubpf` reads it back.

    >>> format_ubpf(Instruction(0x61, dst=0, src=1, offset=4))
    'ldxw %r0, [%r1+4]'
    """
    return _format(insn, None)


_LABEL_RE = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*", re.ASCII)


def disassemble_ubpf(program: Program) -> str:
    """A program as uBPF assembly that :func:`assemble_ubpf` reads back to an equal program.

    Jump, local call, ``ja32`` and ``lddw func`` targets that land on an instruction (or just
    past the last one) get labels: the names in ``program.labels`` where they are valid label
    names, else ``L<slot>``. Other targets are written as ``+N`` / ``-N`` slot offsets.

    Returns:
        One line per label and per instruction, newline-terminated ("" for no instructions).
    """
    insns = program.instructions
    starts = slot_offsets(insns)
    total = program.slots
    anchors = set(starts) | {total}
    names: dict[int, str] = {}
    used: set[str] = set()
    for slot, name in sorted(program.labels.items()):
        if slot in anchors and slot not in names and name not in used and _LABEL_RE.fullmatch(name):
            names[slot] = name
            used.add(name)
    targets: list[int | None] = []
    for slot, insn in zip(starts, insns):
        rel = _rel_target(insn) if validate(insn) is None else None
        target = None if rel is None else slot + rel + 1
        if target is not None and target in anchors:
            if target not in names:
                name = f"L{target}"
                suffix = 0
                while name in used:
                    suffix += 1
                    name = f"L{target}_{suffix}"
                names[target] = name
                used.add(name)
            targets.append(target)
        else:
            targets.append(None)
    lines: list[str] = []
    for slot, insn, target in zip(starts, insns, targets):
        if slot in names:
            lines.append(f"{names[slot]}:")
        lines.append(_format(insn, None if target is None else names[target]))
    if total in names:
        lines.append(f"{names[total]}:")
    return "".join(line + "\n" for line in lines)


# --- Lexing ---------------------------------------------------------------------------------------


class _Tok(NamedTuple):
    kind: str  # "reg", "num", "ident", "punct", "bad"
    text: str
    col: int  # 1-based


_TOKEN_RE = re.compile(
    r"(?P<space>\s+)"
    r"|(?P<reg>%[A-Za-z0-9_]*)"
    r"|(?P<num>[+-]?(?:0[xX][0-9A-Fa-f]+|[0-9]+)(?![A-Za-z0-9_.]))"
    r"|(?P<ident>[A-Za-z_.][A-Za-z0-9_.]*)"
    r"|(?P<bad>[0-9][A-Za-z0-9_.]*)"
    r"|(?P<punct>[,\[\]:+-])",
    re.ASCII,
)


class _Line:
    """One source line being parsed: raises errors that point into it."""

    def __init__(self, number: int, text: str, source: str | None) -> None:
        self.number = number
        self.text = text
        self.source = source

    def error(self, message: str, column: int) -> NoReturn:
        raise AssemblerError(message, line=self.number, column=column, text=self.text, source=self.source)

    def tokens(self) -> list[_Tok]:
        code = self.text.split("#", 1)[0]
        out: list[_Tok] = []
        pos = 0
        while pos < len(code):
            m = _TOKEN_RE.match(code, pos)
            if m is None:
                self.error(f"unexpected character {code[pos]!r}", pos + 1)
            kind = m.lastgroup
            assert kind is not None
            if kind == "bad":
                self.error(f"invalid number {m.group()!r}", pos + 1)
            if kind != "space":
                out.append(_Tok(kind, m.group(), pos + 1))
            pos = m.end()
        return out


# --- Operand parsers ------------------------------------------------------------------------------


def _describe(tok: _Tok) -> str:
    return repr(tok.text)


def _parse_int(line: _Line, tok: _Tok, bits: int, what: str, *, unsigned_decimal: bool = False) -> int:
    """A number token checked against Rule 1 for a field of ``bits`` bits."""
    if tok.kind != "num":
        line.error(f"expected a number for the {what}, found {_describe(tok)}", tok.col)
    text = tok.text
    body = text.lstrip("+-")
    is_hex = body[:2] in ("0x", "0X")
    value = int(body, 16 if is_hex else 10)
    if text.startswith("-"):
        value = -value
    low = -(1 << (bits - 1))
    high_dec = (1 << bits) - 1 if unsigned_decimal else (1 << (bits - 1)) - 1
    high = (1 << bits) - 1 if is_hex else high_dec
    if not low <= value <= high:
        line.error(
            f"{what} {text} is out of range for a {bits}-bit field "
            f"(decimal {low}..{high_dec}, hex up to {hex((1 << bits) - 1)})",
            tok.col,
        )
    return value


def _parse_reg(line: _Line, tok: _Tok) -> int:
    if tok.kind != "reg":
        line.error(f"expected a register (%r0-%r10), found {_describe(tok)}", tok.col)
    m = re.fullmatch(r"%r([0-9]+)", tok.text)
    if m is None or int(m.group(1)) > _MAX_REG:
        line.error(f"invalid register {tok.text!r} (registers are %r0-%r10)", tok.col)
    return int(m.group(1))


def _single(line: _Line, group: Sequence[_Tok], what: str) -> _Tok:
    if len(group) > 1:
        line.error(f"unexpected {_describe(group[1])} after {what}", group[1].col)
    return group[0]


def _reg_operand(line: _Line, group: Sequence[_Tok]) -> int:
    return _parse_reg(line, _single(line, group, "the register"))


def _imm_operand(line: _Line, group: Sequence[_Tok], bits: int = 32) -> int:
    return _parse_int(line, _single(line, group, "the immediate"), bits, "immediate")


def _reg_or_imm(line: _Line, group: Sequence[_Tok]) -> tuple[int | None, int]:
    """``(register, 0)`` or ``(None, imm)``."""
    tok = _single(line, group, "the operand")
    if tok.kind == "reg":
        return _parse_reg(line, tok), 0
    if tok.kind != "num":
        line.error(f"expected a register or an immediate, found {_describe(tok)}", tok.col)
    return None, _parse_int(line, tok, 32, "immediate")


def _mem_operand(line: _Line, group: Sequence[_Tok]) -> tuple[int, int]:
    """``[%rN]``, ``[%rN+off]`` or ``[%rN-off]`` -> ``(register, offset)``."""
    first = group[0]
    if first.text != "[":
        line.error(f"expected a memory operand like [%r1+8], found {_describe(first)}", first.col)
    toks = iter(group[1:])
    end = _Tok("punct", "", first.col + 1)

    def take() -> _Tok:
        nonlocal end
        tok = next(toks, None)
        if tok is None:
            line.error("unterminated memory operand: expected ']'", end.col + len(end.text))
        end = tok
        return tok

    reg = _parse_reg(line, take())
    tok = take()
    offset = 0
    if tok.kind == "num" and tok.text[0] in "+-":
        offset = _parse_int(line, tok, 16, "offset")
        tok = take()
    elif tok.text in ("+", "-"):
        number = take()
        if number.kind != "num" or number.text[0] in "+-":
            line.error(f"expected an offset after {tok.text!r}, found {_describe(number)}", number.col)
        offset = _parse_int(line, number._replace(text=tok.text + number.text), 16, "offset")
        tok = take()
    if tok.text != "]":
        line.error(f"expected '+', '-' or ']' in memory operand, found {_describe(tok)}", tok.col)
    extra = next(toks, None)
    if extra is not None:
        line.error(f"unexpected {_describe(extra)} after memory operand", extra.col)
    return reg, offset


@dataclass(frozen=True)
class _Ref:
    """A label reference to resolve once all labels are known."""

    token: _Tok
    field: str  # "offset", "imm" or "func" (lddw func: low 32 bits of the 64-bit imm)
    bits: int
    line: _Line


def _target(line: _Line, group: Sequence[_Tok], bits: int, field: str) -> int | _Ref:
    """A label (resolved later) or a slot offset."""
    tok = _single(line, group, "the target")
    if tok.kind == "ident":
        return _Ref(tok, field, bits, line)
    if tok.kind != "num":
        line.error(f"expected a label or a +N/-N slot offset, found {_describe(tok)}", tok.col)
    return _parse_int(line, tok, bits, "jump offset")


# --- Statement parsing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stmt:
    insn: Instruction
    ref: _Ref | None = None


def _split_operands(line: _Line, toks: Sequence[_Tok]) -> list[list[_Tok]]:
    groups: list[list[_Tok]] = [[]]
    for tok in toks:
        if tok.text == ",":
            if not groups[-1]:
                line.error("expected an operand before ','", tok.col)
            groups.append([])
        else:
            groups[-1].append(tok)
    if not groups[-1]:
        if len(groups) == 1:
            return []
        line.error("expected an operand after ','", toks[-1].col + 1)
    return groups


def _mnemonic(line: _Line, toks: Sequence[_Tok]) -> tuple[str, _Tok, int]:
    """The (possibly two- or three-word) mnemonic, its first token and where operands start."""
    head = toks[0]
    if head.kind != "ident":
        line.error(f"expected a mnemonic or a label, found {_describe(head)}", head.col)
    if head.text != "lock":
        return head.text, head, 1
    words = ["lock"]
    i = 1
    if i < len(toks) and toks[i].text == "fetch":
        words.append("fetch")
        i += 1
    if i >= len(toks) or toks[i].kind != "ident":
        line.error(
            "'lock' needs an atomic operation: lock [fetch] "
            + "|".join(_ATOMIC_NAMES)
            + "[32] [%rd+off], %rs",
            head.col if i >= len(toks) else toks[i].col,
        )
    name = " ".join([*words, toks[i].text])
    if name not in _FORMS:
        line.error(
            f"unknown atomic operation {toks[i].text!r} (expected one of {', '.join(_ATOMIC_NAMES)}, with 32 for 32-bit)",
            toks[i].col,
        )
    return name, head, i + 1


def _expect_count(
    line: _Line, name: str, head: _Tok, groups: Sequence[Sequence[_Tok]], counts: Sequence[int]
) -> None:
    if len(groups) in counts:
        return
    want = " or ".join(str(c) for c in counts)
    plural = "" if counts == (1,) else "s"
    desc = _FORMS[name].kind.value
    message = f"'{name}' expects {want} operand{plural} ({desc}), found {len(groups)}"
    if len(groups) > max(counts):
        line.error(message, groups[max(counts)][0].col)
    for group in groups:  # too few: a forgotten comma reads better than a count
        ends = [i for i, tok in enumerate(group) if tok.text == "]"] if group[0].text == "[" else [0]
        if group[0].kind in ("reg", "num", "punct") and ends and ends[0] + 1 < len(group):
            extra = group[ends[0] + 1]
            line.error(f"expected ',' before {_describe(extra)}", extra.col)
    line.error(message, head.col)


def _parse_statement(line: _Line, toks: Sequence[_Tok]) -> _Stmt:
    name, head, start = _mnemonic(line, toks)
    form = _FORMS.get(name)
    if form is None:
        close = difflib.get_close_matches(name, MNEMONICS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        line.error(f"unknown mnemonic {name!r}{hint}", head.col)
    groups = _split_operands(line, toks[start:])
    kind = form.kind
    handler = _HANDLERS[kind]
    _expect_count(line, name, head, groups, _COUNTS[kind])
    return handler(line, form, groups)


def _h_alu(line: _Line, form: _Form, g: list[list[_Tok]]) -> _Stmt:
    dst = _reg_operand(line, g[0])
    src, imm = _reg_or_imm(line, g[1])
    if src is None:
        return _Stmt(Instruction(form.opcode, dst, 0, form.offset, imm))
    return _Stmt(Instruction(form.opcode | Source.X, dst, src, form.offset, 0))


def _h_movsx(line: _Line, form: _Form, g: list[list[_Tok]]) -> _Stmt:
    dst = _reg_operand(line, g[0])
    tok = g[1][0]
    if tok.kind != "reg":
        line.error(f"movsx takes a source register, found {_describe(tok)}", tok.col)
    return _Stmt(Instruction(form.opcode | Source.X, dst, _reg_operand(line, g[1]), form.offset, 0))


def _h_unary(line: _Line, form: _Form, g: list[list[_Tok]]) -> _Stmt:
    return _Stmt(Instruction(form.opcode, _reg_operand(line, g[0]), 0, 0, form.imm))


def _h_ldx(line: _Line, form: _Form, g: list[list[_Tok]]) -> _Stmt:
    dst = _reg_operand(line, g[0])
    src, offset = _mem_operand(line, g[1])
    return _Stmt(Instruction(form.opcode, dst, src, offset, 0))


def _h_st(line: _Line, form: _Form, g: list[list[_Tok]]) -> _Stmt:
    dst, offset = _mem_operand(line, g[0])
    return _Stmt(Instruction(form.opcode, dst, 0, offset, _imm_operand(line, g[1])))


def _h_stx(line: _Line, form: _Form, g: list[list[_Tok]]) -> _Stmt:
    dst, offset = _mem_operand(line, g[0])
    return _Stmt(Instruction(form.opcode, dst, _reg_operand(line, g[1]), offset, form.imm))


def _h_lddw(line: _Line, form: _Form, g: list[list[_Tok]]) -> _Stmt:
    dst = _reg_operand(line, g[0])
    first = g[1][0]
    if first.kind == "num":
        if len(g) > 2:
            line.error(
                "unexpected third operand: only map_value and map_idx_value take an offset", g[2][0].col
            )
        imm = _parse_int(line, _single(line, g[1], "the immediate"), 64, "immediate", unsigned_decimal=True)
        return _Stmt(Instruction(form.opcode, dst, 0, 0, imm))
    kind = _PSEUDO_KINDS.get(first.text) if first.kind == "ident" else None
    if kind is None:
        line.error(
            f"expected a 64-bit immediate or one of {', '.join(_PSEUDO_KINDS)}, found {_describe(first)}",
            first.col,
        )
    if len(g[1]) < 2:
        line.error(f"expected a value after {first.text!r}", first.col + len(first.text))
    rest = g[1][1:]
    if len(g) > 2 and kind not in _VALUE_KINDS:
        line.error(f"unexpected third operand: {first.text} takes no offset", g[2][0].col)
    if kind in _VALUE_KINDS:
        lo = _imm_operand(line, rest) & _MASK32
        hi = _imm_operand(line, g[2]) & _MASK32 if len(g) > 2 else 0
        return _Stmt(Instruction(form.opcode, dst, int(kind), 0, lo | hi << 32))
    tok = _single(line, rest, "the value")
    if kind == PseudoSrc.FUNC and (tok.kind == "ident" or tok.text[0] in "+-"):
        value = _target(line, rest, 32, "func")
        if isinstance(value, _Ref):
            return _Stmt(Instruction(form.opcode, dst, int(kind), 0, 0), value)
        return _Stmt(Instruction(form.opcode, dst, int(kind), 0, value & _MASK32))
    imm = _parse_int(line, tok, 64, "immediate", unsigned_decimal=True)
    return _Stmt(Instruction(form.opcode, dst, int(kind), 0, imm))


def _h_ldabs(line: _Line, form: _Form, g: list[list[_Tok]]) -> _Stmt:
    return _Stmt(Instruction(form.opcode, 0, 0, 0, _imm_operand(line, g[0])))


def _h_ldind(line: _Line, form: _Form, g: list[list[_Tok]]) -> _Stmt:
    src = _reg_operand(line, g[0])
    return _Stmt(Instruction(form.opcode, 0, src, 0, _imm_operand(line, g[1])))


def _jump(opcode: int, field: str, value: int | _Ref, **fields: int) -> _Stmt:
    if isinstance(value, _Ref):
        return _Stmt(Instruction(opcode, **fields), value)
    return _Stmt(Instruction(opcode, **fields, **{field: value}))


def _h_jcond(line: _Line, form: _Form, g: list[list[_Tok]]) -> _Stmt:
    dst = _reg_operand(line, g[0])
    src, imm = _reg_or_imm(line, g[1])
    target = _target(line, g[2], 16, "offset")
    if src is None:
        return _jump(form.opcode, "offset", target, dst=dst, imm=imm)
    return _jump(form.opcode | Source.X, "offset", target, dst=dst, src=src)


def _h_ja(line: _Line, form: _Form, g: list[list[_Tok]]) -> _Stmt:
    field, bits = ("imm", 32) if form.opcode == OP_GOTOL else ("offset", 16)
    return _jump(form.opcode, field, _target(line, g[0], bits, field))


def _h_call(line: _Line, form: _Form, g: list[list[_Tok]]) -> _Stmt:
    group = g[0]
    first = group[0]
    if len(group) == 1 and len(g) == 1:
        if first.kind == "reg":
            return _Stmt(Instruction(OP_CALLX, _parse_reg(line, first)))
        if first.kind == "num":
            return _Stmt(Instruction(form.opcode, imm=_parse_int(line, first, 32, "helper id")))
    kind = _CALL_KINDS.get(first.text) if first.kind == "ident" else None
    if kind is None:
        line.error(
            f"expected a helper id, 'local' and a target, 'runtime' and an id, or a register, "
            f"found {_describe(first)}",
            first.col,
        )
    if len(group) < 2:
        what = "a target" if kind == CallKind.LOCAL else "an id"
        line.error(f"expected {what} after {first.text!r}", first.col + len(first.text))
    if len(g) > 1 and kind != CallKind.KFUNC:
        line.error("unexpected second operand: only 'call runtime' takes an offset", g[1][0].col)
    rest = group[1:]
    if kind == CallKind.LOCAL:
        return _jump(form.opcode, "imm", _target(line, rest, 32, "imm"), src=int(kind))
    tok = _single(line, rest, "the id")
    if kind == CallKind.HELPER and tok.kind == "reg":
        return _Stmt(Instruction(OP_CALLX, _parse_reg(line, tok)))
    imm = _parse_int(line, tok, 32, "helper id" if kind == CallKind.HELPER else "BTF id")
    offset = _parse_int(line, _single(line, g[1], "the offset"), 16, "offset") if len(g) > 1 else 0
    return _Stmt(Instruction(form.opcode, 0, int(kind), offset, imm))


def _h_exit(line: _Line, form: _Form, g: list[list[_Tok]]) -> _Stmt:
    return _Stmt(Instruction(form.opcode))


def _h_raw(line: _Line, form: _Form, g: list[list[_Tok]]) -> _Stmt:
    toks = [_single(line, group, "the field") for group in g]
    fields = []
    for tok, what, high in zip(toks[:3], ("opcode", "dst", "src"), (0xFF, 0xF, 0xF)):
        value = _parse_int(line, tok, 32, what)
        if not 0 <= value <= high:
            line.error(f"{what} {tok.text} is out of range (0..{high})", tok.col)
        fields.append(value)
    offset = _parse_int(line, toks[3], 16, "offset")
    wide = fields[0] == OP_LDDW
    imm = _parse_int(line, toks[4], 64 if wide else 32, "immediate", unsigned_decimal=wide)
    return _Stmt(Instruction(fields[0], fields[1], fields[2], offset, imm))


_Handler = Callable[[_Line, _Form, list[list[_Tok]]], _Stmt]
_HANDLERS: dict[_Kind, _Handler] = {
    _Kind.ALU: _h_alu,
    _Kind.MOVSX: _h_movsx,
    _Kind.UNARY: _h_unary,
    _Kind.LDX: _h_ldx,
    _Kind.ST: _h_st,
    _Kind.STX: _h_stx,
    _Kind.LDDW: _h_lddw,
    _Kind.LDABS: _h_ldabs,
    _Kind.LDIND: _h_ldind,
    _Kind.JCOND: _h_jcond,
    _Kind.JA: _h_ja,
    _Kind.CALL: _h_call,
    _Kind.EXIT: _h_exit,
    _Kind.RAW: _h_raw,
}
_COUNTS: dict[_Kind, tuple[int, ...]] = {
    _Kind.ALU: (2,),
    _Kind.MOVSX: (2,),
    _Kind.UNARY: (1,),
    _Kind.LDX: (2,),
    _Kind.ST: (2,),
    _Kind.STX: (2,),
    _Kind.LDDW: (2, 3),
    _Kind.LDABS: (1,),
    _Kind.LDIND: (2,),
    _Kind.JCOND: (3,),
    _Kind.JA: (1,),
    _Kind.CALL: (1, 2),
    _Kind.EXIT: (0,),
    _Kind.RAW: (5,),
}


# --- Assembly -------------------------------------------------------------------------------------


def _lines(text: str) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(text.split("\n"), start=1):
        yield number, raw.rstrip("\r")


def assemble_ubpf(text: str, *, source: str | None = None) -> Program:
    """Assemble uBPF / bpf_conformance mnemonic assembly.

    Args:
        text: the assembly source (see the module docstring for the grammar).
        source: a name for the input (a file name), used in error messages.

    Returns:
        The program; ``labels`` holds the labels the source defines (the first name for a slot)
        and the implicit ``exit`` label when a jump uses it.

    Raises:
        AssemblerError: unknown mnemonic, wrong operand count, bad register or number, value out
            of range, unknown or duplicate label, target out of range, or no instructions at
            all; ``.line`` and ``.column`` (1-based) locate the offending token.

    >>> assemble_ubpf("mov %r0, 1\\nexit").instructions[0]
    Instruction(opcode=0xb7, imm=1)
    """
    stmts: list[tuple[int, _Stmt]] = []  # (slot, statement)
    labels: dict[str, tuple[int, int]] = {}  # name -> (slot, line number)
    first_exit: int | None = None
    slot = 0
    for number, raw in _lines(text):
        line = _Line(number, raw, source)
        toks = line.tokens()
        i = 0
        while i + 1 < len(toks) and toks[i].kind == "ident" and toks[i + 1].text == ":":
            name = toks[i].text
            if name in labels:
                line.error(f"duplicate label {name!r} (first defined on line {labels[name][1]})", toks[i].col)
            labels[name] = (slot, number)
            i += 2
        if i == len(toks):
            continue
        stmt = _parse_statement(line, toks[i:])
        if first_exit is None and stmt.insn.opcode == OP_EXIT and toks[i].text == "exit":
            first_exit = slot
        stmts.append((slot, stmt))
        slot += stmt.insn.slots
    if not stmts:
        raise AssemblerError("no instructions: a program needs at least one", line=1, column=1, source=source)

    slot_labels: dict[int, str] = {}
    for name, (at, _) in labels.items():
        slot_labels.setdefault(at, name)
    insns: list[Instruction] = []
    for at, stmt in stmts:
        ref = stmt.ref
        if ref is None:
            insns.append(stmt.insn)
            continue
        name = ref.token.text
        if name in labels:
            target = labels[name][0]
        elif name == "exit" and first_exit is not None:
            target = first_exit
            slot_labels.setdefault(target, name)
        else:
            close = difflib.get_close_matches(name, list(labels), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            ref.line.error(f"unknown label {name!r}{hint}", ref.token.col)
        rel = target - at - 1
        if not -(1 << (ref.bits - 1)) <= rel < 1 << (ref.bits - 1):
            ref.line.error(
                f"target {name!r} is out of range: offset {rel} does not fit in {ref.bits} signed bits",
                ref.token.col,
            )
        if ref.field == "func":
            insns.append(dataclasses.replace(stmt.insn, imm=rel & _MASK32))
        else:
            insns.append(dataclasses.replace(stmt.insn, **{ref.field: rel}))
    return Program(insns, slot_labels)
