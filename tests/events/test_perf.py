"""The perf buffer reader against a real PERF_EVENT_ARRAY fed by bpf_perf_event_output."""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Iterator

import pytest

from ebpf.events.perf import PerfBuffer, PerfBufferError, online_cpus
from ebpf.isa.asm import assemble
from ebpf.kernel._syscall import bpf
from ebpf.kernel.program import Program
from ebpf.kernel.uapi import Cmd, MapCreateAttr, MapElemAttr
from ebpf.spec import MapType, ProgramType

pytestmark = pytest.mark.kernel

SOURCE = """
    r6 = r1
    *(u32 *)(r10 - 4) = 0
    r1 = map_fd({counters}) ll
    r2 = r10
    r2 += -4
    call 1
    if r0 == 0 goto out
    r1 = 1
    r1 = atomic_fetch_add((u64 *)(r0 + 0), r1)
    *(u64 *)(r10 - 24) = r1
    r1 <<= 1
    *(u64 *)(r10 - 16) = r1
    r1 = r6
    r2 = map_fd({perf}) ll
    r3 = 0xffffffff ll
    r4 = r10
    r4 += -24
    r5 = 16
    call 25
out:
    r0 = 2
    exit
"""


def _map(map_type: MapType, key: int, value: int, entries: int) -> int:
    return bpf(
        Cmd.MAP_CREATE, MapCreateAttr(map_type=map_type, key_size=key, value_size=value, max_entries=entries)
    )


class Producer:
    def __init__(self) -> None:
        self.perf = _map(MapType.PERF_EVENT_ARRAY, 4, 4, len(online_cpus()))
        self.counters = _map(MapType.ARRAY, 4, 8, 1)
        source = SOURCE.format(perf=self.perf, counters=self.counters)
        self.prog = Program.load(assemble(source), ProgramType.XDP, license="GPL", name="perf_producer")

    def run(self, n: int) -> None:
        self.prog.test_run(bytes(64), repeat=n)

    @property
    def produced(self) -> int:
        key = ctypes.create_string_buffer(4)
        value = ctypes.create_string_buffer(8)
        attr = MapElemAttr(map_fd=self.counters, key=ctypes.addressof(key))
        attr.value = ctypes.addressof(value)
        bpf(Cmd.MAP_LOOKUP_ELEM, attr)
        return int(struct.unpack("<Q", value.raw)[0])

    def close(self) -> None:
        self.prog.close()
        os.close(self.perf)
        os.close(self.counters)


@pytest.fixture
def producer() -> Iterator[Producer]:
    p = Producer()
    yield p
    p.close()


def test_samples_arrive_in_order_with_padding(producer: Producer) -> None:
    got: list[tuple[int, bytes]] = []
    with PerfBuffer(producer.perf, lambda cpu, raw: got.append((cpu, raw))) as pb:
        assert pb.cpus == online_cpus()
        producer.run(100)
        assert pb.poll(timeout=1.0) == 100
        assert pb.lost == 0
    seqs = [struct.unpack_from("<QQ", raw) for _cpu, raw in got]
    assert seqs == [(i, 2 * i) for i in range(100)]
    assert {len(raw) for _cpu, raw in got} == {20}  # 16 bytes + padding to 8-byte records
    assert {cpu for cpu, _raw in got} <= set(online_cpus())


@pytest.fixture
def one_cpu() -> Iterator[None]:
    """Run on one CPU: a perf ring reports its losses with its own next sample."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    yield
    os.sched_setaffinity(0, before)


@pytest.mark.usefixtures("one_cpu")
def test_full_rings_report_lost_samples(producer: Producer) -> None:
    got: list[bytes] = []
    lost_reports: list[tuple[int, int]] = []
    with PerfBuffer(
        producer.perf, lambda cpu, raw: got.append(raw), lambda cpu, n: lost_reports.append((cpu, n)), pages=1
    ) as pb:
        producer.run(1000)  # 1000 x 32-byte records do not fit one 4 KiB page
        first = pb.consume()
        assert first < 1000
        # The kernel reports a loss with the next sample that fits (PERF_RECORD_LOST first).
        producer.run(10)
        assert pb.consume() == 10
        assert pb.lost == 1000 - first
        assert sum(n for _cpu, n in lost_reports) == pb.lost
        assert len(got) + pb.lost == producer.produced == 1010


def test_wraps_around(producer: Producer) -> None:
    got: list[bytes] = []
    with PerfBuffer(producer.perf, lambda cpu, raw: got.append(raw), pages=1) as pb:
        for _ in range(30):
            producer.run(45)  # 45 x 32 bytes: wraps a 4 KiB ring every few rounds
            pb.consume()
        assert pb.lost == 0
    assert [struct.unpack_from("<Q", raw)[0] for raw in got] == list(range(30 * 45))


def test_close_removes_the_map_entries(producer: Producer) -> None:
    pb = PerfBuffer(producer.perf, lambda cpu, raw: None)
    pb.close()
    pb.close()
    producer.run(5)  # no event in the map: the helper fails quietly, nothing to read
    with pytest.raises(PerfBufferError, match="closed"):
        pb.poll(0)


def test_rejects_other_maps_and_bad_sizes(producer: Producer) -> None:
    with pytest.raises(PerfBufferError, match="not a perf event array"):
        PerfBuffer(producer.counters)
    with pytest.raises(PerfBufferError, match="power of two"):
        PerfBuffer(producer.perf, pages=3)
