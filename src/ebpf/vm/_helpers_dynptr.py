"""User-space kernel helpers for dynptrs over local memory and ring buffer records.

Core layer: pure, no kernel access.

Rule 1 (``kernel/bpf/helpers.c``): a dynptr is the 16-byte ``struct bpf_dynptr_kern`` on the
program's stack: the data address (u64), the size in the low 24 bits of a u32 whose bits 28-30
hold the type (1 local, 2 ring buffer) and bit 31 read-only, and an offset (u32). A null
dynptr is all zero. Programs cannot read the slots (the verifier forbids it), so the layout
only has to be consistent between these helpers; it is the kernel's anyway.

Rule 2: the same checks and errno as the kernel: flags must be 0 (``-EINVAL``), sizes over
``DYNPTR_MAX_SIZE`` are ``-E2BIG``, an access past the end is ``-E2BIG`` (``bpf_dynptr_data``:
NULL), a null or read-only destination is ``-EINVAL``; a failed reservation leaves a null
dynptr and returns ``-EINVAL``.
"""

from __future__ import annotations

import errno
import struct

from ebpf.errors import VMError
from ebpf.helpers import HelperId
from ebpf.maps.ringbuf import RingBufMap
from ebpf.vm.helpers import M64, HelperEnv, HelperRegistry, RunEnv, run_env

__all__ = ["register"]

M32 = 0xFFFFFFFF
DYNPTR_SIZE_MASK = 0xFFFFFF
DYNPTR_MAX_SIZE = DYNPTR_SIZE_MASK
DYNPTR_TYPE_SHIFT = 28
DYNPTR_RDONLY_BIT = 1 << 31
TYPE_LOCAL, TYPE_RINGBUF = 1, 2
_KERN = struct.Struct("<QII")


def _neg(code: int) -> int:
    return (-code) & M64


def _read(env: RunEnv, ptr: int) -> tuple[int, int, int, bool, int]:
    """(data, size, offset, read-only, type) of the dynptr at ``ptr``."""
    data, size_word, offset = _KERN.unpack(env.memory.read_bytes(ptr, 16))
    kind = (size_word >> DYNPTR_TYPE_SHIFT) & 7
    return data, size_word & DYNPTR_SIZE_MASK, offset, bool(size_word & DYNPTR_RDONLY_BIT), kind


def _init(env: RunEnv, ptr: int, data: int, kind: int, size: int) -> None:
    env.memory.write_bytes(ptr, _KERN.pack(data, size | (kind << DYNPTR_TYPE_SHIFT), 0))


def _set_null(env: RunEnv, ptr: int) -> None:
    env.memory.write_bytes(ptr, bytes(16))


def _check_off_len(size: int, offset: int, length: int) -> int:
    if offset > size or length > size - offset:
        return -errno.E2BIG
    return 0


def dynptr_from_mem(e: HelperEnv, data: int, size: int, flags: int, ptr: int, _e: int) -> int:
    env = run_env(e)
    size &= M32
    if flags:
        _set_null(env, ptr)
        return _neg(errno.EINVAL)
    if size > DYNPTR_MAX_SIZE:
        _set_null(env, ptr)
        return _neg(errno.E2BIG)
    _init(env, ptr, data, TYPE_LOCAL, size)
    return 0


def ringbuf_reserve_dynptr(e: HelperEnv, map_ptr: int, size: int, flags: int, ptr: int, _e: int) -> int:
    env = run_env(e)
    m = env.map_at(map_ptr)
    if not isinstance(m, RingBufMap):
        raise VMError(f"bpf_ringbuf_reserve_dynptr: {m.label} is not a ring buffer")
    size &= M32
    if flags:
        _set_null(env, ptr)
        return _neg(errno.EINVAL)
    if size > DYNPTR_MAX_SIZE:
        _set_null(env, ptr)
        return _neg(errno.E2BIG)
    sample = m.reserve(size)
    if not sample:
        _set_null(env, ptr)
        return _neg(errno.EINVAL)
    _init(env, ptr, sample, TYPE_RINGBUF, size)
    return 0


def _release(e: HelperEnv, ptr: int, flags: int, *, discard: bool) -> int:
    env = run_env(e)
    data = _read(env, ptr)[0]
    if not data:
        return 0
    for m in env.maps.values():
        if isinstance(m, RingBufMap):
            try:
                (m.discard if discard else m.submit)(data, flags & 3)
            except ValueError:
                continue
            _set_null(env, ptr)
            return 0
    raise VMError(f"{data:#x} is not a reserved ring buffer sample")


def ringbuf_submit_dynptr(e: HelperEnv, ptr: int, flags: int, _c: int, _d: int, _e: int) -> int:
    return _release(e, ptr, flags, discard=False)


def ringbuf_discard_dynptr(e: HelperEnv, ptr: int, flags: int, _c: int, _d: int, _e: int) -> int:
    return _release(e, ptr, flags, discard=True)


def dynptr_read(e: HelperEnv, dst: int, length: int, src: int, offset: int, flags: int) -> int:
    env = run_env(e)
    data, size, base, _rdonly, _kind = _read(env, src)
    length &= M32
    offset &= M32
    if not data or flags:
        return _neg(errno.EINVAL)
    err = _check_off_len(size, offset, length)
    if err:
        return _neg(-err)
    env.memory.write_bytes(dst, env.memory.read_bytes(data + base + offset, length))
    return 0


def dynptr_write(e: HelperEnv, dst: int, offset: int, src: int, length: int, flags: int) -> int:
    env = run_env(e)
    data, size, base, rdonly, _kind = _read(env, dst)
    length &= M32
    offset &= M32
    if not data or rdonly:
        return _neg(errno.EINVAL)
    err = _check_off_len(size, offset, length)
    if err:
        return _neg(-err)
    if flags:
        return _neg(errno.EINVAL)
    env.memory.write_bytes(data + base + offset, env.memory.read_bytes(src, length))
    return 0


def dynptr_data(e: HelperEnv, ptr: int, offset: int, length: int, _d: int, _e: int) -> int:
    env = run_env(e)
    data, size, base, rdonly, _kind = _read(env, ptr)
    offset &= M32
    length &= M32
    if not data or _check_off_len(size, offset, length) or rdonly:
        return 0
    return (data + base + offset) & M64


def register(reg: HelperRegistry) -> None:
    """Add this module's helpers to ``reg``."""
    for hid, fn in (
        (HelperId.DYNPTR_FROM_MEM, dynptr_from_mem),
        (HelperId.RINGBUF_RESERVE_DYNPTR, ringbuf_reserve_dynptr),
        (HelperId.RINGBUF_SUBMIT_DYNPTR, ringbuf_submit_dynptr),
        (HelperId.RINGBUF_DISCARD_DYNPTR, ringbuf_discard_dynptr),
        (HelperId.DYNPTR_READ, dynptr_read),
        (HelperId.DYNPTR_WRITE, dynptr_write),
        (HelperId.DYNPTR_DATA, dynptr_data),
    ):
        reg.register(hid, f"bpf_{hid.name.lower()}", fn)
