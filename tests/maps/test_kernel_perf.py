"""PERF_EVENT_ARRAY against the kernel: the same outputs into a real perf ring and into ours.

The kernel side is what libbpf's ``perf_buffer`` sets up: a ``PERF_COUNT_SW_BPF_OUTPUT``
event on one CPU with ``PERF_SAMPLE_RAW``, its ring ``mmap``-ed, its fd stored in the map.
An XDP program pinned to that CPU calls ``bpf_perf_event_output``; the helper's return
values, then the records read from the ring (raw samples with their padding, and
``PERF_RECORD_LOST`` counts) must equal ours.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import struct
from collections.abc import Iterator

import pytest

from ebpf.kernel._syscall import bpf
from ebpf.kernel.uapi import Cmd, MapCreateAttr, MapElemAttr
from ebpf.maps import BPF_F_CURRENT_CPU, MapDef, PerfEventArrayMap, PerfRecord, create
from ebpf.spec import MapType

from ._bpfprog import (
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R10,
    add_imm,
    call,
    exit_,
    fill,
    ld_imm64,
    ld_map_fd,
    mov_imm,
    mov_reg,
    run_xdp,
)

pytestmark = pytest.mark.kernel

PERF_EVENT_OUTPUT = 25
SYS_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241, "riscv64": 241}.get(platform.machine())
PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_BPF_OUTPUT = 10
PERF_SAMPLE_RAW = 1 << 10
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_RECORD_LOST, PERF_RECORD_SAMPLE = 2, 9
PAGE = 4096

_libc = ctypes.CDLL(None, use_errno=True)


def perf_event_open(cpu: int) -> int:
    if SYS_PERF_EVENT_OPEN is None:
        pytest.skip(f"no perf_event_open number for {platform.machine()}")
    attr = bytearray(112)  # PERF_ATTR_SIZE_VER5
    struct.pack_into(
        "<IIQQQ", attr, 0, PERF_TYPE_SOFTWARE, len(attr), PERF_COUNT_SW_BPF_OUTPUT, 1, PERF_SAMPLE_RAW
    )
    struct.pack_into("<I", attr, 48, 1)  # wakeup_events
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    fd = _libc.syscall(SYS_PERF_EVENT_OPEN, buf, -1, cpu, -1, 8)  # PERF_FLAG_FD_CLOEXEC
    if fd < 0:
        err = ctypes.get_errno()
        pytest.skip(f"perf_event_open: {os.strerror(err)}")
    if _libc.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0) < 0:
        os.close(fd)
        pytest.skip("PERF_EVENT_IOC_ENABLE failed")
    return int(fd)


class KernelPerfRing:
    def __init__(self, fd: int, pages: int) -> None:
        self.fd = fd
        self.size = pages * PAGE
        self.mm = mmap.mmap(fd, (pages + 1) * PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)

    def read(self, cpu: int) -> list[PerfRecord]:
        head, tail = struct.unpack_from("<QQ", self.mm, 1024)  # data_head, data_tail
        out = []
        while tail < head:

            def at(pos: int, n: int) -> bytes:
                return bytes(self.mm[PAGE + (pos + i) % self.size] for i in range(n))

            rtype, _misc, rsize = struct.unpack("<IHH", at(tail, 8))
            body = at(tail + 8, rsize - 8)
            if rtype == PERF_RECORD_SAMPLE:
                (n,) = struct.unpack_from("<I", body)
                out.append(PerfRecord(cpu, body[4 : 4 + n]))
            elif rtype == PERF_RECORD_LOST:
                out.append(PerfRecord(cpu, None, struct.unpack_from("<QQ", body)[1]))
            tail += rsize
        struct.pack_into("<Q", self.mm, 1032, tail)
        return out

    def close(self) -> None:
        self.mm.close()
        os.close(self.fd)


def prog_output(map_fd: int, flags: int, size: int, byte: int) -> bytes:
    at = -max((size + 7) // 8 * 8, 8)
    code = mov_reg(R6, R1) + fill(R10, at, size, byte)
    code += mov_reg(R1, R6) + ld_map_fd(R2, map_fd) + ld_imm64(R3, flags)
    code += mov_reg(R4, R10) + add_imm(R4, at) + mov_imm(R5, size) + call(PERF_EVENT_OUTPUT) + exit_()
    return code


def same_records(ours: list[PerfRecord], kernel: list[PerfRecord], written: list[int]) -> None:
    """Equal records; sample padding is compared by length only (the kernel leaves stale bytes)."""
    assert [(r.cpu, r.lost, r.data is None) for r in ours] == [
        (r.cpu, r.lost, r.data is None) for r in kernel
    ]
    samples = [(o.data, k.data) for o, k in zip(ours, kernel, strict=True) if o.data is not None]
    assert len(samples) == len(written)
    for (mine, theirs), n in zip(samples, written, strict=True):
        assert theirs is not None and len(mine) == len(theirs) and mine[:n] == theirs[:n]


@pytest.fixture
def on_cpu0() -> Iterator[int]:
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    try:
        yield 0
    finally:
        os.sched_setaffinity(0, before)


def test_outputs_losses_and_padding_match(on_cpu0: int) -> None:
    cpu = on_cpu0
    map_fd = bpf(
        Cmd.MAP_CREATE,
        MapCreateAttr(map_type=MapType.PERF_EVENT_ARRAY, key_size=4, value_size=4, max_entries=2),
    )
    ring: KernelPerfRing | None = None
    ours = create(MapDef(MapType.PERF_EVENT_ARRAY, 4, 4, 2), ncpus=2)
    assert isinstance(ours, PerfEventArrayMap)
    try:
        steps = [(BPF_F_CURRENT_CPU, 5, 1), (0, 0, 2), (1, 4, 3)]  # slot 1 is empty: -ENOENT
        for flags, size, byte in steps:
            assert run_xdp(prog_output(map_fd, flags, size, byte)) == ours.output(
                flags, bytes([byte]) * size, cpu=cpu
            )
        ring = KernelPerfRing(perf_event_open(cpu), pages=1)
        key = ctypes.create_string_buffer(struct.pack("<I", cpu), 4)
        val = ctypes.create_string_buffer(struct.pack("<I", ring.fd), 4)
        attr = MapElemAttr(map_fd=map_fd, key=ctypes.addressof(key))
        attr.value = ctypes.addressof(val)
        bpf(Cmd.MAP_UPDATE_ELEM, attr)
        ours.open_buffer(cpu, pages=1)
        sizes = [5, 0, 4, 12, 100, 3, 250] + [200] * 20  # fills the 4 KiB ring: losses
        results = []
        written: list[int] = []
        for i, size in enumerate(sizes):
            want = run_xdp(prog_output(map_fd, BPF_F_CURRENT_CPU, size, i))
            got = ours.output(BPF_F_CURRENT_CPU, bytes([i]) * size, cpu=cpu)
            assert got == want, f"output {i} of {size} bytes"
            results.append(got)
            written += [size] if got == 0 else []
        assert -errno.ENOSPC in results and ours.lost() > 0
        same_records(ours.poll(), ring.read(cpu), written)
        written = []
        for i in range(3):  # after losses: a LOST record first
            size = 16 * i + 1
            want = run_xdp(prog_output(map_fd, 0, size, 0x40 + i))
            assert ours.output(0, bytes([0x40 + i]) * size, cpu=cpu) == want == 0
            written.append(size)
        packet = bytes(64)  # what run_xdp feeds the program: BPF_F_CTXLEN appends its bytes
        for ctx_len in (3, 64, 65):
            flags = (ctx_len << 32) | BPF_F_CURRENT_CPU
            want = run_xdp(prog_output(map_fd, flags, 2, 0x55))
            got = ours.output(flags, b"\x55" * 2, cpu=cpu, ctx=packet)
            assert got == want, ctx_len
            written += [2 + ctx_len] if got == 0 else []
        assert want == -errno.EFAULT
        same_records(ours.poll(), ring.read(cpu), written)
        assert (
            run_xdp(prog_output(map_fd, 1 << 60, 1, 0))
            == -errno.EINVAL
            == ours.output(1 << 60, b"\0", cpu=cpu)
        )
        assert run_xdp(prog_output(map_fd, 7, 1, 0)) == -errno.E2BIG == ours.output(7, b"\0", cpu=cpu)
    finally:
        if ring is not None:
            ring.close()
        os.close(map_fd)
        ours.close()
