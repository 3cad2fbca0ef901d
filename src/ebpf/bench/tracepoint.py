"""``python -m ebpf.bench.tracepoint``: per-event cost of an attached tracepoint program. Tool layer.

Method: a TRACEPOINT program counting this process's ``getppid()`` calls in an array map is
attached to ``syscalls:sys_enter_getppid`` with ``BPF_ENABLE_STATS`` on; after N calls the kernel's
``run_time_ns / run_cnt`` (``BPF_OBJ_GET_INFO_BY_FD``) is the program's cost per event as the
kernel reports it. The wall-clock cost of ``getppid()`` with and without the program attached
is measured in the same run (the difference includes the tracepoint's perf-event dispatch).
The map must count exactly N calls.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass

__all__ = ["TracepointFigures", "main", "measure"]

_SOURCE = """
    r6 = {pid} ll
    call 14
    r0 >>= 32
    if r0 != r6 goto out
    *(u32 *)(r10 - 4) = 0
    r1 = map_fd({map_fd}) ll
    r2 = r10
    r2 += -4
    call 1
    if r0 == 0 goto out
    r1 = 1
    lock *(u64 *)(r0 + 0) += r1
out:
    r0 = 0
    exit
"""


@dataclass
class TracepointFigures:
    calls: int
    program_ns: float
    runs: int
    syscall_ns_without: float
    syscall_ns_with: float


def _time_calls(n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        os.getppid()
    return (time.perf_counter_ns() - start) / n


def measure(calls: int = 100_000) -> TracepointFigures:
    from ebpf import attach
    from ebpf.isa.asm import assemble
    from ebpf.kernel import Map, Program
    from ebpf.kernel.program import enable_stats
    from ebpf.spec import MapSpec, MapType, ProgramType

    without = min(_time_calls(calls) for _ in range(3))
    with Map.create(MapSpec("tp_bench", MapType.ARRAY, 4, 8, 1)) as counter:
        source = _SOURCE.format(pid=os.getpid(), map_fd=counter.fd)
        with (
            Program.load(assemble(source), ProgramType.TRACEPOINT, license="GPL", name="tp_bench") as prog,
            enable_stats(),
            attach.tracepoint(prog, "syscalls", "sys_enter_getppid"),
        ):
            with_prog = min(_time_calls(calls) for _ in range(3))
            info = prog.info()
            counted = int.from_bytes(counter.lookup(bytes(4)), "little")
    if counted != 3 * calls:
        raise RuntimeError(f"the program counted {counted} calls, expected {3 * calls}")
    return TracepointFigures(calls, info.run_time_ns / max(1, info.run_cnt), info.run_cnt, without, with_prog)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ebpf.bench.tracepoint", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from ebpf.kernel.features import bpf_unavailable_reason

    reason = bpf_unavailable_reason()
    if reason:
        print(f"skipped: {reason}", file=sys.stderr)
        return 1
    fig = measure(args.calls)
    if args.json:
        print(json.dumps(asdict(fig)))
        return 0
    print(f"tracepoint syscalls:sys_enter_getppid, {fig.calls:,} calls x 3 (best of 3 for wall clock)")
    print(f"  program run time, kernel stats : {fig.program_ns:8.1f} ns per event ({fig.runs:,} runs)")
    print(f"  getppid() without the program  : {fig.syscall_ns_without:8.1f} ns")
    print(f"  getppid() with it attached     : {fig.syscall_ns_with:8.1f} ns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
