"""User-space BPF maps whose values live in the VM's memory model. Pure: no kernel access.

``create(MapDef(...), memory)`` gives a live :class:`Map` that behaves like the kernel's
map of the same type (sizes, flags, errno of every failure) and keeps program-visible
values in :class:`~ebpf.vm.memory.HostBuffer` regions of ``memory``, so a program's
``bpf_map_lookup_elem`` gets a real pointer (:meth:`Map.value_address`).

Rule 1: one class per map kind, chosen from the ``MAP_CLASSES`` table by ``MapType``.

Rule 2: ``create(MapDef)`` applies the kernel's rules only (what ``BPF_MAP_CREATE`` does with
those attributes). ``create(MapSpec)`` is what a loader does with an object's map: first
libbpf's fix-ups (see :func:`def_from_spec`), then the kernel's rules, then the spec's
``contents`` are written as initial values.

Beyond the single-element operations every map has: batch operations with the kernel's
cursors (:meth:`Map.lookup_batch` ..., :meth:`Map.items_batch`), ``BPF_F_LOCK`` and
``bpf_spin_lock`` for values whose BTF holds a lock (``_lock.py``), typed views built from
BTF records (:meth:`Map.typed`, ``typed.py``), the ring buffer with the kernel's memory
layout and its consumers (``ringbuf.py``) and perf event arrays with user-space per-CPU
perf buffers (``perf.py``).

>>> from ebpf.spec import MapType
>>> m = create(MapDef(MapType.HASH, key_size=4, value_size=8, max_entries=2))
>>> m[b"\\1\\0\\0\\0"] = bytes(8)
>>> len(m), m.lookup(b"\\1\\0\\0\\0")
(1, b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00')
"""

from __future__ import annotations

import re

from ebpf.errors import NotSupportedError
from ebpf.maps._base import (
    BPF_ANY,
    BPF_EXIST,
    BPF_F_LOCK,
    BPF_NOEXIST,
    Batch,
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
from ebpf.maps._lock import check_btf, find_spin_lock
from ebpf.maps._timer import timer_offset
from ebpf.maps.array import ArrayMap, PerCPUArrayMap
from ebpf.maps.bloom import BloomFilterMap
from ebpf.maps.cgroup import CgroupArrayMap, CgroupStorageMap, PerCPUCgroupStorageMap
from ebpf.maps.devmap import CpuMap, DevMap, DevMapHash, RedirectMapNotSupportedError, XskMap
from ebpf.maps.hash import HashMap, LRUHashMap, LRUPerCPUHashMap, PerCPUHashMap
from ebpf.maps.lpm import LPMTrieMap, lpm_key
from ebpf.maps.mapinmap import ArrayOfMapsMap, HashOfMapsMap
from ebpf.maps.perf import (
    BPF_F_CTXLEN_MASK,
    BPF_F_CURRENT_CPU,
    BPF_F_INDEX_MASK,
    PerfBuffer,
    PerfEventArrayMap,
    PerfRecord,
)
from ebpf.maps.progarray import ProgArrayMap
from ebpf.maps.queue import QueueMap, StackMap
from ebpf.maps.ringbuf import RingBufMap, RingBufQuery
from ebpf.maps.sockmap import SockHashMap, SockMap
from ebpf.maps.stacktrace import StackTraceMap
from ebpf.maps.storage import CgrpStorageMap, InodeStorageMap, SkStorageMap, TaskStorageMap
from ebpf.maps.typed import TypedMap
from ebpf.maps.user_ringbuf import UserRingBufMap
from ebpf.spec import MapSpec, MapType
from ebpf.vm.memory import Memory

__all__ = [
    "BPF_ANY",
    "BPF_EXIST",
    "BPF_F_CTXLEN_MASK",
    "BPF_F_CURRENT_CPU",
    "BPF_F_INDEX_MASK",
    "BPF_F_LOCK",
    "BPF_NOEXIST",
    "MAP_CLASSES",
    "ArrayMap",
    "ArrayOfMapsMap",
    "Batch",
    "BloomFilterMap",
    "CgroupArrayMap",
    "CgroupStorageMap",
    "CgrpStorageMap",
    "CpuMap",
    "DevMap",
    "DevMapHash",
    "HashMap",
    "HashOfMapsMap",
    "InodeStorageMap",
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
    "PerCPUCgroupStorageMap",
    "PerCPUHashMap",
    "PerfBuffer",
    "PerfEventArrayMap",
    "PerfRecord",
    "ProgArrayMap",
    "QueueMap",
    "RedirectMapNotSupportedError",
    "RingBufMap",
    "RingBufQuery",
    "SkStorageMap",
    "StackMap",
    "StackTraceMap",
    "TaskStorageMap",
    "TypedMap",
    "UpdateFlags",
    "UserRingBufMap",
    "XskMap",
    "create",
    "def_from_spec",
    "errno_of",
    "find_spin_lock",
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
        StackTraceMap,
        TaskStorageMap,
        SkStorageMap,
        InodeStorageMap,
        CgrpStorageMap,
        CgroupStorageMap,
        PerCPUCgroupStorageMap,
        CgroupArrayMap,
        BloomFilterMap,
        LPMTrieMap,
        RingBufMap,
        ArrayOfMapsMap,
        HashOfMapsMap,
        ProgArrayMap,
        PerfEventArrayMap,
        DevMap,
        DevMapHash,
        CpuMap,
        XskMap,
        SockMap,
        SockHashMap,
        UserRingBufMap,
    )
    for t in cls.types
}
"""Which class implements each supported map type."""


