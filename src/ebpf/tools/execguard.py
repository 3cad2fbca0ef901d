"""execguard: stop the exec of denied binaries as it happens (Tetragon-style enforcement). Tool layer.

A ``sys_enter_execve`` tracepoint program looks the file name the caller passed up in a hash
map of denied paths; on a match it sends ``SIGKILL`` to the calling task with
``bpf_send_signal`` (delivered on the way back from the tracepoint, before ``execve`` runs the
new program) and logs the attempt through a ring buffer.

What is compared is the path string given to ``execve`` (libc's ``execvp`` passes every PATH
candidate as an absolute path, so ``/usr/bin/ls`` catches a shell's ``ls``). Each denied path
is added as given and, when it exists, also resolved through symlinks; a relative path or
another hard link to the same file is not caught (a limit of matching names, said plainly).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Self

from ebpf.tools._common import LoadedTool, ToolError

__all__ = ["ExecGuard", "GuardEvent"]

PATH_LEN = 256


@dataclass(frozen=True)
class GuardEvent:
    """A denied exec: who tried, which path, and whether the kill signal was sent."""

    time: float
    pid: int
    ppid: int
    uid: int
    comm: str
    path: str
    killed: bool
    signal_ret: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _key(path: str) -> bytes:
    raw = path.encode()
    if len(raw) >= PATH_LEN:
        raise ToolError(f"path too long for execguard (max {PATH_LEN - 1} bytes): {path}")
    return raw.ljust(PATH_LEN, b"\0")


class ExecGuard:
    """Loaded and attached with the given denied paths; :meth:`poll` returns the attempts stopped."""

    def __init__(self, deny: list[str], *, dry_run: bool = False) -> None:
        from ebpf.btf import Struct
        from ebpf.btf.records import record_class
        from ebpf.events import RingBuffer

        if not deny:
            raise ToolError("execguard needs at least one --deny PATH")
        paths: list[str] = []
        for path in deny:
            for candidate in (path, os.path.realpath(path) if os.path.exists(path) else path):
                if candidate not in paths:
                    paths.append(candidate)
        keys = [_key(p) for p in paths]
        self.paths = tuple(paths)
        self._tool = LoadedTool("execguard", variables={"dry_run": int(dry_run)}, attach=False)
        try:
            denied = self._tool.maps["denied"]
            for key in keys:
                denied.update(key, bytes(8))
            btf = self._tool.collection.spec.btf
            assert btf is not None
            self._event: Any = record_class(btf, btf.find_id("event", Struct))
            self._pending: list[GuardEvent] = []
            self._ring = RingBuffer(self._tool.maps["events"], self._on_record)
            # attach last: the map is complete before the first exec is checked
            from ebpf.tools._common import _attach_by_section

            spec = self._tool.collection.spec
            for pname, prog in self._tool.programs.items():
                self._tool.links.append(_attach_by_section(spec.programs[pname], prog))
        except BaseException:
            self._tool.close()
            raise

    def _on_record(self, raw: bytes) -> None:
        e = self._event.unpack(raw)
        self._pending.append(
            GuardEvent(
                time=e.ts_ns / 1e9,
                pid=int(e.pid),
                ppid=int(e.ppid),
                uid=int(e.uid),
                comm=bytes(e.comm).split(b"\0", 1)[0].decode("utf-8", "replace"),
                path=bytes(e.path).split(b"\0", 1)[0].decode("utf-8", "replace"),
                killed=int(e.signal_ret) == 0,
                signal_ret=int(e.signal_ret),
            )
        )

    def hits(self) -> dict[str, int]:
        """Denied path -> exec attempts stopped so far (the kernel's counters)."""
        denied = self._tool.maps["denied"]
        return {p: int.from_bytes(denied.lookup(_key(p))[:8], "little") for p in self.paths}

    def poll(self, timeout: float = 0.1) -> list[GuardEvent]:
        """Attempts since the last call, waiting up to ``timeout`` seconds for the first."""
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
