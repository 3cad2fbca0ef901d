"""The running kernel's version, parsed from ``uname``.

Pure: no kernel access (beyond ``os.uname()``, which every OS has).
"""

from __future__ import annotations

import functools
import os
import re
import sys

from ebpf.errors import NotSupportedError

__all__ = ["kernel_version", "parse_kernel_release"]

_RELEASE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")


def parse_kernel_release(release: str) -> tuple[int, int, int]:
    """Parse a ``uname -r`` string such as ``"6.18.44-fc-v657"`` into ``(6, 18, 44)``.

    Raises:
        ValueError: if ``release`` does not start with ``MAJOR.MINOR``.
    """
    m = _RELEASE.match(release)
    if m is None:
        raise ValueError(f"cannot parse kernel release {release!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


@functools.cache
def kernel_version() -> tuple[int, int, int]:
    """The running Linux kernel's ``(major, minor, patch)``, e.g. ``(6, 18, 44)``. Cached.

    Raises:
        NotSupportedError: when not running on Linux.
    """
    if not sys.platform.startswith("linux"):
        raise NotSupportedError("Linux kernel version", detail=f"not Linux (running on {sys.platform})")
    return parse_kernel_release(os.uname().release)
