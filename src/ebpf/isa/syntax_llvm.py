"""The C-like eBPF assembly of LLVM and the kernel verifier log: print and parse. Pure: no kernel access.

:func:`format_llvm` prints one instruction exactly as ``llvm-objdump-19 -d --mcpu=v4`` prints
it; :func:`disassemble_llvm` prints a whole :class:`~ebpf.isa.program.Program` as text that
:func:`assemble_llvm` reads back to an equal program.

Rule 1: ``assemble_llvm(disassemble_llvm(p)) == p`` for every program of valid instructions.

Rule 2: bad text raises :class:`~ebpf.errors.AssemblerError` with a 1-based line and column
pointing at the offending token, never another exception.

Rule 3: where llvm-objdump's text loses information, a lossless extension spelling is used
(marked "ext" below): by :func:`format_llvm` for lddw with a pseudo source and ld_ind with an
offset, which clang never emits; by :func:`disassemble_llvm` alone for local and kfunc calls,
which :func:`format_llvm` prints as llvm-objdump does (``call -0x1``, like a helper call).

Grammar (one statement per line; ``N`` is a decimal, ``0x`` hex or ``0b`` binary number,
optionally signed; ``R`` is ``r0``-``r10`` and ``W`` is ``w0``-``w10``)::

    R = N | R = R | R = (s8|s16|s32)R | R = -R      ALU64 mov / movsx / neg   (W forms: ALU)
    R op= N | R op= R                               op: + - * / s/ % s% | & ^ << >> s>>
    R = (le|be|bswap)(16|32|64) R                   byte swaps
    R = N ll                                        lddw
    R = map_fd(N) ll | map_value(N) + N ll          lddw with a pseudo source (ext); also
        btf_id(N) func(N) map_idx(N) map_idx_value(N) + N; llvm's ld_pseudo R, SRC, N
    R = *(u8|u16|u32|u64 *)(R + N)                  load (W destination for u8-u32)
    R = *(s8|s16|s32 *)(R + N)                      sign-extending load
    *(u8|u16|u32|u64 *)(R + N) = R | N              store
    lock *(u32|u64 *)(R + N) (+=||=|&=|^=) R        atomic
    R = atomic_fetch_(add|or|and|xor)((u64 *)(R + N), R)    (W and u32: 32-bit)
    R = xchg_64(R + N, R) | W = xchg32_32(R + N, W)
    r0 = cmpxchg_64(R + N, r0, R) | w0 = cmpxchg32_32(R + N, w0, W)
    r0 = *(u8|u16|u32 *)skb[N] | skb[R] | skb[R + N] (ext)    legacy packet loads
    goto +N | gotol +N | if R cmp R|N goto +N       cmp: == != > >= < <= s> s>= s< s<= &
    call N | call pc+N (ext, local) | call kfunc(N[, N]) (ext) | callx R | exit
    name: | <name>: | goto name | goto <name> | call name     labels (PREVAIL, LLVM)

Also read: full llvm-objdump listings (addresses, raw bytes, ``Disassembly of section``,
``<func>:`` headers as labels, relocation lines, ``<target>`` annotations), the kernel
verifier log (``12: (61) r2 = *(u32 *)(r1 +4)``, ``goto pc+6``, ``call bpf_map_lookup_elem#1``,
``atomic64_fetch_add(...)``; a ``(18)`` prefix makes ``r1 = 0x...`` an lddw, any ``(xx)``
prefix is checked against the assembled opcode) and PREVAIL's ``map_fd N`` /
``map_val(N) + N``. Comments start with ``;``, ``//`` or a ``#`` that follows whitespace.

Which registers: llvm-objdump with ``--mcpu=v3``/``v4`` prints 8/16/32-bit loads, stores and
32-bit atomics with ``w`` registers; the default cpu (v1) prints ``r``. :func:`format_llvm`
prints the v4 form (``alu32=False`` gives the v1 form); the parser accepts both.
"""

