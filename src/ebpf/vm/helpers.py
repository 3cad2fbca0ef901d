"""Helper-function registry of the user-space runtime and the environment helpers see.

Core layer: pure, no kernel access.

Rule 1: a helper is a Python callable ``fn(env, r1, r2, r3, r4, r5) -> int``; ``env`` is the
:class:`HelperEnv` of the running program (its memory, and the engine's knobs). Arguments
arrive as unsigned 64-bit integers; the return value is masked to 64 bits and put in r0.

Rule 2: a helper that must end the program at once (uBPF's "unwind" helper) raises
:class:`ProgramExit` with the program's return value; ``bpf_tail_call`` raises
:class:`ebpf.vm.interpreter.TailCall`, which the engine lets through to the runtime.

Rule 3: the registry is data, filled by later layers (maps, packets, time, tracing); the
interpreter, the fast tier and the JIT call helpers only through it.
:func:`runtime_helpers` is the registry of every kernel helper implemented in user space
(the ``_helpers_*.py`` modules), :func:`ubpf_test_helpers` the uBPF test set.

Rule 4: the kernel helpers need a :class:`RunEnv` (maps, CPU, clock, random numbers, trace
log, task, program type, tail-call and callback hooks). Engines pass it as ``env``; an
engine that still passes a bare ``HelperEnv`` works too, because each ``RunEnv`` registers
itself for its :class:`~ebpf.vm.memory.Memory` and :func:`run_env` finds it from there.
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import random
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ebpf.errors import VMError
from ebpf.spec import ProgramType
from ebpf.vm._context_base import LOOPBACK, MappedInput, NetDevice, host_devices
from ebpf.vm.memory import HostBuffer, Memory, Region

if TYPE_CHECKING:
    from ebpf.maps import Map
    from ebpf.vm._helpers_skb import Fib
    from ebpf.vm._helpers_timer import Timers

__all__ = [
    "LOOPBACK",
    "MAX_TAIL_CALL_CNT",
    "Callback",
    "Clock",
    "FixedClock",
    "Helper",
    "HelperEnv",
    "HelperFn",
    "HelperRegistry",
    "NetDevice",
    "ProgramExit",
    "Redirect",
    "RunEnv",
    "SystemClock",
    "TaskInfo",
    "format_trace_line",
    "host_devices",
    "run_env",
    "runtime_helpers",
    "trace_flags_for",
    "ubpf_test_helpers",
]

M64 = (1 << 64) - 1


class HelperEnv(Protocol):
    """What a helper can see of the running program."""

    @property
    def memory(self) -> Memory: ...


HelperFn = Callable[[HelperEnv, int, int, int, int, int], int]


class ProgramExit(Exception):
    """Raised by a helper to end the program immediately with ``retval`` in r0."""

    def __init__(self, retval: int) -> None:
        super().__init__(retval)
        self.retval = retval & M64


MAX_TAIL_CALL_CNT = 33  # include/linux/bpf.h: tail calls allowed per run


# --- clocks ---------------------------------------------------------------------------------------


class Clock(Protocol):
    """The time sources of the time helpers (nanoseconds; jiffies as the kernel counts them)."""

    def monotonic_ns(self) -> int: ...  # bpf_ktime_get_ns: CLOCK_MONOTONIC

    def boottime_ns(self) -> int: ...  # bpf_ktime_get_boot_ns: CLOCK_BOOTTIME

    def coarse_ns(self) -> int: ...  # bpf_ktime_get_coarse_ns: CLOCK_MONOTONIC_COARSE

    def tai_ns(self) -> int: ...  # bpf_ktime_get_tai_ns: CLOCK_TAI

    def jiffies64(self) -> int: ...  # bpf_jiffies64


def _config_hz() -> int:
    """``CONFIG_HZ`` of the running kernel from /proc/config.gz (250, the x86 default, if unreadable)."""
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            for line in f:
                if line.startswith("CONFIG_HZ="):
                    return int(line.split("=", 1)[1])
    except (OSError, ValueError, EOFError):
        pass
    return 250


def initial_jiffies(hz: int) -> int:
    """``INITIAL_JIFFIES``: ``(unsigned long)(unsigned int)(-300 * HZ)`` (wraps 5 minutes after boot)."""
    return (-300 * hz) & 0xFFFFFFFF


@functools.cache
def _jiffies_offset(hz: int) -> int:
    """How far the kernel's jiffies are from ``INITIAL_JIFFIES + CLOCK_MONOTONIC * HZ``.

    Read once from ``/proc/timer_list`` (root only); 0 when it cannot be read.
    """
    try:
        with open("/proc/timer_list") as f:
            for line in f:
                if line.startswith("jiffies: "):
                    jiffies = int(line.split()[1])
                    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
                    return jiffies - (initial_jiffies(hz) + now * hz // 1_000_000_000)
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass
class SystemClock:
    """The host's clocks (the real values the kernel helpers would return on this machine).

    ``hz`` is ``CONFIG_HZ`` (read from /proc/config.gz when not given); jiffies are
    ``INITIAL_JIFFIES + CLOCK_MONOTONIC * HZ`` corrected by the kernel counter's offset (read
    once from ``/proc/timer_list`` when readable), which tracks the kernel's ``jiffies_64``.
    """

    hz: int = field(default_factory=_config_hz)

    def monotonic_ns(self) -> int:
        return time.clock_gettime_ns(time.CLOCK_MONOTONIC)

    def boottime_ns(self) -> int:
        return time.clock_gettime_ns(getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC))

    def coarse_ns(self) -> int:
        coarse = getattr(time, "CLOCK_MONOTONIC_COARSE", 6)  # Linux value of the constant
        try:
            return time.clock_gettime_ns(coarse)
        except OSError:
            return self.monotonic_ns()

    def tai_ns(self) -> int:
        return time.clock_gettime_ns(getattr(time, "CLOCK_TAI", time.CLOCK_REALTIME))

    def jiffies64(self) -> int:
        offset = _jiffies_offset(self.hz)
        return initial_jiffies(self.hz) + self.monotonic_ns() * self.hz // 1_000_000_000 + offset


@dataclass
class FixedClock:
    """A deterministic clock: every read returns ``now_ns`` and then advances it by ``step_ns``.

    Boot time is ``now_ns + boot_offset_ns`` (time spent suspended), TAI ``now_ns + tai_offset_ns``;
    jiffies derive from the monotonic time as on the kernel.
    """

    now_ns: int = 1_000_000_000
    step_ns: int = 0
    hz: int = 250
    boot_offset_ns: int = 0
    tai_offset_ns: int = 1_700_000_000_000_000_000

    def _read(self) -> int:
        now = self.now_ns
        self.now_ns += self.step_ns
        return now

    def monotonic_ns(self) -> int:
        return self._read()

    def boottime_ns(self) -> int:
        return self._read() + self.boot_offset_ns

    def coarse_ns(self) -> int:
        return self._read()

    def tai_ns(self) -> int:
        return self._read() + self.tai_offset_ns

    def jiffies64(self) -> int:
        return initial_jiffies(self.hz) + self._read() * self.hz // 1_000_000_000


# --- the task -------------------------------------------------------------------------------------


def _own_comm() -> bytes:
    try:
        with open("/proc/thread-self/comm", "rb") as f:
            return f.read().rstrip(b"\n")[:15]
    except OSError:
        return os.path.basename(sys.argv[0] if sys.argv else "python").encode()[:15]


def _own_cgroup_id() -> int:
    """The cgroup v2 id of this thread (the inode of its cgroup directory), or 0 if unknown."""
    try:
        with open("/proc/thread-self/cgroup") as f:
            path = next((line[3:].strip() for line in f if line.startswith("0::")), None)
        with open("/proc/self/mounts") as f:
            mount = next((line.split()[1] for line in f if line.split()[2:3] == ["cgroup2"]), None)
        if path is None or mount is None:
            return 0
        return os.stat(os.path.join(mount, path.lstrip("/"))).st_ino
    except (OSError, IndexError):
        return 0


@dataclass
class TaskInfo:
    """The "current" task the task helpers report (``bpf_get_current_pid_tgid`` & co.).

    Attributes:
        pid: the thread id (the kernel's ``pid``; low 32 bits of ``get_current_pid_tgid``).
        tgid: the process id (the kernel's ``tgid``; high 32 bits).
        uid, gid: ``get_current_uid_gid`` (gid high, uid low).
        comm: the task name, at most 15 bytes (``TASK_COMM_LEN`` 16 with the NUL).
        task: what ``bpf_get_current_task`` returns. There is no ``task_struct`` in user
            space: 0 unless configured (an address of a region the caller mapped, for example).
        cgroup_id: the task's cgroup v2 id (``bpf_get_current_cgroup_id``).
        kernel_stack, user_stack: the return addresses ``bpf_get_stackid`` / ``bpf_get_stack``
            walk (innermost first). User space cannot see a kernel stack, so both are empty
            unless configured, and the helpers answer as the kernel does for no frames
            (``-EFAULT`` from ``bpf_get_stackid``, 0 bytes from ``bpf_get_stack``).
    """

    pid: int
    tgid: int
    uid: int
    gid: int
    comm: bytes
    task: int = 0
    cgroup_id: int = 1
    kernel_stack: tuple[int, ...] = ()
    user_stack: tuple[int, ...] = ()

    @classmethod
    def current(cls) -> TaskInfo:
        """The calling thread: its real tid, pid, uid, gid, comm and cgroup id."""
        return cls(
            threading.get_native_id(),
            os.getpid(),
            os.getuid(),
            os.getgid(),
            _own_comm(),
            cgroup_id=_own_cgroup_id(),
        )

    @classmethod
    def fixed(cls) -> TaskInfo:
        """The deterministic task: pid = tgid = 1000, uid = gid = 0, comm "bpf_test", root cgroup (1)."""
        return cls(1000, 1000, 0, 0, b"bpf_test")


def format_trace_line(comm: bytes, pid: int, cpu: int, ts_ns: int, msg: str, flags: str = "b..11") -> str:
    """One ``bpf_trace_printk`` event as ``/sys/kernel/tracing/trace_pipe`` prints it.

    The kernel's ``trace_print_context``: the comm right-aligned in 16 columns, ``-pid``
    left-aligned in 7, ``[cpu]`` as 3 digits, the 5 latency flag characters, the time stamp
    as ``seconds.microseconds``, then ``bpf_trace_printk: `` and the message as given (the
    kernel ends every event with one more newline; the returned line does not include it).
    """
    name = comm.decode("utf-8", "replace")
    seconds, usecs = divmod(ts_ns // 1000, 1_000_000)
    return f"{name:>16}-{pid:<7} [{cpu:03d}] {flags} {seconds:5d}.{usecs:06d}: bpf_trace_printk: {msg}"


# The latency flags a BPF_PROG_TEST_RUN shows in trace_pipe on Linux 6.18 (irqs-off/BH,
# need-resched, hardirq/softirq, preempt depth, migrate-disable).
_NET_TYPES = frozenset(
    {
        ProgramType.XDP,
        ProgramType.SCHED_CLS,
        ProgramType.SCHED_ACT,
        ProgramType.SOCKET_FILTER,
        ProgramType.CGROUP_SKB,
        ProgramType.LWT_IN,
        ProgramType.LWT_OUT,
        ProgramType.LWT_XMIT,
        ProgramType.NETFILTER,
    }
)
# preemption off, migration not: bpf_flow_dissect and the sk_lookup run array (measured)
_PREEMPT_OFF_TYPES = frozenset({ProgramType.FLOW_DISSECTOR, ProgramType.SK_LOOKUP})


def trace_flags_for(program_type: ProgramType) -> str:
    """The trace_pipe flags of a test run: ``b..11`` (BH off) for packet programs, ``...12`` for
    flow dissectors and sk_lookup, ``...2.`` else."""
    if program_type in _PREEMPT_OFF_TYPES:
        return "...12"
    return "b..11" if program_type in _NET_TYPES else "...2."


@dataclass
class Redirect:
    """What ``bpf_redirect`` / ``bpf_redirect_map`` recorded for the runtime to act on."""

    ifindex: int = 0
    flags: int = 0
    map: Map | None = None
    key: int | None = None


# callback(func, r1, r2, r3, r4, r5) -> r0: runs a BPF callback function (bpf_loop & co.).
Callback = Callable[[int, int, int, int, int, int], int]

_ENVS: weakref.WeakKeyDictionary[Memory, RunEnv] = weakref.WeakKeyDictionary()


@dataclass(eq=False)
class RunEnv:
    """The environment the kernel helpers of the user-space runtime see (``env`` of a helper).

    One per collection (or per engine); the per-run fields (:attr:`cpu`, :attr:`context`,
    :attr:`tail_calls`, :attr:`redirect`, held spin locks) are reset by :meth:`begin_run`
    (call it before each top-level run, not before a tail-called program).

    Attributes:
        memory: the region table shared with the engine and the maps.
        maps: map handle address -> map. :meth:`add_map` maps a small read-only region per map
            and returns its start address, which is what ``lddw rX, MAP_FD`` must load; helpers
            receive that address in r1/r2 and look the map up here.
        cpu: the CPU the program runs on (``bpf_get_smp_processor_id``; per-CPU map values).
        ncpus: number of simulated CPUs.
        deterministic: fixed clock, seeded random numbers and a fixed task instead of the real ones,
            and no reads of the host process's memory (``bpf_probe_read_user`` outside the
            program's memory faults; see :mod:`ebpf.vm._helpers_trace` Rule 4).
        seed: the random seed in deterministic mode.
        clock: the time source (:class:`SystemClock`, or :class:`FixedClock` when deterministic).
        rng: the random source of ``bpf_get_prandom_u32`` (seeded from the OS, or from ``seed``).
        task: the task the task helpers report; ``None`` (the default outside deterministic
            mode): the thread that runs the program, looked up at each call
            (:meth:`current_task`); deterministic mode: :meth:`TaskInfo.fixed`.
        trace: the ``bpf_trace_printk`` events, formatted as ``trace_pipe`` shows them (each
            without the newline the kernel adds after every event).
        trace_sink: also called with every trace line (e.g. ``print``), if set.
        trace_flags: the 5 latency flag characters of trace lines (default: what a test run of
            :attr:`program_type` shows, see :func:`trace_flags_for`).
        program_type: the running program's type (the entry of a tail-call chain).
        context: the mapped input of the current run (:class:`ebpf.vm.context.MappedInput`);
            packet helpers find it from their context argument, this is the fallback.
        callback: runs a BPF callback (``bpf_loop``, ``for_each_map_elem``...): ``callback(func,
            r1, ..., r5) -> r0`` where ``func`` is the value ``lddw rX, FUNC`` loaded (the
            engine's ``code_base + 8 * slot``); the runtime provides it, e.g.
            :func:`ebpf.vm._helpers_callback.engine_callback`.
        redirect: what the last ``bpf_redirect*`` of this run recorded, or ``None``.
        tail_calls: tail calls taken in this run (``bpf_tail_call`` falls through after
            :data:`MAX_TAIL_CALL_CNT`; the kernel counts per run, not per chain link).
        func_ip: what ``bpf_get_func_ip`` returns (the traced function's address; 0 by default).
        attach_cookie: what ``bpf_get_attach_cookie`` returns (0, as in a test run, by default).
        devices: ifindex -> :class:`~ebpf.vm.context.NetDevice` (MTU, link header length, rx
            queues) for ``bpf_check_mtu`` and XDP ``ctx_in`` checks: the host's devices
            (:func:`host_devices`), or only loopback (ifindex 1, MTU 65536) when deterministic.
        fib: the routing state ``bpf_fib_lookup`` consults (:class:`ebpf.vm._helpers_skb.Fib`);
            ``None``: the host's, read at each lookup (only loopback when deterministic).
        timers: the ``bpf_timer`` registry (:class:`ebpf.vm._helpers_timer.Timers`), made by
            the first timer helper (:func:`ebpf.vm._helpers_timer.timers_of`).
    """

    memory: Memory = field(default_factory=Memory)
    maps: dict[int, Map] = field(default_factory=dict)
    ncpus: int = 1
    cpu: int = 0
    deterministic: bool = False
    seed: int = 0
    clock: Clock | None = None
    rng: random.Random | None = None
    task: TaskInfo | None = None
    trace: list[str] = field(default_factory=list)
    trace_sink: Callable[[str], None] | None = None
    trace_flags: str | None = None
    program_type: ProgramType = ProgramType.UNSPEC
    context: MappedInput | None = None
    callback: Callback | None = None
    redirect: Redirect | None = None
    tail_calls: int = 0
    func_ip: int = 0
    attach_cookie: int = 0
    devices: dict[int, NetDevice] | None = None
    fib: Fib | None = None
    timers: Timers | None = None
    _handles: dict[int, Region] = field(default_factory=dict, repr=False)
    _by_map: dict[int, int] = field(default_factory=dict, repr=False)
    _threads: dict[int, TaskInfo] = field(default_factory=dict, repr=False)
    _spin_locks: set[int] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        if self.ncpus < 1 or not 0 <= self.cpu < self.ncpus:
            raise ValueError(f"cpu {self.cpu} out of range for ncpus {self.ncpus}")
        if self.clock is None:
            self.clock = FixedClock() if self.deterministic else SystemClock()
        if self.rng is None:
            self.rng = random.Random(self.seed) if self.deterministic else random.Random()
        if self.task is None and self.deterministic:
            self.task = TaskInfo.fixed()
        if self.devices is None:
            self.devices = {1: LOOPBACK} if self.deterministic else host_devices()
        _ENVS[self.memory] = self

    # --- set-up ---------------------------------------------------------------------------------

    def add_map(self, m: Map) -> int:
        """Give ``m`` a handle address (a small read-only region) and return it.

        Load that address for ``lddw rX, MAP_FD`` (the runtime's ``resolve_imm64``).
        """
        name = m.name or m.type.name.lower()
        region = self.memory.map_buffer(f"map_handle:{name}", HostBuffer(8), writable=False)
        self.register(region.start, m)
        self._handles[region.start] = region
        return region.start

    def register(self, address: int, m: Map) -> None:
        """Make ``m`` reachable at handle ``address`` (a region the caller mapped)."""
        self.maps[address] = m
        self._by_map[id(m)] = address

    def handle_of(self, m: Map) -> int:
        """The handle address of ``m`` (map-in-map lookups return it).

        Raises:
            VMError: ``m`` has no handle here.
        """
        try:
            return self._by_map[id(m)]
        except KeyError:
            raise VMError(f"map {m.name!r} has no handle in this runtime") from None

    def remove_map(self, address: int) -> None:
        """Forget the map with handle ``address`` and unmap its handle region."""
        m = self.maps.pop(address, None)
        if m is not None:
            self._by_map.pop(id(m), None)
        region = self._handles.pop(address, None)
        if region is not None:
            self.memory.unmap(region)

    def begin_run(self, *, cpu: int | None = None, context: MappedInput | None = None) -> None:
        """Reset the per-run state before a top-level run (not before a tail-called program)."""
        if cpu is not None:
            if not 0 <= cpu < self.ncpus:
                raise ValueError(f"cpu {cpu} out of range for ncpus {self.ncpus}")
            self.cpu = cpu
        self.context = context
        self.redirect = None
        self.tail_calls = 0
        self._spin_locks.clear()

    # --- what helpers use -----------------------------------------------------------------------

    def map_at(self, address: int) -> Map:
        """The map whose handle is ``address``.

        Raises:
            VMError: no map has that handle (a corrupted map pointer).
        """
        m = self.maps.get(address)
        if m is None:
            raise VMError(f"{address:#x} is not a map pointer")
        return m

    def call(self, function: int, *args: int) -> int:
        """Run the BPF callback at code address ``function`` with ``args`` in r1..r5; its r0.

        Raises:
            VMError: no callback hook is installed, or the callback faults.
        """
        if self.callback is None:
            raise VMError("callbacks (bpf_loop, for_each_map_elem...) need an engine callback hook")
        regs = (*args, 0, 0, 0, 0, 0)[:5]
        return self.callback(function, *regs) & M64

    def emit_trace(self, msg: str) -> None:
        """Append a ``bpf_trace_printk`` message as a trace_pipe line (and pass it to the sink)."""
        assert self.clock is not None
        task = self.current_task()
        flags = self.trace_flags or trace_flags_for(self.program_type)
        line = format_trace_line(task.comm, task.pid, self.cpu, self.clock.monotonic_ns(), msg, flags)
        self.trace.append(line)
        if self.trace_sink is not None:
            self.trace_sink(line)

    def current_task(self) -> TaskInfo:
        """The task the helpers report: :attr:`task`, or the calling thread (cached per thread)."""
        if self.task is not None:
            return self.task
        tid = threading.get_native_id()
        found = self._threads.get(tid)
        if found is None:
            found = self._threads[tid] = TaskInfo.current()
        return found

    @property
    def spin_locks(self) -> set[int]:
        """Addresses of the ``bpf_spin_lock``\\ s held in this run."""
        return self._spin_locks


def run_env(env: HelperEnv) -> RunEnv:
    """The :class:`RunEnv` behind ``env`` (itself, or the one registered for its memory).

    Raises:
        VMError: no ``RunEnv`` was created for this memory (kernel helpers need one).
    """
    if isinstance(env, RunEnv):
        return env
    found = _ENVS.get(env.memory)
    if found is None:
        raise VMError("this helper needs a RunEnv (maps, clock, task...) for the engine's memory")
    return found


@dataclass(frozen=True, slots=True)
class Helper:
    """A registered helper: its id, its kernel-style name and the callable."""

    id: int
    name: str
    fn: HelperFn


class HelperRegistry(Mapping[int, Helper]):
    """Helper id -> :class:`Helper`. Mutable: register more with :meth:`register`."""

    def __init__(self, helpers: Mapping[int, Helper] | None = None) -> None:
        self._helpers: dict[int, Helper] = dict(helpers or {})

    def register(self, helper_id: int, name: str, fn: HelperFn) -> None:
        """Add (or replace) the helper for ``helper_id``."""
        self._helpers[helper_id] = Helper(helper_id, name, fn)

    def copy(self) -> HelperRegistry:
        return HelperRegistry(self._helpers)

    def __getitem__(self, helper_id: int) -> Helper:
        return self._helpers[helper_id]

    def __iter__(self) -> Iterator[int]:
        return iter(self._helpers)

    def __len__(self) -> int:
        return len(self._helpers)

    def name_of(self, helper_id: int) -> str:
        """The helper's name, or ``"helper#<id>"`` when unknown."""
        helper = self._helpers.get(helper_id)
        return helper.name if helper else f"helper#{helper_id}"


# --- uBPF's test helpers, as the bpf_conformance runner expects them --------------------------------


def _gather_bytes(env: HelperEnv, a: int, b: int, c: int, d: int, e: int) -> int:
    return ((a & 0xFF) << 32) | ((b & 0xFF) << 24) | ((c & 0xFF) << 16) | ((d & 0xFF) << 8) | (e & 0xFF)


def _memfrob(env: HelperEnv, ptr: int, n: int, _c: int, _d: int, _e: int) -> int:
    data = env.memory.read_bytes(ptr, n)
    env.memory.write_bytes(ptr, bytes(byte ^ 42 for byte in data))
    return 0


def _no_op(env: HelperEnv, a: int, b: int, c: int, d: int, e: int) -> int:
    return 0


def _sqrti(env: HelperEnv, a: int, _b: int, _c: int, _d: int, _e: int) -> int:
    return math.isqrt(a & M64)


def _strcmp_ext(env: HelperEnv, p1: int, p2: int, _c: int, _d: int, _e: int) -> int:
    s1 = env.memory.read_cstring(p1)
    s2 = env.memory.read_cstring(p2)
    # C strcmp: difference of the first differing bytes (as unsigned char), else 0.
    for x, y in zip(s1 + b"\0", s2 + b"\0", strict=False):
        if x != y:
            return (x - y) & M64
    return 0


def _unwind(env: HelperEnv, a: int, _b: int, _c: int, _d: int, _e: int) -> int:
    if a == 0:
        raise ProgramExit(0)
    return a


def ubpf_test_helpers() -> HelperRegistry:
    """The helpers uBPF registers for its tests, which bpf_conformance programs call.

    0 gather_bytes, 1 memfrob, 2 no_op, 3 sqrti, 4 strcmp_ext, 5 unwind (returns its argument;
    when that is 0 the program ends at once returning 0).
    """
    reg = HelperRegistry()
    reg.register(0, "gather_bytes", _gather_bytes)
    reg.register(1, "memfrob", _memfrob)
    reg.register(2, "no_op", _no_op)
    reg.register(3, "sqrti", _sqrti)
    reg.register(4, "strcmp_ext", _strcmp_ext)
    reg.register(5, "unwind", _unwind)
    return reg


def runtime_helpers() -> HelperRegistry:
    """Every kernel helper implemented in user space, under its UAPI number (``bpf_*``).

    The helpers need a :class:`RunEnv` for the engine's memory (see :func:`run_env`).
    """
    from ebpf.vm import (
        _helpers_core,
        _helpers_dynptr,
        _helpers_flow,
        _helpers_net,
        _helpers_skb,
        _helpers_trace,
    )

    reg = HelperRegistry()
    for module in (_helpers_core, _helpers_net, _helpers_trace, _helpers_flow, _helpers_dynptr, _helpers_skb):
        module.register(reg)
    from ebpf.vm import _helpers_timer

    _helpers_timer.register(reg)
    from ebpf.vm import _helpers_cgroup, _helpers_storage

    _helpers_storage.register(reg)
    _helpers_cgroup.register(reg)
    from ebpf.vm import _helpers_progtypes  # after _helpers_net: extends bpf_skb_load_bytes

    _helpers_progtypes.register(reg)
    from ebpf.vm import _helpers_misc

    _helpers_misc.register(reg)
    from ebpf.vm import _helpers_userrb

    _helpers_userrb.register(reg)
    from ebpf.vm import _helpers_sock

    _helpers_sock.register(reg)
    return reg
