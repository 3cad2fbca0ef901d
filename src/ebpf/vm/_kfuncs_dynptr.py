"""Dynptr kfuncs of the user-space runtime (``bpf_dynptr_adjust``, ``_clone``, ``_slice`` ...).

Core layer: pure, no kernel access.

Rule 1: they read and write the 16-byte ``struct bpf_dynptr_kern`` that
:mod:`ebpf.vm._helpers_dynptr` lays out (data address, size word with type and read-only bit,
offset), so dynptrs made by the helpers (``bpf_dynptr_from_mem``,
``bpf_ringbuf_reserve_dynptr``) work with these kfuncs and back.

Rule 2 (``kernel/bpf/helpers.c``): a null dynptr (data 0) makes ``size``, ``adjust`` and
``clone`` fail with ``-EINVAL`` (``clone`` also nulls the clone) and the slices NULL;
``adjust(start, end)`` needs ``start <= end`` (``-EINVAL``) and both within the size
(``-ERANGE``); a slice past the end is NULL, as is ``slice_rdwr`` of a read-only dynptr;
``copy`` and ``memset`` go through the slices when they can, else report what the read or write
would (``-EINVAL`` for a null or read-only side, ``-E2BIG`` out of range). Return values of
``int`` / ``u32`` kfuncs are zero-extended 32-bit values (see :mod:`ebpf.vm.kfuncs`); the
``bool`` ones are 0 or 1 (the kernel defines only the low byte of r0: it left 0xffffff01 for
true on Linux 6.18, and compiled programs look at the low byte only).

Rule 3 (packets): ``bpf_dynptr_from_skb`` / ``bpf_dynptr_from_xdp`` make a dynptr over the
packet from ``data`` to ``data_end`` as the program's context gives them (type 3 / 4; the
kernel's size is ``skb->len`` / the XDP buffer's length, which these are for the linear
packets of the runtime's test runs); flags other than 0 are ``-EINVAL`` and a null dynptr.
An skb dynptr is read-only in program types that cannot write packets directly (the verifier
turns the call into ``bpf_dynptr_from_skb_rdonly``: socket filters, cgroup skb ...). The
dynptr holds the packet's address: a helper that moves or resizes the packet afterwards leaves
it pointing at the old packet (a fault when used, where the kernel would follow the skb). A
multi-buffer XDP frame (fragments) raises :class:`~ebpf.errors.NotSupportedError`.

Rule 4: every dynptr here is one contiguous block (local memory, ring buffer records, linear
packets), so a slice is a pointer into it and the slices' ``buffer__opt`` is never needed.
"""

from __future__ import annotations

import errno

from ebpf.errors import NotSupportedError
from ebpf.spec import ProgramType
from ebpf.vm._context_base import mapped_at
from ebpf.vm._helpers_dynptr import _KERN, DYNPTR_RDONLY_BIT, DYNPTR_SIZE_MASK, DYNPTR_TYPE_SHIFT
from ebpf.vm.context import XdpMapped
from ebpf.vm.helpers import M64, HelperEnv, HelperFn, run_env
from ebpf.vm.kfuncs import NO_FLAGS, KfuncFlag, KfuncRegistry

__all__ = ["register"]

M32 = 0xFFFFFFFF
_NULL = bytes(16)


def _neg32(code: int) -> int:
    return (-code) & M32


def _read(env: HelperEnv, ptr: int) -> tuple[int, int, int]:
    """(data, size word, offset) of the dynptr at ``ptr``."""
    data, word, offset = _KERN.unpack(env.memory.read_bytes(ptr, 16))
    return data, word, offset


def _off_len_ok(size: int, offset: int, length: int) -> bool:
    return offset <= size and length <= size - offset


def _slice(env: HelperEnv, ptr: int, offset: int, length: int, writable: bool) -> int:
    data, word, base = _read(env, ptr)
    if not data or (writable and word & DYNPTR_RDONLY_BIT):
        return 0
    if not _off_len_ok(word & DYNPTR_SIZE_MASK, offset & M32, length & M32):
        return 0
    return (data + base + (offset & M32)) & M64


def dynptr_slice(env: HelperEnv, ptr: int, offset: int, _buffer: int, size: int, _e: int) -> int:
    return _slice(env, ptr, offset, size, writable=False)


def dynptr_slice_rdwr(env: HelperEnv, ptr: int, offset: int, _buffer: int, size: int, _e: int) -> int:
    return _slice(env, ptr, offset, size, writable=True)


