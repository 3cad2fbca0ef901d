"""Program inputs of the user-space runtime: raw memory, XDP, socket buffers and tracepoints.

Core layer: pure, no kernel access.

A context decides what the program gets in r1 (and r2) and which regions it maps:

* :class:`RawInput` — the bpf_conformance / uBPF convention: r1 = address of a writable
  copy of the input bytes, r2 = its length. The same bytes are the "packet" that legacy
  ``ld_abs``/``ld_ind`` instructions read.
* :class:`XdpInput` — ``struct xdp_md`` over a packet laid out as ``BPF_PROG_TEST_RUN`` lays
  it out: a 4096-byte frame with ``XDP_PACKET_HEADROOM`` (256) before the packet and the
  ``skb_shared_info`` tailroom (320) at the end, so ``bpf_xdp_adjust_head/tail/meta`` have
  the kernel's room and limits. The kernel rewrites the 32-bit loads of ``data``,
  ``data_end`` and ``data_meta`` into 64-bit pointer loads; here the context region answers
  them with the real host addresses (a load hook), so the same bytecode runs unchanged.
* :class:`SkbInput` (``__sk_buff``), :class:`TracepointInput`, :class:`RawTracepointInput`:
  see :mod:`ebpf.vm._context_skb` and :mod:`ebpf.vm._context_trace`.

Rule: every input is copied into fresh host buffers for each mapping; the caller's bytes are
never modified. ``MappedInput.data()`` is the kernel's ``data_out`` after the run and
``MappedInput.ctx_out()`` its ``ctx_out``.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from ebpf.errors import NotSupportedError, TestRunError
from ebpf.vm._context_base import (
    LOOPBACK,
    ContextRegion,
    Input,
    MappedInput,
    NetDevice,
    SubBuffer,
    host_devices,
    mapped_at,
)
from ebpf.vm._context_skb import SK_BUFF_SIZE, SkbInput, SkbMapped
from ebpf.vm._context_trace import (
    RawTracepointInput,
    TracepointField,
    TracepointFormat,
    TracepointInput,
    parse_tracepoint_format,
)
from ebpf.vm.memory import HostBuffer, Memory, Region

__all__ = [
    "ETH_HLEN",
    "LOOPBACK",
    "SK_BUFF_SIZE",
    "XDP_FRAME_SIZE",
    "XDP_MAX_LINEAR",
    "XDP_MD_SIZE",
    "XDP_PACKET_HEADROOM",
    "ContextRegion",
    "Input",
    "MappedInput",
    "NetDevice",
    "RawInput",
    "RawTracepointInput",
    "SkbInput",
    "SkbMapped",
    "SubBuffer",
    "TracepointField",
    "TracepointFormat",
    "TracepointInput",
    "XdpInput",
    "XdpMapped",
    "host_devices",
    "mapped_at",
    "parse_tracepoint_format",
]

ETH_HLEN = 14
PAGE_SIZE = 4096
XDP_PACKET_HEADROOM = 256
SKB_SHARED_INFO_SIZE = 320  # SKB_DATA_ALIGN(sizeof(struct skb_shared_info)) on x86-64
XDP_FRAME_SIZE = 40  # sizeof(struct xdp_frame) in Linux 6.18: the head of the frame holds it
XDP_MAX_LINEAR = PAGE_SIZE - XDP_PACKET_HEADROOM - SKB_SHARED_INFO_SIZE  # 3520
XDP_MD_SIZE = 24  # struct xdp_md: six __u32 fields
_XDP_MD = struct.Struct("<6I")
_META_MAX = 255  # type_max(skb_shared_info.meta_len): xdp_metalen_invalid()


@dataclass(frozen=True)
class RawInput(Input):
    """Raw memory: r1 = pointer to a copy of ``data`` (NULL when empty), r2 = ``len(data)``."""

    data: bytes = b""

    def map(self, memory: Memory) -> MappedInput:
        if not self.data:
            return MappedInput(0, 0, None, 0, ())
        region = memory.map_buffer("mem", HostBuffer.from_bytes(self.data))
        return MappedInput(region.start, len(self.data), region, region.start, (region,))


def _metalen_invalid(metalen: int) -> bool:
    return metalen % 4 != 0 or metalen > _META_MAX


@dataclass(frozen=True)
class XdpInput(Input):
    """An XDP packet: r1 = ``struct xdp_md *`` whose data/data_end point into a copy of ``packet``.

    Attributes:
        packet: the frame, starting with ``meta_len`` bytes of metadata (``data_in``).
        ingress_ifindex, rx_queue_index: what the program reads from ``xdp_md`` (the kernel
            runs test runs on the loopback device's queue 0 unless ``ctx_in`` names another).
        meta_len: bytes of metadata before the packet data (``xdp_md.data`` of ``ctx_in``).
        ctx_in: the ``xdp_md`` the caller gave, echoed in :meth:`XdpMapped.ctx_out`.

    Use :meth:`from_test_run` to build one from ``BPF_PROG_TEST_RUN`` arguments, with the
    kernel's checks.
    """

    packet: bytes
    ingress_ifindex: int = 1
    rx_queue_index: int = 0
    meta_len: int = 0
    ctx_in: bytes | None = None

    def __post_init__(self) -> None:
        if len(self.packet) - self.meta_len > XDP_MAX_LINEAR:
            raise NotSupportedError(
                f"XDP packets over {XDP_MAX_LINEAR} bytes (multi-buffer frames with fragments)"
            )
        if not 0 <= self.meta_len <= len(self.packet) or _metalen_invalid(self.meta_len):
            raise TestRunError(f"invalid XDP metadata length {self.meta_len}", errno=errno.EINVAL)
        if self.meta_len > XDP_PACKET_HEADROOM - XDP_FRAME_SIZE:
            raise TestRunError(
                f"XDP metadata of {self.meta_len} bytes does not fit the headroom", errno=errno.EINVAL
            )

    @classmethod
    def from_test_run(
        cls, data_in: bytes, ctx_in: bytes | None = None, *, devices: Mapping[int, NetDevice] | None = None
    ) -> XdpInput:
        """The input ``BPF_PROG_TEST_RUN`` builds for an XDP program (``bpf_prog_test_run_xdp``).

        With ``devices`` (e.g. ``RunEnv.devices`` or :func:`host_devices`), a
        ``ctx_in.ingress_ifindex`` must name a device (else ``ENODEV``) with more rx queues than
        ``rx_queue_index`` (else ``EINVAL``), as the kernel checks; without, both are taken as
        given. Never checked: that the queue is registered for XDP (the kernel's
        ``xdp_rxq_info_is_reg``), which depends on the driver.

        Raises:
            TestRunError: what the kernel refuses: ``data_in`` shorter than an Ethernet header,
                a non-zero ``data_meta``/``egress_ifindex``, ``data`` after ``data_end``, an
                invalid metadata length, ``rx_queue_index`` without ``ingress_ifindex``
                (``EINVAL``), non-zero bytes past ``struct xdp_md`` (``E2BIG``).
            NotSupportedError: a multi-buffer packet (``data_end`` short of ``data_in``, or
                more than :data:`XDP_MAX_LINEAR` bytes).
        """
        data = bytes(data_in)
        if len(data) < ETH_HLEN:
            raise TestRunError(f"data_in of {len(data)} bytes is shorter than ETH_HLEN", errno=errno.EINVAL)
        if ctx_in is None:
            return cls(data)
        md = _ctx_bytes(ctx_in, XDP_MD_SIZE)
        d, d_end, d_meta, ifindex, queue, egress = _XDP_MD.unpack(md)
        if d_meta or d_end > len(data) or d > d_end or _metalen_invalid(d):
            raise TestRunError(
                f"invalid xdp_md for a {len(data)}-byte packet: {md.hex()}", errno=errno.EINVAL
            )
        if d > XDP_PACKET_HEADROOM - XDP_FRAME_SIZE:
            raise TestRunError(f"XDP metadata of {d} bytes does not fit the headroom", errno=errno.EINVAL)
        if egress or (not ifindex and queue):
            raise TestRunError(
                "xdp_md: egress_ifindex must be 0 and rx_queue_index needs ingress_ifindex",
                errno=errno.EINVAL,
            )
        if ifindex and devices is not None:
            device = devices.get(ifindex)
            if device is None:
                raise TestRunError(f"xdp_md.ingress_ifindex {ifindex}: no such device", errno=errno.ENODEV)
            if queue >= device.rx_queues:
                raise TestRunError(
                    f"xdp_md.rx_queue_index {queue}: device {ifindex} has {device.rx_queues} rx queues",
                    errno=errno.EINVAL,
                )
        if d_end < len(data):
            raise NotSupportedError("XDP multi-buffer test runs (xdp_md.data_end short of data_in)")
        return cls(data, ingress_ifindex=ifindex or 1, rx_queue_index=queue, meta_len=d, ctx_in=md)

    def map(self, memory: Memory) -> XdpMapped:
        return XdpMapped(memory, self)


def _ctx_bytes(ctx_in: bytes, size: int) -> bytes:
    """``bpf_ctx_init``: up to ``size`` bytes (zero-extended); more must be zero (``E2BIG``)."""
    ctx = bytes(ctx_in)
    if any(ctx[size:]):
        raise TestRunError(f"ctx_in has non-zero bytes past its {size}-byte struct", errno=errno.E2BIG)
    return ctx[:size].ljust(size, b"\0")


class XdpMapped(MappedInput):
    """A mapped XDP frame: the packet state that ``bpf_xdp_adjust_*`` change.

    Offsets into the frame buffer: ``meta`` (``data_meta``), ``start`` (``data``), ``end``
    (``data_end``). ``data()`` is ``[data_meta, data_end)`` (metadata included, like the
    kernel's ``data_out``); ``ctx_out()`` the ``xdp_md`` with ``data``/``data_end`` relative
    to ``data_meta``.
    """

    def __init__(self, memory: Memory, inp: XdpInput) -> None:
        self.memory = memory
        self.input = inp
        self.frame = HostBuffer(PAGE_SIZE)
        self.meta = XDP_PACKET_HEADROOM - inp.meta_len
        self.start = XDP_PACKET_HEADROOM
        self.end = self.meta + len(inp.packet)
        self.frame.view[self.meta : self.end] = inp.packet
        ctx_buf = HostBuffer(XDP_MD_SIZE)
        _XDP_MD.pack_into(ctx_buf.view, 0, 0, 0, 0, inp.ingress_ifindex, inp.rx_queue_index, 0)
        self.ctx_region = ContextRegion("ctx", ctx_buf, False, self._hook, owner=self)
        memory.map(self.ctx_region)
        packet = self._window()
        super().__init__(self.ctx_region.start, 0, packet, self.ctx_region.start, (packet, self.ctx_region))

    def reset(self) -> bool:
        inp = self.input
        mapped = self.memory.find(self.ctx_region.start) is self.ctx_region
        self.frame.view[:] = bytes(PAGE_SIZE)
        self.meta = XDP_PACKET_HEADROOM - inp.meta_len
        self.start = XDP_PACKET_HEADROOM
        self.end = self.meta + len(inp.packet)
        self.frame.view[self.meta : self.end] = inp.packet
        assert self.data_region is not None
        if mapped:
            self._remap()
        else:
            window = SubBuffer(self.frame, self.meta, self.end - self.meta)
            self.data_region = Region("packet", window)
            self.regions = (self.data_region, self.ctx_region)
        return True

    # --- the packet window ----------------------------------------------------------------------

    def address(self, offset: int) -> int:
        """The host address of frame offset ``offset``."""
        return self.frame.address + offset

    def _window(self) -> Region:
        return self.memory.map_buffer("packet", SubBuffer(self.frame, self.meta, self.end - self.meta))

    def _remap(self) -> None:
        assert self.data_region is not None
        self.memory.unmap(self.data_region)
        self.data_region = self._window()
        self.regions = (self.data_region, self.ctx_region)

    def _hook(self, offset: int, size: int) -> int | None:
        if size != 4:
            return None
        if offset == 0:
            return self.address(self.start)
        if offset == 4:
            return self.address(self.end)
        if offset == 8:
            return self.address(self.meta)
        return None

    # --- the helpers ----------------------------------------------------------------------------

    def adjust_head(self, delta: int) -> int:
        """``bpf_xdp_adjust_head``: move ``data`` (and the metadata with it); 0 or ``-EINVAL``."""
        metalen = self.start - self.meta
        start = self.start + delta
        if start < XDP_FRAME_SIZE + metalen or start > self.end - ETH_HLEN:
            return -errno.EINVAL
        if metalen:
            view = self.frame.view
            view[self.meta + delta : self.meta + delta + metalen] = view[self.meta : self.start].tobytes()
        self.meta += delta
        self.start = start
        self._remap()
        return 0

    def adjust_meta(self, delta: int) -> int:
        """``bpf_xdp_adjust_meta``: move ``data_meta``; 0, ``-EINVAL`` or ``-EACCES``."""
        meta = self.meta + delta
        if meta < XDP_FRAME_SIZE or meta > self.start:
            return -errno.EINVAL
        if _metalen_invalid(self.start - meta):
            return -errno.EACCES
        self.meta = meta
        self._remap()
        return 0

    def adjust_tail(self, delta: int) -> int:
        """``bpf_xdp_adjust_tail``: move ``data_end`` (grown bytes are zeroed); 0 or ``-EINVAL``."""
        end = self.end + delta
        if end > PAGE_SIZE - SKB_SHARED_INFO_SIZE or end < self.start + ETH_HLEN:
            return -errno.EINVAL
        if delta > 0:
            self.frame.view[self.end : end] = bytes(delta)
        self.end = end
        self._remap()
        return 0

    # --- results --------------------------------------------------------------------------------

    def data(self) -> bytes:
        return self.frame.view[self.meta : self.end].tobytes()

    def ctx_out(self) -> bytes:
        md = bytearray(self.input.ctx_in or bytes(XDP_MD_SIZE))
        struct.pack_into("<II", md, 0, self.start - self.meta, self.end - self.meta)
        return bytes(md)
