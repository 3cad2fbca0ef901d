"""Reader of bpf_conformance ``.data`` test files.

Pure: no kernel access. Reads files only when given a path.

A ``.data`` file is a sequence of sections, each opened by a line ``-- <name>``::

    -- asm      mnemonic assembly, see ebpf.isa.syntax_ubpf (kept verbatim, comments included)
    -- raw      bytecode: two-digit hex bytes ("b7 00 00 00 01 00 00 00"), or else only
                0x-prefixed numbers, one per 8-byte slot, each a little-endian 64-bit word
                ("0x00000001000000b7")
    -- mem      input memory, hex bytes separated by white space
    -- result   the expected r0: 0x-prefixed hex or decimal
    -- error    the expected error text; present but empty means "some error"
    -- c, -- no register offset, ...   anything else, kept verbatim in ``sections``

Rule 1: lines before the first section (licence header, description) are ignored, and a line
is a section header only when it starts with ``--`` followed by white space and a name (so
``--i;`` in a ``-- c`` section is content).

Rule 2: in ``raw``, ``mem`` and ``result`` sections a ``#`` starts a comment; ``asm`` keeps its
comments for the assembler; ``error`` is stripped and other sections are kept as written.

Rule 3: malformed ``raw`` / ``mem`` / ``result`` content and repeated sections raise
:class:`ebpf.errors.ParseError` naming the file and line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ebpf.errors import AssemblerError, ParseError
from ebpf.isa.program import Program
from ebpf.isa.syntax_ubpf import assemble_ubpf

__all__ = [
    "ENV_VAR",
    "ConformanceCase",
    "conformance_dir",
    "iter_cases",
    "parse_data_file",
    "parse_data_text",
    "program",
]

#: Environment variable naming the bpf_conformance data folder (the one holding ``tests/``).
ENV_VAR = "EBPF_CONFORMANCE_DIR"

_HEADER_RE = re.compile(r"--[ \t]+(\S.*?)\s*")
_KNOWN = ("asm", "raw", "mem", "result", "error")
_BYTE_RE = re.compile(r"(?:0[xX])?[0-9A-Fa-f]{1,2}")
_RAW_BYTE_RE = re.compile(r"[0-9A-Fa-f]{2}")
_WORD_RE = re.compile(r"0[xX][0-9A-Fa-f]{1,16}")


@dataclass(frozen=True)
class ConformanceCase:
    """One parsed ``.data`` file.

    Attributes:
        name: the file name without ``.data`` (or the name given for text).
        path: the file, or ``None`` when parsed from text.
        asm: the ``-- asm`` section text, or ``None`` when absent.
        raw: the ``-- raw`` bytecode, or ``None`` when absent.
        mem: the input memory (empty when there is no ``-- mem`` section).
        result: the expected r0, or ``None`` when there is no ``-- result`` section.
        error: the ``-- error`` text, stripped ("" when the section is empty), or ``None``.
        sections: every other section, name -> text (e.g. ``"c"``, ``"no register offset"``).
        asm_line: the 1-based file line where the ``asm`` text starts (0 when absent).
    """

    name: str
    path: Path | None
    asm: str | None
    raw: bytes | None
    mem: bytes
    result: int | None
    error: str | None
    sections: Mapping[str, str] = field(default_factory=dict, hash=False)
    asm_line: int = 0

    @property
    def expects_error(self) -> bool:
        """True when the test expects the program to be refused (an ``-- error`` section)."""
        return self.error is not None


def _strip_comment(line: str) -> str:
    return line.split("#", 1)[0]


def _fail(message: str, source: str, line: int) -> ParseError:
    return ParseError(f"line {line}: {message}", source=source)


def _parse_bytes(lines: list[tuple[int, str]], source: str, what: str, pattern: re.Pattern[str]) -> bytes:
    out = bytearray()
    for number, text in lines:
        for tok in _strip_comment(text).split():
            if not pattern.fullmatch(tok):
                raise _fail(f"{what}: expected hex bytes like '0a', found {tok!r}", source, number)
            out.append(int(tok, 16))
    return bytes(out)


def _parse_raw(lines: list[tuple[int, str]], source: str) -> bytes:
    toks = [tok for _, text in lines for tok in _strip_comment(text).split()]
    if toks and all(_WORD_RE.fullmatch(tok) for tok in toks):
        # bpf_conformance's older form: one 64-bit word per slot, stored in host (little) order.
        return b"".join(int(tok, 16).to_bytes(8, "little") for tok in toks)
    return _parse_bytes(lines, source, "raw", _RAW_BYTE_RE)


def _parse_result(lines: list[tuple[int, str]], source: str) -> int | None:
    values = [(number, tok) for number, text in lines for tok in _strip_comment(text).split()]
    if not values:
        return None
    number, tok = values[0]
    if len(values) > 1:
        raise _fail(f"result: expected one value, found also {values[1][1]!r}", source, values[1][0])
    try:
        value = int(tok, 16) if tok[:2] in ("0x", "0X") else int(tok, 10)
    except ValueError:
        raise _fail(f"result: expected a hex or decimal number, found {tok!r}", source, number) from None
    if not 0 <= value < 1 << 64:
        raise _fail(f"result: {tok} does not fit in 64 bits", source, number)
    return value


def parse_data_text(text: str, *, name: str = "<text>", path: Path | None = None) -> ConformanceCase:
    """Parse the contents of a ``.data`` file.

    Args:
        text: the file contents.
        name: the case name (the file name without ``.data``).
        path: the file the text came from, if any (kept in the case, used in errors).

    Raises:
        ParseError: malformed ``raw``, ``mem`` or ``result`` content, or a repeated section.
    """
    source = str(path) if path is not None else name
    sections: dict[str, list[tuple[int, str]]] = {}
    starts: dict[str, int] = {}
    current: list[tuple[int, str]] | None = None
    for number, raw_line in enumerate(text.split("\n"), start=1):
        line = raw_line.rstrip("\r")
        header = _HEADER_RE.fullmatch(line)
        if header is not None:
            section = header.group(1)
            if section in sections:
                raise _fail(
                    f"repeated section '-- {section}' (first on line {starts[section] - 1})", source, number
                )
            current = sections[section] = []
            starts[section] = number + 1
        elif current is not None:
            current.append((number, line))

    def body(section: str) -> str | None:
        lines = sections.get(section)
        return None if lines is None else "\n".join(text for _, text in lines)

    error = body("error")
    return ConformanceCase(
        name=name,
        path=path,
        asm=body("asm"),
        raw=_parse_raw(sections["raw"], source) if "raw" in sections else None,
        mem=_parse_bytes(sections.get("mem", []), source, "mem", _BYTE_RE),
        result=_parse_result(sections["result"], source) if "result" in sections else None,
        error=None if error is None else error.strip(),
        sections={k: "\n".join(t for _, t in v).strip("\n") for k, v in sections.items() if k not in _KNOWN},
        asm_line=starts.get("asm", 0),
    )


def parse_data_file(source: str | os.PathLike[str]) -> ConformanceCase:
    """Parse a ``.data`` file, given its path or its text.

    Args:
        source: a :class:`~pathlib.Path` (or other path-like) to read; a ``str`` is taken as
            file *contents* when it contains a newline and as a path otherwise.

    Raises:
        ParseError: malformed content (see :func:`parse_data_text`).
        OSError: the file cannot be read.
    """
    if isinstance(source, str) and "\n" in source:
        return parse_data_text(source)
    path = Path(source)
    name = path.name.removesuffix(".data")
    return parse_data_text(path.read_text(encoding="utf-8"), name=name, path=path)


def program(case: ConformanceCase) -> Program:
    """The program of a case: its ``-- raw`` bytecode if not empty (as the public runner
    does), else its assembled ``-- asm`` text.

    Raises:
        DecodeError: the raw bytecode is invalid (see :func:`ebpf.isa.encoding.decode`).
        AssemblerError: the assembly is invalid, or the case has no program at all; ``.line``
            is a line of the ``.data`` file and ``.source`` the file.
    """
    source = str(case.path) if case.path is not None else case.name
    if case.raw:
        return Program.from_bytes(case.raw, source=source)
    if case.asm is None:
        raise AssemblerError("no program: neither an '-- asm' nor a '-- raw' section", line=1, source=source)
    try:
        return assemble_ubpf(case.asm, source=source)
    except AssemblerError as err:
        raise AssemblerError(
            err.message, line=err.line + case.asm_line - 1, column=err.column, text=err.text, source=source
        ) from err


def iter_cases(directory: str | os.PathLike[str]) -> Iterator[ConformanceCase]:
    """Parse every ``*.data`` file of a folder, in name order.

    Raises:
        ParseError: a malformed file (the iteration stops there).
    """
    for path in sorted(Path(directory).glob("*.data")):
        yield parse_data_file(path)


def conformance_dir() -> Path | None:
    """The bpf_conformance data folder (the one holding ``tests/``), or ``None`` if not found.

    Looks at ``$EBPF_CONFORMANCE_DIR`` first, then for ``shared/conformance`` beside the
    repository this package is installed from (editable installs and checkouts).
    """
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env)
        return path if (path / "tests").is_dir() else None
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file() or (parent / ".git").exists():
            candidate = parent.parent / "shared" / "conformance"
            if (candidate / "tests").is_dir():
                return candidate
    return None
