"""Legacy cgroup storage and cgroup arrays in user space (``ebpf.maps.cgroup``), without a kernel.

The kernel comparison is ``tests/differential/test_cgroup_maps_kernel.py``; these tests pin the
rules it measured (Linux 6.18) so they hold where there is no ``bpf()``.
"""

from __future__ import annotations

import errno
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from ebpf import btf, elf
from ebpf.btf.types import IntEncoding
from ebpf.errors import KeyNotFoundError, VMError
from ebpf.maps import (
    CgroupArrayMap,
    CgroupStorageMap,
    MapDef,
    MapFlags,
    PerCPUCgroupStorageMap,
    create,
    errno_of,
)
from ebpf.maps.cgroup import CgroupRef, cgroup_storage_key, is_descendant, resolve_cgroup_fd
from ebpf.runtime import Collection
from ebpf.spec import AttachType, MapType

DATA = Path(__file__).parent.parent / "data" / "cgroupmaps"
EGRESS, INGRESS = int(AttachType.CGROUP_INET_EGRESS), int(AttachType.CGROUP_INET_INGRESS)
CG2 = "/sys/fs/cgroup/unified"


def err_of(fn: object) -> int | None:
    try:
        fn()  # type: ignore[operator]
    except Exception as err:  # noqa: BLE001
        return errno_of(err)
    return None


@pytest.mark.parametrize(
    ("mtype", "key", "value", "entries", "flags", "expected"),
    [
        (MapType.CGROUP_STORAGE, 16, 8, 0, 0, None),
        (MapType.CGROUP_STORAGE, 8, 8, 0, 0, None),
        (MapType.CGROUP_STORAGE, 12, 8, 0, 0, errno.EINVAL),
        (MapType.CGROUP_STORAGE, 16, 0, 0, 0, errno.EINVAL),
        (MapType.CGROUP_STORAGE, 16, 8, 1, 0, errno.EINVAL),
        (MapType.CGROUP_STORAGE, 16, 65407, 0, 0, None),
        (MapType.CGROUP_STORAGE, 16, 65408, 0, 0, errno.E2BIG),
        (MapType.CGROUP_STORAGE, 16, 8, 0, MapFlags.NO_PREALLOC, errno.EINVAL),
        (MapType.CGROUP_STORAGE, 16, 8, 0, MapFlags.RDONLY_PROG, None),
        (MapType.CGROUP_STORAGE, 16, 8, 0, MapFlags.RDONLY_PROG | MapFlags.WRONLY_PROG, errno.EINVAL),
        (MapType.PERCPU_CGROUP_STORAGE, 8, 32768, 0, 0, None),
        (MapType.PERCPU_CGROUP_STORAGE, 8, 32769, 0, 0, errno.E2BIG),
        (MapType.CGROUP_ARRAY, 4, 4, 4, 0, None),
        (MapType.CGROUP_ARRAY, 4, 4, 0, 0, errno.EINVAL),
        (MapType.CGROUP_ARRAY, 4, 8, 4, 0, errno.EINVAL),
        (MapType.CGROUP_ARRAY, 4, 4, 4, MapFlags.RDONLY_PROG, errno.EINVAL),
    ],
)
def test_creation_rules(
    mtype: MapType, key: int, value: int, entries: int, flags: int, expected: int | None
) -> None:
    def make() -> None:
        create(MapDef(mtype, key, value, entries, flags)).close()

    assert err_of(make) == expected


def _btf_defn(key_size: int, struct_key: bool, attach_bits: int = 32) -> MapDef:
    u64 = btf.Int("u64", 8, IntEncoding.NONE, bits=64)
    u32 = btf.Int("u32", 4, IntEncoding.NONE, bits=attach_bits)
    types: list[object] = [u64, u32]
    if struct_key:
        members = (btf.Member("cgroup_inode_id", 1, 0), btf.Member("attach_type", 2, 64))
        types.append(btf.Struct("bpf_cgroup_storage_key", 16, members))
    spec = btf.Spec.build(types)  # type: ignore[arg-type]
    return MapDef(
        MapType.CGROUP_STORAGE, key_size, 8, 0, btf=spec, key_type_id=3 if struct_key else 1, value_type_id=1
    )


