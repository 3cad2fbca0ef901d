"""User-space kernel helpers for gateways: FIB and socket lookups, neighbour/peer redirects,
protocol change, tunnel metadata, classid and realm.

Core layer: pure, no kernel access (it reads the host's routing state from /proc and /sys,
as any unprivileged process can, when the caller gives none).

Rule 1 (``bpf_fib_lookup``, ``net/core/filter.c``): the kernel consults the FIB of the
program's network namespace. The runtime answers from a :class:`Fib`: ``RunEnv.fib`` when the
caller gives one (deterministic tests), else the host's state read at each call
(:meth:`Fib.from_host`: devices from ``/sys/class/net``, per-device forwarding from
``/proc/sys/net/ipv{4,6}/conf/<dev>/forwarding``, IPv4 routes from ``/proc/net/route`` with
their types from ``/proc/net/fib_trie``, IPv6 routes from ``/proc/net/ipv6_route``, IPv4
neighbours from ``/proc/net/arp``), or, in deterministic mode, :meth:`Fib.loopback` (only
``lo``, forwarding off: the Linux defaults). The lookup follows the kernel's order: flags and
``plen`` (``-EINVAL``), family (``-EAFNOSUPPORT``), IPv6 link-local/loopback/multicast
addresses (``NOT_FWDED``), the device (``-ENODEV``), its forwarding switch (``FWD_DISABLED``),
the route (local, main, default table; ``BPF_FIB_LOOKUP_DIRECT``: the main table or
``tbid``), the route type (blackhole, unreachable, prohibit; anything but unicast is
``NOT_FWDED``), the MTU (``tot_len`` given: the route's locked MTU or the device's, at most
``IP_MAX_MTU`` 0xfff0 for IPv4; ``conf/<dev>/mtu`` for IPv6), the gateway, the neighbour
(``NO_NEIGH`` unless it is valid) and the MAC addresses. tc without ``tot_len`` checks the skb
against the output device instead (``FRAG_NEEDED``) and reports its MTU (a ``__u16``).

What /proc cannot tell is refused with :class:`~ebpf.errors.NotSupportedError` rather than
guessed: IPv6 neighbours, the neighbours of NOARP/loopback/point-to-point devices, the kind of
an IPv6 reject route (blackhole, unreachable or prohibit), the source address
(``BPF_FIB_LOOKUP_SRC`` without a known ``prefsrc``) and the devices of routes in tables other
than main raise it when the lookup needs them. Not visible and not detected: policy rules
other than the default ones (assumed absent), locked route MTUs and route TOS keys (the device
MTU is used; measured: an IPv6 ``mtu lock 1300`` route answers 1300 in the kernel), ECMP
paths (the first is used) and lightweight-tunnel encapsulations.

Rule 2 (socket lookups): the runtime has no sockets, so ``bpf_sk_lookup_tcp``/``_udp`` and
``bpf_skc_lookup_tcp`` return NULL (0), which is the kernel's answer whenever no socket of
the namespace matches the tuple (and for a tuple size other than 12 or 36, flags, or a netns
id other than ``BPF_F_CURRENT_NETNS``, whose namespaces are not looked at). Outside
deterministic mode a lookup in the current namespace first reads ``/proc/net/{tcp,udp}{,6}``:
when a socket there could match (a listener or unconnected UDP socket on the destination
address or a wildcard with the destination port, or a connected one with the whole tuple), the
kernel would return it and the runtime raises ``NotSupportedError`` instead of answering NULL.
``bpf_sk_release`` returns 0.

Rule 3 (redirects): ``bpf_redirect_neigh`` (``plen`` 0 or at least 20, flags 0) and
``bpf_redirect_peer`` (flags 0) record the target in ``RunEnv.redirect`` (flags
:data:`BPF_F_NEIGH` / :data:`BPF_F_NEXTHOP` / :data:`BPF_F_PEER`, the kernel's internal
``bpf_redirect_info`` bits) and return ``TC_ACT_REDIRECT``; bad arguments ``TC_ACT_SHOT``.

Rule 4 (``bpf_skb_change_proto``): IPv4 -> IPv6 inserts 20 zero bytes after the MAC header,
IPv6 -> IPv4 removes the 20 bytes there; ``protocol`` changes and ``hash`` is cleared; other
pairs are ``-ENOTSUPP`` (524), flags ``-EINVAL``.

Rule 5 (tunnel metadata): a test-run skb has no tunnel ``dst``: ``bpf_skb_get_tunnel_key``
answers ``-EINVAL`` and ``bpf_skb_get_tunnel_opt`` ``-ENOENT``, both zeroing the buffer. After
``bpf_skb_set_tunnel_key`` (a TX tunnel key, local and remote kept where the kernel keeps
them) the getters read it back as the kernel does, and ``bpf_skb_set_tunnel_opt`` attaches
options to it. The metadata lives as long as the mapped skb: the repeats of a test run see it,
as the kernel's loop over one skb does; batch runs that reset one mapping (``run_many``) see
it too, a known difference (the kernel builds a new skb per test run).

Rule 6: ``bpf_get_route_realm`` is the ``tclassid`` of the skb's route, 0 without one (a test
run); ``bpf_get_cgroup_classid`` is the running task's ``net_cls.classid`` (cgroup v1; 0 when
there is none, and always in deterministic mode).
"""

from __future__ import annotations

import errno
import os
import struct
import weakref
from dataclasses import dataclass, field
from enum import IntEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from ebpf.errors import NotSupportedError, VMError
from ebpf.helpers import HelperId
from ebpf.vm._context_base import MappedInput
from ebpf.vm._context_skb import SkbMapped
from ebpf.vm._helpers_net import context_of
from ebpf.vm.context import XdpMapped
from ebpf.vm.helpers import M64, HelperEnv, HelperFn, HelperRegistry, Redirect, RunEnv, run_env

