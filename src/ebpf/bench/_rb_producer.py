"""Benchmark and test producer (above the kernel line): a kernel program that writes numbered 32-byte records into a ring buffer (test and bench producer).

Each run: ``seq = counters[0]++``; ``bpf_ringbuf_output(ring, {seq, seq*2, seq*3, 0xfeed}, 32, flags)``;
a failed output increments ``counters[1]`` (drops are counted, never silent).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ebpf.isa.asm import assemble
from ebpf.kernel.map import Map
from ebpf.kernel.program import Program
from ebpf.spec import MapSpec, MapType, ProgramType

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


@dataclass
class Producer:
    """The ring, its counters and the loaded XDP program; ``run(n)`` writes ``n`` records."""

    ring: Map
    counters: Map
    program: Program

    @classmethod
    def create(cls, ring_size: int, *, flags: int = 0) -> Producer:
        ring = Map.create(MapSpec("rb_bench", MapType.RINGBUF, 0, 0, ring_size))
        counters = Map.create(MapSpec("rb_counters", MapType.ARRAY, 4, 8, 2))
        try:
            source = _SOURCE.format(ring=ring.fd, counters=counters.fd, flags=flags)
            prog = Program.load(assemble(source), ProgramType.XDP, license="GPL", name="rb_producer")
        except BaseException:
            ring.close()
            counters.close()
            raise
        return cls(ring, counters, prog)

    @property
    def ring_fd(self) -> int:
        return self.ring.fd

    @property
    def counters_fd(self) -> int:
        return self.counters.fd

    def run(self, n: int) -> None:
        self.program.test_run(bytes(64), repeat=n)

    def counter(self, index: int) -> int:
        return int(struct.unpack("<Q", self.counters.lookup(struct.pack("<I", index)))[0])

    @property
    def produced(self) -> int:
        return self.counter(0)

    @property
    def dropped(self) -> int:
        return self.counter(1)

    def close(self) -> None:
        self.program.close()
        self.ring.close()
        self.counters.close()
