"""RINGBUF: reserve/submit/discard/output, capacity as in the kernel, consume order, consumers."""

from __future__ import annotations

import errno

import pytest

from ebpf.errors import VMError
from ebpf.maps import (
    InvalidMapArgumentError,
    MapDef,
    MapOperationNotSupportedError,
    RingBufMap,
    RingBufQuery,
    create,
)
from ebpf.spec import MapType
from ebpf.vm.memory import Memory


def ring(size: int = 4096, memory: Memory | None = None) -> RingBufMap:
    m = create(MapDef(MapType.RINGBUF, 0, 0, size), memory)
    assert isinstance(m, RingBufMap)
    return m


def test_reserve_submit_consume_in_order() -> None:
    mem = Memory()
    with ring(memory=mem) as rb:
        a = rb.reserve(4)
        b = rb.reserve(3)
        c = rb.reserve(5)
        assert 0 not in (a, b, c)
        mem.store(a, 4, 0x11223344)
        mem.write_bytes(b, b"xyz")
        rb.submit(b)
        assert rb.consume() == []  # a is still reserved: the consumer waits for it
        rb.submit(a)
        rb.discard(c)
        assert b - a == c - b == 16  # samples are 8-byte headers apart in one ring
        assert rb.consume() == [b"\x44\x33\x22\x11", b"xyz"]
        assert rb.query(RingBufQuery.CONS_POS) == rb.query(RingBufQuery.PROD_POS) == 3 * 16
        assert len(rb) == 0
    with pytest.raises(VMError):  # closing unmaps the ring
        mem.load(a, 1)


def test_capacity() -> None:
    with ring() as rb:
        assert rb.query(RingBufQuery.RING_SIZE) == 4096
        # 8-byte samples take 16 bytes; the producer may run at most size - 1 bytes ahead.
        assert all(rb.output(bytes(8)) == 0 for _ in range(255))
        assert rb.query(RingBufQuery.AVAIL_DATA) == 4080
        assert rb.reserve(8) == 0
        assert rb.output(bytes(8)) == -errno.EAGAIN
        empty = rb.reserve(0)  # just the 8-byte header: 4088 bytes ahead, still < 4096
        assert empty != 0
        assert rb.reserve(0) == 0  # 4096 bytes ahead: full
        rb.submit(empty)
        assert len(rb.consume()) == 256
        assert rb.reserve(4096) == 0  # a record larger than the ring
        assert rb.reserve(4096 - 16) != 0


def test_flags() -> None:
    with ring() as rb:
        assert rb.reserve(8, flags=1) == 0
        assert rb.output(b"x", flags=4) == -errno.EINVAL
        assert rb.output(b"x", flags=1) == 0
        addr = rb.reserve(1)
        rb.submit(addr, flags=8)  # the kernel ignores other bits of submit's flags
        with pytest.raises(InvalidMapArgumentError):
            rb.submit(addr)  # already submitted
        assert rb.consume() == [b"x", b"\0"]


def test_no_map_operations() -> None:
    with ring() as rb:
        for op in (
            lambda: rb.lookup(b""),
            lambda: rb.update(b"", b""),
            lambda: rb.delete(b""),
            lambda: rb.get_next_key(None),
        ):
            with pytest.raises(MapOperationNotSupportedError) as exc:
                op()
            assert exc.value.errno == errno.EINVAL
        assert rb.value_address(b"") is None


@pytest.mark.parametrize(
    ("key_size", "value_size", "size"), [(4, 0, 4096), (0, 4, 4096), (0, 0, 12288), (0, 0, 1024)]
)
def test_create_rejects(key_size: int, value_size: int, size: int) -> None:
    with pytest.raises(InvalidMapArgumentError):
        create(MapDef(MapType.RINGBUF, key_size, value_size, size))


def test_close_unmaps_pending_samples() -> None:
    mem = Memory()
    rb = ring(memory=mem)
    rb.reserve(8)
    rb.output(b"abc")
    rb.close()
    assert len(mem) == 0


def test_wakeups() -> None:
    with ring() as rb:
        rb.output(b"a")  # at the consumer position: wake up
        rb.output(b"b")  # behind an unconsumed record: no wake-up
        rb.output(b"c", flags=2)  # BPF_RB_FORCE_WAKEUP
        assert rb.wakeups == 2
        rb.consume()
        rb.output(b"d", flags=1)  # BPF_RB_NO_WAKEUP
        assert rb.wakeups == 2
        assert rb.poll() == [b"d"] and rb.wakeups == 0


def test_consumer_styles_and_drop_count() -> None:
    with ring() as rb:
        for i in range(5):
            assert rb.output(bytes([i]) * (i + 1)) == 0
        it = rb.records()
        assert next(it) == b"\0"
        assert rb.query(RingBufQuery.AVAIL_DATA) == 4 * 16  # the consumer moved past record 0
        seen: list[bytes] = []
        assert rb.process(lambda r: seen.append(r) or (-7 if len(seen) == 2 else 0)) == -7
        assert seen == [b"\1" * 2, b"\2" * 3]
        assert rb.poll(max_records=1) == [b"\3" * 4]
        assert rb.process(seen.append) == 1 and seen[-1] == b"\4" * 5
        assert rb.poll() == []
        while rb.output(bytes(100)) == 0:
            pass
        assert rb.dropped == 1
        assert rb.output(bytes(100)) == -errno.EAGAIN and rb.dropped == 2
        assert len(rb.consume()) == 4096 // 112


def test_wrapped_record_is_contiguous() -> None:
    mem = Memory()
    with ring(memory=mem) as rb:
        for _ in range(4):
            rb.output(bytes(1000))  # 1008 bytes each
        rb.consume()
        addr = rb.reserve(200)  # starts at 4032, ends past 4096: wraps
        mem.write_bytes(addr, bytes(range(200)))
        rb.submit(addr)
        assert bytes(rb.data[: 200 - 56]) == bytes(range(56, 200))  # the tail is at the ring's start
        assert rb.consume() == [bytes(range(200))]
