"""Parser of the C-like eBPF assembly (grammar in :mod:`ebpf.isa.syntax_llvm`). Pure: no kernel access.

Rule 1: one line is read at a time: comments are cut, listing decorations (llvm-objdump
addresses, raw bytes, headers, relocations; verifier-log ``N: (op)`` prefixes) are peeled
off, and what remains is tokenized and parsed by recursive descent into one instruction.

Rule 2: label references are resolved after the last line, so forward jumps work; until then
an instruction is a template plus the field (``offset`` or ``imm``) the label fills.

Rule 3: every failure is an :class:`~ebpf.errors.AssemblerError` built by :meth:`Cursor.error`
at the offending token; helpers never let ``ValueError``/``IndexError`` escape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ebpf.errors import AssemblerError, DecodeError
from ebpf.isa._llvm_lexer import (
    BITS16,
    IMM32,
    IMM64,
    SIGNED32,
    Cursor,
    Token,
    is_plain_label,
    range_text,
    strip_comment,
)
from ebpf.isa._llvm_tables import (
    ALU_OP,
    ALU_SIGNED_OP,
    ATOMIC_FETCH_NAME,
    ATOMIC_LOCK_OP,
    JMP_OP,
    LOAD_SIZE,
    PSEUDO_NAME,
    SIGNED_LOAD_SIZE,
)
from ebpf.isa.encoding import decode, validate
from ebpf.isa.instruction import Instruction
from ebpf.isa.opcodes import (
    ATOMIC_FETCH,
    OP_CALL,
    OP_CALLX,
    OP_EXIT,
    OP_GOTOL,
    OP_JA,
    OP_LDDW,
    AluOp,
    AtomicOp,
    CallKind,
    InsnClass,
    JmpOp,
    Mode,
    PseudoSrc,
    Size,
    Source,
)
from ebpf.isa.program import Program

__all__ = ["parse_program"]

# Listing decorations (llvm-objdump -d -r, kernel verifier log).
_FILE_FORMAT_RE = re.compile(r"\S.*:\s+file format \S+\s*", re.ASCII)
_SECTION_RE = re.compile(r"\s*Disassembly of section .*:\s*", re.ASCII)
_RELOC_RE = re.compile(r"\s*[0-9a-fA-F]+:\s+R_[A-Za-z0-9_]+(\s.*)?", re.ASCII)
_FUNC_HEADER_RE = re.compile(r"\s*[0-9a-fA-F]+\s+<(?P<name>[^<>]+)>:\s*", re.ASCII)
_ELLIPSIS_RE = re.compile(r"\s*\.\.\.\s*", re.ASCII)
_ADDRESS_RE = re.compile(r"\s*[0-9]+:", re.ASCII)
_BYTES_RE = re.compile(
    r"\s+(?P<bytes>(?:[0-9a-fA-F]{2} ){7}[0-9a-fA-F]{2}(?: (?:[0-9a-fA-F]{2} ){7}[0-9a-fA-F]{2})?)(?=\s|$)",
    re.ASCII,
)
_OPCODE_PREFIX_RE = re.compile(r"\s*\((?P<op>[0-9a-fA-F]{2})\)", re.ASCII)
_END_RE = re.compile(r"(le|be|bswap|swap)(16|32|64)", re.ASCII)

# Syntax tables turned around for parsing.
_ALU_BY_TEXT: dict[str, tuple[AluOp, int]] = {text: (op, 0) for op, text in ALU_OP.items() if op != AluOp.MOV}
_ALU_BY_TEXT.update({text: (op, 1) for op, text in ALU_SIGNED_OP.items()})
_JMP_BY_TEXT: dict[str, JmpOp] = {text: op for op, text in JMP_OP.items()}
_SIZE_BY_TEXT: dict[str, tuple[Size, bool]] = {text: (size, False) for size, text in LOAD_SIZE.items()}
_SIZE_BY_TEXT.update({text: (size, True) for size, text in SIGNED_LOAD_SIZE.items()})
_LOCK_BY_TEXT: dict[str, AtomicOp] = {text: op for op, text in ATOMIC_LOCK_OP.items()}
_FETCH_BY_NAME: dict[str, AtomicOp] = {name: op for op, name in ATOMIC_FETCH_NAME.items()}
_PSEUDO_BY_NAME: dict[str, PseudoSrc] = {name: src for src, name in PSEUDO_NAME.items()}
_PSEUDO_BY_NAME["map_val"] = PseudoSrc.MAP_VALUE  # PREVAIL: r1 = map_val(3) + 0
_MOVSX_WIDTHS = {"s8": 8, "s16": 16, "s32": 32}
_S_OPS = frozenset({">", ">=", "<", "<=", ">>=", "/=", "%="})  # "s" + op: s>, s>>=, s/=, ...


@dataclass(frozen=True, slots=True)
class _Pending:
    """An instruction whose ``field`` waits for the displacement to ``label``."""

    template: Instruction
    field: str  # "offset" or "imm"
    label: str
    token: Token


# --- Statements -------------------------------------------------------------------------------

_Stmt = Instruction | _Pending


def _alu_opcode(wide: bool, op: int, source: int) -> int:
    return (InsnClass.ALU64 if wide else InsnClass.ALU) | op | source


def _same_width(c: Cursor, first: Token, second: Token) -> None:
    if first.wide != second.wide:
        raise c.error(
            f"operand size mismatch: {first.text} is {'64' if first.wide else '32'}-bit but "
            f"{second.text} is {'64' if second.wide else '32'}-bit",
            second,
        )


def _statement(c: Cursor, hint: int | None) -> _Stmt:
    token = c.peek()
    assert token is not None
    if token.kind == "ident":
        word = token.text
        if word == "exit":
            c.next("exit")
            c.done()
            return Instruction(OP_EXIT)
        if word in ("goto", "gotol"):
            c.next(word)
            if word == "gotol":
                return _target(c, Instruction(OP_GOTOL), "imm", SIGNED32)
            return _target(c, Instruction(OP_JA), "offset", BITS16)
        if word == "if":
            return _cond_jump(c)
        if word == "call":
            return _call(c)
        if word == "callx":
            c.next(word)
            reg = c.expect_reg64("the call target register")
            c.done()
            return Instruction(OP_CALLX, dst=reg.value)
        if word == "lock":
            return _lock(c)
        if word == "ld_pseudo":
            return _ld_pseudo(c)
    if token.kind == "op" and token.text == "*":
        return _store(c)
    if token.kind == "reg":
        return _assignment(c, hint)
    raise c.error(f"expected an instruction, found {c.found(token)}", token)


def _target(c: Cursor, template: Instruction, field: str, bounds: tuple[int, int]) -> _Stmt:
    """A jump target: ``+0x6``, ``6``, ``pc+6``, ``label`` or ``<label>``, then the end."""
    token = c.peek()
    if (
        token is not None
        and token.kind == "ident"
        and token.text == "pc"
        and (c.is_op("+", 1) or c.is_op("-", 1))
    ):
        c.next("pc")
        token = c.peek()
    if token is not None and (token.kind == "num" or (token.kind == "op" and token.text in ("+", "-"))):
        value, _ = c.integer("jump offset", bounds)
        _skip_annotation(c)
        c.done()
        return replace(template, **{field: value})
    if token is not None and token.kind in ("ident", "angle"):
        c.next("label")
        c.done()
        name = token.text[1:-1] if token.kind == "angle" else token.text
        return _Pending(template, field, name, token)
    raise c.error(f"expected a jump offset (+N, pc+N) or a label, found {c.found(token)}", token)


def _skip_annotation(c: Cursor) -> None:
    """Skip llvm-objdump's ``<func+0x40>`` after a numeric target: it is informational only."""
    token = c.peek()
    if token is not None and token.kind == "angle":
        c.pos += 1


