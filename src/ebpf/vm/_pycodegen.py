"""Translation of a decoded program into the Python source of the fast tier (engine ``py``).

Core layer: pure, no kernel access. The runtime glue (regions, helpers, the reference
interpreter the generated code hands over to) is in :mod:`ebpf.vm.pytier`.

Shape of the generated function (one per program)::

    def _run(_E, _env, _mapped, _stacks, r1, r2, r3, r4, r5, r10, budget, b):
        r0 = r6 = ... = 0                          registers are locals; b: the entry slot
        S7 = 0; N7 = W7 = -1; V7 = None            per base register: the last region it hit
        while True:                                dispatch on b: a binary tree of ifs
            if b >= 0:   <roots>                   fast code, one loop per root block
            else:        <checked segments>        reference-exact code, every access checked

Rule 1 (blocks and trees): basic blocks with exactly one static predecessor are emitted
inline, inside their predecessor's code; the others (*roots*: joins, the entry, call targets
and return points) get a ``while True:`` loop in the dispatch tree, so that an edge back to
the root is a ``continue`` and only edges to another root go through the dispatch tree. Small
roots without a loop of their own, in the same loop (strongly connected component) as the
root being emitted, are also duplicated into it (tail duplication), which removes the
dispatch from most loop latches; a per-root and a global budget bound the code growth.

Rule 2 (budget): a root checks once, on entry, that the remaining budget covers the longest
path through its code (``rem < maxpath``); if not, the run is handed to the reference loop
(:meth:`~ebpf.vm.interpreter.Interpreter._loop`) at that slot, which then fails, or finishes,
exactly as the reference would. Each leaf of the code subtracts its path's static count.

Rule 3 (memory): a block is cut into *segments* in which every access's address is a
register's value at the segment start plus a constant (``mov``/``add``/``sub`` of constants
are followed). At a segment start, the accesses are grouped by base register and each group's
whole range ``[lo, hi)`` is checked once against that register's cached region (refilled with
``Memory.find`` on a miss); regions with a load hook are never cached, read-only ones only
for loads. When a check fails the run continues, at the segment start, in the *checked*
code: the same instructions with every access going through ``Memory.load``/``store``, so
the fault (or the hooked load) is the reference one, until the next root.

Rule 4 (helpers): a helper or kfunc call synchronises the count (so ``ProgramExit`` reports
it, and ``TailCall`` carries it out) and forgets every cached region, because a helper may map
or unmap memory (kfuncs: only when their ``unmaps_memory`` says so). Helpers and kfuncs get
the run's ``_env``; kfuncs are looked up by id in the engine's ``kfuncs`` registry, only in
programs that call one.

Rule 6 (entries): the function starts at any entry point (:func:`entry_points`: slot 0, the
targets of local calls and of ``lddw`` of a function, return points), which is how helper
callbacks (``bpf_loop``) run a subprogram.

Rule 5 (widths): along each path of a root's code the generator knows how many bits some
registers fit in (after 32-bit operations, narrow loads, masks, shifts) and leaves out the
masks that cannot change such a value. The knowledge is reset at every root, so it never
depends on how the root was entered.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from ebpf.isa.ir import (
    Atomic,
    Bin,
    BinOp,
    Branch,
    Call,
    CallKfunc,
    CallLocal,
    CallReg,
    Exit,
    Jump,
    LegacyLoad,
    Load,
    LoadImm64,
    Op,
    Store,
    Un,
    UnOp,
)
from ebpf.isa.opcodes import AtomicOp, JmpOp, PseudoSrc
from ebpf.vm.interpreter import ALU32, ALU64, MAX_CALL_FRAMES

__all__ = ["FUNCTION_NAME", "STRUCT_NAMES", "entry_points", "func_target", "generate"]

FUNCTION_NAME = "_run"
M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
SIGN64 = 1 << 63
SIGN32 = 1 << 31

DUP_LIMIT = 12  # a root whose own code is at most this many instructions may be duplicated
TREE_LIMIT = 64  # instructions emitted for one root before duplication stops
DUP_BUDGET = 256  # instructions duplicated in all, plus 2 per instruction of the program
MAX_NEST = 40  # indentation levels inside one root's code
MAX_DEPTH = 150  # blocks on one inline path (recursion of the generator)

REGS = ", ".join(f"r{i}" for i in range(11))
_MASK = {1: 0xFF, 2: 0xFFFF, 4: M32, 8: M64}
_U = {
    (1, False): "_UB",
    (2, False): "_UH",
    (4, False): "_UW",
    (8, False): "_UD",
    (1, True): "_SB",
    (2, True): "_SH",
    (4, True): "_SW",
    (8, True): "_SD",
}
_P = {2: "_PH", 4: "_PW", 8: "_PD"}

# struct formats of the unpack (_U*, _S*) and pack (_P*) functions the generated code calls.
STRUCT_NAMES = {
    "_UB": "<B",
    "_UH": "<H",
    "_UW": "<I",
    "_UD": "<Q",
    "_SB": "<b",
    "_SH": "<h",
    "_SW": "<i",
    "_SD": "<q",
    "_PH": "<H",
    "_PW": "<I",
    "_PD": "<Q",
}

_UNSIGNED_COND = {
    JmpOp.JEQ: "==",
    JmpOp.JGT: ">",
    JmpOp.JGE: ">=",
    JmpOp.JNE: "!=",
    JmpOp.JLT: "<",
    JmpOp.JLE: "<=",
}
_SIGNED_COND = {JmpOp.JSGT: ">", JmpOp.JSGE: ">=", JmpOp.JSLT: "<", JmpOp.JSLE: "<="}

Lines = list[tuple[int, str]]
Widths = dict[int, int]  # register -> number of bits its value is known to fit in (absent: 64)


@dataclass
class _Block:
    start: int
    pcs: list[int]  # slots of its operations, terminator included
    term: Op | None  # the last operation when it transfers control
    succs: tuple[int, ...]  # static successors (taken target first for a branch)


@dataclass
class _Segment:
    start: int
    pcs: list[int]  # non-terminator operations
    groups: dict[int, list[int]] = field(default_factory=dict)  # base reg -> [lo, hi, writes]
    access: dict[int, tuple[int, int]] = field(default_factory=dict)  # slot -> (base reg, offset)


def _is_term(op: Op | None) -> bool:
    return isinstance(op, (Branch, Jump, Exit, CallLocal))


def _next(pc: int, op: Op | None) -> int:
    return pc + 2 if isinstance(op, LoadImm64) else pc + 1


def func_target(pc: int, op: LoadImm64) -> int:
    """The slot an ``lddw`` of a function (``BPF_PSEUDO_FUNC``) at slot ``pc`` names.

    As in the kernel's verifier: ``imm`` counts from the slot after the first one.
    """
    return pc + 1 + op.imm_lo


def _cfg(ops: list[Op | None]) -> tuple[dict[int, _Block], set[int]]:
    """Basic blocks by start slot (plus an empty block at ``len(ops)``: falling off the end)."""
    n = len(ops)
    leaders = {0, n}
    dynamic = {0}  # entered other than by a static edge
    for pc, op in enumerate(ops):
        match op:
            case Branch(target=t) | Jump(target=t):
                leaders.update((t, pc + 1))
            case Exit():
                leaders.add(pc + 1)
            case CallLocal(target=t):
                leaders.update((t, pc + 1))
                dynamic.update((t, pc + 1))
            case LoadImm64(kind=PseudoSrc.FUNC):
                t = func_target(pc, op)
                if 0 <= t < n and ops[t] is not None:
                    leaders.add(t)
                    dynamic.add(t)
    starts = sorted(x for x in leaders if x <= n)
    blocks: dict[int, _Block] = {n: _Block(n, [], None, ())}
    for start, end in itertools.pairwise(starts):
        pcs = []
        pc = start
        while pc < end:
            pcs.append(pc)
            pc = _next(pc, ops[pc])
        last = ops[pcs[-1]]
        succs: tuple[int, ...]
        if isinstance(last, Branch):
            succs = (last.target, pc)
        elif isinstance(last, Jump):
            succs = (last.target,)
        elif _is_term(last):
            succs = ()
        else:
            succs = (pc,)
        blocks[start] = _Block(start, pcs, last if _is_term(last) else None, succs)
    dynamic.add(n)
    return blocks, {x for x in dynamic if x in blocks}


def _segments(ops: list[Op | None], block: _Block) -> list[_Segment]:
    """Cut a block where an access's base is no longer a start register plus a constant."""
    ident: list[tuple[int, int] | None] = [(r, 0) for r in range(11)]
    sym = list(ident)
    segs = [_Segment(block.start, [])]
    body = block.pcs[:-1] if block.term is not None else block.pcs
    for pc in body:
        op = ops[pc]
        if isinstance(op, (Load, Store, Atomic)):
            if sym[op.base] is None:
                segs.append(_Segment(pc, []))
                sym = list(ident)
            base = sym[op.base]
            assert base is not None
            reg, const = base
            lo = const + op.offset
            writes = not isinstance(op, Load)
            group = segs[-1].groups.setdefault(reg, [lo, lo + op.size, 0])
            group[0] = min(group[0], lo)
            group[1] = max(group[1], lo + op.size)
            group[2] |= writes
            segs[-1].access[pc] = (reg, lo)
            if isinstance(op, Load):
                sym[op.dst] = None
            elif isinstance(op, Atomic):
                if op.op is AtomicOp.CMPXCHG:
                    sym[0] = None
                elif op.fetch:
                    sym[op.src] = None
        elif isinstance(op, Bin):
            cur = sym[op.dst]
            if op.is64 and op.op is BinOp.MOV and op.src is not None:
                sym[op.dst] = sym[op.src]
            elif op.is64 and op.src is None and op.op in (BinOp.ADD, BinOp.SUB) and cur is not None:
                sym[op.dst] = (cur[0], cur[1] + (op.imm if op.op is BinOp.ADD else -op.imm))
            else:
                sym[op.dst] = None
        elif isinstance(op, (Un, LoadImm64)):
            sym[op.dst] = None
        elif isinstance(op, LegacyLoad):
            sym[0] = None
        elif isinstance(op, (Call, CallReg, CallKfunc)):
            sym = [None] * 11  # regions may have changed: the next access starts a segment
        segs[-1].pcs.append(pc)
    return segs