__all__ = [
    "BPF_F_NEIGH",
    "BPF_F_NEXTHOP",
    "BPF_F_PEER",
    "Fib",
    "FibDevice",
    "FibResult",
    "FibRoute",
    "RouteType",
    "fib_lookup",
    "register",
]

M32 = 0xFFFFFFFF
ENOTSUPP = 524
TC_ACT_SHOT, TC_ACT_REDIRECT = 2, 7
AF_INET, AF_INET6 = 2, 10
BPF_F_NEIGH, BPF_F_PEER, BPF_F_NEXTHOP = 1 << 16, 1 << 17, 1 << 18  # bpf_redirect_info flags

IPAddr = IPv4Address | IPv6Address
IPNet = IPv4Network | IPv6Network


class FibResult(IntEnum):
    """``BPF_FIB_LKUP_RET_*``: the non-negative answers of ``bpf_fib_lookup``."""

    SUCCESS = 0  # BPF_FIB_LKUP_RET_SUCCESS
    BLACKHOLE = 1  # BPF_FIB_LKUP_RET_BLACKHOLE
    UNREACHABLE = 2  # BPF_FIB_LKUP_RET_UNREACHABLE
    PROHIBIT = 3  # BPF_FIB_LKUP_RET_PROHIBIT
    NOT_FWDED = 4  # BPF_FIB_LKUP_RET_NOT_FWDED
    FWD_DISABLED = 5  # BPF_FIB_LKUP_RET_FWD_DISABLED
    UNSUPP_LWT = 6  # BPF_FIB_LKUP_RET_UNSUPP_LWT
    NO_NEIGH = 7  # BPF_FIB_LKUP_RET_NO_NEIGH
    FRAG_NEEDED = 8  # BPF_FIB_LKUP_RET_FRAG_NEEDED
    NO_SRC_ADDR = 9  # BPF_FIB_LKUP_RET_NO_SRC_ADDR


class RouteType(IntEnum):
    """``RTN_*``: the type of a route."""

    UNICAST = 1  # RTN_UNICAST
    LOCAL = 2  # RTN_LOCAL
    BROADCAST = 3  # RTN_BROADCAST
    ANYCAST = 4  # RTN_ANYCAST
    MULTICAST = 5  # RTN_MULTICAST
    BLACKHOLE = 6  # RTN_BLACKHOLE
    UNREACHABLE = 7  # RTN_UNREACHABLE
    PROHIBIT = 8  # RTN_PROHIBIT
    THROW = 9  # RTN_THROW


RT_TABLE_DEFAULT, RT_TABLE_MAIN, RT_TABLE_LOCAL = 253, 254, 255
BPF_FIB_LOOKUP_DIRECT = 1
BPF_FIB_LOOKUP_OUTPUT = 2
BPF_FIB_LOOKUP_SKIP_NEIGH = 4
BPF_FIB_LOOKUP_TBID = 8
BPF_FIB_LOOKUP_SRC = 16
BPF_FIB_LOOKUP_MARK = 32
BPF_FIB_LOOKUP_MASK = 0x3F
FIB_LOOKUP_SIZE = 64  # sizeof(struct bpf_fib_lookup)
IP_MAX_MTU = 0xFFF0
IP6_MAX_MTU = 0xFFFF + 40
IPV6_MIN_MTU = 1280
VLAN_HLEN = 4
IFF_UP, IFF_LOOPBACK, IFF_POINTOPOINT, IFF_NOARP = 0x1, 0x8, 0x10, 0x80

# Route-type errors of fib_table_lookup (fib_props[type].error) and what bpf_fib_lookup makes of them.
_TYPE_RESULT = {
    RouteType.BLACKHOLE: FibResult.BLACKHOLE,
    RouteType.UNREACHABLE: FibResult.UNREACHABLE,
    RouteType.PROHIBIT: FibResult.PROHIBIT,
}


@dataclass(frozen=True)
class FibRoute:
    """One route.

    Attributes:
        dst: the destination prefix (IPv4 or IPv6).
        ifindex: the output device (0: none, as for blackhole routes, or unknown).
        gateway: the next hop, ``None`` for a directly connected destination.
        type: the route type.
        metric: the priority (lower wins among routes of the same prefix).
        table: the routing table (255 local, 254 main, 253 default).
        prefsrc: the preferred source address (``BPF_FIB_LOOKUP_SRC``), if known.
        mtu: a locked route MTU (0: the device's).
        exact: ``False`` for an IPv6 reject route read from /proc, which does not tell
            blackhole, unreachable and prohibit apart (a lookup that hits it raises
            ``NotSupportedError``).
    """

    dst: IPNet
    ifindex: int = 0
    gateway: IPAddr | None = None
    type: RouteType = RouteType.UNICAST
    metric: int = 0
    table: int = RT_TABLE_MAIN
    prefsrc: IPAddr | None = None
    mtu: int = 0
    exact: bool = True


@dataclass(frozen=True)
class FibDevice:
    """What a FIB lookup needs of a device.

    Attributes:
        ifindex, name: the device.
        mtu: ``dev->mtu``.
        mac: ``dev->dev_addr`` (6 bytes).
        flags: ``IFF_*`` (up, loopback, point-to-point, noarp).
        header_len: ``dev->hard_header_len``.
        forwarding: IPv4 forwarding on the device (``None``: no IPv4 configuration).
        forwarding6: IPv6 forwarding on the device (``None``: no IPv6 configuration).
        mtu6: the device's IPv6 MTU (``conf/<dev>/mtu``; 0: the device MTU).
    """

    ifindex: int
    name: str = ""
    mtu: int = 1500
    mac: bytes = bytes(6)
    flags: int = IFF_UP
    header_len: int = 14
    forwarding: bool | None = False
    forwarding6: bool | None = False
    mtu6: int = 0


