"""Live user-space objects from a :class:`~ebpf.spec.CollectionSpec`: maps, programs, globals.

Core layer. Pure: no kernel access (values and code live in host buffers of one
:class:`~ebpf.vm.memory.Memory`).

Rule 1 (loading, in libbpf's order): create every map and write its ``contents``; fill
``.kconfig`` externs; apply CO-RE relocations; relocate each program's placeholders; build
one engine per program; fill ``PROG_ARRAY`` and map-in-map ``slots``; freeze the maps the
spec says to freeze. Any failure closes what was made and raises.

Rule 2 (placeholders, as the kernel reads them): ``lddw rX, map`` becomes ``src=1`` with the
map's *handle id* in ``imm``; ``lddw rX, map + off`` (global data) becomes ``src=2`` with the
handle id in the first ``imm`` and ``off`` in the second. When the program runs, the engines
ask :meth:`Collection._resolve` for the value: the address of the map's handle (a small
read-only region; helpers find the map by it in ``RunEnv.maps``), or the real
address of the global's bytes.

Rule 3 (read-only data): maps created with ``BPF_F_RDONLY_PROG`` (``.rodata``, ``.kconfig``)
are read-only for programs (a store faults, where the kernel's verifier would refuse the
program); frozen maps refuse updates and deletes from Python with ``EPERM``, like
``BPF_MAP_FREEZE``.

Rule 4 (test runs, as ``BPF_PROG_TEST_RUN``): the input is mapped once and the program runs
``repeat`` times on it (changes made by one run are seen by the next, as in the kernel);
``duration_ns`` is the average per run; tail calls continue in the target program on the
same context, with the rest of the instruction budget. Each program keeps its last test run's
mapping and lays the next input out in the same host buffers (``MappedInput.rebind``: the
same bytes and state as a fresh mapping, at repeating addresses); nothing stays mapped
between test runs.

Rule 5 (``bpf_timer``, :mod:`ebpf.vm._helpers_timer`): timer callbacks run when they are due
at the end of every run and test run, and on :meth:`Collection.run_timers` /
:meth:`Collection.advance`; each callback has an instruction budget of its own.
"""

from __future__ import annotations

import errno
import functools
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Self

from ebpf.errors import (
    BPFError,
    BudgetExceededError,
    NotSupportedError,
    RelocationError,
    TestRunError,
    VMError,
)
from ebpf.isa.encoding import slot_offsets
from ebpf.isa.instruction import Instruction
from ebpf.isa.ir import LoadImm64
from ebpf.isa.opcodes import CallKind, PseudoSrc
from ebpf.isa.program import Program as InsnProgram
from ebpf.maps import Map, create
from ebpf.maps._errors import MapError
from ebpf.maps.devmap import DevMap, DevMapHash
from ebpf.maps.progarray import ProgArrayMap
from ebpf.runtime._ctxbound import max_ctx_offset
from ebpf.runtime._kconfig import KconfigValue, encode_kconfig, kernel_version_code, running_kconfig
from ebpf.spec import AttachType, CollectionSpec, MapType, ProgramSpec, ProgramType, RelocKind
from ebpf.testrun import TestRunResult
from ebpf.vm import ENGINES
from ebpf.vm._context_flow import FlowDissectorInput
from ebpf.vm._context_netfilter import NfInput
from ebpf.vm._context_sklookup import SkLookupInput
from ebpf.vm._helpers_cgroup import end_run
from ebpf.vm.context import Input, MappedInput, RawInput, RawTracepointInput, SkbInput, XdpInput
from ebpf.vm.helpers import MAX_TAIL_CALL_CNT, HelperRegistry, RunEnv, runtime_helpers
from ebpf.vm.interpreter import DEFAULT_MAX_INSNS, Interpreter, RunResult, TailCall
from ebpf.vm.kfuncs import runtime_kfuncs
from ebpf.vm.memory import HostBuffer, Memory, Region

if TYPE_CHECKING:
    from ebpf.btf.spec import Spec as BTFSpec

__all__ = ["Collection", "ContextInput", "Program", "Variable", "Variables", "freeze"]

M32 = (1 << 32) - 1
SKB_TEST_RUN_TYPES = frozenset(
    {
        ProgramType.SOCKET_FILTER,
        ProgramType.SCHED_CLS,
        ProgramType.SCHED_ACT,
        ProgramType.CGROUP_SKB,
        ProgramType.LWT_IN,
        ProgramType.LWT_OUT,
        ProgramType.LWT_XMIT,
    }
)
"""Program types whose test run builds a socket buffer (``bpf_prog_test_run_skb``; Linux 6.18
has no test run for LWT_SEG6LOCAL: ENOTSUPP, measured)."""
KERNEL_ONLY_TEST_RUN_TYPES = frozenset({ProgramType.TRACING, ProgramType.STRUCT_OPS})
_PROGTYPE_TEST_RUN_TYPES = (ProgramType.FLOW_DISSECTOR, ProgramType.SK_LOOKUP, ProgramType.NETFILTER)
"""Program types Linux 6.18 can test-run and this runtime cannot (yet)."""
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_TEST_RUN_ON_CPU = 1 << 0
U16_MAX = 0xFFFF
MAX_BPF_FUNC_ARGS = 12
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1


