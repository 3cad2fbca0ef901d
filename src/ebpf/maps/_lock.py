"""``struct bpf_spin_lock`` in map values: where it is, which maps may have one. Pure.

Rule 1 (``map_check_btf`` / ``btf_parse_fields`` in Linux 6.18, checked against the kernel
in ``tests/maps/test_kernel_lock.py``): the value type (typedefs resolved) must be a
struct; a member whose type is the struct ``bpf_spin_lock`` itself is the lock, also inside
a nested struct member. A typedef of the lock, an array of locks, or a value that *is*
the lock does not count. Two locks in one value are refused by the kernel when the BTF is
loaded (``E2BIG``), as is a lock at an offset that is not a multiple of 4.

Rule 2: only ``HASH`` and ``ARRAY`` (and the local-storage maps) may hold a lock
(``EOPNOTSUPP``); a map with a lock cannot be ``BPF_F_RDONLY_PROG`` / ``BPF_F_WRONLY_PROG``
(``EACCES``). With BTF key/value type ids, their sizes must equal ``key_size`` /
``value_size`` (``EINVAL``).

Rule 3: user space never sees the lock word: lookups return it as zero and updates leave
it as it is (the kernel's ``copy_map_value`` skips it; ``check_and_init_map_value`` zeroes
it in copies).
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ebpf.errors import BTFError
from ebpf.maps._errors import InvalidMapArgumentError, MapOperationNotSupportedError
from ebpf.spec import MapFlags, MapType

if TYPE_CHECKING:
    from ebpf.btf.spec import Spec as BTFSpec
    from ebpf.maps._base import Map

__all__ = ["LOCK_MAP_TYPES", "SPIN_LOCK_SIZE", "check_btf", "find_spin_lock"]

SPIN_LOCK_SIZE = 4
LOCK_MAP_TYPES = frozenset(
    {
        MapType.HASH,
        MapType.ARRAY,
        MapType.CGROUP_STORAGE,
        MapType.SK_STORAGE,
        MapType.INODE_STORAGE,
        MapType.TASK_STORAGE,
        MapType.CGRP_STORAGE,
    }
)


def _locks(btf: BTFSpec, type_id: int, base: int, depth: int) -> Iterator[int]:
    from ebpf.btf.types import Struct

    t = btf[type_id]
    if not isinstance(t, Struct) or depth > 32:
        return
    for member in t.members:
        mt = btf[member.type]
        if not isinstance(mt, Struct) or member.bitfield_size:
            continue
        offset = base + member.offset // 8
        if mt.name == "bpf_spin_lock":
            yield offset
        else:
            yield from _locks(btf, member.type, offset, depth + 1)


def find_spin_lock(btf: BTFSpec, value_type_id: int) -> int | None:
    """Byte offset of the ``bpf_spin_lock`` in the value type, or ``None``.

    Raises:
        InvalidMapArgumentError: two locks (``E2BIG``) or a misaligned one (``EINVAL``);
            the kernel refuses such BTF when it is loaded.
    """
    try:
        resolved = btf.resolve_id(value_type_id)
    except (BTFError, IndexError) as err:
        raise InvalidMapArgumentError(f"bad BTF value type id {value_type_id}: {err}") from None
    offsets = list(_locks(btf, resolved, 0, 0))
    if len(offsets) > 1:
        raise InvalidMapArgumentError(
            f"BTF type {value_type_id} has {len(offsets)} bpf_spin_locks (at most one)", errno=errno.E2BIG
        )
    if offsets and offsets[0] % SPIN_LOCK_SIZE:
        raise InvalidMapArgumentError(f"bpf_spin_lock at offset {offsets[0]} is not 4-byte aligned")
    return offsets[0] if offsets else None


def _type_size(btf: BTFSpec, type_id: int, what: str, label: str) -> int:
    try:
        return btf.sizeof(type_id)
    except (BTFError, IndexError) as err:
        raise InvalidMapArgumentError(f"{label}: BTF {what} type {type_id} has no size: {err}") from None


def check_btf(m: Map) -> int | None:
    """The kernel's ``map_check_btf`` for ``m``'s BTF: the lock offset (or ``None``).

    Raises:
        InvalidMapArgumentError: sizes differ (``EINVAL``) or flags forbid a lock (``EACCES``).
        MapOperationNotSupportedError: a lock in a map type that cannot hold one (``EOPNOTSUPP``).
    """
    defn = m.defn
    btf = defn.btf
    if btf is None or defn.value_type_id == 0:
        return None
    if defn.key_type_id and _type_size(btf, defn.key_type_id, "key", m.label) != defn.key_size:
        raise InvalidMapArgumentError(f"{m.label}: BTF key type size differs from key_size {defn.key_size}")
    if _type_size(btf, defn.value_type_id, "value", m.label) != defn.value_size:
        raise InvalidMapArgumentError(
            f"{m.label}: BTF value type size differs from value_size {defn.value_size}"
        )
    offset = find_spin_lock(btf, defn.value_type_id)
    if offset is None:
        return None
    if defn.flags & (MapFlags.RDONLY_PROG | MapFlags.WRONLY_PROG):
        raise InvalidMapArgumentError(
            f"{m.label}: a value with a bpf_spin_lock cannot be BPF_F_RDONLY_PROG/WRONLY_PROG",
            errno=errno.EACCES,
        )
    if defn.type not in LOCK_MAP_TYPES:
        raise MapOperationNotSupportedError(f"{m.label}: {defn.type.name} values cannot hold a bpf_spin_lock")
    return offset
