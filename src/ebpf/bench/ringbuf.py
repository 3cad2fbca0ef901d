"""``python -m ebpf.bench.ringbuf``: ring buffer draining beside libbpf's C consumer. Tool layer.

Method (one run, same machine, same kernel): an XDP program run by ``BPF_PROG_TEST_RUN`` with
``repeat=N`` writes N numbered 32-byte records (40 bytes with the header) into a 16 MiB ring
buffer -- a producer faster than any consumer, so the reader drains a backlog. The readers
drain the same backlog size in turn, each from a fresh fill:

* ``callback``: :class:`ebpf.events.RingBuffer` delivering each record to a Python callback;
* ``numpy, in place``: :meth:`RingBuffer.view_array` (zero copy, one field summed);
* ``numpy, copied fresh``: :meth:`RingBuffer.drain_array` copying every record into a new
  structured array; the first trial is also shown alone, since later trials may get memory
  back from the allocator while the first pays the page faults of memory new to the process;
* ``numpy, copied reused``: ``drain_array(reuse=True)`` into the reader's own buffer, timed on
  a second backlog after a first drain sized it;
* ``libbpf C``: ``benchmarks/ringbuf/consumer.c`` (``ring_buffer__new`` + ``ring_buffer__consume``),
  built with gcc against the system libbpf and handed the ring's fd.

Every reader must see every record in order (sequence numbers checked) and the producer must
report zero failed reservations; otherwise the run fails.
"""

from __future__ import annotations

import argparse
import json
import mmap
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["RingbufFigures", "breakdown", "main", "measure"]

RING_SIZE = 16 << 20
SOURCE = Path(__file__).resolve().parents[3] / "benchmarks" / "ringbuf" / "consumer.c"


@dataclass
class RingbufFigures:
    records: int
    callback_ns: float
    numpy_ns: float  # drain_array into a fresh array
    zero_copy_ns: float  # view_array
    c_ns: float | None
    c_skipped: str | None
    numpy_reuse_ns: float = 0.0  # drain_array(reuse=True), buffer already sized
    numpy_cold_ns: float = 0.0  # drain_array, first trial: the array is memory new to the process

    @property
    def numpy_vs_c(self) -> float | None:
        return self.zero_copy_ns / self.c_ns if self.c_ns else None

    def ratios(self) -> dict[str, float | None]:
        """Each Python reader's ns/event over libbpf C's (None when the C peer was skipped)."""
        c = self.c_ns
        return {
            "callback_vs_c": self.callback_ns / c if c else None,
            "view_vs_c": self.zero_copy_ns / c if c else None,
            "copied_fresh_vs_c": self.numpy_ns / c if c else None,
            "copied_reuse_vs_c": self.numpy_reuse_ns / c if c else None,
            "copied_cold_vs_c": self.numpy_cold_ns / c if c else None,
        }


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
    reuse_times: list[float] = []
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
        # numpy batches into the reader's reused buffer: a first drain sizes it, the second is timed
        p = Producer.create(RING_SIZE)
        try:
            with RingBuffer(p.ring_fd) as rb:
                p.run(records)
                first = rb.drain_array(dtype, reuse=True)
                ok = len(first) == records and (first["seq"] == np.arange(records)).all()
                p.run(records)
                t0 = time.perf_counter_ns()
                arr = rb.drain_array(dtype, reuse=True)
                t1 = time.perf_counter_ns()
                ok = ok and len(arr) == records and (arr["seq"] == np.arange(records, 2 * records)).all()
            if not ok or p.dropped:
                raise RuntimeError(f"numpy reused reader: {len(arr)} of {records} records or out of order")
            reuse_times.append((t1 - t0) / records)
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
        numpy_reuse_ns=min(reuse_times),
        numpy_cold_ns=np_times[0],
        zero_copy_ns=min(zc_times),
        c_ns=min(c_times) if c_times else None,
        c_skipped=why,
    )


