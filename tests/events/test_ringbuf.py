"""The ring buffer reader against real kernel ring buffers (producer: an XDP program run by test_run)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

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
