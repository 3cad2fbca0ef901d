"""User-space kernel helpers for control flow and events: tail calls, loops, callbacks, locks,
ring buffers and perf event output.

Core layer: pure, no kernel access.

Rule 1 (``bpf_tail_call``, as the x86-64 JIT's ``emit_bpf_tail_call_indirect`` does it): an
index past the end, a run that already took :data:`~ebpf.vm.helpers.MAX_TAIL_CALL_CNT` tail
calls, or an empty slot falls through; a filled slot counts one tail call and raises
:class:`~ebpf.vm.interpreter.TailCall` (the program never resumes). An attempt on an empty slot
does not count (measured on Linux 6.18 with ``net.core.bpf_jit_enable=1``: a program that tries
an empty slot and then itself runs 34 times; the kernel's interpreter, ``JMP_TAIL_CALL`` in
``kernel/bpf/core.c``, counts before its NULL check and would run it 17 times). Falling through
leaves 0 in r0 (the kernel leaves r0 undefined; the verifier forbids reading it).

Rule 2: callbacks (``bpf_loop``, ``bpf_for_each_map_elem``) run through ``RunEnv.call``;
``bpf_for_each_map_elem`` gives the callback a read-only copy of the key and the value's
address (the current CPU's for per-CPU maps), over the keys present when it starts.

Rule 3: ``bpf_spin_lock`` writes 1 to the lock word and ``bpf_spin_unlock`` 0 (the kernel's
queued spin lock word when uncontended); a run holds at most what it took, so taking a held
lock or releasing a free one is a ``VMError`` (the verifier refuses such programs).
"""

from __future__ import annotations

import errno

from ebpf.errors import VMError
from ebpf.helpers import HelperId
from ebpf.maps import Map
from ebpf.maps._errors import InvalidMapArgumentError
from ebpf.maps.perf import PerfEventArrayMap
from ebpf.maps.progarray import ProgArrayMap
from ebpf.maps.ringbuf import RingBufMap
from ebpf.vm._context_base import mapped_at
from ebpf.vm._context_skb import SkbMapped
from ebpf.vm.context import XdpMapped
from ebpf.vm.helpers import M64, MAX_TAIL_CALL_CNT, HelperEnv, HelperRegistry, RunEnv, run_env
from ebpf.vm.interpreter import TailCall
from ebpf.vm.memory import HostBuffer

__all__ = ["BPF_MAX_LOOPS", "register"]

M32 = 0xFFFFFFFF
BPF_MAX_LOOPS = 8 * 1024 * 1024


def _neg(code: int) -> int:
    return (-code) & M64


def tail_call(e: HelperEnv, ctx: int, map_ptr: int, index: int, _d: int, _e: int) -> int:
    env = run_env(e)
    m = env.map_at(map_ptr)
    if not isinstance(m, ProgArrayMap):
        raise VMError(f"bpf_tail_call: {m.label} is not a program array")
    index &= M32
    if index >= m.max_entries or env.tail_calls >= MAX_TAIL_CALL_CNT:
        return 0
    target = m.tail_call_target(index)
    if target is None:
        return 0  # the JIT checks the slot before counting (Rule 1)
    env.tail_calls += 1
    raise TailCall(target)


def loop(e: HelperEnv, nr_loops: int, callback: int, callback_ctx: int, flags: int, _e: int) -> int:
    """``bpf_loop``: call ``callback(i, ctx)`` until it returns non-zero; the calls made."""
    env = run_env(e)
    if flags:
        return _neg(errno.EINVAL)
    count = nr_loops & M32
    if count > BPF_MAX_LOOPS:
        return _neg(errno.E2BIG)
    for i in range(count):
        if env.call(callback, i, callback_ctx):
            return i + 1
    return count


def _key_region_call(env: RunEnv, m: Map, map_ptr: int, callback: int, key: bytes, ctx: int) -> int | None:
    cpu = env.cpu if getattr(m, "percpu", False) else 0
    peek = getattr(m, "peek_address", None)  # hash maps: iterating sets no LRU reference bit
    value = m.value_address(key, cpu) if peek is None else peek(key, cpu)
    if value is None:
        return None  # deleted by an earlier callback
    region = env.memory.map_buffer("for_each_key", HostBuffer.from_bytes(key), writable=False)
    try:
        return env.call(callback, map_ptr, region.start, value, ctx)
    finally:
        env.memory.unmap(region)


