"""``bpf_perf_event_output`` with ``BPF_F_CTXLEN_MASK`` against Linux 6.18: the packet bytes an
XDP (also multi-buffer: linear part + frags) or skb program appends to its sample.

Each program outputs 8 bytes of its stack plus ``(flags & BPF_F_CTXLEN_MASK) >> 32`` packet
bytes to a perf event array with ``BPF_F_CURRENT_CPU`` and returns the helper's result. The
kernel's samples are read with :class:`ebpf.events.perf.PerfBuffer` (a buffer on every CPU),
the runtime's from its :class:`~ebpf.maps.perf.PerfEventArrayMap`; retval, data_out and the
samples (their payload and size; the padding after a sample is stale ring bytes in the
kernel) must match on both engines.
"""

from __future__ import annotations

import struct

import pytest

from ebpf.errors import VMError
from ebpf.helpers import HelperId
from ebpf.isa import assemble
from ebpf.maps import create
from ebpf.maps.perf import PerfEventArrayMap
from ebpf.spec import MapSpec, MapType, ProgramType
from ebpf.vm.context import XdpInput
from ebpf.vm.helpers import RunEnv
from vm._helper_util import ENGINE_NAMES, make_engine, user_test_run

pytestmark = pytest.mark.kernel

XDP, TC = ProgramType.XDP, ProgramType.SCHED_CLS
BPF_F_XDP_HAS_FRAGS = 1 << 5
CURRENT_CPU = 0xFFFFFFFF
STAMP = 0x1122334455667788
PKT = bytes((i * 7 + 3) & 0xFF for i in range(9000))


def program(ref: str, flags: int, helper: int = HelperId.PERF_EVENT_OUTPUT) -> str:
    return f"""
        r6 = r1
        r1 = {STAMP} ll
        *(u64 *)(r10 - 8) = r1
        r1 = r6
        r2 = {ref} ll
        r3 = {flags} ll
        r4 = r10
        r4 += -8
        r5 = 8
        call {int(helper)}
        exit
    """


def md(data_end: int) -> bytes:
    return struct.pack("<6I", 0, data_end, 0, 0, 0, 0)


def kernel_side(
    prog_type: ProgramType, flags: int, data: bytes, ctx: bytes | None
) -> tuple[object, list[bytes]]:
    from ebpf.events.perf import PerfBuffer, online_cpus
    from ebpf.kernel import Map as KernelMap
    from ebpf.kernel.program import Program

    samples: list[bytes] = []
    spec = MapSpec("events", MapType.PERF_EVENT_ARRAY, 4, 4, max(online_cpus()) + 1)
    with KernelMap.create(spec) as km, PerfBuffer(km.fd, lambda cpu, raw: samples.append(raw)) as pb:
        text = program(f"map_fd({km.fd})", flags)
        prog_flags = BPF_F_XDP_HAS_FRAGS if prog_type == XDP else 0
        with Program.load(assemble(text), prog_type, prog_flags=prog_flags) as prog:
            res = prog.test_run(data, ctx_in=ctx)
        pb.consume()
    return (res.retval, res.data_out), samples


def runtime_side(
    prog_type: ProgramType, flags: int, data: bytes, ctx: bytes | None, engine: str, helper: int
) -> tuple[object, list[bytes]]:
    env = RunEnv(deterministic=True)
    pa = create(MapSpec("events", MapType.PERF_EVENT_ARRAY, 4, 4, 1), env.memory)
    assert isinstance(pa, PerfEventArrayMap)
    pa.open_buffers()
    handle = env.add_map(pa)
    res = user_test_run(program(str(handle), flags, helper), prog_type, data, ctx, engine=engine, env=env)
    return (res.retval, res.data_out), pa.read(0)


def same(kernel: tuple[object, list[bytes]], ours: tuple[object, list[bytes]], size: int) -> None:
    assert ours[0] == kernel[0]
    assert len(ours[1]) == len(kernel[1])
    for o, k in zip(ours[1], kernel[1], strict=True):
        assert len(o) == len(k)  # u32 size + data padded to 8, less the u32
        assert o[:size] == k[:size]


