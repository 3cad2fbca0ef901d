"""Stack and local-storage helpers in the user-space runtime (no kernel; see
tests/differential/test_storage_kernel.py for the same programs against the kernel)."""

from __future__ import annotations

import dataclasses
import errno
import os
import struct

import pytest

from ebpf import btf
from ebpf.btf.types import IntEncoding
from ebpf.errors import VMError
from ebpf.helpers import HelperId
from ebpf.maps import MapDef, MapFlags, create
from ebpf.maps.stacktrace import (
    BPF_F_FAST_STACK_CMP,
    BPF_F_REUSE_STACKID,
    BPF_F_USER_BUILD_ID,
    BPF_F_USER_STACK,
    StackTraceMap,
)
from ebpf.maps.storage import LocalStorageMap, Owner, owners
from ebpf.spec import MapType
from ebpf.vm._helpers_storage import current_task_object
from ebpf.vm.helpers import RunEnv, TaskInfo

from ._helper_util import ENGINE_NAMES, run

BTF = btf.Spec.build(
    [btf.Int("int", 4, IntEncoding.SIGNED, bits=32), btf.Int("long", 8, IntEncoding.SIGNED, bits=64)]
)
NULL_MARK = 0xFFFF


def storage_def(t: MapType) -> MapDef:
    return MapDef(t, 4, 8, 0, MapFlags.NO_PREALLOC, "st", btf=BTF, key_type_id=1, value_type_id=2)


