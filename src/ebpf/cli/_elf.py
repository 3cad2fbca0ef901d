"""CLI layer: the executable sections of a BPF ELF object, read with pyelftools, for display.

Rule 1: this is a reader for ``ebpf disasm`` / ``ebpf run`` only: section bytes, function
symbols and relocation counts, nothing is linked or relocated. (The object loader proper,
with maps and relocations, belongs to ``ebpf.elf``; the CLI switches to it once it exists.)

Rule 2: pyelftools exceptions (and the ``struct``/index errors a truncated file provokes)
never escape: they become :class:`~ebpf.errors.ELFError` with the file name.
"""

from __future__ import annotations

import io
import struct

from ebpf.cli._input import Section
from ebpf.errors import ELFError
from ebpf.isa import ByteOrder

__all__ = ["EM_BPF", "executable_sections"]

EM_BPF = 247  # e_machine of eBPF objects (EM_BPF in elf.h)
_SHF_EXECINSTR = 0x4
_SYMBOL_TYPES = ("STT_FUNC", "STT_NOTYPE")


def executable_sections(data: bytes, *, source: str, only: str | None = None) -> list[Section]:
    """The non-empty executable sections of an ELF object, in file order, with their symbols.

    Args:
        data: the ELF file.
        source: its name, for error messages.
        only: keep just the section with this name.

    Raises:
        ELFError: malformed ELF, not an eBPF object, or no section named ``only``.
    """
    from elftools.common.exceptions import ELFError as PyELFError
    from elftools.common.exceptions import ELFParseError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection
    from elftools.elf.sections import SymbolTableSection

    try:
        elf = ELFFile(io.BytesIO(data))
        machine = elf["e_machine"]
        if machine not in ("EM_BPF", EM_BPF):
            raise ELFError(f"not an eBPF object (machine {machine})", source=source)
        byteorder: ByteOrder = "little" if elf.little_endian else "big"
        sections: list[Section] = []
        all_names: list[str] = []
        relocations: dict[int, int] = {}
        for sec in elf.iter_sections():
            if isinstance(sec, RelocationSection) and sec["sh_size"]:
                target = sec["sh_info"]
                relocations[target] = relocations.get(target, 0) + sec.num_relocations()
        symbols: dict[int, list[tuple[int, str]]] = {}
        symtab = elf.get_section_by_name(".symtab")
        if isinstance(symtab, SymbolTableSection):
            for sym in symtab.iter_symbols():
                shndx = sym["st_shndx"]
                if isinstance(shndx, int) and sym.name and sym["st_info"]["type"] in _SYMBOL_TYPES:
                    symbols.setdefault(shndx, []).append((int(sym["st_value"]), sym.name))
        for index, sec in enumerate(elf.iter_sections()):
            if not sec["sh_flags"] & _SHF_EXECINSTR or not sec["sh_size"]:
                continue
            all_names.append(sec.name)
            if only is not None and sec.name != only:
                continue
            sections.append(
                Section(
                    name=sec.name,
                    data=bytes(sec.data()),
                    byteorder=byteorder,
                    symbols=sorted(set(symbols.get(index, []))),
                    relocations=relocations.get(index, 0),
                )
            )
    except (PyELFError, ELFParseError, struct.error, IndexError, ValueError, KeyError) as err:
        raise ELFError(f"malformed ELF file: {err}", source=source) from err
    if only is not None and not sections:
        have = ", ".join(repr(n) for n in all_names) or "none"
        raise ELFError(f"no executable section {only!r} (executable sections: {have})", source=source)
    return sections
