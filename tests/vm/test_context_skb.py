"""SkbInput: __sk_buff for tc, socket filters and cgroup skb, skb helpers, against the kernel."""

from __future__ import annotations

import errno
import itertools
import struct

import pytest

from ebpf.errors import TestRunError
from ebpf.helpers import HelperId
from ebpf.spec import ProgramType
from ebpf.vm._context_skb import SK_BUFF_FIELDS, SK_BUFF_SIZE, eth_protocol
from ebpf.vm.context import SkbInput

from ._helper_util import ENGINE_NAMES, kernel_test_run, user_test_run

TC = ProgramType.SCHED_CLS
ACT = ProgramType.SCHED_ACT
SOCK = ProgramType.SOCKET_FILTER
CGROUP = ProgramType.CGROUP_SKB


def ipv4_udp(payload: bytes = b"hello world!", dst_mac: bytes = b"\x02\x00\x00\x00\x00\x01") -> bytes:
    udp_len = 8 + len(payload)
    ip = struct.pack(
        ">BBHHHBBH4s4s",
        0x45,
        0,
        20 + udp_len,
        0x1234,
        0,
        64,
        17,
        0,
        bytes([10, 0, 0, 1]),
        bytes([10, 0, 0, 2]),
    )
    ip_sum = _ip_checksum(ip)
    ip = ip[:10] + struct.pack(">H", ip_sum) + ip[12:]
    udp = struct.pack(">HHHH", 1234, 5678, udp_len, 0xBEEF) + payload
    return dst_mac + b"\x02\x00\x00\x00\x00\x02" + b"\x08\x00" + ip + udp


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f">{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


IPV4 = ipv4_udp()
IPV6 = b"\x33\x33\x00\x00\x00\x01" + b"\x02" * 6 + b"\x86\xdd" + bytes(range(40)) + b"payload!"
ARP_BCAST = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + bytes(28)
LLC = bytes(6) + b"\x02" * 6 + b"\x00\x30" + b"\xaa\xaa\x03" + bytes(45)
RAW8023 = b"\x01\x00\x5e\x00\x00\x01" + b"\x02" * 6 + b"\x00\x20" + b"\xff\xff" + bytes(30)
PACKETS = [IPV4, IPV6, ARP_BCAST, LLC, RAW8023]


def sk_buff(**fields: int | bytes) -> bytes:
    ctx = bytearray(SK_BUFF_SIZE)
    for name, value in fields.items():
        off, size = SK_BUFF_FIELDS[name]
        ctx[off : off + size] = value if isinstance(value, bytes) else value.to_bytes(size, "little")
    return bytes(ctx)


CTX = sk_buff(
    mark=7, priority=3, ingress_ifindex=1, cb=bytes(range(1, 21)), tstamp=123456789, gso_segs=2, gso_size=1400
)


def read_field(name: str, size: int = 4, cgroup: bool = False) -> str:
    off = SK_BUFF_FIELDS[name][0]
    width = {1: "u8", 2: "u16", 4: "u32", 8: "u64"}[size]
    return f"r0 = *({width} *)(r1 + {off})\n" + ("r0 &= 1\n" if cgroup else "") + "exit"


TC_FIELDS = [
    "len",
    "pkt_type",
    "mark",
    "queue_mapping",
    "protocol",
    "vlan_present",
    "vlan_tci",
    "vlan_proto",
    "priority",
    "ingress_ifindex",
    "ifindex",
    "tc_index",
    "hash",
    "tc_classid",
    "napi_id",
    "wire_len",
    "gso_segs",
    "gso_size",
]
SOCK_FIELDS = ["len", "pkt_type", "mark", "queue_mapping", "protocol", "priority", "ifindex", "hash"]

DIRECT = """
    r2 = *(u32 *)(r1 + 76)
    r3 = *(u32 *)(r1 + 80)
    r4 = r2
    r4 += 14
    if r4 > r3 goto out
    r0 = *(u32 *)(r2 + 10)
    r5 = *(u8 *)(r2 + 12)
    r5 += 1
    *(u8 *)(r2 + 13) = r5
    exit
out:
    r0 = 0
    exit
"""

