"""Differential tests: the same map operations on the kernel's maps and ours give the same results.

The maps package is pure; ctypes and raw ``bpf()`` use stay in the tests (here, ``_bpfprog.py``
and the other ``test_kernel_*`` modules). Each operation
returns ``("ok", result)`` or ``("err", errno)`` on both sides, and the sequences are
compared step by step. Hash iteration order differs by design (bucket order in the
kernel), so hash key sets are compared sorted.
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebpf.errors import SyscallError
from ebpf.kernel._syscall import bpf
from ebpf.kernel.uapi import Cmd, MapCreateAttr, MapElemAttr
from ebpf.maps import (
    BloomFilterMap,
    HashMap,
    MapDef,
    MapFlags,
    ProgArrayMap,
    QueueMap,
    create,
    errno_of,
    lpm_key,
)
from ebpf.maps._base import Map
from ebpf.maps.mapinmap import _MapOfMaps
from ebpf.spec import MapType

pytestmark = pytest.mark.kernel

Result = tuple[str, object]
Op = tuple[object, ...]


class KernelMap:
    """A kernel map driven by raw ``bpf()`` commands, with the same op vocabulary as ``run_ours``."""

    def __init__(self, defn: MapDef) -> None:
        inner_fd = 0
        if defn.inner is not None:
            template = KernelMap(defn.inner)
            inner_fd = template.fd
        try:
            self._create(defn, inner_fd)
        finally:
            if defn.inner is not None:
                template.close()

    def _create(self, defn: MapDef, inner_fd: int) -> None:
        attr = MapCreateAttr(
            inner_map_fd=inner_fd,
            map_type=defn.type,
            key_size=defn.key_size,
            value_size=defn.value_size,
            max_entries=defn.max_entries,
            map_flags=defn.flags,
            map_extra=defn.map_extra,
        )
        self.defn = defn
        self.fd = bpf(Cmd.MAP_CREATE, attr)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _call(
        self, cmd: Cmd, key: bytes | None, value: ctypes.Array[ctypes.c_char] | None, flags: int = 0
    ) -> None:
        kbuf = ctypes.create_string_buffer(key, len(key)) if key else None
        attr = MapElemAttr(map_fd=self.fd, flags=flags)
        attr.key = ctypes.addressof(kbuf) if kbuf is not None else 0
        attr.value = ctypes.addressof(value) if value is not None else 0
        bpf(cmd, attr)

    def run(self, op: Op) -> Result:
        name = op[0]
        vsize = self.defn.value_size
        if self.defn.type in PERCPU_TYPES:
            vsize = (vsize + 7) // 8 * 8 * possible_cpus()
        try:
            if name == "update":
                key, value, flags = op[1], op[2], op[3]
                assert isinstance(key, bytes) and isinstance(value, bytes) and isinstance(flags, int)
                buf = ctypes.create_string_buffer(value, len(value))
                self._call(Cmd.MAP_UPDATE_ELEM, key, buf, flags)
                return ("ok", None)
            if name in ("lookup", "pop", "lookup_and_delete"):
                key = op[1] if name != "pop" else b""
                assert isinstance(key, bytes)
                out = ctypes.create_string_buffer(vsize)
                cmd = Cmd.MAP_LOOKUP_ELEM if name == "lookup" else Cmd.MAP_LOOKUP_AND_DELETE_ELEM
                self._call(cmd, key, out)
                return ("ok", out.raw)
            if name == "peek":  # bloom filter: BPF_MAP_LOOKUP_ELEM with the value as input
                value = op[1]
                assert isinstance(value, bytes)
                self._call(Cmd.MAP_LOOKUP_ELEM, None, ctypes.create_string_buffer(value, len(value)))
                return ("ok", None)
            if name == "update_map":  # op[2] is the inner map's KernelMap
                key, inner, flags = op[1], op[2], op[3]
                assert isinstance(key, bytes) and isinstance(inner, KernelMap) and isinstance(flags, int)
                fd = ctypes.create_string_buffer(struct.pack("<I", inner.fd), 4)
                self._call(Cmd.MAP_UPDATE_ELEM, key, fd, flags)
                return ("ok", None)
            if name == "lookup_obj":  # the kernel answers a map id: compare success only
                key = op[1]
                assert isinstance(key, bytes)
                self._call(Cmd.MAP_LOOKUP_ELEM, key, ctypes.create_string_buffer(4))
                return ("ok", None)
            if name == "delete":
                key = op[1]
                assert isinstance(key, bytes)
                self._call(Cmd.MAP_DELETE_ELEM, key, None)
                return ("ok", None)
            if name == "next":
                key = op[1]
                assert key is None or isinstance(key, bytes)
                nxt = ctypes.create_string_buffer(self.defn.key_size)
                self._call(Cmd.MAP_GET_NEXT_KEY, key, nxt)
                return ("ok", nxt.raw)
        except SyscallError as err:
            return ("err", err.errno)
        raise AssertionError(f"unknown op {op}")


def run_ours(m: Map, op: Op) -> Result:
    name = op[0]
    try:
        if name == "update":
            key, value, flags = op[1], op[2], op[3]
            assert isinstance(key, bytes) and isinstance(value, bytes) and isinstance(flags, int)
            m.update(key, value, flags)
            return ("ok", None)
        if name == "lookup":
            key = op[1]
            assert isinstance(key, bytes)
            return ("ok", m.lookup(key))
        if name == "pop":
            assert isinstance(m, QueueMap)
            return ("ok", m.lookup_and_delete())
        if name == "lookup_and_delete":
            key = op[1]
            assert isinstance(m, HashMap) and isinstance(key, bytes)
            return ("ok", m.lookup_and_delete(key))
        if name == "peek":
            value = op[1]
            assert isinstance(m, BloomFilterMap) and isinstance(value, bytes)
            m.peek(value)
            return ("ok", None)
        if name == "update_map":
            key, inner, flags = op[1], op[2], op[3]
            assert isinstance(m, _MapOfMaps) and isinstance(key, bytes)
            assert isinstance(inner, Map) and isinstance(flags, int)
            m.update_map(key, inner, flags)
            return ("ok", None)
        if name == "lookup_obj":
            key = op[1]
            assert isinstance(key, bytes)
            if isinstance(m, ProgArrayMap):
                m.lookup_prog(key)
            else:
                assert isinstance(m, _MapOfMaps)
                m.lookup_map(key)
            return ("ok", None)
        if name == "delete":
            key = op[1]
            assert isinstance(key, bytes)
            m.delete(key)
            return ("ok", None)
        if name == "next":
            key = op[1]
            assert key is None or isinstance(key, bytes)
            return ("ok", m.get_next_key(key))
    except Exception as err:
        code = errno_of(err)
        if code is None:
            raise
        return ("err", code)
    raise AssertionError(f"unknown op {op}")


@contextmanager
def both(defn: MapDef) -> Iterator[tuple[KernelMap, Map]]:
    kernel = KernelMap(defn)
    try:
        ours = create(defn, ncpus=possible_cpus())
        try:
            yield kernel, ours
        finally:
            ours.close()
    finally:
        kernel.close()


def compare(defn: MapDef, ops: Sequence[Op], *, skip: Callable[[Op], bool] = lambda op: False) -> None:
    with both(defn) as (kernel, ours):
        for i, op in enumerate(ops):
            got, want = run_ours(ours, op), kernel.run(op)
            if not skip(op):
                assert got == want, f"op {i} {op}: ours {got}, kernel {want}"


def kernel_keys(kernel: KernelMap) -> list[bytes]:
    keys: list[bytes] = []
    key: bytes | None = None
    while True:
        status, result = kernel.run(("next", key))
        if status == "err":
            return keys
        assert isinstance(result, bytes)
        keys.append(result)
        key = result


PERCPU_TYPES = (MapType.PERCPU_ARRAY, MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH)


def possible_cpus() -> int:
    """The kernel's ``num_possible_cpus()``: the size of per-CPU values in the syscall."""
    with open("/sys/devices/system/cpu/possible") as f:
        text = f.read().strip()
    return sum(int(r.split("-")[1]) - int(r.split("-")[0]) + 1 if "-" in r else 1 for r in text.split(","))


