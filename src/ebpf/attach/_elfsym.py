"""ELF lookups for user-space probes: library paths, symbol -> file offset, address -> offset.

Above the kernel line, but pure file reading (pyelftools); no system calls beyond open/read.

Rule 1: a uprobe offset is a *file* offset. A symbol's value is a virtual address; it is
mapped to the file through the ``PT_LOAD`` segment that contains it
(``offset = vaddr - p_vaddr + p_offset``), which is right for executables, PIE and shared
libraries alike.

Rule 2: ``.symtab`` is searched before ``.dynsym``; only defined ``FUNC``/``GNU_IFUNC``
symbols count (the first one found; symbol versions are not distinguished).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from ebpf.errors import ELFError

__all__ = ["elf_type", "find_library", "offset_to_address", "resolve_symbol", "vaddr_to_offset"]

_LIB_DIRS = (
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/local/lib",
)


def find_library(name: str, pid: int = -1) -> str:
    """The path of ``name``: itself when it contains ``/``, else a library named ``name`` (or
    ``lib<name>.so*``) mapped by ``pid`` or found in ``LD_LIBRARY_PATH`` and the standard dirs.

    Raises:
        FileNotFoundError: nothing found.
    """
    if "/" in name:
        if not os.path.exists(name):
            raise FileNotFoundError(f"no such file: {name!r}")
        return os.path.realpath(name)
    wanted = (name, f"lib{name}.so")
    if pid > 0:
        try:
            with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
                for line in f:
                    path = line.split(maxsplit=5)[-1].strip() if line.count(" ") >= 5 else ""
                    base = os.path.basename(path)
                    if path.startswith("/") and any(base == w or base.startswith(w + ".") for w in wanted):
                        return path
        except OSError:
            pass
    dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d] + list(_LIB_DIRS)
    for folder in dirs:
        try:
            entries = sorted(os.listdir(folder))
        except OSError:
            continue
        names = [w for w in wanted if w in entries]
        names += [e for e in entries if any(e.startswith(w + ".") for w in wanted)]
        for entry in names:  # "libc.so" may be a linker script: only ELF files count
            path = os.path.join(folder, entry)
            if _is_elf(path):
                return os.path.realpath(path)
    raise FileNotFoundError(
        f"library {name!r} not found (searched LD_LIBRARY_PATH and {', '.join(_LIB_DIRS)})"
    )


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _open(path: str):  # type: ignore[no-untyped-def]
    from elftools.common.exceptions import ELFError as PyELFError
    from elftools.elf.elffile import ELFFile

    f = open(path, "rb")  # noqa: SIM115 - closed by the caller's ``with``
    try:
        return f, ELFFile(f)
    except PyELFError as err:
        f.close()
        raise ELFError(f"not an ELF file: {err}", source=path) from None


def _segments(elf) -> Iterator[tuple[int, int, int, int]]:  # type: ignore[no-untyped-def]
    for seg in elf.iter_segments():
        if seg["p_type"] == "PT_LOAD":
            yield int(seg["p_vaddr"]), int(seg["p_memsz"]), int(seg["p_offset"]), int(seg["p_filesz"])


def vaddr_to_offset_in(elf, vaddr: int, path: str) -> int:  # type: ignore[no-untyped-def]
    """File offset of virtual address ``vaddr`` via the ``PT_LOAD`` segment holding it."""
    for start, memsz, offset, _filesz in _segments(elf):
        if start <= vaddr < start + memsz:
            return vaddr - start + offset
    raise ELFError(f"address {vaddr:#x} is in no PT_LOAD segment", source=path)


def vaddr_to_offset(path: str, vaddr: int) -> int:
    """File offset of virtual address ``vaddr`` in the ELF file ``path``."""
    f, elf = _open(path)
    with f:
        return vaddr_to_offset_in(elf, vaddr, path)


def resolve_symbol(path: str, symbol: str) -> int:
    """The file offset of function ``symbol`` in ELF file ``path``.

    Raises:
        ELFError: not an ELF file, or no defined function of that name.
    """
    if not symbol or "@" in symbol:
        raise ValueError(f"invalid symbol name {symbol!r} (symbol versions are not supported)")
    name = symbol
    f, elf = _open(path)
    with f:
        for section_name in (".symtab", ".dynsym"):
            section = elf.get_section_by_name(section_name)
            if section is None:
                continue
            for sym in section.iter_symbols():
                if sym.name != name:
                    continue
                if sym["st_info"]["type"] not in ("STT_FUNC", "STT_GNU_IFUNC", "STT_LOOS"):
                    continue
                if sym["st_shndx"] == "SHN_UNDEF" or not sym["st_value"]:
                    continue
                return vaddr_to_offset_in(elf, int(sym["st_value"]), path)
        raise ELFError(f"no function {symbol!r} in .symtab or .dynsym", source=path)


def elf_type(path: str) -> str:
    """``e_type`` of ELF file ``path``: ``"ET_EXEC"``, ``"ET_DYN"`` (PIE or library), ..."""
    f, elf = _open(path)
    with f:
        return str(elf["e_type"])


def offset_to_address(path: str, file_offset: int, pid: int) -> int:
    """Where ``file_offset`` of ``path`` is mapped in process ``pid`` (from ``/proc/<pid>/maps``).

    Raises:
        LookupError: the process does not map that part of the file.
    """
    real = os.path.realpath(path)
    st = os.stat(real)
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) < 6:
                continue
            start, end = (int(x, 16) for x in parts[0].split("-"))
            pgoff, inode = int(parts[2], 16), int(parts[4])
            mapped = parts[5].strip()
            if inode != st.st_ino and os.path.realpath(mapped) != real:
                continue
            if pgoff <= file_offset < pgoff + (end - start):
                return start + file_offset - pgoff
    raise LookupError(f"process {pid} does not map offset {file_offset:#x} of {real}")
