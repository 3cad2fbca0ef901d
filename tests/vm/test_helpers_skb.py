"""Gateway helpers in user space: the FIB model, host-state parsing, tunnels, redirects, protocol change.

The kernel's answers for the same calls are in tests/differential/test_helpers_skb_kernel.py;
these tests pin the model's behaviour on a given :class:`Fib` and fake /proc trees.
"""

from __future__ import annotations

import errno
import socket
import struct
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

import pytest

from ebpf.errors import NotSupportedError, VMError
from ebpf.helpers import PROTOTYPES, HelperId
from ebpf.spec import ProgramType
from ebpf.vm._helpers_skb import (
    BPF_F_NEIGH,
    BPF_F_NEXTHOP,
    BPF_F_PEER,
    Fib,
    FibDevice,
    FibResult,
    FibRoute,
    RouteType,
    fib_lookup,
)
from ebpf.vm.helpers import RunEnv

from ._helper_util import ENGINE_NAMES, HELPERS, user_test_run

M32 = 0xFFFFFFFF
GW_MAC = b"\x02\0\0\0\0\x02"
DEV_MAC = b"\x02\0\0\0\x0d\0"


def params(
    family: int = 2, ifindex: int = 1, src: str = "10.9.0.1", dst: str = "10.10.1.2", **kw: int
) -> bytearray:
    af = socket.AF_INET6 if family == 10 else socket.AF_INET
    buf = bytearray(64)
    struct.pack_into("<BBHHHI", buf, 0, family, 6, 0, 0, kw.get("tot_len", 0), ifindex)
    s, d = socket.inet_pton(af, src), socket.inet_pton(af, dst)
    buf[16 : 16 + len(s)] = s
    buf[32 : 32 + len(d)] = d
    struct.pack_into("<I", buf, 48, kw.get("tbid", 0))
    return buf


def gateway_fib(forwarding: bool = True) -> Fib:
    lo = FibDevice(1, "lo", 65536, bytes(6), 0x9, 14, forwarding, forwarding, 65536)
    d0 = FibDevice(2, "d0", 1400, DEV_MAC, 0x1, 14, forwarding, forwarding, 1400)
    return Fib(
        {1: lo, 2: d0},
        [
            FibRoute(IPv4Network("127.0.0.0/8"), 1, type=RouteType.LOCAL, table=255),
            FibRoute(IPv4Network("10.9.0.1/32"), 2, type=RouteType.LOCAL, table=255),
            FibRoute(IPv4Network("10.9.0.0/24"), 2, metric=0),
            FibRoute(IPv4Network("10.10.0.0/16"), 2, IPv4Address("10.9.0.2"), metric=7),
            FibRoute(IPv4Network("10.10.0.0/16"), 2, IPv4Address("10.9.0.3"), metric=9),
            FibRoute(IPv4Network("10.11.0.0/16"), type=RouteType.BLACKHOLE),
            FibRoute(IPv4Network("10.12.0.0/16"), type=RouteType.UNREACHABLE),
            FibRoute(IPv4Network("10.13.0.0/16"), type=RouteType.PROHIBIT),
            FibRoute(IPv4Network("10.14.0.0/16"), type=RouteType.THROW, table=255),
            FibRoute(IPv4Network("10.14.0.0/16"), 2, IPv4Address("10.9.0.2")),
            FibRoute(
                IPv4Network("10.15.0.0/16"),
                2,
                IPv4Address("10.9.0.2"),
                table=100,
                prefsrc=IPv4Address("10.9.0.9"),
            ),
            FibRoute(IPv6Network("fd00::/64"), 2, metric=256),
            FibRoute(IPv6Network("fd01::/64"), 2, IPv6Address("fd00::2"), metric=1024),
        ],
        {(2, IPv4Address("10.9.0.2")): GW_MAC, (2, IPv6Address("fd00::2")): GW_MAC},
        {253, 254, 255, 100},
    )


