"""Differential against libbpf in the kernel: the same object loaded by libbpf (``bpftool prog
loadall``) and from our spec (maps created from our MapSpecs, placeholders filled with their fds)
must translate to the same instructions (``BPF_OBJ_GET_INFO_BY_FD`` xlated), with map references
compared by map name. This checks the linked layout, every call offset and every relocation
slot/kind/offset exactly as libbpf produces them. (Not here: tc_cls.o -- libbpf 1.1 lacks
``tcx/*``; tracer.o -- no kprobes/fentry on this kernel; legacy_maps.o, nobtf.o -- libbpf >= 1.0
refuses the legacy ``maps`` section; samesec.o -- libbpf refuses static programs.)
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from tests.elf.conftest import DATA
from tests.elf.test_bpftool import BPFTOOL, _bpftool, _kernel_map_name, loadall, pin_dir  # noqa: F401

from ebpf.elf import load_collection_spec
from ebpf.isa import Instruction
from ebpf.spec import CollectionSpec, PinType, RelocKind

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(BPFTOOL is None, reason="bpftool is not installed"),
]


def _normalise(code: bytes, map_name: dict[int, str]) -> list[tuple[object, ...]]:
    """Slots of xlated code; lddw of a map (src 1/2) carries the map's name instead of its id."""
    out: list[tuple[object, ...]] = []
    i = 0
    while i + 8 <= len(code):
        op, regs, off, imm = struct.unpack_from("<BBhi", code, i)
        if op == 0x18 and (regs >> 4) in (1, 2) and i + 16 <= len(code):
            next_imm = struct.unpack_from("<i", code, i + 12)[0]
            out.append((op, regs, off, map_name.get(imm & 0xFFFFFFFF, f"id {imm}"), next_imm))
            i += 16
            continue
        out.append((op, regs, off, imm))
        i += 8
    return out


def _load_ours(
    spec: CollectionSpec, obj: str, prog_name: str, *, with_btf: bool = True
) -> tuple[bytes, dict[int, str]]:
    from ebpf.kernel.map import Map
    from ebpf.kernel.program import Program

    prog = spec.programs[prog_name]
    used = sorted(
        {r.symbol for r in prog.relocations.values() if r.kind in (RelocKind.MAP, RelocKind.MAP_VALUE)}
    )
    maps: dict[str, Map] = {}
    try:
        for name in used:
            mspec = spec.maps[name].copy()
            mspec.pinning = PinType.NONE  # never touch /sys/fs/bpf/<name> from a test
            maps[name] = Map.create(mspec, name=_kernel_map_name(mspec, obj))
            for key, value in mspec.contents:
                maps[name].update(key, value)
            if mspec.freeze:
                maps[name].freeze()  # the verifier then knows .rodata's values (dead code)
        insns: list[Instruction] = []
        slot = 0
        for insn in prog.instructions:
            reloc = prog.relocations.get(slot)
            if reloc is not None and reloc.kind is RelocKind.MAP:
                insn = Instruction(insn.opcode, insn.dst, 1, insn.offset, maps[reloc.symbol].fd)
            elif reloc is not None and reloc.kind is RelocKind.MAP_VALUE:
                imm = maps[reloc.symbol].fd | (reloc.offset << 32)
                insn = Instruction(insn.opcode, insn.dst, 2, insn.offset, imm)
            insns.append(insn)
            slot += insn.slots
        ids = {m.info().id: name for name, m in maps.items()}
        # global subprograms need BTF func_info (the kernel verifies them on their own)
        if with_btf and prog.func_info and spec.btf is not None:
            from ebpf.btf.ext import encode_func_info, encode_line_info
            from ebpf.kernel.btf import KernelBTF

            kbtf = KernelBTF.load(spec.btf)
            assert spec.btf.strings is not None
            btf_args: dict[str, object] = {
                "prog_btf_fd": kbtf.fd,
                # the kernel checks both against the subprogram layout: func_info must start
                # each function, line_info must cover every function start, in order
                "func_info": encode_func_info(prog.func_info),
                "line_info": encode_line_info(prog.line_info, spec.btf.strings),
            }
        else:
            kbtf, btf_args = None, {}
        try:
            with Program.load(
                insns,
                prog.type,
                license=spec.license,
                name=prog_name[:15],
                expected_attach_type=prog.attach_type,
                prog_flags=prog.flags,
                **btf_args,  # type: ignore[arg-type]
            ) as loaded:
                return loaded.xlated(), ids
        finally:
            if kbtf is not None:
                kbtf.close()
    finally:
        for m in maps.values():
            m.close()


@pytest.mark.parametrize(
    "name",
    ["subprogs.o", "xdp_fw.o", "socket_filter.o", "tailcall.o", "map_in_map.o"],
)
def test_xlated_matches_libbpf(name: str, pin_dir: Path) -> None:  # noqa: F811
    from ebpf.kernel.program import Program

    spec = load_collection_spec(DATA / name)
    obj = name.removesuffix(".o")
    target = pin_dir / "progs"
    loadall(name, target)
    for prog_name in spec.programs:
        with Program.from_pin(target / prog_name) as theirs_prog:
            theirs = theirs_prog.xlated()
            their_ids = {
                i: _bpftool("map", "show", "id", str(i))["name"]
                for i in _bpftool("prog", "show", "pinned", str(target / prog_name)).get("map_ids", [])
            }
        ours, our_ids = _load_ours(spec, obj, prog_name)
        ours_named = {i: _kernel_map_name(spec.maps[n], obj) for i, n in our_ids.items()}
        assert _normalise(ours, ours_named) == _normalise(theirs, their_ids), prog_name


@pytest.mark.parametrize(
    ("name", "programs"),
    [
        ("tc_cls.o", ["tc_classify", "tcx_in", "tcx_out", "cls_legacy", "act_legacy"]),
        ("legacy_maps.o", ["legacy_prog"]),
        ("nobtf.o", ["count_packets"]),
        ("samesec.o", ["samesec"]),
        ("tracer.o", ["raw_switch", "raw_wakeup", "trace_exit"]),
    ],
)
def test_programs_libbpf_cannot_load_here_pass_the_verifier(name: str, programs: list[str]) -> None:
    """Objects bpftool's libbpf 1.1 refuses (tcx sections, legacy maps, static programs) load
    from our spec, bpf_loop callbacks and subprogram calls included."""
    spec = load_collection_spec(DATA / name)
    for prog_name in programs:
        # tracer.o's BTF has extern kfuncs: the kernel takes it only after the engine's
        # sanitising, and these programs need no func_info
        with_btf = name != "tracer.o"
        xlated, _ = _load_ours(spec, name.removesuffix(".o"), prog_name, with_btf=with_btf)
        assert len(xlated) >= 8, prog_name