WRITE_FIELDS = """
    r2 = 0x55
    *(u32 *)(r1 + 8) = r2
    r2 = 9
    *(u32 *)(r1 + 32) = r2
    r2 = 0x1234
    *(u32 *)(r1 + 48) = r2
    *(u32 *)(r1 + 64) = r2
    *(u32 *)(r1 + 44) = r2
    *(u32 *)(r1 + 72) = r2
    r2 = 987654321
    *(u64 *)(r1 + 152) = r2
    r0 = 0
    exit
"""


def load_bytes(offset: int, length: int, cgroup: bool = False) -> str:
    return f"""
    r2 = {offset}
    r3 = r10
    r3 += -64
    r4 = {length}
    call 26
    r6 = r0
    r0 = *(u64 *)(r10 - 64)
    r0 ^= r6
    r1 = *(u32 *)(r10 - {64 - length + 4 if length >= 4 else 60})
    r0 += r1
    {"r0 &= 1" if cgroup else ""}
    exit
"""


def store_bytes(offset: int, length: int, flags: int) -> str:
    return f"""
    r6 = 0x4142434445464748 ll
    *(u64 *)(r10 - 8) = r6
    *(u64 *)(r10 - 16) = r6
    r2 = {offset}
    r3 = r10
    r3 += -16
    r4 = {length}
    r5 = {flags}
    call 9
    exit
"""


def csum_replace(helper: int, offset: int, old: int, new: int, flags: int) -> str:
    return f"""
    r2 = {offset}
    r3 = {old} ll
    r4 = {new} ll
    r5 = {flags}
    call {helper}
    exit
"""


def csum_diff(from_size: int, to_size: int, seed: int, high: bool) -> str:
    return f"""
    r6 = 0x0a0000010a000002 ll
    *(u64 *)(r10 - 8) = r6
    r6 = 0xc0a80001ffffffff ll
    *(u64 *)(r10 - 16) = r6
    r6 = 0x1122334455667788 ll
    *(u64 *)(r10 - 24) = r6
    *(u64 *)(r10 - 32) = r6
    r1 = r10
    r1 += -16
    r2 = {from_size}
    r3 = r10
    r3 += -32
    r4 = {to_size}
    r5 = {seed}
    call 28
    {"r0 >>= 32" if high else ""}
    exit
"""


CASES: list[tuple[str, ProgramType, bytes, bytes | None]] = [
    *[(read_field(f), TC, p, None) for f in TC_FIELDS for p in (IPV4, ARP_BCAST, RAW8023)],
    *[(read_field(f), TC, IPV6, CTX) for f in TC_FIELDS],
    *[(read_field("cb", 4).replace("48", str(48 + 4 * i)), TC, IPV4, CTX) for i in range(5)],
    (read_field("tstamp", 8), TC, IPV4, CTX),
    *[(read_field(f), SOCK, p, None) for f in SOCK_FIELDS for p in (IPV4, LLC, IPV6)],
    *[(read_field(f), SOCK, IPV4, CTX) for f in SOCK_FIELDS],
    *[(read_field(f, cgroup=True), CGROUP, IPV4, CTX) for f in ("len", "mark", "protocol", "priority")],
    (DIRECT, TC, IPV4, None),
    (DIRECT, ACT, IPV6, CTX),
    (WRITE_FIELDS, TC, IPV4, CTX),
    (WRITE_FIELDS, TC, IPV4, sk_buff()),
    *[
        (load_bytes(o, n), TC, IPV4, None)
        for o, n in ((0, 8), (14, 20), (30, 16), (40, 8), (42, 8), (43, 8), (60, 4))
    ],
    *[(load_bytes(o, n), SOCK, IPV4, None) for o, n in ((0, 8), (20, 8), (26, 8), (27, 8))],
    *[(load_bytes(o, n, True), CGROUP, IPV4, None) for o, n in ((0, 8), (27, 8))],
    *[
        (store_bytes(o, n, f), TC, IPV4, None)
        for o, n, f in ((0, 6, 0), (14, 16, 1), (34, 16, 2), (40, 10, 0), (40, 11, 0), (0, 4, 4), (30, 8, 3))
    ],
    *[
        (csum_replace(10, o, old, new, f), TC, IPV4, None)
        for o, old, new, f in (
            (24, 0x0100000A, 0x0101A8C0, 4),
            (24, 0x1234, 0x4321, 2),
            (24, 0, 0x12345678, 0),
            (24, 1, 0x12345678, 0),
            (25, 0x1234, 0x4321, 2),
            (24, 0x1234, 0x4321, 3),
            (24, 0x1234, 0x4321, 0x12),
            (60, 0x1234, 0x4321, 2),
            (59, 0x1234, 0x4321, 2),
        )
    ],
    *[
        (csum_replace(11, o, old, new, f), TC, IPV4, None)
        for o, old, new, f in (
            (40, 0x0100000A, 0x0101A8C0, 4 | 0x10),
            (40, 0x1234, 0x4321, 2),
            (40, 0, 0xFFFF1234, 0),
            (40, 0xEFBE, 0xEFBE, 2 | 0x20),
            (40, 0x1234, 0x1234, 2 | 0x20 | 0x40),
            (40, 0x1234, 0x4321, 2 | 0x100),
            (41, 0x1234, 0x4321, 2),
            (40, 0x1234, 0x4321, 8),
            (60, 0x1234, 0x4321, 2),
        )
    ],
    *[
        (csum_diff(fs, ts, seed, high), TC, IPV4, None)
        for fs, ts, seed, high in (
            (8, 8, 0, False),
            (8, 8, 0, True),
            (0, 16, 0xFFFF, False),
            (4, 0, 0x12345678, False),
            (8, 16, 0xFFFFFFFF, False),
            (2, 4, 0, True),
            (2, 4, 0, False),
            (1, 0, 0, False),
            (0, 3, 0, False),
            (3, 5, 0x1234, False),
            (6, 6, 0, False),
            (0, 0, 77, False),
        )
    ],
]


