"""``ebpf.vm._helpers_misc`` against Linux: the same programs in ``kernel.Collection`` and in the
user-space runtime (both engines) give the same retval, ``data_out`` and ``ctx_out``.

SYSCALL programs test-run in the caller's thread, so their cgroup, pid-namespace and signal
answers are comparable; the socket buffer of a tc test run gets a dummy socket in the caller's
cgroup and network namespace. Cgroup ancestors are also compared from a child process moved
into a nested cgroup (``/<cgroup2>/ebpf-misc-<pid>/child``), and the network namespace cookie
from a child in a fresh namespace (``unshare --net``).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebpf.elf import load_collection_spec
from ebpf.errors import NotSupportedError
from ebpf.isa import assemble
from ebpf.isa.encoding import slot_offsets
from ebpf.kernel import Collection as KernelCollection
from ebpf.runtime import Collection
from ebpf.spec import CollectionSpec, MapSpec, MapType, ProgramSpec, ProgramType, Relocation, RelocKind
from ebpf.vm._helpers_misc import signal_log

TESTS = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.kernel

ENGINE_NAMES = ("interp", "py")
BPF_F_SLEEPABLE = 1 << 4
M64 = (1 << 64) - 1


MAP_REF = 0x7E7E7E7E7E7E7E7E  # "rX = MAP_REF ll" loads the map "events"


def program(text: str, prog_type: ProgramType) -> ProgramSpec:
    """A ProgramSpec from assembly; its ``rX = MAP_REF ll`` lines load the map ``events``."""
    prog = assemble(text)
    slots = slot_offsets(prog.instructions)
    relocations = {
        slots[i]: Relocation(RelocKind.MAP, "events")
        for i, insn in enumerate(prog.instructions)
        if insn.is_wide and insn.imm == MAP_REF
    }
    return ProgramSpec("prog", "syscall", prog_type, prog, relocations=relocations)


@contextmanager
def pair(
    text: str, prog_type: ProgramType, engine: str, maps: dict[str, MapSpec] | None = None
) -> Iterator[Any]:
    """The program ``prog`` in the runtime and in the kernel."""
    prog = program(text, prog_type)
    if prog_type == ProgramType.SYSCALL:
        prog.flags = BPF_F_SLEEPABLE
    spec = CollectionSpec(programs={"prog": prog}, maps=dict(maps or {}), license="GPL")
    with ExitStack() as stack:
        ours = stack.enter_context(Collection(spec, engine=engine))
        theirs = stack.enter_context(KernelCollection(spec))
        yield ours.programs["prog"], theirs.programs["prog"]


def same(ours: Any, theirs: Any, data: bytes = b"", ctx: bytes | None = None) -> Any:
    mine = ours.test_run(data, ctx_in=ctx)
    kernel = theirs.test_run(data, ctx_in=ctx)
    assert (mine.retval, mine.data_out, mine.ctx_out) == (kernel.retval, kernel.data_out, kernel.ctx_out)
    return kernel


# --- bpf_strtol / bpf_strtoul ----------------------------------------------------------------------

SL = 80  # the string's bytes (ctx + 32), copied to the stack


def strtox_program(helper: int) -> str:
    """ctx: u64 len, u64 flags, u64 r0 (out), u64 *res (out), the string."""
    lines = ["r6 = r1"]
    for i in range(0, SL, 8):
        lines += [f"r2 = *(u64 *)(r6 + {32 + i})", f"*(u64 *)(r10 - {SL - i}) = r2"]
    lines += [
        "r2 = 0x5555555555555555 ll",
        f"*(u64 *)(r10 - {SL + 8}) = r2",
        "r1 = r10",
        f"r1 += -{SL}",
        "r2 = *(u64 *)(r6 + 0)",
        f"if r2 > {SL} goto bad",
        "if r2 == 0 goto bad",
        "r3 = *(u64 *)(r6 + 8)",
        "r4 = r10",
        f"r4 += -{SL + 8}",
        f"call {helper}",
        "*(u64 *)(r6 + 16) = r0",
        f"r1 = *(u64 *)(r10 - {SL + 8})",
        "*(u64 *)(r6 + 24) = r1",
        "r0 = 0",
        "exit",
        "bad:",
        "r0 = 1",
        "exit",
    ]
    return "\n".join(lines)


def strtox_ctx(s: bytes, flags: int, length: int | None = None) -> bytes:
    n = len(s) if length is None else length
    return struct.pack("<QQQQ", n, flags & M64, 0, 0) + s[:SL].ljust(SL, b"\0")


STRTOX_CASES = [
    (b"123", 10),
    (b"  -42x", 0),
    (b"0x1f", 0),
    (b"0x1f", 16),
    (b"0x", 16),
    (b"0x", 0),
    (b"0xg", 0),
    (b"017", 0),
    (b"08", 0),
    (b"0", 8),
    (b"-", 0),
    (b"   ", 0),
    (b"-0", 10),
    (b"9223372036854775807", 10),
    (b"9223372036854775808", 10),
    (b"-9223372036854775808", 10),
    (b"-9223372036854775809", 10),
    (b"18446744073709551615", 10),
    (b"18446744073709551616", 10),
    (b"ffffffffffffffff", 16),
    (b"10000000000000000", 16),
    (b"1777777777777777777777", 8),
    (b"+5", 10),
    (b"\t\n\v\f\r 7", 10),
    (b"\xa0 12", 10),
    (b"12\x0034", 10),
    (b"abc", 16),
    (b"ABC", 16),
    (b"1", 3),
    (b"1", 0x20 | 10),
    (b"1", 1 << 40),
    (b"0X10", 0),
    (b" -0x10", 16),
    (b"0" * 70 + b"1", 10),
    (b" " * 10 + b"0" * 62 + b"12", 10),
    (b"-" + b"0" * 62 + b"9", 10),
]


@pytest.fixture(scope="module", params=[(h, e) for h in (105, 106) for e in ENGINE_NAMES], ids=str)
def strtox(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    helper, engine = request.param
    with pair(strtox_program(helper), ProgramType.SYSCALL, engine) as both:
        yield both


def test_strtox_cases(strtox: tuple[Any, Any]) -> None:
    ours, theirs = strtox
    for s, flags in STRTOX_CASES:
        for length in {len(s), max(1, len(s) - 1), 1}:
            same(ours, theirs, ctx=strtox_ctx(s, flags, length))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    s=st.one_of(
        st.binary(min_size=1, max_size=SL),
        st.text("0123456789abcdefxX -\t+", min_size=1, max_size=SL).map(str.encode),
    ),
    flags=st.sampled_from([0, 8, 10, 16, 2, 0x21]),
)
def test_strtox_random(strtox: tuple[Any, Any], s: bytes, flags: int) -> None:
    ours, theirs = strtox
    same(ours, theirs, ctx=strtox_ctx(s[:SL], flags))


# --- SYSCALL: cgroups, pid namespace, signals, perf counters ---------------------------------------


def steps_program(steps: list[str]) -> str:
    """Run each step (ending in a call), storing r0 at ctx + 8 * i; r0 = number of steps."""
    lines = ["r6 = r1"]
    for i, step in enumerate(steps):
        lines += [step, f"*(u64 *)(r6 + {8 * i}) = r0"]
    lines += [f"r0 = {len(steps)}", "exit"]
    return "\n".join(lines)


ANCESTOR_STEPS = [f"r1 = {lvl}\ncall 123" for lvl in (0, 1, 2, 3, 4, -1)] + ["call 80"]


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_current_ancestor_cgroup_id(engine: str) -> None:
    with pair(steps_program(ANCESTOR_STEPS), ProgramType.SYSCALL, engine) as (ours, theirs):
        same(ours, theirs, ctx=bytes(8 * len(ANCESTOR_STEPS)))


def nspid_steps() -> list[str]:
    st_ = os.stat("/proc/self/ns/pid")
    steps = []
    for dev, ino, size in (
        (st_.st_dev, st_.st_ino, 8),
        (st_.st_dev, st_.st_ino + 1, 8),
        (st_.st_dev + 1, st_.st_ino, 8),
        (st_.st_dev | 1 << 32, st_.st_ino, 8),
        (st_.st_dev, st_.st_ino, 4),
        (st_.st_dev, st_.st_ino, 16),
    ):
        steps.append(
            "r1 = -1\n*(u64 *)(r10 - 8) = r1\n*(u64 *)(r10 - 16) = r1\n"
            f"r1 = {dev} ll\nr2 = {ino} ll\nr3 = r10\nr3 += -16\nr4 = {size}\ncall 120\n"
            "r7 = r0\nr1 = *(u64 *)(r10 - 16)\n*(u64 *)(r6 + 128) = r1\nr1 = *(u64 *)(r10 - 8)\n"
            "*(u64 *)(r6 + 136) = r1\nr1 = *(u64 *)(r6 + 128)\nr1 ^= r7\nr0 = *(u64 *)(r6 + 136)\nr0 += r1"
        )
    return steps


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_get_ns_current_pid_tgid(engine: str) -> None:
    """Every result: r0 ^ the 8 bytes written + the next 8, so both the code and the bytes count."""
    with pair(steps_program(nspid_steps()), ProgramType.SYSCALL, engine) as (ours, theirs):
        same(ours, theirs, ctx=bytes(144))


RT_SIGNAL = signal.SIGRTMIN + 2  # real-time signals queue: every request is delivered once
SIGNALS = (0, RT_SIGNAL, 64 + 1, -1, 1 << 32 | RT_SIGNAL)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("prog_type", [ProgramType.SYSCALL, ProgramType.SCHED_CLS])
def test_send_signal(engine: str, prog_type: ProgramType) -> None:
    """Same return values; the kernel signals this process, the runtime only records the
    requests unless asked to deliver them (then as many signals arrive). The signal is blocked
    while the test runs and the queued ones are counted with sigtimedwait."""
    steps = [f"r1 = {sig} ll\ncall {h}" for h in (109, 117) for sig in SIGNALS]
    if prog_type == ProgramType.SCHED_CLS:
        text, data, ctx = skb_program(steps), bytes(14 + 8 * len(steps)), None
    else:
        text, data, ctx = steps_program(steps), b"", bytes(8 * len(steps))

    def drain() -> int:
        n = 0
        while signal.sigtimedwait([RT_SIGNAL], 0) is not None:
            n += 1
        return n

    threads = os.listdir("/proc/self/task")
    assert len(threads) == 1, (
        f"{len(threads)} threads in the test process: a process-directed signal may go to one that "
        "does not block it (tests/conftest.py keeps numpy's BLAS to one thread)"
    )
    old = signal.signal(RT_SIGNAL, lambda _sig, _f: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, [RT_SIGNAL])
    try:
        drain()
        with pair(text, prog_type, engine) as (ours, theirs):
            log = signal_log(ours.collection.env)
            same(ours, theirs, data, ctx)  # the runtime only records
            assert drain() == 4  # the kernel's: the signal twice per helper (it is a u32)
            assert [(r.sig, r.thread, r.delivered) for r in log.requests] == [
                (sig, thread, False) for thread in (False, True) for sig in (0, RT_SIGNAL, RT_SIGNAL)
            ]
            log.requests.clear()
            log.deliver = True
            ours.test_run(data, ctx_in=ctx)
            assert drain() == 4
            assert sum(r.delivered for r in log.requests) == 4
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [RT_SIGNAL])
        signal.signal(RT_SIGNAL, old)


PERF_MAP = {"events": MapSpec("events", MapType.PERF_EVENT_ARRAY, 4, 4, 4)}
BPF_F_CURRENT_CPU = 0xFFFFFFFF


def perf_steps() -> list[str]:
    steps = []
    for flags in (0, 3, 4, BPF_F_CURRENT_CPU, 1 << 32, -1):
        steps.append(f"r1 = {MAP_REF} ll\nr2 = {flags} ll\ncall 22")
        for size in (24, 16):
            steps.append(
                "r1 = -1\n*(u64 *)(r10 - 8) = r1\n*(u64 *)(r10 - 16) = r1\n*(u64 *)(r10 - 24) = r1\n"
                f"r1 = {MAP_REF} ll\nr2 = {flags} ll\nr3 = r10\nr3 += -24\nr4 = {size}\ncall 55\n"
                "r1 = *(u64 *)(r10 - 24)\nr0 += r1\nr1 = *(u64 *)(r10 - 16)\nr0 += r1\n"
                "r1 = *(u64 *)(r10 - 8)\nr0 += r1"
            )
    return steps


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_perf_event_read_empty_slots(engine: str) -> None:
    steps = perf_steps()
    with pair(skb_program(steps), ProgramType.SCHED_CLS, engine, PERF_MAP) as (ours, theirs):
        same(ours, theirs, bytes(14 + 8 * len(steps)))  # sleepable SYSCALL programs cannot use the map


# --- socket buffers: the test run's dummy socket -----------------------------------------------------

SKB_STEPS = [
    "r1 = r6\ncall 47",  # get_socket_uid
    "r1 = r6\ncall 79",  # skb_cgroup_id
    *[f"r1 = r6\nr2 = {lvl}\ncall 83" for lvl in (0, 1, 2, 3, -1)],  # skb_ancestor_cgroup_id
    "r1 = r6\ncall 122",  # get_netns_cookie(skb)
    "r1 = 0\ncall 122",  # get_netns_cookie(NULL): init_net's
    "r1 = 1\ncall 123",  # get_current_ancestor_cgroup_id(1)
]


def skb_program(steps: list[str]) -> str:
    """Each step's r0 on the stack, then all of them into the packet at offset 14."""
    lines = ["r6 = r1"]
    for i, step in enumerate(steps):
        lines += [step, f"*(u64 *)(r10 - {8 * (len(steps) - i)}) = r0"]
    lines += [
        "r1 = r6",
        "r2 = 14",
        "r3 = r10",
        f"r3 += -{8 * len(steps)}",
        f"r4 = {8 * len(steps)}",
        "r5 = 0",
        "call 9",
        "r0 = 0",
        "exit",
    ]
    return "\n".join(lines)


