"""Observations for error messages: kernel config options, lockdown mode, PMUs present.

Above the kernel line. Reads procfs/sysfs/securityfs and may mount securityfs.

Rule: an error message names only what was observed here (a config line, a missing sysfs
file, the bracketed lockdown mode), never a guessed cause.
"""

from __future__ import annotations

import functools
import gzip
import os

__all__ = ["describe_config", "kernel_config", "lockdown_mode", "pmu_type"]

SECURITYFS = "/sys/kernel/security"
PMU_DIR = "/sys/bus/event_source/devices"


@functools.cache
def _config_lines() -> tuple[str, tuple[str, ...]] | None:
    """``(source path, lines)`` of the running kernel's build config, if the kernel exposes it."""
    candidates = ["/proc/config.gz", f"/boot/config-{os.uname().release}"]
    for path in candidates:
        try:
            if path.endswith(".gz"):
                with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
                    return path, tuple(f.read().splitlines())
            with open(path, encoding="utf-8", errors="replace") as f:
                return path, tuple(f.read().splitlines())
        except OSError:
            continue
    return None


def kernel_config(option: str) -> str | None:
    """``"y"``, ``"m"``, another value, ``"n"`` (``# CONFIG_X is not set``), ``""`` (the option
    does not appear at all), or ``None`` when the kernel exposes no build config."""
    found = _config_lines()
    if found is None:
        return None
    _path, lines = found
    for line in lines:
        if line.startswith(option + "="):
            return line.split("=", 1)[1]
        if line == f"# {option} is not set":
            return "n"
    return ""


def describe_config(option: str) -> str | None:
    """What the build config says about ``option``, as a phrase quoting where it was read."""
    found = _config_lines()
    if found is None:
        return None
    path, _ = found
    value = kernel_config(option)
    if value == "n":
        return f"the kernel was built without {option} ({path}: '# {option} is not set')"
    if value == "":
        return f"{option} does not appear in {path}"
    return f"{path}: {option}={value}"


def lockdown_mode() -> str | None:
    """The active lockdown mode (``none``/``integrity``/``confidentiality``) or ``None`` if unknown.

    The kernel layer's reading (it mounts securityfs first when needed, as root).
    """
    from ebpf.kernel._syscall import lockdown_mode as kernel_lockdown_mode

    return kernel_lockdown_mode()


def pmu_type(name: str) -> int | None:
    """The dynamic PMU type number of ``name`` (``uprobe``, ``kprobe``) from sysfs, or ``None``."""
    try:
        with open(os.path.join(PMU_DIR, name, "type"), encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def pmu_format_bit(pmu: str, field: str) -> tuple[int, int] | None:
    """``(first bit, last bit)`` of ``config:A[-B]`` in ``<pmu>/format/<field>``, or ``None``."""
    try:
        with open(os.path.join(PMU_DIR, pmu, "format", field), encoding="ascii") as f:
            text = f.read().strip()
    except OSError:
        return None
    kind, _, bits = text.partition(":")
    if kind != "config" or not bits:
        return None
    first, _, last = bits.partition("-")
    try:
        return int(first), int(last or first)
    except ValueError:
        return None
