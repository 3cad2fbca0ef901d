"""Local-storage maps (TASK/SK/INODE/CGRP_STORAGE): creation rules, owners, fd keys, and the kernel."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
import struct
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebpf import btf
from ebpf.btf.types import IntEncoding
from ebpf.errors import BPFError, KeyNotFoundError
from ebpf.maps import MapDef, MapFlags, create, errno_of
from ebpf.maps.storage import (
    MAX_VALUE_SIZE,
    CgrpStorageMap,
    LocalStorageMap,
    Owner,
    OwnerKind,
    SkStorageMap,
    TaskStorageMap,
    owners,
    resolve_fd,
)
from ebpf.spec import MapType
from ebpf.vm.memory import Memory

STORAGE_TYPES = [MapType.TASK_STORAGE, MapType.SK_STORAGE, MapType.INODE_STORAGE, MapType.CGRP_STORAGE]
NP = MapFlags.NO_PREALLOC

# [1] int, [2] long, [3] unsigned int, [4] char, [5] struct with a bpf_spin_lock, [6] bpf_spin_lock
BTF = btf.Spec.build(
    [
        btf.Int("int", 4, IntEncoding.SIGNED, bits=32),
        btf.Int("long", 8, IntEncoding.SIGNED, bits=64),
        btf.Int("unsigned int", 4, bits=32),
        btf.Int("char", 1, bits=8),
        btf.Struct("val", 16, (btf.Member("lock", 6, 0), btf.Member("n", 2, 64))),
        btf.Struct("bpf_spin_lock", 4, (btf.Member("val", 3, 0),)),
    ]
)


def sdef(
    t: MapType = MapType.TASK_STORAGE,
    *,
    key_size: int = 4,
    value_size: int = 8,
    max_entries: int = 0,
    flags: int = NP,
    key_type_id: int = 1,
    value_type_id: int = 2,
) -> MapDef:
    return MapDef(t, key_size, value_size, max_entries, flags, "st", btf=BTF, key_type_id=key_type_id,
                  value_type_id=value_type_id)  # fmt: skip


def fdkey(fd: int) -> bytes:
    return struct.pack("<i", fd)


CREATE_CASES: list[tuple[str, dict[str, int]]] = [
    ("ok", {}),
    ("clone", {"flags": NP | MapFlags.CLONE}),
    ("no NO_PREALLOC", {"flags": 0}),
    ("rdonly", {"flags": NP | MapFlags.RDONLY}),
    ("rdonly_prog", {"flags": NP | MapFlags.RDONLY_PROG}),
    ("numa", {"flags": NP | MapFlags.NUMA_NODE}),
    ("max_entries 1", {"max_entries": 1}),
    ("key_size 8", {"key_size": 8, "key_type_id": 2}),
    ("key type long", {"key_type_id": 2}),
    ("key type unsigned", {"key_type_id": 3}),
    ("no value type", {"value_type_id": 0}),
    ("no key type", {"key_type_id": 0}),
    ("value_size 0", {"value_size": 0}),
]


def _create_errno(defn: MapDef) -> int | None:
    try:
        create(defn).close()
    except BPFError as err:
        code = errno_of(err)
        assert code is not None, err
        return code
    return None


@pytest.mark.parametrize("map_type", STORAGE_TYPES)
def test_creation_rules(map_type: MapType) -> None:
    expected = {
        "ok": None,
        "clone": None,
        "key type unsigned": None,
    }
    for name, kw in CREATE_CASES:
        if name == "key type long":
            continue  # a BTF size mismatch: both refuse with EINVAL, checked in the kernel test
        assert _create_errno(sdef(map_type, **kw)) == expected.get(name, errno.EINVAL), name


def test_value_size_limit() -> None:
    big = btf.Spec.build([btf.Int("int", 4, IntEncoding.SIGNED, bits=32), btf.Int("char", 1, bits=8),
                          btf.Array(2, 1, MAX_VALUE_SIZE + 1), btf.Array(2, 1, MAX_VALUE_SIZE)])  # fmt: skip
    ok = MapDef(MapType.TASK_STORAGE, 4, MAX_VALUE_SIZE, 0, NP, btf=big, key_type_id=1, value_type_id=4)
    create(ok).close()
    over = MapDef(MapType.TASK_STORAGE, 4, MAX_VALUE_SIZE + 1, 0, NP, btf=big, key_type_id=1, value_type_id=3)
    assert _create_errno(over) == errno.E2BIG


def test_owner_operations_and_errors() -> None:
    with create(sdef()) as m:
        assert isinstance(m, TaskStorageMap)
        me = Owner.task(1234)
        with pytest.raises(KeyNotFoundError):
            m.lookup_owner(me)
        with pytest.raises(KeyNotFoundError):
            m.update_owner(me, bytes(8), 2)  # BPF_EXIST
        m.update_owner(me, b"\1" * 8)
        assert errno_of(_raises(lambda: m.update_owner(me, b"\2" * 8, 1))) == errno.EEXIST
        assert m.lookup_owner(me) == b"\1" * 8
        assert errno_of(_raises(lambda: m.update_owner(me, bytes(8), 3))) == errno.EINVAL
        assert errno_of(_raises(lambda: m.update_owner(me, bytes(7)))) == errno.EINVAL
        assert errno_of(_raises(lambda: m.update_owner(Owner.inode(1, 2), bytes(8)))) == errno.EINVAL
        assert m.owners_with_storage() == [me] and len(m) == 1
        m.delete_owner(me)
        with pytest.raises(KeyNotFoundError):
            m.delete_owner(me)
        assert errno_of(_raises(lambda: m.get_next_key(None))) == 524
        assert errno_of(_raises(lambda: list(m))) == 524
        assert errno_of(_raises(lambda: m.lookup_and_delete(fdkey(0)))) == 524


def _raises(fn: Callable[[], object]) -> BaseException:
    try:
        fn()
    except BPFError as err:
        return err
    raise AssertionError("no error")


def test_storage_get_create_init_and_stable_address() -> None:
    mem = Memory()
    with create(sdef(), mem) as m, create(sdef(), mem) as other:
        assert isinstance(m, LocalStorageMap) and isinstance(other, LocalStorageMap)
        owner = Owner.task(7)
        assert m.storage_get(owner) is None
        a = m.storage_get(owner, struct.pack("<q", 5), create=True)
        assert a is not None and mem.load(a, 8) == 5
        assert m.storage_get(owner, struct.pack("<q", 9), create=True) == a  # exists: init ignored
        mem.store(a, 8, 42)
        assert m.lookup_owner(owner) == struct.pack("<q", 42)
        b = other.storage_get(owner, None, create=True)
        assert b is not None and b != a and mem.load(b, 8) == 0
        # the owner dies: its storage goes from every map of the memory
        assert owners(mem).release(owner) == 2
        assert m.storage_get(owner) is None and other.storage_get(owner) is None
        assert mem.find(a) is None  # the value region is unmapped


def test_owner_table_bind_and_objects() -> None:
    mem = Memory()
    table = owners(mem)
    assert owners(mem) is table
    task = Owner.task(99)
    addr = table.new_object(task, 128)
    assert table.owner_at(addr) == task and mem.find(addr, 128) is not None
    table.bind(0x1000, task)
    assert sorted(table.addresses_of(task)) == sorted([addr, 0x1000])
    with pytest.raises(ValueError):
        table.bind(0, task)
    table.release(task)
    assert table.owner_at(addr) is None and mem.find(addr) is None


def test_spin_lock_value() -> None:
    m = create(sdef(value_size=16, value_type_id=5))
    assert m.lock_offset == 0
    m.update_owner(Owner.task(1), b"\xff" * 16)  # type: ignore[attr-defined]
    assert m.lookup_owner(Owner.task(1)) == bytes(4) + b"\xff" * 12  # type: ignore[attr-defined]
    address = m.storage_get(Owner.task(1))  # type: ignore[attr-defined]
    m.spin_lock(address)
    m.spin_unlock(address)
    m.close()


# --- file descriptors ------------------------------------------------------------------------------


def _cgroup_dir() -> str | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[fields.index("-") + 1] in ("cgroup", "cgroup2"):
                return fields[4]
    return None


@contextlib.contextmanager
def owner_fds() -> Iterator[dict[str, int]]:
    """Descriptors of each kind: a pidfd of this process, a file, sockets, a cgroup dir."""
    with contextlib.ExitStack() as stack:
        fds: dict[str, int] = {}

        def keep(name: str, fd: int) -> None:
            fds[name] = fd
            stack.callback(os.close, fd)

        if hasattr(os, "pidfd_open"):
            keep("pidfd", os.pidfd_open(os.getpid()))
        keep("file", os.open(__file__, os.O_RDONLY))
        tcp = stack.enter_context(socket.socket())
        udp = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        fds["tcp"], fds["udp"] = tcp.fileno(), udp.fileno()
        cg = _cgroup_dir()
        if cg is not None:
            keep("cgroup", os.open(cg, os.O_RDONLY | os.O_DIRECTORY))
        fds["closed"] = 1023
        fds["negative"] = -1
        yield fds


def test_resolve_fd() -> None:
    with owner_fds() as fds:
        if "pidfd" in fds:
            assert resolve_fd(OwnerKind.TASK, fds["pidfd"]) == Owner.task(os.getpid())
        st = os.fstat(fds["tcp"])
        assert resolve_fd(OwnerKind.SOCK, fds["tcp"]) == Owner.socket(st.st_dev, st.st_ino)
        st = os.fstat(fds["file"])
        assert resolve_fd(OwnerKind.INODE, fds["file"]) == Owner.inode(st.st_dev, st.st_ino)
        for kind, name, code in [
            (OwnerKind.TASK, "file", errno.EBADF),
            (OwnerKind.TASK, "closed", errno.EBADF),
            (OwnerKind.SOCK, "file", errno.ENOTSOCK),
            (OwnerKind.SOCK, "negative", errno.EBADF),
            (OwnerKind.CGROUP, "file", errno.EBADF),
            (OwnerKind.INODE, "closed", errno.EBADF),
        ]:
            with pytest.raises(BPFError) as info:
                resolve_fd(kind, fds[name])
            assert errno_of(info.value) == code, (kind, name)


def test_exited_task_pidfd() -> None:
    if not hasattr(os, "pidfd_open"):
        pytest.skip("os.pidfd_open needs Linux >= 5.3 and Python >= 3.9")
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    fd = os.pidfd_open(pid)
    try:
        os.waitpid(pid, 0)
        assert errno_of(_raises(lambda: resolve_fd(OwnerKind.TASK, fd))) == errno.ENOENT
    finally:
        os.close(fd)


def test_fd_keys_and_custom_resolver() -> None:
    mem = Memory()
    owners(mem).resolver = lambda kind, fd: Owner(kind, (fd * 10,))
    with create(sdef(MapType.SK_STORAGE), mem) as m:
        assert isinstance(m, SkStorageMap)
        m.update(fdkey(3), b"\5" * 8)
        assert m.lookup_owner(Owner(OwnerKind.SOCK, (30,))) == b"\5" * 8
        assert m.lookup(fdkey(3)) == b"\5" * 8
        assert m.value_address(fdkey(3)) == m.storage_get(Owner(OwnerKind.SOCK, (30,)))
        m.delete(fdkey(3))
        assert fdkey(3) not in m


# --- the kernel ------------------------------------------------------------------------------------


def _kernel_ops(map_type: MapType, fds: dict[str, int]) -> list[tuple[str, str, bytes, int]]:
    """(op, fd name, value, flags) sequences: every kind of fd, every update flag."""
    ops: list[tuple[str, str, bytes, int]] = []
    for name in fds:
        ops += [
            ("lookup", name, b"", 0),
            ("update", name, b"\1" * 8, 2),
            ("update", name, b"\1" * 8, 0),
            ("update", name, b"\2" * 8, 1),
            ("update", name, b"\3" * 8, 2),
            ("lookup", name, b"", 0),
            ("update", name, b"\1" * 8, 3),
            ("update", name, b"\1" * 8, 4),
            ("lookup", name, b"", 4),
            ("delete", name, b"", 0),
            ("delete", name, b"", 0),
        ]
    return ops


class _Kernel:
    def __init__(self, map_type: MapType) -> None:
        from ebpf.kernel.btf import KernelBTF
        from ebpf.kernel.map import Map as KernelMap
        from ebpf.spec import MapSpec

        self.btf = KernelBTF.load(BTF)
        spec = MapSpec("st", map_type, 4, 8, 0, NP, key_type_id=1, value_type_id=2, btf=BTF)
        self.map = KernelMap.create(spec, btf=self.btf)

    def run(self, op: str, fd: int, value: bytes, flags: int) -> tuple[str, object]:
        from ebpf.errors import SyscallError
        from ebpf.kernel._syscall import bpf
        from ebpf.kernel.uapi import Cmd, MapElemAttr

        key = ctypes.create_string_buffer(fdkey(fd), 4)
        buf = ctypes.create_string_buffer(value, 8) if value else ctypes.create_string_buffer(8)
        attr = MapElemAttr(map_fd=self.map.fd, flags=flags)
        attr.key = ctypes.addressof(key)
        cmd = {"lookup": Cmd.MAP_LOOKUP_ELEM, "update": Cmd.MAP_UPDATE_ELEM, "delete": Cmd.MAP_DELETE_ELEM}[
            op
        ]
        if op != "delete":
            attr.value = ctypes.addressof(buf)
        try:
            bpf(cmd, attr)
        except SyscallError as err:
            return ("err", err.errno)
        return ("ok", buf.raw if op == "lookup" else None)

    def close(self) -> None:
        self.map.close()
        self.btf.close()


def _ours(m: LocalStorageMap, op: str, fd: int, value: bytes, flags: int) -> tuple[str, object]:
    try:
        if op == "lookup":
            return ("ok", m.lookup_flags(fdkey(fd), flags))
        if op == "update":
            m.update(fdkey(fd), value, flags)
        else:
            m.delete(fdkey(fd))
    except BPFError as err:
        code = errno_of(err)
        assert code is not None, err
        return ("err", code)
    return ("ok", None)


@pytest.mark.kernel
@pytest.mark.parametrize("map_type", STORAGE_TYPES)
def test_fd_operations_match_the_kernel(map_type: MapType) -> None:
    """Every kind of descriptor, every update flag: the same values and errnos as bpf()."""
    kernel = _Kernel(map_type)
    ours = create(sdef(map_type))
    assert isinstance(ours, LocalStorageMap)
    try:
        with owner_fds() as fds:
            for op, name, value, flags in _kernel_ops(map_type, fds):
                got = _ours(ours, op, fds[name], value, flags)
                want = kernel.run(op, fds[name], value, flags)
                assert got == want, (map_type.name, op, name, flags)
    finally:
        kernel.close()
        ours.close()


@pytest.mark.kernel
@pytest.mark.parametrize("map_type", STORAGE_TYPES)
def test_creation_matches_the_kernel(map_type: MapType) -> None:
    from ebpf.errors import SyscallError
    from ebpf.kernel._syscall import bpf
    from ebpf.kernel.btf import KernelBTF
    from ebpf.kernel.uapi import Cmd, MapCreateAttr

    with KernelBTF.load(BTF) as kbtf:
        for name, kw in CREATE_CASES:
            defn = sdef(map_type, **kw)
            attr = MapCreateAttr(
                map_type=map_type, key_size=defn.key_size, value_size=defn.value_size,
                max_entries=defn.max_entries, map_flags=defn.flags, btf_fd=kbtf.fd,
                btf_key_type_id=defn.key_type_id, btf_value_type_id=defn.value_type_id,
            )  # fmt: skip
            try:
                os.close(bpf(Cmd.MAP_CREATE, attr))
                want = None
            except SyscallError as err:
                want = err.errno
            assert _create_errno(defn) == want, name


def test_cgroup_fd_when_available() -> None:
    with owner_fds() as fds:
        if "cgroup" not in fds:
            pytest.skip("no cgroup mount visible in /proc/self/mountinfo")
        with create(sdef(MapType.CGRP_STORAGE)) as m:
            assert isinstance(m, CgrpStorageMap)
            m.update(fdkey(fds["cgroup"]), b"\7" * 8)
            st = os.fstat(fds["cgroup"])
            assert m.lookup_owner(Owner.cgroup(st.st_dev, st.st_ino)) == b"\7" * 8


@pytest.mark.kernel
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    map_type=st.sampled_from(STORAGE_TYPES),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["lookup", "update", "delete"]),
            st.sampled_from(["pidfd", "file", "tcp", "udp", "cgroup", "closed"]),
            st.binary(min_size=8, max_size=8),
            st.sampled_from([0, 1, 2, 3, 4]),
        ),
        max_size=25,
    ),
)
def test_random_operations_match_the_kernel(
    map_type: MapType, ops: list[tuple[str, str, bytes, int]]
) -> None:
    """Random lookup/update/delete sequences by fd: the same results as bpf() step by step."""
    kernel = _Kernel(map_type)
    ours = create(sdef(map_type))
    assert isinstance(ours, LocalStorageMap)
    try:
        with owner_fds() as fds:
            for op, name, value, flags in ops:
                if name not in fds:
                    continue
                flags = flags if op != "delete" else 0
                got = _ours(ours, op, fds[name], value, flags)
                want = kernel.run(op, fds[name], value, flags)
                assert got == want, (map_type.name, op, name, flags)
    finally:
        kernel.close()
        ours.close()