def _cond_jump(c: Cursor) -> _Stmt:
    c.expect_ident("if")
    left = c.expect_reg("a register after 'if'")
    op_token = c.peek()
    op_text = _read_s_op(c, "a comparison (==, !=, >, >=, <, <=, s>, s>=, s<, s<=, &)")
    if op_text not in _JMP_BY_TEXT:
        raise c.error(f"expected a comparison (==, !=, >, s<, &, ...), found {op_text!r}", op_token)
    op = _JMP_BY_TEXT[op_text]
    cls = InsnClass.JMP if left.wide else InsnClass.JMP32
    right = c.peek()
    if right is not None and right.kind == "reg":
        c.next("register")
        _same_width(c, left, right)
        template = Instruction(cls | op | Source.X, dst=left.value, src=right.value)
    else:
        imm, _ = c.integer("an immediate or register to compare with", IMM32)
        template = Instruction(cls | op | Source.K, dst=left.value, imm=imm)
    c.expect_ident("goto")
    return _target(c, template, "offset", BITS16)


def _read_s_op(c: Cursor, what: str) -> str:
    """An operator token, joining LLVM's signed spellings (``s>``, ``s>>=``, ``s/=``, ``s%=``)."""
    token = c.peek()
    if token is not None and token.kind == "ident" and token.text == "s":
        nxt = c.peek(1)
        if nxt is not None and nxt.kind == "op" and nxt.text in _S_OPS:
            c.pos += 2
            return "s" + nxt.text
    if token is None or token.kind != "op":
        raise c.error(f"expected {what}, found {c.found(token)}", token)
    c.pos += 1
    return token.text


