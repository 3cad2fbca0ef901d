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
  A multi-buffer packet (``xdp_md.data_end`` short of ``data_in``, or more than
  :data:`XDP_MAX_LINEAR` bytes) keeps the rest in page-sized fragments, as the kernel's
  ``skb_shared_info.frags``: only helpers reach them (``bpf_xdp_load_bytes`` & co.).
* :class:`SkbInput` (``__sk_buff``), :class:`TracepointInput`, :class:`RawTracepointInput`:
  see :mod:`ebpf.vm._context_skb` and :mod:`ebpf.vm._context_trace`.

Rule: every input is copied into fresh host buffers for each mapping, or, through
``MappedInput.rebind`` (XDP and socket buffers), into the zeroed buffers of an unmapped earlier
mapping, which then looks exactly like a fresh one; the caller's bytes are never modified.
``MappedInput.data()`` is the kernel's ``data_out`` after the run and ``MappedInput.ctx_out()``
its ``ctx_out``.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Mapping
from dataclasses import dataclass, fields

from ebpf.errors import TestRunError
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
    "MAX_SKB_FRAGS",
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
MAX_SKB_FRAGS = 17  # CONFIG_MAX_SKB_FRAGS (default): fragments of a multi-buffer packet
_XDP_MD = struct.Struct("<6I")
_META_MAX = 255  # type_max(skb_shared_info.meta_len): xdp_metalen_invalid()
_ZERO_PAGE = bytes(PAGE_SIZE)
_PLAIN_XDP = {"ingress_ifindex": 1, "rx_queue_index": 0, "meta_len": 0, "ctx_in": None}
"""The fields of a test run's XDP input without ``ctx_in`` besides ``packet`` and ``linear``."""


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
        linear: bytes of ``packet`` (metadata included) in the linear part, the rest goes to
            page-sized fragments (a multi-buffer packet, ``xdp_md.data_end`` of ``ctx_in``);
            ``None``: as many as fit. Like the kernel, never more than
            :data:`XDP_MAX_LINEAR` + ``meta_len`` (the rest goes to fragments).

    Use :meth:`from_test_run` to build one from ``BPF_PROG_TEST_RUN`` arguments, with the
    kernel's checks.

    Raises:
        TestRunError: an invalid metadata length (``EINVAL``), or more than
            :data:`MAX_SKB_FRAGS` fragments (``ENOMEM``).
    """

    packet: bytes
    ingress_ifindex: int = 1
    rx_queue_index: int = 0
    meta_len: int = 0
    ctx_in: bytes | None = None
    linear: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.meta_len <= len(self.packet) or _metalen_invalid(self.meta_len):
            raise TestRunError(f"invalid XDP metadata length {self.meta_len}", errno=errno.EINVAL)
        if self.meta_len > XDP_PACKET_HEADROOM - XDP_FRAME_SIZE:
            raise TestRunError(
                f"XDP metadata of {self.meta_len} bytes does not fit the headroom", errno=errno.EINVAL
            )
        linear = len(self.packet) if self.linear is None else self.linear
        if not self.meta_len <= linear <= len(self.packet):
            raise TestRunError(
                f"XDP linear part of {linear} bytes: must hold the {self.meta_len} bytes of metadata "
                f"and at most the {len(self.packet)}-byte packet",
                errno=errno.EINVAL,
            )
        linear = min(linear, XDP_MAX_LINEAR + self.meta_len)  # the kernel clamps it to the page
        object.__setattr__(self, "linear", linear)
        frags = -(-(len(self.packet) - linear) // PAGE_SIZE)
        if frags > MAX_SKB_FRAGS:
            raise TestRunError(
                f"a {len(self.packet)}-byte XDP packet needs {frags} fragments after its "
                f"{linear}-byte linear part; at most {MAX_SKB_FRAGS}",
                errno=errno.ENOMEM,
            )

    @property
    def frag_size(self) -> int:
        """``rxq->frag_size``: how far the last fragment may grow; 0 (``bpf_xdp_adjust_tail``
        cannot grow a multi-buffer packet: ``-EOPNOTSUPP``) on any device but loopback, whose
        queue 0 a test run sets to a page (other drivers' values are not modelled)."""
        return PAGE_SIZE if self.ingress_ifindex in (0, 1) else 0

    @classmethod
    def from_test_run(
        cls, data_in: bytes, ctx_in: bytes | None = None, *, devices: Mapping[int, NetDevice] | None = None
    ) -> XdpInput:
        """The input ``BPF_PROG_TEST_RUN`` builds for an XDP program (``bpf_prog_test_run_xdp``).

        A ``ctx_in.data_end`` short of ``data_in`` makes a multi-buffer packet: the linear part
        holds ``data_end`` bytes (at most :data:`XDP_MAX_LINEAR` after the metadata), the rest
        goes to page-sized fragments, and ``data_out`` is the whole packet after the run. The
        same happens without ``ctx_in`` to a packet longer than :data:`XDP_MAX_LINEAR`.

        With ``devices`` (e.g. ``RunEnv.devices`` or :func:`host_devices`), a
        ``ctx_in.ingress_ifindex`` must name a device (else ``ENODEV``) with more rx queues than
        ``rx_queue_index`` (else ``EINVAL``), as the kernel checks; without, both are taken as
        given. Never checked: that the queue is registered for XDP (the kernel's
        ``xdp_rxq_info_is_reg``), which depends on the driver.

        Raises:
            TestRunError: what the kernel refuses, in its order: non-zero bytes past
                ``struct xdp_md`` (``E2BIG``); a non-zero ``data_meta``, ``data`` after
                ``data_end``, ``data_end`` past ``data_in``, an invalid metadata length, fewer
                than ``ETH_HLEN`` bytes after the metadata (``EINVAL``); a non-zero
                ``egress_ifindex``, ``rx_queue_index`` without ``ingress_ifindex``
                (``EINVAL``); the device checks above; more than :data:`MAX_SKB_FRAGS`
                fragments (``ENOMEM``).
        """
        data = bytes(data_in)
        if ctx_in is None:
            size = len(data)
            if size < ETH_HLEN:
                raise TestRunError(f"data_in of {size} bytes is shorter than ETH_HLEN", errno=errno.EINVAL)
            if size > XDP_MAX_LINEAR or cls is not XdpInput:
                return cls(data)
            # The common case, without the checks that cannot fail here (no metadata, linear).
            plain = object.__new__(XdpInput)
            attrs = plain.__dict__
            attrs.update(_PLAIN_XDP)
            attrs["packet"] = data
            attrs["linear"] = size
            return plain
        md = _ctx_bytes(ctx_in, XDP_MD_SIZE)
        d, d_end, d_meta, ifindex, queue, egress = _XDP_MD.unpack(md)
        if d_meta or d_end > len(data) or d > d_end or _metalen_invalid(d):
            raise TestRunError(
                f"invalid xdp_md for a {len(data)}-byte packet: {md.hex()}", errno=errno.EINVAL
            )
        if d > XDP_PACKET_HEADROOM - XDP_FRAME_SIZE:
            raise TestRunError(f"XDP metadata of {d} bytes does not fit the headroom", errno=errno.EINVAL)
        if len(data) - d < ETH_HLEN:
            raise TestRunError(
                f"data_in of {len(data)} bytes with {d} bytes of metadata is shorter than ETH_HLEN",
                errno=errno.EINVAL,
            )
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
        return cls(
            data, ingress_ifindex=ifindex or 1, rx_queue_index=queue, meta_len=d, ctx_in=md, linear=d_end
        )

    def map(self, memory: Memory) -> XdpMapped:
        return XdpMapped(memory, self)


assert {f.name for f in fields(XdpInput)} == {*_PLAIN_XDP, "packet", "linear"}, "update _PLAIN_XDP"


def _ctx_bytes(ctx_in: bytes, size: int) -> bytes:
    """``bpf_ctx_init``: up to ``size`` bytes (zero-extended); more must be zero (``E2BIG``)."""
    ctx = bytes(ctx_in)
    if any(ctx[size:]):
        raise TestRunError(f"ctx_in has non-zero bytes past its {size}-byte struct", errno=errno.E2BIG)
    return ctx[:size].ljust(size, b"\0")


class XdpMapped(MappedInput):
    """A mapped XDP frame: the packet state that ``bpf_xdp_adjust_*`` change.

    Offsets into the frame buffer: ``meta`` (``data_meta``), ``start`` (``data``), ``end``
    (``data_end``): the linear part, which the program reads and writes directly.
    ``frags`` are the fragments of a multi-buffer packet (``skb_shared_info.frags``, each in
    its own page, the program reaches them only through helpers: :meth:`read`,
    :meth:`write`, :meth:`adjust_tail`). ``data()`` is ``[data_meta, data_end)`` (metadata
    included, like the kernel's ``data_out``) followed by the fragments; ``ctx_out()`` the
    ``xdp_md`` with ``data``/``data_end`` relative to ``data_meta``.
    """

    def __init__(self, memory: Memory, inp: XdpInput) -> None:
        self.memory = memory
        self.frame = HostBuffer(PAGE_SIZE)
        self.frags: list[bytearray] = []
        self.ctx_region = ContextRegion("ctx", HostBuffer(XDP_MD_SIZE), False, self._hook, owner=self)
        start = self.ctx_region.start
        super().__init__(start, 0, None, start, ())
        self._bind(inp)

    def _bind(self, inp: XdpInput) -> None:
        """Lay ``inp`` out in the (zeroed) frame, fill ``xdp_md`` and map both regions."""
        self.input = inp
        self._load()
        _XDP_MD.pack_into(self.ctx_region.view, 0, 0, 0, 0, inp.ingress_ifindex, inp.rx_queue_index, 0)
        self.memory.map(self.ctx_region)
        packet = self.data_region
        if packet is None:
            packet = self.data_region = self._window()
        else:  # rebind: the last run's packet region, unmapped, on the new window
            packet.rebase(SubBuffer(self.frame, self.meta, self.end - self.meta))
            self.memory.map(packet)
        self.regions = (packet, self.ctx_region)

    def rebind(self, inp: Input) -> bool:
        if type(inp) is not XdpInput:
            return False
        self.frame.view[:] = _ZERO_PAGE  # as a fresh frame: headroom and tailroom zero
        self._bind(inp)
        return True

    def _load(self) -> None:
        """Lay the input out: linear part in the frame, the rest in page-sized fragments."""
        inp = self.input
        packet = inp.packet
        linear = inp.linear if inp.linear is not None else len(packet)
        self.meta = meta = XDP_PACKET_HEADROOM - inp.meta_len
        self.start = XDP_PACKET_HEADROOM
        self.end = meta + linear
        if linear == len(packet):  # no fragments
            self.frame.view[meta : self.end] = packet
            self.frags = []
            return
        self.frame.view[meta : self.end] = packet[:linear]
        rest = packet[linear:]
        self.frags = [bytearray(rest[i : i + PAGE_SIZE]) for i in range(0, len(rest), PAGE_SIZE)]

    def reset(self) -> bool:
        mapped = self.memory.find(self.ctx_region.start) is self.ctx_region
        self.frame.view[:] = _ZERO_PAGE
        self._load()
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
            return self.frame.address + self.start
        if offset == 4:
            return self.frame.address + self.end
        if offset == 8:
            return self.frame.address + self.meta
        return None

    # --- the whole packet: linear part and fragments ----------------------------------------------

    def buff_len(self) -> int:
        """``xdp_get_buff_len``: the packet's bytes from ``data``, fragments included."""
        return self.end - self.start + sum(len(f) for f in self.frags)

    def _pieces(self) -> list[memoryview]:
        return [self.frame.view[self.start : self.end], *(memoryview(f) for f in self.frags)]

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes at packet offset ``offset`` (from ``data``), across fragments.

        The range must be inside :meth:`buff_len` (helpers check it first).
        """
        assert 0 <= offset and offset + length <= self.buff_len(), "read outside the packet"
        out = bytearray()
        for piece in self._pieces():
            if offset < len(piece) and length:
                chunk = piece[offset : offset + length]
                out += chunk
                length -= len(chunk)
            offset = max(0, offset - len(piece))
        return bytes(out)

    def write(self, offset: int, data: bytes) -> None:
        """Write ``data`` at packet offset ``offset`` (from ``data``), across fragments."""
        assert 0 <= offset and offset + len(data) <= self.buff_len(), "write outside the packet"
        done = 0
        for piece in self._pieces():
            if offset < len(piece) and done < len(data):
                n = min(len(piece) - offset, len(data) - done)
                piece[offset : offset + n] = data[done : done + n]
                done += n
            offset = max(0, offset - len(piece))

    # --- the helpers ----------------------------------------------------------------------------

    def adjust_head(self, delta: int) -> int:
        """``bpf_xdp_adjust_head``: move ``data`` (and the metadata with it) in the linear part;
        0 or ``-EINVAL``."""
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
        """``bpf_xdp_adjust_tail``: move ``data_end``, or with fragments the end of the last one
        (grown bytes are zeroed); 0, ``-EINVAL`` or ``-EOPNOTSUPP``."""
        if self.frags:
            return self._frags_shrink(-delta) if delta < 0 else self._frags_grow(delta)
        end = self.end + delta
        if end > PAGE_SIZE - SKB_SHARED_INFO_SIZE or end < self.start + ETH_HLEN:
            return -errno.EINVAL
        if delta > 0:
            self.frame.view[self.end : end] = bytes(delta)
        self.end = end
        self._remap()
        return 0

    def _frags_grow(self, delta: int) -> int:
        """``bpf_xdp_frags_increase_tail``: into the last fragment's page (offset 0)."""
        frag_size = self.input.frag_size
        if not frag_size or frag_size > PAGE_SIZE:
            return -errno.EOPNOTSUPP
        last = self.frags[-1]
        if delta > frag_size - len(last):
            return -errno.EINVAL
        last += bytes(delta)
        return 0

    def _frags_shrink(self, shrink: int) -> int:
        """``bpf_xdp_frags_shrink_tail``: from the last fragment back; emptied fragments are
        freed, and once none is left the rest comes off the linear part."""
        if shrink >= 1 << 31:  # -INT_MIN wraps to INT_MIN: no check fires, nothing shrinks
            return 0
        if shrink > self.buff_len() - ETH_HLEN:
            return -errno.EINVAL
        while self.frags and shrink > 0:
            last = self.frags[-1]
            n = min(shrink, len(last))
            shrink -= n
            if n == len(last):
                self.frags.pop()
            else:
                del last[len(last) - n :]
        if not self.frags and shrink:
            self.end -= shrink
            self._remap()
        return 0

    # --- results --------------------------------------------------------------------------------

    def data(self) -> bytes:
        linear = self.frame.view[self.meta : self.end].tobytes()
        return linear + b"".join(self.frags) if self.frags else linear

    def ctx_out(self) -> bytes:
        md = bytearray(self.input.ctx_in or bytes(XDP_MD_SIZE))
        struct.pack_into("<II", md, 0, self.start - self.meta, self.end - self.meta)
        return bytes(md)
