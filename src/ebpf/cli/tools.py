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


@tools.command(short_help="Trace file opens with flags, path and result (like bcc's opensnoop).")
@click.option("--pid", type=int, help="Only this process (filtered in the kernel).")
@click.option("--uid", type=int, help="Only this user id (filtered in the kernel).")
@click.option("--name", metavar="REGEX", help="Only opens whose comm or path matches.")
@click.option("--failed", is_flag=True, help="Only failed opens.")
@click.option(
    "--duration", type=float, metavar="SECONDS", help="Stop after this many seconds (default: Ctrl-C)."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
def opensnoop(
    pid: int | None, uid: int | None, name: str | None, failed: bool, duration: float | None, as_json: bool
) -> None:
    """Print each open/openat: time, pid, comm, result (fd or error), flags and path.

    \b
    Examples:
      ebpf tools opensnoop
      ebpf tools opensnoop --pid 1234 --failed
      ebpf tools opensnoop --name '^/etc/' --json
    """
    from ebpf.tools.opensnoop import OpenSnoop, format_flags

    out = Printer()
    with _open(lambda: OpenSnoop(pid=pid, uid=uid, name=name, failed=failed)) as snoop:
        if not as_json:
            out.line(f"{'TIME':8} {'PID':>7} {'COMM':16} {'FD':>4} {'ERR':7} {'FLAGS':24} PATH")

        def show(e: Any) -> None:
            if as_json:
                click.echo(json.dumps(e.as_dict()))
                return
            fd = str(e.ret) if e.ret >= 0 else "-1"
            out.line(
                f"{_wall(e.time):8} {e.pid:7} {e.comm:16} {fd:>4} {e.error or '':7} {format_flags(e.flags):24} {e.path}"
            )

        _loop(snoop.poll, show, duration)


@tools.command(short_help="Count system calls and their latency (like bcc's syscount).")
@click.option("--pid", type=int, help="Only this process.")
@click.option("--process", "per_process", is_flag=True, help="Count per process instead of per syscall.")
@click.option("--top", type=int, default=10, show_default=True, help="Rows to show.")
@click.option("--interval", type=float, default=1.0, show_default=True, help="Refresh every SECONDS.")
@click.option(
    "--duration", type=float, metavar="SECONDS", help="Stop after this many seconds (default: Ctrl-C)."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document per interval.")
def syscount(
    pid: int | None, per_process: bool, top: int, interval: float, duration: float | None, as_json: bool
) -> None:
    """Show the most frequent system calls (or processes) with call counts, errors and latency.

    \b
    Examples:
      ebpf tools syscount --duration 5
      ebpf tools syscount --process --top 5
      ebpf tools syscount --pid 1234 --json --duration 3
    """
    from ebpf.tools.syscount import Syscount

    out = Printer()
    deadline = None if duration is None else time.monotonic() + duration
    with _open(lambda: Syscount(pid=pid, per_process=per_process)) as counter:
        live = None
        if out.rich and not as_json:
            from rich.live import Live

            live = Live(console=out.console, auto_refresh=False)
            live.start()
        try:
            while True:
                wait = interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic()))
                time.sleep(wait)
                rows = counter.snapshot()[:top]
                label = "PID" if per_process else "SYSCALL"
                if as_json:
                    click.echo(
                        json.dumps(
                            [
                                {
                                    "key": r.key,
                                    "name": r.name,
                                    "count": r.count,
                                    "errors": r.errors,
                                    "total_ns": r.total_ns,
                                }
                                for r in rows
                            ]
                        )
                    )
                elif live is not None:
                    from rich.table import Table

                    table = Table(title=time.strftime("%H:%M:%S"), box=None)
                    for header in (label, "COUNT", "ERRORS", "AVG (us)", "TOTAL (ms)"):
                        table.add_column(header, justify="left" if header == label else "right")
                    for r in rows:
                        name = f"{r.key} {r.name}" if per_process else r.name
                        table.add_row(
                            name,
                            str(r.count),
                            str(r.errors),
                            f"{r.mean_ns / 1e3:.2f}",
                            f"{r.total_ns / 1e6:.3f}",
                        )
                    live.update(table, refresh=True)
                else:
                    out.line(f"[{time.strftime('%H:%M:%S')}]")
                    out.line(f"{label:22} {'COUNT':>10} {'ERRORS':>8} {'AVG (us)':>10} {'TOTAL (ms)':>12}")
                    for r in rows:
                        name = f"{r.key} {r.name}" if per_process else r.name
                        out.line(
                            f"{name:22} {r.count:10} {r.errors:8} {r.mean_ns / 1e3:10.2f} {r.total_ns / 1e6:12.3f}"
                        )
                    out.line()
                if deadline is not None and time.monotonic() >= deadline:
                    break
        except KeyboardInterrupt:
            pass
        finally:
            if live is not None:
                live.stop()


