"""CLI layer: reading program and memory inputs (assembly text, raw or hex bytecode, ELF).

Rule 1: the input kind is detected from the content, never from the file name: ELF magic
-> ``elf``; UTF-8 text whose tokens are all hex bytes -> ``hex``; other NUL-free UTF-8 text
-> ``asm``; anything else -> ``raw``. ``--input-format`` overrides the guess.

Rule 2: hex text is what the bpf_conformance runner writes: hex bytes separated by spaces
or newlines; ``0x`` prefixes, commas and ``#`` comments are tolerated, and a token may hold
several bytes (``b700000000000000``).

Rule 3: when the syntax of assembly text is not given, both syntaxes are tried (LLVM first
unless the text looks like uBPF's ``%r`` registers); if both fail, the error of the one that
got further is reported.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import click

from ebpf.errors import AssemblerError, ParseError
from ebpf.isa import ByteOrder, Program, Syntax

__all__ = [
    "BYTEORDER_CHOICE",
    "InputFormat",
    "LoadedProgram",
    "Section",
    "assemble_text",
    "detect_format",
    "load_bytecode",
    "load_program",
    "parse_hex",
    "read_input",
]

ELF_MAGIC = b"\x7fELF"
BYTEORDER_CHOICE = click.Choice(["little", "big"])
_HEX_SEPARATORS = re.compile(r"[\s,]+")
_HEX_TOKEN = re.compile(r"(?:0[xX])?((?:[0-9a-fA-F]{2})+)")
_UBPF_HINT = re.compile(r"%r(?:[0-9]|10)\b")


class InputFormat(enum.Enum):
    """What an input file holds."""

    AUTO = "auto"
    ASM = "asm"
    RAW = "raw"
    HEX = "hex"
    ELF = "elf"


def read_input(path: str) -> bytes:
    """The bytes of ``path`` (``-`` for stdin)."""
    with click.open_file(path, "rb") as stream:
        data: bytes = stream.read()
    return data


def display_name(path: str) -> str:
    return "<stdin>" if path == "-" else path


def _strip_comments(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def _looks_like_hex(text: str) -> bool:
    tokens = [t for t in _HEX_SEPARATORS.split(_strip_comments(text)) if t]
    return all(_HEX_TOKEN.fullmatch(t) for t in tokens)  # comments only: empty hex


def detect_format(data: bytes) -> InputFormat:
    """Guess the kind of ``data`` (Rule 1)."""
    if data.startswith(ELF_MAGIC):
        return InputFormat.ELF
    if b"\0" not in data:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return InputFormat.RAW
        if not text.strip():
            return InputFormat.RAW  # empty: let the decoder report it
        return InputFormat.HEX if _looks_like_hex(text) else InputFormat.ASM
    return InputFormat.RAW


def _hex_tokens(text: str) -> Iterator[tuple[int, int, str, re.Match[str] | None]]:
    """(line, column, token, hex match or None) for each token of hex text."""
    for lineno, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0]
        for match in re.finditer(r"[^\s,]+", code):
            yield lineno, match.start() + 1, match.group(), _HEX_TOKEN.fullmatch(match.group())


def parse_hex(text: str, *, source: str | None = None) -> bytes:
    """Hex bytes (Rule 2) to bytes.

    Raises:
        ParseError: a token that is not a whole number of hex bytes.
    """
    out = bytearray()
    for lineno, column, token, hexmatch in _hex_tokens(text):
        if hexmatch is None:
            raise ParseError(f"line {lineno}, column {column}: not hex bytes: {token!r}", source=source)
        out += bytes.fromhex(hexmatch.group(1))
    return bytes(out)


def _decode_text(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ParseError(f"not UTF-8 text: {err.reason}", source=source, offset=err.start) from None


def assemble_text(text: str, syntax: Syntax | None, *, source: str) -> tuple[Program, Syntax]:
    """Assemble ``text`` in ``syntax``, or in whichever syntax reads it (Rule 3)."""
    from ebpf.isa import assemble

    if syntax is not None:
        return assemble(text, syntax, source=source), syntax
    order = [Syntax.UBPF, Syntax.LLVM] if _UBPF_HINT.search(text) else [Syntax.LLVM, Syntax.UBPF]
    errors: list[AssemblerError] = []
    for candidate in order:
        try:
            return assemble(text, candidate, source=source), candidate
        except AssemblerError as err:
            errors.append(err)
    # Both failed: the syntax that got further is most likely the intended one.
    best = max(errors, key=lambda e: (e.line, e.column))
    raise best


@dataclass
class Section:
    """Bytecode to show or run: a whole raw/hex file, or one executable ELF section."""

    name: str | None
    data: bytes
    byteorder: ByteOrder
    symbols: list[tuple[int, str]] = field(default_factory=list)  # (byte offset, name), sorted
    relocations: int = 0


def load_bytecode(
    data: bytes,
    fmt: InputFormat,
    *,
    source: str,
    byteorder: ByteOrder = "little",
    section: str | None = None,
) -> tuple[InputFormat, list[Section]]:
    """The bytecode sections of a raw, hex or ELF input (``fmt`` may be ``AUTO``).

    Raises:
        ParseError: bad hex text; ELFError: a malformed or non-BPF ELF file, or no such section.
    """
    if fmt is InputFormat.AUTO:
        fmt = detect_format(data)
    if fmt is InputFormat.ELF:
        from ebpf.cli._elf import executable_sections

        return fmt, executable_sections(data, source=source, only=section)
    if section is not None:
        raise ParseError("--section only applies to ELF objects", source=source)
    if fmt is InputFormat.ASM:
        bad = [
            f"{tok!r} at line {ln}, column {col}"
            for ln, col, tok, m in _hex_tokens(data.decode())
            if m is None
        ]
        raise ParseError(
            f"text that is not hex bytes ({bad[0] if bad else 'no hex'}); "
            "to assemble text use 'ebpf asm', to force the input kind use --input-format",
            source=source,
        )
    if fmt is InputFormat.HEX:
        data = parse_hex(_decode_text(data, source), source=source)
    if not data:
        raise ParseError("empty input: no instructions", source=source)
    return fmt, [Section(None, data, byteorder)]


def decode_section(sec: Section, *, source: str) -> Program:
    """Decode one section's bytecode. Raises DecodeError."""
    where = source if sec.name is None else f"{source}({sec.name})"
    return Program.from_bytes(sec.data, sec.byteorder, source=where)


