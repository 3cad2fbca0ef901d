"""``BPF_MAP_TYPE_RINGBUF``: the program side (reserve/submit/discard/output) and a drain. Pure.

Rule 1 (``kernel/bpf/ringbuf.c``): ``key_size`` and ``value_size`` are 0 and
``max_entries`` (the data size in bytes) is a power of two and a multiple of the 4 KiB
page, else ``EINVAL``. ``lookup``/``update``/``delete``/``get_next_key`` are ``EINVAL``.

Rule 2: every record takes ``round_up(size + 8, 8)`` bytes of the ring (an 8-byte header,
as in the kernel); a reservation fails (:meth:`reserve` returns 0, the helper's NULL;
:meth:`output` returns ``-EAGAIN``) when the bytes not yet consumed would reach the ring
size. Records are consumed in reservation order; :meth:`consume` stops at the first
record still reserved (not yet submitted or discarded) and skips discarded ones.

Rule 3: a reserved sample is its own region of the memory model (the kernel maps the
data pages twice so that a record wrapping around the end is contiguous; one host buffer
per record gives the same guarantee here). The region is unmapped when the record is
consumed or discarded, so a program cannot use a sample after giving it up.

Not modelled: the user-space ``mmap`` layout (consumer/producer position pages), epoll
wake-ups (``BPF_RB_NO_WAKEUP`` / ``BPF_RB_FORCE_WAKEUP`` are accepted and ignored).
"""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

from ebpf.maps._base import Map, MapDef, MapFlags, round_up
from ebpf.maps._errors import InvalidMapArgumentError, MapOperationNotSupportedError
from ebpf.spec import MapType
from ebpf.vm.memory import Memory, Region

__all__ = ["RingBufMap", "RingBufQuery"]

PAGE_SIZE = 4096
BPF_RINGBUF_HDR_SZ = 8
BPF_RB_NO_WAKEUP = 1
BPF_RB_FORCE_WAKEUP = 2
RINGBUF_CREATE_FLAG_MASK = MapFlags.NUMA_NODE


class RingBufQuery(IntEnum):
    """``flags`` of ``bpf_ringbuf_query``."""

    AVAIL_DATA = 0  # BPF_RB_AVAIL_DATA
    RING_SIZE = 1  # BPF_RB_RING_SIZE
    CONS_POS = 2  # BPF_RB_CONS_POS
    PROD_POS = 3  # BPF_RB_PROD_POS


@dataclass(eq=False)
class _Record:
    length: int  # bytes of ring used, header included
    region: Region
    busy: bool = True
    discarded: bool = False


class RingBufMap(Map):
    """A ring buffer (``BPF_MAP_TYPE_RINGBUF``)."""

    types = (MapType.RINGBUF,)

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        super().__init__(defn, memory, ncpus=ncpus)
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
                f"{self.label}: ring buffer needs key_size 0, value_size 0 and max_entries a power of "
                f"2 and a multiple of {PAGE_SIZE}; got key_size {defn.key_size}, value_size "
                f"{defn.value_size}, max_entries {size}, flags {defn.flags:#x}"
            )
        self.size = size
        self.consumer_pos = 0
        self.producer_pos = 0
        self._records: deque[_Record] = deque()
        self._by_address: dict[int, _Record] = {}

    # --- program side ---------------------------------------------------------------------------

    def reserve(self, size: int, flags: int = 0) -> int:
        """``bpf_ringbuf_reserve``: the address of a new ``size``-byte sample, or 0 (NULL)."""
        if flags != 0 or size < 0:
            return 0
        length = round_up(size + BPF_RINGBUF_HDR_SZ)
        if self.producer_pos + length - self.consumer_pos > self.size - 1:
            return 0
        record = _Record(length, self._new_region(f"[sample@{self.producer_pos}]", size))
        self.producer_pos += length
        self._records.append(record)
        self._by_address[record.region.start] = record
        return record.region.start

    def _release_sample(self, address: int, flags: int, *, discard: bool) -> None:
        if flags & ~(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP):
            raise InvalidMapArgumentError(f"{self.label}: invalid ring buffer flags {flags:#x}")
        record = self._by_address.pop(address, None)
        if record is None:
            raise InvalidMapArgumentError(f"{self.label}: {address:#x} is not a reserved sample")
        record.busy = False
        record.discarded = discard
        if discard:
            self.memory.unmap(record.region)

    def submit(self, address: int, flags: int = 0) -> None:
        """``bpf_ringbuf_submit``: commit the sample at ``address``."""
        self._release_sample(address, flags, discard=False)

    def discard(self, address: int, flags: int = 0) -> None:
        """``bpf_ringbuf_discard``: drop the sample at ``address``."""
        self._release_sample(address, flags, discard=True)

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
        """``bpf_ringbuf_query``: available data, ring size, consumer or producer position."""
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

    def consume(self) -> list[bytes]:
        """Take every submitted record, in order, up to the first one still reserved."""
        out = []
        while self._records and not self._records[0].busy:
            record = self._records.popleft()
            if not record.discarded:
                out.append(record.region.view.tobytes())
                self.memory.unmap(record.region)
            self.consumer_pos += record.length
        return out

    def _release(self) -> None:
        for record in self._records:
            if not record.discarded:
                self.memory.unmap(record.region)
        self._records.clear()
        self._by_address.clear()

    # --- the Map operations: none ---------------------------------------------------------------

    def _no(self, what: str) -> MapOperationNotSupportedError:
        return MapOperationNotSupportedError(f"{self.label}: a ring buffer has no {what}", errno=errno.EINVAL)

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

    def __len__(self) -> int:
        """Records not yet consumed (reserved, submitted or discarded)."""
        return len(self._records)