def csum_diff_big(from_size: int, to_size: int) -> str:
    return f"""
    r6 = 0x0102030405060708 ll
    r1 = r10
    r1 += -512
    r2 = 0
loop:
    *(u64 *)(r1 + 0) = r6
    r1 += 8
    r2 += 1
    r6 += 0x1111
    if r2 < 64 goto loop
    r1 = r10
    r1 += -512
    r2 = {from_size}
    r3 = r10
    r3 += -{to_size or 8}
    r4 = {to_size}
    r5 = 0
    call 28
    exit
"""


CASES += [(csum_diff_big(f, t), TC, IPV4, None) for f, t in ((512, 512), (300, 301), (257, 0), (0, 511))]


def legacy(size: str, offset: int, indirect: int | None = None) -> str:
    if indirect is None:
        return f"r6 = r1\nr0 = *({size} *)skb[{offset}]\nexit"
    return f"r6 = r1\nr7 = {indirect}\nr0 = *({size} *)skb[r7 + {offset}]\nexit"


def load_relative(offset: int, length: int, header: int) -> str:
    return load_bytes(offset, length).replace("call 26", f"r5 = {header}\n    call 68")


def resize(helper: int, arg: int, flags: int = 0, then_relative: bool = False) -> str:
    """Call a resizing helper, then write 0xee at data + 13 through re-read packet pointers."""
    tail = (
        """
    r1 = r6
    r2 = 0
    r3 = r10
    r3 += -8
    r4 = 8
    r5 = 0
    call 68
    r7 = *(u32 *)(r10 - 8)
    r7 &= 0xff
    r7 <<= 24
    r0 |= r7"""
        if then_relative
        else ""
    )
    return f"""
    r6 = r1
    r2 = {arg}
    r3 = {flags}
    call {helper}
    r8 = r0
    r2 = *(u32 *)(r6 + 76)
    r3 = *(u32 *)(r6 + 80)
    r4 = r2
    r4 += 14
    if r4 > r3 goto out
    r5 = 0xee
    *(u8 *)(r2 + 13) = r5
out:
    r0 = *(u32 *)(r6 + 0)
    r0 <<= 8
    r8 &= 0xff
    r0 |= r8{tail}
    exit
"""


