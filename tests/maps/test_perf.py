"""PERF_EVENT_ARRAY: helper errors, per-CPU buffers, padding, space accounting and loss records."""

from __future__ import annotations

import errno

import pytest

from ebpf.errors import KeyNotFoundError
from ebpf.maps import (
    BPF_F_CURRENT_CPU,
    InvalidMapArgumentError,
    MapDef,
    MapFullError,
    MapOperationNotSupportedError,
    PerfEventArrayMap,
    PerfRecord,
    create,
)
from ebpf.spec import MapSpec, MapType


def perf(max_entries: int = 2, ncpus: int = 2) -> PerfEventArrayMap:
    m = create(MapDef(MapType.PERF_EVENT_ARRAY, 4, 4, max_entries), ncpus=ncpus)
    assert isinstance(m, PerfEventArrayMap)
    return m


def test_output_errors() -> None:
    with perf() as m:
        assert m.output(0, b"x") == -errno.ENOENT  # nothing opened at index 0
        assert m.output(5, b"x") == -errno.E2BIG
        assert m.output(1 << 32, b"x") == -errno.EINVAL  # CTXLEN bits without a packet
        m.open_buffers(pages=1)
        assert m.output(1, b"x", cpu=0) == -errno.EOPNOTSUPP  # buffer of CPU 1, running on 0
        assert m.output(BPF_F_CURRENT_CPU, b"abcde", cpu=1) == 0
        assert m.output(0, b"", cpu=0) == 0
        assert m.read(1) == [b"abcde" + bytes(7)]  # raw size padded: 4 + 12 = 16
        assert m.read(0) == [b"\0" * 4]
        assert m.output((3 << 32) | 0, b"ab", cpu=0, ctx=b"PACKET") == 0
        assert m.output((9 << 32) | 0, b"ab", cpu=0, ctx=b"PACKET") == -errno.EFAULT
        assert m.read(0) == [b"abPAC" + bytes(7)]


def test_full_buffer_counts_losses_and_reports_them() -> None:
    with perf(1, 1) as m:
        m.open_buffer(0, pages=1)
        results = [m.output(0, bytes(4)) for _ in range(258)]  # 16 bytes each, 4095 usable
        assert results.count(0) == 255 and results[255:] == [-errno.ENOSPC] * 3
        assert m.lost() == 3 and m.lost(0) == 3
        assert len(m.poll()) == 255
        assert m.output(0, b"late") == 0
        records = m.poll()
        assert records == [PerfRecord(0, None, lost=3), PerfRecord(0, b"late")]


def test_slots() -> None:
    with perf() as m:
        with pytest.raises(MapFullError):
            m.open_buffer(2)
        with pytest.raises(InvalidMapArgumentError):
            m.open_buffer(0, pages=3)
        with pytest.raises(InvalidMapArgumentError):
            m.open_buffer(0, cpu=2)
        m.open_buffer(0, cpu=1)
        assert b"\0\0\0\0" in m and b"\1\0\0\0" not in m
        m.delete(b"\0\0\0\0")
        with pytest.raises(KeyNotFoundError):
            m.delete(b"\0\0\0\0")
        with pytest.raises(MapFullError):
            m.delete(b"\2\0\0\0")
        with pytest.raises(MapOperationNotSupportedError):
            m.lookup(b"\0\0\0\0")
        with pytest.raises(KeyNotFoundError):
            m.read(0)
        assert list(m) == [b"\0\0\0\0", b"\1\0\0\0"]


def test_spec_max_entries_zero_is_ncpus_libbpf_rule() -> None:
    spec = MapSpec("events", MapType.PERF_EVENT_ARRAY, 4, 4, 0)
    with create(spec, ncpus=3) as m:
        assert m.max_entries == 3
    with pytest.raises(InvalidMapArgumentError):  # the kernel's own rule
        create(MapDef(MapType.PERF_EVENT_ARRAY, 4, 4, 0))


def test_spec_ringbuf_size_rounded_like_libbpf() -> None:
    with create(MapSpec("rb", MapType.RINGBUF, 0, 0, 5000)) as m:
        assert m.max_entries == 8192
    with create(MapSpec("rb", MapType.RINGBUF, 0, 0, 16384)) as m:
        assert m.max_entries == 16384
