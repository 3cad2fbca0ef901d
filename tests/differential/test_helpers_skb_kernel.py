"""Gateway helpers (``ebpf.vm._helpers_skb``) against Linux: the same retval and ``data_out``.

Each program calls helpers on structs it keeps on the stack and then copies the structs and
the helpers' return values into the packet, so ``data_out`` shows everything the helpers wrote.
``bpf_fib_lookup`` runs against the FIB of the test's network namespace: the host's as it is
(forwarding off), and a private namespace with forwarding on and routes of every kind
(``unshare --net --mount`` with a fresh sysfs, so the runtime reads that namespace's state).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from ebpf.errors import NotSupportedError
from ebpf.helpers import HelperId
from ebpf.spec import ProgramType
from ebpf.vm.helpers import RunEnv
from vm._helper_util import ENGINE_NAMES, kernel_test_run, user_test_run

pytestmark = pytest.mark.kernel

H = HelperId
A_OFF, B_OFF, R_OFF = 64, 128, 192  # struct A at r10-64, buffer B at r10-128, results at r10-192
AF_INET, AF_INET6 = 2, 10
SOCKET_LOOKUPS = (H.SK_LOOKUP_TCP, H.SK_LOOKUP_UDP, H.SKC_LOOKUP_TCP)


def program(
    steps: list[tuple[int, tuple[object, ...]]], *, xdp: bool = False, a: bytes = b"", copy: bool = True
) -> str:
    """Call ``steps`` (helper, r1..r5 with "ctx", "A", "B" or ints), then copy A, B and the results
    (one u64 per step) into the packet at offset 14; r0 is the last step's result."""
    lines = ["r6 = r1"]
    area = a.ljust(64, b"\0") + bytes([0xAA]) * 64 + bytes(64)  # A, B (a pattern), results
    for i in range(0, len(area), 8):
        base = (A_OFF, B_OFF, R_OFF)[i // 64]
        lines += [
            f"r1 = {int.from_bytes(area[i : i + 8], 'little')} ll",
            f"*(u64 *)(r10 - {base - i % 64}) = r1",
        ]
    for n, (helper, args) in enumerate(steps):
        for reg, arg in enumerate(args, start=1):
            if arg == "ctx":
                lines.append(f"r{reg} = r6")
            elif arg in ("A", "B"):
                lines += [f"r{reg} = r10", f"r{reg} += -{A_OFF if arg == 'A' else B_OFF}"]
            else:
                lines.append(f"r{reg} = {arg} ll")
        lines += [f"call {int(helper)}", "r7 = r0"]
        if helper in SOCKET_LOOKUPS:  # a socket must be released: keep only whether one was found
            lines += [
                "r7 = 0",
                f"if r0 == 0 goto none{n}",
                "r7 = 1",
                "r1 = r0",
                f"call {int(H.SK_RELEASE)}",
                f"none{n}:",
            ]
        lines.append(f"*(u64 *)(r10 - {R_OFF - 8 * n}) = r7")
    if copy:
        lines += ["r1 = r6", "r2 = 14", "r3 = r10", f"r3 += -{R_OFF}", "r4 = 192"]
        if xdp:
            lines.append(f"call {int(H.XDP_STORE_BYTES)}")
        else:
            lines += ["r5 = 0", f"call {int(H.SKB_STORE_BYTES)}"]
    lines += ["r0 = r7", "exit"]
    return "\n".join(lines)


def packet(size: int = 256, proto: int = 0x0800) -> bytes:
    """An Ethernet frame of ``size`` bytes: an IPv4 (or IPv6) header, then a counting payload."""
    if proto == 0x0800:
        l3 = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, size - 14, 1, 0, 64, 17, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
        )
    elif proto == 0x86DD:
        l3 = struct.pack("!IHBB16s16s", 6 << 28, size - 54, 17, 64, bytes(15) + b"\1", bytes(15) + b"\2")
    else:
        l3 = b""
    frame = b"\x02\0\0\0\0\x0a" + b"\x02\0\0\0\0\x0b" + proto.to_bytes(2, "big") + l3
    return frame + bytes(i & 0xFF for i in range(size - len(frame)))


def both(text: str, prog_type: ProgramType, data: bytes, engine: str, env: RunEnv | None = None) -> None:
    kernel = kernel_test_run(text, prog_type, data)
    mine = user_test_run(text, prog_type, data, engine=engine, env=env or RunEnv())
    assert (mine.retval, mine.data_out) == (kernel.retval, kernel.data_out)


