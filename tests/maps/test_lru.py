"""The user-space LRU maps evict as the kernel's BPF LRU does (``ebpf.maps._lru``).

Pure tests of the rules in ``_lru.py``'s docstring; ``tests/differential/test_lru_kernel.py``
checks the same model against the kernel.
"""

from __future__ import annotations

import errno
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ebpf.errors import KeyNotFoundError
from ebpf.maps import BPF_EXIST, BPF_NOEXIST, HashMap, LRUPerCPUHashMap, MapDef, MapFlags, create, errno_of
from ebpf.maps._errors import InvalidMapArgumentError, KeyExistsError
from ebpf.maps._lru import LOCAL_FREE_TARGET, PERCPU_FREE_TARGET
from ebpf.spec import MapType
from ebpf.vm.memory import Memory

NO_COMMON = int(MapFlags.NO_COMMON_LRU)


def k(i: int) -> bytes:
    return struct.pack("<I", i)


def lru(max_entries: int, *, ncpus: int = 2, flags: int = 0, mtype: MapType = MapType.LRU_HASH) -> HashMap:
    m = create(MapDef(mtype, 4, 8, max_entries, flags), Memory(), ncpus=ncpus)
    assert isinstance(m, HashMap)
    return m


def nodes(m: HashMap) -> int:
    """Free nodes plus live elements: always max_entries (every element owns one node)."""
    return sum(m._lru.free_counts()) + len(m)


@pytest.mark.parametrize(
    ("max_entries", "ncpus", "target"),
    [(1024, 2, 128), (1024, 4, 128), (256, 2, 64), (256, 1, 128), (2, 2, 1), (1, 1, 1), (96, 2, 24)],
)
def test_full_common_lru_evicts_target_free(max_entries: int, ncpus: int, target: int) -> None:
    """A new key in a full map evicts clamp(max_entries / ncpus / 2, 1, 128) oldest keys."""
    with lru(max_entries, ncpus=ncpus) as m:
        assert m._lru.target_free == target <= LOCAL_FREE_TARGET
        for i in range(max_entries):
            m.update(k(i), bytes(8))
        assert len(m) == max_entries
        m.update(k(max_entries), bytes(8))
        assert sorted(m.keys()) == sorted(k(i) for i in range(target, max_entries + 1))
        assert nodes(m) == max_entries


def test_1024_entries_two_cpus_as_observed() -> None:
    """The kernel (2 CPUs): 897 entries after the 1025th flow, 916 after 1300."""
    with lru(1024) as m:
        for i in range(1300):
            m.update(k(i), bytes(8))
            if i == 1024:
                assert len(m) == 897
        assert len(m) == 916


def test_program_lookups_protect_user_lookups_do_not() -> None:
    with lru(256) as m:
        for i in range(256):
            m.update(k(i), bytes(8))
        for i in range(8):
            assert m.value_address(k(i)) is not None  # program lookup: reference bit
            m.lookup(k(100 + i))  # user-space lookup: none
        m.update(k(1000), bytes(8))  # batch of 64 evicted
        kept = set(m.keys())
        assert all(k(i) in kept for i in range(8))
        assert len(kept) == 256 - 64 + 1 and k(8) not in kept and k(71) not in kept and k(72) in kept


def test_failed_updates_take_a_node_and_can_evict() -> None:
    """LRU_HASH takes a node before the flag checks (the kernel's htab_lru_map_update_elem)."""
    with lru(2) as m:
        m.update(k(1), b"a" * 8, BPF_NOEXIST)
        with pytest.raises(KeyExistsError):
            m.update(k(1), b"b" * 8, BPF_NOEXIST)
        m.update(k(2), b"c" * 8)
        m.update(k(3), b"d" * 8)  # evicts 1
        with pytest.raises(KeyNotFoundError) as exc:
            m.update(k(4), b"e" * 8, BPF_EXIST)  # evicts 2, then fails
        assert errno_of(exc.value) == errno.ENOENT
        assert list(m.keys()) == [k(3)] and m.lookup(k(3)) == b"d" * 8
        assert nodes(m) == 2


def test_percpu_bpf_exist_takes_no_node() -> None:
    """LRU_PERCPU_HASH skips the node for BPF_EXIST and updates in place."""
    with lru(2, mtype=MapType.LRU_PERCPU_HASH, ncpus=1) as m:
        m.update(k(1), b"a" * 8)
        m.update(k(2), b"b" * 8)
        for _ in range(3):
            m.update(k(1), b"c" * 8, BPF_EXIST)
        assert sorted(m.keys()) == [k(1), k(2)]
        m.update(k(1), b"d" * 8)  # BPF_ANY takes a node: 2 is evicted, 1 (referenced) stays
        assert list(m.keys()) == [k(1)] and m.lookup(k(1)) == b"d" * 8
        assert m._lru.free_counts() == [0, 1]  # the unused node went back to the local free list


