"""Ring buffer consumer for ``BPF_MAP_TYPE_RINGBUF`` maps. Above the kernel line (mmap + epoll).

A BPF ring buffer (``Documentation/bpf/ringbuf.rst``) is shared with user space through
``mmap`` of the map's file descriptor:

* page 0 (read-write): the consumer position, a ``u64`` the reader advances;
* from page 1 (read-only): the producer position (``u64``) on its own page, then the data
  area of ``max_entries`` bytes, mapped **twice** back to back, so a record that wraps around
  the end is contiguous in the mapping.

Each record starts with an 8-byte header: ``u32 len`` whose bit 31 is BUSY (reserved, not yet
committed) and bit 30 DISCARD (committed but discarded), then ``u32 pg_off``; the record's
data follows and the next header is at the next multiple of 8.

Rule 1: records are delivered in producer order and never skipped; a BUSY record stops the
scan until it is committed (the kernel's guarantee of in-order visibility).

Rule 2: the consumer position is published after every run of at most ``_CHUNK`` records and
at the end of a drain, so a producer faster than the reader gets space back while the reader works.
Records a producer could not reserve are *not* silently lost here: the producer's
``bpf_ringbuf_reserve``/``output`` fails, and it is the program's job to count that (the
bundled benchmark program does).

Rule 3: memory ordering relies on x86-64's TSO (and the GIL's full barriers around the
calls that read positions); the position reads are single aligned 8-byte loads.

Waiting: :meth:`RingBuffer.poll` sleeps in ``epoll_wait`` on the map fds (the kernel wakes
the reader when a record is committed, unless the producer passed ``BPF_RB_NO_WAKEUP``), so
an idle reader costs no CPU; with ``timeout=0`` it only drains what is there.
"""

from __future__ import annotations

import mmap
import select
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Self

from ebpf.errors import BPFError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["RingBuffer", "RingBufferError", "map_fdinfo"]

BUSY = 1 << 31  # BPF_RINGBUF_BUSY_BIT
DISCARD = 1 << 30  # BPF_RINGBUF_DISCARD_BIT
HDR_SIZE = 8  # BPF_RINGBUF_HDR_SZ
_CHUNK = 256  # records delivered between two publications of the consumer position
_LEN_MASK = ~(BUSY | DISCARD) & 0xFFFFFFFF
_U64 = struct.Struct("=Q")  # positions and headers are in host byte order
_U32 = struct.Struct("=I")
_RINGBUF_TYPE = 27  # BPF_MAP_TYPE_RINGBUF

Callback = Callable[[bytes], Any]


class RingBufferError(BPFError):
    """A ring buffer cannot be opened or read (not a ringbuf map, mmap failed, closed)."""


class _HasFD(Protocol):
    def fileno(self) -> int: ...


def map_fdinfo(fd: int) -> dict[str, int]:
    """The numeric fields of ``/proc/self/fdinfo/<fd>`` for a BPF map (``map_type``, ``max_entries`` ...)."""
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            text = f.read()
    except OSError as err:
        raise RingBufferError(f"cannot read fdinfo of fd {fd}: {err.strerror}") from err
    info: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        try:
            info[key.strip()] = int(value.strip(), 0)
        except ValueError:
            continue
    return info


def _fileno(obj: int | _HasFD) -> int:
    if isinstance(obj, int):
        return obj
    fileno = getattr(obj, "fileno", None)
    if fileno is not None:
        return int(fileno())
    fd = getattr(obj, "fd", None)
    if isinstance(fd, int):
        return fd
    raise TypeError(f"expected a map or a file descriptor, got {type(obj).__name__}")


@dataclass
class _Ring:
    fd: int
    size: int
    mask: int
    cons: mmap.mmap
    prod: mmap.mmap
    callback: Callback | None
    base: int  # offset of the data area in ``prod``
    words: memoryview  # ``prod`` as native u32 words (headers are read as words[offset >> 2])


