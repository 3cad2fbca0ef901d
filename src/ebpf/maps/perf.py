"""``BPF_MAP_TYPE_PERF_EVENT_ARRAY`` and user-space perf buffers. Pure: no kernel access.

Rule 1 (kernel, ``kernel/bpf/arraymap.c`` fd arrays): ``key_size`` and ``value_size`` are 4
(an index and a perf event fd), ``max_entries`` > 0, ``BPF_F_RDONLY_PROG`` /
``BPF_F_WRONLY_PROG`` / ``BPF_F_MMAPABLE`` / ``BPF_F_NO_PREALLOC`` are ``EINVAL``;
``BPF_F_PRESERVE_ELEMS`` is allowed (only here). The syscall's ``lookup`` is
``ENOTSUPP`` (524), ``update`` needs a perf event fd (``EBADF`` for anything else; here:
:meth:`PerfEventArrayMap.open_buffer`), ``delete`` of an index past the end is ``E2BIG``
and of an empty slot ``ENOENT``.
(libbpf, not the kernel: a ``MapSpec`` with ``max_entries`` 0 gets one slot per CPU; see
``maps.def_from_spec``.)

Rule 2 (the helper, ``bpf_perf_event_output``): the low 32 bits of ``flags`` are the index,
``BPF_F_CURRENT_CPU`` (``0xffffffff``) meaning the running CPU; other bits are ``EINVAL``
(except ``BPF_F_CTXLEN_MASK`` for the skb/xdp variants, which append that many bytes of the
packet); an index past the end is ``-E2BIG``; an empty slot ``-ENOENT``; a buffer opened for
another CPU than the running one ``-EOPNOTSUPP``; a full buffer ``-ENOSPC`` and the sample
is counted as lost.

Rule 3 (the perf ring, ``kernel/events/ring_buffer.c``): a buffer has ``pages * 4096`` data
bytes (``pages`` a power of two, as libbpf requires). A sample record takes
``8 + round_up(4 + size, 8)`` bytes (``perf_event_header`` + ``u32`` raw size + data padded
so the record stays 8-aligned); the consumer sees the raw data *with* that padding, as
libbpf's callback does (the kernel skips over the padding, leaving stale ring bytes there;
here it is zero). A record fits while it leaves at least one byte free
(``CIRC_SPACE``). After losses, the next sample that fits is preceded by a
``PERF_RECORD_LOST`` record (24 bytes) carrying the count.
"""

from __future__ import annotations

import errno
import struct
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from ebpf.errors import KeyNotFoundError
from ebpf.maps._base import ENOTSUPP, MapDef, round_up
from ebpf.maps._errors import InvalidMapArgumentError, MapFullError, MapOperationNotSupportedError
from ebpf.maps.array import FdArrayMap
from ebpf.spec import MapType
from ebpf.vm.memory import Memory

__all__ = [
    "BPF_F_CTXLEN_MASK",
    "BPF_F_CURRENT_CPU",
    "BPF_F_INDEX_MASK",
    "PerfBuffer",
    "PerfEventArrayMap",
    "PerfRecord",
]

_U32 = struct.Struct("<I")
PAGE_SIZE = 4096
BPF_F_INDEX_MASK = 0xFFFFFFFF
BPF_F_CURRENT_CPU = BPF_F_INDEX_MASK
BPF_F_CTXLEN_MASK = 0xFFFFF << 32
PERF_HEADER_SIZE = 8  # struct perf_event_header {u32 type; u16 misc; u16 size}
LOST_RECORD_SIZE = PERF_HEADER_SIZE + 16  # PERF_RECORD_LOST: u64 id, u64 lost


@dataclass(frozen=True)
class PerfRecord:
    """One record read from a perf buffer: a sample (``data``) or a loss report (``lost``).

    Attributes:
        cpu: the CPU the buffer belongs to.
        data: the raw sample (padded as the kernel pads it), or ``None`` for a loss record.
        lost: for a ``PERF_RECORD_LOST``: how many samples were dropped before this point.
    """

    cpu: int
    data: bytes | None
    lost: int = 0


class PerfBuffer:
    """One CPU's perf ring: records in order, the kernel's space accounting and loss count."""

    def __init__(self, cpu: int, pages: int) -> None:
        if pages <= 0 or pages & (pages - 1):
            raise InvalidMapArgumentError(f"perf buffer pages must be a power of 2, got {pages}")
        self.cpu = cpu
        self.size = pages * PAGE_SIZE
        self.head = 0  # bytes written (perf_event_mmap_page.data_head)
        self.tail = 0  # bytes consumed (data_tail)
        self.lost_pending = 0  # samples lost and not yet reported by a LOST record
        self.lost_total = 0
        self._records: deque[tuple[int, PerfRecord]] = deque()  # (bytes used, record)

    def _space(self) -> int:
        return (self.tail - (self.head + 1)) % self.size  # CIRC_SPACE

    def write(self, data: bytes) -> bool:
        """Append a sample; ``False`` (and one more lost sample) if it does not fit."""
        need = PERF_HEADER_SIZE + round_up(len(data) + 4)
        extra = LOST_RECORD_SIZE if self.lost_pending else 0
        if self._space() < need + extra:
            self.lost_pending += 1
            self.lost_total += 1
            return False
        if extra:
            self._records.append((extra, PerfRecord(self.cpu, None, self.lost_pending)))
            self.lost_pending = 0
        raw = data.ljust(round_up(len(data) + 4) - 4, b"\0")
        self._records.append((need, PerfRecord(self.cpu, raw)))
        self.head += need + extra
        return True

    def read(self) -> list[PerfRecord]:
        """Take every record, in order, and free their space."""
        out = [record for _, record in self._records]
        self._records.clear()
        self.tail = self.head
        return out

    def __len__(self) -> int:
        return len(self._records)


