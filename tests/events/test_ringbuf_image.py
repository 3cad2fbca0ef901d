"""The ring buffer reader on synthetic ring images (no kernel): busy records, discards, wrap, sizes.

An image is laid out as the kernel maps a ring (consumer page; producer page, then the data
area twice); :class:`Image` writes records the way a producer does, into both copies.
Every reading style is checked against a plain model reader written from the rules in
``Documentation/bpf/ringbuf.rst``.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ebpf.events import RingBuffer, RingBufferError

BUSY, DISCARD = 1 << 31, 1 << 30
PAGE = mmap.PAGESIZE
REC = np.dtype([("seq", "<u4"), ("pad", "<u4"), ("val", "<u8"), ("tag", "<u8")])  # 24 bytes, 32-byte slots


class Image:
    """A ring of ``size`` data bytes whose positions start at ``start`` (to place the wrap)."""

    def __init__(self, size: int, start: int = 0) -> None:
        self.size = size
        self.cons = bytearray(PAGE)
        self.prod = bytearray(PAGE + 2 * size)
        self.pos = start
        struct.pack_into("<Q", self.cons, 0, start)
        struct.pack_into("<Q", self.prod, 0, start)

    @property
    def consumer(self) -> int:
        return int(struct.unpack_from("<Q", self.cons)[0])

    def _write(self, pos: int, data: bytes) -> None:
        for i, byte in enumerate(data):  # byte by byte: simple, and the wrap is obviously right
            off = (pos + i) % self.size
            self.prod[PAGE + off] = self.prod[PAGE + self.size + off] = byte

    def put(self, payload: bytes, *, busy: bool = False, discard: bool = False) -> int:
        """Reserve (and unless ``busy``, commit) a record; returns its header position."""
        slot = (len(payload) + 8 + 7) & ~7
        assert self.pos + slot - self.consumer <= self.size, "the ring is full"
        at = self.pos
        flags = (BUSY if busy else 0) | (DISCARD if discard else 0)
        self._write(at, struct.pack("=II", len(payload) | flags, 0) + payload)
        self.pos += slot
        struct.pack_into("<Q", self.prod, 0, self.pos)
        return at

    def commit(self, at: int, *, discard: bool = False) -> None:
        off = at % self.size
        (hdr,) = struct.unpack_from("=I", self.prod, PAGE + off)
        self._write(at, struct.pack("=I", (hdr & ~BUSY) | (DISCARD if discard else 0)))

    def model(self) -> list[bytes]:
        """The committed, non-discarded records from the consumer position to the first busy one."""
        out: list[bytes] = []
        pos = self.consumer
        while pos < self.pos:
            (hdr,) = struct.unpack_from("=I", self.prod, PAGE + pos % self.size)
            if hdr & BUSY:
                break
            length = hdr & ~(BUSY | DISCARD)
            if not hdr & DISCARD:
                start = PAGE + pos % self.size + 8
                out.append(bytes(self.prod[start : start + length]))
            pos += (length + 8 + 7) & ~7
        return out


def rec(seq: int) -> bytes:
    return struct.pack("<IIQQ", seq, 0, seq * 7, 0xFEED)


def reader(img: Image, callback: Callable[[bytes], object] | None = None) -> RingBuffer:
    rb = RingBuffer()
    rb.add_image(img.cons, img.prod, img.size, callback)
    return rb


def drain_all(rb: RingBuffer, sink: list[bytes], mode: str, limit: int) -> list[bytes]:
    """drain_array until it stops; a record of another size is taken by a stopping callback."""
    got: list[bytes] = []
    out = np.zeros(limit, REC)
    while True:
        try:
            if mode == "out":
                arr = rb.drain_array(REC, out=out)
            else:
                arr = rb.drain_array(REC, reuse=mode == "reuse")
        except RingBufferError:
            assert rb.consume() == 1
            got.append(sink.pop())
            continue
        if not len(arr):
            return got
        got.extend(arr[i].tobytes() for i in range(len(arr)))


def stop_after_one(sink: list[bytes]) -> Callable[[bytes], int]:
    def cb(raw: bytes) -> int:
        sink.append(raw)
        return -1

    return cb


def test_a_batch_straddling_the_wrap_is_read_whole() -> None:
    img = Image(256, start=256 * 3 + 200)  # data offset 200: the 3rd record wraps past the end
    for seq in range(7):
        img.put(rec(seq))
    with reader(img) as rb:
        arr = rb.drain_array(REC)
        assert arr["seq"].tolist() == list(range(7))
        assert (arr["val"] == arr["seq"].astype(np.uint64) * 7).all() and (arr["tag"] == 0xFEED).all()
        assert img.consumer == img.pos


def test_busy_record_stops_the_batch_until_committed() -> None:
    img = Image(512)
    img.put(rec(0))
    img.put(rec(1))
    busy = img.put(rec(2), busy=True)
    img.put(rec(3))
    with reader(img) as rb:
        assert rb.drain_array(REC)["seq"].tolist() == [0, 1]
        assert img.consumer == busy  # stopped at the busy record, nothing after it consumed
        assert len(rb.drain_array(REC, reuse=True)) == 0
        with rb.view_array(REC) as view:
            assert len(view) == 0
        img.commit(busy)
        assert rb.drain_array(REC, reuse=True)["seq"].tolist() == [2, 3]
        assert img.consumer == img.pos


def test_busy_record_committed_as_discard_is_skipped() -> None:
    img = Image(512)
    busy = img.put(rec(0), busy=True)
    img.put(rec(1))
    with reader(img) as rb:
        assert len(rb.drain_array(REC)) == 0 and img.consumer == busy
        img.commit(busy, discard=True)
        assert rb.drain_array(REC)["seq"].tolist() == [1]


def test_discards_of_every_size_are_skipped_in_order() -> None:
    img = Image(1024, start=1024 - 40)
    img.put(rec(0), discard=True)
    img.put(rec(1))
    img.put(b"x" * 5, discard=True)  # another size: off the slot grid
    img.put(rec(2))
    img.put(rec(3), discard=True)
    img.put(rec(4), discard=True)
    img.put(rec(5))
    img.put(b"y" * 40, discard=True)  # trailing discard: consumed too
    with reader(img) as rb:
        assert rb.drain_array(REC)["seq"].tolist() == [1, 2, 5]
        assert img.consumer == img.pos


def test_out_limit_and_reuse_growth() -> None:
    img = Image(1024)
    for seq in range(20):
        img.put(rec(seq))
    with reader(img) as rb:
        out = np.zeros(6, REC)
        assert rb.drain_array(REC, out=out)["seq"].tolist() == list(range(6))
        small = rb.drain_array(REC, out=out[:2])
        assert small["seq"].tolist() == [6, 7] and out["seq"][:2].tolist() == [6, 7]
        first = rb.drain_array(REC, reuse=True)
        assert first["seq"].tolist() == list(range(8, 20))
        for seq in range(20, 24):
            img.put(rec(seq))
        again = rb.drain_array(REC, reuse=True)
        assert np.shares_memory(first, again) and again["seq"].tolist() == [20, 21, 22, 23]


def test_record_of_another_size_first_is_refused_and_left() -> None:
    img = Image(512)
    img.put(b"abc")
    img.put(rec(1))
    with reader(img) as rb:
        with pytest.raises(RingBufferError, match="record of 3 bytes"):
            rb.drain_array(REC)
        assert img.consumer == 0
        assert rb.drain() == [b"abc", rec(1)]


def test_corrupt_positions_are_an_error() -> None:
    img = Image(256)
    img.put(rec(0))
    struct.pack_into("<Q", img.cons, 0, 3)
    with reader(img) as rb, pytest.raises(RingBufferError, match="corrupt"):
        rb.drain_array(REC)


def test_image_validation() -> None:
    rb = RingBuffer()
    with pytest.raises(RingBufferError, match="power of two"):
        rb.add_image(bytearray(8), bytearray(PAGE + 200), 100)
    with pytest.raises(RingBufferError, match="writable"):
        rb.add_image(bytes(8), bytearray(PAGE + 256), 128)
    with pytest.raises(RingBufferError, match="needs"):
        rb.add_image(bytearray(8), bytearray(PAGE + 128), 128)
    rb.close()


def test_callback_and_iterator_styles_read_images() -> None:
    img = Image(256, start=200)
    for seq in range(5):
        img.put(rec(seq), discard=seq == 2)
    img.put(b"tail")
    got: list[bytes] = []
    with reader(img, got.append) as rb:
        assert rb.poll(timeout=0) == 5
    assert got == [rec(0), rec(1), rec(3), rec(4), b"tail"]
    assert all(type(r) is bytes for r in got)


# A record: (kind, seq); kinds: plain 24-byte record, discarded, busy (committed later),
# another size (3..40 bytes), discarded of another size.
_KINDS = st.sampled_from(["plain", "plain", "plain", "discard", "busy", "other", "other_discard"])


@settings(max_examples=60, deadline=None)
@given(
    kinds=st.lists(st.tuples(_KINDS, st.integers(3, 40)), max_size=40),
    start=st.integers(0, 127).map(lambda n: 8 * n),
    mode=st.sampled_from(["fresh", "reuse", "out"]),
    limit=st.integers(1, 9),
)
def test_drain_array_matches_the_model(
    kinds: list[tuple[str, int]], start: int, mode: str, limit: int
) -> None:
    img = Image(512, start=start)
    sink: list[bytes] = []
    busy: list[int] = []
    expected: list[bytes] = []
    got: list[bytes] = []
    with reader(img, stop_after_one(sink)) as rb:
        for seq, (kind, other) in enumerate(kinds):
            payload = rec(seq) if kind in ("plain", "discard", "busy") else bytes([seq]) * other
            if img.pos + ((len(payload) + 15) & ~7) - img.consumer > img.size:
                # the ring is full: read what can be read, as a consumer would
                expected.extend(img.model())
                got.extend(drain_all(rb, sink, mode, limit))
                if busy:
                    img.commit(busy.pop(0))
                    continue
            at = img.put(payload, busy=kind == "busy", discard=kind in ("discard", "other_discard"))
            if kind == "busy":
                busy.append(at)
        while True:
            expected.extend(img.model())
            got.extend(drain_all(rb, sink, mode, limit))
            if not busy:
                break
            img.commit(busy.pop(0))
        assert img.consumer == img.pos
    assert got == expected


def test_view_array_skips_leading_discards_and_stops_at_the_first_odd_record() -> None:
    img = Image(512, start=512 - 16)
    img.put(b"zz", discard=True)
    img.put(rec(0), discard=True)
    img.put(rec(1))
    img.put(rec(2))
    img.put(rec(3), discard=True)
    img.put(rec(4))
    busy = img.put(rec(5), busy=True)
    with reader(img) as rb:
        with rb.view_array(REC) as view:
            assert view["seq"].tolist() == [1, 2]
            assert not view.flags.writeable
        with rb.view_array(REC) as view:  # the discarded 3 is skipped, then 4, then the busy 5
            assert view["seq"].tolist() == [4]
        assert img.consumer == busy
        with rb.view_array(REC) as view:
            assert len(view) == 0
        img.commit(busy)
        with rb.view_array(REC) as view:
            assert view["seq"].tolist() == [5]
        assert img.consumer == img.pos
