"""trace_printk / trace_vprintk / snprintf formats, strncmp and probe_read (both engines, kernel)."""

from __future__ import annotations

import errno
import os
import re
import time

import pytest

from ebpf.helpers import HelperId
from ebpf.spec import ProgramType
from ebpf.vm._helpers_trace import FormatError, format_bprintf
from ebpf.vm.helpers import FixedClock, RunEnv, TaskInfo
from ebpf.vm.memory import HostBuffer, Memory

from ._helper_util import ENGINE_NAMES, kernel_test_run, run, user_test_run

M64 = (1 << 64) - 1


def stack_bytes(data: bytes, top: int = 0) -> tuple[str, int]:
    """Instructions that put ``data`` (padded to 8) on the stack ending at r10 - top; its offset."""
    data = data + bytes(-len(data) % 8)
    n = len(data) + top
    lines = []
    for k in range(0, len(data), 8):
        v = int.from_bytes(data[k : k + 8], "little")
        lines.append(f"r1 = {v} ll\n*(u64 *)(r10 - {n - k}) = r1")
    return "\n".join(lines), n


def printk(fmt: bytes, args: list[int], *, fmt_size: int | None = None) -> str:
    text, n = stack_bytes(fmt + b"\0")
    lines = [text, f"r1 = r10\nr1 += -{n}\nr2 = {fmt_size if fmt_size is not None else len(fmt) + 1}"]
    for reg, arg in zip((3, 4, 5), args, strict=False):
        lines.append(f"r{reg} = {arg & M64} ll")
    lines.append(f"call {HelperId.TRACE_PRINTK}\nexit")
    return "\n".join(lines)


def fmt(text: bytes, args: list[int], memory: Memory | None = None) -> str:
    return format_bprintf(text, args, memory or Memory())


def test_integer_conversions() -> None:
    assert fmt(b"%d %i %u %x %X", [-5 & M64, 7, -1 & M64, 255, 255]) == "-5 7 4294967295 ff FF"
    assert fmt(b"%ld %lld %lu %lx", [-5 & M64, 1 << 40, -1 & M64, 1 << 36]) == (
        "-5 1099511627776 18446744073709551615 1000000000"
    )
    assert fmt(b"[%5d|%-5d|%05d|%+d|% d]", [42, 42, -42 & M64, 42, 42]) == "[   42|42   |-0042|+42| 42]"
    assert fmt(b"%c%c%%", [72, 0x169]) == "Hi%"


def test_refused_formats() -> None:
    for bad in (b"%o", b"%f", b"%#x", b"%hd", b"%.3d", b"%sX", b"%pX", b"%lf", b"\x01", b"\xc3", b"%d %d"):
        with pytest.raises(FormatError):
            fmt(bad, [1])


