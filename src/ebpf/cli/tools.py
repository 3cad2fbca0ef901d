"""CLI layer: ``ebpf tools <name>``, the bundled tools (execsnoop, execguard, ...).

Rule 1: each command parses options, builds the tool (which checks root and the kernel and
raises :class:`~ebpf.tools.ToolError` with a clear message), prints events as they come
(``--json``: one JSON object per line) and stops after ``--duration`` seconds or on Ctrl-C,
always closing the tool so no link, map or program is left behind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import click

from ebpf.cli._common import Printer, fail

__all__ = ["tools"]


def _wall(boot_seconds: float) -> str:
    boot_epoch = time.clock_gettime(time.CLOCK_REALTIME) - time.clock_gettime(time.CLOCK_BOOTTIME)
    return time.strftime("%H:%M:%S", time.localtime(boot_epoch + boot_seconds))


def _loop(
    poll: Callable[[float], Iterable[Any]], show: Callable[[Any], None], duration: float | None
) -> None:
    deadline = None if duration is None else time.monotonic() + duration
    try:
        while deadline is None or time.monotonic() < deadline:
            wait = 0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))
            for event in poll(wait):
                show(event)
    except KeyboardInterrupt:
        pass


def _open(factory: Callable[[], Any]) -> Any:
    from ebpf.tools import ToolError

    try:
        return factory()
    except ToolError as err:
        raise fail(str(err)) from None


@click.group(short_help="Observability and security tools on the kernel engine (need root).")
def tools() -> None:
    """Tools like bcc's, running on this kernel through ebpf's kernel engine."""


@tools.command(short_help="Trace every exec with its arguments (like bcc's execsnoop).")
@click.option("--uid", type=int, help="Only execs by this user id (filtered in the kernel).")
@click.option(
    "--cgroup", type=click.Path(exists=True, file_okay=False), help="Only tasks in this cgroup v2 directory."
)
@click.option("--name", metavar="REGEX", help="Only events whose comm, file name or an argument matches.")
@click.option(
    "--max-args", type=click.IntRange(1, 20), default=20, show_default=True, help="Arguments to capture."
)
@click.option(
    "--duration", type=float, metavar="SECONDS", help="Stop after this many seconds (default: Ctrl-C)."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
def execsnoop(
    uid: int | None,
    cgroup: str | None,
    name: str | None,
    max_args: int,
    duration: float | None,
    as_json: bool,
) -> None:
    """Print each exec: time, command, pid, parent pid, uid, result and arguments.

    \b
    Examples:
      ebpf tools execsnoop
      ebpf tools execsnoop --uid 1000 --name curl --duration 10
      ebpf tools execsnoop --json | jq .filename
    """
    from ebpf.tools.execsnoop import ExecSnoop

    out = Printer()
    with _open(lambda: ExecSnoop(uid=uid, cgroup=cgroup, name=name, max_args=max_args)) as snoop:
        if not as_json:
            out.line(f"{'TIME':8} {'PCOMM':16} {'PID':>7} {'PPID':>7} {'UID':>6} {'RET':>4} ARGS")

        def show(e: Any) -> None:
            if as_json:
                click.echo(json.dumps(e.as_dict()), nl=True)
                return
            args = " ".join([e.filename, *e.args])
            out.line(f"{_wall(e.time):8} {e.comm:16} {e.pid:7} {e.ppid:7} {e.uid:6} {e.retval:4} {args}")

        _loop(snoop.poll, show, duration)


@tools.command(short_help="Kill processes that exec a denied binary (bpf_send_signal).")
@click.option(
    "--deny", "deny", multiple=True, required=True, metavar="PATH", help="A binary nobody may exec."
)
@click.option("--dry-run", is_flag=True, help="Only log attempts; do not kill.")
@click.option(
    "--duration", type=float, metavar="SECONDS", help="Stop after this many seconds (default: Ctrl-C)."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per attempt.")
def execguard(deny: tuple[str, ...], dry_run: bool, duration: float | None, as_json: bool) -> None:
    """Enforce an exec deny list: a task that calls execve on a denied path gets SIGKILL first.

    \b
    Examples:
      ebpf tools execguard --deny /usr/bin/nc --deny /usr/bin/ncat
      ebpf tools execguard --deny /tmp/payload --dry-run --json
    """
    from ebpf.tools.execguard import ExecGuard

    out = Printer()
    with _open(lambda: ExecGuard(list(deny), dry_run=dry_run)) as guard:
        if not as_json:
            out.line(
                f"guarding {len(guard.paths)} path(s): {', '.join(guard.paths)}"
                + (" (dry run)" if dry_run else "")
            )

        def show(e: Any) -> None:
            if as_json:
                click.echo(json.dumps(e.as_dict()))
                return
            action = (
                "KILLED" if e.killed else ("DENIED (dry run)" if dry_run else f"NOT KILLED ({e.signal_ret})")
            )
            out.line(
                f"{_wall(e.time):8} {action:8} pid {e.pid} ppid {e.ppid} uid {e.uid} comm {e.comm} exec {e.path}"
            )

        _loop(guard.poll, show, duration)
        if not as_json:
            out.line("attempts: " + ", ".join(f"{p} {n}" for p, n in guard.hits().items()))