@dataclass
class Fib:
    """The routing state ``bpf_fib_lookup`` consults (see the module rules).

    Attributes:
        devices: ifindex -> device.
        routes: every route of every table.
        neighbours: (ifindex, address) -> MAC of the *valid* (``NUD_VALID``) neighbour entries.
        tables: the tables that exist (a ``DIRECT``/``TBID`` lookup of another one: ``NOT_FWDED``).
        known_neighbours6: whether :attr:`neighbours` holds every IPv6 neighbour (not so for
            the host's state, which /proc does not show).
        host: whether the state was read from the host (gaps raise ``NotSupportedError``).
    """

    devices: dict[int, FibDevice] = field(default_factory=dict)
    routes: list[FibRoute] = field(default_factory=list)
    neighbours: dict[tuple[int, IPAddr], bytes] = field(default_factory=dict)
    tables: set[int] = field(default_factory=lambda: {RT_TABLE_DEFAULT, RT_TABLE_MAIN, RT_TABLE_LOCAL})
    known_neighbours6: bool = True
    host: bool = False

    @classmethod
    def loopback(cls) -> Fib:
        """Only ``lo`` (ifindex 1, MTU 65536, forwarding off) and its local routes."""
        lo = FibDevice(1, "lo", 65536, bytes(6), IFF_UP | IFF_LOOPBACK, 14, False, False, 65536)
        return cls(
            {1: lo},
            [
                FibRoute(IPv4Network("127.0.0.0/8"), 1, type=RouteType.LOCAL, table=RT_TABLE_LOCAL),
                FibRoute(IPv6Network("::1/128"), 1, type=RouteType.LOCAL, table=RT_TABLE_LOCAL),
            ],
        )

    @classmethod
    def from_host(cls, proc: str = "/proc", sys: str = "/sys") -> Fib:
        """The host's state as an unprivileged process reads it (see the module rules)."""
        devices = _host_devices(proc, sys)
        by_name = {d.name: d.ifindex for d in devices.values()}
        routes, tables = _host_routes4(proc, by_name)
        routes += _host_routes6(proc, by_name)
        return cls(devices, routes, _host_arp(proc, by_name), tables, known_neighbours6=False, host=True)

    def device(self, ifindex: int) -> FibDevice | None:
        return self.devices.get(ifindex)


# --- reading the host's state -------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _read_int(path: str) -> int | None:
    text = _read(path)
    try:
        return int(text.strip(), 0) if text is not None else None
    except ValueError:
        return None


def _host_devices(proc: str, sys: str) -> dict[int, FibDevice]:
    devices: dict[int, FibDevice] = {}
    base = os.path.join(sys, "class", "net")
    try:
        names = os.listdir(base)
    except OSError:
        return devices
    for name in names:
        ifindex = _read_int(os.path.join(base, name, "ifindex"))
        mtu = _read_int(os.path.join(base, name, "mtu"))
        if ifindex is None or mtu is None:
            continue
        flags = _read_int(os.path.join(base, name, "flags")) or 0
        arphrd = _read_int(os.path.join(base, name, "type"))
        text = (_read(os.path.join(base, name, "address")) or "").strip()
        try:
            mac = bytes.fromhex(text.replace(":", ""))[:6].ljust(6, b"\0")
        except ValueError:
            mac = bytes(6)
        fwd4 = _read_int(os.path.join(proc, "sys/net/ipv4/conf", name, "forwarding"))
        fwd6 = _read_int(os.path.join(proc, "sys/net/ipv6/conf", name, "forwarding"))
        mtu6 = _read_int(os.path.join(proc, "sys/net/ipv6/conf", name, "mtu")) or 0
        header = 14 if arphrd in (1, 772) else 0  # ARPHRD_ETHER, ARPHRD_LOOPBACK
        devices[ifindex] = FibDevice(
            ifindex,
            name,
            mtu,
            mac,
            flags,
            header,
            None if fwd4 is None else bool(fwd4),
            None if fwd6 is None else bool(fwd6),
            mtu6,
        )
    return devices


_TRIE_TYPES = {t.name: t for t in RouteType}


def _fib_trie(proc: str) -> dict[int, list[tuple[IPv4Network, RouteType]]]:
    """table -> [(prefix, type)] from /proc/net/fib_trie (every table, every route type)."""
    text = _read(os.path.join(proc, "net", "fib_trie")) or ""
    tables: dict[int, list[tuple[IPv4Network, RouteType]]] = {}
    current: list[tuple[IPv4Network, RouteType]] | None = None
    leaf: str | None = None
    for line in text.splitlines():
        if not line.startswith(" "):
            name = line.strip().rstrip(":")
            tid = {"Main": RT_TABLE_MAIN, "Local": RT_TABLE_LOCAL}.get(name)
            if tid is None and name.startswith("Id "):
                try:
                    tid = int(name[3:])
                except ValueError:
                    tid = None
            current = tables.setdefault(tid, []) if tid is not None else None
            continue
        words = line.split()
        if len(words) >= 2 and words[0] == "|--":
            leaf = words[1]
        elif words and words[0].startswith("/") and leaf is not None and current is not None:
            kind = _TRIE_TYPES.get(words[-1])
            try:
                net = IPv4Network(f"{leaf}{words[0]}", strict=False)
            except ValueError:
                continue
            if kind is not None:
                current.append((net, kind))
    return tables


def _le32_addr(hexword: str) -> IPv4Address:
    return IPv4Address(int(hexword, 16).to_bytes(4, "little"))


