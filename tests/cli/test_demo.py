"""``ebpf demo``: assemble, list, run on the interpreter, and check against the kernel when possible."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from ebpf.cli.demo import DEMO_PACKET, DEMO_SOURCE, kernel_unavailable_reason

Invoke = Callable[..., Result]

XDP_DROP, XDP_TX = 1, 3


def ipv4_checksum_ok(header: bytes) -> bool:
    total = sum(struct.unpack("!10H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def test_embedded_packet_is_a_valid_ipv4_packet() -> None:
    assert DEMO_PACKET[12:14] == b"\x08\x00" and DEMO_PACKET[14] == 0x45
    assert ipv4_checksum_ok(DEMO_PACKET[14:34])
    assert DEMO_PACKET[22] == 64


def test_plain_output(invoke: Invoke) -> None:
    result = invoke("demo")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert out.startswith("1. Assemble ttl_guard (LLVM syntax): 51 instructions, 408 bytes\n")
    assert " pc  bytes                    LLVM syntax" in out
    assert " 0:  61 12 00 00 00 00 00 00  w2 = *(u32 *)(r1 + 0x0)" in out
    assert "if r7 < 0xa goto -0x5 <sum>" in out and "jlt %r7, 10, -5 <sum>" in out
    assert (
        "\n2. Run on the interpreter: an Ethernet/IPv4/UDP packet of 54 bytes (TTL 64, checksum 0x3c55)\n"
        in out
    )
    assert "r0:           0x3 (3) XDP_TX\n" in out
    assert "instructions: 96 executed\n" in out
    assert "packet:       changed at bytes 22, 24: TTL 63, checksum 0x3d55\n" in out
    assert "\n3. Check against the kernel (BPF_PROG_TEST_RUN, program type XDP)\n" in out
    assert "\x1b[" not in out  # plain when not a terminal


def test_kernel_section_is_consistent_with_bpf_availability(invoke: Invoke) -> None:
    result = invoke("demo")
    assert result.exit_code == 0, result.stderr
    reason = kernel_unavailable_reason()
    kernel_part = result.stdout.split("\n3. ")[1].split("\n\n4. ")[0]
    if reason is None:
        assert "kernel check skipped" not in kernel_part
        assert "kernel and interpreter agree" in kernel_part
    else:
        assert kernel_part.splitlines()[1:] == [f"kernel check skipped: {reason}"]


def test_kernel_skipped_with_the_reason(invoke: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    import ebpf.kernel

    monkeypatch.setattr(ebpf.kernel, "bpf_unavailable_reason", lambda: "bpf(): EPERM — needs CAP_BPF or root")
    result = invoke("demo")
    assert result.exit_code == 0, result.stderr
    assert (
        "3. Check against the kernel (BPF_PROG_TEST_RUN, program type XDP)\n"
        "kernel check skipped: bpf(): EPERM — needs CAP_BPF or root\n\n4. "
    ) in result.stdout
    assert result.stdout.endswith("kernel run skipped: bpf(): EPERM — needs CAP_BPF or root\n")
    doc = json.loads(invoke("demo", "--json").stdout)
    assert doc["kernel"] == {"available": False, "skipped_reason": "bpf(): EPERM — needs CAP_BPF or root"}
    assert doc["agree"] is True


def test_json(invoke: Invoke) -> None:
    result = invoke("demo", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    program = doc["program"]
    assert program["name"] == "ttl_guard" and program["source"] == DEMO_SOURCE
    assert (program["instructions"], program["slots"]) == (51, 51)
    assert len(bytes.fromhex(program["bytecode"])) == 51 * 8
    assert program["labels"] == {"sum": 15, "out": 50}
    assert program["listing"][-1] == {
        "pc": 50,
        "bytes": "95 00 00 00 00 00 00 00",
        "llvm": "exit",
        "ubpf": "exit",
    }
    assert bytes.fromhex(doc["input"]["packet"]) == DEMO_PACKET

    interp = doc["interpreter"]
    assert (interp["retval"], interp["action"], interp["insns"]) == (XDP_TX, "XDP_TX", 96)
    out = bytes.fromhex(interp["packet_out"])
    assert out[22] == 63 and ipv4_checksum_ok(out[14:34])
    assert out[:22] == DEMO_PACKET[:22] and out[26:] == DEMO_PACKET[26:]
    assert interp["changed"] == [[22, 23], [24, 25]]

    assert doc["kernel"]["available"] is (kernel_unavailable_reason() is None)
    assert doc["agree"] is True


def test_rich_output(invoke: Invoke) -> None:
    result = invoke("--color", "always", "demo")
    assert result.exit_code == 0, result.stderr
    assert "\x1b[" in result.stdout
    assert "XDP_TX" in result.stdout and "…" not in result.stdout  # no squeezed columns


def test_demo_source_assembles_like_llvm_mc(tmp_path: Path) -> None:
    """Differential: our LLVM-syntax assembler and llvm-mc agree on the demo program."""
    from ebpf.isa import assemble

    llvm_mc = shutil.which("llvm-mc-19") or shutil.which("llvm-mc")
    if llvm_mc is None:
        pytest.skip("llvm-mc not installed")
    from elftools.elf.elffile import ELFFile

    (tmp_path / "demo.s").write_text(DEMO_SOURCE)
    subprocess.run(
        [llvm_mc, "-triple", "bpfel", "-filetype=obj", "demo.s", "-o", "demo.o"], cwd=tmp_path, check=True
    )
    with open(tmp_path / "demo.o", "rb") as f:
        text = ELFFile(f).get_section_by_name(".text").data()
    assert assemble(DEMO_SOURCE).encode() == text


@pytest.mark.kernel
def test_kernel_returns_the_interpreters_r0_and_packet(invoke: Invoke) -> None:
    doc = json.loads(invoke("demo", "--json").stdout)
    kernel = doc["kernel"]
    assert kernel["available"] is True
    assert kernel["retval"] == doc["interpreter"]["retval"] == XDP_TX
    assert kernel["packet_out"] == doc["interpreter"]["packet_out"]
    assert kernel["same_retval"] and kernel["same_packet"] and doc["agree"]


@pytest.mark.kernel
def test_disagreement_exits_1(invoke: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the kernel ever disagrees, the demo says so and fails (simulated by skewing test_run)."""
    import ebpf.kernel
    from ebpf.kernel import TestRunResult

    real = ebpf.kernel.Program.test_run

    def wrong(self: ebpf.kernel.Program, data_in: bytes = b"", **kw: object) -> TestRunResult:
        res = real(self, data_in)
        return TestRunResult(res.retval + 1, res.data_out, res.ctx_out, res.duration_ns)

    monkeypatch.setattr(ebpf.kernel.Program, "test_run", wrong)
    result = invoke("demo")
    assert result.exit_code == 1
    assert "(DIFFERENT from the interpreter)" in result.stdout
    assert "kernel and interpreter DISAGREE\n" in result.stdout
    assert "kernel and user space DISAGREE" in result.stdout  # step 4 runs test_run too


