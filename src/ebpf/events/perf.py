"""Perf buffer consumer for ``BPF_MAP_TYPE_PERF_EVENT_ARRAY`` maps. Above the kernel line.

``bpf_perf_event_output`` writes into per-CPU perf rings: one ``PERF_COUNT_SW_BPF_OUTPUT``
software event per CPU, opened with ``perf_event_open`` (``sample_type = PERF_SAMPLE_RAW``),
mmapped (one metadata page + ``2^n`` data pages) and stored in the map at the CPU's index.

Each ring is a ``struct perf_event_mmap_page`` (``data_head`` at byte 1024, ``data_tail`` at
1032, ``data_offset``/``data_size`` at 1040/1048) followed by the data pages, which are *not*
mapped twice: a record that wraps is copied in two parts. Records start with
``struct perf_event_header {u32 type; u16 misc; u16 size}``:

* ``PERF_RECORD_SAMPLE`` (9): ``u32 size`` then the raw bytes (the program's data padded so the
  record stays 8-byte aligned; the padding is delivered too, as libbpf does);
* ``PERF_RECORD_LOST`` (2): ``u64 id, u64 lost`` — samples the kernel dropped because the ring
  was full. They are counted in :attr:`PerfBuffer.lost` (per CPU in :attr:`lost_per_cpu`) and
  reported to ``lost_callback``: no loss is silent.

Rule: the reader deletes its map entries and closes its events on :meth:`close`.
"""

from __future__ import annotations

import mmap
import os
import select
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, Self

from ebpf.attach._abi import (
    PERF_EVENT_IOC_DISABLE,
    PERF_EVENT_IOC_ENABLE,
    PerfEventAttr,
    PerfType,
    perf_event_open,
    perf_ioctl,
)
from ebpf.errors import BPFError, SyscallError
from ebpf.events.ringbuf import map_fdinfo
from ebpf.kernel.fd import FD
from ebpf.kernel.map import Map

__all__ = ["PerfBuffer", "PerfBufferError", "online_cpus"]

PERF_COUNT_SW_BPF_OUTPUT = 10
PERF_SAMPLE_RAW = 1 << 10
PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9
_PERF_EVENT_ARRAY = 4  # BPF_MAP_TYPE_PERF_EVENT_ARRAY
_HEAD = struct.Struct("=Q")
_HDR = struct.Struct("=IHH")
_U32 = struct.Struct("=I")
_LOST = struct.Struct("=QQ")

SampleCallback = Callable[[int, bytes], Any]
LostCallback = Callable[[int, int], Any]


class PerfBufferError(BPFError):
    """A perf buffer cannot be set up or read."""


class _HasFD(Protocol):
    def fileno(self) -> int: ...


def online_cpus() -> list[int]:
    """CPU numbers from ``/sys/devices/system/cpu/online`` (``"0-3,5"``)."""
    try:
        with open("/sys/devices/system/cpu/online") as f:
            text = f.read().strip()
    except OSError:
        return list(range(os.cpu_count() or 1))
    cpus: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


@dataclass
class _CpuRing:
    cpu: int
    fd: int
    mm: mmap.mmap
    data_offset: int
    data_size: int


