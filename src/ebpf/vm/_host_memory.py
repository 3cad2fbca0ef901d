"""The host process's own memory, as the kernel's user-copy helpers would read it.

Core layer: pure Python over ``/proc/self/{pagemap,maps,mem}`` (no ``bpf()``, no ``ctypes``).

A raw tracepoint or SYSCALL test run runs in the context of the process that asked for it, so
``bpf_probe_read_user`` reads that process's memory. The user-space runtime runs in the
caller's process: its "user memory" is this process's memory.

Rule 1 (``copy_from_user_nofault``, ``strncpy_from_user_nofault``): the helpers run with page
faults disabled, so a byte is readable only if its page is present in the page tables (bit 63
of its ``/proc/self/pagemap`` entry) *and* lies in a readable mapping (the
``PROCMAP_QUERY`` ioctl on ``/proc/self/maps``, Linux >= 6.11; before that, the ``r`` of its
line in ``/proc/self/maps``). ``/proc/self/mem`` alone would differ twice: it faults pages in
(untouched anonymous memory reads as zeros) and it reads ``PROT_NONE`` mappings (it uses
``FOLL_FORCE``); the kernel's helpers fail both with ``-EFAULT`` (measured on Linux 6.18).

Rule 2: addresses at or above ``TASK_SIZE_MAX`` (:data:`USER_END`; x86-64 with 4-level
paging: ``0x7FFF_FFFF_F000``) are never user memory.

Rule 3: where ``/proc/self/pagemap`` or ``/proc/self/mem`` cannot be read (not Linux, a
restricted ``/proc``), nothing is readable: the helpers answer ``-EFAULT`` as for unmapped
memory.

Known limit: reads of ``VM_IO``/``VM_PFNMAP`` mappings (``[vvar]``, device memory) and of the
execute-only ``[uprobes]`` page (mapped at the top of user space once a uprobe fired in this
process) fail here (``/proc/self/mem`` answers EIO); the kernel's helpers read them. Pages can change between the checks and the read (another
thread unmapping them): the read then stops where ``/proc/self/mem`` stops.
"""

from __future__ import annotations

import errno
import fcntl
import os
import platform
import struct

__all__ = ["PAGE_SIZE", "USER_END", "read", "readable_length"]

PAGE_SIZE: int = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# TASK_SIZE_MAX: arch/x86/include/asm/page_64.h (4-level paging); arm64: 1 << VA_BITS (48)
USER_END: int = {"x86_64": 0x0000_7FFF_FFFF_F000, "aarch64": 1 << 48}.get(platform.machine(), 1 << 47)
_PRESENT = 1 << 63  # Documentation/admin-guide/mm/pagemap.rst: "Bit 63 page present"

# include/uapi/linux/fs.h: struct procmap_query (104 bytes): size, query_flags, query_addr,
# vma_start, vma_end, vma_flags, vma_page_size, vma_offset, inode (u64); dev_major, dev_minor,
# vma_name_size, build_id_size (u32); vma_name_addr, build_id_addr (u64)
_PROCMAP_QUERY_STRUCT = struct.Struct("<9Q4I2Q")
_PROCMAP_QUERY = (3 << 30) | (_PROCMAP_QUERY_STRUCT.size << 16) | (ord("f") << 8) | 17  # _IOWR('f', 17, ...)
_VMA_READABLE = 0x01  # PROCMAP_QUERY_VMA_READABLE
_VMA_WRITABLE = 0x02  # PROCMAP_QUERY_VMA_WRITABLE
_VMA_EXECUTABLE = 0x04  # PROCMAP_QUERY_VMA_EXECUTABLE
# x86-64 page tables cannot make a present user page writable-only or execute-only (no PKU
# here): the kernel's nofault copies read any present page of a mapping with r, w or x -- e.g.
# the execute-only "[uprobes]" page a uprobe hit maps at the top of the address space
# (measured on Linux 6.18). Elsewhere only r counts.
_X86 = platform.machine() in ("x86_64", "AMD64")
_READ_MASK = (_VMA_READABLE | _VMA_WRITABLE | _VMA_EXECUTABLE) if _X86 else _VMA_READABLE
_READ_PERMS = b"rwx" if _X86 else b"r"


