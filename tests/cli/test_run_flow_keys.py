"""``ebpf run`` on a FLOW_DISSECTOR program: ``data_out`` is the ``struct bpf_flow_keys`` the
program filled in, shown decoded (text and ``--json``), not as a diff against the packet.

The program is ``fd_direct`` of ``tests/data/progtypes/progtypes.o`` (it parses IPv4/IPv6 and
the ports); the kernel test (marked ``kernel``) decodes Linux's own ``data_out`` for the same
packet and compares."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Callable
from pathlib import Path

import dpkt
import pytest
from click.testing import Result

from ebpf.cli.run import flow_keys

Invoke = Callable[..., Result]
PROGTYPES = str(Path(__file__).resolve().parent.parent / "data" / "progtypes" / "progtypes.o")


def ipv4_udp() -> bytes:
    udp = dpkt.udp.UDP(sport=5353, dport=53, data=b"q")
    ip = dpkt.ip.IP(
        src=socket.inet_aton("192.0.2.7"), dst=socket.inet_aton("198.51.100.9"), p=17, ttl=9, data=udp
    )
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip))


def ipv6_tcp(flow: int = 0x12345) -> bytes:
    tcp = dpkt.tcp.TCP(sport=40000, dport=443, flags=dpkt.tcp.TH_SYN)
    ip6 = dpkt.ip6.IP6(
        src=socket.inet_pton(socket.AF_INET6, "2001:db8::1"),
        dst=socket.inet_pton(socket.AF_INET6, "2001:db8::2"),
        nxt=6,
        hlim=64,
        flow=flow,
        data=tcp,
        plen=len(bytes(tcp)),
    )
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x86DD, data=ip6))


def run_json(invoke: Invoke, packet: bytes) -> dict[str, object]:
    result = invoke("run", PROGTYPES, "--program", "fd_direct", "--data-in", packet.hex(), "--json")
    assert result.exit_code == 0, result.output
    out: dict[str, object] = json.loads(result.output)
    return out


def test_text_shows_the_flow_keys_not_a_packet_diff(invoke: Invoke) -> None:
    result = invoke("run", PROGTYPES, "--program", "fd_direct", "--data-in", ipv4_udp().hex())
    assert result.exit_code == 0, result.output
    text = result.output
    assert "data_out: struct bpf_flow_keys (56 bytes)" in text
    assert "flow keys (data_out):" in text
    assert "n_proto 0x0800 (IPv4)  addr_proto 0x0800 (IPv4)  ip_proto 17 (udp)" in text
    assert "nhoff 14  thoff 34" in text
    assert "src 192.0.2.7 port 5353  ->  dst 198.51.100.9 port 53" in text
    assert "is_frag 0  is_first_frag 1  is_encap 0  flags 0x0  flow_label 0x0" in text
    assert "changed at bytes" not in text and "^^" not in text


def test_json_has_the_decoded_keys(invoke: Invoke) -> None:
    out = run_json(invoke, ipv6_tcp())
    assert out["data_changed"] is None
    assert len(bytes.fromhex(str(out["data_out"]))) == 56
    assert out["flow_keys"] == {
        "nhoff": 14,
        "thoff": 54,
        "addr_proto": 0x86DD,
        "is_frag": 0,
        "is_first_frag": 0,
        "is_encap": 0,
        "ip_proto": 6,
        "n_proto": 0x86DD,
        "sport": 40000,
        "dport": 443,
        "flags": 0,
        "flow_label": 0x12345,
        "src": "2001:db8::1",
        "dst": "2001:db8::2",
    }


def test_a_dropped_packet_still_shows_its_keys(invoke: Invoke) -> None:
    arp = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + bytes(28)
    result = invoke("run", PROGTYPES, "--program", "fd_direct", "--data-in", arp.hex())
    assert result.exit_code == 0, result.output
    assert "n_proto 0x0806 (ARP)  addr_proto 0x0000  ip_proto 0" in result.output
    assert "sport 0  dport 0  (no addresses: addr_proto is not IPv4/IPv6)" in result.output


def test_other_program_types_keep_the_packet_diff(invoke: Invoke) -> None:
    elf = Path(__file__).resolve().parent.parent / "data" / "elf" / "xdp_fw.o"
    result = invoke("run", str(elf), "--program", "xdp_pass", "--data-in", ipv4_udp().hex(), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert "flow_keys" not in out and isinstance(out["data_changed"], list)


def test_flow_keys_decoder() -> None:
    assert flow_keys(bytes(55)) is None and flow_keys(bytes(57)) is None
    raw = bytearray(56)
    struct.pack_into("<HHH", raw, 0, 14, 34, 0x0800)
    raw[9] = 6
    struct.pack_into(">HHH", raw, 10, 0x0800, 1, 2)
    raw[16:24] = socket.inet_aton("10.0.0.1") + socket.inet_aton("10.0.0.2")
    struct.pack_into("<I", raw, 48, 4)
    struct.pack_into(">I", raw, 52, 0xABCDE)
    keys = flow_keys(bytes(raw))
    assert keys is not None
    assert (keys["src"], keys["dst"], keys["sport"], keys["dport"]) == ("10.0.0.1", "10.0.0.2", 1, 2)
    assert (keys["flags"], keys["flow_label"], keys["n_proto"], keys["addr_proto"]) == (
        4,
        0xABCDE,
        0x800,
        0x800,
    )


@pytest.mark.kernel
@pytest.mark.parametrize("make", [ipv4_udp, ipv6_tcp], ids=["ipv4_udp", "ipv6_tcp"])
def test_keys_match_the_kernels_data_out(invoke: Invoke, make: Callable[[], bytes]) -> None:
    from ebpf.elf import load_collection_spec
    from ebpf.kernel.collection import Collection

    packet = make()
    with Collection(load_collection_spec(PROGTYPES)) as coll:
        theirs = coll.programs["fd_direct"].test_run(packet)
    assert run_json(invoke, packet)["flow_keys"] == flow_keys(theirs.data_out)
