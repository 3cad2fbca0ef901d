"""``bpf_skb_adjust_room`` (50) with encapsulation and decapsulation flags against Linux 6.18.

Each program makes one or more ``bpf_skb_adjust_room`` calls on a SCHED_CLS test run and
writes what BPF can see of the skb afterwards into the ``__sk_buff`` fields ``ctx_out`` returns:
the return values (``cb[0..2]``), ``skb->protocol`` (``cb[3]``), the first 4 bytes at the
network header (``cb[4]``, via ``bpf_skb_load_bytes_relative(BPF_HDR_START_NET)``: where the
helper left the network header) and ``skb->hash`` (``mark``). ``retval``, ``data_out`` (bytes
exact) and ``ctx_out`` must equal the kernel's on both engines of the runtime.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dpkt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebpf.isa import assemble
from ebpf.runtime import Collection
from ebpf.spec import CollectionSpec, ProgramSpec, ProgramType
from vm._helper_util import ENGINE_NAMES, kernel_test_run, user_test_run

pytestmark = pytest.mark.kernel

TC = ProgramType.SCHED_CLS
MAC, NET = 1, 0
FIXED_GSO, E4, E6, GRE, UDP, NO_CSUM, L2ETH, D4, D6 = 1, 2, 4, 8, 16, 32, 64, 128, 256


def L2(n: int) -> int:
    """``BPF_F_ADJ_ROOM_ENCAP_L2(n)``."""
    return (n & 0xFF) << 56


def program(steps: list[tuple[int, int, int]], *, set_hash: bool = False) -> str:
    lines = ["r6 = r1"]
    if set_hash:
        lines += ["r1 = r6", "r2 = 77", "call 48"]  # bpf_set_hash
    for i, (diff, mode, flags) in enumerate(steps):
        lines += [
            "r1 = r6",
            f"r2 = {diff}",
            f"r3 = {mode}",
            f"r4 = {flags} ll",
            "call 50",
            f"*(u32 *)(r6 + {48 + 4 * i}) = r0",
        ]
    lines += [
        "r7 = *(u32 *)(r6 + 16)",  # protocol
        "*(u32 *)(r6 + 60) = r7",
        "r7 = *(u32 *)(r6 + 68)",  # hash
        "*(u32 *)(r6 + 8) = r7",
        "r1 = r6",
        "r2 = 0",
        "r3 = r10",
        "r3 += -8",
        "r4 = 4",
        "r5 = 1",  # BPF_HDR_START_NET
        "*(u32 *)(r10 - 8) = r2",
        "call 68",
        "r7 = *(u32 *)(r10 - 8)",
        "*(u32 *)(r6 + 64) = r7",
        "r0 = 7",
        "exit",
    ]
    return "\n".join(lines)


def ipv4(size: int = 80) -> bytes:
    frame = bytearray(i & 0xFF for i in range(size))
    frame[12:15] = b"\x08\x00\x45"
    return bytes(frame)


def ipv6(size: int = 100) -> bytes:
    frame = bytearray(i & 0xFF for i in range(size))
    frame[12:15] = b"\x86\xdd\x60"
    return bytes(frame)


CTX = bytes(192)
GSO_CTX = bytes(176) + struct.pack("<I", 100) + bytes(12)  # __sk_buff.gso_size = 100

CASES: dict[str, tuple[list[tuple[int, int, int]], bytes]] = {
    "encap_ipip_mac": ([(20, MAC, E4)], ipv4()),
    "encap_ipip_net": ([(20, NET, E4)], ipv4()),
    "encap_twice_ealready": ([(20, MAC, E4), (20, MAC, E4)], ipv4()),
    "encap_4in6_protocol": ([(40, MAC, E6)], ipv4()),
    "encap_6in4_protocol": ([(20, MAC, E4)], ipv6()),
    "encap_6in6": ([(40, MAC, E6)], ipv6()),
    "encap_udp": ([(28, MAC, E4 | UDP)], ipv4()),
    "encap_gre": ([(24, MAC, E4 | GRE)], ipv4()),
    "encap_gre_and_udp": ([(24, MAC, E4 | GRE | UDP)], ipv4()),
    "encap_l3_both": ([(24, MAC, E4 | E6)], ipv4()),
    "encap_l2eth_no_len": ([(20, MAC, E4 | L2ETH)], ipv4()),
    "encap_l2eth_short_len": ([(40, MAC, E4 | L2ETH | L2(13))], ipv4()),
    "encap_l2eth_14": ([(20, MAC, E4 | L2ETH | L2(14))], ipv4()),
    "encap_vxlan": ([(50, MAC, E4 | UDP | L2ETH | L2(14))], ipv4()),
    "encap_l2_longer_than_room": ([(20, MAC, E4 | L2(30))], ipv4()),
    "encap_l2_max": ([(255, MAC, E6 | GRE | L2(255))], ipv6()),
    "encap_zero_room": ([(0, MAC, E4)], ipv4()),
    "encap_then_grow_net": ([(20, MAC, E4), (20, NET, 0)], ipv4()),
    "encap_6in6_then_grow": ([(40, MAC, E6), (8, MAC, 0)], ipv6()),
    "encap_fixed_gso_no_csum_reset": ([(20, MAC, E4 | FIXED_GSO | NO_CSUM)], ipv4()),
    "l4_flag_without_l3": ([(20, MAC, GRE)], ipv4()),
    "l2_len_without_l3": ([(20, MAC, L2(5))], ipv4()),
    "encap_flag_on_shrink": ([(-20, MAC, E4)], ipv4()),
    "decap_to_ipv4": ([(-20, MAC, D4)], ipv6()),
    "decap_to_ipv6": ([(-40, MAC, D6)], ipv4(120)),
    "decap_both": ([(-20, MAC, D4 | D6)], ipv4()),
    "decap_on_grow": ([(20, MAC, D4)], ipv4()),
    "decap_zero": ([(0, MAC, D4)], ipv4()),
    "decap_too_short_v4": ([(-20, MAC, D4)], ipv4(40)),
    "decap_too_short_v6": ([(-20, MAC, D6)], ipv4(70)),
    "decap_net_mode": ([(-20, NET, D4 | FIXED_GSO)], ipv4(100)),
    "encap_decap_encap": ([(20, MAC, E4), (-20, MAC, D4), (20, MAC, E4)], ipv4()),
    "unknown_flag_9": ([(20, MAC, 1 << 9)], ipv4()),
    "unknown_flag_55": ([(20, MAC, 1 << 55)], ipv4()),
    "bad_mode": ([(20, 2, E4)], ipv4()),
    "too_much": ([(0x1000, MAC, E4)], ipv4()),
    "not_ip": ([(20, MAC, E4)], ipv4()[:12] + b"\x08\x06" + ipv4()[14:]),
}


def _both_engines(text: str, packet: bytes, ctx: bytes) -> None:
    theirs = kernel_test_run(text, TC, packet, ctx)
    for engine in ENGINE_NAMES:
        ours = user_test_run(text, TC, packet, ctx, engine=engine)
        assert (ours.retval, ours.ctx_out) == (theirs.retval, theirs.ctx_out), engine
        assert ours.data_out == theirs.data_out, engine


@pytest.mark.parametrize("name", list(CASES))
def test_adjust_room_flags(name: str) -> None:
    steps, packet = CASES[name]
    _both_engines(program(steps), packet, CTX)


@pytest.mark.parametrize(
    "steps",
    [[(40, MAC, E6)], [(-20, MAC, D4)], [(-20, MAC, D6)], [(20, MAC, E4)]],
    ids=["encap_4in6", "decap_v4", "decap_v6", "encap_ipip"],
)
def test_protocol_change_keeps_the_hash(steps: list[tuple[int, int, int]]) -> None:
    packet = ipv6() if steps[0][2] & D4 or steps[0][2] & D6 else ipv4()
    _both_engines(program(steps, set_hash=True), packet, CTX)


@pytest.mark.parametrize(
    "steps",
    [[(20, MAC, 0)], [(20, MAC, FIXED_GSO)], [(-20, MAC, FIXED_GSO)], [(20, MAC, E4)], [(3000, MAC, 0)]],
    ids=["grow", "grow_fixed", "shrink_fixed", "encap", "grow_past_max"],
)
def test_gso_skb_is_refused(steps: list[tuple[int, int, int]]) -> None:
    _both_engines(program(steps), ipv4(120), GSO_CTX)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_repeat_keeps_the_encapsulation_within_a_run_only(engine: str) -> None:
    """Runs of one test run share the skb (the second encapsulation: -EALREADY); the next test
    run starts from a fresh skb."""
    from ebpf.kernel.program import Program as KernelProgram

    text = program([(20, MAC, E4)])
    with KernelProgram.load(assemble(text), TC) as kprog:
        theirs = [kprog.test_run(ipv4(), ctx_in=CTX, repeat=2) for _ in range(2)]
    spec = CollectionSpec(programs={"p": ProgramSpec("p", "tc", TC, assemble(text))}, license="GPL")
    with Collection(spec, engine=engine, deterministic=True) as coll:
        ours = [coll.programs["p"].test_run(ipv4(), ctx_in=CTX, repeat=2) for _ in range(2)]
    for o, t in zip(ours, theirs, strict=True):
        assert (o.retval, o.data_out, o.ctx_out) == (t.retval, t.data_out, t.ctx_out)
    assert struct.unpack_from("<i", ours[1].ctx_out, 48)[0] == -114  # EALREADY


def csum_program(flags: int, diff: int = 20) -> str:
    """``bpf_csum_level(INC)``, then adjust_room, then ``bpf_csum_level(QUERY)`` (cb[0], cb[1])."""
    return "\n".join(
        [
            "r6 = r1",
            "r1 = r6",
            "r2 = 1",  # BPF_CSUM_LEVEL_INC: CHECKSUM_UNNECESSARY
            "call 135",
            "r1 = r6",
            f"r2 = {diff}",
            f"r3 = {MAC}",
            f"r4 = {flags} ll",
            "call 50",
            "*(u32 *)(r6 + 48) = r0",
            "r1 = r6",
            "r2 = 0",  # BPF_CSUM_LEVEL_QUERY
            "call 135",
            "*(u32 *)(r6 + 52) = r0",
            "r0 = 0",
            "exit",
        ]
    )


@pytest.mark.parametrize(
    ("flags", "diff"),
    [(E4, 20), (E4 | NO_CSUM, 20), (E4 | E6, 20), (D4, -20), (D4 | NO_CSUM, -20), (E6 | UDP | NO_CSUM, 48)],
    ids=["encap_resets", "encap_no_csum_reset", "refused_keeps", "decap_resets", "decap_no_reset", "udp6"],
)
def test_checksum_state_after_encap(flags: int, diff: int) -> None:
    _both_engines(csum_program(flags, diff), ipv6() if diff < 0 else ipv4(), CTX)


@pytest.mark.parametrize(
    "steps",
    [[(40, NET, E6)], [(-8, NET, 0)], [(40, NET, E4 | GRE), (8, NET, 0)], [(16, MAC, E6 | L2ETH | L2(14))]],
    ids=["encap_net", "shrink_net", "encap_then_net", "l2eth"],
)
def test_ipv6_packets(steps: list[tuple[int, int, int]]) -> None:
    _both_engines(program(steps), ipv6(160), CTX)


# --- a compiled tunnel program (tests/data/encap/encap.c) -------------------------------------

ENCAP_DIR = Path(__file__).resolve().parent.parent / "data" / "encap"
ENCAP_PROGRAMS = ["encap_ipip", "encap_gre", "encap_vxlan", "encap_4in6"]


def tcp4(payload: bytes = b"tunnel me") -> bytes:
    tcp = dpkt.tcp.TCP(sport=40000, dport=80, flags=dpkt.tcp.TH_SYN, data=payload)
    ip = dpkt.ip.IP(
        src=socket.inet_aton("192.0.2.1"),
        dst=socket.inet_aton("192.0.2.2"),
        p=6,
        ttl=9,
        id=0x1234,
        tos=0x10,
        data=tcp,
    )
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip))


def results(side: Any) -> list[int]:
    m = side.maps["results"]
    return [struct.unpack("<q", m.lookup(struct.pack("<I", i)))[0] for i in range(4)]


@pytest.fixture(params=ENGINE_NAMES)
def encap_pair(request: pytest.FixtureRequest) -> Iterator[tuple[Collection, Any]]:
    from ebpf.elf import load_collection_spec
    from ebpf.kernel.collection import Collection as KernelCollection

    spec = load_collection_spec(ENCAP_DIR / "encap.o")
    with (
        Collection(spec, engine=request.param, deterministic=True) as ours,
        KernelCollection(spec) as theirs,
    ):
        yield ours, theirs


def run_pair(pair: tuple[Collection, Any], prog: str, packet: bytes) -> bytes:
    ours, theirs = pair
    kernel = theirs.programs[prog].test_run(packet)
    mine = ours.programs[prog].test_run(packet)
    assert (mine.retval, mine.data_out) == (kernel.retval, kernel.data_out), prog
    assert results(ours) == results(theirs), prog
    return bytes(kernel.data_out)


@pytest.mark.parametrize("prog", ENCAP_PROGRAMS)
def test_compiled_tunnels_round_trip(encap_pair: tuple[Collection, Any], prog: str) -> None:
    """Encapsulate (outer headers written, checksum from bpf_csum_diff, a nested attempt
    refused), then decapsulate the result back to the original frame, on both sides."""
    packet = tcp4()
    wrapped = run_pair(encap_pair, prog, packet)
    assert len(wrapped) > len(packet)
    unwrapped = run_pair(encap_pair, "decap", wrapped)
    assert unwrapped == packet


def test_compiled_tunnels_on_other_frames(encap_pair: tuple[Collection, Any]) -> None:
    """Not IPv4 (the programs drop), a plain IPv4 frame given to decap (passed through), and an
    outer header claiming more than the packet holds (adjust_room -ENOTSUPP)."""
    ipv6_frame = ipv6(120)
    for prog in ENCAP_PROGRAMS:
        run_pair(encap_pair, prog, ipv6_frame)
    run_pair(encap_pair, "decap", tcp4())
    short = bytearray(tcp4(b""))
    short[23] = 47  # IPPROTO_GRE: decap strips 24 bytes of the 40 after the MAC header
    run_pair(encap_pair, "decap", bytes(short[:40]))


def test_encap_object_is_up_to_date() -> None:
    """The committed object is what build.sh makes of encap.c (clang-19)."""
    if shutil.which("clang-19") is None:
        pytest.skip("clang-19 is not installed")
    done = subprocess.run(
        [str(ENCAP_DIR / "build.sh"), "--check"], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_encapsulation_survives_a_head_reallocation() -> None:
    text = "\n".join(
        [
            "r6 = r1",
            *("r1 = r6", "r2 = 20", f"r3 = {MAC}", f"r4 = {E4}", "call 50", "*(u32 *)(r6 + 48) = r0"),
            *("r1 = r6", "r2 = 300", "r3 = 0", "call 43", "*(u32 *)(r6 + 52) = r0"),  # bpf_skb_change_head
            *("r1 = r6", "r2 = 20", f"r3 = {MAC}", f"r4 = {E4}", "call 50", "*(u32 *)(r6 + 56) = r0"),
            "r0 = 0",
            "exit",
        ]
    )
    _both_engines(text, ipv4(), CTX)


FLAG_BITS = [FIXED_GSO, E4, E6, GRE, UDP, NO_CSUM, L2ETH, D4, D6, 1 << 9]


@st.composite
def calls(draw: st.DrawFn) -> tuple[list[tuple[int, int, int]], bytes]:
    steps = []
    for _ in range(draw(st.integers(1, 3))):
        flags = 0
        for bit in draw(st.lists(st.sampled_from(FLAG_BITS), max_size=3)):
            flags |= bit
        flags |= L2(draw(st.sampled_from([0, 0, 5, 14, 30])))
        diff = draw(st.sampled_from([-60, -40, -20, -8, 0, 8, 20, 28, 40, 50]))
        steps.append((diff, draw(st.sampled_from([MAC, MAC, NET, 2])), flags))
    packet = draw(st.sampled_from([ipv4(60), ipv4(120), ipv6(80), ipv6(160)]))
    return steps, packet


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls())
def test_random_call_sequences_match_the_kernel(case: tuple[list[tuple[int, int, int]], bytes]) -> None:
    steps, packet = case
    _both_engines(program(steps), packet, CTX)