VLAN = IPV4[:12] + b"\x81\x00\x20\x64" + IPV4[12:]
QINQ = IPV4[:12] + b"\x88\xa8\x00\x07" + b"\x81\x00\x20\x64" + IPV4[12:]
VLAN_RESULTS = (
    "r0 = *(u32 *)(r6 + 16)\nr0 <<= 16\nr1 = *(u32 *)(r6 + 28)\nr0 |= r1",
    "r0 = *(u32 *)(r6 + 20)\nr0 <<= 16\nr1 = *(u32 *)(r6 + 24)\nr0 |= r1",
    "r0 = *(u32 *)(r6 + 0)",
)


def vlan_ops(ops: list[tuple[int, ...]], result: str) -> str:
    lines = ["r6 = r1", "r7 = 0"]
    for op in ops:
        if op[0] == 18:  # push (proto, tci)
            lines.append(f"r1 = r6\nr2 = {op[1]}\nr3 = {op[2]}\ncall 18")
        else:
            lines.append("r1 = r6\ncall 19")
        lines.append("r7 <<= 4\nr0 &= 0xf\nr7 |= r0")
    lines += [result, "r7 <<= 32", "r0 |= r7", "exit"]
    return "\n".join(lines)


VLAN_SCENARIOS: list[tuple[list[tuple[int, ...]], bytes]] = [
    ([], VLAN),
    ([(19,)], VLAN),
    ([(19,)], QINQ),
    ([(19,), (19,)], QINQ),
    ([(19,)], IPV4),
    ([(18, 0x0081, 100)], IPV4),
    ([(18, 0xA888, 5), (18, 0x0081, 100)], IPV4),
    ([(18, 0x1234, 9)], IPV4),
    ([(18, 0x0081, 0xFFFF)], VLAN),
    ([(18, 0x0081, 3), (18, 0xA888, 4), (19,), (19,)], IPV4),
    ([(18, 0x0081, 3), (19,), (19,)], VLAN),
]


def with_tos(packet: bytes, tos: int) -> bytes:
    ip = bytearray(packet[14:34])
    ip[1] = tos
    ip[10:12] = b"\0\0"
    ip[10:12] = _ip_checksum(bytes(ip)).to_bytes(2, "big")
    return packet[:14] + bytes(ip) + packet[34:]


IPV6_ECT = IPV6[:14] + bytes([0x60, 0x10]) + IPV6[16:]  # traffic class 0x01: ECT(1)


def csum_levels(levels: list[int]) -> str:
    lines = ["r6 = r1", "r7 = 0"]
    for level in levels:
        lines.append(f"r1 = r6\nr2 = {level}\ncall 135\nr7 <<= 8\nr0 &= 0xff\nr7 |= r0")
    lines += ["r0 = r7", "exit"]
    return "\n".join(lines)


def check_mtu(ifindex: int, mtu_in: int, diff: int, flags: int) -> str:
    return f"""
    r6 = r1
    r1 = {mtu_in}
    *(u32 *)(r10 - 4) = r1
    r1 = r6
    r2 = {ifindex}
    r3 = r10
    r3 += -4
    r4 = {diff}
    r5 = {flags}
    call 163
    r0 &= 0xff
    r0 <<= 24
    r1 = *(u32 *)(r10 - 4)
    r0 |= r1
    exit
"""


def redirect(ifindex: int, flags: int) -> str:
    return f"r1 = {ifindex}\nr2 = {flags}\ncall 23\nexit"