def _call(c: Cursor) -> _Stmt:
    c.expect_ident("call")
    token = c.peek()
    if token is None:
        raise c.error("expected a helper number, pc+N, kfunc(N) or a label after 'call'")
    if token.kind == "num" or (token.kind == "op" and token.text in ("+", "-")):
        imm, _ = c.integer("helper number", IMM32)
        _skip_annotation(c)
        c.done()
        return Instruction(OP_CALL, imm=imm)
    if token.kind == "ident":
        if token.text == "pc" and (c.is_op("+", 1) or c.is_op("-", 1)):
            c.next("pc")
            imm, _ = c.integer("call offset", SIGNED32)
            c.done()
            return Instruction(OP_CALL, src=CallKind.LOCAL, imm=imm)
        if token.text == "kfunc" and c.is_op("(", 1):
            c.next("kfunc")
            c.expect_op("(")
            imm, _ = c.integer("kfunc BTF id", IMM32)
            offset = 0
            if c.accept_op(","):
                offset, _ = c.integer("kfunc module BTF index", BITS16)
            c.expect_op(")", "')'")
            c.done()
            return Instruction(OP_CALL, src=CallKind.KFUNC, offset=offset, imm=imm)
        if token.text == "kernel" and c.is_op("-", 1) and c.is_ident("function", 2) and c.is_op("#", 3):
            c.pos += 4  # verifier log: "call kernel-function#N"
            imm, _ = c.integer("kfunc BTF id", IMM32)
            c.done()
            return Instruction(OP_CALL, src=CallKind.KFUNC, imm=imm)
        if c.is_op("#", 1):
            c.pos += 2  # verifier log: "call bpf_map_lookup_elem#1"
            imm, _ = c.integer("helper number", IMM32)
            c.done()
            return Instruction(OP_CALL, imm=imm)
    if token.kind in ("ident", "angle"):
        c.next("label")
        c.done()
        name = token.text[1:-1] if token.kind == "angle" else token.text
        return _Pending(Instruction(OP_CALL, src=CallKind.LOCAL), "imm", name, token)
    raise c.error(
        f"expected a helper number, pc+N, kfunc(N) or a label after 'call', found {c.found(token)}", token
    )


def _size(c: Cursor, allow_signed: bool = True) -> tuple[Size, bool, Token]:
    """``(u32 *)``'s ``u32 *)`` part after the ``(``: the access size and whether it is signed."""
    token = c.peek()
    if token is None or token.kind != "ident" or token.text not in _SIZE_BY_TEXT:
        kinds = "u8, u16, u32, u64, s8, s16 or s32" if allow_signed else "u8, u16, u32 or u64"
        raise c.error(f"expected an access type ({kinds}), found {c.found(token)}", token)
    size, signed = _SIZE_BY_TEXT[token.text]
    if signed and not allow_signed:
        raise c.error(f"expected an unsigned access type (u8, u16, u32 or u64), found {token.text!r}", token)
    c.pos += 1
    c.expect_op("*", "'*'")
    c.expect_op(")", "')'")
    return size, signed, token


def _mem(c: Cursor) -> tuple[int, int]:
    """``(r1 + 0x10)``: base register and offset."""
    c.expect_op("(", "'(' before the address")
    reg = c.expect_reg64("the address register")
    offset = 0
    if not c.is_op(")"):
        offset = c.signed_part("memory offset", BITS16)
    c.expect_op(")", "')'")
    return reg.value, offset


def _addr(c: Cursor) -> tuple[int, int]:
    """``r1 + 0x10`` (llvm's xchg/cmpxchg address, no parentheses)."""
    reg = c.expect_reg64("the address register")
    offset = 0
    if c.is_op("+") or c.is_op("-"):
        offset = c.signed_part("memory offset", BITS16)
    return reg.value, offset


def _value_reg(c: Cursor, size: Size, what: str) -> Token:
    """A stored/atomic value register: ``r`` for 64-bit, ``r`` or ``w`` for narrower accesses."""
    reg = c.expect_reg(what)
    if size == Size.DW and not reg.wide:
        raise c.error(f"a 64-bit access needs a 64-bit register (r{reg.value}), not {reg.text}", reg)
    return reg


