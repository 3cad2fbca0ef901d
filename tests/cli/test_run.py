"""``ebpf run``: one run in the user-space runtime, from text, bytecode or an ELF section."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

Invoke = Callable[..., Result]


def fields(stdout: str) -> dict[str, str]:
    """``name: value`` lines of the plain output."""
    out = {}
    for line in stdout.splitlines():
        name, sep, value = line.partition(":")
        if sep and value.startswith(" ") and " " not in name:
            out[name] = value.strip()
    return out


def test_llvm_text(invoke: Invoke) -> None:
    result = invoke("run", "-", input="r0 = 40\nr0 += 2\nexit\n")
    assert result.exit_code == 0, result.stderr
    out = fields(result.stdout)
    assert out["r0"] == "0x2a (42)"
    assert out["instructions"] == "3"
    assert re.fullmatch(r"[\d.]+ (ns|us|ms|s) \(engine interp\)", out["time"])
    assert "memory" not in out


def test_json(invoke: Invoke) -> None:
    result = invoke("run", "-", "--json", input="r0 = 40\nr0 += 2\nexit\n")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["retval"] == 42 and doc["retval_hex"] == "0x2a"
    assert doc["insns"] == 3
    assert isinstance(doc["wall_ns"], int) and doc["wall_ns"] > 0
    assert doc["engine"] == "interp"
    assert (doc["input_format"], doc["syntax"], doc["section"]) == ("asm", "llvm", None)
    assert doc["data"] == "" and doc["data_changed"] == []


def test_negative_r0_shows_the_signed_value(invoke: Invoke) -> None:
    result = invoke("run", "-", input="r0 = -1\nexit\n")
    assert fields(result.stdout)["r0"] == "0xffffffffffffffff (18446744073709551615, signed -1)"


def test_memory_is_r1_and_r2(invoke: Invoke) -> None:
    result = invoke("run", "-", "--mem", "00 00 00 01 00 00 00 02", input="mov %r0, %r2\nexit\n")
    assert result.exit_code == 0, result.stderr
    out = fields(result.stdout)
    assert out["r0"] == "0x8 (8)"
    assert out["memory"] == "unchanged (8 bytes)"


def test_memory_changes_are_shown(invoke: Invoke) -> None:
    result = invoke("run", "-", "--mem", "00 00 00 00", input="*(u16 *)(r1 + 2) = 0x7f7e\nr0 = 0\nexit\n")
    assert result.exit_code == 0, result.stderr
    assert fields(result.stdout)["memory"] == "changed at bytes 2-3"
    assert result.stdout.endswith("memory after the run:\n0000  00 00 7e 7f\n")
    doc = json.loads(
        invoke("run", "-", "--json", "--mem", "00 00 00 00", input="*(u8 *)(r1 + 0) = 1\nexit\n").stdout
    )
    assert doc["data"] == "01000000" and doc["data_changed"] == [[0, 1]]


def test_mem_file_raw_and_hex(invoke: Invoke, tmp_path: Path) -> None:
    (tmp_path / "m.bin").write_bytes(bytes([5, 0, 0, 0]))
    (tmp_path / "m.hex").write_text("05 00 00 00\n")
    for name in ("m.bin", "m.hex"):
        result = invoke(
            "run", "-", "--mem-file", str(tmp_path / name), "--json", input="r0 = *(u32 *)(r1 + 0)\nexit\n"
        )
        assert json.loads(result.stdout)["retval"] == 5, name


def test_bytecode_inputs(invoke: Invoke, tmp_path: Path) -> None:
    code = bytes.fromhex("b70000002a0000009500000000000000")
    (tmp_path / "p.bin").write_bytes(code)
    (tmp_path / "p.hex").write_text(" ".join(f"{b:02x}" for b in code))
    for name, fmt in (("p.bin", "raw"), ("p.hex", "hex")):
        doc = json.loads(invoke("run", str(tmp_path / name), "--json").stdout)
        assert (doc["retval"], doc["input_format"], doc["syntax"]) == (42, fmt, None)


def test_ubpf_helpers(invoke: Invoke) -> None:
    program = "mov %r1, 7\ncall 5\nexit\n"  # helper 5 (unwind) returns its argument
    assert invoke("run", "-", input=program).exit_code == 1
    result = invoke("run", "-", "--helpers", "ubpf", "--json", input=program)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["retval"] == 7


def test_unknown_helper_is_a_fault(invoke: Invoke) -> None:
    result = invoke("run", "-", input="r0 = 1\ncall 5\nexit\n")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: <stdin>: pc 1 (call 0x5): ")


def test_memory_fault_names_pc_and_instruction(invoke: Invoke, tmp_path: Path) -> None:
    src = tmp_path / "oob.s"
    src.write_text("r0 = 0\nr0 = *(u32 *)(r1 + 8)\nexit\n")
    result = invoke("run", str(src), "--mem", "01 02 03 04")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {src}: pc 1 (w0 = *(u32 *)(r1 + 0x8)): ")
    assert result.stderr.count("\n") == 1


def test_memory_fault_json(invoke: Invoke) -> None:
    result = invoke("run", "-", "--json", "--mem", "01 02 03 04", input="r0 = *(u32 *)(r1 + 8)\nexit\n")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "VMError"
    assert error["pc"] == 0 and error["insn"] == "w0 = *(u32 *)(r1 + 0x8)"
    assert isinstance(error["address"], int)


def test_instruction_budget(invoke: Invoke) -> None:
    result = invoke("run", "-", "--max-insns", "100", input="loop:\ngoto loop\nexit\n")
    assert result.exit_code == 1
    assert "budget of 100" in result.stderr
    assert (
        json.loads(invoke("run", "-", "--json", "--max-insns", "100", input="l:\ngoto l\n").stdout)["error"][
            "type"
        ]
        == "BudgetExceededError"
    )


def test_xdp_packet(invoke: Invoke) -> None:
    program = (
        "r2 = *(u32 *)(r1 + 0)\n"
        "r3 = *(u32 *)(r1 + 4)\n"
        "r0 = 1\n"  # XDP_DROP when short
        "r4 = r2\n"
        "r4 += 2\n"
        "if r4 > r3 goto out\n"
        "*(u8 *)(r2 + 1) = 0xee\n"
        "r0 = 3\n"  # XDP_TX
        "out:\n"
        "exit\n"
    )
    result = invoke("run", "-", "--xdp", "--mem", "aa bb cc", input=program)
    assert result.exit_code == 0, result.stderr
    out = fields(result.stdout)
    assert out["r0"] == "0x3 (3) XDP_TX"
    assert out["packet"] == "changed at bytes 1"
    assert result.stdout.endswith("packet after the run:\n0000  aa ee cc\n")
    doc = json.loads(invoke("run", "-", "--xdp", "--json", "--mem", "aa", input=program).stdout)
    assert (doc["retval"], doc["xdp_action"], doc["data"]) == (1, "XDP_DROP", "aa")


def test_profile(invoke: Invoke) -> None:
    program = "r0 = 0\nloop:\nr0 += 1\nif r0 < 3 goto loop\nexit\n"
    result = invoke("run", "-", "--profile", input=program)
    assert result.exit_code == 0, result.stderr
    table = result.stdout.split("\n\n")[-1].splitlines()
    assert table == [
        "count  pc  instruction",
        "    1  0:  r0 = 0x0",
        "           loop:",
        "    3  1:  r0 += 0x1",
        "    3  2:  if r0 < 0x3 goto -0x2 <loop>",
        "    1  3:  exit",
    ]
    doc = json.loads(invoke("run", "-", "--profile", "--json", input=program).stdout)
    assert doc["profile"] == [1, 3, 3, 1]


def test_elf_section(invoke: Invoke, data_dir: Path) -> None:
    obj = str(data_dir / "objects.bpfel.o")
    ipv4 = "00 " * 12 + "08 00 45 00"
    result = invoke("run", obj, "-j", "xdp", "--xdp", "--mem", ipv4, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["retval"], doc["section"], doc["input_format"]) == (2, "xdp", "elf")
    big = json.loads(
        invoke("run", str(data_dir / "objects.bpfeb.o"), "-j", "xdp", "--xdp", "--mem", ipv4, "--json").stdout
    )
    assert big["retval"] == 2


def test_elf_needs_a_section_choice(invoke: Invoke, data_dir: Path) -> None:
    result = invoke("run", str(data_dir / "objects.bpfel.o"))
    assert result.exit_code == 1
    assert "several program sections ('.text', 'xdp', 'socket'); choose one with --section" in result.stderr


def test_elf_section_with_relocations_is_refused(invoke: Invoke, data_dir: Path) -> None:
    result = invoke("run", str(data_dir / "objects.bpfel.o"), "-j", "socket")
    assert result.exit_code == 1
    assert "section 'socket' has 2 relocation(s)" in result.stderr


def test_bad_assembly(invoke: Invoke, tmp_path: Path) -> None:
    src = tmp_path / "bad.s"
    src.write_text("r0 = 1\nr0 +== 2\nexit\n")
    result = invoke("run", str(src))
    assert result.exit_code == 1
    assert re.match(rf"error: {re.escape(str(src))}:2:\d+: ", result.stderr), result.stderr


def test_bad_mem_hex(invoke: Invoke) -> None:
    result = invoke("run", "-", "--mem", "01 0g", input="exit\n")
    assert result.exit_code == 1
    assert result.stderr == "error: --mem: line 1, column 4: not hex bytes: '0g'\n"


def test_usage_errors(invoke: Invoke, tmp_path: Path) -> None:
    (tmp_path / "m").write_bytes(b"\0")
    assert invoke("run", "-", "--mem", "00", "--mem-file", str(tmp_path / "m"), input="exit\n").exit_code == 2
    result = invoke("run", "-", "--engine", "warp", input="exit\n")
    assert result.exit_code == 2 and "'warp'; choose from interp" in result.stderr
    assert invoke("run", "-", "--max-insns", "0", input="exit\n").exit_code == 2
    assert invoke("run", str(tmp_path / "missing.s")).exit_code == 2


def _conformance_case(path: Path) -> tuple[str, str, int]:
    sections: dict[str, list[str]] = {}
    current = None
    for line in path.read_text().splitlines():
        if line.startswith("-- "):
            current = line[3:].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return (
        "\n".join(sections["asm"]),
        " ".join(sections.get("mem", [])),
        int("".join(sections["result"]).strip(), 16),
    )


@pytest.mark.parametrize(
    "name", ["subnet", "prime", "lddw", "stack", "mem-len", "call_unwind_fail", "ldxh-all2"]
)
def test_conformance_programs(invoke: Invoke, conformance_dir: Path, name: str, tmp_path: Path) -> None:
    """Real inputs: bpf_conformance programs (uBPF syntax, auto-detected) with their memory."""
    asm, mem, expected = _conformance_case(conformance_dir / "tests" / f"{name}.data")
    src = tmp_path / f"{name}.s"
    src.write_text(asm)
    args = ["run", str(src), "--helpers", "ubpf", "--json"]
    if mem.strip():
        args += ["--mem", mem]
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["syntax"] == "ubpf"
    assert doc["retval"] == expected
    # The same program as hex bytecode, the way the conformance runner passes it.
    code = invoke("asm", str(src), "-o", "-").stdout
    again = invoke(*(["run", "-", *args[2:]]), input=code)
    assert json.loads(again.stdout)["retval"] == expected
