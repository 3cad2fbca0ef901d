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

Not modelled: the contents of ``struct sk_buff`` and ``struct net_device`` (kernel-internal
layouts): ``ctx->skb`` and ``state->out`` are non-NULL pointers to regions whose every load
is a :class:`~ebpf.errors.VMError` naming the missing model, never a made-up value.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

from ebpf.errors import TestRunError, VMError
from ebpf.vm._context_base import ContextRegion, Input, MappedInput
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
_STATE = struct.Struct("<BB6xQQQQQ")  # hook, pf, in, out, sk, net, okfn


@dataclass(frozen=True)
class NfInput(Input):
    """A netfilter hook invocation as ``BPF_PROG_TEST_RUN`` builds it (see the module rules).

    Attributes:
        packet: ``data_in`` (an IP packet for ``LOCAL_OUT``, else an Ethernet frame).
        hook, pf: ``nf_hook_state.hook`` / ``.pf``.
        has_ctx: whether ``ctx_in`` was given (then ``state->out`` is the loopback device).
    """

    packet: bytes
    hook: int = NF_INET_LOCAL_OUT
    pf: int = NFPROTO_IPV4
    has_ctx: bool = False

    @classmethod
    def from_test_run(cls, data_in: bytes, ctx_in: bytes | None = None) -> NfInput:
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
        return cls(packet, hook, pf, has_ctx)

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


def _unmodelled(what: str) -> Region:
    def refuse(offset: int, size: int) -> int:
        raise VMError(
            f"load of {size} bytes at offset {offset} of {what}: the user-space runtime does not "
            "model this kernel structure"
        )

    return Region(what, HostBuffer(PAGE_SIZE), False, refuse)


class NfMapped(MappedInput):
    """A mapped ``bpf_nf_ctx``: the context, the hook state and the opaque skb and device."""

    def __init__(self, memory: Memory, inp: NfInput) -> None:
        self.input = inp
        self.skb_region = memory.map(_unmodelled("struct sk_buff"))
        self.dev_region = memory.map(_unmodelled("struct net_device"))
        out = self.dev_region.start if inp.has_ctx else 0
        state = _STATE.pack(inp.hook, inp.pf, 0, out, 0, 0, 0)
        self.state_region = memory.map_buffer("nf_hook_state", HostBuffer.from_bytes(state), writable=False)
        ctx = struct.pack("<QQ", self.state_region.start, self.skb_region.start)
        self.ctx_region = ContextRegion("ctx", HostBuffer.from_bytes(ctx), False, None, owner=self)
        memory.map(self.ctx_region)
        regions = (self.ctx_region, self.state_region, self.skb_region, self.dev_region)
        super().__init__(self.ctx_region.start, 0, None, self.ctx_region.start, regions)

    @property
    def packet(self) -> bytes:
        """The skb's data: the packet from its IP header."""
        return self.input.packet[self.input.network_offset :]
