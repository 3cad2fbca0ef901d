"""Flow dissector, sk_lookup and netfilter test runs: the user-space runtime against Linux.

Each input goes through ``BPF_PROG_TEST_RUN`` on both sides (tests/data/progtypes/progtypes.o
and the realistic exotic_run.o); retval, data_out, ctx_out or the errno must agree, and so must
every map afterwards.

Both engines are called with the same arguments and the kernel layer's defaults: an sk_lookup
test run gets no ``data_out`` buffer (the kernel refuses one with ``EINVAL``) and a netfilter
test run answers ``ctx_out`` ``None`` (the kernel writes none), as the runtime does.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from ebpf.elf import load_collection_spec
from ebpf.errors import BPFError
from ebpf.runtime import Collection
from ebpf.spec import MapType

pytestmark = pytest.mark.kernel

DATA = Path(__file__).parent.parent / "data"
PROGTYPES = DATA / "progtypes" / "progtypes.o"
EXOTIC = DATA / "realistic" / "exotic_run.o"

Pair = tuple[Collection, Any]


def short_id(value: object) -> str | None:
    """Readable test ids for byte-string parameters."""
    if isinstance(value, bytes):
        return f"{len(value)}B-{value[:4].hex()}" if value else "empty"
    return None


@pytest.fixture(params=["interp", "py"])
def pair(request: pytest.FixtureRequest) -> Iterator[Callable[[Path], Pair]]:
    from ebpf.kernel.collection import Collection as KernelCollection

    made: list[Any] = []

    def load(path: Path) -> Pair:
        spec = load_collection_spec(path)
        ours = Collection(spec, engine=request.param)
        theirs = KernelCollection(spec)
        made.extend((ours, theirs))
        return ours, theirs

    yield load
    for obj in made:
        obj.close()


def outcome(run: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        res = run()
    except (BPFError, OSError) as err:
        return ("error", getattr(err, "errno", None))
    ctx = bytes(res.ctx_out) if res.ctx_out is not None else None
    return ("ok", res.retval, bytes(res.data_out), ctx)


def both(
    ours: Collection, theirs: Any, prog: str, data: bytes, ctx: bytes | None, **kw: Any
) -> tuple[Any, ...]:
    kernel = outcome(lambda: theirs.programs[prog].test_run(data, ctx_in=ctx, **kw))
    mine = outcome(lambda: ours.programs[prog].test_run(data, ctx_in=ctx, **kw))
    assert mine == kernel, f"{prog}: data {data.hex()} ctx {ctx.hex() if ctx else None} {kw}"
    return kernel


def maps_equal(ours: Collection, theirs: Any) -> None:
    for name in ours.maps:
        if ours.spec.maps[name].type in (MapType.PROG_ARRAY, MapType.SOCKMAP, MapType.SOCKHASH):
            continue  # values are programs / sockets (test_socket_map_syscalls: both empty)
        mine = {bytes(k): bytes(ours.maps[name].lookup(k)) for k in ours.maps[name].keys()}  # noqa: SIM118
        kernel = {bytes(k): bytes(theirs.maps[name].lookup(k)) for k in theirs.maps[name].keys()}  # noqa: SIM118
        assert mine == kernel, name


# ---------------------------------------------------------------- packets


def eth(proto: int, payload: bytes) -> bytes:
    return b"\x02" * 6 + b"\x04" * 6 + struct.pack(">H", proto) + payload


def ip4(proto: int, l4: bytes, frag: int = 0, ihl: int = 5) -> bytes:
    opts = bytes(4 * max(ihl - 5, 0))
    return (
        struct.pack(">BBHHHBBH", 0x40 | ihl, 0, 20 + len(opts) + len(l4), 1, frag, 64, proto, 0)
        + socket.inet_aton("10.0.0.1")
        + socket.inet_aton("10.0.0.2")
        + opts
        + l4
    )


def ip6(nexthdr: int, l4: bytes, label: int = 0) -> bytes:
    return (
        struct.pack(">IHBB", 0x60000000 | label, len(l4), nexthdr, 64)
        + socket.inet_pton(socket.AF_INET6, "fd00::1")
        + socket.inet_pton(socket.AF_INET6, "fd00::2")
        + l4
    )


L4 = struct.pack(">HH", 1234, 80) + bytes(16)
FRAMES = [
    eth(0x0800, ip4(6, L4)),
    eth(0x0800, ip4(17, L4, frag=0x2000)),
    eth(0x0800, ip4(17, L4, frag=0x0010)),
    eth(0x0800, ip4(1, bytes(8))),
    eth(0x0800, ip4(6, L4, ihl=15)),
    eth(0x0800, ip4(6, L4, ihl=3)),
    eth(0x0800, ip4(6, b"")),
    eth(0x86DD, ip6(17, L4, label=0x12345)),
    eth(0x86DD, ip6(6, L4)[:50]),
    eth(0x0806, bytes(28)),
    eth(0x0800, b""),
    bytes(14),
]


def mutated(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randrange(1, 4)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data[: rng.randrange(14, len(data) + 1)])


# ---------------------------------------------------------------- flow dissector


def test_flow_dissector(pair: Callable[[Path], Pair]) -> None:
    ours, theirs = pair(PROGTYPES)
    rng = random.Random("flow")
    frames = FRAMES + [mutated(rng, f) for f in FRAMES for _ in range(3)]
    for frame in frames:
        both(ours, theirs, "fd_direct", frame, None)
        maps_equal(ours, theirs)
        flags = rng.choice([1, 2, 4, 7, 0xFFFFFFFF])
        both(ours, theirs, "fd_direct", frame, bytes(48) + struct.pack("<I", flags) + bytes(4), repeat=2)
    for nhoff, thoff, ret in [(0, 0, 0), (14, 40, 1), (100, 200, 2), (30, 20, 3), (0xFFFF, 0xFFFE, 0x80)]:
        both(ours, theirs, "fd_clamp", eth(0x0800, struct.pack("<HHB", nhoff, thoff, ret) + bytes(40)), None)
        both(ours, theirs, "fd_clamp", eth(0x0800, struct.pack("<HHB", nhoff, thoff, ret)), None, repeat=3)
    both(ours, theirs, "fd_clamp", bytes(19), None)
    maps_equal(ours, theirs)


@pytest.mark.parametrize(
    ("data", "ctx", "kw"),
    [
        (bytes(13), None, {}),
        (bytes(4097), None, {}),
        (bytes(4096), None, {}),
        (bytes(14), b"\x01" + bytes(55), {}),
        (bytes(14), bytes(52) + b"\x01\0\0\0", {}),
        (bytes(14), bytes(56) + b"\x01", {}),
        (bytes(14), bytes(48) + b"\x01\0\0\0" + bytes(8), {}),
        (bytes(14), bytes(48) + b"\x01", {}),  # a short ctx_in is zero-extended
        (bytes(13), bytes(56) + b"\x01", {}),
        (bytes(14), None, {"flags": 1}),
        (FRAMES[0], None, {"data_size_out": 8}),  # ENOSPC
        (FRAMES[0], bytes(56), {"ctx_size_out": 8}),  # ENOSPC
    ],
    ids=short_id,
)
def test_flow_dissector_inputs(
    pair: Callable[[Path], Pair], data: bytes, ctx: bytes | None, kw: dict[str, int]
) -> None:
    ours, theirs = pair(PROGTYPES)
    both(ours, theirs, "fd_direct", data, ctx, **kw)
    maps_equal(ours, theirs)


def test_flow_dissector_tail_calls(pair: Callable[[Path], Pair]) -> None:
    ours, theirs = pair(PROGTYPES)
    ttl1 = bytearray(FRAMES[0])
    ttl1[14 + 8] = 1
    for frame in [*FRAMES, bytes(ttl1)]:
        both(ours, theirs, "fd_tail", frame, None, repeat=2)
        maps_equal(ours, theirs)


def test_realistic_dissect(pair: Callable[[Path], Pair]) -> None:
    """bpf_skb_load_bytes has no skb in a test run: the program drops every frame, as the kernel."""
    ours, theirs = pair(EXOTIC)
    for frame in FRAMES:
        both(ours, theirs, "dissect", frame, None)


# ---------------------------------------------------------------- sk_lookup


def sk_lookup(**fields: int | bytes) -> bytes:
    values: dict[str, Any] = {
        "sk": 0,
        "family": socket.AF_INET,
        "protocol": 6,
        "remote_ip4": 0,
        "remote_ip6": bytes(16),
        "remote_port": 0,
        "pad": 0,
        "local_ip4": 0,
        "local_ip6": bytes(16),
        "local_port": 0,
        "ingress_ifindex": 0,
    }
    values.update(fields)
    return struct.pack("<QIII16sHHI16sII4x", *values.values())


def random_lookup(rng: random.Random) -> bytes:
    return sk_lookup(
        family=rng.choice([socket.AF_INET, socket.AF_INET6, 0x10002, 0x1000A]),
        protocol=rng.choice([6, 17, 0x10006, 132]),
        remote_ip4=rng.getrandbits(32),
        remote_ip6=rng.randbytes(16),
        remote_port=rng.getrandbits(16),
        pad=rng.choice([0, rng.getrandbits(16)]),
        local_ip4=rng.getrandbits(32),
        local_ip6=rng.randbytes(16),
        local_port=rng.choice([7777, 80, 0, 65535, rng.getrandbits(16)]),
    )


def test_sk_lookup(pair: Callable[[Path], Pair]) -> None:
    ours, theirs = pair(PROGTYPES)
    rng = random.Random("sk_lookup")
    for _ in range(40):
        ctx = random_lookup(rng)
        both(ours, theirs, "skl_read", b"", ctx, repeat=rng.choice([1, 3]))
        maps_equal(ours, theirs)  # what the program saw of this context
        both(ours, theirs, "skl_read", b"", ctx[: rng.randrange(8, 73)])
    maps_equal(ours, theirs)
    ours, theirs = pair(EXOTIC)
    for port in (7777, 80, 7778):
        both(ours, theirs, "steer", b"", sk_lookup(local_port=port))
    maps_equal(ours, theirs)


def test_sk_lookup_socket_maps(pair: Callable[[Path], Pair]) -> None:
    """Empty SOCKMAP / SOCKHASH: lookups give NULL, so no socket is selected (the runtime's
    maps stay empty: it has no sockets)."""
    ours, theirs = pair(PROGTYPES)
    for port in range(8):
        for proto in (6, 17):
            both(ours, theirs, "skl_redir", b"", sk_lookup(local_port=port, protocol=proto), repeat=2)
    maps_equal(ours, theirs)


def _map_outcome(op: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        res = op()
    except KeyError:
        return ("ENOENT",)
    except (BPFError, OSError) as err:
        return ("error", getattr(err, "errno", None))
    return ("ok", res)


@pytest.mark.parametrize("mtype", ["SOCKMAP", "SOCKHASH"])
@pytest.mark.parametrize(
    ("key_size", "value_size", "flags"),
    [(4, 4, 0), (4, 8, 0), (8, 8, 0), (4, 16, 0), (4, 4, 1), (4, 4, 1 << 3), (4, 4, 1 << 4), (4, 4, 1 << 7)],
    ids=short_id,
)
def test_socket_map_syscalls(mtype: str, key_size: int, value_size: int, flags: int) -> None:
    with ExitStack() as stack:
        _socket_map_syscalls(stack, mtype, key_size, value_size, flags)


def _socket_map_syscalls(stack: ExitStack, mtype: str, key_size: int, value_size: int, flags: int) -> None:
    """Creation rules and the answers of an empty socket map, as the kernel's."""
    from ebpf.kernel.map import Map as KernelMap
    from ebpf.maps import create
    from ebpf.spec import MapSpec

    spec = MapSpec("s", MapType[mtype], key_size, value_size, 4, flags)
    results: list[tuple[Any, ...]] = []
    devnull = stack.enter_context(open(os.devnull, "rb"))  # noqa: SIM115
    sock = stack.enter_context(socket.socket())

    def fd(n: int) -> bytes:
        return n.to_bytes(value_size, "little")

    for make in (KernelMap.create, create):
        try:
            m = make(spec)
        except (BPFError, OSError) as err:
            results.append(("create", getattr(err, "errno", None)))
            continue
        with m:
            key, far = bytes(key_size), (9).to_bytes(key_size, "little")
            results.append(
                tuple(
                    _map_outcome(op)
                    for op in (
                        lambda: m.lookup(key),  # noqa: B023
                        lambda: m.lookup(far),  # noqa: B023
                        lambda: m.get_next_key(None),  # noqa: B023
                        lambda: m.get_next_key(key),  # noqa: B023
                        lambda: m.get_next_key((3).to_bytes(key_size, "little")),  # noqa: B023
                        lambda: m.delete(key),  # noqa: B023
                        lambda: m.delete(far),  # noqa: B023
                        lambda: m.update(key, fd(devnull.fileno())),  # noqa: B023  # not a socket
                        lambda: m.update(key, fd(999_999)),  # noqa: B023  # not open
                        lambda: m.update(key, fd(sock.fileno())),  # noqa: B023  # unconnected socket
                        lambda: m.update(key, b"\xff" * value_size),  # noqa: B023
                    )
                )
            )
    assert results[1] == results[0]