def _offset(reg: int, const: int) -> str:
    if const == 0:
        return f"a{reg}"
    return f"a{reg} + {const}" if const > 0 else f"a{reg} - {-const}"


def _lo(reg: int, widths: Widths) -> str:
    """Register ``reg`` as a 32-bit operand: its low 32 bits (no mask when it is known to fit)."""
    return f"r{reg}" if widths.get(reg, 64) <= 32 else f"(r{reg} & {M32})"


def _bin(op: Bin, widths: Widths) -> str | None:
    """The statement for a binary ALU operation (None: nothing to do)."""
    d = f"r{op.dst}"
    if op.is64:
        if op.src is None:
            b = op.imm & M64
            if op.op in (BinOp.MOV, BinOp.MOVSX8, BinOp.MOVSX16, BinOp.MOVSX32):
                return f"{d} = {ALU64[op.op](0, b)}"
            match op.op:
                case BinOp.ADD | BinOp.SUB:
                    delta = op.imm if op.op is BinOp.ADD else -op.imm
                    if delta == 0:
                        return None
                    return (
                        f"{d} = ({d} + {delta}) & {M64}" if delta > 0 else f"{d} = ({d} - {-delta}) & {M64}"
                    )
                case BinOp.MUL:
                    return f"{d} = ({d} * {b}) & {M64}"
                case BinOp.DIV:
                    return f"{d} = {d} // {b}" if b else f"{d} = 0"
                case BinOp.MOD:
                    return f"{d} = {d} % {b}" if b else None
                case BinOp.OR:
                    return f"{d} = {d} | {b}"
                case BinOp.AND:
                    return f"{d} = {d} & {b}"
                case BinOp.XOR:
                    return f"{d} = {d} ^ {b}"
                case BinOp.LSH:
                    return f"{d} = ({d} << {b & 63}) & {M64}"
                case BinOp.RSH:
                    return f"{d} = {d} >> {b & 63}"
                case BinOp.ARSH:
                    return f"{d} = ((({d} ^ {SIGN64}) - {SIGN64}) >> {b & 63}) & {M64}"
            return f"{d} = _alu64_{op.op.name}({d}, {b})"
        s = f"r{op.src}"
        match op.op:
            case BinOp.ADD:
                return f"{d} = ({d} + {s}) & {M64}"
            case BinOp.SUB:
                return f"{d} = ({d} - {s}) & {M64}"
            case BinOp.MUL:
                return f"{d} = ({d} * {s}) & {M64}"
            case BinOp.DIV:
                return f"{d} = {d} // {s} if {s} else 0"
            case BinOp.MOD:
                return f"{d} = {d} % {s} if {s} else {d}"
            case BinOp.OR:
                return f"{d} = {d} | {s}"
            case BinOp.AND:
                return f"{d} = {d} & {s}"
            case BinOp.XOR:
                return f"{d} = {d} ^ {s}"
            case BinOp.LSH:
                return f"{d} = ({d} << ({s} & 63)) & {M64}"
            case BinOp.RSH:
                return f"{d} = {d} >> ({s} & 63)"
            case BinOp.ARSH:
                return f"{d} = ((({d} ^ {SIGN64}) - {SIGN64}) >> ({s} & 63)) & {M64}"
            case BinOp.MOV:
                return f"{d} = {s}"
            case BinOp.MOVSX8:
                return f"{d} = ((({s} & 255) ^ 128) - 128) & {M64}"
            case BinOp.MOVSX16:
                return f"{d} = ((({s} & 65535) ^ 32768) - 32768) & {M64}"
            case BinOp.MOVSX32:
                return f"{d} = ((({s} & {M32}) ^ {SIGN32}) - {SIGN32}) & {M64}"
        return f"{d} = _alu64_{op.op.name}({d}, {s})"
    # ALU32: operands are the low 32 bits; the result is zero-extended.
    dl = _lo(op.dst, widths)
    if op.src is None:
        b = op.imm & M32
        if op.op in (BinOp.MOV, BinOp.MOVSX8, BinOp.MOVSX16, BinOp.MOVSX32):
            return f"{d} = {ALU32[op.op](0, b)}" if op.op in ALU32 else f"{d} = _alu32_{op.op.name}(0, {b})"
        match op.op:
            case BinOp.ADD:
                return f"{d} = ({d} + {b}) & {M32}"
            case BinOp.SUB:
                return f"{d} = ({d} - {b}) & {M32}"
            case BinOp.MUL:
                return f"{d} = ({d} * {b}) & {M32}"
            case BinOp.DIV:
                return f"{d} = {dl} // {b}" if b else f"{d} = 0"
            case BinOp.MOD:
                return f"{d} = {dl} % {b}" if b else f"{d} = {dl}"
            case BinOp.OR:
                return f"{d} = {dl} | {b}"
            case BinOp.AND:
                return f"{d} = {d} & {b}"
            case BinOp.XOR:
                return f"{d} = {dl} ^ {b}"
            case BinOp.LSH:
                return f"{d} = ({d} << {b & 31}) & {M32}"
            case BinOp.RSH:
                return f"{d} = {dl} >> {b & 31}"
            case BinOp.ARSH:
                return f"{d} = ((({dl} ^ {SIGN32}) - {SIGN32}) >> {b & 31}) & {M32}"
        return f"{d} = _alu32_{op.op.name}({dl}, {b})"
    s = f"r{op.src}"
    sl = _lo(op.src, widths)
    both = widths.get(op.dst, 64) <= 32 and widths.get(op.src, 64) <= 32
    match op.op:
        case BinOp.ADD:
            return f"{d} = ({d} + {s}) & {M32}"
        case BinOp.SUB:
            return f"{d} = ({d} - {s}) & {M32}"
        case BinOp.MUL:
            return f"{d} = ({d} * {s}) & {M32}"
        case BinOp.DIV:
            return f"{d} = {dl} // {sl} if {sl} else 0"
        case BinOp.MOD:
            return f"{d} = {dl} % {sl} if {sl} else {dl}"
        case BinOp.OR:
            return f"{d} = {d} | {s}" if both else f"{d} = ({d} | {s}) & {M32}"
        case BinOp.AND:
            return f"{d} = {d} & {s}" if dl == d or sl == s else f"{d} = {d} & {s} & {M32}"
        case BinOp.XOR:
            return f"{d} = {d} ^ {s}" if both else f"{d} = ({d} ^ {s}) & {M32}"
        case BinOp.LSH:
            return f"{d} = ({d} << ({s} & 31)) & {M32}"
        case BinOp.RSH:
            return f"{d} = {dl} >> ({s} & 31)"
        case BinOp.ARSH:
            return f"{d} = ((({dl} ^ {SIGN32}) - {SIGN32}) >> ({s} & 31)) & {M32}"
        case BinOp.MOV:
            return f"{d} = {sl}" if sl == s else f"{d} = {s} & {M32}"
        case BinOp.MOVSX8:
            return f"{d} = ((({s} & 255) ^ 128) - 128) & {M32}"
        case BinOp.MOVSX16:
            return f"{d} = ((({s} & 65535) ^ 32768) - 32768) & {M32}"
    return f"{d} = _alu32_{op.op.name}({dl}, {sl})"


