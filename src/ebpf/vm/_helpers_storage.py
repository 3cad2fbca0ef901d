"""User-space kernel helpers for stacks and local storage.

Core layer: pure, no kernel access.

Rule 1 (stacks): ``bpf_get_stackid``, ``bpf_get_stack`` and ``bpf_get_task_stack`` (of the
current task; another task has no frames here) walk the current task's
:attr:`~ebpf.vm.helpers.TaskInfo.kernel_stack` (or ``user_stack`` with
``BPF_F_USER_STACK``): the runtime cannot see a real stack, so these are what the embedder
configured, empty by default, and an empty stack gets the kernel's answer for no frames
(``-EFAULT`` from ``bpf_get_stackid``; ``bpf_get_stack`` returns 0 and zeroes ``buf``).
The ``ctx`` argument plays no part (the kernel takes the registers from it).
``bpf_get_stack`` follows ``__bpf_get_stack``: unknown flags, ``BPF_F_USER_BUILD_ID``
without ``BPF_F_USER_STACK`` or a size that is not a whole number of entries is
``-EINVAL``; skipping more frames than there are is ``-EFAULT``; on error ``buf`` is zeroed;
on success the bytes copied are returned and the rest of ``buf`` is zeroed. Build-id entries
of user frames (``BPF_F_USER_BUILD_ID``, and user stacks in ``BPF_F_STACK_BUILD_ID`` maps) are
resolved through ``/proc/self/maps`` and the mapped ELF file's ``NT_GNU_BUILD_ID`` when the
current task is this process and the run is not deterministic (:func:`process_build_id`);
otherwise, and for addresses no file with a build id maps, they are ``BPF_STACK_BUILD_ID_IP``
entries with the address, as the kernel writes frames it cannot resolve.

Rule 2 (local storage, ``bpf_{task,sk,inode,cgrp}_storage_{get,delete}``): the owner
pointer is resolved through the memory's :class:`~ebpf.maps.storage.OwnerTable`; a task
pointer equal to the current task's ``TaskInfo.task`` names that task without binding. A
NULL owner gets NULL from ``*_get`` and ``-EINVAL`` from ``*_delete``; flags other than
``BPF_LOCAL_STORAGE_GET_F_CREATE`` get NULL; a missing value is created (from the init
value, or zeroed) only with that flag; ``*_delete`` of a missing value is ``-ENOENT``. A
non-NULL pointer the table cannot name is a :class:`~ebpf.errors.VMError` (the kernel's
verifier only lets real objects through).
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import os
import struct

from ebpf.errors import KeyNotFoundError, VMError
from ebpf.helpers import HelperId
from ebpf.maps.stacktrace import (
    BPF_F_SKIP_FIELD_MASK,
    BPF_F_USER_BUILD_ID,
    BPF_F_USER_STACK,
    BUILD_ID_ENTRY_SIZE,
    PERF_MAX_STACK_DEPTH,
    BuildIdResolver,
    StackTraceMap,
    build_id_entry,
)
from ebpf.maps.storage import (
    BPF_LOCAL_STORAGE_GET_F_CREATE,
    LocalStorageMap,
    Owner,
    OwnerKind,
    owners,
)
from ebpf.vm.helpers import M64, HelperEnv, HelperRegistry, RunEnv, run_env

__all__ = ["current_task_object", "process_build_id", "register"]

GET_STACK_FLAGS = BPF_F_SKIP_FIELD_MASK | BPF_F_USER_STACK | BPF_F_USER_BUILD_ID


def _neg(code: int) -> int:
    return (-code) & M64


def _frames(env: RunEnv, flags: int) -> tuple[int, ...]:
    task = env.current_task()
    return task.user_stack if flags & BPF_F_USER_STACK else task.kernel_stack


# --- build ids of this process's mappings ---------------------------------------------------------

PAGE_SHIFT = 12


@functools.lru_cache(maxsize=256)
def _file_build_id(path: str, dev: str, inode: int) -> bytes | None:
    """The ``NT_GNU_BUILD_ID`` of the ELF file ``path`` (cached per device and inode)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.segments import NoteSegment

    try:
        with open(path, "rb") as f:
            for segment in ELFFile(f).iter_segments():
                if not isinstance(segment, NoteSegment):
                    continue
                for note in segment.iter_notes():
                    if note.n_type == "NT_GNU_BUILD_ID":
                        return bytes.fromhex(note.n_desc)
    except (OSError, ELFError, ValueError):
        return None
    return None