def u32(i: int) -> bytes:
    return struct.pack("<I", i)


def u64(i: int) -> bytes:
    return struct.pack("<Q", i)


# --- creation -----------------------------------------------------------------------------------

NP = MapFlags.NO_PREALLOC
CREATE_DEFS = [
    MapDef(MapType.ARRAY, 8, 4, 1),
    MapDef(MapType.ARRAY, 4, 0, 1),
    MapDef(MapType.ARRAY, 4, 4, 0),
    MapDef(MapType.ARRAY, 4, 4, 1, NP),
    MapDef(MapType.PERCPU_ARRAY, 4, 4, 1, MapFlags.MMAPABLE),
    MapDef(MapType.HASH, 0, 4, 1),
    MapDef(MapType.HASH, 4, 0, 1),
    MapDef(MapType.HASH, 4, 4, 0),
    MapDef(MapType.HASH, (1 << 22) - 48 - 4, 4, 1),
    MapDef(MapType.HASH, 4, (1 << 22) - 48 - 4, 1),
    MapDef(MapType.HASH, 4, (1 << 22) - 48 - 5, 1, NP),  # just fits
    MapDef(MapType.PERCPU_HASH, 4, 32768, 1),  # just fits
    MapDef(MapType.QUEUE, 0, (1 << 22) + 1, 1),
    MapDef(MapType.LPM_TRIE, 8, (1 << 22) - 280 + 1, 1, NP),
    MapDef(MapType.HASH, 4, 4, 1, MapFlags.NO_COMMON_LRU),
    MapDef(MapType.HASH, 4, 4, 1, MapFlags.MMAPABLE),
    MapDef(MapType.LRU_HASH, 4, 4, 1, NP),
    MapDef(MapType.PERCPU_HASH, 4, 32769, 1),
    MapDef(MapType.LPM_TRIE, 8, 4, 1),
    MapDef(MapType.LPM_TRIE, 4, 4, 1, NP),
    MapDef(MapType.LPM_TRIE, 261, 4, 1, NP),
    MapDef(MapType.LPM_TRIE, 8, 0, 1, NP),
    MapDef(MapType.QUEUE, 4, 4, 1),
    MapDef(MapType.QUEUE, 0, 0, 1),
    MapDef(MapType.STACK, 0, 4, 0),
    MapDef(MapType.RINGBUF, 0, 0, 4096),
    MapDef(MapType.RINGBUF, 0, 0, 1 << 20),
    MapDef(MapType.RINGBUF, 0, 0, 12288),
    MapDef(MapType.RINGBUF, 0, 0, 1024),
    MapDef(MapType.RINGBUF, 4, 0, 4096),
    MapDef(MapType.RINGBUF, 0, 4, 4096),
    MapDef(MapType.ARRAY, 4, 4, 8, MapFlags.MMAPABLE),
    MapDef(MapType.BLOOM_FILTER, 0, 4, 100, map_extra=15),
    MapDef(MapType.ARRAY_OF_MAPS, 4, 4, 2, inner=MapDef(MapType.HASH, 4, 8, 4)),
    MapDef(MapType.ARRAY_OF_MAPS, 4, 8, 2, inner=MapDef(MapType.HASH, 4, 8, 4)),
    MapDef(MapType.ARRAY_OF_MAPS, 8, 4, 2, inner=MapDef(MapType.HASH, 4, 8, 4)),
    MapDef(MapType.HASH_OF_MAPS, 8, 4, 2, inner=MapDef(MapType.QUEUE, 0, 8, 4)),
    MapDef(MapType.HASH_OF_MAPS, 8, 8, 2, inner=MapDef(MapType.QUEUE, 0, 8, 4)),
    MapDef(MapType.HASH_OF_MAPS, 4, 4, 2, inner=MapDef(MapType.PROG_ARRAY, 4, 4, 4)),
    MapDef(MapType.HASH_OF_MAPS, 4, 4, 2, inner=MapDef(MapType.LPM_TRIE, 8, 4, 4, NP)),
    MapDef(MapType.ARRAY, 4, 4, 2, MapFlags.INNER_MAP),
    MapDef(MapType.ARRAY, 4, 4, 2, MapFlags.PRESERVE_ELEMS),
    MapDef(MapType.PERCPU_ARRAY, 4, 4, 2, MapFlags.INNER_MAP),
    MapDef(MapType.ARRAY, 4, 4, 2, MapFlags.RDONLY_PROG),
    MapDef(MapType.ARRAY_OF_MAPS, 4, 4, 2, MapFlags.MMAPABLE, inner=MapDef(MapType.HASH, 4, 8, 4)),
    MapDef(MapType.ARRAY_OF_MAPS, 4, 4, 2, MapFlags.RDONLY_PROG, inner=MapDef(MapType.HASH, 4, 8, 4)),
    MapDef(MapType.HASH_OF_MAPS, 4, 4, 2, MapFlags.NO_PREALLOC, inner=MapDef(MapType.HASH, 4, 8, 4)),
    MapDef(MapType.PROG_ARRAY, 4, 4, 2),
    MapDef(MapType.PROG_ARRAY, 4, 8, 2),
    MapDef(MapType.PROG_ARRAY, 8, 4, 2),
    MapDef(MapType.PROG_ARRAY, 4, 4, 2, MapFlags.MMAPABLE),
    MapDef(MapType.PROG_ARRAY, 4, 4, 2, MapFlags.NO_PREALLOC),
    MapDef(MapType.PROG_ARRAY, 4, 4, 2, MapFlags.WRONLY_PROG),
    MapDef(MapType.BLOOM_FILTER, 4, 4, 1),
    MapDef(MapType.BLOOM_FILTER, 0, 4, 1, map_extra=16),
    MapDef(MapType.PERF_EVENT_ARRAY, 4, 4, 2),
    MapDef(MapType.PERF_EVENT_ARRAY, 4, 4, 0),  # the kernel: EINVAL (libbpf fills in ncpus first)
    MapDef(MapType.PERF_EVENT_ARRAY, 4, 8, 2),
    MapDef(MapType.PERF_EVENT_ARRAY, 8, 4, 2),
    MapDef(MapType.PERF_EVENT_ARRAY, 4, 4, 2, MapFlags.PRESERVE_ELEMS),
    MapDef(MapType.PERF_EVENT_ARRAY, 4, 4, 2, MapFlags.MMAPABLE),
    MapDef(MapType.PERF_EVENT_ARRAY, 4, 4, 2, MapFlags.NO_PREALLOC),
    MapDef(MapType.PERF_EVENT_ARRAY, 4, 4, 2, MapFlags.RDONLY_PROG),
    MapDef(MapType.PERF_EVENT_ARRAY, 4, 4, 2, MapFlags.RDONLY),
    MapDef(MapType.PERF_EVENT_ARRAY, 4, 4, 2, MapFlags.NUMA_NODE),
    MapDef(MapType.PERF_EVENT_ARRAY, 4, 4, 2, MapFlags.INNER_MAP),
]


