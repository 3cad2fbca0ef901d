"""STACK_TRACE maps: creation rules, get_stackid, user-space operations, and the kernel."""

from __future__ import annotations

import ctypes
import errno
import os
import struct

import pytest

from ebpf import btf
from ebpf.btf.types import IntEncoding
from ebpf.errors import BPFError, KeyNotFoundError
from ebpf.maps import MapDef, MapFlags, create, errno_of
from ebpf.maps.stacktrace import (
    BPF_F_FAST_STACK_CMP,
    BPF_F_REUSE_STACKID,
    BPF_STACK_BUILD_ID_IP,
    StackTraceMap,
)
from ebpf.spec import MapType

ST = MapType.STACK_TRACE
BTF = btf.Spec.build(
    [btf.Int("int", 4, IntEncoding.SIGNED, bits=32), btf.Int("long", 8, IntEncoding.SIGNED, bits=64)]
)
FRAMES = tuple(0xFFFFFFFF81000000 + 0x40 * i for i in range(10))

CREATE_CASES: list[tuple[str, MapDef]] = [
    ("ok", MapDef(ST, 4, 8 * 127, 16)),
    ("depth 128", MapDef(ST, 4, 8 * 128, 16)),
    ("value_size 0", MapDef(ST, 4, 0, 16)),
    ("value_size 12", MapDef(ST, 4, 12, 16)),
    ("key_size 8", MapDef(ST, 8, 8, 16)),
    ("max_entries 0", MapDef(ST, 4, 8, 0)),
    ("build id", MapDef(ST, 4, 32, 16, MapFlags.STACK_BUILD_ID)),
    ("build id 40", MapDef(ST, 4, 40, 16, MapFlags.STACK_BUILD_ID)),
    ("build id 127", MapDef(ST, 4, 32 * 127, 16, MapFlags.STACK_BUILD_ID)),
    ("build id 128", MapDef(ST, 4, 32 * 128, 16, MapFlags.STACK_BUILD_ID)),
    ("no_prealloc", MapDef(ST, 4, 8, 16, MapFlags.NO_PREALLOC)),
    ("rdonly", MapDef(ST, 4, 8, 16, MapFlags.RDONLY)),
    ("wronly", MapDef(ST, 4, 8, 16, MapFlags.WRONLY)),
    ("rdonly_prog", MapDef(ST, 4, 8, 16, MapFlags.RDONLY_PROG)),
    ("numa", MapDef(ST, 4, 8, 16, MapFlags.NUMA_NODE)),
    ("zero_seed", MapDef(ST, 4, 8, 16, MapFlags.ZERO_SEED)),
    ("max_entries 2^31+1", MapDef(ST, 4, 8, (1 << 31) + 1)),
    ("max_entries u32 max", MapDef(ST, 4, 8, 0xFFFFFFFF)),
    ("huge value", MapDef(ST, 4, 8 * 100000, 16)),
    ("btf types", MapDef(ST, 4, 8, 16, btf=BTF, key_type_id=1, value_type_id=2)),
]
EXPECTED = {
    "ok": None,
    "build id": None,
    "build id 127": None,
    "rdonly": None,
    "wronly": None,
    "numa": None,
    "max_entries 2^31+1": errno.E2BIG,
    "max_entries u32 max": errno.E2BIG,
    "btf types": 524,
}


def create_errno(defn: MapDef) -> int | None:
    try:
        create(defn).close()
    except BPFError as err:
        code = errno_of(err)
        assert code is not None, err
        return code
    return None


def test_creation_rules() -> None:
    for name, defn in CREATE_CASES:
        assert create_errno(defn) == EXPECTED.get(name, errno.EINVAL), name


def test_ids_and_values() -> None:
    m = create(MapDef(ST, 4, 8 * 4, 1024))
    assert isinstance(m, StackTraceMap) and m.n_buckets == 1024 and m.max_depth == 4
    sid = m.get_stackid(FRAMES, 0)
    assert 0 <= sid < 1024
    # value_size / 8 frames are collected, then the rest of the value is zeros
    assert m.lookup(struct.pack("<I", sid)) == struct.pack("<4Q", *FRAMES[:4])
    assert m.get_stackid(FRAMES, 0) == sid
    assert m.get_stackid(FRAMES[:4], 0) == sid  # only the first 4 frames count
    skipped = m.get_stackid(FRAMES, 8)
    assert m.lookup(struct.pack("<I", skipped)) == struct.pack("<2Q", *FRAMES[8:]) + bytes(16)
    assert m.get_stackid(FRAMES, 10) == -errno.EFAULT
    assert m.get_stackid((), 0) == -errno.EFAULT
    assert m.get_stackid(FRAMES, 1 << 11) == -errno.EINVAL
    assert len(m) == 2 and sorted(m.keys()) == sorted(struct.pack("<I", i) for i in (sid, skipped))
    m.close()


