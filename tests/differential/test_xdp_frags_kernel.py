"""Multi-buffer XDP test runs and ctx_in device checks: the runtime against ``BPF_PROG_TEST_RUN``.

Random packet sizes (up to the 17-fragment limit and past it), random splits of the linear
part (``xdp_md.data_end``) with metadata, and random sequences of the helpers that see
fragments (``bpf_xdp_get_buff_len``, ``bpf_xdp_load_bytes``, ``bpf_xdp_store_bytes``,
``bpf_xdp_adjust_tail``) or only the linear part (``bpf_xdp_adjust_head``,
``bpf_xdp_adjust_meta``, direct ``data``/``data_end`` loads): the same retval, ``data_out``,
``ctx_out`` (or the same errno) on both sides, for plain and ``xdp.frags`` programs.

Then the devices a ``ctx_in`` names: ``xdp_md.ingress_ifindex``/``rx_queue_index`` and
``__sk_buff.ifindex``, checked against this host's devices as the kernel checks them.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ebpf.errors import SyscallError, TestRunError
from ebpf.isa.asm import assemble
from ebpf.spec import ProgramType
from ebpf.testrun import TestRunResult
from ebpf.vm import ENGINES
from ebpf.vm._helpers_callback import engine_callback
from ebpf.vm.context import MAX_SKB_FRAGS, XDP_MAX_LINEAR, SkbInput, XdpInput, host_devices
from ebpf.vm.helpers import RunEnv, runtime_helpers
from ebpf.vm.memory import HostBuffer

pytestmark = pytest.mark.kernel

XDP = ProgramType.XDP
BPF_F_XDP_HAS_FRAGS = 1 << 5
BUF = 64  # stack bytes the load/store helpers use
PAGE_SIZE = 4096  # one fragment
MAX_SIZE = XDP_MAX_LINEAR + MAX_SKB_FRAGS * PAGE_SIZE


def md(data: int, data_end: int, ifindex: int = 0, queue: int = 0) -> bytes:
    return struct.pack("<6I", data, data_end, 0, ifindex, queue, 0)


# --- program generation ---------------------------------------------------------------------------

HELPER = {"head": 44, "tail": 65, "meta": 54}


@dataclass(frozen=True)
class Op:
    kind: str  # len | head | tail | meta | load | store | ptrs
    a: int = 0
    b: int = 0

    def text(self) -> str:
        mix = "r9 *= 31\nr9 += r0\n"
        if self.kind == "len":
            return "r1 = r6\ncall 188\n" + mix
        if self.kind in HELPER:
            return f"r1 = r6\nr2 = {self.a}\ncall {HELPER[self.kind]}\n" + mix
        if self.kind in ("load", "store"):
            call = 189 if self.kind == "load" else 190
            text = f"r1 = r6\nr2 = {self.a}\nr3 = r10\nr3 += -{BUF}\nr4 = {self.b}\ncall {call}\n" + mix
            if self.kind == "load":  # what was loaded flows into r0
                last = BUF - 8 * ((self.b - 1) // 8)  # the word holding the last loaded byte
                text += f"r0 = *(u64 *)(r10 - {BUF})\n" + mix + f"r0 = *(u64 *)(r10 - {last})\n" + mix
            return text
        assert self.kind == "ptrs"
        return "r2 = *(u32 *)(r6 + 0)\nr3 = *(u32 *)(r6 + 4)\nr0 = r3\nr0 -= r2\n" + mix


def program(ops: list[Op]) -> str:
    fill = "".join(f"*(u64 *)(r10 - {BUF - i * 8}) = r1\n" for i in range(BUF // 8))
    body = "".join(op.text() for op in ops)
    return f"r6 = r1\nr9 = 0\nr1 = 0x0123456789abcdef ll\n{fill}{body}r0 = r9\nexit\n"


def offsets(size: int) -> st.SearchStrategy[int]:
    """Offsets near the interesting places: the start, page/fragment edges, the end."""
    edges = [0, 14, XDP_MAX_LINEAR, size] + [XDP_MAX_LINEAR + k * PAGE_SIZE for k in range(1, 4)]
    return st.one_of(
        st.integers(0, max(size + 8, 1)),
        st.builds(lambda e, d: max(0, e + d), st.sampled_from(edges), st.integers(-70, 70)),
        st.sampled_from([0xFFFF, 0x10000]),
    )


@st.composite
def ops(draw: st.DrawFn, size: int) -> list[Op]:
    out = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["len", "head", "tail", "tail", "meta", "load", "load", "store", "ptrs"]))
        if kind in ("load", "store"):
            out.append(Op(kind, draw(offsets(size)), draw(st.integers(1, BUF))))
        elif kind == "tail":
            delta = draw(
                st.one_of(
                    st.integers(-200, 200),
                    st.integers(-size - 20, -size + 40),
                    st.sampled_from([-PAGE_SIZE, PAGE_SIZE, 4000, -4096 - 14, 3520]),
                    st.integers(-PAGE_SIZE - 100, PAGE_SIZE + 100),
                )
            )
            out.append(Op(kind, delta))
        elif kind == "head":
            out.append(Op(kind, draw(st.integers(-260, 80))))
        elif kind == "meta":
            out.append(Op(kind, draw(st.sampled_from([-8, -4, -3, 0, 4, 8, -32]))))
        else:
            out.append(Op(kind))
    return out


@st.composite
def cases(draw: st.DrawFn) -> tuple[bytes, bytes | None, list[Op], int]:
    size = draw(
        st.one_of(
            st.integers(14, 300),
            st.integers(XDP_MAX_LINEAR - 20, XDP_MAX_LINEAR + 2 * PAGE_SIZE + 20),
            st.integers(MAX_SIZE - 300, MAX_SIZE + 2),
        )
    )
    data = draw(st.binary(min_size=min(size, 64), max_size=min(size, 64))) * (size // 64 + 1)
    data = data[:size] if len(data) >= size else data + bytes(size - len(data))
    ctx: bytes | None = None
    if draw(st.integers(0, 4)):
        meta = draw(st.sampled_from([0, 0, 4, 8, 32]))
        meta = min(meta, max(0, size - 14) // 4 * 4)
        linear = draw(
            st.one_of(
                st.integers(meta, min(size, meta + 64)),
                st.integers(meta, size),
                st.just(size),
                st.integers(min(max(meta, XDP_MAX_LINEAR - 10), size), min(size, XDP_MAX_LINEAR + meta + 10)),
            )
        )
        devices = sorted(host_devices())
        ifindex = draw(st.sampled_from([0, 0, 1, *devices]))
        ctx = md(meta, linear, ifindex)
    flags = draw(st.sampled_from([0, BPF_F_XDP_HAS_FRAGS]))
    return data, ctx, draw(ops(len(data))), flags


# --- running on both sides ------------------------------------------------------------------------


def kernel_run(text: str, data: bytes, ctx: bytes | None, flags: int, repeat: int = 1) -> TestRunResult | int:
    from ebpf.kernel.program import Program

    with Program.load(assemble(text), XDP, prog_flags=flags) as prog:
        try:
            return prog.test_run(data, ctx_in=ctx, repeat=repeat)
        except SyscallError as err:
            return err.errno


ENGINE_NAMES = ("interp", "py")
HELPERS = runtime_helpers()


def ours_run(text: str, data: bytes, ctx: bytes | None, engine: str, repeat: int = 1) -> TestRunResult | int:
    """The runtime's test run: the kernel's input checks against this host's devices, then
    ``repeat`` runs on the same packet (the kernel does not restore it between them)."""
    env = RunEnv(deterministic=True, program_type=XDP, devices=host_devices())
    prog = assemble(text)
    code = env.memory.map_buffer("code", HostBuffer(8 * len(prog.encode()) // 8 + 8), writable=False)
    eng = ENGINES[engine](prog, helpers=HELPERS, memory=env.memory, code_base=code.start)
    env.callback = engine_callback(eng, env)
    try:
        inp = XdpInput.from_test_run(data, ctx, devices=env.devices)
    except TestRunError as err:
        assert err.errno is not None
        return err.errno
    mapped = inp.map(env.memory)
    try:
        r0 = 0
        for _ in range(repeat):
            env.begin_run(context=mapped)
            r0, _ = eng.execute(mapped, env, eng.max_insns)
        return TestRunResult(r0 & 0xFFFFFFFF, mapped.data(), mapped.ctx_out() if ctx else None, 0)
    finally:
        for region in mapped.regions:
            env.memory.unmap(region)


def outcome(res: TestRunResult | int) -> tuple[object, ...]:
    if isinstance(res, int):
        return ("errno", res)
    ctx_out = res.ctx_out[:24] if res.ctx_out is not None else None  # the kernel's buffer is 1 KiB
    return (res.retval, len(res.data_out), res.data_out, ctx_out)


def check(data: bytes, ctx: bytes | None, op_list: list[Op], flags: int, engine: str = "interp") -> None:
    text = program(op_list)
    kernel = outcome(kernel_run(text, data, ctx, flags))
    ours = outcome(ours_run(text, data, ctx, engine))
    where = f"{len(data)}-byte packet, ctx {ctx.hex() if ctx else None}, ops {op_list}"
    assert ours[:2] == kernel[:2], where
    assert ours == kernel, where


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(case=cases(), engine=st.sampled_from(ENGINE_NAMES))
# the frame grows by a page of fragment and the headroom: the kernel layer's default data_out
# buffer must hold it (it was short by one byte: ENOSPC)
@example(case=(bytes(3521), None, [Op("tail", 4000, 0), Op("head", -97, 0)], 0), engine="interp")
def test_random_multibuffer_runs_match_the_kernel(
    case: tuple[bytes, bytes | None, list[Op], int], engine: str
) -> None:
    data, ctx, op_list, flags = case
    check(data, ctx, op_list, flags, engine)


PKT = bytes(range(256)) * 40  # 10240 bytes: linear part + 2 fragments without ctx_in

FIXED: list[tuple[str, bytes, bytes | None, list[Op]]] = [
    ("no ctx, three pieces", PKT, None, [Op("len"), Op("ptrs")]),
    ("linear 0", PKT[:60], md(0, 0), [Op("len"), Op("load", 0, 8), Op("tail", -46), Op("len")]),
    ("linear 13", PKT[:14], md(0, 13), [Op("len"), Op("head", 0), Op("tail", -1)]),
    ("load across linear/frag", PKT, md(0, 100), [Op("load", 90, 20), Op("store", 95, 10)]),
    ("load across frag/frag", PKT, None, [Op("load", XDP_MAX_LINEAR + PAGE_SIZE - 5, 16)]),
    ("store past the end", PKT[:200], md(0, 100), [Op("store", 190, 11), Op("store", 190, 10)]),
    ("grow last frag to the page", PKT[:3600], None, [Op("tail", PAGE_SIZE - 80), Op("tail", 1)]),
    ("grow by a page", PKT[:3600], None, [Op("tail", PAGE_SIZE - 79)]),
    ("shrink into linear", PKT[:200], md(0, 100), [Op("tail", -150), Op("ptrs"), Op("len")]),
    ("shrink a whole frag", PKT, None, [Op("tail", -(10240 - 3520 - PAGE_SIZE)), Op("len")]),
    ("shrink too far", PKT[:200], md(8, 100), [Op("tail", -179), Op("tail", -178), Op("len")]),
    ("shrink INT_MIN", PKT[:200], md(0, 100), [Op("tail", -(1 << 31)), Op("len")]),
    ("head on linear only", PKT[:200], md(0, 20), [Op("head", 6), Op("head", 7), Op("len")]),
    ("meta with frags", PKT[:200], md(8, 40), [Op("meta", -8), Op("len"), Op("ptrs")]),
    ("17 frags", bytes(MAX_SIZE), None, [Op("len"), Op("tail", 1)]),
    ("18 frags", bytes(MAX_SIZE + 1), None, [Op("len")]),
    (
        "18 frags after a short linear part",
        bytes(100 + MAX_SKB_FRAGS * PAGE_SIZE + 1),
        md(0, 100),
        [Op("len")],
    ),
    ("data_end clamped", PKT[:5000], md(0, 4000), [Op("ptrs"), Op("len")]),
    ("data_end clamped with meta", PKT[:5000], md(8, 3529), [Op("ptrs"), Op("len")]),
    ("short after meta", PKT[:20], md(8, 20), [Op("len")]),
    ("missing device before ENOMEM", bytes(MAX_SIZE + 1), md(0, 100, 0x7FFF_FFF0), [Op("len")]),
]


@pytest.mark.parametrize("flags", [0, BPF_F_XDP_HAS_FRAGS], ids=["plain", "frags"])
@pytest.mark.parametrize(("name", "data", "ctx", "op_list"), FIXED, ids=[c[0] for c in FIXED])
def test_fixed_multibuffer_runs_match_the_kernel(
    name: str, data: bytes, ctx: bytes | None, op_list: list[Op], flags: int
) -> None:
    check(data, ctx, op_list, flags)


@pytest.mark.parametrize("delta", [1000, -1000])
def test_repeated_runs_keep_the_packet(delta: int) -> None:
    """``repeat``: every run sees the packet the previous one left (fragments grown or freed)."""
    text = program([Op("tail", delta), Op("len")])
    kernel = outcome(kernel_run(text, PKT, md(0, 100), BPF_F_XDP_HAS_FRAGS, repeat=5))
    assert outcome(ours_run(text, PKT, md(0, 100), "interp", repeat=5)) == kernel


@pytest.mark.parametrize("delta", [0, 1, -1, -50])
def test_grow_needs_a_frag_size(delta: int) -> None:
    """Devices other than loopback have no fragment size on their rx queue: growing a
    multi-buffer packet is -EOPNOTSUPP there (shrinking works)."""
    others = sorted(set(host_devices()) - {1})
    if not others:
        pytest.skip("no device besides loopback")
    check(PKT[:200], md(0, 100, others[0]), [Op("tail", delta), Op("len")], BPF_F_XDP_HAS_FRAGS)


# --- ctx_in device checks: xdp_md.ingress_ifindex / rx_queue_index, __sk_buff.ifindex -------------

MISSING = 0x7FFF_FFF0  # no such ifindex


def device_cases() -> list[tuple[int, int]]:
    """(ifindex, rx queue) pairs: none, loopback, every device of this host, queues past the
    last, a missing device."""
    cases = [(0, 0), (0, 1), (MISSING, 0)]
    for ifindex, dev in sorted(host_devices().items()):
        cases += [(ifindex, 0), (ifindex, dev.rx_queues - 1), (ifindex, dev.rx_queues)]
    return sorted(set(cases))


@pytest.mark.parametrize(("ifindex", "queue"), device_cases())
def test_xdp_ctx_devices_match_the_kernel(ifindex: int, queue: int) -> None:
    """The device reaches the program (``ingress_ifindex``/``rx_queue_index`` in r0) or the
    run is refused with the kernel's errno."""
    text = "r2 = *(u32 *)(r1 + 12)\nr3 = *(u32 *)(r1 + 16)\nr2 <<= 8\nr2 |= r3\nr0 = r2\nexit\n"
    data = PKT[:64]
    ctx = md(0, 64, ifindex, queue)
    assert outcome(ours_run(text, data, ctx, "interp")) == outcome(kernel_run(text, data, ctx, 0))