from __future__ import annotations

from ebpf.isa._llvm_lexer import is_angle_label, is_plain_label
from ebpf.isa._llvm_parser import parse_program
from ebpf.isa._llvm_tables import (
    ALU_OP,
    ALU_SIGNED_OP,
    ATOMIC_FETCH_NAME,
    ATOMIC_LOCK_OP,
    JMP_OP,
    LOAD_SIZE,
    PSEUDO_NAME,
    PSEUDO_WITH_OFFSET,
    SIGNED_LOAD_SIZE,
)
from ebpf.isa.encoding import validate
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

__all__ = ["assemble_llvm", "disassemble_llvm", "format_llvm"]

UNKNOWN = "<unknown>"  # what llvm-objdump prints for bytes it cannot decode


def _hex(value: int) -> str:
    """LLVM's hex immediate: ``0x10``, ``-0x8``."""
    return f"-{-value:#x}" if value < 0 else f"{value:#x}"


def _rel(value: int) -> str:
    """LLVM's branch displacement: ``+0x6``, ``-0x3``."""
    return f"{value:+#x}"


def _addr(reg: int, offset: int) -> str:
    """An address ``r1 + 0x10`` / ``r10 - 0x8``."""
    return f"r{reg} {'-' if offset < 0 else '+'} {abs(offset):#x}"


def _mem(reg: int, offset: int) -> str:
    """A memory operand ``(r1 + 0x10)`` / ``(r10 - 0x8)``."""
    return f"({_addr(reg, offset)})"


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= (1 << 63) else value


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= (1 << 31) else value


def format_llvm(insn: Instruction, *, alu32: bool = True) -> str:
    """Print one instruction the way ``llvm-objdump-19 -d --mcpu=v4`` does.

    Jump and call operands are relative and numeric (``goto +0x6``); llvm-objdump's trailing
    ``<symbol+offset>`` annotation is not part of the instruction and is not printed.

    Args:
        insn: the instruction.
        alu32: print 8/16/32-bit loads, stores and 32-bit atomics with ``w`` registers, as
            llvm-objdump does with ``--mcpu=v3`` or ``v4``. ``False`` prints them with ``r``
            registers, as the default (v1) cpu does.

    Returns:
        The text, e.g. ``r2 = *(u32 *)(r1 + 0x4)``. Instructions that
        :func:`ebpf.isa.encoding.validate` rejects print as ``<unknown>``, as llvm-objdump
        prints bytes it cannot decode. ``lddw`` with a pseudo source (never emitted by clang)
        uses this module's lossless spelling (``r1 = map_value(0x3) + 0x8 ll``) instead of
        llvm's ``ld_pseudo r1, 0x2, 0x3``, and ``ld_ind`` with a non-zero immediate adds it
        (``skb[r2 + 0x4]``), which llvm-objdump drops.
    """
    if validate(insn) is not None:
        return UNKNOWN
    cls = insn.opcode & 0x07
    if cls in (InsnClass.ALU, InsnClass.ALU64):
        return _format_alu(insn, cls == InsnClass.ALU64)
    if cls in (InsnClass.JMP, InsnClass.JMP32):
        return _format_jmp(insn, cls == InsnClass.JMP32)
    if cls == InsnClass.LD:
        return _format_ld(insn)
    if cls == InsnClass.LDX:
        return _format_ldx(insn, alu32)
    return _format_store(insn, cls == InsnClass.STX, alu32)


