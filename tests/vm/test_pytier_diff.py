"""Differential tests: the fast tier (``py``) against the reference interpreter, with Hypothesis.

Random programs, valid or faulting, run on both engines over the same memory layout; the outcome — r0, instruction count and memory, or the fault's type, pc,
instruction text, message and address — must be identical. Budgets are kept small so that
many runs end in ``BudgetExceededError`` somewhere inside a block, a loop or a callee.

The harness (``RefEngine``/``FastEngine``, ``Replay``, ``compare``, ``assert_same``) is shared
with ``test_pytier.py``. Each run maps fresh host buffers, so two runs see different addresses,
and fault messages (which print addresses and the nearest region) or programs that compute
with pointers would differ for reasons that have nothing to do with the engines. Here both
engines reuse one pool of stack buffers and one set of input buffers (restored before every
run), so every address is the same and outcomes can be compared exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from differential.progen import alu_insn, imm64, packets, xdp_program
from ebpf.errors import BPFError, VMError
from ebpf.isa import Instruction as I
from ebpf.isa import Program
from ebpf.vm import (
    MAX_CALL_FRAMES,
    STACK_SIZE,
    HelperRegistry,
    HostBuffer,
    Input,
    Interpreter,
    Memory,
    PyTier,
    RawInput,
    Region,
    XdpInput,
    ubpf_test_helpers,
)
from ebpf.vm.context import MappedInput
from ebpf.vm.helpers import HelperEnv

from .test_fuzz import valid_instruction

# --- the harness: both engines over one memory layout ---------------------------------------------

_POOL = [HostBuffer(STACK_SIZE) for _ in range(MAX_CALL_FRAMES + 1)]
_ZERO = bytes(STACK_SIZE)


class _PooledStacks:
    """Engine mix-in: stack frames come from one pool of buffers, zeroed for each run."""

    memory: Memory

    def _stack(self, stacks: list[Region], depth: int) -> Region:
        while len(stacks) <= depth:
            buf = _POOL[len(stacks)]
            buf.view[:] = _ZERO
            stacks.append(self.memory.map_buffer(f"stack[{len(stacks)}]", buf))
        return stacks[depth]


class RefEngine(_PooledStacks, Interpreter):
    pass


class FastEngine(_PooledStacks, PyTier):
    pass


class Replay(Input):
    """Maps ``inner`` once, then maps the very same regions again, contents restored."""

    def __init__(self, inner: Input) -> None:
        self.inner = inner
        self._mapped: MappedInput | None = None
        self._snapshot: list[bytes] = []

    def map(self, memory: Memory) -> MappedInput:
        if self._mapped is None:
            self._mapped = self.inner.map(memory)
            self._snapshot = [bytes(r.buffer) for r in self._mapped.regions]
            return self._mapped
        for region, data in zip(self._mapped.regions, self._snapshot, strict=True):
            region.buffer.view[:] = data
            memory.map(region)
        return self._mapped


Outcome = tuple[object, ...]


def outcome(
    engine: type[Interpreter],
    program: Program,
    input: Input,
    *,
    helpers: HelperRegistry | None = None,
    max_insns: int = 10_000,
    memory: Memory | None = None,
) -> Outcome:
    """What one run gives: ("ok", r0, count, data) or ("error", type, pc, insn, message, address)."""
    try:
        eng = engine(program, helpers=helpers, max_insns=max_insns, memory=memory)
        result = eng.run(input)
    except VMError as err:
        return ("error", type(err).__name__, err.pc, err.insn, err.message, err.address)
    except BPFError as err:
        return ("error", type(err).__name__, str(err))
    return ("ok", result.retval, result.insns, result.data)


@dataclass
class Pair:
    """Both outcomes of one program and input."""

    ref: Outcome
    fast: Outcome

    @property
    def same(self) -> bool:
        return self.ref == self.fast


def compare(
    program: Program, input: Input, *, helpers: HelperRegistry | None = None, max_insns: int = 10_000
) -> Pair:
    """Run the reference interpreter, then the fast tier, over one memory layout."""
    replay = Replay(input)
    ref = outcome(RefEngine, program, replay, helpers=helpers, max_insns=max_insns)
    fast = outcome(FastEngine, program, replay, helpers=helpers, max_insns=max_insns)
    return Pair(ref, fast)


def assert_same(
    program: Program, input: Input, *, helpers: HelperRegistry | None = None, max_insns: int = 10_000
) -> Outcome:
    pair = compare(program, input, helpers=helpers, max_insns=max_insns)
    assert pair.same, f"engines differ on\n{program}\ninterp: {pair.ref}\npy:     {pair.fast}"
    return pair.ref


# --- random programs --------------------------------------------------------------------------------

EXAMPLES = int(os.environ.get("EBPF_PYTIER_EXAMPLES", "600"))
HELPERS = ubpf_test_helpers()
EXTRA = HostBuffer(48)  # mapped by helper 11 at the same address for both engines


def _unmap(env: HelperEnv, address: int, _b: int, _c: int, _d: int, _e: int) -> int:
    """Helper 10: unmap the region holding ``address`` (later accesses to it must fault)."""
    region = env.memory.find(address)
    if region is None:
        return 1
    env.memory.unmap(region)
    return 0


def _map(env: HelperEnv, _a: int, _b: int, _c: int, _d: int, _e: int) -> int:
    """Helper 11: map a zeroed 48-byte region (once) and return its address."""
    if env.memory.find(EXTRA.address) is None:
        EXTRA.view[:] = bytes(len(EXTRA))
        env.memory.map_buffer("extra", EXTRA)
    return EXTRA.address


HELPERS.register(10, "unmap", _unmap)
HELPERS.register(11, "map", _map)
SIZES = {1: 0x10, 2: 0x08, 4: 0x00, 8: 0x18}
SCALARS = (0, 2, 3, 4, 5, 8, 9)
ATOMIC_IMMS = (0x00, 0x01, 0x40, 0x41, 0x50, 0x51, 0xA0, 0xA1, 0xE1, 0xF1)
# jmp/jmp32 with immediate and register sources, and ja.
BRANCH_OPCODES = (0x15, 0x1D, 0x25, 0x2D, 0x35, 0x45, 0x55, 0x5D, 0x65, 0xA5, 0xB5, 0xC5, 0xD5) + (
    (0x16, 0x1E, 0x26, 0x2E, 0x3E, 0x46, 0x56, 0x66, 0x6E, 0xA6, 0xAE, 0xBE, 0xCE, 0x05)
)


def _rare(draw: st.DrawFn, one_in: int = 30) -> bool:
    return draw(st.integers(0, one_in - 1)) == 0


def _ptrs(xdp: bool) -> tuple[int, ...]:
    """Pointer registers: r1 (input, or the read-only context), r6 (a copy), r7 (packet data), r10."""
    return (7, 7, 10, 10, 6, 1) if xdp else (1, 1, 10, 10, 6)


def _offset(draw: st.DrawFn, base: int, size: int) -> int:
    """Mostly inside the region the base usually points into, now and then around its edges."""
    if _rare(draw, 40):
        if base == 10:
            return draw(st.one_of(st.integers(-520, 8), st.sampled_from([-512, -513, -size, -size + 1, 0])))
        return draw(st.one_of(st.integers(-8, 100), st.sampled_from([-1, 0, 24, 31, 32, 63, 64, 95, 96])))
    if base == 10:
        return -draw(st.integers(size, 64))
    return draw(st.integers(0, 24))


@st.composite
def mem_op(draw: st.DrawFn, xdp: bool, regs: tuple[int, ...] = SCALARS) -> list[I]:
    """A load, store or atomic through a pointer register, usually in range, sometimes not."""
    size = draw(st.sampled_from([1, 2, 4, 8]))
    base = draw(st.sampled_from(_ptrs(xdp)))
    reg = draw(st.sampled_from(regs))
    if xdp and base == 1 and not _rare(draw, 4):  # the context: loads of its fields
        return [I(0x61, dst=reg, src=1, offset=draw(st.sampled_from([0, 4, 8, 12, 16, 20])))]
    offset = _offset(draw, base, size)
    kind = draw(st.sampled_from(["ldx", "ldx", "ldsx", "stx", "stx", "st", "atomic", "atomic"]))
    if kind == "atomic" and size in (4, 8):
        imm = draw(st.sampled_from(ATOMIC_IMMS))
        return [I(0xC3 | SIZES[size], dst=base, src=reg, offset=offset, imm=imm)]
    if kind == "ldsx" and size != 8:
        return [I(0x81 | SIZES[size], dst=reg, src=base, offset=offset)]
    if kind in ("stx", "atomic"):
        return [I(0x63 | SIZES[size], dst=base, src=reg, offset=offset)]
    if kind == "st":
        return [
            I(0x62 | SIZES[size], dst=base, offset=offset, imm=draw(st.integers(-(1 << 31), (1 << 31) - 1)))
        ]
    return [I(0x61 | SIZES[size], dst=reg, src=base, offset=offset)]


@st.composite
def walk_op(draw: st.DrawFn, xdp: bool) -> list[I]:
    """Move a pointer a little (in a loop it walks towards, and past, a region's end)."""
    dst = draw(st.sampled_from((6, 7) if xdp else (1, 6)))
    return [I(0x07, dst=dst, imm=draw(st.integers(-8, 8)))]


@st.composite
def const_op(draw: st.DrawFn, regs: tuple[int, ...] = SCALARS) -> list[I]:
    """A 64-bit constant (upper bits set, sign bits, ...) for 32-bit and signed operations."""
    return [I(0x18, dst=draw(st.sampled_from(regs)), imm=draw(imm64))]


@st.composite
def ptr_op(draw: st.DrawFn, xdp: bool) -> list[I]:
    """rP = rQ + k: a pointer into the same or another region (rarely anywhere)."""
    dst = draw(st.sampled_from((6, 7) if xdp else (1, 6)))
    src = draw(st.sampled_from(_ptrs(xdp)))
    if xdp and src == 1:
        src = 10
    k = -draw(st.integers(0, 64)) if src == 10 else draw(st.integers(0, 24))
    if _rare(draw, 10):
        k = draw(st.integers(-600, 100))
    out = [I(0xBF, dst=dst, src=src), I(0x07, dst=dst, imm=k)]
    if _rare(draw, 20):
        out.append(I(0x1F, dst=dst, src=draw(st.sampled_from(SCALARS))))  # sub a scalar: anything goes
    return out


@st.composite
def scalar_op(draw: st.DrawFn, regs: tuple[int, ...] = SCALARS) -> list[I]:
    return [draw(alu_insn(regs))]


@st.composite
def helper_op(draw: st.DrawFn, xdp: bool) -> list[I]:
    kind = draw(
        st.sampled_from(["call", "call", "callx", "memfrob", "memfrob", "strcmp", "unwind", "map", "unmap"])
    )
    if kind == "call":
        return [I(0x85, imm=draw(st.sampled_from([0, 2, 3, 6] if _rare(draw, 10) else [0, 2, 3])))]
    if kind == "callx":
        reg = draw(st.sampled_from(SCALARS))
        return [I(0xB7, dst=reg, imm=draw(st.sampled_from([0, 2, 3, 7]))), I(0x8D, dst=reg)]
    if kind == "memfrob":  # memfrob(ptr, n): memory through a helper
        base = draw(st.sampled_from((7, 10) if xdp else (1, 10)))
        start = -draw(st.integers(8, 64)) if base == 10 else draw(st.integers(0, 16))
        return [
            I(0xBF, dst=1, src=base),
            I(0x07, dst=1, imm=start),
            I(0xB7, dst=2, imm=draw(st.integers(0, 8)) if not _rare(draw, 8) else draw(st.integers(0, 100))),
            I(0x85, imm=1),
        ]
    if kind == "strcmp":
        return [
            I(0xBF, dst=1, src=10),
            I(0x07, dst=1, imm=-draw(st.integers(1, 40))),
            I(0xBF, dst=2, src=10),
            I(0x07, dst=2, imm=-draw(st.integers(1, 40))),
            I(0x85, imm=4),
        ]
    if kind == "unwind":
        return [I(0xB7, dst=1, imm=0 if _rare(draw, 5) else 1), I(0x85, imm=5)]
    if kind == "map":  # r6 = a new region
        return [I(0x85, imm=11), I(0xBF, dst=6, src=0)]
    return [
        I(0xBF, dst=1, src=draw(st.sampled_from(_ptrs(xdp)))),
        I(0x85, imm=10),
    ]  # unmap: later accesses fault


@st.composite
def loop_op(draw: st.DrawFn, xdp: bool) -> list[I]:
    """A counted loop (r9) over memory and ALU operations: long runs through the fast code."""
    regs = (0, 2, 3, 4, 5)
    body = []
    for _ in range(draw(st.integers(1, 8))):
        body += _weighted(
            draw,
            [
                (8, mem_op(xdp, regs)),
                (5, scalar_op(regs)),
                (4, walk_op(xdp)),
                (1, const_op(regs)),
                (1, ptr_op(xdp)),
                (1, helper_op(xdp)),
            ],
        )
    body.append(I(0x07, dst=9, imm=-1))
    back = -(sum(insn.slots for insn in body) + 1)
    return [I(0xB7, dst=9, imm=draw(st.integers(1, 60))), *body, I(0x55, dst=9, imm=0, offset=back)]


@st.composite
def legacy_op(draw: st.DrawFn) -> list[I]:
    size = draw(st.sampled_from([1, 2, 4]))
    out = [I(0xBF, dst=6, src=1)] if draw(st.integers(0, 3)) else []
    if draw(st.booleans()):
        return [*out, I(0x20 | SIZES[size], imm=draw(st.integers(-4, 80)))]
    reg = draw(st.sampled_from(SCALARS))
    return [
        *out,
        I(0xB7, dst=reg, imm=draw(st.integers(-8, 80))),
        I(0x40 | SIZES[size], src=reg, imm=draw(st.integers(-8, 8))),
    ]


@st.composite
def rare_op(draw: st.DrawFn) -> list[I]:
    kind = draw(st.sampled_from(["lddw_map", "kfunc", "ctx_store", "fuzz", "fuzz"]))
    if kind == "lddw_map":
        return [I(0x18, dst=draw(st.sampled_from(SCALARS)), src=1, imm=draw(st.integers(0, 3)))]
    if kind == "kfunc":
        return [I(0x85, src=2, imm=draw(st.integers(1, 100)))]
    if kind == "ctx_store":
        return [I(0x63, dst=1, src=draw(st.sampled_from(SCALARS)), offset=draw(st.sampled_from([0, 4, 16])))]
    return [draw(valid_instruction())]


# A branch or call to be pointed at an instruction once the layout is known: (kind, insn, target index).
Placeholder = tuple[str, I, int]


@st.composite
def control_op(draw: st.DrawFn) -> list[I | Placeholder]:
    kind = draw(st.sampled_from(["branch", "branch", "loop", "call"]))
    target = draw(st.integers(0, 1 << 16))
    if kind == "call":
        return [("call", I(0x85, src=1), target)]
    op = draw(st.sampled_from(BRANCH_OPCODES))
    dst = draw(st.sampled_from((*SCALARS, 6, 10)))
    src = draw(st.sampled_from(SCALARS)) if op & 0x08 else 0
    imm = 0 if op & 0x08 or op == 0x05 else draw(st.integers(-3, 40))
    if op == 0x05:
        dst = 0
    return [("branch", I(op, dst=dst, src=src, imm=imm), target)]


def _resolve(items: list[I | Placeholder], subs: list[list[I | Placeholder]]) -> Program:
    """Lay out main then the subprograms; point each placeholder at a slot boundary."""
    main = [*items, I(0x95)]
    layout: list[I | Placeholder] = list(main)
    sub_starts = []
    for sub in subs:
        sub_starts.append(len(layout))
        layout += [*sub, I(0x95)]
    slots = []
    slot = 0
    for item in layout:
        slots.append(slot)
        slot += item.slots if isinstance(item, I) else 1
    out = []
    for index, item in enumerate(layout):
        if isinstance(item, I):
            out.append(item)
            continue
        kind, insn, target = item
        if kind == "call":
            dest = sub_starts[target % len(sub_starts)] if sub_starts else target % len(layout)
            out.append(I(0x85, src=1, imm=slots[dest] - slots[index] - 1))
        else:
            dest = target % len(layout)
            offset = slots[dest] - slots[index] - 1
            if -(1 << 15) <= offset < (1 << 15):
                out.append(I(insn.opcode, dst=insn.dst, src=insn.src, offset=offset, imm=insn.imm))
            else:
                out.append(I(0xB7, dst=0, imm=1))
    return Program(out)


def _weighted(draw: st.DrawFn, choices: list[tuple[int, st.SearchStrategy[Any]]]) -> Any:
    """Draw from one of ``choices`` with the given weights (``one_of`` weighs its branches alike)."""
    pick = draw(st.integers(0, sum(w for w, _ in choices) - 1))
    for weight, strategy in choices:
        if pick < weight:
            return draw(strategy)
        pick -= weight
    raise AssertionError


@st.composite
def ops(draw: st.DrawFn, xdp: bool) -> list[I | Placeholder]:
    """One chunk of a program: mostly memory, ALU and loops, few helpers and branches, rare oddities."""
    chunk: list[I | Placeholder] = _weighted(
        draw,
        [
            (30, mem_op(xdp)),
            (8, ptr_op(xdp)),
            (6, walk_op(xdp)),
            (20, scalar_op()),
            (6, const_op()),
            (10, loop_op(xdp)),
            (8, control_op()),
            (6, helper_op(xdp)),
            (1, legacy_op()),
            (1, rare_op()),
        ],
    )
    return chunk


@st.composite
def programs(draw: st.DrawFn, xdp: bool = False) -> Program:
    """Random programs; for XDP, r7 = ctx->data first (usually); r6 = a pointer."""
    head: list[I] = []
    if xdp and not _rare(draw, 10):
        head.append(I(0x61, dst=7, src=1, offset=0))
    head.append(I(0xBF, dst=6, src=draw(st.sampled_from(_ptrs(xdp)))))
    for reg in SCALARS:
        if draw(st.booleans()):
            head.append(I(0x18, dst=reg, imm=draw(imm64)))
    body = [*head, *(item for chunk in draw(st.lists(ops(xdp), min_size=4, max_size=30)) for item in chunk)]
    nsubs = draw(st.integers(0, 2))
    subs: list[list[I | Placeholder]] = [
        [item for chunk in draw(st.lists(ops(xdp), max_size=6)) for item in chunk if isinstance(item, I)]
        for _ in range(nsubs)
    ]
    # Sub-programs may call (themselves or each other): calls are resolved against all subs.
    for sub in subs:
        if draw(st.booleans()):
            sub.insert(draw(st.integers(0, len(sub))), ("call", I(0x85, src=1), draw(st.integers(0, 3))))
    return _resolve(body, subs)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Program, RawInput | XdpInput]:
    """A program and an input of the kind it was made for (with a few mismatches)."""
    xdp = draw(st.booleans())
    program = draw(programs(xdp))
    if draw(st.integers(0, 19)) == 0:
        xdp = not xdp
    data = draw(
        st.one_of(
            st.binary(min_size=32, max_size=96), st.binary(min_size=32, max_size=96), st.binary(max_size=31)
        )
    )
    if xdp:
        return program, XdpInput(data + bytes(max(0, 14 - len(data))))
    return program, RawInput(data)