@dataclass
class LoadedProgram:
    """A program read from a file, and how it was read."""

    program: Program
    format: InputFormat
    syntax: Syntax | None = None
    section: str | None = None


def load_program(
    data: bytes,
    fmt: InputFormat,
    *,
    source: str,
    syntax: Syntax | None = None,
    byteorder: ByteOrder = "little",
    section: str | None = None,
) -> LoadedProgram:
    """One runnable program from assembly text, raw/hex bytecode or an ELF section.

    Raises:
        AssemblerError, DecodeError, ParseError: the input is not a valid program.
    """
    if fmt is InputFormat.AUTO:
        fmt = detect_format(data)
    if fmt is InputFormat.ASM:
        program, used = assemble_text(_decode_text(data, source), syntax, source=source)
        return LoadedProgram(program, fmt, used)
    fmt, sections = load_bytecode(data, fmt, source=source, byteorder=byteorder, section=section)
    chosen = _pick_section(sections, source=source)
    if chosen.relocations:
        raise ParseError(
            f"section {chosen.name!r} has {chosen.relocations} relocation(s) (maps, globals or "
            "calls into other sections), which need a loader; only self-contained sections can run",
            source=source,
        )
    return LoadedProgram(decode_section(chosen, source=source), fmt, None, chosen.name)


def _pick_section(sections: Sequence[Section], *, source: str) -> Section:
    if len(sections) == 1:
        return sections[0]
    if not sections:
        raise ParseError("no executable section with code", source=source)
    names = ", ".join(repr(s.name) for s in sections)
    raise ParseError(f"several program sections ({names}); choose one with --section", source=source)