def _store(c: Cursor) -> _Stmt:
    c.expect_op("*")
    c.expect_op("(", "'(' after '*'")
    size, _, _ = _size(c, allow_signed=False)
    dst, offset = _mem(c)
    c.expect_op("=", "'='")
    token = c.peek()
    if token is not None and token.kind == "reg":
        reg = _value_reg(c, size, "the value register")
        c.done()
        return Instruction(InsnClass.STX | Mode.MEM | size, dst=dst, src=reg.value, offset=offset)
    imm, _ = c.integer("a register or immediate to store", IMM32)
    c.done()
    return Instruction(InsnClass.ST | Mode.MEM | size, dst=dst, offset=offset, imm=imm)


def _atomic_size(c: Cursor, size: Size, token: Token) -> None:
    if size not in (Size.W, Size.DW):
        raise c.error(f"atomic operations take u32 or u64, not {token.text}", token)


def _lock(c: Cursor) -> _Stmt:
    c.expect_ident("lock")
    c.expect_op("*", "'*' after 'lock'")
    c.expect_op("(", "'('")
    size, _, size_token = _size(c, allow_signed=False)
    _atomic_size(c, size, size_token)
    dst, offset = _mem(c)
    op_token = c.peek()
    if op_token is None or op_token.kind != "op" or op_token.text not in _LOCK_BY_TEXT:
        raise c.error(f"expected an atomic operator (+=, |=, &=, ^=), found {c.found(op_token)}", op_token)
    c.pos += 1
    reg = _value_reg(c, size, "the value register")
    c.done()
    opcode = InsnClass.STX | Mode.ATOMIC | size
    return Instruction(opcode, dst=dst, src=reg.value, offset=offset, imm=_LOCK_BY_TEXT[op_token.text])


def _ld_pseudo(c: Cursor) -> _Stmt:
    """llvm's ``ld_pseudo r1, 0x2, 0x3`` (the second immediate cannot be written)."""
    c.expect_ident("ld_pseudo")
    dst = c.expect_reg64("the destination register")
    c.expect_op(",", "','")
    src, src_token = c.integer("pseudo source", (0, 15))
    if src not in tuple(PseudoSrc):
        raise c.error(f"unknown lddw pseudo source {src} (expected 0-6)", src_token)
    c.expect_op(",", "','")
    imm, _ = c.integer("immediate", IMM32)
    c.done()
    return Instruction(OP_LDDW, dst=dst.value, src=src, imm=imm & 0xFFFFFFFF)


def _assignment(c: Cursor, hint: int | None) -> _Stmt:
    dst = c.expect_reg()
    op_token = c.peek()
    op_text = _read_s_op(c, "an assignment operator (=, +=, -=, ...)")
    if op_text == "=":
        return _assign(c, dst, hint)
    if op_text not in _ALU_BY_TEXT:
        raise c.error(f"expected an assignment operator (=, +=, s>>=, ...), found {op_text!r}", op_token)
    op, offset = _ALU_BY_TEXT[op_text]
    token = c.peek()
    if token is not None and token.kind == "reg":
        c.next("register")
        _same_width(c, dst, token)
        c.done()
        return Instruction(_alu_opcode(dst.wide, op, Source.X), dst=dst.value, src=token.value, offset=offset)
    imm, _ = c.integer("a register or immediate operand", IMM32)
    c.done()
    return Instruction(_alu_opcode(dst.wide, op, Source.K), dst=dst.value, offset=offset, imm=imm)


def _assign(c: Cursor, dst: Token, hint: int | None) -> _Stmt:
    """Everything of the form ``dst = ...``."""
    token = c.peek()
    if token is None:
        raise c.error("expected a value after '='")
    if token.kind == "reg":
        c.next("register")
        _same_width(c, dst, token)
        c.done()
        return Instruction(_alu_opcode(dst.wide, AluOp.MOV, Source.X), dst=dst.value, src=token.value)
    if token.kind == "op" and token.text == "(":
        return _movsx(c, dst)
    after = c.peek(1)
    if token.kind == "op" and token.text == "-" and after is not None and after.kind == "reg":
        c.next("-")
        reg = c.expect_reg()
        if reg.value != dst.value or reg.wide != dst.wide:
            raise c.error(f"negation works in place: expected {dst.text} = -{dst.text}", reg)
        c.done()
        return Instruction(_alu_opcode(dst.wide, AluOp.NEG, Source.K), dst=dst.value)
    if token.kind == "num" or (token.kind == "op" and token.text in ("+", "-")):
        return _mov_imm(c, dst, hint)
    if token.kind == "op" and token.text == "*":
        return _load(c, dst)
    if token.kind == "ident":
        word = token.text
        end = _END_RE.fullmatch(word)
        if end is not None:
            return _byteswap(c, dst, end.group(1), int(end.group(2)))
        if word.startswith(("atomic_fetch_", "atomic64_fetch_")):
            return _atomic_fetch(c, dst)
        if word in ("xchg_64", "xchg32_32", "atomic_xchg", "atomic64_xchg"):
            return _xchg(c, dst, cmp=False)
        if word in ("cmpxchg_64", "cmpxchg32_32", "atomic_cmpxchg", "atomic64_cmpxchg"):
            return _xchg(c, dst, cmp=True)
        if word in _PSEUDO_BY_NAME:
            return _pseudo(c, dst)
    raise c.error(f"expected a register, number, load or operation after '=', found {c.found(token)}", token)