_WRITERS = (
    "update",
    "update_percpu",
    "update_batch",
    "delete",
    "delete_batch",
    "lookup_and_delete",
    "lookup_and_delete_batch",
    "push",
    "pop",
)


def _guarded(m: Map, name: str, program_running: Callable[[], bool]) -> Callable[..., Any]:
    original = getattr(m, name)

    def write(*args: Any, **kwargs: Any) -> Any:
        if program_running():  # a helper: BPF_MAP_FREEZE only stops the syscall side
            return original(*args, **kwargs)
        raise MapError(f"{m.label}: the map is frozen", errno=errno.EPERM)

    return write


def freeze(m: Map, program_running: Callable[[], bool] = lambda: False) -> None:
    """``BPF_MAP_FREEZE``: later writes from user space fail with ``EPERM``; programs still write
    (through helpers) unless the map is also ``BPF_F_RDONLY_PROG``.

    ``program_running`` tells a helper's call (allowed) from the user's (refused).
    """
    method = getattr(m, "freeze", None)
    if callable(method):
        method()
        return
    for name in _WRITERS:
        if hasattr(m, name):
            setattr(m, name, _guarded(m, name, program_running))
    m.frozen = True  # type: ignore[attr-defined]


class Program:
    """A program loaded in a user-space :class:`Collection`.

    Attributes:
        name: the program's name.
        type: its program type.
        spec: the spec it was loaded from.
        instructions: the relocated instructions the engine runs.
        engine: the execution engine.
    """

    def __init__(
        self, collection: Collection, spec: ProgramSpec, instructions: InsnProgram, engine: Interpreter
    ) -> None:
        self.collection = collection
        self.name = spec.name
        self.type = spec.type
        self.spec = spec
        self.instructions = instructions
        self.engine = engine
        self._spare: MappedInput | None = None  # the last test run's mapping, for the next (Rule 4)

    def __repr__(self) -> str:
        return f"runtime.Program({self.name!r}, {self.type.name}, engine={self.engine.engine!r})"

    @functools.cached_property
    def max_ctx_offset(self) -> int:
        """How many bytes of its context the program uses (the verifier's ``max_ctx_offset``).

        ``BPF_PROG_TEST_RUN`` of raw tracepoint and syscall programs refuses a shorter
        ``ctx_in`` with ``EINVAL``; see :mod:`ebpf.runtime._ctxbound`.
        """
        return max_ctx_offset(self.engine.ops[:-1])

    # --- running ------------------------------------------------------------------------------------

    def _chain(self, mapped: MappedInput, cpu: int, budget: int) -> tuple[int, int]:
        """Run on ``mapped``, following tail calls; returns ``(r0, instructions)``.

        The count includes the instructions of callbacks, which share one budget of their own
        (``budget`` per run, beside the programs' own).
        """
        coll = self.collection
        env = coll.env
        env.begin_run(cpu=cpu, context=mapped)
        mapped.begin_run()
        env.program_type = self.type
        coll._callback_budget = budget
        coll._callback_insns = 0
        coll._running += 1
        try:
            return self._follow(mapped, env, budget)
        finally:
            coll._running -= 1

    def _follow(self, mapped: MappedInput, env: RunEnv, budget: int) -> tuple[int, int]:
        coll = self.collection
        prog = self
        total = 0
        chained = 0
        while True:
            try:
                retval, count = prog.engine.execute(mapped, env, budget - total)
                return retval, total + count + coll._callback_insns
            except TailCall as jump:
                total += jump.count
                target = jump.target
                if not isinstance(target, Program) or target.collection is not self.collection:
                    raise VMError(
                        f"tail call from {prog.name!r} to {target!r}: not a program of this collection"
                    ) from None
                chained += 1
                if chained > MAX_TAIL_CALL_CNT:
                    raise VMError(
                        f"tail call number {chained} from {prog.name!r}: bpf_tail_call must fall "
                        f"through after {MAX_TAIL_CALL_CNT}"
                    ) from None
                # The kernel (x86-64 JIT, checked by tests/differential) counts the tail calls
                # taken; an attempt on an empty slot does not count.
                env.tail_calls = chained
                prog = target

    def _check(self, cpu: int) -> None:
        self.collection._check_open()
        if not 0 <= cpu < self.collection.ncpus:
            raise ValueError(f"cpu {cpu} out of range (ncpus {self.collection.ncpus})")

    def run(
        self, input: Input | bytes | bytearray = b"", *, cpu: int = 0, max_insns: int | None = None
    ) -> RunResult:
        """Run once on ``input`` (raw bytes: r1 = pointer, r2 = length; or any vm ``Input``).

        Returns the engine's :class:`~ebpf.vm.RunResult` (r0 with all 64 bits, instructions
        executed across tail calls, the input memory after the run).

        Raises:
            VMError: a fault; BudgetExceededError when the budget runs out.
        """
        self._check(cpu)
        if not isinstance(input, Input):
            input = RawInput(bytes(input))
        memory = self.collection.memory
        mapped = input.map(memory)
        start = time.perf_counter_ns()
        try:
            retval, insns = self._chain(mapped, cpu, max_insns or self.engine.max_insns)
            data = mapped.data()
        finally:
            for region in mapped.regions:
                memory.unmap(region)
            end_run(self.collection.env)  # the run's cgroup storage is freed
        self.collection.run_timers()  # callbacks the run armed that are due (Rule 5)
        return RunResult(retval, insns, data, time.perf_counter_ns() - start)

    def test_run(
        self,
        data_in: bytes = b"",
        ctx_in: bytes | None = None,
        repeat: int = 1,
        cpu: int = 0,
        data_size_out: int | None = None,
        *,
        ctx_size_out: int | None = None,
        flags: int = 0,
    ) -> TestRunResult:
        """``BPF_PROG_TEST_RUN``: run ``repeat`` times on ``data_in`` / ``ctx_in`` (Rule 4).

        Program types: XDP (``data_in`` is the frame, ``ctx_in`` an ``xdp_md``), the socket
        buffer types (:data:`SKB_TEST_RUN_TYPES`; ``ctx_in`` a ``__sk_buff``), SYSCALL
        (``ctx_in`` is the context), RAW_TRACEPOINT (``ctx_in`` holds the u64 arguments),
        FLOW_DISSECTOR, SK_LOOKUP and NETFILTER (:mod:`ebpf.vm._context_flow`,
        :mod:`~ebpf.vm._context_sklookup`, :mod:`~ebpf.vm._context_netfilter`).
        ``ctx_out`` is the context after the last run when ``ctx_in`` was given; an empty
        ``ctx_in`` is no context at all (``ctx_size_in`` 0), as in the kernel.

        The arguments are those of ``kernel.Program.test_run``, plus ``cpu`` (the kernel
        honours it only for raw tracepoints, with ``BPF_F_TEST_RUN_ON_CPU``; here every
        program type runs on the simulated ``cpu``). ``flags`` may be 0 or
        ``BPF_F_TEST_RUN_ON_CPU``.

        Raises:
            NotSupportedError: the program type has no test run here (the kernel: ENOTSUPP),
                or ``BPF_F_TEST_XDP_LIVE_FRAMES``.
            TestRunError: ``data_out`` or ``ctx_out`` is longer than ``data_size_out`` /
                ``ctx_size_out`` (``ENOSPC``; the truncated result is in ``err.result``), or
                a bad input or flag (``EINVAL``).
            VMError: a run-time fault (the kernel's verifier would have refused the program).
        """
        coll = self.collection
        if coll._closed or not 0 <= cpu < coll.ncpus:
            self._check(cpu)
        if repeat < 0:
            raise TestRunError(f"repeat must be >= 0, got {repeat}", errno=errno.EINVAL)
        if flags & BPF_F_TEST_XDP_LIVE_FRAMES:
            raise NotSupportedError("XDP live-frame test runs (BPF_F_TEST_XDP_LIVE_FRAMES)")
        if flags & ~BPF_F_TEST_RUN_ON_CPU:
            raise TestRunError(f"unknown test-run flags {flags:#x}", errno=errno.EINVAL)
        ctx = bytes(ctx_in) if ctx_in else None  # ctx_size_in 0: no context
        if self._plain_xdp:  # the common case, with the same checks as _test_input
            inp: Input = XdpInput.from_test_run(data_in, ctx, devices=coll.env.devices)
        else:
            t = self.type
            if t is ProgramType.SYSCALL or t is ProgramType.RAW_TRACEPOINT:
                self._check_ctx_run(data_in, ctx_in, repeat, flags)
            sk_lookup = t is ProgramType.SK_LOOKUP
            if (flags or (sk_lookup and data_size_out)) and t in _PROGTYPE_TEST_RUN_TYPES:
                raise TestRunError(
                    f"{t.name} test runs take no flags ({flags:#x})"
                    + (" and no data_out buffer" if sk_lookup else ""),
                    errno=errno.EINVAL,
                )
            inp = self._test_input(bytes(data_in), ctx)
        memory = coll.memory
        spare, self._spare = self._spare, None  # taken: a nested test run maps its own
        mapped = spare if spare is not None and spare.rebind(inp) else inp.map(memory)
        runs = max(repeat, 1)
        budget = self.engine.max_insns
        try:
            start = time.perf_counter_ns()
            retval = 0
            for _ in range(runs):
                retval, _ = self._chain(mapped, cpu, budget)
            duration = (time.perf_counter_ns() - start) // runs
            data_out = mapped.data()
            ctx_out = mapped.ctx_out() if ctx is not None else None
        finally:
            for region in mapped.regions:
                memory.unmap(region)
            self._spare = mapped
            end_run(self.collection.env)  # the test run's cgroup storage is freed, as bpf_test_run does
        self.collection.run_timers()  # callbacks the run armed that are due (Rule 5)
        result = TestRunResult(retval & M32, data_out, ctx_out, duration)
        data_short = data_size_out is not None and len(data_out) > data_size_out
        ctx_short = ctx_size_out is not None and ctx_out is not None and len(ctx_out) > ctx_size_out
        if data_short or ctx_short:  # the kernel copies what fits, then fails with ENOSPC
            truncated = TestRunResult(
                result.retval,
                data_out[:data_size_out] if data_short else data_out,
                ctx_out[:ctx_size_out] if ctx_short and ctx_out is not None else ctx_out,
                duration,
            )
            what = "data_out" if data_short else "ctx_out"
            raise TestRunError(f"{what} does not fit its buffer", errno=errno.ENOSPC, result=truncated)
        return result

    @functools.cached_property
    def _plain_xdp(self) -> bool:
        """An XDP program with a test run (not one for devmap/cpumap entries)."""
        return self.type is ProgramType.XDP and self.spec.attach_type not in (
            AttachType.XDP_DEVMAP,
            AttachType.XDP_CPUMAP,
        )

    def _check_ctx_run(self, data_in: bytes, ctx_in: bytes | None, repeat: int, flags: int) -> None:
        """``bpf_prog_test_run_syscall`` / ``_raw_tp``: no data, no repeat, and a ``ctx_in``
        covering every context byte the program uses (:attr:`max_ctx_offset`), at most
        ``U16_MAX`` bytes (syscall) or 12 u64 arguments (raw tracepoint)."""
        t = self.type
        size = len(ctx_in) if ctx_in is not None else 0
        limit = U16_MAX if t == ProgramType.SYSCALL else MAX_BPF_FUNC_ARGS * 8
        problem = None
        if data_in:
            problem = "takes no data_in"
        elif repeat > 1:
            problem = f"cannot repeat (repeat {repeat})"
        elif t == ProgramType.SYSCALL and flags:
            problem = f"takes no flags ({flags:#x})"
        elif size < self.max_ctx_offset:
            problem = f"uses {self.max_ctx_offset} bytes of context; ctx_in has {size}"
        elif size > limit:
            problem = f"takes at most {limit} bytes of ctx_in, got {size}"
        if problem is not None:
            raise TestRunError(f"{t.name} test run of {self.name!r} {problem}", errno=errno.EINVAL)

    def _test_input(self, data_in: bytes, ctx_in: bytes | None) -> Input:
        """The input ``BPF_PROG_TEST_RUN`` builds for this program type, with the kernel's checks."""
        t = self.type
        if t == ProgramType.XDP:
            if self.spec.attach_type in (AttachType.XDP_DEVMAP, AttachType.XDP_CPUMAP):
                raise TestRunError(
                    f"{self.name!r} is an XDP program for {self.spec.attach_type.name} entries: "
                    "no test run (the kernel: EINVAL)",
                    errno=errno.EINVAL,
                )
            return XdpInput.from_test_run(data_in, ctx_in, devices=self.collection.env.devices)
        if t in SKB_TEST_RUN_TYPES:
            return SkbInput.from_test_run(data_in, t, ctx_in, devices=self.collection.env.devices)
        if t in (ProgramType.SYSCALL, ProgramType.RAW_TRACEPOINT):
            if data_in:
                raise TestRunError(f"{t.name} test runs take no data_in", errno=errno.EINVAL)
            if t == ProgramType.RAW_TRACEPOINT:
                return RawTracepointInput.from_test_run(ctx_in)
            return ContextInput(ctx_in or b"", writable=True)
        if t == ProgramType.FLOW_DISSECTOR:
            return FlowDissectorInput.from_test_run(data_in, ctx_in)
        if t == ProgramType.SK_LOOKUP:
            return SkLookupInput.from_test_run(data_in, ctx_in)
        if t == ProgramType.NETFILTER:
            btf = self.collection.target_btf or self.spec.btf or self.collection.spec.btf
            return NfInput.from_test_run(data_in, ctx_in, btf=btf)
        if t in KERNEL_ONLY_TEST_RUN_TYPES:
            raise NotSupportedError(
                f"test runs of {t.name} programs in the user-space runtime",
                detail="the kernel has them; this runtime has no such context yet",
            )
        raise NotSupportedError(f"test runs of {t.name} programs (the kernel has none either: ENOTSUPP)")