def _width_after(op: Op, widths: Widths) -> None:
    """Update ``widths`` (register -> bits its value is known to fit in) for ``op`` executed."""
    match op:
        case Bin(is64=False, dst=dst):
            widths[dst] = 32
        case Bin(op=BinOp.MOV, src=None, dst=dst, imm=imm):
            widths[dst] = (imm & M64).bit_length()
        case Bin(op=BinOp.MOV, src=src, dst=dst) if src is not None:
            widths[dst] = widths.get(src, 64)
        case Bin(op=BinOp.AND, src=src, dst=dst, imm=imm):
            other = (imm & M64).bit_length() if src is None else widths.get(src, 64)
            widths[dst] = min(widths.get(dst, 64), other)
        case Bin(op=BinOp.OR | BinOp.XOR, src=src, dst=dst, imm=imm):
            other = (imm & M64).bit_length() if src is None else widths.get(src, 64)
            widths[dst] = max(widths.get(dst, 64), other)
        case Bin(op=BinOp.RSH, src=None, dst=dst, imm=imm):
            widths[dst] = max(0, widths.get(dst, 64) - (imm & 63))
        case Bin(op=BinOp.DIV, dst=dst):
            pass  # an unsigned quotient is at most the dividend (or 0)
        case Bin(op=BinOp.MOD, src=None, dst=dst, imm=imm) if imm & M64:
            widths[dst] = min(widths.get(dst, 64), (imm & M64).bit_length())
        case Bin(op=BinOp.MOD):
            pass  # at most the dividend
        case Bin(dst=dst) | Un(op=UnOp.NEG, is64=True, dst=dst) | Load(signed=True, dst=dst):
            widths.pop(dst, None)
        case Un(op=UnOp.NEG, dst=dst):
            widths[dst] = 32
        case Un(dst=dst, width=width):
            widths[dst] = width
        case Load(dst=dst, size=size):
            widths[dst] = 8 * size
        case LoadImm64(dst=dst, value=value, kind=kind):
            if kind is PseudoSrc.IMM64:
                widths[dst] = value.bit_length()
            else:
                widths.pop(dst, None)
        case Atomic(op=AtomicOp.CMPXCHG, size=size):
            widths[0] = 8 * size
        case Atomic(fetch=True, src=src, size=size):
            widths[src] = 8 * size
        case LegacyLoad(size=size):
            widths[0] = 8 * size
        case Call() | CallReg() | CallKfunc():
            widths.pop(0, None)


