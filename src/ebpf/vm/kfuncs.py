"""Kfuncs of the user-space runtime: kernel functions a program calls by name.

Core layer: pure, no kernel access.

Rule 1 (calls): a kfunc call is ``call`` with source ``BPF_PSEUDO_KFUNC_CALL`` (2). In the
kernel its ``imm`` is the function's BTF id in vmlinux; in the user-space runtime it is the
kfunc's id in a :class:`KfuncRegistry` (:func:`runtime_kfuncs`), placed there when the runtime
resolves the program's ``KFUNC`` relocations by name (:meth:`KfuncRegistry.by_name`). Id 0 is
never a kfunc: an unresolved weak kfunc is a call to id 0, which faults when it runs (the
kernel refuses such a call at load time unless the verifier proves it dead).

Rule 2 (arguments): like a helper, a kfunc is ``fn(env, r1, r2, r3, r4, r5) -> r0`` with
unsigned 64-bit arguments; the engines mask r0 to 64 bits. Unlike a helper (whose kernel side
returns u64), a kfunc is a plain C function: one declared to return ``int`` or ``u32`` leaves
the upper half of r0 zero, as x86-64 code writing ``eax`` does, so ``-EINVAL`` is
``0xffffffea`` in r0 (measured on Linux 6.18). Each kfunc carries its C prototype
(as ``include/linux/bpf.h`` / ``kernel/bpf/helpers.c`` declare it) and its ``KF_*`` flags, the
facts the kernel's verifier checks; the runtime itself does not verify programs.

Rule 3 (open-coded numeric iterators, ``bpf_for`` / ``bpf_repeat``): ``struct bpf_iter_num`` is
8 opaque bytes on the program's stack. Here they hold the current value (s32, at offset 0) and
the exclusive end (s32, at offset 4), which is also the kernel's layout. ``bpf_iter_num_new(it,
start, end)`` returns -EINVAL when ``start > end`` and -E2BIG when the range is longer than
``BPF_MAX_LOOPS`` (8M), leaving an empty iterator; ``bpf_iter_num_next`` returns a pointer to
the current value (the iterator's address) or NULL at the end, after which the iterator is
empty; ``bpf_iter_num_destroy`` empties it.

Rule 4 (bit iterators): ``struct bpf_iter_bits`` is 16 bytes: the u64 mask itself (one word)
or the address of a read-only copy of the words (mapped by ``new``, unmapped by ``destroy``),
the number of bits (s32) and the last bit returned (s32, at offset 12: what ``next`` points
to). ``bpf_iter_bits_new(it, ptr, nr_words)`` copies ``nr_words`` u64s from ``ptr`` as
``bpf_probe_read_kernel`` would (a bad pointer: ``-EFAULT`` for one word, else ``-ERANGE`` below
the x86-64 kernel half and ``-EFAULT`` in it, as measured); a NULL pointer or 0 words is
``-EINVAL``, more than 511 words ``-E2BIG``; each failure leaves an empty iterator.

Rule 5 (dynptr kfuncs, in :mod:`ebpf.vm._kfuncs_dynptr`): they work on the dynptr layout of
:mod:`ebpf.vm._helpers_dynptr` (local memory, ring buffer records, linear packets): size, null
and read-only queries, ``adjust``, ``clone``, ``slice`` / ``slice_rdwr``, ``copy``,
``memset`` and the packet constructors ``bpf_dynptr_from_skb`` / ``bpf_dynptr_from_xdp``.

Rule 6 (maps): ``bpf_map_sum_elem_count(map)`` is the number of elements of a hash-family map
(hash, LRU, per-CPU, hash of maps), 0 for the other types, whose kernel side keeps no count.

Rule 7 (strings, in :mod:`ebpf.vm._kfuncs_string`): ``bpf_strcmp`` and the other string kfuncs
of Linux 6.17 over the runtime's memory.

Rule 8 (RCU, preemption, interrupts): ``bpf_rcu_read_lock`` / ``bpf_rcu_read_unlock``,
``bpf_preempt_disable`` / ``bpf_preempt_enable`` and ``bpf_local_irq_save`` /
``bpf_local_irq_restore`` do nothing here (save writes 8 zero bytes of flags, which the verifier
never lets a program read): the runtime runs one program at a time, is never preempted or
interrupted by another program and frees nothing behind its back.
"""

from __future__ import annotations

import enum
import errno
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from ebpf.errors import VMError
from ebpf.spec import MapType
from ebpf.vm.helpers import HelperEnv, HelperFn, run_env
from ebpf.vm.memory import HostBuffer

__all__ = [
    "BITS_ITER_NR_WORDS_MAX",
    "BPF_MAX_LOOPS",
    "ITER_BITS_SIZE",
    "ITER_NUM_SIZE",
    "NO_FLAGS",
    "Kfunc",
    "KfuncFlag",
    "KfuncRegistry",
    "runtime_kfuncs",
]

