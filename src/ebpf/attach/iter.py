"""BPF iterators: an iterator link, and reading its output (``BPF_ITER_CREATE``).

Above the kernel line. Calls bpf(2).

Rule: an iterator program (type ``TRACING``, ``expected_attach_type=TRACE_ITER``,
``attach_btf_id`` = ``bpf_iter_<target>`` in vmlinux BTF) is linked once; every
:meth:`IterLink.open` starts a fresh walk whose text is whatever the program wrote with
``bpf_seq_printf``/``bpf_seq_write``. Reading to the end finishes the walk.
"""

from __future__ import annotations

import io
import struct

from ebpf.attach import _abi
from ebpf.attach.link import FDLink, ProgramLike
from ebpf.errors import SyscallError
from ebpf.kernel._syscall import bpf
from ebpf.kernel.fd import FD
from ebpf.kernel.uapi import Cmd
from ebpf.spec import AttachType

__all__ = ["IterLink", "iterator"]


class IterLink(FDLink):
    """A link of an iterator program; :meth:`open` / :meth:`read` run the iterator."""

    def open(self) -> io.BufferedReader:
        """A new iterator instance as a binary file (``BPF_ITER_CREATE``); close it when done.

        Requires Linux >= 5.8.
        """
        fd = bpf(Cmd.ITER_CREATE, _abi.IterCreateAttr(link_fd=self.fd))
        return io.open(fd, "rb", closefd=True)  # noqa: UP020 - an fd, not a path

    def read(self) -> bytes:
        """Run the iterator once and return everything it wrote."""
        with self.open() as f:
            return f.read()


def iterator(
    program: ProgramLike,
    *,
    map_fd: int | None = None,
    cgroup_fd: int | None = None,
    cgroup_order: int = 0,
    tid: int = 0,
    pid: int = 0,
    pid_fd: int = 0,
) -> IterLink:
    """Link an iterator program (``SEC("iter/<target>")``).

    Args:
        map_fd: the map to walk (``bpf_map_elem``, ``bpf_sk_storage_map`` targets).
        cgroup_fd, cgroup_order: the cgroup to walk and ``enum bpf_cgroup_iter_order``.
        tid, pid, pid_fd: limit a task/task_file/task_vma iterator to one thread/process.

    Raises:
        SyscallError: ``EINVAL`` (target options that do not fit the program), ...

    Requires Linux >= 5.8 (map iterators 5.9, task options 6.1).
    """
    info = b""
    if map_fd is not None:
        info = struct.pack("=I12x", map_fd)
    elif cgroup_fd is not None:
        info = struct.pack("=IIQ", cgroup_order, cgroup_fd, 0)
    elif tid or pid or pid_fd:
        info = struct.pack("=III4x", tid, pid, pid_fd)
    buf = _abi.cstr(info) if info else None
    extra = struct.pack("=QI", buf.address if buf is not None else 0, len(info) if info else 0)
    try:
        fd = _abi.link_create(program.fd, 0, AttachType.TRACE_ITER, 0, extra)
    except SyscallError as err:
        err.add_note("while creating a BPF iterator link")
        raise
    return IterLink(FD(fd), kind="iter")
