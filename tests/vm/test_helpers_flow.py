"""Tail calls, bpf_loop, for_each_map_elem, spin locks, ring buffers and perf output (both engines)."""

from __future__ import annotations

import errno
import struct

import pytest

from ebpf.errors import VMError
from ebpf.helpers import HelperId
from ebpf.maps import MapDef, create
from ebpf.maps.perf import PerfEventArrayMap
from ebpf.maps.progarray import ProgArrayMap
from ebpf.maps.ringbuf import RingBufMap
from ebpf.spec import MapType, ProgramType
from ebpf.vm.helpers import MAX_TAIL_CALL_CNT, RunEnv
from ebpf.vm.interpreter import TailCall

from ._helper_util import ENGINE_NAMES, M32, make_engine, run, user_test_run

pytestmark = pytest.mark.parametrize("engine", ENGINE_NAMES)
M64 = (1 << 64) - 1


def _prog_array(env: RunEnv) -> tuple[ProgArrayMap, int]:
    m = create(MapDef(MapType.PROG_ARRAY, 4, 4, 4), env.memory)
    assert isinstance(m, ProgArrayMap)
    return m, env.add_map(m)


def tail_call_prog(handle: int, index: int) -> str:
    return f"""
        r2 = {handle} ll
        r3 = {index}
        call {HelperId.TAIL_CALL}
        r0 = 77
        exit
    """


def test_tail_call_raises_for_a_filled_slot(engine: str) -> None:
    env = RunEnv(deterministic=True)
    m, handle = _prog_array(env)
    m.update_prog((1).to_bytes(4, "little"), "target")
    eng = make_engine(tail_call_prog(handle, 1), env, engine)
    env.begin_run()
    with pytest.raises(TailCall) as jump:
        eng.run(b"x", env=env)
    assert jump.value.target == "target" and env.tail_calls == 1


def test_tail_call_falls_through(engine: str) -> None:
    env = RunEnv(deterministic=True)
    m, handle = _prog_array(env)
    m.update_prog((1).to_bytes(4, "little"), "target")
    assert run(tail_call_prog(handle, 4), env, engine).retval == 77  # past the end
    assert env.tail_calls == 0
    assert run(tail_call_prog(handle, 2), env, engine).retval == 77  # empty slot: not counted (JIT)
    assert env.tail_calls == 0
    eng = make_engine(tail_call_prog(handle, 1), env, engine)
    env.begin_run()
    env.tail_calls = MAX_TAIL_CALL_CNT
    assert eng.run(b"x", env=env).retval == 77  # the chain limit


LOOP = f"""
    r1 = 10
    r2 = func(11) ll
    r3 = r10
    r3 += -8
    r6 = 0
    *(u64 *)(r10 - 8) = r6
    r4 = FLAGS
    call {HelperId.LOOP}
    r1 = *(u64 *)(r10 - 8)
    r0 <<= 32
    r0 |= r1
    exit
    r3 = *(u64 *)(r2 + 0)
    r3 += r1
    *(u64 *)(r2 + 0) = r3
    r0 = 0
    if r1 != STOP goto out
    r0 = 1
out:
    exit
"""


def test_bpf_loop_runs_the_callback(engine: str) -> None:
    env = RunEnv(deterministic=True)
    res = run(LOOP.replace("FLAGS", "0").replace("STOP", "99"), env, engine)
    assert res.retval == (10 << 32) | sum(range(10))
    res = run(LOOP.replace("FLAGS", "0").replace("STOP", "3"), env, engine)
    assert res.retval == (4 << 32) | (0 + 1 + 2 + 3)
    res = run(LOOP.replace("FLAGS", "1").replace("STOP", "3"), env, engine)
    assert res.retval >> 32 == (-errno.EINVAL) & M32


