"""The one choke point for the bpf(2) system call.

Calls bpf(2).

Rule 1: every bpf() call in ``ebpf`` goes through :func:`bpf`. Nothing else calls
``syscall(SYS_bpf, ...)``; nothing else raises :class:`~ebpf.errors.SyscallError`.

Rule 2: a failure becomes ``SyscallError(cmd, errno, hint)`` whose hint says what to do
about it, from what this process can observe (effective uid, capabilities, lockdown,
seccomp, memlock limit). The hint never guesses "needs root" for a process that is root.

Rule 3: the backend is swappable. A backend is ``fn(cmd, attr) -> int``: it returns the
syscall's non-negative result, or ``-errno`` on failure, and may read and write
``attr`` (and the buffers it points to) like the kernel would. :func:`override_backend`
installs a scripted fake for unit tests and restores the previous backend afterwards
(aya's ``override_syscall``). The backend is process-global.

``EINTR`` is retried transparently (PEP 475).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import functools
import os
import platform
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ebpf.errors import NotSupportedError, SyscallError
from ebpf.kernel.uapi import Cmd
from ebpf.kernel.version import kernel_version

__all__ = [
    "Backend",
    "bpf",
    "default_backend",
    "errno_hint",
    "override_backend",
    "set_backend",
    "sys_bpf_number",
]

Backend = Callable[[Cmd, ctypes.Structure], int]
"""``fn(cmd, attr) -> result`` where a negative result is ``-errno``, as in the raw syscall."""

# __NR_bpf per architecture (arch/*/include/uapi/asm/unistd*.h). The generic table
# (arm64, riscv, loongarch) shares one number.
_SYS_BPF = {
    "x86_64": 321,
    "amd64": 321,
    "i386": 357,
    "i486": 357,
    "i586": 357,
    "i686": 357,
    "aarch64": 280,
    "arm64": 280,
    "riscv64": 280,
    "loongarch64": 280,
    "armv6l": 386,
    "armv7l": 386,
    "armv8l": 386,
    "ppc64": 361,
    "ppc64le": 361,
    "ppc": 361,
    "s390x": 351,
    "sparc64": 349,
}

_CAP_SYS_ADMIN = 21
_CAP_BPF = 39


def sys_bpf_number(machine: str | None = None, pointer_size: int | None = None) -> int:
    """The ``SYS_bpf`` number for ``machine`` (default: this process's architecture).

    A 32-bit process on a 64-bit x86 or arm kernel uses the 32-bit number.

    Raises:
        NotSupportedError: for an architecture whose number is not known here.
    """
    if machine is None:
        machine = platform.machine()
    if pointer_size is None:
        pointer_size = ctypes.sizeof(ctypes.c_void_p)
    machine = machine.lower()
    if pointer_size == 4 and machine in ("x86_64", "amd64"):
        machine = "i686"
    elif pointer_size == 4 and machine in ("aarch64", "arm64"):
        machine = "armv7l"
    try:
        return _SYS_BPF[machine]
    except KeyError:
        raise NotSupportedError(
            "bpf() system call", detail=f"the SYS_bpf number for architecture {machine!r} is not known"
        ) from None


@functools.cache
def _libc_syscall() -> Callable[..., int]:
    if not sys.platform.startswith("linux"):
        raise NotSupportedError(
            "bpf() system call", detail=f"not Linux: bpf() exists only on Linux ({sys.platform})"
        )
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.syscall
    fn.restype = ctypes.c_long
    return fn


def default_backend(cmd: Cmd, attr: ctypes.Structure) -> int:
    """The real backend: libc ``syscall(SYS_bpf, cmd, &attr, sizeof(attr))``."""
    fn = _libc_syscall()
    nr = sys_bpf_number()
    ret = fn(
        ctypes.c_long(nr), ctypes.c_int(int(cmd)), ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr))
    )
    if ret < 0:
        return -ctypes.get_errno()
    return int(ret)


_backend: Backend = default_backend


def set_backend(fn: Backend | None) -> Backend:
    """Install ``fn`` as the bpf() backend (``None``: the real one) and return the previous one."""
    global _backend
    previous = _backend
    _backend = default_backend if fn is None else fn
    return previous


@contextmanager
def override_backend(fn: Backend) -> Iterator[None]:
    """Use ``fn`` as the bpf() backend inside the ``with`` block, then restore the previous one.

    >>> with override_backend(lambda cmd, attr: -1):   # every call fails with EPERM
    ...     pass
    """
    previous = set_backend(fn)
    try:
        yield
    finally:
        set_backend(previous)


def bpf(cmd: Cmd, attr: ctypes.Structure) -> int:
    """Call ``bpf(cmd, &attr, sizeof(attr))`` and return its non-negative result.

    Args:
        cmd: the command.
        attr: the ``union bpf_attr`` variant for ``cmd``, from :mod:`ebpf.kernel.uapi`;
            the kernel may write results into it.

    Raises:
        SyscallError: the call failed; ``.errno`` is the errno and ``.hint`` says what to do.
        NotSupportedError: not Linux, or an architecture without a known ``SYS_bpf``.

    Requires Linux >= 3.18.
    """
    cmd = Cmd(cmd)
    while True:
        ret = _backend(cmd, attr)
        if ret >= 0:
            return ret
        err = -ret
        if err != _errno.EINTR:
            raise SyscallError(cmd.uapi_name(), err, errno_hint(cmd, err))


def errno_hint(cmd: Cmd, err: int) -> str | None:
    """What to do about ``err`` from ``cmd``, or ``None`` for the generic hint in ``errors.py``."""
    if err == _errno.EPERM:
        return _eperm_hint()
    if err == _errno.ENOSYS:
        return "kernel built without CONFIG_BPF_SYSCALL, or a sandbox hides bpf()"
    if err == _errno.EBADF:
        return "a file descriptor in the request is closed or is not the right kind of BPF object"
    if err == _errno.EFAULT:
        return "the kernel could not access a buffer passed in the request (a bug in the caller)"
    if err == _errno.ENOSPC and cmd == Cmd.PROG_TEST_RUN:
        return "data_size_out or ctx_size_out is smaller than what the program produced"
    if err == _errno.E2BIG and cmd == Cmd.PROG_LOAD:
        return "too many instructions, or the request sets a field this (older) kernel does not know"
    if err == _errno.EINVAL:
        return (
            f"{cmd.uapi_name()} rejected an argument; older kernels also reject "
            "commands, types, flags and fields they do not know"
        )
    return None


def _eperm_hint() -> str:
    euid = os.geteuid()
    caps = _effective_caps()
    privileged = euid == 0 or (caps is not None and bool(caps & ((1 << _CAP_BPF) | (1 << _CAP_SYS_ADMIN))))
    if not privileged:
        return "needs CAP_BPF or root"
    observed: list[str] = []
    lockdown = _lockdown_mode()
    if lockdown is not None and lockdown != "none":
        observed.append(f"lockdown mode is '{lockdown}' (/sys/kernel/security/lockdown)")
    if caps is not None and not caps & ((1 << _CAP_BPF) | (1 << _CAP_SYS_ADMIN)):
        observed.append(
            "neither CAP_BPF nor CAP_SYS_ADMIN is in the effective set (a container dropped them?)"
        )
    if _seccomp_mode() == 2:
        observed.append("a seccomp filter is active (Seccomp: 2 in /proc/self/status) and may deny bpf()")
    memlock = _memlock_limit()
    if memlock is not None and kernel_version() < (5, 11, 0):
        observed.append(
            f"RLIMIT_MEMLOCK is {memlock} bytes and kernels before 5.11 charge BPF memory to it "
            "(try `ulimit -l unlimited`)"
        )
    if not observed:
        observed.append(
            "no lockdown, capability or seccomp restriction seen; check LSM (SELinux, AppArmor) denials"
        )
    who = "as root" if euid == 0 else "with CAP_BPF or CAP_SYS_ADMIN"
    return f"denied although running {who}; " + "; ".join(observed)


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _status_field(name: str) -> str | None:
    text = _read_text("/proc/self/status")
    if text is None:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    return None


def _effective_caps() -> int | None:
    value = _status_field("CapEff")
    try:
        return int(value, 16) if value is not None else None
    except ValueError:
        return None


def _seccomp_mode() -> int | None:
    value = _status_field("Seccomp")
    return int(value) if value is not None and value.isdigit() else None


_SECURITYFS = "/sys/kernel/security"


def _mount_securityfs() -> None:
    """Mount securityfs at its usual place when it is not mounted (root only; errors ignored)."""
    if os.path.exists(os.path.join(_SECURITYFS, "lockdown")) or not os.path.isdir(_SECURITYFS):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount(b"securityfs", _SECURITYFS.encode(), b"securityfs", ctypes.c_ulong(0), None)


def _lockdown_mode() -> str | None:
    """The active lockdown mode: the bracketed word of ``none [integrity] confidentiality``.

    Reads ``/sys/kernel/security/lockdown``, mounting securityfs first when it is not mounted
    (as root), so "no lockdown" is never reported just because nobody had mounted it.
    """
    text = _read_text(os.path.join(_SECURITYFS, "lockdown"))
    if text is None:
        _mount_securityfs()
        text = _read_text(os.path.join(_SECURITYFS, "lockdown"))
    if text is None:
        return None
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return None


lockdown_mode = _lockdown_mode


def _memlock_limit() -> int | None:
    import resource  # POSIX only; imported here so the module imports everywhere

    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return None if soft == resource.RLIM_INFINITY else soft