def _format_alu(insn: Instruction, is64: bool) -> str:
    """RFC 9669 §4.1 (arithmetic) and §4.2 (byte swaps)."""
    p = "r" if is64 else "w"
    code = AluOp(insn.opcode & 0xF0)
    x = insn.opcode & Source.X
    dst = f"{p}{insn.dst}"
    if code == AluOp.NEG:
        return f"{dst} = -{dst}"
    if code == AluOp.END:
        kind = "bswap" if is64 else ("be" if x else "le")
        return f"r{insn.dst} = {kind}{insn.imm} r{insn.dst}"
    if code == AluOp.MOV and x and insn.offset:
        return f"{dst} = (s{insn.offset}){p}{insn.src}"
    op = ALU_SIGNED_OP[code] if code in ALU_SIGNED_OP and insn.offset == 1 else ALU_OP[code]
    rhs = f"{p}{insn.src}" if x else _hex(insn.imm)
    return f"{dst} {op} {rhs}"


def _format_jmp(insn: Instruction, is32: bool) -> str:
    """RFC 9669 §4.3: jumps, calls and exit."""
    op = insn.opcode
    if op == OP_JA:
        return f"goto {_rel(insn.offset)}"
    if op == OP_GOTOL:
        return f"gotol {_rel(insn.imm)}"
    if op == OP_CALL:
        return f"call {_hex(insn.imm)}"  # llvm prints helper, local and kfunc calls alike
    if op == OP_CALLX:
        return f"callx r{insn.dst}"
    if op == OP_EXIT:
        return "exit"
    p = "w" if is32 else "r"
    cmp = JMP_OP[JmpOp(op & 0xF0)]
    rhs = f"{p}{insn.src}" if op & Source.X else _hex(insn.imm)
    return f"if {p}{insn.dst} {cmp} {rhs} goto {_rel(insn.offset)}"


def _format_ld(insn: Instruction) -> str:
    """RFC 9669 §5.4 (lddw) and §5.5 (legacy packet access)."""
    if insn.opcode == OP_LDDW:
        if insn.src == PseudoSrc.IMM64:
            return f"r{insn.dst} = {_hex(_signed64(insn.imm))} ll"
        return f"r{insn.dst} = {_format_pseudo(insn)} ll"
    size = LOAD_SIZE[Size(insn.opcode & 0x18)]
    if insn.opcode & 0xE0 == Mode.ABS:
        return f"r0 = *({size} *)skb[{_hex(insn.imm)}]"
    extra = "" if insn.imm == 0 else f" {'-' if insn.imm < 0 else '+'} {abs(insn.imm):#x}"
    return f"r0 = *({size} *)skb[r{insn.src}{extra}]"


def _format_pseudo(insn: Instruction) -> str:
    """The operand of an ``lddw`` with a pseudo source: ``map_fd(0x3)``, ``map_value(0x3) + 0x8``.

    The first immediate is printed signed 32-bit; the second (``next_imm``) follows as
    ``+ N`` / ``- N``, always for the ``*_value`` kinds and otherwise only when non-zero.
    """
    kind = PseudoSrc(insn.src)
    low = _signed32(insn.imm)
    high = _signed32(insn.imm >> 32)
    text = f"{PSEUDO_NAME[kind]}({_hex(low)})"
    if high or kind in PSEUDO_WITH_OFFSET:
        text += f" {'-' if high < 0 else '+'} {abs(high):#x}"
    return text


def _format_ldx(insn: Instruction, alu32: bool) -> str:
    """RFC 9669 §5.1-5.2: loads."""
    size = Size(insn.opcode & 0x18)
    if insn.opcode & 0xE0 == Mode.MEMSX:
        return f"r{insn.dst} = *({SIGNED_LOAD_SIZE[size]} *){_mem(insn.src, insn.offset)}"
    p = "w" if alu32 and size != Size.DW else "r"
    return f"{p}{insn.dst} = *({LOAD_SIZE[size]} *){_mem(insn.src, insn.offset)}"


