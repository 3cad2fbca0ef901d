"""Test runs reuse one mapping per program (``MappedInput.rebind``): results as with fresh ones."""

from __future__ import annotations

import struct

import pytest

from ebpf.runtime import Collection
from ebpf.spec import CollectionSpec, ProgramType
from ebpf.vm.context import Input, MappedInput, RawInput, SkbInput, SkbMapped, XdpInput, XdpMapped
from ebpf.vm.memory import Memory

from ._build import program

ENGINES = ["interp", "py"]
TC = ProgramType.SCHED_CLS


def frame(size: int, seed: int = 0) -> bytes:
    eth = b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", 0x88B5)  # a local experimental type
    return eth + bytes((seed + i) & 0xFF for i in range(size - len(eth)))


def md(data_end: int, meta: int = 0) -> bytes:
    return struct.pack("<6I", meta, data_end, 0, 1, 0, 0)


# Moves data 16 bytes back into the headroom and marks it, grows the tail by 8 bytes (the last
# fragment's, on a multi-buffer packet): a stale frame would show the last run's bytes.
XDP_PROG = """
    r6 = r1
    r2 = -16
    call 44
    r2 = *(u32 *)(r6 + 0)
    r3 = *(u32 *)(r6 + 4)
    r4 = r2
    r4 += 1
    if r4 > r3 goto out
    r5 = 0xab
    *(u8 *)(r2 + 0) = r5
out:
    r1 = r6
    r2 = 8
    call 65
    r0 = 2
    exit
"""

# Grows the packet by 100 bytes at the tail (bpf_skb_change_tail) and stores a byte past the old
# end; returns skb->len.
SKB_PROG = """
    r6 = r1
    r7 = *(u32 *)(r6 + 0)
    r2 = r7
    r2 += 100
    r3 = 0
    call 38
    r1 = 0x5a
    *(u8 *)(r10 - 8) = r1
    r1 = r6
    r2 = r7
    r2 += 3
    r3 = r10
    r3 += -8
    r4 = 1
    r5 = 0
    call 9
    r0 = *(u32 *)(r6 + 0)
    exit
"""

XDP_RUNS: list[tuple[bytes, bytes | None]] = [
    (frame(60), None),
    (frame(200, 1), None),
    (frame(64, 2), md(64, 8)),  # 8 bytes of metadata
    (frame(5000, 3), None),  # fragments
    (frame(60, 4), None),
    (frame(300, 5), md(100)),  # fragments from ctx_in
    (frame(14, 6), None),
    (frame(3520, 7), None),
]
SKB_RUNS: list[tuple[bytes, bytes | None]] = [
    (frame(60), None),
    (frame(1500, 1), None),
    (frame(40, 2), None),
    (frame(90, 3), struct.pack("<3I", 0, 0, 7)),  # mark 7
    (frame(14, 4), None),
]


def spec(text: str, prog_type: ProgramType) -> CollectionSpec:
    return CollectionSpec(maps={}, programs={"p": program("p", text, [], type=prog_type)})


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("text", "prog_type", "runs"),
    [(XDP_PROG, ProgramType.XDP, XDP_RUNS), (SKB_PROG, TC, SKB_RUNS)],
    ids=["xdp", "skb"],
)
def test_repeated_test_runs_match_fresh_collections(
    engine: str, text: str, prog_type: ProgramType, runs: list[tuple[bytes, bytes | None]]
) -> None:
    with Collection(spec(text, prog_type), engine=engine, deterministic=True) as coll:
        prog = coll.programs["p"]
        regions = len(coll.memory)
        again = [prog.test_run(data, ctx, repeat=2) for data, ctx in runs + runs]
        assert len(coll.memory) == regions  # nothing stays mapped between runs
    fresh = []
    for data, ctx in runs + runs:
        with Collection(spec(text, prog_type), engine=engine, deterministic=True) as coll:
            fresh.append(coll.programs["p"].test_run(data, ctx, repeat=2))
    assert [(r.retval, r.data_out, r.ctx_out) for r in again] == [
        (r.retval, r.data_out, r.ctx_out) for r in fresh
    ]
    marked = [r.data_out[:1] == b"\xab" for r in again]
    assert any(marked) == (prog_type is ProgramType.XDP)


def _state(m: MappedInput) -> object:
    """Everything of a mapping the program and helpers see, addresses made relative."""
    assert m.data_region is not None
    if isinstance(m, XdpMapped):
        base = m.frame.address
        extra: object = (bytes(m.frame), m.meta, m.start, m.end, [bytes(f) for f in m.frags], m.input)
    else:
        assert isinstance(m, SkbMapped)
        base = m.buffer.address
        extra = (bytes(m.buffer), (m.start, m.end, m.mac, m.network, m.ip_summed, m.csum_level), m.input)
    regions = [
        (r.name, r.start - (m.r1 if r is m.ctx_region else base), r.size, r.writable, r.load_hook is not None)
        for r in m.regions
    ]
    return regions, m.r2, m.ctx_address - m.r1, bytes(m.ctx_region.view), m.data(), m.ctx_out(), extra


@pytest.mark.parametrize(
    "inputs",
    [
        [XdpInput.from_test_run(d, c) for d, c in XDP_RUNS],
        [SkbInput.from_test_run(d, TC, c) for d, c in SKB_RUNS]
        + [SkbInput.from_test_run(frame(80), ProgramType.SOCKET_FILTER)],
    ],
    ids=["xdp", "skb"],
)
def test_rebind_is_a_fresh_mapping(inputs: list[Input]) -> None:
    memory = Memory()
    m = inputs[-1].map(memory)
    for inp in inputs:
        # dirty every byte and the packet state, as a program and its helpers may
        if isinstance(m, XdpMapped):
            m.frame.view[:] = b"\xee" * len(m.frame.view)
            m.adjust_head(-20)
            m.frags.append(bytearray(b"\xee" * 9))
        else:
            assert isinstance(m, SkbMapped)
            m.resize(200, 5000)  # reallocates the buffer
            m.buffer.view[:] = b"\xee" * m.buffer.size
            m.ip_summed, m.csum_level = 1, 1
        m.ctx_region.view[:] = b"\xee" * m.ctx_region.size
        for region in m.regions:
            memory.unmap(region)
        assert len(memory) == 0
        assert m.rebind(inp)
        assert {r.start for r in memory} == {r.start for r in m.regions}
        assert _state(m) == _state(inp.map(Memory()))


def test_rebind_refuses_other_inputs() -> None:
    memory = Memory()
    xdp = XdpInput.from_test_run(frame(60)).map(memory)
    skb = SkbInput.from_test_run(frame(60)).map(memory)
    for region in (*xdp.regions, *skb.regions):
        memory.unmap(region)
    assert not xdp.rebind(SkbInput.from_test_run(frame(60)))
    assert not skb.rebind(XdpInput.from_test_run(frame(60)))
    assert not xdp.rebind(RawInput(b"x"))
    assert len(memory) == 0
