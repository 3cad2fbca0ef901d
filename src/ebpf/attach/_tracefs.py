"""tracefs: where it is mounted (mounting it if needed) and the tracepoint ids it lists.

Above the kernel line. Reads ``/proc/mounts`` and tracefs, and may call ``mount(2)``.

Rule 1: tracefs is looked up in ``/proc/mounts`` (a ``tracefs`` mount, or ``debugfs`` with a
``tracing`` folder). If there is none, it is mounted at ``/sys/kernel/tracing`` (needs
CAP_SYS_ADMIN); the mount stays, as ``mount -t tracefs`` would.

Rule 2: names are checked before they become paths: a category or event name holds only
``[A-Za-z0-9_.-]``, so ``../`` cannot escape tracefs.
"""

from __future__ import annotations

import errno as _errno
import functools
import os
import re

from ebpf.attach import _abi
from ebpf.errors import NotSupportedError, SyscallError

__all__ = ["has_kprobe_events", "mounts", "tracefs_root", "tracepoint_id"]

DEFAULT_TRACEFS = "/sys/kernel/tracing"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def mounts() -> list[tuple[str, str]]:
    """``(mount point, fs type)`` of every mount in ``/proc/mounts``."""
    result = []
    with open("/proc/mounts", encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                result.append((parts[1].replace("\\040", " "), parts[2]))
    return result


def mounted_at(fstype: str) -> str | None:
    """The first mount point of a file system type, or ``None``."""
    for point, kind in mounts():
        if kind == fstype:
            return point
    return None


@functools.cache
def _cached_root() -> str:
    point = mounted_at("tracefs")
    if point is not None:
        return point
    debugfs = mounted_at("debugfs")
    if debugfs is not None and os.path.isdir(os.path.join(debugfs, "tracing", "events")):
        return os.path.join(debugfs, "tracing")
    if not os.path.isdir(DEFAULT_TRACEFS):
        raise NotSupportedError("tracefs", detail=f"{DEFAULT_TRACEFS} does not exist (CONFIG_TRACING off?)")
    try:
        _abi.mount("tracefs", DEFAULT_TRACEFS, "tracefs")
    except SyscallError as err:
        if err.errno != _errno.EBUSY:  # mounted meanwhile by someone else
            raise NotSupportedError(
                "tracefs", detail=f"not mounted and mounting it at {DEFAULT_TRACEFS} failed: {err}"
            ) from err
    return DEFAULT_TRACEFS


def tracefs_root() -> str:
    """The tracefs mount point, mounting tracefs at ``/sys/kernel/tracing`` if it is not mounted.

    Raises:
        NotSupportedError: no tracefs and it cannot be mounted (not root, or no CONFIG_TRACING).
    """
    return _cached_root()


def _check_name(what: str, name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"invalid tracepoint {what} {name!r}: use [A-Za-z0-9_.-] only")


def tracepoint_id(category: str, name: str) -> int:
    """The id of tracepoint ``category:name`` from ``<tracefs>/events/<category>/<name>/id``.

    Raises:
        ValueError: a malformed category or name.
        NotSupportedError: tracefs unavailable, or no such tracepoint on this kernel (the
            message says whether the category exists).
    """
    _check_name("category", category)
    _check_name("name", name)
    root = tracefs_root()
    path = os.path.join(root, "events", category, name, "id")
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip())
    except FileNotFoundError:
        if not os.path.isdir(os.path.join(root, "events", category)):
            detail = f"no tracepoint category {category!r} in {root}/events"
        else:
            detail = f"category {category!r} has no event {name!r} ({path} missing)"
        raise NotSupportedError(f"tracepoint {category}:{name}", detail=detail) from None


def has_kprobe_events() -> bool:
    """True when tracefs offers ``kprobe_events`` (the legacy text interface for kprobes)."""
    try:
        root = tracefs_root()
    except NotSupportedError:
        return False
    return os.path.exists(os.path.join(root, "kprobe_events"))
