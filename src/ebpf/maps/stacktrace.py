"""``BPF_MAP_TYPE_STACK_TRACE``: stack ids -> frames, as ``bpf_get_stackid`` fills it. Pure.

Rule 1 (``kernel/bpf/stackmap.c``, Linux 6.18; checked against the kernel in
``tests/maps/test_stacktrace.py``): ``key_size`` is 4 (the stack id), ``value_size`` a
non-zero multiple of 8 holding at most ``perf_event_max_stack`` (127) frames of 8 bytes,
or, with ``BPF_F_STACK_BUILD_ID``, a multiple of 32 holding at most 127
``struct bpf_stack_build_id`` entries; ``max_entries`` > 0 and at most ``1 << 31``
(``E2BIG`` above); flags only ``BPF_F_NUMA_NODE``, ``BPF_F_RDONLY``, ``BPF_F_WRONLY`` and
``BPF_F_STACK_BUILD_ID`` (``EINVAL``); BTF key/value types are refused (``ENOTSUPP``, 524).
Anything else is ``EINVAL``.

Rule 2: ids are buckets: ``roundup_pow_of_two(max_entries)`` of them, and a stack's id is
the kernel's ``jhash2`` of its frames (seed 0) masked to the bucket count, so the same
frames get the same id as in the kernel. ``max_entries`` elements exist (the kernel's
preallocated free list); a new stack when all are in use is ``-ENOMEM`` (the runtime
allocates lazily, so a huge ``max_entries`` that the kernel cannot preallocate works here).

Rule 3 (``bpf_get_stackid``, see :meth:`StackTraceMap.get_stackid`): unknown flags
``-EINVAL``; skipping all the frames there are ``-EFAULT`` (an empty stack always is);
an occupied bucket with the same stack answers its id (with ``BPF_F_FAST_STACK_CMP`` a
match of the 32-bit hash is enough); an occupied bucket with another stack is ``-EEXIST``
unless ``BPF_F_REUSE_STACKID`` replaces it. A new element comes from the free list
(``-ENOMEM`` when empty, also for a replacement); with ``BPF_F_STACK_BUILD_ID`` it is taken
*before* the comparison, so a full build-id map answers ``-ENOMEM`` even for a stack it
holds (only the ``BPF_F_FAST_STACK_CMP`` hash match comes first).

Rule 4 (user space): lookup copies the frames and zeroes the rest of the value; ``update``
is ``EINVAL``; ``delete`` of an id beyond the buckets is ``E2BIG``, of an empty bucket
``ENOENT``; ``get_next_key`` walks occupied buckets in id order from the id after ``key``
(from the first when ``key`` is missing or not occupied); ``lookup_and_delete`` is lookup
then delete.

Build ids (``BPF_F_STACK_BUILD_ID``): kernel frames are ``BPF_STACK_BUILD_ID_IP`` entries
with the raw address, as in the kernel; user frames are ``BPF_STACK_BUILD_ID_VALID`` with the
build id and file offset when the caller's resolver (:data:`BuildIdResolver`) knows the
address, else ``BPF_STACK_BUILD_ID_IP`` as the kernel stores frames it cannot resolve.
"""

from __future__ import annotations

import bisect
import errno
import functools
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ebpf.errors import KeyNotFoundError
from ebpf.maps._base import ENOTSUPP, Map, MapDef, MapFlags
from ebpf.maps._errors import InvalidMapArgumentError, MapOperationNotSupportedError
from ebpf.maps._jhash import jhash
from ebpf.spec import MapType
from ebpf.vm.memory import Memory

__all__ = [
    "BPF_F_FAST_STACK_CMP",
    "BPF_F_REUSE_STACKID",
    "BPF_F_SKIP_FIELD_MASK",
    "BPF_F_USER_BUILD_ID",
    "BPF_F_USER_STACK",
    "BPF_STACK_BUILD_ID_EMPTY",
    "BPF_STACK_BUILD_ID_IP",
    "BPF_STACK_BUILD_ID_VALID",
    "BUILD_ID_ENTRY_SIZE",
    "PERF_MAX_STACK_DEPTH",
    "BuildIdResolver",
    "StackTraceMap",
    "build_id_entry",
]

