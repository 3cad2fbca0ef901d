"""``ebpf asm``: assembly text to raw or hex bytecode."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

Invoke = Callable[..., Result]

LLVM = "r0 = 42\nexit\n"
UBPF = "mov %r0, 42\nexit\n"
CODE = bytes.fromhex("b70000002a0000009500000000000000")
HEX = "b7 00 00 00 2a 00 00 00\n95 00 00 00 00 00 00 00\n"


def test_default_output_is_file_with_bin_suffix(invoke: Invoke, tmp_path: Path) -> None:
    src = tmp_path / "prog.s"
    src.write_text(LLVM)
    result = invoke("asm", str(src))
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "prog.bin").read_bytes() == CODE
    assert result.stdout == f"{src}: 2 instructions (2 slots, 16 bytes) -> {tmp_path / 'prog.bin'}\n"


def test_hex_format_defaults_to_hex_suffix(invoke: Invoke, tmp_path: Path) -> None:
    src = tmp_path / "prog.s"
    src.write_text(LLVM)
    result = invoke("asm", str(src), "--format", "hex")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "prog.hex").read_text() == HEX


def test_explicit_output_file(invoke: Invoke, tmp_path: Path) -> None:
    src = tmp_path / "prog.s"
    src.write_text(LLVM)
    out = tmp_path / "out.o"
    result = invoke("asm", str(src), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes() == CODE


def test_stdout_is_hex_by_default(invoke: Invoke, tmp_path: Path) -> None:
    src = tmp_path / "prog.s"
    src.write_text(LLVM)
    result = invoke("asm", str(src), "-o", "-")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == HEX
    assert not (tmp_path / "prog.bin").exists()


def test_stdout_raw(invoke: Invoke, tmp_path: Path) -> None:
    src = tmp_path / "prog.s"
    src.write_text(LLVM)
    result = invoke("asm", str(src), "-o", "-", "--format", "raw")
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == CODE


def test_stdin_to_stdout(invoke: Invoke) -> None:
    result = invoke("asm", "-", input=LLVM)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == HEX


def test_big_endian(invoke: Invoke) -> None:
    result = invoke("asm", "-", "--byteorder", "big", input=LLVM)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "b7 00 00 00 00 00 00 2a\n95 00 00 00 00 00 00 00\n"


def test_ubpf_syntax_is_detected(invoke: Invoke) -> None:
    result = invoke("asm", "-", "--json", input=UBPF)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["syntax"] == "ubpf"
    assert bytes.fromhex(doc["bytecode"]) == CODE


def test_explicit_syntax(invoke: Invoke) -> None:
    assert invoke("asm", "-", "--syntax", "ubpf", input=UBPF).stdout == HEX
    assert invoke("asm", "-", "--syntax", "llvm", input=LLVM).stdout == HEX
    # The wrong explicit syntax is an error, not a silent fallback.
    assert invoke("asm", "-", "--syntax", "llvm", input=UBPF).exit_code == 1


def test_json_to_stdout_is_the_only_output(invoke: Invoke) -> None:
    result = invoke("asm", "-", "-o", "-", "--json", input=LLVM)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc == {
        "source": "<stdin>",
        "syntax": "llvm",
        "output": "-",
        "format": "hex",
        "byteorder": "little",
        "instructions": 2,
        "slots": 2,
        "bytes": 16,
        "bytecode": CODE.hex(),
    }


def test_json_with_output_file(invoke: Invoke, tmp_path: Path) -> None:
    src = tmp_path / "prog.s"
    src.write_text("r1 = 0x1122334455667788 ll\nr0 = r1\nexit\n")
    result = invoke("asm", str(src), "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["instructions"], doc["slots"], doc["bytes"]) == (3, 4, 32)
    assert doc["output"] == str(tmp_path / "prog.bin")
    assert (tmp_path / "prog.bin").read_bytes().hex() == doc["bytecode"]


def test_bad_assembly_is_one_line_with_line_and_column(invoke: Invoke, tmp_path: Path) -> None:
    src = tmp_path / "bad.s"
    src.write_text("r0 = 1\n  mvo r0, 1\nexit\n")
    result = invoke("asm", str(src))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert re.fullmatch(rf"error: {re.escape(str(src))}:2:3: .*mvo.*\n", result.stderr), result.stderr
    assert not (tmp_path / "bad.bin").exists()


def test_bad_ubpf_assembly_reports_the_ubpf_error(invoke: Invoke) -> None:
    # Auto-detection reports the syntax that got further, here uBPF (line 2, not line 1).
    result = invoke("asm", "-", input="mov %r0, 1\nmvo %r0, 1\nexit\n")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: <stdin>:2:1: ")
    assert "mvo" in result.stderr


def test_bad_assembly_json(invoke: Invoke) -> None:
    result = invoke("asm", "-", "--json", "--syntax", "llvm", input="r0 = 1\n  mvo r0, 1\nexit\n")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "AssemblerError"
    assert (error["source"], error["line"], error["column"]) == ("<stdin>", 2, 3)
    assert error["message"].startswith("<stdin>:2:3: ")
    assert result.stderr.startswith("error: <stdin>:2:3: ")


def test_missing_file_is_a_usage_error(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("asm", str(tmp_path / "nope.s"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_not_utf8(invoke: Invoke) -> None:
    result = invoke("asm", "-", input=b"r0 = 1\n\xff\xfe\n")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: <stdin>: not UTF-8 text")


def test_refuses_to_overwrite_the_input(invoke: Invoke, tmp_path: Path) -> None:
    src = tmp_path / "prog.bin"
    src.write_text(LLVM)
    result = invoke("asm", str(src))
    assert result.exit_code == 1
    assert "overwrite the input" in result.stderr
    assert src.read_text() == LLVM


def test_unwritable_output_is_an_error_not_a_traceback(invoke: Invoke, tmp_path: Path) -> None:
    src = tmp_path / "prog.s"
    src.write_text(LLVM)
    result = invoke("asm", str(src), "-o", str(tmp_path / "no" / "such" / "dir.bin"))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "No such file or directory" in result.stderr


def test_round_trip_through_disasm(invoke: Invoke, tmp_path: Path) -> None:
    source = (
        "r2 = *(u32 *)(r1 + 4)\n"
        "r0 = 0\n"
        "loop:\n"
        "r0 += 3\n"
        "if r0 < r2 goto loop\n"
        "r1 = 0x1122334455667788 ll\n"
        "*(u64 *)(r10 - 8) = r1\n"
        "exit\n"
    )
    for syntax in ("llvm", "ubpf"):
        code = invoke("asm", "-", "-o", "-", "--format", "raw", input=source).stdout_bytes
        (tmp_path / "p.bin").write_bytes(code)
        text = invoke("disasm", str(tmp_path / "p.bin"), "--style", "asm", "--syntax", syntax).stdout
        again = invoke("asm", "-", "-o", "-", "--format", "raw", "--syntax", syntax, input=text)
        assert again.exit_code == 0, again.stderr
        assert again.stdout_bytes == code, syntax
