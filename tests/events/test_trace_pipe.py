"""trace_pipe lines: the parser on captured formats, and a real bpf_trace_printk through the pipe."""

from __future__ import annotations

import os
import time

import pytest

from ebpf.events.trace_pipe import TracePipe, parse_trace_line
from ebpf.isa.asm import assemble
from ebpf.kernel.program import Program
from ebpf.spec import ProgramType


def test_parse_formats() -> None:
    line = "           <...>-1234    [001] d..31  5201.123456: bpf_trace_printk: hello 7"
    t = parse_trace_line(line)
    assert t is not None
    assert (t.task, t.pid, t.cpu, t.flags, t.function, t.message) == (
        "<...>",
        1234,
        1,
        "d..31",
        "bpf_trace_printk",
        "hello 7",
    )
    assert t.timestamp == pytest.approx(5201.123456)
    tgid = parse_trace_line(" kworker/u8:1-77 (   77) [000] ..... 12.000001: bpf_trace_printk: a: b")
    assert tgid is not None and (tgid.task, tgid.pid, tgid.message) == ("kworker/u8:1", 77, "a: b")
    noflags = parse_trace_line("python3-9 [003] 1.5: bpf_trace_printk: x")
    assert noflags is not None and noflags.flags == "" and noflags.cpu == 3
    assert parse_trace_line("# tracer: nop") is None


@pytest.mark.kernel
def test_printk_reaches_the_pipe() -> None:
    tag = os.getpid() % 100000
    # "tp%d\n" on the stack, then bpf_trace_printk(fmt, 5, tag)
    fmt = b"tp%d\n\0\0\0"
    source = f"""
        r1 = {int.from_bytes(fmt, "little")} ll
        *(u64 *)(r10 - 8) = r1
        r1 = r10
        r1 += -8
        r2 = 6
        r3 = {tag}
        call 6
        r0 = 2
        exit
    """
    with TracePipe() as pipe, Program.load(assemble(source), ProgramType.XDP, license="GPL") as prog:
        pipe.read_lines(0)  # drop what is already queued
        prog.test_run(bytes(64))
        deadline = time.monotonic() + 5
        found = []
        while not found and time.monotonic() < deadline:
            found = [t for t in pipe.read_lines(0.5) if t.message == f"tp{tag}"]
    assert found, "bpf_trace_printk output not seen in trace_pipe within 5 s"
    assert found[0].function == "bpf_trace_printk"
    assert found[0].pid == os.getpid()  # test_run runs the program in the calling task