_NAME_CHAR = re.compile(r"[^A-Za-z0-9_.]")
PAGE_SIZE = 4096


def _ringbuf_size(size: int) -> int:
    """libbpf's ``adjust_ringbuf_sz``: the smallest power-of-2 multiple of the page above ``size``."""
    if size == 0 or (size % PAGE_SIZE == 0 and (size // PAGE_SIZE) & (size // PAGE_SIZE - 1) == 0):
        return size
    mul = 1
    while mul * PAGE_SIZE <= 0xFFFFFFFF:
        if mul * PAGE_SIZE > size:
            return mul * PAGE_SIZE
        mul <<= 1
    return size


def def_from_spec(spec: MapSpec, *, ncpus: int = 1) -> MapDef:
    """The ``BPF_MAP_CREATE`` attributes a loader derives from ``spec`` (libbpf's rules).

    libbpf, not the kernel: ``PERF_EVENT_ARRAY`` with ``max_entries`` 0 gets one slot per
    CPU (``ncpus``; the kernel itself rejects 0 with ``EINVAL``); a ``RINGBUF`` size that is
    not a power-of-2 multiple of the page is rounded up to one (``adjust_ringbuf_sz``); the
    name is cut to 15 characters and characters the kernel rejects become ``_``; a global
    data map whose DATASEC size is not the value size (clang leaves ``.kconfig`` at 0; libbpf
    fixes the BTF) is created without BTF types.
    """
    max_entries = spec.max_entries
    key_type_id, value_type_id = spec.key_type_id, spec.value_type_id
    if spec.btf is not None and value_type_id and _stale_datasec(spec):
        key_type_id = value_type_id = 0  # libbpf fixes the section's size; we drop the types
    if spec.type == MapType.PERF_EVENT_ARRAY and max_entries == 0:
        max_entries = ncpus
    elif spec.type in (MapType.RINGBUF, MapType.USER_RINGBUF):
        max_entries = _ringbuf_size(max_entries)
    return MapDef(
        type=spec.type,
        key_size=spec.key_size,
        value_size=spec.value_size,
        max_entries=max_entries,
        flags=spec.flags,
        name=_NAME_CHAR.sub("_", spec.name[:15]),
        map_extra=spec.map_extra,
        inner=None if spec.inner is None else def_from_spec(spec.inner, ncpus=ncpus),
        btf=spec.btf,
        key_type_id=key_type_id,
        value_type_id=value_type_id,
    )


def _stale_datasec(spec: MapSpec) -> bool:
    """A global-data map whose DATASEC still has clang's size (0 for ``.kconfig``)."""
    from ebpf.btf.types import Datasec

    assert spec.btf is not None
    try:
        t = spec.btf[spec.value_type_id]
    except (IndexError, KeyError):
        return False
    return isinstance(t, Datasec) and t.size != spec.value_size


def create(defn: MapDef | MapSpec, memory: Memory | None = None, *, ncpus: int = 1) -> Map:
    """A live user-space map for ``defn`` (``BPF_MAP_CREATE``).

    Args:
        defn: the map definition; a ``MapSpec`` goes through :func:`def_from_spec` and its
            ``contents`` are then written with ``update`` (``slots`` and ``freeze`` are the
            engine's business: they name programs and maps of a collection).
        memory: the region table the values are mapped into (a private one if ``None``);
            pass the VM's ``Memory`` so programs can dereference value pointers.
        ncpus: the number of simulated CPUs for per-CPU maps (ignored by the others).

    Returns:
        The map; close it (or use it as a context manager) to unmap its values.

    Raises:
        InvalidMapArgumentError: ``defn`` is invalid for its type (``EINVAL`` / ``E2BIG``).
        NotSupportedError: the map type has no user-space implementation yet.
        MapError: an initial value of a ``MapSpec`` was rejected (the map is closed).
    """
    spec = defn if isinstance(defn, MapSpec) else None
    if spec is not None:
        defn = def_from_spec(spec, ncpus=ncpus)
    assert isinstance(defn, MapDef)
    check_name(defn.name)
    cls = MAP_CLASSES.get(defn.type)
    if cls is None:
        raise NotSupportedError(f"user-space map type {defn.type.name}")
    m = cls(defn, memory, ncpus=ncpus)
    try:
        m._lock_offset = check_btf(m)
        m._timer_offset = timer_offset(m)
        if spec is not None:
            m.spec = spec
            for key, value in spec.contents:
                m.update(key, value)
    except BaseException:
        m.close()
        raise
    return m
