"""The fast pure-Python tier (engine ``py``): each program translated once into Python source.

Core layer: pure, no kernel access.

Rule 1: results are identical to the reference interpreter's on everything: ``RunResult``
(r0, instruction count, memory after the run) and faults (``VMError`` with the same pc,
message and address; ``BudgetExceededError`` at the same pc and count). Where the generated
code cannot be exact cheaply it resumes the reference loop (:meth:`Interpreter._loop`) with
its registers, frames and count: when the budget may run out within the next block tree.

Rule 2: every memory access is checked against the region table, per segment and base
register, against the region that register hit last (see :mod:`ebpf.vm._pycodegen`). A
failed check runs the segment through ``Memory.load``/``store``, which report the fault at
the exact instruction and answer hooked loads (``xdp_md``); read-only regions refuse stores.

Rule 3: the generated code depends on the program only; it is compiled once and cached per
:class:`~ebpf.isa.program.Program` object (weakly) and, by instructions, in a small LRU shared
by all engines. Helpers, the memory table and the ``lddw`` resolver are looked up at run time, so
one compiled function serves every engine built on the same program.

``profile=True`` runs the reference interpreter (the fast tier keeps no per-slot counts).
:meth:`PyTier.run_many` runs a batch on one input, reusing its host buffers between runs.
"""

from __future__ import annotations

import struct
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ebpf.errors import BudgetExceededError, VMError
from ebpf.isa.instruction import Instruction
from ebpf.isa.ir import BinOp
from ebpf.isa.program import Program
from ebpf.vm._pycodegen import FUNCTION_NAME, STRUCT_NAMES, entry_points, generate
from ebpf.vm.context import Input, MappedInput, RawInput
from ebpf.vm.helpers import HelperEnv, HelperRegistry, ProgramExit
from ebpf.vm.interpreter import (
    _NO_INPUT,
    ALU32,
    ALU64,
    DEFAULT_MAX_INSNS,
    STACK_SIZE,
    Imm64Resolver,
    Interpreter,
    RunResult,
    TailCall,
    bswap,
)
from ebpf.vm.memory import HostBuffer, Memory, Region

__all__ = ["CACHE_SIZE", "PyTier"]

CACHE_SIZE = 64  # compiled programs kept by instructions (besides the one cached on each Program)

# (start, size, size if writable else -1, view): what a base register's cache holds.
RegionInfo = tuple[int, int, int, "memoryview | None"]
_MISS: RegionInfo = (0, -1, -1, None)
_ZERO_STACK = bytes(STACK_SIZE)

# (engine, env, mapped, stacks, r1, r2, r3, r4, r5, r10, budget, entry slot) -> (r0, count)
RunFn = Callable[
    [Any, HelperEnv, MappedInput, list[Region], int, int, int, int, int, int, int, int], tuple[int, int]
]


def _namespace() -> dict[str, object]:
    ns: dict[str, object] = {
        "_VMError": VMError,
        "_BudgetExceededError": BudgetExceededError,
        "_ProgramExit": ProgramExit,
        "_TailCall": TailCall,
        "_legacy": Interpreter._legacy_load,
        "_bswap": bswap,
    }
    for name, fmt in STRUCT_NAMES.items():
        packer = struct.Struct(fmt)
        ns[name] = packer.pack_into if name.startswith("_P") else packer.unpack_from
    for op, fn in ALU64.items():
        ns[f"_alu64_{op.name}"] = fn
    for op, fn in ALU32.items():
        ns[f"_alu32_{op.name}"] = fn
    assert set(ALU64) == set(BinOp)
    return ns


_NAMESPACE = _namespace()


@dataclass(frozen=True)
class Compiled:
    """A program translated to Python: its source, the compiled function and its entry slots."""

    source: str
    function: RunFn
    entries: frozenset[int]


_CACHE: OrderedDict[tuple[Instruction, ...], Compiled] = OrderedDict()
# id(program) -> (weak reference to it, its translation): the per-object cache. The Program
# itself is left untouched (a function made by exec() could not be pickled with it).
_BY_PROGRAM: dict[int, tuple[weakref.ref[Program], Compiled]] = {}


def _forget(ref: weakref.ref[Program], key: int) -> None:
    entry = _BY_PROGRAM.get(key)
    if entry is not None and entry[0] is ref:
        del _BY_PROGRAM[key]


def compile_program(program: Program) -> Compiled:
    """The fast-tier translation of ``program``, from a cache when possible.

    Raises:
        DecodeError: the program has an invalid instruction or an out-of-range jump.
    """
    key = id(program)
    entry = _BY_PROGRAM.get(key)
    if entry is not None and entry[0]() is program:
        return entry[1]
    insns = program.instructions
    cached = _CACHE.get(insns)
    if cached is None:
        ops = list(program.ops())
        source = generate(ops)
        namespace = dict(_NAMESPACE)
        code = compile(source, f"<ebpf.pytier {len(insns)} insns>", "exec")
        exec(code, namespace)  # noqa: S102 - our own generated source: the point of this tier
        cached = Compiled(source, namespace[FUNCTION_NAME], entry_points(ops))  # type: ignore[arg-type]
        _CACHE[insns] = cached
        if len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(insns)
    _BY_PROGRAM[key] = (weakref.ref(program, lambda ref: _forget(ref, key)), cached)
    return cached


