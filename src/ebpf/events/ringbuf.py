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

Rule 2: the callback and iterator styles publish the consumer position after every run of at
most ``_CHUNK`` records and at the end of a drain, so a producer faster than the reader gets
space back while the reader works; :meth:`RingBuffer.drain_array` copies a whole batch in a
few vectorized steps and publishes once, at its end.
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
    from numpy.typing import DTypeLike

__all__ = ["RingBuffer", "RingBufferError", "map_fdinfo"]

BUSY = 1 << 31  # BPF_RINGBUF_BUSY_BIT
DISCARD = 1 << 30  # BPF_RINGBUF_DISCARD_BIT
HDR_SIZE = 8  # BPF_RINGBUF_HDR_SZ
_CHUNK = 256  # records delivered between two publications of the consumer position
_LEN_MASK = ~(BUSY | DISCARD) & 0xFFFFFFFF
_U64 = struct.Struct("=Q")  # positions and headers are in host byte order
_U32 = struct.Struct("=I")
_RINGBUF_TYPE = 27  # BPF_MAP_TYPE_RINGBUF
_NOT_DISCARD = 0xFFFFFFFF & ~DISCARD
_HDR_DTYPE = "=u4"  # the header's ``len`` word, host byte order

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


class _Slicer(Protocol):
    def __getitem__(self, index: slice, /) -> bytes: ...


class _ImageSlicer:
    """Slices of a ring image as ``bytes`` (what an mmap slice gives), not memoryviews."""

    __slots__ = ("_view",)

    def __init__(self, view: memoryview) -> None:
        self._view = view

    def __getitem__(self, index: slice, /) -> bytes:
        return self._view[index].tobytes()


