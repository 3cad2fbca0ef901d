"""``bpf_timer`` in the user-space runtime: helpers 169-172 and timers in map values.

Core layer: pure, no kernel access.

Rule 1 (the registry): a ``struct bpf_timer`` is a 16-byte opaque field in an ``ARRAY``,
``HASH`` or ``LRU_HASH`` map value. The runtime keeps no state in those bytes: a
:class:`Timers` registry (one per :class:`~ebpf.vm.helpers.RunEnv`, :func:`timers_of`) maps
the field's address to a :class:`Timer` (its map, clock, callback, expiry). User-space
lookups read the field as zeros, whatever bytes an update put there, as the kernel's do (the
offset comes from the map's BTF, :mod:`ebpf.maps._timer`; a map without BTF accepts a timer at
any 8-aligned offset of its values, and shows the bytes).

Rule 2 (the helpers, as Linux 6.18's ``kernel/bpf/helpers.c``, measured by
``tests/differential/test_timer_kernel.py``):

- ``bpf_timer_init(timer, map, flags)``: ``flags`` is a clock id; anything but
  ``CLOCK_REALTIME`` (0), ``CLOCK_MONOTONIC`` (1) or ``CLOCK_BOOTTIME`` (7) is ``-EINVAL``; a
  timer already initialized is ``-EBUSY``.
- ``bpf_timer_set_callback(timer, fn)``: ``-EINVAL`` before init; may replace the callback of a
  pending timer (which stays pending).
- ``bpf_timer_start(timer, nsecs, flags)``: flags other than ``BPF_F_TIMER_ABS`` (1) and
  ``BPF_F_TIMER_CPU_PIN`` (2) are ``-EINVAL`` (checked first), then ``-EINVAL`` without init or
  without a callback. ``nsecs`` is relative to now, or with ``BPF_F_TIMER_ABS`` a time of the
  timer's clock; as a signed 64-bit value a negative one never expires (the hrtimer's
  ``ktime_add_safe`` clamps), as does one past ``KTIME_MAX``. CPU pinning has no effect here.
- ``bpf_timer_cancel(timer)``: ``-EINVAL`` before init, ``-EDEADLK`` from the timer's own
  callback, else 1 if the timer was pending and 0 if not; it also drops the callback, so a
  later ``bpf_timer_start`` is ``-EINVAL`` until ``bpf_timer_set_callback`` again.

Rule 3 (the callback): ``callback(map, key, value)`` with the map's handle address, a pointer
to the key (array: the ``u32`` index, hash: the element's key; a read-only copy mapped for
the call) and the value's address; r4 = r5 = 0; its r0 is ignored (the verifier makes it 0).
Callbacks run through :meth:`~ebpf.vm.helpers.RunEnv.call` when they are due: when
:meth:`Timers.run_due` or :meth:`Timers.advance` is called (the runtime's
``Collection.run_timers`` / ``Collection.advance``, and before and after every run), in
expiry order (ties: arming order). A callback may re-arm its own timer.

Rule 4 (time): expiries are kept on the runtime clock's ``CLOCK_MONOTONIC``; an absolute time
of ``CLOCK_BOOTTIME`` / ``CLOCK_REALTIME`` is converted with the offset between the clocks at
start. A real clock (:class:`~ebpf.vm.helpers.SystemClock`) runs callbacks whose time has come;
:meth:`Timers.advance` with a real clock sleeps. A deterministic clock (``FixedClock``) only
moves forward through :meth:`Timers.advance`, which sets it to each expiry before that
callback runs and to the target at the end.

Rule 5 (map elements, as ``bpf_obj_free_fields``): updating an array element (even with
``BPF_F_LOCK``), updating a hash element (a new element replaces it; not with ``BPF_F_LOCK``,
which writes in place), deleting or evicting an element, and closing the map cancel and free
its timers: the field is uninitialized again (``bpf_timer_init`` returns 0). The maps report
this through :attr:`ebpf.maps.Map.free_hooks`.

Not modelled: ``-EPERM`` of init / set_callback when the map has no user references left
(closing a runtime map also ends its programs), ``-EOPNOTSUPP`` in NMI context, two callbacks
cancelling each other on two CPUs (``-EDEADLK``), the kernel's refusal of a timer in other map
types at map creation (the runtime refuses ``bpf_timer_init`` on them).
"""

