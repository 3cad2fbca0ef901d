"""``struct bpf_nf_ctx``: the context of ``BPF_PROG_TYPE_NETFILTER`` programs.

Core layer: pure, no kernel access.

Rule 1 (kernel BTF, Linux 6.18): the context is ``{const struct nf_hook_state *state;
struct sk_buff *skb;}`` (16 bytes, read-only). ``struct nf_hook_state`` is 48 bytes:
``hook`` (u8) at 0, ``pf`` (u8) at 1, then the pointers ``in`` 8, ``out`` 16, ``sk`` 24,
``net`` 32 and ``okfn`` 40. Programs read them through BTF pointers (CO-RE field offsets).

Rule 2 (``BPF_PROG_TEST_RUN``, measured on Linux 6.18): ``data_in`` holds 20 to 3712 bytes
(``EINVAL``; an skb with ``NET_SKB_PAD`` headroom and the shared-info tailroom in one page);
``ctx_in`` is an ``nf_hook_state`` of which only ``hook`` and ``pf`` may be set (``EINVAL``;
bytes past 48 must be zero, ``E2BIG``); ``pf`` must be ``NFPROTO_IPV4`` (2) or
``NFPROTO_IPV6`` (10) (``EINVAL``); ``hook`` is not checked. Without ``ctx_in`` the state is
``pf`` IPv4, ``hook`` ``NF_INET_LOCAL_OUT`` (3). With ``ctx_in``, ``state->out`` is the
loopback device and ``in`` is NULL whatever the hook (the kernel picks the devices from the
default hook, LOCAL_OUT, before it copies the caller's); without, both are NULL. For
``LOCAL_OUT`` the packet starts at the IP header; for any other hook it is an Ethernet frame
(at least 34 bytes, ``EINVAL``) whose type must match ``pf`` (IPv4 / IPv6 with 54 bytes,
else ``EINVAL``; another type: ``EPROTO``), and the skb starts at the IP header. There is no
``data_out`` and no ``ctx_out``; the retval is the program's verdict (``NF_DROP`` 0,
``NF_ACCEPT`` 1).

Rule 3 (the socket buffer and the device, laid out from BTF): given the BTF the program's
CO-RE relocations were resolved against (``NfInput.btf``; it must describe ``struct sk_buff``
and ``struct net_device``), ``ctx->skb`` points at a ``struct sk_buff`` as the kernel's test
run builds it: zeroed, then ``head`` (a buffer of the kmalloc size of ``data_in`` + 384 bytes),
``data`` (``head`` + 64, + 14 once ``eth_type_trans`` pulled the Ethernet header), ``len``,
``tail``/``end`` (offsets; ``end`` = kmalloc size - 320), ``truesize`` (kmalloc size + 256),
``users`` 1, ``protocol``, ``mac_header`` / ``network_header`` / ``transport_header`` (``~0``
when unset), ``pkt_type`` and ``dev`` (loopback: ``ifindex`` 1, ``mtu`` 65536, ``name``
``"lo"``) for the hooks that go through ``eth_type_trans``. Every other ``sk_buff`` field
reads 0, as in the kernel's freshly built skb, except ``alloc_cpu`` (a load is a
:class:`~ebpf.errors.VMError`); a load of any other ``net_device`` field is a ``VMError``
(not modelled), never made-up values. Without such BTF both structures are opaque: every
load faults. ``bpf_probe_read_kernel`` reads the bytes as laid out (the faults above are for
direct loads only).

Not modelled: the kernel turns loads through these BTF pointers into ``BPF_PROBE_MEM`` loads,
so a load through a NULL one (``state->in->ifindex`` without a check) reads 0 there; here it
is a :class:`~ebpf.errors.VMError` (the engines do not know which registers hold BTF pointers).
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field

from ebpf.btf.spec import Spec as BTFSpec
from ebpf.btf.types import Struct, Union
from ebpf.errors import BTFError, TestRunError, VMError
from ebpf.vm._context_base import ContextRegion, Input, MappedInput
from ebpf.vm._context_skb import SK_BUFF_FIELDS, SK_BUFF_SIZE, eth_pkt_type
from ebpf.vm.memory import HostBuffer, Memory, Region

__all__ = [
    "NFPROTO_IPV4",
    "NFPROTO_IPV6",
    "NF_ACCEPT",
    "NF_DROP",
    "NF_HOOK_STATE_SIZE",
    "NF_INET_FORWARD",
    "NF_INET_LOCAL_IN",
    "NF_INET_LOCAL_OUT",
    "NF_INET_POST_ROUTING",
    "NF_INET_PRE_ROUTING",
    "NfInput",
    "NfMapped",
]

NF_DROP = 0
NF_ACCEPT = 1
NFPROTO_IPV4 = 2
NFPROTO_IPV6 = 10
NF_INET_PRE_ROUTING, NF_INET_LOCAL_IN, NF_INET_FORWARD, NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING = range(5)
NF_HOOK_STATE_SIZE = 48
BPF_NF_CTX_SIZE = 16
ETH_HLEN = 14
IPHDR_SIZE = 20
IPV6HDR_SIZE = 40
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
PAGE_SIZE = 4096
NET_SKB_PAD = 64
SKB_SHARED_INFO_SIZE = 320
MAX_DATA = PAGE_SIZE - NET_SKB_PAD - SKB_SHARED_INFO_SIZE  # 3712
SK_BUFF_LEN, SK_BUFF_DATA, SK_BUFF_DATA_END, SK_BUFF_DATA_META = (
    SK_BUFF_FIELDS[f][0] for f in ("len", "data", "data_end", "data_meta")
)
LOOPBACK_IFINDEX = 1
LOOPBACK_MTU = 65536
SMP_CACHE_BYTES = 64
_STATE = struct.Struct("<BB6xQQQQQ")  # hook, pf, in, out, sk, net, okfn


@dataclass(frozen=True)
class NfInput(Input):
    """A netfilter hook invocation as ``BPF_PROG_TEST_RUN`` builds it (see the module rules).

    Attributes:
        packet: ``data_in`` (an IP packet for ``LOCAL_OUT``, else an Ethernet frame).
        hook, pf: ``nf_hook_state.hook`` / ``.pf``.
        has_ctx: whether ``ctx_in`` was given (then ``state->out`` is the loopback device).
        btf: the BTF that lays out ``struct sk_buff`` and ``struct net_device`` (Rule 3).
    """

    packet: bytes
    hook: int = NF_INET_LOCAL_OUT
    pf: int = NFPROTO_IPV4
    has_ctx: bool = False
    btf: BTFSpec | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_test_run(
        cls, data_in: bytes, ctx_in: bytes | None = None, *, btf: BTFSpec | None = None
    ) -> NfInput:
        """The input of a netfilter test run, with the kernel's checks in the kernel's order.

        Raises:
            TestRunError: ``EINVAL``, ``E2BIG`` or ``EPROTO``, as the kernel answers (Rule 2).
        """
        packet = bytes(data_in)
        size = len(packet)
        if not IPHDR_SIZE <= size <= MAX_DATA:
            raise TestRunError(
                f"data_in of {size} bytes: a netfilter test run needs {IPHDR_SIZE} to {MAX_DATA}",
                errno=errno.EINVAL,
            )
        hook, pf, has_ctx = NF_INET_LOCAL_OUT, NFPROTO_IPV4, False
        if ctx_in is not None:
            ctx = bytes(ctx_in)
            if any(ctx[NF_HOOK_STATE_SIZE:]):
                raise TestRunError("ctx_in has non-zero bytes past struct nf_hook_state", errno=errno.E2BIG)
            hook, pf, *pointers = _STATE.unpack(ctx[:NF_HOOK_STATE_SIZE].ljust(NF_HOOK_STATE_SIZE, b"\0"))
            if any(pointers):
                raise TestRunError(
                    "ctx_in: a test run takes only nf_hook_state.hook and .pf (in, out, sk, net and "
                    "okfn must be 0)",
                    errno=errno.EINVAL,
                )
            if pf not in (NFPROTO_IPV4, NFPROTO_IPV6):
                raise TestRunError(
                    f"ctx_in: nf_hook_state.pf {pf} is neither NFPROTO_IPV4 nor NFPROTO_IPV6",
                    errno=errno.EINVAL,
                )
            has_ctx = True
        if hook != NF_INET_LOCAL_OUT:
            _check_frame(packet, pf)
        return cls(packet, hook, pf, has_ctx, btf)

    @property
    def network_offset(self) -> int:
        """Where the skb's data (the IP header) starts in :attr:`packet`."""
        return 0 if self.hook == NF_INET_LOCAL_OUT else ETH_HLEN

    def map(self, memory: Memory) -> NfMapped:
        return NfMapped(memory, self)