SKB_PROG = """
r2 = *(u32 *)(r1 + 40)
r3 = *(u32 *)(r1 + 4)
r4 = *(u32 *)(r1 + 36)
r0 = r2
r0 <<= 8
r0 |= r3
r0 <<= 8
r0 |= r4
exit
"""


def sk_buff(ifindex: int = 0, ingress: int = 0, tail: bytes = b"", bad_field: bool = False) -> bytes:
    ctx = bytearray(192)
    struct.pack_into("<II", ctx, 36, ingress, ifindex)
    if bad_field:
        ctx[0] = 1  # __sk_buff.len: not settable (EINVAL)
    return bytes(ctx) + tail


def skb_frame(dest: bytes, ethertype: bytes = b"\x88\xb5", body: bytes = bytes(40)) -> bytes:
    return dest + bytes.fromhex("021122334455") + ethertype + body


def skb_cases() -> list[tuple[str, bytes, bytes]]:
    cases = [
        ("lo 0", skb_frame(bytes(6)), sk_buff(0)),
        ("lo 1", skb_frame(b"\xff" * 6), sk_buff(1)),
        ("missing", skb_frame(bytes(6)), sk_buff(100)),
        ("missing 65536", skb_frame(bytes(6)), sk_buff(65536)),
        ("E2BIG before ENODEV", skb_frame(bytes(6)), sk_buff(100, tail=b"\x01")),
        ("ENODEV before bad fields", skb_frame(bytes(6)), sk_buff(100, bad_field=True)),
        ("ENODEV before a short IPv4 header", skb_frame(bytes(6), b"\x08\x00", bytes(5)), sk_buff(100)),
        ("short data before ENODEV", bytes(13), sk_buff(100)),
        ("ingress_ifindex unchecked", skb_frame(bytes(6)), sk_buff(0, ingress=100)),
    ]
    for ifindex in sorted(set(host_devices()) - {1}):
        try:
            name = socket.if_indextoname(ifindex)
            with open(f"/sys/class/net/{name}/address") as f:
                mac = bytes.fromhex(f.read().strip().replace(":", ""))
        except (OSError, ValueError):
            continue
        for what, dest in (
            ("own", mac),
            ("other", bytes(6)),
            ("broadcast", b"\xff" * 6),
            ("multicast", b"\x01" * 6),
        ):
            cases.append((f"{name} {what}", skb_frame(dest), sk_buff(ifindex)))
    return cases