def for_each_map_elem(
    e: HelperEnv, map_ptr: int, callback: int, callback_ctx: int, flags: int, _e: int
) -> int:
    """``bpf_for_each_map_elem``: the number of elements the callback saw (it stops on 1)."""
    env = run_env(e)
    if flags:
        return _neg(errno.EINVAL)
    m = env.map_at(map_ptr)
    seen = 0
    for key in m.keys():  # noqa: SIM118 - a snapshot: callbacks may delete
        ret = _key_region_call(env, m, map_ptr, callback, key, callback_ctx)
        if ret is None:
            continue
        seen += 1
        if ret:
            break
    return seen


def spin_lock(e: HelperEnv, lock: int, _b: int, _c: int, _d: int, _e: int) -> int:
    env = run_env(e)
    if lock in env.spin_locks:
        raise VMError(f"bpf_spin_lock: the lock at {lock:#x} is already held (deadlock)")
    env.memory.store(lock, 4, 1)
    env.spin_locks.add(lock)
    return 0


def spin_unlock(e: HelperEnv, lock: int, _b: int, _c: int, _d: int, _e: int) -> int:
    env = run_env(e)
    if lock not in env.spin_locks:
        raise VMError(f"bpf_spin_unlock: the lock at {lock:#x} is not held")
    env.memory.store(lock, 4, 0)
    env.spin_locks.discard(lock)
    return 0


# --- ring buffers ---------------------------------------------------------------------------------


def _ringbuf(env: RunEnv, map_ptr: int, helper: str) -> RingBufMap:
    m = env.map_at(map_ptr)
    if not isinstance(m, RingBufMap):
        raise VMError(f"{helper}: {m.label} is not a ring buffer")
    return m


def ringbuf_output(e: HelperEnv, map_ptr: int, data: int, size: int, flags: int, _e: int) -> int:
    env = run_env(e)
    m = _ringbuf(env, map_ptr, "bpf_ringbuf_output")
    payload = env.memory.read_bytes(data, size & M32)
    return m.output(payload, flags) & M64


def ringbuf_reserve(e: HelperEnv, map_ptr: int, size: int, flags: int, _d: int, _e: int) -> int:
    env = run_env(e)
    return _ringbuf(env, map_ptr, "bpf_ringbuf_reserve").reserve(size & M32, flags)


def _release(e: HelperEnv, sample: int, flags: int, *, discard: bool) -> int:
    env = run_env(e)
    for m in env.maps.values():
        if isinstance(m, RingBufMap):
            try:
                (m.discard if discard else m.submit)(sample, flags & 3)
            except InvalidMapArgumentError:
                continue
            return 0
    raise VMError(f"{sample:#x} is not a reserved ring buffer sample")


def ringbuf_submit(e: HelperEnv, sample: int, flags: int, _c: int, _d: int, _e: int) -> int:
    return _release(e, sample, flags, discard=False)


def ringbuf_discard(e: HelperEnv, sample: int, flags: int, _c: int, _d: int, _e: int) -> int:
    return _release(e, sample, flags, discard=True)


def ringbuf_query(e: HelperEnv, map_ptr: int, flags: int, _c: int, _d: int, _e: int) -> int:
    env = run_env(e)
    return _ringbuf(env, map_ptr, "bpf_ringbuf_query").query(flags) & M64


# --- perf events and map extras -------------------------------------------------------------------


def _packet_of(mapped: object) -> bytes | None:
    """The bytes the skb/xdp variants of ``bpf_perf_event_output`` can append: an skb's from
    ``skb->data`` (``bpf_skb_copy``), an XDP frame's from ``data`` with its fragments
    (``bpf_xdp_copy``: linear part, then the frags in order); ``None`` for other contexts."""
    if isinstance(mapped, SkbMapped):
        return mapped.packet.tobytes()
    if isinstance(mapped, XdpMapped):
        return mapped.read(0, mapped.buff_len())
    return None


def _output(
    env: RunEnv, helper: str, map_ptr: int, flags: int, data: int, size: int, packet: bytes | None
) -> int:
    m = env.map_at(map_ptr)
    if not isinstance(m, PerfEventArrayMap):
        raise VMError(f"{helper}: {m.label} is not a perf event array")
    payload = env.memory.read_bytes(data, size & M32)
    return m.output(flags, payload, cpu=env.cpu, ctx=packet) & M64