from __future__ import annotations

import errno
import heapq
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ebpf.errors import VMError
from ebpf.helpers import HelperId
from ebpf.spec import MapType
from ebpf.vm.helpers import M64, FixedClock, HelperEnv, HelperRegistry, RunEnv, run_env
from ebpf.vm.memory import HostBuffer

if TYPE_CHECKING:
    from collections.abc import Callable

    from ebpf.maps import Map

__all__ = [
    "BPF_F_TIMER_ABS",
    "BPF_F_TIMER_CPU_PIN",
    "CLOCK_BOOTTIME",
    "CLOCK_MONOTONIC",
    "CLOCK_REALTIME",
    "MAX_CALLBACKS",
    "TIMER_MAP_TYPES",
    "TIMER_SIZE",
    "Timer",
    "Timers",
    "register",
    "timers_of",
]

CLOCK_REALTIME = 0
CLOCK_MONOTONIC = 1
CLOCK_BOOTTIME = 7
CLOCKS = frozenset({CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME})
BPF_F_TIMER_ABS = 1
BPF_F_TIMER_CPU_PIN = 2
TIMER_SIZE = 16  # struct bpf_timer { __u64 __opaque[2]; } aligned 8
TIMER_MAP_TYPES = frozenset({MapType.ARRAY, MapType.HASH, MapType.LRU_HASH})
KTIME_MAX = (1 << 63) - 1
TAI_MINUS_UTC_NS = 37_000_000_000  # a FixedClock's realtime: its TAI minus the 37 s leap offset
MAX_CALLBACKS = 10_000  # callbacks one run_due / advance runs at most (a 0 ns re-arm loops)


def _errno(code: int) -> int:
    return -code & M64


@dataclass(eq=False)
class Timer:
    """One initialized ``struct bpf_timer``.

    Attributes:
        address: the field's address in the map value.
        map: the map whose value holds it.
        clockid: the clock of ``bpf_timer_init``.
        callback: the callback's code address (``bpf_timer_set_callback``), or ``None``.
        expires: the ``CLOCK_MONOTONIC`` time it fires at, or ``None`` when not pending.
        pinned: the last start had ``BPF_F_TIMER_CPU_PIN`` (no effect in user space).
    """

    address: int
    map: Map
    clockid: int
    callback: int | None = None
    expires: int | None = None
    pinned: bool = False
    _seq: int = 0  # arming order: ties of expires fire in the order they were started

    @property
    def pending(self) -> bool:
        return self.expires is not None