class PerfBuffer:
    """Reads a perf event array map on every online CPU (libbpf's ``perf_buffer__new`` / ``__poll``).

    Args:
        perf_map: the PERF_EVENT_ARRAY map (fd or an object with ``fileno()``), kept open by the caller.
        callback: ``callback(cpu, raw_bytes)`` for each sample.
        lost_callback: ``lost_callback(cpu, count)`` for each LOST record.
        pages: data pages per CPU (a power of two).
        wakeup_events: wake the reader after this many samples (1: every sample).
        record_type: decode each sample with ``record_type.unpack`` (e.g. a class from
            :func:`ebpf.btf.record_class`) before calling ``callback``.
    """

    def __init__(
        self,
        perf_map: int | _HasFD,
        callback: SampleCallback | None = None,
        lost_callback: LostCallback | None = None,
        *,
        pages: int = 8,
        wakeup_events: int = 1,
        record_type: Any = None,
    ) -> None:
        if pages <= 0 or pages & (pages - 1):
            raise PerfBufferError(f"pages must be a power of two, got {pages}")
        self._map_fd = perf_map if isinstance(perf_map, int) else int(perf_map.fileno())
        info = map_fdinfo(self._map_fd)
        if info.get("map_type") != _PERF_EVENT_ARRAY:
            raise PerfBufferError(
                f"fd {self._map_fd} is not a perf event array (map_type {info.get('map_type')}, "
                f"want {_PERF_EVENT_ARRAY})"
            )
        if record_type is not None and callback is not None:
            unpack, size, deliver = record_type.unpack, int(record_type.size), callback

            def callback(cpu: int, raw: bytes) -> Any:  # the raw sample carries padding after the record
                return deliver(cpu, unpack(raw[:size]))

        self._map = Map.from_fd(FD(os.dup(self._map_fd)))  # our own descriptor of the caller's map
        self.callback = callback
        self.lost_callback = lost_callback
        self.lost = 0
        self.lost_per_cpu: dict[int, int] = {}
        self._rings: list[_CpuRing] = []
        self._epoll = select.epoll()
        self._closed = False
        max_entries = info.get("max_entries", 0)
        try:
            for cpu in online_cpus():
                if cpu >= max_entries:
                    break
                self._open_cpu(cpu, pages, wakeup_events)
        except BaseException:
            self.close()
            raise

    def _open_cpu(self, cpu: int, pages: int, wakeup_events: int) -> None:
        attr = PerfEventAttr(
            type=PerfType.SOFTWARE,
            config=PERF_COUNT_SW_BPF_OUTPUT,
            sample_type=PERF_SAMPLE_RAW,
            sample_period=1,
            wakeup_events=wakeup_events,
        )
        fd = perf_event_open(attr, -1, cpu)
        try:
            size = (1 + pages) * mmap.PAGESIZE
            try:
                mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            except OSError as err:
                raise PerfBufferError(f"mmap of the perf ring of CPU {cpu}: {err.strerror}") from err
            data_offset, data_size = struct.unpack_from("=QQ", mm, 1040)
            if not data_size:  # kernels before 4.1 leave these 0
                data_offset, data_size = mmap.PAGESIZE, pages * mmap.PAGESIZE
            ring = _CpuRing(cpu, fd, mm, data_offset, data_size)
            self._set_slot(cpu, fd)
            perf_ioctl(fd, PERF_EVENT_IOC_ENABLE)
        except BaseException:
            os.close(fd)
            raise
        self._rings.append(ring)
        self._epoll.register(fd, select.EPOLLIN)

    def _set_slot(self, cpu: int, fd: int | None) -> None:
        if fd is None:
            self._map.delete(_U32.pack(cpu))
        else:
            self._map.update(_U32.pack(cpu), _U32.pack(fd))

    @property
    def cpus(self) -> list[int]:
        return [ring.cpu for ring in self._rings]

    def poll(self, timeout: float | None = None) -> int:
        """Wait up to ``timeout`` seconds (None: forever) for samples, then read every CPU's ring.

        Returns the number of samples delivered.
        """
        self._check_open()
        delivered = self.consume()
        if delivered:
            return delivered
        self._epoll.poll(-1 if timeout is None else timeout)
        return self.consume()

    def consume(self) -> int:
        """Read every CPU's ring without waiting; returns the number of samples delivered."""
        self._check_open()
        if self.callback is None:
            raise PerfBufferError("consume() needs a callback")
        return sum(self._drain(ring, self.callback) for ring in self._rings)

    def _drain(self, ring: _CpuRing, cb: SampleCallback) -> int:
        mm, base, size = ring.mm, ring.data_offset, ring.data_size
        head = _HEAD.unpack_from(mm, 1024)[0]
        tail = _HEAD.unpack_from(mm, 1032)[0]
        count = 0
        while tail < head:
            off = tail % size
            if off + 8 <= size:
                rtype, _misc, rsize = _HDR.unpack_from(mm, base + off)
            else:
                rtype, _misc, rsize = _HDR.unpack(self._read(mm, base, size, off, 8))
            if rsize < 8:
                raise PerfBufferError(f"corrupt perf record of size {rsize} on CPU {ring.cpu}")
            if off + rsize <= size:
                body = mm[base + off + 8 : base + off + rsize]
            else:
                body = self._read(mm, base, size, off + 8, rsize - 8)
            if rtype == PERF_RECORD_SAMPLE:
                (raw_size,) = _U32.unpack_from(body, 0)
                cb(ring.cpu, body[4 : 4 + raw_size])
                count += 1
            elif rtype == PERF_RECORD_LOST:
                _id, lost = _LOST.unpack_from(body, 0)
                self.lost += lost
                self.lost_per_cpu[ring.cpu] = self.lost_per_cpu.get(ring.cpu, 0) + lost
                if self.lost_callback is not None:
                    self.lost_callback(ring.cpu, lost)
            tail += rsize
        _HEAD.pack_into(mm, 1032, tail)
        return count

    @staticmethod
    def _read(mm: mmap.mmap, base: int, size: int, off: int, n: int) -> bytes:
        off %= size
        first = min(n, size - off)
        return mm[base + off : base + off + first] + mm[base : base + n - first]

    def _check_open(self) -> None:
        if self._closed:
            raise PerfBufferError("the perf buffer reader is closed")

    def close(self) -> None:
        """Disable the events, remove them from the map, unmap and close. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for ring in self._rings:
            try:
                perf_ioctl(ring.fd, PERF_EVENT_IOC_DISABLE)
                self._set_slot(ring.cpu, None)
            except (SyscallError, KeyError):
                pass  # the slot may already be empty; the event still closes below
            ring.mm.close()
            os.close(ring.fd)
        self._rings.clear()
        self._epoll.close()
        if hasattr(self, "_map"):
            self._map.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