def test_one_bucket_collisions() -> None:
    m = create(MapDef(ST, 4, 8 * 4, 1))
    assert isinstance(m, StackTraceMap)
    assert m.get_stackid(FRAMES, 0) == 0
    assert m.get_stackid(FRAMES, 1) == -errno.EEXIST
    assert m.get_stackid(FRAMES, 1 | BPF_F_FAST_STACK_CMP) == -errno.EEXIST
    assert m.get_stackid(FRAMES, 1 | BPF_F_REUSE_STACKID) == -errno.ENOMEM  # the only element is in use
    assert m.get_stackid(FRAMES, BPF_F_FAST_STACK_CMP) == 0
    m.close()


def test_build_id_values() -> None:
    m = create(MapDef(ST, 4, 32 * 3, 8, MapFlags.STACK_BUILD_ID))
    assert isinstance(m, StackTraceMap)
    sid = m.get_stackid(FRAMES[:2], 0)
    value = m.lookup(struct.pack("<I", sid))
    assert len(value) == 96
    assert [struct.unpack_from("<i20sQ", value, 32 * i) for i in range(2)] == [
        (BPF_STACK_BUILD_ID_IP, bytes(20), FRAMES[0]),
        (BPF_STACK_BUILD_ID_IP, bytes(20), FRAMES[1]),
    ]
    assert value[64:] == bytes(32)
    m.close()
    one = create(MapDef(ST, 4, 32 * 3, 1, MapFlags.STACK_BUILD_ID))
    assert isinstance(one, StackTraceMap)
    assert one.get_stackid(FRAMES, 0) == 0
    assert one.get_stackid(FRAMES, 0) == -errno.ENOMEM  # the new element is taken before comparing
    assert one.get_stackid(FRAMES, BPF_F_FAST_STACK_CMP) == 0  # the hash match comes first
    one.close()


def test_user_space_operations() -> None:
    m = create(MapDef(ST, 4, 16, 5))  # 8 buckets
    assert isinstance(m, StackTraceMap)
    key = struct.pack("<I", 0)
    with pytest.raises(KeyNotFoundError):
        m.lookup(key)
    assert errno_of(_err(lambda: m.update(key, bytes(16)))) == errno.EINVAL
    assert errno_of(_err(lambda: m.delete(struct.pack("<I", 8)))) == errno.E2BIG
    assert errno_of(_err(lambda: m.delete(struct.pack("<I", 7)))) == errno.ENOENT
    assert errno_of(_err(lambda: m.get_next_key(None))) == errno.ENOENT
    results = [m.get_stackid(FRAMES, skip) for skip in range(4)]
    assert all(r >= 0 or r == -errno.EEXIST for r in results)
    ids = sorted({r for r in results if r >= 0})
    walk = [m.get_next_key(None)]
    while True:
        try:
            walk.append(m.get_next_key(walk[-1]))
        except KeyNotFoundError:
            break
    assert walk == [struct.pack("<I", i) for i in ids]
    assert m.get_next_key(struct.pack("<I", 100)) == walk[0]  # beyond the buckets: from the start
    value = m.lookup(walk[0])
    assert m.lookup_and_delete(walk[0]) == value
    with pytest.raises(KeyNotFoundError):
        m.lookup(walk[0])
    m.close()


def _err(fn: object) -> BaseException:
    try:
        fn()  # type: ignore[operator]
    except BPFError as err:
        return err
    raise AssertionError("no error")


# --- the kernel ------------------------------------------------------------------------------------


@pytest.mark.kernel
def test_creation_matches_the_kernel() -> None:
    from ebpf.errors import SyscallError
    from ebpf.kernel._syscall import bpf
    from ebpf.kernel.btf import KernelBTF
    from ebpf.kernel.uapi import Cmd, MapCreateAttr

    with KernelBTF.load(BTF) as kbtf:
        for name, defn in CREATE_CASES:
            attr = MapCreateAttr(
                map_type=defn.type,
                key_size=defn.key_size,
                value_size=defn.value_size,
                max_entries=defn.max_entries,
                map_flags=defn.flags,
                btf_fd=kbtf.fd if defn.btf is not None else 0,
                btf_key_type_id=defn.key_type_id,
                btf_value_type_id=defn.value_type_id,
            )
            try:
                os.close(bpf(Cmd.MAP_CREATE, attr))
                want = None
            except SyscallError as err:
                want = err.errno
            assert create_errno(defn) == want, name


def _kernel_elem(fd: int, cmd: int, key: bytes | None, vsize: int = 0, flags: int = 0) -> tuple[str, object]:
    from ebpf.errors import SyscallError
    from ebpf.kernel._syscall import bpf
    from ebpf.kernel.uapi import Cmd, MapElemAttr

    kbuf = ctypes.create_string_buffer(key, len(key)) if key is not None else None
    out = ctypes.create_string_buffer(max(vsize, 4))
    attr = MapElemAttr(map_fd=fd, flags=flags)
    attr.key = ctypes.addressof(kbuf) if kbuf is not None else 0
    if cmd != Cmd.MAP_DELETE_ELEM:
        attr.value = ctypes.addressof(out)
    try:
        bpf(Cmd(cmd), attr)
    except SyscallError as err:
        return ("err", err.errno)
    return ("ok", out.raw[: vsize or 4] if cmd != Cmd.MAP_DELETE_ELEM else None)