def _mov_imm(c: Cursor, dst: Token, hint: int | None) -> _Stmt:
    value, first_token = c.integer("immediate", IMM64)
    if c.is_ident("ll") or hint == OP_LDDW:
        if c.is_ident("ll"):
            c.next("ll")
        if not dst.wide:
            raise c.error(f"a 64-bit load (ll) needs a 64-bit register (r{dst.value}), not {dst.text}", dst)
        c.done()
        return Instruction(OP_LDDW, dst=dst.value, imm=value)
    lo, hi = IMM32
    if not lo <= value <= hi:
        raise c.error(
            f"immediate {value} does not fit in 32 bits ({range_text(lo, hi)}); write '{value:#x} ll' for a 64-bit load",
            first_token,
        )
    c.done()
    return Instruction(_alu_opcode(dst.wide, AluOp.MOV, Source.K), dst=dst.value, imm=value)


def _movsx(c: Cursor, dst: Token) -> _Stmt:
    c.expect_op("(")
    width_token = c.peek()
    if width_token is None or width_token.kind != "ident" or width_token.text not in _MOVSX_WIDTHS:
        raise c.error(
            f"expected a sign-extension type (s8, s16, s32), found {c.found(width_token)}", width_token
        )
    c.pos += 1
    width = _MOVSX_WIDTHS[width_token.text]
    if width == 32 and not dst.wide:
        raise c.error("a 32-bit move sign-extends from s8 or s16 only", width_token)
    c.expect_op(")", "')'")
    src = c.expect_reg("the source register")
    _same_width(c, dst, src)
    c.done()
    return Instruction(_alu_opcode(dst.wide, AluOp.MOV, Source.X), dst=dst.value, src=src.value, offset=width)


def _byteswap(c: Cursor, dst: Token, kind: str, width: int) -> _Stmt:
    word = c.next("byte swap")
    reg = c.expect_reg("the register to swap")
    if not dst.wide or not reg.wide or reg.value != dst.value:
        raise c.error(
            f"byte swaps work in place on r registers: expected r{dst.value} = {word.text} r{dst.value}", reg
        )
    c.done()
    if kind in ("bswap", "swap"):
        opcode = InsnClass.ALU64 | AluOp.END | Source.K
    else:
        opcode = InsnClass.ALU | AluOp.END | (Source.X if kind == "be" else Source.K)
    return Instruction(opcode, dst=dst.value, imm=width)


def _load(c: Cursor, dst: Token) -> _Stmt:
    c.expect_op("*")
    c.expect_op("(", "'(' after '*'")
    size, signed, size_token = _size(c)
    if c.is_ident("skb"):
        return _legacy_load(c, dst, size, signed, size_token)
    src, offset = _mem(c)
    if (signed or size == Size.DW) and not dst.wide:
        raise c.error(
            f"a {size_token.text} load needs a 64-bit destination (r{dst.value}), not {dst.text}", dst
        )
    c.done()
    mode = Mode.MEMSX if signed else Mode.MEM
    return Instruction(InsnClass.LDX | mode | size, dst=dst.value, src=src, offset=offset)


