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
from ebpf.vm import ENGINES
from ebpf.vm.context import XdpInput
from ebpf.vm.helpers import RunEnv, runtime_helpers

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


def map_program(map_ref: str) -> str:
    """XDP over a 24-byte packet: u32 key at 0, u64 value at 8, op at 16 (0: lookup, 1: update),
    update flags at 17. A lookup returns XDP_PASS if found, else XDP_DROP; an update returns
    the helper's result."""
    return f"""
        r6 = *(u32 *)(r1 + 0)
        r3 = *(u32 *)(r1 + 4)
        r4 = r6
        r4 += 24
        if r4 > r3 goto miss
        r5 = *(u32 *)(r6 + 0)
        *(u32 *)(r10 - 4) = r5
        r5 = *(u64 *)(r6 + 8)
        *(u64 *)(r10 - 16) = r5
        r7 = *(u8 *)(r6 + 16)
        r8 = *(u8 *)(r6 + 17)
        r1 = {map_ref} ll
        r2 = r10
        r2 += -4
        if r7 == 1 goto update
        call 1
        if r0 == 0 goto miss
        r0 = {XDP_PASS}
        exit
    update:
        r3 = r10
        r3 += -16
        r4 = r8
        call 2
        exit
    miss:
        r0 = {XDP_DROP}
        exit
    """


def packet(key: int, value: int, op: int, flags: int) -> bytes:
    return struct.pack("<IIQBB6x", key, 0, value, op, flags)


def outcome(fn: Any, *args: Any) -> tuple[str, object]:
    try:
        return ("ok", fn(*args))
    except (BPFError, OSError) as err:
        return ("err", errno_of(err))


class Pair:
    """One LRU map in the kernel and in user space, driven by the same operations: user-space
    ones through ``bpf()`` / the map's methods, program ones through an XDP test run / the
    interpreter with the runtime's helpers (``bpf_map_lookup_elem`` sets the reference bit)."""

    def __init__(self, stack: ExitStack, mtype: MapType, max_entries: int, flags: int) -> None:
        from ebpf.kernel.map import Map as KernelMap
        from ebpf.kernel.program import Program

        spec = MapSpec(f"lru{os.getpid() % 10000}", mtype, 4, 8, max_entries, flags)
        self.kernel = stack.enter_context(KernelMap.create(spec))
        self.prog = stack.enter_context(
            Program.load(assemble(map_program(f"map_fd({self.kernel.fd})")), ProgramType.XDP)
        )
        self.env = RunEnv(ncpus=possible_cpus(), deterministic=True)
        ours = create(MapDef(mtype, 4, 8, max_entries, flags), self.env.memory, ncpus=possible_cpus())
        assert isinstance(ours, HashMap)
        self.ours = stack.enter_context(ours)
        handle = self.env.add_map(ours)
        self.engine = ENGINES["interp"](
            assemble(map_program(str(handle))), helpers=runtime_helpers(), memory=self.env.memory
        )
        self.cpu = -1

    def on(self, cpu: int) -> None:
        if cpu != self.cpu:
            os.sched_setaffinity(0, {cpu})
            self.ours.cpu = self.cpu = cpu

    def run_program(self, data: bytes) -> int:
        kernel = self.prog.test_run(data).retval & 0xFFFFFFFF
        mapped = XdpInput.from_test_run(data).map(self.env.memory)
        self.env.begin_run(cpu=self.cpu, context=mapped)
        try:
            r0, _ = self.engine.execute(mapped, self.env, self.engine.max_insns)
        finally:
            for region in mapped.regions:
                self.env.memory.unmap(region)
        assert r0 & 0xFFFFFFFF == kernel, f"program run {data.hex()}: ours {r0:#x}, kernel {kernel:#x}"
        return kernel

    def update(self, key: int, value: int, flags: int) -> tuple[str, object]:
        k, v = struct.pack("<I", key), struct.pack("<Q", value)
        mine = outcome(self.ours.update, k, v, flags)
        assert outcome(self.kernel.update, k, v, flags) == mine, f"update {key} flags {flags}"
        return mine

    def prog_update(self, key: int, value: int, flags: int) -> int:
        """A program's update (per-CPU maps: this CPU's value only)."""
        return self.run_program(packet(key, value, 1, flags))

    def delete(self, key: int) -> None:
        k = struct.pack("<I", key)
        assert outcome(self.kernel.delete, k) == outcome(self.ours.delete, k), f"delete {key}"

    def lookup(self, key: int) -> None:
        """A user-space lookup (no reference bit)."""
        k = struct.pack("<I", key)
        assert outcome(self.kernel.lookup, k) == outcome(self.ours.lookup, k), f"lookup {key}"

    def prog_lookup(self, key: int) -> None:
        """A program's lookup (sets the reference bit)."""
        self.run_program(packet(key, 0, 0, 0))

    def update_batch(self, keys: list[int], value: int) -> None:
        items = [(struct.pack("<I", key), struct.pack("<Q", value)) for key in keys]
        assert self.kernel.update_batch(items) == self.ours.update_batch(items) == len(items)

    def delete_batch(self, keys: list[int]) -> None:
        """Delete the keys present (the same on both sides, checked first)."""
        present = [k for k in (struct.pack("<I", key) for key in keys) if k in self.ours]
        assert all(k in set(self.kernel.keys()) for k in present)
        assert self.kernel.delete_batch(present) == self.ours.delete_batch(present) == len(present)

    def check_keys(self) -> set[bytes]:
        kernel = set(self.kernel.keys())
        mine = set(self.ours.keys())
        assert mine == kernel, f"only in ours {len(mine - kernel)}, only in the kernel {len(kernel - mine)}"
        return kernel

    def check_values(self) -> None:
        for key in self.check_keys():
            assert self.ours.lookup(key) == self.kernel.lookup(key), key.hex()