def _un(op: Un) -> str | None:
    d = f"r{op.dst}"
    if op.op is UnOp.NEG:
        return f"{d} = -{d} & {M64 if op.is64 else M32}"
    if op.op is UnOp.LE:
        return None if op.width == 64 else f"{d} = {d} & {(1 << op.width) - 1}"
    if op.width == 16:
        return f"{d} = (({d} & 255) << 8) | (({d} >> 8) & 255)"
    return f"{d} = _bswap({d}, {op.width})"


def _cond(op: Branch, widths: Widths) -> str:
    d = f"r{op.dst}"
    if op.is64:
        if op.src is None:
            b = op.imm & M64
            s, ss = str(b), str(b ^ SIGN64)
        else:
            s = f"r{op.src}"
            ss = f"({s} ^ {SIGN64})"
        if op.cond is JmpOp.JSET:
            return f"{d} & {s}"
        if op.cond in _UNSIGNED_COND:
            return f"{d} {_UNSIGNED_COND[op.cond]} {s}"
        return f"({d} ^ {SIGN64}) {_SIGNED_COND[op.cond]} {ss}"
    d32 = _lo(op.dst, widths)
    if op.src is None:
        b = op.imm & M32
        s, ss = str(b), str(b ^ SIGN32)
    else:
        s = _lo(op.src, widths)
        ss = f"({s} ^ {SIGN32})"
    if op.cond is JmpOp.JSET:
        return f"{d} & {s}"
    if op.cond in _UNSIGNED_COND:
        return f"{d32} {_UNSIGNED_COND[op.cond]} {s}"
    return f"({d32} ^ {SIGN32}) {_SIGNED_COND[op.cond]} {ss}"


