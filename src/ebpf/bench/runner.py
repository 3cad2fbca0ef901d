"""Running the benchmarks: every engine on every program, interleaved, checked on every run.

Tool layer: uses the core (``ebpf.vm`` engines) and, when bpf() works, the kernel layer
(``BPF_PROG_TEST_RUN``). Without bpf() it measures the user-space engines only and the
report says why the kernel column is missing.

Rule 1: ``trials`` rounds over all programs; a round runs each program on every engine once,
in an engine order rotated by one each round, so no engine always runs first (or right after
another). Spreading a program's trials over the whole run, rather than running them back to
back, gives each program many chances to meet the host's "fast" state (see the noise
warning in ``benchmarks/README.md``): a slow phase lasting seconds would otherwise spoil all
trials of one program.

Rule 2: a trial of a user-space engine runs whole ``engine.run(input)`` calls until
``min_time`` has passed (at least one) and reports the mean wall time per call; a kernel
trial is one ``BPF_PROG_TEST_RUN`` whose ``repeat`` was calibrated to take ``kernel_time``,
and reports the kernel's own average. The garbage collector is paused during a trial.

Rule 3: correctness is checked on every run: the return value and the packet after the
run must equal the reference interpreter's (the kernel's return value is the low 32 bits
of r0). A difference is a hard error, :class:`MismatchError`.
"""

from __future__ import annotations

import datetime
import gc
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ebpf.bench.objects import PROGRAMS, Benchmark, default_bench_dir, load_benchmark
from ebpf.bench.report import KERNEL_ENGINE, BenchReport, EngineResult, KernelFacts, ProgramResult, Trial
from ebpf.errors import BPFError
from ebpf.vm import ENGINES, RunResult, XdpInput, create_engine

__all__ = ["BenchOptions", "MismatchError", "available_engines", "run_benchmarks"]

M32 = (1 << 32) - 1
_MAX_REPEAT = 1 << 31
_REFERENCE_ENGINE = "interp"


class MismatchError(BPFError):
    """Two engines disagree on a program's result: a bug in one of them, never noise.

    Attributes:
        program: the benchmark name.
        engine: the engine whose result differs from the reference interpreter's.
        trial: the round it happened in (``None``: the warm-up run).
        what: ``"return value"`` or ``"output packet"``.
        expected: the reference interpreter's value.
        actual: the engine's value.
    """

    def __init__(
        self, program: str, engine: str, trial: int | None, what: str, expected: object, actual: object
    ) -> None:
        when = "warm-up run" if trial is None else f"trial {trial}"
        if isinstance(expected, bytes) and isinstance(actual, bytes):
            detail = _first_difference(expected, actual)
        else:
            detail = f"expected {expected!r}, got {actual!r}"
        super().__init__(
            f"{program}: {engine} {what} differs from the reference interpreter ({when}): {detail}"
        )
        self.program = program
        self.engine = engine
        self.trial = trial
        self.what = what
        self.expected = expected
        self.actual = actual


def _first_difference(expected: bytes, actual: bytes) -> str:
    if len(expected) != len(actual):
        return f"length {len(actual)}, expected {len(expected)}"
    index = next(i for i, (a, b) in enumerate(zip(expected, actual, strict=True)) if a != b)
    return f"first difference at byte {index}: {actual[index]:#04x}, expected {expected[index]:#04x}"


class _Engine(Protocol):
    def run(self, input: XdpInput, /) -> RunResult: ...


@dataclass
class BenchOptions:
    """What to run, and how long.

    Attributes:
        programs: benchmark names (default: all twelve, in README order).
        engines: engine names: keys of ``ebpf.vm.ENGINES`` and ``"kernel"``; ``None`` for all
            of them. The kernel is dropped, with the reason in the report, when bpf() fails.
        trials: rounds per program.
        min_time: seconds per trial of a user-space engine (whole runs; at least one).
        kernel_time: seconds per kernel trial (``repeat`` is calibrated to reach it).
        bench_dir: the ``benchmarks/`` directory (default: :func:`default_bench_dir`).
        cpu: pin the process to this CPU for the run (``None``: leave affinity alone).
        progress: called with a short line as each program starts and ends.
    """

    programs: Sequence[str] = PROGRAMS
    engines: Sequence[str] | None = None
    trials: int = 10
    min_time: float = 0.1
    kernel_time: float = 0.025
    bench_dir: Path | None = None
    cpu: int | None = None
    progress: Callable[[str], None] | None = field(default=None, repr=False, compare=False)

    def validate(self) -> None:
        """Raise ``ValueError`` for unusable settings."""
        if self.trials < 1:
            raise ValueError(f"trials must be at least 1, not {self.trials}")
        if not self.min_time >= 0 or not self.kernel_time > 0:
            raise ValueError("min_time must be >= 0 and kernel_time > 0")
        if not self.programs:
            raise ValueError("no programs selected")
        if len(set(self.programs)) != len(self.programs):
            raise ValueError(f"programs listed twice: {', '.join(self.programs)}")
        known = available_engines()
        for name in self.engines or ():
            if name not in known:
                raise ValueError(f"unknown engine {name!r}; choose from {', '.join(known)}")
        if self.engines is not None and (not self.engines or len(set(self.engines)) != len(self.engines)):
            raise ValueError(f"engines must be distinct and not empty: {', '.join(self.engines)}")
        if self.cpu is not None:
            if not hasattr(os, "sched_getaffinity"):
                raise ValueError("pinning to a CPU needs sched_setaffinity (Linux)")
            allowed = os.sched_getaffinity(0)
            if self.cpu not in allowed:
                cpus = ",".join(map(str, sorted(allowed)))
                raise ValueError(f"CPU {self.cpu} is not available to this process (allowed: {cpus})")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["progress"]
        data["programs"] = list(self.programs)
        data["engines"] = list(self.engines) if self.engines is not None else None
        data["bench_dir"] = str(self.bench_dir if self.bench_dir is not None else default_bench_dir())
        return data


