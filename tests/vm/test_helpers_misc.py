"""``ebpf.vm._helpers_misc`` without a kernel: parsing, signal records, perf counters, namespaces.

The expected values were measured on Linux 6.18 (see tests/differential/test_helpers_misc_kernel.py,
which compares the same helpers against the kernel).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import signal
import struct
import threading

import pytest

from ebpf.errors import NotSupportedError, VMError
from ebpf.maps import create
from ebpf.spec import MapSpec, MapType, ProgramType
from ebpf.vm._helpers_misc import SignalRequest, cgroup_ancestors, parse_strtox, signal_log
from ebpf.vm.helpers import RunEnv, TaskInfo
from vm._helper_util import ENGINE_NAMES, run, user_test_run

M64 = (1 << 64) - 1
EINVAL, ERANGE = -errno.EINVAL, -errno.ERANGE


@pytest.mark.parametrize(
    ("text", "flags", "expected"),
    [
        (b"123", 10, (3, 123, False)),
        (b"  -42x", 0, (5, 42, True)),
        (b"0x1f", 0, (4, 0x1F, False)),
        (b"0x1", 0, (3, 1, False)),
        (b"0x", 16, (EINVAL, 0, False)),
        (b"0x", 0, (1, 0, False)),  # base 0 needs a hex digit after 0x: octal 0
        (b"08", 0, (1, 0, False)),
        (b"017", 0, (3, 0o17, False)),
        (b"-", 0, (EINVAL, 0, True)),
        (b"   ", 0, (EINVAL, 0, False)),
        (b"+5", 10, (EINVAL, 0, False)),
        (b"\t\n\v\f\r 7", 10, (7, 7, False)),
        (b"\xa0" + b"9", 10, (2, 9, False)),
        (b"18446744073709551615", 10, (20, M64, False)),
        (b"18446744073709551616", 10, (ERANGE, 0, False)),
        (b"1", 3, (EINVAL, 0, False)),
        (b"1", 0x20 | 10, (EINVAL, 0, False)),
        (b"0" * 70 + b"1", 10, (63, 0, False)),  # at most 63 bytes after the sign
        (b"0X10", 0, (4, 16, False)),
        (b"", 10, (EINVAL, 0, False)),
    ],
)
def test_parse_strtox(text: bytes, flags: int, expected: tuple[int, int, bool]) -> None:
    assert parse_strtox(text, flags) == expected


def strtox_program(helper: int, text: bytes, flags: int) -> str:
    """Store ``text`` on the stack, call the helper, return r0 and leave *res at r10 - 8."""
    padded = text.ljust(-(-len(text) // 8) * 8, b"\0")
    lines = []
    for i in range(0, len(padded), 8):
        lines += [f"r1 = {int.from_bytes(padded[i : i + 8], 'little')} ll", f"*(u64 *)(r10 - {72 - i}) = r1"]
    lines += [
        "r1 = -1",
        "*(u64 *)(r10 - 8) = r1",
        "r1 = r10",
        "r1 += -72",
        f"r2 = {len(text)}",
        f"r3 = {flags} ll",
        "r4 = r10",
        "r4 += -8",
        f"call {helper}",
        "r1 = *(u64 *)(r10 - 8)",
        "*(u64 *)(r10 - 16) = r1",
        "exit",
    ]
    return "\n".join(lines)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize(
    ("helper", "text", "flags", "r0"),
    [
        (105, b"-9223372036854775808", 10, 20),
        (105, b"9223372036854775808", 10, ERANGE),
        (105, b"-9223372036854775809", 10, ERANGE),
        (105, b" -0x10", 16, 6),
        (106, b" -0x10", 16, EINVAL),
        (106, b"-0", 10, EINVAL),
        (106, b"9223372036854775808", 10, 19),
    ],
)
def test_strtol_and_strtoul(engine: str, helper: int, text: bytes, flags: int, r0: int) -> None:
    env = RunEnv(deterministic=True)
    result = run(strtox_program(helper, text, flags), env, engine)
    assert result.retval == r0 & M64


def test_strtol_writes_the_result_and_zeroes_it_on_errors() -> None:
    from ebpf.vm._helpers_misc import _strtox
    from ebpf.vm.memory import HostBuffer

    env = RunEnv(deterministic=True)
    buf = env.memory.map_buffer("buf", HostBuffer(64))
    strtol = _strtox(True)
    for text, value, r0 in ((b"-42", -42, 3), (b"x", 0, EINVAL), (b"99999999999999999999", 0, ERANGE)):
        env.memory.write_bytes(buf.start, text + b"\xff" * 8)
        env.memory.write_bytes(buf.start + 32, b"\x55" * 8)
        assert strtol(env, buf.start, len(text), 10, buf.start + 32, 0) == r0 & M64
        assert struct.unpack("<q", env.memory.read_bytes(buf.start + 32, 8))[0] == value


# --- signals --------------------------------------------------------------------------------------

SIG = signal.SIGRTMIN + 3


def signal_program(helper: int, sig: int) -> str:
    return f"r1 = {sig} ll\ncall {helper}\nexit"


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("helper", [109, 117])
def test_send_signal_is_recorded_not_sent(engine: str, helper: int) -> None:
    env = RunEnv(deterministic=True)  # the fixed task (pid 1000) is not this process
    for sig, r0 in ((0, 0), (SIG, 0), (64, 0), (65, EINVAL), (-1, EINVAL), (1 << 32 | 5, 0)):
        assert run(signal_program(helper, sig), env, engine).retval == r0 & M64
    thread = helper == 117
    assert signal_log(env).requests == [SignalRequest(s, thread, 1000, 1000) for s in (0, SIG, 64, 5)]


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_send_signal_to_init_is_refused(engine: str) -> None:
    env = RunEnv(task=dataclasses.replace(TaskInfo.fixed(), pid=1, tgid=1))
    assert run(signal_program(109, SIG), env, engine).retval == -errno.EPERM & M64
    assert signal_log(env).requests == []


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("helper", [109, 117])
def test_send_signal_delivers_on_request(engine: str, helper: int) -> None:
    env = RunEnv()  # the current task: this thread
    old = signal.signal(SIG, lambda _s, _f: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, [SIG])
    try:
        assert run(signal_program(helper, SIG), env, engine).retval == 0
        assert signal.sigtimedwait([SIG], 0) is None  # recorded only
        signal_log(env).deliver = True
        assert run(signal_program(helper, SIG), env, engine).retval == 0
        info = signal.sigtimedwait([SIG], 0)
        assert info is not None and info.si_signo == SIG
        assert [r.delivered for r in signal_log(env).requests] == [False, True]
        assert signal_log(env).requests[1].pid == threading.get_native_id()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [SIG])
        signal.signal(SIG, old)


# --- perf counters ---------------------------------------------------------------------------------


def perf_program(handle: int, helper: int, flags: int, size: int = 24) -> str:
    if helper == 22:
        return f"r1 = {handle} ll\nr2 = {flags} ll\ncall 22\nexit"
    return (
        f"r1 = -1\n*(u64 *)(r10 - 8) = r1\nr1 = {handle} ll\nr2 = {flags} ll\nr3 = r10\nr3 += -24\n"
        f"r4 = {size}\ncall 55\nr1 = *(u64 *)(r10 - 8)\nr0 += r1\nexit"
    )


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_perf_event_read(engine: str) -> None:
    env = RunEnv(deterministic=True)
    m = create(MapSpec("events", MapType.PERF_EVENT_ARRAY, 4, 4, 4))
    handle = env.add_map(m)
    for helper in (22, 55):
        for flags, r0 in (
            (0, -errno.ENOENT),
            (4, -errno.E2BIG),
            (0xFFFFFFFF, -errno.ENOENT),
            (1 << 32, EINVAL),
        ):
            assert run(perf_program(handle, helper, flags), env, engine).retval == r0 & M64
    # size 16: -EINVAL, and only those 16 bytes zeroed (the -1 at r10 - 8 stays)
    assert run(perf_program(handle, 55, 0, size=16), env, engine).retval == (EINVAL - 1) & M64
    m.open_buffer(2, cpu=0)  # type: ignore[attr-defined]
    for helper in (22, 55):
        with pytest.raises(NotSupportedError, match="perf counters"):
            run(perf_program(handle, helper, 2), env, engine)


def test_perf_event_read_needs_a_perf_event_array() -> None:
    env = RunEnv(deterministic=True)
    handle = env.add_map(create(MapSpec("a", MapType.ARRAY, 4, 4, 1)))
    with pytest.raises(VMError, match="not a PERF_EVENT_ARRAY"):
        run(perf_program(handle, 22, 0), env, "interp")


# --- namespaces and cgroups -----------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_get_ns_current_pid_tgid(engine: str) -> None:
    st = os.stat("/proc/self/ns/pid")
    env = RunEnv(deterministic=True)
    for dev, ino, size, r0, written in (
        (st.st_dev, st.st_ino, 8, 0, struct.pack("<II", 1000, 1000)),
        (st.st_dev, st.st_ino + 1, 8, EINVAL, bytes(8)),
        (st.st_dev | 1 << 32, st.st_ino, 8, EINVAL, bytes(8)),
        (st.st_dev, st.st_ino, 4, EINVAL, bytes(4) + b"\xff" * 4),
    ):
        text = (
            f"r1 = -1\n*(u64 *)(r10 - 8) = r1\nr1 = {dev} ll\nr2 = {ino} ll\nr3 = r10\nr3 += -8\n"
            f"r4 = {size}\ncall 120\nr6 = r0\nr0 = *(u64 *)(r10 - 8)\nr0 ^= r6\nexit"
        )
        expected = int.from_bytes(written, "little") ^ (r0 & M64)
        assert run(text, env, engine).retval == expected


def test_cgroup_ancestors_of_the_root_and_this_process() -> None:
    assert cgroup_ancestors(1) == (1,)
    own = TaskInfo.current().cgroup_id
    chain = cgroup_ancestors(own)
    assert chain[0] == 1 and chain[-1] == own
    with pytest.raises(VMError, match="no cgroup2 directory"):
        cgroup_ancestors(0xFFFF_FFFF_FFF0)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_current_ancestor_cgroup_id_of_the_fixed_task(engine: str) -> None:
    env = RunEnv(deterministic=True)  # root cgroup
    for level, want in ((0, 1), (1, 0), (-1, 0), (1 << 32, 1)):  # the level is an int
        assert run(f"r1 = {level} ll\ncall 123\nexit", env, engine).retval == want


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_skb_socket_helpers(engine: str) -> None:
    """uid 0 and the task's cgroup: the test run's dummy socket."""
    env = RunEnv(deterministic=True)
    text = (
        "r6 = r1\ncall 47\nr7 = r0\nr1 = r6\ncall 79\nr7 += r0\nr1 = r6\nr2 = 0\ncall 83\nr7 += r0\n"
        "r1 = r6\nr2 = 1\ncall 83\nr7 += r0\nr0 = r7\nexit"
    )
    assert user_test_run(text, ProgramType.SCHED_CLS, bytes(64), engine=engine, env=env).retval == 2


def test_skb_helpers_need_a_socket_buffer() -> None:
    env = RunEnv(deterministic=True)
    with pytest.raises(VMError, match="bpf_get_socket_uid"):
        run("r1 = r10\ncall 47\nexit", env, "interp")