@pytest.mark.parametrize(
    ("data", "ctx", "kw"),
    [
        (b"", None, {}),
        (b"x", sk_lookup(), {}),
        (b"", sk_lookup(), {"data_size_out": 64}),
        (b"", sk_lookup(), {"flags": 1}),
        (b"", sk_lookup(sk=1), {}),
        (b"", sk_lookup(ingress_ifindex=1), {}),
        (b"", sk_lookup(local_port=65536), {}),
        (b"", sk_lookup(family=99), {}),
        (b"", sk_lookup(family=0x20000), {}),
        (b"", sk_lookup() + b"\0\0\0\1", {}),
        (b"", sk_lookup(local_port=0x10000, family=99), {}),
        (b"", sk_lookup(), {"ctx_size_out": 16}),  # ENOSPC
    ],
    ids=short_id,
)
def test_sk_lookup_inputs(
    pair: Callable[[Path], Pair], data: bytes, ctx: bytes | None, kw: dict[str, int]
) -> None:
    ours, theirs = pair(PROGTYPES)
    both(ours, theirs, "skl_read", data, ctx, **kw)
    maps_equal(ours, theirs)


# ---------------------------------------------------------------- netfilter


def nf_state(hook: int, pf: int = 2, tail: bytes = b"") -> bytes:
    return bytes([hook, pf]) + bytes(46) + tail


