"""``struct bpf_timer`` in map values: where it is. Pure (core layer).

The kernel's ``btf_parse_fields`` finds a ``bpf_timer`` as a member whose type is the struct
``bpf_timer`` (16 bytes, 8-aligned), also inside a nested struct member. User space never sees
its bytes: a lookup returns the field as zeros (measured on Linux 6.18: bytes written there by
an update read back as zeros), so :meth:`ebpf.maps.Map.lookup` masks it like the spin lock.
The timers themselves live in the runtime (:mod:`ebpf.vm._helpers_timer`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ebpf.errors import BTFError

if TYPE_CHECKING:
    from ebpf.btf.spec import Spec as BTFSpec
    from ebpf.maps._base import Map

__all__ = ["TIMER_SIZE", "find_timer", "timer_offset"]

TIMER_SIZE = 16


def _timers(btf: BTFSpec, type_id: int, base: int, depth: int) -> Iterator[int]:
    from ebpf.btf.types import Struct

    t = btf[type_id]
    if not isinstance(t, Struct) or depth > 32:
        return
    for member in t.members:
        mt = btf[member.type]  # as for bpf_spin_lock (maps/_lock.py): a typedef does not count
        if not isinstance(mt, Struct) or member.bitfield_size:
            continue
        offset = base + member.offset // 8
        if mt.name == "bpf_timer":
            yield offset
        else:
            yield from _timers(btf, member.type, offset, depth + 1)


def find_timer(btf: BTFSpec, value_type_id: int) -> int | None:
    """Byte offset of the first ``bpf_timer`` in the value type, or ``None``."""
    try:
        return next(_timers(btf, btf.resolve_id(value_type_id), 0, 0), None)
    except (BTFError, IndexError, KeyError):
        return None


def timer_offset(m: Map) -> int | None:
    """Where ``m``'s values hold a ``bpf_timer`` (from the map's BTF), or ``None``."""
    defn = m.defn
    if defn.btf is None or defn.value_type_id == 0:
        return None
    return find_timer(defn.btf, defn.value_type_id)