def process_build_id(ip: int) -> tuple[bytes, int] | None:
    """``(build id, file offset)`` of the file this process maps at ``ip`` (``/proc/self/maps``).

    The kernel's ``stack_map_get_build_id_offset``: the offset is ``vm_pgoff << PAGE_SHIFT``
    plus ``ip - vm_start``; an address in an anonymous mapping, in no mapping, or in a
    file without a build-id note is ``None`` (a ``BPF_STACK_BUILD_ID_IP`` entry).
    """
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                fields = line.split(maxsplit=5)
                start, _, end = fields[0].partition("-")
                if not int(start, 16) <= ip < int(end, 16):
                    continue
                if len(fields) < 6 or int(fields[4]) == 0 or not fields[5].startswith("/"):
                    return None
                build_id = _file_build_id(fields[5].rstrip("\n"), fields[3], int(fields[4]))
                if build_id is None:
                    return None
                return build_id, int(fields[2], 16) + ip - int(start, 16)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _resolver(env: RunEnv) -> BuildIdResolver | None:
    """How user addresses get build ids: through this process's mappings when the current task
    is this process (not deterministic); otherwise not at all (status ``IP``)."""
    if env.deterministic or env.current_task().tgid != os.getpid():
        return None
    return process_build_id


def current_task_object(env: RunEnv, size: int = 64) -> int:
    """Give the runtime's current task a stand-in object; its address.

    Maps ``size`` zeroed bytes bound to ``Owner.task(pid)`` of :meth:`RunEnv.current_task`
    and pins that task (with the address as ``TaskInfo.task``) as ``env.task``, so
    ``bpf_get_current_task(_btf)`` returns a pointer that names it for the storage helpers.
    Fields a program reads through it are what the caller writes there (``size`` must then
    cover them, e.g. ``sizeof(struct task_struct)`` from the target BTF).

    Returns:
        The object's address (also ``env.task.task``).
    """
    task = env.current_task()
    address = owners(env.memory).new_object(Owner.task(task.pid), size)
    env.task = dataclasses.replace(task, task=address)
    return address


# --- stacks ---------------------------------------------------------------------------------------


def get_stackid(e: HelperEnv, _ctx: int, map_ptr: int, flags: int, _d: int, _e: int) -> int:
    env = run_env(e)
    m = env.map_at(map_ptr)
    if not isinstance(m, StackTraceMap):
        raise VMError(f"bpf_get_stackid on {m.type.name} map {m.name!r} (needs a STACK_TRACE map)")
    return m.get_stackid(_frames(env, flags), flags, resolve=_resolver(env)) & M64


def _get_stack(env: RunEnv, buf: int, size: int, flags: int, frames: tuple[int, ...]) -> int:
    """``__bpf_get_stack`` over ``frames`` (see the module docstring, Rule 1)."""
    size &= 0xFFFFFFFF
    flags &= M64
    user = bool(flags & BPF_F_USER_STACK)
    build_id = bool(flags & BPF_F_USER_BUILD_ID)
    elem = BUILD_ID_ENTRY_SIZE if build_id else 8
    if flags & ~GET_STACK_FLAGS or (build_id and not user) or size % elem:
        code = errno.EINVAL
    else:
        skip = flags & BPF_F_SKIP_FIELD_MASK
        count = size // elem
        collected = frames[: min(count + skip, PERF_MAX_STACK_DEPTH)]
        if len(collected) >= skip:
            ips = [ip & M64 for ip in collected[skip:][:count]]
            if build_id:
                resolve = _resolver(env)
                data = b"".join(build_id_entry(ip, resolve) for ip in ips)
            else:
                data = struct.pack(f"<{len(ips)}Q", *ips)
            if size:
                env.memory.write_bytes(buf, data.ljust(size, b"\0"))
            return len(data)
        code = errno.EFAULT
    if size:
        env.memory.write_bytes(buf, bytes(size))
    return _neg(code)


def get_stack(e: HelperEnv, _ctx: int, buf: int, size: int, flags: int, _e: int) -> int:
    env = run_env(e)
    return _get_stack(env, buf, size, flags, _frames(env, flags))


def get_task_stack(e: HelperEnv, task: int, buf: int, size: int, flags: int, _e: int) -> int:
    """``bpf_get_task_stack``: the stacks of the current task; no frames for any other task
    (the runtime knows no other task's stack)."""
    env = run_env(e)
    owner = _owner(env, OwnerKind.TASK, task)
    frames: tuple[int, ...] = ()
    if owner == Owner.task(env.current_task().pid):
        frames = _frames(env, flags)
    return _get_stack(env, buf, size, flags, frames)


# --- local storage --------------------------------------------------------------------------------