budgets = st.one_of(
    st.integers(0, 59).map(lambda x: (x * 37 + 23) % 60 + 1), st.integers(60, 2000), st.just(100_000)
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=cases(), budget=budgets)
def test_random_programs_agree(case: tuple[Program, RawInput | XdpInput], budget: int) -> None:
    program, input = case
    assert_same(program, input, helpers=HELPERS, max_insns=budget)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    insns=st.lists(valid_instruction(), min_size=1, max_size=12),
    mem=st.binary(max_size=32),
    xdp=st.booleans(),
    budget=budgets,
)
def test_fuzzed_instructions_agree(insns: list[I], mem: bytes, xdp: bool, budget: int) -> None:
    program = Program([*insns, I(0x95)])
    data = XdpInput(mem + bytes(14)) if xdp else RawInput(mem)
    assert_same(program, data, helpers=HELPERS, max_insns=budget)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(program=xdp_program(), packet=packets)
def test_kernel_differential_programs_agree(program: Program, packet: bytes) -> None:
    """The programs tests/differential checks against the kernel (through the interpreter).

    The interpreter agrees with ``BPF_PROG_TEST_RUN`` on them, so the fast tier agreeing with
    the interpreter here makes it agree with the kernel, without needing one.
    """
    result = assert_same(program, XdpInput(packet))
    assert result[0] == "ok", result
