"""User-space kernel helpers for packets: XDP head/tail/metadata, redirects, checksums, skb bytes.

Core layer: pure, no kernel access.

Rule 1: helpers that take the context (``bpf_xdp_adjust_head(xdp_md, delta)``,
``bpf_skb_load_bytes(skb, ...)``) find the packet state from that pointer
(:func:`~ebpf.vm.context.mapped_at`), so they work in any engine without extra plumbing.

Rule 2 (``net/core/filter.c``): the same checks and return values as the kernel's helpers;
the checksum arithmetic is the kernel's one's-complement arithmetic on the values as a
little-endian load of the packet bytes gives them (``__be32``/``__sum16`` in host order),
with ``ip_summed`` = ``CHECKSUM_NONE`` as on a test run.

Rule 3: a redirect is recorded in ``RunEnv.redirect`` (target ifindex or map and key) and the
helper returns the verdict (``XDP_REDIRECT`` / ``TC_ACT_REDIRECT``) for the runtime to act on.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from typing import TypeVar

from ebpf.errors import KeyNotFoundError, NotSupportedError, VMError
from ebpf.helpers import HelperId
from ebpf.maps import MapError
from ebpf.spec import ProgramType
from ebpf.vm._context_base import MappedInput, mapped_at
from ebpf.vm._context_skb import CHECKSUM_NONE, CHECKSUM_UNNECESSARY, SkbMapped, eth_protocol
from ebpf.vm.context import XdpMapped
from ebpf.vm.helpers import M64, HelperEnv, HelperRegistry, Redirect, RunEnv, run_env

__all__ = ["csum_add", "csum_diff", "csum_fold", "csum_partial", "register"]

M32 = 0xFFFFFFFF
XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)
TC_ACT_SHOT = 2
TC_ACT_REDIRECT = 7
BPF_F_INGRESS = 1
BPF_F_BROADCAST = 1 << 3
BPF_F_EXCLUDE_INGRESS = 1 << 4
BPF_F_RECOMPUTE_CSUM = 1
BPF_F_INVALIDATE_HASH = 2
BPF_F_HDR_FIELD_MASK = 0xF
BPF_F_PSEUDO_HDR = 1 << 4
BPF_F_MARK_MANGLED_0 = 1 << 5
BPF_F_MARK_ENFORCE = 1 << 6
BPF_F_IPV6 = 1 << 7
CSUM_MANGLED_0 = 0xFFFF
ENOTSUPP = 524  # kernel-internal errno
BPF_HDR_START_MAC, BPF_HDR_START_NET = 0, 1
BPF_SKB_MAX_LEN = (4096 << 2) - 320  # SKB_MAX_ALLOC: SKB_MAX_ORDER(0, 2) on x86-64
ETH_HLEN = 14
INT_MAX = 0x7FFFFFFF

T = TypeVar("T", bound=MappedInput)


def _s32(x: int) -> int:
    x &= M32
    return x - (1 << 32) if x >> 31 else x


def _ret(value: int) -> int:
    return value & M64


def context_of(env: RunEnv, address: int, kind: type[T], helper: str) -> T:
    """The mapped input of kind ``kind`` whose context is at ``address`` (or the run's context).

    Raises:
        VMError: the argument is not such a context.
    """
    mapped = mapped_at(env.memory, address)
    if mapped is None and env.context is not None and env.context.r1 == address:
        mapped = env.context
    if not isinstance(mapped, kind):
        raise VMError(f"{helper}: {address:#x} is not the context of this program type")
    return mapped


# --- one's-complement checksum arithmetic (include/net/checksum.h) -----------------------------


def csum_add(a: int, b: int) -> int:
    """32-bit one's-complement add (``csum_add``)."""
    s = (a & M32) + (b & M32)
    return (s + (s >> 32)) & M32


def csum_sub(a: int, b: int) -> int:
    return csum_add(a, ~b & M32)


def csum_fold(csum: int) -> int:
    """``csum_fold``: 32 -> 16 bits, complemented."""
    s = (csum & 0xFFFF) + ((csum >> 16) & 0xFFFF)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def csum_partial(data: bytes, seed: int) -> int:
    """``csum_partial``: the 32-bit one's-complement sum of ``data`` as little-endian words from
    its start (a short last word zero-padded), plus ``seed``."""
    total = seed & M32
    if len(data) % 4:
        data = data + bytes(4 - len(data) % 4)
    for (word,) in struct.iter_unpack("<I", data):
        total += word
    while total >> 32:
        total = (total & M32) + (total >> 32)
    return total


def csum_from32to16(csum: int) -> int:
    """``csum_from32to16``: fold a 32-bit partial checksum to 16 bits (not complemented)."""
    s = (csum & 0xFFFF) + ((csum >> 16) & 0xFFFF)
    return ((s & 0xFFFF) + (s >> 16)) & 0xFFFF


def csum_diff(from_words: bytes, to_words: bytes, seed: int) -> int:
    """``bpf_csum_diff`` (Linux >= 6.13, the same on every architecture): the checksum change
    from ``from`` to ``to`` applied to ``seed``, folded to 16 bits."""
    ret = seed & M32
    if from_words and to_words:
        ret = csum_sub(csum_partial(to_words, ret), csum_partial(from_words, 0))
    elif to_words:
        ret = csum_partial(to_words, ret)
    elif from_words:
        ret = ~csum_partial(from_words, ~ret & M32) & M32
    return csum_from32to16(ret)


def _csum16_add(csum: int, addend: int) -> int:
    s = (csum & 0xFFFF) + (addend & 0xFFFF)
    return (s + (s >> 16)) & 0xFFFF


def csum_replace2(check: int, old: int, new: int) -> int:
    """``csum_replace2`` on a stored ``__sum16``."""
    return ~_csum16_add(_csum16_add(~check & 0xFFFF, ~old & 0xFFFF), new) & 0xFFFF


def csum_replace4(check: int, old: int, new: int) -> int:
    """``csum_replace4`` on a stored ``__sum16``."""
    tmp = csum_sub(~check & 0xFFFF, old)
    return csum_fold(csum_add(tmp, new))


def csum_replace_by_diff(check: int, diff: int) -> int:
    """``csum_replace_by_diff``: apply a 32-bit checksum difference."""
    return csum_fold(csum_add(diff, ~check & 0xFFFF))


# --- XDP ------------------------------------------------------------------------------------------


def xdp_adjust_head(e: HelperEnv, ctx: int, delta: int, _c: int, _d: int, _e: int) -> int:
    env = run_env(e)
    return _ret(context_of(env, ctx, XdpMapped, "bpf_xdp_adjust_head").adjust_head(_s32(delta)))


def xdp_adjust_tail(e: HelperEnv, ctx: int, delta: int, _c: int, _d: int, _e: int) -> int:
    env = run_env(e)
    return _ret(context_of(env, ctx, XdpMapped, "bpf_xdp_adjust_tail").adjust_tail(_s32(delta)))


def xdp_adjust_meta(e: HelperEnv, ctx: int, delta: int, _c: int, _d: int, _e: int) -> int:
    env = run_env(e)
    return _ret(context_of(env, ctx, XdpMapped, "bpf_xdp_adjust_meta").adjust_meta(_s32(delta)))


def redirect(e: HelperEnv, ifindex: int, flags: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_redirect``: XDP's (flags must be 0) or tc's (only ``BPF_F_INGRESS``)."""
    env = run_env(e)
    if env.program_type == ProgramType.XDP:
        if flags:
            return XDP_ABORTED
        env.redirect = Redirect(ifindex=ifindex & M32)
        return XDP_REDIRECT
    if flags & ~BPF_F_INGRESS:
        return TC_ACT_SHOT
    env.redirect = Redirect(ifindex=ifindex & M32, flags=flags)
    return TC_ACT_REDIRECT


def redirect_map(e: HelperEnv, map_ptr: int, key: int, flags: int, _d: int, _e: int) -> int:
    """``bpf_redirect_map``: the low 2 bits of ``flags`` are the verdict when the key is missing.

    As the kernel's ``__bpf_xdp_redirect_map``: flags outside the action bits (plus
    ``BPF_F_BROADCAST`` / ``BPF_F_EXCLUDE_INGRESS`` for devmaps) give ``XDP_ABORTED``; the key
    is cut to 32 bits; a broadcast redirects even without an entry and keeps its flags. A test
    run only records the redirect (``RunEnv.redirect``: the entry's ifindex for devmaps, the
    key, the map) and returns ``XDP_REDIRECT``, as ``BPF_PROG_TEST_RUN`` without live frames does.
    """
    from ebpf.maps.devmap import RedirectMap

    env = run_env(e)
    m = env.map_at(map_ptr)
    action_mask = XDP_ABORTED | XDP_DROP | XDP_PASS | XDP_TX
    broadcast_ok = m.broadcast if isinstance(m, RedirectMap) else m.type.name.startswith("DEVMAP")
    flag_mask = BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS if broadcast_ok else 0
    if flags & ~(action_mask | flag_mask):
        return XDP_ABORTED
    index = key & M32
    target: int | None
    if isinstance(m, RedirectMap):
        target = m.redirect_lookup(index)
    else:  # another map type (the kernel's verifier refuses it): any present key counts
        target = index
        try:
            m.lookup(index.to_bytes(4, "little")[: m.key_size].ljust(m.key_size, b"\0"))
        except (KeyNotFoundError, MapError):
            target = None
    if target is None and not flags & BPF_F_BROADCAST:
        env.redirect = None
        return flags & action_mask
    ifindex = target if target is not None and isinstance(m, RedirectMap) and m.broadcast else 0
    kept = flags if flags & BPF_F_BROADCAST else 0  # the kernel keeps flags for broadcasts only
    env.redirect = Redirect(ifindex=ifindex, flags=kept, map=m, key=index)
    return XDP_REDIRECT


# --- checksums ------------------------------------------------------------------------------------


def csum_diff_helper(
    e: HelperEnv, from_ptr: int, from_size: int, to_ptr: int, to_size: int, seed: int
) -> int:
    env = run_env(e)
    from_size &= M32
    to_size &= M32
    # Linux >= 6.13 takes any sizes (the verifier checks the memory) and never fails.
    old = env.memory.read_bytes(from_ptr, from_size) if from_size else b""
    new = env.memory.read_bytes(to_ptr, to_size) if to_size else b""
    return csum_diff(old, new, seed & M32)


def _sum16_at(skb: SkbMapped, offset: int) -> int | None:
    """The packet offset of a writable ``__sum16`` at ``offset`` (``bpf_try_make_writable``)."""
    if offset > 0xFFFF or offset & 1 or offset + 2 > len(skb.packet):
        return None
    return offset


def _csum_replaced(
    check: int, old: int, new: int, size: int, replace2: Callable[[int, int, int], int]
) -> int | None:
    """The checksum after replacing ``old`` by ``new`` (a ``size``-byte field: 2 or 4; 0: ``new``
    is a ``csum_diff`` result and ``old`` must be 0), or ``None`` for the kernel's ``-EINVAL``.
    ``replace2`` updates for a 2-byte field (``l4_csum_replace`` widens it to 4 bytes)."""
    if size == 0:
        return None if old else csum_replace_by_diff(check, new & M32)
    if size == 2:
        return replace2(check, old & 0xFFFF, new & 0xFFFF)
    if size == 4:
        return csum_replace4(check, old & M32, new & M32)
    return None


def l3_csum_replace(e: HelperEnv, ctx: int, offset: int, old: int, new: int, flags: int) -> int:
    env = run_env(e)
    skb = context_of(env, ctx, SkbMapped, "bpf_l3_csum_replace")
    offset &= M32
    if flags & ~BPF_F_HDR_FIELD_MASK:
        return _ret(-errno.EINVAL)
    at = _sum16_at(skb, offset)
    if at is None:
        return _ret(-errno.EFAULT)
    pkt = skb.packet
    check = int.from_bytes(pkt[at : at + 2], "little")
    replaced = _csum_replaced(check, old, new, flags & BPF_F_HDR_FIELD_MASK, csum_replace2)
    if replaced is None:
        return _ret(-errno.EINVAL)
    pkt[at : at + 2] = replaced.to_bytes(2, "little")
    return 0


def l4_csum_replace(e: HelperEnv, ctx: int, offset: int, old: int, new: int, flags: int) -> int:
    env = run_env(e)
    skb = context_of(env, ctx, SkbMapped, "bpf_l4_csum_replace")
    offset &= M32
    known = BPF_F_MARK_MANGLED_0 | BPF_F_MARK_ENFORCE | BPF_F_PSEUDO_HDR | BPF_F_HDR_FIELD_MASK | BPF_F_IPV6
    if flags & ~known:
        return _ret(-errno.EINVAL)
    at = _sum16_at(skb, offset)
    if at is None:
        return _ret(-errno.EFAULT)
    pkt = skb.packet
    check = int.from_bytes(pkt[at : at + 2], "little")
    mangled_zero = bool(flags & BPF_F_MARK_MANGLED_0)
    if mangled_zero and not flags & BPF_F_MARK_ENFORCE and not check:
        return 0
    # ip_summed is CHECKSUM_NONE on a test run: the pseudo-header flag changes nothing here.
    replaced = _csum_replaced(check, old, new, flags & BPF_F_HDR_FIELD_MASK, csum_replace4)
    if replaced is None:
        return _ret(-errno.EINVAL)
    check = replaced
    if mangled_zero and not check:
        check = CSUM_MANGLED_0
    pkt[at : at + 2] = check.to_bytes(2, "little")
    return 0


# --- skb bytes ------------------------------------------------------------------------------------


def skb_load_bytes(e: HelperEnv, ctx: int, offset: int, to: int, length: int, _e: int) -> int:
    env = run_env(e)
    skb = context_of(env, ctx, SkbMapped, "bpf_skb_load_bytes")
    offset &= M32
    length &= M32
    pkt = skb.packet
    if offset > INT_MAX or offset + length > len(pkt):
        env.memory.write_bytes(to, bytes(length))
        return _ret(-errno.EFAULT)
    env.memory.write_bytes(to, pkt[offset : offset + length].tobytes())
    return 0


def skb_store_bytes(e: HelperEnv, ctx: int, offset: int, src: int, length: int, flags: int) -> int:
    env = run_env(e)
    skb = context_of(env, ctx, SkbMapped, "bpf_skb_store_bytes")
    offset &= M32
    length &= M32
    if flags & ~(BPF_F_RECOMPUTE_CSUM | BPF_F_INVALIDATE_HASH):
        return _ret(-errno.EINVAL)
    pkt = skb.packet
    if offset > INT_MAX or offset + length > len(pkt):
        return _ret(-errno.EFAULT)
    data = env.memory.read_bytes(src, length)
    pkt[offset : offset + length] = data
    if flags & BPF_F_INVALIDATE_HASH:
        skb.set_field("hash", 0)
    return 0


def skb_load_bytes_relative(
    e: HelperEnv, ctx: int, offset: int, to: int, length: int, start_header: int
) -> int:
    """``bpf_skb_load_bytes_relative``: from the MAC (0) or network (1) header; ``-EFAULT`` zeroes ``to``."""
    env = run_env(e)
    skb = context_of(env, ctx, SkbMapped, "bpf_skb_load_bytes_relative")
    offset &= M32
    length &= M32
    starts = {BPF_HDR_START_MAC: skb.mac, BPF_HDR_START_NET: skb.network}
    start = starts.get(start_header & M32)
    if offset > 0xFFFF or start is None or start + offset + length > skb.end:
        env.memory.write_bytes(to, bytes(length))
        return _ret(-errno.EFAULT)
    env.memory.write_bytes(to, skb.buffer.view[start + offset : start + offset + length].tobytes())
    return 0


def _tc_only(env: RunEnv, helper: str) -> None:
    if env.program_type not in (ProgramType.SCHED_CLS, ProgramType.SCHED_ACT, ProgramType.UNSPEC):
        raise VMError(f"{helper}: the user-space runtime implements the tc variant only")


def skb_pull_data(e: HelperEnv, ctx: int, length: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_skb_pull_data``: a test-run skb is linear, so only ``len`` past the end fails (``-ENOMEM``)."""
    env = run_env(e)
    skb = context_of(env, ctx, SkbMapped, "bpf_skb_pull_data")
    length &= M32
    if length > skb.end - skb.start:
        return _ret(-errno.ENOMEM)
    return 0


def skb_change_tail(e: HelperEnv, ctx: int, new_len: int, flags: int, _d: int, _e: int) -> int:
    """``bpf_skb_change_tail`` (tc): trim or zero-extend to ``new_len``, at least to the network header."""
    env = run_env(e)
    skb = context_of(env, ctx, SkbMapped, "bpf_skb_change_tail")
    _tc_only(env, "bpf_skb_change_tail")
    new_len &= M32
    min_len = max(0, skb.network - skb.start)
    if flags or new_len > BPF_SKB_MAX_LEN or new_len < min_len:
        return _ret(-errno.EINVAL)
    skb.resize(0, new_len - (skb.end - skb.start))
    return 0


def skb_change_head(e: HelperEnv, ctx: int, head_room: int, flags: int, _d: int, _e: int) -> int:
    """``bpf_skb_change_head`` (tc): push ``head_room`` zero bytes; the MAC header starts there."""
    env = run_env(e)
    skb = context_of(env, ctx, SkbMapped, "bpf_skb_change_head")
    _tc_only(env, "bpf_skb_change_head")
    head_room &= M32
    length = skb.end - skb.start
    if flags or length + head_room > BPF_SKB_MAX_LEN:
        return _ret(-errno.EINVAL)
    skb.resize(head_room, 0)
    skb.mac = skb.start
    return 0


ETH_P_8021Q_BE = 0x0081  # htons(ETH_P_8021Q) as a little-endian load of the bytes reads it
ETH_P_8021AD_BE = 0xA888  # htons(ETH_P_8021AD)
VLAN_HLEN = 4


def _is_vlan(proto: int) -> bool:
    return proto in (ETH_P_8021Q_BE, ETH_P_8021AD_BE)


def _vlan_pop_from_packet(skb: SkbMapped) -> tuple[int, int]:
    """``__skb_vlan_pop``: take the tag after the MAC addresses out of the packet; (err, tci)."""
    if skb.end - skb.start < ETH_HLEN + VLAN_HLEN:
        return -errno.ENOMEM, 0
    pkt = skb.packet
    tci = int.from_bytes(pkt[14:16], "big")
    pkt[4:16] = pkt[0:12].tobytes()
    skb.resize(-VLAN_HLEN, 0)
    skb.mac = skb.start
    skb.set_field("protocol", eth_protocol(skb.packet[: ETH_HLEN + 2].tobytes()))
    if skb.network - skb.start < ETH_HLEN:
        skb.network = skb.start + ETH_HLEN
    return 0, tci


def _hwaccel(skb: SkbMapped, proto: int, tci: int) -> None:
    skb.set_field("vlan_present", 1)
    skb.set_field("vlan_proto", proto)
    skb.set_field("vlan_tci", tci & 0xFFFF)


def skb_vlan_push(e: HelperEnv, ctx: int, vlan_proto: int, vlan_tci: int, _d: int, _e: int) -> int:
    """``bpf_skb_vlan_push``: the new tag is the offloaded one; a previous one goes into the packet."""
    env = run_env(e)
    skb = context_of(env, ctx, SkbMapped, "bpf_skb_vlan_push")
    proto = vlan_proto & 0xFFFF
    if not _is_vlan(proto):
        proto = ETH_P_8021Q_BE
    if skb.field("vlan_present"):
        old_proto, old_tci = skb.field("vlan_proto"), skb.field("vlan_tci")
        skb.resize(VLAN_HLEN, 0)
        pkt = skb.packet
        pkt[0:12] = pkt[4:16].tobytes()
        pkt[12:14] = old_proto.to_bytes(2, "little")
        pkt[14:16] = old_tci.to_bytes(2, "big")
        skb.mac = skb.start
        skb.set_field("protocol", old_proto)
        skb.network -= VLAN_HLEN
    _hwaccel(skb, proto, vlan_tci)
    return 0


def skb_vlan_pop(e: HelperEnv, ctx: int, _b: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_skb_vlan_pop``: drop the offloaded tag (or the packet's), then offload the next one."""
    env = run_env(e)
    skb = context_of(env, ctx, SkbMapped, "bpf_skb_vlan_pop")
    if skb.field("vlan_present"):
        for name in ("vlan_present", "vlan_proto", "vlan_tci"):
            skb.set_field(name, 0)
    else:
        if not _is_vlan(skb.field("protocol")):
            return 0
        err, _tci = _vlan_pop_from_packet(skb)
        if err:
            return _ret(err)
    proto = skb.field("protocol")
    if not _is_vlan(proto):
        return 0
    err, tci = _vlan_pop_from_packet(skb)
    if err:
        return _ret(err)
    _hwaccel(skb, proto, tci)
    return 0


BPF_ADJ_ROOM_NET, BPF_ADJ_ROOM_MAC = 0, 1
BPF_F_ADJ_ROOM_FIXED_GSO = 1
BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 = 1 << 1
BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 = 1 << 2
BPF_F_ADJ_ROOM_ENCAP_L4_GRE = 1 << 3
BPF_F_ADJ_ROOM_ENCAP_L4_UDP = 1 << 4
BPF_F_ADJ_ROOM_NO_CSUM_RESET = 1 << 5
BPF_F_ADJ_ROOM_ENCAP_L2_ETH = 1 << 6
BPF_F_ADJ_ROOM_DECAP_L3_IPV4 = 1 << 7
BPF_F_ADJ_ROOM_DECAP_L3_IPV6 = 1 << 8
BPF_ADJ_ROOM_ENCAP_L2_SHIFT = 56  # BPF_F_ADJ_ROOM_ENCAP_L2(len): the inner MAC header's length
ENCAP_L3_MASK = BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L3_IPV6
DECAP_L3_MASK = BPF_F_ADJ_ROOM_DECAP_L3_IPV4 | BPF_F_ADJ_ROOM_DECAP_L3_IPV6
BPF_F_ADJ_ROOM_MASK = (
    BPF_F_ADJ_ROOM_FIXED_GSO
    | ENCAP_L3_MASK
    | BPF_F_ADJ_ROOM_ENCAP_L4_GRE
    | BPF_F_ADJ_ROOM_ENCAP_L4_UDP
    | BPF_F_ADJ_ROOM_ENCAP_L2_ETH
    | (0xFF << BPF_ADJ_ROOM_ENCAP_L2_SHIFT)
    | DECAP_L3_MASK
)
ETH_P_IP_BE, ETH_P_IPV6_BE = 0x0008, 0xDD86
EALREADY = errno.EALREADY


def _encapsulated(skb: SkbMapped) -> bool:
    """``skb->encapsulation`` as ``bpf_skb_adjust_room`` sets it (:attr:`SkbMapped.encapsulation`).
    BPF sees only its effect: a second encapsulation is refused with ``-EALREADY``, even after a
    decapsulation (Linux 6.18 leaves the flag set) or a head reallocation. The inner header
    offsets and ``inner_protocol`` the kernel also sets are not modelled: nothing a test run
    shows reads them."""
    return skb.encapsulation


def _adjust_room_net_grow(skb: SkbMapped, off: int, size: int, flags: int) -> int:
    """``bpf_skb_net_grow``: insert ``size`` zero bytes at ``off`` (from the MAC header), with the
    encapsulation bookkeeping of the ``BPF_F_ADJ_ROOM_ENCAP_*`` flags; 0 or a negative errno."""
    inner_mac_len = (flags >> BPF_ADJ_ROOM_ENCAP_L2_SHIFT) & 0xFF
    encap = bool(flags & ENCAP_L3_MASK)
    if skb.field("gso_size"):  # a test run's GSO skb has no gso_type: neither TCP nor UDP_L4
        return -ENOTSUPP
    if encap:
        if flags & ENCAP_L3_MASK == ENCAP_L3_MASK:
            return -errno.EINVAL
        if flags & BPF_F_ADJ_ROOM_ENCAP_L4_GRE and flags & BPF_F_ADJ_ROOM_ENCAP_L4_UDP:
            return -errno.EINVAL
        if flags & BPF_F_ADJ_ROOM_ENCAP_L2_ETH and inner_mac_len < ETH_HLEN:
            return -errno.EINVAL
        if _encapsulated(skb):
            return -EALREADY
        if inner_mac_len > size:
            return -errno.EINVAL
    mac_len = skb.network - skb.mac
    net_off = skb.network - skb.start
    head = skb.packet[:off].tobytes()
    skb.resize(size, 0)  # bpf_skb_generic_push: the first ``off`` bytes move to the new start
    pkt = skb.packet
    pkt[:off] = head
    pkt[off : off + size] = bytes(size)
    skb.mac = skb.start
    skb.network = skb.start + net_off
    if encap:
        proto = skb.field("protocol")
        skb.encapsulation = True
        skb.network = skb.start + mac_len  # the outer L3 header right after the MAC header
        if proto == ETH_P_IP_BE and flags & BPF_F_ADJ_ROOM_ENCAP_L3_IPV6:
            skb.set_field("protocol", ETH_P_IPV6_BE)  # bpf_skb_change_protocol: no hash clearing
        elif proto == ETH_P_IPV6_BE and flags & BPF_F_ADJ_ROOM_ENCAP_L3_IPV4:
            skb.set_field("protocol", ETH_P_IP_BE)
    return 0


def _adjust_room_net_shrink(skb: SkbMapped, off: int, size: int, flags: int) -> int:
    """``bpf_skb_net_shrink``: remove ``size`` bytes at ``off`` (from the MAC header); a
    ``BPF_F_ADJ_ROOM_DECAP_L3_*`` flag sets the protocol of the new outer header."""
    if flags & ~(BPF_F_ADJ_ROOM_FIXED_GSO | DECAP_L3_MASK | BPF_F_ADJ_ROOM_NO_CSUM_RESET):
        return -errno.EINVAL
    if skb.field("gso_size"):
        return -ENOTSUPP
    if off + size > skb.end - skb.start:
        return -errno.EFAULT
    net_off = skb.network - skb.start
    head = skb.packet[:off].tobytes()
    skb.packet[size : size + off] = head
    skb.resize(-size, 0)
    skb.mac = skb.start
    skb.network = skb.start + net_off
    # decapsulation leaves skb->encapsulation set (Linux 6.18)
    proto = skb.field("protocol")
    if proto == ETH_P_IP_BE and flags & BPF_F_ADJ_ROOM_DECAP_L3_IPV6:
        skb.set_field("protocol", ETH_P_IPV6_BE)
    elif proto == ETH_P_IPV6_BE and flags & BPF_F_ADJ_ROOM_DECAP_L3_IPV4:
        skb.set_field("protocol", ETH_P_IP_BE)
    return 0


def skb_adjust_room(e: HelperEnv, ctx: int, len_diff: int, mode: int, flags: int, _e: int) -> int:
    """``bpf_skb_adjust_room`` (tc): insert zeroed room (or remove bytes) after the MAC header
    (``BPF_ADJ_ROOM_MAC``) or after the base IP header (``BPF_ADJ_ROOM_NET``).

    The ``BPF_F_ADJ_ROOM_ENCAP_*`` flags make the room an outer header: the network header
    then starts right after the MAC header, ``skb->protocol`` follows the outer L3 protocol
    (``ENCAP_L3_IPV4``/``IPV6``) and the skb is marked encapsulated (a second encapsulation
    returns ``-EALREADY``). ``BPF_F_ADJ_ROOM_DECAP_L3_*`` (shrinking only) sets the protocol of
    the header left. Refusals as in Linux 6.18: unknown or conflicting flags ``-EINVAL``, more
    than 0xfff bytes ``-EFAULT``, a non-IP skb, an unknown mode, too short a packet or a GSO skb
    (``ctx_in`` ``gso_size``; a test run's GSO skb has no GSO type) ``-ENOTSUPP``.
    """
    env = run_env(e)
    skb = context_of(env, ctx, SkbMapped, "bpf_skb_adjust_room")
    _tc_only(env, "bpf_skb_adjust_room")
    diff = _s32(len_diff)
    size = abs(diff)
    shrink = diff < 0
    if flags & ~(BPF_F_ADJ_ROOM_MASK | BPF_F_ADJ_ROOM_NO_CSUM_RESET):
        return _ret(-errno.EINVAL)
    if size > 0xFFF:
        return _ret(-errno.EFAULT)
    proto = skb.field("protocol")
    if proto not in (ETH_P_IP_BE, ETH_P_IPV6_BE):
        return _ret(-ENOTSUPP)
    base = 20 if proto == ETH_P_IP_BE else 40  # bpf_skb_net_base_len
    len_min = base
    mode &= M32
    if mode not in (BPF_ADJ_ROOM_NET, BPF_ADJ_ROOM_MAC):
        return _ret(-ENOTSUPP)
    off = (skb.network - skb.mac) + (base if mode == BPF_ADJ_ROOM_NET else 0)
    decap = flags & DECAP_L3_MASK
    if decap:
        if not shrink or decap == DECAP_L3_MASK:
            return _ret(-errno.EINVAL)
        len_min = 20 if decap == BPF_F_ADJ_ROOM_DECAP_L3_IPV4 else 40
    length = skb.end - skb.start
    len_cur = length - (skb.network - skb.start)
    if shrink and (size >= len_cur or len_cur - size < len_min):
        return _ret(-ENOTSUPP)
    if not shrink and length + size > BPF_SKB_MAX_LEN and not skb.field("gso_size"):
        return _ret(-ENOTSUPP)
    if shrink:
        err = _adjust_room_net_shrink(skb, off, size, flags)
    else:
        err = _adjust_room_net_grow(skb, off, size, flags)
    if err:
        return _ret(err)
    if not flags & BPF_F_ADJ_ROOM_NO_CSUM_RESET and skb.ip_summed == CHECKSUM_UNNECESSARY:
        skb.ip_summed, skb.csum_level = CHECKSUM_NONE, 0
    return 0


def skb_change_type(e: HelperEnv, ctx: int, pkt_type: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_skb_change_type``: only between host, broadcast, multicast and other-host (0-3)."""
    env = run_env(e)
    skb = context_of(env, ctx, SkbMapped, "bpf_skb_change_type")
    pkt_type &= M32
    if skb.field("pkt_type") > 3 or pkt_type > 3:
        return _ret(-errno.EINVAL)
    skb.set_field("pkt_type", pkt_type)
    return 0


def _ip_proto(skb: SkbMapped) -> int:
    """``skb_protocol(skb, true)``: the protocol, looking through one in-packet VLAN tag."""
    proto = skb.field("protocol")
    if _is_vlan(proto):
        pkt = skb.packet
        if len(pkt) >= ETH_HLEN + VLAN_HLEN:
            return int.from_bytes(pkt[16:18], "little")
    return proto


def skb_ecn_set_ce(e: HelperEnv, ctx: int, _b: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_skb_ecn_set_ce``: mark an ECN-capable IPv4/IPv6 packet Congestion Experienced; 1 if marked."""
    env = run_env(e)
    skb = context_of(env, ctx, SkbMapped, "bpf_skb_ecn_set_ce")
    proto = _ip_proto(skb)
    view = skb.buffer.view
    net = skb.network
    if proto == ETH_P_IP_BE and net + 20 <= skb.end and skb.end - skb.start >= 20:
        tos = view[net + 1]
        ecn = (tos + 1) & 3
        if not ecn & 2:
            return int(not ecn)
        check = int.from_bytes(view[net + 10 : net + 12], "little")
        add = (
            int.from_bytes((0xFFFB).to_bytes(2, "big"), "little")
            + int.from_bytes(ecn.to_bytes(2, "big"), "little")
        ) & 0xFFFF
        view[net + 10 : net + 12] = _csum16_add(check, add).to_bytes(2, "little")
        view[net + 1] = tos | 3
        return 1
    if proto == ETH_P_IPV6_BE and net + 40 <= skb.end and skb.end - skb.start >= 40:
        word = int.from_bytes(view[net : net + 4], "big")
        if not (word >> 20) & 3:
            return 0
        view[net : net + 4] = (word | (3 << 20)).to_bytes(4, "big")
        return 1
    return 0


def csum_level(e: HelperEnv, ctx: int, level: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_csum_level``: query (0), increment (1), decrement (2) or reset (3) ``CHECKSUM_UNNECESSARY``."""
    env = run_env(e)
    skb = context_of(env, ctx, SkbMapped, "bpf_csum_level")
    unnecessary = skb.ip_summed == CHECKSUM_UNNECESSARY
    if level == 0:
        return skb.csum_level if unnecessary else _ret(-errno.EACCES)
    if level == 1:
        if unnecessary:
            skb.csum_level = min(skb.csum_level + 1, 3)  # SKB_MAX_CSUM_LEVEL
        elif skb.ip_summed == CHECKSUM_NONE:
            skb.ip_summed, skb.csum_level = CHECKSUM_UNNECESSARY, 0
    elif level == 2:
        if unnecessary:
            if skb.csum_level == 0:
                skb.ip_summed = CHECKSUM_NONE
            else:
                skb.csum_level -= 1
    elif level == 3:
        if unnecessary:
            skb.ip_summed, skb.csum_level = CHECKSUM_NONE, 0
    else:
        return _ret(-errno.EINVAL)
    return 0


BPF_MTU_CHK_SEGS = 1


def check_mtu(e: HelperEnv, ctx: int, ifindex: int, mtu_len: int, len_diff: int, flags: int) -> int:
    """``bpf_check_mtu`` (skb and XDP): 0 when the packet (or ``*mtu_len``) fits the device's MTU,
    1 (``BPF_MTU_CHK_RET_FRAG_NEEDED``) when not; ``*mtu_len`` is set to the MTU."""
    env = run_env(e)
    mapped = context_of(env, ctx, MappedInput, "bpf_check_mtu")
    devices = env.devices or {}
    asked = env.memory.load(mtu_len, 4)
    diff = _s32(len_diff)
    if isinstance(mapped, XdpMapped):
        if flags:
            return _ret(-errno.EINVAL)
        dev = devices.get((ifindex & M32) or mapped.input.ingress_ifindex)
        if dev is None:
            return _ret(-errno.ENODEV)
        mtu, hard_header, _queues = dev
        length = (asked + hard_header if asked else mapped.end - mapped.start) + diff
        env.memory.store(mtu_len, 4, mtu)
        return 1 if length > mtu + hard_header else 0
    if not isinstance(mapped, SkbMapped):
        raise VMError("bpf_check_mtu: the context is not a packet")
    ret = 1
    mtu = 0
    if flags & ~BPF_MTU_CHK_SEGS or (flags & BPF_MTU_CHK_SEGS and (diff or asked)):
        ret = -errno.EINVAL
    else:
        dev = devices.get((ifindex & M32) or mapped.field("ifindex"))
        if dev is None:
            ret = -errno.ENODEV
        else:
            mtu, hard_header, _queues = dev
            length = (asked + hard_header if asked else mapped.end - mapped.start) + diff
            if length <= mtu + hard_header:
                ret = 0
            elif mapped.field("gso_size"):  # a GSO skb is segmented on transmit
                if flags & BPF_MTU_CHK_SEGS:
                    raise NotSupportedError("bpf_check_mtu(BPF_MTU_CHK_SEGS) on a GSO skb in user space")
                ret = 0
    env.memory.store(mtu_len, 4, mtu)
    return _ret(ret)


def set_hash(e: HelperEnv, ctx: int, value: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_set_hash``: set ``skb->hash`` (a software hash)."""
    env = run_env(e)
    context_of(env, ctx, SkbMapped, "bpf_set_hash").set_field("hash", value & M32)
    return 0


def set_hash_invalid(e: HelperEnv, ctx: int, _b: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_set_hash_invalid``: clear ``skb->hash``."""
    env = run_env(e)
    context_of(env, ctx, SkbMapped, "bpf_set_hash_invalid").set_field("hash", 0)
    return 0


def csum_update(e: HelperEnv, ctx: int, _csum: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_csum_update``: only ``CHECKSUM_COMPLETE`` skbs have a checksum to update (``-ENOTSUPP``)."""
    env = run_env(e)
    context_of(env, ctx, SkbMapped, "bpf_csum_update")
    return _ret(-ENOTSUPP)


def _xdp_range(xdp: XdpMapped, offset: int, length: int) -> int:
    """``bpf_xdp_pointer``'s checks: 0, ``-EFAULT`` (over 0xffff) or ``-EINVAL`` (past the end
    of the whole packet, fragments included)."""
    if offset > 0xFFFF or length > 0xFFFF:
        return -errno.EFAULT
    if offset + length > xdp.buff_len():
        return -errno.EINVAL
    return 0


def xdp_load_bytes(e: HelperEnv, ctx: int, offset: int, buf: int, length: int, _e: int) -> int:
    env = run_env(e)
    xdp = context_of(env, ctx, XdpMapped, "bpf_xdp_load_bytes")
    offset &= M32
    length &= M32
    err = _xdp_range(xdp, offset, length)
    if err:
        return _ret(err)
    env.memory.write_bytes(buf, xdp.read(offset, length))
    return 0


def xdp_store_bytes(e: HelperEnv, ctx: int, offset: int, buf: int, length: int, _e: int) -> int:
    env = run_env(e)
    xdp = context_of(env, ctx, XdpMapped, "bpf_xdp_store_bytes")
    offset &= M32
    length &= M32
    err = _xdp_range(xdp, offset, length)
    if err:
        return _ret(err)
    xdp.write(offset, env.memory.read_bytes(buf, length))
    return 0


def xdp_get_buff_len(e: HelperEnv, ctx: int, _b: int, _c: int, _d: int, _e: int) -> int:
    env = run_env(e)
    xdp = context_of(env, ctx, XdpMapped, "bpf_xdp_get_buff_len")
    return xdp.buff_len()


def register(reg: HelperRegistry) -> None:
    """Add this module's helpers to ``reg``."""
    for hid, fn in (
        (HelperId.XDP_ADJUST_HEAD, xdp_adjust_head),
        (HelperId.XDP_ADJUST_TAIL, xdp_adjust_tail),
        (HelperId.XDP_ADJUST_META, xdp_adjust_meta),
        (HelperId.REDIRECT, redirect),
        (HelperId.REDIRECT_MAP, redirect_map),
        (HelperId.CSUM_DIFF, csum_diff_helper),
        (HelperId.L3_CSUM_REPLACE, l3_csum_replace),
        (HelperId.L4_CSUM_REPLACE, l4_csum_replace),
        (HelperId.SKB_LOAD_BYTES, skb_load_bytes),
        (HelperId.SKB_STORE_BYTES, skb_store_bytes),
        (HelperId.SKB_LOAD_BYTES_RELATIVE, skb_load_bytes_relative),
        (HelperId.SKB_PULL_DATA, skb_pull_data),
        (HelperId.SET_HASH, set_hash),
        (HelperId.SKB_ECN_SET_CE, skb_ecn_set_ce),
        (HelperId.CSUM_LEVEL, csum_level),
        (HelperId.CHECK_MTU, check_mtu),
        (HelperId.SKB_ADJUST_ROOM, skb_adjust_room),
        (HelperId.SKB_CHANGE_TYPE, skb_change_type),
        (HelperId.SKB_VLAN_PUSH, skb_vlan_push),
        (HelperId.SKB_VLAN_POP, skb_vlan_pop),
        (HelperId.SET_HASH_INVALID, set_hash_invalid),
        (HelperId.CSUM_UPDATE, csum_update),
        (HelperId.SKB_CHANGE_TAIL, skb_change_tail),
        (HelperId.SKB_CHANGE_HEAD, skb_change_head),
        (HelperId.XDP_LOAD_BYTES, xdp_load_bytes),
        (HelperId.XDP_STORE_BYTES, xdp_store_bytes),
        (HelperId.XDP_GET_BUFF_LEN, xdp_get_buff_len),
    ):
        reg.register(hid, f"bpf_{hid.name.lower()}", fn)