def _legacy_load(c: Cursor, dst: Token, size: Size, signed: bool, size_token: Token) -> _Stmt:
    """RFC 9669 §5.5: ``r0 = *(u8 *)skb[0xc]`` (BPF_ABS) and ``skb[r2 + 0x4]`` (BPF_IND)."""
    c.expect_ident("skb")
    if signed or size == Size.DW:
        raise c.error(f"legacy packet loads take u8, u16 or u32, not {size_token.text}", size_token)
    if dst.value != 0 or not dst.wide:
        raise c.error(f"legacy packet loads always write r0, not {dst.text}", dst)
    c.expect_op("[", "'['")
    token = c.peek()
    if token is not None and token.kind == "reg":
        reg = c.expect_reg64("the packet offset register")
        imm = 0
        if c.is_op("+") or c.is_op("-"):
            imm = c.signed_part("packet offset", SIGNED32)
        c.expect_op("]", "']'")
        c.done()
        return Instruction(InsnClass.LD | Mode.IND | size, src=reg.value, imm=imm)
    imm, _ = c.integer("a packet offset or register", IMM32)
    c.expect_op("]", "']'")
    c.done()
    return Instruction(InsnClass.LD | Mode.ABS | size, imm=imm)


def _atomic_fetch(c: Cursor, dst: Token) -> _Stmt:
    """``r2 = atomic_fetch_add((u64 *)(r1 + 0x0), r2)``; kernel: ``atomic64_fetch_add``."""
    word = c.next("atomic operation")
    name = word.text.split("_fetch_", 1)[1]
    if name not in _FETCH_BY_NAME:
        raise c.error(
            f"unknown atomic operation {word.text!r} (expected atomic_fetch_add, _or, _and or _xor)", word
        )
    c.expect_op("(", "'('")
    c.expect_op("(", "'(' before the access type")
    size, _, size_token = _size(c, allow_signed=False)
    _atomic_size(c, size, size_token)
    if word.text.startswith("atomic64_") and size != Size.DW:
        raise c.error(f"{word.text} takes u64, not {size_token.text}", size_token)
    mem_dst, offset = _mem(c)
    c.expect_op(",", "','")
    reg = _value_reg(c, size, "the value register")
    c.expect_op(")", "')'")
    c.done()
    _fetch_result(c, dst, reg, size)
    opcode = InsnClass.STX | Mode.ATOMIC | size
    return Instruction(
        opcode, dst=mem_dst, src=reg.value, offset=offset, imm=_FETCH_BY_NAME[name] | ATOMIC_FETCH
    )


def _fetch_result(c: Cursor, dst: Token, reg: Token, size: Size) -> None:
    if dst.value != reg.value:
        raise c.error(
            f"the old value goes to the operand register: expected {reg.text} = ..., not {dst.text}", dst
        )
    if size == Size.DW and not dst.wide:
        raise c.error(f"a 64-bit atomic needs a 64-bit register (r{dst.value}), not {dst.text}", dst)


def _xchg(c: Cursor, dst: Token, *, cmp: bool) -> _Stmt:
    """``r2 = xchg_64(r1 + 0x0, r2)``, ``r0 = cmpxchg_64(r1 + 0x0, r0, r2)`` and the kernel's
    ``atomic64_xchg((u64 *)(r1 +0), r2)`` / ``atomic64_cmpxchg((u64 *)(r1 +0), r0, r2)``."""
    word = c.next("atomic operation")
    c.expect_op("(", "'('")
    if word.text.startswith("atomic"):
        c.expect_op("(", "'(' before the access type")
        size, _, size_token = _size(c, allow_signed=False)
        _atomic_size(c, size, size_token)
        if word.text.startswith("atomic64_") and size != Size.DW:
            raise c.error(f"{word.text} takes u64, not {size_token.text}", size_token)
        mem_dst, offset = _mem(c)
    else:
        size = Size.DW if word.text.endswith("_64") else Size.W
        mem_dst, offset = _addr(c)
    c.expect_op(",", "','")
    if cmp:
        r0 = _value_reg(c, size, "r0 (the expected value)")
        if r0.value != 0:
            raise c.error(f"cmpxchg compares with r0, not {r0.text}", r0)
        c.expect_op(",", "','")
    reg = _value_reg(c, size, "the value register")
    c.expect_op(")", "')'")
    c.done()
    if cmp:
        if dst.value != 0:
            raise c.error(f"cmpxchg returns the old value in r0, not {dst.text}", dst)
        if size == Size.DW and not dst.wide:
            raise c.error(f"a 64-bit atomic needs r0, not {dst.text}", dst)
    else:
        _fetch_result(c, dst, reg, size)
    imm = (AtomicOp.CMPXCHG if cmp else AtomicOp.XCHG) | ATOMIC_FETCH
    return Instruction(InsnClass.STX | Mode.ATOMIC | size, dst=mem_dst, src=reg.value, offset=offset, imm=imm)


