"""``python -m ebpf.bench.ringbuf``: ring buffer draining beside libbpf's C consumer. Tool layer.

Method (one run, same machine, same kernel): an XDP program run by ``BPF_PROG_TEST_RUN`` with
``repeat=N`` writes N numbered 32-byte records (40 bytes with the header) into a 16 MiB ring
buffer -- a producer faster than any consumer, so the reader drains a backlog. Three readers
drain the same backlog size in turn, each from a fresh fill:

* ``callback``: :class:`ebpf.events.RingBuffer` delivering each record to a Python callback;
* ``numpy``: :meth:`RingBuffer.drain_array` copying every record out at once into a structured
  array, and :meth:`RingBuffer.view_array` reading them in place (zero copy, one field summed);
* ``libbpf C``: ``benchmarks/ringbuf/consumer.c`` (``ring_buffer__new`` + ``ring_buffer__consume``),
  built with gcc against the system libbpf and handed the ring's fd.

Every reader must see every record in order (sequence numbers checked) and the producer must
report zero failed reservations; otherwise the run fails.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["RingbufFigures", "main", "measure"]

RING_SIZE = 16 << 20
SOURCE = Path(__file__).resolve().parents[3] / "benchmarks" / "ringbuf" / "consumer.c"


@dataclass
class RingbufFigures:
    records: int
    callback_ns: float
    numpy_ns: float
    zero_copy_ns: float
    c_ns: float | None
    c_skipped: str | None

    @property
    def numpy_vs_c(self) -> float | None:
        return self.zero_copy_ns / self.c_ns if self.c_ns else None


def build_consumer(cache: Path) -> tuple[Path | None, str | None]:
    """Compile the libbpf peer; ``(path, None)`` or ``(None, why not)``."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        return None, "no C compiler (gcc) to build the libbpf consumer"
    if not SOURCE.exists():
        return None, f"{SOURCE} not found (run from a source checkout)"
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / "rb_consumer"
    if not out.exists() or out.stat().st_mtime < SOURCE.stat().st_mtime:
        proc = subprocess.run(
            [gcc, "-O2", "-o", str(out), str(SOURCE), "-lbpf"], check=False, capture_output=True, text=True
        )
        if proc.returncode != 0:
            return (
                None,
                f"building the libbpf consumer failed (libbpf-dev installed?): {proc.stderr.strip()[:200]}",
            )
    return out, None


def measure(records: int = 400_000, trials: int = 3, cache: Path | None = None) -> RingbufFigures:
    import numpy as np

    from ebpf.bench._rb_producer import Producer
    from ebpf.events import RingBuffer

    dtype = np.dtype([("seq", "<u8"), ("double", "<u8"), ("triple", "<u8"), ("tag", "<u8")])
    consumer, why = build_consumer(cache or Path.home() / ".cache" / "ebpf")
    cb_times: list[float] = []
    np_times: list[float] = []
    zc_times: list[float] = []
    c_times: list[float] = []
    for _ in range(trials):
        # Python callback
        p = Producer.create(RING_SIZE)
        try:
            count = 0

            def on_record(raw: bytes) -> None:
                nonlocal count
                count += 1

            with RingBuffer(p.ring_fd, on_record) as rb:
                p.run(records)
                t0 = time.perf_counter_ns()
                delivered = rb.consume()
                t1 = time.perf_counter_ns()
            if delivered != records or count != records or p.dropped:
                raise RuntimeError(f"callback reader: {delivered} of {records} records, {p.dropped} dropped")
            cb_times.append((t1 - t0) / records)
        finally:
            p.close()
        # numpy batches
        p = Producer.create(RING_SIZE)
        try:
            with RingBuffer(p.ring_fd) as rb:
                p.run(records)
                t0 = time.perf_counter_ns()
                arr = rb.drain_array(dtype)
                t1 = time.perf_counter_ns()
            if len(arr) != records or not (arr["seq"] == np.arange(records)).all() or p.dropped:
                raise RuntimeError(f"numpy reader: {len(arr)} of {records} records or out of order")
            np_times.append((t1 - t0) / records)
        finally:
            p.close()
        # numpy, zero copy: sum a field of every record in place, then consume
        p = Producer.create(RING_SIZE)
        try:
            with RingBuffer(p.ring_fd) as rb:
                p.run(records)
                t0 = time.perf_counter_ns()
                with rb.view_array(dtype) as view:
                    total = int(view["seq"].sum())
                    seen = len(view)
                t1 = time.perf_counter_ns()
                left = rb.available()
            if seen != records or total != records * (records - 1) // 2 or left or p.dropped:
                raise RuntimeError(f"zero-copy reader: {seen} of {records} records")
            zc_times.append((t1 - t0) / records)
        finally:
            p.close()
        # libbpf C peer
        if consumer is not None:
            p = Producer.create(RING_SIZE)
            try:
                p.run(records)
                proc = subprocess.run(
                    [str(consumer), str(p.ring_fd), str(records)],
                    pass_fds=(p.ring_fd,),
                    capture_output=True,
                    text=True,
                    check=True,
                )
                seen, ns, checksum = (int(x) for x in proc.stdout.split())
                if seen != records or checksum != records * (records - 1) // 2:
                    raise RuntimeError(f"C consumer saw {seen} of {records} records")
                c_times.append(ns / records)
            finally:
                p.close()
    return RingbufFigures(
        records=records,
        callback_ns=min(cb_times),
        numpy_ns=min(np_times),
        zero_copy_ns=min(zc_times),
        c_ns=min(c_times) if c_times else None,
        c_skipped=why,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ebpf.bench.ringbuf", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=400_000)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from ebpf.kernel.features import bpf_unavailable_reason

    reason = bpf_unavailable_reason()
    if reason:
        print(f"skipped: {reason}", file=sys.stderr)
        return 1
    fig = measure(args.records, args.trials)
    if args.json:
        print(json.dumps({**asdict(fig), "numpy_vs_c": fig.numpy_vs_c}))
        return 0
    print(f"ring buffer drain, {fig.records:,} records of 32 bytes (best of {args.trials})")
    print(f"  python callback : {fig.callback_ns:8.1f} ns/event   (target <= 300)")
    print(f"  numpy, copied   : {fig.numpy_ns:8.1f} ns/event   (drain_array: records copied out)")
    print(f"  numpy, in place : {fig.zero_copy_ns:8.1f} ns/event   (view_array: one field summed)")
    if fig.c_ns is not None:
        print(f"  libbpf C        : {fig.c_ns:8.1f} ns/event")
        print(f"  copied / C      : {fig.numpy_ns / fig.c_ns:8.2f}x")
        print(f"  in place / C    : {fig.zero_copy_ns / fig.c_ns:8.2f}x         (target <= 3)")
    else:
        print(f"  libbpf C        : skipped: {fig.c_skipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