M32 = 0xFFFFFFFF
BPF_MAX_LOOPS = 8 * 1024 * 1024  # include/linux/bpf.h: the longest bpf_loop / bpf_iter_num range
ITER_NUM_SIZE = 8  # sizeof(struct bpf_iter_num)
_ITER = struct.Struct("<ii")  # (current value, end): struct bpf_iter_num_kern


class KfuncFlag(enum.IntFlag):
    """The ``KF_*`` flags of a kfunc (``include/linux/btf.h``): what the verifier checks."""

    ACQUIRE = 1 << 0  # KF_ACQUIRE: returns a reference the program must release
    RELEASE = 1 << 1  # KF_RELEASE: releases a reference
    RET_NULL = 1 << 2  # KF_RET_NULL: the returned pointer may be NULL
    TRUSTED_ARGS = 1 << 4  # KF_TRUSTED_ARGS
    SLEEPABLE = 1 << 5  # KF_SLEEPABLE
    DESTRUCTIVE = 1 << 6  # KF_DESTRUCTIVE
    RCU = 1 << 7  # KF_RCU
    ITER_NEW = 1 << 8  # KF_ITER_NEW: an iterator's constructor
    ITER_NEXT = 1 << 9  # KF_ITER_NEXT: an iterator's next method
    ITER_DESTROY = 1 << 10  # KF_ITER_DESTROY: an iterator's destructor
    RCU_PROTECTED = 1 << 11  # KF_RCU_PROTECTED
    FASTCALL = 1 << 12  # KF_FASTCALL


NO_FLAGS = KfuncFlag(0)


@dataclass(frozen=True, slots=True)
class Kfunc:
    """A registered kfunc.

    Attributes:
        id: what the runtime puts in a call's ``imm`` (never 0).
        name: the kernel's name (``bpf_iter_num_new``), which programs' relocations name.
        fn: the implementation, called like a helper (see the module docstring).
        prototype: the kernel's C declaration.
        flags: the kernel's ``KF_*`` flags for it.
        unmaps_memory: the implementation may unmap (or replace) memory regions, so engines
            that cache regions forget them after calling it; ``False`` only if it never does
            (mapping new regions leaves the cached ones valid).
    """

    id: int
    name: str
    fn: HelperFn
    prototype: str
    flags: KfuncFlag = NO_FLAGS
    unmaps_memory: bool = True


class KfuncRegistry(Mapping[int, Kfunc]):
    """Kfunc id -> :class:`Kfunc`, also searchable by name; ids are given in order from 1."""

    def __init__(self) -> None:
        self._by_id: dict[int, Kfunc] = {}
        self._by_name: dict[str, Kfunc] = {}

    def register(
        self,
        name: str,
        fn: HelperFn,
        prototype: str,
        flags: KfuncFlag = NO_FLAGS,
        *,
        unmaps_memory: bool | None = None,
    ) -> Kfunc:
        """Add the kfunc ``name`` (or replace its implementation, keeping its id and, unless
        given, its ``unmaps_memory``, which is ``True`` for a new kfunc by default)."""
        old = self._by_name.get(name)
        kid = old.id if old is not None else len(self._by_name) + 1
        if unmaps_memory is None:
            unmaps_memory = old.unmaps_memory if old is not None else True
        kfunc = Kfunc(kid, name, fn, prototype, flags, unmaps_memory)
        self._by_id[kid] = self._by_name[name] = kfunc
        return kfunc

    def by_name(self, name: str) -> Kfunc | None:
        """The kfunc called ``name``, or ``None``."""
        return self._by_name.get(name)

    def id_of(self, name: str) -> int:
        """The id of the kfunc called ``name``.

        Raises:
            KeyError: no such kfunc here.
        """
        kfunc = self._by_name.get(name)
        if kfunc is None:
            raise KeyError(f"no kfunc {name!r} in the user-space runtime")
        return kfunc.id

    def names(self) -> list[str]:
        """Every kfunc name, in id order."""
        return list(self._by_name)

    def __getitem__(self, kid: int) -> Kfunc:
        return self._by_id[kid]

    def __iter__(self) -> Iterator[int]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)


def _neg32(code: int) -> int:
    """``-code`` as a C function returning ``int`` leaves it in r0 (zero-extended)."""
    return (-code) & M32


def _s32(x: int) -> int:
    x &= M32
    return x - (1 << 32) if x >> 31 else x


# --- bpf_iter_num -----------------------------------------------------------------------------