def create_outcome(defn: MapDef) -> tuple[int | None, int | None]:
    """(kernel errno or None, our errno or None) for creating ``defn``."""
    try:
        KernelMap(defn).close()
        kernel = None
    except SyscallError as err:
        kernel = err.errno
    try:
        create(defn).close()
        ours = None
    except Exception as err:  # noqa: BLE001 - compared by errno
        ours = errno_of(err)
        assert ours is not None, err
    return kernel, ours


@pytest.mark.parametrize("defn", CREATE_DEFS, ids=lambda d: f"{d.type.name}-{d.key_size}-{d.value_size}")
def test_create_outcome_matches(defn: MapDef) -> None:
    kernel, ours = create_outcome(defn)
    assert ours == kernel


# --- operation sequences ------------------------------------------------------------------------


def test_array_sequence() -> None:
    defn = MapDef(MapType.ARRAY, 4, 4, 3)
    ops: list[Op] = [
        ("lookup", u32(0)),
        ("update", u32(1), b"abcd", 0),
        ("update", u32(1), b"efgh", 1),
        ("update", u32(1), b"efgh", 2),
        ("update", u32(3), b"efgh", 0),
        ("update", u32(3), b"efgh", 2),
        ("update", u32(0), b"efgh", 4),
        ("update", u32(0), b"efgh", 8),
        ("lookup", u32(1)),
        ("lookup", u32(3)),
        ("delete", u32(1)),
        ("delete", u32(7)),
        ("next", None),
        ("next", u32(0)),
        ("next", u32(2)),
        ("next", u32(100)),
    ]
    compare(defn, ops)