@dataclass
class _Ring:
    fd: int
    size: int
    mask: int
    cons: mmap.mmap | bytearray | memoryview
    prod: mmap.mmap | bytes | bytearray | memoryview
    callback: Callback | None
    base: int  # offset of the data area in ``prod``
    words: memoryview  # ``prod`` as native u32 words (headers are read as words[offset >> 2])
    records: _Slicer  # ``prod`` sliced into ``bytes`` (the mmap itself, or an image's wrapper)
    scratch: np.ndarray[Any, Any] | None = None  # drain_array(reuse=True)'s buffer (bytes)


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
        self._rings.append(
            _Ring(fd, size, size - 1, cons, prod, callback, page, memoryview(prod).cast("I"), prod)
        )
        self._epoll.register(fd, select.EPOLLIN)

    def add_image(
        self,
        consumer: bytearray | memoryview,
        producer: bytes | bytearray | memoryview,
        size: int,
        callback: Callback | None = None,
    ) -> None:
        """Add a ring held in ordinary buffers laid out like the mmap (a saved or synthetic image).

        ``consumer`` (writable) starts with the consumer position; ``producer`` is one page
        (``mmap.PAGESIZE``) starting with the producer position, then the ``size``-byte data
        area twice (as the kernel maps it). Every reading style works on it; :meth:`poll`
        never wakes for it (there is no fd), so read it with ``timeout=0``.
        """
        self._check_open()
        page = mmap.PAGESIZE
        if size < 8 or size & (size - 1) or size % 8:
            raise RingBufferError(f"ring image data size must be a power of two >= 8, got {size}")
        cons_view, prod_view = memoryview(consumer), memoryview(producer)
        if cons_view.readonly or cons_view.nbytes < 8:
            raise RingBufferError("ring image consumer buffer must be writable and hold 8 bytes")
        if prod_view.nbytes < page + 2 * size:
            raise RingBufferError(
                f"ring image producer buffer holds {prod_view.nbytes} bytes, needs {page + 2 * size}"
            )
        prod_view = prod_view.cast("B")
        words = prod_view[: (prod_view.nbytes // 4) * 4].cast("I")
        self._rings.append(
            _Ring(
                -1,
                size,
                size - 1,
                cons_view.cast("B"),
                prod_view,
                callback,
                page,
                words,
                _ImageSlicer(prod_view),
            )
        )

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
        prod_map, cons_map, base, mask, words = ring.records, ring.cons, ring.base, ring.mask, ring.words
        prod_buf = ring.prod
        pack_cons = _U64.pack_into
        cons: int = _U64.unpack_from(cons_map, 0)[0]
        prod: int = _U64.unpack_from(prod_buf, 0)[0]
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
                    prod = _U64.unpack_from(prod_buf, 0)[0]
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
                prod = _U64.unpack_from(prod_buf, 0)[0]
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
        self._check_open()
        out: list[bytes] = []
        self._drain(self._ring(index), out.append)
        return out

    def _ring(self, index: int) -> _Ring:
        if not 0 <= index < len(self._rings):
            raise RingBufferError(f"no ring {index}: this reader has {len(self._rings)}")
        return self._rings[index]

    def drain_array(
        self,
        dtype: DTypeLike,
        index: int = 0,
        *,
        out: np.ndarray[Any, Any] | None = None,
        reuse: bool = False,
    ) -> np.ndarray[Any, Any]:
        """Consume the committed records of ring ``index`` into a numpy array of ``dtype``; returns it.

        Fixed-size records (``dtype.itemsize`` bytes each, the usual one-event-struct ring)
        are found and copied in bulk: the headers of every slot are checked in one vectorized
        pass (a strided view of the header words) and the records copied with one strided
        gather straight from the ring into the result -- a record that wraps past the end of
        the data area is contiguous in the double mapping, so a batch is always one slice.

        * Discarded records (any size) are skipped and consumed.
        * A BUSY record (reserved, not yet committed) ends the batch: it and everything after
          it stay in the ring, in order (rule 1).
        * A committed record of another size ends the batch and stays in the ring; if it is
          the first record, :class:`RingBufferError` is raised instead (read it with
          :meth:`drain` or :meth:`records`). Nothing consumed is ever dropped.

        Where the records go:

        * default: a fresh array, owned by the caller;
        * ``out=array`` (1-D, C-contiguous, writable, same itemsize): records are written from
          ``out[0]`` on, at most ``len(out)`` of them (the rest stays in the ring), and the
          filled part ``out[:n]`` is returned;
        * ``reuse=True``: a buffer owned by this reader (one per ring, grown geometrically,
          kept across calls) -- no fresh memory, so no page faults, per drain. The result is a
          view of it that **the next** ``drain_array(..., reuse=True)`` **on the same ring
          overwrites**: copy it (``.copy()``) to keep it longer.

        The consumer position is published once, when the batch is done (a plain aligned
        8-byte store, a release store on x86-64 TSO: every record read happens before it).
        """
        import numpy as np

        self._check_open()
        ring = self._ring(index)
        dt = np.dtype(dtype)
        size = dt.itemsize
        if size == 0 or size > _LEN_MASK:
            raise RingBufferError(f"drain_array needs a dtype of 1 to {_LEN_MASK} bytes, got {dt} ({size})")
        if dt.hasobject:
            raise RingBufferError(f"drain_array cannot fill a dtype holding Python objects ({dt})")
        if out is not None:
            if reuse:
                raise RingBufferError("drain_array takes out= or reuse=True, not both")
            if not isinstance(out, np.ndarray) or out.ndim != 1 or not out.flags.c_contiguous:
                raise RingBufferError("drain_array out= must be a 1-D C-contiguous numpy array")
            if not out.flags.writeable:
                raise RingBufferError("drain_array out= is read-only")
            if out.dtype.itemsize != size:
                raise RingBufferError(
                    f"drain_array out= has {out.dtype.itemsize}-byte items, the records are {size} bytes"
                )
        void = np.dtype((np.void, size))
        slot = (size + HDR_SIZE + 7) & ~7
        prod_buf, cons_buf, base, mask = ring.prod, ring.cons, ring.base, ring.mask
        start = cons = int(_U64.unpack_from(cons_buf, 0)[0])
        prod = int(_U64.unpack_from(prod_buf, 0)[0])
        if cons > prod or cons & 7 or prod - cons > ring.size:
            raise RingBufferError(f"ring {index} is corrupt: consumer position {cons}, producer {prod}")

        # the destination, as raw ``size``-byte items; grown on demand (never for ``out=``)
        if out is not None:
            dest = out.view(void)
        elif reuse:
            scratch = ring.scratch
            if scratch is None:
                dest = np.empty(0, void)
            else:
                dest = scratch[: len(scratch) // size * size].view(void)
        else:
            dest = np.empty((prod - cons) // slot, void)
        filled = 0
        limit = len(dest) if out is not None else -1
        try:
            while cons < prod:
                room = (limit - filled) if limit >= 0 else -1
                if room == 0:
                    break
                whole = (prod - cons) // slot  # complete slots of our size before ``prod``
                n = whole if room < 0 else min(whole, room)
                off = base + (cons & mask)
                k = 0
                if n:
                    hdrs: np.ndarray[Any, Any] = np.ndarray((n,), _HDR_DTYPE, prod_buf, off, (slot,))
                    plain = hdrs == size
                    keep: np.ndarray[Any, Any] | None = None
                    if plain.all():
                        k = m = n
                    else:  # discarded slots of our size stay in the grid; anything else ends it
                        hdrs = hdrs.copy()  # one snapshot: a producer may commit meanwhile
                        plain = hdrs == size
                        grid = (hdrs & _NOT_DISCARD) == size
                        k = n if grid.all() else int(grid.argmin())
                        keep = plain[:k]
                        m = int(np.count_nonzero(keep))
                    if m:
                        if filled + m > len(dest):
                            dest = self._grow(ring, dest, filled, filled + m, reuse, size)
                        src: np.ndarray[Any, Any] = np.ndarray((k,), void, prod_buf, off + HDR_SIZE, (slot,))
                        if keep is None or m == k:
                            dest[filled : filled + m] = src
                        else:
                            np.compress(keep, src, out=dest[filled : filled + m])
                        filled += m
                    cons += k * slot
                    if k == n and n < whole:  # ``out`` is full (or discards left room): go round
                        continue
                if k == n and cons >= prod:  # every slot taken: has the producer moved on?
                    prod = int(_U64.unpack_from(prod_buf, 0)[0])
                    continue
                # the record at ``cons`` is busy, discarded with another size, or of another size
                off = base + (cons & mask)
                hdr = int(_U32.unpack_from(prod_buf, off)[0])
                if hdr & BUSY:
                    break
                length = hdr & _LEN_MASK
                if not hdr & DISCARD:
                    if filled == 0:
                        raise RingBufferError(
                            f"record of {length} bytes in a ring read as {size}-byte {dt}"
                            " (left in the ring: read it with drain() or records())"
                        )
                    break
                cons += (length + HDR_SIZE + 7) & ~7
                if cons >= prod:
                    prod = int(_U64.unpack_from(prod_buf, 0)[0])
        finally:
            if cons != start:
                _U64.pack_into(cons_buf, 0, cons)
        if out is not None:
            return out[:filled]
        if reuse:
            return dest[:filled].view(dt) if filled else np.empty(0, dt)
        return (dest if filled == len(dest) else dest[:filled]).view(dt)

    @staticmethod
    def _grow(
        ring: _Ring, dest: np.ndarray[Any, Any], filled: int, need: int, reuse: bool, size: int
    ) -> np.ndarray[Any, Any]:
        """A destination for ``need`` items holding ``dest[:filled]`` (geometric growth)."""
        import numpy as np

        if reuse:
            items = max(need, 2 * len(dest))
            grown = np.empty(items * size, np.uint8)
            ring.scratch = grown
            new: np.ndarray[Any, Any] = grown.view(dest.dtype)
        else:
            new = np.empty(max(need, 2 * len(dest)), dest.dtype)
        new[:filled] = dest[:filled]
        return new

    @contextmanager
    def view_array(self, dtype: DTypeLike, index: int = 0) -> Iterator[np.ndarray[Any, Any]]:
        """Zero-copy batch: committed ``dtype``-sized records as a read-only view into the ring.

        Discarded records at the head of the ring are skipped (consumed); the view covers the
        run of plain committed records of exactly ``dtype.itemsize`` bytes that follows
        (a strided view: the headers stay in between). They are consumed when the ``with``
        block exits, so the producer cannot overwrite them while the block runs. Do not keep
        the array after the block. A busy record, a discarded one or one of another size ends
        the run and stays for the next call (:meth:`drain_array` handles them all).
        """
        import numpy as np

        self._check_open()
        ring = self._ring(index)
        dt = np.dtype(dtype)
        size = dt.itemsize
        if size == 0 or size > _LEN_MASK:
            raise RingBufferError(f"view_array needs a dtype of 1 to {_LEN_MASK} bytes, got {dt} ({size})")
        slot = (size + HDR_SIZE + 7) & ~7
        prod_buf, base, mask = ring.prod, ring.base, ring.mask
        cons = int(_U64.unpack_from(ring.cons, 0)[0])
        prod = int(_U64.unpack_from(prod_buf, 0)[0])
        if cons > prod or cons & 7 or prod - cons > ring.size:
            raise RingBufferError(f"ring {index} is corrupt: consumer position {cons}, producer {prod}")
        while cons < prod:  # leading discarded records: consumed, as every reader does
            hdr = int(_U32.unpack_from(prod_buf, base + (cons & mask))[0])
            if hdr & (BUSY | DISCARD) != DISCARD:
                break
            cons += ((hdr & _LEN_MASK) + HDR_SIZE + 7) & ~7
        n = (prod - cons) // slot
        off = base + (cons & mask)
        hdrs: np.ndarray[Any, Any] = np.ndarray((n,), _HDR_DTYPE, prod_buf, off, (slot,))
        plain = hdrs == size
        good = n if plain.all() else int(plain.argmin())
        del hdrs, plain
        records: np.ndarray[Any, Any] = np.ndarray((good,), dt, prod_buf, off + HDR_SIZE, (slot,))
        records.flags.writeable = False
        try:
            yield records
        finally:
            del records
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
            ring.scratch = None
            for buf in (ring.cons, ring.words, ring.prod):
                try:
                    if isinstance(buf, mmap.mmap):
                        buf.close()
                    elif isinstance(buf, memoryview):
                        buf.release()
                except BufferError:  # a caller still holds a view_array() array: unmapped when it dies
                    pass
        self._rings.clear()
        self._epoll.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
