"""``ebpf disasm``: raw bytecode, hex text and ELF objects, laid out like llvm-objdump -d."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

Invoke = Callable[..., Result]

CODE = bytes.fromhex("b70000002a0000009500000000000000")
LISTING = "       0:\tb7 00 00 00 2a 00 00 00\tr0 = 0x2a\n       1:\t95 00 00 00 00 00 00 00\texit\n"
OBJECTS = ("objects.bpfel.o", "objects.bpfeb.o")


def test_raw_file(invoke: Invoke, tmp_path: Path) -> None:
    (tmp_path / "p.bin").write_bytes(CODE)
    result = invoke("disasm", str(tmp_path / "p.bin"))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == LISTING


def test_hex_text_as_the_conformance_runner_writes_it(invoke: Invoke) -> None:
    result = invoke("disasm", "-", input="b7 00 00 00 2a 00 00 00 95 00 00 00 00 00 00 00\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == LISTING


def test_hex_text_variants(invoke: Invoke) -> None:
    for text in (
        "b70000002a000000\n9500000000000000\n",
        "0xb7, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x00, 0x00,\n0x95 0 0 0 0 0 0 0".replace(" 0 ", " 00 ").replace(
            " 0 ", " 00 "
        )
        + "0",
        "# a comment\nb7 00 00 00 2a 00 00 00  # r0 = 42\n95 00 00 00 00 00 00 00\n",
    ):
        result = invoke("disasm", "-", input=text)
        assert result.exit_code == 0, (text, result.stderr)
        assert result.stdout == LISTING, text


def test_ubpf_syntax_without_raw_bytes(invoke: Invoke, tmp_path: Path) -> None:
    (tmp_path / "p.bin").write_bytes(CODE)
    result = invoke("disasm", str(tmp_path / "p.bin"), "--syntax", "ubpf", "--no-show-raw-insn")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "       0:\tmov %r0, 42\n       1:\texit\n"


def test_asm_style_has_labels(invoke: Invoke) -> None:
    code = invoke("asm", "-", "-o", "-", input="r0 = 0\nagain:\nr0 += 1\nif r0 < 5 goto again\nexit\n").stdout
    result = invoke("disasm", "-", "--style", "asm", input=code)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "r0 = 0x0\nL1:\nr0 += 0x1\nif r0 < 0x5 goto -0x2\nexit\n"
    result = invoke("disasm", "-", "--style", "asm", "--syntax", "ubpf", input=code)
    assert result.stdout == "mov %r0, 0\nL1:\nadd %r0, 1\njlt %r0, 5, L1\nexit\n"


def test_big_endian_raw(invoke: Invoke) -> None:
    result = invoke(
        "disasm", "-", "--byteorder", "big", input="b7 00 00 00 00 00 00 2a 95 00 00 00 00 00 00 00"
    )
    assert result.exit_code == 0, result.stderr
    assert "r0 = 0x2a" in result.stdout


def test_forced_input_format(invoke: Invoke, tmp_path: Path) -> None:
    # A raw file whose bytes happen to be hex digits: auto reads hex text, --input-format raw does not.
    (tmp_path / "p.bin").write_bytes(b"b7000000")
    as_hex = invoke("disasm", str(tmp_path / "p.bin"))
    assert as_hex.exit_code == 1 and "bytecode length 4 is not a multiple of 8" in as_hex.stderr
    as_raw = invoke("disasm", str(tmp_path / "p.bin"), "--input-format", "raw")
    assert as_raw.exit_code == 1 and "instruction 0: " in as_raw.stderr  # opcode 0x62 ('b')
    as_hex = invoke("disasm", str(tmp_path / "p.bin"), "--input-format", "hex")
    assert as_hex.exit_code == 1 and "not a multiple of 8" in as_hex.stderr


@pytest.mark.parametrize("name", OBJECTS)
def test_elf_matches_llvm_objdump_golden(
    invoke: Invoke, data_dir: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Byte for byte what ``llvm-objdump-19 -d --mcpu=v4`` printed (data/build.sh)."""
    monkeypatch.chdir(data_dir)
    result = invoke("disasm", name)
    assert result.exit_code == 0, result.stderr
    golden = (data_dir / name.replace(".o", ".objdump.txt")).read_text()
    assert result.stdout == golden


