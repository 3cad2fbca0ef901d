"""``struct __sk_buff``: the context of tc, socket filter and cgroup skb programs.

Core layer: pure, no kernel access.

Rule 1 (uapi ``bpf.h``): :data:`SK_BUFF_FIELDS` is the layout of ``struct __sk_buff`` (192
bytes); the context region holds it, and loads of ``len``, ``data``, ``data_end`` and
``data_meta`` are answered from the packet state (``data*`` with 64-bit host addresses, as the
kernel's rewritten loads give pointers).

Rule 2 (``bpf_prog_test_run_skb`` in ``net/bpf/test_run.c``): the packet is built as the
kernel builds it on the loopback device: ``eth_type_trans`` sets ``protocol`` (the Ethernet
type, or ``ETH_P_802_3``/``ETH_P_802_2`` for length fields) and ``pkt_type`` (from the
destination address against the device's, all zero for loopback) and pulls the Ethernet
header; tc programs (``SCHED_CLS``/``SCHED_ACT``) get it pushed back, the others (socket
filters, cgroup skb) see the packet from the network header. ``ctx_in`` may set only
``mark``, ``priority``, ``ingress_ifindex``, ``ifindex``, ``cb``, ``tstamp``, ``wire_len``,
``gso_segs``, ``gso_size`` and ``hwtstamp`` (else ``EINVAL``); an IPv4 (IPv6) frame must hold
a whole ``iphdr`` (``ipv6hdr``) after the Ethernet header (else ``EINVAL``). After the run, ``data_out`` is
the packet from ``skb->data`` (for non-tc programs with 14 zero bytes in front, the link
header the kernel pushes back) and ``ctx_out`` copies back the fields
``convert_skb_to___skb`` copies.

Rule 4 (the test run's dummy socket, :mod:`ebpf.vm._context_sock`): ``skb->sk`` (offset 168,
a 64-bit load) reads the address of a read-only ``struct bpf_sock`` region built from the
packet (:func:`~ebpf.vm._context_sock.dummy_sock_fields`; mapped on the first such load, then
one of :attr:`SkbMapped.regions`; a new socket for each laid-out input), and the ``__sk_buff``
socket fields ``family``, ``remote_ip4``/``6`` (``sk_daddr``), ``local_ip4``/``6`` (``sk_rcv_saddr``) and the
ports read that socket's values (the verifier lets only ``CGROUP_SKB`` read them).

Not modelled: the ``sk_skb``-only socket fields, ``hash`` computation
(``bpf_get_hash_recalc``), checksum offload state (``ip_summed`` is ``CHECKSUM_NONE``).

Rule 3: ``ctx_in.ifindex`` above 1 names the receiving device; :meth:`SkbInput.from_test_run`
checks it against the run's devices (``ENODEV``, as the kernel) and takes its addresses for
``pkt_type``.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass, fields

from ebpf.errors import TestRunError
from ebpf.spec import ProgramType
from ebpf.vm._context_base import ContextRegion, Input, MappedInput, NetDevice, SubBuffer
from ebpf.vm._context_sock import AF_INET, SockRegion, dummy_sock_fields, new_sock_region, sock_addresses
from ebpf.vm.memory import HostBuffer, Memory, Region

__all__ = ["SK_BUFF_FIELDS", "SK_BUFF_SIZE", "SkbInput", "SkbMapped"]

SK_BUFF_SIZE = 192
# name -> (offset, size): struct __sk_buff in uapi bpf.h (Linux 6.18).
SK_BUFF_FIELDS: dict[str, tuple[int, int]] = {
    "len": (0, 4),
    "pkt_type": (4, 4),
    "mark": (8, 4),
    "queue_mapping": (12, 4),
    "protocol": (16, 4),
    "vlan_present": (20, 4),
    "vlan_tci": (24, 4),
    "vlan_proto": (28, 4),
    "priority": (32, 4),
    "ingress_ifindex": (36, 4),
    "ifindex": (40, 4),
    "tc_index": (44, 4),
    "cb": (48, 20),
    "hash": (68, 4),
    "tc_classid": (72, 4),
    "data": (76, 4),
    "data_end": (80, 4),
    "napi_id": (84, 4),
    "family": (88, 4),
    "remote_ip4": (92, 4),
    "local_ip4": (96, 4),
    "remote_ip6": (100, 16),
    "local_ip6": (116, 16),
    "remote_port": (132, 4),
    "local_port": (136, 4),
    "data_meta": (140, 4),
    "flow_keys": (144, 8),
    "tstamp": (152, 8),
    "wire_len": (160, 4),
    "gso_segs": (164, 4),
    "sk": (168, 8),
    "gso_size": (176, 4),
    "tstamp_type": (180, 1),
    "hwtstamp": (184, 8),
}
_LEN, _PKT_TYPE, _PROTOCOL, _IFINDEX, _WIRE_LEN = (
    SK_BUFF_FIELDS[name][0] for name in ("len", "pkt_type", "protocol", "ifindex", "wire_len")
)
assert _PKT_TYPE == _LEN + 4
_LEN_PKT_TYPE = struct.Struct("<II")
_SK = SK_BUFF_FIELDS["sk"][0]
# __sk_buff socket fields (read through skb->sk: family, sk_rcv_saddr, sk_daddr)
_FAMILY, _LOCAL4, _REMOTE4, _LOCAL6, _REMOTE6 = (
    SK_BUFF_FIELDS[name][0] for name in ("family", "local_ip4", "remote_ip4", "local_ip6", "remote_ip6")
)
# Fields ctx_in may set (convert___skb_to_skb); everything else must be zero.
_CTX_IN_ALLOWED = (
    "mark",
    "priority",
    "ingress_ifindex",
    "ifindex",
    "cb",
    "tstamp",
    "wire_len",
    "gso_segs",
    "gso_size",
    "hwtstamp",
)
# Fields convert_skb_to___skb copies back into ctx_out.
_CTX_OUT = (
    "mark",
    "priority",
    "ingress_ifindex",
    "ifindex",
    "tstamp",
    "cb",
    "wire_len",
    "gso_segs",
    "hwtstamp",
)

ETH_HLEN = 14
NET_SKB_PAD = 64  # max(32, L1_CACHE_BYTES) on x86-64; NET_IP_ALIGN is 0 there
SKB_SHARED_INFO_SIZE = 320
PAGE_SIZE = 4096
GSO_LEGACY_MAX_SIZE = 65536
GSO_MAX_SEGS = 65535
ETH_P_802_3_MIN = 0x0600
ETH_P_802_3 = 0x0001
ETH_P_802_2 = 0x0004
CHECKSUM_NONE, CHECKSUM_UNNECESSARY = 0, 1
PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OTHERHOST = 0, 1, 2, 3
L2_TYPES = frozenset({ProgramType.SCHED_CLS, ProgramType.SCHED_ACT})
_U32 = struct.Struct("<I")
_IP_MIN = {0x0800: 20, 0x86DD: 40}  # an IPv4 / IPv6 frame must hold an iphdr / ipv6hdr
_PLAIN_SKB = {"ctx_in": None, "dev_addr": bytes(6), "dev_broadcast": bytes(6)}
"""The fields of a test run's socket buffer without ``ctx_in`` besides ``packet`` and ``program_type``."""
_ZERO_CTX = bytes(SK_BUFF_SIZE)
_ZEROS = memoryview(bytes(PAGE_SIZE))  # a packet buffer is never larger (a resized one is not reused)
SKB_TYPES = frozenset(
    {
        ProgramType.SOCKET_FILTER,
        ProgramType.SCHED_CLS,
        ProgramType.SCHED_ACT,
        ProgramType.CGROUP_SKB,
        ProgramType.LWT_IN,
        ProgramType.LWT_OUT,
        ProgramType.LWT_XMIT,
    }
)