def dynptr_adjust(env: HelperEnv, ptr: int, start: int, end: int, _d: int, _e: int) -> int:
    data, word, base = _read(env, ptr)
    start &= M32
    end &= M32
    if not data or start > end:
        return _neg32(errno.EINVAL)
    size = word & DYNPTR_SIZE_MASK
    if start > size or end > size:
        return _neg32(errno.ERANGE)
    new_word = (word & ~DYNPTR_SIZE_MASK) | (end - start)
    env.memory.write_bytes(ptr, _KERN.pack(data, new_word, (base + start) & M32))
    return 0


def dynptr_is_null(env: HelperEnv, ptr: int, _b: int, _c: int, _d: int, _e: int) -> int:
    return int(not _read(env, ptr)[0])


def dynptr_is_rdonly(env: HelperEnv, ptr: int, _b: int, _c: int, _d: int, _e: int) -> int:
    data, word, _ = _read(env, ptr)
    return int(bool(data and word & DYNPTR_RDONLY_BIT))


def dynptr_size(env: HelperEnv, ptr: int, _b: int, _c: int, _d: int, _e: int) -> int:
    data, word, _ = _read(env, ptr)
    return word & DYNPTR_SIZE_MASK if data else _neg32(errno.EINVAL)


def dynptr_clone(env: HelperEnv, ptr: int, clone: int, _c: int, _d: int, _e: int) -> int:
    raw = env.memory.read_bytes(ptr, 16)
    if not _KERN.unpack(raw)[0]:
        env.memory.write_bytes(clone, _NULL)
        return _neg32(errno.EINVAL)
    env.memory.write_bytes(clone, raw)
    return 0


def _write_error(env: HelperEnv, ptr: int, offset: int, length: int) -> int:
    """What writing ``length`` bytes at ``offset`` returns when it fails, else 0."""
    data, word, _ = _read(env, ptr)
    if not data or word & DYNPTR_RDONLY_BIT:
        return _neg32(errno.EINVAL)
    if not _off_len_ok(word & DYNPTR_SIZE_MASK, offset, length):
        return _neg32(errno.E2BIG)
    return 0


def _read_error(env: HelperEnv, ptr: int, offset: int, length: int) -> int:
    """What reading ``length`` bytes at ``offset`` returns when it fails, else 0."""
    data, word, _ = _read(env, ptr)
    if not data:
        return _neg32(errno.EINVAL)
    if not _off_len_ok(word & DYNPTR_SIZE_MASK, offset, length):
        return _neg32(errno.E2BIG)
    return 0


def dynptr_copy(env: HelperEnv, dst: int, dst_off: int, src: int, src_off: int, size: int) -> int:
    dst_off &= M32
    src_off &= M32
    size &= M32
    memory = env.memory
    src_slice = _slice(env, src, src_off, size, writable=False)
    dst_slice = _slice(env, dst, dst_off, size, writable=True)
    if src_slice and dst_slice:
        memory.write_bytes(dst_slice, memory.read_bytes(src_slice, size))
        return 0
    if src_slice:
        return _write_error(env, dst, dst_off, size)  # fails: the slice of the destination did
    if dst_slice:
        return _read_error(env, src, src_off, size)
    # neither side has a slice: only the bounds are checked (a null dynptr has size 0)
    for ptr, offset in ((dst, dst_off), (src, src_off)):
        _, word, _ = _read(env, ptr)
        if not _off_len_ok(word & DYNPTR_SIZE_MASK, offset, size):
            return _neg32(errno.E2BIG)
    return 0


def dynptr_memset(env: HelperEnv, ptr: int, offset: int, size: int, value: int, _e: int) -> int:
    offset &= M32
    size &= M32
    where = _slice(env, ptr, offset, size, writable=True)
    if where:
        env.memory.write_bytes(where, bytes([value & 0xFF]) * size)
        return 0
    _, word, _ = _read(env, ptr)
    if word & DYNPTR_RDONLY_BIT:
        return _neg32(errno.EINVAL)
    if not _off_len_ok(word & DYNPTR_SIZE_MASK, offset, size):
        return _neg32(errno.E2BIG)
    return 0


# --- packet dynptrs ------------------------------------------------------------------------------

TYPE_SKB, TYPE_XDP = 3, 4  # enum bpf_dynptr_type
SKB_DATA, SKB_DATA_END = 76, 80  # offsetof(struct __sk_buff, data / data_end)
XDP_DATA, XDP_DATA_END = 0, 4  # offsetof(struct xdp_md, data / data_end)

# Program types whose skb dynptrs are writable: the verifier gives the others
# bpf_dynptr_from_skb_rdonly (may_access_direct_pkt_data(BPF_WRITE) in kernel/bpf/verifier.c).
_SKB_WRITABLE = frozenset(
    {
        ProgramType.SCHED_CLS,
        ProgramType.SCHED_ACT,
        ProgramType.LWT_XMIT,
        ProgramType.SK_SKB,
        ProgramType.SK_MSG,
    }
)