def s64(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


GET = {
    MapType.TASK_STORAGE: HelperId.TASK_STORAGE_GET,
    MapType.SK_STORAGE: HelperId.SK_STORAGE_GET,
    MapType.INODE_STORAGE: HelperId.INODE_STORAGE_GET,
    MapType.CGRP_STORAGE: HelperId.CGRP_STORAGE_GET,
}
DELETE = {
    MapType.TASK_STORAGE: HelperId.TASK_STORAGE_DELETE,
    MapType.SK_STORAGE: HelperId.SK_STORAGE_DELETE,
    MapType.INODE_STORAGE: HelperId.INODE_STORAGE_DELETE,
    MapType.CGRP_STORAGE: HelperId.CGRP_STORAGE_DELETE,
}


def get_prog(helper: int, handle: int, owner: int, flags: int, init: int | None = None) -> str:
    value = "r3 = 0" if init is None else f"r1 = {init}\n*(u64 *)(r10 - 8) = r1\nr3 = r10\nr3 += -8"
    return f"""
        {value}
        r1 = {handle} ll
        r2 = {owner} ll
        r4 = {flags}
        call {helper}
        if r0 == 0 goto null
        r1 = *(u64 *)(r0 + 0)
        r1 += 1
        *(u64 *)(r0 + 0) = r1
        r0 = r1
        exit
    null:
        r0 = {NULL_MARK}
        exit
    """


def delete_prog(helper: int, handle: int, owner: int) -> str:
    return f"r1 = {handle} ll\nr2 = {owner} ll\ncall {helper}\nexit"


OWNERS = {
    MapType.TASK_STORAGE: Owner.task(4242),
    MapType.SK_STORAGE: Owner.socket(8, 1001),
    MapType.INODE_STORAGE: Owner.inode(2, 77),
    MapType.CGRP_STORAGE: Owner.cgroup(30, 1),
}


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("map_type", list(GET))
def test_storage_get_and_delete(map_type: MapType, engine: str) -> None:
    env = RunEnv(deterministic=True)
    m = create(storage_def(map_type), env.memory)
    assert isinstance(m, LocalStorageMap)
    h = env.add_map(m)
    owner = OWNERS[map_type]
    ptr = owners(env.memory).new_object(owner)
    get, delete = GET[map_type], DELETE[map_type]

    def r(text: str) -> int:
        return s64(run(text, env, engine).retval)

    assert r(get_prog(get, h, ptr, 0)) == NULL_MARK  # missing, no CREATE
    assert r(get_prog(get, h, ptr, 2)) == NULL_MARK  # unknown flag
    assert r(get_prog(get, h, 0, 1)) == NULL_MARK  # NULL owner
    assert r(get_prog(get, h, ptr, 1, init=9)) == 10  # created from the init value
    assert r(get_prog(get, h, ptr, 1, init=100)) == 11  # exists: init ignored
    assert m.lookup_owner(owner) == struct.pack("<q", 11)
    assert r(delete_prog(delete, h, ptr)) == 0
    assert r(delete_prog(delete, h, ptr)) == -errno.ENOENT
    assert r(delete_prog(delete, h, 0)) == -errno.EINVAL
    assert r(get_prog(get, h, ptr, 1)) == 1  # created zeroed
    with pytest.raises(VMError, match="not a"):
        run(get_prog(get, h, 0x1234, 1), env, engine)  # a pointer the runtime cannot name
    other = next(o for t, o in OWNERS.items() if t != map_type)
    wrong = owners(env.memory).new_object(other)
    with pytest.raises(VMError, match="not a"):
        run(get_prog(get, h, wrong, 1), env, engine)
    m.close()


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_current_task_pointer_names_the_current_task(engine: str) -> None:
    """``TaskInfo.task`` (what bpf_get_current_task_btf returns) names the current task unbound."""
    env = RunEnv(deterministic=True)
    assert env.task is not None
    env.task = dataclasses.replace(env.task, task=0xFFFF_8880_0000_1000)
    m = create(storage_def(MapType.TASK_STORAGE), env.memory)
    h = env.add_map(m)
    text = f"""
        call {HelperId.GET_CURRENT_TASK_BTF}
        r2 = r0
        r1 = {h} ll
        r3 = 0
        r4 = 1
        call {HelperId.TASK_STORAGE_GET}
        if r0 == 0 goto out
        r1 = 5
        *(u64 *)(r0 + 0) = r1
    out:
        exit
    """
    assert run(text, env, engine).retval != 0
    assert m.lookup_owner(Owner.task(env.task.pid)) == struct.pack("<q", 5)  # type: ignore[attr-defined]
    m.close()


@pytest.mark.parametrize("deterministic", [True, False])
def test_current_task_object(deterministic: bool) -> None:
    env = RunEnv(deterministic=deterministic)
    pid = env.current_task().pid
    address = current_task_object(env, 128)
    assert env.task is not None and env.task.task == address and env.task.pid == pid
    assert owners(env.memory).owner_at(address) == Owner.task(pid)
    assert env.memory.find(address, 128) is not None
    m = create(storage_def(MapType.TASK_STORAGE), env.memory)
    h = env.add_map(m)
    text = f"""
        call {HelperId.GET_CURRENT_TASK_BTF}
        r2 = r0
        r1 = {h} ll
        r3 = 0
        r4 = 1
        call {HelperId.TASK_STORAGE_GET}
        if r0 == 0 goto out
        r1 = 3
        *(u64 *)(r0 + 0) = r1
    out:
        exit
    """
    assert run(text, env, "interp").retval != 0
    assert m.lookup_owner(Owner.task(pid)) == struct.pack("<q", 3)  # type: ignore[attr-defined]
    m.close()


def test_default_task_has_no_pointer() -> None:
    """By default the runtime's task has no object: get_current_task_btf is 0, storage_get NULL."""
    env = RunEnv(deterministic=True)
    m = create(storage_def(MapType.TASK_STORAGE), env.memory)
    h = env.add_map(m)
    text = f"""
        call {HelperId.GET_CURRENT_TASK_BTF}
        r2 = r0
        r1 = {h} ll
        r3 = 0
        r4 = 1
        call {HelperId.TASK_STORAGE_GET}
        exit
    """
    assert run(text, env, "interp").retval == 0
    m.close()


# --- stacks -----------------------------------------------------------------------------------------


def stackid_prog(handle: int, flags: int) -> str:
    return f"r2 = {handle} ll\nr3 = {flags} ll\ncall {HelperId.GET_STACKID}\nexit"


def get_stack_prog(handle: int, size: int, flags: int) -> str:
    return f"""
        r6 = r1
        r1 = 0
        *(u32 *)(r10 - 4) = r1
        r1 = {handle} ll
        r2 = r10
        r2 += -4
        call {HelperId.MAP_LOOKUP_ELEM}
        if r0 == 0 goto out
        r2 = r0
        r1 = r6
        r3 = {size}
        r4 = {flags}
        call {HelperId.GET_STACK}
    out:
        exit
    """


KSTACK = (0xFFFFFFFF81000010, 0xFFFFFFFF81000020, 0xFFFFFFFF81000030)
USTACK = (0x401000, 0x402000)


def _env(kernel: tuple[int, ...] = KSTACK, user: tuple[int, ...] = USTACK) -> RunEnv:
    env = RunEnv(deterministic=True)
    assert env.task is not None
    env.task = dataclasses.replace(env.task, kernel_stack=kernel, user_stack=user)
    return env


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_get_stackid(engine: str) -> None:
    env = _env()
    m = create(MapDef(MapType.STACK_TRACE, 4, 8 * 4, 1), env.memory)  # one bucket, one element
    assert isinstance(m, StackTraceMap)
    h = env.add_map(m)

    def r(flags: int) -> int:
        return s64(run(stackid_prog(h, flags), env, engine).retval)

    assert r(0) == 0 and r(0) == 0
    assert m.lookup(struct.pack("<I", 0)) == struct.pack("<3Q", *KSTACK) + bytes(8)
    assert r(1) == -errno.EEXIST  # another stack in the bucket
    assert r(1 | BPF_F_FAST_STACK_CMP) == -errno.EEXIST  # another hash too
    assert r(1 | BPF_F_REUSE_STACKID) == -errno.ENOMEM  # no free element to replace it with
    assert r(3) == -errno.EFAULT  # skips all 3 frames
    assert r(1 << 11) == -errno.EINVAL
    assert r(1 << 63) == -errno.EINVAL
    m.delete(struct.pack("<I", 0))
    assert r(BPF_F_USER_STACK) == 0
    assert m.lookup(struct.pack("<I", 0)) == struct.pack("<2Q", *USTACK) + bytes(16)
    m.close()
    m = create(MapDef(MapType.STACK_TRACE, 4, 8 * 4, 2), env.memory)  # a spare element: REUSE replaces
    h = env.add_map(m)
    kid = r(0)
    assert kid == 1 and r(1) == -errno.EEXIST  # both stacks hash to bucket 1 (jhash2, seed 0)
    assert r(1 | BPF_F_REUSE_STACKID) == kid
    assert m.lookup(struct.pack("<I", kid)) == struct.pack("<2Q", *KSTACK[1:]) + bytes(16)
    m.close()


def test_no_frames_is_efault_by_default() -> None:
    env = RunEnv(deterministic=True)
    m = create(MapDef(MapType.STACK_TRACE, 4, 8, 4), env.memory)
    h = env.add_map(m)
    assert s64(run(stackid_prog(h, 0), env, "interp").retval) == -errno.EFAULT
    assert s64(run(stackid_prog(h, BPF_F_USER_STACK), env, "interp").retval) == -errno.EFAULT
    m.close()


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_get_stack(engine: str) -> None:
    env = _env()
    buf = create(MapDef(MapType.ARRAY, 4, 64, 1), env.memory)
    h = env.add_map(buf)
    zero = struct.pack("<I", 0)

    def r(size: int, flags: int) -> tuple[int, bytes]:
        buf.update(zero, b"\xaa" * 64)
        return s64(run(get_stack_prog(h, size, flags), env, engine).retval), buf.lookup(zero)

    assert r(64, 0) == (24, struct.pack("<3Q", *KSTACK) + bytes(40))
    assert r(16, 1) == (16, struct.pack("<2Q", *KSTACK[1:]) + b"\xaa" * 48)
    assert r(64, 3) == (0, bytes(64))  # every frame skipped: nothing copied, buffer zeroed
    assert r(64, 4) == (-errno.EFAULT, bytes(64))
    assert r(12, 0) == (-errno.EINVAL, bytes(12) + b"\xaa" * 52)
    assert r(64, BPF_F_USER_BUILD_ID) == (-errno.EINVAL, bytes(64))
    assert r(64, BPF_F_USER_STACK) == (16, struct.pack("<2Q", *USTACK) + bytes(48))
    n, data = r(64, BPF_F_USER_STACK | BPF_F_USER_BUILD_ID)
    assert n == 64 and struct.unpack("<i20sQ", data[:32]) == (2, bytes(20), USTACK[0])
    assert r(0, 0) == (0, b"\xaa" * 64)
    buf.close()


def test_default_stacks_are_empty() -> None:
    task = TaskInfo.fixed()
    assert task.kernel_stack == () and task.user_stack == ()
    env = RunEnv(deterministic=True)
    buf = create(MapDef(MapType.ARRAY, 4, 64, 1), env.memory)
    h = env.add_map(buf)
    assert run(get_stack_prog(h, 64, 0), env, "interp").retval == 0
    buf.close()


def test_get_task_stack_of_another_task_has_no_frames() -> None:
    env = _env()
    current_task_object(env)
    other = owners(env.memory).new_object(Owner.task(1))
    buf = create(MapDef(MapType.ARRAY, 4, 64, 1), env.memory)
    h = env.add_map(buf)
    assert env.task is not None
    for task, want in ((env.task.task, 24), (other, 0)):
        text = f"""
            r1 = 0
            *(u32 *)(r10 - 4) = r1
            r1 = {h} ll
            r2 = r10
            r2 += -4
            call {HelperId.MAP_LOOKUP_ELEM}
            if r0 == 0 goto out
            r2 = r0
            r1 = {task} ll
            r3 = 64
            r4 = 0
            call {HelperId.GET_TASK_STACK}
        out:
            exit
        """
        assert run(text, env, "interp").retval == want
    buf.close()


def test_process_build_id() -> None:
    """Addresses of this process resolve to the mapped file's build id and file offset."""
    import ctypes
    import ctypes.util

    from ebpf.vm._helpers_storage import process_build_id

    name = ctypes.util.find_library("c")
    if name is None:
        pytest.skip("no libc to look at")
    address = ctypes.cast(ctypes.CDLL(name).getpid, ctypes.c_void_p).value
    assert address is not None
    found = process_build_id(address)
    if found is None:
        pytest.skip("libc has no build-id note here")
    build_id, offset = found
    assert 8 <= len(build_id) <= 20 and 0 < offset < address
    assert process_build_id(ctypes.addressof(ctypes.create_string_buffer(16))) is None  # the heap
    assert process_build_id(0) is None


def test_build_ids_resolved_only_for_this_process() -> None:
    """Deterministic runs (and tasks that are not this process) keep status IP entries."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        pytest.skip("no libc to look at")
    address = ctypes.cast(ctypes.CDLL(name).getpid, ctypes.c_void_p).value
    assert address is not None
    for deterministic, status in ((True, 2), (False, 1)):
        env = RunEnv(deterministic=deterministic)
        env.task = dataclasses.replace(env.current_task(), user_stack=(address,))
        if not deterministic:
            assert env.task.tgid == os.getpid()
        buf = create(MapDef(MapType.ARRAY, 4, 64, 1), env.memory)
        h = env.add_map(buf)
        assert run(get_stack_prog(h, 64, BPF_F_USER_STACK | BPF_F_USER_BUILD_ID), env, "interp").retval == 32
        assert struct.unpack_from("<i", buf.lookup(struct.pack("<I", 0)))[0] == status
        buf.close()