BPF_F_SKIP_FIELD_MASK = 0xFF
"""``bpf_get_stackid`` / ``bpf_get_stack`` flags: the number of frames to skip (0..255)."""
BPF_F_USER_STACK = 1 << 8
"""Collect the user stack instead of the kernel stack."""
BPF_F_FAST_STACK_CMP = 1 << 9
"""``bpf_get_stackid``: an equal 32-bit hash counts as the same stack."""
BPF_F_REUSE_STACKID = 1 << 10
"""``bpf_get_stackid``: replace another stack in the same bucket instead of ``-EEXIST``."""
BPF_F_USER_BUILD_ID = 1 << 11
"""``bpf_get_stack``: user frames as ``struct bpf_stack_build_id`` entries."""

BPF_STACK_BUILD_ID_EMPTY = 0
BPF_STACK_BUILD_ID_VALID = 1
BPF_STACK_BUILD_ID_IP = 2
BUILD_ID_ENTRY_SIZE = 32
"""``sizeof(struct bpf_stack_build_id)``: s32 status, 20-byte build id, u64 offset or ip."""
PERF_MAX_STACK_DEPTH = 127
"""``sysctl_perf_event_max_stack``'s default (``/proc/sys/kernel/perf_event_max_stack``)."""

STACK_CREATE_FLAG_MASK = MapFlags.NUMA_NODE | MapFlags.RDONLY | MapFlags.WRONLY | MapFlags.STACK_BUILD_ID
GET_STACKID_FLAGS = BPF_F_SKIP_FIELD_MASK | BPF_F_USER_STACK | BPF_F_FAST_STACK_CMP | BPF_F_REUSE_STACKID
_U32 = struct.Struct("<I")
_ENTRY = struct.Struct("<i20sQ")
M64 = (1 << 64) - 1


BuildIdResolver = Callable[[int], tuple[bytes, int] | None]
"""``ip -> (build id, file offset)`` of the code mapped at ``ip``, or ``None`` if unknown."""


@functools.lru_cache(maxsize=4096)
def _stack_hash(raw: bytes) -> int:
    """``jhash2`` of the frames, seed 0 (cached: programs see the same stacks again and again)."""
    return jhash(raw)


def build_id_entry(ip: int, resolve: BuildIdResolver | None = None) -> bytes:
    """The ``struct bpf_stack_build_id`` of ``ip``: ``VALID`` with the build id and file offset
    when ``resolve`` knows the address, else status ``IP`` with the raw address."""
    found = resolve(ip) if resolve is not None else None
    if found is None:
        return _ENTRY.pack(BPF_STACK_BUILD_ID_IP, bytes(20), ip & M64)
    build_id, offset = found
    return _ENTRY.pack(BPF_STACK_BUILD_ID_VALID, build_id[:20], offset & M64)


@dataclass
class _Bucket:
    hash: int
    nr: int  # frames
    data: bytes  # nr * entry size