@tools.command(short_help="Block I/O latency histogram (like bcc's biolatency).")
@click.option("--milliseconds", "-m", is_flag=True, help="Histogram in milliseconds.")
@click.option("--disks", "-D", "per_disk", is_flag=True, help="One histogram per disk.")
@click.option("--disk", metavar="DEV", help="Only this disk (vda, /dev/vda or 252:0).")
@click.option("--interval", type=float, help="Print and reset every SECONDS (default: once at the end).")
@click.option(
    "--duration", type=float, metavar="SECONDS", help="Stop after this many seconds (default: Ctrl-C)."
)
@click.option("--json", "as_json", is_flag=True, help="Histograms as JSON.")
def biolatency(
    milliseconds: bool,
    per_disk: bool,
    disk: str | None,
    interval: float | None,
    duration: float | None,
    as_json: bool,
) -> None:
    """Trace block device I/O and print latency as log2 histograms, the way bcc does.

    \b
    Examples:
      ebpf tools biolatency --duration 10
      ebpf tools biolatency -D --interval 1
      ebpf tools biolatency --disk vda -m --json --duration 5
    """
    from ebpf.tools.biolatency import BioLatency, dev_name, format_log2_hist

    out = Printer()

    def emit(bio: Any) -> None:
        hists = bio.histograms()
        if as_json:
            click.echo(
                json.dumps(
                    [
                        {
                            "disk": dev_name(h.dev) if per_disk else None,
                            "unit": bio.unit,
                            "slots": list(h.slots),
                            "total": h.total,
                        }
                        for h in hists
                    ]
                )
            )
            return
        for h in hists:
            if per_disk:
                out.line(f"\ndisk = {dev_name(h.dev)}")
            for line in format_log2_hist(h.slots, bio.unit):
                out.line(line)

    with _open(lambda: BioLatency(milliseconds=milliseconds, per_disk=per_disk, disk=disk)) as bio:
        if not as_json:
            out.line("Tracing block device I/O... Hit Ctrl-C to end.")
        deadline = None if duration is None else time.monotonic() + duration
        try:
            while deadline is None or time.monotonic() < deadline:
                step = interval or 0.2
                time.sleep(step if deadline is None else max(0.0, min(step, deadline - time.monotonic())))
                if interval:
                    emit(bio)
                    bio.clear()
        except KeyboardInterrupt:
            pass
        if not interval:
            emit(bio)


@tools.command("xdp-firewall", short_help="Drop packets by source prefix with XDP; live per-rule counters.")
@click.argument("iface")
@click.option(
    "--block",
    "blocks",
    multiple=True,
    required=True,
    metavar="CIDR",
    help="Source prefix to drop (IPv4/IPv6).",
)
@click.option("--monitor", is_flag=True, help="Only count matching packets; let them pass.")
@click.option(
    "--mode",
    type=click.Choice(["auto", "driver", "generic"]),
    default="auto",
    show_default=True,
    help="XDP mode: native in the driver, generic (skb), or native when the driver has it.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="Refresh the counters this often.",
)
@click.option(
    "--duration", type=float, metavar="SECONDS", help="Detach after this many seconds (default: Ctrl-C)."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object of counters per interval.")
def xdp_firewall(
    iface: str,
    blocks: tuple[str, ...],
    monitor: bool,
    mode: str,
    interval: float,
    duration: float | None,
    as_json: bool,
) -> None:
    """Attach an XDP program to IFACE that drops packets whose source address is in a --block prefix.

    The longest matching prefix counts the packet. Counters are per rule (packets and whole-frame
    bytes), plus IP packets passed and non-IP frames; they refresh every --interval seconds, and the
    program is detached on Ctrl-C or after --duration. The same object runs over a capture with
    `ebpf xdp run` (see ebpf.tools.xdp_firewall.map_entries for its --map-init entries).

    \b
    Examples:
      ebpf tools xdp-firewall eth0 --block 192.0.2.0/24 --block 2001:db8::/32
      ebpf tools xdp-firewall veth0 --block 10.0.0.0/8 --monitor --mode generic
      ebpf tools xdp-firewall eth0 --block 198.51.100.7/32 --duration 60 --json
    """
    from ebpf.tools.xdp_firewall import XdpFirewall

    out = Printer()
    fw = _open(lambda: XdpFirewall(iface, list(blocks), mode=mode, monitor=monitor))  # type: ignore[arg-type]
    with fw:
        verb = "counting (monitor)" if monitor else "dropping"
        start = time.monotonic()

        def rows() -> list[list[str]]:
            c = fw.counters()
            action = "count" if monitor else "drop"
            body = [[r.rule, action, str(r.packets), str(r.bytes)] for r in c.rules]
            extra = [(c.passed, "IP, no match"), (c.non_ip, "non-IP"), (c.truncated, "truncated")]
            return body + [[label, "pass", str(r.packets), str(r.bytes)] for r, label in extra]

        def emit_json() -> None:
            doc = {"time": round(time.monotonic() - start, 3), "iface": fw.iface, **fw.counters().as_dict()}
            click.echo(json.dumps(doc))

        if not as_json:
            out.line(f"{verb} on {fw.iface} (ifindex {fw.ifindex}, XDP {mode}): {', '.join(fw.rules)}")
        live: Any = None
        if out.rich and not as_json:
            from rich.live import Live
            from rich.table import Table

            def render() -> Any:
                table = Table(title=f"xdp-firewall {fw.iface}  {time.monotonic() - start:.0f}s", box=None)
                table.add_column("RULE")
                table.add_column("ACTION")
                table.add_column("PACKETS", justify="right")
                table.add_column("BYTES", justify="right")
                for row in rows():
                    table.add_row(*row)
                return table

            live = Live(render(), console=out.console, auto_refresh=False)
            live.start()
        deadline = None if duration is None else time.monotonic() + duration
        try:
            while deadline is None or time.monotonic() < deadline:
                wait = interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic()))
                time.sleep(wait)
                if as_json:
                    emit_json()
                elif live is not None:
                    live.update(render(), refresh=True)
                else:
                    out.line(f"--- {time.monotonic() - start:.1f}s")
                    out.table(["RULE", "ACTION", "PACKETS", "BYTES"], rows(), right=[2, 3])
        except KeyboardInterrupt:
            pass
        finally:
            if live is not None:
                live.stop()
    if not as_json:
        out.line(f"detached from {fw.iface}")
