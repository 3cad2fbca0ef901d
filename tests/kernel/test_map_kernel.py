"""kernel.Map against the running kernel: every operation, info, pins, mmap, batches."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ebpf.errors import KeyNotFoundError
from ebpf.kernel.map import (
    BPF_F_MMAPABLE,
    Map,
    PinMismatchError,
    ensure_bpffs,
    map_ids,
    possible_cpus,
)
from ebpf.maps import InvalidMapArgumentError, KeyExistsError, MapFullError
from ebpf.spec import MapSpec, MapType, PinType

pytestmark = pytest.mark.kernel


def u32(n: int) -> bytes:
    return struct.pack("=I", n)


def u64(n: int) -> bytes:
    return struct.pack("=Q", n)


@pytest.fixture
def pin_root() -> Iterator[Path]:
    root = Path(f"/sys/fs/bpf/ebpf_test_map_{os.getpid()}")
    ensure_bpffs(root)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_hash_operations_and_errors() -> None:
    spec = MapSpec("counts", MapType.HASH, key_size=4, value_size=8, max_entries=2)
    with Map.create(spec) as m:
        m[u32(1)] = u64(10)
        m.update(u32(2), u64(20), flags=1)  # BPF_NOEXIST
        assert m[u32(1)] == u64(10)
        assert sorted(m.keys()) == [u32(1), u32(2)]
        assert len(m) == 2 and u32(2) in m and u32(3) not in m
        with pytest.raises(KeyExistsError):
            m.update(u32(1), u64(0), flags=1)
        with pytest.raises(MapFullError):
            m.update(u32(3), u64(30))
        with pytest.raises(KeyNotFoundError):
            m.lookup(u32(7))
        with pytest.raises(KeyNotFoundError):
            m.update(u32(7), u64(1), flags=2)  # BPF_EXIST on a missing key
        with pytest.raises(InvalidMapArgumentError):
            m.lookup(b"\0")
        assert m.lookup_and_delete(u32(2)) == u64(20)
        del m[u32(1)]
        with pytest.raises(KeyNotFoundError):
            del m[u32(1)]
        assert m.items() == [] and m.get(u32(1)) is None


def test_info_matches_spec() -> None:
    spec = MapSpec("infomap", MapType.LRU_HASH, key_size=8, value_size=16, max_entries=64, flags=0)
    with Map.create(spec) as m:
        info = m.info()
        assert (info.type, info.key_size, info.value_size, info.max_entries, info.flags) == (
            MapType.LRU_HASH,
            8,
            16,
            64,
            0,
        )
        assert info.name == "infomap"
        assert info.id in list(map_ids())
        with Map.from_id(info.id) as again:
            assert again.info() == info


def test_percpu_values_one_per_possible_cpu() -> None:
    spec = MapSpec("pcpu", MapType.PERCPU_ARRAY, key_size=4, value_size=4, max_entries=2)
    with Map.create(spec) as m:
        n = possible_cpus()
        assert m.ncpus == n
        m.update_percpu(u32(0), [u32(i + 1) for i in range(n)])
        assert m.lookup_percpu(u32(0)) == [u32(i + 1) for i in range(n)]
        m[u32(1)] = u32(9)  # one value for every CPU
        assert m.lookup_percpu(u32(1)) == [u32(9)] * n
        assert len(m[u32(1)]) == 8 * n  # the kernel layout, as the user-space map's lookup


def test_queue_push_pop() -> None:
    spec = MapSpec("q", MapType.QUEUE, key_size=0, value_size=4, max_entries=2)
    with Map.create(spec) as m:
        m.push(u32(1))
        m.push(u32(2))
        with pytest.raises(MapFullError):
            m.push(u32(3))
        assert m.peek() == u32(1)
        assert m.pop() == u32(1) and m.pop() == u32(2)
        with pytest.raises(KeyNotFoundError):
            m.pop()


def test_batches() -> None:
    spec = MapSpec("batch", MapType.HASH, key_size=4, value_size=4, max_entries=100)
    with Map.create(spec) as m:
        assert m.update_batch([(u32(i), u32(i * i)) for i in range(50)]) == 50
        got = dict(m.lookup_batch(count=7))
        assert got == {u32(i): u32(i * i) for i in range(50)}
        assert m.delete_batch([u32(i) for i in range(10)]) == 10
        assert len(m.lookup_batch(delete=True)) == 40
        assert len(m) == 0


def test_map_in_map_and_inner_lookup() -> None:
    inner = MapSpec("inner", MapType.ARRAY, key_size=4, value_size=4, max_entries=1)
    outer = MapSpec("outer", MapType.ARRAY_OF_MAPS, key_size=4, value_size=4, max_entries=2, inner=inner)
    with Map.create(outer) as o, Map.create(inner) as i:
        i[u32(0)] = u32(42)
        o.update_map(u32(1), i)
        with o.lookup_map(u32(1)) as again:
            assert again.info().id == i.info().id
            assert again[u32(0)] == u32(42)
        with pytest.raises(KeyNotFoundError):
            o.lookup_map(u32(0))


def test_freeze_and_mmap() -> None:
    spec = MapSpec("gdata", MapType.ARRAY, key_size=4, value_size=12, max_entries=1, flags=BPF_F_MMAPABLE)
    with Map.create(spec) as m:
        view = m.mmap()
        view[0:4] = u32(7)
        assert m[u32(0)][:4] == u32(7)
        m[u32(0)] = b"abcdefghijkl"
        assert bytes(view[:12]) == b"abcdefghijkl"
    with pytest.raises(ValueError, match="released"):  # close() released and unmapped it
        view.tobytes()
    plain = MapSpec("plain", MapType.ARRAY, key_size=4, value_size=4, max_entries=1)
    with Map.create(plain) as m:
        with pytest.raises(InvalidMapArgumentError):
            m.mmap()
        m.freeze()
        with pytest.raises(Exception, match="EPERM|not permitted"):
            m[u32(0)] = u32(1)


def test_pin_by_name_reuse_and_mismatch(pin_root: Path) -> None:
    spec = MapSpec("shared", MapType.HASH, key_size=4, value_size=4, max_entries=4, pinning=PinType.BY_NAME)
    with Map.create(spec, pin_root=pin_root) as m:
        assert m.pinned == str(pin_root / "shared") and not m.reused
        m[u32(1)] = u32(11)
    with Map.create(spec, pin_root=pin_root) as again:
        assert again.reused and again[u32(1)] == u32(11)
    bad = spec.copy()
    bad.max_entries = 8
    with pytest.raises(PinMismatchError, match="max_entries \\(pinned 4, spec 8\\)"):
        Map.create(bad, pin_root=pin_root)


def test_pinned_map_survives_a_subprocess(pin_root: Path) -> None:
    path = pin_root / "from_child"
    code = (
        "import struct\n"
        "from ebpf.kernel.map import Map\n"
        "from ebpf.spec import MapSpec, MapType\n"
        "m = Map.create(MapSpec('child', MapType.ARRAY, key_size=4, value_size=4, max_entries=1))\n"
        "m[struct.pack('=I', 0)] = struct.pack('=I', 1234)\n"
        f"m.pin({str(path)!r})\n"
        "m.close()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with Map.from_pin(path) as m:
        assert m[u32(0)] == u32(1234)
        assert m.info().name == "child"
        m.unpin()
    assert not path.exists()