class StackTraceMap(Map):
    """A stack trace map (``BPF_MAP_TYPE_STACK_TRACE``); see the module docstring."""

    types = (MapType.STACK_TRACE,)

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        super().__init__(defn, memory, ncpus=ncpus)
        if defn.flags & ~STACK_CREATE_FLAG_MASK:
            raise InvalidMapArgumentError(f"{self.label}: unsupported stack trace map flags {defn.flags:#x}")
        vs = defn.value_size
        if defn.max_entries == 0 or defn.key_size != 4 or vs < 8 or vs % 8:
            raise InvalidMapArgumentError(
                f"{self.label}: a stack trace map needs key_size 4, a value_size that is a multiple "
                f"of 8 and max_entries > 0; got key_size {defn.key_size}, value_size {vs}, "
                f"max_entries {defn.max_entries}"
            )
        self.elem_size = BUILD_ID_ENTRY_SIZE if self.build_id else 8
        if vs % self.elem_size or vs // self.elem_size > PERF_MAX_STACK_DEPTH:
            raise InvalidMapArgumentError(
                f"{self.label}: value_size {vs} is not a whole number of at most "
                f"{PERF_MAX_STACK_DEPTH} {self.elem_size}-byte frames"
            )
        if defn.max_entries > 1 << 31:
            raise InvalidMapArgumentError(
                f"{self.label}: max_entries {defn.max_entries} is above 2^31", errno=errno.E2BIG
            )
        if defn.btf is not None and (defn.key_type_id or defn.value_type_id):
            raise MapOperationNotSupportedError(
                f"{self.label}: stack trace maps take no BTF key/value types", errno=ENOTSUPP
            )
        self.n_buckets = 1 << max(0, defn.max_entries - 1).bit_length()
        self._buckets: dict[int, _Bucket] = {}
        self._ids: list[int] = []  # occupied ids, sorted

    @property
    def build_id(self) -> bool:
        """``BPF_F_STACK_BUILD_ID``: values are 32-byte build-id entries."""
        return bool(self.defn.flags & MapFlags.STACK_BUILD_ID)

    @property
    def max_depth(self) -> int:
        """The frames a value holds (``value_size`` / entry size)."""
        return self.value_size // self.elem_size

    # --- bpf_get_stackid ----------------------------------------------------------------------

    def get_stackid(
        self, frames: Sequence[int], flags: int, *, resolve: BuildIdResolver | None = None
    ) -> int:
        """``bpf_get_stackid`` on a stack of ``frames`` (innermost first): the id or ``-errno``.

        ``frames`` is the whole kernel or user stack (the caller picks by
        ``BPF_F_USER_STACK``); at most ``value_size / entry + skip`` frames (capped at 127)
        are collected, then ``skip`` are dropped. ``resolve`` gives the build ids of user
        frames in a ``BPF_F_STACK_BUILD_ID`` map (the kernel resolves user stacks only).

        Returns:
            the stack id (``>= 0``), or ``-EINVAL`` (flags), ``-EFAULT`` (no frame left after
            the skip), ``-EEXIST`` (another stack holds the bucket), ``-ENOMEM`` (every
            element is in use).
        """
        flags &= M64
        if flags & ~GET_STACKID_FLAGS:
            return -errno.EINVAL
        skip = flags & BPF_F_SKIP_FIELD_MASK
        depth = min(self.max_depth + skip, PERF_MAX_STACK_DEPTH)
        collected = [ip & M64 for ip in frames[:depth]]
        if len(collected) <= skip:
            return -errno.EFAULT
        ips = collected[skip:]
        raw = struct.pack(f"<{len(ips)}Q", *ips)
        h = _stack_hash(raw)
        sid = h & (self.n_buckets - 1)
        bucket = self._buckets.get(sid)
        hash_matches = bucket is not None and bucket.hash == h
        if hash_matches and flags & BPF_F_FAST_STACK_CMP:
            return sid
        full = len(self._buckets) >= self.max_entries  # the free list is empty
        if self.build_id:
            if full:  # build-id entries are made in a new element before comparing
                return -errno.ENOMEM
            user = bool(flags & BPF_F_USER_STACK)
            data = b"".join(build_id_entry(ip, resolve if user else None) for ip in ips)
        else:
            data = raw
        if hash_matches and bucket is not None and bucket.nr == len(ips) and bucket.data == data:
            return sid
        if bucket is not None and not flags & BPF_F_REUSE_STACKID:
            return -errno.EEXIST
        if full:
            return -errno.ENOMEM
        if bucket is None:
            bisect.insort(self._ids, sid)
        self._buckets[sid] = _Bucket(h, len(ips), data)
        return sid

    # --- user space ---------------------------------------------------------------------------

    def _id(self, key: bytes) -> int:
        return int(_U32.unpack(self._key(key))[0])

    def lookup(self, key: bytes) -> bytes:
        sid = self._id(key)
        bucket = self._buckets.get(sid)
        if bucket is None:
            raise KeyNotFoundError(key, f"{self.label}: no stack with id {sid}")
        return bucket.data.ljust(self.value_size, b"\0")

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        self._key(key)
        raise InvalidMapArgumentError(f"{self.label}: stack trace maps cannot be updated from user space")

    def delete(self, key: bytes) -> None:
        sid = self._id(key)
        if sid >= self.n_buckets:
            raise InvalidMapArgumentError(
                f"{self.label}: stack id {sid} >= {self.n_buckets} buckets", errno=errno.E2BIG
            )
        if self._buckets.pop(sid, None) is None:
            raise KeyNotFoundError(key, f"{self.label}: no stack with id {sid}")
        del self._ids[bisect.bisect_left(self._ids, sid)]

    def _lookup_and_delete(self, key: bytes, flags: int) -> bytes:
        value = self.lookup(key)
        self.delete(key)
        return value

    def get_next_key(self, key: bytes | None) -> bytes:
        sid = 0
        if key is not None:
            cur = self._id(key)
            if cur < self.n_buckets and cur in self._buckets:
                sid = cur + 1
        i = bisect.bisect_left(self._ids, sid)
        if i == len(self._ids):
            raise KeyNotFoundError(key, f"{self.label}: no stack id after {key!r}")
        return _U32.pack(self._ids[i])

    def __iter__(self) -> Iterator[bytes]:
        return iter([_U32.pack(i) for i in self._ids])

    def __len__(self) -> int:
        return len(self._buckets)

    def _release(self) -> None:
        self._buckets.clear()
        self._ids.clear()
