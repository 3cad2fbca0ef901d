"""RINGBUF: reserve/submit/discard/output, capacity as in the kernel, consume order."""

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
        with pytest.raises(VMError):  # a discarded sample is gone
            mem.load(c, 1)
        assert rb.consume() == [b"\x44\x33\x22\x11", b"xyz"]
        with pytest.raises(VMError):  # consumed samples are unmapped
            mem.load(a, 1)
        assert rb.query(RingBufQuery.CONS_POS) == rb.query(RingBufQuery.PROD_POS) == 3 * 16
        assert len(rb) == 0


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
        with pytest.raises(InvalidMapArgumentError):
            rb.submit(addr, flags=8)
        rb.submit(addr, flags=2)
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