def _storage_map(env: RunEnv, map_ptr: int, kind: OwnerKind) -> LocalStorageMap:
    m = env.map_at(map_ptr)
    if not isinstance(m, LocalStorageMap) or m.owner_kind is not kind:
        raise VMError(f"a {kind.value} storage helper on {m.type.name} map {m.name!r}")
    return m


def _owner(env: RunEnv, kind: OwnerKind, ptr: int) -> Owner:
    owner = owners(env.memory).owner_at(ptr)
    if owner is None and kind is OwnerKind.TASK:
        task = env.current_task()
        if task.task and ptr == task.task & M64:
            owner = Owner.task(task.pid)
    if owner is None:
        raise VMError(
            f"{ptr:#x} is not a {kind.value} the runtime knows (bind it with ebpf.maps.storage.owners(memory))"
        )
    if owner.kind is not kind:
        raise VMError(f"{ptr:#x} is a {owner.kind.value}, not a {kind.value}")
    return owner


def _storage_get(kind: OwnerKind, e: HelperEnv, map_ptr: int, ptr: int, value: int, flags: int) -> int:
    env = run_env(e)
    m = _storage_map(env, map_ptr, kind)
    if flags & M64 & ~BPF_LOCAL_STORAGE_GET_F_CREATE or ptr == 0:
        return 0
    owner = _owner(env, kind, ptr)
    init = env.memory.read_bytes(value, m.value_size) if value else None
    address = m.storage_get(owner, init, create=bool(flags & BPF_LOCAL_STORAGE_GET_F_CREATE))
    return 0 if address is None else address


def _storage_delete(kind: OwnerKind, e: HelperEnv, map_ptr: int, ptr: int) -> int:
    env = run_env(e)
    m = _storage_map(env, map_ptr, kind)
    if ptr == 0:
        return _neg(errno.EINVAL)
    try:
        m.delete_owner(_owner(env, kind, ptr))
    except KeyNotFoundError:
        return _neg(errno.ENOENT)
    return 0


def task_storage_get(e: HelperEnv, map_ptr: int, task: int, value: int, flags: int, _e: int) -> int:
    return _storage_get(OwnerKind.TASK, e, map_ptr, task, value, flags)


def task_storage_delete(e: HelperEnv, map_ptr: int, task: int, _c: int, _d: int, _e: int) -> int:
    return _storage_delete(OwnerKind.TASK, e, map_ptr, task)


def sk_storage_get(e: HelperEnv, map_ptr: int, sk: int, value: int, flags: int, _e: int) -> int:
    return _storage_get(OwnerKind.SOCK, e, map_ptr, sk, value, flags)


def sk_storage_delete(e: HelperEnv, map_ptr: int, sk: int, _c: int, _d: int, _e: int) -> int:
    return _storage_delete(OwnerKind.SOCK, e, map_ptr, sk)


def inode_storage_get(e: HelperEnv, map_ptr: int, inode: int, value: int, flags: int, _e: int) -> int:
    return _storage_get(OwnerKind.INODE, e, map_ptr, inode, value, flags)


def inode_storage_delete(e: HelperEnv, map_ptr: int, inode: int, _c: int, _d: int, _e: int) -> int:
    return _storage_delete(OwnerKind.INODE, e, map_ptr, inode)


def cgrp_storage_get(e: HelperEnv, map_ptr: int, cgroup: int, value: int, flags: int, _e: int) -> int:
    return _storage_get(OwnerKind.CGROUP, e, map_ptr, cgroup, value, flags)


def cgrp_storage_delete(e: HelperEnv, map_ptr: int, cgroup: int, _c: int, _d: int, _e: int) -> int:
    return _storage_delete(OwnerKind.CGROUP, e, map_ptr, cgroup)


def register(reg: HelperRegistry) -> None:
    """Add this module's helpers to ``reg``."""
    for hid, fn in (
        (HelperId.GET_STACKID, get_stackid),
        (HelperId.GET_STACK, get_stack),
        (HelperId.GET_TASK_STACK, get_task_stack),
        (HelperId.TASK_STORAGE_GET, task_storage_get),
        (HelperId.TASK_STORAGE_DELETE, task_storage_delete),
        (HelperId.SK_STORAGE_GET, sk_storage_get),
        (HelperId.SK_STORAGE_DELETE, sk_storage_delete),
        (HelperId.INODE_STORAGE_GET, inode_storage_get),
        (HelperId.INODE_STORAGE_DELETE, inode_storage_delete),
        (HelperId.CGRP_STORAGE_GET, cgrp_storage_get),
        (HelperId.CGRP_STORAGE_DELETE, cgrp_storage_delete),
    ):
        reg.register(hid, f"bpf_{hid.name.lower()}", fn)