def test_replacing_update_evicts_like_a_new_key() -> None:
    with lru(4, ncpus=1) as m:  # target_free 2
        for i in range(4):
            m.update(k(i), bytes(8))
        m.update(k(3), b"x" * 8)  # the map is full: shrinks 0 and 1, then replaces 3
        assert sorted(m.keys()) == [k(2), k(3)]
        assert m.lookup(k(3)) == b"x" * 8


def test_no_common_lru_splits_nodes_per_cpu() -> None:
    """BPF_F_NO_COMMON_LRU: each CPU owns max_entries / ncpus nodes and evicts only its own."""
    with lru(8, flags=NO_COMMON) as m:
        assert m._lru.free_counts() == [4, 4]
        m.cpu = 0
        for i in range(4):
            m.update(k(i), bytes(8))
        m.cpu = 1
        for i in range(10, 14):
            m.update(k(i), bytes(8))
        assert len(m) == 8
        m.update(k(14), bytes(8))  # CPU 1 shrinks PERCPU_FREE_TARGET of its own keys
        assert PERCPU_FREE_TARGET == 4
        assert sorted(m.keys()) == [k(0), k(1), k(2), k(3), k(14)]
        assert m._lru.free_counts() == [0, 3]
        m.delete(k(14))  # back to CPU 1's list
        assert m._lru.free_counts() == [0, 4]


def test_max_entries_rounding_with_no_common_lru() -> None:
    with lru(5, ncpus=4, flags=NO_COMMON) as m:
        assert m.max_entries == 8 and m._lru.free_counts() == [2, 2, 2, 2]


def test_partial_batch_then_shrink() -> None:
    """Fewer global free nodes than target_free: the rest are shrunk at once."""
    with lru(129) as m:  # 2 CPUs: target_free 32; 129 = 4 * 32 + 1
        for i in range(129):
            m.update(k(i), bytes(8))
        assert len(m) == 129 - 31  # the fifth refill took the last free node and evicted 31


def test_steal_from_another_cpu() -> None:
    """The global lists are empty: a CPU steals another CPU's local free or pending node."""
    with lru(1) as m:  # 2 CPUs: CPU 0's pending list holds the only node
        m.cpu = 0
        m.update(k(1), bytes(8))
        m.cpu = 1
        m.update(k(2), bytes(8))  # stolen: CPU 0's pending node, its element evicted
        assert list(m.keys()) == [k(2)]
        m.delete(k(2))  # a pending node goes back to its CPU's local free list
        assert m._lru.free_counts() == [0, 0, 1]
        m.cpu = 0
        m.update(k(3), bytes(8))  # stolen: CPU 1's local free node
        assert list(m.keys()) == [k(3)] and m._lru.free_counts() == [0, 0, 0]
    with lru(2, ncpus=3) as m:  # target_free 1: each CPU's pending list gets one node
        for cpu, key in ((0, 1), (1, 2)):
            m.cpu = cpu
            m.update(k(key), bytes(8))
        assert m.value_address(k(1)) is not None  # referenced: the steal passes it over ...
        m.cpu = 2
        m.update(k(3), bytes(8))  # ... but CPU 0 (the first victim) has no other pending node
        assert sorted(m.keys()) == [k(2), k(3)]
        m.update(k(4), bytes(8))  # CPU 2 refills: its pending node (3) is flushed and shrunk
        assert sorted(m.keys()) == [k(2), k(4)]


def test_delete_then_insert_reuses_the_node() -> None:
    with lru(3, ncpus=1) as m:
        for i in range(3):
            m.update(k(i), bytes(8))
        m.delete(k(1))
        m.update(k(5), bytes(8))  # the freed node: nothing evicted
        assert sorted(m.keys()) == [k(0), k(2), k(5)]


def test_cpu_out_of_range_and_no_prealloc() -> None:
    with lru(4) as m, pytest.raises(InvalidMapArgumentError):
        m.cpu = 2
    with pytest.raises(InvalidMapArgumentError) as exc:
        lru(4, flags=int(MapFlags.NO_PREALLOC))
    assert exc.value.errno == 524


