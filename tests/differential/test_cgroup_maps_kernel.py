"""Legacy cgroup storage and cgroup arrays: the kernel and the user-space runtime side by side.

``tests/data/cgroupmaps/cgroupmaps.o`` is loaded into Linux 6.18 and into the runtime (both
engines). Test runs of the cgroup_skb programs must give the same retval, data_out, ctx_out
(``skb->cb``) and maps; the temporary storage of a test run (zeroed, shared by the repeats,
fresh for the next test run, invisible to keys) is checked on both. User-space operations on
storages made by attaching (the kernel: BPF links on test cgroups; the runtime:
``CgroupStorageMap.attach``) and on cgroup arrays must fail with the same errno. The
``*_under_cgroup`` helpers are compared with this process in the root cgroup, in a test
cgroup and in its child (moved back to the root afterwards).
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from ebpf import elf
from ebpf.maps import MapDef, create, errno_of
from ebpf.maps.cgroup import CgroupStorageMap, cgroup_storage_key
from ebpf.runtime import Collection
from ebpf.spec import AttachType, CollectionSpec, MapSpec, MapType

pytestmark = pytest.mark.kernel

OBJ = Path(__file__).parent.parent / "data" / "cgroupmaps" / "cgroupmaps.o"
ENGINES = ("interp", "py")
ROOT = "/sys/fs/cgroup/unified"
PKT = bytes(range(64))
EGRESS, INGRESS = AttachType.CGROUP_INET_EGRESS, AttachType.CGROUP_INET_INGRESS
SKB_CTX = bytes(192)  # struct __sk_buff, all zero


def u32(i: int) -> bytes:
    return struct.pack("<I", i)


def round_up8(n: int) -> int:
    return (n + 7) // 8 * 8


def outcome(fn: Callable[[], object]) -> object:
    """The result of ``fn``, or the errno it failed with (as ``("errno", n)``)."""
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - any failure is compared by errno
        code = errno_of(err)
        if code is None:
            code = getattr(err, "errno", None)
        assert code is not None, repr(err)
        return ("errno", code)


@dataclass
class Cgroups:
    """Two test cgroups: ``a`` and its child ``b`` (paths and ids), and open fds."""

    a: str
    b: str
    fds: dict[str, int]

    def id(self, name: str) -> int:
        return os.fstat(self.fds[name]).st_ino

    def move_to(self, path: str) -> None:
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))


@pytest.fixture
def cgroups() -> Iterator[Cgroups]:
    if not os.path.ismount(ROOT):
        pytest.skip(f"no cgroup v2 mount at {ROOT}")
    a = os.path.join(ROOT, f"ebpf-cgmaps-{os.getpid()}")
    b = os.path.join(a, "child")
    os.mkdir(a)
    os.mkdir(b)
    cg = Cgroups(a, b, {})
    try:
        for name, path in (("root", ROOT), ("a", a), ("b", b)):
            cg.fds[name] = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        yield cg
    finally:
        cg.move_to(ROOT)
        for fd in cg.fds.values():
            os.close(fd)
        os.rmdir(b)
        os.rmdir(a)


@pytest.fixture(scope="module")
def spec() -> CollectionSpec:
    return elf.load_collection_spec(OBJ)


def kernel_collection(spec: CollectionSpec):  # type: ignore[no-untyped-def]
    from ebpf.kernel.collection import Collection as KernelCollection

    return KernelCollection(spec.copy())


def runtime_collection(spec: CollectionSpec, engine: str) -> Collection:
    from ebpf.kernel.map import possible_cpus

    return Collection(spec.copy(), engine=engine, ncpus=possible_cpus())


def seen(coll: object) -> list[bytes]:
    m = coll.maps["seen"]  # type: ignore[attr-defined]
    return [m.lookup(u32(i)) for i in range(4)]


# --- temporary storage of test runs -----------------------------------------------------------------


def storage_runs(coll: object) -> list[object]:
    """Egress and ingress test runs, twice each, with repeats; what each run returned."""
    out: list[object] = []
    progs = coll.programs  # type: ignore[attr-defined]
    for name in ("count_egress", "count_ingress", "count_locked"):
        for repeat in (3, 1):
            r = progs[name].test_run(PKT, ctx_in=SKB_CTX, repeat=repeat)
            out.append((name, repeat, r.retval, r.data_out, r.ctx_out, seen(coll)))
    return out


@pytest.mark.parametrize("engine", ENGINES)
def test_test_runs_use_a_fresh_zeroed_storage(spec: CollectionSpec, engine: str) -> None:
    with kernel_collection(spec) as kcoll:
        expected = storage_runs(kcoll)
        kernel_keys = [list(kcoll.maps[n].keys()) for n in ("counter", "pcpu_counter", "shared")]
    with runtime_collection(spec, engine) as coll:
        assert storage_runs(coll) == expected
        assert (
            [list(coll.maps[n].keys()) for n in ("counter", "pcpu_counter", "shared")]
            == kernel_keys
            == [
                [],
                [],
                [],
            ]
        )
    # what the kernel measured: repeats share the storage, the next test run starts at zero
    counts = [struct.unpack("<Q", e[5][0])[0] for e in expected[:2]]  # type: ignore[index]
    assert counts == [3, 1]


# --- user space on attached storage -------------------------------------------------------------------


def storage_ops(m: object, ids: tuple[int, int]) -> list[object]:
    """get_next_key order, lookups and the errno of every update / delete / odd key.

    Per-CPU lookups of a storage never written are compared without the padding of each
    CPU's value: the kernel copies ``round_up(value_size, 8)`` bytes out of a ``value_size``
    per-CPU allocation, so those bytes are whatever lies next to it.
    """
    a, b = ids
    ops: list[object] = []
    ops.append(outcome(lambda: list(m.keys())))  # type: ignore[attr-defined]
    shared = m.key_size == 8  # type: ignore[attr-defined]
    vs = m.value_size  # type: ignore[attr-defined]
    percpu = m.type == MapType.PERCPU_CGROUP_STORAGE  # type: ignore[attr-defined]

    def unpadded(value: object) -> object:
        if not percpu or not isinstance(value, bytes):
            return value
        return [value[i : i + vs] for i in range(0, len(value), round_up8(vs))]

    def key(cg: int, at: int = EGRESS) -> bytes:
        return struct.pack("<Q", cg) if shared else cgroup_storage_key(cg, at)

    vsize = len(m.lookup(key(a)))  # type: ignore[attr-defined]
    for flags in (0, 1, 2, 4, 8):
        ops.append(outcome(lambda f=flags: m.update(key(a), bytes([f + 1]) * vsize, f)))  # type: ignore[attr-defined]
    ops.append(outcome(lambda: m.lookup(key(a))))  # type: ignore[attr-defined]
    ops.append(unpadded(outcome(lambda: m.lookup(key(b)))))  # type: ignore[attr-defined]
    ops.append(outcome(lambda: m.delete(key(a))))  # type: ignore[attr-defined]
    ops.append(outcome(lambda: m.lookup(key(a, 5))))  # type: ignore[attr-defined]
    ops.append(outcome(lambda: m.update(key(a, 5), bytes(vsize))))  # type: ignore[attr-defined]
    ops.append(outcome(lambda: m.get_next_key(key(a, 5))))  # type: ignore[attr-defined]
    ops.append(outcome(lambda: m.get_next_key(key(12345))))  # type: ignore[attr-defined]
    ops.append(outcome(lambda: m.lookup_and_delete(key(a))))  # type: ignore[attr-defined]
    if not shared:  # the padding of the key is ignored
        ops.append(outcome(lambda: m.lookup(struct.pack("<QII", a, EGRESS, 99))))  # type: ignore[attr-defined]
    return ops


def locked_ops(coll: object, cgroup_id: int) -> list[object]:
    """``BPF_F_LOCK`` updates and lookups of a storage whose value holds a ``bpf_spin_lock``,
    and a locked test run (its own temporary storage)."""
    m = coll.maps["locked"]  # type: ignore[attr-defined]
    key = cgroup_storage_key(cgroup_id, INGRESS)
    lookup = getattr(m, "lookup_flags", m.lookup)
    ops = [
        outcome(lambda: m.update(key, struct.pack("<II", 0xFFFF, 41), 4)),
        outcome(lambda: lookup(key, 4)),
        outcome(lambda: m.update(key, struct.pack("<II", 0xFFFF, 42), 4 | 2)),
        outcome(lambda: m.lookup(key)),
        outcome(lambda: m.update(key, struct.pack("<II", 0, 43), 4 | 1)),
    ]
    r = coll.programs["count_locked"].test_run(PKT, repeat=2)  # type: ignore[attr-defined]
    return [*ops, r.retval, seen(coll)[3]]


def test_user_space_on_attached_storage(spec: CollectionSpec, cgroups: Cgroups) -> None:
    from ebpf.attach.cgroup import cgroup as attach_cgroup

    ids = (cgroups.id("a"), cgroups.id("b"))
    with kernel_collection(spec) as kcoll, ExitStack() as links:
        for path in (cgroups.a, cgroups.b):
            links.enter_context(attach_cgroup(kcoll.programs["count_egress"], path, EGRESS))
            links.enter_context(attach_cgroup(kcoll.programs["count_ingress"], path, INGRESS))
        links.enter_context(attach_cgroup(kcoll.programs["count_locked"], cgroups.a, INGRESS))
        kernel_locked = locked_ops(kcoll, ids[0])
        expected = {n: storage_ops(kcoll.maps[n], ids) for n in ("counter", "pcpu_counter", "shared")}
        kernel_run = kcoll.programs["count_egress"].test_run(PKT, ctx_in=SKB_CTX)
        kernel_after = [
            kcoll.maps[n].lookup(cgroup_storage_key(ids[0], EGRESS)) for n in ("counter", "pcpu_counter")
        ]
    with runtime_collection(spec, "py") as coll:
        for cg in ids:  # what the kernel's attach does to every map the program uses
            for name, at in (("counter", EGRESS), ("pcpu_counter", EGRESS), ("shared", INGRESS)):
                m = coll.maps[name]
                assert isinstance(m, CgroupStorageMap)
                m.attach(cg, at)
        got = {n: storage_ops(coll.maps[n], ids) for n in ("counter", "pcpu_counter", "shared")}
        locked = coll.maps["locked"]
        assert isinstance(locked, CgroupStorageMap)
        locked.attach(ids[0], INGRESS)
        assert locked_ops(coll, ids[0]) == kernel_locked
        run = coll.programs["count_egress"].test_run(PKT, ctx_in=SKB_CTX)
        after = [coll.maps[n].lookup(cgroup_storage_key(ids[0], EGRESS)) for n in ("counter", "pcpu_counter")]
    assert got == expected
    assert (run.retval, run.ctx_out) == (kernel_run.retval, kernel_run.ctx_out)
    assert after == kernel_after  # a test run does not touch attached storage


# --- creation --------------------------------------------------------------------------------------

CREATE_CASES = [
    (MapType.CGROUP_STORAGE, 16, 8, 0, 0),
    (MapType.CGROUP_STORAGE, 8, 8, 0, 0),
    (MapType.CGROUP_STORAGE, 12, 8, 0, 0),
    (MapType.CGROUP_STORAGE, 4, 8, 0, 0),
    (MapType.CGROUP_STORAGE, 16, 0, 0, 0),
    (MapType.CGROUP_STORAGE, 16, 8, 1, 0),
    (MapType.CGROUP_STORAGE, 16, 65407, 0, 0),
    (MapType.CGROUP_STORAGE, 16, 65408, 0, 0),
    (MapType.CGROUP_STORAGE, 16, 8, 0, 1),  # BPF_F_NO_PREALLOC
    (MapType.CGROUP_STORAGE, 16, 8, 0, 1 << 3),  # BPF_F_RDONLY
    (MapType.CGROUP_STORAGE, 16, 8, 0, 1 << 7),  # BPF_F_RDONLY_PROG
    (MapType.CGROUP_STORAGE, 16, 8, 0, (1 << 7) | (1 << 8)),
    (MapType.CGROUP_STORAGE, 16, 8, 0, 1 << 10),  # BPF_F_MMAPABLE
    (MapType.PERCPU_CGROUP_STORAGE, 16, 4, 0, 0),
    (MapType.PERCPU_CGROUP_STORAGE, 8, 32768, 0, 0),
    (MapType.PERCPU_CGROUP_STORAGE, 8, 32769, 0, 0),
    (MapType.PERCPU_CGROUP_STORAGE, 16, 8, 4, 0),
    (MapType.CGROUP_ARRAY, 4, 4, 4, 0),
    (MapType.CGROUP_ARRAY, 4, 4, 0, 0),
    (MapType.CGROUP_ARRAY, 4, 8, 4, 0),
    (MapType.CGROUP_ARRAY, 8, 4, 4, 0),
    (MapType.CGROUP_ARRAY, 4, 4, 4, 1 << 7),
    (MapType.CGROUP_ARRAY, 4, 4, 4, 1 << 10),
    (MapType.CGROUP_ARRAY, 4, 4, 4, 1 << 3),
]


@pytest.mark.parametrize("case", CREATE_CASES, ids=lambda c: f"{c[0].name}-{c[1]}-{c[2]}-{c[3]}-{c[4]:#x}")
def test_creation_errno_matches_the_kernel(case: tuple[MapType, int, int, int, int]) -> None:
    from ebpf.kernel.map import Map as KernelMap

    mtype, key_size, value_size, max_entries, flags = case

    def kernel() -> object:
        with KernelMap.create(MapSpec("cg", mtype, key_size, value_size, max_entries, flags)):
            return "ok"

    def runtime() -> object:
        with create(MapDef(mtype, key_size, value_size, max_entries, flags, name="cg")):
            return "ok"

    assert outcome(runtime) == outcome(kernel)


# --- cgroup arrays -----------------------------------------------------------------------------------


def array_ops(m: object, cg: Cgroups, v1_fd: int, tmp_fd: int) -> list[object]:
    upd = m.update  # type: ignore[attr-defined]
    fds = cg.fds
    return [
        outcome(lambda: upd(u32(0), u32(fds["root"]))),
        outcome(lambda: upd(u32(1), u32(fds["a"]))),
        outcome(lambda: upd(u32(2), u32(fds["b"]))),
        outcome(lambda: m.lookup(u32(0))),  # type: ignore[attr-defined]
        outcome(lambda: upd(u32(3), u32(fds["a"]), 1)),
        outcome(lambda: upd(u32(3), u32(fds["a"]), 2)),
        outcome(lambda: upd(u32(4), u32(fds["a"]))),
        outcome(lambda: upd(u32(3), u32(99999))),
        outcome(lambda: upd(u32(3), u32(v1_fd))),
        outcome(lambda: upd(u32(3), u32(tmp_fd))),
        outcome(lambda: m.delete(u32(3))),  # type: ignore[attr-defined]
        outcome(lambda: m.delete(u32(4))),  # type: ignore[attr-defined]
        outcome(lambda: m.get_next_key(None)),  # type: ignore[attr-defined]
        outcome(lambda: m.get_next_key(u32(2))),  # type: ignore[attr-defined]
        outcome(lambda: m.get_next_key(u32(3))),  # type: ignore[attr-defined]
        outcome(lambda: m.get_next_key(u32(7))),  # type: ignore[attr-defined]
    ]


def under(coll: object) -> list[int]:
    m = coll.maps["under"]  # type: ignore[attr-defined]
    return [struct.unpack("<q", m.lookup(u32(i)))[0] for i in range(5)]


def under_runs(coll: object) -> list[list[int]]:
    progs = coll.programs  # type: ignore[attr-defined]
    progs["task_under"].test_run(ctx_in=bytes(8))
    task = under(coll)
    progs["skb_under"].test_run(PKT)
    return [task, under(coll)]


def fill_array(coll: object, cg: Cgroups) -> None:
    m = coll.maps["cgroups"]  # type: ignore[attr-defined]
    for i, name in enumerate(("root", "a", "b")):
        m.update(u32(i), u32(cg.fds[name]))


def test_cgroup_array_user_space(spec: CollectionSpec, cgroups: Cgroups) -> None:
    v1 = next((p for p in ("/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory") if os.path.ismount(p)), "/proc")
    v1_fd = os.open(v1, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    tmp_fd = os.open("/tmp", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with kernel_collection(spec) as kcoll:
            expected = array_ops(kcoll.maps["cgroups"], cgroups, v1_fd, tmp_fd)
        with runtime_collection(spec, "py") as coll:
            assert array_ops(coll.maps["cgroups"], cgroups, v1_fd, tmp_fd) == expected
    finally:
        os.close(v1_fd)
        os.close(tmp_fd)
    assert ("errno", errno.EBADF) in expected and ("errno", errno.E2BIG) in expected


@pytest.mark.parametrize("engine", ENGINES)
def test_under_cgroup_helpers(spec: CollectionSpec, cgroups: Cgroups, engine: str) -> None:
    results = []
    for where in (ROOT, cgroups.a, cgroups.b):
        cgroups.move_to(where)
        with kernel_collection(spec) as kcoll:
            fill_array(kcoll, cgroups)
            expected = under_runs(kcoll)
        with runtime_collection(spec, engine) as coll:  # a new RunEnv: reads this thread's cgroup
            fill_array(coll, cgroups)
            assert under_runs(coll) == expected, where
        results.append(expected[0])
    cgroups.move_to(ROOT)
    eagain, e2big = -errno.EAGAIN, -errno.E2BIG
    assert results == [[1, 0, 0, eagain, e2big], [1, 1, 0, eagain, e2big], [1, 1, 1, eagain, e2big]]


@pytest.mark.parametrize(
    "case",
    [
        (MapType.CGROUP_STORAGE, 16, 8, 0),
        (MapType.PERCPU_CGROUP_STORAGE, 8, 8, 0),
        (MapType.CGROUP_ARRAY, 4, 4, 4),
    ],
    ids=lambda c: c[0].name,
)
def test_batches_and_empty_maps_match_the_kernel(case: tuple[MapType, int, int, int]) -> None:
    """No batch operations (``ENOTSUPP``), ``BPF_F_LOCK`` without a lock, an empty map's first key."""
    from ebpf.kernel.map import Map as KernelMap

    mtype, ks, vs, entries = case
    ops: list[Callable[[object], object]] = [
        lambda m: m.lookup_batch(4),  # type: ignore[attr-defined]
        lambda m: m.update_batch([(bytes(ks), bytes(vs))]),  # type: ignore[attr-defined]
        lambda m: m.delete_batch([bytes(ks)]),  # type: ignore[attr-defined]
        lambda m: m.get_next_key(None),  # type: ignore[attr-defined]
    ]
    with (
        KernelMap.create(MapSpec("cg", mtype, ks, vs, entries)) as k,
        create(MapDef(mtype, ks, vs, entries, name="cg")) as r,
    ):
        expected = [outcome(lambda op=op: op(k)) for op in ops] + [outcome(lambda: k.lookup(bytes(ks), 4))]
        got = [outcome(lambda op=op: op(r)) for op in ops] + [outcome(lambda: r.lookup_flags(bytes(ks), 4))]
    assert got == expected