def perf_event_output(e: HelperEnv, ctx: int, map_ptr: int, flags: int, data: int, size: int) -> int:
    """``bpf_perf_event_output``; skb and XDP programs may append packet bytes
    (``BPF_F_CTXLEN_MASK``; an XDP frame's fragments too, as Linux >= 5.18 does)."""
    env = run_env(e)
    packet = _packet_of(mapped_at(env.memory, ctx))
    return _output(env, "bpf_perf_event_output", map_ptr, flags, data, size, packet)


def _packet_arg(env: RunEnv, address: int, kind: type[SkbMapped | XdpMapped], helper: str) -> bytes:
    mapped = mapped_at(env.memory, address)
    if not isinstance(mapped, kind):
        raise VMError(
            f"{helper}: {address:#x} is not {'an sk_buff' if kind is SkbMapped else 'an xdp_buff'} "
            "the user-space runtime knows (it has the skb/XDP contexts of its own runs only)"
        )
    packet = _packet_of(mapped)
    assert packet is not None
    return packet


def skb_output(e: HelperEnv, skb: int, map_ptr: int, flags: int, data: int, size: int) -> int:
    """``bpf_skb_output`` (tracing programs, on a ``struct sk_buff *``): ``bpf_perf_event_output``
    of an skb, its bytes appended per ``BPF_F_CTXLEN_MASK``. Here the pointer must be the
    context of an skb run of this runtime.

    Raises:
        VMError: the pointer is not such an skb.
    """
    env = run_env(e)
    packet = _packet_arg(env, skb, SkbMapped, "bpf_skb_output")
    return _output(env, "bpf_skb_output", map_ptr, flags, data, size, packet)


def xdp_output(e: HelperEnv, xdp: int, map_ptr: int, flags: int, data: int, size: int) -> int:
    """``bpf_xdp_output`` (tracing programs, on a ``struct xdp_buff *``): ``bpf_perf_event_output``
    of an XDP frame, linear part and fragments appended per ``BPF_F_CTXLEN_MASK``. Here the
    pointer must be the context of an XDP run of this runtime.

    Raises:
        VMError: the pointer is not such a frame.
    """
    env = run_env(e)
    packet = _packet_arg(env, xdp, XdpMapped, "bpf_xdp_output")
    return _output(env, "bpf_xdp_output", map_ptr, flags, data, size, packet)


def map_lookup_percpu_elem(e: HelperEnv, map_ptr: int, key_ptr: int, cpu: int, _d: int, _e: int) -> int:
    """``bpf_map_lookup_percpu_elem``: the value address on ``cpu`` (NULL past the last CPU)."""
    env = run_env(e)
    m = env.map_at(map_ptr)
    cpu &= M32
    if not getattr(m, "percpu", False) or cpu >= m.ncpus:
        return 0
    key = env.memory.read_bytes(key_ptr, m.key_size)
    address = m.value_address(key, cpu)
    return 0 if address is None else address


def register(reg: HelperRegistry) -> None:
    """Add this module's helpers to ``reg``."""
    for hid, fn in (
        (HelperId.TAIL_CALL, tail_call),
        (HelperId.LOOP, loop),
        (HelperId.FOR_EACH_MAP_ELEM, for_each_map_elem),
        (HelperId.SPIN_LOCK, spin_lock),
        (HelperId.SPIN_UNLOCK, spin_unlock),
        (HelperId.RINGBUF_OUTPUT, ringbuf_output),
        (HelperId.RINGBUF_RESERVE, ringbuf_reserve),
        (HelperId.RINGBUF_SUBMIT, ringbuf_submit),
        (HelperId.RINGBUF_DISCARD, ringbuf_discard),
        (HelperId.RINGBUF_QUERY, ringbuf_query),
        (HelperId.PERF_EVENT_OUTPUT, perf_event_output),
        (HelperId.SKB_OUTPUT, skb_output),
        (HelperId.XDP_OUTPUT, xdp_output),
        (HelperId.MAP_LOOKUP_PERCPU_ELEM, map_lookup_percpu_elem),
    ):
        reg.register(hid, f"bpf_{hid.name.lower()}", fn)
