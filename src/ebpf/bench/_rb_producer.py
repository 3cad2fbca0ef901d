"""Benchmark and test producer (above the kernel line): a kernel program that writes numbered 32-byte records into a ring buffer (test and bench producer).

Each run: ``seq = counters[0]++``; ``bpf_ringbuf_output(ring, {seq, seq*2, seq*3, 0xfeed}, 32, flags)``;
a failed output increments ``counters[1]`` (drops are counted, never silent).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from ebpf.isa.asm import assemble
from ebpf.kernel._syscall import bpf
from ebpf.kernel.program import Program
from ebpf.kernel.uapi import Cmd, MapCreateAttr, MapElemAttr
from ebpf.spec import MapType, ProgramType

RECORD = struct.Struct("<QQQQ")

_SOURCE = """
    *(u32 *)(r10 - 4) = 0
    r1 = map_fd({counters}) ll
    r2 = r10
    r2 += -4
    call 1
    if r0 == 0 goto out
    r1 = 1
    r1 = atomic_fetch_add((u64 *)(r0 + 0), r1)
    *(u64 *)(r10 - 40) = r1
    r2 = r1
    r2 <<= 1
    *(u64 *)(r10 - 32) = r2
    r2 += r1
    *(u64 *)(r10 - 24) = r2
    r2 = 65261
    *(u64 *)(r10 - 16) = r2
    r1 = map_fd({ring}) ll
    r2 = r10
    r2 += -40
    r3 = 32
    r4 = {flags}
    call 130
    if r0 == 0 goto out
    *(u32 *)(r10 - 4) = 1
    r1 = map_fd({counters}) ll
    r2 = r10
    r2 += -4
    call 1
    if r0 == 0 goto out
    r1 = 1
    lock *(u64 *)(r0 + 0) += r1
out:
    r0 = 2
    exit
"""


def _create(map_type: MapType, key_size: int, value_size: int, max_entries: int) -> int:
    attr = MapCreateAttr(map_type=map_type, key_size=key_size, value_size=value_size, max_entries=max_entries)
    return bpf(Cmd.MAP_CREATE, attr)


@dataclass
class Producer:
    """The ring, its counters and the loaded XDP program; ``run(n)`` writes ``n`` records."""

    ring_fd: int
    counters_fd: int
    program: Program

    @classmethod
    def create(cls, ring_size: int, *, flags: int = 0) -> Producer:
        ring = _create(MapType.RINGBUF, 0, 0, ring_size)
        counters = _create(MapType.ARRAY, 4, 8, 2)
        try:
            insns = assemble(_SOURCE.format(ring=ring, counters=counters, flags=flags))
            prog = Program.load(insns, ProgramType.XDP, license="GPL", name="rb_producer")
        except BaseException:
            os.close(ring)
            os.close(counters)
            raise
        return cls(ring, counters, prog)

    def run(self, n: int) -> None:
        self.program.test_run(bytes(64), repeat=n)

    def counter(self, index: int) -> int:
        import ctypes

        key = ctypes.create_string_buffer(struct.pack("<I", index), 4)
        value = ctypes.create_string_buffer(8)
        attr = MapElemAttr(map_fd=self.counters_fd, key=ctypes.addressof(key))
        attr.value = ctypes.addressof(value)
        bpf(Cmd.MAP_LOOKUP_ELEM, attr)
        return int(struct.unpack("<Q", value.raw)[0])

    @property
    def produced(self) -> int:
        return self.counter(0)

    @property
    def dropped(self) -> int:
        return self.counter(1)

    def close(self) -> None:
        self.program.close()
        for fd in (self.ring_fd, self.counters_fd):
            if fd >= 0:
                os.close(fd)
        self.ring_fd = self.counters_fd = -1
