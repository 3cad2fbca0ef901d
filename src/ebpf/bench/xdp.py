"""``python -m ebpf.bench.xdp``: packets per second of ``ebpf xdp run`` beside the kernel. Tool layer.

Method: the bundled XDP firewall (``tools/bpf/xdp_firewall.bpf.o``) with 64 blocked prefixes
(IPv4 and IPv6) judges a generated capture of UDP packets (a quarter from blocked sources) —
first through ``ebpf xdp run`` exactly as a user runs it (pcap read, user-space runtime, verdict
count, passed packets written), timed end to end; then, in the same process, each engine's
per-packet ``test_run`` alone; then the kernel's ``BPF_PROG_TEST_RUN`` of the same object over
the same packets (when ``bpf()`` works). Every engine must give the kernel's verdict for every
packet.

``--runs N`` adds the per-call cost of ``test_run`` (µs per call, one packet, ``repeat`` 1, best
of several rounds of N/10 calls) for three programs: a nop XDP program (the runtime's fixed
overhead), the firewall on one IPv4 packet, and a small tc program (``__sk_buff`` fields, packet
bounds, one helper) — on each engine and, in the same process, the kernel.
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["XdpFigures", "main", "measure", "measure_runs"]


@dataclass
class XdpFigures:
    packets: int
    cli_pps: float
    engines_pps: dict[str, float]
    kernel_pps: float | None
    kernel_skipped: str | None
    run_us: dict[str, dict[str, float]] = field(default_factory=dict)
    """``--runs``: program -> engine (or ``"kernel"``) -> µs per ``test_run`` call."""


NOP_XDP = "r0 = 2\nexit"  # XDP_PASS
TC_PROGRAM = """
    r6 = r1
    r2 = *(u32 *)(r6 + 76)
    r3 = *(u32 *)(r6 + 80)
    r4 = r2
    r4 += 14
    r0 = 2
    if r4 > r3 goto out
    r7 = *(u8 *)(r2 + 12)
    r8 = *(u32 *)(r6 + 16)
    call 8
    r0 = 0
out:
    exit
"""
"""The tc program of ``--runs``: reads ``data``/``data_end`` and ``protocol``, checks the Ethernet
header's bounds, calls ``bpf_get_smp_processor_id``; TC_ACT_OK (TC_ACT_SHOT when short)."""


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


def _per_call_us(call: Callable[[], object], runs: int) -> float:
    """µs per ``call()``: the best of 10 rounds of ``runs // 10`` calls (after one warm-up call)."""
    call()
    n = max(runs // 10, 1)
    best = float("inf")
    for _ in range(10):
        t0 = time.perf_counter()
        for _ in range(n):
            call()
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6


def measure_runs(runs: int, engines: tuple[str, ...] = ("py", "interp")) -> dict[str, dict[str, float]]:
    """µs per ``test_run`` call of the nop XDP program, the firewall and the tc program, on each
    engine and on the kernel (when ``bpf()`` works); every engine must return the kernel's
    retval and ``data_out``."""
    from ebpf.elf import load_collection_spec
    from ebpf.isa import assemble
    from ebpf.kernel.features import bpf_unavailable_reason
    from ebpf.runtime import Collection
    from ebpf.spec import CollectionSpec, ProgramSpec, ProgramType
    from ebpf.tools._common import object_path
    from ebpf.tools.xdp_firewall import map_entries

    frames, blocks = _packets(2)
    frame = frames[0]  # IPv4, blocked
    entries = map_entries(blocks)

    def small(name: str, text: str, ptype: ProgramType, section: str) -> CollectionSpec:
        prog = ProgramSpec(name, section, ptype, assemble(text), license="GPL")
        return CollectionSpec(programs={name: prog}, license="GPL")

    cases = {
        "nop_xdp": small("nop_xdp", NOP_XDP, ProgramType.XDP, "xdp"),
        "xdp_firewall": load_collection_spec(object_path("xdp_firewall")),
        "tc_skb": small("tc_skb", TC_PROGRAM, ProgramType.SCHED_CLS, "tc"),
    }
    figures: dict[str, dict[str, float]] = {}
    kernel_ok = bpf_unavailable_reason() is None
    for name, spec in cases.items():
        row: dict[str, float] = {}
        results = {}
        for engine in engines:
            with Collection(spec, engine=engine) as coll:
                if name == "xdp_firewall":
                    for m, key, value in entries:
                        coll.maps[m].update(key, value)
                prog = coll.programs[name]
                row[engine] = _per_call_us(functools.partial(prog.test_run, frame), runs)
                res = prog.test_run(frame)
                results[engine] = (res.retval, res.data_out)
        if kernel_ok:
            from ebpf.kernel.collection import Collection as KernelCollection

            with KernelCollection(spec) as kcoll:
                if name == "xdp_firewall":
                    for m, key, value in entries:
                        kcoll.maps[m].update(key, value)
                kprog = kcoll.programs[name]
                row["kernel"] = _per_call_us(functools.partial(kprog.test_run, frame), runs)
                kres = kprog.test_run(frame)
            for engine, got in results.items():
                if got != (kres.retval, kres.data_out):
                    raise RuntimeError(f"{name} on {engine}: {got[0]}, the kernel: {kres.retval}")
        figures[name] = row
    return figures


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
    parser.add_argument(
        "--runs", type=int, default=0, metavar="N", help="also time N test_run calls per program and engine"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    fig = measure(args.packets)
    if args.runs > 0:
        fig.run_us = measure_runs(args.runs)
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
    if fig.run_us:
        columns = list(next(iter(fig.run_us.values())))
        print(f"per test_run call, µs (--runs {args.runs}): " + "  ".join(f"{c:>8}" for c in columns))
        for name, row in fig.run_us.items():
            print(f"  {name:34}  " + "  ".join(f"{row[c]:8.2f}" for c in columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
