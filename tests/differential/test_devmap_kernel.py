"""DEVMAP, DEVMAP_HASH, CPUMAP and XSKMAP: the runtime's maps against the kernel's (Linux 6.18).

The same creation attributes, the same sequences of syscall-level operations (``update``,
``delete``, ``lookup``, ``get_next_key``) and the same programs (``bpf_redirect_map``, lookups
from a program, test runs) go to ``ebpf.kernel`` and to ``ebpf.maps`` / the runtime engines;
every step must give the same result or the same errno. Devices are this host's (both sides
see the same ones); the runtime's ``ncpus`` is the kernel's possible CPUs.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebpf.errors import BPFError, KeyNotFoundError
from ebpf.helpers import HelperId
from ebpf.maps import MapDef, MapFlags, RedirectMapNotSupportedError, create, errno_of
from ebpf.maps.devmap import AF_XDP
from ebpf.spec import MapSpec, MapType, ProgramType
from ebpf.vm.helpers import RunEnv
from vm._helper_util import kernel_test_run, user_test_run  # tests/ is on sys.path

pytestmark = pytest.mark.kernel

REDIRECT_TYPES = (MapType.DEVMAP, MapType.DEVMAP_HASH, MapType.CPUMAP, MapType.XSKMAP)
IFINDEXES = [i for i, _ in socket.if_nameindex()]
MISSING_DEV = max(IFINDEXES) + 1000
ENGINES = ("interp", "py")


def possible_cpus() -> int:
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    return sum(
        int(b) - int(a) + 1 if "-" in r else 1 for r in text.split(",") for a, _, b in [r.partition("-")]
    )


NCPUS = possible_cpus()


def k(i: int) -> bytes:
    return struct.pack("<I", i)


def val(first: int, fd: int | None) -> bytes:
    return struct.pack("<I", first) + (b"" if fd is None else struct.pack("<i", fd))


def outcome(f: Callable[[], Any]) -> tuple[str, Any]:
    try:
        r = f()
    except (BPFError, OSError) as err:
        code = errno_of(err)
        if code is None:
            code = errno.ENOENT if isinstance(err, KeyNotFoundError) else getattr(err, "errno", None)
        assert code is not None, repr(err)
        return ("err", errno.errorcode.get(code, code))
    return ("ok", None if r is None else bytes(r))


# ---------------------------------------------------------------- creation

CREATE_CASES = [
    (ks, vs, me, fl)
    for ks, vs in ((4, 4), (4, 8), (8, 4), (4, 0), (4, 5), (4, 12), (2, 4))
    for me, fl in ((4, 0), (0, 0), (4, 1), (4, 2), (4, 4), (4, 8), (4, 16), (4, 0x80), (4, 0x100), (4, 0x400))
] + [(4, 4, me, 0) for me in (1, 255, 256, 257, 4096, (1 << 31) + 1, 0xFFFFFFFF)]


def kernel_create(t: MapType, ks: int, vs: int, me: int, fl: int) -> Any:
    from ebpf.kernel import Map as KernelMap

    return KernelMap.create(MapSpec("dm", t, ks, vs, me, flags=fl))


def unsafe_size(t: MapType, me: int) -> bool:
    """Pointer arrays of a GiB or more that fit in RAM: the kernel would really allocate them.

    (Larger than RAM is a quick ENOMEM from vmalloc, compared as any other case.)
    """
    size = me * 8
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return t in (MapType.DEVMAP, MapType.XSKMAP) and size >= 1 << 30 and size // 4096 <= ram // 4096


@pytest.mark.parametrize("t", REDIRECT_TYPES, ids=lambda t: t.name)
def test_create_as_the_kernel(t: MapType) -> None:
    for ks, vs, me, fl in CREATE_CASES:
        if unsafe_size(t, me):
            continue
        kernel = outcome(lambda: kernel_create(t, ks, vs, me, fl).close())  # noqa: B023
        ours = outcome(lambda: create(MapDef(t, ks, vs, me, fl), ncpus=NCPUS).close())  # noqa: B023
        assert ours == kernel, (t.name, ks, vs, me, fl)


@pytest.mark.parametrize("t", REDIRECT_TYPES, ids=lambda t: t.name)
def test_flags_as_the_kernel_reports_them(t: MapType) -> None:
    for fl in (0, MapFlags.NUMA_NODE, MapFlags.RDONLY):
        try:
            km = kernel_create(t, 4, 4, 2, fl)
        except BPFError:
            continue
        with km, create(MapDef(t, 4, 4, 2, fl), ncpus=NCPUS) as m:
            # the kernel keeps BPF_F_RDONLY / BPF_F_WRONLY on the fd, not in map_flags
            assert m.flags & ~(MapFlags.RDONLY | MapFlags.WRONLY) == km.info().flags, t.name


# ---------------------------------------------------------------- syscall operations


@pytest.fixture(scope="module")
def sock() -> Iterator[socket.socket]:
    with socket.socket() as s:
        yield s


class Pair:
    """The same map in the kernel and in user space; ``do(op)`` runs one operation on both."""

    def __init__(self, t: MapType, value_size: int, max_entries: int) -> None:
        self.kernel = kernel_create(t, 4, value_size, max_entries, 0)
        self.ours = create(MapDef(t, 4, value_size, max_entries), ncpus=NCPUS)

    def close(self) -> None:
        self.kernel.close()
        self.ours.close()

    def do(self, op: tuple[Any, ...]) -> tuple[str, Any]:
        name, *args = op
        results = []
        for m in (self.kernel, self.ours):
            f = m.lookup if name == "lookup_flags" and m is self.kernel else getattr(m, name)
            results.append(outcome(lambda f=f: f(*args)))  # type: ignore[misc]
        assert results[1] == results[0], op
        return results[0]

    def walk(self) -> list[bytes]:
        keys = [list(m) for m in (self.kernel, self.ours)]
        assert keys[1] == keys[0]
        return keys[0]


def keys() -> st.SearchStrategy[int]:
    return st.sampled_from([0, 1, 2, 3, 5, 7, 9, 0xFFFFFFFF])


def firsts(t: MapType) -> st.SearchStrategy[int]:
    if t == MapType.CPUMAP:  # qsize
        return st.sampled_from([0, 1, 192, 16384, 16385, 0xFFFFFFFF])
    return st.sampled_from([0, 1, IFINDEXES[-1], MISSING_DEV, 0xFFFFFFF0])  # ifindex


def ops(t: MapType, value_size: int, fd_sock: int) -> st.SearchStrategy[tuple[Any, ...]]:
    fds = st.sampled_from([-1, 0, -5, 1, 1000]) if value_size == 8 else st.none()
    if t == MapType.XSKMAP:
        values = st.sampled_from([k(fd_sock), k(0xFFFFFFFF)])
    else:
        values = st.builds(val, firsts(t), fds)
    flags = st.sampled_from([0, 0, 1, 2, 3, 4])
    return st.one_of(
        st.tuples(st.just("update"), keys().map(k), values, flags),
        st.tuples(st.just("delete"), keys().map(k)),
        st.tuples(st.just("lookup"), keys().map(k)),
        st.tuples(st.just("lookup_flags"), keys().map(k), st.sampled_from([1, 4])),
        st.tuples(st.just("get_next_key"), st.one_of(st.none(), keys().map(k))),
    )


@pytest.mark.parametrize(
    ("t", "value_size"),
    [(t, vs) for t in REDIRECT_TYPES for vs in ((4, 8) if t != MapType.XSKMAP else (4,))],
    ids=lambda x: x.name if isinstance(x, MapType) else str(x),
)
def test_operations_as_the_kernel(t: MapType, value_size: int, sock: socket.socket) -> None:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(ops(t, value_size, sock.fileno()), max_size=25), st.sampled_from([1, 4, 5]))
    def check(seq: list[tuple[Any, ...]], max_entries: int) -> None:
        pair = Pair(t, value_size, max_entries)
        try:
            for op in seq:
                pair.do(op)
            for key in pair.walk():
                pair.do(("lookup", key))
        finally:
            pair.close()

    check()


def test_devmap_hash_order_as_the_kernel() -> None:
    """Bucket order, newest first, a replaced element back at the head of its bucket."""
    pair = Pair(MapType.DEVMAP_HASH, 8, 8)
    try:
        for key in (3, 11, 19, 4, 12, 0x7FFFFFFF, 8):
            pair.do(("update", k(key), val(1, 0), 0))
        first = pair.walk()
        pair.do(("update", k(11), val(IFINDEXES[-1], -1), 2))
        pair.do(("delete", k(4)))
        assert pair.walk() != first
        for key in (3, 11, 19, 12, 4, 99):
            pair.do(("get_next_key", k(key)))
    finally:
        pair.close()


@pytest.mark.parametrize("t", REDIRECT_TYPES, ids=lambda t: t.name)
def test_no_batch_operations(t: MapType) -> None:
    """No batch operations and no lookup_and_delete: ENOTSUPP (524) on both sides."""
    pair = Pair(t, 4, 2)
    try:
        zero = k(0)
        for ours, kernel in [
            (lambda: pair.ours.lookup_batch(2), lambda: pair.kernel.lookup_batch(2)),
            (lambda: pair.ours.lookup_and_delete(zero), lambda: pair.kernel.lookup_and_delete(zero)),
            (
                lambda: pair.ours.update_batch([(zero, k(1))]),
                lambda: pair.kernel.update_batch([(zero, k(1))]),
            ),
            (lambda: pair.ours.delete_batch([zero]), lambda: pair.kernel.delete_batch([zero])),
        ]:
            assert outcome(ours) == outcome(kernel) == ("err", 524)
    finally:
        pair.close()


@pytest.mark.parametrize("t", REDIRECT_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("outer_type", [MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS], ids=lambda t: t.name)
def test_inner_maps_as_the_kernel(t: MapType, outer_type: MapType) -> None:
    """Redirect maps as inner maps: the template check compares the flags as created."""
    from ebpf.kernel import Map as KernelMap

    template = MapSpec("tpl", t, 4, 4, 2)
    outer = MapSpec("outer", outer_type, 4, 4, 2, inner=template)
    for inner_flags in (0, MapFlags.NUMA_NODE):
        inner = MapSpec("inner", t, 4, 4, 2, flags=inner_flags)
        with (
            KernelMap.create(outer) as ko,
            KernelMap.create(inner) as ki,
            create(outer, ncpus=NCPUS) as uo,
            create(inner, ncpus=NCPUS) as ui,
        ):
            kernel = outcome(lambda: ko.update_map(k(0), ki))
            ours = outcome(lambda: uo.update_map(k(0), ui))  # type: ignore[attr-defined]
            assert ours == kernel, inner_flags
            assert kernel == (("ok", None) if inner_flags == 0 else ("err", "EINVAL"))


def test_xskmap_socket_kinds(sock: socket.socket) -> None:
    """XSKMAP updates look the fd up as the kernel does; an AF_XDP socket is the one difference."""
    name = errno.errorcode.__getitem__
    pair = Pair(MapType.XSKMAP, 4, 2)
    r, w = os.pipe()
    try:
        assert pair.do(("update", k(0), k(sock.fileno()), 0)) == ("err", name(errno.EOPNOTSUPP))
        assert pair.do(("update", k(1), k(r), 0)) == ("err", name(errno.ENOTSOCK))
        assert pair.do(("update", k(1), k(0xFFFFFFFF), 2)) == ("err", name(errno.EBADF))
        assert pair.do(("update", k(2), k(sock.fileno()), 0)) == ("err", name(errno.E2BIG))
        assert pair.do(("lookup", k(0))) == ("err", name(errno.EOPNOTSUPP))
        try:
            xsk = socket.socket(AF_XDP, socket.SOCK_RAW, 0)
        except OSError as err:  # CONFIG_XDP_SOCKETS off: the rest was compared
            pytest.skip(f"no AF_XDP sockets here: {err}")
        with xsk:
            assert outcome(lambda: pair.kernel.update(k(0), k(xsk.fileno()))) == ("ok", None)
            with pytest.raises(RedirectMapNotSupportedError):  # the runtime cannot keep it
                pair.ours.update(k(0), k(xsk.fileno()))
    finally:
        os.close(r)
        os.close(w)
        pair.close()


# ---------------------------------------------------------------- programs


def redirect_program(ref: str, key: int, flags: int) -> str:
    return (
        f"r1 = {ref} ll\nr2 = {key} ll\nr3 = {flags} ll\ncall {HelperId.REDIRECT_MAP}\nr0 &= 0xffffffff\nexit"
    )


def lookup_program(ref: str, key: int, read: bool) -> str:
    body = "r1 = *(u32 *)(r0 + 0)\nr0 = *(u32 *)(r0 + 4)\nr0 <<= 16\nr0 |= r1\n" if read else "r0 = 1\n"
    return (
        f"r1 = {key}\n*(u32 *)(r10 - 4) = r1\nr1 = {ref} ll\nr2 = r10\nr2 += -4\n"
        f"call {HelperId.MAP_LOOKUP_ELEM}\nif r0 == 0 goto miss\n{body}exit\nmiss:\nr0 = 77\nexit"
    )


FILL = {
    MapType.DEVMAP: [(1, val(1, 0)), (3, val(IFINDEXES[-1], -1))],
    MapType.DEVMAP_HASH: [(7, val(1, 0)), (0x10000, val(1, 0))],
    MapType.CPUMAP: [(0, val(192, 0))],
    MapType.XSKMAP: [],
}
PROGRAM_KEYS = [0, 1, 3, 7, 0x10000, 1 | 1 << 32, 0xFFFFFFFF]
PROGRAM_FLAGS = [0, 1, 2, 3, 4, 8, 16, 8 | 16, 8 | 2, 1 << 32, 1 << 40]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("t", REDIRECT_TYPES, ids=lambda t: t.name)
def test_programs_as_the_kernel(t: MapType, engine: str) -> None:
    """``bpf_redirect_map`` verdicts (test runs return XDP_REDIRECT, data unchanged) and lookups."""
    from ebpf.kernel import Map as KernelMap

    value_size = 4 if t == MapType.XSKMAP else 8
    spec = MapSpec("dm", t, 4, value_size, 4)
    packet = bytes(range(64))
    env = RunEnv(deterministic=True, ncpus=NCPUS)
    with KernelMap.create(spec) as km, create(spec, env.memory, ncpus=NCPUS) as um:
        handle = env.add_map(um)
        for key, value in FILL[t]:
            km.update(k(key), value)
            um.update(k(key), value)
        cases = [(redirect_program("{ref}", key, fl), True) for key in PROGRAM_KEYS for fl in PROGRAM_FLAGS]
        if t != MapType.CPUMAP:  # the verifier refuses CPUMAP lookups from programs
            read = t != MapType.XSKMAP
            cases += [(lookup_program("{ref}", key, read), False) for key in (0, 1, 3, 7, 0x10000)]
        for text, redirects in cases:
            kernel = kernel_test_run(text.format(ref=f"map_fd({km.fd})"), ProgramType.XDP, packet)
            ours = user_test_run(text.format(ref=handle), ProgramType.XDP, packet, engine=engine, env=env)
            assert (ours.retval, ours.data_out) == (kernel.retval, kernel.data_out), text
            if redirects:  # the runtime recorded the redirect exactly when the verdict is XDP_REDIRECT
                assert (env.redirect is not None) == (ours.retval == 4), text
