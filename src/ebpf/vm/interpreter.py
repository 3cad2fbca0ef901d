"""The reference interpreter: exact RFC 9669 semantics, every memory access checked.

Core layer: pure, no kernel access.

Rule 1: this engine defines the user-space runtime's semantics; faster engines must give the
same results, faults included. Clarity wins over speed here, but the loop stays lean.

Rule 2 (RFC 9669 §4): 64-bit ALU immediates are sign-extended to 64 bits; 32-bit operations
use the low 32 bits of their operands and zero-extend the result. Division by zero gives 0;
modulo by zero leaves the dividend (its low 32 bits, zero-extended, for ALU32). Shift counts
are masked to the operand width (63 or 31). Signed division truncates toward zero; INT_MIN /
-1 = INT_MIN and INT_MIN % -1 = 0.

Rule 3: each call frame has its own 512-byte stack region (r10 points at its end); a local
call saves r6-r9 and r10 and is limited to 8 frames; every run has an instruction budget.

Rule 4: legacy packet loads (``ld_abs``/``ld_ind``) follow the kernel: the context must be
in r6, the value is read in network byte order into r0, and an out-of-bounds offset ends the
program with r0 = 0.

Rule 5 (the runtime's hooks): helpers and kfuncs get the run's ``env`` (a
:class:`~ebpf.vm.helpers.RunEnv` from the runtime, or just the memory); a kfunc call's ``imm``
is an id in :attr:`Interpreter.kfuncs` (:func:`ebpf.vm.kfuncs.runtime_kfuncs` by default);
``lddw`` with a map source asks ``resolve_imm64``, and ``lddw`` of a function gives
``code_base + 8 * slot``; a helper raising :class:`TailCall` leaves the engine with the
instruction count so far (the runtime continues in the target);
:meth:`Interpreter.call` runs a callback function from its slot with fresh frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ebpf.errors import BudgetExceededError, VMError
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
from ebpf.isa.program import Program
from ebpf.vm.context import Input, MappedInput, RawInput
from ebpf.vm.helpers import HelperEnv, HelperRegistry, ProgramExit
from ebpf.vm.kfuncs import KfuncRegistry, runtime_kfuncs
from ebpf.vm.memory import HostBuffer, Memory, Region

__all__ = [
    "DEFAULT_MAX_INSNS",
    "MAX_CALL_FRAMES",
    "STACK_SIZE",
    "Frame",
    "Imm64Resolver",
    "Interpreter",
    "RunResult",
    "TailCall",
]

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
STACK_SIZE = 512  # bytes per frame (MAX_BPF_STACK)
MAX_CALL_FRAMES = 8  # MAX_CALL_FRAMES in the kernel: the main program and 7 nested calls
DEFAULT_MAX_INSNS = 10_000_000

# A saved call frame: (return slot, r6, r7, r8, r9, r10).
Frame = tuple[int, int, int, int, int, int]

# Resolves lddw pseudo sources (map fd, map value, ...) to a 64-bit value at run time.
Imm64Resolver = Callable[[LoadImm64], int]


def _s64(x: int) -> int:
    return x - (1 << 64) if x >> 63 else x


def _s32(x: int) -> int:
    x &= M32
    return x - (1 << 32) if x >> 31 else x


def _sext(x: int, bits: int) -> int:
    x &= (1 << bits) - 1
    return x - (1 << bits) if x >> (bits - 1) else x


def _sdiv(a: int, b: int) -> int:
    """Signed division truncating toward zero (a, b signed; b != 0)."""
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


def _smod(a: int, b: int) -> int:
    """Signed remainder with the sign of the dividend (a, b signed; b != 0)."""
    return a - _sdiv(a, b) * b


# Binary ALU operations on already-masked unsigned operands: RFC 9669 §4.1 Table 5.
ALU64: dict[BinOp, Callable[[int, int], int]] = {
    BinOp.ADD: lambda a, b: (a + b) & M64,
    BinOp.SUB: lambda a, b: (a - b) & M64,
    BinOp.MUL: lambda a, b: (a * b) & M64,
    BinOp.DIV: lambda a, b: a // b if b else 0,
    BinOp.SDIV: lambda a, b: _sdiv(_s64(a), _s64(b)) & M64 if b else 0,
    BinOp.OR: lambda a, b: a | b,
    BinOp.AND: lambda a, b: a & b,
    BinOp.LSH: lambda a, b: (a << (b & 63)) & M64,
    BinOp.RSH: lambda a, b: a >> (b & 63),
    BinOp.MOD: lambda a, b: a % b if b else a,
    BinOp.SMOD: lambda a, b: _smod(_s64(a), _s64(b)) & M64 if b else a,
    BinOp.XOR: lambda a, b: a ^ b,
    BinOp.MOV: lambda a, b: b,
    BinOp.MOVSX8: lambda a, b: _sext(b, 8) & M64,
    BinOp.MOVSX16: lambda a, b: _sext(b, 16) & M64,
    BinOp.MOVSX32: lambda a, b: _sext(b, 32) & M64,
    BinOp.ARSH: lambda a, b: (_s64(a) >> (b & 63)) & M64,
}
ALU32: dict[BinOp, Callable[[int, int], int]] = {
    BinOp.ADD: lambda a, b: (a + b) & M32,
    BinOp.SUB: lambda a, b: (a - b) & M32,
    BinOp.MUL: lambda a, b: (a * b) & M32,
    BinOp.DIV: lambda a, b: a // b if b else 0,
    BinOp.SDIV: lambda a, b: _sdiv(_s32(a), _s32(b)) & M32 if b else 0,
    BinOp.OR: lambda a, b: a | b,
    BinOp.AND: lambda a, b: a & b,
    BinOp.LSH: lambda a, b: (a << (b & 31)) & M32,
    BinOp.RSH: lambda a, b: a >> (b & 31),
    BinOp.MOD: lambda a, b: a % b if b else a,
    BinOp.SMOD: lambda a, b: _smod(_s32(a), _s32(b)) & M32 if b else a,
    BinOp.XOR: lambda a, b: a ^ b,
    BinOp.MOV: lambda a, b: b,
    BinOp.MOVSX8: lambda a, b: _sext(b, 8) & M32,
    BinOp.MOVSX16: lambda a, b: _sext(b, 16) & M32,
    BinOp.ARSH: lambda a, b: (_s32(a) >> (b & 31)) & M32,
}

# Conditional jumps on masked unsigned operands, RFC 9669 §4.3 Table 6; (op, bits) -> predicate.
_U: dict[JmpOp, Callable[[int, int], bool]] = {
    JmpOp.JEQ: lambda a, b: a == b,
    JmpOp.JGT: lambda a, b: a > b,
    JmpOp.JGE: lambda a, b: a >= b,
    JmpOp.JSET: lambda a, b: bool(a & b),
    JmpOp.JNE: lambda a, b: a != b,
    JmpOp.JLT: lambda a, b: a < b,
    JmpOp.JLE: lambda a, b: a <= b,
}
COND64: dict[JmpOp, Callable[[int, int], bool]] = dict(_U)
COND64.update(
    {
        JmpOp.JSGT: lambda a, b: _s64(a) > _s64(b),
        JmpOp.JSGE: lambda a, b: _s64(a) >= _s64(b),
        JmpOp.JSLT: lambda a, b: _s64(a) < _s64(b),
        JmpOp.JSLE: lambda a, b: _s64(a) <= _s64(b),
    }
)
COND32: dict[JmpOp, Callable[[int, int], bool]] = dict(_U)
COND32.update(
    {
        JmpOp.JSGT: lambda a, b: _s32(a) > _s32(b),
        JmpOp.JSGE: lambda a, b: _s32(a) >= _s32(b),
        JmpOp.JSLT: lambda a, b: _s32(a) < _s32(b),
        JmpOp.JSLE: lambda a, b: _s32(a) <= _s32(b),
    }
)


def bswap(value: int, width: int) -> int:
    """Reverse the byte order of the low ``width`` bits of ``value``."""
    nbytes = width // 8
    return int.from_bytes((value & ((1 << width) - 1)).to_bytes(nbytes, "little"), "big")


def unary(op: Un, value: int) -> int:
    """RFC 9669 §4.1 NEG and §4.2 byte swaps (on a little-endian machine)."""
    if op.op is UnOp.NEG:
        return (-value) & (M64 if op.is64 else M32)
    if op.op is UnOp.LE:
        return value & ((1 << op.width) - 1)
    return bswap(value, op.width)  # BE and BSWAP


def atomic_apply(op: AtomicOp, old: int, operand: int, mask: int) -> int:
    """The value an atomic ADD/OR/AND/XOR/XCHG writes back."""
    if op is AtomicOp.ADD:
        return (old + operand) & mask
    if op is AtomicOp.OR:
        return old | operand
    if op is AtomicOp.AND:
        return old & operand
    if op is AtomicOp.XOR:
        return old ^ operand
    return operand  # XCHG


def _writes_dst(op: Op) -> int | None:
    match op:
        case Bin(dst=d) | Un(dst=d) | Load(dst=d) | LoadImm64(dst=d):
            return d
        case Atomic(fetch=True, src=s):
            return s
        case Atomic(op=AtomicOp.CMPXCHG):
            return 0
    return None


def _no_resolver(op: LoadImm64) -> int:
    raise VMError(
        f"lddw with pseudo source {op.kind.name} ({op.kind.value}) needs a loader to resolve it "
        "(maps and global data come from an object file)"
    )


class TailCall(Exception):
    """Raised by a helper (``bpf_tail_call``) to continue in ``target`` on the same context.

    The engine that runs the program sets :attr:`count` (instructions executed so far, the
    call included) and lets the exception through; whoever chains programs (the runtime)
    runs ``target`` next with what is left of the budget. The helper enforces the kernel's
    chain limit (``MAX_TAIL_CALL_CNT``, 33) before raising.
    """

    def __init__(self, target: object) -> None:
        super().__init__(target)
        self.target = target
        self.count = 0


_NO_INPUT = MappedInput(0, 0, None, 0, ())


@dataclass(frozen=True)
class _Env:
    """The :class:`~ebpf.vm.helpers.HelperEnv` handed to helpers."""

    memory: Memory


@dataclass(frozen=True)
class RunResult:
    """The outcome of one run.

    Attributes:
        retval: r0 at exit, all 64 bits.
        insns: instructions executed (an lddw counts once).
        data: the input memory (or packet) after the run.
        elapsed_ns: wall time of the run.
    """

    retval: int
    insns: int
    data: bytes = b""
    elapsed_ns: int = 0
    profile: tuple[int, ...] | None = field(default=None, compare=False)


class Interpreter:
    """Runs a program with the reference semantics.

    Args:
        program: the program.
        helpers: helper id -> callable (see :mod:`ebpf.vm.helpers`); empty by default.
        max_insns: default instruction budget per run.
        resolve_imm64: resolves ``lddw`` with pseudo sources (maps); raises by default.
        memory: the region table (a private one by default); share it with maps.
        code_base: address of the program's code as the runtime maps it: ``lddw`` of a
            function (``BPF_PSEUDO_FUNC``, a callback) gives ``code_base + 8 * slot``; without
            it such an ``lddw`` goes to ``resolve_imm64``.

    Raises:
        DecodeError: the program has an invalid instruction or an out-of-range jump.
        VMError: the program writes r10 ("frame pointer is read only").
    """

    engine = "interp"

    def __init__(
        self,
        program: Program,
        *,
        helpers: HelperRegistry | None = None,
        max_insns: int = DEFAULT_MAX_INSNS,
        resolve_imm64: Imm64Resolver | None = None,
        memory: Memory | None = None,
        code_base: int | None = None,
    ) -> None:
        self.program = program
        self.ops: list[Op | None] = list(program.ops())
        for pc, op in enumerate(self.ops):
            if op is not None and _writes_dst(op) == 10:
                raise VMError("frame pointer is read only", pc=pc, insn=self.describe(pc))
        self.ops.append(None)  # sentinel: falling off the end
        self.helpers = helpers if helpers is not None else HelperRegistry()
        self.max_insns = max_insns
        self.resolve_imm64 = resolve_imm64 or _no_resolver
        self.memory = memory if memory is not None else Memory()
        self.code_base = code_base
        self.kfuncs: KfuncRegistry = runtime_kfuncs()

    def describe(self, pc: int) -> str:
        """The instruction at slot ``pc`` as LLVM-syntax text (for messages)."""
        from ebpf.isa.asm import format_instruction
        from ebpf.isa.encoding import slot_offsets

        slots = slot_offsets(self.program.instructions)
        try:
            return format_instruction(self.program.instructions[slots.index(pc)])
        except (ValueError, ImportError):
            return f"slot {pc}"

    def run(
        self,
        input: Input | bytes | bytearray = b"",
        *,
        max_insns: int | None = None,
        profile: bool = False,
        env: HelperEnv | None = None,
    ) -> RunResult:
        """Run the program once.

        Args:
            input: raw bytes (r1 = pointer, r2 = length) or an :class:`~ebpf.vm.context.Input`.
            max_insns: instruction budget for this run (default: the interpreter's).
            profile: also count executions per slot (``RunResult.profile``).
            env: what helpers see (default: just the memory).

        Raises:
            VMError: a memory fault, an unknown helper, too deep calls, falling off the end.
            BudgetExceededError: more than ``max_insns`` instructions executed.
            TailCall: a helper asked to continue in another program (see :class:`TailCall`).
        """
        if not isinstance(input, Input):
            input = RawInput(bytes(input))
        memory = self.memory
        mapped = input.map(memory)
        stacks: list[Region] = []
        start = time.perf_counter_ns()
        counts = [0] * len(self.ops) if profile else None
        try:
            retval, insns = self._execute(
                mapped, stacks, max_insns or self.max_insns, counts, env or _Env(memory)
            )
        finally:
            for region in (*mapped.regions, *stacks):
                memory.unmap(region)
        elapsed = time.perf_counter_ns() - start
        return RunResult(retval, insns, mapped.data(), elapsed, tuple(counts[:-1]) if counts else None)

    def execute(self, mapped: MappedInput, env: HelperEnv, budget: int) -> tuple[int, int]:
        """Run on an input the caller has mapped (and will unmap); returns ``(r0, count)``.

        The runtime's entry: one :class:`MappedInput` serves a chain of tail calls.

        Raises:
            VMError, BudgetExceededError: as :meth:`run`.
            TailCall: with :attr:`TailCall.count` set.
        """
        stacks: list[Region] = []
        try:
            return self._execute(mapped, stacks, budget, None, env)
        finally:
            for region in stacks:
                self.memory.unmap(region)

    def call(self, slot: int, args: tuple[int, ...], env: HelperEnv, budget: int) -> tuple[int, int]:
        """Run the function at ``slot`` with ``args`` in r1-r5 until it returns: a helper
        callback (``bpf_loop``, ``bpf_for_each_map_elem``). Returns ``(r0, count)``.

        Raises:
            VMError: ``slot`` is not an instruction of the program, or a fault in the callback.
            BudgetExceededError: the callback ran more than ``budget`` instructions.
        """
        if not 0 <= slot < len(self.ops) - 1 or self.ops[slot] is None:
            raise VMError(f"callback address is not an instruction of the program (slot {slot})")
        regs = [0] * 11
        for i, value in enumerate(args[:5], start=1):
            regs[i] = value & M64
        stacks: list[Region] = []
        try:
            return self._call(slot, regs, stacks, budget, env)
        finally:
            for region in stacks:
                self.memory.unmap(region)

    def _call(
        self, slot: int, regs: list[int], stacks: list[Region], budget: int, env: HelperEnv
    ) -> tuple[int, int]:
        regs[10] = self._stack(stacks, 0).end
        return self._loop(slot, regs, [], 0, _NO_INPUT, stacks, budget, None, env)

    def _stack(self, stacks: list[Region], depth: int) -> Region:
        while len(stacks) <= depth:
            stacks.append(self.memory.map_buffer(f"stack[{len(stacks)}]", HostBuffer(STACK_SIZE)))
        return stacks[depth]

    def _execute(
        self,
        mapped: MappedInput,
        stacks: list[Region],
        budget: int,
        counts: list[int] | None,
        env: HelperEnv,
    ) -> tuple[int, int]:
        regs = [0] * 11
        regs[1] = mapped.r1
        regs[2] = mapped.r2
        regs[10] = self._stack(stacks, 0).end
        return self._loop(0, regs, [], 0, mapped, stacks, budget, counts, env)

    def _loop(
        self,
        pc: int,
        regs: list[int],
        frames: list[Frame],
        count: int,
        mapped: MappedInput,
        stacks: list[Region],
        budget: int,
        counts: list[int] | None,
        env: HelperEnv,
    ) -> tuple[int, int]:
        """The reference loop from slot ``pc`` with the given state; returns ``(r0, count)``.

        Faster engines resume here (e.g. when the budget is nearly exhausted) so that the
        rest of a run, its faults and its budget error are exactly the reference ones.
        ``regs`` and ``frames`` are updated in place.
        """
        ops = self.ops
        memory = self.memory
        load = memory.load
        store = memory.store
        helpers = self.helpers
        try:
            while True:
                op = ops[pc]
                if count >= budget:
                    raise BudgetExceededError(f"instruction budget of {budget} exhausted", pc=pc)
                count += 1
                if counts is not None:
                    counts[pc] += 1
                t = type(op)
                if t is Bin:
                    assert isinstance(op, Bin)
                    src = op.src
                    if op.is64:
                        b = regs[src] if src is not None else op.imm & M64
                        regs[op.dst] = ALU64[op.op](regs[op.dst], b)
                    else:
                        b = (regs[src] if src is not None else op.imm) & M32
                        regs[op.dst] = ALU32[op.op](regs[op.dst] & M32, b)
                    pc += 1
                elif t is Branch:
                    assert isinstance(op, Branch)
                    src = op.src
                    if op.is64:
                        taken = COND64[op.cond](regs[op.dst], regs[src] if src is not None else op.imm & M64)
                    else:
                        b = (regs[src] if src is not None else op.imm) & M32
                        taken = COND32[op.cond](regs[op.dst] & M32, b)
                    pc = op.target if taken else pc + 1
                elif t is Load:
                    assert isinstance(op, Load)
                    regs[op.dst] = load((regs[op.base] + op.offset) & M64, op.size, op.signed) & M64
                    pc += 1
                elif t is Store:
                    assert isinstance(op, Store)
                    value = regs[op.src] if op.src is not None else op.imm
                    store((regs[op.base] + op.offset) & M64, op.size, value)
                    pc += 1
                elif t is Jump:
                    assert isinstance(op, Jump)
                    pc = op.target
                elif t is Exit:
                    if not frames:
                        return regs[0], count
                    pc, regs[6], regs[7], regs[8], regs[9], regs[10] = frames.pop()
                elif t is LoadImm64:
                    assert isinstance(op, LoadImm64)
                    regs[op.dst] = op.value if op.kind is PseudoSrc.IMM64 else self._imm64(pc, op)
                    pc += 2
                elif t is Un:
                    assert isinstance(op, Un)
                    regs[op.dst] = unary(op, regs[op.dst])
                    pc += 1
                elif t is Call or t is CallReg:
                    helper_id = op.helper if isinstance(op, Call) else regs[op.reg]  # type: ignore[union-attr]
                    helper = helpers.get(helper_id)
                    if helper is None:
                        raise VMError(f"call to unknown helper {helper_id}")
                    regs[0] = helper.fn(env, regs[1], regs[2], regs[3], regs[4], regs[5]) & M64
                    pc += 1
                elif t is CallLocal:
                    assert isinstance(op, CallLocal)
                    if len(frames) + 1 >= MAX_CALL_FRAMES:
                        raise VMError(f"the call stack of {MAX_CALL_FRAMES + 1} frames is too deep")
                    frames.append((pc + 1, regs[6], regs[7], regs[8], regs[9], regs[10]))
                    regs[10] = self._stack(stacks, len(frames)).end
                    pc = op.target
                elif t is Atomic:
                    assert isinstance(op, Atomic)
                    self._atomic(op, regs, load, store)
                    pc += 1
                elif t is LegacyLoad:
                    assert isinstance(op, LegacyLoad)
                    loaded = self._legacy_load(op, regs, mapped)
                    if loaded is None:
                        return 0, count
                    regs[0] = loaded
                    pc += 1
                elif t is CallKfunc:
                    assert isinstance(op, CallKfunc)
                    kfunc = self.kfuncs.get(op.btf_id)
                    if kfunc is None:
                        raise VMError(f"call to unknown kfunc {op.btf_id}")
                    regs[0] = kfunc.fn(env, regs[1], regs[2], regs[3], regs[4], regs[5]) & M64
                    pc += 1
                else:
                    raise VMError(
                        "fell off the end of the program (the last instruction must be exit or a jump)"
                    )
        except ProgramExit as stop:
            return stop.retval, count
        except TailCall as jump:
            jump.count = count
            raise
        except BudgetExceededError:
            raise
        except VMError as err:
            if err.pc is not None:
                raise
            raise self._located(err, pc) from None

    def _imm64(self, pc: int, op: LoadImm64) -> int:
        """The value of an ``lddw`` with a pseudo source at slot ``pc``."""
        if op.kind is PseudoSrc.FUNC and self.code_base is not None:
            return (self.code_base + 8 * (pc + 1 + op.imm_lo)) & M64
        return self.resolve_imm64(op) & M64

    def _located(self, err: VMError, pc: int) -> VMError:
        """``err`` (raised without a location) as the fault of the instruction at slot ``pc``."""
        insn = self.describe(pc) if pc < len(self.ops) - 1 else None
        return VMError(err.message, pc=pc, insn=insn, address=err.address)

    @staticmethod
    def _atomic(
        op: Atomic, regs: list[int], load: Callable[..., int], store: Callable[[int, int, int], None]
    ) -> None:
        mask = M64 if op.size == 8 else M32
        addr = (regs[op.base] + op.offset) & M64
        old = load(addr, op.size)
        if op.op is AtomicOp.CMPXCHG:
            if old == regs[0] & mask:
                store(addr, op.size, regs[op.src] & mask)
            regs[0] = old
            return
        store(addr, op.size, atomic_apply(op.op, old, regs[op.src] & mask, mask))
        if op.fetch:
            regs[op.src] = old

    @staticmethod
    def _legacy_load(op: LegacyLoad, regs: list[int], mapped: MappedInput) -> int | None:
        if not mapped.ctx_address or regs[6] != mapped.ctx_address:
            raise VMError("ld_abs/ld_ind need the context pointer in r6")
        offset = op.imm if op.src is None else _s32(regs[op.src] + op.imm)
        region = mapped.data_region
        if region is None or offset < 0 or offset + op.size > region.size:
            return None  # out of bounds: the program ends with r0 = 0
        return int.from_bytes(region.view[offset : offset + op.size], "big")