def skb_answers(engine: str, steps: list[str] = SKB_STEPS) -> tuple[list[int], list[int]]:
    """(runtime, kernel) results of :data:`SKB_STEPS` in a tc test run."""
    data = bytes(14 + 8 * len(steps))
    with pair(skb_program(steps), ProgramType.SCHED_CLS, engine) as (ours, theirs):
        got = []
        for side in (ours, theirs):
            out = side.test_run(data).data_out
            got.append(list(struct.unpack_from(f"<{len(steps)}Q", out, 14)))
    return got[0], got[1]


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_skb_socket_answers(engine: str) -> None:
    mine, kernel = skb_answers(engine)
    assert mine == kernel
    assert kernel[0] == 0  # the dummy socket's uid


def _child(mode: str) -> None:
    """In a child process: print the runtime's and the kernel's answers as JSON."""
    steps = SKB_STEPS if mode == "skb" else [s for s in SKB_STEPS if "r1 = 0\n" not in s]
    out: dict[str, Any] = {}
    for engine in ENGINE_NAMES:
        out[engine] = skb_answers(engine, steps)
        with pair(steps_program(ANCESTOR_STEPS), ProgramType.SYSCALL, engine) as (ours, theirs):
            ctx = bytes(8 * len(ANCESTOR_STEPS))
            out[engine + "-sys"] = [list(side.test_run(ctx_in=ctx).ctx_out or b"") for side in (ours, theirs)]
        if mode == "netns":
            with pair(skb_program(["r1 = 0\ncall 122"]), ProgramType.SCHED_CLS, engine) as (ours, _theirs):
                try:
                    ours.test_run(bytes(22))
                except NotSupportedError:
                    out[engine + "-null"] = "NotSupportedError"
    print(json.dumps(out))


