"""``skb->sk`` in skb test runs against Linux: the dummy socket ``bpf_prog_test_run_skb`` gives.

Programs read ``skb->sk``, every ``struct bpf_sock`` field the verifier lets them read (the
``sock_common`` ones directly, ``type``/``protocol``/``mark``/``priority`` after
``bpf_sk_fullsock``), the results of ``bpf_tcp_sock`` and ``bpf_get_listener_sock`` and (for
``CGROUP_SKB``) the ``__sk_buff`` socket fields, and copy them into an array map; the kernel
and both runtime engines must give the same retval, ``data_out`` and map contents. Socket
storage on ``skb->sk`` (``bpf_sk_storage_get``/``_delete``) is compared across test runs
and their repeats.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest

from ebpf import btf
from ebpf.btf.types import IntEncoding
from ebpf.helpers import HelperId
from ebpf.isa import assemble
from ebpf.isa.encoding import slot_offsets
from ebpf.kernel import Collection as KernelCollection
from ebpf.maps import MapFlags
from ebpf.runtime import Collection
from ebpf.spec import CollectionSpec, MapSpec, MapType, ProgramSpec, ProgramType, Relocation, RelocKind

pytestmark = pytest.mark.kernel

ENGINE_NAMES = ("interp", "py")
MAP_REF = 0x7E7E7E7E7E7E7E7E  # "rX = MAP_REF ll" loads the map "out"
VALUE_SIZE = 256
MAPS = {"out": MapSpec("out", MapType.ARRAY, 4, VALUE_SIZE, 1)}
P = ProgramType
FULLSOCK_TYPES = (P.SCHED_CLS, P.SCHED_ACT, P.CGROUP_SKB)
ALL_TYPES = (P.SCHED_CLS, P.SCHED_ACT, P.CGROUP_SKB, P.SOCKET_FILTER, P.LWT_IN, P.LWT_OUT, P.LWT_XMIT)
# (offset, size) of the struct bpf_sock fields a PTR_TO_SOCK_COMMON may read
COMMON = [(0, 4), (4, 4), (24, 4), *[(28 + 4 * i, 4) for i in range(4)], (44, 4), (48, 2), (52, 4)]
COMMON += [*[(56 + 4 * i, 4) for i in range(4)], (72, 4), (76, 4)]
FULL = [(8, 4), (12, 4), (16, 4), (20, 4)]  # type, protocol, mark, priority: full sockets only
# __sk_buff family, remote_ip4, local_ip4, remote_ip6, local_ip6, remote_port, local_port
SKB_SOCK_FIELDS = [(88 + 4 * i, 4) for i in range(13)]
WIDTH = {4: "u32", 2: "u16"}


def sk_program(prog_type: ProgramType) -> str:
    """Copy skb->sk's fields into the map value; r0 = 1 + family (0 without a socket; for
    CGROUP_SKB whether the family is set)."""
    lines = [
        "r6 = r1",
        "r1 = 0",
        "*(u32 *)(r10 - 4) = r1",
        f"r1 = {MAP_REF} ll",
        "r2 = r10",
        "r2 += -4",
        "call 1",
        "r1 = 0",
        "*(u64 *)(r10 - 16) = r1",
        "if r0 == 0 goto out",
        "r8 = r0",
        "r7 = *(u64 *)(r6 + 168)",
        "if r7 == 0 goto out",
        "r1 = 1",
        "*(u64 *)(r8 + 0) = r1",
        "r1 = *(u32 *)(r7 + 4)",
        "r1 += 1",
        "*(u64 *)(r10 - 16) = r1",
    ]
    if prog_type == P.CGROUP_SKB:
        for off, size in SKB_SOCK_FIELDS:
            lines += [f"r1 = *(u32 *)(r6 + {off})", f"*(u32 *)(r8 + {120 + off - 88}) = r1"]
    for off, size in COMMON:
        lines += [f"r1 = *({WIDTH[size]} *)(r7 + {off})", f"*({WIDTH[size]} *)(r8 + {8 + off}) = r1"]
    if prog_type in FULLSOCK_TYPES:
        lines += ["r1 = r7", "call 95", "if r0 == 0 goto out", "r9 = r0", "r1 = 2", "*(u64 *)(r8 + 0) = r1"]
        for off, size in FULL:
            lines += [f"r1 = *(u32 *)(r9 + {off})", f"*(u32 *)(r8 + {8 + off}) = r1"]
        lines += [
            "r1 = r9",
            "call 96",
            "*(u64 *)(r8 + 96) = r0",
            "r1 = r7",
            "call 98",
            "*(u64 *)(r8 + 104) = r0",
        ]
        lines += ["r0 = r9", "r0 -= r7", "*(u64 *)(r8 + 112) = r0"]  # fullsock gives the socket itself
    lines += ["out:", "r0 = *(u64 *)(r10 - 16)"]
    if prog_type == P.CGROUP_SKB:  # 0 or 1: whether the socket has a family
        lines += ["r0 >>= 1", "r0 &= 1"]
    lines.append("exit")
    return "\n".join(lines)


def program(text: str, prog_type: ProgramType) -> ProgramSpec:
    prog = assemble(text)
    slots = slot_offsets(prog.instructions)
    relocations = {
        slots[i]: Relocation(RelocKind.MAP, "out")
        for i, insn in enumerate(prog.instructions)
        if insn.is_wide and insn.imm == MAP_REF
    }
    return ProgramSpec("prog", "prog", prog_type, prog, relocations=relocations)


@contextmanager
def pair(prog_type: ProgramType, engine: str) -> Iterator[tuple[Any, Any]]:
    """(runtime, kernel) collections of :func:`sk_program`."""
    spec = CollectionSpec(
        programs={"prog": program(sk_program(prog_type), prog_type)}, maps=MAPS, license="GPL"
    )
    with ExitStack() as stack:
        yield (
            stack.enter_context(Collection(spec, engine=engine)),
            stack.enter_context(KernelCollection(spec)),
        )


def frame(proto: int, src: bytes, dst: bytes, size: int = 128) -> bytes:
    if proto == 0x0800:
        l3 = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size - 14, 1, 0, 64, 6, 0, src, dst)
    elif proto == 0x86DD:
        l3 = struct.pack("!IHBB16s16s", 6 << 28, size - 54, 6, 64, src, dst)
    else:
        l3 = b""
    head = b"\x02\0\0\0\0\x0a\x02\0\0\0\0\x0b" + proto.to_bytes(2, "big") + l3
    return head + bytes(i & 0xFF for i in range(size - len(head)))


FRAMES = {
    "ipv4": frame(0x0800, bytes([10, 0, 0, 1]), bytes([192, 168, 7, 254])),
    "ipv4-zero": frame(0x0800, bytes(4), bytes([255, 255, 255, 255])),
    "ipv6": frame(0x86DD, bytes(range(16)), bytes(range(0xF0, 0x100))),
    "arp": frame(0x0806, b"", b""),
    "vlan": frame(0x8100, b"", b""),
}


def results(coll: Any, data: bytes) -> tuple[int, bytes, bytes]:
    coll.maps["out"].update(bytes(4), bytes(VALUE_SIZE))
    res = coll.programs["prog"].test_run(data)
    return res.retval, res.data_out, bytes(coll.maps["out"].lookup(bytes(4)))


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("prog_type", ALL_TYPES, ids=lambda t: t.name)
def test_dummy_socket_fields(prog_type: ProgramType, engine: str) -> None:
    with pair(prog_type, engine) as (ours, theirs):
        for name, data in FRAMES.items():
            kernel = results(theirs, data)
            assert results(ours, data) == kernel, name
            assert kernel[2][0] == (2 if prog_type in FULLSOCK_TYPES else 1), name  # the socket is there


def test_kernel_answers() -> None:
    """What the kernel's dummy socket reads (the facts the runtime models)."""
    with pair(P.CGROUP_SKB, "interp") as (_ours, theirs):
        retval, _, v = results(theirs, FRAMES["ipv4"])
        assert retval == 1  # AF_INET
        fields = struct.unpack_from("<IIIIIII", v, 8)  # bound_dev_if .. src_ip4
        assert fields == (0, 2, 0, 0, 0, 0, int.from_bytes(bytes([10, 0, 0, 1]), "little"))
        assert v[8 + 52 : 8 + 56] == bytes([192, 168, 7, 254])  # dst_ip4
        assert struct.unpack_from("<Ii", v, 8 + 72) == (7, -1)  # TCP_CLOSE, no rx queue
        assert struct.unpack_from("<QQQ", v, 96) == (0, 0, 0)  # no tcp_sock, no listener; fullsock = sk
        assert struct.unpack_from("<III", v, 120) == (
            2,
            *struct.unpack("<II", bytes([192, 168, 7, 254, 10, 0, 0, 1])),
        )
        retval, _, v = results(theirs, FRAMES["arp"])
        assert retval == 0 and struct.unpack_from("<II", v, 8) == (0, 0)  # AF_UNSPEC


