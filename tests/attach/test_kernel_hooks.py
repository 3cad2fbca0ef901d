"""BTF-typed hooks (tp_btf, iterators), perf event sampling, the execve killer, and the error
paths of hooks this kernel does not offer (kprobes compiled out, trampolines refused)."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest

from ebpf import attach
from ebpf.attach import LinkType, _observe
from ebpf.attach._abi import PerfType
from ebpf.errors import NotSupportedError, SyscallError
from ebpf.spec import AttachType, ProgramType

from ._util import ArrayMap, counter, links_of, load

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def vmlinux():  # type: ignore[no-untyped-def]
    from ebpf.btf import Spec

    path = Path("/sys/kernel/btf/vmlinux")
    if not path.exists():
        pytest.skip("no /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF off)")
    return Spec.from_file(path)


def test_tp_btf_counts_own_syscalls(vmlinux) -> None:  # type: ignore[no-untyped-def]
    from ebpf.btf.types import Typedef

    target = vmlinux.find_id("btf_trace_sys_enter", Typedef)
    pid = os.getpid()
    with (
        ArrayMap() as m,
        load(
            counter(m.fd, pid=pid),
            ProgramType.TRACING,
            attach_type=AttachType.TRACE_RAW_TP,
            attach_btf_id=target,
        ) as prog,
    ):
        with attach.tp_btf(prog) as link:
            for _ in range(5):
                os.getppid()
            info = link.info()
            assert info.type == LinkType.RAW_TRACEPOINT and info.details["tp_name"] == "sys_enter"
        assert m[0] >= 5
        assert links_of({prog.info().id}) == []


def _task_offsets(vmlinux) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    from ebpf.btf.types import Struct

    task = vmlinux.find("task_struct", Struct)
    offsets = {m.name: m.offset // 8 for m in task.members if m.name in ("pid", "tgid")}
    return offsets["pid"], offsets["tgid"]


# struct bpf_iter__task { struct bpf_iter_meta *meta; struct task_struct *task; }: write
# (tgid, pid) of every task with bpf_seq_write.
TASK_ITER = """
    r6 = *(u64 *)(r1 + 0)
    r7 = *(u64 *)(r1 + 8)
    if r7 == 0 goto out
    r2 = *(u32 *)(r7 + {tgid})
    r3 = *(u32 *)(r7 + {pid})
    *(u32 *)(r10 - 8) = r2
    *(u32 *)(r10 - 4) = r3
    r1 = *(u64 *)(r6 + 0)
    r2 = r10
    r2 += -8
    r3 = 8
    call 127
out:
    r0 = 0
    exit
"""


def test_task_iterator_lists_this_process(vmlinux) -> None:  # type: ignore[no-untyped-def]
    from ebpf.btf.types import Func

    pid_off, tgid_off = _task_offsets(vmlinux)
    target = vmlinux.find_id("bpf_iter_task", Func)
    with load(
        TASK_ITER.format(pid=pid_off, tgid=tgid_off),
        ProgramType.TRACING,
        attach_type=AttachType.TRACE_ITER,
        attach_btf_id=target,
    ) as prog:
        with attach.iterator(prog) as link:
            assert link.info().type == LinkType.ITER
            assert link.info().details["target_name"] == "task"
            first = link.read()
            second = link.read()  # every open() walks again
        assert len(first) % 8 == 0
        pairs = {struct.unpack_from("=II", first, i) for i in range(0, len(first), 8)}
        assert (os.getpid(), os.getpid()) in pairs
        assert (os.getppid(), os.getppid()) in pairs
        assert abs(len(second) - len(first)) < 8 * 64
        # limited to one process (task iterator option, Linux >= 6.1)
        with attach.iterator(prog, pid=os.getpid()) as only_me:
            mine = only_me.read()
        tgids = {struct.unpack_from("=I", mine, i)[0] for i in range(0, len(mine), 8)}
        assert tgids == {os.getpid()}
        assert links_of({prog.info().id}) == []


def test_perf_event_sampling_counts() -> None:
    pid = os.getpid()
    with ArrayMap() as m, load(counter(m.fd), ProgramType.PERF_EVENT) as prog:
        # software cpu-clock (PERF_COUNT_SW_CPU_CLOCK = 0), 1000 samples/s, this process on any CPU
        with attach.perf_event(
            prog, type=PerfType.SOFTWARE, config=0, sample_freq=1000, pid=pid, cpu=-1
        ) as link:
            # spin until this process has had 0.3 s of CPU (however busy the machine is)
            start, deadline = time.process_time(), time.monotonic() + 10
            while time.process_time() - start < 0.3 and time.monotonic() < deadline:
                pass
            info = link.info()
            assert info.type == LinkType.PERF_EVENT
            assert info.details["config"] == 0
            # Linux 6.18 gives cpu-clock a PMU of its own and reports that dynamic type (6 here)
            assert info.details["type"] == PerfType.SOFTWARE or info.details["type"] >= 6
        samples = m[0]
        assert 100 <= samples <= 1000  # ~300 expected: 1000 Hz over 0.3 s of CPU time
        time.sleep(0.05)
        assert m[0] == samples
        with pytest.raises(ValueError, match="exactly one"):
            attach.perf_event(prog, sample_period=1, sample_freq=1)


# sys_enter_execve: struct trace_event_raw_sys_enter has the filename pointer at offset 16.
# Reads it with bpf_probe_read_user_str and kills the caller with bpf_send_signal(SIGKILL)
# when it equals the forbidden path (up to 32 bytes, zero padded).
EXECVE_KILLER = """
    r6 = r1
    r1 = 0
    *(u64 *)(r10 - 32) = r1
    *(u64 *)(r10 - 24) = r1
    *(u64 *)(r10 - 16) = r1
    *(u64 *)(r10 - 8) = r1
    r1 = r10
    r1 += -32
    r2 = 32
    r3 = *(u64 *)(r6 + 16)
    call 114
{compare}
    r1 = 9
    call 109