def _pseudo(c: Cursor, dst: Token) -> _Stmt:
    """``r1 = map_fd(0x3) ll``, ``r1 = map_value(0x3) + 0x8 ll``; PREVAIL's ``map_fd 3``."""
    word = c.next("pseudo source")
    kind = _PSEUDO_BY_NAME[word.text]
    if not dst.wide:
        raise c.error(f"lddw needs a 64-bit register (r{dst.value}), not {dst.text}", dst)
    if word.text == "map_fd" and not c.is_op("("):
        low, _ = c.integer("map fd", IMM32)  # PREVAIL: "r1 = map_fd 3"
    else:
        c.expect_op("(", "'('")
        low, _ = c.integer(f"{word.text} immediate", IMM32)
        c.expect_op(")", "')'")
    high = 0
    if c.is_op("+") or c.is_op("-"):
        high = c.signed_part("second immediate", IMM32)
    if c.is_ident("ll"):
        c.next("ll")
    c.done()
    imm = (low & 0xFFFFFFFF) | ((high & 0xFFFFFFFF) << 32)
    return Instruction(OP_LDDW, dst=dst.value, src=kind, imm=imm)


# --- Lines and programs -----------------------------------------------------------------------


def _lossy_equal(parsed: Instruction, decoded: Instruction) -> bool:
    """True if llvm-objdump prints ``decoded`` as text that parses to ``parsed``.

    llvm-objdump drops the call kind and kfunc offset (``call -0x1`` for a local call), the
    second immediate of ``ld_pseudo`` and the immediate of ``ld_ind``; without ``--mcpu`` it
    prints a 32-bit ``atomic_fetch_add`` as ``lock *(u32 *)(r1 + 0x0) += r2``.
    """
    if parsed == decoded:
        return True
    if parsed.opcode != decoded.opcode or parsed.dst != decoded.dst:
        return False
    if decoded.opcode == OP_CALL:
        return parsed.imm == decoded.imm and parsed.src == CallKind.HELPER and parsed.offset == 0
    if decoded.opcode == OP_LDDW:
        return parsed.src == decoded.src != 0 and parsed.imm == decoded.imm & 0xFFFFFFFF
    if decoded.opcode & 0xE7 == InsnClass.LD | Mode.IND:
        return parsed.src == decoded.src and parsed.imm == 0
    if decoded.opcode == InsnClass.STX | Mode.ATOMIC | Size.W and decoded.imm == AtomicOp.ADD | ATOMIC_FETCH:
        # the default (v1) cpu decodes a 32-bit fetch-add as "lock ... += r2"
        return replace(parsed, imm=decoded.imm) == decoded
    return False


def _from_bytes(c: Cursor, raw: str, column: int, stmt: _Stmt | None) -> Instruction:
    """Reconcile a listing line's raw bytes with its text; the bytes win where llvm is lossy.

    ``stmt`` is None when llvm-objdump printed ``<unknown>`` (an instruction its cpu setting
    cannot decode): then the first byte order that decodes to a valid instruction wins.
    """
    data = bytes.fromhex(raw.replace(" ", ""))
    problems: list[str] = []
    for order in ("little", "big"):
        try:
            insns = decode(data, order)
        except DecodeError as err:
            problems.append(err.message)
            continue
        if len(insns) != 1:
            problems.append(f"{len(data)} bytes hold {len(insns)} instructions")
            continue
        insn = insns[0]
        if stmt is None:
            return insn
        if isinstance(stmt, _Pending):
            if stmt.template.opcode == insn.opcode:
                return insn
        elif _lossy_equal(stmt, insn):
            return insn
        opcode = stmt.template.opcode if isinstance(stmt, _Pending) else stmt.opcode
        problems.append(
            f"they decode to opcode {insn.opcode:#04x} ({order}-endian) but the text assembles to {opcode:#04x}"
            if insn.opcode != opcode
            else f"they decode to {insn!r} ({order}-endian) but the text assembles to {stmt!r}"
        )
    what = "are not a valid instruction" if stmt is None else "do not match the instruction text"
    raise c.error(f"raw bytes {raw!r} {what}: {problems[0]}", column=column)


@dataclass
class _Line:
    """What one source line contributes."""

    labels: list[tuple[str, Token]]
    stmt: _Stmt | None


