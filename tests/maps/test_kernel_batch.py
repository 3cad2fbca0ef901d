"""Batch operations against the kernel: cursors, counts, ENOENT at the end, ENOSPC, errno rules.

Hash maps use ``BPF_F_ZERO_SEED`` so the kernel's buckets are ours and every batch (which
keys, in which order, the bucket cursor) must agree exactly.
"""

from __future__ import annotations

import ctypes
import errno
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebpf.errors import SyscallError
from ebpf.kernel._syscall import bpf
from ebpf.kernel.uapi import Cmd
from ebpf.maps import Batch, MapDef, MapFlags, create, errno_of, lpm_key
from ebpf.maps._base import Map
from ebpf.spec import MapType

from ._bpfprog import BatchAttr, possible_cpus
from .test_kernel_diff import PERCPU_TYPES, KernelMap, both, kernel_keys, u32, u64

pytestmark = pytest.mark.kernel

SENTINEL = b"\xee" * 8
Outcome = tuple[int, list[bytes], list[bytes], bytes | None]


def vsize(defn: MapDef) -> int:
    if defn.type in PERCPU_TYPES:
        return (defn.value_size + 7) // 8 * 8 * possible_cpus()
    return defn.value_size


def kernel_lookup(
    km: KernelMap, count: int, in_batch: bytes | None, *, delete: bool = False, elem_flags: int = 0
) -> Outcome:
    defn = km.defn
    ks, vs = defn.key_size, vsize(defn)
    keys = ctypes.create_string_buffer(max(1, count * ks))
    values = ctypes.create_string_buffer(max(1, count * vs))
    in_buf = ctypes.create_string_buffer((in_batch or b"").ljust(8, b"\0"), 8)
    out_buf = ctypes.create_string_buffer(SENTINEL, 8)
    attr = BatchAttr(
        in_batch=ctypes.addressof(in_buf) if in_batch is not None else 0,
        out_batch=ctypes.addressof(out_buf),
        keys=ctypes.addressof(keys),
        values=ctypes.addressof(values),
        count=count,
        map_fd=km.fd,
        elem_flags=elem_flags,
    )
    cmd = Cmd.MAP_LOOKUP_AND_DELETE_BATCH if delete else Cmd.MAP_LOOKUP_BATCH
    code = 0
    try:
        bpf(cmd, attr)
    except SyscallError as err:
        code = err.errno
    if code not in (0, errno.ENOENT):
        return (code, [], [], None)
    n = attr.count
    cursor_size = 4 if defn.type in HASH_TYPES else ks
    out = out_buf.raw[:cursor_size] if out_buf.raw != SENTINEL else None
    return (
        code,
        [keys.raw[i * ks : (i + 1) * ks] for i in range(n)],
        [values.raw[i * vs : (i + 1) * vs] for i in range(n)],
        out,
    )


def ours_lookup(
    m: Map, count: int, in_batch: bytes | None, *, delete: bool = False, elem_flags: int = 0
) -> Outcome:
    try:
        op = m.lookup_and_delete_batch if delete else m.lookup_batch
        batch: Batch = op(count, in_batch, elem_flags=elem_flags)
    except Exception as err:  # noqa: BLE001 - compared by errno
        code = errno_of(err)
        assert code is not None, err
        return (code, [], [], None)
    return (errno.ENOENT if batch.done else 0, batch.keys, batch.values, batch.out_batch)


def kernel_update(km: KernelMap, items: list[tuple[bytes, bytes]], flags: int = 0) -> tuple[int, int]:
    keys = ctypes.create_string_buffer(b"".join(k for k, _ in items) or b"\0")
    values = ctypes.create_string_buffer(b"".join(v for _, v in items) or b"\0")
    attr = BatchAttr(
        keys=ctypes.addressof(keys),
        values=ctypes.addressof(values),
        count=len(items),
        map_fd=km.fd,
        elem_flags=flags,
    )
    try:
        bpf(Cmd.MAP_UPDATE_BATCH, attr)
    except SyscallError as err:
        return (err.errno, attr.count)
    return (0, attr.count)


