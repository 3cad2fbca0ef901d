"""BPF_MAP_TYPE_USER_RINGBUF in user space: the producer API, the layout and the drain rules."""

from __future__ import annotations

import errno
import struct
import threading
import time

import pytest

from ebpf.events import UserRingBuffer
from ebpf.maps import InvalidMapArgumentError, MapDef, MapOperationNotSupportedError, create
from ebpf.maps.ringbuf import BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP
from ebpf.maps.user_ringbuf import (
    UserRingBufError,
    UserRingBufFullError,
    UserRingBufMap,
    UserRingBufTooBigError,
)
from ebpf.spec import MapType

SIZE = 4096


def make(size: int = SIZE) -> UserRingBufMap:
    m = create(MapDef(MapType.USER_RINGBUF, 0, 0, size))
    assert isinstance(m, UserRingBufMap)
    return m


def collect(m: UserRingBufMap, flags: int = 0, stop_at: int = 0) -> tuple[int, list[bytes]]:
    out: list[bytes] = []

    def cb(address: int, size: int) -> int:
        out.append(m.memory.read_bytes(address, size))
        return 1 if stop_at and len(out) == stop_at else 0

    return m.drain(cb, flags), out


@pytest.mark.parametrize(
    ("key", "value", "entries", "flags"),
    [(4, 0, SIZE, 0), (0, 4, SIZE, 0), (0, 0, 0, 0), (0, 0, 3 * SIZE, 0), (0, 0, 1024, 0), (0, 0, SIZE, 1)],
)
def test_create_rules(key: int, value: int, entries: int, flags: int) -> None:
    with pytest.raises(InvalidMapArgumentError) as exc:
        create(MapDef(MapType.USER_RINGBUF, key, value, entries, flags=flags))
    assert exc.value.errno == errno.EINVAL


def test_element_operations_are_einval() -> None:
    with make() as m:
        for op in (lambda: m.lookup(b""), lambda: m.update(b"", b""), lambda: m.delete(b"")):
            with pytest.raises(MapOperationNotSupportedError) as exc:
                op()
            assert exc.value.errno == errno.EINVAL


def test_layout_and_drain_in_order() -> None:
    with make() as m:
        m.write(b"abc")
        sample = m.reserve(9)
        sample.data[:] = b"123456789"
        m.submit(sample)
        assert m.producer_pos == 16 + 24 and m.consumer_pos == 0
        assert struct.unpack_from("<II", m.data, 0) == (3, 0)
        assert bytes(m.data[8:11]) == b"abc"
        assert struct.unpack_from("<I", m.data, 16)[0] == 9
        assert list(m.records()) == [b"abc", b"123456789"]
        assert collect(m) == (2, [b"abc", b"123456789"])
        assert m.consumer_pos == 40 and m.wakeups == 1
        assert collect(m) == (0, []) and m.wakeups == 1  # nothing drained: no wake-up


def test_discarded_skipped_and_not_counted() -> None:
    with make() as m:
        m.write(b"one")
        m.discard(m.reserve(20))
        m.write(b"two")
        assert struct.unpack_from("<I", m.data, 16)[0] == 20 | (1 << 30)
        assert collect(m) == (2, [b"one", b"two"])
        assert m.consumer_pos == m.producer_pos == 16 + 32 + 16
        m.discard(m.reserve(1))
        assert collect(m) == (0, []) and m.wakeups == 2  # a discarded record still wakes producers


def test_busy_record_stops_drain_and_out_of_order_submit() -> None:
    with make() as m:
        first = m.reserve(8)
        m.write(b"second")
        assert collect(m) == (0, []) and m.consumer_pos == 0
        first.data[:] = b"firstone"
        m.submit(first)
        assert collect(m) == (2, [b"firstone", b"second"])
        with pytest.raises(UserRingBufError):
            m.submit(first)


def test_callback_return_stops_after_that_record() -> None:
    with make() as m:
        for i in range(5):
            m.write(bytes([i]))
        assert collect(m, stop_at=2) == (2, [b"\0", b"\1"])
        assert m.consumer_pos == 32
        assert collect(m) == (3, [b"\2", b"\3", b"\4"])


