"""The memory model of the user-space runtime: real host buffers in a region table.

Core layer: pure Python plus ``ctypes`` for host buffers (one of the two core modules allowed
to import ``ctypes``, see docs/architecture.md); no kernel access.

Rule 1: all program-visible memory (stacks, context, packet or input memory, map values)
lives in real, stable host buffers whose addresses are what the program sees in its
registers. The interpreter, the fast tier and the native JIT share this model: a pointer
in r1 is the same number for all of them, and a JIT can dereference it directly.

Rule 2: every region is registered in a :class:`Memory` table and surrounded by guard gaps
(``GUARD`` bytes on both sides that belong to no region), so an access that runs past the
end of one region can never land inside another. The interpreter checks every access against
the table; an access outside every region, or crossing a region's end, or a write to a
read-only region raises :class:`~ebpf.errors.VMError` — never a host crash.

Rule 3: multi-byte values are little-endian, the byte order of the machines eBPF runs on
here (x86-64, arm64); byte-order conversion instructions are defined against it.
"""

from __future__ import annotations

import bisect
import ctypes
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ebpf.errors import VMError

__all__ = ["GUARD", "HostBuffer", "LoadHook", "Memory", "Region"]

_bisect_left = bisect.bisect_left
_bisect_right = bisect.bisect_right

GUARD = 64  # bytes of unmapped padding on each side of every region

# (offset, size) -> value or None: lets a context region answer loads of virtual fields
# (e.g. xdp_md.data returns a 64-bit packet address).
LoadHook = Callable[[int, int], "int | None"]

_UNPACK: dict[tuple[int, bool], struct.Struct] = {
    (1, False): struct.Struct("<B"),
    (2, False): struct.Struct("<H"),
    (4, False): struct.Struct("<I"),
    (8, False): struct.Struct("<Q"),
    (1, True): struct.Struct("<b"),
    (2, True): struct.Struct("<h"),
    (4, True): struct.Struct("<i"),
    (8, True): struct.Struct("<q"),
}


class HostBuffer:
    """A zero-filled host allocation of ``size`` usable bytes with guard gaps around it.

    ``address`` is the first usable byte; it stays valid and fixed while the object lives.
    """

    __slots__ = ("_raw", "address", "size", "view")

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"buffer size must be >= 0, got {size}")
        self.size = size
        self._raw = (ctypes.c_ubyte * (size + 2 * GUARD))()
        self.address: int = ctypes.addressof(self._raw) + GUARD
        full = memoryview(self._raw).cast("B")
        self.view: memoryview = full[GUARD : GUARD + size]

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> HostBuffer:
        """A new buffer holding a copy of ``data``."""
        buf = cls(len(data))
        buf.view[:] = bytes(data)
        return buf

    def __bytes__(self) -> bytes:
        return self.view.tobytes()

    def __len__(self) -> int:
        return self.size


@dataclass(eq=False)
class Region:
    """One mapped range ``[start, start + size)`` of program-visible memory.

    Attributes:
        name: what it is (``"stack"``, ``"ctx"``, ``"packet"``, ``"mem"``, ``"map:counts"``...).
        buffer: the host buffer behind it.
        writable: whether stores are allowed.
        load_hook: optional virtual-field hook consulted before a load (context regions).
    """

    name: str
    buffer: HostBuffer
    writable: bool = True
    load_hook: LoadHook | None = None
    start: int = field(init=False)
    end: int = field(init=False)
    view: memoryview = field(init=False, repr=False)
    """The buffer's bytes (``buffer.view``; read on every access of the engines' fast paths)."""

    def __post_init__(self) -> None:
        buffer = self.buffer
        self.start = buffer.address
        self.end = buffer.address + buffer.size
        self.view = buffer.view

    @property
    def size(self) -> int:
        return self.buffer.size

    def rebase(self, buffer: HostBuffer) -> None:
        """Make this region cover ``buffer`` instead (only while it is not mapped: a mapped
        region's range must not change under the table)."""
        self.buffer = buffer
        self.start = buffer.address
        self.end = buffer.address + buffer.size
        self.view = buffer.view


