"""maps.create(MapSpec): libbpf's fix-ups, names, contents, inner specs, BTF from the spec."""

from __future__ import annotations

import struct

import pytest

from ebpf import btf
from ebpf.btf import Int, IntEncoding, Member, Struct
from ebpf.maps import HashOfMapsMap, InvalidMapArgumentError, KeyExistsError, MapFlags, create, def_from_spec
from ebpf.maps import MapFlags as ReExported
from ebpf.spec import MapFlags as SpecFlags
from ebpf.spec import MapSpec, MapType


def test_mapflags_lives_in_spec_and_is_reexported() -> None:
    assert ReExported is SpecFlags is MapFlags
    assert int(SpecFlags.INNER_MAP) == 1 << 12


def test_inner_spec_becomes_the_template() -> None:
    inner = MapSpec("inner", MapType.ARRAY, 4, 8, 2)
    outer = MapSpec("outer_map_with_a_long_name", MapType.HASH_OF_MAPS, 4, 4, 3, inner=inner)
    defn = def_from_spec(outer)
    assert defn.inner is not None and defn.inner.type == MapType.ARRAY and defn.name == "outer_map_with_"
    with create(outer) as m, create(inner) as a:
        assert isinstance(m, HashOfMapsMap) and m.spec is outer
        m.update_map(struct.pack("<I", 1), a)
        assert m.lookup_map(struct.pack("<I", 1)) is a


def test_contents_and_failures_close_the_map() -> None:
    spec = MapSpec(".rodata.str1.1", MapType.ARRAY, 4, 4, 1, contents=[(bytes(4), b"abc\0")])
    with create(spec) as m:
        assert m.lookup(bytes(4)) == b"abc\0" and m.name == ".rodata.str1.1"[:15]
    bad = MapSpec("h", MapType.HASH, 4, 4, 1, contents=[(bytes(4), bytes(4)), (b"\1\0\0\0", bytes(4))])
    with pytest.raises(Exception) as full:
        create(bad)
    assert getattr(full.value, "errno", None) == 7  # E2BIG: the second element does not fit
    with pytest.raises(InvalidMapArgumentError):
        create(MapSpec("bad name!", MapType.ARRAY, 4, 4, 0))


def test_btf_from_spec_finds_the_lock() -> None:
    spec = btf.Spec.build(
        [
            Int("int", 4, IntEncoding.SIGNED, 0, 32),
            Struct("bpf_spin_lock", 4, (Member("val", 1, 0),)),
            Struct("v", 8, (Member("l", 2, 0), Member("n", 1, 32))),
        ]
    )
    with create(MapSpec("locked", MapType.HASH, 4, 8, 2, key_type_id=1, value_type_id=3, btf=spec)) as m:
        assert m.lock_offset == 0
        m.update(bytes(4), b"\xff\xff\xff\xff\1\0\0\0", 1)
        with pytest.raises(KeyExistsError):
            m.update(bytes(4), bytes(8), 1 | 4)  # BPF_NOEXIST | BPF_F_LOCK on an existing key
        assert m.lookup(bytes(4)) == bytes(4) + b"\1\0\0\0"
    wrong = MapSpec("w", MapType.HASH, 4, 12, 2, key_type_id=1, value_type_id=3, btf=spec)
    with pytest.raises(InvalidMapArgumentError):
        create(wrong)  # BTF value size 8 != value_size 12
    with pytest.raises(Exception) as ro:
        create(
            MapSpec(
                "r", MapType.ARRAY, 4, 8, 2, MapFlags.RDONLY_PROG, key_type_id=1, value_type_id=3, btf=spec
            )
        )
    assert getattr(ro.value, "errno", None) == 13  # EACCES


def test_kconfig_datasec_with_clangs_size_is_created_without_btf() -> None:
    spec = btf.Spec.build(
        [
            Int("int", 4, IntEncoding.SIGNED, 0, 32),
            btf.Var("LINUX_KERNEL_VERSION", 1, btf.VarLinkage.GLOBAL_EXTERN),
            btf.Datasec(".kconfig", 0, (btf.VarSecinfo(2, 0, 4),)),
        ]
    )
    mspec = MapSpec(".kconfig", MapType.ARRAY, 4, 4, 1, value_type_id=3, btf=spec, freeze=True)
    assert def_from_spec(mspec).value_type_id == 0  # libbpf fixes the size; we drop the type
    with create(mspec) as m:
        assert m.lookup(bytes(4)) == bytes(4)
    sized = MapSpec(".data", MapType.ARRAY, 4, 4, 1, value_type_id=3, btf=spec)
    sized.btf = btf.Spec.build([*list(spec)[1:3], btf.Datasec(".data", 4, (btf.VarSecinfo(2, 0, 4),))])
    assert def_from_spec(sized).value_type_id == 3  # the right size: kept
