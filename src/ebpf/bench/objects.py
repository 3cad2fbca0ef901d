"""The benchmark corpus: which programs exist, and reading one from its ELF object.

Tool layer: pure (pyelftools and the core's ISA), no kernel access.

Rule 1: the corpus lives in the repository's ``benchmarks/`` directory: ``obj/<name>.o``
(built from ``src/<name>.c`` by ``build.sh``) and ``inputs/<name>.in`` (written by
``src/mkinput.py``). Both are committed, so running a benchmark needs no compiler.

Rule 2: this is a minimal reader for these objects only: one program per object, in the
executable section named by its ``SEC()`` (``xdp``), with no relocations. An object that
needs more (maps, calls to other sections, global data) is refused with
:class:`~ebpf.errors.ELFError`; the general loader belongs to ``ebpf.elf``.

Rule 3: pyelftools errors (and the ``struct``/index errors a truncated file provokes) never
escape: they become :class:`~ebpf.errors.ELFError` naming the file.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from ebpf.errors import ELFError
from ebpf.isa.encoding import ByteOrder
from ebpf.isa.program import Program
from ebpf.spec import ProgramType

__all__ = [
    "COMPUTE_KERNELS",
    "PROGRAMS",
    "SECTION_TYPES",
    "Benchmark",
    "ObjectProgram",
    "default_bench_dir",
    "load_benchmark",
    "read_object",
]

PROGRAMS: tuple[str, ...] = (
    "nop",
    "add_mem",
    "log2",
    "primes",
    "switch",
    "checksum",
    "fnv1a",
    "memcpy",
    "strcmp",
    "collatz",
    "fib",
    "bsort",
)
"""Every benchmark, in the order of ``benchmarks/README.md``."""

COMPUTE_KERNELS: tuple[str, ...] = tuple(name for name in PROGRAMS if name not in ("nop", "add_mem"))
"""The ten compute kernels the geometric means are taken over (``nop`` and ``add_mem`` only
measure per-call overhead)."""

SECTION_TYPES: dict[str, ProgramType] = {"xdp": ProgramType.XDP}
"""Program section name -> program type, for the sections this reader accepts."""

EM_BPF = 247  # e_machine of eBPF objects (EM_BPF in elf.h)
_SHF_EXECINSTR = 0x4
_ENV_DIR = "EBPF_BENCH_DIR"


@dataclass(frozen=True)
class ObjectProgram:
    """The one program of a benchmark object.

    Attributes:
        program: the decoded bytecode.
        section: the ELF section it came from (its ``SEC()`` name).
        function: the function symbol at the start of the section ("" if none).
        type: the program type the section name implies.
    """

    program: Program
    section: str
    function: str
    type: ProgramType


@dataclass(frozen=True)
class Benchmark:
    """A benchmark: a program and the packet it runs on.

    Attributes:
        name: the benchmark name (``"fib"``).
        program: the program read from ``obj/<name>.o``.
        packet: the input packet, ``inputs/<name>.in``.
        path: the object file.
    """

    name: str
    program: ObjectProgram
    packet: bytes
    path: Path

    @property
    def is_compute_kernel(self) -> bool:
        """True for the ten kernels that enter the geometric means."""
        return self.name in COMPUTE_KERNELS


def default_bench_dir() -> Path:
    """Where the corpus is: ``$EBPF_BENCH_DIR``, else the ``benchmarks/`` directory of the
    source checkout this package runs from (an editable install), else ``./benchmarks``."""
    env = os.environ.get(_ENV_DIR)
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[3] / "benchmarks"
    if (checkout / "obj").is_dir():
        return checkout
    return Path("benchmarks")


def read_object(data: bytes, *, source: str, section: str | None = None) -> ObjectProgram:
    """Read the one program of a relocation-free eBPF object.

    Args:
        data: the ELF file.
        source: its name, for error messages.
        section: the program's section name; default: the only non-empty executable section.

    Raises:
        ELFError: malformed ELF, not eBPF, no such section (or more than one candidate),
            a section name with no known program type, or relocations against the program.
        DecodeError: the section holds invalid bytecode.
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
        candidates: list[tuple[int, str]] = []
        for index, sec in enumerate(elf.iter_sections()):
            if sec["sh_flags"] & _SHF_EXECINSTR and sec["sh_size"] and sec["sh_type"] == "SHT_PROGBITS":
                candidates.append((index, sec.name))
        if section is not None:
            candidates = [c for c in candidates if c[1] == section]
            if not candidates:
                raise ELFError(f"no executable section named {section!r}", source=source)
        if len(candidates) != 1:
            found = ", ".join(name for _, name in candidates) or "none"
            raise ELFError(f"expected one program section, found: {found}", source=source)
        index, name = candidates[0]
        prog_type = SECTION_TYPES.get(name)
        if prog_type is None:
            known = ", ".join(sorted(SECTION_TYPES))
            raise ELFError(f"section {name!r} has no known program type (known: {known})", source=source)
        for sec in elf.iter_sections():
            if isinstance(sec, RelocationSection) and sec["sh_info"] == index and sec.num_relocations():
                raise ELFError(
                    f"section {name!r} has {sec.num_relocations()} relocations; "
                    "the benchmark reader handles relocation-free programs only",
                    source=source,
                )
        function = ""
        symtab = elf.get_section_by_name(".symtab")
        if isinstance(symtab, SymbolTableSection):
            for sym in symtab.iter_symbols():
                if sym["st_shndx"] == index and sym["st_value"] == 0 and sym["st_info"]["type"] == "STT_FUNC":
                    function = sym.name
                    break
        code = elf.get_section(index).data()
        byteorder: ByteOrder = "little" if elf.little_endian else "big"
    except (PyELFError, ELFParseError, struct.error, IndexError, KeyError, ValueError) as err:
        if isinstance(err, ELFError):
            raise
        raise ELFError(f"malformed ELF object: {err}", source=source) from err
    program = Program.from_bytes(code, byteorder, source=f"{source}:{name}")
    return ObjectProgram(program, name, function, prog_type)


def load_benchmark(name: str, bench_dir: Path | None = None) -> Benchmark:
    """Read ``obj/<name>.o`` and ``inputs/<name>.in`` from the corpus directory.

    Args:
        name: a benchmark name (any object in ``obj/``, usually one of :data:`PROGRAMS`).
        bench_dir: the corpus directory (default: :func:`default_bench_dir`).

    Raises:
        FileNotFoundError: no such object or input (the message says where it looked).
        ELFError, DecodeError: see :func:`read_object`.
    """
    root = bench_dir if bench_dir is not None else default_bench_dir()
    obj = root / "obj" / f"{name}.o"
    inp = root / "inputs" / f"{name}.in"
    for path in (obj, inp):
        if not path.is_file():
            raise FileNotFoundError(
                f"benchmark {name!r}: {path} not found (set --dir or ${_ENV_DIR} to the benchmarks/ "
                "directory; benchmarks/build.sh rebuilds objects and inputs)"
            )
    program = read_object(obj.read_bytes(), source=str(obj))
    return Benchmark(name, program, inp.read_bytes(), obj)