def kernel_delete(km: KernelMap, keys: list[bytes], flags: int = 0) -> tuple[int, int]:
    kbuf = ctypes.create_string_buffer(b"".join(keys) or b"\0")
    attr = BatchAttr(keys=ctypes.addressof(kbuf), count=len(keys), map_fd=km.fd, elem_flags=flags)
    try:
        bpf(Cmd.MAP_DELETE_BATCH, attr)
    except SyscallError as err:
        return (err.errno, attr.count)
    return (0, attr.count)


def ours_each(op: object, arg: object, flags: int = 0) -> int:
    try:
        op(arg, flags)  # type: ignore[operator]
    except Exception as err:  # noqa: BLE001
        code = errno_of(err)
        assert code is not None, err
        return code
    return 0


HASH_TYPES = (MapType.HASH, MapType.PERCPU_HASH, MapType.LRU_HASH, MapType.LRU_PERCPU_HASH)
ZS = MapFlags.ZERO_SEED


def value_for(defn: MapDef, i: int) -> bytes:
    if defn.type in PERCPU_TYPES:
        return b"".join(u64(i * 100 + cpu) for cpu in range(possible_cpus()))
    return u64(i)


def walk(km: KernelMap, m: Map, count: int, *, delete: bool = False) -> None:
    """Page through both maps with the returned cursors; every batch must agree."""
    cursor_k: bytes | None = None
    cursor_o: bytes | None = None
    for _ in range(200):
        want = kernel_lookup(km, count, cursor_k, delete=delete)
        got = ours_lookup(m, count, cursor_o, delete=delete)
        assert got == want, f"count {count} cursor {cursor_o!r}"
        if want[0] != 0:
            return
        cursor_k, cursor_o = want[3], got[3]
    raise AssertionError("no ENOENT after 200 batches")


@pytest.mark.parametrize(
    "defn",
    [
        MapDef(MapType.HASH, 4, 8, 16, ZS),
        MapDef(MapType.PERCPU_HASH, 4, 8, 16, ZS),
        MapDef(MapType.LRU_HASH, 4, 8, 16, ZS),
        MapDef(MapType.HASH, 6, 8, 5, ZS | MapFlags.NO_PREALLOC),
        MapDef(MapType.ARRAY, 4, 8, 7),
        MapDef(MapType.PERCPU_ARRAY, 4, 8, 7),
    ],
    ids=lambda d: f"{d.type.name}-{d.key_size}-{d.max_entries}",
)
@pytest.mark.parametrize("count", [1, 2, 3, 5, 64])
def test_lookup_batch_pages_like_the_kernel(defn: MapDef, count: int) -> None:
    with both(defn) as (km, m):
        walk(km, m, count)  # empty (hash) or zero-filled (array)
        n = min(defn.max_entries, 11)
        items = [
            (struct.pack("<I", i * 37 + 1).ljust(defn.key_size, b"\1"), value_for(defn, i)) for i in range(n)
        ]
        if defn.type in (MapType.ARRAY, MapType.PERCPU_ARRAY):
            items = [(u32(i), value_for(defn, i)) for i in range(n)]
        assert kernel_update(km, items) == (0, n)
        assert ours_each(m.update_batch, items) == 0
        walk(km, m, count)
        if defn.type in HASH_TYPES:
            walk(km, m, count, delete=True)
            assert kernel_keys(km) == m.keys()


def test_cursor_edges() -> None:
    defn = MapDef(MapType.HASH, 4, 8, 8, ZS)
    with both(defn) as (km, m):
        for i in range(8):
            kernel_update(km, [(u32(i), u64(i))])
            m.update(u32(i), u64(i))
        for count in (0, 1, 8):
            for cursor in (None, u32(0), u32(3), u32(7), u32(8), u32(1000)):
                assert ours_lookup(m, count, cursor) == kernel_lookup(km, count, cursor), (count, cursor)
    adefn = MapDef(MapType.ARRAY, 4, 4, 3)
    with both(adefn) as (km, m):
        for count in (0, 1, 3):
            for cursor in (None, u32(0), u32(2), u32(3), u32(99)):  # past the end restarts
                assert ours_lookup(m, count, cursor) == kernel_lookup(km, count, cursor), (count, cursor)


