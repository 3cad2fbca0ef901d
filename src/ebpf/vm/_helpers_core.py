"""User-space kernel helpers: maps, time, random numbers, CPU and task information.

Core layer: pure, no kernel access.

Rule 1: each helper follows the kernel's ``BPF_CALL_x`` of the same name: the same return
values (negative errno as a u64, NULL as 0) and the same side effects. Map errors come from the
user-space maps as typed errors with the kernel errno (``errno_of``) and become ``-errno``.

Rule 2: values are real by default (host clocks, OS-seeded random numbers, the calling thread)
and fixed in deterministic mode; both come from the :class:`~ebpf.vm.helpers.RunEnv`.

Rule 3: map pointers are handle addresses (``RunEnv.add_map``); a lookup returns the address
of the value in the memory model (the current CPU's value for per-CPU maps), so the program's
stores through it are visible to ``Map.lookup``.
"""

from __future__ import annotations

import struct

from ebpf.errors import KeyNotFoundError, VMError
from ebpf.helpers import HelperId
from ebpf.maps import Map, errno_of
from ebpf.maps.array import PerCPUArrayMap
from ebpf.maps.bloom import BloomFilterMap
from ebpf.maps.hash import LRUPerCPUHashMap, PerCPUHashMap
from ebpf.maps.mapinmap import ArrayOfMapsMap, HashOfMapsMap
from ebpf.maps.queue import QueueMap
from ebpf.vm.helpers import M64, HelperEnv, HelperRegistry, RunEnv, run_env

__all__ = ["register"]

_U32 = struct.Struct("<I")
ENOTSUPP = 524  # include/linux/errno.h (kernel-internal): the default of unsupported map ops


def neg(code: int) -> int:
    """``-code`` as the u64 a helper returns."""
    return (-code) & M64


def map_error(err: Exception) -> int:
    """The helper return value for a failed map operation (``-errno``)."""
    code = errno_of(err)
    if code is None:
        raise err
    return neg(code)


def map_handle(env: RunEnv, m: Map) -> int:
    """The handle address of ``m`` (an inner map gets one on first use)."""
    try:
        return env.handle_of(m)
    except VMError:
        return env.add_map(m)


# --- maps -----------------------------------------------------------------------------------------


def map_lookup_elem(e: HelperEnv, map_ptr: int, key_ptr: int, _c: int, _d: int, _e: int) -> int:
    env = run_env(e)
    m = env.map_at(map_ptr)
    key = env.memory.read_bytes(key_ptr, m.key_size)
    if isinstance(m, (ArrayOfMapsMap, HashOfMapsMap)):
        try:
            return map_handle(env, m.lookup_map(key))
        except (KeyNotFoundError, ValueError):
            return 0
    cpu = env.cpu if getattr(m, "percpu", False) else 0
    address = m.value_address(key, cpu)
    return 0 if address is None else address


def _percpu_update(
    env: RunEnv, m: PerCPUArrayMap | PerCPUHashMap, key: bytes, value: bytes, flags: int
) -> None:
    """A program's update of a per-CPU map: only the current CPU's value (new elements: others zero)."""
    if isinstance(m, LRUPerCPUHashMap):  # the update may evict the key itself: the map decides
        m.update_cpu(key, value, env.cpu, flags)
        return
    try:
        values = m.lookup_percpu(key)
    except KeyNotFoundError:
        values = [bytes(m.value_size)] * m.ncpus
    values[env.cpu] = value
    m.update_percpu(key, values, flags)


def map_update_elem(e: HelperEnv, map_ptr: int, key_ptr: int, value_ptr: int, flags: int, _e: int) -> int:
    env = run_env(e)
    m = env.map_at(map_ptr)
    key = env.memory.read_bytes(key_ptr, m.key_size)
    value = env.memory.read_bytes(value_ptr, m.value_size)
    if getattr(m, "lru", False):
        m.cpu = env.cpu  # type: ignore[attr-defined]  # LRU maps take the new node from this CPU's lists
    try:
        if isinstance(m, (PerCPUArrayMap, PerCPUHashMap)):
            _percpu_update(env, m, key, value, flags)
        else:
            m.update(key, value, flags)
    except Exception as err:  # noqa: BLE001 - errno_of decides
        return map_error(err)
    return 0


