"""Load a BPF ELF object (as clang emits it for ``-target bpf``) into a CollectionSpec. Core layer. Pure.

::

    spec = load_collection_spec("xdp_fw.o")
    spec.programs["xdp_firewall"].instructions      # linked, relocations as placeholders
    spec.maps["blocklist"].type                     # MapType.LPM_TRIE

Rule 1: programs are the function symbols of executable sections other than ``.text``
(global ones always; static ones unless another function calls them). Functions of ``.text``
and called static functions are subprograms: each program gets a copy of every function it
reaches (calls, and ``lddw rX, func`` for callbacks), appended after its own body in libbpf's
order (depth first: a function's callees follow it, in order of first reference), with call
(``src 1``) and ``BPF_PSEUDO_FUNC`` (``src 4``) immediates set to the final relative slot
offsets. A program section with code but no function symbol is an error.

Rule 2: an ``lddw`` relocated against a map, global data or an extern keeps ``src 0`` and
``imm 0`` and is listed in :attr:`ProgramSpec.relocations` by slot (a data offset goes into
``Relocation.offset``); a call to an extern function (kfunc) becomes ``src 2``, ``imm 0``,
listed as ``KFUNC``.

Rule 3: global data sections (``.data``, ``.rodata``, ``.bss`` and their ``.``-suffixed
variants such as ``.rodata.str1.1``) become one ARRAY map each, named after the section;
``.kconfig`` externs get a map laid out like libbpf's (alignment descending, then size
ascending, then name).

Rule 4: each variable of ``.struct_ops`` / ``.struct_ops.link`` becomes a STRUCT_OPS map
(``BPF_F_LINK`` for the latter) whose ``contents`` hold the variable's bytes and whose
``slots`` map the *byte offset* of each function-pointer member to the program stored there.

Rule 5: a section name starting with ``?`` (``SEC("?xdp")``) gives a program with
``autoload=False`` and the ``?`` dropped from its section, as libbpf does.

Rule 6: the same bytes give an equal spec on every machine; bad input raises
:class:`~ebpf.errors.ELFError` (or :class:`~ebpf.errors.BTFError` for malformed BTF).
"""

from __future__ import annotations

import bisect
import dataclasses
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypeVar

from ebpf import btf
from ebpf.btf.ext import BTFExt, CoreRelo, FuncInfo, LineInfo, parse_btf_ext
from ebpf.elf import _maps
from ebpf.elf._reader import (
    SHN_LORESERVE,
    SHN_UNDEF,
    SHT_NOBITS,
    SHT_PROGBITS,
    STB_GLOBAL,
    STB_LOCAL,
    STB_WEAK,
    STT_FUNC,
    STT_NOTYPE,
    STT_OBJECT,
    STT_SECTION,
    ElfFile,
    RawSection,
    RawSymbol,
    read_elf,
)
from ebpf.elf.sections import section_type
from ebpf.errors import BTFError, DecodeError, ELFError
from ebpf.isa import Instruction, Program, decode
from ebpf.spec import (
    CollectionSpec,
    MapSpec,
    MapType,
    ProgramSpec,
    Relocation,
    RelocKind,
    VariableSpec,
)

__all__ = ["load_collection_spec"]

R_BPF_NONE = 0
R_BPF_64_64 = 1
R_BPF_64_ABS64 = 2
R_BPF_64_ABS32 = 3
R_BPF_64_NODYLD32 = 4
R_BPF_64_32 = 10

BPF_F_RDONLY_PROG = 1 << 7
BPF_F_MMAPABLE = 1 << 10
BPF_F_LINK = 1 << 13

_OP_LDDW = 0x18
_OP_CALL = 0x85
_PSEUDO_CALL = 1
_PSEUDO_KFUNC_CALL = 2
_PSEUDO_FUNC = 4

_KCONFIG = ".kconfig"

_R = TypeVar("_R", FuncInfo, LineInfo, CoreRelo)