def _from_packet(
    env: HelperEnv, ctx: int, flags: int, ptr: int, offsets: tuple[int, int], kind: int, rdonly: bool
) -> int:
    if flags:
        env.memory.write_bytes(ptr, _NULL)
        return _neg32(errno.EINVAL)
    # the packet's start and end as the program reads them from its context
    data = env.memory.load((ctx + offsets[0]) & M64, 4)
    end = env.memory.load((ctx + offsets[1]) & M64, 4)
    word = ((end - data) & DYNPTR_SIZE_MASK) | (kind << DYNPTR_TYPE_SHIFT)
    env.memory.write_bytes(ptr, _KERN.pack(data, word | (DYNPTR_RDONLY_BIT if rdonly else 0), 0))
    return 0


def dynptr_from_skb(env: HelperEnv, skb: int, flags: int, ptr: int, _d: int, _e: int) -> int:
    rdonly = run_env(env).program_type not in _SKB_WRITABLE
    return _from_packet(env, skb, flags, ptr, (SKB_DATA, SKB_DATA_END), TYPE_SKB, rdonly)


def dynptr_from_xdp(env: HelperEnv, xdp: int, flags: int, ptr: int, _d: int, _e: int) -> int:
    mapped = mapped_at(env.memory, xdp)
    if isinstance(mapped, XdpMapped) and mapped.frags:
        raise NotSupportedError(
            "bpf_dynptr_from_xdp on a multi-buffer XDP frame in the user-space runtime",
            detail="its dynptrs cover one contiguous block; this frame has fragments",
        )
    return _from_packet(env, xdp, flags, ptr, (XDP_DATA, XDP_DATA_END), TYPE_XDP, False)


_KFUNCS: tuple[tuple[str, HelperFn, str, KfuncFlag], ...] = (
    (
        "bpf_dynptr_slice",
        dynptr_slice,
        "void *bpf_dynptr_slice(const struct bpf_dynptr *p, u32 offset, void *buffer__opt, u32 buffer__szk)",
        KfuncFlag.RET_NULL,
    ),
    (
        "bpf_dynptr_slice_rdwr",
        dynptr_slice_rdwr,
        "void *bpf_dynptr_slice_rdwr(const struct bpf_dynptr *p, u32 offset, void *buffer__opt, u32 buffer__szk)",
        KfuncFlag.RET_NULL,
    ),
    (
        "bpf_dynptr_from_skb",
        dynptr_from_skb,
        "int bpf_dynptr_from_skb(struct __sk_buff *s, u64 flags, struct bpf_dynptr *ptr__uninit)",
        NO_FLAGS,
    ),
    (
        "bpf_dynptr_from_xdp",
        dynptr_from_xdp,
        "int bpf_dynptr_from_xdp(struct xdp_md *x, u64 flags, struct bpf_dynptr *ptr__uninit)",
        NO_FLAGS,
    ),
    (
        "bpf_dynptr_adjust",
        dynptr_adjust,
        "int bpf_dynptr_adjust(const struct bpf_dynptr *p, u32 start, u32 end)",
        NO_FLAGS,
    ),
    ("bpf_dynptr_is_null", dynptr_is_null, "bool bpf_dynptr_is_null(const struct bpf_dynptr *p)", NO_FLAGS),
    (
        "bpf_dynptr_is_rdonly",
        dynptr_is_rdonly,
        "bool bpf_dynptr_is_rdonly(const struct bpf_dynptr *p)",
        NO_FLAGS,
    ),
    ("bpf_dynptr_size", dynptr_size, "u32 bpf_dynptr_size(const struct bpf_dynptr *p)", NO_FLAGS),
    (
        "bpf_dynptr_clone",
        dynptr_clone,
        "int bpf_dynptr_clone(const struct bpf_dynptr *p, struct bpf_dynptr *clone__uninit)",
        NO_FLAGS,
    ),
    (
        "bpf_dynptr_copy",
        dynptr_copy,
        (
            "int bpf_dynptr_copy(struct bpf_dynptr *dst_ptr, u32 dst_off, struct bpf_dynptr *src_ptr, "
            "u32 src_off, u32 size)"
        ),
        NO_FLAGS,
    ),
    (
        "bpf_dynptr_memset",
        dynptr_memset,
        "int bpf_dynptr_memset(struct bpf_dynptr *p, u32 offset, u32 size, u8 val)",
        NO_FLAGS,
    ),
)


def register(reg: KfuncRegistry) -> None:
    """Add the dynptr kfuncs to ``reg``."""
    for name, fn, prototype, flags in _KFUNCS:
        reg.register(name, fn, prototype, flags, unmaps_memory=False)
