"""bpf_timer: the user-space runtime (both engines, deterministic clock) against Linux.

Each scenario drives tests/data/timer/timer.o (see its README) through the same steps on both
sides: helper calls by ``BPF_PROG_TEST_RUN`` (their answers must be equal), map updates and
deletes from user space, waits (the runtime's ``Collection.advance(ns)``, a real sleep for
the kernel) and looks at a map value (count of callbacks, the key and map the callback got,
what the callback's own helper calls returned). The runtime runs first; at each look the
kernel's value is polled for up to 1 s until it equals the runtime's (kernel timers fire in
softirq context, a little after their time), then compared.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ebpf.elf import load_collection_spec
from ebpf.runtime import Collection

pytestmark = pytest.mark.kernel

OBJ = Path(__file__).parent.parent / "data" / "timer" / "timer.o"
OP_INIT, OP_SET_CALLBACK, OP_START, OP_CANCEL = range(4)
CB_COUNT, CB_CANCEL_SELF, CB_REARM, CB_CANCEL_FIRST, CB_DELETE_SELF = range(5)
ARR, HASH, LRU = range(3)
MAPS = ("arr", "hash", "lru")
MS = 1_000_000
ABS, PIN = 1, 2
MARGIN_S = 0.03  # the kernel side sleeps this much longer than each wait


class Side:
    """One engine's run of a scenario: a log of what it answered and saw."""

    def __init__(self, coll: Any, expected: list[Any] | None) -> None:
        self.coll = coll
        self.kernel = expected is not None
        self.expected = expected
        self.log: list[Any] = []
        self.prog = coll.programs["timer_op"]

    def _ret(self, r: int) -> int:
        return r - (1 << 32) if r >> 31 else r

    def op(
        self, op: int, m: int = ARR, key: int = 0, cb: int = 0, arg: int = 0, flags: int = 0, now: int = 0
    ) -> None:
        ctx = struct.pack("<IIIIQQQ", op, m, key, cb, arg & (2**64 - 1), flags, now)
        self.log.append(("op", op, m, key, self._ret(self.prog.test_run(ctx_in=ctx).retval)))

    def init(self, m: int = ARR, key: int = 0, clock: int = 1) -> None:
        self.op(OP_INIT, m, key, arg=clock)

    def set_cb(self, m: int = ARR, key: int = 0, cb: int = CB_COUNT, period: int = 0, limit: int = 0) -> None:
        self.op(OP_SET_CALLBACK, m, key, cb, period, limit)

    def start(self, m: int = ARR, key: int = 0, ns: int = 0, flags: int = 0, now: int = 0) -> None:
        self.op(OP_START, m, key, arg=ns, flags=flags, now=now)

    def cancel(self, m: int = ARR, key: int = 0) -> None:
        self.op(OP_CANCEL, m, key)

    def xdp(self, op: int, key: int = 2, arg: int = 0) -> None:
        frame = struct.pack("<IIIIQQQ", op, 0, key, 0, arg, 0, 0)
        r = self.coll.programs["timer_xdp"].test_run(frame).retval
        self.log.append(("xdp", op, r, self._value(ARR, key)[2]))

    def put(self, m: int, key: int) -> None:
        # bytes in the bpf_timer field: the kernel ignores them (lookups read zeros)
        self.coll.maps[MAPS[m]].update(struct.pack("<I", key), b"\xff" * 16 + bytes(56))

    def delete(self, m: int, key: int) -> None:
        self.coll.maps[MAPS[m]].delete(struct.pack("<I", key))

    def wait(self, ns: int) -> None:
        if self.kernel:
            time.sleep(ns / 1e9 + MARGIN_S)
        else:
            self.coll.advance(ns)

    def _value(self, m: int, key: int) -> tuple[Any, ...]:
        raw = bytes(self.coll.maps[MAPS[m]].lookup(struct.pack("<I", key)))
        count, key_seen, ret, period, _limit, map_ok, _fired = struct.unpack("<16x7Q", raw)
        ret, period = (x - (1 << 64) if x >> 63 else x for x in (ret, period))
        return (count, key_seen, ret, period, map_ok, raw[:16].hex())

    def look(self, m: int = ARR, key: int = 0) -> None:
        entry: tuple[Any, ...] = ("look", m, key, self._value(m, key))
        if self.expected is not None and len(self.log) < len(self.expected):
            deadline = time.monotonic() + 1.0
            while entry != self.expected[len(self.log)] and time.monotonic() < deadline:
                time.sleep(0.005)
                entry = ("look", m, key, self._value(m, key))
        self.log.append(entry)


