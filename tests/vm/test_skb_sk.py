"""``skb->sk`` in the runtime: the skb test run's dummy socket and the socket helpers on it.

The kernel's answers are in tests/differential/test_skb_sk_kernel.py; these tests pin the
model without a kernel: the fields built from the packet, the region's life across runs of a
reused mapping, and the helpers' errors on what is not a socket.
"""

from __future__ import annotations

import itertools
import struct

import pytest

from ebpf import btf
from ebpf.btf.types import IntEncoding
from ebpf.errors import NotSupportedError, VMError
from ebpf.helpers import HelperId
from ebpf.isa import assemble
from ebpf.isa.encoding import slot_offsets
from ebpf.maps import MapFlags
from ebpf.runtime import Collection
from ebpf.spec import CollectionSpec, MapSpec, MapType, ProgramSpec, ProgramType, Relocation, RelocKind
from ebpf.vm._context_sock import (
    BPF_SOCK_FIELDS,
    BPF_SOCK_SIZE,
    TCP_LISTEN,
    dummy_sock_fields,
    new_sock_region,
)
from ebpf.vm._helpers_sock import _SKC_KINDS, _skc_to, get_listener_sock, sk_fullsock, tcp_sock
from ebpf.vm.helpers import RunEnv
from vm._helper_util import ENGINE_NAMES, user_test_run

P = ProgramType


def ip4_frame(src: bytes = bytes([10, 1, 2, 3]), dst: bytes = bytes([10, 4, 5, 6])) -> bytes:
    l3 = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20, 1, 0, 64, 6, 0, src, dst)
    return bytes(12) + b"\x08\x00" + l3 + bytes(30)


def ip6_frame() -> bytes:
    l3 = struct.pack("!IHBB16s16s", 6 << 28, 0, 6, 64, bytes(range(16)), bytes(range(16, 32)))
    return bytes(12) + b"\x86\xdd" + l3 + bytes(10)


def field(raw: bytes, name: str) -> bytes:
    off, size = BPF_SOCK_FIELDS[name]
    return raw[off : off + size]


def test_layout_is_struct_bpf_sock() -> None:
    assert BPF_SOCK_SIZE == 80
    assert BPF_SOCK_FIELDS["dst_port"] == (48, 2)
    assert BPF_SOCK_FIELDS["rx_queue_mapping"] == (76, 4)
    ends = sorted((off, off + size) for off, size in BPF_SOCK_FIELDS.values())
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(ends))


def test_dummy_socket_of_an_ipv4_packet() -> None:
    raw = dummy_sock_fields(ip4_frame())
    assert len(raw) == BPF_SOCK_SIZE
    assert field(raw, "family") == (2).to_bytes(4, "little")
    assert field(raw, "src_ip4") == bytes([10, 1, 2, 3])  # sk_rcv_saddr: the packet's source
    assert field(raw, "dst_ip4") == bytes([10, 4, 5, 6])
    assert field(raw, "state") == (7).to_bytes(4, "little")  # TCP_CLOSE
    assert field(raw, "rx_queue_mapping") == b"\xff" * 4
    for name in ("bound_dev_if", "type", "protocol", "mark", "priority", "src_ip6", "dst_ip6", "src_port"):
        assert not any(field(raw, name)), name


def test_dummy_socket_of_an_ipv6_packet() -> None:
    raw = dummy_sock_fields(ip6_frame())
    assert field(raw, "family") == (10).to_bytes(4, "little")
    assert field(raw, "src_ip6") == bytes(range(16))
    assert field(raw, "dst_ip6") == bytes(range(16, 32))
    assert not any(field(raw, "src_ip4") + field(raw, "dst_ip4"))


@pytest.mark.parametrize("frame", [bytes(12) + b"\x08\x06" + bytes(28), bytes(14), b""])
def test_dummy_socket_of_other_packets_has_no_family(frame: bytes) -> None:
    raw = dummy_sock_fields(frame)
    assert not any(field(raw, "family") + field(raw, "src_ip4") + field(raw, "dst_ip6"))
    assert field(raw, "state") == (7).to_bytes(4, "little")