CASES += [
    *[
        (legacy(sz, off), t, IPV4, None)
        for t in (SOCK, TC)
        for sz, off in (("u8", 9), ("u16", 12), ("u32", 26))
    ],
    *[(legacy("u32", off), SOCK, IPV4, None) for off in (36, 37, 40)],  # past the end: r0 = 0
    *[(legacy("u16", off, ind), SOCK, IPV6, None) for off, ind in ((2, 4), (0, 52), (1, 52))],
    *[(redirect(i, f), t, IPV4, None) for t in (TC, ACT) for i, f in ((3, 0), (3, 1), (3, 2), (1, 0))],
    *[(resize(39, n), TC, IPV4, None) for n in (0, 54, 55, 0xFFFFFFFF)],
    *[
        (resize(50, d, m).replace("r3 = ", "r4 = 0\n    r3 = "), TC, p, None)
        for p in (IPV4, IPV6)
        for d, m in (
            (8, 1),
            (8, 0),
            (-8, 0),
            (-8, 1),
            (4096, 0),
            (4095, 1),
            (-20, 1),
            (-21, 1),
            (8, 2),
            (0, 0),
        )
    ],
    *[(resize(50, 8, 1).replace("r3 = 1", "r3 = 1\n    r4 = 0"), TC, ARP_BCAST, None)],
    *[(resize(32, t), TC, IPV4, None) for t in (0, 3, 4, 7)],
    *[
        ("r6 = r1\ncall 97\nr1 = *(u32 *)(r6 + 0)\nr0 <<= 16\nr0 |= r1\nexit", t, p, None)
        for t in (TC, ACT)
        for p in (*[with_tos(IPV4, tos) for tos in (0, 1, 2, 3, 0xFD, 0xFE)], IPV6, IPV6_ECT, ARP_BCAST, VLAN)
    ],
    *[("call 97\nr0 &= 1\nexit", CGROUP, p, None) for p in (with_tos(IPV4, 2), IPV6_ECT, IPV4)],
    *[
        (csum_levels(levels), TC, IPV4, None)
        for levels in ([0], [1, 0], [1, 1, 1, 1, 1, 0], [1, 1, 2, 0], [1, 2, 0], [1, 3, 0], [4], [2, 3, 0])
    ],
    *[
        (check_mtu(i, m, d, f), TC, IPV4, ctx)
        for ctx in (CTX, None)
        for i, m, d, f in (
            (0, 0, 0, 0),
            (0, 0, 70000, 0),
            (1, 1500, 0, 0),
            (0, 65536, 1, 0),
            (0, 0, 0, 1),
            (0, 0, 5, 1),
            (0, 0, 0, 2),
            (9999, 0, 0, 0),
            (0, 65522, 0, 0),
        )
    ],
    *[(vlan_ops(ops, res), TC, pkt, None) for ops, pkt in VLAN_SCENARIOS for res in VLAN_RESULTS],
    ("r6 = r1\nr2 = 0x12345678\ncall 48\nr0 = *(u32 *)(r6 + 68)\nexit", TC, IPV4, None),
    ("r6 = r1\nr2 = 7\ncall 48\nr1 = r6\ncall 41\nr0 = *(u32 *)(r6 + 68)\nexit", TC, IPV4, CTX),
    ("r2 = 7\ncall 40\nexit", TC, IPV4, None),
    (f"call {HelperId.GET_CURRENT_CGROUP_ID}\nexit", TC, IPV4, None),
    (f"call {HelperId.GET_CURRENT_CGROUP_ID}\nr0 >>= 32\nexit", TC, IPV4, None),
    *[
        (resize(38, n, f), TC, IPV4, None)
        for n, f in ((100, 0), (30, 0), (14, 0), (13, 0), (16064, 0), (16065, 0), (60, 1))
    ],
    *[
        (resize(43, n, f, True), TC, IPV4, None)
        for n, f in ((14, 0), (100, 0), (0, 0), (4, 1), (16064 - 53, 0), (16064 - 54, 0))
    ],
    *[
        (load_relative(o, n, h), t, IPV4, None)
        for t in (TC, SOCK)
        for o, n, h in ((0, 8, 0), (0, 8, 1), (46, 8, 0), (47, 8, 0), (32, 8, 1), (33, 8, 1), (0, 8, 2))
    ],
]


@pytest.mark.kernel
@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_skb_matches_the_kernel(case: int, engine: str) -> None:
    text, prog_type, data, ctx = CASES[case]
    ours = user_test_run(text, prog_type, data, ctx, engine=engine)
    kernel = kernel_test_run(text, prog_type, data, ctx)
    assert ours == kernel


def test_protocol_and_layout() -> None:
    assert eth_protocol(IPV4) == 0x0008
    assert eth_protocol(RAW8023) == 0x0100
    assert eth_protocol(LLC) == 0x0400
    offsets = sorted(SK_BUFF_FIELDS.values())
    assert all(a[0] + a[1] <= b[0] for a, b in itertools.pairwise(offsets))
    assert offsets[-1][0] + offsets[-1][1] == SK_BUFF_SIZE