def test_netfilter(pair: Callable[[Path], Pair]) -> None:
    ours, theirs = pair(PROGTYPES)
    frames = [FRAMES[0], FRAMES[7], FRAMES[9], eth(0x86DD, ip6(6, b""))[:53], FRAMES[0][:33]]
    frames += [FRAMES[0] + bytes(n) for n in (60, 500, 1600, 3000)]  # kmalloc sizes 512 to 4096
    frames += [b"\xff" * 6 + FRAMES[0][6:], b"\x03" + FRAMES[0][1:]]  # pkt_type
    for frame in frames:
        for data in (frame, frame[14:]):
            both(ours, theirs, "nf_read", data, None)
            for hook in range(6):
                for pf in (2, 10, 3):
                    both(ours, theirs, "nf_read", data, nf_state(hook, pf))
                    maps_equal(ours, theirs)
                    both(ours, theirs, "nf_skb", data, nf_state(hook, pf))
                    maps_equal(ours, theirs)  # the skb and device the program read
    maps_equal(ours, theirs)
    for frame in [FRAMES[0], FRAMES[7], FRAMES[0][:34], FRAMES[0][:37], eth(0x0800, ip4(17, L4))]:
        for data, ctx in ((frame[14:], None), (frame, nf_state(0)), (frame, nf_state(1, 10))):
            both(ours, theirs, "nf_dynptr", data, ctx)  # bpf_dynptr_from_skb(ctx->skb) and slices
            maps_equal(ours, theirs)
    ours, theirs = pair(EXOTIC)
    for hook in range(5):
        both(ours, theirs, "nf_hook", FRAMES[0], nf_state(hook))
    maps_equal(ours, theirs)