# r0 = family + 1 (0 without a socket); skb_store_bytes of fullsock(sk) - sk, tcp_sock, listener
TC_PROG = """
r6 = r1
r7 = *(u64 *)(r6 + 168)
r0 = 0
if r7 == 0 goto out
r1 = r7
call 95
if r0 == 0 goto out
r9 = r0
r9 -= r7
*(u64 *)(r10 - 24) = r9
r1 = r0
call 96
*(u64 *)(r10 - 16) = r0
r1 = r7
call 98
*(u64 *)(r10 - 8) = r0
r1 = r6
r2 = 14
r3 = r10
r3 += -24
r4 = 24
r5 = 0
call 9
r0 = *(u32 *)(r7 + 4)
r0 += 1
out:
exit
"""


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize(("frame", "family"), [(ip4_frame(), 2), (ip6_frame(), 10)])
def test_tc_program_takes_the_socket_branch(engine: str, frame: bytes, family: int) -> None:
    res = user_test_run(TC_PROG, P.SCHED_CLS, frame, engine=engine)
    assert res.retval == family + 1
    assert res.data_out[14:38] == bytes(24)  # fullsock returned sk itself; no tcp_sock, no listener


CG_PROG = """
r0 = *(u32 *)(r1 + 96)
r2 = *(u32 *)(r1 + 92)
r0 ^= r2
r2 = *(u32 *)(r1 + 88)
r0 ^= r2
r0 &= 1
exit
"""


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_cgroup_skb_socket_fields(engine: str) -> None:
    # local_ip4 ^ remote_ip4 ^ family, low bit: 3 ^ 6 ^ 2 = 7 -> 1; 2 ^ 6 ^ 2 = 6 -> 0
    assert (
        user_test_run(
            CG_PROG, P.CGROUP_SKB, ip4_frame(bytes([3, 0, 0, 0]), bytes([6, 0, 0, 0])), engine=engine
        ).retval
        == 1
    )
    assert (
        user_test_run(
            CG_PROG, P.CGROUP_SKB, ip4_frame(bytes([2, 0, 0, 0]), bytes([6, 0, 0, 0])), engine=engine
        ).retval
        == 0
    )


FAMILY_PROG = "r2 = *(u64 *)(r1 + 168)\nr0 = *(u32 *)(r2 + 4)\nexit"


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_reused_mapping_rebuilds_the_socket(engine: str) -> None:
    """A program's test runs reuse one mapping: each gets the socket of its own packet."""
    spec = ProgramSpec("prog", "tc", P.SCHED_CLS, assemble(FAMILY_PROG))
    with Collection(CollectionSpec(programs={"prog": spec}), engine=engine) as coll:
        prog = coll.programs["prog"]
        assert prog.test_run(ip4_frame(), repeat=3).retval == 2
        assert prog.test_run(ip6_frame()).retval == 10
        assert prog.test_run(bytes(12) + b"\x08\x06" + bytes(50)).retval == 0
        assert prog.test_run(ip6_frame() + bytes(200)).retval == 10  # a larger packet: a new buffer


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_socket_is_read_only(engine: str) -> None:
    text = "r2 = *(u64 *)(r1 + 168)\nr3 = 1\n*(u32 *)(r2 + 16) = r3\nr0 = 0\nexit"
    with pytest.raises(VMError):
        user_test_run(text, P.SCHED_CLS, ip4_frame(), engine=engine)


@pytest.mark.parametrize("helper", [95, 96, 98])
def test_helpers_refuse_what_is_not_a_socket(helper: int) -> None:
    with pytest.raises(VMError, match="is not a socket"):
        user_test_run(f"call {helper}\nr0 = 0\nexit", P.SCHED_CLS, ip4_frame())


