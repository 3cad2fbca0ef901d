"""The ring buffer reader against real kernel ring buffers (producer: an XDP program run by test_run)."""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from ebpf.bench._rb_producer import RECORD, Producer
from ebpf.events import RingBuffer, RingBufferError
from ebpf.kernel._syscall import bpf
from ebpf.kernel.uapi import Cmd, MapCreateAttr
from ebpf.spec import MapType

pytestmark = pytest.mark.kernel

RECORD_DTYPE = np.dtype([("seq", "<u8"), ("double", "<u8"), ("triple", "<u8"), ("tag", "<u8")])


@pytest.fixture
def producer() -> Iterator[Producer]:
    p = Producer.create(4096)
    yield p
    p.close()


def _check_sequence(records: list[bytes], start: int = 0) -> None:
    for i, raw in enumerate(records):
        seq, double, triple, tag = RECORD.unpack(raw)
        assert (seq, double, triple, tag) == (start + i, 2 * (start + i), 3 * (start + i), 0xFEED)


def test_callback_gets_every_record_in_order(producer: Producer) -> None:
    got: list[bytes] = []
    with RingBuffer(producer.ring_fd, got.append) as rb:
        producer.run(50)
        assert rb.available() == 50 * 40
        assert rb.poll(timeout=0) == 50
        assert rb.available() == 0
        assert rb.poll(timeout=0) == 0
    _check_sequence(got)


def test_full_ring_drops_are_counted_by_the_producer(producer: Producer) -> None:
    got: list[bytes] = []
    with RingBuffer(producer.ring_fd, got.append) as rb:
        producer.run(300)
        rb.consume()
    capacity = 4096 // 40
    assert len(got) == capacity
    assert producer.dropped == 300 - capacity
    assert len(got) + producer.dropped == producer.produced
    _check_sequence(got)


def test_wraps_around_many_times(producer: Producer) -> None:
    got: list[bytes] = []
    with RingBuffer(producer.ring_fd, got.append) as rb:
        for _ in range(40):  # 40 x 70 records x 40 bytes = 27 laps of a 4 KiB ring
            producer.run(70)
            assert rb.consume() == 70
    assert producer.dropped == 0
    _check_sequence(got)


def test_iterator_and_drain(producer: Producer) -> None:
    with RingBuffer(producer.ring_fd) as rb:
        producer.run(5)
        first = list(rb.records(timeout=0))
        producer.run(3)
        rest = rb.drain()
    _check_sequence(first + rest)
    assert len(first) == 5 and len(rest) == 3


def test_callback_can_stop_a_drain(producer: Producer) -> None:
    got: list[bytes] = []

    def stop_after_three(raw: bytes) -> int:
        got.append(raw)
        return -1 if len(got) == 3 else 0

    with RingBuffer(producer.ring_fd, stop_after_three) as rb:
        producer.run(10)
        assert rb.consume() == 3
        assert rb.available() == 7 * 40  # the rest stays for the next drain
        got.clear()
    _check_sequence(got)


def test_numpy_batches_across_the_wrap(producer: Producer) -> None:
    seqs: list[np.ndarray] = []
    with RingBuffer(producer.ring_fd) as rb:
        for _ in range(10):
            producer.run(90)
            batch = rb.drain_array(RECORD_DTYPE)
            assert len(batch) == 90
            seqs.append(batch)
    allrec = np.concatenate(seqs)
    assert (allrec["seq"] == np.arange(900)).all()
    assert (allrec["double"] == 2 * allrec["seq"]).all()
    assert (allrec["tag"] == 0xFEED).all()


def test_numpy_batch_refuses_records_of_another_size(producer: Producer) -> None:
    with RingBuffer(producer.ring_fd) as rb:
        producer.run(2)
        with pytest.raises(RingBufferError, match="record of 32 bytes"):
            rb.drain_array(np.dtype("<u8"))


def test_several_rings_in_one_poll() -> None:
    a, b = Producer.create(4096), Producer.create(8192)
    try:
        got_a: list[bytes] = []
        got_b: list[bytes] = []
        with RingBuffer(a.ring_fd, got_a.append) as rb:
            rb.add(b.ring_fd, got_b.append)
            assert rb.rings == 2
            a.run(4)
            b.run(6)
            assert rb.poll(timeout=0) == 10
        _check_sequence(got_a)
        _check_sequence(got_b)
        assert len(got_a) == 4 and len(got_b) == 6
    finally:
        a.close()
        b.close()


