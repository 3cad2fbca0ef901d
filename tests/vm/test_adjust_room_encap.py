"""``bpf_skb_adjust_room`` encapsulation/decapsulation in the user-space runtime (no kernel).

What each flag does to the packet, the network header, ``skb->protocol`` and the
encapsulation state, on both engines; the kernel comparison is in
``tests/differential/test_adjust_room_kernel.py``.
"""

from __future__ import annotations

import errno
import struct

import pytest

from ebpf.spec import ProgramType

from ._helper_util import ENGINE_NAMES, user_test_run

TC = ProgramType.SCHED_CLS
MAC, NET = 1, 0
E4, E6, GRE, UDP, L2ETH, D4, D6 = 2, 4, 8, 16, 64, 128, 256
ENOTSUPP = 524
ETH_P_IP_BE, ETH_P_IPV6_BE = 0x0008, 0xDD86
CTX = bytes(192)


def program(steps: list[tuple[int, int, int]]) -> str:
    """Call adjust_room per step (results in cb[0..2]); cb[3] = protocol, cb[4] = the first 4
    bytes at the network header."""
    lines = ["r6 = r1"]
    for i, (diff, mode, flags) in enumerate(steps):
        lines += ["r1 = r6", f"r2 = {diff}", f"r3 = {mode}", f"r4 = {flags} ll", "call 50"]
        lines.append(f"*(u32 *)(r6 + {48 + 4 * i}) = r0")
    lines += [
        "r7 = *(u32 *)(r6 + 16)",
        "*(u32 *)(r6 + 60) = r7",
        "r1 = r6",
        "r2 = 0",
        "r3 = r10",
        "r3 += -8",
        "r4 = 4",
        "r5 = 1",
        "*(u32 *)(r10 - 8) = r2",
        "call 68",
        "r7 = *(u32 *)(r10 - 8)",
        "*(u32 *)(r6 + 64) = r7",
        "r0 = 0",
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


def run(steps: list[tuple[int, int, int]], packet: bytes, engine: str) -> tuple[tuple[int, ...], bytes]:
    res = user_test_run(program(steps), TC, packet, CTX, engine=engine)
    assert res.ctx_out is not None
    return struct.unpack_from("<5i", res.ctx_out, 48), res.data_out


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_encap_mac_inserts_an_outer_header_after_the_mac_header(engine: str) -> None:
    cb, data = run([(20, MAC, E4)], ipv4(), engine)
    assert cb[0] == 0 and cb[3] == ETH_P_IP_BE
    assert data == ipv4()[:14] + bytes(20) + ipv4()[14:]
    assert cb[4] == 0  # the network header is the (zeroed) outer header now


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_encap_net_inserts_after_the_ip_header_and_keeps_the_network_header(engine: str) -> None:
    cb, data = run([(20, NET, E4)], ipv4(), engine)
    assert cb[0] == 0
    assert data == ipv4()[:34] + bytes(20) + ipv4()[34:]
    assert cb[4].to_bytes(4, "little") == ipv4()[14:18]


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_encap_l3_flags_switch_the_protocol(engine: str) -> None:
    assert run([(40, MAC, E6)], ipv4(), engine)[0][3] == ETH_P_IPV6_BE
    assert run([(20, MAC, E4)], ipv6(), engine)[0][3] == ETH_P_IP_BE
    assert run([(40, MAC, E6 | UDP)], ipv6(), engine)[0][3] == ETH_P_IPV6_BE


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_second_encapsulation_is_already_done(engine: str) -> None:
    cb, data = run([(20, MAC, E4), (20, MAC, E4), (-20, MAC, D4)], ipv4(), engine)
    assert cb[:3] == (0, -errno.EALREADY, 0)
    assert data == ipv4()
    cb, _ = run([(20, MAC, E4), (-20, MAC, D4), (20, MAC, E4)], ipv4(), engine)
    assert cb[2] == -errno.EALREADY  # decapsulation leaves skb->encapsulation set
    cb, _ = run([(20, MAC, 0), (20, MAC, E4), (20, MAC, 0)], ipv4(), engine)
    assert cb[:3] == (0, 0, 0)  # plain room before or after is not an encapsulation


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_decap_switches_the_protocol_and_checks_the_header_left(engine: str) -> None:
    cb, data = run([(-40, MAC, D4)], ipv6(), engine)
    assert cb[0] == 0 and cb[3] == ETH_P_IP_BE and data == ipv6()[:14] + ipv6()[54:]
    cb, _ = run([(-20, MAC, D6)], ipv4(70), engine)
    assert cb[0] == -ENOTSUPP  # 36 bytes left: shorter than an IPv6 header
    cb, _ = run([(-20, MAC, D4)], ipv4(54), engine)
    assert cb[0] == 0 and cb[3] == ETH_P_IP_BE


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize(
    ("step", "err"),
    [
        ((24, MAC, E4 | E6), errno.EINVAL),
        ((24, MAC, E4 | GRE | UDP), errno.EINVAL),
        ((20, MAC, E4 | L2ETH), errno.EINVAL),  # ENCAP_L2_ETH needs ENCAP_L2(>= ETH_HLEN)
        ((20, MAC, E4 | (30 << 56)), errno.EINVAL),  # inner MAC header longer than the room
        ((-20, MAC, E4), errno.EINVAL),  # encapsulation flags when shrinking
        ((20, MAC, D4), errno.EINVAL),  # decapsulation flags when growing
        ((-20, MAC, D4 | D6), errno.EINVAL),
        ((20, MAC, 1 << 9), errno.EINVAL),
        ((0x1000, MAC, E4), errno.EFAULT),
        ((20, 2, E4), ENOTSUPP),
    ],
)
def test_refusals_leave_the_packet(engine: str, step: tuple[int, int, int], err: int) -> None:
    cb, data = run([step], ipv4(), engine)
    assert cb[0] == -err and data == ipv4()


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_flags_without_l3_encap_are_plain_room(engine: str) -> None:
    for flags in (GRE, UDP, L2ETH | (14 << 56), 5 << 56):
        cb, data = run([(20, MAC, flags)], ipv4(), engine)
        assert cb[0] == 0 and data == ipv4()[:14] + bytes(20) + ipv4()[14:]
        assert cb[4].to_bytes(4, "little") == bytes(4)  # network header offset unchanged (14)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_gso_skb_is_refused(engine: str) -> None:
    ctx = bytes(176) + struct.pack("<I", 1400) + bytes(12)
    res = user_test_run(program([(20, MAC, E4)]), TC, ipv4(), ctx, engine=engine)
    assert res.ctx_out is not None and struct.unpack_from("<i", res.ctx_out, 48)[0] == -ENOTSUPP
    assert res.data_out == ipv4()