def test_helpers_on_other_sockets() -> None:
    env = RunEnv()
    sock = new_sock_region()
    raw = bytearray(dummy_sock_fields(ip4_frame()))
    sock.fill(bytes(raw))
    env.memory.map(sock)
    assert sk_fullsock(env, sock.start, 0, 0, 0, 0) == sock.start
    assert tcp_sock(env, sock.start, 0, 0, 0, 0) == 0
    assert get_listener_sock(env, sock.start, 0, 0, 0, 0) == 0
    struct.pack_into("<I", raw, BPF_SOCK_FIELDS["state"][0], 6)  # TCP_TIME_WAIT: not a full socket
    sock.fill(bytes(raw))
    assert sk_fullsock(env, sock.start, 0, 0, 0, 0) == 0
    struct.pack_into("<II", raw, BPF_SOCK_FIELDS["protocol"][0] - 4, 1, 6)  # a TCP socket ...
    struct.pack_into("<I", raw, BPF_SOCK_FIELDS["state"][0], TCP_LISTEN)  # ... listening
    sock.fill(bytes(raw))
    with pytest.raises(NotSupportedError, match="bpf_tcp_sock"):
        tcp_sock(env, sock.start, 0, 0, 0, 0)
    assert get_listener_sock(env, sock.start, 0, 0, 0, 0) == 0  # no SOCK_RCU_FREE
    sock.rcu_free = True
    with pytest.raises(NotSupportedError, match="bpf_get_listener_sock"):
        get_listener_sock(env, sock.start, 0, 0, 0, 0)
    with pytest.raises(VMError):
        sk_fullsock(env, sock.start + 4, 0, 0, 0, 0)


STORAGE_PROG = """
r7 = *(u64 *)(r1 + 168)
r1 = 0 ll
r2 = r7
r3 = 0
r4 = 1
call 107
if r0 == 0 goto none
r1 = *(u64 *)(r0 + 0)
r1 += 1
*(u64 *)(r0 + 0) = r1
r0 = r1
exit
none:
r0 = 100
exit
"""


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_socket_storage_dies_with_the_socket(engine: str) -> None:
    """Each test run's socket has its own storage (shared by its repeats); a dead socket's is freed."""
    types = btf.Spec.build(
        [btf.Int("int", 4, IntEncoding.SIGNED, bits=32), btf.Int("long", 8, IntEncoding.SIGNED, bits=64)]
    )
    ss = MapSpec(
        "ss", MapType.SK_STORAGE, 4, 8, 0, MapFlags.NO_PREALLOC, key_type_id=1, value_type_id=2, btf=types
    )
    prog = assemble(STORAGE_PROG)
    ref = slot_offsets(prog.instructions)[1]
    spec = ProgramSpec("prog", "tc", P.SCHED_CLS, prog, relocations={ref: Relocation(RelocKind.MAP, "ss")})
    with Collection(
        CollectionSpec(programs={"prog": spec}, maps={"ss": ss}, btf=types), engine=engine
    ) as coll:
        run = coll.programs["prog"].test_run
        assert [run(ip4_frame(), repeat=r).retval for r in (2, 1, 3)] == [2, 1, 3]
        assert len(coll.maps["ss"].owners_with_storage()) == 1  # only the last run's socket


def test_casts_refuse_sockets_of_their_kind() -> None:
    """The dummy socket is of no kind (NULL); a TCP socket would need the kernel's struct."""
    env = RunEnv()
    sock = new_sock_region()
    raw = bytearray(dummy_sock_fields(ip6_frame()))
    sock.fill(bytes(raw))
    env.memory.map(sock)
    casts = {hid: _skc_to(hid) for hid in _SKC_KINDS}
    assert all(cast(env, sock.start, 0, 0, 0, 0) == 0 for cast in casts.values())
    struct.pack_into("<II", raw, BPF_SOCK_FIELDS["type"][0], 1, 6)  # SOCK_STREAM, IPPROTO_TCP
    sock.fill(bytes(raw))
    for hid in (HelperId.SKC_TO_TCP_SOCK, HelperId.SKC_TO_TCP6_SOCK, HelperId.SKC_TO_MPTCP_SOCK):
        with pytest.raises(NotSupportedError):
            casts[hid](env, sock.start, 0, 0, 0, 0)
    assert casts[HelperId.SKC_TO_UDP6_SOCK](env, sock.start, 0, 0, 0, 0) == 0
    assert casts[HelperId.SKC_TO_TCP_TIMEWAIT_SOCK](env, sock.start, 0, 0, 0, 0) == 0
    with pytest.raises(VMError, match="is not a socket"):
        casts[HelperId.SKC_TO_UNIX_SOCK](env, 0, 0, 0, 0, 0)
