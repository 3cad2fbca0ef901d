"""Tests of ebpf.conformance.datafile, and the whole public bpf_conformance suite through it.

The suite lives in ../shared/conformance (or $EBPF_CONFORMANCE_DIR); the tests that need it
are skipped with a reason when it is absent, e.g. in a user's clone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ebpf.conformance import (
    ENV_VAR,
    ConformanceCase,
    conformance_dir,
    iter_cases,
    parse_data_file,
    parse_data_text,
    program,
)
from ebpf.errors import AssemblerError, DecodeError, ParseError
from ebpf.isa import decode, encode
from ebpf.isa.syntax_ubpf import assemble_ubpf, disassemble_ubpf

SUITE = conformance_dir()
SKIP_REASON = (
    f"bpf_conformance data not found: set {ENV_VAR} to the folder holding tests/ and negative/, "
    "or check it out as ../shared/conformance beside this repository"
)
needs_suite = pytest.mark.skipif(SUITE is None, reason=SKIP_REASON)


def _files(sub: str) -> list[object]:
    if SUITE is None:
        return [pytest.param(None, marks=pytest.mark.skip(reason=SKIP_REASON), id=f"{sub}-absent")]
    return [pytest.param(p, id=p.stem) for p in sorted((SUITE / sub).glob("*.data"))]


# --- The parser on hand-written text ------------------------------------------------------------

SAMPLE = """\
# Copyright header
# SPDX-License-Identifier: MIT
-- c
int main() { int i = 3; --i; return i; }
-- asm
mov %r0, %r2   # comment kept for the assembler
exit
-- mem
00 01 0a
ff
-- no register offset
call instruction
-- result
0x8
"""


def test_parse_sample() -> None:
    case = parse_data_text(SAMPLE, name="sample")
    assert case == ConformanceCase(
        name="sample",
        path=None,
        asm="mov %r0, %r2   # comment kept for the assembler\nexit",
        raw=None,
        mem=bytes([0, 1, 10, 255]),
        result=8,
        error=None,
        sections={"c": "int main() { int i = 3; --i; return i; }", "no register offset": "call instruction"},
        asm_line=6,
    )
    assert not case.expects_error
    assert [i.opcode for i in program(case)] == [0xBF, 0x95]


def test_error_section_empty_and_with_text() -> None:
    assert parse_data_text("-- raw\n95 00 00 00 00 00 00 00\n-- error\n").error == ""
    case = parse_data_text("-- asm\nexit\n-- error\n  Invalid register\n\n")
    assert case.error == "Invalid register"
    assert case.expects_error
    assert case.result is None


def test_raw_as_bytes_and_as_words() -> None:
    as_bytes = parse_data_text(
        "-- raw\n18 00 00 00 88 77 66 55\n00 00 00 00 44 33 22 11\n95 00 00 00 00 00 00 00\n"
    )
    as_words = parse_data_text("-- raw\n0x5566778800000018\n0x1122334400000000\n0x0000000000000095\n")
    assert as_bytes.raw == as_words.raw
    assert as_bytes.raw is not None and len(as_bytes.raw) == 24
    assert program(as_words)[0].imm == 0x1122334455667788


def test_raw_wins_over_asm_like_the_public_runner() -> None:
    case = parse_data_text("-- asm\nmov %r0, 1\nexit\n-- raw\n95 00 00 00 00 00 00 00\n")
    assert len(program(case)) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-- mem\n00 zz\n", "line 2: mem: expected hex bytes like '0a', found 'zz'"),
        ("-- raw\n0x1 07\n", "line 2: raw: expected hex bytes"),
        ("-- result\n0xg\n", "line 2: result: expected a hex or decimal number, found '0xg'"),
        ("-- result\n1\n2\n", "line 3: result: expected one value, found also '2'"),
        ("-- result\n0x10000000000000000\n", "does not fit in 64 bits"),
        ("-- asm\nexit\n-- asm\nexit\n", "line 3: repeated section '-- asm' (first on line 1)"),
    ],
)
def test_malformed_sections(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        parse_data_text(text, name="bad")
    assert info.value.source == "bad"


def test_comments_in_value_sections_and_decimal_result() -> None:
    case = parse_data_text("-- mem\n01 02 # two bytes\n-- result\n42 # answer\n")
    assert (case.mem, case.result) == (b"\x01\x02", 42)


def test_assembler_errors_point_into_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad_register.data"
    path.write_text("# header\n-- asm\nmov %r0, 1\n\nor %r0, %r50\nexit\n-- result\n0x1\n")
    case = parse_data_file(path)
    assert (case.name, case.path, case.asm_line) == ("bad_register", path, 3)
    with pytest.raises(AssemblerError) as info:
        program(case)
    err = info.value
    assert (err.line, err.column, err.text, err.source) == (5, 9, "or %r0, %r50", str(path))
    assert path.read_text().split("\n")[err.line - 1] == err.text


def test_parse_data_file_accepts_text_and_paths(tmp_path: Path) -> None:
    path = tmp_path / "x.data"
    path.write_text("-- asm\nexit\n")
    assert parse_data_file(str(path)).name == "x"
    assert parse_data_file(path).asm == "exit\n"
    assert parse_data_file("-- asm\nexit\n").asm == "exit\n"
    assert [c.name for c in iter_cases(tmp_path)] == ["x"]


def test_no_program_is_an_assembler_error() -> None:
    with pytest.raises(AssemblerError, match="neither an '-- asm' nor a '-- raw' section"):
        program(parse_data_text("# nothing\n-- result\n0x0\n", name="empty"))


def test_conformance_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert conformance_dir() is None  # no tests/ inside
    (tmp_path / "tests").mkdir()
    assert conformance_dir() == tmp_path


# --- The public suite: every positive case parses, assembles and round-trips ------------------


@needs_suite
def test_suite_size() -> None:
    assert SUITE is not None
    assert len(list((SUITE / "tests").glob("*.data"))) >= 313


@pytest.mark.parametrize("path", _files("tests"))
def test_suite_case_round_trips(path: Path) -> None:
    case = parse_data_file(path)
    assert case.asm is not None, "every positive case has an asm section"
    assert case.error is None and case.result is not None
    prog = assemble_ubpf(case.asm, source=str(path))
    assert program(case) == prog or case.raw is not None
    if case.raw is not None:  # lddw.data carries both: they must agree
        assert prog.encode() == case.raw
    text = disassemble_ubpf(prog)
    again = assemble_ubpf(text)
    assert again == prog
    assert disassemble_ubpf(again) == text
    assert decode(encode(prog.instructions)) == list(prog.instructions)
    for name in set(prog.labels.values()):
        assert f"\n{name}:\n" in "\n" + text


# --- The public suite's negative cases -----------------------------------------------------------

#: Refused by the assembler: (line, column) of the error in the .data file.
ASSEMBLER_ERRORS = {
    "empty": (1, 1),  # no section at all
    "empty_instructions": (1, 1),  # only "-- result"
    "invalid_imm32_dec_range": (5, 12),  # mov32 %r0, 2147483648 (decimal is signed)
    "invalid_imm32_hex_range": (5, 12),  # mov32 %r0, 0x100000000
    "invalid_label": (4, 4),  # ja NOT_A_LABEL
    "invalid_lock": (4, 1),  # lock or [%r10-8]  (one operand)
    "invalid_lock2": (4, 1),  # lock
    "invalid_mnemonic": (5, 1),  # ldxq %r0, %r1
    "invalid_offset": (4, 11),  # ldxb %r0, %r1  (no [..])
    "invalid_offset_range": (5, 15),  # ldxb %r0, [%r1+0x10000]
    "invalid_operand_count": (4, 1),  # lddw %r0
    "invalid_register": (4, 9),  # or %r0, %r50
    "invalid_unknown_directive": (4, 1),  # "-- Unknown directive" leaves "-- asm" empty
}
#: Valid programs the suite expects a runtime to refuse or to get "wrong".
RUNTIME_REFUSALS = {
    "error": "or %r0, %r10 reads r0 before it is written; expects an error mentioning 'Invalid'",
    "incorrect_return_value_high_bits": "valid; the expected result is deliberately wrong",
}


@pytest.mark.parametrize("path", _files("negative"))
def test_negative_case(path: Path) -> None:
    case = parse_data_file(path)
    name = case.name
    if name in ASSEMBLER_ERRORS:
        assert case.raw is None
        with pytest.raises(AssemblerError) as info:
            program(case)
        assert (info.value.line, info.value.column) == ASSEMBLER_ERRORS[name], str(info.value)
        assert info.value.source == str(path)
    elif name in RUNTIME_REFUSALS:
        assert len(program(case)) >= 2
    else:
        assert name.startswith("unused-"), f"unclassified negative case {name}"
        assert case.raw is not None and case.asm is None and case.error == ""
        with pytest.raises(DecodeError, match="reserved fields") as decode_info:
            decode(case.raw)
        assert decode_info.value.index == 0
        with pytest.raises(DecodeError):
            program(case)


@needs_suite
def test_negative_classification_is_complete() -> None:
    assert SUITE is not None
    names = {p.stem for p in (SUITE / "negative").glob("*.data")}
    assert set(ASSEMBLER_ERRORS) <= names
    assert set(RUNTIME_REFUSALS) <= names
    raw = names - set(ASSEMBLER_ERRORS) - set(RUNTIME_REFUSALS)
    assert raw and all(n.startswith("unused-") for n in raw)