def fib_params(
    family: int = AF_INET,
    ifindex: int = 1,
    src: str = "127.0.0.1",
    dst: str = "127.0.0.1",
    tot_len: int = 0,
    **kw: int,
) -> bytes:
    """A ``struct bpf_fib_lookup``."""
    af = socket.AF_INET if family == AF_INET else socket.AF_INET6
    fam = family if family in (AF_INET, AF_INET6) else AF_INET
    s = socket.inet_pton(socket.AF_INET if fam == AF_INET else socket.AF_INET6, src)
    d = socket.inet_pton(af if family in (AF_INET, AF_INET6) else socket.AF_INET, dst)
    buf = bytearray(64)
    struct.pack_into("<BBHHHI", buf, 0, family, kw.get("proto", 6), 0, 0, tot_len, ifindex)
    buf[16 : 16 + len(s)] = s
    buf[32 : 32 + len(d)] = d
    struct.pack_into("<I", buf, 48, kw.get("tbid", 0))
    return bytes(buf)


def fib_prog(params: bytes, plen: int = 64, flags: int = 0, *, xdp: bool = False) -> str:
    return program([(H.FIB_LOOKUP, ("ctx", "A", plen, flags))], xdp=xdp, a=params)


HOST_FIB_CASES = {
    "lo_v4_fwd_disabled": (fib_params(), 64, 0),
    "lo_v4_tot_len": (fib_params(tot_len=40), 64, 0),
    "lo_v4_direct_output": (fib_params(), 64, 3),
    "bad_flags": (fib_params(), 64, 0x40),
    "short_plen": (fib_params(), 63, 0),
    "family_0": (fib_params(family=0), 64, 0),
    "no_device_v4": (fib_params(ifindex=99999), 64, 0),
    "v6_loopback_not_fwded": (fib_params(AF_INET6, 1, "::1", "::1"), 64, 0),
    "v6_link_local_not_fwded": (fib_params(AF_INET6, 99999, "fe80::1", "fd00::2"), 64, 0),
    "v6_fwd_disabled": (fib_params(AF_INET6, 1, "fd00::1", "fd00::2"), 64, 0),
    "no_device_v6": (fib_params(AF_INET6, 99999, "fd00::1", "fd00::2"), 64, 0),
}


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("case", list(HOST_FIB_CASES))
def test_fib_lookup_host(engine: str, case: str) -> None:
    params, plen, flags = HOST_FIB_CASES[case]
    if not case.startswith(("bad", "short", "family", "no_device", "v6_loopback", "v6_link")):
        fwd = Path(
            "/proc/sys/net/ipv4/conf/lo/forwarding"
            if "v6" not in case
            else "/proc/sys/net/ipv6/conf/lo/forwarding"
        )
        if fwd.read_text().strip() != "0":
            pytest.skip("this case expects forwarding off on lo")
    both(fib_prog(params, plen, flags), ProgramType.SCHED_CLS, packet(), engine)
    both(fib_prog(params, plen, flags, xdp=True), ProgramType.XDP, packet(), engine)


# --- a private namespace with forwarding on --------------------------------------------------------

NETNS_SETUP = """
ip link set lo up
ip link add d0 type veth peer name d1
ip link set d1 up
ip link set d0 address 02:00:00:00:0d:00 mtu 1400 up
ip addr add 10.9.0.1/24 dev d0
ip neigh add 10.9.0.2 lladdr 02:00:00:00:00:02 dev d0 nud permanent
ip neigh add 10.9.0.3 dev d0 nud failed
ip route add 10.10.0.0/16 via 10.9.0.2 metric 7
ip route add 10.20.0.0/16 via 10.9.0.3
ip route add blackhole 10.11.0.0/16
ip route add unreachable 10.12.0.0/16
ip route add prohibit 10.13.0.0/16
ip route add local 10.40.0.0/16 dev lo table main
ip -6 addr add fd09::1/64 dev d0 nodad
ip -6 route add fd10::/64 via fd09::2 metric 5
ip -6 route add fd14::/64 dev d0 mtu lock 1300
ip -6 route add blackhole fd11::/64
sysctl -qw net.ipv4.conf.all.forwarding=1
sysctl -qw net.ipv6.conf.all.forwarding=1
"""

