"""``python -m ebpf.bench.btf``: BTF decoding and C dumps, ours in-process against bpftool.

Tool layer: uses the foundation (``ebpf.btf``) and runs bpftool as a subprocess; no bpf().

Rule 1 (what is timed, in the same run): four measurements, interleaved trial by trial so a
slow phase of the host hits all of them alike:

- ``bpftool_raw``: the whole process ``bpftool btf dump file VMLINUX > /dev/null``;
- ``ours_decode``: in-process ``btf.Spec.from_file(VMLINUX)``, a full decode of every type
  into objects (nothing deferred);
- ``bpftool_c``: the whole process ``bpftool btf dump file VMLINUX format c > FILE``;
- ``ours_c``: in-process read, decode, :func:`ebpf.btf.dump_c` and write to a file.

Rule 2: each figure is the best (minimum) of its trials, the usual estimate of the cost
without noise; medians are reported too. Ratios are ours / bpftool; the targets are 2x for
the decode and 4x for the C dump.

Rule 3: the run also checks what it timed: our type count equals the number of types
bpftool lists, and our header differs from bpftool's in few lines (the count is reported).
"""

from __future__ import annotations

import argparse
import difflib
import gc
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ebpf import btf
from ebpf.btf.cdump import dump_c

__all__ = ["BTFBenchReport", "Measurement", "main", "run_btf_bench"]

PROG = "python -m ebpf.bench.btf"
VMLINUX = Path("/sys/kernel/btf/vmlinux")
DECODE_TARGET = 2.0
C_DUMP_TARGET = 4.0


@dataclass
class Measurement:
    """One timed operation: every trial's wall time in seconds."""

    name: str
    description: str
    trials: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.trials)

    @property
    def median(self) -> float:
        return statistics.median(self.trials)


@dataclass
class BTFBenchReport:
    """The figures of one run (see the module doc)."""

    path: str
    types: int
    bpftool: str | None
    bpftool_unavailable: str | None
    measurements: dict[str, Measurement]
    bpftool_types: int | None = None
    header_lines: int = 0
    bpftool_header_lines: int | None = None
    header_diff_lines: int | None = None

    def ratio(self, ours: str, theirs: str) -> float | None:
        if theirs not in self.measurements or not self.measurements[theirs].trials:
            return None
        return self.measurements[ours].best / self.measurements[theirs].best

    @property
    def decode_ratio(self) -> float | None:
        return self.ratio("ours_decode", "bpftool_raw")

    @property
    def c_dump_ratio(self) -> float | None:
        return self.ratio("ours_c", "bpftool_c")

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {key: value for key, value in asdict(self).items() if key != "measurements"}
        doc["measurements"] = {
            name: {
                "description": m.description,
                "best_s": m.best,
                "median_s": m.median,
                "trials_s": m.trials,
            }
            for name, m in self.measurements.items()
            if m.trials
        }
        doc["decode_ratio"] = self.decode_ratio
        doc["c_dump_ratio"] = self.c_dump_ratio
        doc["targets"] = {"decode_ratio": DECODE_TARGET, "c_dump_ratio": C_DUMP_TARGET}
        return doc


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def run_btf_bench(
    *,
    path: Path = VMLINUX,
    trials: int = 5,
    bpftool: str | None = None,
    use_bpftool: bool = True,
    progress: Callable[[str], None] | None = None,
) -> BTFBenchReport:
    """Time bpftool and ours on ``path`` (see the module doc).

    Args:
        path: a raw BTF file.
        trials: rounds; each round runs all four measurements once.
        bpftool: the bpftool binary (default: found on PATH); without it, ours only.
        use_bpftool: ``False``: measure ours only.

    Raises:
        BTFError: the file is not valid BTF.
        OSError: it cannot be read.
    """
    if trials < 1:
        raise ValueError("trials must be at least 1")
    tool = (bpftool or shutil.which("bpftool")) if use_bpftool else None
    unavailable = (
        None if tool else ("bpftool not found on PATH" if use_bpftool else "disabled (--no-bpftool)")
    )
    measurements = {
        "bpftool_raw": Measurement(
            "bpftool_raw", f"bpftool btf dump file {path} > /dev/null (whole process)"
        ),
        "ours_decode": Measurement("ours_decode", "btf.Spec.from_file: full in-process decode"),
        "bpftool_c": Measurement(
            "bpftool_c", f"bpftool btf dump file {path} format c > FILE (whole process)"
        ),
        "ours_c": Measurement("ours_c", "read, decode, btf.dump_c and write to a file, in-process"),
    }
    with tempfile.TemporaryDirectory(prefix="ebpf-bench-btf-") as tmp:
        their_h = Path(tmp) / "bpftool.h"
        our_h = Path(tmp) / "ours.h"
        kept: list[object] = []

        def bpftool_raw() -> None:
            assert tool is not None
            subprocess.run([tool, "btf", "dump", "file", str(path)], stdout=subprocess.DEVNULL, check=True)

        def bpftool_c() -> None:
            assert tool is not None
            with their_h.open("wb") as out:
                subprocess.run(
                    [tool, "btf", "dump", "file", str(path), "format", "c"], stdout=out, check=True
                )

        def ours_decode() -> None:
            kept.append(btf.Spec.from_file(path))  # freed outside the timing

        def ours_c() -> None:
            spec = btf.Spec.from_file(path)
            our_h.write_text(dump_c(spec))
            kept.append(spec)

        steps: list[tuple[str, Callable[[], None]]] = [("ours_decode", ours_decode), ("ours_c", ours_c)]
        if tool is not None:
            steps = [("bpftool_raw", bpftool_raw), *steps[:1], ("bpftool_c", bpftool_c), *steps[1:]]
        for trial in range(trials):
            order = steps[trial % len(steps) :] + steps[: trial % len(steps)]
            for name, action in order:
                gc.collect()
                measurements[name].trials.append(_timed(action))
                kept.clear()
            if progress is not None:
                done = ", ".join(f"{n} {measurements[n].trials[-1]:.3f}s" for n, _ in steps)
                progress(f"trial {trial + 1}/{trials}: {done}")

        spec = btf.Spec.from_file(path)
        ours_text = our_h.read_text()
        report = BTFBenchReport(
            path=str(path),
            types=len(spec) - spec.first_id,
            bpftool=tool,
            bpftool_unavailable=unavailable,
            measurements={name: m for name, m in measurements.items() if m.trials},
            header_lines=ours_text.count("\n"),
        )
        if tool is not None:
            raw = subprocess.run(
                [tool, "btf", "dump", "file", str(path)], capture_output=True, text=True, check=True
            ).stdout
            report.bpftool_types = sum(1 for line in raw.splitlines() if line.startswith("["))
            theirs_text = their_h.read_text()
            report.bpftool_header_lines = theirs_text.count("\n")
            diff = difflib.unified_diff(theirs_text.splitlines(), ours_text.splitlines(), lineterm="", n=0)
            report.header_diff_lines = sum(
                1 for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))
            )
    return report