def iter_num_new(env: HelperEnv, it: int, start: int, end: int, _d: int, _e: int) -> int:
    memory = env.memory
    start, end = _s32(start), _s32(end)
    if start > end:
        memory.write_bytes(it, bytes(ITER_NUM_SIZE))
        return _neg32(errno.EINVAL)
    if end - start > BPF_MAX_LOOPS:
        memory.write_bytes(it, bytes(ITER_NUM_SIZE))
        return _neg32(errno.E2BIG)
    # next() is called before the first value is read: start one below it (s32 arithmetic).
    memory.write_bytes(it, _ITER.pack(_s32(start - 1), end))
    return 0


def iter_num_next(env: HelperEnv, it: int, _b: int, _c: int, _d: int, _e: int) -> int:
    # the hot path of every bpf_for loop: one region lookup, then the buffer itself
    memory = env.memory
    region = memory.find(it, ITER_NUM_SIZE)
    if region is None or not region.writable or region.load_hook is not None:
        cur, end = _ITER.unpack(memory.read_bytes(it, ITER_NUM_SIZE))  # the checked path
        view, offset = None, 0
    else:
        view, offset = region.view, it - region.start
        cur, end = _ITER.unpack_from(view, offset)
    cur = cur + 1 if cur != 0x7FFFFFFF else -0x80000000  # s32 arithmetic
    done = cur >= end
    if done:
        cur = end = 0  # the iterator is empty from now on
    if view is None:
        memory.write_bytes(it, _ITER.pack(cur, end))
    else:
        _ITER.pack_into(view, offset, cur, end)
    return 0 if done else it


def iter_num_destroy(env: HelperEnv, it: int, _b: int, _c: int, _d: int, _e: int) -> int:
    env.memory.write_bytes(it, bytes(ITER_NUM_SIZE))
    return 0


# --- bpf_iter_bits ----------------------------------------------------------------------------

BITS_ITER_NR_WORDS_MAX = 511  # kernel/bpf/helpers.c: the most u64 words bpf_iter_bits_new copies
ITER_BITS_SIZE = 16  # sizeof(struct bpf_iter_bits)
_BITS = struct.Struct("<Qii")  # (the u64 mask itself or the copy's address, nr_bits, bit)
_BITS_REGION = "iter_bits"
_KERNEL_START = 0xFFFF_8000_0000_0000  # x86-64, 4-level paging: the first canonical kernel address


def iter_bits_new(env: HelperEnv, it: int, ptr: int, nr_words: int, _d: int, _e: int) -> int:
    memory = env.memory
    memory.write_bytes(it, _BITS.pack(0, 0, -1))
    nr_words &= M32
    if not ptr or not nr_words:
        return _neg32(errno.EINVAL)
    if nr_words > BITS_ITER_NR_WORDS_MAX:
        return _neg32(errno.E2BIG)
    nr_bytes = nr_words * 8
    try:  # the kernel copies with bpf_probe_read_kernel: a bad pointer is an error, not a fault
        bits = memory.read_bytes(ptr, nr_bytes)
    except VMError:
        # one word: -EFAULT; more: the copy's own error, -ERANGE for an address no kernel
        # read may touch (user space or non-canonical on x86-64), else -EFAULT
        outside = ptr < _KERNEL_START
        return _neg32(errno.ERANGE if nr_words > 1 and outside else errno.EFAULT)
    if nr_words == 1:  # one word: kept in the iterator itself
        memory.write_bytes(it, _BITS.pack(int.from_bytes(bits, "little"), 64, -1))
    else:  # more: a copy the iterator owns until bpf_iter_bits_destroy
        region = memory.map_buffer(_BITS_REGION, HostBuffer.from_bytes(bits), writable=False)
        memory.write_bytes(it, _BITS.pack(region.start, nr_bytes * 8, -1))
    return 0