def _vma_query(fd: int, address: int) -> tuple[int, int, bool] | None:
    """``(start, end, readable)`` of the mapping holding ``address``, or ``None`` if none does.

    Raises:
        OSError: ``ENOTTY``/``EINVAL`` when the kernel has no ``PROCMAP_QUERY`` (< 6.11).
    """
    size = _PROCMAP_QUERY_STRUCT.size
    buf = bytearray(_PROCMAP_QUERY_STRUCT.pack(size, 0, address, *([0] * 12)))
    try:
        fcntl.ioctl(fd, _PROCMAP_QUERY, buf)
    except OSError as err:
        if err.errno == errno.ENOENT:
            return None
        raise
    fields = _PROCMAP_QUERY_STRUCT.unpack(buf)
    return fields[3], fields[4], bool(fields[5] & _READ_MASK)


def _maps_lines(address: int, end: int) -> list[tuple[int, int, bool]]:
    """The ``/proc/self/maps`` lines that overlap ``[address, end)``, in order."""
    with open("/proc/self/maps", "rb") as f:
        text = f.read()
    found = []
    for line in text.splitlines():
        fields = line.split(maxsplit=2)
        lo, _, hi = fields[0].partition(b"-")
        start, stop = int(lo, 16), int(hi, 16)
        if stop > address and start < end:
            found.append((start, stop, any(c in _READ_PERMS for c in fields[1][:3])))
    return found


def _readable_span(address: int, end: int) -> int:
    """How far from ``address`` (towards ``end``) readable mappings reach without a gap."""
    at = address
    with open("/proc/self/maps", "rb", buffering=0) as f:
        try:
            while at < end:
                vma = _vma_query(f.fileno(), at)
                if vma is None or not vma[2] or vma[0] > at:
                    break
                at = vma[1]
            return min(at, end) - address
        except OSError as err:
            if err.errno not in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP):
                raise
    for start, stop, readable in _maps_lines(address, end):  # no PROCMAP_QUERY (Linux < 6.11)
        if start > at or not readable:
            break
        at = stop
    return max(0, min(at, end) - address)


def _present_pages(first: int, count: int) -> int:
    """How many pages from page number ``first`` (at most ``count``) are present."""
    fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        raw = os.pread(fd, 8 * count, 8 * first)
    finally:
        os.close(fd)
    for k in range(len(raw) // 8):
        if not int.from_bytes(raw[8 * k : 8 * k + 8], "little") & _PRESENT:
            return k
    return len(raw) // 8


def readable_length(address: int, size: int) -> int:
    """How many bytes of ``[address, address + size)`` are readable from its start (Rule 1)."""
    if size <= 0 or not 0 <= address < USER_END:
        return 0
    size = min(size, USER_END - address)
    first = address // PAGE_SIZE
    count = (address + size - 1) // PAGE_SIZE - first + 1
    try:
        present = _present_pages(first, count)
        if present == 0:
            return 0
        return min(size, _readable_span(address, (first + present) * PAGE_SIZE))
    except OSError:
        return 0


def read(address: int, size: int) -> bytes:
    """The readable prefix of ``[address, address + size)`` (``b""`` when its first byte is not)."""
    n = readable_length(address, size)
    if n == 0:
        return b""
    try:
        fd = os.open("/proc/self/mem", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        chunks: list[bytes] = []
        got = 0
        while got < n:
            chunk = os.pread(fd, n - got, address + got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    except OSError:
        pass  # EIO: a page went away (or cannot be read) after the checks; keep what was read
    finally:
        os.close(fd)
    return b"".join(chunks)