def test_hash_sequence() -> None:
    defn = MapDef(MapType.HASH, 4, 8, 3)
    ops: list[Op] = [
        ("next", None),
        ("lookup", u32(1)),
        ("delete", u32(1)),
        ("update", u32(1), u64(1), 2),
        ("update", u32(1), u64(1), 1),
        ("update", u32(1), u64(2), 1),
        ("update", u32(1), u64(3), 0),
        ("update", u32(2), u64(2), 0),
        ("update", u32(3), u64(3), 0),
        ("update", u32(4), u64(4), 0),
        ("update", u32(4), u64(4), 2),
        ("update", u32(4), u64(4), 1),
        ("update", u32(3), u64(33), 2),
        ("update", u32(3), u64(33), 3),
        ("lookup", u32(3)),
        ("delete", u32(2)),
        ("update", u32(4), u64(4), 1),
        ("lookup", u32(4)),
        ("lookup_and_delete", u32(4)),
        ("lookup_and_delete", u32(4)),
        ("lookup", u32(4)),
    ]
    compare(defn, ops)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.just("update"),
                st.integers(0, 5).map(u32),
                st.integers(0, 9).map(u64),
                st.sampled_from([0, 1, 2]),
            ),
            st.tuples(st.just("lookup"), st.integers(0, 5).map(u32)),
            st.tuples(st.just("delete"), st.integers(0, 5).map(u32)),
        ),
        max_size=40,
    ),
    st.sampled_from([0, int(NP)]),
)
def test_hash_random_sequences(ops: list[Op], flags: int) -> None:
    defn = MapDef(MapType.HASH, 4, 8, 4, flags)
    with both(defn) as (kernel, ours):
        for i, op in enumerate(ops):
            got, want = run_ours(ours, op), kernel.run(op)
            assert got == want, f"op {i} {op}: ours {got}, kernel {want}"
        assert sorted(kernel_keys(kernel)) == sorted(ours.keys())