def load_collection_spec(source: str | Path | bytes | bytearray | memoryview | BinaryIO) -> CollectionSpec:
    """Parse a BPF ELF object into a :class:`~ebpf.spec.CollectionSpec`.

    Args:
        source: a path, the file's bytes, or a binary file object.

    Returns:
        Programs (linked, placeholders listed in ``relocations``), maps (BTF ``.maps``,
        legacy ``maps``, global data, ``.kconfig``), variables, BTF, license and version.

    Raises:
        ELFError: the file is not a valid eBPF object, or its relocations, map definitions
            or sections are inconsistent.
        BTFError: the ``.BTF`` / ``.BTF.ext`` sections are malformed.
    """
    if isinstance(source, str | Path):
        name = str(source)
        try:
            data = Path(source).read_bytes()
        except OSError as err:
            raise ELFError(f"cannot read: {err.strerror or err}", source=name) from err
    elif isinstance(source, bytes | bytearray | memoryview):
        name, data = "<bytes>", bytes(source)
    else:
        name = str(getattr(source, "name", "<file>"))
        data = bytes(source.read())
    try:
        return _Loader(data, name).load()
    except (struct.error, IndexError, KeyError, ValueError, TypeError, OverflowError, RecursionError) as err:
        # Rule 6's safety net: an inconsistency no check above names is still an ELFError.
        raise ELFError(f"malformed object: {type(err).__name__}: {err}", source=name) from err


# --- functions and their references -------------------------------------------------------------


@dataclass(eq=False)
class _Func:
    """One function symbol of an executable section, decoded."""

    name: str
    section: RawSection
    start: int  # first slot in the section
    slots: int
    bind: int
    insns: list[Instruction]
    offsets: list[int]  # slot of each instruction, relative to the function
    # local slot -> reference: a function (call / lddw func) or a placeholder relocation
    calls: dict[int, _Func] = field(default_factory=dict)
    relocs: dict[int, Relocation] = field(default_factory=dict)
    index_of: dict[int, int] | None = None  # slot -> instruction index, built on first use


@dataclass
class _DataSection:
    section: RawSection
    datasec_id: int = 0