def _format_store(insn: Instruction, is_stx: bool, alu32: bool) -> str:
    """RFC 9669 §5.1 (stores) and §5.3 (atomics)."""
    size = Size(insn.opcode & 0x18)
    ctype = LOAD_SIZE[size]
    mem = _mem(insn.dst, insn.offset)
    if not is_stx:
        return f"*({ctype} *){mem} = {_hex(insn.imm)}"
    if insn.opcode & 0xE0 == Mode.MEM:
        p = "w" if alu32 and size != Size.DW else "r"
        return f"*({ctype} *){mem} = {p}{insn.src}"
    wide = size == Size.DW
    op = AtomicOp(insn.imm & ~ATOMIC_FETCH)
    p = "r" if wide or (not alu32 and insn.imm == AtomicOp.ADD) else "w"
    src = f"{p}{insn.src}"
    if not insn.imm & ATOMIC_FETCH:
        return f"lock *({ctype} *){mem} {ATOMIC_LOCK_OP[op]} {src}"
    addr = _addr(insn.dst, insn.offset)
    if op == AtomicOp.XCHG:
        return f"{src} = {'xchg_64' if wide else 'xchg32_32'}({addr}, {src})"
    if op == AtomicOp.CMPXCHG:
        r0 = f"{p}0"
        return f"{r0} = {'cmpxchg_64' if wide else 'cmpxchg32_32'}({addr}, {r0}, {src})"
    return f"{src} = atomic_fetch_{ATOMIC_FETCH_NAME[op]}(({ctype} *){mem}, {src})"


def _format_exact(insn: Instruction) -> str:
    """Like :func:`format_llvm`, but lossless where llvm-objdump is not (calls)."""
    if insn.opcode == OP_CALL and insn.src == CallKind.LOCAL:
        return f"call pc{_rel(insn.imm)}"
    if insn.opcode == OP_CALL and insn.src == CallKind.KFUNC:
        extra = f", {_hex(insn.offset)}" if insn.offset else ""
        return f"call kfunc({_hex(insn.imm)}{extra})"
    return format_llvm(insn)


def _label_spelling(name: str) -> str | None:
    """How a label is written so the parser reads it back: ``name`` or ``<name>``, else None."""
    if is_plain_label(name):
        return name
    if is_angle_label(name):
        return f"<{name}>"
    return None


def disassemble_llvm(program: Program) -> str:
    """Print a program as text that :func:`assemble_llvm` reads back to an equal program.

    One instruction per line, as :func:`format_llvm` prints it, except that local calls print
    as ``call pc+0x3`` and kfunc calls as ``call kfunc(0x4d)`` (llvm-objdump prints both like
    a helper call). Labels from ``program.labels`` print as ``name:`` lines (``<name>:`` when
    the name is not an identifier) before the instruction at their slot; jump operands stay
    numeric. Labels that point inside an ``lddw``, repeat an earlier name or cannot be
    spelled (whitespace, ``<``, ``>``, ``;``) are left out.

    Args:
        program: the program.

    Returns:
        The text, one line per label and instruction, ending with a newline (empty for an
        empty program).
    """
    lines: list[str] = []
    written: set[str] = set()

    def label(slot: int) -> None:
        name = program.labels.get(slot)
        spelled = None if name is None or name in written else _label_spelling(name)
        if name is not None and spelled is not None:
            lines.append(f"{spelled}:")
            written.add(name)

    slot = 0
    for insn in program.instructions:
        label(slot)
        lines.append(_format_exact(insn))
        slot += insn.slots
    label(slot)
    return "".join(line + "\n" for line in lines)


def assemble_llvm(text: str, *, source: str | None = None) -> Program:
    """Assemble C-like eBPF assembly (LLVM, llvm-objdump listings, verifier log, PREVAIL).

    See the module docstring for the grammar.

    Args:
        text: the assembly source.
        source: a name for the input (file name), used in error messages.

    Returns:
        The program, with ``labels`` from label definitions and ``<func>:`` headers.

    Raises:
        AssemblerError: the text is not valid; ``.line`` and ``.column`` (1-based) point at
            the offending token and the message says what was expected.
    """
    return parse_program(text, source=source)