SKB_CASES = skb_cases()


@pytest.mark.parametrize(
    "prog_type", [ProgramType.SCHED_CLS, ProgramType.SOCKET_FILTER], ids=["tc", "socket"]
)
@pytest.mark.parametrize(("name", "data", "ctx"), SKB_CASES, ids=[c[0] for c in SKB_CASES])
def test_skb_ctx_ifindex_matches_the_kernel(
    name: str, data: bytes, ctx: bytes, prog_type: ProgramType
) -> None:
    """``__sk_buff.ifindex``: 0/1 are loopback, another device receives the packet (its
    ifindex reaches the program, ``pkt_type`` is decided against its addresses), a missing
    one is ``ENODEV`` after the size and ``E2BIG`` checks and before the field checks."""
    from ebpf.kernel.program import Program

    with Program.load(assemble(SKB_PROG), prog_type) as prog:
        try:
            res = prog.test_run(data, ctx_in=ctx)
            kernel: tuple[object, ...] = (res.retval, res.data_out, (res.ctx_out or b"")[:192])
        except SyscallError as err:
            kernel = ("errno", err.errno)
    env = RunEnv(deterministic=True, program_type=prog_type, devices=host_devices())
    try:
        inp = SkbInput.from_test_run(data, prog_type, ctx, devices=env.devices)
    except TestRunError as err:
        assert ("errno", err.errno) == kernel
        return
    code = env.memory.map_buffer("code", HostBuffer(4096), writable=False)
    eng = ENGINES["interp"](assemble(SKB_PROG), helpers=HELPERS, memory=env.memory, code_base=code.start)
    mapped = inp.map(env.memory)
    env.begin_run(context=mapped)
    r0, _ = eng.execute(mapped, env, eng.max_insns)
    assert (r0 & 0xFFFFFFFF, mapped.data(), mapped.ctx_out()) == kernel