def render_text(report: BTFBenchReport) -> str:
    """The report as a small table plus the checks."""
    lines = [f"BTF benchmark: {report.path} ({report.types:,} types)", ""]
    lines.append(f"{'measurement':<13} {'best':>8} {'median':>8}  what")
    for name, m in report.measurements.items():
        lines.append(f"{name:<13} {m.best:>7.3f}s {m.median:>7.3f}s  {m.description}")
    lines.append("")
    if report.bpftool_unavailable:
        lines.append(f"bpftool not measured: {report.bpftool_unavailable}")
    for label, ratio, target in (
        ("decode  (ours_decode / bpftool_raw)", report.decode_ratio, DECODE_TARGET),
        ("C dump  (ours_c / bpftool_c)", report.c_dump_ratio, C_DUMP_TARGET),
    ):
        if ratio is not None:
            verdict = "within" if ratio <= target else "OVER"
            lines.append(f"{label}: {ratio:.2f}x ({verdict} the {target:g}x target)")
    if report.bpftool_types is not None:
        same = "same" if report.bpftool_types == report.types else "DIFFERENT"
        lines.append(f"types: ours {report.types:,}, bpftool {report.bpftool_types:,} ({same})")
    if report.header_diff_lines is not None:
        lines.append(
            f"vmlinux.h: ours {report.header_lines:,} lines, bpftool {report.bpftool_header_lines:,}; "
            f"{report.header_diff_lines} lines differ"
        )
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Time a full in-process BTF decode and C dump of vmlinux against bpftool, in the same run.",
    )
    p.add_argument("--file", type=Path, default=VMLINUX, help="raw BTF file (default: %(default)s)")
    p.add_argument("--trials", type=int, default=5, help="rounds (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="one round (for tests)")
    p.add_argument("--bpftool", default=None, help="bpftool binary (default: from PATH)")
    p.add_argument("--no-bpftool", action="store_true", help="measure ours only")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 failure, 2 usage)."""
    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    trials = 1 if args.quick else args.trials
    if trials < 1:
        print(f"{PROG}: error: --trials must be at least 1", file=sys.stderr)
        return 2

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    from ebpf.errors import BPFError

    try:
        report = run_btf_bench(
            path=args.file,
            trials=trials,
            bpftool=args.bpftool,
            use_bpftool=not args.no_bpftool,
            progress=None if args.quiet else progress,
        )
    except (BPFError, OSError, subprocess.CalledProcessError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(render_text(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