def test_eviction_unmaps_and_new_element_gets_new_address() -> None:
    with lru(1, ncpus=1) as m:
        m.update(k(1), bytes(8))
        old = m.value_address(k(1))
        m.update(k(2), bytes(8))
        assert m.value_address(k(2)) != old and m.memory.find(old) is None  # type: ignore[arg-type]


OPS = st.lists(
    st.tuples(
        st.sampled_from(["update", "noexist", "exist", "delete", "prog_lookup"]),
        st.integers(0, 40),
        st.integers(0, 1),
    ),
    max_size=150,
)


@settings(max_examples=60, deadline=None)
@given(
    ops=OPS,
    max_entries=st.sampled_from([1, 2, 3, 8, 17]),
    flags=st.sampled_from([0, NO_COMMON]),
    mtype=st.sampled_from([MapType.LRU_HASH, MapType.LRU_PERCPU_HASH]),
)
def test_invariants(ops: list[tuple[str, int, int]], max_entries: int, flags: int, mtype: MapType) -> None:
    """Never more than max_entries, never full, nodes conserved, a successful update's key stays."""
    flag_of = {"update": 0, "noexist": BPF_NOEXIST, "exist": BPF_EXIST}
    with lru(max_entries, flags=flags, mtype=mtype) as m:
        for op, key, cpu in ops:
            m.cpu = cpu
            if op == "delete":
                if k(key) in m:
                    m.delete(k(key))
            elif op == "prog_lookup":
                assert (m.value_address(k(key)) is None) == (k(key) not in m)
            else:
                try:
                    m.update(k(key), bytes(8), flag_of[op])
                except (KeyExistsError, KeyNotFoundError):
                    continue
                assert k(key) in m
            assert len(m) <= m.max_entries and nodes(m) == m.max_entries
            assert len(list(m)) == len(m)


def test_update_cpu_writes_one_cpu() -> None:
    """A program's update of an LRU_PERCPU_HASH: that CPU's value; a new element is zero elsewhere."""
    m = lru(4, mtype=MapType.LRU_PERCPU_HASH)
    assert isinstance(m, LRUPerCPUHashMap)
    with m:
        m.update(k(1), b"a" * 8)
        m.update_cpu(k(1), b"b" * 8, 1)
        assert m.lookup_percpu(k(1)) == [b"a" * 8, b"b" * 8] and m.cpu == 1
        m.update_cpu(k(2), b"c" * 8, 0)
        assert m.lookup_percpu(k(2)) == [b"c" * 8, bytes(8)]
        with pytest.raises(KeyExistsError):
            m.update_cpu(k(2), b"d" * 8, 0, BPF_NOEXIST)
        assert nodes(m) == 4


def test_for_each_sets_no_reference_bit() -> None:
    """bpf_for_each_map_elem's callback gets the value pointers without marking the elements
    used (the kernel's bpf_for_each_hash_elem); a program's lookup marks them."""
    from ebpf.helpers import HelperId
    from ebpf.isa.asm import assemble
    from ebpf.vm import ENGINES
    from ebpf.vm._helpers_callback import engine_callback
    from ebpf.vm.helpers import RunEnv, runtime_helpers
    from ebpf.vm.memory import HostBuffer

    def kept_after_walk(walk: str) -> set[bytes]:
        env = RunEnv(deterministic=True, ncpus=2)
        m = create(MapDef(MapType.LRU_HASH, 4, 8, 8), env.memory, ncpus=2)  # target_free 2
        handle = env.add_map(m)
        for i in range(8):
            m.update(k(i), bytes(8))
        first = f"r1 = {handle} ll\nr2 = r10\nr2 += -4\nr3 = 0\n*(u32 *)(r10 - 4) = r3\ncall {HelperId.MAP_LOOKUP_ELEM}"
        each = f"r1 = {handle} ll\nr2 = func(6) ll\nr3 = 0\nr4 = 0\ncall {HelperId.FOR_EACH_MAP_ELEM}"
        text = f"{first if walk == 'lookup' else each}\nr0 = 0\nexit\nr0 = 0\nexit"
        program = assemble(text)
        code = env.memory.map_buffer("code", HostBuffer(len(program.encode()) + 8), writable=False)
        engine = ENGINES["interp"](
            program, helpers=runtime_helpers(), memory=env.memory, code_base=code.start
        )
        env.callback = engine_callback(engine, env)
        env.begin_run()
        engine.run(b"", env=env)
        m.update(k(100), bytes(8))  # shrinks the 2 oldest unreferenced keys
        return set(m.keys())

    assert k(0) in kept_after_walk("lookup")
    assert k(0) not in kept_after_walk("for_each")