def ctxlen(n: int) -> int:
    return (n << 32) | CURRENT_CPU


XDP_CASES = {
    "linear_none": (ctxlen(0), PKT[:100], None),
    "linear_part": (ctxlen(40), PKT[:100], None),
    "linear_all": (ctxlen(100), PKT[:100], None),
    "linear_past_end": (ctxlen(101), PKT[:100], None),
    "short_data_end_into_frag": (ctxlen(150), PKT[:200], md(100)),
    "short_data_end_all": (ctxlen(200), PKT[:200], md(100)),
    "short_data_end_past": (ctxlen(201), PKT[:200], md(100)),
    "big_frame_linear_only": (ctxlen(3000), PKT[:9000], None),
    "big_frame_across_frags": (ctxlen(8000), PKT[:9000], None),
    "big_frame_all": (ctxlen(9000), PKT[:9000], None),
    "big_frame_past": (ctxlen(9001), PKT[:9000], None),
    "ctxlen_max": (ctxlen(0xFFFFF), PKT[:9000], None),
    "bad_flag": ((1 << 52) | CURRENT_CPU, PKT[:100], None),
}


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("name", list(XDP_CASES))
def test_xdp_samples_match_the_kernel(name: str, engine: str) -> None:
    flags, data, ctx = XDP_CASES[name]
    size = 8 + min((flags >> 32) & 0xFFFFF, len(data))
    kernel = kernel_side(XDP, flags, data, ctx)
    same(kernel, runtime_side(XDP, flags, data, ctx, engine, HelperId.PERF_EVENT_OUTPUT), size)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("prog_type", [TC, ProgramType.SOCKET_FILTER], ids=lambda t: t.name)
@pytest.mark.parametrize("n", [0, 14, 60, 66, 67, 80, 81])
def test_skb_samples_match_the_kernel(n: int, prog_type: ProgramType, engine: str) -> None:
    """skb->len bytes from skb->data: the whole frame for tc, from the IP header for a socket
    filter (66 bytes here)."""
    data = PKT[:12] + b"\x08\x00\x45" + PKT[15:80]
    kernel = kernel_side(prog_type, ctxlen(n), data, None)
    ours = runtime_side(prog_type, ctxlen(n), data, None, engine, HelperId.PERF_EVENT_OUTPUT)
    same(kernel, ours, 8 + min(n, 80))


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_xdp_output_and_skb_output_take_their_own_packet(engine: str) -> None:
    """``bpf_xdp_output`` / ``bpf_skb_output`` (tracing helpers in the kernel: no test run here
    can call them) behave as the XDP/skb variant of ``bpf_perf_event_output`` on a frame or
    skb of this runtime, and refuse any other pointer."""
    frame = PKT[:9000]
    for prog_type, helper, data in ((XDP, HelperId.XDP_OUTPUT, frame), (TC, HelperId.SKB_OUTPUT, PKT[:80])):
        for n in (0, 50, len(data), len(data) + 1):
            ours = runtime_side(prog_type, ctxlen(n), data, None, engine, helper)
            as_perf = runtime_side(prog_type, ctxlen(n), data, None, engine, HelperId.PERF_EVENT_OUTPUT)
            assert ours == as_perf
        assert ours[0] == (((-14) & 0xFFFFFFFF), data)  # -EFAULT past the end
    env = RunEnv(deterministic=True, program_type=XDP)
    pa = create(MapSpec("events", MapType.PERF_EVENT_ARRAY, 4, 4, 1), env.memory)
    handle = env.add_map(pa)
    text = program(str(handle), CURRENT_CPU, HelperId.SKB_OUTPUT)
    eng = make_engine(text, env, engine)
    mapped = XdpInput.from_test_run(PKT[:100], None).map(env.memory)
    env.begin_run(context=mapped)
    with pytest.raises(VMError, match="bpf_skb_output"):
        eng.execute(mapped, env, eng.max_insns)
