"""Objects written for libbpf (BPF_KPROBE, BPF_USDT with usdt.bpf.h), loaded by
``ebpf.kernel.Collection`` from ``ebpf.elf`` specs and attached with ``ebpf.attach``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ebpf import attach

from ._util import links_of
from .conftest import DATA, run_probed

pytestmark = pytest.mark.kernel

OBJECT = DATA / "libbpf_probes.bpf.o"


def _spec():  # type: ignore[no-untyped-def]
    from ebpf.elf import load_collection_spec

    return load_collection_spec(OBJECT)


def _count(coll, slot: int) -> int:  # type: ignore[no-untyped-def]
    return int.from_bytes(coll.maps["counts"].lookup(slot.to_bytes(4, "little")), "little")


def test_libbpf_uprobe_and_uretprobe_programs(probed: Path) -> None:
    from ebpf.kernel.collection import Collection, LoadOptions

    spec = _spec()
    spec.programs["on_tick"].autoload = False  # see test_libbpf_usdt_program_unchanged
    for name in ("on_getppid", "on_sys_enter", "on_sys_enter_btf"):
        spec.programs[name].autoload = False
    # LINUX_HAS_BPF_COOKIE: a libbpf-probed extern the collection does not fill yet
    options = LoadOptions(object_name="libbpf_probes", kconfig={"LINUX_HAS_BPF_COOKIE": 1})
    with Collection(spec, options) as coll:
        ids = {coll.programs["on_add"].info().id, coll.programs["on_add_ret"].info().id}
        with (
            attach.uprobe(coll.programs["on_add"], str(probed), "target_add"),
            attach.uprobe(coll.programs["on_add_ret"], str(probed), "target_add", retprobe=True),
        ):
            run_probed(probed, 5)
        assert _count(coll, 4) == 40 + 41 + 42 + 43 + 44  # second argument (PT_REGS_PARM2)
        assert _count(coll, 5) == 40 + 81 + 123 + 166 + 210  # return values (PT_REGS_RC)
        assert links_of(ids) == []


def test_libbpf_usdt_program_unchanged(probed: Path) -> None:
    from ebpf.kernel.collection import Collection, LoadOptions

    with Collection(_spec(), LoadOptions(object_name="libbpf_probes")) as coll:
        prog = coll.programs["on_tick"]
        specs = coll.maps["__bpf_usdt_specs"]
        with attach.usdt(prog, str(probed), "ebpftest", "tick", specs_map=specs, cookie=77):
            run_probed(probed, 5)
        assert _count(coll, 0) == sum(range(1000, 1005))
        assert _count(coll, 1) == 40 + 81 + 123 + 166 + 210
        assert _count(coll, 2) == 5
        assert _count(coll, 3) == 5 * 77  # bpf_usdt_cookie()
        assert links_of({prog.info().id}) == []


def _mark_hidden_subprograms_static(spec):  # type: ignore[no-untyped-def]
    """What libbpf's loader does for ``__hidden`` global functions (``mark_btf_static``), done
    here on the spec until kernel.Collection does it itself."""
    import dataclasses

    from ebpf.btf import Spec
    from ebpf.btf.types import Func, FuncLinkage

    hidden = {"bpf_usdt_arg", "bpf_usdt_arg_cnt", "bpf_usdt_cookie"}
    types = [
        dataclasses.replace(t, linkage=FuncLinkage.STATIC) if isinstance(t, Func) and t.name in hidden else t
        for t in spec.btf.types
    ]
    btf = Spec.build(types[1:], byteorder=spec.btf.byteorder)
    spec.btf = btf
    for item in (*spec.programs.values(), *spec.maps.values()):
        item.btf = btf
    return spec


def test_usdt_specs_read_by_libbpf_usdt_bpf_h(probed: Path) -> None:
    """libbpf's own bpf_usdt_arg()/bpf_usdt_cookie() read the specs and cookies attach.usdt writes."""
    from ebpf.kernel.collection import Collection, LoadOptions

    spec = _mark_hidden_subprograms_static(_spec())
    options = LoadOptions(object_name="libbpf_probes", kconfig={"LINUX_HAS_BPF_COOKIE": 1})
    with Collection(spec, options) as coll:
        prog = coll.programs["on_tick"]
        specs = coll.maps["__bpf_usdt_specs"]
        with attach.usdt(prog, str(probed), "ebpftest", "tick", specs_map=specs, cookie=77) as link:
            run_probed(probed, 5)
            assert len(link.links) == 1
        assert _count(coll, 0) == sum(range(1000, 1005))  # arg 0: -4@%eax
        assert _count(coll, 1) == 40 + 81 + 123 + 166 + 210  # arg 1: -8@%rdi
        assert _count(coll, 2) == 5
        assert _count(coll, 3) == 5 * 77  # bpf_usdt_cookie()
        assert links_of({prog.info().id}) == []


def test_auto_attach_by_section_name(probed: Path) -> None:
    """attach.auto: where SEC() says, as libbpf's bpf_program__attach() does."""
    import os

    from ebpf.kernel.collection import Collection, LoadOptions

    spec = _mark_hidden_subprograms_static(_spec())
    spec.set_variable("target_pid", os.getpid())
    # sections can be edited before loading: give the uprobes and the USDT program their targets
    spec.programs["on_add"].section = f"uprobe/{probed}:target_add"
    spec.programs["on_add_ret"].section = f"uretprobe/{probed}:target_add"
    spec.programs["on_tick"].section = f"usdt/{probed}:ebpftest:tick"
    options = LoadOptions(object_name="libbpf_probes", kconfig={"LINUX_HAS_BPF_COOKIE": 1})
    with Collection(spec, options) as coll:
        links = [
            attach.auto(coll.programs[name], spec.programs[name], specs_map=coll.maps["__bpf_usdt_specs"])
            for name in spec.programs
        ]
        try:
            for _ in range(3):
                os.getppid()
            run_probed(probed, 5)
        finally:
            for link in links:
                link.close()
        assert _count(coll, 2) == 5  # usdt
        assert _count(coll, 4) == 210  # uprobe
        assert _count(coll, 5) == 620  # uretprobe
        assert _count(coll, 6) == 3  # tracepoint/syscalls/sys_enter_getppid, this pid only
        assert _count(coll, 7) >= 3  # raw_tp/sys_enter: every syscall of this process
        assert _count(coll, 8) >= 3  # tp_btf/sys_enter
        assert links_of({p.info().id for p in coll.programs.values()}) == []


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("xdp", r"use attach\.xdp"),
        ("xdp.frags", r"use attach\.xdp"),
        ("cgroup/connect4", r"use attach\.cgroup"),
        ("uprobe", r"use attach\.uprobe"),
        ("usdt/onlyone", "expected usdt/<binary>:<provider>:<name>"),
        ("tracepoint/nocategory", "expected tracepoint/<category>/<name>"),
        ("kretprobe/f+4", "a kretprobe takes no offset"),
        ("syscall", "no automatic attachment"),
    ],
)
def test_auto_attach_needs_a_target(section: str, message: str) -> None:
    class Fake:
        fd = 1 << 30

    with pytest.raises(ValueError, match=message):
        attach.auto(Fake(), section)