# --- bpf_sk_storage_get / _delete on skb->sk ----------------------------------------------------------

BTF = btf.Spec.build(
    [btf.Int("int", 4, IntEncoding.SIGNED, bits=32), btf.Int("long", 8, IntEncoding.SIGNED, bits=64)]
)
SS_REF = 0x7D7D7D7D7D7D7D7D  # "rX = SS_REF ll" loads the map "ss"
STORAGE_MAPS = {
    "ss": MapSpec(
        "ss", MapType.SK_STORAGE, 4, 8, 0, MapFlags.NO_PREALLOC, key_type_id=1, value_type_id=2, btf=BTF
    ),
    "out": MapSpec("out", MapType.ARRAY, 4, 8, 1),
}


def storage_program(flags: int, delete: bool) -> str:
    """out[0] = the storage's counter after an increment (| delete's result << 8), 100 without one."""
    lines = [
        "r7 = *(u64 *)(r1 + 168)",
        "r9 = 200",
        "if r7 == 0 goto out",
        f"r1 = {SS_REF} ll",
        "r2 = r7",
        "r3 = 0",
        f"r4 = {flags}",
        f"call {int(HelperId.SK_STORAGE_GET)}",
        "r9 = 100",
        "if r0 == 0 goto out",
        "r9 = *(u64 *)(r0 + 0)",
        "r9 += 1",
        "*(u64 *)(r0 + 0) = r9",
    ]
    if delete:
        lines += [
            f"r1 = {SS_REF} ll",
            "r2 = r7",
            f"call {int(HelperId.SK_STORAGE_DELETE)}",
            "r0 <<= 8",
            "r9 |= r0",
        ]
    lines += [
        "out:",
        "*(u64 *)(r10 - 8) = r9",
        "r1 = 0",
        "*(u32 *)(r10 - 12) = r1",
        f"r1 = {MAP_REF} ll",
        "r2 = r10",
        "r2 += -12",
        "r3 = r10",
        "r3 += -8",
        "r4 = 0",
        f"call {int(HelperId.MAP_UPDATE_ELEM)}",
        "r0 = 1",
        "exit",
    ]
    return "\n".join(lines)