def _components(blocks: dict[int, _Block]) -> dict[int, int]:
    """Strongly connected components of the static CFG (iterative Tarjan): block -> component id."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    comp: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    counter = 0
    for start in blocks:
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            succs = blocks[node].succs
            if i < len(succs):
                work.append((node, i + 1))
                succ = succs[i]
                if succ not in index:
                    work.append((succ, 0))
                elif succ in on_stack:
                    low[node] = min(low[node], index[succ])
                continue
            if low[node] == index[node]:
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp[member] = node
                    if member == node:
                        break
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return comp


class _Codegen:
    def __init__(self, ops: list[Op | None]) -> None:
        self.ops = ops
        self.n = len(ops)
        self.blocks, self.dynamic = _cfg(ops)
        indeg: dict[int, int] = dict.fromkeys(self.blocks, 0)
        for block in self.blocks.values():
            for succ in block.succs:
                indeg[succ] += 1
        self.roots = {s for s, d in indeg.items() if d != 1} | self.dynamic
        for block in self.blocks.values():  # a block whose only predecessor is itself
            if block.start in block.succs:
                self.roots.add(block.start)
        self.segs = {s: _segments(ops, b) for s, b in self.blocks.items()}
        self.cache_regs = sorted({r for segs in self.segs.values() for seg in segs for r in seg.groups})
        self._size: dict[int, int] = {}
        self._loops: dict[int, bool] = {}
        self._emitted = 0
        self._pending: list[int] = []
        self._scc = _components(self.blocks)
        self._dup_budget = DUP_BUDGET + 2 * len(ops)

    # --- planning ---------------------------------------------------------------------------------

    def _tree_size(self, start: int, limit: int = 64) -> int:
        """Instructions in the code of ``start`` and its inline (non-root) successors, capped."""
        if start in self._size:
            return self._size[start]
        total = 0
        todo = [start]
        seen = set()
        while todo and total <= limit:
            pc = todo.pop()
            if pc in seen:
                continue
            seen.add(pc)
            block = self.blocks[pc]
            total += len(block.pcs)
            todo.extend(s for s in block.succs if s not in self.roots)
        self._size[start] = total
        return total

    def _has_loop(self, root: int) -> bool:
        """Whether the code of ``root`` (with its inline successors) jumps back to it."""
        if root not in self._loops:
            todo, seen, loop = [root], set(), False
            while todo and not loop:
                pc = todo.pop()
                if pc in seen:
                    continue
                seen.add(pc)
                for s in self.blocks[pc].succs:
                    loop |= s == root
                    if s not in self.roots:
                        todo.append(s)
            self._loops[root] = loop
        return self._loops[root]

    def _dupable(self, pc: int) -> bool:
        return pc != self.n and self._tree_size(pc) <= DUP_LIMIT and not self._has_loop(pc)

    def _duplicate(self, pc: int, root: int) -> bool:
        """Whether to copy root ``pc``'s code into ``root``'s: only inside a loop through both."""
        if self._emitted >= TREE_LIMIT or self._scc[pc] != self._scc[root] or not self._dupable(pc):
            return False
        size = self._tree_size(pc)
        if size > self._dup_budget:
            return False
        self._dup_budget -= size
        return True

    # --- emission helpers -------------------------------------------------------------------------

    @staticmethod
    def _sync(out: Lines, ind: int, k: int) -> None:
        if k:
            out.append((ind, f"rem -= {k}"))

    @staticmethod
    def _handoff(pc: int) -> str:
        return f"return _E._loop({pc}, [{REGS}], frames, budget - rem, _mapped, _stacks, budget, None, _env)"

    def _invalidate(self) -> str | None:
        names = [f"{c}{r}" for r in self.cache_regs for c in "NW"]
        return " = ".join([*names, "-1"]) if names else None

    def _op(self, out: Lines, ind: int, pc: int, seg: _Segment, k: int, widths: Widths | None) -> int:
        """Emit one operation (``widths`` None: checked code); returns the count not yet synced."""
        op = self.ops[pc]
        assert op is not None
        k = self._emit_op(out, ind, pc, op, seg, k, widths)
        if widths is not None:
            _width_after(op, widths)
        return k

    def _emit_op(
        self, out: Lines, ind: int, pc: int, op: Op, seg: _Segment, k: int, widths: Widths | None
    ) -> int:
        checked = widths is None
        known: Widths = widths if widths is not None else {}
        line: str | None
        if isinstance(op, Bin):
            line = _bin(op, known)
            if line:
                out.append((ind, line))
        elif isinstance(op, Load):
            if checked:
                out.append((ind, f"_pc = {pc}"))
                addr = f"(r{op.base} + {op.offset}) & {M64}" if op.offset else f"r{op.base}"
                out.append((ind, f"r{op.dst} = _ld({addr}, {op.size}, {op.signed}) & {M64}"))
            else:
                reg, const = seg.access[pc]
                x = _offset(reg, const)
                if op.size == 1 and not op.signed:
                    out.append((ind, f"r{op.dst} = V{reg}[{x}]"))
                elif op.signed and op.size != 8:
                    out.append((ind, f"r{op.dst} = {_U[op.size, True]}(V{reg}, {x})[0] & {M64}"))
                else:
                    out.append((ind, f"r{op.dst} = {_U[op.size, False]}(V{reg}, {x})[0]"))
        elif isinstance(op, Store):
            if checked:
                out.append((ind, f"_pc = {pc}"))
                addr = f"(r{op.base} + {op.offset}) & {M64}" if op.offset else f"r{op.base}"
                value = f"r{op.src}" if op.src is not None else str(op.imm)
                out.append((ind, f"_st({addr}, {op.size}, {value})"))
            else:
                reg, const = seg.access[pc]
                x = _offset(reg, const)
                mask = _MASK[op.size]
                if op.src is None:
                    value = str(op.imm & mask)
                elif op.size == 8 or known.get(op.src, 64) <= 8 * op.size:
                    value = f"r{op.src}"
                else:
                    value = f"r{op.src} & {mask}"
                if op.size == 1:
                    out.append((ind, f"V{reg}[{x}] = {value}"))
                else:
                    out.append((ind, f"{_P[op.size]}(V{reg}, {x}, {value})"))
        elif isinstance(op, Atomic):
            self._atomic(out, ind, pc, op, seg, known, checked)
        elif isinstance(op, LoadImm64):
            if op.kind is PseudoSrc.IMM64:
                out.append((ind, f"r{op.dst} = {op.value}"))
            else:
                out.append((ind, f"_pc = {pc}"))
                out.append((ind, f"r{op.dst} = _E._imm64({pc}, _ops[{pc}])"))
        elif isinstance(op, Un):
            line = _un(op)
            if line:
                out.append((ind, line))
        elif isinstance(op, (Call, CallReg)):
            out.append((ind, f"_pc = {pc}"))
            self._sync(out, ind, k)
            hid = str(op.helper) if isinstance(op, Call) else f"r{op.reg}"
            out.append((ind, f"_h = _hget({hid})"))
            out.append((ind, "if _h is None:"))
            out.append((ind + 1, f"raise _VMError(f'call to unknown helper {{{hid}}}')"))
            out.append((ind, f"r0 = _h.fn(_env, r1, r2, r3, r4, r5) & {M64}"))
            inval = self._invalidate()
            if inval:
                out.append((ind, inval))
            return 0
        elif isinstance(op, CallKfunc):
            out.append((ind, f"_pc = {pc}"))
            self._sync(out, ind, k)
            out.append((ind, f"_h = _E.kfuncs.get({op.btf_id})"))
            out.append((ind, "if _h is None:"))
            out.append((ind + 1, f"raise _VMError('call to unknown kfunc {op.btf_id}')"))
            out.append((ind, f"r0 = _h.fn(_env, r1, r2, r3, r4, r5) & {M64}"))
            inval = self._invalidate()
            if inval:
                out.append((ind, "if _h.unmaps_memory:"))  # most kfuncs leave the regions alone
                out.append((ind + 1, inval))
            return 0
        else:
            assert isinstance(op, LegacyLoad), (
                f"unexpected operation {op!r} at {pc}"
            )  # terminators: the caller
            out.append((ind, f"_pc = {pc}"))
            out.append((ind, f"_x = _legacy(_ops[{pc}], ({REGS}), _mapped)"))
            out.append((ind, "if _x is None:"))
            self._sync(out, ind + 1, k)
            out.append((ind + 1, "return 0, budget - rem"))
            out.append((ind, "r0 = _x"))
        return k

    def _atomic(
        self, out: Lines, ind: int, pc: int, op: Atomic, seg: _Segment, widths: Widths, checked: bool
    ) -> None:
        mask = _MASK[op.size]
        s = f"r{op.src}"
        operand = s if widths.get(op.src, 64) <= 8 * op.size else f"({s} & {mask})"
        if checked:
            out.append((ind, f"_pc = {pc}"))
            out.append((ind, f"_x = (r{op.base} + {op.offset}) & {M64}" if op.offset else f"_x = r{op.base}"))
            out.append((ind, f"_o = _ld(_x, {op.size})"))

            def put(value: str) -> str:
                return f"_st(_x, {op.size}, {value})"
        else:
            reg, const = seg.access[pc]
            out.append((ind, f"_x = {_offset(reg, const)}"))
            out.append((ind, f"_o = {_U[op.size, False]}(V{reg}, _x)[0]"))

            def put(value: str) -> str:
                return f"{_P[op.size]}(V{reg}, _x, {value})"

        if op.op is AtomicOp.CMPXCHG:
            r0 = "r0" if widths.get(0, 64) <= 8 * op.size else f"r0 & {mask}"
            out.append((ind, f"if _o == {r0}:"))
            out.append((ind + 1, put(operand)))
            out.append((ind, "r0 = _o"))
            return
        match op.op:
            case AtomicOp.ADD:
                value = f"(_o + {s}) & {mask}"
            case AtomicOp.OR:
                value = f"_o | {operand}"
            case AtomicOp.AND:
                value = f"_o & {operand}"
            case AtomicOp.XOR:
                value = f"_o ^ {operand}"
            case _:  # XCHG
                value = operand
        out.append((ind, put(value)))
        if op.fetch:
            out.append((ind, f"{s} = _o"))

    def _checks(self, out: Lines, ind: int, seg: _Segment, k: int) -> None:
        for reg, (lo, hi, writes) in seg.groups.items():
            limit = f"{'W' if writes else 'N'}{reg}"
            bound = f"{limit} - {hi}" if hi > 0 else (f"{limit} + {-hi}" if hi < 0 else limit)
            test = f"{-lo} <= a{reg} <= {bound}"
            out.append((ind, f"a{reg} = r{reg} - S{reg}"))
            out.append((ind, f"if not {test}:"))
            start = f"r{reg} + {lo}" if lo >= 0 else f"r{reg} - {-lo}"
            out.append((ind + 1, f"S{reg}, N{reg}, W{reg}, V{reg} = _fill({start}, {hi - lo})"))
            out.append((ind + 1, f"a{reg} = r{reg} - S{reg}"))
            out.append((ind + 1, f"if not {test}:"))
            self._sync(out, ind + 2, k)
            out.append((ind + 2, f"b = {-1 - seg.start}"))
            out.append((ind + 2, "break"))

    # --- fast code: one tree per root -------------------------------------------------------------

    def _root(self, root: int) -> Lines:
        if root == self.n:
            return [(0, self._handoff(root))]
        out: Lines = []
        self._emitted = 0
        maxpath = self._block(out, 1, root, [root], 0, 0, {})
        return [(0, "while True:"), (1, f"if rem < {maxpath}:"), (2, self._handoff(root)), *out]

    def _block(
        self, out: Lines, ind: int, start: int, stack: list[int], k: int, total: int, widths: Widths
    ) -> int:
        """Emit a block inside the current root's code; returns the longest path length."""
        block = self.blocks[start]
        segs = self.segs[start]
        self._emitted += len(block.pcs)
        for seg in segs:
            if seg.groups:
                self._checks(out, ind, seg, k)
            for pc in seg.pcs:
                k = self._op(out, ind, pc, seg, k + 1, widths)
                total += 1
        term = block.term
        if term is None:
            return self._edge(out, ind, block.succs[0], stack, k, total, widths)
        k += 1
        total += 1
        pc = block.pcs[-1]
        if isinstance(term, Branch):
            cond = _cond(term, widths)
            taken, fall = block.succs
            if self._estimate(taken, stack) <= self._estimate(fall, stack):
                out.append((ind, f"if {cond}:"))
                first = self._edge(out, ind + 1, taken, stack, k, total, dict(widths))
                return max(first, self._edge(out, ind, fall, stack, k, total, widths))
            out.append((ind, f"if not ({cond}):"))
            first = self._edge(out, ind + 1, fall, stack, k, total, dict(widths))
            return max(first, self._edge(out, ind, taken, stack, k, total, widths))
        if isinstance(term, Jump):
            return self._edge(out, ind, term.target, stack, k, total, widths)
        self._transfer(out, ind, pc, term, k, stack[0], "break")
        return total

    def _estimate(self, pc: int, stack: list[int]) -> int:
        if pc == stack[0] or (pc in self.roots and (pc in stack or self._scc[pc] != self._scc[stack[0]])):
            return 1
        return self._tree_size(pc)

    def _edge(
        self, out: Lines, ind: int, target: int, stack: list[int], k: int, total: int, widths: Widths
    ) -> int:
        root = stack[0]
        if target == root:
            self._sync(out, ind, k)
            out.append((ind, "continue"))
            return total
        room = ind < MAX_NEST and len(stack) < MAX_DEPTH
        if target not in self.roots:
            inline = room
        else:
            inline = room and target not in stack and self._duplicate(target, root)
        if inline:
            stack.append(target)
            longest = self._block(out, ind, target, stack, k, total, widths)
            stack.pop()
            return longest
        if target not in self.roots:
            self.roots.add(target)
            self._pending.append(target)
        self._sync(out, ind, k)
        out.append((ind, f"b = {target}"))
        out.append((ind, "break"))
        return total

    def _transfer(self, out: Lines, ind: int, pc: int, term: Op, k: int, root: int, leave: str) -> None:
        """Exit or local call (``leave``: how to reach the dispatch tree)."""
        if isinstance(term, Exit):
            out.append((ind, "if frames:"))
            self._sync(out, ind + 1, k)
            out.append((ind + 1, "b, r6, r7, r8, r9, r10 = frames.pop()"))
            out.append((ind + 1, leave))
            self._sync(out, ind, k)
            out.append((ind, "return r0, budget - rem"))
        else:
            assert isinstance(term, CallLocal), f"unexpected terminator {term!r} at {pc}"
            out.append((ind, f"if len(frames) >= {MAX_CALL_FRAMES - 1}:"))
            out.append((ind + 1, f"_pc = {pc}"))
            out.append(
                (ind + 1, f"raise _VMError('the call stack of {MAX_CALL_FRAMES + 1} frames is too deep')")
            )
            out.append((ind, f"frames.append(({pc + 1}, r6, r7, r8, r9, r10))"))
            out.append((ind, "r10 = _E._stack(_stacks, len(frames)).end"))
            self._sync(out, ind, k)
            if term.target == root and leave == "break":
                out.append((ind, "continue"))
            else:
                out.append((ind, f"b = {self._entry(term.target) if leave == 'continue' else term.target}"))
                out.append((ind, leave))

    # --- checked code: one piece per segment ------------------------------------------------------

    def _entry(self, pc: int) -> int:
        """Where checked code continues: a root's fast code, else the block's checked code."""
        return pc if pc in self.roots else -1 - pc

    def _checked(self, block: _Block, index: int) -> Lines:
        segs = self.segs[block.start]
        seg = segs[index]
        last = index == len(segs) - 1
        length = len(seg.pcs) + (1 if last and block.term is not None else 0)
        out: Lines = [(0, f"if rem < {length}:"), (1, self._handoff(seg.start))]
        k = 0
        for pc in seg.pcs:
            k = self._op(out, 0, pc, seg, k + 1, None)
        if not last:
            self._sync(out, 0, k)
            out.append((0, f"b = {-1 - segs[index + 1].start}"))
            return out
        term = block.term
        if term is None:
            self._sync(out, 0, k)
            out.append((0, f"b = {self._entry(block.succs[0])}"))
            return out
        k += 1
        if isinstance(term, Branch):
            taken, fall = block.succs
            out.append((0, f"if {_cond(term, {})}:"))
            self._sync(out, 1, k)
            out.append((1, f"b = {self._entry(taken)}"))
            out.append((1, "continue"))
            self._sync(out, 0, k)
            out.append((0, f"b = {self._entry(fall)}"))
        elif isinstance(term, Jump):
            self._sync(out, 0, k)
            out.append((0, f"b = {self._entry(term.target)}"))
        else:
            self._transfer(out, 0, block.pcs[-1], term, k, -1, "continue")
        return out

    # --- assembly ---------------------------------------------------------------------------------

    def source(self) -> str:
        fast: dict[int, Lines] = {}
        self._pending = sorted(self.roots)
        while self._pending:
            root = self._pending.pop()
            if root not in fast:
                fast[root] = self._root(root)
        checked: dict[int, Lines] = {}
        for start, block in self.blocks.items():
            if start == self.n:
                continue
            for index, seg in enumerate(self.segs[start]):
                checked[-1 - seg.start] = self._checked(block, index)

        head = [
            f"def {FUNCTION_NAME}(_E, _env, _mapped, _stacks, r1, r2, r3, r4, r5, r10, budget, b):",
            "    r0 = r6 = r7 = r8 = r9 = 0",
            "    rem = budget",
            "    frames = []",
            "    _pc = 0",
            "    _ops = _E.ops",
            "    _fill = _E._fill",
            "    _hget = _E.helpers.get",
            "    _ld = _E.memory.load",
            "    _st = _E.memory.store",
        ]
        for reg in self.cache_regs:
            head.append(f"    S{reg} = 0; N{reg} = W{reg} = -1; V{reg} = None")
        lines = [*head, "    try:", "        while True:", "            if b >= 0:"]
        self._tree(lines, 4, sorted(fast), fast)
        lines.append("            else:")
        self._tree(lines, 4, sorted(checked), checked)
        lines += [
            "    except _ProgramExit as _e:",
            "        return _e.retval, budget - rem",
            "    except _TailCall as _e:",
            "        _e.count = budget - rem",
            "        raise",
            "    except _BudgetExceededError:",
            "        raise",
            "    except _VMError as _e:",
            "        if _e.pc is not None:",
            "            raise",
            "        raise _E._located(_e, _pc) from None",
            "",
        ]
        return "\n".join(lines)

    def _tree(self, lines: list[str], ind: int, keys: list[int], bodies: dict[int, Lines]) -> None:
        """A binary search over ``b`` among ``keys`` (b always holds one of them)."""
        if len(keys) == 1:
            pad = "    " * ind
            lines.extend(pad + "    " * rel + text for rel, text in bodies[keys[0]])
            return
        mid = len(keys) // 2
        lines.append("    " * ind + f"if b < {keys[mid]}:")
        self._tree(lines, ind + 1, keys[:mid], bodies)
        lines.append("    " * ind + "else:")
        self._tree(lines, ind + 1, keys[mid:], bodies)


def entry_points(ops: list[Op | None]) -> frozenset[int]:
    """Slots the generated function can start at (its ``b`` argument), besides ``len(ops)``."""
    return frozenset(x for x in _cfg(ops)[1] if x < len(ops))


def generate(ops: list[Op | None]) -> str:
    """The Python source of the fast-tier function for ``ops`` (indexed by slot, no sentinel)."""
    return _Codegen(ops).source()