@pytest.mark.kernel
def test_empty_map_operations_match_the_kernel() -> None:
    from ebpf.kernel._syscall import bpf
    from ebpf.kernel.uapi import Cmd, MapCreateAttr

    defn = MapDef(ST, 4, 16, 5)
    fd = bpf(Cmd.MAP_CREATE, MapCreateAttr(map_type=ST, key_size=4, value_size=16, max_entries=5))
    ours = create(defn)
    try:
        for cmd, key, flags in [
            (Cmd.MAP_LOOKUP_ELEM, 0, 0),
            (Cmd.MAP_LOOKUP_ELEM, 100, 0),
            (Cmd.MAP_LOOKUP_ELEM, 0, 4),
            (Cmd.MAP_UPDATE_ELEM, 0, 0),
            (Cmd.MAP_DELETE_ELEM, 0, 0),
            (Cmd.MAP_DELETE_ELEM, 7, 0),
            (Cmd.MAP_DELETE_ELEM, 8, 0),
            (Cmd.MAP_GET_NEXT_KEY, None, 0),
            (Cmd.MAP_GET_NEXT_KEY, 3, 0),
            (Cmd.MAP_LOOKUP_AND_DELETE_ELEM, 0, 0),
        ]:
            kb = None if key is None else struct.pack("<I", key)
            want = _kernel_elem(fd, cmd, kb, 16, flags)
            got = _ours(ours, cmd, kb, flags)
            assert got == want, (cmd.name, key, flags)
    finally:
        os.close(fd)
        ours.close()


def _ours(m: object, cmd: int, key: bytes | None, flags: int) -> tuple[str, object]:
    from ebpf.kernel.uapi import Cmd

    assert isinstance(m, StackTraceMap)
    try:
        if cmd == Cmd.MAP_LOOKUP_ELEM:
            assert key is not None
            return ("ok", m.lookup_flags(key, flags))
        if cmd == Cmd.MAP_UPDATE_ELEM:
            assert key is not None
            m.update(key, bytes(16), flags)
            return ("ok", bytes(16))
        if cmd == Cmd.MAP_DELETE_ELEM:
            assert key is not None
            m.delete(key)
            return ("ok", None)
        if cmd == Cmd.MAP_GET_NEXT_KEY:
            return ("ok", m.get_next_key(key))
        assert key is not None
        return ("ok", m.lookup_and_delete(key, flags))
    except (BPFError, KeyNotFoundError) as err:
        code = errno_of(err)
        assert code is not None
        return ("err", code)


@pytest.mark.kernel
def test_populated_map_walk_matches_the_kernel() -> None:
    """Stacks recorded by a kernel program, then the same frames in ours: same ids, same
    get_next_key answers from every id (occupied, empty, beyond the buckets), same deletes."""
    from ebpf.helpers import HelperId
    from ebpf.isa.asm import assemble
    from ebpf.kernel._syscall import bpf
    from ebpf.kernel.program import Program
    from ebpf.kernel.uapi import Cmd, MapCreateAttr
    from ebpf.spec import ProgramType

    vsize = 8 * 64
    fd = bpf(Cmd.MAP_CREATE, MapCreateAttr(map_type=ST, key_size=4, value_size=vsize, max_entries=16))
    ours = create(MapDef(ST, 4, vsize, 16))
    assert isinstance(ours, StackTraceMap)
    try:
        text = f"r3 = *(u64 *)(r1 + 0)\nr2 = map_fd({fd}) ll\ncall {HelperId.GET_STACKID}\nexit"
        with Program.load(assemble(text), ProgramType.RAW_TRACEPOINT) as prog:
            ids = [prog.test_run(ctx_in=struct.pack("<Q", skip)).retval for skip in range(6)]
        ids = [i - (1 << 32) if i >> 31 else i for i in ids]
        assert all(i >= 0 or i == -errno.EEXIST for i in ids)
        first = _kernel_elem(fd, Cmd.MAP_LOOKUP_ELEM, struct.pack("<I", ids[0]), vsize)
        assert first[0] == "ok" and isinstance(first[1], bytes)
        frames = [v for (v,) in struct.iter_unpack("<Q", first[1]) if v]
        assert [ours.get_stackid(frames, skip) for skip in range(6)] == ids
        for k in [None, *range(18)]:
            kb = None if k is None else struct.pack("<I", k)
            assert _ours(ours, Cmd.MAP_GET_NEXT_KEY, kb, 0) == _kernel_elem(fd, Cmd.MAP_GET_NEXT_KEY, kb), k
        for k in [*ids, 15, 16, 100]:
            kb = struct.pack("<I", k % (1 << 32))
            assert _ours(ours, Cmd.MAP_LOOKUP_AND_DELETE_ELEM, kb, 0) == _kernel_elem(
                fd, Cmd.MAP_LOOKUP_AND_DELETE_ELEM, kb, vsize
            ), k
    finally:
        os.close(fd)
        ours.close()