# --- xdp.frags and map-entry XDP programs ---------------------------------------------------------


@pytest.mark.parametrize("name", ["xdp_devmap", "xdp_cpumap", "xdp_frags_devmap"])
def test_map_entry_programs_have_no_test_run(name: str) -> None:
    """XDP programs for devmap/cpumap entries (``xdp/devmap``, ``xdp.frags/devmap``,
    ``xdp/cpumap``) cannot be test-run (``EINVAL``); plain and ``xdp.frags`` ones can (above)."""
    from ebpf.elf import load_collection_spec
    from ebpf.kernel.program import Program
    from ebpf.runtime import Collection

    spec = load_collection_spec(Path(__file__).parent.parent / "data" / "elf" / "sections.o")
    pspec = spec.programs[name]
    with Program.load(
        pspec.instructions,
        XDP,
        expected_attach_type=None if pspec.attach_type is None else int(pspec.attach_type),
        prog_flags=pspec.flags,
    ) as prog:
        try:
            kernel: tuple[object, ...] = ("ok", prog.test_run(PKT[:64]).retval)
        except SyscallError as err:
            kernel = ("errno", err.errno)
    with Collection(spec, deterministic=True) as coll:
        try:
            ours: tuple[object, ...] = ("ok", coll.programs[name].test_run(PKT[:64]).retval)
        except TestRunError as err:
            ours = ("errno", err.errno)
    assert ours == kernel
