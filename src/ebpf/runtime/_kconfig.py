"""Values of ``.kconfig`` externs (``LINUX_KERNEL_VERSION``, ``CONFIG_*``). Pure: no kernel access.

Rule 1 (libbpf's ``bpf_object__resolve_externs``): ``LINUX_KERNEL_VERSION`` is
``KERNEL_VERSION(a, b, c)`` of the running (or given) release, the patch level capped at 255;
``LINUX_HAS_SYSCALL_WRAPPER`` and ``LINUX_HAS_BPF_COOKIE`` are 1 on the kernels this runtime
models; a ``CONFIG_*`` extern takes its value from the given kconfig; a weak extern that
has no value is 0, a strong one is an error.

Rule 2 (values as in a ``.config`` file): ``"y"`` is 1, ``"m"`` is 2 (``enum
libbpf_tristate``), ``"n"`` is 0; a quoted string fills a ``char[]`` (NUL-padded); a
number (decimal or ``0x`` hex, or a Python int / bool) is stored in the extern's size and
the object's byte order.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Mapping

from ebpf.errors import RelocationError

__all__ = ["KconfigValue", "encode_kconfig", "kernel_version_code", "parse_kconfig", "running_kconfig"]

KconfigValue = int | bool | str

_RELEASE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")

VIRTUAL = {"LINUX_HAS_SYSCALL_WRAPPER": 1, "LINUX_HAS_BPF_COOKIE": 1}


def kernel_version_code(release: str | None = None) -> int:
    """``KERNEL_VERSION(a, b, c)`` of ``release`` (default: ``os.uname().release``).

    Raises:
        ValueError: the release does not start with ``a.b``.
    """
    text = release if release is not None else os.uname().release
    match = _RELEASE.match(text)
    if match is None:
        raise ValueError(f"kernel release {text!r} does not start with a version number")
    major, minor, patch = int(match[1]), int(match[2]), int(match[3] or 0)
    return (major << 16) | (minor << 8) | min(patch, 255)


def parse_kconfig(text: str) -> dict[str, str]:
    """``CONFIG_X=value`` lines of a ``.config`` file (``# CONFIG_X is not set`` lines: absent)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.startswith("CONFIG_"):
            values[name.strip()] = value.strip()
    return values


def running_kconfig() -> dict[str, str]:
    """The running kernel's configuration, where libbpf looks for it.

    ``/boot/config-$(uname -r)``, then ``/proc/config.gz``; empty when neither is readable
    (then only weak ``CONFIG_*`` externs can load).
    """
    release = os.uname().release
    try:
        with open(f"/boot/config-{release}", encoding="utf-8", errors="replace") as f:
            return parse_kconfig(f.read())
    except OSError:
        pass
    try:
        with gzip.open("/proc/config.gz", "rt", encoding="utf-8", errors="replace") as g:
            return parse_kconfig(g.read())
    except (OSError, EOFError):
        return {}


def _to_bytes(name: str, value: KconfigValue, size: int, byteorder: str) -> bytes:
    if isinstance(value, str):
        text = value.strip()
        if len(text) >= 2 and text[0] == text[-1] == '"':
            raw = text[1:-1].encode()
            if len(raw) >= size:
                raise RelocationError(f"extern {name}: string {text} does not fit char[{size}]")
            return raw.ljust(size, b"\0")
        tristate = {"y": 1, "m": 2, "n": 0}
        if text in tristate:
            value = tristate[text]
        else:
            try:
                value = int(text, 0)
            except ValueError:
                raise RelocationError(f"extern {name}: cannot use value {value!r}") from None
    number = int(value)
    try:
        return number.to_bytes(size, byteorder, signed=number < 0)  # type: ignore[arg-type]
    except OverflowError:
        raise RelocationError(f"extern {name}: value {number} does not fit {size} bytes") from None


def encode_kconfig(
    name: str,
    size: int,
    *,
    weak: bool,
    kconfig: Mapping[str, KconfigValue],
    kernel_version: int,
    byteorder: str,
) -> bytes:
    """The bytes of ``.kconfig`` extern ``name`` (``size`` bytes).

    Raises:
        RelocationError: a strong extern with no value, or a value that does not fit.
    """
    value: KconfigValue | None
    if name == "LINUX_KERNEL_VERSION":
        value = kernel_version
    elif name in kconfig:
        value = kconfig[name]
    elif name in VIRTUAL:
        value = VIRTUAL[name]
    elif weak:
        value = 0
    else:
        raise RelocationError(f"extern (kcfg) {name!r}: not found in the given kconfig and not weak")
    return _to_bytes(name, value, size, byteorder)