def _host_routes4(proc: str, by_name: dict[str, int]) -> tuple[list[FibRoute], set[int]]:
    trie = _fib_trie(proc)
    tables = {RT_TABLE_DEFAULT, RT_TABLE_MAIN, RT_TABLE_LOCAL} | set(trie)
    merged = trie.get(RT_TABLE_MAIN) == trie.get(RT_TABLE_LOCAL)
    routes: list[FibRoute] = []
    text = _read(os.path.join(proc, "net", "route")) or ""
    # /proc/net/route shows every main-table route but broadcast and multicast ones, without
    # their type: fib_trie gives it when the prefix has only one kind of route.
    main_kinds: dict[IPv4Network, set[RouteType]] = {}
    for net, kind in trie.get(RT_TABLE_MAIN, []):
        if kind not in (RouteType.BROADCAST, RouteType.MULTICAST):
            main_kinds.setdefault(net, set()).add(kind)
    for line in text.splitlines()[1:]:
        words = line.split()
        if len(words) < 8:
            continue
        try:
            dst = _le32_addr(words[1])
            gateway = _le32_addr(words[2])
            flags = int(words[3], 16)
            metric = int(words[6])
            mask = _le32_addr(words[7])
            net = IPv4Network(f"{dst}/{mask}", strict=False)
        except ValueError:
            continue
        kinds = main_kinds.get(net, set())
        if len(kinds) == 1:
            (kind,) = kinds
        elif flags & 0x200:  # RTF_REJECT: unreachable or prohibit
            kind = RouteType.UNREACHABLE
        elif words[0] == "*":
            kind = RouteType.BLACKHOLE
        else:
            kind = RouteType.UNICAST
        routes.append(
            FibRoute(
                net,
                by_name.get(words[0], 0),
                gateway if flags & 0x2 else None,  # RTF_GATEWAY
                kind,
                metric,
                RT_TABLE_MAIN,
            )
        )
    # Route types /proc/net/route leaves out (local, broadcast, throw...) and other tables.
    for tid, entries in trie.items():
        if merged and tid == RT_TABLE_LOCAL:
            continue
        for net, kind in entries:
            if tid == RT_TABLE_MAIN and kind in (
                RouteType.UNICAST,
                RouteType.BLACKHOLE,
                RouteType.UNREACHABLE,
                RouteType.PROHIBIT,
            ):
                continue  # from /proc/net/route, with its device and gateway
            table = RT_TABLE_MAIN if merged and tid == RT_TABLE_MAIN else tid
            routes.append(FibRoute(net, 0, None, kind, 0, table))
    return routes, tables


def _host_routes6(proc: str, by_name: dict[str, int]) -> list[FibRoute]:
    text = _read(os.path.join(proc, "net", "ipv6_route")) or ""
    routes: list[FibRoute] = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 10:
            continue
        try:
            net = IPv6Network((int(words[0], 16), int(words[1], 16)))
            nexthop = IPv6Address(int(words[4], 16))
            metric = int(words[5], 16)
            flags = int(words[8], 16)
        except ValueError:
            continue
        if flags & 0x01000000:  # RTF_CACHE: an exception, not a route
            continue
        if flags & 0x200 and metric == M32 and words[9] == "lo" and net.prefixlen == 0:
            continue  # fib6_null_entry: no route
        kind = RouteType.UNICAST
        table = RT_TABLE_MAIN
        if flags & 0x80000000:  # RTF_LOCAL
            kind, table = RouteType.LOCAL, RT_TABLE_LOCAL
        elif flags & 0x00100000:  # RTF_ANYCAST
            kind, table = RouteType.ANYCAST, RT_TABLE_LOCAL
        elif flags & 0x200:  # RTF_REJECT: blackhole, unreachable or prohibit
            kind = RouteType.UNREACHABLE
        elif net.is_multicast:
            kind = RouteType.MULTICAST if net.prefixlen else RouteType.UNICAST
        gateway = nexthop if flags & 0x2 else None
        exact = not (flags & 0x200 and kind == RouteType.UNREACHABLE)
        routes.append(FibRoute(net, by_name.get(words[9], 0), gateway, kind, metric, table, exact=exact))
    return routes


def _host_arp(proc: str, by_name: dict[str, int]) -> dict[tuple[int, IPAddr], bytes]:
    text = _read(os.path.join(proc, "net", "arp")) or ""
    found: dict[tuple[int, IPAddr], bytes] = {}
    for line in text.splitlines()[1:]:
        words = line.split()
        if len(words) < 6:
            continue
        try:
            addr = IPv4Address(words[0])
            flags = int(words[2], 16)
            mac = bytes.fromhex(words[3].replace(":", ""))
        except ValueError:
            continue
        if flags & 0x2 and words[5] in by_name:  # ATF_COM: the entry is NUD_VALID
            found[(by_name[words[5]], addr)] = mac[:6].ljust(6, b"\0")
    return found


# --- the lookup ---------------------------------------------------------------------------------


def _route_in(fib: Fib, table: int, dst: IPAddr, oif: int) -> FibRoute | None:
    """Longest-prefix match in one table; among equal prefixes the lowest metric.

    IPv4 (``fib_table_lookup``) skips routes whose device is not ``oif`` (when given) and backs
    off to shorter prefixes; type errors come before the device check. IPv6 (``rt6_select``)
    only prefers routes on ``oif`` within the longest matching prefix.
    """
    best: FibRoute | None = None
    candidates = sorted(
        (r for r in fib.routes if r.table == table and r.dst.version == dst.version and dst in r.dst),
        key=lambda r: (-r.dst.prefixlen, r.metric),
    )
    if dst.version == 6:
        if not candidates:
            return None
        longest = [r for r in candidates if r.dst.prefixlen == candidates[0].dst.prefixlen]
        return min(longest, key=lambda r: (bool(oif) and r.ifindex != oif, r.metric))
    for route in candidates:
        if route.type in _TYPE_RESULT or route.type == RouteType.THROW:
            return route
        if oif and route.type == RouteType.UNICAST and route.ifindex != oif:
            continue
        best = route
        break
    return best


def _resolve(fib: Fib, dst: IPAddr, oif: int, table: int | None) -> FibRoute | None:
    """``fib_lookup`` with the default rules (local, main, default), or one table."""
    for tid in (table,) if table is not None else (RT_TABLE_LOCAL, RT_TABLE_MAIN, RT_TABLE_DEFAULT):
        route = _route_in(fib, tid, dst, oif)
        if route is not None and route.type != RouteType.THROW:
            return route
        if route is not None and table is not None:
            return None
    return None


