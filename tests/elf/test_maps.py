"""BTF map definitions built by hand: every attribute form and every malformation."""

from __future__ import annotations

import pytest

from ebpf import btf
from ebpf.elf._maps import parse_map_def
from ebpf.errors import ELFError
from ebpf.spec import MapType, PinType


def build(fields: dict[str, object]) -> tuple[btf.Spec, int]:
    """fields: name -> int (``__uint``), ("type", T) (``__type``), ("enum", v) (``__ulong``)."""
    types: list[btf.Type] = [
        btf.Int("int", 4, btf.IntEncoding.SIGNED, bits=32),  # 1
        btf.Int("unsigned int", 4, bits=32),  # 2
        btf.Struct("key", 12, (btf.Member("a", 2, 0), btf.Member("b", 2, 32), btf.Member("c", 2, 64))),  # 3
    ]
    members = []
    for index, (name, value) in enumerate(fields.items()):
        if isinstance(value, int):
            types.append(btf.Array(1, 2, value))
            types.append(btf.Pointer(len(types)))
        elif isinstance(value, tuple) and value[0] == "type":
            types.append(btf.Pointer(value[1]))  # type: ignore[arg-type]
        elif isinstance(value, tuple) and value[0] == "enum":
            types.append(btf.Enum64("", 8, (btf.EnumValue("v", value[1]),)))  # type: ignore[arg-type]
        else:
            types.append(value)  # type: ignore[arg-type]
        members.append(btf.Member(name, len(types), 64 * index))
    types.append(btf.Struct("", 8 * len(members), tuple(members)))
    return btf.Spec.build(types), len(types)


def test_every_attribute() -> None:
    spec, sid = build(
        {
            "type": int(MapType.BLOOM_FILTER),
            "value": ("type", 3),
            "max_entries": 64,
            "map_flags": 1,
            "numa_node": 2,
            "map_extra": ("enum", 1 << 40),
            "pinning": 1,
        }
    )
    m, values = parse_map_def(spec, sid, "bloom", "<test>")
    assert (m.type, m.key_size, m.value_size, m.max_entries, m.flags, m.numa_node, m.map_extra) == (
        MapType.BLOOM_FILTER,
        0,
        12,
        64,
        1,
        2,
        1 << 40,
    )
    assert m.pinning is PinType.BY_NAME and m.value_type_id == 3 and values is None


def test_sizes_from_key_size_and_types_agree() -> None:
    spec, sid = build({"type": 1, "key": ("type", 3), "key_size": 12, "value_size": 8, "max_entries": 1})
    m, _ = parse_map_def(spec, sid, "h", "<test>")
    assert (m.key_size, m.value_size, m.key_type_id, m.value_type_id) == (12, 8, 3, 0)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_entries": 1}, "no 'type' field"),
        ({"type": 999}, "unknown map type 999"),
        ({"type": 1, "colour": 3}, "unknown field 'colour'"),
        ({"type": 1, "key": ("type", 3), "key_size": 4}, "key_size 4 but key type has size 12"),
        ({"type": 1, "value": ("type", 3), "value_size": 4}, "value_size 4 but value type has size 12"),
        ({"type": 1, "pinning": 7}, "unknown pinning 7"),
        ({"type": 1, "max_entries": btf.Int("long", 8, bits=64)}, "not a pointer to an array"),
        ({"type": 1, "key": btf.Int("long", 8, bits=64)}, "not a pointer to a type"),
        ({"type": 1, "values": btf.Array(4, 2, 0)}, "not an array of pointers"),
    ],
)
def test_malformed_definitions(fields: dict[str, object], message: str) -> None:
    spec, sid = build(fields)
    with pytest.raises(ELFError, match=message):
        parse_map_def(spec, sid, "m", "<test>")


def test_values_only_for_prog_array_and_map_in_map() -> None:
    types: list[btf.Type] = [
        btf.Int("int", 4, btf.IntEncoding.SIGNED, bits=32),  # 1
        btf.Int("unsigned int", 4, bits=32),  # 2
        btf.Array(1, 2, int(MapType.HASH)),  # 3
        btf.Pointer(3),  # 4: __uint(type, HASH)
        btf.FuncProto(1, ()),  # 5
        btf.Pointer(5),  # 6
        btf.Array(6, 2, 0),  # 7: values[]
        btf.Struct("", 16, (btf.Member("type", 4, 0), btf.Member("values", 7, 64))),  # 8
    ]
    spec = btf.Spec.build(types)
    with pytest.raises(ELFError, match="only allowed for prog_array and map-in-map"):
        parse_map_def(spec, 8, "h", "<test>")


def test_definition_must_be_a_struct() -> None:
    spec = btf.Spec.build([btf.Int("int", 4, btf.IntEncoding.SIGNED, bits=32)])
    with pytest.raises(ELFError, match="not a struct"):
        parse_map_def(spec, 1, "m", "<test>")