@pytest.mark.parametrize(
    ("data", "ctx", "kw"),
    [
        (bytes(19), None, {}),
        (bytes(20), None, {}),
        (bytes(3712), None, {}),
        (bytes(3713), None, {}),
        (FRAMES[0], nf_state(3, tail=b"\x01"), {}),
        (FRAMES[0], nf_state(3)[:8] + b"\x01" + bytes(39), {}),  # in
        (FRAMES[0], nf_state(3)[:40] + b"\x01" + bytes(7), {}),  # okfn
        (FRAMES[0], nf_state(3)[:2], {}),
        (FRAMES[0], b"\x01", {}),  # a one-byte ctx_in: pf 0
        (FRAMES[0], None, {"flags": 1}),
        (FRAMES[0], None, {"repeat": 4}),
    ],
    ids=short_id,
)
def test_netfilter_inputs(
    pair: Callable[[Path], Pair], data: bytes, ctx: bytes | None, kw: dict[str, int]
) -> None:
    ours, theirs = pair(PROGTYPES)
    both(ours, theirs, "nf_read", data, ctx, **kw)
    maps_equal(ours, theirs)


# ---------------------------------------------------------------- types without a test run


@pytest.mark.parametrize(
    "ptype",
    ["KPROBE", "TRACEPOINT", "PERF_EVENT", "CGROUP_SOCK", "SOCK_OPS", "SK_SKB", "SK_MSG", "LWT_SEG6LOCAL"],
    ids=short_id,
)
def test_types_without_test_run(ptype: str) -> None:
    """The kernel answers ENOTSUPP (524) for these types; the runtime raises NotSupportedError."""
    from ebpf.errors import NotSupportedError
    from ebpf.isa.asm import assemble
    from ebpf.kernel.program import Program as KernelProgram
    from ebpf.spec import CollectionSpec, ProgramSpec, ProgramType

    t = ProgramType[ptype]
    insns = assemble("r0 = 1\nexit")
    with KernelProgram.load(insns, t) as prog, pytest.raises(BPFError) as info:
        prog.test_run(bytes(64))
    assert getattr(info.value, "errno", None) == 524  # ENOTSUPP
    spec = CollectionSpec(programs={"p": ProgramSpec("p", "x", t, insns, license="GPL")}, license="GPL")
    with Collection(spec) as ours, pytest.raises(NotSupportedError):
        ours.programs["p"].test_run(bytes(64))


