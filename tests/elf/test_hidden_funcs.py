"""``__hidden`` global functions become static in the spec's BTF, as libbpf's loader makes them."""

from __future__ import annotations

from pathlib import Path

from ebpf import btf
from ebpf.elf import load_collection_spec

OBJECT = Path(__file__).resolve().parents[1] / "attach" / "data" / "libbpf_probes.bpf.o"


def test_hidden_weak_functions_are_static_and_programs_stay_global() -> None:
    spec = load_collection_spec(OBJECT)
    assert spec.btf is not None
    funcs = {t.name: t.linkage for t in spec.btf.types if isinstance(t, btf.Func)}
    for name in ("bpf_usdt_arg", "bpf_usdt_arg_cnt", "bpf_usdt_cookie"):  # __weak __hidden in usdt.bpf.h
        assert funcs[name] == btf.FuncLinkage.STATIC, name
    assert funcs["on_tick"] == btf.FuncLinkage.GLOBAL
