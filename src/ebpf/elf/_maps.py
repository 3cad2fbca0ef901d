"""Map definitions of an object: BTF ``.maps``, legacy ``maps`` and global data. Core layer. Pure.

BTF-defined maps (``SEC(".maps")``, ``tools/lib/bpf/bpf_helpers.h``) are variables of an
anonymous struct whose members encode the attributes in their *types*::

    __uint(name, val)      int (*name)[val]          -> a pointer to an array of val ints
    __type(name, T)        typeof(T) *name           -> a pointer to T (key / value types)
    __array(name, T)       typeof(T) *name[]         -> initial values (prog_array, map-in-map)
    __ulong(name, val)     enum { ... = val } name   -> a 64-bit attribute (map_extra)

Rule 1: members are named ``type``, ``max_entries``, ``map_flags``, ``numa_node``,
``map_extra``, ``pinning``, ``key_size``, ``value_size``, ``key``, ``value`` and ``values``;
any other member is an error (libbpf does the same).

Rule 2: ``values`` of a map-in-map is a pointer to the inner map's definition (same shape);
the initial entries are ``R_BPF_64_ABS64`` relocations in ``.maps`` pointing at program or
map symbols, one 8-byte slot each.

Rule 3: a legacy ``maps`` section holds ``struct bpf_map_def`` records, all the same size
(section size / number of symbols). Like libbpf, only the first five fields are read (``type``,
``key_size``, ``value_size``, ``max_entries``, ``map_flags``): what follows differs between
loaders (``inner_map_idx``/``numa_node`` in samples/bpf, ``id``/``pinning`` in iproute2).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from ebpf import btf
from ebpf.errors import ELFError
from ebpf.spec import MapSpec, MapType, PinType

__all__ = ["btf_maps", "legacy_maps"]

_INT_FIELDS = (
    "type",
    "max_entries",
    "map_flags",
    "numa_node",
    "map_extra",
    "pinning",
    "key_size",
    "value_size",
)
_MAP_IN_MAP = (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS)


def _skip_mods(spec: btf.Spec, type_id: int) -> int:
    seen = 0
    while True:
        t = spec[type_id]
        if isinstance(t, btf.Typedef | btf.Const | btf.Volatile | btf.Restrict | btf.TypeTag):
            type_id = t.type
            seen += 1
            if seen > 64:
                raise ValueError("type chain too long")
            continue
        return type_id


def _map_type(value: int, name: str, source: str) -> MapType:
    try:
        return MapType(value)
    except ValueError:
        raise ELFError(f"map {name!r}: unknown map type {value}", source=source) from None


def parse_map_def(
    spec: btf.Spec,
    struct_id: int,
    name: str,
    source: str,
    *,
    inner_allowed: bool = True,
) -> tuple[MapSpec, int | None]:
    """One BTF map definition; returns the spec and the bit offset of ``values`` (or None)."""
    sid = _skip_mods(spec, struct_id)
    st = spec[sid]
    if not isinstance(st, btf.Struct):
        raise ELFError(f"map {name!r}: definition is a {st.kind.name}, not a struct", source=source)
    ints: dict[str, int] = {}
    key_id = value_id = 0
    values_off: int | None = None
    inner: MapSpec | None = None
    values_target = 0
    for member in st.members:
        mname = member.name
        mt = spec[_skip_mods(spec, member.type)]
        if mname in _INT_FIELDS and isinstance(mt, btf.Enum | btf.Enum64):
            # __ulong(name, val): an anonymous enum whose one value is val (64-bit map_extra)
            if len(mt.values) != 1:
                raise ELFError(
                    f"map {name!r}: field {mname!r} is an enum without exactly one value", source=source
                )
            ints[mname] = mt.values[0].value
        elif mname in _INT_FIELDS:
            if not isinstance(mt, btf.Pointer):
                raise ELFError(f"map {name!r}: field {mname!r} is not a pointer to an array", source=source)
            arr = spec[_skip_mods(spec, mt.type)]
            if not isinstance(arr, btf.Array):
                raise ELFError(f"map {name!r}: field {mname!r} is not a pointer to an array", source=source)
            ints[mname] = arr.nelems
        elif mname in ("key", "value"):
            if not isinstance(mt, btf.Pointer):
                raise ELFError(f"map {name!r}: field {mname!r} is not a pointer to a type", source=source)
            if mname == "key":
                key_id = mt.type
            else:
                value_id = mt.type
        elif mname == "values":
            if not isinstance(mt, btf.Array) or mt.nelems != 0:
                raise ELFError(f"map {name!r}: 'values' is not a flexible array of pointers", source=source)
            ptr = spec[_skip_mods(spec, mt.type)]
            if not isinstance(ptr, btf.Pointer):
                raise ELFError(f"map {name!r}: 'values' is not an array of pointers", source=source)
            values_off = member.offset
            values_target = _skip_mods(spec, ptr.type)
        else:
            raise ELFError(f"map {name!r}: unknown field {mname!r}", source=source)
    if "type" not in ints:
        raise ELFError(f"map {name!r}: no 'type' field", source=source)
    mtype = _map_type(ints["type"], name, source)
    key_size = ints.get("key_size", 0)
    value_size = ints.get("value_size", 0)
    if key_id:
        size = spec.sizeof(key_id)
        if key_size and key_size != size:
            raise ELFError(f"map {name!r}: key_size {key_size} but key type has size {size}", source=source)
        key_size = size
    if value_id:
        size = spec.sizeof(value_id)
        if value_size and value_size != size:
            raise ELFError(
                f"map {name!r}: value_size {value_size} but value type has size {size}", source=source
            )
        value_size = size
    if values_off is not None:
        target = spec[values_target]
        if mtype in _MAP_IN_MAP:
            if not inner_allowed:
                raise ELFError(
                    f"map {name!r}: nested map-in-map definitions are not supported", source=source
                )
            if not isinstance(target, btf.Struct):
                raise ELFError(f"map {name!r}: inner map definition is not a struct", source=source)
            inner, _ = parse_map_def(spec, values_target, f"{name}.inner", source, inner_allowed=False)
            if value_size not in (0, 4):
                raise ELFError(
                    f"map {name!r}: map-in-map value_size must be 4, got {value_size}", source=source
                )
            value_size = 4
        elif mtype == MapType.PROG_ARRAY:
            if not isinstance(target, btf.FuncProto):
                raise ELFError(f"map {name!r}: prog_array 'values' must point to functions", source=source)
            if value_size not in (0, 4):
                raise ELFError(
                    f"map {name!r}: prog_array value_size must be 4, got {value_size}", source=source
                )
            value_size = 4
        else:
            raise ELFError(
                f"map {name!r}: 'values' is only allowed for prog_array and map-in-map", source=source
            )
    if mtype == MapType.PERF_EVENT_ARRAY:
        key_size = key_size or 4
        value_size = value_size or 4
    try:
        pinning = PinType(ints.get("pinning", 0))
    except ValueError:
        raise ELFError(f"map {name!r}: unknown pinning {ints['pinning']}", source=source) from None
    mspec = MapSpec(
        name=name,
        type=mtype,
        key_size=key_size,
        value_size=value_size,
        max_entries=ints.get("max_entries", 0),
        flags=ints.get("map_flags", 0),
        map_extra=ints.get("map_extra", 0),
        numa_node=ints.get("numa_node", 0),
        pinning=pinning,
        key_type_id=key_id,
        value_type_id=value_id if mtype not in _MAP_IN_MAP else 0,
        btf=spec,
        inner=inner,
        section=".maps",
    )
    return mspec, values_off


def btf_maps(
    spec: btf.Spec,
    section_size: int,
    source: str,
    values_at: Callable[[int], str | None],
) -> list[MapSpec]:
    """The maps of the ``.maps`` Datasec, in section order.

    Args:
        spec: the object's BTF (Datasec offsets already fixed up).
        section_size: size of the ``.maps`` ELF section.
        values_at: byte offset in ``.maps`` -> name of the symbol a relocation stores there.
    """
    found = [t for t in spec.types_by_name(".maps") if isinstance(t, btf.Datasec)]
    if not found:
        return []
    datasec = found[0]
    maps: list[MapSpec] = []
    for vsi in sorted(datasec.vars, key=lambda v: v.offset):
        var = spec[vsi.type]
        if not isinstance(var, btf.Var):
            raise ELFError(f".maps entry {vsi.type} is a {var.kind.name}, not a variable", source=source)
        if vsi.offset + vsi.size > section_size:
            raise ELFError(f"map {var.name!r} lies beyond the .maps section", source=source)
        mspec, values_off = parse_map_def(spec, var.type, var.name, source)
        if values_off is not None:
            base = vsi.offset + values_off // 8
            nslots = max(0, (vsi.offset + vsi.size - base) // 8)
            for slot in range(nslots):
                target = values_at(base + 8 * slot)
                if target is not None:
                    mspec.slots[slot] = target
            if mspec.slots and max(mspec.slots) >= mspec.max_entries:
                raise ELFError(
                    f"map {var.name!r}: initial value at slot {max(mspec.slots)} beyond max_entries "
                    f"{mspec.max_entries}",
                    source=source,
                )
        maps.append(mspec)
    return maps


def legacy_maps(data: bytes, symbols: list[tuple[str, int]], byteorder: str, source: str) -> list[MapSpec]:
    """Maps of a legacy ``maps`` section: ``symbols`` are (name, offset) of its map symbols."""
    if not symbols:
        if data:
            raise ELFError("legacy 'maps' section without map symbols", source=source)
        return []
    if len(data) % len(symbols):
        raise ELFError(
            f"legacy 'maps' section size {len(data)} is not a multiple of {len(symbols)} map definitions",
            source=source,
        )
    def_size = len(data) // len(symbols)
    if def_size < 20:
        raise ELFError(f"legacy map definitions of {def_size} bytes, need at least 20", source=source)
    fmt = "<" if byteorder == "little" else ">"
    maps = []
    for name, offset in sorted(symbols, key=lambda s: s[1]):
        if offset % def_size or offset + def_size > len(data):
            raise ELFError(f"legacy map {name!r} at offset {offset} is not a definition", source=source)
        words = struct.unpack_from(fmt + "5I", data, offset)
        maps.append(
            MapSpec(
                name=name,
                type=_map_type(words[0], name, source),
                key_size=words[1],
                value_size=words[2],
                max_entries=words[3],
                flags=words[4],
                section="maps",
            )
        )
    return maps