def storage_spec(text: str, prog_type: ProgramType) -> CollectionSpec:
    prog = assemble(text)
    slots = slot_offsets(prog.instructions)
    refs = {MAP_REF: "out", SS_REF: "ss"}
    relocations = {
        slots[i]: Relocation(RelocKind.MAP, refs[insn.imm])
        for i, insn in enumerate(prog.instructions)
        if insn.is_wide and insn.imm in refs
    }
    spec = ProgramSpec("prog", "prog", prog_type, prog, relocations=relocations)
    return CollectionSpec(programs={"prog": spec}, maps=STORAGE_MAPS, license="GPL", btf=BTF)


def storage_runs(coll: Any) -> list[tuple[int, int]]:
    """(retval, out[0]) of test runs with repeat 1, 3, 1 on IPv4, IPv6 and ARP packets."""
    got = []
    for data, repeat in ((FRAMES["ipv4"], 1), (FRAMES["ipv6"], 3), (FRAMES["arp"], 1), (FRAMES["ipv4"], 2)):
        res = coll.programs["prog"].test_run(data, repeat=repeat)
        got.append((res.retval, int.from_bytes(bytes(coll.maps["out"].lookup(bytes(4))), "little")))
    return got


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("prog_type", [P.SCHED_CLS, P.CGROUP_SKB], ids=lambda t: t.name)
@pytest.mark.parametrize(("flags", "delete"), [(1, False), (0, False), (1, True), (2, False)])
def test_sk_storage_of_the_dummy_socket(
    prog_type: ProgramType, engine: str, flags: int, delete: bool
) -> None:
    spec = storage_spec(storage_program(flags, delete), prog_type)
    with Collection(spec, engine=engine) as ours, KernelCollection(spec) as theirs:
        kernel = storage_runs(theirs)
        assert storage_runs(ours) == kernel
    if (flags, delete) == (1, False):  # one socket per test run, shared by its repeats
        assert [v for _, v in kernel] == [1, 3, 1, 2]


# --- bpf_skc_to_* casts of skb->sk -----------------------------------------------------------------------

SKC_TO = [
    HelperId.SKC_TO_TCP6_SOCK,
    HelperId.SKC_TO_TCP_SOCK,
    HelperId.SKC_TO_TCP_TIMEWAIT_SOCK,
    HelperId.SKC_TO_TCP_REQUEST_SOCK,
    HelperId.SKC_TO_UDP6_SOCK,
    HelperId.SKC_TO_UNIX_SOCK,
    HelperId.SKC_TO_MPTCP_SOCK,
]


