"""xdp-firewall on the kernel: real pings across a veth pair between two test namespaces.

The sender namespace has a blocked and an allowed address of each family; the firewall runs on
the receiving veth (attached from inside the receiver's namespace). Neighbours are permanent,
so no ARP or neighbour solicitation goes out and the echo requests are the only packets from
those sources: the per-rule counters must equal the pings sent, byte for byte.

The same object then runs over a dpkt capture in the user-space runtime (``ebpf xdp run
--map-init``) and through ``BPF_PROG_TEST_RUN``; verdicts and counters must agree.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from ebpf.cli.main import main
from ebpf.tools import ToolError
from ebpf.tools._common import object_path
from ebpf.tools.xdp_firewall import SLOT_NON_IP, SLOT_PASSED, SLOT_TRUNCATED, XdpFirewall, map_entries

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("no_leftover_links")]
TOOL_PREFIXES = ("xdp_firewall",)  # links of other tools' tests running meanwhile do not count

CLONE_NEWNET = 0x40000000
MAC_TX, MAC_RX = "02:77:00:00:00:01", "02:77:00:00:00:02"
RX_V4, RX_V6 = "10.77.0.100", "fd77::100"
BLOCKED_V4, ALLOWED_V4 = "10.77.0.5", "10.77.0.200"
BLOCKED_V6, ALLOWED_V6 = "fd77::5", "fd77::200"
# rule 1 is the longest match of 10.77.0.5; rules 0 and 3 must stay at zero
RULES = ["10.77.0.0/28", "10.77.0.4/30", "fd77::/124", "2001:db8::/32"]
ECHO_V4 = 14 + 20 + 8 + 56  # frame bytes of `ping` (56 bytes of data)
ECHO_V6 = 14 + 40 + 8 + 56


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


@dataclass
class Pair:
    tx_ns: str  # the sender namespace
    rx_ns: str  # the receiver namespace, where the firewall runs
    tx: str
    rx: str

    def ping(self, src: str, dst: str, count: int = 3) -> bool:
        """Ping from the sender namespace with source ``src``; True if every reply came back."""
        cmd = ["ip", "netns", "exec", self.tx_ns, "ping", "-c", str(count), "-i", "0.2", "-W", "1", "-q"]
        return run(*cmd, "-I", src, dst, check=False).returncode == 0


@contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the block with this thread in network namespace ``name`` (``ip netns`` names)."""
    libc = ctypes.CDLL(None, use_errno=True)
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(f"/var/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name}")
        try:
            yield
        finally:
            if libc.setns(here, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(here)
        os.close(target)


@pytest.fixture
def pair() -> Iterator[Pair]:
    if shutil.which("ip") is None or shutil.which("ping") is None:
        pytest.skip("needs iproute2 (ip) and iputils-ping (ping)")
    pid = os.getpid()
    p = Pair(f"xfwtx{pid}", f"xfwrx{pid}", f"xft{pid}", f"xfr{pid}")
    run("ip", "netns", "add", p.tx_ns)
    try:
        run("ip", "netns", "add", p.rx_ns)
        run("ip", "link", "add", p.tx, "address", MAC_TX, "netns", p.tx_ns, "type", "veth",
            "peer", "name", p.rx, "address", MAC_RX, "netns", p.rx_ns)  # fmt: skip
        for ns, dev, addrs in (
            (p.tx_ns, p.tx, [f"{BLOCKED_V4}/24", f"{ALLOWED_V4}/24", f"{BLOCKED_V6}/64", f"{ALLOWED_V6}/64"]),
            (p.rx_ns, p.rx, [f"{RX_V4}/24", f"{RX_V6}/64"]),
        ):
            for addr in addrs:
                run("ip", "-n", ns, "addr", "add", addr, "dev", dev, *(["nodad"] if ":" in addr else []))
            run("ip", "-n", ns, "link", "set", dev, "up")
        # permanent neighbours: no ARP / neighbour solicitation from the tested sources
        for ns, dev, mac, dsts in (
            (p.tx_ns, p.tx, MAC_RX, (RX_V4, RX_V6)),
            (p.rx_ns, p.rx, MAC_TX, (BLOCKED_V4, ALLOWED_V4, BLOCKED_V6, ALLOWED_V6)),
        ):
            for dst in dsts:
                run("ip", "-n", ns, "neigh", "replace", dst, "lladdr", mac, "dev", dev, "nud", "permanent")
        yield p
    finally:
        run("ip", "netns", "del", p.tx_ns, check=False)
        run("ip", "netns", "del", p.rx_ns, check=False)
        listed = run("ip", "netns", "list").stdout
        assert p.tx_ns not in listed and p.rx_ns not in listed
        assert not Path(f"/var/run/netns/{p.rx_ns}").exists()


@pytest.mark.parametrize("mode", ["driver", "generic"])
def test_drops_blocked_sources_and_counts_per_rule(pair: Pair, mode: str) -> None:
    with in_netns(pair.rx_ns):
        fw = XdpFirewall(pair.rx, RULES, mode=mode)  # type: ignore[arg-type]
    with fw:
        assert fw.link.info().details["ifindex"] == fw.ifindex
        assert not pair.ping(BLOCKED_V4, RX_V4)
        assert pair.ping(ALLOWED_V4, RX_V4)
        assert not pair.ping(BLOCKED_V6, RX_V6)
        assert pair.ping(ALLOWED_V6, RX_V6)
        c = fw.counters()
    by_rule = {r.rule: (r.packets, r.bytes) for r in c.rules}
    assert by_rule == {
        "10.77.0.0/28": (0, 0),
        "10.77.0.4/30": (3, 3 * ECHO_V4),  # the longest prefix gets the count
        "fd77::/124": (3, 3 * ECHO_V6),
        "2001:db8::/32": (0, 0),
    }
    assert c.passed.packets >= 6 and c.passed.bytes >= 3 * ECHO_V4 + 3 * ECHO_V6
    assert c.truncated.packets == 0
    assert pair.ping(BLOCKED_V4, RX_V4, 1)  # detached: the blocked source gets through again
    with pytest.raises(ToolError, match="closed"):
        fw.counters()
    fw.close()  # idempotent


def test_monitor_mode_counts_but_passes(pair: Pair) -> None:
    with in_netns(pair.rx_ns), XdpFirewall(pair.rx, ["10.77.0.0/24"], monitor=True) as fw:
        assert pair.ping(BLOCKED_V4, RX_V4, 2)
        assert fw.counters().rules[0].packets == 2


def test_errors_are_tool_errors(pair: Pair) -> None:
    with in_netns(pair.rx_ns):
        with pytest.raises(ToolError, match=r"refused to attach XDP \(driver\) to lo: EOPNOTSUPP.*generic"):
            XdpFirewall("lo", ["10.0.0.0/8"], mode="driver")
        with pytest.raises(ToolError, match="no network interface named 'nosuch0'"):
            XdpFirewall("nosuch0", ["10.0.0.0/8"])
        with pytest.raises(ToolError, match="bad CIDR '10.0.0.1/8'.*host bits"):
            XdpFirewall(pair.rx, ["10.0.0.1/8"])
        with pytest.raises(ToolError, match="bad CIDR 'nonsense'"):
            XdpFirewall(pair.rx, ["nonsense"])
        with pytest.raises(ToolError, match="at least one"):
            XdpFirewall(pair.rx, [])
        with (
            XdpFirewall(pair.rx, ["10.0.0.0/8"]),  # a second one on the same device
            pytest.raises(ToolError, match="refused to attach XDP.*(EBUSY|EEXIST)"),
        ):
            XdpFirewall(pair.rx, ["10.0.0.0/8"])
    assert pair.ping(ALLOWED_V4, RX_V4, 1)
    for args, message in (
        (["nosuch0", "--block", "10.0.0.0/8"], "error: no network interface named 'nosuch0'"),
        (["lo", "--block", "10.0.0.0/33"], "error: bad CIDR '10.0.0.0/33'"),
    ):
        result = CliRunner().invoke(main, ["tools", "xdp-firewall", *args])
        assert result.exit_code == 1 and message in result.output, result.output


def test_not_root_is_a_clear_error() -> None:
    import ebpf.elf
    import ebpf.kernel.features  # noqa: F401  (imported before the child drops root)

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: become nobody, try, report the message
        message = "no error"
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            XdpFirewall("lo", ["10.0.0.0/8"])
        except ToolError as err:
            message = f"ToolError: {err}"
        except BaseException as err:  # noqa: BLE001 - reported to the parent
            message = f"{type(err).__name__}: {err}"
        finally:
            os.write(write, message.encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        message = f.read().decode()
    os.waitpid(pid, 0)
    assert message.startswith("ToolError: xdp_firewall needs root"), message


def test_cli_counts_pings_and_detaches(pair: Pair) -> None:
    """`ebpf tools xdp-firewall` as a user runs it, in the receiver namespace, with --json."""
    cmd = ["ip", "netns", "exec", pair.rx_ns, sys.executable, "-m", "ebpf", "tools", "xdp-firewall", pair.rx]
    cmd += ["--block", "10.77.0.4/30", "--block", "fd77::5/128", "--interval", "0.5", "--duration", "4"]
    proc = subprocess.Popen([*cmd, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the first counters: attached by now
        assert json.loads(first)["iface"] == pair.rx, first
        assert not pair.ping(BLOCKED_V4, RX_V4, 2)
        assert not pair.ping(BLOCKED_V6, RX_V6, 2)
        assert pair.ping(ALLOWED_V6, RX_V6, 2)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    last = json.loads(out.strip().splitlines()[-1])
    assert last["rules"] == {
        "10.77.0.4/30": {"packets": 2, "bytes": 2 * ECHO_V4},
        "fd77::5/128": {"packets": 2, "bytes": 2 * ECHO_V6},
    }
    assert last["passed"]["packets"] >= 2
    assert pair.ping(BLOCKED_V4, RX_V4, 1)


def test_cli_plain_table_and_ctrl_c(pair: Pair) -> None:
    cmd = ["ip", "netns", "exec", pair.rx_ns, sys.executable, "-m", "ebpf", "tools", "xdp-firewall", pair.rx]
    cmd += ["--block", "10.77.0.0/24", "--interval", "0.3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(f"dropping on {pair.rx} ")
        assert not pair.ping(BLOCKED_V4, RX_V4, 2)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    tables = out.split("--- ")
    assert "RULE" in tables[-1] and "10.77.0.0/24  drop          2    196" in tables[-1], out
    assert out.rstrip().endswith(f"detached from {pair.rx}")
    assert pair.ping(BLOCKED_V4, RX_V4, 1)


def test_cli_rich_live_table(pair: Pair) -> None:
    cmd = ["ip", "netns", "exec", pair.rx_ns, sys.executable, "-m", "ebpf", "--color", "always", "tools"]
    cmd += [
        "xdp-firewall",
        pair.rx,
        "--block",
        "fd77::/124",
        "--monitor",
        "--interval",
        "0.3",
        "--duration",
        "2",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert "counting (monitor) on" in proc.stdout.readline()  # attached
        assert pair.ping(BLOCKED_V6, RX_V6, 2)  # monitor mode: counted, not dropped
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert f"xdp-firewall {pair.rx}" in out and "\x1b[" in out  # a rich table with styles
    last = out[out.rindex("fd77::/124") :].splitlines()[0].split()
    assert last[1:] == ["count", "2", str(2 * ECHO_V6)], out
    assert f"detached from {pair.rx}" in out


@pytest.mark.parametrize("mode", ["driver", "generic"])
def test_bpftrace_side_by_side(pair: Pair, mode: str) -> None:
    """bpftrace counts what reaches netif_receive_skb per source address, in the same run.

    Driver mode drops before an skb exists, so bpftrace sees the allowed pings only and the
    firewall's counters hold the dropped ones. Generic mode runs XDP inside
    ``__netif_receive_skb_core``, after the tracepoint, so bpftrace sees the blocked pings too,
    as many as the firewall counted and dropped.
    """
    if shutil.which("bpftrace") is None:
        pytest.skip("needs bpftrace")
    script = (
        f'tracepoint:net:netif_receive_skb /str(args->name) == "{pair.rx}"/ {{'
        " $skb = (struct sk_buff *)args->skbaddr;"
        " if ($skb->protocol == 0x0008) { @v4[ntop(((struct iphdr *)$skb->data)->saddr)] = count(); }"
        " if ($skb->protocol == 0xdd86) {"
        " @v6[ntop(((struct ipv6hdr *)$skb->data)->saddr.in6_u.u6_addr8)] = count(); } }"
    )
    with in_netns(pair.rx_ns), XdpFirewall(pair.rx, RULES, mode=mode) as fw:  # type: ignore[arg-type]
        bt = subprocess.Popen(
            ["bpftrace", "-e", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            assert bt.stdout is not None
            assert "Attaching" in bt.stdout.readline()
            time.sleep(0.3)
            assert not pair.ping(BLOCKED_V4, RX_V4)
            assert pair.ping(ALLOWED_V4, RX_V4)
            assert not pair.ping(BLOCKED_V6, RX_V6)
            assert pair.ping(ALLOWED_V6, RX_V6)
            bt.send_signal(signal.SIGINT)
            out, err = bt.communicate(timeout=30)
        finally:
            if bt.poll() is None:
                bt.kill()
                bt.wait()
        c = fw.counters()
    seen = {}
    for line in out.splitlines():
        if line.startswith("@v"):
            key, _, n = line.partition(": ")
            seen[key[key.index("[") + 1 : -1]] = int(n)
    assert seen.get(ALLOWED_V4) == 3 and seen.get(ALLOWED_V6) == 3, out + err
    assert c.rules[1].packets == 3 and c.rules[2].packets == 3
    if mode == "driver":
        assert BLOCKED_V4 not in seen and BLOCKED_V6 not in seen, out
    else:
        assert seen.get(BLOCKED_V4) == c.rules[1].packets and seen.get(BLOCKED_V6) == c.rules[2].packets, out


# --- the same object over packets in user space and in BPF_PROG_TEST_RUN ---------------------------


def _frames() -> list[tuple[str, bytes, int]]:
    """(label, frame, expected verdict) for blocked/allowed sources, v4 and v6, VLAN, ARP, runts."""
    import dpkt

    def eth(payload: bytes, ethertype: int, vlan: bool = False) -> bytes:
        frame = dpkt.ethernet.Ethernet(dst=b"\x02" * 6, src=b"\x04" * 6, type=ethertype, data=payload)
        raw = bytes(frame)
        if vlan:  # one 802.1Q tag (VID 7) before the real ethertype
            raw = raw[:12] + b"\x81\x00\x00\x07" + raw[12:]
        return raw

    def v4(src: str) -> bytes:
        udp = dpkt.udp.UDP(sport=1000, dport=53, data=b"q" * 20)
        ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(RX_V4), p=17, data=udp)
        ip.len = len(bytes(ip))
        return bytes(ip)

    def v6(src: str) -> bytes:
        udp = dpkt.udp.UDP(sport=1000, dport=53, data=b"q" * 20)
        ip = dpkt.ip6.IP6(
            src=socket.inet_pton(socket.AF_INET6, src),
            dst=socket.inet_pton(socket.AF_INET6, RX_V6),
            nxt=17,
            hlim=64,
            data=udp,
        )
        ip.plen = len(bytes(udp))
        return bytes(ip)

    drop, passed = 1, 2
    return [
        ("blocked v4", eth(v4(BLOCKED_V4), 0x0800), drop),
        ("allowed v4", eth(v4(ALLOWED_V4), 0x0800), passed),
        ("blocked v4 /28 only", eth(v4("10.77.0.9"), 0x0800), drop),
        ("blocked v4 vlan", eth(v4(BLOCKED_V4), 0x0800, vlan=True), drop),
        ("blocked v6", eth(v6(BLOCKED_V6), 0x86DD), drop),
        ("allowed v6", eth(v6(ALLOWED_V6), 0x86DD), passed),
        ("blocked v6 other /32", eth(v6("2001:db8:1::1"), 0x86DD), drop),
        ("allowed v6 vlan", eth(v6(ALLOWED_V6), 0x86DD, vlan=True), passed),
        ("arp", eth(b"\x00" * 28, 0x0806), passed),
        ("runt v4", eth(b"\x45\x00", 0x0800), passed),
    ]


# the rule each frame should count under (None: the passed/non-IP/truncated slots)
_EXPECTED_COUNTS = {0: 1, 1: 2, 2: 1, 3: 1, SLOT_PASSED: 3, SLOT_NON_IP: 1, SLOT_TRUNCATED: 1}


def _counts(m: object) -> dict[int, int]:
    out = {}
    for slot in _EXPECTED_COUNTS:
        values = m.lookup_percpu(slot.to_bytes(4, "little"))  # type: ignore[attr-defined]
        out[slot] = sum(int.from_bytes(v[:8], "little") for v in values)
    return out


def test_runtime_and_kernel_test_run_agree() -> None:
    from ebpf import runtime
    from ebpf.elf import load_collection_spec
    from ebpf.kernel.collection import Collection

    spec = load_collection_spec(object_path("xdp_firewall"))
    frames = _frames()
    results = {}
    for engine, make in (("kernel", Collection), ("runtime", runtime.Collection)):
        with make(spec.copy()) as coll:
            for name, key, value in map_entries(RULES):
                coll.maps[name].update(key, value)
            prog = coll.programs["xdp_firewall"]
            verdicts = [prog.test_run(data_in=frame).retval for _, frame, _ in frames]
            results[engine] = (verdicts, _counts(coll.maps["counters"]))
    expected = [v for _, _, v in frames]
    assert results["kernel"][0] == expected, list(zip([f[0] for f in frames], results["kernel"][0]))
    assert results["runtime"] == results["kernel"]
    assert results["kernel"][1] == _EXPECTED_COUNTS


def test_xdp_run_over_a_pcap(tmp_path: Path) -> None:
    import dpkt

    pcap = tmp_path / "in.pcap"
    frames = _frames()
    with pcap.open("wb") as f:
        writer = dpkt.pcap.Writer(f)
        for i, (_, frame, _) in enumerate(frames):
            writer.writepkt(frame, ts=1_700_000_000 + i)
    inits = [f"{name}:{key.hex()}={value.hex()}" for name, key, value in map_entries(RULES)]
    args = ["xdp", "run", str(object_path("xdp_firewall")), "--pcap", str(pcap), "--json"]
    result = CliRunner().invoke(main, [*args, *(a for i in inits for a in ("--map-init", i))])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    drops = sum(v == 1 for _, _, v in frames)
    assert doc["verdicts"] == {"XDP_DROP": drops, "XDP_PASS": len(frames) - drops}
    counters = {int.from_bytes(bytes.fromhex(k), "little"): v for k, v in doc["maps"]["counters"]}
    # one CPU in the runtime: a per-CPU value is listed as one (packets, bytes) record
    got = {slot: int.from_bytes(bytes.fromhex(counters[slot])[:8], "little") for slot in _EXPECTED_COUNTS}
    assert got == _EXPECTED_COUNTS
    bad = CliRunner().invoke(main, [*args, "--map-init", "fw_v4:zz=00"])
    assert bad.exit_code != 0 and "--map-init" in bad.output


def test_longest_prefix_semantics_random_rules() -> None:
    """Random nested prefixes and sources: the rule counted is Python's longest match, in both engines."""
    import ipaddress
    import random

    from ebpf import runtime
    from ebpf.elf import load_collection_spec
    from ebpf.kernel.collection import Collection

    rng = random.Random(20261122)
    bases = [ipaddress.ip_address("10.0.0.0"), ipaddress.ip_address("2001:db8::")]
    blocks: list[str] = []
    while len(blocks) < 60:
        base = rng.choice(bases)
        bits = 32 if base.version == 4 else 128
        plen = rng.randrange(8, bits + 1)
        addr = int(base) | rng.getrandbits(bits - 8) >> (rng.randrange(0, 8))  # many share the base /8
        net = ipaddress.ip_network((addr & ~((1 << (bits - plen)) - 1), plen))
        if str(net) not in blocks:
            blocks.append(str(net))
    nets = [ipaddress.ip_network(b) for b in blocks]

    def source() -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        net = rng.choice(nets)
        host = rng.getrandbits(net.max_prefixlen - net.prefixlen) if net.prefixlen < net.max_prefixlen else 0
        addr = int(net.network_address) | host
        if rng.random() < 0.2:
            addr ^= 1 << rng.randrange(net.max_prefixlen)  # often just outside
        return ipaddress.ip_address(addr) if net.version == 6 else ipaddress.IPv4Address(addr)

    def frame(src: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
        if src.version == 4:
            ip = b"\x45\x00\x00\x14" + bytes(8) + src.packed + bytes(4)
            return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip
        ip6 = b"\x60" + bytes(3) + b"\x00\x00\x3b\x40" + src.packed + bytes(16)
        return b"\x02" * 6 + b"\x04" * 6 + b"\x86\xdd" + ip6

    sources = [source() for _ in range(300)]
    expected_rule = []
    for src in sources:
        matches = [(n.prefixlen, i) for i, n in enumerate(nets) if n.version == src.version and src in n]
        expected_rule.append(max(matches)[1] if matches else None)
    expected = {i: expected_rule.count(i) for i in range(len(nets))}
    expected[SLOT_PASSED] = expected_rule.count(None)
    assert 0 < expected[SLOT_PASSED] < len(sources)

    spec = load_collection_spec(object_path("xdp_firewall"))
    for make in (Collection, runtime.Collection):
        with make(spec.copy()) as coll:
            for name, key, value in map_entries(blocks):
                coll.maps[name].update(key, value)
            prog = coll.programs["xdp_firewall"]
            verdicts = [prog.test_run(data_in=frame(src)).retval for src in sources]
            assert verdicts == [2 if r is None else 1 for r in expected_rule], make
            counters = coll.maps["counters"]
            got = {}
            for slot in expected:
                values = counters.lookup_percpu(slot.to_bytes(4, "little"))
                got[slot] = sum(int.from_bytes(v[:8], "little") for v in values)
            assert got == expected, make