def _check_frame(packet: bytes, pf: int) -> None:
    size = len(packet)
    if size < ETH_HLEN + IPHDR_SIZE:
        raise TestRunError(
            f"data_in of {size} bytes: hooks other than LOCAL_OUT take an Ethernet frame of at least "
            f"{ETH_HLEN + IPHDR_SIZE} bytes",
            errno=errno.EINVAL,
        )
    proto = int.from_bytes(packet[12:14], "big")
    if proto == ETH_P_IP:
        if pf != NFPROTO_IPV4:
            raise TestRunError("an IPv4 frame with nf_hook_state.pf NFPROTO_IPV6", errno=errno.EINVAL)
    elif proto == ETH_P_IPV6:
        if size < ETH_HLEN + IPV6HDR_SIZE:
            raise TestRunError(f"an IPv6 frame of {size} bytes has no whole IPv6 header", errno=errno.EINVAL)
        if pf != NFPROTO_IPV6:
            raise TestRunError("an IPv6 frame with nf_hook_state.pf NFPROTO_IPV4", errno=errno.EINVAL)
    else:
        raise TestRunError(f"Ethernet type {proto:#06x} is neither IPv4 nor IPv6", errno=errno.EPROTO)


Layout = dict[str, tuple[int, int, int]]  # member -> (bit offset, bitfield bits or 0, bytes)
_LAYOUTS: list[tuple[BTFSpec, str, Layout | None]] = []