def test_fib_success_through_the_gateway() -> None:
    p = params()
    assert fib_lookup(gateway_fib(), p, 0, check_mtu=True) == FibResult.SUCCESS
    assert p[8:12] == (2).to_bytes(4, "little")  # ifindex: the output device
    assert p[12:16] == (7).to_bytes(4, "little")  # rt_metric: the lowest among equal prefixes
    assert p[32:36] == bytes([10, 9, 0, 2])  # ipv4_dst: the gateway
    assert p[52:64] == DEV_MAC + GW_MAC  # smac, dmac
    assert p[6:8] == (1400).to_bytes(2, "little")  # mtu_result


@pytest.mark.parametrize(
    ("dst", "flags", "expected"),
    [
        ("10.11.1.1", 0, FibResult.BLACKHOLE),
        ("10.12.1.1", 0, FibResult.UNREACHABLE),
        ("10.13.1.1", 0, FibResult.PROHIBIT),
        ("127.0.0.1", 0, FibResult.NOT_FWDED),  # a local route
        ("10.9.0.1", 0, FibResult.NOT_FWDED),
        ("192.0.2.1", 0, FibResult.NOT_FWDED),  # no route
        ("10.9.0.77", 0, FibResult.NO_NEIGH),
        ("10.9.0.77", 4, FibResult.SUCCESS),  # BPF_FIB_LOOKUP_SKIP_NEIGH
        ("10.14.1.1", 0, FibResult.SUCCESS),  # a throw route in the local table: on to main
        ("10.14.1.1", 1, FibResult.SUCCESS),  # DIRECT: main only
        ("127.0.0.1", 1, FibResult.NOT_FWDED),  # DIRECT skips the local table: no route in main
        ("10.10.1.1", 2, FibResult.NOT_FWDED),  # OUTPUT: the route's device is not ifindex 1
    ],
)
def test_fib_route_kinds(dst: str, flags: int, expected: FibResult) -> None:
    assert fib_lookup(gateway_fib(), params(dst=dst), flags, check_mtu=True) == expected


def test_fib_device_and_forwarding_checks() -> None:
    assert fib_lookup(gateway_fib(False), params(), 0, check_mtu=True) == FibResult.FWD_DISABLED
    assert fib_lookup(gateway_fib(), params(ifindex=9), 0, check_mtu=True) == -errno.ENODEV
    assert fib_lookup(gateway_fib(), params(family=7), 0, check_mtu=True) == -errno.EAFNOSUPPORT


def test_fib_mtu() -> None:
    p = params(tot_len=1401)
    assert fib_lookup(gateway_fib(), p, 0, check_mtu=True) == FibResult.FRAG_NEEDED
    assert p[6:8] == (1400).to_bytes(2, "little") and p[8:12] == (1).to_bytes(4, "little")
    # tc without tot_len: the skb against the device (mtu + header + VLAN_HLEN).
    p = params()
    assert fib_lookup(gateway_fib(), p, 0, check_mtu=False, skb_len=1418) == FibResult.SUCCESS
    p = params()
    assert fib_lookup(gateway_fib(), p, 0, check_mtu=False, skb_len=1419) == FibResult.FRAG_NEEDED
    assert p[6:8] == (1400).to_bytes(2, "little") and p[52:64] == DEV_MAC + GW_MAC


def test_fib_tbid_and_src() -> None:
    p = params(dst="10.15.0.1", tbid=100)
    assert fib_lookup(gateway_fib(), p, 1 | 8 | 16, check_mtu=True) == FibResult.SUCCESS
    assert p[16:20] == bytes([10, 9, 0, 9])  # prefsrc
    p = params(tbid=42)
    assert fib_lookup(gateway_fib(), p, 1 | 8, check_mtu=True) == FibResult.NOT_FWDED
    assert p[48:52] == bytes(4)  # tbid is cleared first


def test_fib_ipv6() -> None:
    p = params(10, 1, "fd00::1", "fd01::5")
    assert fib_lookup(gateway_fib(), p, 0, check_mtu=True) == FibResult.SUCCESS
    assert p[32:48] == IPv6Address("fd00::2").packed and p[58:64] == GW_MAC
    assert p[6:8] == (1400).to_bytes(2, "little")
    for src, dst in (("fe80::1", "fd01::5"), ("fd00::1", "::1"), ("fd00::1", "ff02::1")):
        assert fib_lookup(gateway_fib(), params(10, 9, src, dst), 0, check_mtu=True) == FibResult.NOT_FWDED


