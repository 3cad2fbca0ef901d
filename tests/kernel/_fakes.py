"""A scripted bpf() backend for unit tests of the kernel layer (aya's ``override_syscall``).

Pure: no kernel access. Handlers play the kernel: they read the attr (and the buffers
it points to) and write results back, and return the syscall result or ``-errno``.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable

from ebpf.kernel.uapi import Cmd, ProgLoadAttr

Handler = Callable[[ctypes.Structure], int]


class FakeKernel:
    """Dispatches each bpf() call to the handler for its command and records the call."""

    def __init__(self) -> None:
        self.handlers: dict[Cmd, Handler] = {}
        self.calls: list[tuple[Cmd, ctypes.Structure]] = []  # (cmd, copy of attr as passed)
        self.opened: list[int] = []

    def on(self, cmd: Cmd, handler: Handler) -> None:
        self.handlers[cmd] = handler

    def __call__(self, cmd: Cmd, attr: ctypes.Structure) -> int:
        self.calls.append((cmd, type(attr).from_buffer_copy(attr)))
        handler = self.handlers.get(cmd)
        if handler is None:
            return -errno.EINVAL
        return handler(attr)

    def commands(self) -> list[Cmd]:
        return [cmd for cmd, _ in self.calls]

    def new_fd(self) -> int:
        """A real descriptor (on /dev/null) standing in for a BPF object; the code under test owns it."""
        fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self.opened.append(fd)
        return fd


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def write_log(attr: ProgLoadAttr, text: str) -> bool:
    """Write ``text`` into the verifier log buffer like the kernel does; False if it was truncated."""
    data = text.encode()
    if not attr.log_buf or not attr.log_size:
        return True
    chunk = data[: attr.log_size - 1]
    ctypes.memmove(attr.log_buf, chunk + b"\0", len(chunk) + 1)
    attr.log_true_size = len(data) + 1
    return len(data) + 1 <= int(attr.log_size)
