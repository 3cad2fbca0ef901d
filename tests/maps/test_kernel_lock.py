"""bpf_spin_lock values against the kernel: BTF rules at creation, BPF_F_LOCK on update/lookup/batch.

The value's lock word is hidden from user space on both sides: it reads as zero and updates
leave it alone, whatever the caller passes in those 4 bytes.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from ebpf import btf
from ebpf.btf import Int, IntEncoding, Member, Struct, Typedef
from ebpf.errors import SyscallError
from ebpf.maps import BPF_F_LOCK, MapDef, create, errno_of
from ebpf.maps._base import Map
from ebpf.spec import MapFlags, MapType

from ._bpfprog import create_map_btf, load_btf
from .test_kernel_batch import kernel_lookup, kernel_update, ours_each, ours_lookup
from .test_kernel_diff import KernelMap, Op, run_ours, u32

pytestmark = pytest.mark.kernel

INT, U32, LOCK, VAL, NESTED, INNER, TYPEDEF_VAL, LOCK_T, PLAIN = range(1, 10)
TYPES = [
    Int("int", 4, IntEncoding.SIGNED, 0, 32),
    Int("unsigned int", 4, IntEncoding.NONE, 0, 32),
    Struct("bpf_spin_lock", 4, (Member("val", U32, 0),)),
    Struct("val", 12, (Member("a", INT, 0), Member("lock", LOCK, 32), Member("b", INT, 64))),
    Struct("nested", 12, (Member("a", INT, 0), Member("inner", INNER, 32), Member("c", INT, 64))),
    Struct("inner", 4, (Member("l", LOCK, 0),)),
    Struct("tval", 8, (Member("a", INT, 0), Member("l", LOCK_T, 32))),  # a typedef'd lock: no lock
    Typedef("lock_t", LOCK),
    Struct("plain", 12, (Member("a", INT, 0), Member("b", INT, 32), Member("c", INT, 64))),
]
SPEC = btf.Spec.build(TYPES)


@pytest.fixture(scope="module")
def btf_fd() -> Iterator[int]:
    fd = load_btf(SPEC.to_bytes())
    yield fd
    os.close(fd)


def defn(mtype: MapType, value_id: int, value_size: int = 12, flags: int = 0) -> MapDef:
    return MapDef(mtype, 4, value_size, 4, flags, btf=SPEC, key_type_id=U32, value_type_id=value_id)


def kernel_map(d: MapDef, fd: int) -> KernelMap:
    km = KernelMap.__new__(KernelMap)
    km.defn = d
    km.fd = create_map_btf(
        d.type, d.key_size, d.value_size, d.max_entries, fd, d.key_type_id, d.value_type_id, d.flags
    )
    return km


@contextmanager
def both(d: MapDef, fd: int) -> Iterator[tuple[KernelMap, Map]]:
    km = kernel_map(d, fd)
    try:
        with create(d) as ours:
            yield km, ours
    finally:
        km.close()


@pytest.mark.parametrize(
    ("mtype", "value_id", "value_size", "flags"),
    [
        (MapType.HASH, VAL, 12, 0),
        (MapType.ARRAY, VAL, 12, 0),
        (MapType.ARRAY, NESTED, 12, 0),
        (MapType.PERCPU_HASH, VAL, 12, 0),
        (MapType.LRU_HASH, VAL, 12, 0),
        (MapType.PERCPU_ARRAY, VAL, 12, 0),
        (MapType.ARRAY, VAL, 12, MapFlags.RDONLY_PROG),
        (MapType.ARRAY, VAL, 16, 0),
        (MapType.PERCPU_HASH, TYPEDEF_VAL, 8, 0),
        (MapType.HASH, PLAIN, 12, 0),
    ],
)
def test_create_rules(btf_fd: int, mtype: MapType, value_id: int, value_size: int, flags: int) -> None:
    d = defn(mtype, value_id, value_size, flags)
    try:
        kernel_map(d, btf_fd).close()
        want = None
    except SyscallError as err:
        want = err.errno
    try:
        create(d).close()
        got = None
    except Exception as err:  # noqa: BLE001
        got = errno_of(err)
        assert got is not None, err
    assert got == want


def test_lock_offsets() -> None:
    with create(defn(MapType.HASH, VAL)) as m:
        assert m.lock_offset == 4
    with create(defn(MapType.ARRAY, NESTED)) as m:
        assert m.lock_offset == 4
    with create(defn(MapType.HASH, TYPEDEF_VAL, 8)) as m:
        assert m.lock_offset is None


def value(a: int, lock: int, b: int) -> bytes:
    return a.to_bytes(4, "little") + lock.to_bytes(4, "little") + b.to_bytes(4, "little")


@pytest.mark.parametrize("mtype", [MapType.HASH, MapType.ARRAY])
@pytest.mark.parametrize("value_id", [VAL, NESTED, PLAIN])
def test_lock_flag_sequences(btf_fd: int, mtype: MapType, value_id: int) -> None:
    ops: list[Op] = [
        ("update", u32(1), value(1, 0xFFFFFFFF, 2), 0),
        ("lookup", u32(1)),
        ("lookup_flags", u32(1), BPF_F_LOCK),
        ("lookup_flags", u32(1), 8),
        ("update", u32(1), value(3, 0xABCD, 4), BPF_F_LOCK),
        ("lookup_flags", u32(1), BPF_F_LOCK),
        ("update", u32(2), value(5, 1, 6), BPF_F_LOCK | 1),
        ("update", u32(2), value(5, 1, 6), BPF_F_LOCK | 2),
        ("update", u32(3), value(7, 1, 8), BPF_F_LOCK | 4),
        ("update", u32(9), value(7, 1, 8), BPF_F_LOCK),
        ("lookup", u32(2)),
        ("lookup", u32(9)),
    ]
    flags = MapFlags.ZERO_SEED if mtype == MapType.HASH else 0  # same buckets: same batch order
    with both(defn(mtype, value_id, flags=flags), btf_fd) as (km, ours):
        for i, op in enumerate(ops):
            if op[0] == "lookup_flags":
                key, flags = op[1], op[2]
                assert isinstance(key, bytes) and isinstance(flags, int)
                want = kernel_lookup_flags(km, key, flags)
                try:
                    got: tuple[str, object] = ("ok", ours.lookup_flags(key, flags))
                except Exception as err:  # noqa: BLE001
                    got = ("err", errno_of(err))
            else:
                want, got = km.run(op), run_ours(ours, op)
            assert got == want, f"op {i} {op}: ours {got}, kernel {want}"
        for elem_flags in (0, BPF_F_LOCK):
            items = [(u32(0), value(11, 5, 12)), (u32(3), value(13, 5, 14))]
            assert (
                ours_each(lambda it, f: ours.update_batch(it, f), items, elem_flags)
                == kernel_update(km, items, elem_flags)[0]
            )
            assert ours_lookup(ours, 8, None, elem_flags=elem_flags) == kernel_lookup(
                km, 8, None, elem_flags=elem_flags
            )


def kernel_lookup_flags(km: KernelMap, key: bytes, flags: int) -> tuple[str, object]:
    import ctypes

    from ebpf.kernel._syscall import bpf
    from ebpf.kernel.uapi import Cmd, MapElemAttr

    kbuf = ctypes.create_string_buffer(key, len(key))
    out = ctypes.create_string_buffer(km.defn.value_size)
    attr = MapElemAttr(map_fd=km.fd, key=ctypes.addressof(kbuf), flags=flags)
    attr.value = ctypes.addressof(out)
    try:
        bpf(Cmd.MAP_LOOKUP_ELEM, attr)
    except SyscallError as err:
        return ("err", err.errno)
    return ("ok", out.raw)


def test_program_side_lock_pairing() -> None:
    with create(defn(MapType.ARRAY, VAL)) as m:
        addr = m.value_address(u32(2))
        assert addr is not None
        lock = addr + 4
        assert m.owns_lock(lock) and not m.owns_lock(addr)
        m.spin_lock(lock)
        with pytest.raises(Exception) as held:
            m.spin_lock(lock)
        assert errno_of(held.value) == errno.EDEADLK
        assert m.lookup(u32(2)) == bytes(12)  # the held lock word reads as zero
        m.update(u32(2), value(1, 0, 2))
        assert m.memory.load(lock, 4) == 1  # updates leave the lock word alone
        m.spin_unlock(lock)
        with pytest.raises(Exception) as free:
            m.spin_unlock(lock)
        assert errno_of(free.value) == errno.EPERM
        with pytest.raises(Exception) as bad:
            m.spin_lock(addr)
        assert errno_of(bad.value) == errno.EINVAL
    with create(defn(MapType.HASH, VAL)) as h:
        h.update(u32(7), value(1, 0, 2))
        addr = h.value_address(u32(7))
        assert addr is not None and h.owns_lock(addr + 4)
        h.spin_lock(addr + 4)
        h.update(u32(7), value(3, 0, 4), BPF_F_LOCK)  # in place: the address stays
        assert h.value_address(u32(7)) == addr and h.memory.load(addr + 4, 4) == 1
        h.spin_unlock(addr + 4)
        h.delete(u32(7))
        assert not h.owns_lock(addr + 4)