def iter_bits_next(env: HelperEnv, it: int, _b: int, _c: int, _d: int, _e: int) -> int:
    memory = env.memory
    word, nr_bits, bit = _BITS.unpack(memory.read_bytes(it, ITER_BITS_SIZE))
    if nr_bits <= 0 or bit >= nr_bits:
        return 0
    bits = word if nr_bits == 64 else int.from_bytes(memory.read_bytes(word, nr_bits // 8), "little")
    rest = bits >> (bit + 1)
    # the next set bit after ``bit`` (find_next_bit), or nr_bits when there is none
    bit = bit + 1 + ((rest & -rest).bit_length() - 1) if rest else nr_bits
    memory.write_bytes(it + 12, struct.pack("<i", bit))
    return it + 12 if bit < nr_bits else 0


def iter_bits_destroy(env: HelperEnv, it: int, _b: int, _c: int, _d: int, _e: int) -> int:
    memory = env.memory
    word, nr_bits, _ = _BITS.unpack(memory.read_bytes(it, ITER_BITS_SIZE))
    if nr_bits > 64:
        region = memory.find(word)
        if region is not None and region.name == _BITS_REGION and region.start == word:
            memory.unmap(region)
    return 0


# --- maps -------------------------------------------------------------------------------------

# Map types whose kernel implementation keeps the element counter bpf_map_sum_elem_count sums
# (the hash table family); for the others it returns 0 (measured on Linux 6.18).
_COUNTED_MAPS = frozenset(
    {MapType.HASH, MapType.LRU_HASH, MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH, MapType.HASH_OF_MAPS}
)


def map_sum_elem_count(env: HelperEnv, map_ptr: int, _b: int, _c: int, _d: int, _e: int) -> int:
    m = run_env(env).map_at(map_ptr)
    return len(m) if m.type in _COUNTED_MAPS else 0


# --- RCU --------------------------------------------------------------------------------------


def rcu_read_lock(env: HelperEnv, _a: int, _b: int, _c: int, _d: int, _e: int) -> int:
    return 0


def rcu_read_unlock(env: HelperEnv, _a: int, _b: int, _c: int, _d: int, _e: int) -> int:
    return 0


def local_irq_save(env: HelperEnv, flags: int, _b: int, _c: int, _d: int, _e: int) -> int:
    env.memory.write_bytes(flags, bytes(8))  # the saved state: opaque to the program
    return 0


def local_irq_restore(env: HelperEnv, flags: int, _b: int, _c: int, _d: int, _e: int) -> int:
    env.memory.read_bytes(flags, 8)
    return 0


def preempt_disable(env: HelperEnv, _a: int, _b: int, _c: int, _d: int, _e: int) -> int:
    return 0


def preempt_enable(env: HelperEnv, _a: int, _b: int, _c: int, _d: int, _e: int) -> int:
    return 0


_REGISTRY: KfuncRegistry | None = None


def runtime_kfuncs() -> KfuncRegistry:
    """The kfuncs of the user-space runtime (one shared registry: ids stay the same)."""
    global _REGISTRY
    if _REGISTRY is None:
        from ebpf.vm import _kfuncs_dynptr, _kfuncs_string  # not at module load (import cycles)

        reg = KfuncRegistry()
        it = KfuncFlag
        reg.register(
            "bpf_iter_num_new",
            iter_num_new,
            "int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end)",
            it.ITER_NEW,
            unmaps_memory=False,
        )
        reg.register(
            "bpf_iter_num_next",
            iter_num_next,
            "int *bpf_iter_num_next(struct bpf_iter_num *it)",
            it.ITER_NEXT | it.RET_NULL,
            unmaps_memory=False,
        )
        reg.register(
            "bpf_iter_num_destroy",
            iter_num_destroy,
            "void bpf_iter_num_destroy(struct bpf_iter_num *it)",
            it.ITER_DESTROY,
            unmaps_memory=False,
        )
        reg.register(
            "bpf_iter_bits_new",
            iter_bits_new,
            "int bpf_iter_bits_new(struct bpf_iter_bits *it, const u64 *unsafe_ptr__ign, u32 nr_words)",
            it.ITER_NEW,
            unmaps_memory=False,  # it maps the copy of the words, never unmaps
        )
        reg.register(
            "bpf_iter_bits_next",
            iter_bits_next,
            "int *bpf_iter_bits_next(struct bpf_iter_bits *it)",
            it.ITER_NEXT | it.RET_NULL,
            unmaps_memory=False,
        )
        reg.register(
            "bpf_iter_bits_destroy",
            iter_bits_destroy,
            "void bpf_iter_bits_destroy(struct bpf_iter_bits *it)",
            it.ITER_DESTROY,
        )
        reg.register(
            "bpf_map_sum_elem_count",
            map_sum_elem_count,
            "s64 bpf_map_sum_elem_count(const struct bpf_map *map)",
            it.TRUSTED_ARGS,
            unmaps_memory=False,
        )
        reg.register("bpf_rcu_read_lock", rcu_read_lock, "void bpf_rcu_read_lock(void)", unmaps_memory=False)
        reg.register(
            "bpf_rcu_read_unlock", rcu_read_unlock, "void bpf_rcu_read_unlock(void)", unmaps_memory=False
        )
        reg.register(
            "bpf_preempt_disable", preempt_disable, "void bpf_preempt_disable(void)", unmaps_memory=False
        )
        reg.register(
            "bpf_local_irq_save",
            local_irq_save,
            "void bpf_local_irq_save(unsigned long *flags__irq_flag)",
            unmaps_memory=False,
        )
        reg.register(
            "bpf_local_irq_restore",
            local_irq_restore,
            "void bpf_local_irq_restore(unsigned long *flags__irq_flag)",
            unmaps_memory=False,
        )
        reg.register(
            "bpf_preempt_enable", preempt_enable, "void bpf_preempt_enable(void)", unmaps_memory=False
        )
        _kfuncs_dynptr.register(reg)
        _kfuncs_string.register(reg)
        _REGISTRY = reg
    return _REGISTRY