def test_deterministic_fib_is_loopback_only() -> None:
    fib = Fib.loopback()
    assert (
        fib_lookup(fib, params(src="127.0.0.1", dst="127.0.0.1"), 0, check_mtu=True) == FibResult.FWD_DISABLED
    )
    assert fib_lookup(fib, params(ifindex=2), 0, check_mtu=True) == -errno.ENODEV


# --- the host's state -------------------------------------------------------------------------------


FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     |-- 10.11.0.0
        /16 universe BLACKHOLE
     |-- 10.13.0.0
        /16 universe PROHIBIT
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
     |-- 192.0.2.0
        /24 link UNICAST
     |-- 192.0.2.2
        /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     |-- 10.11.0.0
        /16 universe BLACKHOLE
     |-- 10.13.0.0
        /16 universe PROHIBIT
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
     |-- 192.0.2.0
        /24 link UNICAST
     |-- 192.0.2.2
        /32 host LOCAL
"""
ROUTE = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t5\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
*\t00000B0A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
*\t00000D0A\t00000000\t0201\t0\t0\t0\t0000FFFF\t0\t0\t0
"""
IPV6_ROUTE = (
    "fd000000000000000000000000000000 40 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n"
    "00000000000000000000000000000001 80 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo\n"
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n"
)
ARP = """IP address       HW type     Flags       HW address            Mask     Device
192.0.2.1        0x1         0x2         02:fc:00:00:00:05     *        eth0
192.0.2.9        0x1         0x0         00:00:00:00:00:00     *        eth0
"""


@pytest.fixture
def fake_host(tmp_path: Path) -> tuple[str, str]:
    proc, sys = tmp_path / "proc", tmp_path / "sys"
    (proc / "net").mkdir(parents=True)
    (proc / "net" / "fib_trie").write_text(FIB_TRIE)
    (proc / "net" / "route").write_text(ROUTE)
    (proc / "net" / "ipv6_route").write_text(IPV6_ROUTE)
    (proc / "net" / "arp").write_text(ARP)
    for name, ifindex, mtu, mac, flags, fwd in (
        ("lo", 1, 65536, "00:00:00:00:00:00", "0x9", "1"),
        ("eth0", 2, 1500, "02:fc:00:00:00:01", "0x1003", "1"),
    ):
        dev = sys / "class" / "net" / name
        dev.mkdir(parents=True)
        for key, value in (
            ("ifindex", ifindex),
            ("mtu", mtu),
            ("address", mac),
            ("flags", flags),
            ("type", 1),
        ):
            (dev / key).write_text(f"{value}\n")
        for family in ("ipv4", "ipv6"):
            conf = proc / "sys" / "net" / family / "conf" / name
            conf.mkdir(parents=True)
            (conf / "forwarding").write_text(fwd + "\n")
        (proc / "sys" / "net" / "ipv6" / "conf" / name / "mtu").write_text(f"{min(mtu, 65535)}\n")
    return str(proc), str(sys)


def test_host_state_is_parsed(fake_host: tuple[str, str]) -> None:
    fib = Fib.from_host(*fake_host)
    assert fib.devices[2].mac == bytes.fromhex("02fc00000001") and fib.devices[2].forwarding
    kinds = {(r.dst, r.type) for r in fib.routes}
    assert (IPv4Network("0.0.0.0/0"), RouteType.UNICAST) in kinds
    assert (IPv4Network("10.11.0.0/16"), RouteType.BLACKHOLE) in kinds
    assert (IPv4Network("10.13.0.0/16"), RouteType.PROHIBIT) in kinds  # RTF_REJECT refined by fib_trie
    assert (IPv4Network("127.0.0.1/32"), RouteType.LOCAL) in kinds
    assert (IPv6Network("::1/128"), RouteType.LOCAL) in kinds
    assert not any(r.dst == IPv6Network("::/0") for r in fib.routes)  # the null entry is no route
    default = next(r for r in fib.routes if r.dst == IPv4Network("0.0.0.0/0"))
    assert default.gateway == IPv4Address("192.0.2.1") and default.metric == 5 and default.ifindex == 2
    assert fib.neighbours == {(2, IPv4Address("192.0.2.1")): bytes.fromhex("02fc00000005")}