def _unknown(what: str) -> NotSupportedError:
    return NotSupportedError(
        f"bpf_fib_lookup: {what} in the user-space runtime",
        detail="/proc does not show it; give RunEnv.fib a Fib for this lookup",
    )


_V6_STRICT = ("is_link_local", "is_loopback", "is_multicast")


def fib_lookup(
    fib: Fib,
    params: bytearray,
    flags: int,
    *,
    check_mtu: bool,
    skb_len: int | None = None,
) -> int:
    """The answer of ``bpf_fib_lookup`` for ``params`` (a 64-byte ``struct bpf_fib_lookup``,
    updated in place as the kernel updates it); negative values are ``-errno``.

    ``check_mtu``: XDP always, tc when ``tot_len`` is set; else ``skb_len`` is checked against the
    output device (tc). The ``plen`` and flag checks are the caller's.

    Raises:
        NotSupportedError: the answer depends on host state /proc does not show (module rules).
    """
    family = params[0]
    if family not in (AF_INET, AF_INET6):
        return -errno.EAFNOSUPPORT
    v4 = family == AF_INET
    ifindex = int.from_bytes(params[8:12], "little")
    tot_len = int.from_bytes(params[6:8], "little")
    src: IPAddr
    dst: IPAddr
    if v4:
        src, dst = IPv4Address(bytes(params[16:20])), IPv4Address(bytes(params[32:36]))
    else:
        src, dst = IPv6Address(bytes(params[16:32])), IPv6Address(bytes(params[32:48]))
        if any(getattr(a, p) for a in (dst, src) for p in _V6_STRICT):
            return FibResult.NOT_FWDED
    dev = fib.device(ifindex)
    if dev is None:
        return -errno.ENODEV
    if not (dev.forwarding if v4 else dev.forwarding6):
        return FibResult.FWD_DISABLED
    oif = ifindex if flags & BPF_FIB_LOOKUP_OUTPUT else 0
    table: int | None = None
    if flags & BPF_FIB_LOOKUP_DIRECT:
        table = RT_TABLE_MAIN
        if flags & BPF_FIB_LOOKUP_TBID:
            table = int.from_bytes(params[48:52], "little")
            params[48:52] = bytes(4)
        if table not in fib.tables:
            return FibResult.NOT_FWDED
    route = _resolve(fib, dst, oif, table)
    if route is None:
        return FibResult.NOT_FWDED
    if not route.exact:
        raise _unknown(f"the kind of reject route {route.dst} (blackhole, unreachable or prohibit)")
    if route.type in _TYPE_RESULT:
        return _TYPE_RESULT[route.type]
    if route.type != RouteType.UNICAST:
        return FibResult.NOT_FWDED
    out = fib.device(route.ifindex)
    if out is None:
        raise _unknown(f"the device of the route to {route.dst} (table {route.table})")
    mtu = 0
    if check_mtu:
        if v4:
            mtu = route.mtu or min(out.mtu, IP_MAX_MTU)
        else:
            mtu = min(route.mtu or max(IPV6_MIN_MTU, out.mtu6 or out.mtu), IP6_MAX_MTU)
        if tot_len > mtu:
            params[6:8] = (mtu & 0xFFFF).to_bytes(2, "little")
            return FibResult.FRAG_NEEDED
    params[12:16] = (route.metric & M32).to_bytes(4, "little")
    params[8:12] = out.ifindex.to_bytes(4, "little")
    if flags & BPF_FIB_LOOKUP_SRC:
        if route.prefsrc is None:  # the kernel picks an address of the device: not modelled
            raise _unknown("the source address of the route (BPF_FIB_LOOKUP_SRC)")
        params[16 : 16 + (4 if v4 else 16)] = route.prefsrc.packed
    nexthop = dst
    if route.gateway is not None:
        nexthop = route.gateway
        if v4 and route.gateway.version == 6:
            params[0] = AF_INET6
            params[32:48] = route.gateway.packed
        else:
            params[32 : 32 + (4 if v4 else 16)] = route.gateway.packed
    if not flags & BPF_FIB_LOOKUP_SKIP_NEIGH:
        if fib.host and out.flags & (IFF_NOARP | IFF_LOOPBACK | IFF_POINTOPOINT):
            raise _unknown(f"the neighbour {nexthop} of NOARP device {out.name or out.ifindex}")
        if nexthop.version == 6 and not fib.known_neighbours6:
            raise _unknown(f"the IPv6 neighbour {nexthop}")
        mac = fib.neighbours.get((out.ifindex, nexthop))
        if mac is None:
            return FibResult.NO_NEIGH
        params[52:58] = out.mac
        params[58:64] = mac
    params[48:52] = bytes(4)  # h_vlan_proto, h_vlan_TCI
    if mtu:
        params[6:8] = (mtu & 0xFFFF).to_bytes(2, "little")
    if skb_len is not None:
        if not out.flags & IFF_UP or skb_len > out.mtu + out.header_len + VLAN_HLEN:
            result = FibResult.FRAG_NEEDED
        else:
            result = FibResult.SUCCESS
        params[6:8] = (out.mtu & 0xFFFF).to_bytes(2, "little")
        return result
    return FibResult.SUCCESS


def _fib_of(env: RunEnv) -> Fib:
    fib = getattr(env, "fib", None)
    if isinstance(fib, Fib):
        return fib
    return Fib.loopback() if env.deterministic else Fib.from_host()