def misuse(s: Side) -> None:
    s.start()
    s.set_cb()
    s.cancel()
    for clock in (2, 3, 4, 5, 6, 8, 11, 15, 16, 17, 1 << 32):
        s.init(clock=clock)
    s.init(clock=1)
    s.init(clock=1)
    s.init(clock=0)
    s.start()  # no callback
    s.cancel()  # not pending: 0
    s.set_cb()
    for flags in (4, 8, 1 << 32):
        s.start(flags=flags)
    s.start(ns=10**9)
    s.cancel()
    s.cancel()
    s.start()  # cancel dropped the callback
    s.set_cb()
    s.start(ns=10**9)
    s.set_cb(cb=CB_CANCEL_SELF)  # replacing the callback keeps the timer pending
    s.start(ns=10**9, flags=4)  # a refused start leaves it pending too
    s.cancel()
    s.init(key=1, clock=0)
    s.init(key=2, clock=7)
    s.init(m=HASH, key=3)  # no element: the program's -ENOENT


def fire(s: Side) -> None:
    s.init()
    s.set_cb()
    s.start(ns=0)
    s.look()
    s.start(ns=50 * MS)
    s.look()  # not yet
    s.wait(50 * MS)
    s.look()
    s.cancel()


def callbacks(s: Side) -> None:
    s.init(key=1, clock=7)
    s.set_cb(key=1, cb=CB_CANCEL_SELF)
    s.start(key=1)
    s.look(key=1)  # -EDEADLK
    s.init(key=2)
    s.set_cb(key=2, cb=CB_REARM, period=MS, limit=5)
    s.start(key=2)
    s.wait(20 * MS)
    s.look(key=2)
    s.cancel(key=2)
    s.init()
    s.set_cb()
    s.start(ns=10**9)
    s.init(key=3)
    s.set_cb(key=3, cb=CB_CANCEL_FIRST)
    s.start(key=3)
    s.look(key=3)  # cancelled a pending timer: 1
    s.cancel()
    s.start()


def times(s: Side) -> None:
    s.init()
    s.set_cb()
    s.start(ns=30 * MS, flags=ABS, now=1)
    s.look()
    s.wait(30 * MS)
    s.look()
    s.start(ns=5, flags=ABS)  # long past
    s.look()
    s.start(flags=PIN)
    s.look()
    for flags in (0, ABS, PIN, ABS | PIN):
        for ns in (2**63 - 1, 2**63, 2**64 - 1):
            s.set_cb()
            s.start(ns=ns, flags=flags)
            s.wait(MS)
            s.look()
            s.cancel()
    s.init(key=1, clock=0)  # CLOCK_REALTIME
    s.set_cb(key=1)
    s.start(key=1, ns=5, flags=ABS)
    s.look(key=1)
    s.start(key=1, ns=MS)
    s.wait(MS)
    s.look(key=1)


def elements(s: Side) -> None:
    s.init()
    s.set_cb()
    s.start(ns=50 * MS)
    s.put(ARR, 0)  # array update: the timer is freed
    s.wait(60 * MS)
    s.look()
    s.init()
    s.cancel()
    for m in (HASH, LRU):
        s.put(m, 1)
        s.init(m, 1)
        s.set_cb(m, 1)
        s.start(m, 1)
        s.look(m, 1)
        s.start(m, 1, ns=50 * MS)
        s.delete(m, 1)
        s.put(m, 1)
        s.init(m, 1)  # a new element: 0
        s.set_cb(m, 1)
        s.start(m, 1, ns=50 * MS)
        s.put(m, 1)  # replaced: freed
        s.wait(60 * MS)
        s.look(m, 1)
        s.init(m, 1)
        s.cancel(m, 1)


def delete_in_callback(s: Side) -> None:
    """A callback deletes its own element: the timer is freed under it (start/cancel: -EINVAL)."""
    for m in (HASH, LRU):
        s.put(m, 1)
        s.init(m, 1)
        s.set_cb(m, 1, cb=CB_DELETE_SELF)
        s.start(m, 1, ns=MS)
        s.wait(MS)
        s.look(ARR, 3)
        s.put(m, 1)
        s.init(m, 1)


def xdp(s: Side) -> None:
    s.xdp(OP_START)
    s.xdp(OP_INIT, arg=1)
    s.xdp(OP_INIT, arg=1)
    s.xdp(OP_CANCEL)
    s.xdp(OP_SET_CALLBACK)
    s.xdp(OP_START)
    s.look(key=2)
    s.xdp(OP_START, arg=10**9)
    s.xdp(OP_CANCEL)


SCENARIOS: dict[str, Callable[[Side], None]] = {
    f.__name__: f for f in (misuse, fire, callbacks, times, elements, delete_in_callback, xdp)
}


@pytest.mark.parametrize("engine", ["interp", "py"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str, engine: str) -> None:
    from ebpf.kernel.collection import Collection as KernelCollection

    spec = load_collection_spec(OBJ)
    scenario = SCENARIOS[name]
    with Collection(spec, engine=engine, deterministic=True) as ours:
        mine = Side(ours, None)
        scenario(mine)
    theirs = KernelCollection(spec)
    try:
        kernel = Side(theirs, mine.log)
        scenario(kernel)
    finally:
        theirs.close()
    assert len(mine.log) == len(kernel.log)
    for i, (a, b) in enumerate(zip(mine.log, kernel.log, strict=True)):
        assert a == b, f"step {i}: runtime {a} != kernel {b}"
