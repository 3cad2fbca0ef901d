"""The attach layer's ABI structures against the running kernel's own BTF (sizes and offsets),
plus argument checks that need no kernel."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from ebpf import attach
from ebpf.attach import _abi, _usdt

VMLINUX = Path("/sys/kernel/btf/vmlinux")


@pytest.fixture(scope="module")
def vmlinux():  # type: ignore[no-untyped-def]
    if not VMLINUX.exists():
        pytest.skip("no /sys/kernel/btf/vmlinux to compare with")
    from ebpf.btf import Spec

    return Spec.from_file(VMLINUX)


def _member(spec, aggregate, name: str):  # type: ignore[no-untyped-def]
    for m in aggregate.members:
        if m.name == name:
            return m
    raise AssertionError(f"no member {name}")


@pytest.mark.parametrize(
    ("member", "cls"),
    [
        ("link_create", _abi.LinkCreateAttr),
        ("link_update", _abi.LinkUpdateAttr),
        ("link_detach", _abi.LinkDetachAttr),
        ("raw_tracepoint", _abi.RawTracepointOpenAttr),
        ("iter_create", _abi.IterCreateAttr),
    ],
)
def test_bpf_attr_members_match_kernel_btf(vmlinux, member: str, cls: type[ctypes.Structure]) -> None:  # type: ignore[no-untyped-def]
    from ebpf.btf.types import Union

    attr = vmlinux.find("bpf_attr", Union)
    kernel = vmlinux.resolve(_member(vmlinux, attr, member).type)
    assert ctypes.sizeof(cls) == kernel.size
    named = {m.name: m.offset // 8 for m in kernel.members if m.name}
    for name, _ctype in cls._fields_:
        if name in named:
            assert getattr(cls, name).offset == named[name], name


def test_perf_event_attr_and_link_info_sizes(vmlinux) -> None:  # type: ignore[no-untyped-def]
    from ebpf.btf.types import Struct

    pea = vmlinux.find("perf_event_attr", Struct)
    assert ctypes.sizeof(_abi.PerfEventAttr) == pea.size == 136
    offsets = {m.name: m.offset // 8 for m in pea.members if m.name}
    for name in (
        "config",
        "sample_type",
        "read_format",
        "bp_type",
        "branch_sample_type",
        "clockid",
        "config3",
    ):
        assert getattr(_abi.PerfEventAttr, name).offset == offsets[name], name
    assert ctypes.sizeof(_abi.LinkInfoAttr) == vmlinux.find("bpf_link_info", Struct).size


def test_usdt_spec_layout_matches_libbpf_header() -> None:
    header = Path("/usr/include/bpf/usdt.bpf.h")
    if not header.exists():
        pytest.skip("libbpf-dev's usdt.bpf.h is not installed")
    text = header.read_text()
    assert "#define BPF_USDT_MAX_ARG_CNT 12" in text
    assert _usdt.MAX_ARGS == 12 and _usdt.SPEC_SIZE == 12 * 16 + 16


def test_argument_checks_need_no_kernel() -> None:
    class Fake:
        fd = 12345

    with pytest.raises(ValueError, match="choose one XDP mode"):
        attach.xdp(Fake(), 1, mode=attach.XDPMode.DRIVER | attach.XDPMode.GENERIC)
    with pytest.raises(ValueError, match="no network interface named"):
        attach.xdp(Fake(), "no-such-if-xyz")
    with pytest.raises(ValueError, match="ifindex must be positive"):
        attach.tc(Fake(), 0, attach.TCDirection.INGRESS)
    with pytest.raises(ValueError, match="invalid raw tracepoint name"):
        attach.raw_tracepoint(Fake(), "")
    with pytest.raises(ValueError, match="exactly one of symbols and addresses"):
        attach.kprobe_multi(Fake())
    with pytest.raises(ValueError, match="give a symbol or a non-zero file offset"):
        attach.uprobe(Fake(), "/bin/true")


def _union_members(vmlinux):  # type: ignore[no-untyped-def]
    """{member name: {field name: byte offset}} of ``struct bpf_link_info``'s union."""
    from ebpf.btf.types import Struct

    info = vmlinux.find("bpf_link_info", Struct)
    union = vmlinux.resolve(next(m for m in info.members if m.name == "").type)
    result = {}
    for member in union.members:
        t = vmlinux.resolve(member.type)
        result[member.name] = {m.name: m.offset // 8 for m in getattr(t, "members", ()) if m.name}
    return result


def test_link_info_layouts_match_kernel_btf(vmlinux) -> None:  # type: ignore[no-untyped-def]
    from ebpf.attach.link import FIELDS, NAMES, LinkType

    members = _union_members(vmlinux)
    btf_name = {LinkType.KPROBE_MULTI: "kprobe_multi", LinkType.UPROBE_MULTI: "uprobe_multi"}
    for ltype, fields in FIELDS.items():
        layout = members[btf_name.get(ltype, ltype.name.lower())]
        for key, offset, _fmt, _enum in fields:
            if key in layout:  # ITER's map_id sits in an anonymous union
                assert layout[key] == offset, (ltype, key)
    for ltype, (key, ptr_off, _len_off) in NAMES.items():
        assert members[ltype.name.lower()][key] == ptr_off, (ltype, key)
    assert members["iter"]["target_name_len"] == 8
    assert members["uprobe_multi"]["path_size"] == 32
