"""TracepointInput (tracefs format records) and RawTracepointInput (u64 args), both engines."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ebpf.errors import ParseError, TestRunError, VMError
from ebpf.spec import ProgramType
from ebpf.vm.context import RawTracepointInput, TracepointInput, parse_tracepoint_format
from ebpf.vm.helpers import RunEnv

from ._helper_util import ENGINE_NAMES, make_engine

SCHED_SWITCH = """name: sched_switch
ID: 372
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:int prev_prio;\toffset:28;\tsize:4;\tsigned:1;
\tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;
\tfield:char next_comm[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:pid_t next_pid;\toffset:56;\tsize:4;\tsigned:1;
\tfield:int next_prio;\toffset:60;\tsize:4;\tsigned:1;

print fmt: "prev_comm=%s prev_pid=%d", REC->prev_comm, REC->prev_pid
"""
EXEC = """name: sched_process_exec
ID: 365
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:pid_t old_pid;\toffset:16;\tsize:4;\tsigned:1;

print fmt: "filename=%s pid=%d old_pid=%d", __get_str(filename), REC->pid, REC->old_pid
"""


def test_parse_format() -> None:
    fmt = parse_tracepoint_format(SCHED_SWITCH)
    assert fmt.name == "sched_switch" and fmt.id == 372 and fmt.size == 64
    assert [f.name for f in fmt.fields][4:7] == ["prev_comm", "prev_pid", "prev_prio"]
    assert fmt.field("prev_state").signed and fmt.field("prev_state").size == 8
    exec_fmt = parse_tracepoint_format(EXEC)
    assert exec_fmt.field("filename").data_loc
    with pytest.raises(ParseError):
        parse_tracepoint_format("hello")
    with pytest.raises(ParseError):
        parse_tracepoint_format("format:\n\tfield:int x;\toffset:zz;\n")


def test_record_layout() -> None:
    rec = TracepointInput.from_format(
        SCHED_SWITCH, {"prev_comm": b"bash", "prev_pid": 42, "prev_state": -1, "next_pid": 7}, pid=99
    ).record
    assert struct.unpack_from("<HBBi", rec) == (372, 0, 0, 99)
    assert rec[8:24] == b"bash" + bytes(12)
    assert struct.unpack_from("<iiq", rec, 24) == (42, 0, -1)
    assert struct.unpack_from("<i", rec, 56) == (7,)
    rec = TracepointInput.from_format(EXEC, {"filename": b"/bin/true\0", "pid": 5}).record
    loc = struct.unpack_from("<I", rec, 8)[0]
    assert rec[loc & 0xFFFF : (loc & 0xFFFF) + (loc >> 16)] == b"/bin/true\0"
    with pytest.raises(ValueError):
        TracepointInput.from_format(SCHED_SWITCH, {"nope": 1})
    with pytest.raises(ValueError):
        TracepointInput.from_format(SCHED_SWITCH, {"prev_pid": 1 << 40})


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_tracepoint_program_reads_the_record(engine: str) -> None:
    env = RunEnv(deterministic=True, program_type=ProgramType.TRACEPOINT)
    prog = """
        r0 = *(u32 *)(r1 + 24)
        r2 = *(u16 *)(r1 + 0)
        r0 <<= 16
        r0 |= r2
        r2 = *(u8 *)(r1 + 8)
        r0 <<= 8
        r0 |= r2
        exit
    """
    eng = make_engine(prog, env, engine)
    inp = TracepointInput.from_format(SCHED_SWITCH, {"prev_comm": b"bash", "prev_pid": 42})
    res = eng.run(inp, env=env)
    assert res.retval == (((42 << 16) | 372) << 8) | ord("b")
    with pytest.raises(VMError, match="read-only"):
        make_engine("r2 = 1\n*(u32 *)(r1 + 24) = r2\nexit", env, engine).run(inp, env=env)


@pytest.mark.kernel
def test_real_format_files_parse() -> None:
    root = Path("/sys/kernel/tracing/events")
    files = sorted(root.glob("*/*/format"))[:400]
    assert files
    for path in files:
        fmt = parse_tracepoint_format(path.read_text())
        assert fmt.id > 0 and fmt.fields[0].name == "common_type", path
        record = TracepointInput.from_format(fmt).record
        assert len(record) == fmt.size
        assert int.from_bytes(record[0:2], "little") == fmt.id & 0xFFFF


RAW_TP = """
    r2 = *(u64 *)(r1 + 0)
    r3 = *(u64 *)(r1 + 8)
    r0 = r2
    r0 *= 3
    r0 += r3
    exit
"""


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_raw_tracepoint_args(engine: str) -> None:
    env = RunEnv(deterministic=True, program_type=ProgramType.RAW_TRACEPOINT)
    eng = make_engine(RAW_TP, env, engine)
    assert eng.run(RawTracepointInput((5, 7)), env=env).retval == 22
    ctx = struct.pack("<QQ", 1 << 40, 2)
    assert eng.run(RawTracepointInput.from_test_run(ctx), env=env).retval == 3 * (1 << 40) + 2
    with pytest.raises(TestRunError):
        RawTracepointInput.from_test_run(bytes(8 * 13))
    with pytest.raises(TestRunError):
        RawTracepointInput(tuple(range(13)))
    assert RawTracepointInput().map(env.memory).r1 == 0


@pytest.mark.kernel
@pytest.mark.parametrize("args", [(5, 7), (1 << 40, 2), ((1 << 64) - 1, 1)])
def test_raw_tracepoint_matches_the_kernel(args: tuple[int, int]) -> None:
    import ctypes

    from ebpf.isa.asm import assemble
    from ebpf.kernel._syscall import bpf
    from ebpf.kernel.program import Program
    from ebpf.kernel.uapi import Cmd, TestRunAttr

    ctx = struct.pack("<QQ", *args)
    with Program.load(assemble(RAW_TP), ProgramType.RAW_TRACEPOINT) as prog:
        buf = ctypes.create_string_buffer(ctx, len(ctx))
        attr = TestRunAttr(prog_fd=prog.fd, ctx_size_in=len(ctx), ctx_in=ctypes.addressof(buf))
        bpf(Cmd.PROG_TEST_RUN, attr)
        kernel = int(attr.retval)
    env = RunEnv(deterministic=True, program_type=ProgramType.RAW_TRACEPOINT)
    for engine in ENGINE_NAMES:
        ours = make_engine(RAW_TP, env, engine).run(RawTracepointInput.from_test_run(ctx), env=env)
        assert ours.retval & 0xFFFFFFFF == kernel