@pytest.mark.parametrize("mtype", [MapType.QUEUE, MapType.STACK])
def test_queue_stack_sequence(mtype: MapType) -> None:
    defn = MapDef(mtype, 0, 4, 3)
    ops: list[Op] = [
        ("pop",),
        ("lookup", b""),
        ("update", b"", b"aaaa", 0),
        ("update", b"", b"bbbb", 0),
        ("update", b"", b"cccc", 1),
        ("update", b"", b"cccc", 0),
        ("update", b"", b"dddd", 0),
        ("update", b"", b"dddd", 2),
        ("update", b"", b"eeee", 2),
        ("lookup", b""),
        ("delete", b""),
        ("next", None),
        ("pop",),
        ("pop",),
        ("pop",),
        ("pop",),
    ]
    compare(defn, ops)


def test_lpm_sequence() -> None:
    defn = MapDef(MapType.LPM_TRIE, 8, 1, 4, NP)

    def key(prefixlen: int, *octets: int) -> bytes:
        return lpm_key(prefixlen, bytes(octets))

    ops: list[Op] = [
        ("next", None),
        ("lookup", key(32, 10, 1, 2, 3)),
        ("update", key(0, 0, 0, 0, 0), b"D", 0),
        ("update", key(8, 10, 0, 0, 0), b"A", 0),
        ("update", key(16, 10, 1, 0, 0), b"B", 0),
        ("update", key(32, 10, 1, 2, 3), b"H", 0),
        ("update", key(33, 10, 1, 2, 3), b"H", 0),
        ("update", key(24, 10, 1, 2, 0), b"X", 0),  # full: ENOSPC
        ("update", key(8, 10, 9, 9, 9), b"a", 1),  # same /8: EEXIST
        ("update", key(24, 10, 1, 2, 0), b"X", 2),  # ENOENT
        ("update", key(8, 10, 9, 9, 9), b"a", 2),  # replace in a full trie, keep new bytes
        ("lookup", key(32, 10, 1, 2, 3)),
        ("lookup", key(32, 10, 1, 2, 4)),
        ("lookup", key(32, 10, 2, 0, 0)),
        ("lookup", key(32, 11, 0, 0, 0)),
        ("lookup", key(8, 10, 1, 2, 3)),
        ("lookup", key(0, 10, 1, 2, 3)),
        ("next", None),
        ("next", key(32, 10, 1, 2, 3)),
        ("next", key(16, 10, 1, 0, 0)),
        ("next", key(8, 10, 0, 0, 0)),
        ("next", key(0, 0, 0, 0, 0)),
        ("next", key(24, 99, 0, 0, 0)),
        ("delete", key(24, 10, 1, 0, 0)),
        ("delete", key(33, 10, 1, 0, 0)),
        ("delete", key(0, 0, 0, 0, 0)),
        ("lookup", key(32, 11, 0, 0, 0)),
        ("delete", key(8, 10, 0, 0, 0)),
        ("lookup", key(32, 10, 2, 0, 0)),
    ]
    compare(defn, ops)