def test_demo_without_privileges() -> None:
    """Without CAP_BPF/CAP_SYS_ADMIN the demo still succeeds and says why the kernel was skipped."""
    import os
    import sys

    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv(1) to drop every capability")
    proc = subprocess.run(
        [setpriv, "--bounding-set=-all", "--inh-caps=-all", sys.executable, "-m", "ebpf", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "r0:           0x3 (3) XDP_TX" in proc.stdout
    assert "kernel check skipped: bpf(): EPERM" in proc.stdout
    last = proc.stdout.splitlines()[-1]
    assert last.startswith("kernel run skipped: bpf(): EPERM"), last
    assert "IPv4 from 192.0.2.7    XDP_DROP" in proc.stdout  # the object still runs in user space


def test_object_step_runs_the_bundled_firewall_on_both_engines() -> None:
    import json

    from click.testing import CliRunner

    from ebpf.cli.main import main

    result = CliRunner().invoke(main, ["demo", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)["object"]
    assert doc["object"] == "xdp_firewall.bpf.o"
    assert doc["userspace"]["verdicts"] == ["XDP_DROP", "XDP_PASS", "XDP_DROP", "XDP_PASS"]
    assert doc["userspace"]["rule_packets"] == [1, 1]
    if doc["kernel"]["available"]:
        assert doc["kernel"]["verdicts"] == doc["userspace"]["verdicts"]
        assert doc["kernel"]["rule_packets"] == [1, 1]
    assert doc["agree"]
