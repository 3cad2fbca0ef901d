"""``python -m ebpf.bench.xdp``: packets per second of ``ebpf xdp run`` beside the kernel. Tool layer.

Method: the bundled XDP firewall (``tools/bpf/xdp_firewall.bpf.o``) with 64 blocked prefixes
(IPv4 and IPv6) judges a generated capture of UDP packets (a quarter from blocked sources) —
first through ``ebpf xdp run`` exactly as a user runs it (pcap read, user-space runtime, verdict
count, passed packets written), timed end to end; then, in the same process, each engine's
per-packet ``test_run`` alone; then the kernel's ``BPF_PROG_TEST_RUN`` of the same object over
the same packets (when ``bpf()`` works). Every engine must give the kernel's verdict for every
packet.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["XdpFigures", "main", "measure"]


@dataclass
class XdpFigures:
    packets: int
    cli_pps: float
    engines_pps: dict[str, float]
    kernel_pps: float | None
    kernel_skipped: str | None


def _packets(n: int) -> tuple[list[bytes], list[str]]:
    import dpkt

    blocks = [f"10.{i}.0.0/16" for i in range(32)] + [f"2001:db8:{i:x}::/48" for i in range(32)]
    frames = []
    for i in range(n):
        blocked = i % 4 == 0
        v6 = i % 2 == 1
        if v6:
            src = ipaddress.IPv6Address(f"2001:db8:{(i % 32) if blocked else 0xBEEF:x}::{i % 65536:x}")
            dst = ipaddress.IPv6Address("2001:db8:ffff::1")
            ip: Any = dpkt.ip6.IP6(src=src.packed, dst=dst.packed, nxt=17, hlim=64)
            ip.data = dpkt.udp.UDP(sport=1024 + i % 1000, dport=53, data=b"q" * 32)
            ip.plen = len(bytes(ip.data))
            eth_type = 0x86DD
        else:
            src4 = ipaddress.IPv4Address(
                f"10.{i % 32}.1.{i % 250 + 1}" if blocked else f"192.0.2.{i % 250 + 1}"
            )
            ip = dpkt.ip.IP(src=src4.packed, dst=ipaddress.IPv4Address("198.51.100.1").packed, p=17)
            ip.data = dpkt.udp.UDP(sport=1024 + i % 1000, dport=53, data=b"q" * 32)
            ip.len = len(bytes(ip))
            eth_type = 0x0800
        frames.append(bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=eth_type, data=ip)))
    return frames, blocks


def measure(packets: int = 20_000, engines: tuple[str, ...] = ("py", "interp")) -> XdpFigures:
    import dpkt
    from click.testing import CliRunner

    from ebpf.cli.main import main as cli
    from ebpf.elf import load_collection_spec
    from ebpf.runtime import Collection
    from ebpf.tools._common import object_path
    from ebpf.tools.xdp_firewall import map_entries

    frames, blocks = _packets(packets)
    entries = map_entries(blocks)
    obj = object_path("xdp_firewall")
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "in.pcap"
        with pcap.open("wb") as f:
            writer = dpkt.pcap.Writer(f)
            for i, frame in enumerate(frames):
                writer.writepkt(frame, ts=1_700_000_000 + i / 1e4)
        init = [f"--map-init={m}:{k.hex()}={v.hex()}" for m, k, v in entries]
        args = [
            "xdp",
            "run",
            str(obj),
            "--pcap",
            str(pcap),
            "--out",
            str(Path(tmp) / "out.pcap"),
            "--json",
            *init,
        ]
        t0 = time.perf_counter()
        result = CliRunner().invoke(cli, args)
        cli_s = time.perf_counter() - t0
        if result.exit_code != 0:
            raise RuntimeError(f"ebpf xdp run failed: {result.output}")
        verdicts = json.loads(result.output)["verdicts"]
        if verdicts.get("XDP_DROP") != packets // 4:
            raise RuntimeError(f"unexpected verdicts {verdicts}")
    spec = load_collection_spec(obj)
    per_engine: dict[str, float] = {}
    retvals: dict[str, list[int]] = {}
    for engine in engines:
        with Collection(spec, engine=engine) as coll:
            for name, key, value in entries:
                coll.maps[name].update(key, value)
            prog = coll.programs["xdp_firewall"]
            prog.test_run(data_in=frames[0])
            t0 = time.perf_counter()
            retvals[engine] = [prog.test_run(data_in=frame).retval for frame in frames]
            per_engine[engine] = packets / (time.perf_counter() - t0)
    kernel_pps: float | None = None
    reason: str | None = None
    from ebpf.kernel.features import bpf_unavailable_reason

    reason = bpf_unavailable_reason()
    if reason is None:
        from ebpf.kernel.collection import Collection as KernelCollection

        with KernelCollection(load_collection_spec(obj)) as kcoll:
            for name, key, value in entries:
                kcoll.maps[name].update(key, value)
            kprog = kcoll.programs["xdp_firewall"]
            t0 = time.perf_counter()
            kernel = [kprog.test_run(data_in=frame).retval for frame in frames]
            kernel_pps = packets / (time.perf_counter() - t0)
        for engine, got in retvals.items():
            if got != kernel:
                bad = next(i for i, (a, b) in enumerate(zip(got, kernel, strict=True)) if a != b)
                raise RuntimeError(f"{engine}: packet {bad} verdict {got[bad]}, kernel {kernel[bad]}")
    return XdpFigures(packets, packets / cli_s, per_engine, kernel_pps, reason)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ebpf.bench.xdp", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--packets", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    fig = measure(args.packets)
    if args.json:
        print(json.dumps(asdict(fig)))
        return 0
    print(f"xdp_firewall (64 prefixes) over {fig.packets:,} packets, a quarter blocked")
    print(f"  ebpf xdp run (whole command, py) : {fig.cli_pps:10,.0f} packets/s")
    for engine, pps in fig.engines_pps.items():
        print(f"  test_run, engine {engine:6}        : {pps:10,.0f} packets/s")
    if fig.kernel_pps is not None:
        print(f"  kernel BPF_PROG_TEST_RUN (1 syscall per packet): {fig.kernel_pps:10,.0f} packets/s")
    else:
        print(f"  kernel: skipped: {fig.kernel_skipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
