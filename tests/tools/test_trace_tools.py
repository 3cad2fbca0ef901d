"""opensnoop, syscount and biolatency on the kernel, with bpftrace counting the same events in the same run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ebpf.cli.main import main
from ebpf.tools.biolatency import BioLatency, format_log2_hist, parse_dev
from ebpf.tools.opensnoop import OpenSnoop, format_flags
from ebpf.tools.syscount import Syscount, syscall_names

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("no_leftover_links")]
TOOL_PREFIXES = ("opensnoop", "syscount", "biolatency")

needs_bpftrace = pytest.mark.skipif(
    shutil.which("bpftrace") is None, reason="bpftrace not installed (apt-get install bpftrace)"
)

# A child that waits for "go" on stdin, then opens a file N times and calls getppid N times.
WORKLOAD = """
import os, sys
path, n = sys.argv[1], int(sys.argv[2])
sys.stdin.readline()
for _ in range(n):
    os.close(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
for _ in range(n):
    os.getppid()
print("done", flush=True)
"""


def start_workload(path: Path, n: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WORKLOAD, str(path), str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def go(child: subprocess.Popen[str]) -> None:
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == "done"
    child.wait(timeout=10)


def bpftrace(program: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        ["bpftrace", "-f", "json", "-e", program], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # {"type": "attached_probes", ...} once it is ready
    assert "attached_probes" in first, first + (proc.stderr.read() if proc.stderr else "")
    return proc


def bpftrace_count(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    for line in out.splitlines():
        if not line.strip():
            continue
        doc = json.loads(line)
        if doc.get("type") == "map":
            return int(next(iter(doc["data"].values())))
    return 0


def test_flags_text() -> None:
    assert format_flags(os.O_RDONLY | os.O_CLOEXEC) == "O_RDONLY|O_CLOEXEC"
    assert format_flags(os.O_WRONLY | os.O_CREAT | os.O_TRUNC) == "O_WRONLY|O_CREAT|O_TRUNC"


def test_syscall_names_from_the_kernel_table() -> None:
    names = syscall_names()
    assert names[0] == "read" and names[59] == "execve" and names[110] == "getppid"


@needs_bpftrace
def test_opensnoop_and_syscount_match_bpftrace(tmp_path: Path) -> None:
    target = tmp_path / "opened.txt"
    target.write_text("x")
    n = 300
    child = start_workload(target, n)
    try:
        opens = bpftrace(f"tracepoint:syscalls:sys_exit_openat /pid == {child.pid}/ {{ @opens = count(); }}")
        calls = bpftrace(
            f"tracepoint:syscalls:sys_enter_getppid /pid == {child.pid}/ {{ @calls = count(); }}"
        )
        with OpenSnoop(pid=child.pid) as snoop, Syscount(pid=child.pid) as counter:
            go(child)
            time.sleep(0.2)
            events = snoop.poll(0.5)
            events += snoop.poll(0.2)
            stats = {s.name: s for s in counter.snapshot()}
        theirs_opens, theirs_calls = bpftrace_count(opens), bpftrace_count(calls)
    finally:
        child.kill()
        child.communicate()
    ours = [e for e in events if e.path == str(target)]
    assert len(ours) == n and all(e.ret >= 0 and e.pid == child.pid for e in ours)
    assert all(format_flags(e.flags) == "O_RDONLY|O_CLOEXEC" for e in ours)
    assert len(events) == theirs_opens  # every openat of the child, as bpftrace counted them
    assert stats["getppid"].count == theirs_calls == n
    assert stats["getppid"].errors == 0 and stats["getppid"].total_ns > 0


def test_opensnoop_failed_opens(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with OpenSnoop(failed=True, name=str(tmp_path)) as snoop:
        with pytest.raises(FileNotFoundError):
            open(missing)  # noqa: SIM115
        (tmp_path / "ok").write_text("fine")
        time.sleep(0.1)
        events = snoop.poll(0.5)
    assert [(e.path, e.error) for e in events] == [(str(missing), "ENOENT")]


def test_syscount_per_process() -> None:
    with Syscount(per_process=True) as counter:
        for _ in range(50):
            os.getppid()
        rows = {s.key: s for s in counter.snapshot()}
    assert rows[os.getpid()].count >= 50
    assert rows[os.getpid()].name == Path(sys.executable).name[:15] or rows[os.getpid()].name


def test_biolatency_sees_direct_io(tmp_path: Path) -> None:
    dev = os.stat(tmp_path).st_dev
    disk = f"{os.major(dev)}:{os.minor(dev)}"
    with BioLatency(disk=disk, per_disk=True) as bio:
        path = tmp_path / "direct.dat"
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | getattr(os, "O_DIRECT", 0))
        import mmap

        block = mmap.mmap(-1, 4096)
        block.write(b"b" * 4096)
        try:
            for i in range(64):
                os.pwrite(fd, block, i * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
        time.sleep(0.2)
        hists = bio.histograms()
    if not hists:
        pytest.skip(f"no block requests reached {disk} (not a real block device here?)")
    assert hists[0].dev == parse_dev(disk)
    assert hists[0].total >= 64
    lines = format_log2_hist(hists[0].slots, "usecs")
    assert lines[0] == "     usecs               : count     distribution"
    assert lines[1].startswith("         0 -> 1          : ")
    assert any(line.endswith("|****************************************|") for line in lines[1:])


def test_cli_syscount_json() -> None:
    result = CliRunner().invoke(
        main, ["tools", "syscount", "--duration", "0.5", "--interval", "0.5", "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output.splitlines()[-1])
    assert rows and {"name", "count", "errors", "total_ns"} <= set(rows[0])