def test_full_ring_and_too_big() -> None:
    with make() as m:
        for i in range(SIZE // 16):
            m.write(struct.pack("<Q", i))
        assert m.available() == 0 and m.producer_pos == SIZE
        with pytest.raises(UserRingBufFullError) as full:
            m.reserve(0)
        assert full.value.errno == errno.ENOSPC and m.producer_pos == SIZE
        with pytest.raises(UserRingBufTooBigError) as big:
            m.reserve(SIZE - 7)
        assert big.value.errno == errno.E2BIG
        with pytest.raises(UserRingBufTooBigError):
            m.reserve(-1)
        n, got = collect(m)
        assert n == SIZE // 16 and [struct.unpack("<Q", g)[0] for g in got] == list(range(SIZE // 16))
        m.write(bytes(SIZE - 8))  # the largest sample fills the whole ring
        assert m.available() == 0
        assert collect(m)[0] == 1


def test_wrapping_record_is_contiguous() -> None:
    with make() as m:
        m.write(bytes(SIZE - 24))  # producer at SIZE - 16
        assert collect(m)[0] == 1
        payload = bytes(range(40))
        m.write(payload)  # header at SIZE - 16, sample wraps after 8 bytes
        assert bytes(m.data[:32]) == payload[8:]
        assert list(m.records()) == [payload]
        assert collect(m) == (1, [payload])
        assert m.consumer_pos == m.producer_pos == SIZE - 16 + 48


def test_flags_busy_and_malformed_producer() -> None:
    with make() as m:
        m.write(b"x")
        assert m.drain(lambda a, n: 0, 4) == -errno.EINVAL
        assert m.consumer_pos == 0
        inner: list[int] = []
        assert m.drain(lambda a, n: inner.append(m.drain(lambda a2, n2: 0)) or 0) == 1
        assert inner == [-errno.EBUSY]
        # a producer position that is not a multiple of 8
        m.write(b"y")
        m.producer._prod[0] = m.producer_pos + 4
        assert collect(m) == (-errno.EINVAL, [])
        # a header longer than the producer position announces
        m.producer._prod[0] = m.producer_pos - 4
        pos = m.consumer_pos
        struct.pack_into("<I", m.data, pos & (SIZE - 1), 100)
        assert collect(m) == (-errno.EINVAL, [])
        # a record longer than the ring: E2BIG; records drained before are consumed anyway
        m.producer._prod[0] = pos + 2 * SIZE
        struct.pack_into("<I", m.data, pos & (SIZE - 1), SIZE)
        assert collect(m) == (-errno.E2BIG, [])
        struct.pack_into("<I", m.data, pos & (SIZE - 1), 1)
        struct.pack_into("<I", m.data, (pos + 16) & (SIZE - 1), SIZE)
        assert collect(m) == (-errno.E2BIG, [b"y"])
        assert m.consumer_pos == pos + 16


def test_wakeup_flags() -> None:
    with make() as m:
        m.write(b"a")
        assert collect(m, BPF_RB_NO_WAKEUP)[0] == 1 and m.wakeups == 0
        assert collect(m, BPF_RB_FORCE_WAKEUP)[0] == 0 and m.wakeups == 1
        assert collect(m, BPF_RB_FORCE_WAKEUP | BPF_RB_NO_WAKEUP)[0] == 0 and m.wakeups == 2


def test_reserve_blocking_waits_for_a_drain() -> None:
    with make() as m:
        m.write(bytes(SIZE - 8))
        with pytest.raises(UserRingBufFullError) as exc:
            m.reserve_blocking(8, timeout=0.05)
        assert exc.value.errno == errno.ETIMEDOUT
        got: list[object] = []

        def producer() -> None:
            got.append(m.reserve_blocking(8, timeout=10))

        t = threading.Thread(target=producer)
        t.start()
        time.sleep(0.05)
        assert not got
        assert collect(m)[0] == 1
        t.join(5)
        assert len(got) == 1 and m.producer_pos == SIZE + 16


def test_events_producer_over_a_runtime_map() -> None:
    with make() as m, UserRingBuffer(m) as rb:
        rb.write(b"hello")
        s = rb.reserve(2)
        s.data[:] = b"hi"
        rb.submit(s)
        assert rb.producer_pos == 32 and rb.consumer_pos == 0 and rb.pending == 0
        assert collect(m) == (2, [b"hello", b"hi"])
        assert rb.consumer_pos == 32
    with pytest.raises(UserRingBufError):
        rb.write(b"closed")


def test_at_most_max_samples_per_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    """BPF_MAX_USER_RINGBUF_SAMPLES bounds one drain; discarded records count toward it."""
    import ebpf.maps.user_ringbuf as urb

    monkeypatch.setattr(urb, "BPF_MAX_USER_RINGBUF_SAMPLES", 4)
    with make() as m:
        m.discard(m.reserve(1))
        for i in range(5):
            m.write(bytes([i]))
        assert collect(m) == (3, [b"\0", b"\1", b"\2"])
        assert collect(m) == (2, [b"\3", b"\4"])