class PyTier(Interpreter):
    """Runs a program as generated Python code, with the reference semantics.

    Takes the same arguments as :class:`~ebpf.vm.interpreter.Interpreter`.

    Attributes:
        source: the generated Python source (for debugging).

    Raises:
        DecodeError: the program has an invalid instruction or an out-of-range jump.
        VMError: the program writes r10 ("frame pointer is read only").
    """

    engine = "py"

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
        super().__init__(
            program,
            helpers=helpers,
            max_insns=max_insns,
            resolve_imm64=resolve_imm64,
            memory=memory,
            code_base=code_base,
        )
        self._compiled = compile_program(program)
        self._stack_pool: list[HostBuffer] | None = None  # set during run_many and execute
        self._execute_pool: list[HostBuffer] = []

    @property
    def source(self) -> str:
        """The generated Python source."""
        return self._compiled.source

    def _fill(self, address: int, size: int) -> RegionInfo:
        """The cache entry for the region holding ``[address, address + size)``, if cacheable."""
        region = self.memory.find(address, size)
        if region is None or region.load_hook is not None:
            return _MISS
        size = region.end - region.start
        return region.start, size, size if region.writable else -1, region.view

    def _execute(
        self,
        mapped: MappedInput,
        stacks: list[Region],
        budget: int,
        counts: list[int] | None,
        env: HelperEnv,
    ) -> tuple[int, int]:
        if counts is not None:
            return super()._execute(mapped, stacks, budget, counts, env)
        r10 = self._stack(stacks, 0).end
        return self._compiled.function(
            self, env, mapped, stacks, mapped.r1, mapped.r2, 0, 0, 0, r10, budget, 0
        )

    def execute(self, mapped: MappedInput, env: HelperEnv, budget: int) -> tuple[int, int]:
        """As :meth:`Interpreter.execute`, with stack buffers reused (zeroed) from run to run."""
        if self._stack_pool is not None:
            return super().execute(mapped, env, budget)
        self._stack_pool = self._execute_pool
        try:
            return super().execute(mapped, env, budget)
        finally:
            self._stack_pool = None

    def _call(
        self, slot: int, regs: list[int], stacks: list[Region], budget: int, env: HelperEnv
    ) -> tuple[int, int]:
        pool, self._stack_pool = self._stack_pool, None  # the pool's stacks belong to the caller
        try:
            if slot not in self._compiled.entries:  # not a function the program names: the reference
                return super()._call(slot, regs, stacks, budget, env)
            r10 = self._stack(stacks, 0).end
            _, r1, r2, r3, r4, r5 = regs[:6]
            return self._compiled.function(
                self, env, _NO_INPUT, stacks, r1, r2, r3, r4, r5, r10, budget, slot
            )
        finally:
            self._stack_pool = pool

    def _stack(self, stacks: list[Region], depth: int) -> Region:
        pool = self._stack_pool
        if pool is None:
            return super()._stack(stacks, depth)
        while len(stacks) <= depth:
            if len(pool) <= len(stacks):
                pool.append(HostBuffer(STACK_SIZE))
            buffer = pool[len(stacks)]
            buffer.view[:] = _ZERO_STACK
            stacks.append(self.memory.map_buffer(f"stack[{len(stacks)}]", buffer))
        return stacks[depth]

    def run_many(
        self,
        input: Input | bytes | bytearray,
        n: int,
        *,
        max_insns: int | None = None,
        env: HelperEnv | None = None,
    ) -> list[RunResult]:
        """Run the program ``n`` times, each on a fresh copy of ``input`` (a batch for benchmarks).

        Each run is exactly :meth:`run` (same results, same faults), except that the host
        buffers of the input and the stacks are allocated once and reused: their contents are
        restored (input) or zeroed (stacks) before every run, and their addresses repeat.

        Raises:
            VMError: as :meth:`run`, for the first run that faults.
        """
        if not isinstance(input, Input):
            input = RawInput(bytes(input))
        reused = _Reused(input)
        self._stack_pool = []
        try:
            return [self.run(reused, max_insns=max_insns, env=env) for _ in range(n)]
        finally:
            self._stack_pool = None


class _Reused(Input):
    """An input mapped once; later runs map the same regions again with their first contents."""

    def __init__(self, inner: Input) -> None:
        self.inner = inner
        self.mapped: MappedInput | None = None
        self.snapshot: list[bytes] = []

    def map(self, memory: Memory) -> MappedInput:
        if self.mapped is None:
            self.mapped = self.inner.map(memory)
            self.snapshot = [bytes(region.buffer) for region in self.mapped.regions]
            return self.mapped
        mapped = self.mapped
        if mapped.reset():  # a stateful input (helpers may have moved or resized its packet)
            for region in mapped.regions:
                if memory.find(region.start) is not region:
                    memory.map(region)
            return mapped
        for region, data in zip(mapped.regions, self.snapshot, strict=True):
            region.buffer.view[:] = data
            memory.map(region)
        return mapped
