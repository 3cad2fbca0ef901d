"""``BPF_MAP_TYPE_USER_RINGBUF``: a ring written by user space and drained by programs. Pure.

The same byte layout as the kernel's (``kernel/bpf/ringbuf.c``, ``Documentation/bpf/ringbuf.rst``),
so one producer (:class:`RingProducer`) writes into the user-space map here and into a
kernel map mmapped by :class:`ebpf.events.UserRingBuffer`.

Rule 1 (creation): as ``BPF_MAP_TYPE_RINGBUF``: ``key_size`` and ``value_size`` 0, ``flags`` at
most ``BPF_F_NUMA_NODE``, ``max_entries`` (the data size in bytes) a power of two and a
multiple of the 4 KiB page, else ``EINVAL``. The element operations are ``EINVAL``.

Rule 2 (layout): a ``u64`` consumer position (the kernel's consumer page: user space may map it
read-only only), a ``u64`` producer position (the producer page, writable by user space) and
the data area of ``max_entries`` bytes, which the kernel maps twice back to back so a record
that wraps is contiguous. A record at producer position ``p`` sits at ``p & (size - 1)``: the
8-byte header ``u32 len`` (bit 31 ``BPF_RINGBUF_BUSY_BIT`` while reserved, bit 30
``BPF_RINGBUF_DISCARD_BIT`` once discarded) and ``u32`` padding, then the sample; a record
takes ``round_up(len + 8, 8)`` bytes.

Rule 3 (the producer, in user space): a reservation of ``n`` bytes needs
``round_up(n + 8, 8)`` bytes free between the producer and the consumer position (the ring
may fill completely); it writes the header with the busy bit, then publishes the new
producer position (a release store: the header is visible before the position). Submit
clears the busy bit, discard replaces it by the discard bit (one 4-byte store each). Records
may be submitted in any order; the program side stops at a busy one. A record that does not
fit in the ring at all is :class:`UserRingBufTooBigError` (``E2BIG``), one that does not fit
now :class:`UserRingBufFullError` (``ENOSPC``): nothing is ever dropped silently.

Rule 4 (``bpf_user_ringbuf_drain(map, callback, ctx, flags)``, the program side): flags other
than ``BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP`` are ``-EINVAL``; a drain while another one of
the same ring runs is ``-EBUSY``. Then, for at most ``BPF_MAX_USER_RINGBUF_SAMPLES`` records
(discarded ones count): a producer position that is not a multiple of 8, or a record longer
than the bytes the producer position announces, is ``-EINVAL``; a record longer than the
ring, or a sample above the dynptr limit (``2**24 - 1``), is ``-E2BIG`` (these errors replace
the count: records drained before are consumed all the same); a discarded record is skipped
(the consumer position moves past it); a busy record or an empty ring ends the drain. Each
other record is passed to the callback as a local dynptr, then consumed; a callback return
other than 0 ends the drain after that record. The result is the number of records consumed
minus the discarded ones. A wake-up for blocked producers follows with
``BPF_RB_FORCE_WAKEUP``, or when at least one record was taken (discarded ones included) and
``BPF_RB_NO_WAKEUP`` is not set.

Rule 5 (ordering): position and header stores are single aligned stores through native
``u32``/``u64`` views; the kernel's acquire loads pair with them on x86-64 (TSO), where stores
are not reordered with older stores.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ebpf.maps._base import MapDef, round_up
from ebpf.maps._errors import InvalidMapArgumentError, MapError, MapFullError
from ebpf.maps.ringbuf import (
    BPF_RB_FORCE_WAKEUP,
    BPF_RB_NO_WAKEUP,
    BPF_RINGBUF_BUSY_BIT,
    BPF_RINGBUF_DISCARD_BIT,
    BPF_RINGBUF_HDR_SZ,
    PAGE_SIZE,
    NoElementOps,
    ring_size,
)
from ebpf.spec import MapType
from ebpf.vm.memory import HostBuffer, Memory

__all__ = [
    "BPF_MAX_USER_RINGBUF_SAMPLES",
    "DYNPTR_MAX_SIZE",
    "RingProducer",
    "UserRingBufError",
    "UserRingBufFullError",
    "UserRingBufMap",
    "UserRingBufSample",
    "UserRingBufTooBigError",
]

BPF_MAX_USER_RINGBUF_SAMPLES = 128 * 1024
DYNPTR_MAX_SIZE = (1 << 24) - 1
_FLAG_BITS = BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT
_WAKEUP_FLAGS = BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP


class UserRingBufError(MapError):
    """A user ring buffer operation failed (a sample not reserved here, a closed ring ...)."""


class UserRingBufFullError(UserRingBufError, MapFullError):
    """No room in the ring for the record now (``ENOSPC``; ``ETIMEDOUT`` when a blocking wait timed out)."""

    default_errno = errno.ENOSPC


class UserRingBufTooBigError(UserRingBufError, InvalidMapArgumentError):
    """The record can never fit: larger than the ring, or than a dynptr can describe (``E2BIG``)."""

    default_errno = errno.E2BIG


@dataclass(eq=False)
class UserRingBufSample:
    """A reserved record: fill :attr:`data`, then submit or discard it through its producer.

    Attributes:
        data: the sample's bytes in the ring (writable, exactly :attr:`size` bytes); invalid
            after submit or discard.
        size: the sample size the header announces.
        position: the producer position of the record's header.
    """

    data: memoryview
    size: int
    position: int
    _offset: int = field(repr=False)
    _done: bool = field(default=False, repr=False)

    def __len__(self) -> int:
        return self.size


class RingProducer:
    """The user-space producer of a user ring buffer, over the ring's memory (pure).

    Args:
        consumer: at least 8 bytes whose first ``u64`` is the consumer position (read only).
        producer: at least 8 bytes whose first ``u64`` is the producer position.
        data: the data area followed by its second copy (``2 * size`` bytes).
        size: the data size (``max_entries``).
        mirrored: the second copy *is* the first one (the kernel's double mapping); if not, a
            record that wraps is copied to the start of the ring when committed.
        wait: ``wait(needed, timeout)`` blocks until the program side may have freed
            ``needed`` bytes (or the timeout, in seconds, ``None``: forever, passes); a
            spurious return is fine. Needed by :meth:`reserve_blocking`.
        label: names the ring in error messages.

    Not thread-safe by itself across processes; within one process a lock serialises
    reservations.
    """

    def __init__(
        self,
        consumer: memoryview,
        producer: memoryview,
        data: memoryview,
        size: int,
        *,
        mirrored: bool,
        wait: Callable[[int, float | None], object] | None = None,
        label: str = "user ring buffer",
    ) -> None:
        assert size > 0 and size & (size - 1) == 0 and len(data) >= 2 * size
        self._cons = consumer[:8].cast("Q")
        self._prod = producer[:8].cast("Q")
        self._data = data[: 2 * size]
        self._words = self._data.cast("I")
        self.size = size
        self.mask = size - 1
        self.mirrored = mirrored
        self._wait = wait
        self.label = label
        self._lock = threading.Lock()
        self._pending: dict[int, UserRingBufSample] = {}

    # --- positions ------------------------------------------------------------------------------

    @property
    def consumer_pos(self) -> int:
        """Bytes the program side has consumed (it only grows)."""
        return int(self._cons[0])

    @property
    def producer_pos(self) -> int:
        """Bytes reserved so far (it only grows)."""
        return int(self._prod[0])

    def available(self) -> int:
        """Bytes free for new records now (headers and padding included)."""
        return self.size - (self.producer_pos - self.consumer_pos)

    @staticmethod
    def record_size(size: int) -> int:
        """Bytes of ring a sample of ``size`` bytes takes (header and padding included)."""
        return round_up(size + BPF_RINGBUF_HDR_SZ)

    # --- reserve / commit ----------------------------------------------------------------------

    def reserve(self, size: int) -> UserRingBufSample:
        """Reserve a ``size``-byte sample (libbpf's ``user_ring_buffer__reserve``).

        Raises:
            UserRingBufTooBigError: the record would be larger than the ring, or ``size`` is
                negative or above the dynptr limit (``E2BIG``).
            UserRingBufFullError: not enough free room now (``ENOSPC``).
        """
        total = self._check_size(size)
        with self._lock:
            cons = self.consumer_pos
            prod = self.producer_pos
            if total > self.size - (prod - cons):
                raise UserRingBufFullError(
                    f"{self.label}: no room for a {size}-byte sample ({total} bytes with its header; "
                    f"{self.size - (prod - cons)} of {self.size} free)"
                )
            return self._reserve_at(prod, size, total)

    def reserve_blocking(self, size: int, timeout: float | None = None) -> UserRingBufSample:
        """Reserve a sample, waiting up to ``timeout`` seconds (``None``: forever) for room.

        The wait sleeps until the program side drains (libbpf's
        ``user_ring_buffer__reserve_blocking``); it never spins.

        Raises:
            UserRingBufTooBigError: as :meth:`reserve` (no wait: it can never fit).
            UserRingBufFullError: still no room when the timeout passed (``ETIMEDOUT``).
        """
        total = self._check_size(size)
        if self._wait is None:
            raise UserRingBufError(f"{self.label}: this producer cannot wait for room")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return self.reserve(size)
            except UserRingBufFullError as err:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise UserRingBufFullError(
                        f"{self.label}: no room for a {size}-byte sample after {timeout} s",
                        errno=errno.ETIMEDOUT,
                    ) from err
                self._wait(total, left)

    def _check_size(self, size: int) -> int:
        if not isinstance(size, int) or size < 0 or size > DYNPTR_MAX_SIZE:
            raise UserRingBufTooBigError(
                f"{self.label}: sample size must be an int in 0..{DYNPTR_MAX_SIZE}, got {size!r}"
            )
        total = self.record_size(size)
        if total > self.size:
            raise UserRingBufTooBigError(
                f"{self.label}: a {size}-byte sample takes {total} bytes, more than the {self.size}-byte ring"
            )
        return total

    def _reserve_at(self, prod: int, size: int, total: int) -> UserRingBufSample:
        off = prod & self.mask
        words = self._words
        words[off >> 2] = size | BPF_RINGBUF_BUSY_BIT
        words[(off >> 2) + 1] = 0
        self._prod[0] = prod + total  # publishes the header (release on x86-64)
        start = off + BPF_RINGBUF_HDR_SZ
        end = off + total
        if not self.mirrored and end > self.size:  # the second copy must show the ring's bytes
            self._data[self.size : end] = self._data[: end - self.size]
        sample = UserRingBufSample(self._data[start : start + size], size, prod, off)
        self._pending[off] = sample
        return sample

    def submit(self, sample: UserRingBufSample) -> None:
        """Commit ``sample``: the program side may now drain it (``user_ring_buffer__submit``)."""
        self._commit(sample, 0)

    def discard(self, sample: UserRingBufSample) -> None:
        """Give ``sample`` back: the program side skips it (``user_ring_buffer__discard``)."""
        self._commit(sample, BPF_RINGBUF_DISCARD_BIT)

    def _commit(self, sample: UserRingBufSample, bit: int) -> None:
        with self._lock:
            if sample._done or self._pending.get(sample._offset) is not sample:
                raise UserRingBufError(
                    f"{self.label}: the sample at position {sample.position} is not reserved in this ring"
                    + (" (already committed)" if sample._done else "")
                )
            del self._pending[sample._offset]
            sample._done = True
            off = sample._offset
            end = off + self.record_size(sample.size)
            if not self.mirrored and end > self.size:  # the tail was written in the second copy
                self._data[: end - self.size] = self._data[self.size : end]
            _release_view(sample.data)
            self._words[off >> 2] = sample.size | bit  # the one store that commits

    def write(self, data: bytes | bytearray | memoryview, *, timeout: float | None = 0.0) -> None:
        """Copy ``data`` in as one record and submit it.

        ``timeout`` 0 (the default) does not wait (:meth:`reserve`); otherwise as
        :meth:`reserve_blocking` (``None``: wait forever).
        """
        payload = memoryview(data).cast("B")
        n = len(payload)
        sample = self.reserve(n) if timeout == 0 else self.reserve_blocking(n, timeout)
        sample.data[:] = payload
        self.submit(sample)

    @property
    def pending(self) -> int:
        """Samples reserved and not yet submitted or discarded."""
        return len(self._pending)

    def release(self) -> None:
        """Drop the views into the ring (before its memory is unmapped)."""
        for sample in self._pending.values():
            sample._done = True
            _release_view(sample.data)
        self._pending.clear()
        self._words.release()
        self._data.release()
        self._cons.release()
        self._prod.release()


def _release_view(view: memoryview) -> None:
    """Invalidate a sample's view, unless the caller exported it further (numpy ...): then it
    stays usable until dropped (and keeps an mmapped ring mapped)."""
    try:
        view.release()
    except BufferError:
        pass


class UserRingBufMap(NoElementOps):
    """A user ring buffer (``BPF_MAP_TYPE_USER_RINGBUF``) in user space.

    User space writes with :meth:`reserve` / :meth:`submit` / :meth:`discard` / :meth:`write`
    (the :class:`RingProducer` API, also what :class:`ebpf.events.UserRingBuffer` offers for a
    kernel map); programs drain with :meth:`drain` (``bpf_user_ringbuf_drain``).
    """

    types = (MapType.USER_RINGBUF,)
    ring_kind = "user ring buffer"

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        super().__init__(defn, memory, ncpus=ncpus)
        size = ring_size(defn, f"{self.label}: user ring buffer")
        self.size = size
        self.mask = size - 1
        self.positions = HostBuffer(2 * PAGE_SIZE)
        """The consumer page (``u64`` consumer position at 0) and the producer page (at 4096)."""
        self._region = self._new_region("[data]", 2 * size)
        self.wakeups = 0
        """Producer wake-ups the kernel would have queued (``irq_work``) after drains."""
        self._space = threading.Condition()
        self._busy = False
        self.producer = RingProducer(
            self.positions.view[:8],
            self.positions.view[PAGE_SIZE : PAGE_SIZE + 8],
            self._region.view,
            size,
            mirrored=False,
            wait=self._wait_for_room,
            label=self.label,
        )
        self._cons = self.positions.view[:8].cast("Q")
        self._prod = self.positions.view[PAGE_SIZE : PAGE_SIZE + 8].cast("Q")
        self._words = self._region.view.cast("I")

    # --- layout ---------------------------------------------------------------------------------

    @property
    def data(self) -> memoryview:
        """The data area (``max_entries`` bytes), as an ``mmap`` of the kernel map shows it."""
        return self._region.view[: self.size]

    @property
    def data_address(self) -> int:
        """The program-visible address of the data area (its second copy follows it)."""
        return self._region.start

    @property
    def consumer_pos(self) -> int:
        return int(self._cons[0])

    @property
    def producer_pos(self) -> int:
        return int(self._prod[0])

    # --- the producer API (user space) ---------------------------------------------------------

    def reserve(self, size: int) -> UserRingBufSample:
        """:meth:`RingProducer.reserve`."""
        return self.producer.reserve(size)

    def reserve_blocking(self, size: int, timeout: float | None = None) -> UserRingBufSample:
        """:meth:`RingProducer.reserve_blocking` (another thread's drain makes room)."""
        return self.producer.reserve_blocking(size, timeout)

    def submit(self, sample: UserRingBufSample) -> None:
        """:meth:`RingProducer.submit`."""
        self.producer.submit(sample)

    def discard(self, sample: UserRingBufSample) -> None:
        """:meth:`RingProducer.discard`."""
        self.producer.discard(sample)

    def write(self, data: bytes | bytearray | memoryview, *, timeout: float | None = 0.0) -> None:
        """:meth:`RingProducer.write`."""
        self.producer.write(data, timeout=timeout)

    def available(self) -> int:
        """Bytes free for new records now."""
        return self.producer.available()

    def _wait_for_room(self, needed: int, timeout: float | None) -> bool:
        with self._space:
            return self._space.wait_for(lambda: self.producer.available() >= needed, timeout)

    # --- the program side -----------------------------------------------------------------------

    def _peek(self) -> tuple[int, int, int]:
        """(status, sample offset in the data region, sample size); status 0, or a negative errno,
        or 1 for a discarded record that was skipped (Rule 4)."""
        prod = self.producer_pos
        if prod % 8:
            return -errno.EINVAL, 0, 0
        cons = self.consumer_pos
        if cons >= prod:
            return -errno.ENODATA, 0, 0
        hdr = int(self._words[(cons & self.mask) >> 2])
        flags = hdr & _FLAG_BITS
        length = hdr & ~_FLAG_BITS
        total = round_up(length + BPF_RINGBUF_HDR_SZ)
        if total > prod - cons:
            return -errno.EINVAL, 0, 0
        if total > self.size or length > DYNPTR_MAX_SIZE:
            return -errno.E2BIG, 0, 0
        if flags & BPF_RINGBUF_DISCARD_BIT:
            self._cons[0] = cons + total
            return 1, 0, 0
        if flags & BPF_RINGBUF_BUSY_BIT:
            return -errno.ENODATA, 0, 0
        return 0, (cons + BPF_RINGBUF_HDR_SZ) & self.mask, length

    def drain(self, callback: Callable[[int, int], int], flags: int = 0) -> int:
        """``bpf_user_ringbuf_drain``: pass each record to ``callback(address, size)`` (Rule 4).

        ``address`` is the sample's program-visible address (contiguous even when the record
        wraps); a non-zero return of ``callback`` stops the drain after that record.

        Returns:
            The number of records drained (discarded ones not counted), or ``-EINVAL`` /
            ``-EBUSY`` / ``-E2BIG``.
        """
        if flags & ~_WAKEUP_FLAGS:
            return -errno.EINVAL
        if self._busy:
            return -errno.EBUSY
        self._busy = True
        samples = discarded = 0
        result: int | None = None
        try:
            ret = 0
            while samples < BPF_MAX_USER_RINGBUF_SAMPLES and ret == 0:
                samples += 1
                status, off, size = self._peek()
                if status == -errno.ENODATA:
                    samples -= 1
                    break
                if status == 1:
                    discarded += 1
                    continue
                if status < 0:
                    samples -= 1
                    result = status
                    break
                end = off + size
                if end > self.size:  # the sample wraps: the kernel's second mapping shows the start
                    view = self._region.view
                    view[self.size : end] = view[: end - self.size]
                ret = callback(self._region.start + off, size)
                self._cons[0] = self.consumer_pos + round_up(size + BPF_RINGBUF_HDR_SZ)
        finally:
            self._busy = False
            if flags & BPF_RB_FORCE_WAKEUP or (not flags & BPF_RB_NO_WAKEUP and samples > 0):
                with self._space:
                    self.wakeups += 1
                    self._space.notify_all()
        return samples - discarded if result is None else result

    def records(self) -> Iterator[bytes]:
        """The committed samples from the consumer position on, up to the first busy one,
        without consuming them (discarded ones skipped)."""
        pos, prod = self.consumer_pos, self.producer_pos
        view = self._region.view
        while pos < prod:
            hdr = int(self._words[(pos & self.mask) >> 2])
            if hdr & BPF_RINGBUF_BUSY_BIT:
                return
            length = hdr & ~_FLAG_BITS
            if not hdr & BPF_RINGBUF_DISCARD_BIT:
                start = (pos + BPF_RINGBUF_HDR_SZ) & self.mask
                if start + length <= self.size:
                    yield view[start : start + length].tobytes()
                else:
                    yield (view[start : self.size].tobytes() + view[: start + length - self.size].tobytes())
            pos += round_up(length + BPF_RINGBUF_HDR_SZ)

    def _release(self) -> None:
        self.producer.release()
        self._words.release()
        self._cons.release()
        self._prod.release()
        self.memory.unmap(self._region)

    # --- the Map operations: none ---------------------------------------------------------------

    def __len__(self) -> int:
        """Records between the consumer and the producer position (reserved, submitted or discarded)."""
        count, pos, prod = 0, self.consumer_pos, self.producer_pos
        while pos < prod:
            pos += round_up((int(self._words[(pos & self.mask) >> 2]) & ~_FLAG_BITS) + BPF_RINGBUF_HDR_SZ)
            count += 1
        return count
