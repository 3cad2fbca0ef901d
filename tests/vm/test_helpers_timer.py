"""bpf_timer in the user-space runtime (both engines): helpers 169-172, callbacks, time, map elements.

The programs are tests/data/timer/timer.o (see its README); the expected answers are those
Linux 6.18 gave (tests/differential/test_timer_kernel.py checks the same sequences against
the kernel).
"""

from __future__ import annotations

import errno
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ebpf.elf import load_collection_spec
from ebpf.errors import VMError
from ebpf.maps import MapDef, create
from ebpf.runtime import Collection
from ebpf.spec import CollectionSpec, MapType
from ebpf.vm._helpers_timer import BPF_F_TIMER_ABS, MAX_CALLBACKS, Timers, timers_of
from ebpf.vm.helpers import FixedClock, RunEnv

DATA = Path(__file__).parent.parent / "data" / "timer"
OBJ = DATA / "timer.o"
OP_INIT, OP_SET_CALLBACK, OP_START, OP_CANCEL = range(4)
CB_COUNT, CB_CANCEL_SELF, CB_REARM, CB_CANCEL_FIRST, CB_DELETE_SELF = range(5)
ARR, HASH, LRU = range(3)
MAPS = ("arr", "hash", "lru")
EINVAL, EBUSY, EDEADLK, ENOENT = -errno.EINVAL, -errno.EBUSY, -errno.EDEADLK, -errno.ENOENT
MS = 1_000_000


@pytest.fixture(scope="module")
def spec() -> CollectionSpec:
    return load_collection_spec(OBJ)


class Timer:
    """Drives timer_op of a collection (runtime or kernel): one helper call per test run."""

    def __init__(self, coll: object) -> None:
        self.coll = coll
        self.prog = coll.programs["timer_op"]  # type: ignore[attr-defined]

    def op(
        self, op: int, m: int = ARR, key: int = 0, cb: int = 0, arg: int = 0, flags: int = 0, now: int = 0
    ) -> int:
        ctx = struct.pack("<IIIIQQQ", op, m, key, cb, arg & (2**64 - 1), flags, now)
        r: int = self.prog.test_run(ctx_in=ctx).retval
        return r - (1 << 32) if r >> 31 else r

    def init(self, m: int = ARR, key: int = 0, clock: int = 1) -> int:
        return self.op(OP_INIT, m, key, arg=clock)

    def set_cb(self, m: int = ARR, key: int = 0, cb: int = CB_COUNT, period: int = 0, limit: int = 0) -> int:
        return self.op(OP_SET_CALLBACK, m, key, cb, period, limit)

    def start(self, m: int = ARR, key: int = 0, ns: int = 0, flags: int = 0, now: int = 0) -> int:
        return self.op(OP_START, m, key, arg=ns, flags=flags, now=now)

    def cancel(self, m: int = ARR, key: int = 0) -> int:
        return self.op(OP_CANCEL, m, key)

    def raw(self, m: int, key: int) -> bytes:
        return bytes(self.coll.maps[MAPS[m]].lookup(struct.pack("<I", key)))  # type: ignore[attr-defined]

    def value(self, m: int = ARR, key: int = 0) -> dict[str, int]:
        names = ("count", "key_seen", "ret", "period", "limit", "map_ok", "fired_at")
        fields = struct.unpack("<16x7Q", self.raw(m, key))
        out = dict(zip(names, fields, strict=True))
        out["ret"] = struct.unpack("<q", struct.pack("<Q", out["ret"]))[0]
        return out

    def put(self, m: int, key: int, value: bytes = b"\xff" * 16 + bytes(56)) -> None:
        self.coll.maps[MAPS[m]].update(struct.pack("<I", key), value)  # type: ignore[attr-defined]


@pytest.fixture(params=["interp", "py"])
def det(request: pytest.FixtureRequest, spec: CollectionSpec) -> Iterator[tuple[Collection, Timer]]:
    """A deterministic collection (fixed clock, advanced by the test) and its driver."""
    with Collection(spec, engine=request.param, deterministic=True) as coll:
        yield coll, Timer(coll)