def breakdown(records: int = 400_000, repeat: int = 5) -> dict[str, float]:
    """Where ``drain_array``'s time goes, ns/event, best of ``repeat``, on one backlog of ``records``.

    The phases are run on the ring without consuming it (the same steps ``drain_array`` takes):
    ``headers_first`` (the vectorized check of every slot's header, once, on records just
    written by the producer: the first read of the ring's memory), ``headers`` (the same,
    repeated: cached), ``gather_reused`` (the strided copy
    of the records into an array written before), ``gather_fresh`` (the same into a new array:
    allocation and first-touch page faults included, as far as the allocator hands back new
    memory), ``copy_structured`` (the copy the previous version made: whole ``(header, record)``
    slots as a structured dtype); then whole calls: ``drain_array_first`` (the reader's first
    drain, which sizes its buffer) and ``drain_array_reuse`` (a second backlog into that buffer).
    """
    import numpy as np

    from ebpf.bench._rb_producer import Producer
    from ebpf.events import RingBuffer

    dtype = np.dtype([("seq", "<u8"), ("double", "<u8"), ("triple", "<u8"), ("tag", "<u8")])
    out: dict[str, float] = {}

    def best(name: str, step: Any, repeat: int = repeat) -> None:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter_ns()
            step()
            times.append(time.perf_counter_ns() - t0)
        out[name] = min(times) / records

    p = Producer.create(RING_SIZE)
    try:
        p.run(records)
        page = mmap.PAGESIZE
        ring = mmap.mmap(p.ring_fd, page + 2 * RING_SIZE, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        try:  # the producer page, then the data area; nothing consumed yet, so data starts at 0
            _phases(ring, page, records, dtype, best)
        finally:
            ring.close()
        with RingBuffer(p.ring_fd) as rb:
            t0 = time.perf_counter_ns()
            rb.drain_array(dtype, reuse=True)
            t1 = time.perf_counter_ns()
            out["drain_array_first"] = (t1 - t0) / records
            p.run(records)
            t0 = time.perf_counter_ns()
            rb.drain_array(dtype, reuse=True)
            t1 = time.perf_counter_ns()
            out["drain_array_reuse"] = (t1 - t0) / records
    finally:
        p.close()
    return out


def _phases(ring: mmap.mmap, page: int, records: int, dtype: Any, best: Any) -> None:
    import numpy as np

    slot = 40
    void = np.dtype((np.void, dtype.itemsize))
    slots = np.dtype(
        {"names": ["hdr", "rec"], "formats": ["=u4", dtype], "offsets": [0, 8], "itemsize": slot}
    )
    hdrs = np.ndarray((records,), "=u4", ring, page, (slot,))
    recs = np.ndarray((records,), void, ring, page + 8, (slot,))
    whole = np.ndarray((records,), slots, ring, page, (slot,))
    best("headers_first", lambda: bool((hdrs == dtype.itemsize).all()), repeat=1)
    warm = np.empty(records, void)
    warm[:] = recs
    best("headers", lambda: bool((hdrs == dtype.itemsize).all()))
    best("gather_reused", lambda: warm.__setitem__(slice(None), recs))
    best("gather_fresh", lambda: np.empty(records, void).__setitem__(slice(None), recs))
    best("copy_structured", lambda: whole.copy()["rec"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ebpf.bench.ringbuf", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=400_000)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--breakdown", action="store_true", help="time drain_array's phases instead")
    args = parser.parse_args(argv)
    from ebpf.kernel.features import bpf_unavailable_reason

    reason = bpf_unavailable_reason()
    if reason:
        print(f"skipped: {reason}", file=sys.stderr)
        return 1
    if args.breakdown:
        phases = breakdown(args.records)
        if args.json:
            print(json.dumps(phases))
            return 0
        print(f"drain_array phases, {args.records:,} records of 32 bytes (ns/event, best of 5)")
        for name, ns in phases.items():
            print(f"  {name:18s}: {ns:7.2f}")
        return 0
    fig = measure(args.records, args.trials)
    if args.json:
        print(json.dumps({**asdict(fig), "numpy_vs_c": fig.numpy_vs_c, **fig.ratios()}))
        return 0
    ratios = fig.ratios()

    def vs_c(key: str) -> str:
        value = ratios[key]
        return "" if value is None else f"{value:6.2f}x C"

    print(f"ring buffer drain, {fig.records:,} records of 32 bytes (best of {args.trials})")
    print(
        f"  python callback      : {fig.callback_ns:7.1f} ns/event {vs_c('callback_vs_c')}  (target <= 300 ns)"
    )
    print(
        f"  numpy, in place      : {fig.zero_copy_ns:7.1f} ns/event {vs_c('view_vs_c')}  (view_array, target <= 3x)"
    )
    print(
        f"  numpy, copied fresh  : {fig.numpy_ns:7.1f} ns/event {vs_c('copied_fresh_vs_c')}"
        "  (drain_array: new array, target <= 3x)"
    )
    print(
        f"  numpy, copied fresh, first trial (new memory, page faults): {fig.numpy_cold_ns:.1f} ns/event"
        f" {vs_c('copied_cold_vs_c')}"
    )
    print(
        f"  numpy, copied reused : {fig.numpy_reuse_ns:7.1f} ns/event {vs_c('copied_reuse_vs_c')}"
        "  (drain_array(reuse=True), target <= 3x)"
    )
    if fig.c_ns is not None:
        print(f"  libbpf C             : {fig.c_ns:7.1f} ns/event")
    else:
        print(f"  libbpf C             : skipped: {fig.c_skipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