def _run_child(prefix: list[str], mode: str, cgroup: str | None = None) -> dict[str, Any]:
    code = (
        "import os, sys\n"
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        + (f"open({cgroup + '/cgroup.procs'!r}, 'w').write(str(os.getpid()))\n" if cgroup else "")
        + "from differential.test_helpers_misc_kernel import _child\n"
        f"_child({mode!r})\n"
    )
    proc = subprocess.run(
        [*prefix, sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _cgroup2_mount() -> str | None:
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                return parts[1]
    return None


def test_cgroup_ancestors_in_a_nested_cgroup() -> None:
    mount = _cgroup2_mount()
    if mount is None:
        pytest.skip("no cgroup2 mount")
    top = os.path.join(mount, f"ebpf-misc-{os.getpid()}")
    child = os.path.join(top, "child")
    os.makedirs(child)
    try:
        ids = [os.stat(path).st_ino for path in (mount, top, child)]
        out = _run_child([], "skb", child)
    finally:
        os.rmdir(child)
        os.rmdir(top)
    for engine in ENGINE_NAMES:
        mine, kernel = out[engine]
        assert mine == kernel
        assert kernel[1] == ids[2] and kernel[2:7] == [*ids, 0, 0] and kernel[9] == ids[1]
        ours, theirs = out[engine + "-sys"]
        assert ours == theirs
        assert struct.unpack("<7q", bytes(theirs)) == (*ids, 0, 0, 0, ids[2])


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_netns_cookie_in_a_fresh_namespace() -> None:
    """In another network namespace: the skb's cookie is that namespace's (the runtime reads it
    with SO_NETNS_COOKIE); the cookie of NULL (init_net's) is not readable from there."""
    here = skb_answers("py")[1][7]
    out = _run_child(["unshare", "--net"], "netns")
    for engine in ENGINE_NAMES:
        mine, kernel = out[engine]
        assert mine == kernel and kernel[7] != here
        assert out[engine + "-null"] == "NotSupportedError"


# --- the C programs of tests/data/misc (clang-19, libbpf conventions) -------------------------------

DATA = TESTS / "data" / "misc"
CONFIG = struct.Struct("<64sII")


@pytest.fixture(scope="module", params=ENGINE_NAMES)
def misc(request: pytest.FixtureRequest) -> Iterator[tuple[Collection, KernelCollection]]:
    spec = load_collection_spec(DATA / "misc.o")
    with Collection(spec, engine=request.param) as ours, KernelCollection(spec) as theirs:
        yield ours, theirs


def globals_of(coll: Any) -> bytes:
    return bytes(coll.maps[".bss"].lookup(bytes(4)))


def variable(misc: tuple[Collection, KernelCollection], data: bytes, name: str) -> bytes:
    var = misc[0].spec.variables[name]
    return data[var.offset : var.offset + var.size]


def run_object(
    misc: tuple[Collection, KernelCollection], prog: str, data: bytes = b"", ctx: bytes | None = None
) -> bytes:
    ours, theirs = misc
    mine = ours.programs[prog].test_run(data, ctx_in=ctx)
    kernel = theirs.programs[prog].test_run(data, ctx_in=ctx)
    assert (mine.retval, mine.data_out, mine.ctx_out) == (kernel.retval, kernel.data_out, kernel.ctx_out)
    assert globals_of(ours) == globals_of(theirs)
    return globals_of(theirs)


@pytest.mark.parametrize(
    ("line", "base", "parsed"),
    [
        (b"12 -7 0x1f 077 abc", 0, 4),
        (b" 99999999999999999999 1", 10, 0),
        (b"-9223372036854775808 9223372036854775808", 10, 1),
        (b"ff FF -0x10 0x zz", 16, 3),
        (b"1 2 3 4 5 6 7 8 9", 10, 8),
        (b"\t+1", 10, 0),
        (b"", 0, 0),
        (b"10", 3, 0),
    ],
)
def test_config_parser_object(
    misc: tuple[Collection, KernelCollection], line: bytes, base: int, parsed: int
) -> None:
    data = run_object(misc, "parse_config", ctx=CONFIG.pack(line, base, 0))
    assert struct.unpack("<i", variable(misc, data, "parsed"))[0] == parsed


def test_classifier_object(misc: tuple[Collection, KernelCollection]) -> None:
    info = struct.unpack("<8q", variable(misc, run_object(misc, "classify", bytes(64)), "skb_info"))
    assert info[0] == 0 and info[5] == info[6] == -errno.ENOENT


def test_whoami_object(misc: tuple[Collection, KernelCollection]) -> None:
    st_ = os.stat("/proc/self/ns/pid")
    for dev, ino in ((st_.st_dev, st_.st_ino), (st_.st_dev, 1)):
        ctx = struct.pack("<QQ", dev, ino)
        who = struct.unpack("<8q", variable(misc, run_object(misc, "whoami", ctx=ctx), "who"))
        assert who[0] == (0 if ino != 1 else -errno.EINVAL) and who[5:7] == (0, -errno.EINVAL)


def test_object_is_the_one_build_sh_makes() -> None:
    """The committed misc.o is current (clang-19 and the system's headers)."""
    proc = subprocess.run(
        ["sh", str(DATA / "build.sh"), "--check"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0 and "not found" in proc.stderr:
        pytest.skip(proc.stderr.strip())
    assert proc.returncode == 0, proc.stdout + proc.stderr
