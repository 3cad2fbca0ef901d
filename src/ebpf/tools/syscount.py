"""syscount: system call counts and latency, per syscall or per process. Tool layer.

``raw_syscalls:sys_enter`` stamps the entry time per thread; ``raw_syscalls:sys_exit`` adds the
call to a hash map keyed by syscall number (or by pid in per-process mode): count, total
latency and failed calls. Syscall names come from the system's ``asm/unistd_64.h`` (the
kernel's UAPI table), or the copy of that table bundled for x86-64.
"""

from __future__ import annotations

import functools
import platform
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from ebpf.tools._common import LoadedTool

__all__ = ["SyscallStat", "Syscount", "syscall_names"]

_STAT = struct.Struct("=QQQ16s")


@functools.cache
def syscall_names() -> dict[int, str]:
    """Syscall number -> name for this machine's architecture."""
    machine = platform.machine()
    for header in (
        Path(f"/usr/include/{machine}-linux-gnu/asm/unistd_64.h"),
        Path("/usr/include/asm/unistd_64.h"),
        Path("/usr/include/asm-generic/unistd.h") if machine == "aarch64" else Path("/nonexistent"),
    ):
        try:
            text = header.read_text()
        except OSError:
            continue
        table = {int(n): name for name, n in re.findall(r"#define __NR(?:3264)?_(\w+)\s+(\d+)\b", text)}
        if table:
            return table
    if machine == "x86_64":
        from ebpf.tools._syscalls_x86_64 import SYSCALLS_X86_64

        return dict(SYSCALLS_X86_64)
    return {}


@dataclass(frozen=True)
class SyscallStat:
    """Counts for one syscall (or one process): calls, failed calls, total and mean latency."""

    key: int
    name: str
    count: int
    errors: int
    total_ns: int

    @property
    def mean_ns(self) -> float:
        return self.total_ns / self.count if self.count else 0.0


class Syscount:
    """Loaded and attached; :meth:`snapshot` reads the kernel's counters, :meth:`clear` resets them."""

    def __init__(self, *, pid: int | None = None, per_process: bool = False, latency: bool = True) -> None:
        variables: dict[str, int | bytes] = {"by_process": int(per_process), "measure_latency": int(latency)}
        if pid is not None:
            variables["targ_pid"] = pid
        self.per_process = per_process
        self._tool = LoadedTool("syscount", variables=variables)

    def snapshot(self) -> list[SyscallStat]:
        """Every syscall (or process) seen so far, most called first."""
        names = syscall_names()
        out = []
        for key_raw, value in self._tool.maps["stats"].items():
            key = int.from_bytes(key_raw, "little")
            count, total, errors, comm = _STAT.unpack_from(value)
            if self.per_process:
                name = comm.split(b"\0", 1)[0].decode("utf-8", "replace")
            else:
                name = names.get(key, f"syscall#{key}")
            out.append(SyscallStat(key, name, count, errors, total))
        out.sort(key=lambda s: (-s.count, s.key))
        return out

    def clear(self) -> None:
        stats = self._tool.maps["stats"]
        for key in list(stats.keys()):
            try:
                stats.delete(key)
            except KeyError:
                continue

    def close(self) -> None:
        self._tool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