@pytest.mark.parametrize("name", OBJECTS)
def test_elf_matches_installed_llvm_objdump(data_dir: Path, name: str, tmp_path: Path) -> None:
    """Differential: the same listing as the llvm-objdump on this machine, when it is LLVM >= 19."""
    from ebpf.cli.main import main

    objdump = shutil.which("llvm-objdump-19") or shutil.which("llvm-objdump")
    if objdump is None:
        pytest.skip("llvm-objdump not installed")
    version = subprocess.run([objdump, "--version"], capture_output=True, text=True, check=False).stdout
    if "version 19" not in version and "version 2" not in version:
        pytest.skip(f"{objdump} is not LLVM >= 19 (hex immediates)")
    target = tmp_path / name
    shutil.copy(data_dir / name, target)
    theirs = subprocess.run(
        [objdump, "-d", "--mcpu=v4", name], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    from click.testing import CliRunner

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        ours = CliRunner().invoke(main, ["disasm", name], catch_exceptions=False).stdout
    assert ours == theirs


def test_elf_one_section(invoke: Invoke, data_dir: Path) -> None:
    result = invoke("disasm", str(data_dir / "objects.bpfel.o"), "--section", "socket", "--no-show-raw-insn")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[3:] == [
        "Disassembly of section socket:",
        "",
        "0000000000000000 <sock>:",
        "       0:\tr2 = 0x0 ll",
        "       2:\tr3 = *(u64 *)(r2 + 0x0)",
        "       3:\tr3 += 0x1",
        "       4:\t*(u64 *)(r2 + 0x0) = r3",
        "       5:\tw1 = *(u32 *)(r1 + 0x0)",
        "       6:\tcall -0x1",
        "       7:\texit",
    ]


def test_elf_unknown_section(invoke: Invoke, data_dir: Path) -> None:
    result = invoke("disasm", str(data_dir / "objects.bpfel.o"), "-j", "kprobe")
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {data_dir / 'objects.bpfel.o'}: no executable section 'kprobe' "
        "(executable sections: '.text', 'xdp', 'socket')\n"
    )


def test_section_needs_elf(invoke: Invoke) -> None:
    result = invoke("disasm", "-", "-j", "xdp", input="95 00 00 00 00 00 00 00")
    assert result.exit_code == 1
    assert "--section only applies to ELF objects" in result.stderr


def test_elf_json(invoke: Invoke, data_dir: Path) -> None:
    result = invoke("disasm", str(data_dir / "objects.bpfel.o"), "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["format"] == "elf" and doc["syntax"] == "llvm"
    sections = {s["name"]: s for s in doc["sections"]}
    assert list(sections) == [".text", "xdp", "socket"]
    assert sections["socket"]["relocations"] == 2
    assert sections["xdp"]["relocations"] == 0
    assert sections[".text"]["symbols"] == [{"name": "mul3", "offset": 0}]
    xdp = sections["xdp"]["instructions"]
    assert xdp[0] == {
        "pc": 0,
        "bytes": "b7 00 00 00 01 00 00 00",
        "text": "r0 = 0x1",
        "opcode": 0xB7,
        "dst": 0,
        "src": 0,
        "offset": 0,
        "imm": 1,
    }
    jump = next(i for i in xdp if i["text"].startswith("if "))
    assert jump["target"] == 14 and jump["target_symbol"] == "xdp_prog+0x70"
    lddw = next(i for i in xdp if i["opcode"] == 0x18)
    assert lddw["imm"] == 0x1122334455667788 and len(lddw["bytes"].split()) == 16


def test_raw_json(invoke: Invoke) -> None:
    result = invoke("disasm", "-", "--json", "--syntax", "ubpf", input=CODE.hex())
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["format"] == "hex"
    (section,) = doc["sections"]
    assert section["name"] is None and section["symbols"] == []
    assert [i["text"] for i in section["instructions"]] == ["mov %r0, 42", "exit"]


def test_invalid_opcode(invoke: Invoke) -> None:
    result = invoke("disasm", "-", input=bytes.fromhex("b70000002a000000ff00000000000000"))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: <stdin>: instruction 1: ")
    assert result.stderr.count("\n") == 1


def test_invalid_opcode_json(invoke: Invoke) -> None:
    result = invoke("disasm", "-", "--json", input=bytes.fromhex("ff00000000000000"))
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "DecodeError" and error["index"] == 0 and error["source"] == "<stdin>"


def test_truncated_bytecode(invoke: Invoke) -> None:
    result = invoke("disasm", "-", input="b7 00 00 00 2a 00 00 00 95 00 00")
    assert result.exit_code == 1
    assert "not a multiple of 8" in result.stderr


def test_bad_hex(invoke: Invoke) -> None:
    result = invoke("disasm", "-", input="b7 00 zz 00")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: <stdin>: text that is not hex bytes ('zz' at line 1, column 7)")


def test_assembly_text_is_refused(invoke: Invoke) -> None:
    result = invoke("disasm", "-", input="r0 = 1\nexit\n")
    assert result.exit_code == 1
    assert "ebpf asm" in result.stderr


def test_empty_input(invoke: Invoke) -> None:
    for text in ("", "# nothing\n"):
        result = invoke("disasm", "-", input=text)
        assert result.exit_code == 1
        assert result.stderr == "error: <stdin>: empty input: no instructions\n"


def test_truncated_elf(invoke: Invoke, data_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.o"
    broken.write_bytes((data_dir / "objects.bpfel.o").read_bytes()[:200])
    result = invoke("disasm", str(broken))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {broken}: malformed ELF file: ")
    assert result.stderr.count("\n") == 1


def test_non_bpf_elf(invoke: Invoke, tmp_path: Path) -> None:
    import sys

    result = invoke("disasm", sys.executable)
    assert result.exit_code == 1
    assert "not an eBPF object (machine EM_" in result.stderr


def test_missing_file(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("disasm", str(tmp_path / "nope.o"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr
