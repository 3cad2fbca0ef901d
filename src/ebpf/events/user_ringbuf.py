"""User-space producer for ``BPF_MAP_TYPE_USER_RINGBUF`` maps. Above the kernel line (mmap + epoll).

A user ring buffer (``Documentation/bpf/ringbuf.rst``) carries records the other way round
from ``BPF_MAP_TYPE_RINGBUF``: user space writes them, programs drain them with
``bpf_user_ringbuf_drain``. It is shared through ``mmap`` of the map's file descriptor:

* page 0, the consumer position (``u64``): the kernel only allows a **read-only** mapping of
  it (a writable one is ``EPERM``);
* from page 1, read-write: the producer position (``u64``) on its own page, then the data
  area of ``max_entries`` bytes mapped **twice** back to back, so a record that wraps around
  the end is contiguous.

Records have the layout of :mod:`ebpf.maps.user_ringbuf` (8-byte header with the busy and
discard bits, 8-byte alignment); :class:`ebpf.maps.user_ringbuf.RingProducer` writes them, the
same code that writes into the user-space runtime's ``UserRingBufMap``.

Waiting for room: the kernel reports the map writable (``EPOLLOUT``) while it is not full and
wakes pollers after a drain (unless the program passed ``BPF_RB_NO_WAKEUP``).
:meth:`UserRingBuffer.reserve_blocking` waits edge-triggered in ``epoll_wait``, so a full
ring costs no CPU until the program side drains.

>>> from ebpf.events import UserRingBuffer
>>> with UserRingBuffer(coll.maps["requests"]) as rb:       # doctest: +SKIP
...     sample = rb.reserve(8)
...     sample.data[:] = (42).to_bytes(8, "little")
...     rb.submit(sample)                                      # the program may drain it now
...     rb.write(b"\\x01" * 16)                                 # reserve + copy + submit
...     rb.write(b"\\x02" * 16, timeout=1.0)                    # waits up to 1 s for room
"""

from __future__ import annotations

import mmap
import select
from typing import Protocol, Self

from ebpf.events.ringbuf import RingBufferError, map_fdinfo
from ebpf.maps.user_ringbuf import (
    RingProducer,
    UserRingBufError,
    UserRingBufFullError,
    UserRingBufMap,
    UserRingBufSample,
    UserRingBufTooBigError,
)

__all__ = [
    "UserRingBufError",
    "UserRingBufFullError",
    "UserRingBufSample",
    "UserRingBufTooBigError",
    "UserRingBuffer",
]

_USER_RINGBUF_TYPE = 31  # BPF_MAP_TYPE_USER_RINGBUF


class _HasFD(Protocol):
    def fileno(self) -> int: ...


def _fileno(obj: int | _HasFD) -> int:
    if isinstance(obj, int):
        return obj
    fileno = getattr(obj, "fileno", None)
    if fileno is not None:
        return int(fileno())
    fd = getattr(obj, "fd", None)
    if isinstance(fd, int):
        return fd
    raise TypeError(f"expected a user ring buffer map or a file descriptor, got {type(obj).__name__}")


class UserRingBuffer:
    """Writes records into a user ring buffer map (libbpf's ``user_ring_buffer__new`` and friends).

    Args:
        ringbuf: a kernel ``USER_RINGBUF`` map (its fd, or an object with ``fileno()`` / ``fd``,
            such as ``ebpf.kernel.Map``), or a user-space :class:`~ebpf.maps.UserRingBufMap`
            of the runtime (written in place; waits are woken by the runtime's drains).

    The map must stay open while the producer is used. Close the producer (or use it as a
    context manager) to unmap the ring; samples still reserved then are lost to the program
    side's view only as busy records, as with libbpf.

    Raises:
        UserRingBufError: not a user ring buffer map, or the ring cannot be mapped.
    """

    def __init__(self, ringbuf: int | _HasFD | UserRingBufMap) -> None:
        self._closed = False
        self._epoll: select.epoll | None = None
        self._cons: mmap.mmap | None = None
        self._prod: mmap.mmap | None = None
        if isinstance(ringbuf, UserRingBufMap):
            self._producer = ringbuf.producer
            self.size = ringbuf.size
            return
        fd = _fileno(ringbuf)
        try:
            info = map_fdinfo(fd)
        except RingBufferError as err:  # the reader's error type: give ours
            raise UserRingBufError(f"fd {fd}: {err}") from err
        if info.get("map_type") != _USER_RINGBUF_TYPE:
            raise UserRingBufError(
                f"fd {fd} is not a user ring buffer map (map_type {info.get('map_type')}, "
                f"want {_USER_RINGBUF_TYPE})"
            )
        size = info["max_entries"]
        page = mmap.PAGESIZE
        try:
            self._cons = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ, offset=0)
            self._prod = mmap.mmap(
                fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=page
            )
        except OSError as err:
            self._unmap()
            raise UserRingBufError(
                f"mmap of user ring buffer fd {fd}: {err.strerror}", errno=err.errno
            ) from err
        self._epoll = select.epoll()
        self._epoll.register(fd, select.EPOLLOUT | select.EPOLLET)
        cons, prod = memoryview(self._cons), memoryview(self._prod)
        self._producer = RingProducer(
            cons[:8],
            prod[:8],
            prod[page:],
            size,
            mirrored=True,
            wait=self._wait,
            label=f"user ringbuf fd {fd}",
        )
        cons.release()
        prod.release()
        self.size = size

    def _wait(self, _needed: int, timeout: float | None) -> object:
        assert self._epoll is not None
        return self._epoll.poll(-1 if timeout is None else timeout)

    # --- positions ------------------------------------------------------------------------------

    @property
    def consumer_pos(self) -> int:
        """Bytes the program side has drained (the kernel's consumer position)."""
        self._check_open()
        return self._producer.consumer_pos

    @property
    def producer_pos(self) -> int:
        """Bytes reserved so far (the producer position)."""
        self._check_open()
        return self._producer.producer_pos

    def available(self) -> int:
        """Bytes free for new records now (headers and padding included)."""
        self._check_open()
        return self._producer.available()

    @property
    def pending(self) -> int:
        """Samples reserved through this producer and not yet submitted or discarded."""
        return self._producer.pending

    # --- producing ------------------------------------------------------------------------------

    def reserve(self, size: int) -> UserRingBufSample:
        """Reserve a ``size``-byte sample to fill through ``sample.data`` (``user_ring_buffer__reserve``).

        Raises:
            UserRingBufTooBigError: the record can never fit in the ring (``E2BIG``).
            UserRingBufFullError: no room now (``ENOSPC``).
        """
        self._check_open()
        return self._producer.reserve(size)

    def reserve_blocking(self, size: int, timeout: float | None = None) -> UserRingBufSample:
        """As :meth:`reserve`, waiting up to ``timeout`` seconds (``None``: forever) for the
        program side to drain (``user_ring_buffer__reserve_blocking``).

        Raises:
            UserRingBufTooBigError: the record can never fit (no wait).
            UserRingBufFullError: no room when the timeout passed (``ETIMEDOUT``).
        """
        self._check_open()
        return self._producer.reserve_blocking(size, timeout)

    def submit(self, sample: UserRingBufSample) -> None:
        """Commit ``sample`` for the program side (``user_ring_buffer__submit``)."""
        self._check_open()
        self._producer.submit(sample)

    def discard(self, sample: UserRingBufSample) -> None:
        """Drop ``sample``: the program side skips it (``user_ring_buffer__discard``)."""
        self._check_open()
        self._producer.discard(sample)

    def write(self, data: bytes | bytearray | memoryview, *, timeout: float | None = 0.0) -> None:
        """Reserve, copy ``data`` in and submit; ``timeout`` 0 never waits, ``None`` waits forever."""
        self._check_open()
        self._producer.write(data, timeout=timeout)

    # --- lifetime -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise UserRingBufError("the user ring buffer producer is closed")

    def _unmap(self) -> None:
        for m in (self._cons, self._prod):
            if m is not None:
                try:
                    m.close()
                except BufferError:  # a caller still holds a sample's view: unmapped when it dies
                    pass
        self._cons = self._prod = None

    def close(self) -> None:
        """Unmap the ring and close the epoll fd (the map stays open). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._epoll is not None:  # a kernel map: the runtime map's producer is the map's own
            self._producer.release()
            self._epoll.close()
            self._unmap()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