def map_delete_elem(e: HelperEnv, map_ptr: int, key_ptr: int, _c: int, _d: int, _e: int) -> int:
    env = run_env(e)
    m = env.map_at(map_ptr)
    key = env.memory.read_bytes(key_ptr, m.key_size)
    try:
        m.delete(key)
    except Exception as err:  # noqa: BLE001 - errno_of decides
        return map_error(err)
    return 0


def map_push_elem(e: HelperEnv, map_ptr: int, value_ptr: int, flags: int, _d: int, _e: int) -> int:
    env = run_env(e)
    m = env.map_at(map_ptr)
    value = env.memory.read_bytes(value_ptr, m.value_size)
    try:
        if isinstance(m, (QueueMap, BloomFilterMap)):
            m.push(value, flags)
        else:
            return neg(ENOTSUPP)
    except Exception as err:  # noqa: BLE001 - errno_of decides
        return map_error(err)
    return 0


def _pop_or_peek(e: HelperEnv, map_ptr: int, value_ptr: int, *, pop: bool) -> int:
    env = run_env(e)
    m = env.map_at(map_ptr)
    if isinstance(m, BloomFilterMap) and not pop:
        value = env.memory.read_bytes(value_ptr, m.value_size)
        try:
            m.peek(value)
        except Exception as err:  # noqa: BLE001 - errno_of decides
            return map_error(err)
        return 0
    if not isinstance(m, QueueMap):
        return neg(ENOTSUPP)
    try:
        value = m.pop() if pop else m.peek()
    except Exception as err:  # noqa: BLE001 - errno_of decides
        return map_error(err)
    env.memory.write_bytes(value_ptr, value)
    return 0


def map_pop_elem(e: HelperEnv, map_ptr: int, value_ptr: int, _c: int, _d: int, _e: int) -> int:
    return _pop_or_peek(e, map_ptr, value_ptr, pop=True)


def map_peek_elem(e: HelperEnv, map_ptr: int, value_ptr: int, _c: int, _d: int, _e: int) -> int:
    return _pop_or_peek(e, map_ptr, value_ptr, pop=False)


# --- time, random numbers, CPU --------------------------------------------------------------------


def ktime_get_ns(e: HelperEnv, _a: int, _b: int, _c: int, _d: int, _e: int) -> int:
    clock = run_env(e).clock
    assert clock is not None
    return clock.monotonic_ns() & M64


def ktime_get_boot_ns(e: HelperEnv, _a: int, _b: int, _c: int, _d: int, _e: int) -> int:
    clock = run_env(e).clock
    assert clock is not None
    return clock.boottime_ns() & M64


def ktime_get_coarse_ns(e: HelperEnv, _a: int, _b: int, _c: int, _d: int, _e: int) -> int:
    clock = run_env(e).clock
    assert clock is not None
    return clock.coarse_ns() & M64


def ktime_get_tai_ns(e: HelperEnv, _a: int, _b: int, _c: int, _d: int, _e: int) -> int:
    clock = run_env(e).clock
    assert clock is not None
    return clock.tai_ns() & M64


def jiffies64(e: HelperEnv, _a: int, _b: int, _c: int, _d: int, _e: int) -> int:
    clock = run_env(e).clock
    assert clock is not None
    return clock.jiffies64() & M64


def get_prandom_u32(e: HelperEnv, _a: int, _b: int, _c: int, _d: int, _e: int) -> int:
    rng = run_env(e).rng
    assert rng is not None
    return rng.getrandbits(32)


def get_smp_processor_id(e: HelperEnv, _a: int, _b: int, _c: int, _d: int, _e: int) -> int:
    return run_env(e).cpu


