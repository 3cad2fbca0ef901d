"""bpf_probe_read_user(_str) of the host process's memory, and the legacy helpers' dispatch.

The runtime reads the caller's own memory where the kernel would (a raw_tp test run runs in
the caller's process): pages present and readable, as ``copy_from_user_nofault`` sees them.
Pure parts first (the string copy, /proc reads), then both engines, then against Linux.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from ebpf.helpers import HelperId
from ebpf.runtime import Collection
from ebpf.spec import CollectionSpec, ProgramType
from ebpf.vm import _host_memory as host
from ebpf.vm._helpers_trace import strncpy_from_user
from ebpf.vm.helpers import RunEnv
from runtime._build import global_map, program  # tests/ is on sys.path

from ._helper_util import ENGINE_NAMES, run

P = host.PAGE_SIZE
EFAULT = -errno.EFAULT
M64 = (1 << 64) - 1
HAS_PROC = os.path.exists("/proc/self/pagemap")
needs_proc = pytest.mark.skipif(not HAS_PROC, reason="no /proc/self/pagemap")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
PROT_EXEC = 4
MADV_DONTNEED = 4


# --- strncpy_from_user_nofault, modelled on the readable prefix --------------------------------


@pytest.mark.parametrize(
    ("avail", "count", "limit", "expected"),
    [
        (b"hello\0xy", 32, 32, (6, b"hello\0\0\0")),  # the NUL's word, zeroed after the NUL
        (b"ab\0", 32, 32, (3, b"ab\0")),  # the word faults: byte at a time, up to the NUL
        (b"\0" * 8, 32, 32, (1, b"\0" * 8)),  # empty string: 1
        (b"\x01" * 40 + b"\0", 8, 8, (8, b"\x01" * 7 + b"\0")),  # too long: size, dst[size-1] = 0
        (b"\x01" * 20, 10, 10, (10, b"\x01" * 9 + b"\0")),  # a word, then bytes
        (b"0123456789abcdef\0" + b"z" * 7, 64, 64, (17, b"0123456789abcdef\0" + bytes(7))),
        (b"0123456789abcdef\0", 64, 64, (17, b"0123456789abcdef\0")),
        (b"abc", 32, 32, (EFAULT, b"")),  # unreadable before the NUL
        (b"abc", 16, 3, (EFAULT, b"")),  # stopped at TASK_SIZE_MAX short of count
        (b"", 8, 8, (EFAULT, b"")),
    ],
)
def test_strncpy_from_user(avail: bytes, count: int, limit: int, expected: tuple[int, bytes]) -> None:
    assert strncpy_from_user(avail, count, limit) == expected


# --- /proc/self: present and readable pages only ------------------------------------------------


@pytest.fixture
def maps() -> Iterator[list[mmap.mmap]]:
    """Anonymous mappings made by a test, closed after it."""
    made: list[mmap.mmap] = []
    yield made
    for m in made:
        m.close()


def _addr(m: mmap.mmap) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(m))


def _mapping(made: list[mmap.mmap], pages: int) -> tuple[mmap.mmap, int]:
    m = mmap.mmap(-1, pages * P)
    made.append(m)
    return m, _addr(m)


@pytest.fixture(params=["procmap_query", "maps_text"])
def vma_lookup(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of finding readable mappings: the ioctl (Linux >= 6.11) and the maps text."""
    if request.param == "maps_text":

        def no_ioctl(fd: int, address: int) -> Any:
            raise OSError(errno.ENOTTY, "no PROCMAP_QUERY")

        monkeypatch.setattr(host, "_vma_query", no_ioctl)
    return str(request.param)


@needs_proc
def test_reads_own_memory(vma_lookup: str) -> None:
    buf = ctypes.create_string_buffer(b"hello, host")
    assert host.read(ctypes.addressof(buf), 12) == b"hello, host\0"
    big = ctypes.create_string_buffer(bytes(range(256)) * 64)
    assert host.read(ctypes.addressof(big), len(big)) == big.raw


@needs_proc
def test_untouched_and_dropped_pages_are_not_readable(maps: list[mmap.mmap], vma_lookup: str) -> None:
    m, a = _mapping(maps, 2)
    assert host.readable_length(a, 8) == 0  # mapped, never touched: not present
    m[0:4] = b"abcd"
    assert host.read(a, 4) == b"abcd"
    assert host.readable_length(a, 2 * P) == P  # the second page is still not present
    assert host.read(a + P - 2, 4) == b"\0\0"
    assert _libc.madvise(a, P, MADV_DONTNEED) == 0
    assert host.readable_length(a, 8) == 0