def available_engines() -> list[str]:
    """Every engine name: the user-space engines of ``ebpf.vm.ENGINES``, then ``"kernel"``."""
    return [*ENGINES, KERNEL_ENGINE]


def run_benchmarks(options: BenchOptions | None = None) -> BenchReport:
    """Run the selected programs on the selected engines (see the module rules).

    Returns:
        The report, with every trial's raw figures.

    Raises:
        ValueError: bad options (unknown program or engine, no trials).
        FileNotFoundError, ELFError, DecodeError: a benchmark object cannot be read.
        MismatchError: an engine's result differs from the reference interpreter's.
        VerifierError, SyscallError: the kernel refused to load or run a program.
    """
    opts = options if options is not None else BenchOptions()
    opts.validate()
    engines = list(opts.engines) if opts.engines is not None else available_engines()
    reason: str | None = None
    if KERNEL_ENGINE in engines:
        reason = _kernel_unavailable_reason()
        if reason is not None:
            engines.remove(KERNEL_ENGINE)
    if not engines:
        raise ValueError(f"no engine left to run: the kernel is unavailable ({reason})")
    bench_dir = opts.bench_dir if opts.bench_dir is not None else default_bench_dir()
    benchmarks = [load_benchmark(name, bench_dir) for name in opts.programs]

    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    old_affinity = _pin(opts.cpu)
    try:
        results = _run_all(benchmarks, engines, opts)
    finally:
        if old_affinity is not None:
            os.sched_setaffinity(0, old_affinity)
    return BenchReport(
        programs=results,
        engines=engines,
        kernel_unavailable=reason,
        options=opts.to_json(),
        environment=environment(),
        started=started,
        duration_s=time.perf_counter() - t0,
    )


def _kernel_unavailable_reason() -> str | None:
    try:
        from ebpf.kernel import bpf_unavailable_reason
    except ImportError as err:  # a build or test without the kernel layer
        return f"the kernel layer cannot be imported: {err}"
    return bpf_unavailable_reason()


def _pin(cpu: int | None) -> set[int] | None:
    if cpu is None:
        return None
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    return old


_Timer = Callable[[int, int], Trial]


def _run_all(benchmarks: list[Benchmark], engines: list[str], opts: BenchOptions) -> list[ProgramResult]:
    say = opts.progress or (lambda _line: None)
    with ExitStack() as stack:
        prepared = [_prepare(bench, engines, opts, stack) for bench in benchmarks]
        for trial in range(opts.trials):
            shift = trial % len(engines)
            order = engines[shift:] + engines[:shift]
            for result, timers in prepared:
                for position, name in enumerate(order):
                    result.engines[name].trials.append(timers[name](trial, position))
            say(f"trial {trial + 1}/{opts.trials} done")
    for result, _ in prepared:
        summary = ", ".join(f"{name} {res.min_ns:,.0f}" for name, res in result.engines.items())
        say(f"{result.name}: min ns/run: {summary}")
    return [result for result, _ in prepared]


