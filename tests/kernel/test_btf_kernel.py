"""kernel.btf: fix-ups of clang-style BTF, BPF_BTF_LOAD, the vmlinux index cache, listing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ebpf import btf
from ebpf.kernel import btf as kbtf
from ebpf.kernel.btf import KernelBTF, KernelBTFError, fixup_for_kernel


def clang_like() -> btf.Spec:
    """Like clang's .BTF: DATASEC sizes and offsets 0, an extern .kconfig VAR, a kfunc in .ksyms."""
    i32 = btf.Int("int", 4, btf.IntEncoding.SIGNED, bits=32)
    return btf.Spec.build(
        [
            i32,  # 1
            btf.Var("counter", 1, btf.VarLinkage.GLOBAL_ALLOCATED),  # 2
            btf.Var("other", 1, btf.VarLinkage.GLOBAL_ALLOCATED),  # 3
            btf.Datasec(".data", 0, (btf.VarSecinfo(2, 0, 4), btf.VarSecinfo(3, 0, 4))),  # 4
            btf.Var("LINUX_KERNEL_VERSION", 1, btf.VarLinkage.GLOBAL_EXTERN),  # 5
            btf.Datasec(".kconfig", 0, (btf.VarSecinfo(5, 0, 4),)),  # 6
            btf.FuncProto(1, (btf.FuncParam("", 1),)),  # 7
            btf.Func("bpf_kfunc", 7, btf.FuncLinkage.EXTERN),  # 8
            btf.Datasec(".ksyms", 0, (btf.VarSecinfo(8, 0, 0),)),  # 9
            btf.Datasec(".maps", 0, (btf.VarSecinfo(3, 0, 4), btf.VarSecinfo(2, 0, 4))),  # 10
        ]
    )


def test_fixup_fills_datasecs_like_libbpf() -> None:
    fixed = fixup_for_kernel(
        clang_like(),
        section_sizes={".data": 8, ".kconfig": 4},
        var_offsets={"counter": 4, "other": 0, "LINUX_KERNEL_VERSION": 0},
    )
    data = fixed[4]
    assert isinstance(data, btf.Datasec)
    assert data.size == 8 and [(v.type, v.offset) for v in data.vars] == [(3, 0), (2, 4)]
    kconfig = fixed[5]
    assert isinstance(kconfig, btf.Var) and kconfig.linkage == btf.VarLinkage.GLOBAL_ALLOCATED
    ksyms = fixed[9]
    assert isinstance(ksyms, btf.Datasec) and ksyms.size == 4
    dummy = fixed[ksyms.vars[0].type]
    assert isinstance(dummy, btf.Var) and dummy.linkage == btf.VarLinkage.GLOBAL_ALLOCATED
    proto = fixed[7]
    assert isinstance(proto, btf.FuncProto) and proto.params[0].name == "arg0"
    func = fixed[8]
    assert isinstance(func, btf.Func) and func.linkage == btf.FuncLinkage.GLOBAL
    maps = fixed[10]
    assert isinstance(maps, btf.Datasec) and maps.size >= 12  # a consistent made-up layout
    assert len(fixed) == len(clang_like()) + 1  # ids unchanged, one dummy VAR appended


@pytest.mark.kernel
def test_kernel_rejects_raw_clang_btf_and_accepts_the_fixed_one() -> None:
    with pytest.raises(KernelBTFError) as info:
        KernelBTF.load(clang_like())
    assert info.value.log  # the kernel's own words
    fixed = fixup_for_kernel(
        clang_like(), section_sizes={".data": 8, ".kconfig": 4}, var_offsets={"counter": 4, "other": 0}
    )
    with KernelBTF.load(fixed, log_level=1) as loaded:
        info2 = loaded.info()
        assert info2.id > 0 and not info2.kernel_btf
        assert loaded.log and loaded.log[0].startswith("magic")
        with KernelBTF.from_id(info2.id) as again:
            assert btf.Spec.from_bytes(again.raw()) == fixed
        assert info2.id in [b.id for b in kbtf.list_btf()]


@pytest.mark.kernel
def test_vmlinux_is_listed_as_kernel_btf() -> None:
    infos = kbtf.list_btf()
    assert any(i.kernel_btf and i.name == "vmlinux" for i in infos)


def test_vmlinux_index_cache_cold_then_warm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not Path(kbtf.VMLINUX_PATH).exists():
        pytest.skip(f"{kbtf.VMLINUX_PATH} is absent (kernel without CONFIG_DEBUG_INFO_BTF)")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    kbtf.reset_vmlinux_cache()
    try:
        t0 = time.perf_counter()
        cold = kbtf.vmlinux_index()
        t1 = time.perf_counter()
        files = list((tmp_path / "ebpf").glob("vmlinux-*.index"))
        assert len(files) == 1 and cold.digest[:32] in files[0].name
        kbtf.reset_vmlinux_cache()
        t2 = time.perf_counter()
        warm = kbtf.vmlinux_index()
        t3 = time.perf_counter()
        assert warm.names == cold.names
        assert warm.find("task_struct", btf.Kind.STRUCT) is not None
        assert warm.find("btf_trace_sched_switch", btf.Kind.TYPEDEF) is not None
        assert (t3 - t2) < (t1 - t0)  # the cache is faster than parsing
    finally:
        kbtf.reset_vmlinux_cache()


def test_lazy_vmlinux_spec_equals_a_full_parse() -> None:
    if not Path(kbtf.VMLINUX_PATH).exists():
        pytest.skip(f"{kbtf.VMLINUX_PATH} is absent (kernel without CONFIG_DEBUG_INFO_BTF)")
    data = kbtf.vmlinux_bytes()
    names, kinds, offsets = kbtf._walk_types(data)
    full = btf.Spec.from_bytes(data)
    lazy = kbtf._lazy_spec(data, kbtf.VmlinuxIndex(names, kinds, "test", offsets))
    assert len(lazy) == len(full)
    task = full.find_id("task_struct", btf.Struct)
    assert lazy[task] == full[task]  # decoded on demand
    assert lazy.ids_by_name("task_struct") == full.ids_by_name("task_struct")
    assert tuple(lazy.types) == full.types  # every type, decoded by our own decoder
    assert all(kinds[i] == int(t.kind) for i, t in enumerate(full.types))


def test_name_table_is_a_mapping_of_names_to_ids() -> None:
    names = {"task_struct": [5, 9], "a": [1], "zz___v2": [3]}
    table = kbtf.NameTable.from_dict(names)
    again = kbtf.NameTable(*table.to_payload())
    for t in (table, again):
        assert dict(t) == names
        assert t.get("missing", ()) == () and "a" in t and "b" not in t
        with pytest.raises(KeyError):
            t["missing"]
    overlay = kbtf._Overlay({"zz": [3, 4]}, table)
    assert overlay.get("zz") == [3, 4] and overlay.get("a") == [1] and overlay.get("q") is None