@needs_proc
def test_prot_none_is_not_readable(maps: list[mmap.mmap], vma_lookup: str) -> None:
    m, a = _mapping(maps, 2)
    m[:] = b"x" * (2 * P)  # both pages present
    assert host.readable_length(a, 2 * P) == 2 * P
    assert _libc.mprotect(a + P, P, 0) == 0  # present but PROT_NONE (/proc/self/mem would read it)
    assert host.readable_length(a + P - 10, 20) == 10
    assert host.read(a + P, 1) == b""


@pytest.mark.parametrize("address", [0, 0x1000, host.USER_END - 8, host.USER_END, 0xFFFF_8000_0000_0000, M64])
def test_never_user_memory(address: int) -> None:
    assert host.read(address, 16) == b""


def test_no_proc_reads_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> int:
        raise PermissionError(errno.EACCES, "no /proc")

    monkeypatch.setattr(os, "open", refuse)
    buf = ctypes.create_string_buffer(b"x")
    assert host.read(ctypes.addressof(buf), 1) == b""


# --- the helpers, both engines ------------------------------------------------------------------


def _read_prog(helper: int, src: int, size: int) -> str:
    """probe-read ``size`` (<= 16) bytes at ``src`` into a 0xff-filled 16-byte stack buffer;
    r0 = the two halves xor'ed, xor the low byte of the result in the top byte."""
    return f"""
    r1 = -1
    *(u64 *)(r10 - 8) = r1
    *(u64 *)(r10 - 16) = r1
    r1 = r10
    r1 += -16
    r2 = {size}
    r3 = {src} ll
    call {helper}
    r6 = r0
    r0 = *(u64 *)(r10 - 16)
    r1 = *(u64 *)(r10 - 8)
    r0 ^= r1
    r6 <<= 56
    r0 ^= r6
    exit
    """


def _value(ret: int, data: bytes) -> int:
    data = data.ljust(16, b"\xff")
    return int.from_bytes(data[:8], "little") ^ int.from_bytes(data[8:], "little") ^ ((ret & 0xFF) << 56)


USER_HELPERS = (HelperId.PROBE_READ_USER, HelperId.PROBE_READ)
USER_STR_HELPERS = (HelperId.PROBE_READ_USER_STR, HelperId.PROBE_READ_STR)


@needs_proc
@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_helpers_read_host_memory(engine: str) -> None:
    buf = ctypes.create_string_buffer(b"hostdata\0tail\0\0\0")
    a = ctypes.addressof(buf)
    env = RunEnv()
    for helper in USER_HELPERS:
        assert run(_read_prog(helper, a, 8), env, engine).retval == _value(0, b"hostdata")
        assert run(_read_prog(helper, 0x1000, 8), env, engine).retval == _value(EFAULT, bytes(8))
    for helper in USER_STR_HELPERS:
        assert run(_read_prog(helper, a, 16), env, engine).retval == _value(9, b"hostdata\0" + bytes(7))
        assert run(_read_prog(helper, a + 9, 16), env, engine).retval == _value(5, b"tail\0\0\0\0")
        assert run(_read_prog(helper, a, 4), env, engine).retval == _value(4, b"hos\0")
        assert run(_read_prog(helper, 0x1000, 8), env, engine).retval == _value(EFAULT, bytes(8))
    # the legacy helpers read kernel memory above TASK_SIZE: an unmapped kernel address faults
    kernel = 0xFFFF_8000_0000_0000
    assert run(_read_prog(HelperId.PROBE_READ, kernel, 8), env, engine).retval == _value(EFAULT, bytes(8))
    assert run(_read_prog(HelperId.PROBE_READ_STR, kernel, 8), env, engine).retval == _value(EFAULT, bytes(8))


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_deterministic_mode_reads_no_host_memory(engine: str) -> None:
    buf = ctypes.create_string_buffer(b"hostdata")
    env = RunEnv(deterministic=True)
    for helper in (*USER_HELPERS, *USER_STR_HELPERS):
        got = run(_read_prog(helper, ctypes.addressof(buf), 8), env, engine).retval
        assert got == _value(EFAULT, bytes(8))


# --- against Linux: the same reads in a raw_tp test run -----------------------------------------

ALL_HELPERS = (
    HelperId.PROBE_READ_USER,
    HelperId.PROBE_READ_USER_STR,
    HelperId.PROBE_READ,
    HelperId.PROBE_READ_STR,
    HelperId.PROBE_READ_KERNEL,
    HelperId.PROBE_READ_KERNEL_STR,
)
OUT = 64  # bytes of the result buffer after the s64 result


