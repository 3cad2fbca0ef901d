"""The user-space kernel helpers for maps, time, random numbers, CPU and task (both engines)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from ebpf.helpers import HelperId
from ebpf.isa.asm import assemble
from ebpf.maps import MapDef, create
from ebpf.spec import MapType
from ebpf.vm import ENGINES
from ebpf.vm.helpers import FixedClock, HelperEnv, RunEnv, TaskInfo, run_env

from ._helper_util import ENGINE_NAMES, HELPERS, run

pytestmark = pytest.mark.parametrize("engine", ENGINE_NAMES)


def test_map_lookup_returns_the_value_address_and_stores_go_through(engine: str) -> None:
    env = RunEnv(deterministic=True)
    m = create(MapDef(MapType.HASH, 4, 8, 4), env.memory)
    handle = env.add_map(m)
    m[(7).to_bytes(4, "little")] = (40).to_bytes(8, "little")
    prog = f"""
        *(u32 *)(r10 - 4) = 7
        r2 = r10
        r2 += -4
        r1 = {handle} ll
        call {HelperId.MAP_LOOKUP_ELEM}
        if r0 == 0 goto miss
        r1 = *(u64 *)(r0 + 0)
        r1 += 2
        *(u64 *)(r0 + 0) = r1
        r0 = r1
        exit
    miss:
        r0 = 99
        exit
    """
    assert run(prog, env, engine).retval == 42
    assert m[(7).to_bytes(4, "little")] == (42).to_bytes(8, "little")
    del m[(7).to_bytes(4, "little")]
    assert run(prog, env, engine).retval == 99


def test_map_update_delete_errno(engine: str) -> None:
    env = RunEnv(deterministic=True)
    m = create(MapDef(MapType.HASH, 4, 4, 1), env.memory)
    handle = env.add_map(m)
    prog = f"""
        *(u32 *)(r10 - 4) = 1
        *(u32 *)(r10 - 8) = 0x11223344
        r1 = {handle} ll
        r2 = r10
        r2 += -4
        r3 = r10
        r3 += -8
        r4 = 1
        call {HelperId.MAP_UPDATE_ELEM}
        r6 = r0
        r1 = {handle} ll
        r2 = r10
        r2 += -4
        r3 = r10
        r3 += -8
        r4 = 1
        call {HelperId.MAP_UPDATE_ELEM}
        r7 = r0
        *(u32 *)(r10 - 4) = 2
        r1 = {handle} ll
        r2 = r10
        r2 += -4
        call {HelperId.MAP_DELETE_ELEM}
        *(u64 *)(r10 - 16) = r6
        *(u64 *)(r10 - 24) = r7
        *(u64 *)(r10 - 32) = r0
        r0 = r6
        r0 <<= 16
        r7 &= 0xff
        r0 |= r7
        r0 <<= 8
        r1 = *(u64 *)(r10 - 32)
        r1 &= 0xff
        r0 |= r1
        exit
    """
    res = run(prog, env, engine)
    # first update 0, second -EEXIST (NOEXIST), delete of a missing key -ENOENT
    assert res.retval == (0 << 24) | ((-17 & 0xFF) << 8) | (-2 & 0xFF)
    assert m[(1).to_bytes(4, "little")] == (0x11223344).to_bytes(4, "little")


def test_percpu_lookup_and_update_use_the_current_cpu(engine: str) -> None:
    env = RunEnv(deterministic=True, ncpus=4, cpu=2)
    m = create(MapDef(MapType.PERCPU_HASH, 4, 8, 4), env.memory, ncpus=4)
    handle = env.add_map(m)
    prog = f"""
        *(u32 *)(r10 - 4) = 3
        *(u64 *)(r10 - 16) = 5
        r1 = {handle} ll
        r2 = r10
        r2 += -4
        r3 = r10
        r3 += -16
        r4 = 0
        call {HelperId.MAP_UPDATE_ELEM}
        r1 = {handle} ll
        r2 = r10
        r2 += -4
        call {HelperId.MAP_LOOKUP_ELEM}
        if r0 == 0 goto out
        r1 = 9
        *(u64 *)(r0 + 0) = r1
        call {HelperId.GET_SMP_PROCESSOR_ID}
    out:
        exit
    """
    assert run(prog, env, engine).retval == 2
    values = m.lookup_percpu((3).to_bytes(4, "little"))
    assert values == [bytes(8), bytes(8), (9).to_bytes(8, "little"), bytes(8)]
    env.begin_run(cpu=1)
    assert run(prog, env, engine).retval == 1  # begin_run inside run() keeps the cpu
    values = m.lookup_percpu((3).to_bytes(4, "little"))
    assert values[1] == (9).to_bytes(8, "little") and values[2] == (9).to_bytes(8, "little")


def test_queue_push_pop_peek(engine: str) -> None:
    env = RunEnv(deterministic=True)
    q = create(MapDef(MapType.QUEUE, 0, 4, 2), env.memory)
    handle = env.add_map(q)
    prog = f"""
        *(u32 *)(r10 - 4) = 10
        r1 = {handle} ll
        r2 = r10
        r2 += -4
        r3 = 0
        call {HelperId.MAP_PUSH_ELEM}
        *(u32 *)(r10 - 4) = 20
        r1 = {handle} ll
        r2 = r10
        r2 += -4
        r3 = 0
        call {HelperId.MAP_PUSH_ELEM}
        *(u32 *)(r10 - 4) = 30
        r1 = {handle} ll
        r2 = r10
        r2 += -4
        r3 = 0
        call {HelperId.MAP_PUSH_ELEM}
        r6 = r0
        r1 = {handle} ll
        r2 = r10
        r2 += -8
        call {HelperId.MAP_PEEK_ELEM}
        r1 = {handle} ll
        r2 = r10
        r2 += -12
        call {HelperId.MAP_POP_ELEM}
        r0 = *(u32 *)(r10 - 8)
        r1 = *(u32 *)(r10 - 12)
        r0 *= 100
        r0 += r1
        r6 = -r6
        r6 <<= 32
        r0 |= r6
        exit
    """
    res = run(prog, env, engine)
    assert res.retval == (7 << 32) | (10 * 100 + 10)  # third push: -E2BIG (7)
    assert q.pop() == (20).to_bytes(4, "little")
    res = run(
        f"""
        r1 = {handle} ll
        r2 = r10
        r2 += -8
        call {HelperId.MAP_POP_ELEM}
        exit
        """,
        env,
        engine,
    )
    assert res.retval == (-2) & (2**64 - 1)


def test_time_helpers_real_by_default(engine: str) -> None:
    env = RunEnv()
    prog = f"""
        call {HelperId.KTIME_GET_NS}
        r6 = r0
        call {HelperId.KTIME_GET_BOOT_NS}
        r7 = r0
        call {HelperId.KTIME_GET_COARSE_NS}
        *(u64 *)(r10 - 8) = r0
        call {HelperId.JIFFIES64}
        *(u64 *)(r10 - 16) = r0
        r0 = r6
        exit
    """
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    got = run(prog, env, engine).retval
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    assert before <= got <= after


def test_time_and_random_fixed_in_deterministic_mode(engine: str) -> None:
    prog = f"""
        call {HelperId.GET_PRANDOM_U32}
        r6 = r0
        call {HelperId.GET_PRANDOM_U32}
        r6 <<= 32
        r6 |= r0
        call {HelperId.KTIME_GET_NS}
        r6 ^= r0
        r0 = r6
        exit
    """
    a = run(prog, RunEnv(deterministic=True, seed=5), engine).retval
    b = run(prog, RunEnv(deterministic=True, seed=5), engine).retval
    c = run(prog, RunEnv(deterministic=True, seed=6), engine).retval
    assert a == b != c
    env = RunEnv(deterministic=True, clock=FixedClock(now_ns=500, step_ns=10))
    prog2 = f"""
        call {HelperId.KTIME_GET_NS}
        r6 = r0
        call {HelperId.KTIME_GET_NS}
        r0 -= r6
        exit
    """
    assert run(prog2, env, engine).retval == 10


def test_jiffies_follow_hz(engine: str) -> None:
    env = RunEnv(deterministic=True, clock=FixedClock(now_ns=2_000_000_000, hz=1000))
    res = run(f"call {HelperId.JIFFIES64}\nexit", env, engine)
    assert res.retval == ((-300 * 1000) & 0xFFFFFFFF) + 2000


def test_task_helpers(engine: str) -> None:
    env = RunEnv(
        deterministic=True, task=TaskInfo(pid=11, tgid=22, uid=33, gid=44, comm=b"x" * 20, task=0x1234)
    )
    prog = f"""
        call {HelperId.GET_CURRENT_PID_TGID}
        *(u64 *)(r10 - 8) = r0
        call {HelperId.GET_CURRENT_UID_GID}
        *(u64 *)(r10 - 16) = r0
        r1 = r10
        r1 += -40
        r2 = 16
        call {HelperId.GET_CURRENT_COMM}
        r1 = r10
        r1 += -48
        r2 = 4
        call {HelperId.GET_CURRENT_COMM}
        call {HelperId.GET_CURRENT_TASK}
        exit
    """
    captured: list[bytes] = []

    def spy(e: HelperEnv, a: int, b: int, _c: int, _d: int, _f: int) -> int:
        captured.append(run_env(e).memory.read_bytes(a, b))
        return 0

    helpers = HELPERS.copy()
    helpers.register(200, "spy", spy)
    program = assemble(prog.replace("exit", "r6 = r0\nr1 = r10\nr1 += -48\nr2 = 48\ncall 200\nr0 = r6\nexit"))
    eng = ENGINES[engine](program, helpers=helpers, memory=env.memory)
    res = eng.run(b"", env=env)
    assert res.retval == 0x1234
    stack = captured[0]
    assert stack[40:48] == ((22 << 32) | 11).to_bytes(8, "little")
    assert stack[32:40] == ((44 << 32) | 33).to_bytes(8, "little")
    assert stack[8:24] == b"x" * 15 + b"\0"
    assert stack[0:4] == b"xxx\0"


def test_real_task_is_the_calling_thread(engine: str) -> None:
    env = RunEnv()
    res = run(f"call {HelperId.GET_CURRENT_PID_TGID}\nexit", env, engine)
    assert res.retval == (os.getpid() << 32) | threading.get_native_id()


def test_smp_processor_id_and_run_env_lookup(engine: str) -> None:
    env = RunEnv(ncpus=3, cpu=2, deterministic=True)
    assert run(f"call {HelperId.GET_SMP_PROCESSOR_ID}\nexit", env, engine).retval == 2

    class Bare:
        memory = env.memory

    assert run_env(Bare()) is env  # type: ignore[arg-type]


def test_real_task_follows_the_running_thread(engine: str) -> None:
    env = RunEnv()
    got: dict[str, int] = {}

    def worker() -> None:
        got["tid"] = threading.get_native_id()
        got["ret"] = run(f"call {HelperId.GET_CURRENT_PID_TGID}\nexit", env, engine).retval

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert got["ret"] == (os.getpid() << 32) | got["tid"]
    assert got["tid"] != threading.get_native_id()


def test_map_in_map_lookup_gives_the_inner_handle(engine: str) -> None:
    env = RunEnv(deterministic=True)
    inner_def = MapDef(MapType.ARRAY, 4, 8, 1, name="inner")
    outer = create(MapDef(MapType.ARRAY_OF_MAPS, 4, 4, 2, inner=inner_def), env.memory)
    inner = create(inner_def, env.memory)
    inner[bytes(4)] = (5).to_bytes(8, "little")
    outer.update_map(bytes(4), inner)  # type: ignore[attr-defined]
    handle = env.add_map(outer)
    prog = f"""
        r1 = 0
        *(u32 *)(r10 - 4) = r1
        r1 = {handle} ll
        r2 = r10
        r2 += -4
        call {HelperId.MAP_LOOKUP_ELEM}
        if r0 == 0 goto out
        r1 = r0
        r2 = r10
        r2 += -4
        call {HelperId.MAP_LOOKUP_ELEM}
        if r0 == 0 goto out
        r0 = *(u64 *)(r0 + 0)
    out:
        exit
    """
    assert run(prog, env, engine).retval == 5
    assert env.map_at(env.handle_of(inner)) is inner


def test_lookup_percpu_elem_and_numa(engine: str) -> None:
    env = RunEnv(deterministic=True, ncpus=3)
    m = create(MapDef(MapType.PERCPU_ARRAY, 4, 8, 1), env.memory, ncpus=3)
    m.update_percpu(bytes(4), [(i * 10).to_bytes(8, "little") for i in range(3)])  # type: ignore[attr-defined]
    handle = env.add_map(m)
    prog = f"""
        r1 = 0
        *(u32 *)(r10 - 4) = r1
        r1 = {handle} ll
        r2 = r10
        r2 += -4
        r3 = CPU
        call {HelperId.MAP_LOOKUP_PERCPU_ELEM}
        if r0 == 0 goto out
        r0 = *(u64 *)(r0 + 0)
    out:
        exit
    """
    assert run(prog.replace("CPU", "2"), env, engine).retval == 20
    assert run(prog.replace("CPU", "3"), env, engine).retval == 0
    assert run(f"call {HelperId.GET_NUMA_NODE_ID}\nexit", env, engine).retval == 0


def test_bloom_filter_push_and_peek(engine: str) -> None:
    env = RunEnv(deterministic=True)
    bloom = create(MapDef(MapType.BLOOM_FILTER, 0, 4, 16, map_extra=3), env.memory)
    handle = env.add_map(bloom)
    prog = f"""
        r1 = 1234
        *(u32 *)(r10 - 4) = r1
        r1 = {handle} ll
        r2 = r10
        r2 += -4
        r3 = 0
        call {HelperId.MAP_PUSH_ELEM}
        r6 = r0
        r1 = {handle} ll
        r2 = r10
        r2 += -4
        call {HelperId.MAP_PEEK_ELEM}
        r6 <<= 8
        r0 &= 0xff
        r0 |= r6
        exit
    """
    assert run(prog, env, engine).retval == 0
    assert bloom.__contains__((1234).to_bytes(4, "little"))


def test_redirect_records_the_target(engine: str) -> None:
    from ebpf.spec import ProgramType

    env = RunEnv(deterministic=True, program_type=ProgramType.XDP)
    assert run(f"r1 = 7\nr2 = 0\ncall {HelperId.REDIRECT}\nexit", env, engine).retval == 4
    assert env.redirect is not None and env.redirect.ifindex == 7
    m = create(MapDef(MapType.ARRAY, 4, 4, 2), env.memory)
    handle = env.add_map(m)
    prog = f"r1 = {handle} ll\nr2 = KEY\nr3 = FLAGS\ncall {HelperId.REDIRECT_MAP}\nexit"
    assert run(prog.replace("KEY", "1").replace("FLAGS", "0"), env, engine).retval == 4  # XDP_REDIRECT
    assert env.redirect is not None and env.redirect.map is m and env.redirect.key == 1
    assert run(prog.replace("KEY", "5").replace("FLAGS", "2"), env, engine).retval == 2  # miss: flags
    assert env.redirect is None
    assert run(prog.replace("KEY", "1").replace("FLAGS", "8"), env, engine).retval == 0  # bad flags


def test_get_func_ip_and_coarse_clocks(engine: str) -> None:
    env = RunEnv(deterministic=True, func_ip=0xFFFFFFFF81000000, attach_cookie=42)
    assert run(f"call {HelperId.GET_FUNC_IP}\nexit", env, engine).retval == 0xFFFFFFFF81000000
    assert run(f"call {HelperId.GET_ATTACH_COOKIE}\nexit", env, engine).retval == 42
    env = RunEnv(deterministic=True, clock=FixedClock(now_ns=77, tai_offset_ns=3))
    assert run(f"call {HelperId.KTIME_GET_COARSE_NS}\nexit", env, engine).retval == 77
    assert run(f"call {HelperId.KTIME_GET_TAI_NS}\nexit", env, engine).retval == 80
    real = RunEnv()
    before = time.clock_gettime_ns(time.CLOCK_TAI)
    got = run(f"call {HelperId.KTIME_GET_TAI_NS}\nexit", real, engine).retval
    assert before <= got <= time.clock_gettime_ns(time.CLOCK_TAI)


@pytest.mark.kernel
def test_real_task_values_match_the_kernel(engine: str) -> None:
    from ebpf.spec import ProgramType

    from ._helper_util import kernel_test_run, user_test_run

    for helper in (
        HelperId.GET_CURRENT_CGROUP_ID,
        HelperId.GET_CURRENT_PID_TGID,
        HelperId.GET_CURRENT_UID_GID,
    ):
        for shift in (0, 32):
            prog = f"call {helper}\nr0 >>= {shift}\nexit"
            kernel = kernel_test_run(prog, ProgramType.SCHED_CLS, bytes(64))
            ours = user_test_run(prog, ProgramType.SCHED_CLS, bytes(64), engine=engine, env=RunEnv())
            assert ours.retval == kernel.retval, (helper.name, shift)


@pytest.mark.kernel
def test_real_clocks_track_the_kernel(engine: str) -> None:
    from ebpf.spec import ProgramType

    from ._helper_util import kernel_test_run, user_test_run

    env = RunEnv()
    for helper, tolerance in (
        (HelperId.JIFFIES64, 25),  # jiffies (4 ms each at HZ=250; load on a busy machine)
        (HelperId.KTIME_GET_NS, 500_000_000),
        (HelperId.KTIME_GET_BOOT_NS, 500_000_000),
        (HelperId.KTIME_GET_COARSE_NS, 500_000_000),
        (HelperId.KTIME_GET_TAI_NS, 500_000_000),
    ):
        prog = f"call {helper}\nexit"
        kernel = kernel_test_run(prog, ProgramType.SCHED_CLS, bytes(64)).retval
        ours = user_test_run(prog, ProgramType.SCHED_CLS, bytes(64), engine=engine, env=env).retval
        assert 0 <= (ours - kernel) % (1 << 32) <= tolerance, helper.name  # ours runs after the kernel's