def test_for_each_map_elem(engine: str) -> None:
    env = RunEnv(deterministic=True, ncpus=2, cpu=1)
    m = create(MapDef(MapType.HASH, 4, 8, 8), env.memory)
    handle = env.add_map(m)
    for k in (1, 2, 3):
        m[k.to_bytes(4, "little")] = (k * 100).to_bytes(8, "little")
    prog = f"""
        r1 = {handle} ll
        r2 = func(11) ll
        r3 = r10
        r3 += -8
        r6 = 0
        *(u64 *)(r10 - 8) = r6
        r4 = 0
        call {HelperId.FOR_EACH_MAP_ELEM}
        r1 = *(u64 *)(r10 - 8)
        r0 <<= 32
        r0 |= r1
        exit
        r5 = *(u32 *)(r2 + 0)
        r6 = *(u64 *)(r3 + 0)
        r6 += 1
        *(u64 *)(r3 + 0) = r6
        r6 = *(u64 *)(r4 + 0)
        r6 += r5
        *(u64 *)(r4 + 0) = r6
        r0 = 0
        exit
    """
    res = run(prog, env, engine)
    # callback(map, key, value, ctx): each value + 1, ctx = sum of the keys; 3 elements seen
    assert res.retval == (3 << 32) | 6
    assert sorted(int.from_bytes(v, "little") for v in m.values()) == [101, 201, 301]


def test_spin_lock(engine: str) -> None:
    env = RunEnv(deterministic=True)
    m = create(MapDef(MapType.ARRAY, 4, 8, 1), env.memory)
    handle = env.add_map(m)
    lookup = f"""
        r1 = 0
        *(u32 *)(r10 - 4) = r1
        r1 = {handle} ll
        r2 = r10
        r2 += -4
        call {HelperId.MAP_LOOKUP_ELEM}
        if r0 == 0 goto out
        r6 = r0
        r1 = r6
        call {HelperId.SPIN_LOCK}
        r7 = *(u32 *)(r6 + 0)
        r1 = r6
        call {HelperId.SPIN_UNLOCK}
        r0 = *(u32 *)(r6 + 0)
        r7 <<= 8
        r0 |= r7
    out:
        exit
    """
    assert run(lookup, env, engine).retval == 0x100
    double = lookup.replace("r7 = *(u32 *)(r6 + 0)", f"r1 = r6\n call {HelperId.SPIN_LOCK}")
    with pytest.raises(VMError, match="already held"):
        run(double, env, engine)


def test_ringbuf(engine: str) -> None:
    env = RunEnv(deterministic=True)
    rb = create(MapDef(MapType.RINGBUF, 0, 0, 4096), env.memory)
    assert isinstance(rb, RingBufMap)
    handle = env.add_map(rb)
    prog = f"""
        r1 = {handle} ll
        r2 = 16
        r3 = 0
        call {HelperId.RINGBUF_RESERVE}
        if r0 == 0 goto out
        r1 = 0x1122334455667788 ll
        *(u64 *)(r0 + 0) = r1
        *(u64 *)(r0 + 8) = r1
        r1 = r0
        r2 = 0
        call {HelperId.RINGBUF_SUBMIT}
        r1 = {handle} ll
        r2 = 8
        r3 = 0
        call {HelperId.RINGBUF_RESERVE}
        if r0 == 0 goto out
        r1 = r0
        r2 = 0
        call {HelperId.RINGBUF_DISCARD}
        r1 = 0xabcd
        *(u64 *)(r10 - 8) = r1
        r1 = {handle} ll
        r2 = r10
        r2 += -8
        r3 = 8
        r4 = 0
        call {HelperId.RINGBUF_OUTPUT}
        r6 = r0
        r1 = {handle} ll
        r2 = 0
        call {HelperId.RINGBUF_QUERY}
        r6 <<= 32
        r0 |= r6
    out:
        exit
    """
    res = run(prog, env, engine)
    assert res.retval == 24 + 16 + 16  # avail data: three records with 8-byte headers
    assert rb.consume() == [
        struct.pack("<QQ", 0x1122334455667788, 0x1122334455667788),
        struct.pack("<Q", 0xABCD),
    ]
    res = run(prog.replace("r4 = 0\n", "r4 = 4\n"), env, engine)
    assert res.retval >> 32 == (-errno.EINVAL) & M32