def _prepare(
    bench: Benchmark, engines: list[str], opts: BenchOptions, stack: ExitStack
) -> tuple[ProgramResult, dict[str, _Timer]]:
    """The reference run, then every engine set up, warmed up and checked once."""
    program = bench.program.program
    packet = XdpInput(bench.packet)
    ref = create_engine(program, _REFERENCE_ENGINE).run(packet)
    result = ProgramResult(
        name=bench.name,
        instructions=len(program),
        slots=program.slots,
        insns=ref.insns,
        retval=ref.retval & M32,
    )
    if opts.progress is not None:
        opts.progress(f"{bench.name}: {ref.insns} insns/run, r0 = {result.retval}")

    def check_user(engine: str, trial: int | None, got: RunResult) -> None:
        if got.retval != ref.retval:
            raise MismatchError(bench.name, engine, trial, "return value", ref.retval, got.retval)
        if got.data != ref.data:
            raise MismatchError(bench.name, engine, trial, "output packet", ref.data, got.data)

    timers: dict[str, _Timer] = {}
    for name in engines:
        if name == KERNEL_ENGINE:
            timers[name] = _kernel_timer(bench, ref, opts, stack, result)
        else:
            timers[name] = _user_timer(name, bench, packet, opts, result, check_user)
    return result, timers


def _user_timer(
    name: str,
    bench: Benchmark,
    packet: XdpInput,
    opts: BenchOptions,
    result: ProgramResult,
    check: Callable[[str, int | None, RunResult], None],
) -> _Timer:
    t0 = time.perf_counter_ns()
    engine: _Engine = create_engine(bench.program.program, name)
    setup = time.perf_counter_ns() - t0
    warm = engine.run(packet)  # warm-up, and the first correctness check
    check(name, None, warm)
    result.engines[name] = EngineResult(name, setup_ns=setup, reported_insns=warm.insns)
    min_ns = int(opts.min_time * 1e9)

    def timer(trial: int, position: int) -> Trial:
        clock = time.perf_counter_ns
        run = engine.run
        total = engine_total = runs = 0
        was_enabled = gc.isenabled()
        gc.collect()
        gc.disable()
        try:
            while runs == 0 or total < min_ns:
                start = clock()
                got = run(packet)
                total += clock() - start
                engine_total += got.elapsed_ns
                runs += 1
                check(name, trial, got)
        finally:
            if was_enabled:
                gc.enable()
        return Trial(total / runs, runs, position, engine_total / runs)

    return timer


def _kernel_timer(
    bench: Benchmark, ref: RunResult, opts: BenchOptions, stack: ExitStack, result: ProgramResult
) -> _Timer:
    from ebpf.kernel import Program as KernelProgram

    name = bench.program.function or f"bench_{bench.name}"
    t0 = time.perf_counter_ns()
    prog = stack.enter_context(KernelProgram.load(bench.program.program, bench.program.type, name=name[:15]))
    setup = time.perf_counter_ns() - t0
    info = prog.info()
    result.kernel = KernelFacts(info.xlated_prog_len, info.jited_prog_len, info.verified_insns)
    result.engines[KERNEL_ENGINE] = EngineResult(KERNEL_ENGINE, setup_ns=setup)
    packet = bench.packet
    expected = ref.retval & M32

    def run(trial: int | None, repeat: int) -> int:
        got = prog.test_run(packet, repeat=repeat)
        if got.retval != expected:
            raise MismatchError(bench.name, KERNEL_ENGINE, trial, "return value", expected, got.retval)
        if got.data_out != ref.data:
            raise MismatchError(bench.name, KERNEL_ENGINE, trial, "output packet", ref.data, got.data_out)
        return got.duration_ns

    repeat = _calibrate(lambda r: run(None, r), int(opts.kernel_time * 1e9))

    def timer(trial: int, position: int) -> Trial:
        return Trial(float(run(trial, repeat)), repeat, position)

    return timer


def _calibrate(run: Callable[[int], int], target_ns: int) -> int:
    """The ``repeat`` that makes one test run last about ``target_ns`` (``run`` returns the
    average ns per repetition)."""
    repeat = 1
    while True:
        per_run = max(run(repeat), 1)
        total = per_run * repeat
        if total * 10 >= target_ns or repeat >= _MAX_REPEAT:
            return max(1, min(_MAX_REPEAT, math.ceil(target_ns / per_run)))
        repeat = min(_MAX_REPEAT, repeat * 10)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return None


def _cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Facts about the machine and software that a benchmark figure depends on."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ebpf_version = version("ebpf")
    except PackageNotFoundError:  # pragma: no cover - running from an unpacked tree
        ebpf_version = "unknown"
    sysctl = {key: _read(f"/proc/sys/net/core/{key}") for key in ("bpf_jit_enable", "bpf_jit_harden")}
    sysctl["bpf_stats_enabled"] = _read("/proc/sys/kernel/bpf_stats_enabled")
    return {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.system(),
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
        "ebpf": ebpf_version,
        "user_engines": list(ENGINES),
        "spectre_v2": _read("/sys/devices/system/cpu/vulnerabilities/spectre_v2"),
        "sysctl": sysctl,
    }