class Memory:
    """The region table: maps addresses to regions and performs checked accesses."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._regions: list[Region] = []

    # --- table ----------------------------------------------------------------------------------

    def map(self, region: Region) -> Region:
        """Register a region. Overlapping an existing region is a bug (host buffers never do)."""
        start = region.start
        regions = self._regions
        i = _bisect_left(self._starts, start)
        assert (i == len(regions) or regions[i].start >= region.end) and (
            i == 0 or regions[i - 1].end <= start
        ), "regions overlap"
        self._starts.insert(i, start)
        regions.insert(i, region)
        return region

    def map_buffer(
        self, name: str, buffer: HostBuffer, *, writable: bool = True, load_hook: LoadHook | None = None
    ) -> Region:
        """Register ``buffer`` as a new region and return it."""
        return self.map(Region(name, buffer, writable, load_hook))

    def unmap(self, region: Region) -> None:
        """Remove a region; later accesses to it fault."""
        regions = self._regions
        i = _bisect_left(self._starts, region.start)
        if i < len(regions) and regions[i] is region:
            del self._starts[i]
            del regions[i]

    def __iter__(self) -> Iterator[Region]:
        return iter(list(self._regions))

    def __len__(self) -> int:
        return len(self._regions)

    def find(self, address: int, size: int = 1) -> Region | None:
        """The region holding all of ``[address, address + size)``, or ``None``."""
        i = _bisect_right(self._starts, address) - 1
        if i < 0:
            return None
        region = self._regions[i]
        return region if address + size <= region.end else None

    def describe(self, address: int, size: int = 1) -> str:
        """Where an access is, relative to the nearest region, for fault messages."""
        i = bisect.bisect_right(self._starts, address) - 1
        if 0 <= i < len(self._regions):
            region = self._regions[i]
            if address < region.end:
                where = f"{region.name}+{address - region.start}"
                if address + size > region.end:
                    where += f", crossing the end of {region.name} (size {region.size})"
                return where
            return f"{address - region.end} bytes past the end of {region.name} (size {region.size})"
        if self._regions:
            region = self._regions[0]
            return f"{region.start - address} bytes before {region.name}"
        return "no memory is mapped"

    # --- checked accesses -----------------------------------------------------------------------

    def _fault(self, kind: str, address: int, size: int) -> VMError:
        address &= (1 << 64) - 1
        return VMError(
            f"invalid {kind} of {size} byte{'s' if size != 1 else ''} at {address:#x} ({self.describe(address, size)})",
            address=address,
        )

    def load(self, address: int, size: int, signed: bool = False) -> int:
        """Read a ``size``-byte little-endian integer (zero- or sign-extended to Python int).

        Raises:
            VMError: the range is not inside one mapped region.
        """
        i = _bisect_right(self._starts, address) - 1  # find(), inline: the engines' slow path
        region = self._regions[i] if i >= 0 else None
        if region is None or address + size > region.end:
            raise self._fault("read", address, size)
        offset = address - region.start
        if region.load_hook is not None:
            value = region.load_hook(offset, size)
            if value is not None:
                return value
        result: int = _UNPACK[size, signed].unpack_from(region.buffer.view, offset)[0]
        return result

    def store(self, address: int, size: int, value: int) -> None:
        """Write the low ``size`` bytes of ``value``, little-endian.

        Raises:
            VMError: the range is not inside one writable region.
        """
        region = self.find(address, size)
        if region is None:
            raise self._fault("write", address, size)
        if not region.writable:
            raise VMError(
                f"write of {size} bytes to read-only {region.name} at {address:#x}", address=address
            )
        _UNPACK[size, False].pack_into(
            region.buffer.view, address - region.start, value & ((1 << (8 * size)) - 1)
        )

    def read_bytes(self, address: int, size: int) -> bytes:
        """Copy ``size`` bytes out of one region (for helpers such as memfrob or probe_read)."""
        if size == 0:
            return b""
        i = _bisect_right(self._starts, address) - 1  # find(), inline: every helper's key read
        region = self._regions[i] if i >= 0 else None
        if region is None or address + size > region.end:
            raise self._fault("read", address, size)
        off = address - region.start
        return region.buffer.view[off : off + size].tobytes()

    def write_bytes(self, address: int, data: bytes | bytearray | memoryview) -> None:
        """Copy bytes into one writable region."""
        size = len(data)
        if size == 0:
            return
        region = self.find(address, size)
        if region is None:
            raise self._fault("write", address, size)
        if not region.writable:
            raise VMError(
                f"write of {size} bytes to read-only {region.name} at {address:#x}", address=address
            )
        off = address - region.start
        region.buffer.view[off : off + size] = bytes(data)

    def read_cstring(self, address: int, max_len: int = 4096) -> bytes:
        """Read a NUL-terminated string (without the NUL) from one region."""
        region = self.find(address, 1)
        if region is None:
            raise self._fault("read", address, 1)
        off = address - region.start
        view = region.buffer.view
        end = min(region.size, off + max_len)
        data = view[off:end].tobytes()
        nul = data.find(b"\0")
        if nul < 0:
            raise VMError(f"unterminated string at {address:#x} in {region.name}", address=address)
        return data[:nul]
