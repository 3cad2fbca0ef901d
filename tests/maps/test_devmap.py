"""DEVMAP, DEVMAP_HASH, CPUMAP, XSKMAP: creation rules, element rules, program lookups, redirects.

Pure: devices are simulated with ``DevMap.device_exists``; the same rules are checked against
the kernel in ``tests/differential/test_devmap_kernel.py``.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

import pytest

from ebpf.errors import KeyNotFoundError, NotSupportedError, VMError
from ebpf.helpers import HelperId
from ebpf.maps import (
    CpuMap,
    DevMap,
    DevMapHash,
    InvalidMapArgumentError,
    Map,
    MapDef,
    MapError,
    MapFlags,
    MapOperationNotSupportedError,
    RedirectMapNotSupportedError,
    XskMap,
    create,
    errno_of,
)
from ebpf.maps.devmap import AF_XDP, CPUMAP_QSIZE_MAX, host_device_exists, nr_cpus_limit
from ebpf.spec import MapSpec, MapType, ProgramType
from ebpf.vm.helpers import RunEnv

ENGINES = ("interp", "py")
DEVICES = {1, 2, 5}


def k(i: int) -> bytes:
    return struct.pack("<I", i)


def val(first: int, fd: int | None = None) -> bytes:
    return struct.pack("<I", first) + (b"" if fd is None else struct.pack("<i", fd))


def make(t: MapType, value_size: int = 4, max_entries: int = 4, flags: int = 0, **kw: object) -> Map:
    m = create(MapDef(t, 4, value_size, max_entries, flags), **kw)  # type: ignore[arg-type]
    if isinstance(m, (DevMap, DevMapHash)):
        m.device_exists = DEVICES.__contains__
    return m


def err(f: object) -> int | None:
    try:
        f()  # type: ignore[operator]
    except (MapError, KeyNotFoundError) as e:
        return errno_of(e)
    return 0


# ---------------------------------------------------------------- creation


@pytest.mark.parametrize(
    ("t", "cls"),
    [
        (MapType.DEVMAP, DevMap),
        (MapType.DEVMAP_HASH, DevMapHash),
        (MapType.CPUMAP, CpuMap),
        (MapType.XSKMAP, XskMap),
    ],
)
def test_create_classes(t: MapType, cls: type[Map]) -> None:
    with create(MapDef(t, 4, 4, 2)) as m:
        assert type(m) is cls


@pytest.mark.parametrize("t", [MapType.DEVMAP, MapType.DEVMAP_HASH, MapType.CPUMAP, MapType.XSKMAP])
@pytest.mark.parametrize(
    ("ks", "vs", "me", "fl"),
    [
        (8, 4, 4, 0),
        (4, 0, 4, 0),
        (4, 5, 4, 0),
        (4, 12, 4, 0),
        (4, 4, 0, 0),
        (4, 4, 4, 0x80),
        (4, 4, 4, 0x100),
        (4, 4, 4, 1),
        (4, 4, 4, 2),
    ],
)
def test_create_refused(t: MapType, ks: int, vs: int, me: int, fl: int) -> None:
    with pytest.raises(InvalidMapArgumentError) as e:
        create(MapDef(t, ks, vs, me, fl))
    assert e.value.errno == errno.EINVAL


def test_create_value_sizes_and_flags() -> None:
    for t in (MapType.DEVMAP, MapType.DEVMAP_HASH):
        for vs in (4, 8):
            for fl in (0, MapFlags.NUMA_NODE, MapFlags.RDONLY, MapFlags.WRONLY):
                with create(MapDef(t, 4, vs, 4, fl)) as m:
                    assert m.flags == fl | MapFlags.RDONLY_PROG  # the kernel adds it
    with create(MapDef(MapType.CPUMAP, 4, 8, 2, MapFlags.NUMA_NODE)) as m:
        assert m.flags == MapFlags.NUMA_NODE
    for fl in (MapFlags.RDONLY, MapFlags.WRONLY):
        with pytest.raises(InvalidMapArgumentError):
            create(MapDef(MapType.CPUMAP, 4, 4, 2, fl))
    with pytest.raises(InvalidMapArgumentError):
        create(MapDef(MapType.XSKMAP, 4, 8, 2))


def test_create_limits() -> None:
    limit = nr_cpus_limit()
    create(MapDef(MapType.CPUMAP, 4, 4, limit)).close()
    with pytest.raises(InvalidMapArgumentError) as e:
        create(MapDef(MapType.CPUMAP, 4, 4, limit + 1))
    assert e.value.errno == errno.E2BIG
    create(MapDef(MapType.DEVMAP_HASH, 4, 4, 1 << 31)).close()  # no memory is allocated up front
    with pytest.raises(InvalidMapArgumentError):
        create(MapDef(MapType.DEVMAP_HASH, 4, 4, (1 << 31) + 1))
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for t in (MapType.DEVMAP, MapType.XSKMAP):  # 32 GiB of pointers: ENOMEM unless the host has it
        if 0xFFFFFFFF * 8 // 4096 > ram // 4096:
            with pytest.raises(MapError) as e2:
                create(MapDef(t, 4, 4, 0xFFFFFFFF))
            assert e2.value.errno == errno.ENOMEM
        else:
            create(MapDef(t, 4, 4, 0xFFFFFFFF)).close()  # no memory is allocated up front


# ---------------------------------------------------------------- DEVMAP


@pytest.mark.parametrize("vs", [4, 8])
def test_devmap_elements(vs: int) -> None:
    fd = None if vs == 4 else 0
    with make(MapType.DEVMAP, vs) as m:
        assert err(lambda: m.lookup(k(0))) == errno.ENOENT
        m.update(k(0), val(1, fd))
        assert m.lookup(k(0)) == val(1, fd)  # the program id reads as 0
        assert err(lambda: m.update(k(1), val(99, fd))) == errno.EINVAL  # no such device
        assert err(lambda: m.update(k(4), val(1, fd))) == errno.E2BIG
        assert err(lambda: m.update(k(4), val(1, fd), 3)) == errno.EINVAL  # flags first
        assert err(lambda: m.update(k(4), val(1, fd), 4)) == errno.EINVAL  # BPF_F_LOCK
        assert err(lambda: m.update(k(2), val(99, fd), 1)) == errno.EEXIST  # before the device
        m.update(k(3), val(2, fd), 2)  # BPF_EXIST on an empty slot is fine
        assert list(m) == [k(0), k(1), k(2), k(3)] and len(m) == 4
        assert m.items() == [(k(0), val(1, fd)), (k(3), val(2, fd))]
        assert k(3) in m and k(1) not in m
        m.update(k(3), val(0, fd))  # ifindex 0 empties the slot
        assert err(lambda: m.lookup(k(3))) == errno.ENOENT
        m.delete(k(0))
        m.delete(k(0))  # an empty slot deletes fine
        assert err(lambda: m.delete(k(4))) == errno.EINVAL
        assert m.get_next_key(k(9)) == k(0)
        assert err(lambda: m.get_next_key(k(3))) == errno.ENOENT
        assert err(lambda: m.lookup_flags(k(0), 1)) == errno.EINVAL
        assert err(lambda: m.lookup_batch(4)) == 524  # ENOTSUPP: no batch operations
        assert err(lambda: m.lookup_and_delete(k(0))) == 524


def test_devmap_program_fds() -> None:
    with make(MapType.DEVMAP, 8) as m:
        m.update(k(0), val(1, -1))  # fd <= 0: no program
        assert m.lookup(k(0)) == val(1, 0)
        with pytest.raises(RedirectMapNotSupportedError) as e:
            m.update(k(0), val(1, 3))
        assert isinstance(e.value, NotSupportedError) and e.value.errno == errno.EINVAL
        assert "program fd" in str(e.value)
        assert err(lambda: m.update(k(0), val(0, 3))) == errno.EINVAL  # fd without ifindex
        m.update(k(0), val(0, -5))
        assert err(lambda: m.lookup(k(0))) == errno.ENOENT


def test_devmap_hash_elements() -> None:
    with make(MapType.DEVMAP_HASH, 8, max_entries=4) as m:
        assert isinstance(m, DevMapHash) and m.n_buckets == 4
        assert err(lambda: m.update(k(0), val(0, 0))) == errno.EINVAL  # ifindex 0
        for key in (0, 1, 2, 9):
            m.update(k(key), val(1, 0))
        assert list(m) == [k(0), k(9), k(1), k(2)]  # bucket order, newest first in a bucket
        m.update(k(1), val(2, 0))  # a replaced element moves to the head of its bucket
        assert list(m) == [k(0), k(1), k(9), k(2)] and len(m) == 4
        assert m.lookup(k(1)) == val(2, 0)
        assert err(lambda: m.update(k(1), val(1, 0), 1)) == errno.EEXIST
        assert err(lambda: m.update(k(7), val(1, 0), 2)) == errno.E2BIG  # BPF_EXIST inserts: full
        assert err(lambda: m.update(k(7), val(99, 0))) == errno.EINVAL  # device before full
        assert m.get_next_key(k(5)) == k(0)  # a missing key: the first
        assert err(lambda: m.get_next_key(k(2))) == errno.ENOENT
        m.delete(k(9))
        assert err(lambda: m.delete(k(9))) == errno.ENOENT
        assert list(m) == [k(0), k(1), k(2)]
        m.update(k(0xFFFFFFFF), val(5, 0), 2)  # BPF_EXIST on a missing key inserts
        assert m.lookup(k(0xFFFFFFFF)) == val(5, 0)


def test_devmap_host_devices() -> None:
    assert host_device_exists(1)  # loopback
    assert not host_device_exists(0) and not host_device_exists(0xFFFFFFF0)
    with create(MapDef(MapType.DEVMAP, 4, 4, 2)) as m:
        m.update(k(0), val(1))
        with pytest.raises(InvalidMapArgumentError, match="ifindex 4294967280"):
            m.update(k(1), val(0xFFFFFFF0))


# ---------------------------------------------------------------- CPUMAP


@pytest.mark.parametrize("vs", [4, 8])
def test_cpumap_elements(vs: int) -> None:
    fd = None if vs == 4 else -1
    with make(MapType.CPUMAP, vs, max_entries=4, ncpus=2) as m:
        m.update(k(0), val(192, fd))
        assert m.lookup(k(0)) == val(192, None if vs == 4 else 0)
        assert err(lambda: m.update(k(2), val(192, fd))) == errno.ENODEV  # CPU 2 is not possible
        assert err(lambda: m.update(k(3), val(0, fd))) == errno.ENODEV
        assert err(lambda: m.update(k(2), val(CPUMAP_QSIZE_MAX + 1, fd))) == errno.EOVERFLOW
        m.update(k(1), val(CPUMAP_QSIZE_MAX, fd))
        assert err(lambda: m.update(k(4), val(1, fd))) == errno.E2BIG
        assert err(lambda: m.update(k(3), val(1, fd), 1)) == errno.EEXIST
        assert err(lambda: m.update(k(0), val(1, fd), 3)) == errno.EINVAL
        m.update(k(1), val(0, fd))  # qsize 0 empties the slot
        assert err(lambda: m.lookup(k(1))) == errno.ENOENT
        assert list(m) == [k(0), k(1), k(2), k(3)] and m.items() == [(k(0), m.lookup(k(0)))]
        m.delete(k(0))
        m.delete(k(0))
        assert err(lambda: m.delete(k(4))) == errno.EINVAL
        assert m.value_address(k(0)) is None  # the verifier refuses CPUMAP lookups from programs
    if vs == 8:
        with (
            make(MapType.CPUMAP, 8, max_entries=2, ncpus=2) as m,
            pytest.raises(RedirectMapNotSupportedError) as e,
        ):
            m.update(k(0), val(16, 4))
        assert e.value.errno == errno.ENOMEM


# ---------------------------------------------------------------- XSKMAP


def test_xskmap_is_empty_and_refuses_sockets() -> None:
    r, w = os.pipe()
    try:
        with make(MapType.XSKMAP, max_entries=3) as m, socket.socket() as tcp:
            assert err(lambda: m.update(k(0), val(tcp.fileno()))) == errno.EOPNOTSUPP  # not AF_XDP
            assert err(lambda: m.update(k(0), val(r))) == errno.ENOTSOCK
            assert err(lambda: m.update(k(0), val(0xFFFFFFFF))) == errno.EBADF  # fd -1
            assert err(lambda: m.update(k(3), val(tcp.fileno()))) == errno.E2BIG  # index first
            assert err(lambda: m.update(k(0), val(tcp.fileno()), 3)) == errno.EINVAL
            try:
                xsk = socket.socket(AF_XDP, socket.SOCK_RAW, 0)
            except OSError:  # no AF_XDP here: the rest still runs
                xsk = None
            if xsk is not None:
                with xsk, pytest.raises(RedirectMapNotSupportedError, match="AF_XDP") as e:
                    m.update(k(0), val(xsk.fileno()))
                assert isinstance(e.value, NotSupportedError) and e.value.errno == errno.EOPNOTSUPP
            with pytest.raises(MapOperationNotSupportedError) as e2:
                m.lookup(k(0))
            assert e2.value.errno == errno.EOPNOTSUPP
            assert err(lambda: m.lookup_flags(k(0), 1)) == errno.EINVAL  # flags first
            m.delete(k(0))
            assert err(lambda: m.delete(k(3))) == errno.EINVAL
            assert list(m) == [k(0), k(1), k(2)] and m.items() == [] and k(0) not in m
            assert isinstance(m, XskMap) and m.redirect_lookup(0) is None
            assert m.value_address(k(0)) is None
    finally:
        os.close(r)
        os.close(w)


def test_maps_from_specs() -> None:
    spec = MapSpec("ports", MapType.DEVMAP, 4, 8, 4, contents=[(k(1), val(1, 0))])
    with create(spec) as m:
        assert m.lookup(k(1)) == val(1, 0)
    with pytest.raises(MapError) as e:  # fd -1
        create(MapSpec("xsks", MapType.XSKMAP, 4, 4, 4, contents=[(k(1), val(0xFFFFFFFF))]))
    assert e.value.errno == errno.EBADF


# ---------------------------------------------------------------- programs


def _run(text: str, env: RunEnv, engine: str) -> int:
    from vm._helper_util import user_test_run

    return user_test_run(text, ProgramType.XDP, bytes(64), engine=engine, env=env).retval


def redirect_prog(handle: int, key: int, flags: int) -> str:
    return f"r1 = {handle} ll\nr2 = {key} ll\nr3 = {flags} ll\ncall {HelperId.REDIRECT_MAP}\nexit"


@pytest.mark.parametrize("engine", ENGINES)
def test_redirect_map(engine: str) -> None:
    env = RunEnv(deterministic=True, ncpus=2)
    dev = make(MapType.DEVMAP, 8, memory=env.memory)
    dh = make(MapType.DEVMAP_HASH, 4, memory=env.memory)
    cpu = make(MapType.CPUMAP, 4, memory=env.memory, ncpus=2)
    xsk = make(MapType.XSKMAP, memory=env.memory)
    hd, hh, hc, hx = (env.add_map(m) for m in (dev, dh, cpu, xsk))
    dev.update(k(1), val(5, 0))
    dh.update(k(70), val(2))
    cpu.update(k(1), val(64))
    assert _run(redirect_prog(hd, 1, 2), env, engine) == 4  # XDP_REDIRECT
    r = env.redirect
    assert r is not None and r.map is dev and r.key == 1 and r.ifindex == 5 and r.flags == 0
    assert _run(redirect_prog(hd, 1 | 1 << 32, 2), env, engine) == 4  # the key is cut to 32 bits
    assert _run(redirect_prog(hd, 0, 2), env, engine) == 2 and env.redirect is None  # miss: flags
    assert _run(redirect_prog(hd, 9, 1), env, engine) == 1
    assert _run(redirect_prog(hd, 1, 4), env, engine) == 0  # XDP_ABORTED: unknown flag
    assert _run(redirect_prog(hh, 70, 2), env, engine) == 4 and env.redirect and env.redirect.ifindex == 2
    assert _run(redirect_prog(hh, 6, 3), env, engine) == 3
    assert _run(redirect_prog(hc, 1, 2), env, engine) == 4 and env.redirect and env.redirect.key == 1
    assert _run(redirect_prog(hc, 0, 2), env, engine) == 2
    assert _run(redirect_prog(hx, 0, 2), env, engine) == 2  # no sockets: always the fallback
    for h in (hd, hh):  # broadcast: redirects even without an entry, and keeps its flags
        assert _run(redirect_prog(h, 3, 8 | 16), env, engine) == 4
        assert env.redirect is not None and env.redirect.flags == 24 and env.redirect.ifindex == 0
    for h in (hc, hx):  # no broadcast on CPUMAP / XSKMAP
        assert _run(redirect_prog(h, 1, 8), env, engine) == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_program_lookup_is_read_only(engine: str) -> None:
    env = RunEnv(deterministic=True)
    dev = make(MapType.DEVMAP, 8, memory=env.memory)
    h = env.add_map(dev)
    dev.update(k(2), val(5, 0))
    lookup = (
        f"r1 = KEY\n*(u32 *)(r10 - 4) = r1\nr1 = {h} ll\nr2 = r10\nr2 += -4\n"
        f"call {HelperId.MAP_LOOKUP_ELEM}\nif r0 == 0 goto miss\n"
    )
    read = lookup + "r1 = *(u32 *)(r0 + 4)\nr0 = *(u32 *)(r0 + 0)\nr0 += r1\nexit\nmiss:\nr0 = 77\nexit"
    assert _run(read.replace("KEY", "2"), env, engine) == 5  # ifindex 5, program id 0
    assert _run(read.replace("KEY", "1"), env, engine) == 77
    write = lookup + "r1 = 9\n*(u32 *)(r0 + 0) = r1\nmiss:\nr0 = 0\nexit"
    with pytest.raises(VMError):  # the kernel's verifier refuses the store (BPF_F_RDONLY_PROG)
        _run(write.replace("KEY", "2"), env, engine)
    assert dev.lookup(k(2)) == val(5, 0)
    address = dev.value_address(k(2))
    assert address is not None
    dev.update(k(2), val(1, 0))
    assert dev.value_address(k(2)) == address  # updated in place
    dev.delete(k(2))
    assert env.memory.find(address) is None  # deleted: unmapped


def test_runtime_collection_devices() -> None:
    """A runtime's devmaps check devices against the run's table (deterministic: loopback only)."""
    from pathlib import Path

    from ebpf.elf import load_collection_spec
    from ebpf.runtime import Collection

    obj = Path(__file__).resolve().parent.parent / "data" / "realistic" / "xdp_redirect.o"
    spec = load_collection_spec(obj)
    with Collection(spec, deterministic=True, ncpus=2) as coll:
        ports, by_id = coll.maps["ports"], coll.maps["ports_by_id"]
        assert isinstance(ports, DevMap) and isinstance(by_id, DevMapHash)
        ports.update(k(1), val(1, 0))
        assert err(lambda: ports.update(k(2), val(2, 0))) == errno.EINVAL  # not in the run's devices
        assert err(lambda: by_id.update(k(7), val(3))) == errno.EINVAL
        packet = b"\x02" * 14 + bytes([0, 1]) + bytes(30)
        res = coll.programs["forward"].test_run(packet)
        assert (res.retval, res.data_out) == (4, packet)  # XDP_REDIRECT; a test run sends nothing
        r = coll.env.redirect
        assert r is not None and r.map is ports and r.key == 1 and r.ifindex == 1
        assert coll.programs["forward"].test_run(b"\x02" * 14 + bytes([0, 0]) + bytes(30)).retval == 2