class Timers:
    """The ``bpf_timer`` registry of one :class:`~ebpf.vm.helpers.RunEnv` (Rules 1-5)."""

    def __init__(self, env: RunEnv) -> None:
        self.env = env
        self._timers: dict[int, Timer] = {}
        self._queue: list[tuple[int, int, Timer]] = []  # (expires, seq, timer), lazily pruned
        self._seq = 0
        self._running: Timer | None = None
        self._hooked: dict[int, Map] = {}  # id(map) -> map whose free_hooks hold ours

    # --- inspection -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._timers)

    def get(self, address: int) -> Timer | None:
        """The timer initialized at ``address``, or ``None``."""
        return self._timers.get(address)

    def pending(self) -> list[Timer]:
        """The pending timers, soonest first."""
        armed = [t for t in self._timers.values() if t.expires is not None]
        return sorted(armed, key=lambda t: (t.expires, t._seq))

    def next_expiry(self) -> int | None:
        """The ``CLOCK_MONOTONIC`` time of the next expiry, or ``None`` when nothing is pending."""
        self._prune()
        return self._queue[0][0] if self._queue else None

    # --- the helpers ------------------------------------------------------------------------------

    def init(self, address: int, m: Map, flags: int) -> int:
        """``bpf_timer_init``: 0, or a negative errno (as a u64)."""
        if flags >= 16 or flags not in CLOCKS:
            return _errno(errno.EINVAL)
        self._check_field(address, m)
        if address in self._timers:
            return _errno(errno.EBUSY)
        self._timers[address] = Timer(address, m, flags)
        if id(m) not in self._hooked:
            self._hooked[id(m)] = m
            m.free_hooks.append(self._freed)
        return 0

    def set_callback(self, address: int, function: int) -> int:
        """``bpf_timer_set_callback``."""
        t = self._timers.get(address)
        if t is None:
            return _errno(errno.EINVAL)
        t.callback = function
        return 0

    def start(self, address: int, nsecs: int, flags: int) -> int:
        """``bpf_timer_start``."""
        if flags & ~(BPF_F_TIMER_ABS | BPF_F_TIMER_CPU_PIN):
            return _errno(errno.EINVAL)
        t = self._timers.get(address)
        if t is None or t.callback is None:
            return _errno(errno.EINVAL)
        now = self._monotonic()
        n = nsecs & M64
        n = n - (1 << 64) if n >> 63 else n
        if n < 0:
            expires = KTIME_MAX
        elif flags & BPF_F_TIMER_ABS:
            expires = max(0, n - self._offset(t.clockid, now))
        else:
            expires = min(now + n, KTIME_MAX)
        self._arm(t, expires)
        t.pinned = bool(flags & BPF_F_TIMER_CPU_PIN)
        return 0

    def cancel(self, address: int) -> int:
        """``bpf_timer_cancel``: 1 if it was pending, 0 if not (and the callback is dropped)."""
        t = self._timers.get(address)
        if t is None:
            return _errno(errno.EINVAL)
        if t is self._running:
            return _errno(errno.EDEADLK)
        t.callback = None
        was = t.expires is not None
        t.expires = None
        return int(was)

    # --- time ---------------------------------------------------------------------------------------

    def run_due(self, *, prepare: Callable[[], None] | None = None) -> int:
        """Run the callbacks whose time has come on the clock now; how many ran.

        ``prepare`` is called before each callback (the runtime resets its callback budget).
        At most :data:`MAX_CALLBACKS` run per call; the rest stay pending.
        """
        ran = 0
        while ran < MAX_CALLBACKS:
            t = self._next_due(self._monotonic())
            if t is None:
                break
            self._fire(t, prepare)
            ran += 1
        return ran

    def advance(self, ns: int, *, prepare: Callable[[], None] | None = None) -> int:
        """Let ``ns`` nanoseconds pass and run the callbacks due by then, in expiry order.

        A deterministic clock (:class:`~ebpf.vm.helpers.FixedClock`) is set to each expiry before its callback and to the target at the end; a real clock
        is slept on. Returns how many callbacks ran.

        Raises:
            ValueError: ``ns`` is negative.
        """
        if ns < 0:
            raise ValueError(f"time only moves forward: advance({ns})")
        clock = self.env.clock
        if not isinstance(clock, FixedClock):
            if ns:
                time.sleep(ns / 1e9)
            return self.run_due(prepare=prepare)
        target = self._monotonic() + ns
        ran = 0
        while ran < MAX_CALLBACKS:
            t = self._next_due(target)
            if t is None:
                break
            assert t.expires is not None
            clock.now_ns = max(clock.now_ns, t.expires)
            self._fire(t, prepare)
            ran += 1
        clock.now_ns = max(clock.now_ns, target)
        return ran

    def clear(self) -> None:
        """Cancel and forget every timer (the runtime closing)."""
        self._timers.clear()
        self._queue.clear()
        for m in self._hooked.values():
            if self._freed in m.free_hooks:
                m.free_hooks.remove(self._freed)
        self._hooked.clear()

    # --- internals ----------------------------------------------------------------------------------

    def _monotonic(self) -> int:
        assert self.env.clock is not None
        return self.env.clock.monotonic_ns()

    def _offset(self, clockid: int, mono: int) -> int:
        """How far ``clockid`` is ahead of ``CLOCK_MONOTONIC``."""
        clock = self.env.clock
        assert clock is not None
        if clockid == CLOCK_BOOTTIME:
            return clock.boottime_ns() - mono
        if clockid == CLOCK_REALTIME:
            if isinstance(clock, FixedClock):
                return clock.tai_ns() - TAI_MINUS_UTC_NS - mono
            return time.clock_gettime_ns(time.CLOCK_REALTIME) - time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        return 0

    def _arm(self, t: Timer, expires: int) -> None:
        self._seq += 1
        t.expires = expires
        t._seq = self._seq
        heapq.heappush(self._queue, (expires, self._seq, t))

    def _prune(self) -> None:
        q = self._queue
        while q:
            expires, seq, t = q[0]
            if t.expires == expires and t._seq == seq and self._timers.get(t.address) is t:
                return
            heapq.heappop(q)

    def _next_due(self, now: int) -> Timer | None:
        self._prune()
        if not self._queue or self._queue[0][0] > now:
            return None
        return heapq.heappop(self._queue)[2]

    def _fire(self, t: Timer, prepare: Callable[[], None] | None) -> None:
        t.expires = None
        function = t.callback
        if function is None:
            return
        key, value = _element(t.map, t.address)
        memory = self.env.memory
        key_region = memory.map_buffer("timer_key", HostBuffer.from_bytes(key), writable=False)
        self._running = t
        try:
            if prepare is not None:
                prepare()
            self.env.call(function, self.env.handle_of(t.map), key_region.start, value)
        finally:
            self._running = None
            memory.unmap(key_region)

    def _check_field(self, address: int, m: Map) -> None:
        if m.type not in TIMER_MAP_TYPES:
            raise VMError(f"bpf_timer in a {m.type.name} map (the kernel allows ARRAY, HASH, LRU_HASH)")
        if address % 8:
            raise VMError(f"bpf_timer at {address:#x} is not 8-byte aligned", address=address)
        _key, value = _element(m, address)
        offset = m._timer_offset  # from the map's BTF; without BTF any aligned field will do
        if offset is not None and address - value != offset:
            raise VMError(
                f"{address:#x} is not the bpf_timer of a value of {m.label} (offset "
                f"{address - value}, the value type has it at {offset})",
                address=address,
            )

    def _freed(self, m: Map, start: int | None) -> None:
        """``Map.free_hooks``: the value at ``start`` (``None``: every value) was freed."""
        end = None if start is None else start + m.value_size
        for address, t in list(self._timers.items()):
            if t.map is m and (start is None or start <= address < end):  # type: ignore[operator]
                t.expires = None
                t.callback = None
                del self._timers[address]