def test_host_lookups(fake_host: tuple[str, str]) -> None:
    fib = Fib.from_host(*fake_host)
    p = params(ifindex=2, src="192.0.2.2", dst="198.51.100.7")
    assert fib_lookup(fib, p, 0, check_mtu=True) == FibResult.SUCCESS
    assert p[32:36] == bytes([192, 0, 2, 1]) and p[58:64] == bytes.fromhex("02fc00000005")
    assert fib_lookup(fib, params(ifindex=2, dst="192.0.2.9"), 0, check_mtu=True) == FibResult.NO_NEIGH
    assert fib_lookup(fib, params(ifindex=2, dst="10.11.0.1"), 0, check_mtu=True) == FibResult.BLACKHOLE
    assert fib_lookup(fib, params(ifindex=2, dst="192.0.2.2"), 0, check_mtu=True) == FibResult.NOT_FWDED
    # What /proc does not show is refused, not guessed.
    with pytest.raises(NotSupportedError, match="IPv6 neighbour"):
        fib_lookup(fib, params(10, 2, "fd00::1", "fd00::2"), 0, check_mtu=True)
    assert fib_lookup(fib, params(10, 2, "fd00::1", "fd00::2"), 4, check_mtu=True) == FibResult.SUCCESS
    with pytest.raises(NotSupportedError, match="source address"):
        fib_lookup(fib, params(ifindex=2, dst="198.51.100.7"), 16, check_mtu=True)


def test_the_real_host_state_reads() -> None:
    fib = Fib.from_host()
    assert fib.host and fib.devices  # at least lo
    assert any(d.name == "lo" for d in fib.devices.values())


# --- through programs -------------------------------------------------------------------------------


def _fib_program(flags: int, plen: int = 64) -> str:
    p = params(ifindex=1, src="10.9.0.1", dst="10.10.1.2")
    lines = ["r6 = r1"]
    for i in range(0, 64, 8):
        lines += [f"r1 = {int.from_bytes(p[i : i + 8], 'little')} ll", f"*(u64 *)(r10 - {64 - i}) = r1"]
    lines += [
        f"r1 = r6\nr2 = r10\nr2 += -64\nr3 = {plen}\nr4 = {flags}\ncall {HelperId.FIB_LOOKUP}\nr7 = r0",
        f"r1 = r6\nr2 = 14\nr3 = r10\nr3 += -64\nr4 = 64\nr5 = 0\ncall {HelperId.SKB_STORE_BYTES}",
        "r0 = r7\nexit",
    ]
    return "\n".join(lines)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_fib_lookup_helper_uses_runenv_fib(engine: str) -> None:
    env = RunEnv(deterministic=True)
    env.fib = gateway_fib()
    res = user_test_run(
        _fib_program(0), ProgramType.SCHED_CLS, bytes(14) + bytes(100), engine=engine, env=env
    )
    assert res.retval == FibResult.SUCCESS
    assert res.data_out[14 + 52 : 14 + 64] == DEV_MAC + GW_MAC
    for flags, plen in ((0x40, 64), (0, 63)):
        env = RunEnv(deterministic=True)
        res = user_test_run(
            _fib_program(flags, plen), ProgramType.SCHED_CLS, bytes(114), engine=engine, env=env
        )
        assert res.retval == -errno.EINVAL & M32
    env = RunEnv(deterministic=True)  # no fib given: only loopback, forwarding off
    res = user_test_run(_fib_program(0), ProgramType.SCHED_CLS, bytes(114), engine=engine, env=env)
    assert res.retval == FibResult.FWD_DISABLED


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_redirects_record_the_target(engine: str) -> None:
    for text, flags in (
        (f"r1 = 5\nr2 = 0\nr3 = 0\nr4 = 0\ncall {HelperId.REDIRECT_NEIGH}\nexit", BPF_F_NEIGH),
        (
            "r1 = 0\n*(u64 *)(r10 - 8) = r1\n*(u64 *)(r10 - 16) = r1\n*(u64 *)(r10 - 24) = r1\n"
            + f"r1 = 5\nr2 = r10\nr2 += -24\nr3 = 20\nr4 = 0\ncall {HelperId.REDIRECT_NEIGH}\nexit",
            BPF_F_NEIGH | BPF_F_NEXTHOP,
        ),
        (f"r1 = 5\nr2 = 0\ncall {HelperId.REDIRECT_PEER}\nexit", BPF_F_PEER),
    ):
        env = RunEnv(deterministic=True)
        res = user_test_run(text, ProgramType.SCHED_CLS, bytes(60), engine=engine, env=env)
        assert res.retval == 7 and env.redirect is not None
        assert (env.redirect.ifindex, env.redirect.flags) == (5, flags)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_change_proto_moves_the_mac_header(engine: str) -> None:
    frame = b"\xaa" * 12 + b"\x08\x00" + bytes(range(20)) + b"payload"
    text = f"r6 = r1\nr2 = 0xdd86\nr3 = 0\ncall {HelperId.SKB_CHANGE_PROTO}\nr0 = *(u32 *)(r6 + 16)\nexit"
    res = user_test_run(text, ProgramType.SCHED_CLS, frame, engine=engine)
    assert res.retval == 0xDD86
    assert res.data_out == b"\xaa" * 12 + b"\x08\x00" + bytes(20) + bytes(range(20)) + b"payload"