def _spec() -> CollectionSpec:
    programs = {}
    for helper in ALL_HELPERS:
        text = f"""
        r6 = r1
        r7 = 0 ll
        r1 = r7
        r1 += 8
        r2 = *(u64 *)(r6 + 8)
        r2 &= {OUT - 1}
        r3 = *(u64 *)(r6 + 0)
        call {int(helper)}
        *(u64 *)(r7 + 0) = r0
        r0 = 0
        exit
        """
        prog = program(helper.name.lower(), text, [("value", ".bss", 0)], type=ProgramType.RAW_TRACEPOINT)
        prog.section = "raw_tp/sys_enter"
        programs[prog.name] = prog
    return CollectionSpec(programs=programs, maps={".bss": global_map(".bss", bytes(8 + OUT))}, license="GPL")


def _cases(made: list[mmap.mmap], keep: list[Any]) -> dict[str, int]:
    """Addresses in this process, each a different kind of user memory. Buffers are padded
    to 128 bytes: reads past their data stay in memory that does not change between runs."""
    cases: dict[str, int] = {}
    for name, data in (
        ("string", b"/etc/hostname"),
        ("empty", b""),
        ("long", b"\x01" * 80),
        ("word", struct.pack("<Q", 0x1122334455667788)),
    ):
        buf = ctypes.create_string_buffer(data, 128)
        keep.append(buf)
        cases[name] = ctypes.addressof(buf)
    _, cases["untouched"] = _mapping(made, 1)
    m, a = _mapping(made, 2)
    m[:P] = b"A" * P
    assert _libc.mprotect(a + P, P, 0) == 0
    cases["into_prot_none"] = a + P - 10
    m, a = _mapping(made, 2)
    m[:P] = b"B" * (P - 5) + b"end\0\0"
    cases["nul_before_untouched"] = a + P - 9  # the NUL's word would cross into the next page
    cases["into_untouched"] = a + P - 12
    m, a = _mapping(made, 1)
    m[:8] = b"abcdefg\0"
    assert _libc.mprotect(a, P, 0) == 0
    cases["touched_prot_none"] = a
    m, a = _mapping(made, 1)
    m[:8] = b"xyz\0abcd"
    assert _libc.mprotect(a, P, PROT_EXEC) == 0
    cases["exec_only"] = a  # x86-64: a present execute-only page reads like any other
    m, a = _mapping(made, 1)
    m[:8] = b"abcdefg\0"
    assert _libc.madvise(a, P, MADV_DONTNEED) == 0
    cases["dontneed"] = a
    cases.update(
        null=0,
        low=0x1000,
        top=host.USER_END - 8,
        guard_hole=0xFFFF_8000_0000_0000,
        noncanonical=0xDEAD_0000_0000_0000,
    )
    cases["end"] = M64 - 3
    if _mapped(cases["top"]):  # the [uprobes] page, once a uprobe fired here: a known limit
        del cases["top"]
    return cases


def _mapped(address: int) -> bool:
    with open("/proc/self/maps") as f:
        for line in f:
            lo, _, hi = line.split(maxsplit=1)[0].partition("-")
            if int(lo, 16) <= address < int(hi, 16):
                return True
    return False


@pytest.fixture
def loaded(maps: list[mmap.mmap]) -> Iterator[tuple[dict[str, Collection], Any]]:
    from ebpf.kernel.collection import Collection as KernelCollection

    spec = _spec()
    with ExitStack() as stack:
        ours = {e: stack.enter_context(Collection(spec, engine=e)) for e in ENGINE_NAMES}
        theirs = stack.enter_context(KernelCollection(spec))
        yield ours, theirs


def _outcome(side: Any, helper: HelperId, src: int, size: int) -> tuple[int, bytes]:
    side.maps[".bss"].update(bytes(4), b"\xaa" * (8 + OUT))
    side.programs[helper.name.lower()].test_run(b"", ctx_in=struct.pack("<QQ", src, size))
    value = bytes(side.maps[".bss"].lookup(bytes(4)))
    return struct.unpack_from("<q", value)[0], value[8:]


@pytest.mark.kernel
@needs_proc
def test_same_reads_as_the_kernel(loaded: tuple[dict[str, Collection], Any], maps: list[mmap.mmap]) -> None:
    ours, theirs = loaded
    keep: list[Any] = []
    cases = _cases(maps, keep)
    for name, src in cases.items():
        for size in (1, 8, 13, 32, OUT - 1):
            for helper in ALL_HELPERS:
                kernel = _outcome(theirs, helper, src, size)
                for engine, coll in ours.items():
                    assert _outcome(coll, helper, src, size) == kernel, (name, size, helper.name, engine)