def test_strings_and_addresses() -> None:
    memory = Memory()
    buf = memory.map_buffer("s", HostBuffer.from_bytes(b"hello\0" + bytes([10, 0, 0, 1]) + bytes(range(16))))
    s, ip4, ip6 = buf.start, buf.start + 6, buf.start + 10
    assert fmt(b"<%s> <%8s> <%-8s>", [s, s, s], memory) == "<hello> <   hello> <hello   >"
    assert fmt(b"%s|%pks", [0, s], memory) == "|hello"  # a bad pointer prints nothing
    assert fmt(b"%pI4 %pi4", [ip4, ip4], memory) == "10.0.0.1 010.000.000.001"
    assert fmt(b"%pI6", [ip6], memory) == "0001:0203:0405:0607:0809:0a0b:0c0d:0e0f"
    assert fmt(b"%pi6 %pI4", [ip6, 8], memory) == "000102030405060708090a0b0c0d0e0f 0.0.0.0"
    assert fmt(b"%p %px %pS", [s, 0x10, 0x20], memory) == f"{s:016x} 0000000000000010 0x20"


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_trace_printk_appends_a_trace_pipe_line(engine: str) -> None:
    env = RunEnv(
        deterministic=True,
        clock=FixedClock(now_ns=12_345_678_901),
        task=TaskInfo(42, 42, 0, 0, b"demo"),
        program_type=ProgramType.XDP,
    )
    res = run(printk(b"x=%d y=%s\n", [-3 & M64, 0]), env, engine)
    assert res.retval == len("x=-3 y=\n")
    assert env.trace == ["            demo-42      [000] b..11    12.345678: bpf_trace_printk: x=-3 y=\n"]
    res = run(printk(b"%d %d %d %d", [1, 2, 3]), env, engine)
    assert res.retval == -errno.EINVAL & M64 and len(env.trace) == 1
    res = run(printk(b"abc", [], fmt_size=3), env, engine)  # no NUL within fmt_size
    assert res.retval == -errno.EINVAL & M64


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_snprintf_and_vprintk(engine: str) -> None:
    env = RunEnv(deterministic=True)
    fmt_text, fmt_at = stack_bytes(b"v=%d s=%s\0")
    str_text, str_at = stack_bytes(b"abc\0", top=fmt_at)
    prog = f"""
        {fmt_text}
        {str_text}
        r1 = -7
        *(u64 *)(r10 - {str_at + 16}) = r1
        r1 = r10
        r1 += -{str_at}
        *(u64 *)(r10 - {str_at + 8}) = r1
        r1 = r10
        r1 += -{str_at + 64}
        r2 = 8
        r3 = r10
        r3 += -{fmt_at}
        r4 = r10
        r4 += -{str_at + 16}
        r5 = 16
        call {HelperId.SNPRINTF}
        r6 = r0
        r0 = *(u64 *)(r10 - {str_at + 64})
        r6 <<= 56
        r0 ^= r6
        exit
    """
    res = run(prog, env, engine)
    # "v=-7 s=abc" is 10 characters + NUL = 11, truncated to 7 + NUL in the 8-byte buffer
    assert res.retval == int.from_bytes(b"v=-7 s=\0", "little") ^ (11 << 56)
    bad = prog.replace("r5 = 16", "r5 = 12")
    assert run(bad, env, engine).retval == int.from_bytes(bytes(8), "little") ^ ((-errno.EINVAL & 0xFF) << 56)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_strncmp(engine: str) -> None:
    env = RunEnv(deterministic=True)
    a_text, a_at = stack_bytes(b"abcd\0")
    b_text, b_at = stack_bytes(b"abce\0", top=a_at)

    def prog(n: int) -> str:
        return f"""
        {a_text}
        {b_text}
        r1 = r10
        r1 += -{a_at}
        r2 = {n}
        r3 = r10
        r3 += -{b_at}
        call {HelperId.STRNCMP}
        exit
        """

    assert run(prog(3), env, engine).retval == 0
    assert run(prog(4), env, engine).retval == -1 & M64
    b_text, b_at = stack_bytes(b"abc\0", top=a_at)
    assert run(prog(5), env, engine).retval == 1


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_probe_read_faults_cleanly(engine: str) -> None:
    env = RunEnv(deterministic=True)
    src = env.memory.map_buffer("kernel", HostBuffer.from_bytes(b"secret\0zz"))

    def prog(helper: int, addr: int, size: int) -> str:
        return f"""
        r1 = -1
        *(u64 *)(r10 - 8) = r1
        *(u64 *)(r10 - 16) = r1
        r1 = r10
        r1 += -16
        r2 = {size}
        r3 = {addr} ll
        call {helper}
        r6 = r0
        r0 = *(u64 *)(r10 - 16)
        r1 = *(u64 *)(r10 - 8)
        r0 ^= r1
        r6 <<= 56
        r0 ^= r6
        exit
        """

    def value(ret: int, data: bytes) -> int:
        data = data.ljust(16, b"\xff")
        return int.from_bytes(data[:8], "little") ^ int.from_bytes(data[8:], "little") ^ ((ret & 0xFF) << 56)

    # Kernel reads refuse user-half / non-canonical addresses with -ERANGE (copy_from_kernel_nofault),
    # user reads fault with -EFAULT; reads that start in mapped memory and run past it fault.
    # The legacy helpers read user memory below TASK_SIZE (x86-64 bpf_probe_read_compat).
    kernel_helpers = (HelperId.PROBE_READ_KERNEL,)
    for helper in (*kernel_helpers, HelperId.PROBE_READ, HelperId.PROBE_READ_USER):
        unmapped = -errno.ERANGE if helper in kernel_helpers else -errno.EFAULT
        assert run(prog(helper, src.start, 9), env, engine).retval == value(0, b"secret\0zz")
        assert run(prog(helper, src.start + 4, 9), env, engine).retval == value(-errno.EFAULT, bytes(9))
        assert run(prog(helper, 0x10, 4), env, engine).retval == value(unmapped, bytes(4))
    assert run(prog(HelperId.PROBE_READ_KERNEL, 0xFFFF_8880_0000_0000, 4), env, engine).retval == value(
        -errno.EFAULT, bytes(4)
    )
    kernel_str = (HelperId.PROBE_READ_KERNEL_STR,)
    for helper in (*kernel_str, HelperId.PROBE_READ_STR, HelperId.PROBE_READ_USER_STR):
        unmapped = -errno.ERANGE if helper in kernel_str else -errno.EFAULT
        copied = b"secret\0" if helper in kernel_str else b"secret\0\0"  # user copies: the NUL's word
        assert run(prog(helper, src.start, 16), env, engine).retval == value(7, copied)
        assert run(prog(helper, src.start, 4), env, engine).retval == value(4, b"sec\0")
        assert run(prog(helper, src.start + 7, 16), env, engine).retval == value(-errno.EFAULT, bytes(16))
        assert run(prog(helper, 0x10, 8), env, engine).retval == value(unmapped, bytes(8))


