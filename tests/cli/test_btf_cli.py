"""``ebpf btf dump``: raw, C and JSON, from raw BTF files and ELF objects, with bpftool to compare."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from ebpf import btf

Invoke = Callable[..., Result]

BTF_DATA = Path(__file__).parent.parent / "btf" / "data"
VMLINUX = Path("/sys/kernel/btf/vmlinux")
BPFTOOL = shutil.which("bpftool")


def test_raw_dump_of_an_object(invoke: Invoke) -> None:
    result = invoke("btf", "dump", str(BTF_DATA / "kinds.el.o"))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "[1] PTR '(anon)' type_id=0"
    assert "[24] ENUM 'color' encoding=SIGNED size=4 vlen=3" in lines
    assert lines[-1] == "\ttype_id=38 offset=0 size=4 (VAR '_license')"


def test_c_dump_of_an_object(invoke: Invoke) -> None:
    for obj in ("kinds.el.o", "kinds.eb.o"):
        result = invoke("btf", "dump", str(BTF_DATA / obj), "--format", "c")
        assert result.exit_code == 0, result.stderr
        assert result.stdout == (BTF_DATA / "kinds.h").read_text()


def test_json(invoke: Invoke) -> None:
    for args in (["--json"], ["--format", "json"]):
        result = invoke("btf", "dump", str(BTF_DATA / "vars.el.o"), *args)
        assert result.exit_code == 0, result.stderr
        doc = json.loads(result.stdout)
        assert doc["types"][0]["id"] == 1
        assert any(t["kind"] == "DATASEC" for t in doc["types"])


def test_c_with_json(invoke: Invoke) -> None:
    result = invoke("btf", "dump", str(BTF_DATA / "kinds.el.o"), "--format", "c", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["format"] == "c" and doc["header"] == (BTF_DATA / "kinds.h").read_text()


def test_raw_btf_file_and_split_base(invoke: Invoke, tmp_path: Path) -> None:
    base = btf.Spec.build([btf.Int("int", 4, btf.IntEncoding.SIGNED, bits=32)])
    (tmp_path / "base.btf").write_bytes(base.to_bytes())
    mod = btf.Spec.build([btf.Typedef("modint", 1)], base=btf.Spec.from_bytes(base.to_bytes()))
    (tmp_path / "mod.btf").write_bytes(mod.to_bytes())
    result = invoke("btf", "dump", str(tmp_path / "base.btf"))
    assert result.stdout == "[1] INT 'int' size=4 bits_offset=0 nr_bits=32 encoding=SIGNED\n"
    result = invoke("btf", "dump", str(tmp_path / "mod.btf"), "-B", str(tmp_path / "base.btf"))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "[2] TYPEDEF 'modint' type_id=1\n"
    result = invoke(
        "btf", "dump", str(tmp_path / "mod.btf"), "--base", str(tmp_path / "base.btf"), "--format", "c"
    )
    assert "typedef int modint;\n" in result.stdout


def test_root_ids(invoke: Invoke) -> None:
    result = invoke("btf", "dump", str(BTF_DATA / "kinds.el.o"), "--format", "c", "--root", "39")
    assert result.exit_code == 0, result.stderr
    assert "struct bits {" in result.stdout and "struct holder" not in result.stdout
    result = invoke("btf", "dump", str(BTF_DATA / "kinds.el.o"), "--root", "39")
    assert result.exit_code == 1 and "--root and --kfuncs need --format c" in result.stderr
    result = invoke("btf", "dump", str(BTF_DATA / "kinds.el.o"), "--format", "c", "--kfuncs")
    assert result.exit_code == 0 and "#ifndef BPF_NO_KFUNC_PROTOTYPES\n#endif\n" in result.stdout


def test_errors(invoke: Invoke, tmp_path: Path) -> None:
    (tmp_path / "junk").write_bytes(b"\x00\x01junk")
    result = invoke("btf", "dump", str(tmp_path / "junk"))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "bad magic" in result.stderr
    result = invoke("btf", "dump", str(tmp_path / "junk"), "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["type"] == "BTFError"
    no_btf = Path(__file__).parent / "data" / "objects.bpfel.o"
    result = invoke("btf", "dump", str(no_btf))
    assert result.exit_code == 1 and "no .BTF section" in result.stderr
    (tmp_path / "bad.o").write_bytes(b"\x7fELF" + b"\0" * 10)
    result = invoke("btf", "dump", str(tmp_path / "bad.o"))
    assert result.exit_code == 1 and "malformed ELF" in result.stderr


def test_listed_in_help(invoke: Invoke) -> None:
    assert "btf" in invoke("--help").stdout
    assert "dump" in invoke("btf", "--help").stdout


@pytest.mark.skipif(
    BPFTOOL is None or not VMLINUX.exists(), reason="needs bpftool and /sys/kernel/btf/vmlinux"
)
def test_vmlinux_raw_equals_bpftool(invoke: Invoke) -> None:
    """The issue's check: every vmlinux type (126,585 here) with bpftool's kind, name and size."""
    assert BPFTOOL is not None
    theirs = subprocess.run(
        [BPFTOOL, "btf", "dump", "file", str(VMLINUX)], check=True, capture_output=True, text=True
    ).stdout
    result = invoke("btf", "dump", str(VMLINUX))
    assert result.exit_code == 0, result.stderr
    ours = result.stdout
    heads = [line for line in ours.splitlines() if line.startswith("[")]
    assert len(heads) == len(btf.Spec.from_file(VMLINUX)) - 1 > 100_000
    assert Counter(h.split()[1] for h in heads)["STRUCT"] > 1000
    assert ours == theirs


def test_group_takes_subcommands_from_other_modules(invoke: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    from ebpf.cli import btf as btf_cli

    monkeypatch.setitem(btf_cli.SUBCOMMANDS, "version-again", "ebpf.cli.main:version")
    assert "version-again" in invoke("btf", "--help").stdout
    result = invoke("btf", "version-again", "--json")
    assert result.exit_code == 0 and "version" in json.loads(result.stdout)