def run_random(pair: Pair, seed: int, n_ops: int, keyspace: int, cpus: list[int]) -> set[bytes]:
    rng = random.Random(seed)
    checkpoint = max(n_ops // 8, 1)
    for i in range(n_ops):
        pair.on(rng.choice(cpus))
        r = rng.random()
        key = rng.randrange(keyspace)
        if r < 0.35:
            pair.update(key, i, 0)
        elif r < 0.5:
            pair.prog_update(key, i, rng.choice((0, 0, 1, 2)))
        elif r < 0.6:
            pair.update(key, i, 1)  # BPF_NOEXIST
        elif r < 0.68:
            pair.update(key, i, 2)  # BPF_EXIST
        elif r < 0.88:
            pair.prog_lookup(key)
        elif r < 0.95:
            pair.delete(key)
        elif r < 0.97:
            pair.update_batch([rng.randrange(keyspace) for _ in range(rng.randrange(1, 6))], i)
        elif r < 0.98:
            pair.delete_batch([rng.randrange(keyspace) for _ in range(rng.randrange(1, 6))])
        else:
            pair.lookup(key)
        if i % checkpoint == 0:
            pair.check_keys()
    pair.check_values()
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


def test_percpu_program_update_that_evicts_its_own_key() -> None:
    """A program's update of a full LRU_PERCPU_HASH whose node comes from evicting the key
    itself: a new element, other CPUs' values zero (not the old values)."""
    with ExitStack() as stack, restore_affinity():
        pair = Pair(stack, MapType.LRU_PERCPU_HASH, 2, 0)
        pair.on(online_cpus()[0])
        pair.update(1, 0x11, 0)
        pair.update(2, 0x22, 0)
        assert pair.prog_update(1, 0x33, 0) == 0  # the refill shrinks 1, the oldest
        pair.check_values()
        assert pair.kernel.lookup_percpu(struct.pack("<I", 1))[1:] == [bytes(8)] * (possible_cpus() - 1)


@pytest.mark.parametrize("flags", [0, NO_COMMON], ids=["common", "no_common"])
def test_drain_by_lookup_and_delete_batch_then_refill(flags: int) -> None:
    """BPF_MAP_LOOKUP_AND_DELETE_BATCH frees every node (pending ones to their CPU's local
    list); refilling and overflowing again evicts the same keys."""
    with ExitStack() as stack, restore_affinity():
        pair = Pair(stack, MapType.LRU_HASH, 200, flags)
        pair.on(online_cpus()[0])
        for i in range(300):
            pair.update(i, i, 0)
            if i % 3 == 0:
                pair.prog_lookup(i // 2)
        pair.check_values()
        kernel_items = dict(pair.kernel.lookup_batch(16, delete=True))
        ours_items: dict[bytes, bytes] = {}
        cursor = None
        while True:
            batch = pair.ours.lookup_and_delete_batch(16, cursor)
            ours_items.update(batch.items())
            cursor = batch.out_batch
            if batch.done:
                break
        assert ours_items == kernel_items and len(pair.ours) == 0
        for i in range(1000, 1450):
            pair.update(i, i, 0)
        pair.check_values()


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
