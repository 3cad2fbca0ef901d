"""``ebpf xdp run``: the corpus firewall over generated captures, verdicts and output packets checked."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import dpkt
import pytest
from click.testing import CliRunner

from ebpf.cli.main import main

ELF = Path(__file__).resolve().parents[1] / "data" / "elf"


def frame(src: str, *, ethertype: int = 0x0800) -> bytes:
    udp = dpkt.udp.UDP(sport=1000, dport=53, data=b"q" * 12)
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton("10.0.0.2"), p=17, data=udp)
    ip.len = len(bytes(ip))
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=ethertype, data=ip))


def write_capture(path: Path, frames: list[bytes], *, ng: bool = False) -> None:
    with path.open("wb") as f:
        writer = dpkt.pcapng.Writer(f) if ng else dpkt.pcap.Writer(f)
        for i, data in enumerate(frames):
            writer.writepkt(data, ts=1700000000 + i / 1000)


def run(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(main, ["xdp", "run", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize("ng", [False, True], ids=["pcap", "pcapng"])
def test_firewall_counts_and_passes(tmp_path: Path, ng: bool) -> None:
    frames = [frame(f"192.168.1.{i}") for i in range(1, 41)] + [frame("10.1.1.1", ethertype=0x86DD)] * 5
    write_capture(tmp_path / "in.cap", frames, ng=ng)
    doc = run(
        str(ELF / "xdp_fw.o"),
        "-p",
        "xdp_firewall",
        "--pcap",
        str(tmp_path / "in.cap"),
        "--out",
        str(tmp_path / "out.pcap"),
    )
    assert doc["packets"] == 45
    assert doc["verdicts"] == {"XDP_PASS": 45}  # the blocklist starts empty
    assert doc["written"] == 45
    with (tmp_path / "out.pcap").open("rb") as f:
        out = [bytes(buf) for _ts, buf in dpkt.pcap.Reader(f)]
    assert out == frames
    maps = doc["maps"]
    assert isinstance(maps, dict)
    bss = dict(maps[".bss"])  # packets_seen counts every packet the program saw
    assert int.from_bytes(bytes.fromhex(bss["00000000"])[:8], "little") == 45


def test_errors(tmp_path: Path) -> None:
    (tmp_path / "junk.pcap").write_bytes(b"not a capture at all")
    result = CliRunner().invoke(
        main, ["xdp", "run", str(ELF / "xdp_fw.o"), "-p", "xdp_pass", "--pcap", str(tmp_path / "junk.pcap")]
    )
    assert result.exit_code != 0 and "not a readable pcap/pcapng file" in result.output
    write_capture(tmp_path / "one.pcap", [frame("1.2.3.4")])
    result = CliRunner().invoke(
        main, ["xdp", "run", str(ELF / "xdp_fw.o"), "--pcap", str(tmp_path / "one.pcap")]
    )
    assert result.exit_code != 0 and "several XDP/tc programs" in result.output
