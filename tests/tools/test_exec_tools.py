"""execsnoop and execguard on the kernel: real execs by the test, the events and kills checked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ebpf.cli.main import main
from ebpf.tools import ToolError
from ebpf.tools.execguard import ExecGuard
from ebpf.tools.execsnoop import ExecSnoop

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("no_leftover_links")]
TOOL_PREFIXES = ("execsnoop", "execguard")

TRUE = shutil.which("true") or "/bin/true"


def wait_for(poll: Any, match: Any, timeout: float = 5.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    found: list[Any] = []
    while time.monotonic() < deadline and not found:
        found = [e for e in poll(0.2) if match(e)]
    return found


def test_execsnoop_sees_an_exec_with_its_arguments() -> None:
    marker = f"marker-{os.getpid()}"
    with ExecSnoop() as snoop:
        child = subprocess.run([TRUE, marker, "second arg"], check=True)
        assert child.returncode == 0
        events = wait_for(snoop.poll, lambda e: marker in e.args)
    assert len(events) == 1
    e = events[0]
    assert e.filename == TRUE and e.args == (marker, "second arg")
    assert e.ppid == os.getpid() and e.uid == os.getuid() and e.retval == 0
    assert e.comm == Path(TRUE).name  # the new program's name after the exec


def test_execsnoop_reports_failed_execs() -> None:
    missing = f"/nonexistent-{os.getpid()}"
    with ExecSnoop() as snoop:
        with pytest.raises(FileNotFoundError):
            subprocess.run([missing], check=False)
        events = wait_for(snoop.poll, lambda e: e.filename == missing)
    assert events and events[0].retval == -2  # -ENOENT


def test_execsnoop_filters() -> None:
    marker = f"filtered-{os.getpid()}"
    with ExecSnoop(uid=os.getuid() + 4242) as other_uid, ExecSnoop(name="^never-matches$") as by_name:
        subprocess.run([TRUE, marker], check=True)
        time.sleep(0.3)
        assert not [e for e in other_uid.poll(0.2) if marker in e.args]
        assert not [e for e in by_name.poll(0.2) if marker in e.args]
    with pytest.raises(ToolError, match="not a regular expression"):
        ExecSnoop(name="(")


def test_execguard_kills_only_denied_binaries(tmp_path: Path) -> None:
    denied = tmp_path / "denied-tool"
    shutil.copy(TRUE, denied)
    with ExecGuard([str(denied)]) as guard:
        blocked = subprocess.run([str(denied)], check=False)
        allowed = subprocess.run([TRUE], check=False)
        events = wait_for(guard.poll, lambda e: e.path == str(denied))
        hits = guard.hits()
    assert blocked.returncode == -9  # SIGKILL before the binary ran
    assert allowed.returncode == 0
    assert events and events[0].killed and events[0].ppid == os.getpid()
    assert hits[str(denied)] == 1
    assert subprocess.run([str(denied)], check=False).returncode == 0  # guard closed: allowed again


def test_execguard_dry_run_logs_without_killing(tmp_path: Path) -> None:
    denied = tmp_path / "watched"
    shutil.copy(TRUE, denied)
    with ExecGuard([str(denied)], dry_run=True) as guard:
        assert subprocess.run([str(denied)], check=False).returncode == 0
        events = wait_for(guard.poll, lambda e: e.path == str(denied))
    assert events and not events[0].killed


def test_tools_refuse_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ToolError, match="needs root"):
        ExecSnoop()
    result = CliRunner().invoke(main, ["tools", "execguard", "--deny", "/bin/false", "--duration", "0"])
    assert result.exit_code != 0 and "execguard needs root" in result.output


def test_cli_execsnoop_json_lines() -> None:
    marker = f"cli-marker-{os.getpid()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ebpf", "tools", "execsnoop", "--duration", "4", "--json", "--name", marker],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.0)  # loaded and attached by now
    subprocess.run([TRUE, marker], check=True)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [e["args"] for e in events] == [[marker]]
    assert events[0]["filename"] == TRUE