@pytest.mark.kernel
def test_layout_matches_vmlinux_btf() -> None:
    from ebpf.btf import Spec
    from ebpf.btf.types import Struct

    vmlinux = Spec.from_file("/sys/kernel/btf/vmlinux")
    sk_buff_type = vmlinux.find("__sk_buff", Struct)
    assert sk_buff_type.size == SK_BUFF_SIZE
    offsets = {m.name or f"<anon@{m.offset // 8}>": m.offset // 8 for m in sk_buff_type.members}
    for name, (off, _size) in SK_BUFF_FIELDS.items():
        # __bpf_md_ptr fields (flow_keys, sk) are anonymous unions in BTF
        assert offsets.get(name, offsets.get(f"<anon@{off}>")) == off, name


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_socket_filter_sees_no_ethernet_header(engine: str) -> None:
    res = user_test_run(read_field("len"), SOCK, IPV4, engine=engine)
    assert res.retval == len(IPV4) - 14
    assert res.data_out == bytes(14) + IPV4[14:]
    res = user_test_run(read_field("len"), TC, IPV4, engine=engine)
    assert res.retval == len(IPV4) and res.data_out == IPV4


def test_ctx_in_checks() -> None:
    for bad in (
        sk_buff(len=1),
        sk_buff(hash=1),
        sk_buff(tc_index=1),
        sk_buff(wire_len=10),
        sk_buff(gso_segs=70000),
    ):
        with pytest.raises(TestRunError) as err:
            SkbInput(IPV4, TC, ctx_in=bad)
        assert err.value.errno == errno.EINVAL
    with pytest.raises(TestRunError) as err:
        SkbInput(IPV4, TC, ctx_in=CTX + b"\x01")
    assert err.value.errno == errno.E2BIG
    with pytest.raises(TestRunError):
        SkbInput(bytes(13), TC)


@pytest.mark.kernel
@pytest.mark.parametrize("prog_type", [TC, SOCK, CGROUP])
@pytest.mark.parametrize("packet", [IPV4[:33], IPV4[:34], IPV6[:53], IPV6[:54], ARP_BCAST[:14]])
def test_short_network_headers(prog_type: ProgramType, packet: bytes) -> None:
    from ebpf.errors import SyscallError

    prog = "r0 = 0\nexit"
    try:
        kernel: int | None = kernel_test_run(prog, prog_type, packet).retval
    except SyscallError as err:
        kernel = -err.errno
    try:
        ours: int | None = user_test_run(prog, prog_type, packet).retval
    except TestRunError as err:
        ours = -err.errno
    assert ours == kernel


@pytest.mark.kernel
@pytest.mark.parametrize(
    "ctx", [sk_buff(len=1), sk_buff(hash=1), sk_buff(tc_index=1), sk_buff(wire_len=10), CTX + b"\x01"]
)
def test_the_kernel_refuses_the_same_ctx(ctx: bytes) -> None:
    from ebpf.errors import SyscallError

    with pytest.raises(SyscallError) as kernel_err:
        kernel_test_run("r0 = 0\nexit", TC, IPV4, ctx)
    with pytest.raises(TestRunError) as our_err:
        SkbInput(IPV4, TC, ctx_in=ctx)
    assert our_err.value.errno == kernel_err.value.errno


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_reset_restores_the_first_mapping(engine: str) -> None:
    from ebpf.vm.helpers import RunEnv

    from ._helper_util import make_engine

    env = RunEnv(deterministic=True, program_type=TC)
    eng = make_engine(resize(38, 16064), env, engine)
    mapped = SkbInput(IPV4, TC, ctx_in=CTX).map(env.memory)
    first = (eng.execute(mapped, env, 1000)[0], mapped.data(), mapped.ctx_out())
    assert len(first[1]) == 16064
    for region in mapped.regions:
        env.memory.unmap(region)
    assert mapped.reset()
    assert (
        mapped.data() == IPV4 and mapped.ctx_out() == SkbInput(IPV4, TC, ctx_in=CTX).map(env.memory).ctx_out()
    )
    for region in mapped.regions:
        env.memory.map(region)
    assert (eng.execute(mapped, env, 1000)[0], mapped.data(), mapped.ctx_out()) == first
