"""LRU_HASH / LRU_PERCPU_HASH eviction against the kernel: the same operations on the same
CPUs leave the same keys (``ebpf.maps._lru``; Linux 6.18's ``bpf_lru_list.c``).

Each sequence runs on a real kernel map (``ebpf.kernel.Map``; user-space updates, deletes
and lookups through ``bpf()``, program lookups, which set the reference bit, through an
XDP test run) and on a user-space map with ``ncpus`` = the kernel's possible CPUs. The
kernel runs a syscall or a test run on the caller's CPU, so the process is pinned to the
CPU each operation names and the user-space map is told the same CPU (:attr:`cpu`).
Every operation's outcome is compared, and the key sets at checkpoints and at the end.
"""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest

from ebpf.errors import BPFError
from ebpf.isa.asm import assemble
from ebpf.maps import HashMap, MapDef, MapFlags, create, errno_of
from ebpf.spec import MapSpec, MapType, ProgramType

pytestmark = pytest.mark.kernel

NO_COMMON = int(MapFlags.NO_COMMON_LRU)
XDP_PASS, XDP_DROP = 2, 1


def possible_cpus() -> int:
    from ebpf.kernel.map import possible_cpus as kernel_possible_cpus

    return kernel_possible_cpus()


def online_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


@contextmanager
def restore_affinity() -> Iterator[None]:
    before = os.sched_getaffinity(0)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def lookup_program(fd: int) -> str:
    """XDP: look up the u32 key at the packet's start; XDP_PASS if found, else XDP_DROP."""
    return f"""
        r2 = *(u32 *)(r1 + 0)
        r3 = *(u32 *)(r1 + 4)
        r4 = r2
        r4 += 4
        if r4 > r3 goto miss
        r5 = *(u32 *)(r2 + 0)
        *(u32 *)(r10 - 4) = r5
        r1 = map_fd({fd}) ll
        r2 = r10
        r2 += -4
        call 1
        if r0 == 0 goto miss
        r0 = {XDP_PASS}
        exit
    miss:
        r0 = {XDP_DROP}
        exit
    """


def outcome(fn: Any, *args: Any) -> tuple[str, object]:
    try:
        return ("ok", fn(*args))
    except (BPFError, OSError) as err:
        return ("err", errno_of(err))


class Pair:
    """One LRU map in the kernel and in user space, driven by the same operations."""

    def __init__(self, stack: ExitStack, mtype: MapType, max_entries: int, flags: int) -> None:
        from ebpf.kernel.map import Map as KernelMap
        from ebpf.kernel.program import Program

        spec = MapSpec(f"lru{os.getpid() % 10000}", mtype, 4, 8, max_entries, flags)
        self.kernel = stack.enter_context(KernelMap.create(spec))
        self.prog = stack.enter_context(
            Program.load(assemble(lookup_program(self.kernel.fd)), ProgramType.XDP)
        )
        ours = create(MapDef(mtype, 4, 8, max_entries, flags), ncpus=possible_cpus())
        assert isinstance(ours, HashMap)
        self.ours = stack.enter_context(ours)
        self.cpu = -1

    def on(self, cpu: int) -> None:
        if cpu != self.cpu:
            os.sched_setaffinity(0, {cpu})
            self.ours.cpu = self.cpu = cpu

    def update(self, key: int, value: int, flags: int) -> tuple[str, object]:
        k, v = struct.pack("<I", key), struct.pack("<Q", value)
        mine = outcome(self.ours.update, k, v, flags)
        assert outcome(self.kernel.update, k, v, flags) == mine, f"update {key} flags {flags}"
        return mine

    def delete(self, key: int) -> None:
        k = struct.pack("<I", key)
        assert outcome(self.kernel.delete, k) == outcome(self.ours.delete, k), f"delete {key}"

    def lookup(self, key: int) -> None:
        """A user-space lookup (no reference bit)."""
        k = struct.pack("<I", key)
        kernel = outcome(self.kernel.lookup, k)
        mine = outcome(self.ours.lookup, k)
        assert kernel[0] == mine[0], f"lookup {key}"

    def prog_lookup(self, key: int) -> None:
        """A program's lookup (sets the reference bit)."""
        k = struct.pack("<I", key)
        kernel = self.prog.test_run(k.ljust(16, b"\0")).retval
        mine = XDP_DROP if self.ours.value_address(k) is None else XDP_PASS
        assert kernel == mine, f"program lookup {key}"

    def check_keys(self) -> set[bytes]:
        kernel = set(self.kernel.keys())
        mine = set(self.ours.keys())
        assert mine == kernel, f"only in ours {len(mine - kernel)}, only in the kernel {len(kernel - mine)}"
        return kernel


