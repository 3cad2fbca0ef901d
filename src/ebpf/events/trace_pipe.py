"""Reader of the kernel's ``trace_pipe``, where ``bpf_printk``/``bpf_trace_printk`` write. Above the kernel line.

Lines look like (tracefs ``trace_pipe``, with or without the tgid column)::

            python3-4242    [001] d..31  5201.123456: bpf_trace_printk: hello 7

:func:`parse_trace_line` turns one into a :class:`TraceLine`; :class:`TracePipe` reads them
with a timeout (``select`` on the pipe opened non-blocking), so a reader never hangs.

Rule: ``trace_pipe`` is one global stream and reading consumes it; filter on what your program
prints (the message) or on the pid/task.
"""

from __future__ import annotations

import os
import re
import select
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Self

from ebpf.attach._tracefs import tracefs_root

__all__ = ["TraceLine", "TracePipe", "parse_trace_line"]

_LINE = re.compile(
    r"^\s*(?P<task>.*?)-(?P<pid>\d+)\s+(?:\(\s*(?:\d+|-+)\)\s+)?\[(?P<cpu>\d+)\]\s+(?:(?P<flags>[^\s\d][^\s]*)\s+)?"
    r"(?P<ts>\d+\.\d+):\s+(?P<func>[^:]+):\s?(?P<msg>.*)$"
)


@dataclass(frozen=True)
class TraceLine:
    """One ``trace_pipe`` line: who printed it, where, when, and the message."""

    task: str
    pid: int
    cpu: int
    flags: str
    timestamp: float
    function: str
    message: str


def parse_trace_line(line: str) -> TraceLine | None:
    """Parse a ``trace_pipe`` line; ``None`` when it is not in the trace format."""
    m = _LINE.match(line.rstrip("\n"))
    if m is None:
        return None
    return TraceLine(
        task=m["task"],
        pid=int(m["pid"]),
        cpu=int(m["cpu"]),
        flags=m["flags"] or "",
        timestamp=float(m["ts"]),
        function=m["func"],
        message=m["msg"],
    )


class TracePipe:
    """Reads ``<tracefs>/trace_pipe`` (mounting tracefs when needed, as root)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or os.path.join(tracefs_root(), "trace_pipe")
        self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self._partial = b""

    def read_lines(self, timeout: float = 0.0) -> list[TraceLine]:
        """The lines available now, waiting up to ``timeout`` seconds for the first one."""
        out: list[TraceLine] = []
        ready, _, _ = select.select([self._fd], [], [], timeout)
        while ready:
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            data = self._partial + chunk
            *lines, self._partial = data.split(b"\n")
            for raw in lines:
                parsed = parse_trace_line(raw.decode("utf-8", "replace"))
                if parsed is not None:
                    out.append(parsed)
            ready, _, _ = select.select([self._fd], [], [], 0)
        return out

    def follow(self, timeout: float | None = None) -> Iterator[TraceLine]:
        """Yield lines as they come; stop after ``timeout`` seconds (None: never)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while deadline is None or time.monotonic() < deadline:
            wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            yield from self.read_lines(wait)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