def _parse_line(line: str, line_no: int, source: str | None) -> _Line:
    body = strip_comment(line)
    if not body.strip():
        return _Line([], None)
    for skip in (_FILE_FORMAT_RE, _SECTION_RE, _RELOC_RE, _ELLIPSIS_RE):
        if skip.fullmatch(body):
            return _Line([], None)
    header = _FUNC_HEADER_RE.fullmatch(body)
    if header is not None:
        name = header.group("name")
        return _Line([(name, Token("angle", f"<{name}>", header.start("name")))], None)
    pos = 0
    raw: tuple[str, int] | None = None
    hint: tuple[int, int] | None = None
    m = _ADDRESS_RE.match(body)
    if m is not None:
        pos = m.end()
        b = _BYTES_RE.match(body, pos)
        if b is not None:
            raw = (b.group("bytes"), b.start("bytes") + 1)
            pos = b.end()
    p = _OPCODE_PREFIX_RE.match(body, pos)
    if p is not None:
        hint = (int(p.group("op"), 16), p.start("op"))  # column of "(" is start("op")
        pos = p.end()
    c = Cursor(line, body, pos, line_no, source)
    labels: list[tuple[str, Token]] = []
    while True:
        token = c.peek()
        if token is None or token.kind not in ("ident", "angle") or not c.is_op(":", 1):
            break
        if token.kind == "ident" and not is_plain_label(token.text):
            raise c.error(f"{token.text!r} cannot be a label name", token)
        c.pos += 2
        labels.append((token.text[1:-1] if token.kind == "angle" else token.text, token))
    if c.at_end():
        if raw is not None or hint is not None:
            raise c.error("expected an instruction after the listing prefix")
        return _Line(labels, None)
    token = c.peek()
    if token is not None and token.kind == "reg" and c.is_op(":", 1):
        raise c.error(f"register name {token.text!r} cannot be a label", token)
    if raw is not None and len(c.tokens) - c.pos == 1 and token is not None and token.text == "<unknown>":
        stmt: _Stmt = _from_bytes(c, raw[0], raw[1], None)
    else:
        stmt = _statement(c, hint[0] if hint is not None else None)
        if raw is not None:
            stmt = _from_bytes(c, raw[0], raw[1], stmt)
    if hint is not None:
        opcode = stmt.template.opcode if isinstance(stmt, _Pending) else stmt.opcode
        if opcode != hint[0]:
            raise c.error(
                f"opcode prefix ({hint[0]:02x}) does not match the instruction, which assembles to ({opcode:02x})",
                column=hint[1],
            )
    if isinstance(stmt, Instruction):
        problem = validate(stmt)
        if problem is not None:  # every path above builds valid instructions; keep the promise
            raise c.error(f"invalid instruction: {problem}", c.tokens[0] if c.tokens else None)
    return _Line(labels, stmt)


def parse_program(text: str, *, source: str | None = None) -> Program:
    """Assemble ``text``; see :func:`ebpf.isa.syntax_llvm.assemble_llvm`."""
    if not isinstance(text, str):
        raise TypeError(f"assembly text must be str, not {type(text).__name__}")
    label_slots: dict[str, int] = {}
    slot_labels: dict[int, str] = {}
    items: list[tuple[int, _Stmt, int, str]] = []  # slot, statement, line number, line text
    slot = 0
    for line_no, line in enumerate(text.split("\n"), start=1):
        parsed = _parse_line(line, line_no, source)
        for name, token in parsed.labels:
            if name in label_slots:
                raise AssemblerError(
                    f"duplicate label {name!r}", line=line_no, column=token.column, text=line, source=source
                )
            label_slots[name] = slot
            slot_labels.setdefault(slot, name)
        if parsed.stmt is not None:
            items.append((slot, parsed.stmt, line_no, line))
            slot += parsed.stmt.template.slots if isinstance(parsed.stmt, _Pending) else parsed.stmt.slots
    instructions: list[Instruction] = []
    for at, stmt, line_no, line in items:
        if isinstance(stmt, _Pending):
            stmt = _resolve(stmt, at, label_slots, line_no, line, source)
        instructions.append(stmt)
    return Program(instructions, slot_labels)


def _resolve(
    pending: _Pending, slot: int, label_slots: dict[str, int], line_no: int, line: str, source: str | None
) -> Instruction:
    def fail(message: str) -> AssemblerError:
        return AssemblerError(message, line=line_no, column=pending.token.column, text=line, source=source)

    if pending.label not in label_slots:
        raise fail(f"unknown label {pending.label!r}")
    displacement = label_slots[pending.label] - (slot + 1)
    lo, hi = BITS16 if pending.field == "offset" else SIGNED32
    if not lo <= displacement <= hi:
        hint = "; use gotol for long jumps" if pending.template.opcode == OP_JA else ""
        raise fail(
            f"label {pending.label!r} is {displacement} instructions away, out of range ({lo}..{hi}){hint}"
        )
    return replace(pending.template, **{pending.field: displacement})