class _ContextMapped(MappedInput):
    def ctx_out(self) -> bytes | None:
        return self.regions[0].buffer.view.tobytes() if self.regions else None


class ContextInput(Input):
    """A context given as bytes (``BPF_PROG_TYPE_SYSCALL``): r1 points at a copy of it."""

    def __init__(self, ctx: bytes, *, writable: bool = True) -> None:
        self.ctx = bytes(ctx)
        self.writable = writable

    def map(self, memory: Memory) -> MappedInput:
        if not self.ctx:
            return _ContextMapped(0, 0, None, 0, ())
        region = memory.map_buffer("ctx", HostBuffer.from_bytes(self.ctx), writable=self.writable)
        return _ContextMapped(region.start, 0, None, region.start, (region,))


class Variable:
    """A global variable of a loaded collection (a skeleton's ``skel->bss->x``)."""

    def __init__(self, collection: Collection, name: str) -> None:
        var = collection.spec.variables[name]
        self.collection = collection
        self.name = name
        self.map_name = var.map
        self.offset = var.offset
        self.size = var.size
        self.read_only = collection.spec.maps[var.map].freeze or var.extern

    def _address(self) -> int:
        self.collection._check_open()
        m = self.collection.maps[self.map_name]
        address = m.value_address(bytes(m.key_size))
        assert address is not None, "global data maps are arrays with one element"
        return address + self.offset

    def get(self) -> bytes:
        """The variable's current bytes."""
        region, off = self._locate()
        return region.view[off : off + self.size].tobytes()

    def get_int(self, *, signed: bool = False) -> int:
        """The variable as an integer in the object's byte order."""
        order = self.collection.spec.byteorder
        return int.from_bytes(self.get(), order, signed=signed)  # type: ignore[arg-type]

    def set(self, value: bytes | int) -> None:
        """Write the variable (an int is encoded in its size and the object's byte order).

        Raises:
            MapError: the variable is in a frozen read-only map (``EPERM``).
            ValueError: the value does not fit.
        """
        if self.read_only:
            raise MapError(
                f"variable {self.name!r} is read-only ({self.map_name} is frozen)", errno=errno.EPERM
            )
        if isinstance(value, int):
            order = self.collection.spec.byteorder
            try:
                data = value.to_bytes(self.size, order, signed=value < 0)  # type: ignore[arg-type]
            except OverflowError:
                raise ValueError(
                    f"{value} does not fit variable {self.name!r} of {self.size} bytes"
                ) from None
        else:
            data = bytes(value)
            if len(data) != self.size:
                raise ValueError(f"variable {self.name!r} is {self.size} bytes, got {len(data)}")
        region, off = self._locate()
        region.view[off : off + self.size] = data

    def _locate(self) -> tuple[Region, int]:
        address = self._address()
        region = self.collection.memory.find(address, self.size)
        assert region is not None
        return region, address - region.start

    def __repr__(self) -> str:
        return f"Variable({self.name!r}, {self.get().hex()})"