class RingBuffer:
    """Consumes one or several ring buffer maps (libbpf's ``ring_buffer__new`` / ``__add`` / ``__poll``).

    >>> rb = RingBuffer(events_map, print)     # doctest: +SKIP
    >>> rb.poll(timeout=0.1)                   # records delivered to the callback
    """

    def __init__(
        self,
        ringbuf: int | _HasFD | None = None,
        callback: Callback | None = None,
        *,
        record_type: Any = None,
    ) -> None:
        self._rings: list[_Ring] = []
        self._epoll = select.epoll()
        self._closed = False
        if ringbuf is not None:
            self.add(ringbuf, callback, record_type=record_type)

    def add(
        self, ringbuf: int | _HasFD, callback: Callback | None = None, *, record_type: Any = None
    ) -> None:
        """Add a ring buffer map (its fd, or an object with ``fileno()``) with its callback.

        The map must stay open while the reader uses it. ``callback(record)`` may return a
        negative int to stop the current drain (libbpf's convention). ``record`` is the bytes,
        or ``record_type.unpack(bytes)`` when a record type is given — e.g. a class from
        :func:`ebpf.btf.record_class` for the program's event struct.
        """
        self._check_open()
        if record_type is not None and callback is not None:
            unpack, deliver = record_type.unpack, callback

            def callback(raw: bytes) -> Any:
                return deliver(unpack(raw))

        fd = _fileno(ringbuf)
        info = map_fdinfo(fd)
        if info.get("map_type") != _RINGBUF_TYPE:
            raise RingBufferError(
                f"fd {fd} is not a ring buffer map (map_type {info.get('map_type')}, want {_RINGBUF_TYPE})"
            )
        size = info["max_entries"]
        page = mmap.PAGESIZE
        try:
            cons = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        except OSError as err:
            raise RingBufferError(f"mmap of the consumer page of ringbuf fd {fd}: {err.strerror}") from err
        try:
            prod = mmap.mmap(fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        except OSError as err:
            cons.close()
            raise RingBufferError(f"mmap of the data pages of ringbuf fd {fd}: {err.strerror}") from err
        self._rings.append(_Ring(fd, size, size - 1, cons, prod, callback, page, memoryview(prod).cast("I")))
        self._epoll.register(fd, select.EPOLLIN)

    # --- state -----------------------------------------------------------------------------------

    def available(self, index: int = 0) -> int:
        """Bytes (headers included) not yet consumed in ring ``index``."""
        ring = self._rings[index]
        return int(_U64.unpack_from(ring.prod, 0)[0] - _U64.unpack_from(ring.cons, 0)[0])

    @property
    def rings(self) -> int:
        return len(self._rings)

    # --- consuming -------------------------------------------------------------------------------

    def poll(self, timeout: float | None = None) -> int:
        """Wait up to ``timeout`` seconds (None: forever) for records, then drain every ring.

        Returns the number of records delivered to callbacks.
        """
        self._check_open()
        delivered = self.consume()
        if delivered:
            return delivered
        self._epoll.poll(-1 if timeout is None else timeout)
        return self.consume()

    def consume(self) -> int:
        """Drain every ring without waiting; returns the number of records delivered."""
        self._check_open()
        total = 0
        for ring in self._rings:
            cb = ring.callback
            if cb is None:
                raise RingBufferError("consume() needs a callback; use records() or drain() instead")
            n = self._drain(ring, cb)
            if n < 0:
                total += -n - 1
                break
            total += n
        return total

    def _drain(self, ring: _Ring, cb: Callback) -> int:
        """Deliver the committed records of ``ring``; returns the count (or -count-1 when stopped).

        Fast path: a run of up to ``_CHUNK`` records of one size (the usual case: one event
        struct) is recognised by comparing its headers at once (a strided view of the header
        words), then delivered in a tight loop; anything else goes record by record.
        """
        prod_map, cons_map, base, mask, words = ring.prod, ring.cons, ring.base, ring.mask, ring.words
        pack_cons = _U64.pack_into
        cons: int = _U64.unpack_from(cons_map, 0)[0]
        prod: int = _U64.unpack_from(prod_map, 0)[0]
        count = 0
        while cons < prod:
            off = base + (cons & mask)
            hdr: int = words[off >> 2]
            if hdr & BUSY:
                break
            if not hdr & DISCARD:
                slot = (hdr + HDR_SIZE + 7) & ~7
                n = min((prod - cons) // slot, _CHUNK)
                step = slot >> 2
                first = off >> 2
                if n > 1 and words[first : first + n * step : step].tolist() == [hdr] * n:
                    start = off + HDR_SIZE
                    for rec in range(start, start + n * slot, slot):
                        ret = cb(prod_map[rec : rec + hdr])
                        if ret is not None and ret < 0:
                            cons += rec - start + slot
                            pack_cons(cons_map, 0, cons)
                            return -(count + (rec - start) // slot + 1) - 1
                    count += n
                    cons += n * slot
                    pack_cons(cons_map, 0, cons)
                    prod = _U64.unpack_from(prod_map, 0)[0]
                    continue
            # one record: another size, discarded, or the last of a run
            length = hdr & _LEN_MASK
            cons += (length + HDR_SIZE + 7) & ~7
            if not hdr & DISCARD:
                count += 1
                ret = cb(prod_map[off + HDR_SIZE : off + HDR_SIZE + length])
                if ret is not None and ret < 0:
                    pack_cons(cons_map, 0, cons)
                    return -count - 1
            pack_cons(cons_map, 0, cons)
            if cons >= prod:
                prod = _U64.unpack_from(prod_map, 0)[0]
        pack_cons(cons_map, 0, cons)
        return count

    def records(self, timeout: float | None = 0.0) -> Iterator[bytes]:
        """Iterate over records of every ring; waits up to ``timeout`` when all are empty.

        ``timeout=0`` drains what is there and stops; ``None`` waits forever.
        """
        self._check_open()
        out: list[bytes] = []
        while True:
            for ring in self._rings:
                self._drain(ring, out.append)
            if out:
                yield from out
                out.clear()
                continue
            if timeout == 0 or not self._epoll.poll(-1 if timeout is None else timeout):
                return

    def drain(self, index: int = 0) -> list[bytes]:
        """Every committed record of ring ``index``, consumed, as a list."""
        out: list[bytes] = []
        self._drain(self._rings[index], out.append)
        return out

    def drain_array(self, dtype: np.dtype[Any], index: int = 0) -> np.ndarray[Any, Any]:
        """Consume every committed record of ring ``index`` as a numpy array of ``dtype``.

        The fast path for fixed-size records: the committed region is viewed as an array of
        ``(header, record)`` slots and checked at once (every header must be exactly
        ``dtype.itemsize`` with neither BUSY nor DISCARD set); records of another size and
        discarded records are handled one by one, so nothing is skipped or misread.
        """
        import numpy as np

        ring = self._rings[index]
        rec_size = dtype.itemsize
        slot = (rec_size + HDR_SIZE + 7) & ~7
        slot_dtype = np.dtype(
            {"names": ["hdr", "rec"], "formats": ["<u4", dtype], "offsets": [0, 8], "itemsize": slot}
        )
        cons = _U64.unpack_from(ring.cons, 0)[0]
        prod = _U64.unpack_from(ring.prod, 0)[0]
        parts: list[np.ndarray[Any, Any]] = []
        while cons < prod:
            n = (prod - cons) // slot
            if n:
                view = np.frombuffer(
                    ring.prod, dtype=slot_dtype, count=n, offset=ring.base + (cons & ring.mask)
                )
                bad = np.flatnonzero(view["hdr"] != rec_size)
                good = int(bad[0]) if bad.size else n
                if good:
                    # one contiguous copy of the slots (a memcpy), then the record field as a view
                    parts.append(view[:good].copy()["rec"])
                    cons += good * slot
                    _U64.pack_into(ring.cons, 0, cons)
                    if good == n:
                        prod = _U64.unpack_from(ring.prod, 0)[0]
                        continue
            # one record that is not a plain committed record of the expected size
            off = ring.base + (cons & ring.mask)
            hdr = _U32.unpack_from(ring.prod, off)[0]
            if hdr & BUSY:
                break
            length = hdr & _LEN_MASK
            if not hdr & DISCARD:
                if length != rec_size:
                    _U64.pack_into(ring.cons, 0, cons)
                    raise RingBufferError(
                        f"record of {length} bytes in a ring read as {rec_size}-byte {dtype}"
                    )
                parts.append(np.frombuffer(ring.prod, dtype=dtype, count=1, offset=off + HDR_SIZE).copy())
            cons += (length + HDR_SIZE + 7) & ~7
            _U64.pack_into(ring.cons, 0, cons)
            prod = _U64.unpack_from(ring.prod, 0)[0]
        if not parts:
            return np.empty(0, dtype=dtype)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    @contextmanager
    def view_array(self, dtype: np.dtype[Any], index: int = 0) -> Iterator[np.ndarray[Any, Any]]:
        """Zero-copy batch: committed ``dtype``-sized records as a read-only view into the ring.

        The view covers the leading run of plain committed records of exactly
        ``dtype.itemsize`` bytes (what :meth:`drain_array` would return first); they are
        consumed when the ``with`` block exits, so the producer cannot overwrite them while
        the block runs. Do not keep the array after the block. Records of another size,
        discarded or busy ones stay for the next call.
        """
        import numpy as np

        self._check_open()
        ring = self._rings[index]
        slot = (dtype.itemsize + HDR_SIZE + 7) & ~7
        slot_dtype = np.dtype(
            {"names": ["hdr", "rec"], "formats": ["=u4", dtype], "offsets": [0, 8], "itemsize": slot}
        )
        cons = _U64.unpack_from(ring.cons, 0)[0]
        prod = _U64.unpack_from(ring.prod, 0)[0]
        n = (prod - cons) // slot
        view = np.frombuffer(ring.prod, dtype=slot_dtype, count=n, offset=ring.base + (cons & ring.mask))
        bad = np.flatnonzero(view["hdr"] != dtype.itemsize)
        good = int(bad[0]) if bad.size else n
        records = view["rec"][:good]
        try:
            yield records
        finally:
            del records, view
            _U64.pack_into(ring.cons, 0, cons + good * slot)

    # --- lifetime --------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RingBufferError("the ring buffer reader is closed")

    def close(self) -> None:
        """Unmap every ring and close the epoll fd (the maps stay open). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for ring in self._rings:
            ring.cons.close()
            try:
                ring.words.release()
                ring.prod.close()
            except BufferError:  # a caller still holds a view_array() array: unmapped when it dies
                pass
        self._rings.clear()
        self._epoll.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