def test_object_is_the_one_build_sh_makes() -> None:
    """tests/data/timer/timer.o is what build.sh compiles from timer.c today."""
    done = subprocess.run(
        ["sh", str(DATA / "build.sh"), "--check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_misuse_errors(det: tuple[Collection, Timer]) -> None:
    """The error codes Linux 6.18 gives (measured; tests/differential/test_timer_kernel.py)."""
    _, t = det
    assert (t.start(), t.set_cb(), t.cancel()) == (EINVAL, EINVAL, EINVAL)  # not initialized
    for clock in (2, 3, 4, 5, 6, 8, 9, 11, 16, 17, 1 << 32, 0x11):  # only 0, 1, 7
        assert t.init(clock=clock) == EINVAL
    assert t.init(clock=1) == 0
    assert (t.init(clock=1), t.init(clock=0)) == (EBUSY, EBUSY)
    assert t.start() == EINVAL  # no callback yet
    assert t.cancel() == 0  # initialized, not pending
    assert t.set_cb() == 0
    assert [t.start(flags=f) for f in (4, 8, 1 << 32)] == [EINVAL] * 3
    assert t.start(ns=10**9) == 0
    assert (t.cancel(), t.cancel()) == (1, 0)
    assert t.start() == EINVAL  # cancel dropped the callback
    assert t.op(OP_INIT, HASH, 9) == ENOENT  # (the program's own answer: no element)
    assert (t.init(key=1, clock=0), t.init(key=2, clock=7)) == (0, 0)


def test_callback_runs_when_due(det: tuple[Collection, Timer]) -> None:
    coll, t = det
    assert (t.init(), t.set_cb(), t.start(ns=0)) == (0, 0, 0)
    # 0 ns: due at once, run at the end of the test run that armed it
    v = t.value()
    assert (v["count"], v["key_seen"], v["map_ok"]) == (1, 0, 1)
    clock = coll.env.clock
    assert isinstance(clock, FixedClock)
    start = clock.now_ns
    assert t.start(ns=20 * MS) == 0
    assert coll.run_timers() == 0 and coll.advance(19 * MS) == 0
    assert t.value()["count"] == 1
    assert coll.advance(MS) == 1
    v = t.value()
    assert v["count"] == 2 and v["fired_at"] == start + 20 * MS  # the clock stood at the expiry
    assert clock.now_ns == start + 20 * MS
    assert t.cancel() == 0


def test_expiry_order_and_clock(det: tuple[Collection, Timer]) -> None:
    coll, t = det
    clock = coll.env.clock
    assert isinstance(clock, FixedClock)
    base = clock.now_ns
    for key, delay in ((0, 30), (1, 10), (2, 20)):
        assert (t.init(key=key), t.set_cb(key=key), t.start(key=key, ns=delay * MS)) == (0, 0, 0)
    timers = timers_of(coll.env)
    assert [coll.maps["arr"].value_address(struct.pack("<I", k)) for k in (1, 2, 0)] == [
        x.address for x in timers.pending()
    ]
    assert timers.next_expiry() == base + 10 * MS
    assert coll.advance(100 * MS) == 3
    assert [t.value(key=k)["fired_at"] - base for k in (1, 2, 0)] == [10 * MS, 20 * MS, 30 * MS]
    assert clock.now_ns == base + 100 * MS and timers.next_expiry() is None


def test_self_cancel_is_edeadlk_and_rearm(det: tuple[Collection, Timer]) -> None:
    coll, t = det
    assert (t.init(key=1, clock=7), t.set_cb(key=1, cb=CB_CANCEL_SELF), t.start(key=1)) == (0, 0, 0)
    v = t.value(key=1)
    assert (v["count"], v["key_seen"], v["ret"]) == (1, 1, EDEADLK)
    assert (t.init(key=2), t.set_cb(key=2, cb=CB_REARM, period=MS, limit=5), t.start(key=2)) == (0, 0, 0)
    assert t.value(key=2)["count"] == 1
    assert coll.advance(10 * MS) == 4
    v = t.value(key=2)
    assert (v["count"], v["ret"]) == (5, 0)
    assert t.cancel(key=2) == 0  # it did not re-arm after the limit


def test_callback_cancels_another_timer(det: tuple[Collection, Timer]) -> None:
    _, t = det
    assert (t.init(), t.set_cb(), t.start(ns=10**9)) == (0, 0, 0)
    assert (t.init(key=3), t.set_cb(key=3, cb=CB_CANCEL_FIRST), t.start(key=3)) == (0, 0, 0)
    v = t.value(key=3)
    assert (v["count"], v["key_seen"], v["ret"]) == (1, 3, 1)
    assert t.cancel() == 0 and t.start() == EINVAL  # cancelled, callback dropped


def test_absolute_and_out_of_range_times(det: tuple[Collection, Timer]) -> None:
    coll, t = det
    assert (t.init(), t.set_cb(), t.start(ns=5 * MS, flags=BPF_F_TIMER_ABS, now=1)) == (0, 0, 0)
    assert coll.advance(4 * MS) == 0 and coll.advance(MS) == 1
    assert t.start(ns=5, flags=BPF_F_TIMER_ABS) == 0  # in the past: at once
    assert t.value()["count"] == 2
    assert t.start(flags=2) == 0  # BPF_F_TIMER_CPU_PIN
    assert t.value()["count"] == 3
    for flags in (0, 1, 2, 3):  # negative as s64: never (the kernel's ktime_add_safe clamps)
        for ns in (2**63 - 1, 2**63, 2**64 - 1):
            assert (t.set_cb(), t.start(ns=ns, flags=flags)) == (0, 0)
            assert coll.advance(10**12) == 0
            assert t.cancel() == 1
    assert (t.init(key=1, clock=0), t.set_cb(key=1), t.start(key=1, ns=5, flags=BPF_F_TIMER_ABS)) == (0, 0, 0)
    assert t.value(key=1)["count"] == 1  # CLOCK_REALTIME 5 ns: long past


@pytest.mark.parametrize("m", [ARR, HASH, LRU])
def test_callback_arguments(det: tuple[Collection, Timer], m: int) -> None:
    _, t = det
    if m != ARR:
        t.put(m, 3)
    assert (t.init(m, 3), t.set_cb(m, 3), t.start(m, 3)) == (0, 0, 0)
    v = t.value(m, 3)
    assert (v["count"], v["key_seen"], v["map_ok"]) == (1, 3, 1)


def test_array_update_frees_the_timer(det: tuple[Collection, Timer]) -> None:
    """array_map_update_elem calls bpf_obj_free_fields: the pending timer is gone."""
    coll, t = det
    assert (t.init(), t.set_cb(), t.start(ns=50 * MS)) == (0, 0, 0)
    t.put(ARR, 0)
    assert coll.advance(100 * MS) == 0 and t.value()["count"] == 0
    assert t.raw(ARR, 0)[:16] == bytes(16)
    assert t.init() == 0  # uninitialized again
    assert len(timers_of(coll.env)) == 1


@pytest.mark.parametrize("m", [HASH, LRU])
def test_hash_delete_and_update_free_the_timer(det: tuple[Collection, Timer], m: int) -> None:
    coll, t = det
    name, key = MAPS[m], struct.pack("<I", 5)
    t.put(m, 5)
    assert (t.init(m, 5), t.set_cb(m, 5), t.start(m, 5, ns=50 * MS)) == (0, 0, 0)
    coll.maps[name].delete(key)
    t.put(m, 5)
    assert t.init(m, 5) == 0
    assert coll.advance(100 * MS) == 0 and t.value(m, 5)["count"] == 0
    assert (t.set_cb(m, 5), t.start(m, 5, ns=50 * MS)) == (0, 0)
    t.put(m, 5)  # a new element replaces the old one
    assert coll.advance(100 * MS) == 0 and t.value(m, 5)["count"] == 0
    assert t.init(m, 5) == 0


def test_lru_eviction_frees_the_timer(det: tuple[Collection, Timer]) -> None:
    coll, t = det
    for k in range(4):
        t.put(LRU, k)
        assert (t.init(LRU, k), t.set_cb(LRU, k), t.start(LRU, k, ns=MS)) == (0, 0, 0)
    lru = coll.maps["lru"]
    for k in range(10, 30):  # new keys evict old ones from the 4-entry LRU
        lru.update(struct.pack("<I", k), bytes(72))
    left = [k for k in range(4) if struct.pack("<I", k) in lru]
    assert len(left) < 4
    assert len(timers_of(coll.env)) == len(left)
    assert coll.advance(10 * MS) == len(left)


def test_close_cancels_every_timer(spec: CollectionSpec) -> None:
    coll = Collection(spec, deterministic=True)
    t = Timer(coll)
    assert (t.init(), t.set_cb(), t.start(ns=MS)) == (0, 0, 0)
    timers = timers_of(coll.env)
    assert len(timers) == 1
    coll.close()
    assert len(timers) == 0 and timers.next_expiry() is None


def test_xdp_program(det: tuple[Collection, Timer]) -> None:
    coll, t = det
    prog = coll.programs["timer_xdp"]

    def xop(op: int, arg: int = 0, flags: int = 0) -> tuple[int, int]:
        frame = struct.pack("<IIIIQQQ", op, 0, 2, 0, arg, flags, 0)
        return prog.test_run(frame).retval, t.value(key=2)["ret"]

    assert xop(OP_START) == (2, EINVAL)
    assert (xop(OP_INIT, 1), xop(OP_INIT, 1), xop(OP_SET_CALLBACK)) == ((2, 0), (2, EBUSY), (2, 0))
    assert xop(OP_START) == (2, 0)
    assert t.value(key=2)["count"] == 1


def test_real_clock(spec: CollectionSpec) -> None:
    """Without deterministic mode the host's clock decides; advance() sleeps."""
    with Collection(spec) as coll:
        t = Timer(coll)
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        assert (t.init(), t.set_cb(), t.start(ns=0)) == (0, 0, 0)
        assert t.value()["count"] == 1
        assert t.start(ns=30 * MS) == 0
        assert coll.run_timers() == 0
        assert coll.advance(40 * MS) == 1
        v = t.value()
        assert v["count"] == 2 and v["fired_at"] >= before + 30 * MS
        with pytest.raises(ValueError):
            coll.advance(-1)


def test_registry_refuses_what_the_verifier_would() -> None:
    env = RunEnv(deterministic=True)
    timers = Timers(env)
    arr = create(MapDef(MapType.ARRAY, 4, 32, 2), env.memory)
    pc = create(MapDef(MapType.PERCPU_ARRAY, 4, 32, 2), env.memory)
    base = arr.value_address(bytes(4))
    assert base is not None
    with pytest.raises(VMError, match="not 8-byte aligned"):
        timers.init(base + 4, arr, 1)
    with pytest.raises(VMError, match="PERCPU_ARRAY"):
        timers.init(base, pc, 1)
    with pytest.raises(VMError, match="not a bpf_timer"):
        timers.init(base + 24, arr, 1)  # 16 bytes do not fit in the value
    assert timers.init(base + 32, arr, 1) == 0  # element 1
    assert timers.start(base + 32, 0, 0) == -errno.EINVAL & (2**64 - 1)
    arr.close()
    assert len(timers) == 0


def test_field_from_btf(det: tuple[Collection, Timer]) -> None:
    """The map's BTF places the timer: user space reads it as zeros, other offsets are refused."""
    coll, _ = det
    arr = coll.maps["arr"]
    assert arr._timer_offset == 0 and coll.maps["hash"]._timer_offset == 0
    arr.update(struct.pack("<I", 1), bytes(range(72)))
    assert arr.lookup(struct.pack("<I", 1)) == bytes(16) + bytes(range(16, 72))
    base = arr.value_address(struct.pack("<I", 1))
    assert base is not None
    with pytest.raises(VMError, match="value type has it at 0"):
        timers_of(coll.env).init(base + 8, arr, 1)
    assert timers_of(coll.env).init(base, arr, 1) == 0


def test_zero_ns_rearm_is_bounded(det: tuple[Collection, Timer]) -> None:
    """A callback that re-arms itself at 0 ns is always due: each pass runs at most MAX_CALLBACKS."""
    coll, t = det
    assert (t.init(), t.set_cb(cb=CB_REARM, period=0, limit=2**40)) == (0, 0)
    assert t.start() == 0
    assert t.value()["count"] == MAX_CALLBACKS
    assert coll.run_timers() == MAX_CALLBACKS
    assert t.cancel() == 1
    assert coll.run_timers() == 0


@pytest.mark.parametrize("m", [HASH, LRU])
def test_callback_deletes_its_element(det: tuple[Collection, Timer], m: int) -> None:
    """The timer is freed under its running callback: start and cancel on it are -EINVAL."""
    coll, t = det
    t.put(m, 1)
    assert (t.init(m, 1), t.set_cb(m, 1, cb=CB_DELETE_SELF), t.start(m, 1, ns=MS)) == (0, 0, 0)
    assert coll.advance(MS) == 1
    v = t.value(ARR, 3)
    assert (v["count"], v["key_seen"], v["ret"]) == (1, 1, EINVAL)
    assert struct.unpack("<q", struct.pack("<Q", v["period"]))[0] == EINVAL
    assert struct.pack("<I", 1) not in coll.maps[MAPS[m]] and len(timers_of(coll.env)) == 0


def test_program_run_runs_due_timers(det: tuple[Collection, Timer]) -> None:
    """Program.run (not only test_run) runs the callbacks that became due."""
    coll, t = det
    assert (t.init(), t.set_cb()) == (0, 0)
    prog = coll.programs["timer_op"]
    result = prog.run(struct.pack("<IIIIQQQ", OP_START, ARR, 0, 0, 0, 0, 0))
    assert result.retval == 0 and t.value()["count"] == 1