# --- against the kernel's trace buffer ------------------------------------------------------------

# r9 points at a 32-byte scratch area on the stack holding b"str\0" + 10.0.0.1 + an IPv6 address
# and the vprintk argument array; ("S" = the string, "A4" = the IPv4 bytes, "A6" = the IPv6 bytes).
SCRATCH = b"str\0" + bytes([10, 0, 0, 1]) + bytes(range(0x20, 0x30)) + bytes(8)


def vprintk(fmt: bytes, args: list[int | str]) -> str:
    fmt_text, fmt_at = stack_bytes(fmt + b"\0")
    scratch_text, scratch_at = stack_bytes(SCRATCH, top=fmt_at)
    args_at = scratch_at + 8 * len(args)
    lines = [fmt_text, scratch_text]
    refs = {"S": scratch_at, "A4": scratch_at - 4, "A6": scratch_at - 8}
    for k, arg in enumerate(args):
        if isinstance(arg, str):
            lines.append(f"r1 = r10\nr1 += -{refs[arg]}")
        else:
            lines.append(f"r1 = {arg & M64} ll")
        lines.append(f"*(u64 *)(r10 - {args_at - 8 * k}) = r1")
    lines.append(f"r1 = r10\nr1 += -{fmt_at}\nr2 = {len(fmt) + 1}")
    if args:
        lines.append(f"r3 = r10\nr3 += -{args_at}")
    else:
        lines.append("r3 = 0")
    lines.append(f"r4 = {8 * len(args)}\ncall {HelperId.TRACE_VPRINTK}\nexit")
    return "\n".join(lines)


VPRINTK_FORMATS: list[tuple[bytes, list[int | str]]] = [
    (b"<%s> <%6s> <%-6s>", ["S", "S", "S"]),
    (b"%pI4 %pi4 %pI6 %pi6", ["A4", "A4", "A6", "A6"]),
    (b"%pks|%s|%c", ["S", 0, 0x41]),
    (b"%d %d %d %d %d %d %d %d %d %d %d %d", list(range(12))),
    (b"%d %d %d %d %d %d %d %d %d %d %d %d %d", list(range(13))),
    (b"%llx %5d|%-5d|%u", [1 << 60, -1 & M64, 3, -2 & M64]),
    (b"%s%s", ["S", "S"]),
    (b"%sx", ["S"]),
]

KERNEL_FORMATS: list[tuple[bytes, list[int]]] = [
    (b"%d|%5u|%-4x|\n", [-5 & M64, 7, 255]),
    (b"%lld %llx %lu", [-(1 << 40) & M64, 1 << 36, -1 & M64]),
    (b"[%05d] [%+d] [% d] [%-6i]", [-42 & M64, 42, 42]),
    (b"no newline %c%c", [65, 66]),
    (b"two\n\n", []),
    (b"%X %x", [0xABCDEF, 0xABCDEF]),
    (b"%d %d %d %d", [1, 2, 3]),
    (b"%o", [8]),
    (b"%5", [8]),
    (b"tab\there", []),
]
_TS = re.compile(r"\[\d{3}\] (.....) +\d+\.\d{6}: ")


def _kernel_lines(marker: str) -> list[str]:
    with open("/sys/kernel/tracing/trace") as f:
        text = f.read()
    return [line for line in text.split("\n") if marker in line]


CASES: list[tuple[str, bytes, list[int | str]]] = [
    *[("printk", text, list(args)) for text, args in KERNEL_FORMATS],
    *[("vprintk", text, args) for text, args in VPRINTK_FORMATS],
]


@pytest.mark.kernel
@pytest.mark.parametrize("case", range(len(CASES)))
def test_trace_printk_matches_the_kernel_trace_pipe(case: int) -> None:
    if not os.path.exists("/sys/kernel/tracing/trace"):
        pytest.fail("tracefs is not mounted at /sys/kernel/tracing")
    marker = f"ebpf{os.getpid()}c{case}t{time.monotonic_ns()}"
    kind, text, args = CASES[case]
    fmt_text = marker.encode() + b" " + text
    if kind == "printk":
        prog = printk(fmt_text, [a for a in args if isinstance(a, int)])
    else:
        prog = vprintk(fmt_text, args)
    kernel = kernel_test_run(prog, ProgramType.SCHED_CLS, bytes(64))
    env = RunEnv()  # real task, clock and comm
    ours = user_test_run(prog, ProgramType.SCHED_CLS, bytes(64), env=env)
    assert ours.retval == kernel.retval
    if kernel.retval & (1 << 31):
        assert env.trace == [] and _kernel_lines(marker) == []
        return
    time.sleep(0.05)
    kernel_lines = _kernel_lines(marker)
    # the kernel ends each event with a newline: the event is that line plus any blank lines
    with open("/sys/kernel/tracing/trace") as f:
        raw = f.read()
    start = raw.index(kernel_lines[0])
    end = raw.index("\n", start + len(kernel_lines[0]))
    while raw.startswith("\n", end + 1) and end + 1 < len(raw):
        end += 1
    kernel_event = raw[start:end]
    assert len(env.trace) == 1
    assert _TS.sub("[CPU] FLAGS TS: ", env.trace[0]) == _TS.sub("[CPU] FLAGS TS: ", kernel_event)
    assert _TS.search(env.trace[0])[1] == _TS.search(kernel_event)[1]  # type: ignore[index]