def test_object_is_the_one_build_sh_makes() -> None:
    """tests/data/progtypes/progtypes.o is what build.sh compiles from progtypes.c today."""
    import shutil
    import subprocess

    if shutil.which("clang-19") is None:
        pytest.skip("clang-19 is not installed")
    done = subprocess.run(
        ["sh", str(DATA / "progtypes" / "build.sh"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, PYTHON=sys.executable),  # the dumper of vmlinux.h is this package
    )
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------- trace_pipe flags

TRACE = Path("/sys/kernel/tracing/trace")


@pytest.mark.parametrize(
    ("ptype", "attach", "data", "ctx"),
    [
        ("FLOW_DISSECTOR", None, bytes(14), None),
        ("SK_LOOKUP", "SK_LOOKUP", b"", sk_lookup(local_port=80)),
        ("NETFILTER", "NETFILTER", bytes(40), None),
    ],
    ids=["flow_dissector", "sk_lookup", "netfilter"],
)
def test_trace_printk_flags(ptype: str, attach: str | None, data: bytes, ctx: bytes | None) -> None:
    """bpf_trace_printk's latency flags in a test run (preemption, BH, migration) as the kernel's."""
    from ebpf.isa.asm import assemble
    from ebpf.kernel.program import Program as KernelProgram
    from ebpf.spec import AttachType, CollectionSpec, ProgramSpec, ProgramType

    if not TRACE.exists():
        pytest.skip("no tracefs at /sys/kernel/tracing")
    tag = random.getrandbits(31)
    fmt = int.from_bytes(b"ptq%x\0\0\0", "little")
    insns = assemble(
        f"r2 = {fmt} ll\n*(u64 *)(r10 - 8) = r2\nr1 = r10\nr1 += -8\nr2 = 8\nr3 = {tag}\ncall 6\nr0 = 1\nexit"
    )
    t = ProgramType[ptype]
    at = AttachType[attach] if attach else None
    with KernelProgram.load(insns, t, expected_attach_type=at) as prog:
        prog.test_run(data, ctx_in=ctx)
    marker = f"ptq{tag:x}"
    kernel = [
        line.split()[2] for line in TRACE.read_text(errors="replace").splitlines() if line.endswith(marker)
    ]
    spec = CollectionSpec(
        programs={"p": ProgramSpec("p", "x", t, insns, attach_type=at, license="GPL")}, license="GPL"
    )
    with Collection(spec) as ours:
        ours.programs["p"].test_run(data, ctx_in=ctx)
        mine = [line.split()[2] for line in ours.env.trace if line.rstrip().endswith(marker)]
    assert kernel and mine == kernel[-1:]


# ---------------------------------------------------------------- the helper table for these types


@pytest.mark.parametrize("ptype", ["FLOW_DISSECTOR", "SK_LOOKUP", "NETFILTER"])
def test_helper_table_matches_the_kernel(ptype: str) -> None:
    """ebpf.helpers.PROTOTYPES says which helpers these types may call, as the verifier does
    (tests/vm/test_helpers_proto.py checks the types that load without an attach type)."""
    from ebpf.errors import VerifierError
    from ebpf.helpers import PROTOTYPES
    from ebpf.isa.asm import assemble
    from ebpf.kernel.program import Program as KernelProgram
    from ebpf.spec import AttachType, ProgramType

    t = ProgramType[ptype]
    attach = None if t == ProgramType.FLOW_DISSECTOR else AttachType[ptype]
    wrong = []
    for hid, proto in sorted(PROTOTYPES.items()):
        try:
            with KernelProgram.load(
                assemble(f"r0 = 0\ncall {int(hid)}\nr0 = 0\nexit"), t, expected_attach_type=attach
            ):
                log = ""
        except VerifierError as err:
            log = "\n".join(err.log or (str(err),))
        refused = "unknown func" in log or "cannot use helper" in log
        if refused == proto.allowed_in(t):
            wrong.append(f"{proto.name}: the kernel {'refuses' if refused else 'allows'} it")
    assert not wrong