class PerfEventArrayMap(FdArrayMap[PerfBuffer]):
    """A perf event array (``BPF_MAP_TYPE_PERF_EVENT_ARRAY``) whose slots hold user-space buffers."""

    types = (MapType.PERF_EVENT_ARRAY,)
    kind = "perf event array"
    entry = "buffer"

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        super().__init__(defn, memory, ncpus=ncpus)

    # --- user side: buffers ---------------------------------------------------------------------

    def open_buffer(self, index: int, *, cpu: int | None = None, pages: int = 8) -> PerfBuffer:
        """Put a buffer for ``cpu`` (default: ``index``) in slot ``index`` (``perf_event_open``
        of a ``PERF_COUNT_SW_BPF_OUTPUT`` event + ``BPF_MAP_UPDATE_ELEM`` with its fd).

        Raises:
            MapFullError: ``index`` is past the end (``E2BIG``).
            InvalidMapArgumentError: ``cpu`` out of range or ``pages`` not a power of 2.
        """
        if not 0 <= index < self.max_entries:
            raise MapFullError(f"{self.label}: index {index} >= max_entries {self.max_entries}")
        cpu = index if cpu is None else cpu
        self._check_cpu(cpu)
        buffer = self._slots[index] = PerfBuffer(cpu, pages)
        return buffer

    def open_buffers(self, pages: int = 8) -> None:
        """One buffer per CPU at index = CPU (what libbpf's ``perf_buffer__new`` sets up)."""
        for cpu in range(min(self.ncpus, self.max_entries)):
            self.open_buffer(cpu, pages=pages)

    def buffer(self, index: int) -> PerfBuffer | None:
        """The buffer in slot ``index``, if any."""
        return self._slots.get(index)

    def read(self, index: int) -> list[bytes]:
        """The samples waiting in slot ``index`` (loss records left out; see :meth:`lost`)."""
        buffer = self._slots.get(index)
        if buffer is None:
            raise KeyNotFoundError(_U32.pack(index & 0xFFFFFFFF), f"{self.label}: no buffer at {index}")
        return [r.data for r in buffer.read() if r.data is not None]

    def poll(self) -> list[PerfRecord]:
        """Every record of every buffer, slot by slot, each in order (``perf_buffer__poll``)."""
        return [record for index in sorted(self._slots) for record in self._slots[index].read()]

    def lost(self, index: int | None = None) -> int:
        """Samples dropped because a buffer was full (of slot ``index``, or of all)."""
        if index is not None:
            buffer = self._slots.get(index)
            return buffer.lost_total if buffer is not None else 0
        return sum(b.lost_total for b in self._slots.values())

    # --- program side ---------------------------------------------------------------------------

    def output(self, flags: int, data: bytes, *, cpu: int = 0, ctx: bytes | None = None) -> int:
        """``bpf_perf_event_output`` on ``cpu``: 0 or a negative errno.

        ``ctx`` is the packet of the skb/xdp variants: ``(flags & BPF_F_CTXLEN_MASK) >> 32``
        of its bytes are appended to ``data`` (more than it has is ``-EFAULT``).
        """
        allowed = BPF_F_INDEX_MASK | (BPF_F_CTXLEN_MASK if ctx is not None else 0)
        if flags & ~allowed:
            return -errno.EINVAL
        if ctx is not None:
            ctx_len = (flags & BPF_F_CTXLEN_MASK) >> 32
            if ctx_len > len(ctx):
                return -errno.EFAULT
            data = bytes(data) + bytes(ctx[:ctx_len])
        index = flags & BPF_F_INDEX_MASK
        if index == BPF_F_CURRENT_CPU:
            index = cpu
        if index >= self.max_entries:
            return -errno.E2BIG
        buffer = self._slots.get(index)
        if buffer is None:
            return -errno.ENOENT
        if buffer.cpu != cpu:
            return -errno.EOPNOTSUPP
        return 0 if buffer.write(bytes(data)) else -errno.ENOSPC

    # --- the Map operations ---------------------------------------------------------------------

    def lookup(self, key: bytes) -> bytes:
        self._index(key)
        raise MapOperationNotSupportedError(
            f"{self.label}: perf event arrays cannot be looked up", errno=ENOTSUPP
        )

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        self._index(key)
        raise MapOperationNotSupportedError(
            f"{self.label}: a value must be a perf event fd and user space has none; use open_buffer()",
            errno=errno.EBADF,
        )

    def __iter__(self) -> Iterator[bytes]:
        return (_U32.pack(i) for i in range(self.max_entries))