def test_socket_lookups_return_null_and_release_returns_zero() -> None:
    env = RunEnv(deterministic=True)
    for hid in (HelperId.SK_LOOKUP_TCP, HelperId.SK_LOOKUP_UDP, HelperId.SKC_LOOKUP_TCP):
        text = f"r2 = r10\nr2 += -16\nr3 = 12\nr4 = -1\nr5 = 0\ncall {hid}\nexit"
        text = "r0 = 0\n*(u64 *)(r10 - 8) = r0\n*(u64 *)(r10 - 16) = r0\n" + text
        assert user_test_run(text, ProgramType.SCHED_CLS, bytes(60), env=env).retval == 0
    assert HELPERS[HelperId.SK_RELEASE].fn(env, 0x1000, 0, 0, 0, 0) == 0


def test_helpers_need_a_packet_context() -> None:
    env = RunEnv(deterministic=True)
    with pytest.raises(VMError, match="context"):
        HELPERS[HelperId.SKB_CHANGE_PROTO].fn(env, 0x1234, 0xDD86, 0, 0, 0)
    with pytest.raises(VMError, match="context"):
        HELPERS[HelperId.FIB_LOOKUP].fn(env, 0x1234, 0, 64, 0, 0)


def test_classid_and_realm_in_deterministic_mode() -> None:
    env = RunEnv(deterministic=True)
    text = f"r6 = r1\ncall {HelperId.GET_CGROUP_CLASSID}\nr7 = r0\nr1 = r6\ncall {HelperId.GET_ROUTE_REALM}\nr0 |= r7\nexit"
    assert user_test_run(text, ProgramType.SCHED_CLS, bytes(60), env=env).retval == 0


def test_prototypes_cover_the_helpers() -> None:
    for hid in (
        HelperId.FIB_LOOKUP,
        HelperId.REDIRECT_NEIGH,
        HelperId.REDIRECT_PEER,
        HelperId.SK_LOOKUP_TCP,
        HelperId.SK_LOOKUP_UDP,
        HelperId.SKC_LOOKUP_TCP,
        HelperId.SK_RELEASE,
        HelperId.SKB_CHANGE_PROTO,
        HelperId.SKB_GET_TUNNEL_KEY,
        HelperId.SKB_SET_TUNNEL_KEY,
        HelperId.SKB_GET_TUNNEL_OPT,
        HelperId.SKB_SET_TUNNEL_OPT,
        HelperId.GET_CGROUP_CLASSID,
        HelperId.GET_ROUTE_REALM,
    ):
        assert hid in PROTOTYPES and hid in HELPERS, hid
    assert PROTOTYPES[HelperId.FIB_LOOKUP].gpl_only
    assert not PROTOTYPES[HelperId.REDIRECT_PEER].allowed_in(ProgramType.XDP)
    assert PROTOTYPES[HelperId.SKC_LOOKUP_TCP].ret.maybe_null
