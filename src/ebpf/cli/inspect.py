"""CLI layer: ``ebpf inspect OBJ``, what an object file holds, from its spec alone.

Rule 1: pure: reads the object with :func:`ebpf.elf.load_collection_spec`; no kernel, no root.

Rule 2: programs are listed with their section, type, attach type and target, size, and a
disassembly annotated with the C source lines of the object's line info (``; <source>``
before the first instruction of each line, as ``bpftool prog dump xlated linum`` does), with
relocated instructions marked by what they refer to (``; map: counters``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ebpf.cli._common import Printer, fail, json_option
from ebpf.cli._listing import listing_rows

if TYPE_CHECKING:
    from ebpf.spec import MapSpec, ProgramSpec

__all__ = ["inspect", "program_listing"]


def _btf_type_name(btf: Any, type_id: int) -> str:
    """A short C-like name for a BTF type id (``struct flow_key``, ``__u32``, ``u8[16]``)."""
    if btf is None or not type_id:
        return ""
    from ebpf import btf as B

    t = btf[type_id]
    match t:
        case B.Struct(name=name):
            return f"struct {name or '<anon>'}"
        case B.Union(name=name):
            return f"union {name or '<anon>'}"
        case B.Enum(name=name) | B.Enum64(name=name):
            return f"enum {name or '<anon>'}"
        case B.Int(name=name) | B.Typedef(name=name) | B.Float(name=name):
            return str(name)
        case B.Array(type=elem, nelems=n):
            return f"{_btf_type_name(btf, elem)}[{n}]"
        case B.Pointer(type=target):
            return f"{_btf_type_name(btf, target) or 'void'} *"
        case (
            B.Const(type=target)
            | B.Volatile(type=target)
            | B.Restrict(type=target)
            | B.TypeTag(type=target)
            | B.Var(type=target)
        ):
            return _btf_type_name(btf, target)
        case B.Datasec(name=name):
            return f"datasec {name}"
        case _:
            return type(t).__name__.lower()


def program_listing(prog: ProgramSpec, *, raw: bool = False) -> list[str]:
    """The annotated disassembly lines of a program spec (Rule 2)."""
    from ebpf.isa import Syntax

    rows = listing_rows(prog.instructions, Syntax.LLVM)
    lines_at: dict[int, list[str]] = {}
    last: tuple[str, int] | None = None
    for info in prog.line_info:
        key = (info.file_name, info.line)
        if key == last or not info.line_text.strip():
            continue
        last = key
        lines_at.setdefault(info.insn, []).append(
            f"; {info.line_text.strip()}  [{info.file_name.rsplit('/', 1)[-1]}:{info.line}]"
        )
    funcs: dict[int, str] = {}
    for finfo in prog.func_info:
        func = prog.btf[finfo.type_id] if prog.btf is not None and finfo.type_id < len(prog.btf) else None
        funcs[finfo.insn] = getattr(func, "name", "") or f"func@{finfo.insn}"
    out: list[str] = []
    for row in rows:
        if row.pc in funcs:
            out.append(f"<{funcs[row.pc]}>:")
        out.extend(lines_at.get(row.pc, ()))
        text = row.text
        reloc = prog.relocations.get(row.pc)
        if reloc is not None:
            what = reloc.kind.value
            text += f"\t; {what}: {reloc.symbol}" + (f"+{reloc.offset}" if reloc.offset else "")
        out.append(f"{row.pc:6d}: {row.raw.hex(' ')}  {text}" if raw else f"{row.pc:6d}: {text}")
    return out


def _map_doc(m: MapSpec) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": m.name,
        "type": m.type.name.lower(),
        "key_size": m.key_size,
        "value_size": m.value_size,
        "max_entries": m.max_entries,
        "flags": m.flags,
        "section": m.section,
    }
    if m.key_type_id or m.value_type_id:
        doc["key_type"] = _btf_type_name(m.btf, m.key_type_id)
        doc["value_type"] = _btf_type_name(m.btf, m.value_type_id)
    if m.pinning:
        doc["pinning"] = m.pinning.name.lower()
    if m.map_extra:
        doc["map_extra"] = m.map_extra
    if m.inner is not None:
        doc["inner"] = _map_doc(m.inner)
    if m.slots:
        doc["initial_slots"] = {str(k): v for k, v in sorted(m.slots.items())}
    if m.freeze:
        doc["frozen"] = True
    return doc


def _program_doc(p: ProgramSpec, disasm: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": p.name,
        "section": p.section,
        "type": p.type.name.lower(),
        "attach_type": p.attach_type.name.lower() if p.attach_type is not None else None,
        "attach_to": p.attach_to or None,
        "insns": len(p.instructions.instructions),
        "bytes": len(p.instructions.encode()),
        "license": p.license,
        "relocations": {
            str(pc): {"kind": r.kind.value, "symbol": r.symbol, "offset": r.offset}
            for pc, r in sorted(p.relocations.items())
        },
        "core_relocations": len(p.core_relos),
        "line_info": len(p.line_info),
    }
    if p.flags:
        doc["flags"] = p.flags
    if disasm:
        doc["disassembly"] = program_listing(p)
    return doc


@click.command(short_help="Show the programs, maps and variables of an object file.")
@click.argument("obj", type=click.Path(exists=True, dir_okay=False))
@click.option("--program", "-p", "programs", multiple=True, metavar="NAME", help="Only these programs.")
@click.option("--no-disasm", is_flag=True, help="Do not print the disassembly.")
@click.option("--raw", is_flag=True, help="Show the raw bytes of each instruction.")
@json_option
def inspect(obj: str, programs: tuple[str, ...], no_disasm: bool, raw: bool, as_json: bool) -> None:
    """Show what OBJ (a clang-built BPF object) holds, without loading it.

    \b
    Examples:
      ebpf inspect prog.o
      ebpf inspect prog.o --program xdp_main
      ebpf inspect prog.o --no-disasm --json
    """
    from ebpf.elf import load_collection_spec

    spec = load_collection_spec(obj)
    chosen = list(spec.programs.values())
    if programs:
        missing = [name for name in programs if name not in spec.programs]
        if missing:
            raise fail(
                f"no program {', '.join(map(repr, missing))} in {obj}; it has: {', '.join(spec.programs)}"
            )
        chosen = [spec.programs[name] for name in programs]
    if as_json:
        Printer.json(
            {
                "file": obj,
                "license": spec.license,
                "kernel_version": spec.kernel_version,
                "byteorder": spec.byteorder,
                "programs": [_program_doc(p, not no_disasm) for p in chosen],
                "maps": [_map_doc(m) for m in spec.maps.values()],
                "variables": [
                    {
                        "name": v.name,
                        "map": v.map,
                        "offset": v.offset,
                        "size": v.size,
                        "type": _btf_type_name(spec.btf, v.type_id),
                        "extern": v.extern,
                    }
                    for v in spec.variables.values()
                ],
            }
        )
        return
    out = Printer()
    out.heading(f"{obj}: {len(spec.programs)} programs, {len(spec.maps)} maps, license {spec.license!r}")
    out.line()
    out.heading("Programs")
    out.table(
        ["name", "section", "type", "attach", "insns"],
        [
            [
                p.name,
                p.section,
                p.type.name.lower(),
                (p.attach_type.name.lower() if p.attach_type is not None else "-")
                + (f" {p.attach_to}" if p.attach_to else ""),
                str(len(p.instructions.instructions)),
            ]
            for p in chosen
        ],
        right=[4],
    )
    if spec.maps:
        out.line()
        out.heading("Maps")
        out.table(
            ["name", "type", "key", "value", "max_entries", "flags", "btf"],
            [
                [
                    m.name,
                    m.type.name.lower(),
                    str(m.key_size),
                    str(m.value_size),
                    str(m.max_entries),
                    hex(m.flags) if m.flags else "-",
                    " / ".join(
                        x
                        for x in (
                            _btf_type_name(m.btf, m.key_type_id),
                            _btf_type_name(m.btf, m.value_type_id),
                        )
                        if x
                    )
                    or "-",
                ]
                for m in spec.maps.values()
            ],
            right=[2, 3, 4],
        )
    if spec.variables:
        out.line()
        out.heading("Variables")
        out.table(
            ["name", "map", "offset", "size", "type"],
            [
                [
                    v.name,
                    v.map,
                    str(v.offset),
                    str(v.size),
                    (_btf_type_name(spec.btf, v.type_id) or "-") + (" (extern)" if v.extern else ""),
                ]
                for v in spec.variables.values()
            ],
            right=[2, 3],
        )
    if not no_disasm:
        for p in chosen:
            out.line()
            out.heading(f"{p.name} ({p.section}):")
            for line in program_listing(p, raw=raw):
                out.line(line)