def _get(buf: bytes | bytearray | memoryview, name: str) -> int:
    off, size = SK_BUFF_FIELDS[name]
    return int.from_bytes(buf[off : off + size], "little")


def _put(buf: bytearray | memoryview, name: str, value: int) -> None:
    off, size = SK_BUFF_FIELDS[name]
    buf[off : off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def _field_at(offset: int) -> str:
    for name, (off, size) in SK_BUFF_FIELDS.items():
        if off <= offset < off + size:
            return name
    return f"<padding at {offset}>"


def eth_protocol(frame: bytes) -> int:
    """``eth_type_trans``'s ``skb->protocol`` (a ``__be16``, as a load from ``__sk_buff`` reads it)."""
    if frame[12] << 8 | frame[13] >= ETH_P_802_3_MIN:
        return frame[13] << 8 | frame[12]  # the type's bytes as they are
    proto = ETH_P_802_3 if frame[14:16] == b"\xff\xff" else ETH_P_802_2
    return (proto & 0xFF) << 8 | proto >> 8


def eth_pkt_type(frame: bytes, dev_addr: bytes, dev_broadcast: bytes) -> int:
    """``eth_type_trans``'s ``skb->pkt_type`` for destination ``frame[0:6]`` on a device.

    Loopback's address *and* broadcast address are all zero, so there ff:ff:ff:ff:ff:ff is
    ``PACKET_MULTICAST``, as the kernel reports it.
    """
    dest = frame[0:6]
    if dest == dev_addr:
        return PACKET_HOST
    if dest[0] & 1:
        return PACKET_BROADCAST if dest == dev_broadcast else PACKET_MULTICAST
    return PACKET_OTHERHOST


@dataclass(frozen=True)
class SkbInput(Input):
    """A socket buffer as ``BPF_PROG_TEST_RUN`` builds it for ``program_type`` (see the module rules).

    Attributes:
        packet: the frame, Ethernet header first (``data_in``).
        program_type: decides whether the program sees the Ethernet header (tc) or not.
        ctx_in: a ``__sk_buff`` (at most :data:`SK_BUFF_SIZE` bytes used) or ``None``.
        dev_addr, dev_broadcast: the receiving device's MAC and broadcast addresses (for
            ``pkt_type``; loopback, where test runs happen: both all zero).
    """

    packet: bytes
    program_type: ProgramType = ProgramType.SCHED_CLS
    ctx_in: bytes | None = None
    dev_addr: bytes = bytes(6)
    dev_broadcast: bytes = bytes(6)

    def __post_init__(self) -> None:
        size = len(self.packet)
        if size < ETH_HLEN or size > PAGE_SIZE - NET_SKB_PAD - SKB_SHARED_INFO_SIZE:
            raise TestRunError(
                f"data_in of {size} bytes: an skb test run needs {ETH_HLEN} to "
                f"{PAGE_SIZE - NET_SKB_PAD - SKB_SHARED_INFO_SIZE} bytes",
                errno=errno.EINVAL,
            )
        h_proto = int.from_bytes(self.packet[12:14], "big")
        ip_min = _IP_MIN.get(h_proto, 0)
        if size - ETH_HLEN < ip_min:
            raise TestRunError(
                f"an {'IPv4' if ip_min == 20 else 'IPv6'} packet needs {ip_min} bytes after the "
                f"Ethernet header, data_in has {size - ETH_HLEN}",
                errno=errno.EINVAL,
            )
        if self.ctx_in is not None:
            ctx = bytes(self.ctx_in)
            if any(ctx[SK_BUFF_SIZE:]):
                raise TestRunError("ctx_in has non-zero bytes past struct __sk_buff", errno=errno.E2BIG)
            ctx = ctx[:SK_BUFF_SIZE].ljust(SK_BUFF_SIZE, b"\0")
            allowed = bytearray(SK_BUFF_SIZE)
            for name in _CTX_IN_ALLOWED:
                off, sz = SK_BUFF_FIELDS[name]
                allowed[off : off + sz] = b"\xff" * sz
            bad = [i for i in range(SK_BUFF_SIZE) if ctx[i] and not allowed[i]]
            if bad:
                raise TestRunError(
                    f"ctx_in sets __sk_buff.{_field_at(bad[0])}, which a test run cannot take",
                    errno=errno.EINVAL,
                )
            wire_len = _get(ctx, "wire_len")
            if wire_len and (wire_len < self.skb_len or wire_len > GSO_LEGACY_MAX_SIZE):
                raise TestRunError(f"ctx_in wire_len {wire_len} is out of range", errno=errno.EINVAL)
            if _get(ctx, "gso_segs") > GSO_MAX_SEGS:
                raise TestRunError(
                    f"ctx_in gso_segs {_get(ctx, 'gso_segs')} > {GSO_MAX_SEGS}", errno=errno.EINVAL
                )
            object.__setattr__(self, "ctx_in", ctx)

    @classmethod
    def from_test_run(
        cls,
        data_in: bytes,
        program_type: ProgramType = ProgramType.SCHED_CLS,
        ctx_in: bytes | None = None,
        *,
        devices: Mapping[int, NetDevice] | None = None,
    ) -> SkbInput:
        """The socket buffer ``BPF_PROG_TEST_RUN`` builds (``bpf_prog_test_run_skb``).

        With ``devices`` (e.g. ``RunEnv.devices``), a ``ctx_in.ifindex`` above 1 must name one
        of them (else ``ENODEV``; 0 and 1 are loopback); the packet then arrives on that
        device: ``pkt_type`` is decided against its MAC and broadcast addresses (read from
        ``/sys/class/net``; all zero for a device this host does not have). Without
        ``devices`` the ifindex is taken as given, on loopback.

        Raises:
            TestRunError: what the kernel refuses, in its order: ``data_in`` out of range
                (``EINVAL``), non-zero bytes past ``struct __sk_buff`` (``E2BIG``), no device
                ``ifindex`` (``ENODEV``), then the checks of the constructor (``EINVAL``).
        """
        data = bytes(data_in)
        size = len(data)
        if size < ETH_HLEN or size > PAGE_SIZE - NET_SKB_PAD - SKB_SHARED_INFO_SIZE:
            return cls(data, program_type, ctx_in)  # raises the size error
        if ctx_in is None:
            ip_min = _IP_MIN.get(int.from_bytes(data[12:14], "big"), 0)
            if cls is not SkbInput or size - ETH_HLEN < ip_min:
                return cls(data, program_type)  # raises the IP header error
            # The common case, without the checks that passed above (no ctx_in to check).
            plain = object.__new__(SkbInput)
            attrs = plain.__dict__
            attrs.update(_PLAIN_SKB)
            attrs["packet"] = data
            attrs["program_type"] = program_type
            return plain
        ctx = bytes(ctx_in)
        if any(ctx[SK_BUFF_SIZE:]):
            raise TestRunError("ctx_in has non-zero bytes past struct __sk_buff", errno=errno.E2BIG)
        ifindex = _get(ctx[:SK_BUFF_SIZE].ljust(SK_BUFF_SIZE, b"\0"), "ifindex")
        if ifindex <= 1 or devices is None:
            return cls(data, program_type, ctx)
        if ifindex not in devices:
            raise TestRunError(f"__sk_buff.ifindex {ifindex}: no such device", errno=errno.ENODEV)
        addr, broadcast = _device_addresses(ifindex)
        return cls(data, program_type, ctx, dev_addr=addr, dev_broadcast=broadcast)

    @property
    def l2(self) -> bool:
        """Whether the program sees the Ethernet header (tc programs)."""
        return self.program_type in L2_TYPES

    @property
    def skb_len(self) -> int:
        """``skb->len`` when the program starts."""
        return len(self.packet) if self.l2 else len(self.packet) - ETH_HLEN

    def map(self, memory: Memory) -> SkbMapped:
        return SkbMapped(memory, self)


assert {f.name for f in fields(SkbInput)} == {*_PLAIN_SKB, "packet", "program_type"}, "update _PLAIN_SKB"


def _device_addresses(ifindex: int) -> tuple[bytes, bytes]:
    """The MAC and broadcast addresses of this host's device ``ifindex`` (all zero if unknown)."""
    try:
        base = os.path.join("/sys/class/net", socket.if_indextoname(ifindex))
        with open(os.path.join(base, "address")) as f:
            addr = bytes.fromhex(f.read().strip().replace(":", ""))
        with open(os.path.join(base, "broadcast")) as f:
            broadcast = bytes.fromhex(f.read().strip().replace(":", ""))
    except (OSError, ValueError):
        return bytes(6), bytes(6)
    if len(addr) != 6 or len(broadcast) != 6:  # not an Ethernet-like device
        return bytes(6), bytes(6)
    return addr, broadcast


class SkbMapped(MappedInput):
    """A mapped socket buffer: ``head``/``start``/``end`` are offsets of ``skb->head``-relative data."""

    def __init__(self, memory: Memory, inp: SkbInput) -> None:
        self.memory = memory
        self._own = HostBuffer(NET_SKB_PAD + len(inp.packet) + SKB_SHARED_INFO_SIZE)
        self.ctx_region = ContextRegion("ctx", HostBuffer(SK_BUFF_SIZE), True, self._hook, owner=self)
        self.sock_region: SockRegion = new_sock_region()
        start = self.ctx_region.start
        super().__init__(start, 0, None, start, ())
        self._bind(inp, self._own)

    def _bind(self, inp: SkbInput, buffer: HostBuffer) -> None:
        """Lay ``inp`` out in the (zeroed) ``buffer``, fill the context and map both regions."""
        self.input = inp
        frame = inp.packet
        size = len(frame)
        self.buffer = buffer
        buffer.view[NET_SKB_PAD : NET_SKB_PAD + size] = frame
        l2 = inp.program_type in L2_TYPES
        self.start = NET_SKB_PAD if l2 else NET_SKB_PAD + ETH_HLEN
        self.end = NET_SKB_PAD + size
        self.mac = NET_SKB_PAD  # skb_mac_header
        self.network = NET_SKB_PAD + ETH_HLEN  # skb_network_header
        self.ip_summed = CHECKSUM_NONE
        self.csum_level = 0
        self.encapsulation = False  # skb->encapsulation (bpf_skb_adjust_room's ENCAP flags)
        ctx = self.ctx_region.view
        ctx[:] = inp.ctx_in or _ZERO_CTX
        _LEN_PKT_TYPE.pack_into(
            ctx, _LEN, self.end - self.start, eth_pkt_type(frame, inp.dev_addr, inp.dev_broadcast)
        )
        _U32.pack_into(ctx, _PROTOCOL, eth_protocol(frame))
        if not _U32.unpack_from(ctx, _IFINDEX)[0]:
            _U32.pack_into(ctx, _IFINDEX, 1)
        if inp.ctx_in is not None and not _U32.unpack_from(ctx, _WIRE_LEN)[0]:
            # without ctx_in, qdisc_skb_cb.pkt_len stays 0
            _U32.pack_into(ctx, _WIRE_LEN, size if l2 else size - ETH_HLEN)
        family, local, remote = sock_addresses(frame)
        if family:  # the __sk_buff socket fields (the ports are 0)
            _U32.pack_into(ctx, _FAMILY, family)
            if family == AF_INET:
                ctx[_LOCAL4 : _LOCAL4 + 4], ctx[_REMOTE4 : _REMOTE4 + 4] = local, remote
            else:
                ctx[_LOCAL6 : _LOCAL6 + 16], ctx[_REMOTE6 : _REMOTE6 + 16] = local, remote
        if self.sock_region.owner is not None:  # a test run's own dummy socket: the last one dies
            self.sock_region.renew()
        self.sock_filled = False  # the socket's fields are laid out by the first load of skb->sk
        self._ctx0 = ctx.tobytes()
        self.memory.map(self.ctx_region)
        self.sock_mapped = False  # mapped by the first load of skb->sk
        packet = self.data_region
        if packet is None:
            packet = self.data_region = self._window()
        else:  # rebind: the last run's packet region, unmapped, on the new window
            packet.rebase(SubBuffer(self.buffer, self.start, self.end - self.start))
            self.memory.map(packet)
        self.regions = (packet, self.ctx_region)

    def rebind(self, inp: Input) -> bool:
        if type(inp) is not SkbInput:
            return False
        needed = NET_SKB_PAD + len(inp.packet) + SKB_SHARED_INFO_SIZE
        if needed > self._own.size:
            self._own = HostBuffer(needed)
            buffer: HostBuffer = self._own
        else:  # a window of the buffer's first bytes, zeroed: as a fresh buffer of that size
            buffer = SubBuffer(self._own, 0, needed) if needed < self._own.size else self._own
            buffer.view[:] = _ZEROS[:needed]
        self._bind(inp, buffer)
        return True

    def reset(self) -> bool:
        inp = self.input
        size = len(inp.packet)
        mapped = self.memory.find(self.ctx_region.start) is self.ctx_region
        self.buffer = HostBuffer(NET_SKB_PAD + size + SKB_SHARED_INFO_SIZE)
        self.buffer.view[NET_SKB_PAD : NET_SKB_PAD + size] = inp.packet
        self.start = NET_SKB_PAD if inp.l2 else NET_SKB_PAD + ETH_HLEN
        self.end = NET_SKB_PAD + size
        self.mac = NET_SKB_PAD
        self.network = NET_SKB_PAD + ETH_HLEN
        self.ip_summed = CHECKSUM_NONE
        self.csum_level = 0
        self.encapsulation = False
        self.ctx_region.view[:] = self._ctx0
        if self.sock_region.owner is not None:
            self.sock_region.renew()
        if mapped:
            self._remap()
        else:
            window = SubBuffer(self.buffer, self.start, self.end - self.start)
            self.data_region = Region("packet", window)
            self.regions = (self.data_region, self.ctx_region, *self._sock())
        return True

    def _window(self) -> Region:
        return self.memory.map_buffer("packet", SubBuffer(self.buffer, self.start, self.end - self.start))

    @property
    def mac_offset(self) -> int:
        """Buffer offset of the Ethernet header (``skb_mac_header``)."""
        return self.mac

    def _remap(self) -> None:
        assert self.data_region is not None
        self.memory.unmap(self.data_region)
        self.data_region = self._window()
        self.regions = (self.data_region, self.ctx_region, *self._sock())

    def resize(self, head: int, tail: int) -> None:
        """Grow (positive) or shrink (negative) the packet at its start and end; new bytes are zero.

        The buffer is reallocated when the head- or tailroom runs out (the addresses of the
        packet bytes change then, as after the kernel's ``pskb_expand_head``).
        """
        start, end = self.start - head, self.end + tail
        assert start <= end
        if start < 0 or end > self.buffer.size:
            extra_head = max(0, -start) + NET_SKB_PAD
            grown = HostBuffer(extra_head + max(end, self.buffer.size) + SKB_SHARED_INFO_SIZE)
            grown.view[extra_head : extra_head + self.buffer.size] = self.buffer.view
            self.buffer = grown
            for name in ("start", "end", "mac", "network"):
                setattr(self, name, getattr(self, name) + extra_head)
            start, end = start + extra_head, end + extra_head
        if head > 0:
            self.buffer.view[start : self.start] = bytes(head)
        if tail > 0:
            self.buffer.view[self.end : end] = bytes(tail)
        self.start, self.end = start, end
        self._remap()

    def _sock(self) -> tuple[Region, ...]:
        return (self.sock_region,) if self.sock_mapped else ()

    def _map_sock(self) -> int:
        """``skb->sk``: the dummy socket, mapped (and added to :attr:`regions`) on first use."""
        if not self.sock_mapped:
            if not self.sock_filled:
                self.sock_region.fill(dummy_sock_fields(self.input.packet))
                self.sock_filled = True
            self.memory.map(self.sock_region)
            self.sock_mapped = True
            self.regions = (*self.regions, self.sock_region)
        return self.sock_region.start

    def address(self, offset: int) -> int:
        return self.buffer.address + offset

    def _hook(self, offset: int, size: int) -> int | None:
        if size != 4:
            return self._map_sock() if offset == _SK and size == 8 else None
        if offset == 0:
            return self.end - self.start
        if offset == 76 or offset == 140:  # data, data_meta (no metadata on an skb test run)
            return self.buffer.address + self.start
        if offset == 80:
            return self.buffer.address + self.end
        return None

    # --- packet access for helpers --------------------------------------------------------------

    @property
    def packet(self) -> memoryview:
        """The bytes from ``skb->data`` to the end (writable)."""
        return self.buffer.view[self.start : self.end]

    def field(self, name: str) -> int:
        """A ``__sk_buff`` field as the context region holds it now."""
        return _get(self.ctx_region.view, name)

    def set_field(self, name: str, value: int) -> None:
        _put(self.ctx_region.view, name, value)

    # --- results --------------------------------------------------------------------------------

    def data(self) -> bytes:
        pkt = self.packet.tobytes()
        return pkt if self.input.l2 else bytes(ETH_HLEN) + pkt

    def ctx_out(self) -> bytes:
        out = bytearray(self.input.ctx_in or bytes(SK_BUFF_SIZE))
        live = self.ctx_region.view
        for name in _CTX_OUT:
            off, size = SK_BUFF_FIELDS[name]
            out[off : off + size] = live[off : off + size]
        return bytes(out)