def test_lpm_ipv6_iteration_order() -> None:
    defn = MapDef(MapType.LPM_TRIE, 20, 1, 16, NP)
    prefixes = [(0, b""), (32, b"\x20\x01\x0d\xb8"), (48, b"\x20\x01\x0d\xb8\0\1"), (128, bytes(range(16)))]
    prefixes += [(16, b"\xff\xff"), (17, b"\xff\xff\x80"), (17, b"\xff\xff\x00"), (1, b"\x80")]
    with both(defn) as (kernel, ours):
        for plen, data in prefixes:
            op: Op = ("update", lpm_key(plen, data.ljust(16, b"\0")), b"v", 0)
            assert run_ours(ours, op) == kernel.run(op)
        assert ours.keys() == kernel_keys(kernel)


@pytest.mark.parametrize("mtype", [MapType.LRU_HASH, MapType.LRU_PERCPU_HASH])
def test_lru_never_full_and_bounded(mtype: MapType) -> None:
    """Sizes only: ours has 1 CPU here, the kernel more (exact key sets: test_lru_kernel.py)."""
    defn = MapDef(mtype, 4, 8, 256)
    with both(defn) as (kernel, ours):
        for i in range(1000):
            op: Op = ("update", u32(i), u64(i), 0)  # one value for all CPUs (ours); see below
            kernel_op: Op = ("update", u32(i), u64(i) * possible_cpus(), 0) if mtype in PERCPU_TYPES else op
            assert kernel.run(kernel_op) == ("ok", None)
            assert run_ours(ours, op) == ("ok", None)
        kept = kernel_keys(kernel)
        assert 0 < len(kept) <= 256 and u32(999) in kept
        assert 0 < len(ours) <= 256 and u32(999) in ours


@pytest.mark.parametrize("mtype", [MapType.PERCPU_ARRAY, MapType.PERCPU_HASH])
def test_percpu_layout(mtype: MapType) -> None:
    n = possible_cpus()
    defn = MapDef(mtype, 4, 4, 2)
    per_cpu = b"".join(struct.pack("<I", 100 + cpu) + bytes(4) for cpu in range(n))
    ops: list[Op] = [
        ("update", u32(1), per_cpu, 0),
        ("lookup", u32(1)),
        ("update", u32(1), per_cpu, 1),
        ("update", u32(2), per_cpu, 0),
        ("lookup", u32(2)),
        ("update", u32(3), per_cpu, 0),
        ("lookup_and_delete", u32(1)) if mtype == MapType.PERCPU_HASH else ("lookup", u32(1)),
        ("lookup", u32(1)),
    ]
    compare(defn, ops)


def test_bloom_sequence() -> None:
    """Pushed values peek as present on both sides; flag and operation errors agree."""
    defn = MapDef(MapType.BLOOM_FILTER, 0, 8, 64, map_extra=3)
    pushed = [u64(i * 7919) for i in range(64)]
    ops: list[Op] = [("update", b"", value, 0) for value in pushed]
    ops += [("peek", value) for value in pushed]
    ops += [("update", b"", u64(1), 1), ("update", b"", u64(1), 2), ("delete", b""), ("next", None)]
    compare(defn, ops)


def _lpm_keys() -> st.SearchStrategy[bytes]:
    # Few distinct bits so prefixes nest and collide often.
    return st.tuples(
        st.integers(0, 17), st.sampled_from([0x00, 0x80, 0xC0, 0x40, 0xFF]), st.integers(0, 3)
    ).map(lambda t: lpm_key(t[0], bytes([t[1], t[2] << 6, 0])))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.just("update"), _lpm_keys(), st.binary(min_size=2, max_size=2), st.sampled_from([0, 1, 2])
            ),
            st.tuples(st.just("lookup"), _lpm_keys()),
            st.tuples(st.just("delete"), _lpm_keys()),
            st.tuples(st.just("next"), st.one_of(st.none(), _lpm_keys())),
        ),
        max_size=40,
    )
)
def test_lpm_random_sequences(ops: list[Op]) -> None:
    """Longest match, flags, ENOSPC and the post-order walk agree with the kernel's trie."""
    defn = MapDef(MapType.LPM_TRIE, 7, 2, 6, NP)
    with both(defn) as (kernel, ours):
        for i, op in enumerate(ops):
            got, want = run_ours(ours, op), kernel.run(op)
            assert got == want, f"op {i} {op}: ours {got}, kernel {want}"
        assert ours.keys() == kernel_keys(kernel)