def test_poll_sleeps_until_the_kernel_wakes_it(producer: Producer) -> None:
    got: list[bytes] = []
    with RingBuffer(producer.ring_fd, got.append) as rb:
        timer = threading.Timer(0.2, producer.run, args=(7,))
        timer.start()
        try:
            delivered = rb.poll(timeout=5.0)
            while delivered < 7:
                delivered += rb.poll(timeout=5.0)
        finally:
            timer.join()
        assert rb.poll(timeout=0.05) == 0  # times out quietly when idle
    _check_sequence(got)


def test_rejects_a_map_that_is_not_a_ring_buffer() -> None:
    fd = bpf(Cmd.MAP_CREATE, MapCreateAttr(map_type=MapType.ARRAY, key_size=4, value_size=4, max_entries=1))
    try:
        with pytest.raises(RingBufferError, match="not a ring buffer map"):
            RingBuffer(fd)
    finally:
        os.close(fd)


def test_closed_reader_raises(producer: Producer) -> None:
    rb = RingBuffer(producer.ring_fd, lambda raw: None)
    rb.close()
    rb.close()
    with pytest.raises(RingBufferError, match="closed"):
        rb.poll(timeout=0)


def test_zero_copy_view_consumes_on_exit(producer: Producer) -> None:
    with RingBuffer(producer.ring_fd) as rb:
        for _ in range(5):  # across the wrap
            producer.run(60)
            with rb.view_array(RECORD_DTYPE) as view:
                assert len(view) == 60
                assert rb.available() == 60 * 40  # not consumed while the block runs
                first = int(view["seq"][0])
            assert rb.available() == 0
        assert first == 240


def test_records_decoded_by_a_btf_record_class(producer: Producer) -> None:
    from ebpf import btf
    from ebpf.btf.records import record_class

    u64 = btf.Int("unsigned long long", 8, btf.IntEncoding.NONE, 0, 64)
    members = tuple(btf.Member(n, 1, 64 * i) for i, n in enumerate(("seq", "double", "triple", "tag")))
    Event = record_class(btf.Spec.build([u64, btf.Struct("event", 32, members)]), 2)
    got: list[object] = []
    with RingBuffer(producer.ring_fd, got.append, record_type=Event) as rb:
        producer.run(3)
        rb.poll(timeout=0)
    assert [(e.seq, e.double, e.tag) for e in got] == [(0, 0, 0xFEED), (1, 2, 0xFEED), (2, 4, 0xFEED)]  # type: ignore[attr-defined]


# --- drain_array: discards, records of other sizes, wrap, reuse (real kernel records) -----------

_MIXED_SOURCE = """
    *(u32 *)(r10 - 4) = 0
    r1 = map_fd({counters}) ll
    r2 = r10
    r2 += -4
    call 1
    if r0 == 0 goto out
    r1 = 1
    r1 = atomic_fetch_add((u64 *)(r0 + 0), r1)
    r6 = r1
    r7 = r6
    r7 %= 7
    if r7 != 6 goto not_small
    *(u64 *)(r10 - 24) = r6
    r2 = 48879
    *(u64 *)(r10 - 16) = r2
    r1 = map_fd({ring}) ll
    r2 = r10
    r2 += -24
    r3 = 16
    r4 = 0
    call 130
    if r0 != 0 goto dropped
    goto out
not_small:
    if r7 != 5 goto normal
    r1 = map_fd({ring}) ll
    r2 = 24
    r3 = 0
    call 131
    if r0 == 0 goto dropped
    *(u64 *)(r0 + 0) = r6
    r1 = r0
    r2 = 0
    call 133
    goto out
normal:
    r1 = map_fd({ring}) ll
    r2 = 32
    r3 = 0
    call 131
    if r0 == 0 goto dropped
    *(u64 *)(r0 + 0) = r6
    r2 = r6
    r2 <<= 1
    *(u64 *)(r0 + 8) = r2
    r2 += r6
    *(u64 *)(r0 + 16) = r2
    r2 = 65261
    *(u64 *)(r0 + 24) = r2
    r1 = r0
    r2 = 0
    r6 %= 3
    if r6 == 0 goto discard
    call 132
    goto out
discard:
    call 133
    goto out
dropped:
    *(u32 *)(r10 - 4) = 1
    r1 = map_fd({counters}) ll
    r2 = r10
    r2 += -4
    call 1
    if r0 == 0 goto out
    r1 = 1
    lock *(u64 *)(r0 + 0) += r1
out:
    r0 = 2
    exit
"""