def test_perf_event_output(engine: str) -> None:
    env = RunEnv(deterministic=True, ncpus=2, cpu=1)
    pa = create(MapDef(MapType.PERF_EVENT_ARRAY, 4, 4, 2), env.memory, ncpus=2)
    assert isinstance(pa, PerfEventArrayMap)
    pa.open_buffers()
    handle = env.add_map(pa)
    prog = f"""
        r6 = r1
        r1 = 0x55aa
        *(u64 *)(r10 - 8) = r1
        r1 = r6
        r2 = {handle} ll
        r3 = FLAGS ll
        r4 = r10
        r4 += -8
        r5 = 8
        call {HelperId.PERF_EVENT_OUTPUT}
        exit
    """
    current = prog.replace("FLAGS", str(0xFFFFFFFF))
    assert run(current, env, engine).retval == 0
    assert pa.read(1)[0][:8] == struct.pack("<Q", 0x55AA)
    assert run(prog.replace("FLAGS", "0"), env, engine).retval == (-errno.EOPNOTSUPP) & M64
    assert run(prog.replace("FLAGS", "5"), env, engine).retval == (-errno.E2BIG) & M64
    # an XDP program appends packet bytes (BPF_F_CTXLEN_MASK)
    with_ctx = prog.replace("FLAGS", str((4 << 32) | 0xFFFFFFFF))
    res = user_test_run(with_ctx, ProgramType.XDP, bytes(range(20)), engine=engine, env=env)
    assert res.retval == 0
    assert pa.read(1)[0][:12] == struct.pack("<Q", 0x55AA) + bytes(range(4))


def test_ringbuf_dynptr(engine: str) -> None:
    env = RunEnv(deterministic=True)
    rb = create(MapDef(MapType.RINGBUF, 0, 0, 4096), env.memory)
    assert isinstance(rb, RingBufMap)
    handle = env.add_map(rb)
    # dynptr at r10-16; scratch local memory at r10-32; results packed into r0
    prog = f"""
        r1 = {handle} ll
        r2 = 16
        r3 = 0
        r4 = r10
        r4 += -16
        call {HelperId.RINGBUF_RESERVE_DYNPTR}
        r9 = r0
        r1 = 0x1122334455667788 ll
        *(u64 *)(r10 - 24) = r1
        r1 = r10
        r1 += -16
        r2 = 4
        r3 = r10
        r3 += -24
        r4 = 8
        r5 = 0
        call {HelperId.DYNPTR_WRITE}
        r8 = r0
        r1 = r10
        r1 += -16
        r2 = 12
        r3 = r10
        r3 += -24
        r4 = 8
        r5 = 0
        call {HelperId.DYNPTR_WRITE}
        r8 <<= 8
        r0 &= 0xff
        r8 |= r0
        r1 = r10
        r1 += -16
        r2 = 0
        r3 = 4
        call {HelperId.DYNPTR_DATA}
        if r0 == 0 goto nodata
        r1 = 0xaabbccdd
        *(u32 *)(r0 + 0) = r1
    nodata:
        r1 = r10
        r1 += -16
        r2 = 0
        call {HelperId.RINGBUF_SUBMIT_DYNPTR}
        r1 = *(u64 *)(r10 - 16)
        if r1 != 0 goto bad
        r0 = r8
        r9 <<= 16
        r0 |= r9
        exit
    bad:
        r0 = -1
        exit
    """
    res = run(prog, env, engine)
    assert res.retval == (0 << 16) | (0 << 8) | ((-errno.E2BIG) & 0xFF)
    assert rb.consume() == [struct.pack("<IQ", 0xAABBCCDD, 0x1122334455667788) + bytes(4)]
    fails = prog.replace("r3 = 0\n        r4 = r10", "r3 = 1\n        r4 = r10", 1)
    res = run(fails, env, engine)  # bad flags: a null dynptr, -EINVAL; writes fail, submit is a no-op
    r8 = (-errno.EINVAL << 8) | ((-errno.EINVAL) & 0xFF)  # both writes -EINVAL
    assert res.retval == (r8 | (-errno.EINVAL << 16)) & M64
    assert rb.consume() == []


def test_local_dynptr_read(engine: str) -> None:
    env = RunEnv(deterministic=True)
    prog = f"""
        r1 = 0x0807060504030201 ll
        *(u64 *)(r10 - 32) = r1
        r1 = r10
        r1 += -32
        r2 = 8
        r3 = 0
        r4 = r10
        r4 += -16
        call {HelperId.DYNPTR_FROM_MEM}
        r1 = r10
        r1 += -40
        r2 = 4
        r3 = r10
        r3 += -16
        r4 = OFF
        r5 = 0
        call {HelperId.DYNPTR_READ}
        r6 = r0
        r0 = *(u32 *)(r10 - 40)
        r6 <<= 32
        r0 |= r6
        exit
    """
    assert run(prog.replace("OFF", "2"), env, engine).retval == 0x06050403
    assert run(prog.replace("OFF", "5"), env, engine).retval >> 32 == (-errno.E2BIG) & M32
