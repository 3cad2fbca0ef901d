"""``ebpf inspect``: programs, maps, variables and source-annotated disassembly of corpus objects."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from ebpf.cli.main import main

ELF = Path(__file__).resolve().parents[1] / "data" / "elf"


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main, ["inspect", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_tables() -> None:
    out = invoke(str(ELF / "xdp_fw.o"), "--no-disasm")
    assert "3 programs, 5 maps, license 'GPL'" in out
    assert "xdp_firewall_frags  xdp.frags" in out
    assert "blocklist  lpm_trie        8      4         1024  0x1    struct lpm_key / __u32" in out
    assert "port_table    .data         8" not in out
    assert "drop_action   .rodata       0     4  __u32" in out


def test_source_annotated_disassembly() -> None:
    out = invoke(str(ELF / "xdp_fw.o"), "--program", "xdp_firewall")
    lines = out.splitlines()
    first = lines.index("<xdp_firewall>:")
    assert lines[first + 1].startswith("; void *data_end = (void *)(long)ctx->data_end;  [xdp_fw.c:")
    assert any(line.endswith("; map: blocklist") for line in lines)
    assert any(line.endswith("; map_value: .bss+8") for line in lines)
    assert "<parse_ipv4>:" in lines  # the subprogram appended by the linker


def test_json() -> None:
    doc = json.loads(invoke(str(ELF / "tracer.o"), "--no-disasm", "--json"))
    progs = {p["name"]: p for p in doc["programs"]}
    assert progs["trace_execve"]["type"] == "tracepoint"
    assert progs["trace_execve"]["attach_to"] == "syscalls/sys_enter_execve"
    assert {m["name"] for m in doc["maps"]} >= {"exec_count", "events", ".rodata", ".kconfig"}
    assert all("disassembly" not in p for p in doc["programs"])


def test_unknown_program_is_a_clear_error() -> None:
    result = CliRunner().invoke(main, ["inspect", str(ELF / "xdp_fw.o"), "--program", "nope"])
    assert result.exit_code != 0
    assert "no program 'nope'" in result.output
