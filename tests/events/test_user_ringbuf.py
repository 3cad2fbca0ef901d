"""UserRingBuffer on kernel BPF_MAP_TYPE_USER_RINGBUF maps: mmap rules, layout, blocking (as root)."""

from __future__ import annotations

import errno
import mmap
import select
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ebpf.events import (
    UserRingBufError,
    UserRingBuffer,
    UserRingBufFullError,
    UserRingBufTooBigError,
)
from ebpf.spec import MapSpec, MapType

pytestmark = pytest.mark.kernel

SIZE = 4096
OBJ = Path(__file__).parent.parent / "data" / "userrb" / "userrb.o"


@pytest.fixture
def urb() -> Iterator[Any]:
    from ebpf.kernel.map import Map

    with Map.create(
        MapSpec(name="urb_test", type=MapType.USER_RINGBUF, key_size=0, value_size=0, max_entries=SIZE)
    ) as m:
        yield m


@pytest.fixture
def coll() -> Iterator[Any]:
    from ebpf.elf import load_collection_spec
    from ebpf.kernel.collection import Collection

    with Collection(load_collection_spec(OBJ)) as c:
        yield c


def drain(coll: Any, flags: int = 0) -> int:
    return int(coll.programs["drain"].test_run(ctx_in=struct.pack("<QII", flags, 0, 0)).retval)


def test_kernel_mapping_rules(urb: Any) -> None:
    """The consumer page maps read-only only; producer page and data map read-write."""
    fd = urb.fileno() if hasattr(urb, "fileno") else urb.fd
    with pytest.raises(PermissionError):
        mmap.mmap(fd, mmap.PAGESIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
    mmap.mmap(fd, mmap.PAGESIZE, mmap.MAP_SHARED, mmap.PROT_READ, offset=0).close()
    m = mmap.mmap(
        fd, mmap.PAGESIZE + 2 * SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=mmap.PAGESIZE
    )
    try:  # the data area is mapped twice: a write at the start shows in the second copy
        m[mmap.PAGESIZE : mmap.PAGESIZE + 4] = b"abcd"
        assert m[mmap.PAGESIZE + SIZE : mmap.PAGESIZE + SIZE + 4] == b"abcd"
        m[mmap.PAGESIZE : mmap.PAGESIZE + 4] = bytes(4)
    finally:
        m.close()


def test_rejects_other_maps() -> None:
    from ebpf.kernel.map import Map

    spec = MapSpec(name="rb_test", type=MapType.RINGBUF, key_size=0, value_size=0, max_entries=SIZE)
    with Map.create(spec) as rb, pytest.raises(UserRingBufError, match="not a user ring buffer"):
        UserRingBuffer(rb)


def test_layout_full_and_too_big(urb: Any) -> None:
    with UserRingBuffer(urb) as rb:
        assert rb.size == SIZE and rb.available() == SIZE
        s = rb.reserve(5)
        data = bytes(rb._producer._data[:16])
        assert struct.unpack_from("<I", data)[0] == 5 | (1 << 31)  # busy until submitted
        s.data[:] = b"hello"
        rb.submit(s)
        data = bytes(rb._producer._data[:16])
        assert struct.unpack_from("<I", data)[0] == 5 and data[8:13] == b"hello"
        assert rb.producer_pos == 16 and rb.consumer_pos == 0
        rb.discard(rb.reserve(0))
        assert struct.unpack_from("<I", bytes(rb._producer._data[16:20]))[0] == 1 << 30
        with pytest.raises(UserRingBufTooBigError) as big:
            rb.reserve(SIZE - 7)
        assert big.value.errno == errno.E2BIG
        rb.write(bytes(SIZE - 24 - 8))
        assert rb.available() == 0
        with pytest.raises(UserRingBufFullError) as full:
            rb.reserve(0)
        assert full.value.errno == errno.ENOSPC
        with pytest.raises(UserRingBufFullError) as late:
            rb.reserve_blocking(0, timeout=0.05)
        assert late.value.errno == errno.ETIMEDOUT
        with pytest.raises(UserRingBufError):
            rb.submit(s)  # already submitted


def test_epollout_follows_free_space(coll: Any) -> None:
    """Measured: the map polls writable while the ring is not full."""
    m = coll.maps["urb"]
    fd = m.fileno() if hasattr(m, "fileno") else m.fd
    ep = select.epoll()
    try:
        ep.register(fd, select.EPOLLOUT)
        assert ep.poll(0)
        with UserRingBuffer(m) as rb:
            rb.write(bytes(SIZE - 8))
            assert ep.poll(0) == []
            assert drain(coll) == 1
            assert rb.consumer_pos == SIZE
            assert ep.poll(0)
    finally:
        ep.close()


def test_reserve_blocking_woken_by_a_drain(coll: Any) -> None:
    with UserRingBuffer(coll.maps["urb"]) as rb:
        rb.write(bytes(SIZE - 8))
        got: list[Any] = []
        t = threading.Thread(target=lambda: got.append(rb.reserve_blocking(8, timeout=10)))
        t.start()
        time.sleep(0.1)
        assert not got
        start = time.monotonic()
        assert drain(coll) == 1
        t.join(5)
        assert got and time.monotonic() - start < 2
        got[0].data[:] = struct.pack("<Q", 77)
        rb.submit(got[0])
        assert drain(coll) == 1
        assert rb.consumer_pos == rb.producer_pos == SIZE + 16


def test_no_wakeup_drain_leaves_writer_asleep(coll: Any) -> None:
    """BPF_RB_NO_WAKEUP: the drain frees room but wakes nobody; the wait times out."""
    with UserRingBuffer(coll.maps["urb"]) as rb:
        rb.write(bytes(SIZE - 8))
        rb._epoll.poll(0)  # consume edge events from the setup
        assert drain(coll, flags=1) == 1
        assert rb._epoll.poll(0.05) == []
        assert rb.available() == SIZE
        assert drain(coll, flags=2) == 0  # BPF_RB_FORCE_WAKEUP wakes even with nothing drained
        assert rb._epoll.poll(1)


def test_bad_descriptors() -> None:
    import os

    with pytest.raises(UserRingBufError, match="fdinfo"):
        UserRingBuffer(1 << 20)
    r, w = os.pipe()
    try:
        with pytest.raises(UserRingBufError, match="not a user ring buffer"):
            UserRingBuffer(r)
    finally:
        os.close(r)
        os.close(w)
    with pytest.raises(TypeError):
        UserRingBuffer("urb")  # type: ignore[arg-type]
