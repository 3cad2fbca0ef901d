"""xdp-firewall: drop packets by source prefix at the driver, before the stack sees them. Tool layer.

The bundled ``xdp_firewall`` program parses Ethernet (and one 802.1Q/802.1ad VLAN tag), looks
the IPv4 or IPv6 source address up in a longest-prefix-match trie (``fw_v4`` / ``fw_v6``, keys
``{u32 prefixlen; u8 addr[4 or 16]}`` in network byte order, value: the rule index) and drops
the packet on a match (``XDP_PASS`` instead in monitor mode). A per-CPU array counts packets and
bytes per rule, plus the IP packets no rule matched (``passed``), non-IP frames (``non_ip``)
and frames too short for their headers (``truncated``); :meth:`XdpFirewall.counters` sums it
over the CPUs.

The same object runs over a capture in user space: :func:`map_entries` gives the trie entries
for a list of prefixes, which ``ebpf xdp run --map-init`` takes as ``MAP:KEYHEX=VALUEHEX``.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Any, Literal, Self

from ebpf.tools._common import LoadedTool, ToolError

__all__ = ["MAX_RULES", "FirewallCounters", "RuleCounter", "XdpFirewall", "map_entries", "parse_blocks"]

MAX_RULES = 1024
SLOT_PASSED, SLOT_NON_IP, SLOT_TRUNCATED = MAX_RULES, MAX_RULES + 1, MAX_RULES + 2

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Mode = Literal["driver", "generic", "auto"]


@dataclass(frozen=True)
class RuleCounter:
    """Packets and bytes (whole frames, Ethernet header included) one rule matched."""

    rule: str
    packets: int
    bytes: int


@dataclass(frozen=True)
class FirewallCounters:
    """Counters summed over every CPU: per rule (in the order given), then the rest."""

    rules: tuple[RuleCounter, ...]
    passed: RuleCounter  # IP packets no rule matched
    non_ip: RuleCounter  # ARP, LLDP, ... (always passed)
    truncated: RuleCounter  # too short for the Ethernet/VLAN/IP header (passed)

    def as_dict(self) -> dict[str, Any]:
        def one(c: RuleCounter) -> dict[str, int]:
            return {"packets": c.packets, "bytes": c.bytes}

        return {
            "rules": {c.rule: one(c) for c in self.rules},
            "passed": one(self.passed),
            "non_ip": one(self.non_ip),
            "truncated": one(self.truncated),
        }


def parse_blocks(blocks: list[str]) -> list[Network]:
    """The prefixes as networks (host bits must be zero); :class:`ToolError` on a bad one or a duplicate."""
    if not blocks:
        raise ToolError("xdp-firewall needs at least one --block CIDR")
    if len(blocks) > MAX_RULES:
        raise ToolError(f"xdp-firewall takes at most {MAX_RULES} prefixes, not {len(blocks)}")
    nets: list[Network] = []
    for text in blocks:
        try:
            net = ipaddress.ip_network(text.strip(), strict=True)
        except ValueError as err:
            raise ToolError(f"bad CIDR {text!r}: {err}") from None
        if net in nets:
            raise ToolError(f"prefix {net} is given twice")
        nets.append(net)
    return nets


def _key(net: Network) -> bytes:
    return net.prefixlen.to_bytes(4, "little") + net.network_address.packed


def map_entries(blocks: list[str]) -> list[tuple[str, bytes, bytes]]:
    """``(map name, key, value)`` of every rule: what the tool writes into ``fw_v4``/``fw_v6``.

    The key's ``prefixlen`` is in host order (little-endian here, as the BPF program reads it),
    the address in network order; the value is the rule index (u32).
    """
    out = []
    for index, net in enumerate(parse_blocks(blocks)):
        name = "fw_v4" if net.version == 4 else "fw_v6"
        out.append((name, _key(net), index.to_bytes(4, "little")))
    return out


def _ifindex(iface: str | int) -> tuple[int, str]:
    if isinstance(iface, int) or iface.isdigit():
        index = int(iface)
        try:
            return index, socket.if_indextoname(index)
        except OSError:
            raise ToolError(f"no network interface with index {index} in this network namespace") from None
    try:
        return socket.if_nametoindex(iface), iface
    except OSError:
        raise ToolError(f"no network interface named {iface!r} in this network namespace") from None


_MODES = {"driver": "DRIVER", "generic": "GENERIC", "auto": "AUTO"}


class XdpFirewall:
    """The firewall attached to one interface; :meth:`counters` reads the kernel's per-rule counters.

    Args:
        iface: interface name or index (in this process's network namespace).
        blocks: source prefixes to drop, ``"10.0.0.0/8"``, ``"2001:db8::/32"``; the longest
            matching prefix wins and gets the count.
        mode: ``"driver"`` (native XDP, before an skb exists), ``"generic"`` (after the skb is
            built; works on every device) or ``"auto"`` (native when the driver has it).
        monitor: count matches but let them pass.

    Raises:
        ToolError: not root, no such interface, a bad prefix, or the kernel refused the attach.
    """

    def __init__(
        self, iface: str | int, blocks: list[str], *, mode: Mode = "auto", monitor: bool = False
    ) -> None:
        from ebpf import attach
        from ebpf.errors import SyscallError

        if mode not in _MODES:
            raise ToolError(f"XDP mode must be one of {', '.join(_MODES)}, not {mode!r}")
        entries = map_entries(blocks)
        self.rules = tuple(str(net) for net in parse_blocks(blocks))
        self.ifindex, self.iface = _ifindex(iface)
        self.mode = mode
        self.monitor = monitor
        self._closed = False
        self._tool = LoadedTool("xdp_firewall", variables={"monitor": int(monitor)}, attach=False)
        try:
            for name, key, value in entries:
                self._tool.maps[name].update(key, value)
            prog = self._tool.programs["xdp_firewall"]
            try:
                link = attach.xdp(prog, self.ifindex, mode=attach.XDPMode[_MODES[mode]])
            except SyscallError as err:
                raise ToolError(_attach_refused(err, self.iface, mode)) from None
            self._tool.links.append(link)
        except BaseException:
            self._tool.close()
            raise

    def counters(self) -> FirewallCounters:
        """Per-rule packets and bytes, summed over the CPUs (each slot read once, while packets flow)."""
        if self._closed:
            raise ToolError("the firewall is closed; its counters are gone")
        counters = self._tool.maps["counters"]

        def read(slot: int, label: str) -> RuleCounter:
            packets = nbytes = 0
            for raw in counters.lookup_percpu(slot.to_bytes(4, "little")):
                packets += int.from_bytes(raw[0:8], "little")
                nbytes += int.from_bytes(raw[8:16], "little")
            return RuleCounter(label, packets, nbytes)

        return FirewallCounters(
            rules=tuple(read(i, rule) for i, rule in enumerate(self.rules)),
            passed=read(SLOT_PASSED, "passed"),
            non_ip=read(SLOT_NON_IP, "non-IP"),
            truncated=read(SLOT_TRUNCATED, "truncated"),
        )

    @property
    def link(self) -> Any:
        """The XDP link (for its info: program id, ifindex)."""
        return self._tool.links[0]

    def close(self) -> None:
        """Detach the program and close the maps. Idempotent."""
        self._closed = True
        self._tool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _attach_refused(err: Any, iface: str, mode: str) -> str:
    code = getattr(err, "errno", None)
    names = {errno.EOPNOTSUPP: "EOPNOTSUPP"}
    name = names.get(code, errno.errorcode.get(code, str(code))) if isinstance(code, int) else "?"
    why = {
        errno.EOPNOTSUPP: f"the driver of {iface} has no native XDP; try --mode generic",
        errno.EBUSY: f"another XDP program is attached to {iface} in another mode or without a link",
        errno.EEXIST: f"another XDP program is already attached to {iface}",
        errno.ERANGE: f"the MTU of {iface} is too large for XDP in this mode",
        errno.EINVAL: "the kernel rejected the attach parameters",
    }.get(code if isinstance(code, int) else -1, os.strerror(code) if isinstance(code, int) else str(err))
    return f"the kernel refused to attach XDP ({mode}) to {iface}: {name} ({why})"