def test_key_btf_is_checked() -> None:
    create(_btf_defn(16, True)).close()
    create(_btf_defn(8, False)).close()
    assert err_of(lambda: create(_btf_defn(16, False))) == errno.EINVAL
    assert err_of(lambda: create(_btf_defn(16, True, attach_bits=16))) == errno.EINVAL


def test_storage_made_by_attach_newest_first() -> None:
    with create(MapDef(MapType.CGROUP_STORAGE, 16, 8, 0)) as m:
        assert isinstance(m, CgroupStorageMap)
        assert m.attach(100, EGRESS) and m.attach(200, EGRESS) and m.attach(100, INGRESS)
        assert not m.attach(100, EGRESS)
        k1, k2, k3 = (
            cgroup_storage_key(100, EGRESS),
            cgroup_storage_key(200, EGRESS),
            cgroup_storage_key(100, INGRESS),
        )
        assert m.keys() == [k3, k2, k1] and len(m) == 3
        assert m.lookup(k1) == bytes(8)
        m.update(k1, struct.pack("<Q", 5))
        m.update(k1, struct.pack("<Q", 6), 2)  # BPF_EXIST
        assert m.lookup(struct.pack("<QII", 100, EGRESS, 0xDEAD)) == struct.pack("<Q", 6)  # padding ignored
        assert err_of(lambda: m.update(k1, bytes(8), 1)) == errno.EINVAL  # BPF_NOEXIST
        assert err_of(lambda: m.update(k1, bytes(8), 4)) == errno.EINVAL  # BPF_F_LOCK, no lock
        assert err_of(lambda: m.update(k1, bytes(8), 8)) == errno.EINVAL
        assert err_of(lambda: m.delete(k1)) == errno.EINVAL
        assert err_of(lambda: m.lookup_and_delete(k1)) == 524
        missing = cgroup_storage_key(300, EGRESS)
        assert err_of(lambda: m.lookup(missing)) == errno.ENOENT
        assert err_of(lambda: m.update(missing, bytes(8))) == errno.ENOENT
        assert err_of(lambda: m.get_next_key(missing)) == errno.ENOENT
        with pytest.raises(KeyNotFoundError):
            m.get_next_key(k1)
        assert m.release_cgroup(100) == 2 and m.keys() == [k2]


def test_shared_storage_ignores_the_attach_type() -> None:
    with create(MapDef(MapType.CGROUP_STORAGE, 8, 4, 0)) as m:
        assert isinstance(m, CgroupStorageMap) and m.shared
        assert m.attach(7, EGRESS) and not m.attach(7, INGRESS)
        assert m.keys() == [struct.pack("<Q", 7)]


def test_percpu_values_keep_their_padding() -> None:
    with create(MapDef(MapType.PERCPU_CGROUP_STORAGE, 16, 4, 0), ncpus=2) as m:
        assert isinstance(m, PerCPUCgroupStorageMap)
        m.attach(1, EGRESS)
        key = cgroup_storage_key(1, EGRESS)
        assert m.lookup(key) == bytes(16)
        m.update(key, bytes(range(16)))
        assert m.lookup(key) == bytes(range(16))  # all 8 bytes of each CPU, as the kernel copies
        assert m.lookup_percpu(key) == [bytes(range(4)), bytes(range(8, 12))]
        m.update(key, b"\1\2\3\4")  # one value for every CPU
        assert m.lookup_percpu(key) == [b"\1\2\3\4"] * 2
        assert err_of(lambda: m.update(key, bytes(16), 1)) == errno.EINVAL
        assert err_of(lambda: m.update(key, bytes(16), 4)) == errno.EINVAL
        assert m.value_address(key, 1) != m.value_address(key, 0)


@pytest.mark.parametrize("engine", ["interp", "py"])
def test_test_runs_get_a_fresh_storage_shared_by_repeats(engine: str) -> None:
    spec = elf.load_collection_spec(DATA / "cgroupmaps.o")
    with Collection(spec, engine=engine, ncpus=2) as coll:
        prog = coll.programs["count_egress"]
        for repeat, count in ((3, 3), (1, 1), (5, 5)):
            r = prog.test_run(bytes(64), ctx_in=bytes(192), repeat=repeat)
            assert r.ctx_out is not None
            assert struct.unpack_from("<II", r.ctx_out, 48) == (count, 2 * count)  # skb->cb[0..1]
            assert r.retval == count & 1
            assert coll.maps["seen"].lookup(struct.pack("<I", 0)) == struct.pack("<Q", count)
        assert coll.maps["counter"].keys() == []
        m = coll.maps["counter"]
        assert isinstance(m, CgroupStorageMap)
        m.attach(42, EGRESS)
        prog.test_run(bytes(64))
        assert m.lookup(cgroup_storage_key(42, EGRESS)) == bytes(8)  # attached storage untouched