def _element(m: Map, address: int) -> tuple[bytes, int]:
    """The key of the value holding ``address`` in ``m``, and that value's address.

    Raises:
        VMError: ``address`` is not a ``bpf_timer`` inside a value of ``m`` (the kernel's
            verifier refuses such a program).
    """
    from ebpf.maps.array import ArrayMap
    from ebpf.maps.hash import HashMap

    region = m.memory.find(address, TIMER_SIZE)
    if region is not None and isinstance(m, ArrayMap) and region is m._regions[0]:
        index, rem = divmod(address - region.start, m.stride)
        if rem + TIMER_SIZE <= m.value_size:
            return index.to_bytes(4, "little"), region.start + index * m.stride
    elif region is not None and isinstance(m, HashMap):
        elem = m._by_start.get(region.start)
        if elem is not None and elem.regions[0] is region:
            return elem.key, region.start
    raise VMError(f"{address:#x} is not a bpf_timer in a value of {m.label}", address=address)


def timers_of(env: RunEnv) -> Timers:
    """The :class:`Timers` of ``env`` (made on first use)."""
    if env.timers is None:
        env.timers = Timers(env)
    return env.timers


# --- the helpers ------------------------------------------------------------------------------------


def timer_init(e: HelperEnv, timer: int, map_ptr: int, flags: int, _d: int, _e: int) -> int:
    env = run_env(e)
    return timers_of(env).init(timer, env.map_at(map_ptr), flags)


def timer_set_callback(e: HelperEnv, timer: int, function: int, _c: int, _d: int, _e: int) -> int:
    return timers_of(run_env(e)).set_callback(timer, function)


def timer_start(e: HelperEnv, timer: int, nsecs: int, flags: int, _d: int, _e: int) -> int:
    return timers_of(run_env(e)).start(timer, nsecs, flags)


def timer_cancel(e: HelperEnv, timer: int, _b: int, _c: int, _d: int, _e: int) -> int:
    return timers_of(run_env(e)).cancel(timer)


def register(reg: HelperRegistry) -> None:
    """Add this module's helpers to ``reg``."""
    for hid, fn in (
        (HelperId.TIMER_INIT, timer_init),
        (HelperId.TIMER_SET_CALLBACK, timer_set_callback),
        (HelperId.TIMER_START, timer_start),
        (HelperId.TIMER_CANCEL, timer_cancel),
    ):
        reg.register(hid, f"bpf_{hid.name.lower()}", fn)
