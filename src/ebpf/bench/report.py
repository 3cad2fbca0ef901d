"""What a benchmark run measured: raw trials, and the statistics derived from them.

Tool layer: pure data, no kernel access.

Rule 1: a report keeps every raw figure (each trial of each engine on each program);
minima, medians and ratios are computed from them on demand, never stored twice.

Rule 2 (the noise warning of ``benchmarks/README.md``): trials are paired. Trial ``t`` of
every engine on a program ran back to back in one round, so the per-trial ratio
``engine[t] / kernel[t]`` compares measurements taken under the same machine state. Report
both the min-based ratio (``min(engine) / min(kernel)``, reproducible to a few %) and the
median of the per-trial ratios; never compare absolute medians between runs.

Rule 3: "executed instructions" is the reference interpreter's count
(``RunResult.insns``) on the program's input; it is the same for every engine.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from ebpf.bench.objects import COMPUTE_KERNELS

__all__ = [
    "KERNEL_ENGINE",
    "BenchReport",
    "EngineResult",
    "KernelFacts",
    "ProgramResult",
    "Trial",
    "geometric_mean",
]

KERNEL_ENGINE = "kernel"
"""The engine name of the Linux kernel JIT (run through ``BPF_PROG_TEST_RUN``)."""

JSON_VERSION = 1


def geometric_mean(values: Iterable[float]) -> float | None:
    """The geometric mean of positive values, or ``None`` when there are none."""
    vals = list(values)
    if not vals or any(v <= 0 for v in vals):
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


@dataclass(frozen=True)
class Trial:
    """One trial of one engine on one program.

    Attributes:
        ns_per_run: mean wall time per run. User-space engines: measured around each
            ``engine.run(input)`` call (mapping the input included). Kernel: the kernel's
            own average over ``runs`` repetitions (``BPF_PROG_TEST_RUN``'s ``duration``).
        runs: runs in the trial (the kernel's ``repeat``).
        position: where the engine ran in this trial's (rotated) engine order, from 0.
        engine_ns_per_run: user-space engines: the mean of ``RunResult.elapsed_ns`` (the
            engine's own timing, input mapping excluded); ``None`` for the kernel.
    """

    ns_per_run: float
    runs: int
    position: int
    engine_ns_per_run: float | None = None


@dataclass
class EngineResult:
    """All trials of one engine on one program.

    Attributes:
        engine: the engine name (a key of ``ebpf.vm.ENGINES``, or :data:`KERNEL_ENGINE`).
        trials: one :class:`Trial` per round, in round order.
        setup_ns: time to prepare the engine (``create_engine``; kernel: ``BPF_PROG_LOAD``).
        reported_insns: the engine's own ``RunResult.insns`` (``None`` for the kernel).
    """

    engine: str
    trials: list[Trial] = field(default_factory=list)
    setup_ns: int = 0
    reported_insns: int | None = None

    @property
    def times(self) -> list[float]:
        """ns per run of each trial."""
        return [t.ns_per_run for t in self.trials]

    @property
    def min_ns(self) -> float:
        """The best trial's ns per run."""
        return min(self.times)

    @property
    def median_ns(self) -> float:
        """The median trial's ns per run."""
        return statistics.median(self.times)

    @property
    def max_ns(self) -> float:
        """The worst trial's ns per run."""
        return max(self.times)


@dataclass(frozen=True)
class KernelFacts:
    """What the kernel reports about the loaded program (``BPF_OBJ_GET_INFO_BY_FD``)."""

    xlated_bytes: int
    jited_bytes: int
    verified_insns: int


@dataclass
class ProgramResult:
    """One program's measurements on every engine.

    Attributes:
        name: the benchmark name.
        instructions: bytecode instructions (``lddw`` counts once).
        slots: bytecode length in 8-byte slots.
        insns: instructions executed per run (the reference interpreter's count).
        retval: the return value every engine agreed on (r0, as the kernel's u32).
        engines: engine name -> its results, in the report's engine order.
        kernel: what the kernel says about the program, when it was loaded.
    """

    name: str
    instructions: int
    slots: int
    insns: int
    retval: int
    engines: dict[str, EngineResult] = field(default_factory=dict)
    kernel: KernelFacts | None = None

    @property
    def is_compute_kernel(self) -> bool:
        """True for the ten kernels that enter the geometric means."""
        return self.name in COMPUTE_KERNELS

    def ns_per_insn(self, engine: str) -> float:
        """Best-trial ns per executed instruction."""
        return self.engines[engine].min_ns / self.insns

    def mips(self, engine: str) -> float:
        """Million eBPF instructions per second, from the best trial."""
        return self.insns * 1e3 / self.engines[engine].min_ns

    def ratio_min(self, engine: str, base: str = KERNEL_ENGINE) -> float | None:
        """``min(engine) / min(base)``, or ``None`` when either was not measured."""
        if engine not in self.engines or base not in self.engines:
            return None
        return self.engines[engine].min_ns / self.engines[base].min_ns

    def trial_ratios(self, engine: str, base: str = KERNEL_ENGINE) -> list[float]:
        """``engine[t] / base[t]`` for each round ``t`` (empty when either is missing)."""
        if engine not in self.engines or base not in self.engines:
            return []
        pairs = zip(self.engines[engine].trials, self.engines[base].trials, strict=True)
        return [e.ns_per_run / b.ns_per_run for e, b in pairs]

    def ratio_median(self, engine: str, base: str = KERNEL_ENGINE) -> float | None:
        """The median of the per-trial ratios, or ``None`` when either was not measured."""
        ratios = self.trial_ratios(engine, base)
        return statistics.median(ratios) if ratios else None


@dataclass
class BenchReport:
    """A whole benchmark run.

    Attributes:
        programs: one result per program, in run order.
        engines: the engines measured, in the order of the first round.
        kernel_unavailable: why the kernel column is missing (``bpf_unavailable_reason()``),
            or ``None`` when the kernel was measured or not asked for.
        options: the options of the run, as plain data.
        environment: machine and software facts (CPU, kernel release, Python, ...).
        started: ISO 8601 start time (UTC).
        duration_s: wall time of the whole run.
        command: the command line that produced the report, when run from the CLI.
    """

    programs: list[ProgramResult]
    engines: list[str]
    kernel_unavailable: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    started: str = ""
    duration_s: float = 0.0
    command: str | None = None

    @property
    def user_engines(self) -> list[str]:
        """The measured engines other than the kernel."""
        return [e for e in self.engines if e != KERNEL_ENGINE]

    @property
    def has_kernel(self) -> bool:
        """True when the kernel JIT was measured."""
        return KERNEL_ENGINE in self.engines

    def compute_kernels(self) -> list[ProgramResult]:
        """The measured programs that enter the geometric means."""
        return [p for p in self.programs if p.is_compute_kernel]

    def geomean_ratio(self, engine: str, kind: str = "min") -> float | None:
        """Geometric mean over the compute kernels of the ratio to the kernel JIT.

        Args:
            engine: a user-space engine.
            kind: ``"min"`` (min-based ratios) or ``"median"`` (medians of per-trial ratios).
        """
        if kind not in ("min", "median"):
            raise ValueError(f"kind must be 'min' or 'median', not {kind!r}")
        get = ProgramResult.ratio_min if kind == "min" else ProgramResult.ratio_median
        values = [get(p, engine) for p in self.compute_kernels()]
        if not values or any(v is None for v in values):
            return None
        return geometric_mean(v for v in values if v is not None)

    def geomean_ns_per_insn(self, engine: str) -> float | None:
        """Geometric mean over the compute kernels of best-trial ns per executed instruction."""
        return geometric_mean(p.ns_per_insn(engine) for p in self.compute_kernels() if engine in p.engines)

    def to_json(self) -> dict[str, Any]:
        """Everything, raw trials included, plus the derived statistics, as JSON-ready data."""
        programs = []
        for p in self.programs:
            engines: dict[str, Any] = {}
            for name, res in p.engines.items():
                engines[name] = {
                    "trials": [asdict(t) for t in res.trials],
                    "setup_ns": res.setup_ns,
                    "reported_insns": res.reported_insns,
                    "min_ns": res.min_ns,
                    "median_ns": res.median_ns,
                    "max_ns": res.max_ns,
                    "ns_per_insn_min": p.ns_per_insn(name),
                    "mips_min": p.mips(name),
                    "ratio_to_kernel_min": p.ratio_min(name) if name != KERNEL_ENGINE else None,
                    "ratio_to_kernel_median": p.ratio_median(name) if name != KERNEL_ENGINE else None,
                    "trial_ratios_to_kernel": p.trial_ratios(name) if name != KERNEL_ENGINE else [],
                }
            programs.append(
                {
                    "name": p.name,
                    "instructions": p.instructions,
                    "slots": p.slots,
                    "executed_insns": p.insns,
                    "retval": p.retval,
                    "compute_kernel": p.is_compute_kernel,
                    "kernel": asdict(p.kernel) if p.kernel is not None else None,
                    "engines": engines,
                }
            )
        summary = {
            engine: {
                "geomean_ratio_to_kernel_min": (
                    self.geomean_ratio(engine, "min") if engine != KERNEL_ENGINE else None
                ),
                "geomean_ratio_to_kernel_median": (
                    self.geomean_ratio(engine, "median") if engine != KERNEL_ENGINE else None
                ),
                "geomean_ns_per_insn_min": self.geomean_ns_per_insn(engine),
            }
            for engine in self.engines
        }
        return {
            "version": JSON_VERSION,
            "command": self.command,
            "started": self.started,
            "duration_s": self.duration_s,
            "engines": self.engines,
            "kernel_unavailable": self.kernel_unavailable,
            "options": self.options,
            "environment": self.environment,
            "compute_kernels": [p.name for p in self.compute_kernels()],
            "summary": summary,
            "programs": programs,
        }