out:
    r0 = 0
    exit
"""


def execve_killer(path: str) -> str:
    raw = path.encode().ljust(32, b"\0")
    assert len(raw) == 32 and len(path) < 32
    lines = []
    for i in range(4):
        word = int.from_bytes(raw[i * 8 : i * 8 + 8], "little")
        lines.append(
            f"    r1 = *(u64 *)(r10 - {32 - i * 8})\n    r2 = {word:#x} ll\n    if r1 != r2 goto out"
        )
    return EXECVE_KILLER.format(compare="\n".join(lines))


def test_execve_of_forbidden_binary_is_killed(tmp_path: Path) -> None:
    forbidden = Path(f"/tmp/ebpf-fb-{os.getpid()}")
    shutil.copy("/bin/true", forbidden)
    try:
        with load(execve_killer(str(forbidden)), ProgramType.TRACEPOINT) as prog:
            with attach.tracepoint(prog, "syscalls", "sys_enter_execve"):
                killed = subprocess.run([str(forbidden)], check=False, timeout=10)
                allowed = subprocess.run(["/bin/true"], check=False, timeout=10)
                assert killed.returncode == -signal.SIGKILL
                assert allowed.returncode == 0
            after = subprocess.run([str(forbidden)], check=False, timeout=10)
            assert after.returncode == 0
            assert links_of({prog.info().id}) == []
    finally:
        forbidden.unlink()


# --- hooks this kernel does not offer: the error paths, asserting what is observed -----------


def test_kprobe_reports_missing_kernel_support() -> None:
    if Path("/sys/bus/event_source/devices/kprobe").exists():
        pytest.skip("this kernel has kprobes; the error path is not reachable")
    with ArrayMap() as m, load(counter(m.fd), ProgramType.KPROBE) as prog:
        for call in (
            lambda: attach.kprobe(prog, "do_sys_openat2"),
            lambda: attach.kretprobe(prog, "do_sys_openat2"),
        ):
            with pytest.raises(NotSupportedError) as info:
                call()
            text = str(info.value)
            assert "no kprobe PMU at /sys/bus/event_source/devices/kprobe" in text
            assert "no kprobe_events in" in text
            if _observe.kernel_config("CONFIG_KPROBES") == "n":
                assert "built without CONFIG_KPROBES" in text
                assert "'# CONFIG_KPROBES is not set'" in text
        with pytest.raises(ValueError, match="invalid kernel symbol"):
            attach.kprobe(prog, "bad symbol")


def test_kprobe_multi_reports_what_the_kernel_said() -> None:
    with (
        ArrayMap() as m,
        load(counter(m.fd), ProgramType.KPROBE, attach_type=AttachType.TRACE_KPROBE_MULTI) as prog,
    ):
        try:
            link = attach.kprobe_multi(prog, ["do_sys_openat2"])
        except NotSupportedError as err:
            assert "BPF_LINK_CREATE(BPF_TRACE_KPROBE_MULTI) failed with EOPNOTSUPP" in str(
                err
            ) or "ENOTSUPP (524)" in str(err)
            if _observe.kernel_config("CONFIG_FPROBE") == "n":
                assert "built without CONFIG_FPROBE" in str(err)
        else:  # a kernel with fprobe: it must work
            with link:
                os.getppid()
        assert links_of({prog.info().id}) == []


@pytest.mark.parametrize(
    ("prog_type", "attach_type", "func"),
    [
        (ProgramType.TRACING, AttachType.TRACE_FENTRY, "do_sys_openat2"),
        (ProgramType.TRACING, AttachType.TRACE_FEXIT, "do_sys_openat2"),
        (ProgramType.TRACING, AttachType.MODIFY_RETURN, "bpf_modify_return_test"),
        (ProgramType.LSM, AttachType.LSM_MAC, "bpf_lsm_file_open"),
    ],
)
def test_trampoline_programs_are_refused_here(vmlinux, prog_type, attach_type, func) -> None:  # type: ignore[no-untyped-def]
    from ebpf.btf.types import Func

    target = vmlinux.find_id(func, Func)
    mode = _observe.lockdown_mode()
    try:
        prog = load("r0 = 0\nexit", prog_type, attach_type=attach_type, attach_btf_id=target)
    except SyscallError as err:
        # observed on this machine: EPERM, no verifier log at all, lockdown "integrity"
        assert err.errno == errno.EPERM
        assert err.cmd == "BPF_PROG_LOAD"
        if mode not in (None, "none"):
            assert f"lockdown mode is '{mode}'" in str(err)
        return
    with prog:  # a kernel that allows trampolines: attach must work
        attacher = {
            AttachType.TRACE_FENTRY: attach.fentry,
            AttachType.TRACE_FEXIT: attach.fexit,
            AttachType.MODIFY_RETURN: attach.fmod_ret,
            AttachType.LSM_MAC: attach.lsm,
        }[attach_type]
        with attacher(prog) as link:
            assert link.info().type in (LinkType.TRACING, LinkType.UNSPEC)


def test_lockdown_mode_is_read_from_securityfs() -> None:
    mode = _observe.lockdown_mode()
    text = Path("/sys/kernel/security/lockdown").read_text()
    assert f"[{mode}]" in text


def test_fentry_on_a_non_tracing_program_is_a_syscall_error() -> None:
    with ArrayMap() as m, load(counter(m.fd), ProgramType.RAW_TRACEPOINT) as prog:
        with pytest.raises(SyscallError) as info:
            attach.fentry(prog, cookie=1)
        assert info.value.errno == errno.EINVAL
        assert any("while attaching the fentry program" in note for note in info.value.__notes__)


def test_hardware_perf_events_report_what_the_machine_lacks() -> None:
    if Path("/sys/bus/event_source/devices/cpu").exists():
        pytest.skip("this machine has a hardware PMU")
    with ArrayMap() as m, load(counter(m.fd), ProgramType.PERF_EVENT) as prog:
        # PERF_COUNT_HW_CPU_CYCLES on a VM without a virtual PMU
        with pytest.raises(SyscallError) as info:
            attach.perf_event(
                prog, type=PerfType.HARDWARE, config=0, sample_period=100_000, pid=os.getpid(), cpu=-1
            )
        assert info.value.cmd == "perf_event_open"
        assert info.value.errno in (errno.ENOENT, errno.EOPNOTSUPP)
        assert any("perf event type 0 config 0" in note for note in info.value.__notes__)


def test_raw_tracepoint_cookie() -> None:
    # bpf_get_attach_cookie (helper 174) in a raw tracepoint program: Linux >= 6.10
    with ArrayMap() as m:
        program = f"""
    call 174
    r6 = r0
    r1 = map_fd({m.fd}) ll
    r2 = r10
    r2 += -4
    *(u32 *)(r10 - 4) = 0
    call 1
    if r0 == 0 goto out
    *(u64 *)(r0 + 0) = r6
out:
    r0 = 0
    exit
"""
        with load(program, ProgramType.RAW_TRACEPOINT) as prog:
            with attach.raw_tracepoint(prog, "sys_enter", cookie=0xC0FFEE) as link:
                os.getppid()
                assert link.info().details["cookie"] == 0xC0FFEE
            assert m[0] == 0xC0FFEE