NETNS_CASES: dict[str, tuple[bytes, int, int]] = {
    "gateway_neigh": (fib_params(ifindex=1, src="10.9.0.1", dst="10.10.1.2"), 64, 0),
    "gateway_neigh_tot_len": (fib_params(ifindex=1, src="10.9.0.1", dst="10.10.1.2", tot_len=1400), 64, 0),
    "frag_needed_tot_len": (fib_params(ifindex=1, src="10.9.0.1", dst="10.10.1.2", tot_len=1401), 64, 0),
    "connected_no_neigh": (fib_params(ifindex=1, src="10.9.0.1", dst="10.9.0.77"), 64, 0),
    "connected_neigh": (fib_params(ifindex=1, src="10.9.0.1", dst="10.9.0.2"), 64, 0),
    "failed_neigh": (fib_params(ifindex=1, src="10.9.0.1", dst="10.20.0.9"), 64, 0),
    "skip_neigh": (fib_params(ifindex=1, src="10.9.0.1", dst="10.20.0.9"), 64, 4),
    "direct": (fib_params(ifindex=1, src="10.9.0.1", dst="10.10.1.2"), 64, 1),
    "direct_tbid_missing": (fib_params(ifindex=1, src="10.9.0.1", dst="10.10.1.2", tbid=77), 64, 9),
    "direct_tbid_main": (fib_params(ifindex=1, src="10.9.0.1", dst="10.10.1.2", tbid=254), 64, 9),
    "output_wrong_dev": (fib_params(ifindex=1, src="10.9.0.1", dst="10.10.1.2"), 64, 2),
    "blackhole": (fib_params(ifindex=1, dst="10.11.0.1"), 64, 0),
    "unreachable": (fib_params(ifindex=1, dst="10.12.0.1"), 64, 0),
    "prohibit": (fib_params(ifindex=1, dst="10.13.0.1"), 64, 0),
    "local": (fib_params(ifindex=1, dst="10.9.0.1"), 64, 0),
    "loopback": (fib_params(ifindex=1), 64, 0),
    "no_route": (fib_params(ifindex=1, dst="192.0.2.1"), 64, 0),
    "v6_no_route": (fib_params(AF_INET6, 1, "fd00::1", "fd00::2"), 64, 0),
    "v6_gateway": (fib_params(AF_INET6, 1, "fd09::1", "fd10::5"), 64, 4),
    "v6_gateway_tot_len": (fib_params(AF_INET6, 1, "fd09::1", "fd10::5", tot_len=1400), 64, 4),
    "v6_frag_needed": (fib_params(AF_INET6, 1, "fd09::1", "fd10::5", tot_len=1401), 64, 4),
    "v6_connected": (fib_params(AF_INET6, 1, "fd09::1", "fd09::7"), 64, 4),
    "v6_route_mtu": (fib_params(AF_INET6, 1, "fd09::1", "fd14::7", tot_len=1301), 64, 4),
    "v6_local": (fib_params(AF_INET6, 1, "fd09::7", "fd09::1"), 64, 0),
    "v6_direct": (fib_params(AF_INET6, 1, "fd09::1", "fd10::5"), 64, 5),
    "v6_output": (fib_params(AF_INET6, 1, "fd09::1", "fd10::5"), 64, 6),
    "v6_blackhole": (fib_params(AF_INET6, 1, "fd09::1", "fd11::5"), 64, 0),
    "v6_neighbour": (fib_params(AF_INET6, 1, "fd09::1", "fd10::5"), 64, 0),
    "local_in_main": (fib_params(ifindex=1, dst="10.40.0.1"), 64, 0),
    "local_in_main_direct": (fib_params(ifindex=1, dst="10.40.0.1"), 64, 1),
    "src_flag": (fib_params(ifindex=1, src="10.9.0.1", dst="10.10.1.2"), 64, 16),
    "table100_blackhole": (fib_params(ifindex=1, dst="10.31.0.1", tbid=100), 64, 9),
    "table100_unicast": (fib_params(ifindex=1, src="10.9.0.1", dst="10.30.0.1", tbid=100), 64, 9),
}
# A second namespace has a policy rule and table 100: its local and main tables are separate.
RULES_SETUP = """
ip rule add from 10.99.0.0/16 lookup 100 pref 100
ip route add 10.30.0.0/16 via 10.9.0.2 table 100
ip route add blackhole 10.31.0.0/16 table 100
"""
# /proc shows neither IPv6 neighbours, nor the kind of an IPv6 reject route, nor the devices of
# routes outside the main table: the runtime refuses those lookups.
REFUSED = {"v6_blackhole", "v6_neighbour", "rules:table100_unicast", "src_flag"}
# /proc does not show route MTUs (``mtu lock``): the runtime uses the device's.
KNOWN_GAPS = {"v6_route_mtu": "a locked route MTU is not in /proc/net/ipv6_route (the kernel: 1300)"}