class MixedProducer(Producer):
    """Per seq: ``seq % 7 == 6`` a 16-byte record ``{seq, 0xbeef}`` (bpf_ringbuf_output);
    ``seq % 7 == 5`` a 24-byte record reserved then discarded; otherwise a 32-byte record
    reserved, then discarded when ``seq % 3 == 0``, else submitted. Drops counted in counters[1]."""

    @classmethod
    def create(cls, ring_size: int, *, flags: int = 0) -> MixedProducer:
        from ebpf.isa.asm import assemble
        from ebpf.kernel.map import Map
        from ebpf.kernel.program import Program
        from ebpf.spec import MapSpec, ProgramType

        ring = Map.create(MapSpec("rb_mixed", MapType.RINGBUF, 0, 0, ring_size))
        counters = Map.create(MapSpec("rb_mixed_cnt", MapType.ARRAY, 4, 8, 2))
        try:
            source = _MIXED_SOURCE.format(ring=ring.fd, counters=counters.fd)
            prog = Program.load(assemble(source), ProgramType.XDP, license="GPL", name="rb_mixed")
        except BaseException:
            ring.close()
            counters.close()
            raise
        return cls(ring, counters, prog)


def _mixed_expected(n: int) -> list[bytes]:
    out: list[bytes] = []
    for seq in range(n):
        if seq % 7 == 6:
            out.append(struct.pack("<QQ", seq, 0xBEEF))
        elif seq % 7 != 5 and seq % 3 != 0:
            out.append(RECORD.pack(seq, 2 * seq, 3 * seq, 0xFEED))
    return out


def _drain_all_as_arrays(rb: RingBuffer, one: list[bytes], **kw: object) -> tuple[list[bytes], int]:
    """drain_array until empty; a record of another size is taken with a stopping callback."""
    got: list[bytes] = []
    refused = 0
    while True:
        try:
            arr = rb.drain_array(RECORD_DTYPE, **kw)  # type: ignore[arg-type]
        except RingBufferError:
            refused += 1
            assert rb.consume() == 1  # the callback stops after one record
            got.append(one.pop())
            continue
        if not len(arr):
            return got, refused
        got.extend(arr[i].tobytes() for i in range(len(arr)))


def _stop_after_one(sink: list[bytes]) -> Callable[[bytes], int]:
    def cb(raw: bytes) -> int:
        sink.append(raw)
        return -1

    return cb


@pytest.mark.parametrize("mode", ["fresh", "reuse", "out"])
def test_drain_array_skips_discards_and_stops_at_other_sizes(mode: str) -> None:
    p = MixedProducer.create(4096)
    try:
        one: list[bytes] = []
        kw: dict[str, object] = {"fresh": {}, "reuse": {"reuse": True}, "out": {}}[mode]
        if mode == "out":
            kw["out"] = np.zeros(3, RECORD_DTYPE)  # fewer than a run: the rest must stay in the ring
        got: list[bytes] = []
        with RingBuffer(p.ring_fd, _stop_after_one(one)) as rb:
            for _ in range(12):  # 12 x 50 records (<= 40 bytes each) = ~4 laps of the 4 KiB ring
                part, refused = _drain_all_as_arrays(rb, one, **kw)
                got.extend(part)
                p.run(50)
            part, refused = _drain_all_as_arrays(rb, one, **kw)
            got.extend(part)
            assert rb.available() == 0
        assert p.dropped == 0 and p.produced == 600
        assert got == _mixed_expected(600)
        assert refused == sum(1 for seq in range(550, 600) if seq % 7 == 6)
    finally:
        p.close()


def test_drain_array_first_batch_of_mixed_records() -> None:
    p = MixedProducer.create(4096)
    try:
        with RingBuffer(p.ring_fd) as rb:
            p.run(8)  # 0 discarded, 1 2, 3 discarded, 4, 5 discarded (24 B), 6 small, 7
            arr = rb.drain_array(RECORD_DTYPE)
            assert arr["seq"].tolist() == [1, 2, 4]
            assert rb.available() == 16 + 8 + 40  # the 16-byte record stays, then seq 7
            with pytest.raises(RingBufferError, match="record of 16 bytes"):
                rb.drain_array(RECORD_DTYPE)
            assert rb.available() == 16 + 8 + 40  # refused, not consumed
            assert rb.drain() == [struct.pack("<QQ", 6, 0xBEEF), RECORD.pack(7, 14, 21, 0xFEED)]
    finally:
        p.close()