@pytest.mark.parametrize("outer_type", [MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS])
def test_map_in_map_sequence(outer_type: MapType) -> None:
    template = MapDef(MapType.ARRAY, 4, 8, 4)
    inner_defs = [template, MapDef(MapType.ARRAY, 4, 8, 5), MapDef(MapType.HASH, 4, 8, 4), template]
    defn = MapDef(outer_type, 4, 4, 2, inner=template)
    kernel_inner = [KernelMap(d) for d in inner_defs]
    ours_inner = [create(d) for d in inner_defs]
    plan: list[tuple[object, ...]] = [
        ("lookup_obj", u32(0)),
        ("update_map", u32(0), 0, 0),
        ("update_map", u32(0), 3, 1),
        ("update_map", u32(0), 3, 2),
        ("update_map", u32(1), 1, 0),  # max_entries differs from an array template
        ("update_map", u32(1), 2, 0),  # another type
        ("update_map", u32(1), 3, 0),
        ("update_map", u32(2), 0, 0),  # past the end / full
        ("update_map", u32(1), 0, 7),
        ("lookup_obj", u32(1)),
        ("lookup_obj", u32(9)),
        ("delete", u32(1)),
        ("delete", u32(1)),
        ("delete", u32(9)),
        ("lookup_obj", u32(1)),
    ]
    try:
        with both(defn) as (kernel, ours):
            for i, step in enumerate(plan):
                if step[0] == "update_map":
                    index = step[2]
                    assert isinstance(index, int)
                    want = kernel.run((*step[:2], kernel_inner[index], step[3]))
                    got = run_ours(ours, (*step[:2], ours_inner[index], step[3]))
                else:
                    want, got = kernel.run(step), run_ours(ours, step)
                assert got == want, f"op {i} {step}: ours {got}, kernel {want}"
    finally:
        for km in kernel_inner:
            km.close()
        for m in ours_inner:
            m.close()


def test_prog_array_without_programs() -> None:
    """Empty slots and indices past the end (filling slots needs loaded programs)."""
    defn = MapDef(MapType.PROG_ARRAY, 4, 4, 2)
    ops: list[Op] = [
        ("lookup_obj", u32(0)),
        ("lookup_obj", u32(5)),
        ("delete", u32(0)),
        ("delete", u32(5)),
        ("next", None),
        ("next", u32(0)),
        ("next", u32(1)),
    ]
    compare(defn, ops)


ZS = MapFlags.ZERO_SEED


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([(MapType.HASH, 4), (MapType.HASH, 6), (MapType.HASH, 13), (MapType.PERCPU_HASH, 8)]),
    st.lists(
        st.one_of(
            st.tuples(st.just("update"), st.integers(0, 40), st.sampled_from([0, 1, 2])),
            st.tuples(st.just("delete"), st.integers(0, 40)),
        ),
        max_size=60,
    ),
)
def test_zero_seed_iteration_order_is_the_kernels(kind: tuple[MapType, int], steps: list[Op]) -> None:
    """With BPF_F_ZERO_SEED the kernel's jhash buckets are ours: get_next_key order agrees exactly."""
    mtype, key_size = kind
    defn = MapDef(mtype, key_size, 8, 24, ZS)
    value = u64(7) * possible_cpus() if mtype in PERCPU_TYPES else u64(7)
    with both(defn) as (kernel, ours):
        for step in steps:
            key = (step[1] * 0x01010101).to_bytes(4, "little").ljust(key_size, b"\x5a")[:key_size]
            op: Op = ("update", key, value, step[2]) if step[0] == "update" else ("delete", key)
            assert run_ours(ours, op) == kernel.run(op)
        assert ours.keys() == kernel_keys(kernel)
        if ours.keys():
            assert run_ours(ours, ("next", ours.keys()[0])) == kernel.run(("next", ours.keys()[0]))


def test_perf_event_array_without_buffers() -> None:
    """Empty slots, indices past the end, lookup and next-key rules (buffers need perf events)."""
    defn = MapDef(MapType.PERF_EVENT_ARRAY, 4, 4, 2)
    ops: list[Op] = [
        ("lookup", u32(0)),
        ("lookup", u32(5)),
        ("delete", u32(0)),
        ("delete", u32(5)),
        ("update", u32(0), u32(0), 0),
        ("next", None),
        ("next", u32(0)),
        ("next", u32(1)),
        ("next", u32(7)),
    ]
    compare(defn, ops)