CHILD = """
import json, sys
sys.path[:0] = json.loads(sys.argv[1])
from differential.test_helpers_skb_kernel import NETNS_CASES, fib_prog, packet
from ebpf.errors import NotSupportedError
from ebpf.spec import ProgramType
from ebpf.vm.helpers import RunEnv
from vm._helper_util import kernel_test_run, user_test_run
out = {}
for name, (params, plen, flags) in NETNS_CASES.items():
    for xdp in (False, True):
        text = fib_prog(params, plen, flags, xdp=xdp)
        t = ProgramType.XDP if xdp else ProgramType.SCHED_CLS
        size = 1500 if name == "gateway_neigh" and not xdp else 256
        k = kernel_test_run(text, t, packet(size))
        sides = [(k.retval, k.data_out.hex())]
        for engine in ("interp", "py"):
            try:
                m = user_test_run(text, t, packet(size), engine=engine, env=RunEnv())
            except NotSupportedError as err:
                sides.append(("NotSupportedError", str(err)))
                continue
            sides.append((m.retval, m.data_out.hex()))
        out[f"{name}{'_xdp' if xdp else ''}"] = sides
print(json.dumps(out))
"""


@pytest.fixture(scope="module", params=["merged", "rules"])
def netns_results(request: pytest.FixtureRequest) -> dict[str, list[list[object]]]:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs root, unshare and ip")
    tests = str(Path(__file__).resolve().parent.parent)
    setup = NETNS_SETUP + (RULES_SETUP if request.param == "rules" else "")
    script = setup + 'mount -t sysfs sysfs /sys\nexec "$0" -c "$1" "$2"\n'
    proc = subprocess.run(
        ["unshare", "--net", "--mount", "sh", "-ec", script, sys.executable, CHILD, json.dumps([tests])],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, list[list[object]]] = json.loads(proc.stdout.splitlines()[-1])
    result["setup"] = [[request.param]]
    return result


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            f"{n}{x}", marks=pytest.mark.xfail(strict=True, raises=AssertionError, reason=KNOWN_GAPS[n])
        )
        if n in KNOWN_GAPS
        else f"{n}{x}"
        for n in NETNS_CASES
        for x in ("", "_xdp")
    ],
)
def test_fib_lookup_in_a_namespace(netns_results: dict[str, list[list[object]]], case: str) -> None:
    kernel, interp, py = netns_results[case]
    base = case.removesuffix("_xdp")
    if base in REFUSED or f"{netns_results['setup'][0][0]}:{base}" in REFUSED:
        assert interp[0] == py[0] == "NotSupportedError", (interp, py)
        return
    assert interp == kernel
    assert py == kernel


# --- sockets, redirects, tunnels, classid, realm ---------------------------------------------------