class Variables(Mapping[str, Variable]):
    """Name -> :class:`Variable` for every global variable of the collection."""

    def __init__(self, collection: Collection) -> None:
        self._collection = collection

    def __getitem__(self, name: str) -> Variable:
        if name not in self._collection.spec.variables:
            raise KeyError(name)
        return Variable(self._collection, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._collection.spec.variables)

    def __len__(self) -> int:
        return len(self._collection.spec.variables)


class Collection:
    """Every map and program of a :class:`~ebpf.spec.CollectionSpec`, live in user space.

    Args:
        spec: the collection (not modified).
        engine: execution engine name (``"py"``, ``"interp"``; see :data:`ebpf.vm.ENGINES`).
        ncpus: simulated CPUs (per-CPU maps, ``test_run(cpu=)``).
        deterministic: helpers must give reproducible clocks and random numbers.
        target_btf: the BTF CO-RE relocations are resolved against (default: the object's own).
        helpers: the helper registry (default: :func:`~ebpf.vm.helpers.runtime_helpers`,
            every kernel helper implemented in user space).
        kconfig: ``CONFIG_*`` values for ``.kconfig`` externs (``"y"``, ``"m"``, numbers,
            quoted strings); default: the running kernel's configuration, as libbpf reads it.
        kernel_release: release string for ``LINUX_KERNEL_VERSION`` (default: ``os.uname()``).
        max_insns: instruction budget of one run (a tail-call chain counts as one run).

    Attributes:
        programs: name -> :class:`Program` (programs with ``autoload``).
        maps: name -> live :class:`~ebpf.maps.Map`.
        variables: name -> :class:`Variable`.
        memory: the memory every map, program and input shares.
        env: what helpers see (:class:`~ebpf.vm.helpers.RunEnv`): maps by handle address,
            cpu, clock, random numbers, trace log, callbacks.

    Raises:
        NotSupportedError: a map type, kernel symbol or CO-RE relocation the user-space
            runtime cannot provide.
        RelocationError: a placeholder names a missing map, or a strong extern has no value.
        MapError: a map definition or initial value the kernel would refuse.
    """

    def __init__(
        self,
        spec: CollectionSpec,
        *,
        engine: str = "py",
        ncpus: int = 1,
        deterministic: bool = False,
        target_btf: BTFSpec | None = None,
        helpers: HelperRegistry | None = None,
        kconfig: Mapping[str, KconfigValue] | None = None,
        kernel_release: str | None = None,
        max_insns: int = DEFAULT_MAX_INSNS,
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(sorted(ENGINES))}")
        if ncpus < 1:
            raise ValueError(f"ncpus must be >= 1, got {ncpus}")
        if spec.byteorder != "little":
            raise NotSupportedError(
                f"{spec.byteorder}-endian objects in the user-space runtime",
                detail="its memory is little-endian, like the hosts it runs on",
            )
        self.spec = spec
        self.target_btf = target_btf
        self.engine_name = engine
        self.ncpus = ncpus
        self.memory = Memory()
        self.env = RunEnv(memory=self.memory, ncpus=ncpus, deterministic=deterministic)
        self.env.callback = self._callback
        self.helpers = helpers if helpers is not None else runtime_helpers()
        self.maps: dict[str, Map] = {}
        self.programs: dict[str, Program] = {}
        self.variables = Variables(self)
        self._closed = False
        self._regions: list[Region] = []
        self._handles: list[int] = []
        self._by_id: dict[int, tuple[Map, int]] = {}  # handle id -> (map, handle address)
        self._ids: dict[str, int] = {}  # map name -> handle id
        self._value_base: dict[int, int] = {}
        self._resolved: dict[tuple[int, PseudoSrc], int] = {}  # lddw (imm64, src) -> address
        self._code: list[tuple[Region, Program]] = []
        self._callback_budget = max_insns
        self._callback_insns = 0
        self._running = 0  # programs running now (nested: a helper's callback)
        try:
            self._create_maps()
            self._fill_kconfig(kconfig, kernel_version_code(kernel_release))
            for pspec in spec.programs.values():
                if pspec.autoload:
                    self.programs[pspec.name] = self._load(pspec, target_btf, max_insns)
            self._fill_slots()
            self._protect()
        except BaseException:
            self.close()
            raise

    # --- loading ------------------------------------------------------------------------------------

    def _create_maps(self) -> None:
        for name, mspec in self.spec.maps.items():
            if name.startswith(".") and mspec.value_type_id:
                # Global data: the object's DATASEC has clang's sizes (0 for .kconfig, fixed up by
                # libbpf only for the kernel); the section bytes are the value, as they are.
                mspec = mspec.copy()
                mspec.key_type_id = mspec.value_type_id = 0
            try:
                m = create(mspec, self.memory, ncpus=self.ncpus)  # libbpf's fix-ups, then contents
            except BPFError as err:
                err.add_note(f"while creating map {name!r} of the collection")
                raise
            self.maps[name] = m
            if isinstance(m, DevMap | DevMapHash) and self.env.devices is not None:
                m.device_exists = self.env.devices.__contains__  # the run's devices, as ctx checks
            address = self.env.add_map(m)
            self._handles.append(address)
            hid = len(self._by_id) + 1
            self._by_id[hid] = (m, address)
            self._ids[name] = hid

    def _fill_kconfig(self, kconfig: Mapping[str, KconfigValue] | None, version: int) -> None:
        externs = [var for var in self.spec.variables.values() if var.extern]
        if kconfig is None:
            needed = any(var.name.startswith("CONFIG_") for var in externs)
            kconfig = running_kconfig() if needed else {}
        for var in externs:
            m = self.maps.get(var.map)
            if m is None:
                raise RelocationError(f"extern {var.name!r}: no map {var.map!r}")
            data = encode_kconfig(
                var.name,
                var.size,
                weak=var.weak,
                kconfig=kconfig,
                kernel_version=version,
                byteorder=self.spec.byteorder,
            )
            key = bytes(m.key_size)
            old = m.lookup(key)
            m.update(key, old[: var.offset] + data + old[var.offset + var.size :])

    def _load(self, pspec: ProgramSpec, target_btf: BTFSpec | None, max_insns: int) -> Program:
        insns = pspec.instructions
        if pspec.core_relos:
            try:
                from ebpf.btf.core import relocate_program
            except ImportError:
                raise NotSupportedError(
                    f"CO-RE relocations of program {pspec.name!r}",
                    detail="ebpf.btf.core is not available",
                ) from None
            target = target_btf or pspec.btf or self.spec.btf
            if target is None:
                raise RelocationError(
                    f"program {pspec.name!r} has CO-RE relocations but no BTF", program=pspec.name
                )
            insns = relocate_program(pspec, target)
        insns = self._relocate(pspec, insns)
        code = self.memory.map_buffer(
            f"code:{pspec.name}", HostBuffer.from_bytes(insns.encode()), writable=False
        )
        self._regions.append(code)
        factory = ENGINES[self.engine_name]
        engine = factory(
            insns,
            helpers=self.helpers,
            max_insns=max_insns,
            resolve_imm64=self._resolve,
            memory=self.memory,
            code_base=code.start,
        )
        prog = Program(self, pspec, insns, engine)
        self._code.append((code, prog))
        for reloc in pspec.relocations.values():  # the kernel's bpf_check_tail_call at load
            used = self.maps.get(reloc.symbol) if reloc.kind is RelocKind.MAP else None
            if isinstance(used, ProgArrayMap):
                used.claim(prog)  # EINVAL: another kind of program owns the array
        return prog

    def _relocate(self, pspec: ProgramSpec, program: InsnProgram) -> InsnProgram:
        if not pspec.relocations:
            return program
        slots = slot_offsets(program.instructions)
        index = {slot: i for i, slot in enumerate(slots)}
        insns = list(program.instructions)
        kfuncs = runtime_kfuncs()
        for slot, reloc in sorted(pspec.relocations.items()):
            i = index.get(slot)
            if i is None:
                raise RelocationError(
                    f"program {pspec.name!r}: relocation at slot {slot} is not an instruction",
                    program=pspec.name,
                    insn_index=slot,
                )
            insn = insns[i]
            if reloc.kind in (RelocKind.MAP, RelocKind.MAP_VALUE):
                hid = self._ids.get(reloc.symbol)
                if hid is None:
                    raise RelocationError(
                        f"program {pspec.name!r}: instruction {slot} refers to unknown map {reloc.symbol!r}",
                        program=pspec.name,
                        insn_index=slot,
                    )
                if not insn.is_wide:
                    raise RelocationError(
                        f"program {pspec.name!r}: instruction {slot} is not lddw",
                        program=pspec.name,
                        insn_index=slot,
                    )
                if reloc.kind is RelocKind.MAP:
                    insns[i] = Instruction(insn.opcode, insn.dst, PseudoSrc.MAP_FD, insn.offset, hid)
                else:
                    value = hid | ((reloc.offset & M32) << 32)
                    insns[i] = Instruction(insn.opcode, insn.dst, PseudoSrc.MAP_VALUE, insn.offset, value)
            elif reloc.weak and reloc.kind is RelocKind.KSYM:
                insns[i] = Instruction(
                    insn.opcode, insn.dst, 0, insn.offset, 0
                )  # libbpf: a missing weak ksym is 0
            elif reloc.kind is RelocKind.KFUNC and (reloc.weak or kfuncs.by_name(reloc.symbol)):
                found = kfuncs.by_name(reloc.symbol)  # missing weak: id 0, a call that faults
                insns[i] = Instruction(insn.opcode, insn.dst, CallKind.KFUNC, 0, found.id if found else 0)
            else:
                raise NotSupportedError(
                    f"kernel symbol {reloc.symbol!r} ({reloc.kind.value}) in the user-space runtime",
                    detail=f"program {pspec.name!r}, instruction {slot}",
                )
        return InsnProgram(insns, program.labels)

    def _fill_slots(self) -> None:
        order = self.spec.byteorder
        for name, mspec in self.spec.maps.items():
            if not mspec.slots:
                continue
            m = self.maps[name]
            for slot, target in sorted(mspec.slots.items()):
                key = slot.to_bytes(mspec.key_size, order)  # type: ignore[arg-type]
                if mspec.type == MapType.PROG_ARRAY:
                    prog = self.programs.get(target)
                    if prog is None:
                        raise RelocationError(f"map {name!r} slot {slot}: program {target!r} is not loaded")
                    m.update_prog(key, prog)  # type: ignore[attr-defined]
                else:
                    inner = self.maps.get(target)
                    if inner is None:
                        raise RelocationError(f"map {name!r} slot {slot}: no map {target!r}")
                    m.update_map(key, inner)  # type: ignore[attr-defined]

    def _protect(self) -> None:
        for name, mspec in self.spec.maps.items():
            m = self.maps[name]
            if mspec.flags & BPF_F_RDONLY_PROG and mspec.type in (MapType.ARRAY, MapType.PERCPU_ARRAY):
                for cpu in range(self.ncpus if mspec.type == MapType.PERCPU_ARRAY else 1):
                    address = m.value_address(bytes(4), cpu)
                    region = self.memory.find(address) if address is not None else None
                    if region is not None:
                        region.writable = False
            if mspec.freeze:
                freeze(m, lambda: self._running > 0)

    # --- what the engines and helpers call ---------------------------------------------------------

    def _resolve(self, op: LoadImm64) -> int:
        kind = op.kind
        known = self._resolved.get((op.value, kind))  # every run asks again: remember the answers
        if known is not None:
            return known
        entry = self._by_id.get(op.imm_lo)
        if kind is PseudoSrc.MAP_FD and entry is not None:
            self._resolved[op.value, kind] = entry[1]
            return entry[1]
        if kind is PseudoSrc.MAP_VALUE and entry is not None:
            base = self._value_base.get(op.imm_lo)
            if base is None:
                m = entry[0]
                if m.type != MapType.ARRAY:
                    raise VMError(f"direct value access to {m.label}: only array maps have one")
                address = m.value_address(bytes(4))
                if address is None:
                    raise VMError(f"direct value access to {m.label}: the map has no element 0")
                base = self._value_base[op.imm_lo] = address
            known = self._resolved[op.value, kind] = base + op.imm_hi
            return known
        raise VMError(
            f"lddw with pseudo source {op.kind.name} and imm {op.imm_lo}: no such map in this runtime"
        )

    def _callback(self, function: int, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        """``RunEnv.callback``: run the program function at code address ``function``.

        Callbacks of one run share that run's budget (:meth:`Program._chain`).
        """
        args = (r1, r2, r3, r4, r5)
        for region, prog in self._code:
            if region.start <= function < region.end:
                offset = function - region.start
                if offset % 8:
                    break
                left = self._callback_budget - self._callback_insns
                if left <= 0:
                    raise BudgetExceededError(
                        f"callbacks of this run exhausted their budget of {self._callback_budget} instructions"
                    )
                retval, count = prog.engine.call(offset // 8, args, self.env, left)
                self._callback_insns += count
                return retval
        raise VMError(f"callback address {function:#x} is not code of this collection", address=function)

    def _check_open(self) -> None:
        if self._closed:
            raise BPFError("the collection is closed")

    # --- bpf_timer ----------------------------------------------------------------------------------

    def run_timers(self) -> int:
        """Run the ``bpf_timer`` callbacks that are due on the runtime's clock; how many ran.

        Runs also happen after every :meth:`Program.run` / :meth:`Program.test_run` (Rule 5);
        nothing runs while a program runs. See :mod:`ebpf.vm._helpers_timer`.
        """
        self._check_open()
        timers = self.env.timers
        if timers is None or self._running:
            return 0
        self._running += 1  # callbacks are programs running (frozen maps take their writes)
        try:
            return timers.run_due(prepare=self._timer_budget)
        finally:
            self._running -= 1

    def advance(self, ns: int) -> int:
        """Let ``ns`` nanoseconds pass and run the ``bpf_timer`` callbacks due by then, in expiry order.

        A deterministic collection's clock moves to each expiry, then to the target (no
        waiting); a real clock is slept on. Returns how many callbacks ran.

        Raises:
            ValueError: ``ns`` is negative.
        """
        self._check_open()
        from ebpf.vm._helpers_timer import timers_of

        if self._running:
            raise BPFError("advance() while a program runs")
        self._running += 1
        try:
            return timers_of(self.env).advance(ns, prepare=self._timer_budget)
        finally:
            self._running -= 1

    def _timer_budget(self) -> None:
        """Each timer callback runs with a budget of its own (a softirq, not part of a run)."""
        self._callback_budget = max(
            (p.engine.max_insns for p in self.programs.values()), default=DEFAULT_MAX_INSNS
        )
        self._callback_insns = 0

    # --- lifetime -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every map and unmap code and handles (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for m in self.maps.values():
            m.close()
        for region in self._regions:
            self.memory.unmap(region)
        self._regions.clear()
        for address in self._handles:
            self.env.remove_map(address)
        self._handles.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self.programs)} programs, {len(self.maps)} maps"
        return f"runtime.Collection({state}, engine={self.engine_name!r})"
