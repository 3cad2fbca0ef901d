"""Program inputs of the user-space runtime: raw memory, and the XDP context.

Core layer: pure, no kernel access.

A context decides what the program gets in r1 (and r2) and which regions it maps:

* :class:`RawInput` — the bpf_conformance / uBPF convention: r1 = address of a writable
  copy of the input bytes, r2 = its length. The same bytes are the "packet" that legacy
  ``ld_abs``/``ld_ind`` instructions read.
* :class:`XdpInput` — ``struct xdp_md`` as the kernel shows it to an XDP program. The
  kernel rewrites the 32-bit loads of ``data``/``data_end``/``data_meta`` into 64-bit pointer
  loads; here the context region answers those loads with the real 64-bit host addresses of
  the packet buffer (a virtual-field load hook), so the same bytecode runs unchanged.

Rule: every input is copied into fresh host buffers for each run; the caller's bytes are
never modified, and the result's ``data`` is the memory after the run.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ebpf.vm.memory import HostBuffer, Memory, Region

__all__ = ["XDP_MD_SIZE", "Input", "MappedInput", "RawInput", "XdpInput"]


@dataclass
class MappedInput:
    """An input mapped into a run's memory."""

    r1: int
    r2: int
    data_region: Region | None  # the bytes the caller gets back, and what ld_abs reads
    ctx_address: int  # address the legacy packet loads require in r6 (0: none)
    regions: tuple[Region, ...]

    def data(self) -> bytes:
        return bytes(self.data_region.buffer) if self.data_region is not None else b""


class Input:
    """Base class of program inputs."""

    def map(self, memory: Memory) -> MappedInput:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class RawInput(Input):
    """Raw memory: r1 = pointer to a copy of ``data`` (NULL when empty), r2 = ``len(data)``."""

    data: bytes = b""

    def map(self, memory: Memory) -> MappedInput:
        if not self.data:
            return MappedInput(0, 0, None, 0, ())
        region = memory.map_buffer("mem", HostBuffer.from_bytes(self.data))
        return MappedInput(region.start, len(self.data), region, region.start, (region,))


XDP_MD_SIZE = 24  # struct xdp_md: six __u32 fields
_XDP_MD = struct.Struct("<6I")


@dataclass(frozen=True)
class XdpInput(Input):
    """An XDP packet: r1 = ``struct xdp_md *`` whose data/data_end point at a copy of ``packet``."""

    packet: bytes
    ingress_ifindex: int = 1
    rx_queue_index: int = 0

    def map(self, memory: Memory) -> MappedInput:
        pkt = memory.map_buffer("packet", HostBuffer.from_bytes(self.packet))
        data, data_end = pkt.start, pkt.end
        pointers = {0: data, 4: data_end, 8: data}  # data, data_end, data_meta (no metadata)

        def hook(offset: int, size: int) -> int | None:
            if size == 4 and offset in pointers:
                return pointers[offset]
            return None

        buf = HostBuffer(XDP_MD_SIZE)
        # The stored u32s hold the low bits, as a 32-bit view of the pointers would.
        _XDP_MD.pack_into(
            buf.view,
            0,
            data & 0xFFFFFFFF,
            data_end & 0xFFFFFFFF,
            data & 0xFFFFFFFF,
            self.ingress_ifindex,
            self.rx_queue_index,
            0,
        )
        ctx = memory.map_buffer("ctx", buf, writable=False, load_hook=hook)
        return MappedInput(ctx.start, 0, pkt, ctx.start, (pkt, ctx))