def fib_lookup_helper(e: HelperEnv, ctx: int, params: int, plen: int, flags: int, _e: int) -> int:
    """``bpf_fib_lookup`` (tc and XDP), see the module rules."""
    env = run_env(e)
    mapped = context_of(env, ctx, MappedInput, "bpf_fib_lookup")
    if not isinstance(mapped, SkbMapped | XdpMapped):
        raise VMError("bpf_fib_lookup: the context is not a packet")
    plen = plen & M32
    if plen >= 1 << 31 or plen < FIB_LOOKUP_SIZE or flags & ~BPF_FIB_LOOKUP_MASK & M32:
        return -errno.EINVAL & M64
    buf = bytearray(env.memory.read_bytes(params, FIB_LOOKUP_SIZE))
    if isinstance(mapped, XdpMapped):
        ret = fib_lookup(_fib_of(env), buf, flags & M32, check_mtu=True)
    else:
        tot_len = int.from_bytes(buf[6:8], "little")
        skb_len = None if tot_len else mapped.end - mapped.start
        ret = fib_lookup(_fib_of(env), buf, flags & M32, check_mtu=bool(tot_len), skb_len=skb_len)
    env.memory.write_bytes(params, bytes(buf))
    return ret & M64


# --- socket lookups -----------------------------------------------------------------------------


TUPLE4_SIZE, TUPLE6_SIZE = 12, 36  # sizeof(bpf_sock_tuple.ipv4 / .ipv6)
TCP_LISTEN, TCP_CLOSE = 0x0A, 0x07


def _proc_addr(text: str) -> tuple[bytes, int]:
    """``0100007F:1F90`` (each 32-bit word printed in host order) -> (address bytes, port)."""
    addr, _, port = text.partition(":")
    raw = bytes.fromhex(addr)
    return b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4)), int(port, 16)


def _matching_socket(proto: str, saddr: bytes, daddr: bytes, sport: int, dport: int) -> str | None:
    """A line of /proc/net/<proto>{,6} whose socket the kernel's lookup could return, if any."""
    v4 = len(daddr) == 4
    mapped = bytes(10) + b"\xff\xff"
    for table in (proto, proto + "6"):
        text = _read(os.path.join("/proc/net", table)) or ""
        for line in text.splitlines()[1:]:
            words = line.split()
            if len(words) < 4:
                continue
            try:
                (local, lport), (remote, rport) = _proc_addr(words[1]), _proc_addr(words[2])
                state = int(words[3], 16)
            except ValueError:
                continue
            if lport != dport:
                continue
            if len(local) == 16 and v4:  # a dual-stack socket sees IPv4 as ::ffff:a.b.c.d
                if local not in (bytes(16), mapped + daddr):
                    continue
                local, remote = (daddr if any(local) else bytes(4)), remote[12:]
            elif len(local) != len(daddr):
                continue
            if local not in (daddr, bytes(len(daddr))):
                continue
            unconnected = state == TCP_LISTEN if proto == "tcp" else state == TCP_CLOSE
            if unconnected or (remote == saddr and rport == sport):
                return f"/proc/net/{table}: {line.strip()}"
    return None


def _sk_lookup(proto: str, name: str) -> HelperFn:
    """``bpf_sk_lookup_tcp`` / ``_udp`` / ``bpf_skc_lookup_tcp`` (every program type's variant):
    no socket (NULL), or ``NotSupportedError`` when the host has one the kernel could return."""

    def lookup(e: HelperEnv, ctx: int, tuple_ptr: int, size: int, netns: int, flags: int) -> int:
        env = run_env(e)
        size &= M32
        if env.deterministic or flags or size not in (TUPLE4_SIZE, TUPLE6_SIZE) or not netns & 0x80000000:
            return 0
        data = env.memory.read_bytes(tuple_ptr, size)
        alen = 4 if size == TUPLE4_SIZE else 16
        sport, dport = struct.unpack_from("!HH", data, 2 * alen)
        found = _matching_socket(proto, data[:alen], data[alen : 2 * alen], sport, dport)
        if found is not None:
            raise NotSupportedError(
                f"{name} in the user-space runtime",
                detail=f"the kernel could return this namespace's socket ({found}); the runtime has no sockets",
            )
        return 0

    return lookup


