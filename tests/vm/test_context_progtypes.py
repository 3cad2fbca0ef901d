"""Flow dissector, sk_lookup and netfilter test runs in the user-space runtime (no kernel).

The expected values are what Linux 6.18 answered for the same programs and inputs
(tests/differential/test_progtypes_kernel.py checks them against the kernel again).
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from ebpf.elf import load_collection_spec
from ebpf.errors import TestRunError, VMError
from ebpf.isa.asm import assemble
from ebpf.runtime import Collection
from ebpf.spec import CollectionSpec, ProgramSpec, ProgramType
from ebpf.vm._context_flow import FLOW_KEYS_SIZE, FlowDissectorInput
from ebpf.vm._context_netfilter import NfInput
from ebpf.vm._context_sklookup import SK_LOOKUP_SIZE, SkLookupInput

OBJ = Path(__file__).parent.parent / "data" / "progtypes" / "progtypes.o"
EFAULT = -errno.EFAULT & (1 << 64) - 1
EINVAL = -errno.EINVAL & (1 << 64) - 1


def short_id(value: object) -> str | None:
    """Readable test ids for byte-string parameters."""
    if isinstance(value, bytes):
        return f"{len(value)}B-{value[:4].hex()}" if value else "empty"
    return None


def eth(proto: int, payload: bytes) -> bytes:
    return b"\x02" * 6 + b"\x04" * 6 + struct.pack(">H", proto) + payload


def ip4(src: str, dst: str, proto: int, l4: bytes, frag: int = 0) -> bytes:
    return (
        struct.pack(">BBHHHBBH", 0x45, 0, 20 + len(l4), 1, frag, 64, proto, 0)
        + socket.inet_aton(src)
        + socket.inet_aton(dst)
        + l4
    )


def ip6(src: str, dst: str, nexthdr: int, l4: bytes, label: int = 0) -> bytes:
    return (
        struct.pack(">IHBB", 0x60000000 | label, len(l4), nexthdr, 64)
        + socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
        + l4
    )


def ports(sport: int, dport: int) -> bytes:
    return struct.pack(">HH", sport, dport) + bytes(16)


TCP4 = eth(0x0800, ip4("10.0.0.1", "10.0.0.2", 6, ports(1, 2)))
UDP6 = eth(0x86DD, ip6("fd00::1", "fd00::2", 17, ports(53, 4242), label=0xABCDE))
FRAG4 = eth(0x0800, ip4("1.2.3.4", "5.6.7.8", 17, ports(9, 10), frag=0x2000))
ARP = eth(0x0806, bytes(28))


def sk_lookup(
    family: int = socket.AF_INET,
    protocol: int = 6,
    remote_ip4: int = 0,
    remote_ip6: bytes = bytes(16),
    remote_port: int = 0,
    pad: int = 0,
    local_ip4: int = 0,
    local_ip6: bytes = bytes(16),
    local_port: int = 0,
    ingress_ifindex: int = 0,
    sk: int = 0,
) -> bytes:
    """A struct bpf_sk_lookup (72 bytes)."""
    return struct.pack(
        "<QIII16sHHI16sII4x",
        sk,
        family,
        protocol,
        remote_ip4,
        remote_ip6,
        remote_port,
        pad,
        local_ip4,
        local_ip6,
        local_port,
        ingress_ifindex,
    )


def nf_state(hook: int, pf: int = 2, tail: bytes = b"") -> bytes:
    return bytes([hook, pf]) + bytes(46) + tail


@pytest.fixture(params=["interp", "py"])
def coll(request: pytest.FixtureRequest) -> Iterator[Collection]:
    with Collection(load_collection_spec(OBJ), engine=request.param) as c:
        yield c


def seen(c: Collection) -> list[int]:
    return list(struct.unpack_from("<24Q", c.maps[".bss"].lookup(bytes(4))))


def counts(c: Collection) -> dict[int, int]:
    m = c.maps["counts"]
    return {struct.unpack("<I", k)[0]: struct.unpack("<Q", m.lookup(k))[0] for k in m}


# ---------------------------------------------------------------- flow dissector


def expected_keys(frame: bytes, flags: int = 0) -> bytes:
    """What fd_direct fills in (the program's own logic, over the kernel's initial keys)."""
    keys = bytearray(FLOW_KEYS_SIZE)
    proto = int.from_bytes(frame[12:14], "big")
    nhoff = thoff = 14
    keys[10:12] = frame[12:14]
    if proto == 0x0800:
        ip = frame[14:]
        keys[4:6] = struct.pack("<H", 0x0800)
        keys[16:24] = ip[12:20]
        keys[9] = ip[9]
        frag = int.from_bytes(ip[6:8], "big")
        keys[6] = int(bool(frag & 0x3FFF))
        keys[7] = int(not frag & 0x1FFF)
        thoff = 14 + (ip[0] & 15) * 4
    else:
        ip = frame[14:]
        keys[4:6] = struct.pack("<H", 0x86DD)
        keys[16:48] = ip[8:40]
        keys[9] = ip[6]
        keys[52:56] = (int.from_bytes(ip[0:4], "big") & 0xFFFFF).to_bytes(4, "big")
        thoff = 54
    keys[12:16] = frame[thoff : thoff + 4]
    if flags & 4:
        keys[8] = 1
    struct.pack_into("<HH", keys, 0, nhoff, thoff)
    struct.pack_into("<I", keys, 48, flags)
    return bytes(keys)


@pytest.mark.parametrize("frame", [TCP4, UDP6, FRAG4], ids=["tcp4", "udp6", "frag4"])
@pytest.mark.parametrize("flags", [0, 1, 4])
def test_flow_dissector_fills_keys(coll: Collection, frame: bytes, flags: int) -> None:
    ctx = bytes(48) + struct.pack("<I", flags) + bytes(4) if flags else None
    res = coll.programs["fd_direct"].test_run(frame, ctx_in=ctx)
    assert res.retval == 0  # BPF_OK
    assert res.data_out == expected_keys(frame, flags)
    assert res.ctx_out == ctx
    s = seen(coll)
    n_proto = int.from_bytes(frame[12:14], "little")
    assert s[0] == 14 | 14 << 16 | n_proto << 32  # the keys the kernel hands the program
    assert s[1] == flags
    assert s[2] == len(frame)  # data .. data_end: the whole frame
    assert s[3:5] == [EFAULT, 0]  # bpf_skb_load_bytes: no skb in a test run, buffer zeroed
    assert counts(coll) == {n_proto: 1}


def test_flow_dissector_drop_and_repeat(coll: Collection) -> None:
    res = coll.programs["fd_direct"].test_run(ARP, repeat=5)
    assert res.retval == 2  # BPF_DROP
    assert res.data_out == bytes.fromhex("0e000e000000000000000806") + bytes(44)
    assert seen(coll)[0] == 14 | 14 << 16 | 0x0608 << 32
    assert struct.unpack("<I", coll.maps[".bss"].lookup(bytes(4))[192:196])[0] == 5  # runs
    assert counts(coll) == {0x0608: 5}


@pytest.mark.parametrize(
    ("nhoff", "thoff", "ret", "out"),
    [
        (0, 0, 0, (14, 14)),  # clamped up to ETH_HLEN, thoff up to nhoff
        (5, 3, 1, (14, 14)),
        (100, 200, 2, (59, 59)),  # clamped down to the frame length
        (30, 20, 2, (32, 32)),  # the keys are reset before each of the 2 runs: 30 + 2
        (0xFFFF, 0xFFFE, 0x80, (14, 59)),  # u16 wrap-around of nhoff + runs
    ],
    ids=short_id,
)
def test_flow_dissector_clamps_offsets(
    coll: Collection, nhoff: int, thoff: int, ret: int, out: tuple[int, int]
) -> None:
    frame = eth(0x0800, struct.pack("<HHB", nhoff, thoff, ret) + bytes(40))
    res = coll.programs["fd_clamp"].test_run(frame, repeat=2)
    assert res.retval == ret
    assert res.data_out == struct.pack("<HH", *out) + bytes(6) + b"\x08\x00" + bytes(44)


@pytest.mark.parametrize(
    ("data", "ctx", "err"),
    [
        (bytes(13), None, errno.EINVAL),
        (bytes(4097), None, errno.EINVAL),
        (TCP4, b"\x01" + bytes(55), errno.EINVAL),  # only flags may be set
        (TCP4, bytes(52) + b"\x01\0\0\0", errno.EINVAL),  # flow_label
        (TCP4, bytes(56) + b"\x01", errno.E2BIG),
        (bytes(13), bytes(56) + b"\x01", errno.EINVAL),  # the size check comes first
    ],
    ids=short_id,
)
def test_flow_dissector_bad_inputs(coll: Collection, data: bytes, ctx: bytes | None, err: int) -> None:
    with pytest.raises(TestRunError) as info:
        coll.programs["fd_direct"].test_run(data, ctx_in=ctx)
    assert info.value.errno == err


def test_flow_dissector_takes_no_flags(coll: Collection) -> None:
    with pytest.raises(TestRunError) as info:
        coll.programs["fd_direct"].test_run(TCP4, flags=1)
    assert info.value.errno == errno.EINVAL


def test_flow_dissector_limits() -> None:
    res = FlowDissectorInput.from_test_run(bytes(4096), bytes(48) + b"\x02\0\0\0" + bytes(8))
    assert res.flags == 2 and len(res.ctx_in or b"") == FLOW_KEYS_SIZE


def _asm_collection(text: str, ptype: ProgramType, engine: str) -> Collection:
    spec = CollectionSpec(
        programs={"p": ProgramSpec("p", "x", ptype, assemble(text), license="GPL")}, license="GPL"
    )
    return Collection(spec, engine=engine)


@pytest.mark.parametrize("engine", ["interp", "py"])
@pytest.mark.parametrize(
    "text",
    [
        "r0 = *(u32 *)(r1 + 0)\nexit",  # __sk_buff.len: refused by the verifier
        "r0 = *(u32 *)(r1 + 144)\nexit",  # flow_keys needs an 8-byte load
        "*(u32 *)(r1 + 8) = r1\nr0 = 0\nexit",  # the context is read-only
        "r2 = *(u32 *)(r1 + 76)\n*(u8 *)(r2 + 0) = 1\nr0 = 0\nexit",  # so is the packet
    ],
    ids=short_id,
)
def test_flow_dissector_context_rules(engine: str, text: str) -> None:
    with _asm_collection(text, ProgramType.FLOW_DISSECTOR, engine) as c, pytest.raises(VMError):
        c.programs["p"].test_run(TCP4)


@pytest.mark.parametrize("engine", ["interp", "py"])
def test_flow_dissector_keys_writable(engine: str) -> None:
    text = "r2 = *(u64 *)(r1 + 144)\nr3 = 0x1234\n*(u32 *)(r2 + 52) = r3\nr0 = 0\nexit"
    with _asm_collection(text, ProgramType.FLOW_DISSECTOR, engine) as c:
        res = c.programs["p"].test_run(TCP4)
    assert res.data_out[52:56] == struct.pack("<I", 0x1234)


# ---------------------------------------------------------------- sk_lookup


def test_sk_lookup_ipv4(coll: Collection) -> None:
    ctx = sk_lookup(
        remote_ip4=0x01020304,
        local_ip4=0x05060708,
        remote_port=0x1234,
        pad=0xABCD,
        local_port=81,
        remote_ip6=bytes(range(16)),
        local_ip6=bytes(range(16, 32)),
    )
    res = coll.programs["skl_read"].test_run(ctx_in=ctx)
    assert (res.retval, res.data_out, res.ctx_out) == (1, b"", ctx)  # SK_PASS, cookie 0
    s = seen(coll)
    assert s[:11] == [
        socket.AF_INET | 6 << 32,
        0x01020304 | 0x05060708 << 32,
        0,  # IPv6 addresses of an AF_INET lookup read 0
        0,
        0x1234 | 81 << 32,
        0,  # ingress_ifindex
        0,  # sk: nothing selected
        0x0506 << 16,  # narrow loads
        0x1234,  # remote_port's padding reads 0
        0,  # bpf_sk_assign(ctx, NULL, BPF_SK_LOOKUP_F_REPLACE)
        0,
    ]


def test_sk_lookup_ipv6_and_assign_flags(coll: Collection) -> None:
    ctx = sk_lookup(
        family=socket.AF_INET6,
        protocol=17,
        remote_ip4=0x01020304,
        local_ip4=0x05060708,
        remote_port=0x1234,
        local_port=7,
        remote_ip6=bytes(range(16)),
        local_ip6=bytes(range(16, 32)),
    )
    res = coll.programs["skl_read"].test_run(ctx_in=ctx)
    assert (res.retval, res.ctx_out) == (0, ctx)  # SK_DROP for UDP
    s = seen(coll)
    assert s[1] == 0  # IPv4 addresses of an AF_INET6 lookup read 0
    assert s[2] == 0x0F0E0D0C03020100 and s[3] == 0x1B1A191817161514
    assert s[9:11] == [EINVAL, 0]  # flags 7: not REPLACE | NO_REUSEPORT


def test_sk_lookup_family_is_u16_and_counts(coll: Collection) -> None:
    ctx = sk_lookup(family=0x10002, local_port=7777)
    for _ in range(3):
        res = coll.programs["skl_read"].test_run(ctx_in=ctx, repeat=2)
        assert (res.retval, res.ctx_out) == (0, ctx)
    assert seen(coll)[0] == 2 | 6 << 32
    assert counts(coll) == {7777: 6}


@pytest.mark.parametrize(
    ("data", "ctx", "kw", "err"),
    [
        (b"", None, {}, errno.EINVAL),
        (b"x", sk_lookup(), {}, errno.EINVAL),
        (b"", sk_lookup(), {"data_size_out": 64}, errno.EINVAL),
        (b"", sk_lookup(), {"flags": 1}, errno.EINVAL),
        (b"", sk_lookup(sk=1), {}, errno.EINVAL),
        (b"", sk_lookup(ingress_ifindex=1), {}, errno.EINVAL),
        (b"", sk_lookup(local_port=70000), {}, errno.ERANGE),
        (b"", sk_lookup(family=99), {}, errno.EAFNOSUPPORT),
        (b"", sk_lookup() + b"\0\0\0\1", {}, errno.E2BIG),
    ],
    ids=short_id,
)
def test_sk_lookup_bad_inputs(
    coll: Collection, data: bytes, ctx: bytes | None, kw: dict[str, int], err: int
) -> None:
    with pytest.raises(TestRunError) as info:
        coll.programs["skl_read"].test_run(data, ctx_in=ctx, **kw)
    assert info.value.errno == err


def test_sk_lookup_short_ctx() -> None:
    inp = SkLookupInput.from_test_run(b"", sk_lookup()[:20])
    assert len(inp.ctx_in) == SK_LOOKUP_SIZE


@pytest.mark.parametrize("engine", ["interp", "py"])
@pytest.mark.parametrize(
    "text",
    [
        "*(u32 *)(r1 + 8) = r1\nr0 = 1\nexit",  # read-only context
        "r0 = *(u32 *)(r1 + 68)\nexit",  # past ingress_ifindex
        "r0 = *(u32 *)(r1 + 0)\nexit",  # sk is an 8-byte pointer
        "r2 = r10\nr2 += -8\nr3 = 0\ncall 124\nr0 = 1\nexit",  # a non-NULL sk
    ],
    ids=short_id,
)
def test_sk_lookup_context_rules(engine: str, text: str) -> None:
    with _asm_collection(text, ProgramType.SK_LOOKUP, engine) as c, pytest.raises(VMError):
        c.programs["p"].test_run(ctx_in=sk_lookup())


# ---------------------------------------------------------------- netfilter


@pytest.mark.parametrize(
    ("data", "ctx", "retval", "state", "devs"),
    [
        (TCP4[14:], None, 1, 0x203, 0x10),  # default: IPv4 LOCAL_OUT, no devices
        (TCP4, nf_state(0), 1, 0x200, 0x12),  # with ctx_in: out is loopback
        (TCP4, nf_state(2), 0, 0x202, 0x12),  # FORWARD: the program drops
        (TCP4, nf_state(3, 10), 1, 0xA03, 0x12),  # LOCAL_OUT: pf is not checked against data
        (UDP6, nf_state(1, 10), 1, 0xA01, 0x12),
        (TCP4, nf_state(9), 1, 0x209, 0x12),  # hook is not checked
    ],
    ids=short_id,
)
def test_netfilter_state(
    coll: Collection, data: bytes, ctx: bytes | None, retval: int, state: int, devs: int
) -> None:
    res = coll.programs["nf_read"].test_run(data, ctx_in=ctx)
    assert (res.retval, res.data_out, res.ctx_out) == (retval, b"", None)
    assert seen(coll)[:2] == [state, devs]
    assert counts(coll) == {state & 0xFF: 1}


@pytest.mark.parametrize(
    ("data", "ctx", "err"),
    [
        (TCP4[14:33], None, errno.EINVAL),  # shorter than an iphdr
        (bytes(3713), None, errno.EINVAL),
        (TCP4, nf_state(3, 0), errno.EINVAL),  # pf
        (TCP4, nf_state(3)[:40] + b"\x01" + bytes(7), errno.EINVAL),  # okfn
        (TCP4, nf_state(3, tail=b"\x01"), errno.E2BIG),
        (TCP4[14:], nf_state(1), errno.EPROTO),  # not an Ethernet frame of IP
        (TCP4[:30], nf_state(1), errno.EINVAL),  # shorter than ETH_HLEN + iphdr
        (TCP4, nf_state(1, 10), errno.EINVAL),  # IPv4 frame, IPv6 hook
        (UDP6, nf_state(1), errno.EINVAL),
        (UDP6[:50], nf_state(1, 10), errno.EINVAL),  # no whole ipv6hdr
        (ARP, nf_state(0), errno.EPROTO),
    ],
    ids=short_id,
)
def test_netfilter_bad_inputs(coll: Collection, data: bytes, ctx: bytes | None, err: int) -> None:
    with pytest.raises(TestRunError) as info:
        coll.programs["nf_read"].test_run(data, ctx_in=ctx)
    assert info.value.errno == err


def test_netfilter_packet_offset() -> None:
    assert NfInput.from_test_run(TCP4, nf_state(0)).network_offset == 14
    assert NfInput.from_test_run(TCP4[14:]).network_offset == 0


@pytest.mark.parametrize("engine", ["interp", "py"])
@pytest.mark.parametrize("offset", [0, 8])  # ctx->state->out->(first word), ctx->skb->(first word)
def test_netfilter_unmodelled_structs_fault(engine: str, offset: int) -> None:
    text = (
        f"r2 = *(u64 *)(r1 + {offset})\n"
        + ("r2 = *(u64 *)(r2 + 16)\n" if offset == 0 else "")
        + "r0 = *(u64 *)(r2 + 0)\nexit"
    )
    with _asm_collection(text, ProgramType.NETFILTER, engine) as c, pytest.raises(VMError) as info:
        c.programs["p"].test_run(TCP4, ctx_in=nf_state(0))
    assert "does not model" in str(info.value)


# ---------------------------------------------------------------- netfilter: sk_buff and net_device from BTF

IP = TCP4[14:]  # 40 bytes


@pytest.mark.parametrize(
    ("data", "ctx", "expected"),
    [
        # LOCAL_OUT: the skb starts at the IP header, no device, no MAC header
        (IP, None, [0x28, 0x8, 0xFFFF0000FFFF, 0x40, 0xC000000068, 0, 0, 0, 0, 0x28000045, 0]),
        # PRE_ROUTING: eth_type_trans on loopback pulled the Ethernet header
        (
            TCP4,
            nf_state(0),
            [0x28, 0x8, 0xFFFF004E0040, 0x4E, 0xC000000076, 1, 1 | 65536 << 32, 0, 0, 0x28000045, 1],
        ),
        # LOCAL_OUT with pf IPv6: protocol from pf, data is the frame as given
        (
            TCP4,
            nf_state(3, 10),
            [0x36, 0xDD86, 0xFFFF0000FFFF, 0x40, 0xC000000076, 0, 0, 0, 0, 0x02020202, 1],
        ),
        # 1054 bytes: kmalloc-2048, end 1728
        (
            TCP4 + bytes(1000),
            nf_state(1),
            [0x410, 0x8, 0xFFFF004E0040, 0x4E, 0x6C00000045E, 1, 1 | 65536 << 32],
        ),
    ],
    ids=short_id,
)
def test_netfilter_skb_as_the_kernel_builds_it(
    coll: Collection, data: bytes, ctx: bytes | None, expected: list[int]
) -> None:
    res = coll.programs["nf_skb"].test_run(data, ctx_in=ctx)
    assert res.retval == (0 if len(data) > 114 else 1)
    s = seen(coll)
    assert s[: len(expected)] == expected  # values Linux 6.18 gave for the same inputs
    ksize = {54: 512, 40: 512, 1054: 2048}[len(data)]
    assert s[12] == ksize + 256 | 1 << 32  # truesize, users
    if ctx is not None:
        assert s[11] == int.from_bytes(b"lo", "little")  # state->out->name


@pytest.mark.parametrize(
    ("dest", "pkt_type"),
    [(b"\xff" * 6, 2), (b"\x02" * 6, 3), (b"\x03" * 6, 2), (bytes(6), 0)],
    ids=short_id,
)
def test_netfilter_skb_pkt_type(coll: Collection, dest: bytes, pkt_type: int) -> None:
    coll.programs["nf_skb"].test_run(dest + TCP4[6:], ctx_in=nf_state(0))
    assert seen(coll)[13] == pkt_type  # the loopback device's address and broadcast are zero


def _member_offset(btf: object, struct_name: str, member: str) -> int:
    from ebpf.btf.types import Struct
    from ebpf.vm._context_netfilter import _layout

    layout = _layout(btf, struct_name)  # type: ignore[arg-type]
    assert layout is not None and btf.find(struct_name, Struct)  # type: ignore[attr-defined]
    return layout[member][0] // 8


@pytest.mark.parametrize("engine", ["interp", "py"])
@pytest.mark.parametrize(
    ("struct_name", "member", "via_dev", "faults"),
    [
        ("sk_buff", "alloc_cpu", False, True),  # the CPU the kernel ran on: not modelled
        ("sk_buff", "mark", False, False),  # zero in a freshly built skb
        ("net_device", "flags", True, True),  # only ifindex, mtu and name are modelled
        ("net_device", "ifindex", True, False),
    ],
    ids=short_id,
)
def test_netfilter_unmodelled_fields(
    engine: str, struct_name: str, member: str, via_dev: bool, faults: bool
) -> None:
    btf = load_collection_spec(OBJ).btf
    off = _member_offset(btf, struct_name, member)
    dev = _member_offset(btf, "sk_buff", "dev")
    text = (
        "r2 = *(u64 *)(r1 + 8)\n"
        + (f"r2 = *(u64 *)(r2 + {dev})\n" if via_dev else "")
        + f"r0 = *(u32 *)(r2 + {off})\nexit"
    )
    spec = CollectionSpec(
        programs={"p": ProgramSpec("p", "x", ProgramType.NETFILTER, assemble(text), license="GPL")},
        license="GPL",
    )
    with Collection(spec, engine=engine, target_btf=btf) as c:
        if faults:
            with pytest.raises(VMError, match=member if struct_name == "sk_buff" else "net_device"):
                c.programs["p"].test_run(TCP4, ctx_in=nf_state(0))
        else:
            assert c.programs["p"].test_run(TCP4, ctx_in=nf_state(0)).retval == (
                1 if member == "ifindex" else 0
            )


@pytest.mark.parametrize(
    ("data", "ctx", "retval", "size"),
    [
        (UDP4_NF := eth(0x0800, ip4("10.0.0.1", "10.0.0.2", 17, ports(1, 2))), nf_state(0), 0, 40),
        (UDP4_NF[14:], None, 0, 40),
        (UDP4_NF[:34], nf_state(1), 1, 20),  # 20 bytes: the 24-byte slice fails
        (TCP4[14:], None, 1, 40),
    ],
    ids=short_id,
)
def test_netfilter_skb_dynptr(
    coll: Collection, data: bytes, ctx: bytes | None, retval: int, size: int
) -> None:
    """bpf_dynptr_from_skb(ctx->skb): a read-only dynptr over skb->data, skb->len bytes (kernel: same)."""
    res = coll.programs["nf_dynptr"].test_run(data, ctx_in=ctx)
    s = seen(coll)
    assert (res.retval, s[17], s[18]) == (retval, 0, size)
    if size >= 24:
        ip = data[-40:]
        assert s[19] == ip[0] | ip[9] << 8 | ip[23] << 16
        assert s[20] == (-errno.E2BIG) & (1 << 64) - 1  # read of 4 bytes at len - 2