def skc_program() -> str:
    """out[8 * i] = whether cast i of skb->sk is non-NULL (2 without a socket); out[0] = 1: ran."""
    lines = [
        "r7 = *(u64 *)(r1 + 168)",
        "r1 = 0",
        "*(u32 *)(r10 - 4) = r1",
        f"r1 = {MAP_REF} ll",
        "r2 = r10",
        "r2 += -4",
        "call 1",
        "if r0 == 0 goto out",
        "r8 = r0",
        "r1 = 1",
        "*(u64 *)(r8 + 0) = r1",
    ]
    for i, hid in enumerate(SKC_TO, start=1):
        lines += [
            "r2 = 2",
            f"if r7 == 0 goto store{i}",
            "r1 = r7",
            f"call {int(hid)}",
            "r2 = 0",
            f"if r0 == 0 goto store{i}",
            "r2 = 1",
            f"store{i}:",
            f"*(u64 *)(r8 + {8 * i}) = r2",
        ]
    lines += ["out:", "r0 = 1", "exit"]
    return "\n".join(lines)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize(
    "prog_type", [P.SCHED_CLS, P.CGROUP_SKB, P.SOCKET_FILTER, P.LWT_IN], ids=lambda t: t.name
)
def test_skc_casts_of_the_dummy_socket(prog_type: ProgramType, engine: str) -> None:
    spec = CollectionSpec(programs={"prog": program(skc_program(), prog_type)}, maps=MAPS, license="GPL")
    with Collection(spec, engine=engine) as ours, KernelCollection(spec) as theirs:
        for name, data in FRAMES.items():
            kernel = results(theirs, data)
            assert results(ours, data) == kernel, name
            assert kernel[2][: 8 * (len(SKC_TO) + 1)] == (1).to_bytes(8, "little") + bytes(8 * len(SKC_TO)), (
                name
            )


# --- bpf_sk_cgroup_id / bpf_sk_ancestor_cgroup_id of skb->sk -----------------------------------------------

CGROUP_STEPS = [
    f"call {int(HelperId.GET_CURRENT_CGROUP_ID)}",
    f"r1 = r7\ncall {int(HelperId.SK_CGROUP_ID)}",
    *[
        f"r1 = r7\nr2 = {level} ll\ncall {int(HelperId.SK_ANCESTOR_CGROUP_ID)}"
        for level in (0, 1, 2, 3, 50, -1)
    ],
]


def cgroup_program() -> str:
    lines = [
        "r7 = *(u64 *)(r1 + 168)",
        "r1 = 0",
        "*(u32 *)(r10 - 4) = r1",
        f"r1 = {MAP_REF} ll",
        "r2 = r10",
        "r2 += -4",
        "call 1",
        "if r0 == 0 goto out",
        "r8 = r0",
        "if r7 == 0 goto out",
    ]
    for i, step in enumerate(CGROUP_STEPS):
        lines += [step, f"*(u64 *)(r8 + {8 * i}) = r0"]
    lines += ["out:", "r0 = 1", "exit"]
    return "\n".join(lines)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_cgroup_of_the_dummy_socket(engine: str) -> None:
    """The dummy socket is in the caller's cgroup (CGROUP_SKB: the only type with these helpers)."""
    spec = CollectionSpec(
        programs={"prog": program(cgroup_program(), P.CGROUP_SKB)}, maps=MAPS, license="GPL"
    )
    with Collection(spec, engine=engine) as ours, KernelCollection(spec) as theirs:
        kernel = results(theirs, FRAMES["ipv6"])
        assert results(ours, FRAMES["ipv6"]) == kernel
    current, sk_id = struct.unpack_from("<QQ", kernel[2])
    assert sk_id == current != 0


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("flags", [0, 1])
def test_sk_assign_of_the_dummy_socket(engine: str, flags: int) -> None:
    """tc's bpf_sk_assign(skb, skb->sk, flags): -EINVAL for flags, else -EOPNOTSUPP (not at ingress)."""
    text = f"r6 = r1\nr2 = *(u64 *)(r1 + 168)\nr0 = 99\nif r2 == 0 goto out\nr1 = r6\nr3 = {flags}\ncall 124\nout:\nexit"
    spec = CollectionSpec(programs={"prog": program(text, P.SCHED_CLS)}, license="GPL")
    with Collection(spec, engine=engine) as ours, KernelCollection(spec) as theirs:
        for name, data in FRAMES.items():
            kernel = theirs.programs["prog"].test_run(data)
            mine = ours.programs["prog"].test_run(data)
            assert (mine.retval, mine.data_out) == (kernel.retval, kernel.data_out), name
            assert kernel.retval == (-22 if flags else -95) & 0xFFFFFFFF