TUPLE4 = socket.inet_aton("127.0.0.1") * 2 + struct.pack("!HH", 1, 1)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("xdp", [False, True], ids=["tc", "xdp"])
def test_socket_lookups_find_nothing(engine: str, xdp: bool) -> None:
    steps: list[tuple[int, tuple[object, ...]]] = [
        (H.SK_LOOKUP_TCP, ("ctx", "A", 12, 0xFFFFFFFF, 0)),
        (H.SK_LOOKUP_UDP, ("ctx", "A", 12, 0xFFFFFFFF, 0)),
        (H.SKC_LOOKUP_TCP, ("ctx", "A", 12, 0xFFFFFFFF, 0)),
        (H.SK_LOOKUP_TCP, ("ctx", "A", 12, 0xFFFFFFFF, 1)),  # bad flags
    ]
    text = program(steps, xdp=xdp, a=TUPLE4)
    both(text, ProgramType.XDP if xdp else ProgramType.SCHED_CLS, packet(), engine)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize(
    ("family", "kind", "helper"),
    [
        (socket.AF_INET, socket.SOCK_STREAM, H.SK_LOOKUP_TCP),
        (socket.AF_INET, socket.SOCK_STREAM, H.SKC_LOOKUP_TCP),
        (socket.AF_INET, socket.SOCK_DGRAM, H.SK_LOOKUP_UDP),
        (socket.AF_INET6, socket.SOCK_STREAM, H.SK_LOOKUP_TCP),  # dual stack: an IPv4 tuple finds it
    ],
    ids=["tcp_listener", "skc_listener", "udp_bound", "tcp6_dual_stack"],
)
def test_socket_lookup_of_a_real_socket_is_refused(engine: str, family: int, kind: int, helper: int) -> None:
    """The kernel finds the test process's own socket; the runtime, which has none to return, says so."""
    with socket.socket(family, kind) as sock:
        sock.bind(("::" if family == socket.AF_INET6 else "127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            sock.listen()
        port = sock.getsockname()[1]
        tuple4 = socket.inet_aton("127.0.0.1") * 2 + struct.pack("!HH", 40000, port)
        text = program([(helper, ("ctx", "A", 12, 0xFFFFFFFF, 0))], a=tuple4)
        kernel = kernel_test_run(text, ProgramType.SCHED_CLS, packet())
        assert kernel.retval == 1  # found
        with pytest.raises(NotSupportedError, match="has no sockets"):
            user_test_run(text, ProgramType.SCHED_CLS, packet(), engine=engine, env=RunEnv())
        # Deterministic mode does not look at the host: NULL.
        mine = user_test_run(
            text, ProgramType.SCHED_CLS, packet(), engine=engine, env=RunEnv(deterministic=True)
        )
        assert mine.retval == 0


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize(
    "step",
    [
        (H.REDIRECT_NEIGH, (1, 0, 0, 0)),
        (H.REDIRECT_NEIGH, (1, "A", 20, 0)),
        (H.REDIRECT_NEIGH, (1, "A", 16, 0)),
        (H.REDIRECT_NEIGH, (1, 0, 0, 1)),
        (H.REDIRECT_PEER, (1, 0)),
        (H.REDIRECT_PEER, (1, 2)),
    ],
    ids=["neigh", "neigh_nexthop", "neigh_short", "neigh_flags", "peer", "peer_flags"],
)
def test_redirects(engine: str, step: tuple[int, tuple[object, ...]]) -> None:
    text = program([step], a=struct.pack("<I", AF_INET) + socket.inet_aton("10.0.0.1"))
    both(text, ProgramType.SCHED_CLS, packet(), engine)


def tunnel_key(
    tun_id: int = 0x1234, remote: bytes = b"\x0a\0\0\x02", local: bytes = b"\x0a\0\0\x01", **kw: int
) -> bytes:
    key = bytearray(44)
    struct.pack_into("<I", key, 0, tun_id)
    key[4 : 4 + len(remote)] = remote
    key[20], key[21] = kw.get("tos", 3), kw.get("ttl", 64)
    struct.pack_into("<HI", key, 22, kw.get("ext", 0), kw.get("label", 0))
    key[28 : 28 + len(local)] = local
    return bytes(key)


V6_REMOTE = socket.inet_pton(socket.AF_INET6, "fd00::2")
V6_LOCAL = socket.inet_pton(socket.AF_INET6, "fd00::1")
TUNNEL_CASES: dict[str, tuple[bytes, list[tuple[int, tuple[object, ...]]]]] = {
    "get_without_key": (b"", [(H.SKB_GET_TUNNEL_KEY, ("ctx", "B", 44, 0))]),
    "get_bad_flags": (b"", [(H.SKB_GET_TUNNEL_KEY, ("ctx", "B", 44, 4))]),
    "get_opt_without_key": (b"", [(H.SKB_GET_TUNNEL_OPT, ("ctx", "B", 16))]),
    "set_opt_without_key": (b"", [(H.SKB_SET_TUNNEL_OPT, ("ctx", "A", 8))]),
    "set_get_v4": (
        tunnel_key(),
        [(H.SKB_SET_TUNNEL_KEY, ("ctx", "A", 44, 0)), (H.SKB_GET_TUNNEL_KEY, ("ctx", "B", 44, 0))],
    ),
    "set_get_v4_flags": (
        tunnel_key(),
        [(H.SKB_SET_TUNNEL_KEY, ("ctx", "A", 44, 0xE)), (H.SKB_GET_TUNNEL_KEY, ("ctx", "B", 44, 0x10))],
    ),
    "set_get_v4_no_key": (
        tunnel_key(),
        [(H.SKB_SET_TUNNEL_KEY, ("ctx", "A", 44, 0x10)), (H.SKB_GET_TUNNEL_KEY, ("ctx", "B", 44, 0x10))],
    ),
    "set_get_v4_compat": (
        tunnel_key(),
        [(H.SKB_SET_TUNNEL_KEY, ("ctx", "A", 8, 0)), (H.SKB_GET_TUNNEL_KEY, ("ctx", "B", 24, 0))],
    ),
    "set_get_v4_as_v6": (
        tunnel_key(),
        [(H.SKB_SET_TUNNEL_KEY, ("ctx", "A", 44, 0)), (H.SKB_GET_TUNNEL_KEY, ("ctx", "B", 44, 1))],
    ),
    "set_v4_label": (tunnel_key(label=5), [(H.SKB_SET_TUNNEL_KEY, ("ctx", "A", 44, 0))]),
    "set_ext": (tunnel_key(ext=1), [(H.SKB_SET_TUNNEL_KEY, ("ctx", "A", 44, 0))]),
    "set_bad_size": (tunnel_key(), [(H.SKB_SET_TUNNEL_KEY, ("ctx", "A", 40, 0))]),
    "set_bad_flags": (tunnel_key(), [(H.SKB_SET_TUNNEL_KEY, ("ctx", "A", 44, 0x20))]),
    "set_get_v6": (
        tunnel_key(remote=V6_REMOTE, local=V6_LOCAL, label=0xFFFFFFF),
        [(H.SKB_SET_TUNNEL_KEY, ("ctx", "A", 44, 1)), (H.SKB_GET_TUNNEL_KEY, ("ctx", "B", 44, 0x11))],
    ),
    "set_get_v6_compat8": (
        tunnel_key(remote=V6_REMOTE, local=V6_LOCAL),
        [(H.SKB_SET_TUNNEL_KEY, ("ctx", "A", 44, 1)), (H.SKB_GET_TUNNEL_KEY, ("ctx", "B", 8, 1))],
    ),
    "opts": (
        tunnel_key(),
        [
            (H.SKB_SET_TUNNEL_KEY, ("ctx", "A", 44, 0)),
            (H.SKB_GET_TUNNEL_OPT, ("ctx", "B", 16)),
            (H.SKB_SET_TUNNEL_OPT, ("ctx", "A", 6)),
            (H.SKB_SET_TUNNEL_OPT, ("ctx", "A", 12)),
            (H.SKB_GET_TUNNEL_OPT, ("ctx", "B", 8)),
            (H.SKB_GET_TUNNEL_OPT, ("ctx", "B", 16)),
            (H.SKB_GET_TUNNEL_KEY, ("ctx", "B", 44, 0x10)),
        ],
    ),
    "classid_realm": (b"", [(H.GET_CGROUP_CLASSID, ("ctx",)), (H.GET_ROUTE_REALM, ("ctx",))]),
    "realm_after_set_key": (
        tunnel_key(),
        [(H.SKB_SET_TUNNEL_KEY, ("ctx", "A", 44, 0)), (H.GET_ROUTE_REALM, ("ctx",))],
    ),
}


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("case", list(TUNNEL_CASES))
def test_tunnel_metadata(engine: str, case: str) -> None:
    a, steps = TUNNEL_CASES[case]
    both(program(steps, a=a), ProgramType.SCHED_CLS, packet(), engine)


# --- bpf_skb_change_proto ----------------------------------------------------------------------------


def change_proto_prog(proto: int, flags: int = 0, twice: int | None = None) -> str:
    calls = [f"r1 = r6\nr2 = {proto}\nr3 = {flags}\ncall {int(H.SKB_CHANGE_PROTO)}\nr7 = r0"]
    if twice is not None:
        calls.append(f"r1 = r6\nr2 = {twice}\nr3 = 0\ncall {int(H.SKB_CHANGE_PROTO)}\nr7 <<= 8\nr7 |= r0")
    return "\n".join(
        [
            "r6 = r1",
            *calls,
            "r1 = *(u32 *)(r6 + 0)",
            "r7 <<= 16",
            "r7 |= r1",
            "r1 = *(u32 *)(r6 + 16)",
            "r7 ^= r1",
            "r0 = r7",
            "exit",
        ]
    )


IPV6_BE, IPV4_BE = 0xDD86, 0x0008


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize(
    ("proto_in", "to", "flags", "twice"),
    [
        (0x0800, IPV6_BE, 0, None),
        (0x86DD, IPV4_BE, 0, None),
        (0x0800, IPV4_BE, 0, None),
        (0x86DD, IPV6_BE, 0, None),
        (0x0806, IPV6_BE, 0, None),
        (0x0800, IPV6_BE, 1, None),
        (0x0800, IPV6_BE, 0, IPV4_BE),
        (0x86DD, IPV4_BE, 0, IPV6_BE),
    ],
    ids=["4to6", "6to4", "4to4", "6to6", "arp", "flags", "4to6to4", "6to4to6"],
)
def test_change_proto(engine: str, proto_in: int, to: int, flags: int, twice: int | None) -> None:
    for size in (60, 200):
        both(change_proto_prog(to, flags, twice), ProgramType.SCHED_CLS, packet(size, proto_in), engine)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("to", [IPV6_BE, IPV4_BE], ids=["4to6", "6to4"])
def test_change_proto_on_a_gso_skb(engine: str, to: int) -> None:
    ctx = bytearray(192)
    struct.pack_into("<I", ctx, 164, 3)  # gso_segs
    struct.pack_into("<I", ctx, 176, 100)  # gso_size
    data = packet(300, 0x0800 if to == IPV6_BE else 0x86DD)
    kernel = kernel_test_run(change_proto_prog(to), ProgramType.SCHED_CLS, data, bytes(ctx))
    mine = user_test_run(
        change_proto_prog(to), ProgramType.SCHED_CLS, data, bytes(ctx), engine=engine, env=RunEnv()
    )
    assert (mine.retval, mine.data_out, mine.ctx_out) == (kernel.retval, kernel.data_out, kernel.ctx_out)


CLASSID_CHILD = """
import json, sys
sys.path[:0] = json.loads(sys.argv[1])
from differential.test_helpers_skb_kernel import H, packet, program
from ebpf.spec import ProgramType
from ebpf.vm.helpers import RunEnv
from vm._helper_util import kernel_test_run, user_test_run
text = program([(H.GET_CGROUP_CLASSID, ("ctx",))], copy=False)
sides = [kernel_test_run(text, ProgramType.SCHED_CLS, packet()).retval]
sides += [user_test_run(text, ProgramType.SCHED_CLS, packet(), engine=e, env=RunEnv()).retval for e in ("interp", "py")]
sides.append(user_test_run(text, ProgramType.SCHED_CLS, packet(), env=RunEnv(deterministic=True)).retval)
print(json.dumps(sides))
"""


def test_cgroup_classid_of_a_net_cls_cgroup(tmp_path: Path) -> None:
    """The task's net_cls.classid (a cgroup v1 hierarchy mounted in a private mount namespace)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare")
    tests = str(Path(__file__).resolve().parent.parent)
    name = f"ebpf_skb_{os.getpid()}"
    script = f"""
mount -t cgroup -o net_cls none {tmp_path}
mkdir {tmp_path}/{name}
echo 0x100005 > {tmp_path}/{name}/net_cls.classid
echo $$ > {tmp_path}/{name}/cgroup.procs
set +e
"$0" -c "$1" "$2"
rc=$?
echo $$ > {tmp_path}/cgroup.procs
rmdir {tmp_path}/{name}
umount {tmp_path}
exit $rc
"""
    proc = subprocess.run(
        ["unshare", "--mount", "sh", "-ec", script, sys.executable, CLASSID_CHILD, json.dumps([tests])],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode and "mount" in proc.stderr and "net_cls" not in proc.stdout:
        pytest.skip(f"cannot mount a net_cls hierarchy: {proc.stderr.strip()[-200:]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    kernel, interp, py, deterministic = json.loads(proc.stdout.splitlines()[-1])
    assert kernel == 0x100005
    assert interp == py == kernel
    assert deterministic == 0
