"""``BPF_MAP_TYPE_RINGBUF`` with the kernel's memory layout: program side and consumer. Pure.

Rule 1 (``kernel/bpf/ringbuf.c``): ``key_size`` and ``value_size`` are 0, ``flags`` at most
``BPF_F_NUMA_NODE`` and ``max_entries`` (the data size in bytes) a power of two and a
multiple of the 4 KiB page, else ``EINVAL``. ``lookup``/``update``/``delete``/``get_next_key``
are ``EINVAL``.

Rule 2 (the layout): the data area is ``max_entries`` bytes; a record at producer position
``p`` sits at ``p & (size - 1)``: an 8-byte header, then the sample. The header is
``u32 len`` (the sample size, bit 31 ``BPF_RINGBUF_BUSY_BIT`` while reserved, bit 30
``BPF_RINGBUF_DISCARD_BIT`` once discarded) and ``u32 pg_off`` (the header's page offset
from the start of the kernel's ``struct bpf_ringbuf``: 3 metadata pages, then data). A
record takes ``round_up(size + 8, 8)`` bytes. The consumer and producer positions are
``u64`` counters that only grow (:attr:`RingBufMap.positions`: the consumer page at 0,
the producer page at 4096, as ``mmap`` shows them).

Rule 3 (reserve, as ``__bpf_ringbuf_reserve``): ``flags`` other than 0 or a size above
``UINT32_MAX / 4`` give NULL (0); so does a record that would put the producer more than
``size - 1`` bytes ahead of the consumer, or of the oldest record still reserved. A NULL
for lack of room counts in :attr:`RingBufMap.dropped`. The returned address points into
the ring (one region of the memory model: the data area followed by a second copy of it,
as the kernel maps the data pages twice so a record that wraps is contiguous). Submit
clears the busy bit, discard sets the discard bit; ``BPF_RB_NO_WAKEUP`` /
``BPF_RB_FORCE_WAKEUP`` decide whether a wake-up is counted (:attr:`RingBufMap.wakeups`):
by default only when the record is the one the consumer waits for.

Rule 4 (consumer, as libbpf's ``ring_buffer__consume``): records are taken in order from
the consumer position, stopping at the first busy one; discarded ones are skipped; the
consumer position advances past each record taken.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable, Iterator
from enum import IntEnum

from ebpf.maps._base import Map, MapDef, MapFlags, round_up
from ebpf.maps._errors import InvalidMapArgumentError, MapOperationNotSupportedError
from ebpf.spec import MapType
from ebpf.vm.memory import HostBuffer, Memory

__all__ = [
    "BPF_RB_FORCE_WAKEUP",
    "BPF_RB_NO_WAKEUP",
    "BPF_RINGBUF_BUSY_BIT",
    "BPF_RINGBUF_DISCARD_BIT",
    "BPF_RINGBUF_HDR_SZ",
    "RingBufMap",
    "RingBufQuery",
]

PAGE_SIZE = 4096
BPF_RINGBUF_HDR_SZ = 8
BPF_RINGBUF_BUSY_BIT = 1 << 31
BPF_RINGBUF_DISCARD_BIT = 1 << 30
BPF_RB_NO_WAKEUP = 1
BPF_RB_FORCE_WAKEUP = 2
RINGBUF_CREATE_FLAG_MASK = MapFlags.NUMA_NODE
RINGBUF_MAX_RECORD_SZ = 0xFFFFFFFF // 4
RINGBUF_NR_META_PAGES = 3  # struct bpf_ringbuf: metadata, consumer_pos, producer_pos pages
_HDR = struct.Struct("<II")
_POS = struct.Struct("<Q")


class RingBufQuery(IntEnum):
    """``flags`` of ``bpf_ringbuf_query``."""

    AVAIL_DATA = 0  # BPF_RB_AVAIL_DATA
    RING_SIZE = 1  # BPF_RB_RING_SIZE
    CONS_POS = 2  # BPF_RB_CONS_POS
    PROD_POS = 3  # BPF_RB_PROD_POS


def ring_size(defn: MapDef, what: str) -> int:
    """The data size of a (user) ring buffer map, checked as ``ringbuf_map_alloc`` checks it.

    Raises:
        InvalidMapArgumentError: key or value size not 0, unknown flags, or ``max_entries``
            not a power of 2 and a multiple of the page size (the kernel: ``EINVAL``).
    """
    size = defn.max_entries
    if (
        defn.key_size != 0
        or defn.value_size != 0
        or defn.flags & ~RINGBUF_CREATE_FLAG_MASK
        or size == 0
        or size & (size - 1)
        or size % PAGE_SIZE
    ):
        raise InvalidMapArgumentError(
            f"{what} needs key_size 0, value_size 0 and max_entries a power of "
            f"2 and a multiple of {PAGE_SIZE}; got key_size {defn.key_size}, value_size "
            f"{defn.value_size}, max_entries {size}, flags {defn.flags:#x}"
        )
    return size


class NoElementOps(Map):
    """The element operations a ring has none of: the kernel answers each with ``EINVAL``."""

    ring_kind = "ring buffer"

    def _no(self, what: str) -> MapOperationNotSupportedError:
        return MapOperationNotSupportedError(
            f"{self.label}: a {self.ring_kind} has no {what}", errno=errno.EINVAL
        )

    def lookup(self, key: bytes) -> bytes:
        raise self._no("lookup")

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        raise self._no("update")

    def delete(self, key: bytes) -> None:
        raise self._no("delete")

    def get_next_key(self, key: bytes | None) -> bytes:
        raise self._no("keys")

    def __iter__(self) -> Iterator[bytes]:
        raise self._no("keys")

    def __contains__(self, key: object) -> bool:
        return False


class RingBufMap(NoElementOps):
    """A ring buffer (``BPF_MAP_TYPE_RINGBUF``)."""

    types = (MapType.RINGBUF,)

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        super().__init__(defn, memory, ncpus=ncpus)
        size = ring_size(defn, f"{self.label}: ring buffer")
        self.size = size
        self.mask = size - 1
        self.positions = HostBuffer(2 * PAGE_SIZE)
        """The consumer page (``u64`` consumer position at 0) and the producer page (at 4096)."""
        self._region = self._new_region("[data]", 2 * size)
        self.pending_pos = 0
        self.dropped = 0
        """Reservations (and ``output`` calls) that failed for lack of room."""
        self.wakeups = 0
        """Consumer wake-ups the kernel would have queued (``irq_work``)."""
        self._busy: dict[int, int] = {}  # ring offset -> producer position of reserved records

    # --- layout ---------------------------------------------------------------------------------

    @property
    def data(self) -> memoryview:
        """The data area (``max_entries`` bytes), as the consumer's ``mmap`` shows it."""
        return self._region.view[: self.size]

    @property
    def consumer_pos(self) -> int:
        value: int = _POS.unpack_from(self.positions.view, 0)[0]
        return value

    @consumer_pos.setter
    def consumer_pos(self, pos: int) -> None:
        _POS.pack_into(self.positions.view, 0, pos)

    @property
    def producer_pos(self) -> int:
        value: int = _POS.unpack_from(self.positions.view, PAGE_SIZE)[0]
        return value

    def _header(self, pos: int) -> tuple[int, int]:
        length, pg_off = _HDR.unpack_from(self._region.view, pos & self.mask)
        return length, pg_off

    @staticmethod
    def record_length(header_len: int) -> int:
        """Bytes of ring a record with this header ``len`` word takes (header included)."""
        return round_up((header_len & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT)) + BPF_RINGBUF_HDR_SZ)

    # --- program side ---------------------------------------------------------------------------

    def reserve(self, size: int, flags: int = 0) -> int:
        """``bpf_ringbuf_reserve``: the address of a new ``size``-byte sample, or 0 (NULL)."""
        if flags != 0 or not 0 <= size <= RINGBUF_MAX_RECORD_SZ:
            return 0
        length = round_up(size + BPF_RINGBUF_HDR_SZ)
        if length > self.size:
            self.dropped += 1
            return 0
        cons_pos = self.consumer_pos
        prod_pos = self.producer_pos
        pend_pos = self.pending_pos
        while pend_pos < prod_pos:
            hdr_len, _ = self._header(pend_pos)
            if hdr_len & BPF_RINGBUF_BUSY_BIT:
                break
            pend_pos += self.record_length(hdr_len)
        self.pending_pos = pend_pos
        new_prod_pos = prod_pos + length
        if new_prod_pos - cons_pos > self.mask or new_prod_pos - pend_pos > self.mask:
            self.dropped += 1
            return 0
        off = prod_pos & self.mask
        pg_off = RINGBUF_NR_META_PAGES + off // PAGE_SIZE
        _HDR.pack_into(self._region.view, off, size | BPF_RINGBUF_BUSY_BIT, pg_off)
        _POS.pack_into(self.positions.view, PAGE_SIZE, new_prod_pos)
        self._busy[off] = prod_pos
        end = off + length
        if end > self.size:  # wraps: the second mapping shows the ring's start, as in the kernel
            view = self._region.view
            view[self.size : end] = view[: end - self.size]
        return self._region.start + off + BPF_RINGBUF_HDR_SZ

    def _commit(self, address: int, flags: int, *, discard: bool) -> None:
        off = address - BPF_RINGBUF_HDR_SZ - self._region.start
        pos = self._busy.pop(off, None)
        if pos is None:
            raise InvalidMapArgumentError(f"{self.label}: {address:#x} is not a reserved sample")
        hdr_len, pg_off = self._header(pos)
        new_len = hdr_len ^ BPF_RINGBUF_BUSY_BIT
        if discard:
            new_len |= BPF_RINGBUF_DISCARD_BIT
        _HDR.pack_into(self._region.view, off, new_len, pg_off)
        end = off + self.record_length(hdr_len)
        if end > self.size:  # a wrapped record: its tail was written through the second mapping
            view = self._region.view
            view[: end - self.size] = view[self.size : end]
        if flags & BPF_RB_FORCE_WAKEUP or (
            self.consumer_pos & self.mask == off and not flags & BPF_RB_NO_WAKEUP
        ):
            self.wakeups += 1

    def submit(self, address: int, flags: int = 0) -> None:
        """``bpf_ringbuf_submit``: commit the sample at ``address`` (other flag bits are ignored).

        Raises:
            InvalidMapArgumentError: ``address`` is not a sample reserved in this ring (the
                verifier rejects such a program; the user-space VM may not have a verifier).
        """
        self._commit(address, flags, discard=False)

    def discard(self, address: int, flags: int = 0) -> None:
        """``bpf_ringbuf_discard``: drop the sample at ``address`` (the consumer skips it)."""
        self._commit(address, flags, discard=True)

    def output(self, data: bytes, flags: int = 0) -> int:
        """``bpf_ringbuf_output``: copy ``data`` in as one record; 0, ``-EINVAL`` or ``-EAGAIN``."""
        if flags & ~(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP):
            return -errno.EINVAL
        address = self.reserve(len(data))
        if address == 0:
            return -errno.EAGAIN
        self.memory.write_bytes(address, data)
        self.submit(address, flags)
        return 0

    def query(self, what: int) -> int:
        """``bpf_ringbuf_query``: available data, ring size, consumer or producer position (else 0)."""
        if what == RingBufQuery.AVAIL_DATA:
            return self.producer_pos - self.consumer_pos
        if what == RingBufQuery.RING_SIZE:
            return self.size
        if what == RingBufQuery.CONS_POS:
            return self.consumer_pos
        if what == RingBufQuery.PROD_POS:
            return self.producer_pos
        return 0

    # --- user side ------------------------------------------------------------------------------

    def records(self) -> Iterator[bytes]:
        """Take records one at a time, in order, up to the first busy one (skipping discarded).

        The consumer position advances past each record before it is yielded.
        """
        view = self._region.view
        while True:
            cons_pos = self.consumer_pos
            if cons_pos >= self.producer_pos:
                return
            hdr_len, _ = self._header(cons_pos)
            if hdr_len & BPF_RINGBUF_BUSY_BIT:
                return
            self.consumer_pos = cons_pos + self.record_length(hdr_len)
            if not hdr_len & BPF_RINGBUF_DISCARD_BIT:
                start = (cons_pos & self.mask) + BPF_RINGBUF_HDR_SZ
                yield view[start : start + hdr_len].tobytes()

    def consume(self) -> list[bytes]:
        """Take every submitted record, in order, up to the first one still reserved."""
        return list(self.records())

    def process(self, callback: Callable[[bytes], int | None]) -> int:
        """libbpf's ``ring_buffer__consume`` with a sample callback.

        Returns:
            The number of records handed to ``callback``, or the first negative value it
            returned (processing stops there; that record counts as consumed).
        """
        count = 0
        for record in self.records():
            ret = callback(record)
            if ret is not None and ret < 0:
                return ret
            count += 1
        return count

    def poll(self, max_records: int | None = None) -> list[bytes]:
        """Records available now, in order (at most ``max_records``); never blocks.

        The user-space analogue of ``ring_buffer__poll``: there is no other producer to
        wait for, so it returns what is committed and clears :attr:`wakeups`.
        """
        self.wakeups = 0
        out: list[bytes] = []
        if max_records is not None and max_records <= 0:
            return out
        for record in self.records():
            out.append(record)
            if max_records is not None and len(out) >= max_records:
                break
        return out

    def _release(self) -> None:
        self.memory.unmap(self._region)
        self._busy.clear()

    def __len__(self) -> int:
        """Records between the consumer and the producer (reserved, submitted or discarded)."""
        count, pos = 0, self.consumer_pos
        while pos < self.producer_pos:
            hdr_len, _ = self._header(pos)
            pos += self.record_length(hdr_len)
            count += 1
        return count