def get_numa_node_id(e: HelperEnv, _a: int, _b: int, _c: int, _d: int, _e: int) -> int:
    return 0  # one NUMA node is simulated


# --- the current task -----------------------------------------------------------------------------


def get_current_pid_tgid(e: HelperEnv, _a: int, _b: int, _c: int, _d: int, _e: int) -> int:
    task = run_env(e).current_task()
    return ((task.tgid & 0xFFFFFFFF) << 32) | (task.pid & 0xFFFFFFFF)


def get_current_uid_gid(e: HelperEnv, _a: int, _b: int, _c: int, _d: int, _e: int) -> int:
    task = run_env(e).current_task()
    return ((task.gid & 0xFFFFFFFF) << 32) | (task.uid & 0xFFFFFFFF)


def get_current_comm(e: HelperEnv, buf: int, size: int, _c: int, _d: int, _e: int) -> int:
    """``strscpy_pad(buf, current->comm, size)``: NUL-terminated, zero-padded, truncated to fit."""
    env = run_env(e)
    task = env.current_task()
    size &= 0xFFFFFFFF
    if size == 0:
        return 0
    comm = task.comm[: min(15, size - 1)]
    env.memory.write_bytes(buf, comm.ljust(size, b"\0"))
    return 0


def get_current_task(e: HelperEnv, _a: int, _b: int, _c: int, _d: int, _e: int) -> int:
    task = run_env(e).current_task()
    return task.task & M64


def get_current_cgroup_id(e: HelperEnv, _a: int, _b: int, _c: int, _d: int, _e: int) -> int:
    return run_env(e).current_task().cgroup_id & M64


def get_attach_cookie(e: HelperEnv, _ctx: int, _b: int, _c: int, _d: int, _e: int) -> int:
    return run_env(e).attach_cookie & M64


def get_func_ip(e: HelperEnv, _ctx: int, _b: int, _c: int, _d: int, _e: int) -> int:
    return run_env(e).func_ip & M64


def register(reg: HelperRegistry) -> None:
    """Add this module's helpers to ``reg``."""
    for hid, fn in (
        (HelperId.MAP_LOOKUP_ELEM, map_lookup_elem),
        (HelperId.MAP_UPDATE_ELEM, map_update_elem),
        (HelperId.MAP_DELETE_ELEM, map_delete_elem),
        (HelperId.MAP_PUSH_ELEM, map_push_elem),
        (HelperId.MAP_POP_ELEM, map_pop_elem),
        (HelperId.MAP_PEEK_ELEM, map_peek_elem),
        (HelperId.KTIME_GET_NS, ktime_get_ns),
        (HelperId.KTIME_GET_BOOT_NS, ktime_get_boot_ns),
        (HelperId.KTIME_GET_COARSE_NS, ktime_get_coarse_ns),
        (HelperId.KTIME_GET_TAI_NS, ktime_get_tai_ns),
        (HelperId.JIFFIES64, jiffies64),
        (HelperId.GET_PRANDOM_U32, get_prandom_u32),
        (HelperId.GET_SMP_PROCESSOR_ID, get_smp_processor_id),
        (HelperId.GET_NUMA_NODE_ID, get_numa_node_id),
        (HelperId.GET_CURRENT_PID_TGID, get_current_pid_tgid),
        (HelperId.GET_CURRENT_UID_GID, get_current_uid_gid),
        (HelperId.GET_CURRENT_COMM, get_current_comm),
        (HelperId.GET_CURRENT_TASK, get_current_task),
        (HelperId.GET_CURRENT_TASK_BTF, get_current_task),
        (HelperId.GET_FUNC_IP, get_func_ip),
        (HelperId.GET_ATTACH_COOKIE, get_attach_cookie),
        (HelperId.GET_CURRENT_CGROUP_ID, get_current_cgroup_id),
    ):
        reg.register(hid, f"bpf_{hid.name.lower()}", fn)