def _layout(btf: BTFSpec, name: str) -> Layout | None:
    """The named members of ``struct name`` (anonymous members flattened), or ``None``."""
    for known, struct_name, cached in _LAYOUTS:
        if known is btf and struct_name == name:
            return cached
    layout: Layout = {}
    try:
        _flatten(btf, btf.find(name, Struct), 0, layout)
        found: Layout | None = layout
    except BTFError:
        found = None
    _LAYOUTS.insert(0, (btf, name, found))
    del _LAYOUTS[8:]
    return found


def _flatten(btf: BTFSpec, agg: Struct | Union, base: int, out: Layout) -> None:
    for member in agg.members:
        offset = base + member.offset
        if not member.name:
            inner = btf.resolve(member.type)
            if isinstance(inner, Struct | Union):
                _flatten(btf, inner, offset, out)
            continue
        out.setdefault(member.name, (offset, member.bitfield_size, btf.sizeof(member.type)))


def _cache_align(size: int) -> int:
    return (size + SMP_CACHE_BYTES - 1) & ~(SMP_CACHE_BYTES - 1)


def _kmalloc_size(size: int) -> int:
    """The kmalloc bucket of a ``size``-byte allocation (powers of two from 512 here)."""
    bucket = 512
    while bucket < size:
        bucket *= 2
    return bucket


