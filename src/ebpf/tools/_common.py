"""Shared machinery of the bundled tools: load a bundled object, attach it, read its events, clean up.

Tool layer (above the kernel line): uses :mod:`ebpf.kernel`, :mod:`ebpf.attach` and
:mod:`ebpf.events`; the tools' BPF programs are C sources in ``tools/bpf/`` compiled into the
committed ``*.bpf.o`` objects (``tools/bpf/build.sh`` rebuilds them with clang-19 against a
``vmlinux.h`` written by ``ebpf btf dump``), so users need no compiler.

Rule 1: a tool checks what it needs before loading (root, a working ``bpf()``) and raises
:class:`ToolError` with a sentence a human can act on.

Rule 2: a tool is a context manager; ``close()`` detaches every link and closes every map and
program it created, and is idempotent, so Ctrl-C leaves nothing attached.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Self

from ebpf.errors import BPFError

__all__ = ["BPF_DIR", "LoadedTool", "ToolError", "cgroup_id", "object_path", "require_kernel"]

BPF_DIR = Path(__file__).resolve().parent / "bpf"


class ToolError(BPFError):
    """A tool cannot run here (not root, no bpf(), a missing kernel feature) or got bad options."""


def object_path(name: str) -> Path:
    """The committed object of bundled program ``name`` (``tools/bpf/<name>.bpf.o``)."""
    path = BPF_DIR / f"{name}.bpf.o"
    if not path.exists():
        raise ToolError(f"bundled object {path} is missing (rebuild with {BPF_DIR / 'build.sh'})")
    return path


def require_kernel(tool: str) -> None:
    """Raise :class:`ToolError` unless this process can load and attach BPF programs."""
    from ebpf.kernel.features import bpf_unavailable_reason

    if os.geteuid() != 0:
        raise ToolError(f"{tool} needs root (it loads BPF programs and attaches them to kernel hooks)")
    reason = bpf_unavailable_reason()
    if reason is not None:
        raise ToolError(f"{tool} cannot load BPF programs here: {reason}")


def cgroup_id(path: str | os.PathLike[str]) -> int:
    """The cgroup v2 id of a cgroup directory (its inode number, what ``bpf_get_current_cgroup_id`` returns)."""
    try:
        return os.stat(path).st_ino
    except OSError as err:
        raise ToolError(f"cgroup {path}: {err.strerror}") from err


class LoadedTool:
    """A bundled object loaded into the kernel, with its tracing programs attached.

    Args:
        name: the bundled object (``execsnoop`` for ``tools/bpf/execsnoop.bpf.o``).
        variables: ``.rodata``/``.data`` values to set before loading (the tool's options).
        attach: attach every tracepoint / raw tracepoint program by its section name.
        programs: only load these programs (default: all).
    """

    def __init__(
        self,
        name: str,
        *,
        variables: dict[str, int | bytes] | None = None,
        attach: bool = True,
        programs: tuple[str, ...] | None = None,
    ) -> None:
        from ebpf.elf import load_collection_spec
        from ebpf.kernel.collection import Collection, LoadOptions

        require_kernel(name)
        spec = load_collection_spec(object_path(name))
        for var, value in (variables or {}).items():
            spec.set_variable(var, value)
        if programs is not None:
            for pname, pspec in spec.programs.items():
                pspec.autoload = pname in programs
        self.name = name
        self.links: list[Any] = []
        self.collection = Collection(spec, LoadOptions(object_name=name))
        self._closed = False
        try:
            if attach:
                for pname, prog in self.collection.programs.items():
                    self.links.append(_attach_by_section(spec.programs[pname], prog))
        except BaseException:
            self.close()
            raise

    @property
    def maps(self) -> dict[str, Any]:
        return self.collection.maps

    @property
    def programs(self) -> dict[str, Any]:
        return self.collection.programs

    def close(self) -> None:
        """Detach every link, then close programs and maps. Idempotent."""
        if self._closed:
            return
        self._closed = True
        while self.links:
            self.links.pop().close()
        self.collection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _attach_by_section(pspec: Any, prog: Any) -> Any:
    from ebpf import attach
    from ebpf.spec import ProgramType

    if pspec.type == ProgramType.TRACEPOINT:
        category, _, event = pspec.attach_to.partition("/")
        return attach.tracepoint(prog, category, event)
    if pspec.type in (ProgramType.RAW_TRACEPOINT, ProgramType.RAW_TRACEPOINT_WRITABLE):
        return attach.raw_tracepoint(prog, pspec.attach_to)
    raise ToolError(f"program {pspec.name} ({pspec.section}) is not attached automatically")
