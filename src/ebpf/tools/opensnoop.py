"""opensnoop: file opens with pid, comm, flags, path and result. Tool layer.

``sys_enter_openat``/``sys_enter_open`` store the path pointer and flags by thread id; the exit
tracepoints join them with the return value (a descriptor, or ``-errno``) and send the record
through a ring buffer. pid, uid and failed-only filters run in the kernel; the name filter (a
regular expression on comm or path) runs here.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import asdict, dataclass
from typing import Any, Self

from ebpf.tools._common import LoadedTool, ToolError

__all__ = ["OpenEvent", "OpenSnoop", "format_flags"]

_FLAG_NAMES = [
    (os.O_WRONLY, "O_WRONLY"), (os.O_RDWR, "O_RDWR"), (os.O_CREAT, "O_CREAT"), (os.O_EXCL, "O_EXCL"),
    (os.O_NOCTTY, "O_NOCTTY"), (os.O_TRUNC, "O_TRUNC"), (os.O_APPEND, "O_APPEND"),
    (os.O_NONBLOCK, "O_NONBLOCK"), (os.O_DSYNC, "O_DSYNC"), (getattr(os, "O_DIRECT", 0), "O_DIRECT"),
    (getattr(os, "O_LARGEFILE", 0), "O_LARGEFILE"), (os.O_DIRECTORY, "O_DIRECTORY"),
    (os.O_NOFOLLOW, "O_NOFOLLOW"), (getattr(os, "O_NOATIME", 0), "O_NOATIME"), (os.O_CLOEXEC, "O_CLOEXEC"),
    (getattr(os, "O_PATH", 0), "O_PATH"), (getattr(os, "O_TMPFILE", 0), "O_TMPFILE"),
]  # fmt: skip


def format_flags(flags: int) -> str:
    """``O_RDONLY|O_CLOEXEC``-style text for open flags."""
    parts = [] if flags & os.O_ACCMODE else ["O_RDONLY"]
    rest = flags
    for bit, name in _FLAG_NAMES:
        if (
            bit
            and flags & bit == bit
            and not (
                name == "O_DIRECTORY" and flags & getattr(os, "O_TMPFILE", 0) == getattr(os, "O_TMPFILE", -1)
            )
        ):
            parts.append(name)
            rest &= ~bit
    if rest & ~os.O_ACCMODE:
        parts.append(f"{rest & ~os.O_ACCMODE:#o}")
    return "|".join(parts)


@dataclass(frozen=True)
class OpenEvent:
    """One open: ``ret`` is the descriptor, or ``-errno`` when the open failed."""

    time: float
    pid: int
    uid: int
    comm: str
    flags: int
    path: str
    ret: int

    @property
    def error(self) -> str | None:
        return errno.errorcode.get(-self.ret, str(-self.ret)) if self.ret < 0 else None

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["flags_text"] = format_flags(self.flags)
        doc["error"] = self.error
        return doc


class OpenSnoop:
    """Loaded and attached; :meth:`poll` returns the opens seen since the last call."""

    def __init__(
        self, *, pid: int | None = None, uid: int | None = None, name: str | None = None, failed: bool = False
    ) -> None:
        from ebpf.btf import Struct
        from ebpf.btf.records import record_class
        from ebpf.events import RingBuffer

        try:
            self._name = re.compile(name) if name else None
        except re.error as err:
            raise ToolError(f"--name {name!r} is not a regular expression: {err}") from None
        variables: dict[str, int | bytes] = {"failed_only": int(failed)}
        if pid is not None:
            variables["targ_pid"] = pid
        if uid is not None:
            variables["targ_uid"] = uid
        self._tool = LoadedTool("opensnoop", variables=variables)
        try:
            btf = self._tool.collection.spec.btf
            assert btf is not None
            self._event: Any = record_class(btf, btf.find_id("event", Struct))
            self._pending: list[OpenEvent] = []
            self._ring = RingBuffer(self._tool.maps["events"], self._on_record)
        except BaseException:
            self._tool.close()
            raise

    def _on_record(self, raw: bytes) -> None:
        e = self._event.unpack(raw)
        event = OpenEvent(
            time=e.ts_ns / 1e9,
            pid=int(e.pid),
            uid=int(e.uid),
            comm=bytes(e.comm).split(b"\0", 1)[0].decode("utf-8", "replace"),
            flags=int(e.flags),
            path=bytes(e.path).split(b"\0", 1)[0].decode("utf-8", "replace"),
            ret=int(e.ret),
        )
        if self._name is None or self._name.search(event.comm) or self._name.search(event.path):
            self._pending.append(event)

    def poll(self, timeout: float = 0.1) -> list[OpenEvent]:
        """Opens since the last call, waiting up to ``timeout`` seconds for the first."""
        self._ring.poll(timeout)
        out, self._pending = self._pending, []
        return out

    def close(self) -> None:
        self._ring.close()
        self._tool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