class _Struct:
    """A kernel structure laid out from BTF in a host buffer, with the fields that fault."""

    def __init__(self, what: str, size: int, layout: Layout, *, strict: bool) -> None:
        self.what = what
        self.layout = layout
        self.buffer = HostBuffer(size)
        self.strict = strict  # only the fields set here may be read
        self.readable: list[tuple[int, int]] = []
        self.faulting: list[tuple[int, int, str]] = []

    def set(self, name: str, value: int | bytes) -> None:
        bit, bits, size = self.layout[name]
        view = self.buffer.view
        if bits:
            start = bit // 8
            word = int.from_bytes(view[start : start + 4], "little")
            shift = bit % 8
            mask = ((1 << bits) - 1) << shift
            assert isinstance(value, int)
            word = (word & ~mask) | ((value << shift) & mask)
            view[start : start + 4] = word.to_bytes(4, "little")
            self.readable.append((start, 4))
            return
        off = bit // 8
        data = value if isinstance(value, bytes) else (value & ((1 << 8 * size) - 1)).to_bytes(size, "little")
        view[off : off + len(data)] = data
        self.readable.append((off, size))

    def refuse(self, name: str) -> None:
        if name in self.layout:
            bit, _bits, size = self.layout[name]
            self.faulting.append((bit // 8, size, name))

    def hook(self, offset: int, size: int) -> int | None:
        for start, length, name in self.faulting:
            if offset < start + length and start < offset + size:
                raise VMError(f"load of {self.what}.{name}: the user-space runtime does not model it")
        if self.strict and not any(
            start <= offset and offset + size <= start + length for start, length in self.readable
        ):
            raise VMError(
                f"load of {size} bytes at offset {offset} of {self.what}: the user-space runtime "
                "models only some of its fields"
            )
        return None


def _unmodelled(what: str, owner: MappedInput | None = None) -> Region:
    def refuse(offset: int, size: int) -> int:
        raise VMError(
            f"load of {size} bytes at offset {offset} of {what}: the user-space runtime does not "
            "model this kernel structure"
        )

    return ContextRegion(what, HostBuffer(PAGE_SIZE), False, refuse, owner=owner)


class NfMapped(MappedInput):
    """A mapped ``bpf_nf_ctx``: the context, the hook state, the socket buffer and the device."""

    def __init__(self, memory: Memory, inp: NfInput) -> None:
        self.input = inp
        regions: list[Region] = []
        skb_layout = dev_layout = None
        if inp.btf is not None:
            skb_layout = _layout(inp.btf, "sk_buff")
            dev_layout = _layout(inp.btf, "net_device")
        if skb_layout is None or dev_layout is None:
            skb = memory.map(_unmodelled("struct sk_buff", self))
            dev = memory.map(_unmodelled("struct net_device"))
            regions += (skb, dev)
            skb_address, dev_address = skb.start, dev.start
        else:
            assert inp.btf is not None
            dev_address = self._map_dev(memory, inp.btf, dev_layout, regions)
            skb_address = self._map_skb(memory, inp.btf, skb_layout, dev_address, regions)
        out = dev_address if inp.has_ctx else 0
        state = _STATE.pack(inp.hook, inp.pf, 0, out, 0, 0, 0)
        state_region = memory.map_buffer("nf_hook_state", HostBuffer.from_bytes(state), writable=False)
        self.skb_address = skb_address
        self.data_start, self.data_end = self._span(memory, regions)
        ctx = struct.pack("<QQ", state_region.start, skb_address)
        self.ctx_region = ContextRegion("ctx", HostBuffer.from_bytes(ctx), False, None, owner=self)
        memory.map(self.ctx_region)
        all_regions = (self.ctx_region, state_region, *regions)
        super().__init__(self.ctx_region.start, 0, None, self.ctx_region.start, all_regions)

    @staticmethod
    def _map_dev(memory: Memory, btf: BTFSpec, layout: Layout, regions: list[Region]) -> int:
        dev = _Struct("struct net_device", btf.sizeof(btf.find("net_device", Struct)), layout, strict=True)
        dev.set("ifindex", LOOPBACK_IFINDEX)
        dev.set("mtu", LOOPBACK_MTU)
        dev.set("name", b"lo".ljust(layout["name"][2], b"\0"))
        region = memory.map(Region("struct net_device", dev.buffer, False, dev.hook))
        regions.append(region)
        return region.start

    def _map_skb(
        self, memory: Memory, btf: BTFSpec, layout: Layout, dev_address: int, regions: list[Region]
    ) -> int:
        inp = self.input
        size = len(inp.packet)
        ksize = _kmalloc_size(size + NET_SKB_PAD + SKB_SHARED_INFO_SIZE)
        head = memory.map_buffer("skb data", HostBuffer(ksize), writable=False)
        head.view[NET_SKB_PAD : NET_SKB_PAD + size] = inp.packet
        regions.append(head)
        sizeof_skb = btf.sizeof(btf.find("sk_buff", Struct))
        skb = _Struct("struct sk_buff", sizeof_skb, layout, strict=False)
        pulled = inp.network_offset
        skb.set("head", head.start)
        skb.set("data", head.start + NET_SKB_PAD + pulled)
        skb.set("len", size - pulled)
        skb.set("tail", NET_SKB_PAD + size)
        skb.set("end", ksize - SKB_SHARED_INFO_SIZE)
        skb.set("truesize", ksize + _cache_align(sizeof_skb))
        skb.set("users", 1)
        skb.set("transport_header", 0xFFFF)
        if pulled:  # eth_type_trans on loopback, then skb_reset_network_header
            skb.set("protocol", inp.packet[12:14])
            skb.set("mac_header", NET_SKB_PAD)
            skb.set("network_header", NET_SKB_PAD + ETH_HLEN)
            skb.set("pkt_type", eth_pkt_type(inp.packet, bytes(6), bytes(6)))
            skb.set("dev", dev_address)
        else:
            proto = ETH_P_IP if inp.pf == NFPROTO_IPV4 else ETH_P_IPV6
            skb.set("protocol", proto.to_bytes(2, "big"))
            skb.set("mac_header", 0xFFFF)
        skb.refuse("alloc_cpu")
        region = memory.map(ContextRegion("struct sk_buff", skb.buffer, False, skb.hook, owner=self))
        regions.append(region)
        return region.start

    def _span(self, memory: Memory, regions: list[Region]) -> tuple[int, int]:
        """``skb->data`` and the end of the linear data: the skb buffer's when laid out from
        BTF, else a read-only copy of the packet (for kfuncs)."""
        inp = self.input
        for region in regions:
            if region.name == "skb data":
                start = region.start + NET_SKB_PAD + inp.network_offset
                return start, region.start + NET_SKB_PAD + len(inp.packet)
        data = memory.map_buffer("skb data", HostBuffer.from_bytes(self.packet), writable=False)
        regions.append(data)
        return data.start, data.end

    def sk_buff_view(self, memory: Memory) -> Region:
        """A ``struct __sk_buff`` view of the skb (``len``, ``data``, ``data_end``), mapped in
        ``memory`` and unmapped with the input: what kfuncs declared with a ``struct __sk_buff *``
        argument (``bpf_dynptr_from_skb``) read when a netfilter program passes ``ctx->skb``."""
        for region in self.regions:
            if region.name == "__sk_buff view":
                return region

        def hook(offset: int, size: int) -> int | None:
            if size == 4 and offset == SK_BUFF_LEN:
                return self.data_end - self.data_start
            if size == 4 and offset in (SK_BUFF_DATA, SK_BUFF_DATA_META):
                return self.data_start
            if size == 4 and offset == SK_BUFF_DATA_END:
                return self.data_end
            return None

        view = memory.map(ContextRegion("__sk_buff view", HostBuffer(SK_BUFF_SIZE), False, hook, owner=self))
        self.regions = (*self.regions, view)
        return view

    @property
    def packet(self) -> bytes:
        """The skb's data: the packet from its IP header."""
        return self.input.packet[self.input.network_offset :]