def kernel_max_entries(kernel: KernelMap) -> int:
    from ebpf.kernel.uapi import ObjInfoAttr

    info = ctypes.create_string_buffer(80)
    bpf(Cmd.OBJ_GET_INFO_BY_FD, ObjInfoAttr(bpf_fd=kernel.fd, info_len=80, info=ctypes.addressof(info)))
    value: int = struct.unpack_from("<I", info.raw, 16)[0]
    return value


@pytest.mark.parametrize("mtype", [MapType.LRU_HASH, MapType.LRU_PERCPU_HASH])
@pytest.mark.parametrize("max_entries", [1, 3, 4, 5])
def test_no_common_lru_rounds_max_entries(mtype: MapType, max_entries: int) -> None:
    """Per-CPU LRU lists: max_entries becomes a multiple of the possible CPUs, as in the kernel."""
    for flags in (0, int(MapFlags.NO_COMMON_LRU)):
        with both(MapDef(mtype, 4, 8, max_entries, flags)) as (kernel, ours):
            assert ours.max_entries == kernel_max_entries(kernel)


def test_hash_of_maps_zero_seed_order() -> None:
    template = MapDef(MapType.ARRAY, 4, 8, 1)
    defn = MapDef(MapType.HASH_OF_MAPS, 4, 4, 16, MapFlags.ZERO_SEED, inner=template)
    kernel_inner, ours_inner = KernelMap(template), create(template)
    try:
        with both(defn) as (kernel, ours):
            for i in (5, 9, 1, 14, 3, 5, 22, 9):  # 5 and 9 are replaced: back to their bucket's head
                assert kernel.run(("update_map", u32(i), kernel_inner, 0)) == run_ours(
                    ours, ("update_map", u32(i), ours_inner, 0)
                )
            assert kernel.run(("delete", u32(14))) == run_ours(ours, ("delete", u32(14)))
            assert ours.keys() == kernel_keys(kernel)
    finally:
        kernel_inner.close()
        ours_inner.close()


@pytest.mark.parametrize(
    "defn",
    [
        MapDef(MapType.HASH, 4, 4, 4),
        MapDef(MapType.PERCPU_HASH, 4, 4, 4),
        MapDef(MapType.ARRAY, 4, 4, 4),
        MapDef(MapType.QUEUE, 0, 4, 4),
        MapDef(MapType.STACK, 0, 4, 4),
        MapDef(MapType.LPM_TRIE, 8, 4, 4, NP),
        MapDef(MapType.BLOOM_FILTER, 0, 4, 4),
        MapDef(MapType.RINGBUF, 0, 0, 4096),
        MapDef(MapType.HASH_OF_MAPS, 4, 4, 2, inner=MapDef(MapType.ARRAY, 4, 4, 1)),
    ],
    ids=lambda d: d.type.name,
)
def test_lookup_and_delete_flags_and_types(defn: MapDef) -> None:
    """Flags are checked first (EINVAL), then the type (ENOTSUPP), then the element."""
    key = bytes(defn.key_size)
    with both(defn) as (kernel, ours):
        if defn.type in (MapType.HASH, MapType.PERCPU_HASH, MapType.QUEUE, MapType.STACK):
            value = bytes(kernel_value_size(defn))
            assert kernel.run(("update", key, value, 0)) == run_ours(ours, ("update", key, value, 0))
        for flags in (8, 4, 1, 0, 0):
            kbuf = ctypes.create_string_buffer(key, max(1, len(key)))
            out = ctypes.create_string_buffer(max(8, kernel_value_size(defn)))
            attr = MapElemAttr(map_fd=kernel.fd, flags=flags)
            attr.key = ctypes.addressof(kbuf) if key else 0
            attr.value = ctypes.addressof(out)
            try:
                bpf(Cmd.MAP_LOOKUP_AND_DELETE_ELEM, attr)
                want: Result = ("ok", out.raw[: kernel_value_size(defn)])
            except SyscallError as err:
                want = ("err", err.errno)
            try:
                got: Result = ("ok", ours.lookup_and_delete(key, flags))
            except Exception as err:  # noqa: BLE001
                got = ("err", errno_of(err))
            assert got == want, f"flags {flags}"


def kernel_value_size(defn: MapDef) -> int:
    if defn.type in PERCPU_TYPES:
        return (defn.value_size + 7) // 8 * 8 * possible_cpus()
    return defn.value_size