def sk_release(e: HelperEnv, _sk: int, _b: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_sk_release``: 0 (the lookups never return a socket to release)."""
    return 0


# --- redirects ----------------------------------------------------------------------------------

REDIR_NEIGH_SIZE = 20  # sizeof(struct bpf_redir_neigh)


def redirect_neigh(e: HelperEnv, ifindex: int, params: int, plen: int, flags: int, _e: int) -> int:
    """``bpf_redirect_neigh``: redirect through the neighbour subsystem (optionally to a next hop)."""
    env = run_env(e)
    plen = plen & M32
    if (plen and (plen >= 1 << 31 or plen < REDIR_NEIGH_SIZE)) or flags:
        return TC_ACT_SHOT
    env.redirect = Redirect(ifindex=ifindex & M32, flags=BPF_F_NEIGH | (BPF_F_NEXTHOP if plen else 0))
    return TC_ACT_REDIRECT


def redirect_peer(e: HelperEnv, ifindex: int, flags: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_redirect_peer``: redirect to the peer device of a veth/netkit ``ifindex`` (ingress)."""
    env = run_env(e)
    if flags:
        return TC_ACT_SHOT
    env.redirect = Redirect(ifindex=ifindex & M32, flags=BPF_F_PEER)
    return TC_ACT_REDIRECT


# --- protocol change ----------------------------------------------------------------------------

ETH_P_IP_BE, ETH_P_IPV6_BE = 0x0008, 0xDD86  # htons(ETH_P_IP/IPV6) as __sk_buff.protocol reads
PROTO_LEN_DIFF = 20  # sizeof(struct ipv6hdr) - sizeof(struct iphdr)


def skb_change_proto(e: HelperEnv, ctx: int, proto: int, flags: int, _d: int, _e: int) -> int:
    """``bpf_skb_change_proto`` (tc): IPv4 <-> IPv6 header room after the MAC header."""
    env = run_env(e)
    skb = context_of(env, ctx, SkbMapped, "bpf_skb_change_proto")
    if flags:
        return -errno.EINVAL & M64
    current = skb.field("protocol")
    to = proto & 0xFFFF
    off = skb.network - skb.mac  # skb_mac_header_len
    if skb.start != skb.mac:
        raise VMError("bpf_skb_change_proto: skb->data is not at the MAC header (tc programs only)")
    if current == ETH_P_IP_BE and to == ETH_P_IPV6_BE:
        head = skb.packet[:off].tobytes()
        skb.resize(PROTO_LEN_DIFF, 0)
        pkt = skb.packet
        pkt[:off] = head
        pkt[off : off + PROTO_LEN_DIFF] = bytes(PROTO_LEN_DIFF)
    elif current == ETH_P_IPV6_BE and to == ETH_P_IP_BE:
        if skb.end - skb.start < off + PROTO_LEN_DIFF:
            return -errno.ENOMEM & M64
        head = skb.packet[:off].tobytes()
        skb.packet[PROTO_LEN_DIFF : PROTO_LEN_DIFF + off] = head
        skb.resize(-PROTO_LEN_DIFF, 0)
    else:
        return -ENOTSUPP & M64
    skb.mac = skb.start
    skb.network = skb.start + off
    skb.set_field("protocol", to)
    skb.set_field("hash", 0)
    return 0


# --- tunnel metadata ----------------------------------------------------------------------------

TUNNEL_KEY_SIZE = 44  # sizeof(struct bpf_tunnel_key)
_KEY_COMPAT_SIZES = (28, 24, 22, 8)  # local_ipv6, tunnel_label, tunnel_ext, remote_ipv6[1]
BPF_F_TUNINFO_IPV6 = 1
BPF_F_ZERO_CSUM_TX = 1 << 1
BPF_F_DONT_FRAGMENT = 1 << 2
BPF_F_SEQ_NUMBER = 1 << 3
BPF_F_NO_TUNNEL_KEY = 1 << 4
BPF_F_TUNINFO_FLAGS = 1 << 4
# IP_TUNNEL_*_BIT values as ip_tunnel_flags_to_be16 reports them (the old TUNNEL_* flags).
TUNNEL_CSUM, TUNNEL_KEY, TUNNEL_SEQ = 0x01, 0x04, 0x08
TUNNEL_DONT_FRAGMENT, TUNNEL_NOCACHE = 0x0100, 0x2000
TUNNEL_OPTIONS_PRESENT = 0x0800 | 0x1000 | 0x4000 | 0x8000  # GENEVE, VXLAN, ERSPAN, GTP
IP_TUNNEL_OPTS_MAX = 255
IPV6_FLOWLABEL_MASK = 0x000FFFFF


@dataclass
class _TunnelInfo:
    """The ``ip_tunnel_info`` a ``bpf_skb_set_tunnel_key`` attached to the skb (TX mode)."""

    ipv6: bool
    tun_id: int
    tos: int
    ttl: int
    flags: int  # TUNNEL_* bits
    src: bytes  # key.u.ipv{4,6}.src: the local address
    dst: bytes  # key.u.ipv{4,6}.dst: the remote address
    label: int
    options: bytes = b""


# id(skb) -> (the skb, its tunnel info); entries go when the skb does.
_TUNNELS: dict[int, tuple[weakref.ref[SkbMapped], _TunnelInfo]] = {}


def _tunnel_of(skb: SkbMapped) -> _TunnelInfo | None:
    entry = _TUNNELS.get(id(skb))
    return entry[1] if entry is not None and entry[0]() is skb else None


def _attach_tunnel(skb: SkbMapped, info: _TunnelInfo) -> None:
    key = id(skb)
    _TUNNELS[key] = (weakref.ref(skb, lambda _ref: _TUNNELS.pop(key, None)), info)


def _tc_skb(env: RunEnv, ctx: int, helper: str) -> SkbMapped:
    return context_of(env, ctx, SkbMapped, helper)


def skb_get_tunnel_key(e: HelperEnv, ctx: int, to: int, size: int, flags: int, _e: int) -> int:
    """``bpf_skb_get_tunnel_key``: ``-EINVAL`` without tunnel metadata; the buffer is zeroed on errors."""
    env = run_env(e)
    skb = _tc_skb(env, ctx, "bpf_skb_get_tunnel_key")
    size &= M32
    info = _tunnel_of(skb)

    def fail(err: int) -> int:
        env.memory.write_bytes(to, bytes(size))
        return -err & M64

    if info is None or flags & ~(BPF_F_TUNINFO_IPV6 | BPF_F_TUNINFO_FLAGS):
        return fail(errno.EINVAL)
    if info.ipv6 != bool(flags & BPF_F_TUNINFO_IPV6):
        return fail(errno.EPROTO)
    if size != TUNNEL_KEY_SIZE and (size not in _KEY_COMPAT_SIZES or (size == 8 and info.ipv6)):
        return fail(errno.EINVAL)
    out = bytearray(TUNNEL_KEY_SIZE)
    struct.pack_into("<I", out, 0, info.tun_id & M32)
    out[20:22] = bytes((info.tos, info.ttl))
    if flags & BPF_F_TUNINFO_FLAGS:
        out[22:24] = (info.flags & 0xFFFF).to_bytes(2, "big")
    if info.ipv6:
        out[4:20] = info.src
        out[28:44] = info.dst
        out[24:28] = info.label.to_bytes(4, "little")
    else:
        out[4:8] = info.src[::-1]
        out[28:32] = info.dst[::-1]
    env.memory.write_bytes(to, bytes(out[:size]))
    return 0


def skb_set_tunnel_key(e: HelperEnv, ctx: int, frm: int, size: int, flags: int, _e: int) -> int:
    """``bpf_skb_set_tunnel_key``: attach a TX tunnel key (the kernel's per-CPU metadata dst)."""
    env = run_env(e)
    skb = _tc_skb(env, ctx, "bpf_skb_set_tunnel_key")
    size &= M32
    known = (
        BPF_F_TUNINFO_IPV6 | BPF_F_ZERO_CSUM_TX | BPF_F_DONT_FRAGMENT | BPF_F_SEQ_NUMBER | BPF_F_NO_TUNNEL_KEY
    )
    if flags & ~known:
        return -errno.EINVAL & M64
    if size != TUNNEL_KEY_SIZE and size not in _KEY_COMPAT_SIZES:
        return -errno.EINVAL & M64
    key = env.memory.read_bytes(frm, size).ljust(TUNNEL_KEY_SIZE, b"\0")
    (tun_id,) = struct.unpack_from("<I", key, 0)
    tos, ttl = key[20], key[21]
    ext = int.from_bytes(key[22:24], "little")
    label = int.from_bytes(key[24:28], "little")
    ipv6 = bool(flags & BPF_F_TUNINFO_IPV6)
    if (not ipv6 and label) or ext:
        return -errno.EINVAL & M64
    bits = TUNNEL_NOCACHE
    bits |= TUNNEL_DONT_FRAGMENT if flags & BPF_F_DONT_FRAGMENT else 0
    bits |= 0 if flags & BPF_F_ZERO_CSUM_TX else TUNNEL_CSUM
    bits |= TUNNEL_SEQ if flags & BPF_F_SEQ_NUMBER else 0
    bits |= 0 if flags & BPF_F_NO_TUNNEL_KEY else TUNNEL_KEY
    if ipv6:
        info = _TunnelInfo(True, tun_id, tos, ttl, bits, key[28:44], key[4:20], label & IPV6_FLOWLABEL_MASK)
    else:
        # cpu_to_be32 of the host-order values: the bytes reversed.
        info = _TunnelInfo(False, tun_id, tos, ttl, bits, key[28:32][::-1], key[4:8][::-1], 0)
    _attach_tunnel(skb, info)
    return 0


def skb_get_tunnel_opt(e: HelperEnv, ctx: int, to: int, size: int, _d: int, _e: int) -> int:
    """``bpf_skb_get_tunnel_opt``: ``-ENOENT`` without options; returns the options' length."""
    env = run_env(e)
    skb = _tc_skb(env, ctx, "bpf_skb_get_tunnel_opt")
    size &= M32
    info = _tunnel_of(skb)
    if info is None or not info.flags & TUNNEL_OPTIONS_PRESENT:
        env.memory.write_bytes(to, bytes(size))
        return -errno.ENOENT & M64
    if size < len(info.options):
        env.memory.write_bytes(to, bytes(size))
        return -errno.ENOMEM & M64
    env.memory.write_bytes(to, info.options.ljust(size, b"\0"))
    return len(info.options)


def skb_set_tunnel_opt(e: HelperEnv, ctx: int, frm: int, size: int, _d: int, _e: int) -> int:
    """``bpf_skb_set_tunnel_opt``: options for the key ``bpf_skb_set_tunnel_key`` attached."""
    env = run_env(e)
    skb = _tc_skb(env, ctx, "bpf_skb_set_tunnel_opt")
    size &= M32
    info = _tunnel_of(skb)
    if info is None or size & 3:
        return -errno.EINVAL & M64
    if size > IP_TUNNEL_OPTS_MAX:
        return -errno.ENOMEM & M64
    info.options = env.memory.read_bytes(frm, size)
    if size:
        info.flags |= TUNNEL_OPTIONS_PRESENT
    return 0


# --- classid and realm --------------------------------------------------------------------------


def _net_cls_classid() -> int:
    """The calling thread's ``net_cls.classid`` (cgroup v1), 0 when it has none."""
    text = _read("/proc/thread-self/cgroup") or ""
    path = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and "net_cls" in parts[1].split(","):
            path = parts[2]
    if path is None:
        return 0
    mounts = _read("/proc/self/mounts") or ""
    for line in mounts.splitlines():
        words = line.split()
        if len(words) >= 4 and words[2] == "cgroup" and "net_cls" in words[3].split(","):
            value = _read_int(os.path.join(words[1], path.lstrip("/"), "net_cls.classid"))
            return (value or 0) & M32
    return 0


def get_cgroup_classid(e: HelperEnv, _ctx: int, _b: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_get_cgroup_classid``: the task's net_cls class id (a test run is not in softirq)."""
    env = run_env(e)
    return 0 if env.deterministic else _net_cls_classid()


def get_route_realm(e: HelperEnv, ctx: int, _b: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_get_route_realm``: the route's ``tclassid``; a test-run skb has no route (0)."""
    context_of(run_env(e), ctx, SkbMapped, "bpf_get_route_realm")
    return 0


def register(reg: HelperRegistry) -> None:
    """Add this module's helpers to ``reg``."""
    for hid, fn in (
        (HelperId.FIB_LOOKUP, fib_lookup_helper),
        (HelperId.SK_LOOKUP_TCP, _sk_lookup("tcp", "bpf_sk_lookup_tcp")),
        (HelperId.SK_LOOKUP_UDP, _sk_lookup("udp", "bpf_sk_lookup_udp")),
        (HelperId.SKC_LOOKUP_TCP, _sk_lookup("tcp", "bpf_skc_lookup_tcp")),
        (HelperId.SK_RELEASE, sk_release),
        (HelperId.REDIRECT_NEIGH, redirect_neigh),
        (HelperId.REDIRECT_PEER, redirect_peer),
        (HelperId.SKB_CHANGE_PROTO, skb_change_proto),
        (HelperId.SKB_GET_TUNNEL_KEY, skb_get_tunnel_key),
        (HelperId.SKB_SET_TUNNEL_KEY, skb_set_tunnel_key),
        (HelperId.SKB_GET_TUNNEL_OPT, skb_get_tunnel_opt),
        (HelperId.SKB_SET_TUNNEL_OPT, skb_set_tunnel_opt),
        (HelperId.GET_CGROUP_CLASSID, get_cgroup_classid),
        (HelperId.GET_ROUTE_REALM, get_route_realm),
    ):
        reg.register(hid, f"bpf_{hid.name.lower()}", fn)