def test_drain_array_reuse_overwrites_the_previous_result(producer: Producer) -> None:
    with RingBuffer(producer.ring_fd) as rb:
        producer.run(20)
        first = rb.drain_array(RECORD_DTYPE, reuse=True)
        kept = first.copy()
        producer.run(10)
        second = rb.drain_array(RECORD_DTYPE, reuse=True)
        assert np.shares_memory(first, second)  # same buffer: first[:10] now holds seq 20..29
        assert first["seq"][:10].tolist() == list(range(20, 30))
        assert kept["seq"].tolist() == list(range(20))
        producer.run(60)  # more than the buffer holds: it grows, the old result is left alone
        third = rb.drain_array(RECORD_DTYPE, reuse=True)
        assert third["seq"].tolist() == list(range(30, 90))
        assert not np.shares_memory(third, second)
        assert second["seq"].tolist() == list(range(20, 30))
        assert len(rb.drain_array(RECORD_DTYPE, reuse=True)) == 0


def test_drain_array_into_out_leaves_the_rest(producer: Producer) -> None:
    out = np.zeros(8, RECORD_DTYPE)
    with RingBuffer(producer.ring_fd) as rb:
        producer.run(20)
        a = rb.drain_array(RECORD_DTYPE, out=out)
        assert np.shares_memory(a, out) and a["seq"].tolist() == list(range(8))
        assert rb.available() == 12 * 40
        assert rb.drain_array(RECORD_DTYPE, out=out)["seq"].tolist() == list(range(8, 16))
        assert rb.drain_array(RECORD_DTYPE)["seq"].tolist() == list(range(16, 20))


def test_drain_array_rejects_bad_arguments(producer: Producer) -> None:
    with RingBuffer(producer.ring_fd) as rb:
        with pytest.raises(RingBufferError, match="not both"):
            rb.drain_array(RECORD_DTYPE, out=np.zeros(2, RECORD_DTYPE), reuse=True)
        with pytest.raises(RingBufferError, match="32 bytes"):
            rb.drain_array(RECORD_DTYPE, out=np.zeros(2, "<u8"))
        with pytest.raises(RingBufferError, match="read-only"):
            frozen = np.zeros(2, RECORD_DTYPE)
            frozen.flags.writeable = False
            rb.drain_array(RECORD_DTYPE, out=frozen)
        with pytest.raises(RingBufferError, match="1-D"):
            rb.drain_array(RECORD_DTYPE, out=np.zeros((2, 2), RECORD_DTYPE))
        with pytest.raises(RingBufferError, match="objects"):
            rb.drain_array(np.dtype("O"))
        with pytest.raises(RingBufferError, match="no ring 3"):
            rb.drain_array(RECORD_DTYPE, 3)


def test_drain_array_while_the_kernel_produces() -> None:
    """A producer thread (test_run releases the GIL) races the reader: whatever the interleaving,
    records arrive in order, none twice, and every one is read or counted as dropped."""
    p = Producer.create(1 << 16)
    try:
        batches: list[np.ndarray] = []
        done = threading.Event()

        def produce() -> None:
            try:
                for _ in range(10):
                    p.run(2000)
            finally:
                done.set()

        with RingBuffer(p.ring_fd) as rb:
            thread = threading.Thread(target=produce)
            thread.start()
            try:
                while not done.is_set():
                    batches.append(rb.drain_array(RECORD_DTYPE, reuse=True).copy())
            finally:
                thread.join()
            batches.append(rb.drain_array(RECORD_DTYPE))
            assert rb.available() == 0
        got = np.concatenate(batches)
        assert p.produced == 20_000
        assert len(got) + p.dropped == 20_000  # every record read or counted as dropped
        assert (np.diff(got["seq"].astype(np.int64)) > 0).all()  # in order, none twice
        assert (got["double"] == 2 * got["seq"]).all() and (got["tag"] == 0xFEED).all()
    finally:
        p.close()