class _Loader:
    def __init__(self, data: bytes, source: str) -> None:
        self.source = source
        self.elf: ElfFile = read_elf(data, source)
        self.byteorder = self.elf.byteorder

    def fail(self, message: str) -> ELFError:
        return ELFError(message, source=self.source)

    # --- top level ------------------------------------------------------------------------

    def load(self) -> CollectionSpec:
        elf = self.elf
        license_ = self._license()
        version = self._version()
        self.btf = self._btf()
        self.data_sections = self._data_sections()
        maps: dict[str, MapSpec] = {}
        variables: dict[str, VariableSpec] = {}
        self.btf_map_at: dict[int, str] = {}  # offset in .maps -> map name
        self.legacy_map_at: dict[int, str] = {}
        maps_sec = elf.section_by_name(".maps")
        self.maps_index = maps_sec.index if maps_sec is not None else -1
        legacy_sec = elf.section_by_name("maps")
        self.legacy_index = legacy_sec.index if legacy_sec is not None else -1
        self.funcs = self._functions()
        if maps_sec is not None:
            for m in self._btf_maps(maps_sec):
                self._add_map(maps, m)
        if legacy_sec is not None:
            syms = [
                (s.name, s.value)
                for s in elf.symbols
                if s.shndx == legacy_sec.index and s.type in (STT_OBJECT, STT_NOTYPE) and s.name
            ]
            syms = sorted(set(syms), key=lambda s: s[1])
            for m in _maps.legacy_maps(legacy_sec.data, syms, self.byteorder, self.source):
                self._add_map(maps, m)
                self.legacy_map_at[dict(syms)[m.name]] = m.name
        for ds in self.data_sections.values():
            self._add_map(maps, self._data_map(ds, variables))
        for sec in elf.sections:
            if sec.name == ".struct_ops" or sec.name.startswith(".struct_ops."):
                for m in self._struct_ops_maps(sec):
                    self._add_map(maps, m)
        self.kconfig = self._kconfig(maps, variables)
        self._collect_references()
        programs = self._programs(license_, version)
        return CollectionSpec(
            programs=programs,
            maps=maps,
            variables=variables,
            btf=self.btf,
            license=license_,
            kernel_version=version,
            byteorder=self.byteorder,
        )

    def _add_map(self, maps: dict[str, MapSpec], m: MapSpec) -> None:
        if m.name in maps:
            raise self.fail(f"two maps named {m.name!r}")
        maps[m.name] = m

    # --- simple sections -------------------------------------------------------------------

    def _license(self) -> str:
        sec = self.elf.section_by_name("license")
        if sec is None:
            return ""
        return sec.data.split(b"\0", 1)[0].decode("utf-8", "replace")

    def _version(self) -> int:
        sec = self.elf.section_by_name("version")
        if sec is None:
            return 0
        if sec.size != 4:
            raise self.fail(f"'version' section is {sec.size} bytes, want 4")
        return int.from_bytes(sec.data, self.byteorder)

    def _symbol(self, index: int) -> RawSymbol:
        return self.elf.symbols[index]

    # --- BTF ---------------------------------------------------------------------------------

    def _btf(self) -> btf.Spec | None:
        sec = self.elf.section_by_name(".BTF")
        if sec is None:
            return None
        raw = bytearray(sec.data)
        fmt = "<I" if self.byteorder == "little" else ">I"
        for rel in self.elf.relocations.get(sec.index, []):
            if rel.type not in (R_BPF_64_ABS32, R_BPF_64_NODYLD32):
                raise self.fail(f".BTF: unsupported relocation type {rel.type} at {rel.offset:#x}")
            if rel.offset + 4 > len(raw):
                raise self.fail(f".BTF: relocation at {rel.offset:#x} beyond the section")
            sym = self._symbol(rel.symbol)
            old = struct.unpack_from(fmt, raw, rel.offset)[0]
            struct.pack_into(fmt, raw, rel.offset, (old + sym.value) & 0xFFFFFFFF)
        spec = btf.Spec.from_bytes(bytes(raw), byteorder=self.byteorder, source=f"{self.source}: .BTF")
        # Datasec sizes are 0 in the object; the ELF section sizes are the truth (libbpf fixup).
        types = list(spec.types)
        changed = False
        for i, t in enumerate(types):
            if isinstance(t, btf.Datasec) and t.size == 0:
                esec = self.elf.section_by_name(t.name)
                if esec is not None and esec.size:
                    types[i] = btf.Datasec(t.name, esec.size, t.vars)
                    changed = True
        # Global functions with hidden or internal visibility (``__hidden``, as libbpf's
        # usdt.bpf.h declares bpf_usdt_arg) are static to the verifier: libbpf marks their
        # BTF FUNC static when it opens the object, so they are checked in their caller's
        # context instead of on their own.
        hidden = {
            sym.name
            for sym in self.elf.symbols
            if sym.type == STT_FUNC and sym.bind in (STB_GLOBAL, STB_WEAK) and sym.visibility in (1, 2)
        }
        if hidden:
            for i, t in enumerate(types):
                if isinstance(t, btf.Func) and t.name in hidden and t.linkage == btf.FuncLinkage.GLOBAL:
                    types[i] = btf.Func(t.name, t.type, btf.FuncLinkage.STATIC)
                    changed = True
        if changed:
            spec = btf.Spec(types, strings=spec.strings, byteorder=spec.byteorder)
        return spec

    def _datasec_id(self, name: str) -> int:
        if self.btf is None:
            return 0
        for type_id in self.btf.ids_by_name(name):
            if isinstance(self.btf[type_id], btf.Datasec):
                return type_id
        return 0

    # --- global data -------------------------------------------------------------------------

    def _data_sections(self) -> dict[int, _DataSection]:
        out: dict[int, _DataSection] = {}
        for sec in self.elf.sections:
            if sec.type not in (SHT_PROGBITS, SHT_NOBITS) or not sec.size or sec.executable:
                continue
            n = sec.name
            if n in (".data", ".rodata", ".bss") or n.startswith((".data.", ".rodata.", ".bss.")):
                out[sec.index] = _DataSection(sec, self._datasec_id(n))
        return out

    def _data_map(self, ds: _DataSection, variables: dict[str, VariableSpec]) -> MapSpec:
        sec = ds.section
        readonly = sec.name.startswith(".rodata")
        flags = BPF_F_RDONLY_PROG if readonly else 0
        mmapable = False
        value = bytes(sec.size) if sec.type == SHT_NOBITS else sec.data
        if ds.datasec_id and self.btf is not None:
            datasec = self.btf[ds.datasec_id]
            assert isinstance(datasec, btf.Datasec)
            for vsi in datasec.vars:
                var = self.btf[vsi.type]
                if not isinstance(var, btf.Var):
                    continue
                if var.linkage != btf.VarLinkage.STATIC:
                    mmapable = True
                if vsi.offset + vsi.size > sec.size:
                    raise self.fail(f"variable {var.name!r} lies beyond section {sec.name!r}")
                variables.setdefault(
                    var.name, VariableSpec(var.name, sec.name, vsi.offset, vsi.size, var.type)
                )
        else:
            for sym in self.elf.symbols:
                if sym.shndx == sec.index and sym.type == STT_OBJECT and sym.name:
                    if sym.value + sym.size > sec.size:
                        raise self.fail(f"symbol {sym.name!r} lies beyond section {sec.name!r}")
                    variables.setdefault(sym.name, VariableSpec(sym.name, sec.name, sym.value, sym.size))
        if mmapable:
            flags |= BPF_F_MMAPABLE
        return MapSpec(
            name=sec.name,
            type=MapType.ARRAY,
            key_size=4,
            value_size=sec.size,
            max_entries=1,
            flags=flags,
            value_type_id=ds.datasec_id,
            btf=self.btf,
            contents=[(bytes(4), value)],
            freeze=readonly,
            section=sec.name,
        )

    def _kconfig(self, maps: dict[str, MapSpec], variables: dict[str, VariableSpec]) -> dict[str, int]:
        """Lay out the ``.kconfig`` externs; returns name -> offset."""
        sec_id = self._datasec_id(_KCONFIG)
        if not sec_id or self.btf is None:
            return {}
        spec = self.btf
        datasec = spec[sec_id]
        assert isinstance(datasec, btf.Datasec)
        weak = {s.name for s in self.elf.symbols if s.shndx == SHN_UNDEF and s.bind == STB_WEAK}
        externs = []
        for vsi in datasec.vars:
            var = spec[vsi.type]
            if not isinstance(var, btf.Var):
                raise self.fail(f".kconfig entry {vsi.type} is not a variable")
            try:
                size, align = spec.sizeof(var.type), spec.alignof(var.type)
            except (BTFError, ValueError, KeyError, IndexError) as err:
                raise self.fail(f".kconfig extern {var.name!r}: {err}") from err
            if size <= 0 or align <= 0:
                raise self.fail(f".kconfig extern {var.name!r} has no size")
            externs.append((var.name, size, align, var.type))
        externs.sort(key=lambda e: (-e[2], e[1], e[0]))  # libbpf: alignment down, size up, then name
        offsets: dict[str, int] = {}
        off = 0
        for ename, size, align, type_id in externs:
            off = (off + align - 1) // align * align
            offsets[ename] = off
            if ename in variables:
                raise self.fail(f".kconfig extern {ename!r} clashes with a variable of the same name")
            variables[ename] = VariableSpec(
                ename, _KCONFIG, off, size, type_id, extern=True, weak=ename in weak
            )
            off += size
        if not externs:
            return {}
        self._add_map(
            maps,
            MapSpec(
                name=_KCONFIG,
                type=MapType.ARRAY,
                key_size=4,
                value_size=off,
                max_entries=1,
                flags=BPF_F_RDONLY_PROG | BPF_F_MMAPABLE,
                value_type_id=sec_id,
                btf=spec,
                contents=[(bytes(4), bytes(off))],
                freeze=True,
                section=_KCONFIG,
            ),
        )
        return offsets

    # --- struct_ops --------------------------------------------------------------------------

    def _struct_ops_maps(self, sec: RawSection) -> list[MapSpec]:
        """``SEC(".struct_ops")`` / ``SEC(".struct_ops.link")`` variables: one STRUCT_OPS map
        each; ``slots`` maps the byte offset of each function-pointer member to its program."""
        if self.btf is None:
            raise self.fail(f"{sec.name!r} section without BTF (compile with -g)")
        datasec_id = self._datasec_id(sec.name)
        if not datasec_id:
            raise self.fail(f"{sec.name!r} section without a BTF Datasec")
        datasec = self.btf[datasec_id]
        assert isinstance(datasec, btf.Datasec)
        programs = self._program_names()
        targets: dict[int, str] = {}
        for rel in self.elf.relocations.get(sec.index, []):
            if rel.type not in (R_BPF_64_ABS64, R_BPF_64_ABS32):
                raise self.fail(f"{sec.name}: unsupported relocation type {rel.type} at {rel.offset:#x}")
            sym = self._symbol(rel.symbol)
            if sym.name not in programs:
                raise self.fail(
                    f"{sec.name}: relocation at {rel.offset:#x} to {sym.name!r}, which is not a program"
                )
            targets[rel.offset] = sym.name
        maps = []
        flags = BPF_F_LINK if sec.name != ".struct_ops" else 0
        for vsi in sorted(datasec.vars, key=lambda v: v.offset):
            var = self.btf[vsi.type]
            if not isinstance(var, btf.Var):
                raise self.fail(f"{sec.name}: entry {vsi.type} is not a variable")
            if vsi.offset + vsi.size > sec.size:
                raise self.fail(f"{sec.name}: variable {var.name!r} lies beyond the section")
            value_id = self.btf.resolve_id(var.type)
            if not isinstance(self.btf[value_id], btf.Struct):
                raise self.fail(f"struct_ops {var.name!r} is not a struct")
            slots = {
                off - vsi.offset: name
                for off, name in targets.items()
                if vsi.offset <= off < vsi.offset + vsi.size
            }
            maps.append(
                MapSpec(
                    name=var.name,
                    type=MapType.STRUCT_OPS,
                    key_size=4,
                    value_size=vsi.size,
                    max_entries=1,
                    flags=flags,
                    value_type_id=value_id,
                    btf=self.btf,
                    contents=[(bytes(4), sec.data[vsi.offset : vsi.offset + vsi.size])],
                    slots=dict(sorted(slots.items())),
                    section=sec.name,
                )
            )
        covered = {off for m in maps for off in m.slots}
        if len(covered) != len(targets):
            raise self.fail(f"{sec.name}: relocations outside every struct_ops variable")
        return maps

    # --- BTF maps ----------------------------------------------------------------------------

    def _btf_maps(self, sec: RawSection) -> list[MapSpec]:
        if self.btf is None:
            raise self.fail("'.maps' section without BTF (compile with -g)")
        values: dict[int, str] = {}
        for rel in self.elf.relocations.get(sec.index, []):
            if rel.type not in (R_BPF_64_ABS64, R_BPF_64_ABS32):
                raise self.fail(f".maps: unsupported relocation type {rel.type} at {rel.offset:#x}")
            sym = self._symbol(rel.symbol)
            if not sym.name or sym.type == STT_SECTION:
                raise self.fail(f".maps: relocation at {rel.offset:#x} against an unnamed symbol")
            values[rel.offset] = sym.name
        maps = _maps.btf_maps(self.btf, sec.size, self.source, values.get)
        for m in maps:
            for slot, target in m.slots.items():
                want_prog = m.type == MapType.PROG_ARRAY
                if want_prog and target not in self._program_names():
                    raise self.fail(f"map {m.name!r} slot {slot}: {target!r} is not a program")
                if not want_prog and target not in {x.name for x in maps}:
                    raise self.fail(f"map {m.name!r} slot {slot}: {target!r} is not a map")
        datasec = self._datasec_id(".maps")
        if datasec:
            ds = self.btf[datasec]
            assert isinstance(ds, btf.Datasec)
            for vsi in ds.vars:
                var = self.btf[vsi.type]
                if isinstance(var, btf.Var):
                    self.btf_map_at[vsi.offset] = var.name
        return maps

    # --- functions ---------------------------------------------------------------------------

    def _functions(self) -> dict[tuple[int, int], _Func]:
        """Every function of every executable section, keyed by (section index, start slot)."""
        by_section: dict[int, list[RawSymbol]] = {}
        for sym in self.elf.symbols:
            if sym.type == STT_FUNC and 0 < sym.shndx < SHN_LORESERVE:
                sec = self.elf.section(sym.shndx)
                if sec is None:
                    raise self.fail(f"function {sym.name!r} in section {sym.shndx}, which does not exist")
                if not sec.executable:
                    raise self.fail(f"function {sym.name!r} in non-executable section {sec.name!r}")
                by_section.setdefault(sym.shndx, []).append(sym)
        for sec in self.elf.sections:
            # (a .text without symbols has no subprogram anyone can call: no error)
            unnamed = sec.executable and sec.size and sec.type == SHT_PROGBITS and sec.index not in by_section
            if unnamed and sec.name != ".text":
                raise self.fail(f"section {sec.name!r} holds code but no function symbol")
        funcs: dict[tuple[int, int], _Func] = {}
        for shndx in sorted(by_section):
            sec = self.elf.sections[shndx]
            if sec.size % 8:
                raise self.fail(f"section {sec.name!r}: size {sec.size} is not a multiple of 8")
            try:
                insns = decode(sec.data, self.byteorder, source=f"{self.source}: {sec.name}")
            except DecodeError as err:
                raise ELFError(f"section {sec.name!r}: {err}", source=self.source) from err
            slot_of: list[int] = []
            slot = 0
            for insn in insns:
                slot_of.append(slot)
                slot += insn.slots
            index_of = {s: i for i, s in enumerate(slot_of)}
            syms = sorted(by_section[shndx], key=lambda s: (s.value, s.name))
            starts = sorted({s.value for s in syms})
            for sym in syms:
                if sym.value % 8 or sym.value >= sec.size:
                    raise self.fail(f"function {sym.name!r} at offset {sym.value:#x} is outside {sec.name!r}")
                start = sym.value // 8
                key = (shndx, start)
                if key in funcs:
                    continue  # an alias of a function already seen
                nxt = bisect.bisect_right(starts, sym.value)
                end = starts[nxt] // 8 if nxt < len(starts) else sec.size // 8
                if sym.size:
                    if sym.size % 8 or sym.value + sym.size > sec.size:
                        raise self.fail(f"function {sym.name!r} has a bad size {sym.size}")
                    end = min(end, start + sym.size // 8)
                if start not in index_of or (end < sec.size // 8 and end not in index_of):
                    raise self.fail(f"function {sym.name!r} does not start or end on an instruction")
                first = index_of[start]
                last = index_of[end] if end in index_of else len(insns)
                funcs[key] = _Func(
                    name=sym.name,
                    section=sec,
                    start=start,
                    slots=end - start,
                    bind=sym.bind,
                    insns=list(insns[first:last]),
                    offsets=[s - start for s in slot_of[first:last]],
                )
        return funcs

    def _program_names(self) -> set[str]:
        return {f.name for f in self.funcs.values() if f.section.name != ".text"}

    def _func_at(self, shndx: int, byte_off: int, what: str) -> _Func:
        sec = self.elf.section(shndx)
        secname = sec.name if sec is not None else str(shndx)
        if byte_off % 8:
            raise self.fail(f"{what}: target offset {byte_off:#x} in {secname!r} is not an instruction")
        func = self.funcs.get((shndx, byte_off // 8))
        if func is None:
            raise self.fail(f"{what}: no function at offset {byte_off:#x} of {secname!r}")
        return func

    @staticmethod
    def _containing(funcs: list[_Func], starts: list[int], slot: int) -> _Func | None:
        """The function (``funcs`` sorted by start, ``starts`` their starts) holding ``slot``."""
        i = bisect.bisect_right(starts, slot) - 1
        if i >= 0 and funcs[i].start <= slot < funcs[i].start + funcs[i].slots:
            return funcs[i]
        return None

    def _collect_references(self) -> None:
        """Resolve every relocation and local call of every function."""
        func_by_slot: dict[int, list[_Func]] = {}
        for f in self.funcs.values():
            func_by_slot.setdefault(f.section.index, []).append(f)
        for funcs in func_by_slot.values():
            funcs.sort(key=lambda f: f.start)
        starts = {shndx: [f.start for f in funcs] for shndx, funcs in func_by_slot.items()}
        exec_sections = {f.section.index for f in self.funcs.values()}
        for shndx in sorted(exec_sections):
            sec = self.elf.sections[shndx]
            for rel in self.elf.relocations.get(shndx, []):
                where = f"section {sec.name!r} offset {rel.offset:#x}"
                if rel.offset % 8:
                    raise self.fail(f"relocation at {where} is not on an instruction")
                func = self._containing(func_by_slot[shndx], starts[shndx], rel.offset // 8)
                if func is None:
                    raise self.fail(f"relocation at {where} is outside every function")
                local = rel.offset // 8 - func.start
                if func.index_of is None:
                    func.index_of = {slot: i for i, slot in enumerate(func.offsets)}
                idx = func.index_of.get(local, -1)
                if idx < 0:
                    raise self.fail(f"relocation at {where} points into the middle of an lddw")
                insn = func.insns[idx]
                sym = self._symbol(rel.symbol)
                self._resolve(func, idx, local, insn, sym, rel.type, where)
        # calls the compiler resolved itself (same section, no relocation)
        for func in self.funcs.values():
            for idx, insn in enumerate(func.insns):
                local = func.offsets[idx]
                if local in func.calls or local in func.relocs:
                    continue
                if insn.opcode == _OP_CALL and insn.src == _PSEUDO_CALL:
                    target = func.start + local + 1 + insn.imm
                    func.calls[local] = self._func_at(
                        func.section.index, target * 8, f"call in {func.name!r} at slot {local}"
                    )

    def _resolve(
        self, func: _Func, idx: int, local: int, insn: Instruction, sym: RawSymbol, rtype: int, where: str
    ) -> None:
        weak = sym.bind == STB_WEAK
        if insn.opcode == _OP_LDDW:
            if rtype != R_BPF_64_64:
                raise self.fail(f"relocation type {rtype} on lddw at {where}, want R_BPF_64_64")
            addend = insn.imm & 0xFFFFFFFF
            if addend >= 1 << 31:
                addend -= 1 << 32
            if sym.shndx == SHN_UNDEF:
                if not sym.name:
                    raise self.fail(f"relocation at {where} against an undefined unnamed symbol")
                if sym.name in self.kconfig:
                    func.relocs[local] = Relocation(
                        RelocKind.MAP_VALUE, _KCONFIG, self.kconfig[sym.name], weak
                    )
                else:
                    func.relocs[local] = Relocation(RelocKind.KSYM, sym.name, 0, weak)
                return
            if sym.shndx >= SHN_LORESERVE:
                raise self.fail(f"relocation at {where} against special symbol {sym.name!r}")
            target = self.elf.section(sym.shndx)
            if target is None:
                raise self.fail(f"relocation at {where}: symbol {sym.name!r} in missing section {sym.shndx}")
            if target.executable:
                func.calls[local] = self._func_at(
                    sym.shndx, sym.value + addend, f"lddw of a function at {where}"
                )
                return
            if sym.shndx == self.maps_index:
                off = sym.value + (addend if sym.type == STT_SECTION else 0)
                name = self.btf_map_at.get(off)
                if name is None:
                    raise self.fail(f"relocation at {where}: no map at offset {off:#x} of '.maps'")
                func.relocs[local] = Relocation(RelocKind.MAP, name)
                return
            if sym.shndx == self.legacy_index:
                off = sym.value + (addend if sym.type == STT_SECTION else 0)
                name = self.legacy_map_at.get(off)
                if name is None:
                    raise self.fail(f"relocation at {where}: no map at offset {off:#x} of 'maps'")
                func.relocs[local] = Relocation(RelocKind.MAP, name)
                return
            if sym.shndx in self.data_sections:
                off = sym.value + addend
                if not 0 <= off <= target.size:
                    raise self.fail(f"relocation at {where}: offset {off:#x} beyond {target.name!r}")
                func.relocs[local] = Relocation(RelocKind.MAP_VALUE, target.name, off)
                return
            raise self.fail(
                f"relocation at {where}: symbol {sym.name or target.name!r} is in section {target.name!r}, "
                "which holds no map, data or code"
            )
        if insn.opcode == _OP_CALL:
            if rtype != R_BPF_64_32:
                raise self.fail(f"relocation type {rtype} on call at {where}, want R_BPF_64_32")
            if insn.src != _PSEUDO_CALL:
                raise self.fail(f"relocation at {where} on a helper call (src {insn.src})")
            if sym.shndx == SHN_UNDEF:
                if not sym.name:
                    raise self.fail(f"call at {where} to an undefined unnamed symbol")
                func.relocs[local] = Relocation(RelocKind.KFUNC, sym.name, 0, weak)
                return
            target = self.elf.section(sym.shndx) if sym.shndx < SHN_LORESERVE else None
            if target is None or not target.executable:
                raise self.fail(f"call at {where} to {sym.name!r}, which is not code")
            func.calls[local] = self._func_at(sym.shndx, sym.value + (insn.imm + 1) * 8, f"call at {where}")
            return
        raise self.fail(f"relocation at {where} on an instruction that is neither lddw nor call")

    # --- programs ----------------------------------------------------------------------------

    def _programs(self, license_: str, version: int) -> dict[str, ProgramSpec]:
        called = {id(t) for f in self.funcs.values() for t in f.calls.values()}
        ext = self._btf_ext()
        programs: dict[str, ProgramSpec] = {}
        for (_shndx, _start), func in sorted(self.funcs.items()):
            secname = func.section.name
            if secname == ".text":
                continue
            if func.bind == STB_LOCAL and id(func) in called:
                continue
            if func.bind not in (STB_LOCAL, STB_GLOBAL, STB_WEAK):
                continue
            if func.name in programs:
                raise self.fail(f"two programs named {func.name!r}")
            insns, relocs, layout = self._link(func)
            # libbpf: SEC("?xdp") is an xdp program that is not loaded unless asked for
            autoload = not secname.startswith("?")
            secname = secname.removeprefix("?")
            st = section_type(secname)
            prog = ProgramSpec(
                name=func.name,
                section=secname,
                autoload=autoload,
                type=st.type,
                instructions=Program(insns),
                attach_type=st.attach_type,
                attach_to=st.attach_to,
                license=license_,
                kernel_version=version,
                flags=st.flags,
                relocations=relocs,
                btf=self.btf,
            )
            if ext is not None:
                self._rebase_ext(prog, ext, layout)
            programs[func.name] = prog
        return programs

    def _link(self, entry: _Func) -> tuple[list[Instruction], dict[int, Relocation], list[tuple[_Func, int]]]:
        # libbpf's order: depth first, a callee right after the first reference to it is met
        layout: list[_Func] = [entry]
        start: dict[int, int] = {id(entry): 0}
        total = entry.slots
        stack = [iter(sorted(entry.calls.items()))]
        while stack:
            step = next(stack[-1], None)
            if step is None:
                stack.pop()
                continue
            target = step[1]
            if id(target) not in start:
                start[id(target)] = total
                total += target.slots
                layout.append(target)
                stack.append(iter(sorted(target.calls.items())))
        insns: list[Instruction] = []
        relocs: dict[int, Relocation] = {}
        for f in layout:
            base = start[id(f)]
            for insn, local in zip(f.insns, f.offsets, strict=True):
                slot = base + local
                if local in f.calls:
                    rel = start[id(f.calls[local])] - (slot + 1)
                    if insn.opcode == _OP_LDDW:
                        insn = Instruction(insn.opcode, insn.dst, _PSEUDO_FUNC, insn.offset, rel & 0xFFFFFFFF)
                    else:
                        insn = Instruction(insn.opcode, insn.dst, _PSEUDO_CALL, insn.offset, rel)
                elif local in f.relocs:
                    reloc = f.relocs[local]
                    relocs[slot] = Relocation(reloc.kind, reloc.symbol, reloc.offset, reloc.weak)
                    if reloc.kind is RelocKind.KFUNC:
                        insn = Instruction(insn.opcode, insn.dst, _PSEUDO_KFUNC_CALL, insn.offset, 0)
                    else:
                        insn = Instruction(insn.opcode, insn.dst, 0, insn.offset, 0)
                insns.append(insn)
        return insns, relocs, [(f, start[id(f)]) for f in layout]

    # --- .BTF.ext ----------------------------------------------------------------------------

    def _btf_ext(self) -> BTFExt | None:
        sec = self.elf.section_by_name(".BTF.ext")
        if sec is None or self.btf is None:
            return None
        return parse_btf_ext(sec.data, self.btf, self.byteorder)

    def _rebase_ext(self, prog: ProgramSpec, ext: BTFExt, layout: list[tuple[_Func, int]]) -> None:
        """Records of every function in the program, moved to the function's final slots."""

        def rebase(by_section: Mapping[str, Sequence[_R]]) -> list[_R]:
            out: list[_R] = []
            for func, base in layout:
                for rec in by_section.get(func.section.name, ()):
                    if func.start <= rec.insn < func.start + func.slots:
                        out.append(dataclasses.replace(rec, insn=base + rec.insn - func.start))
            out.sort(key=lambda r: r.insn)
            return out

        prog.func_info = rebase(ext.func_info)
        prog.line_info = rebase(ext.line_info)
        prog.core_relos = rebase(ext.core_relos)
