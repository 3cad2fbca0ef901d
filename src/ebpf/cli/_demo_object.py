"""CLI layer: step 4 of ``ebpf demo`` — one object file on both engines.

The bundled XDP firewall object (``tools/bpf/xdp_firewall.bpf.o``: ELF, BTF, two LPM tries, a
per-CPU counter array, ``.rodata``) is opened as a spec once, loaded into the user-space
runtime and, when ``bpf()`` works, into the kernel; the same frames go through both
(``test_run``) and the verdicts and the counters each engine's maps hold afterwards are compared.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

__all__ = ["BLOCKS", "FRAMES", "object_step"]

BLOCKS = ["192.0.2.0/24", "2001:db8::/32"]


def _eth(ethertype: int, payload: bytes) -> bytes:
    return b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + struct.pack("!H", ethertype) + payload


def _ipv4(src: str, dst: str) -> bytes:
    udp = struct.pack("!HHHH", 40000, 53, 8 + 4, 0) + b"ping"
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)  # fmt: skip
    return _eth(0x0800, header + udp)


def _ipv6(src: str, dst: str) -> bytes:
    udp = struct.pack("!HHHH", 40000, 53, 8 + 4, 0) + b"ping"
    header = struct.pack("!IHBB16s16s", 6 << 28, len(udp), 17, 64,
                         ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed)  # fmt: skip
    return _eth(0x86DD, header + udp)


FRAMES: list[tuple[str, bytes]] = [
    ("IPv4 from 192.0.2.7", _ipv4("192.0.2.7", "198.51.100.1")),
    ("IPv4 from 203.0.113.9", _ipv4("203.0.113.9", "198.51.100.1")),
    ("IPv6 from 2001:db8::5", _ipv6("2001:db8::5", "2001:db8:ffff::1")),
    ("ARP", _eth(0x0806, bytes(28))),
]

XDP = {0: "XDP_ABORTED", 1: "XDP_DROP", 2: "XDP_PASS", 3: "XDP_TX", 4: "XDP_REDIRECT"}


def _run(coll: Any) -> tuple[list[str], list[int]]:
    from ebpf.tools.xdp_firewall import map_entries

    for name, key, value in map_entries(BLOCKS):
        coll.maps[name].update(key, value)
    prog = coll.programs["xdp_firewall"]
    verdicts = [XDP.get(prog.test_run(data_in=frame).retval, "?") for _label, frame in FRAMES]
    counters = coll.maps["counters"]
    packets = []
    for slot in range(len(BLOCKS)):
        key = slot.to_bytes(4, "little")
        values = counters.lookup_percpu(key) if hasattr(counters, "lookup_percpu") else [counters.lookup(key)]
        packets.append(sum(int.from_bytes(v[:8], "little") for v in values))
    return verdicts, packets


def object_step(kernel_reason: str | None) -> dict[str, Any]:
    """Run the frames through both engines; the document the demo prints."""
    from ebpf.elf import load_collection_spec
    from ebpf.runtime import Collection
    from ebpf.tools import bundled_object

    path = bundled_object("xdp_firewall")
    spec = load_collection_spec(path)
    with Collection(spec, engine="py") as coll:
        verdicts, counts = _run(coll)
    doc: dict[str, Any] = {
        "object": path.name,
        "programs": sorted(spec.programs),
        "maps": sorted(spec.maps),
        "blocks": BLOCKS,
        "frames": [label for label, _frame in FRAMES],
        "userspace": {"verdicts": verdicts, "rule_packets": counts},
        "kernel": {"available": kernel_reason is None, "skipped_reason": kernel_reason},
        "agree": True,
    }
    if kernel_reason is None:
        from ebpf.kernel import Collection as KernelCollection

        with KernelCollection(load_collection_spec(path)) as kcoll:
            kverdicts, kcounts = _run(kcoll)
        doc["kernel"].update(verdicts=kverdicts, rule_packets=kcounts)
        doc["agree"] = kverdicts == verdicts and kcounts == counts
    return doc