# --- bpf_snprintf against the kernel (the format lives in a frozen read-only map) ----------------

SNPRINTF_CASES: list[tuple[bytes, list[int | str], int]] = [
    (b"v=%d s=%s!", [-7 & M64, "S"], 32),
    (b"%pI4|%pi6", ["A4", "A6"], 64),
    (b"%d %d", [1, 2], 4),
    (b"%d %d", [1, 2], 0),
    (b"abc", [], 32),
    (b"%x%c", [255, 0x5A], 32),
    (b"%q", [1], 32),
    (b"%d %d", [1], 32),
]


def snprintf_prog(fmt_ref: str, args: list[int | str], out_size: int) -> str:
    """XDP: snprintf into a 64-byte stack buffer, copied into the packet; returns the helper's r0."""
    scratch_text, scratch_at = stack_bytes(SCRATCH, top=64)
    args_at = scratch_at + 8 * max(len(args), 1)
    refs = {"S": scratch_at, "A4": scratch_at - 4, "A6": scratch_at - 8}
    lines = ["r9 = r1", "r1 = 0"]
    lines += [f"*(u64 *)(r10 - {64 - 8 * k}) = r1" for k in range(8)]
    lines.append(scratch_text)
    for k, arg in enumerate(args):
        lines.append(f"r1 = r10\nr1 += -{refs[arg]}" if isinstance(arg, str) else f"r1 = {arg & M64} ll")
        lines.append(f"*(u64 *)(r10 - {args_at - 8 * k}) = r1")
    lines.append(f"r1 = r10\nr1 += -64\nr2 = {out_size}\nr3 = {fmt_ref} ll")
    lines.append(f"r4 = r10\nr4 += -{args_at}" if args else "r4 = 0")
    lines.append(f"r5 = {8 * len(args)}\ncall {HelperId.SNPRINTF}\nr6 = r0")
    lines += ["r2 = *(u32 *)(r9 + 0)", "r3 = *(u32 *)(r9 + 4)", "r4 = r2", "r4 += 64", "if r4 > r3 goto out"]
    for k in range(8):
        lines.append(f"r1 = *(u64 *)(r10 - {64 - 8 * k})\n*(u64 *)(r2 + {8 * k}) = r1")
    lines += ["out:", "r0 = r6", "exit"]
    return "\n".join(lines)


@pytest.mark.kernel
@pytest.mark.parametrize("case", range(len(SNPRINTF_CASES)))
def test_snprintf_matches_the_kernel(case: int) -> None:
    from ebpf.kernel.map import Map as KernelMap
    from ebpf.maps import create
    from ebpf.spec import MapSpec, MapType

    fmt, args, out_size = SNPRINTF_CASES[case]
    value = (fmt + b"\0").ljust(64, b"\0")
    spec = MapSpec("fmt", MapType.ARRAY, 4, 64, 1, flags=0x80)  # BPF_F_RDONLY_PROG
    packet = bytes(80)
    from ebpf.errors import VerifierError

    with KernelMap.create(spec) as kmap:
        kmap.update(bytes(4), value)
        kmap.freeze()
        try:
            kernel = kernel_test_run(
                snprintf_prog(f"map_value({kmap.fd}) + 0", args, out_size), ProgramType.XDP, packet
            )
        except VerifierError as err:
            # a constant format is checked at load time; without a verifier the helper says -EINVAL
            assert "Invalid format string" in str(err)
            with pytest.raises(FormatError):
                format_bprintf(fmt, [0] * len(args), Memory())
            return
    env = RunEnv(deterministic=True)
    umap = create(spec, env.memory)
    umap.update(bytes(4), value)
    address = umap.value_address(bytes(4))
    assert address is not None
    for engine in ENGINE_NAMES:
        ours = user_test_run(
            snprintf_prog(str(address), args, out_size), ProgramType.XDP, packet, engine=engine, env=env
        )
        assert ours == kernel