def test_flags_and_unsupported() -> None:
    cases = [
        MapDef(MapType.HASH, 4, 8, 4),
        MapDef(MapType.ARRAY, 4, 8, 4),
        MapDef(MapType.LPM_TRIE, 8, 8, 4, MapFlags.NO_PREALLOC),
        MapDef(MapType.QUEUE, 0, 8, 4),
        MapDef(MapType.BLOOM_FILTER, 0, 8, 4),
    ]
    for defn in cases:
        with both(defn) as (km, m):
            for delete in (False, True):
                for elem_flags in (0, 1, 4):
                    want = kernel_lookup(km, 2, None, delete=delete, elem_flags=elem_flags)
                    got = ours_lookup(m, 2, None, delete=delete, elem_flags=elem_flags)
                    assert got == want, (defn.type.name, delete, elem_flags)
            key = bytes(defn.key_size)
            item = [(key, bytes(vsize(defn)))]
            for flags in (0, 1, 2, 4):
                assert ours_each(m.update_batch, item, flags) == kernel_update(km, item, flags)[0], flags
                assert ours_each(m.delete_batch, [key], flags) == kernel_delete(km, [key], flags)[0], flags


def test_update_and_delete_stop_at_the_first_failure() -> None:
    defn = MapDef(MapType.HASH, 4, 8, 3, ZS)
    with both(defn) as (km, m):
        items = [(u32(i), u64(i)) for i in range(5)]  # the 4th is E2BIG
        code, count = kernel_update(km, items)
        assert (code, count) == (errno.E2BIG, 3)
        assert ours_each(m.update_batch, items) == code
        assert kernel_keys(km) == m.keys()
        keys = [u32(0), u32(9), u32(1)]  # the 2nd is ENOENT
        code, count = kernel_delete(km, keys)
        assert (code, count) == (errno.ENOENT, 1)
        assert ours_each(m.delete_batch, keys) == code
        assert kernel_keys(km) == m.keys()
    ldefn = MapDef(MapType.LPM_TRIE, 8, 8, 4, MapFlags.NO_PREALLOC)
    with both(ldefn) as (km, m):
        items = [(lpm_key(p, bytes([10, p, 0, 0])), u64(p)) for p in (8, 16, 24)]
        assert kernel_update(km, items) == (0, 3) and ours_each(m.update_batch, items) == 0
        walk(km, m, 2)
        keys = [items[1][0], items[1][0]]
        assert (
            kernel_delete(km, keys) == (errno.ENOENT, 1) and ours_each(m.delete_batch, keys) == errno.ENOENT
        )
        walk(km, m, 1)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([MapType.HASH, MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH]),
    st.lists(st.integers(0, 60), max_size=30, unique=True),
    st.integers(1, 6),
    st.booleans(),
)
def test_random_hash_contents(mtype: MapType, keys: list[int], count: int, delete: bool) -> None:
    defn = MapDef(mtype, 4, 4, 32, ZS)
    with both(defn) as (km, m):
        value = bytes(vsize(defn))
        items = [(u32(k * 2654435761 & 0xFFFFFFFF), value) for k in keys]
        assert kernel_update(km, items)[0] == ours_each(m.update_batch, items) == 0
        walk(km, m, count, delete=delete)
        assert kernel_keys(km) == m.keys()


def test_items_batch() -> None:
    with create(MapDef(MapType.HASH, 4, 8, 64)) as m:
        for i in range(50):
            m.update(u32(i), u64(i))
        assert sorted(m.items_batch(1)) == sorted(m.items())  # ENOSPC is answered with a larger count
        assert list(m.items_batch()) == m.items()
    with create(MapDef(MapType.ARRAY, 4, 8, 5)) as a:
        assert [k for k, _ in a.items_batch(2)] == [u32(i) for i in range(5)]