def test_a_second_map_of_the_same_type_in_one_run_is_refused() -> None:
    from ebpf.vm._helpers_cgroup import end_run, run_storage
    from ebpf.vm.helpers import RunEnv

    env = RunEnv()
    a = create(MapDef(MapType.CGROUP_STORAGE, 8, 8, 0, name="a"), env.memory)
    b = create(MapDef(MapType.CGROUP_STORAGE, 8, 8, 0, name="b"), env.memory)
    assert isinstance(a, CgroupStorageMap) and isinstance(b, CgroupStorageMap)
    first = run_storage(env, a)
    assert run_storage(env, a) is first
    with pytest.raises(VMError, match="only one"):
        run_storage(env, b)
    end_run(env)
    assert first.regions == []
    assert run_storage(env, b).address() != 0
    end_run(env)
    a.close()
    b.close()


def test_cgroup_array_without_cgroups() -> None:
    with create(MapDef(MapType.CGROUP_ARRAY, 4, 4, 2)) as m:
        assert isinstance(m, CgroupArrayMap)
        r, w = os.pipe()
        try:
            assert err_of(lambda: m.update(struct.pack("<I", 0), struct.pack("<I", r))) == errno.EBADF
        finally:
            os.close(r)
            os.close(w)
        assert err_of(lambda: m.update(struct.pack("<I", 0), struct.pack("<I", 12345))) == errno.EBADF
        assert err_of(lambda: m.update(struct.pack("<I", 2), struct.pack("<I", 0))) == errno.E2BIG
        assert err_of(lambda: m.update(struct.pack("<I", 0), struct.pack("<I", 0), 1)) == errno.EINVAL
        assert err_of(lambda: m.lookup(struct.pack("<I", 0))) == 524
        assert err_of(lambda: m.delete(struct.pack("<I", 0))) == errno.ENOENT
        assert err_of(lambda: m.delete(struct.pack("<I", 2))) == errno.E2BIG
        assert m.get_next_key(None) == struct.pack("<I", 0)
        assert err_of(lambda: m.get_next_key(struct.pack("<I", 1))) == errno.ENOENT
        ref = CgroupRef(5, 0, "/nonexistent")
        m.update_cgroup(struct.pack("<I", 1), ref)
        assert m.cgroup_at(1) == ref and m.cgroup_at(0) is None


def test_cgroup_fds_and_ancestry(tmp_path: Path) -> None:
    if not os.path.ismount(CG2):
        pytest.skip(f"no cgroup v2 mount at {CG2}")
    fd = os.open(CG2, os.O_RDONLY | os.O_DIRECTORY)
    try:
        root = resolve_cgroup_fd(fd)
    finally:
        os.close(fd)
    assert root.id == os.stat(CG2).st_ino and root.path == CG2
    assert is_descendant(root.id, root)
    parent = os.path.join(CG2, f"ebpf-cgmaps-unit-{os.getpid()}")
    child = os.path.join(parent, "child")
    os.mkdir(parent)
    try:
        os.mkdir(child)
        try:
            fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                ref = resolve_cgroup_fd(fd)
            finally:
                os.close(fd)
            ino = os.stat(child).st_ino
            assert ref == CgroupRef(os.stat(parent).st_ino, root.dev, parent)
            assert is_descendant(ino, root) and is_descendant(ino, ref)
            assert not is_descendant(root.id, ref)
            assert not is_descendant(ref.id, CgroupRef(ino, root.dev, child))
        finally:
            os.rmdir(child)
    finally:
        os.rmdir(parent)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert err_of(lambda: resolve_cgroup_fd(fd)) == errno.EBADF
    finally:
        os.close(fd)


def test_build_script_check() -> None:
    if shutil.which("clang-19") is None or shutil.which("gcc") is None:
        pytest.skip("clang-19 and gcc are needed to rebuild tests/data/cgroupmaps")
    out = subprocess.run(
        ["sh", str(DATA / "build.sh"), "--check"], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