def run_random(pair: Pair, seed: int, n_ops: int, keyspace: int, cpus: list[int]) -> set[bytes]:
    rng = random.Random(seed)
    checkpoint = max(n_ops // 8, 1)
    for i in range(n_ops):
        pair.on(rng.choice(cpus))
        r = rng.random()
        key = rng.randrange(keyspace)
        if r < 0.5:
            pair.update(key, i, 0)
        elif r < 0.6:
            pair.update(key, i, 1)  # BPF_NOEXIST
        elif r < 0.68:
            pair.update(key, i, 2)  # BPF_EXIST
        elif r < 0.88:
            pair.prog_lookup(key)
        elif r < 0.96:
            pair.delete(key)
        else:
            pair.lookup(key)
        if i % checkpoint == 0:
            pair.check_keys()
    return pair.check_keys()


SIZES = [1, 2, 127, 128, 129, 1024]
TYPES = [MapType.LRU_HASH, MapType.LRU_PERCPU_HASH]


@pytest.mark.parametrize("flags", [0, NO_COMMON], ids=["common", "no_common"])
@pytest.mark.parametrize("mtype", TYPES, ids=["lru_hash", "lru_percpu_hash"])
@pytest.mark.parametrize("max_entries", SIZES)
def test_random_ops_one_cpu(max_entries: int, mtype: MapType, flags: int) -> None:
    """Random updates (all flags), deletes and lookups on the first allowed CPU."""
    with ExitStack() as stack, restore_affinity():
        pair = Pair(stack, mtype, max_entries, flags)
        n_ops = min(3 * max_entries + 300, 2500)
        run_random(pair, max_entries * 7 + flags, n_ops, 2 * max_entries + 3, online_cpus()[:1])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
@pytest.mark.parametrize("flags", [0, NO_COMMON], ids=["common", "no_common"])
@pytest.mark.parametrize("mtype", TYPES, ids=["lru_hash", "lru_percpu_hash"])
@pytest.mark.parametrize("max_entries", [1, 2, 7, 128, 300])
def test_random_ops_two_cpus(max_entries: int, mtype: MapType, flags: int) -> None:
    """Operations on alternating CPUs: local free/pending lists per CPU, stealing, per-CPU lists."""
    with ExitStack() as stack, restore_affinity():
        pair = Pair(stack, mtype, max_entries, flags)
        run_random(
            pair,
            max_entries + flags + 1,
            min(3 * max_entries + 300, 1500),
            2 * max_entries + 3,
            online_cpus()[:2],
        )


@pytest.mark.parametrize("mtype", TYPES, ids=["lru_hash", "lru_percpu_hash"])
def test_full_map_drops_a_batch(mtype: MapType) -> None:
    """The 1025th new key of a full 1024-entry common LRU evicts a batch, as observed: the map
    keeps max_entries - target_free + 1 keys (897 with 2 CPUs), the newest ones."""
    with ExitStack() as stack, restore_affinity():
        pair = Pair(stack, mtype, 1024, 0)
        pair.on(online_cpus()[0])
        for i in range(1025):
            assert pair.update(i, i, 0) == ("ok", None)
        keys = pair.check_keys()
        target = min(max(1024 // possible_cpus() // 2, 1), 128)
        assert len(keys) == 1024 - target + 1
        assert struct.pack("<I", 1024) in keys and struct.pack("<I", 0) not in keys


def test_referenced_keys_survive() -> None:
    """Keys a program looked up survive the next shrink; user-space lookups do not protect."""
    with ExitStack() as stack, restore_affinity():
        pair = Pair(stack, MapType.LRU_HASH, 256, 0)
        pair.on(online_cpus()[0])
        for i in range(256):
            pair.update(i, i, 0)
        for i in range(0, 64, 2):
            pair.prog_lookup(i)
        for i in range(1, 64, 2):
            pair.lookup(i)
        for i in range(256, 300):
            pair.update(i, i, 0)
        keys = pair.check_keys()
        assert all(struct.pack("<I", i) in keys for i in range(0, 64, 2))
        assert not any(struct.pack("<I", i) in keys for i in range(1, 64, 2))


def test_two_entries_update_of_existing_key_evicts() -> None:
    """A 2-entry map: even a failing BPF_NOEXIST / BPF_EXIST update takes a node and can evict."""
    with ExitStack() as stack, restore_affinity():
        pair = Pair(stack, MapType.LRU_HASH, 2, 0)
        pair.on(online_cpus()[0])
        assert pair.update(1, 11, 1) == ("ok", None)
        assert pair.update(1, 12, 1)[0] == "err"
        pair.update(2, 22, 0)
        pair.update(3, 33, 0)
        assert pair.update(4, 44, 2)[0] == "err"
        assert pair.check_keys() == {struct.pack("<I", 3)}
