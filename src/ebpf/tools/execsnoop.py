"""execsnoop: trace every exec (``sys_enter_execve`` / ``sys_exit_execve`` tracepoints). Tool layer.

The enter program records the caller (pid, parent's tgid by a CO-RE read of
``task->real_parent->tgid``, uid, comm), the file name and up to ``max_args`` arguments in a
hash map keyed by thread id; the exit program adds the return value and the new comm and sends
the record through a ring buffer. Filters on uid and cgroup run in the kernel (``.rodata``);
the name filter (a regular expression on comm, file name or arguments) runs here.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Self

from ebpf.tools._common import LoadedTool, ToolError, cgroup_id

__all__ = ["ExecEvent", "ExecSnoop"]


@dataclass(frozen=True)
class ExecEvent:
    """One exec: ``time`` is seconds since boot (CLOCK_BOOTTIME), ``retval`` execve's result."""

    time: float
    pid: int
    ppid: int
    uid: int
    comm: str
    filename: str
    args: tuple[str, ...]
    retval: int

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["args"] = list(self.args)
        return doc


class ExecSnoop:
    """Loaded and attached; :meth:`poll` returns the exec events seen since the last call."""

    def __init__(
        self,
        *,
        uid: int | None = None,
        cgroup: str | None = None,
        name: str | None = None,
        max_args: int = 20,
    ) -> None:
        from ebpf.btf import Struct
        from ebpf.btf.records import record_class
        from ebpf.events import RingBuffer

        if not 1 <= max_args <= 20:
            raise ToolError(f"--max-args must be between 1 and 20, got {max_args}")
        try:
            self._name = re.compile(name) if name else None
        except re.error as err:
            raise ToolError(f"--name {name!r} is not a regular expression: {err}") from None
        variables: dict[str, int | bytes] = {"max_args": max_args}
        if uid is not None:
            variables["targ_uid"] = uid
        if cgroup is not None:
            variables["targ_cgroup"] = cgroup_id(cgroup)
        self._tool = LoadedTool("execsnoop", variables=variables)
        try:
            btf = self._tool.collection.spec.btf
            assert btf is not None
            self._event: Any = record_class(btf, btf.find_id("event", Struct))
            self._pending: list[ExecEvent] = []
            self._ring = RingBuffer(self._tool.maps["events"], self._on_record)
        except BaseException:
            self._tool.close()
            raise

    def _on_record(self, raw: bytes) -> None:
        e = self._event.unpack(raw)
        args = tuple(a.decode("utf-8", "replace") for a in bytes(e.args[: e.args_len]).split(b"\0")[: e.argc])
        event = ExecEvent(
            time=e.ts_ns / 1e9,
            pid=int(e.pid),
            ppid=int(e.ppid),
            uid=int(e.uid),
            comm=bytes(e.comm).split(b"\0", 1)[0].decode("utf-8", "replace"),
            filename=bytes(e.filename).split(b"\0", 1)[0].decode("utf-8", "replace"),
            args=args,
            retval=int(e.retval),
        )
        if self._name is None or any(
            self._name.search(text) for text in (event.comm, event.filename, *event.args)
        ):
            self._pending.append(event)

    def poll(self, timeout: float = 0.1) -> list[ExecEvent]:
        """Events since the last call, waiting up to ``timeout`` seconds for the first."""
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
