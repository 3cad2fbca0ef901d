"""User-space BPF maps whose values live in the VM's memory model. Pure: no kernel access.

``create(MapDef(...), memory)`` gives a live :class:`Map` that behaves like the kernel's
map of the same type (sizes, flags, errno of every failure) and keeps program-visible
values in :class:`~ebpf.vm.memory.HostBuffer` regions of ``memory``, so a program's
``bpf_map_lookup_elem`` gets a real pointer (:meth:`Map.value_address`).

Rule 1: one class per map kind, chosen from the ``MAP_CLASSES`` table by ``MapType``.
Rule 2: ``MapDef`` is the input for now; ``spec.MapSpec`` will feed it later.

>>> from ebpf.spec import MapType
>>> m = create(MapDef(MapType.HASH, key_size=4, value_size=8, max_entries=2))
>>> m[b"\\1\\0\\0\\0"] = bytes(8)
>>> len(m), m.lookup(b"\\1\\0\\0\\0")
(1, b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00')
"""

from __future__ import annotations

from ebpf.errors import NotSupportedError
from ebpf.maps._base import (
    BPF_ANY,
    BPF_EXIST,
    BPF_NOEXIST,
    Map,
    MapDef,
    MapFlags,
    UpdateFlags,
    check_name,
)
from ebpf.maps._errors import (
    InvalidMapArgumentError,
    KeyExistsError,
    MapError,
    MapFullError,
    MapOperationNotSupportedError,
    errno_of,
)
from ebpf.maps.array import ArrayMap, PerCPUArrayMap
from ebpf.maps.bloom import BloomFilterMap
from ebpf.maps.hash import HashMap, LRUHashMap, LRUPerCPUHashMap, PerCPUHashMap
from ebpf.maps.lpm import LPMTrieMap, lpm_key
from ebpf.maps.mapinmap import ArrayOfMapsMap, HashOfMapsMap
from ebpf.maps.progarray import ProgArrayMap
from ebpf.maps.queue import QueueMap, StackMap
from ebpf.maps.ringbuf import RingBufMap, RingBufQuery
from ebpf.spec import MapType
from ebpf.vm.memory import Memory

__all__ = [
    "BPF_ANY",
    "BPF_EXIST",
    "BPF_NOEXIST",
    "MAP_CLASSES",
    "ArrayMap",
    "ArrayOfMapsMap",
    "BloomFilterMap",
    "HashMap",
    "HashOfMapsMap",
    "InvalidMapArgumentError",
    "KeyExistsError",
    "LPMTrieMap",
    "LRUHashMap",
    "LRUPerCPUHashMap",
    "Map",
    "MapDef",
    "MapError",
    "MapFlags",
    "MapFullError",
    "MapOperationNotSupportedError",
    "PerCPUArrayMap",
    "PerCPUHashMap",
    "ProgArrayMap",
    "QueueMap",
    "RingBufMap",
    "RingBufQuery",
    "StackMap",
    "UpdateFlags",
    "create",
    "errno_of",
    "lpm_key",
]

MAP_CLASSES: dict[MapType, type[Map]] = {
    t: cls
    for cls in (
        ArrayMap,
        PerCPUArrayMap,
        HashMap,
        PerCPUHashMap,
        LRUHashMap,
        LRUPerCPUHashMap,
        QueueMap,
        StackMap,
        BloomFilterMap,
        LPMTrieMap,
        RingBufMap,
        ArrayOfMapsMap,
        HashOfMapsMap,
        ProgArrayMap,
    )
    for t in cls.types
}
"""Which class implements each supported map type."""


def create(defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> Map:
    """A live user-space map for ``defn`` (``BPF_MAP_CREATE``).

    Args:
        defn: the map definition.
        memory: the region table the values are mapped into (a private one if ``None``);
            pass the VM's ``Memory`` so programs can dereference value pointers.
        ncpus: the number of simulated CPUs for per-CPU maps (ignored by the others).

    Returns:
        The map; close it (or use it as a context manager) to unmap its values.

    Raises:
        InvalidMapArgumentError: ``defn`` is invalid for its type (``EINVAL`` / ``E2BIG``).
        NotSupportedError: the map type has no user-space implementation yet.
    """
    check_name(defn.name)
    cls = MAP_CLASSES.get(defn.type)
    if cls is None:
        raise NotSupportedError(f"user-space map type {defn.type.name}")
    return cls(defn, memory, ncpus=ncpus)
