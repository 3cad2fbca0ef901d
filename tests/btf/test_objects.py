"""BTF compiled by clang-19 (tests/btf/data, rebuilt by build.sh): parse, check, re-encode."""

from __future__ import annotations

from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from ebpf import btf

DATA = Path(__file__).parent / "data"


def btf_section(name: str) -> bytes:
    with (DATA / name).open("rb") as f:
        section = ELFFile(f).get_section_by_name(".BTF")
        assert section is not None
        data: bytes = section.data()
        return data


@pytest.mark.parametrize("name", ["kinds.el.o", "kinds.eb.o", "vars.el.o", "vars.eb.o"])
def test_round_trip_is_byte_identical(name: str) -> None:
    raw = btf_section(name)
    spec = btf.Spec.from_bytes(raw, source=name)
    assert spec.byteorder == ("big" if ".eb." in name else "little")
    assert spec.to_bytes() == raw


@pytest.mark.parametrize("stem", ["kinds", "vars"])
def test_both_byte_orders_give_the_same_types(stem: str) -> None:
    little = btf.Spec.from_bytes(btf_section(f"{stem}.el.o"))
    big = btf.Spec.from_bytes(btf_section(f"{stem}.eb.o"))
    assert little == big
    assert little.to_bytes(byteorder="big") == big.to_bytes()


@pytest.mark.parametrize("name", ["vars.el.o", "vars.eb.o"])
def test_builder_reproduces_clang(name: str) -> None:
    """With no code there are no line-info strings, so a fresh string table equals clang's."""
    raw = btf_section(name)
    spec = btf.Spec.from_bytes(raw)
    assert btf.Spec.build(spec.types[1:], byteorder=spec.byteorder).to_bytes() == raw


def test_builder_kinds_equal_after_reparse() -> None:
    spec = btf.Spec.from_bytes(btf_section("kinds.el.o"))
    fresh = btf.Spec.build(spec.types[1:]).to_bytes()
    assert btf.Spec.from_bytes(fresh) == spec
    assert len(fresh) < len(btf_section("kinds.el.o"))  # clang's table also holds line info


def test_every_kind_is_present() -> None:
    spec = btf.Spec.from_bytes(btf_section("kinds.el.o"))
    kinds = {t.kind for t in spec}
    assert kinds == set(btf.Kind)


def test_kinds_object() -> None:
    spec = btf.Spec.from_bytes(btf_section("kinds.el.o"))
    bits = spec.find("bits", btf.Struct)
    assert bits.kind_flag and bits.size == 12
    assert [(m.name, m.offset, m.bitfield_size) for m in bits.members] == [
        ("a", 0, 3),
        ("b", 3, 5),
        ("c", 32, 0),
        ("v", 64, 0),
    ]
    assert isinstance(spec[bits.members[3].type], btf.Volatile)
    assert spec.alignof(bits) == 4

    color = spec.find("color", btf.Enum)
    assert color.signed
    assert [(v.name, v.value) for v in color.values] == [("RED", 0), ("GREEN", 5), ("BLUE", -1)]
    big = spec.find("big", btf.Enum64)
    assert big.values[0].value == 0xFFFFFFFFFF and not big.signed and spec.sizeof(big) == 8

    holder = spec.find("holder", btf.Struct)
    assert spec.sizeof(holder) == 72 and spec.alignof(holder) == 8
    members = {m.name: m for m in holder.members}
    fwd = spec[spec.resolve_id(spec.find("holder", btf.Struct).members[0].type)]
    assert isinstance(fwd, btf.Pointer)
    assert spec[fwd.type] == btf.Fwd("fwd_only", union=False)
    assert spec.find("fwd_union", btf.Fwd).union
    restrict = spec[members["r"].type]
    assert isinstance(restrict, btf.Restrict)
    tagged = spec[members["tagged"].type]
    assert isinstance(tagged, btf.Pointer)
    assert spec[tagged.type] == btf.TypeTag("user", spec.find_id("int", btf.Int))
    assert spec.resolve(tagged.type) == spec.find("int", btf.Int)
    both = spec.find("both", btf.Union)
    assert spec.sizeof(both) == 4
    array = spec[both.members[1].type]
    assert isinstance(array, btf.Array) and array.nelems == 4 and spec.sizeof(array) == 4
    assert spec.find("double", btf.Float).size == 8

    member_tag = spec.find("member_tag", btf.DeclTag)
    assert member_tag.type == spec.find_id("holder", btf.Struct)
    assert holder.members[member_tag.component_idx].name == "tagged_member"
    entry = spec.find("entry", btf.DeclTag)
    assert entry.component_idx == -1 and spec[entry.type] == spec.find("prog", btf.Func)

    prog = spec.find("prog", btf.Func)
    assert prog.linkage == btf.FuncLinkage.GLOBAL
    helper = spec.find("helper", btf.Func)
    assert helper.linkage == btf.FuncLinkage.STATIC
    proto = spec[helper.type]
    assert isinstance(proto, btf.FuncProto)
    assert [p.name for p in proto.params] == ["x", "h"]

    counter = spec.find("counter", btf.Var)
    assert counter.linkage == btf.VarLinkage.GLOBAL_ALLOCATED
    data = spec.find(".data", btf.Datasec)
    assert data.vars == (btf.VarSecinfo(spec.find_id("counter", btf.Var), 0, 4),)
    assert spec.sizeof(counter) == 4
    limit = spec.find("limit", btf.Var)
    assert isinstance(spec[limit.type], btf.Const) and spec.sizeof(limit) == 8
