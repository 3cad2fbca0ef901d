"""The same object and input through the user-space runtime and through the kernel.

Compares, per run, ``retval`` and ``data_out`` of ``BPF_PROG_TEST_RUN`` with
``runtime.Program.test_run``, and afterwards the contents of every data map (hash maps
order-insensitive, per-CPU values summed over CPUs). The kernel side is
``ebpf.kernel.collection.Collection`` when it exists, and a minimal loader built on
``kernel.Map`` / ``kernel.Program`` (maps, contents, freeze, relocation, slots) in any case.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebpf.elf import load_collection_spec
from ebpf.errors import BPFError, NotSupportedError
from ebpf.isa.encoding import slot_offsets
from ebpf.isa.instruction import Instruction
from ebpf.isa.program import Program as InsnProgram
from ebpf.runtime import Collection
from ebpf.spec import CollectionSpec, MapSpec, MapType, ProgramType, RelocKind, VariableSpec
from runtime._build import (  # tests/ is on sys.path (pytest rootdir packages)
    default_helpers,
    global_map,
    program,
)

pytestmark = pytest.mark.kernel

DATA = Path(__file__).resolve().parent.parent / "data" / "elf"
NO_CONTENTS = {
    MapType.PROG_ARRAY,
    MapType.ARRAY_OF_MAPS,
    MapType.HASH_OF_MAPS,
    MapType.RINGBUF,
    MapType.PERF_EVENT_ARRAY,
    MapType.QUEUE,
    MapType.STACK,
    MapType.BLOOM_FILTER,
    MapType.XSKMAP,  # sockets only; user-space lookups are EOPNOTSUPP on both sides
}
PERCPU = {MapType.PERCPU_ARRAY, MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH}


class MiniKernelCollection:
    """Just enough of a loader: maps (contents, freeze), relocated programs, slots."""

    def __init__(self, spec: CollectionSpec) -> None:
        from ebpf.kernel.map import Map
        from ebpf.kernel.program import Program

        self.maps: dict[str, Any] = {}
        self.programs: dict[str, Any] = {}
        self._stack = ExitStack()
        try:
            for name, mspec in spec.maps.items():
                kmap = self._stack.enter_context(Map.create(_no_btf(mspec), name=_kernel_name(name)))
                self.maps[name] = kmap
                if mspec.contents:
                    kmap.fill(mspec.contents)
                if mspec.freeze:
                    kmap.freeze()
            for pspec in spec.programs.values():
                insns = list(pspec.instructions.instructions)
                if any(insn.is_wide and insn.src == 4 for insn in insns):
                    raise NotSupportedError(
                        f"program {pspec.name!r} passes a callback: the kernel wants BTF func_info, "
                        "which the minimal loader does not load"
                    )
                index = {slot: i for i, slot in enumerate(slot_offsets(pspec.instructions.instructions))}
                for slot, reloc in pspec.relocations.items():
                    i = index[slot]
                    insn = insns[i]
                    fd = self.maps[reloc.symbol].fd
                    if reloc.kind is RelocKind.MAP:
                        insns[i] = Instruction(insn.opcode, insn.dst, 1, insn.offset, fd)
                    elif reloc.kind is RelocKind.MAP_VALUE:
                        insns[i] = Instruction(
                            insn.opcode, insn.dst, 2, insn.offset, fd | (reloc.offset << 32)
                        )
                    else:
                        raise NotSupportedError(f"{reloc.kind.value} relocations in the test loader")
                prog = Program.load(
                    InsnProgram(insns).encode(),
                    pspec.type,
                    license=pspec.license or "GPL",
                    name=pspec.name[:15],
                    expected_attach_type=pspec.attach_type,
                    prog_flags=pspec.flags,
                )
                self.programs[pspec.name] = self._stack.enter_context(prog)
            for name, mspec in spec.maps.items():
                for slot, target in mspec.slots.items():
                    obj = self.programs[target] if mspec.type == MapType.PROG_ARRAY else self.maps[target]
                    self.maps[name].update(slot.to_bytes(mspec.key_size, "little"), struct.pack("<I", obj.fd))
        except BaseException:
            self._stack.close()
            raise

    def close(self) -> None:
        self._stack.close()


def _no_btf(mspec: MapSpec) -> MapSpec:
    clone = mspec.copy()
    clone.btf = None
    clone.key_type_id = clone.value_type_id = 0
    clone.pinning = type(clone.pinning)(0)
    return clone


def _kernel_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_." else "_" for c in name)[:15]


PIN_ROOT = f"/sys/fs/bpf/ebpf-test-objects-{os.getpid()}"


class _PinnedCollection:
    """kernel.Collection with LIBBPF_PIN_BY_NAME pins in a private directory, removed on close."""

    def __init__(self, spec: CollectionSpec) -> None:
        try:
            from ebpf.kernel.collection import Collection as KernelCollection
            from ebpf.kernel.collection import LoadOptions
        except ImportError as err:
            pytest.skip(f"ebpf.kernel.collection is not there yet: {err}")
        os.makedirs(PIN_ROOT, exist_ok=True)
        try:
            self._inner = KernelCollection(spec, LoadOptions(pin_root=PIN_ROOT))
        except BaseException:
            self._unpin()
            raise
        self.maps = self._inner.maps
        self.programs = self._inner.programs

    def close(self) -> None:
        self._inner.close()
        self._unpin()

    @staticmethod
    def _unpin() -> None:
        if os.path.isdir(PIN_ROOT):
            for name in os.listdir(PIN_ROOT):
                os.unlink(os.path.join(PIN_ROOT, name))
            os.rmdir(PIN_ROOT)


def _full_collection(spec: CollectionSpec) -> Any:
    return _PinnedCollection(spec)


LOADERS: dict[str, Callable[[CollectionSpec], Any]] = {
    "kernel.Collection": _full_collection,
    "mini": MiniKernelCollection,
}


@pytest.fixture(params=sorted(LOADERS))
def kernel_loader(request: pytest.FixtureRequest) -> Callable[[CollectionSpec], Any]:
    return LOADERS[request.param]


def _sum_lanes(values: list[bytes]) -> bytes:
    size = len(values[0])
    lane = 8 if size % 8 == 0 else 4 if size % 4 == 0 else 1
    total = [0] * (size // lane)
    for v in values:
        for i in range(len(total)):
            total[i] += int.from_bytes(v[i * lane : (i + 1) * lane], "little")
    return b"".join((t & ((1 << (8 * lane)) - 1)).to_bytes(lane, "little") for t in total)


def map_state(m: Any, mspec: MapSpec) -> dict[bytes, bytes]:
    state = {}
    for key in list(m):
        try:
            state[bytes(key)] = (
                _sum_lanes(m.lookup_percpu(key)) if mspec.type in PERCPU else bytes(m.lookup(key))
            )
        except KeyError:  # KeyNotFoundError: an empty slot of a sparse array (DEVMAP, CPUMAP)
            continue
    return state


@pytest.fixture
def both(
    kernel_loader: Callable[[CollectionSpec], Any],
) -> Iterator[Callable[[str | CollectionSpec], tuple[Collection, Any]]]:
    with ExitStack() as stack:

        def load(obj: str | CollectionSpec) -> tuple[Collection, Any]:
            spec = load_collection_spec(DATA / obj) if isinstance(obj, str) else obj
            ours = stack.enter_context(Collection(spec, helpers=default_helpers()))
            try:
                theirs = kernel_loader(spec)
            except NotSupportedError:
                # The minimal loader has no BTF func_info (callbacks need it): the full
                # kernel.Collection loads the object instead, so the comparison still runs.
                theirs = _full_collection(spec)
            stack.callback(theirs.close)
            return ours, theirs

        yield load


def compare_maps(ours: Collection, theirs: Any) -> None:
    for name, mspec in ours.spec.maps.items():
        if mspec.type in NO_CONTENTS:
            continue
        assert map_state(ours.maps[name], mspec) == map_state(theirs.maps[name], mspec), f"map {name}"


def run_both(ours: Collection, theirs: Any, prog: str, data: bytes, **kw: Any) -> None:
    try:
        mine = ours.programs[prog].test_run(data, **kw)
    except NotSupportedError as err:
        pytest.skip(f"the user-space runtime cannot test-run {prog!r} yet: {err}")
    kernel = theirs.programs[prog].test_run(data, **kw)
    assert (mine.retval, mine.data_out, mine.ctx_out) == (kernel.retval, kernel.data_out, kernel.ctx_out), (
        prog
    )


def ipv4(saddr: str, proto: int = 17) -> bytes:
    eth = b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", 0x0800)
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        28,
        1,
        0,
        64,
        proto,
        0,
        socket.inet_aton(saddr),
        socket.inet_aton("10.9.9.9"),
    )
    return eth + ip + struct.pack("!HHHH", 1000, 53, 8, 0)


def test_xdp_firewall(both: Callable[[str | CollectionSpec], tuple[Collection, Any]]) -> None:
    ours, theirs = both("xdp_fw.o")
    for side in (ours, theirs):
        side.maps["blocklist"].update(
            struct.pack("<I", 32) + socket.inet_aton("10.0.0.1"), struct.pack("<I", 1)
        )
    for packet in (ipv4("10.0.0.1"), ipv4("10.0.0.2"), b"\x00" * 14, ipv4("10.0.0.3", proto=6)):
        run_both(ours, theirs, "xdp_firewall", packet)
        run_both(ours, theirs, "xdp_firewall_frags", packet)
    run_both(ours, theirs, "xdp_firewall", ipv4("10.0.0.4"), repeat=7)
    run_both(ours, theirs, "xdp_pass", b"\x01" * 20)
    compare_maps(ours, theirs)


def test_tail_calls(both: Callable[[str | CollectionSpec], tuple[Collection, Any]]) -> None:
    ours, theirs = both("tailcall.o")
    for _ in range(3):
        run_both(ours, theirs, "tail_entry", b"\x00" * 14)
    run_both(ours, theirs, "tail_b", b"\x00" * 14)
    compare_maps(ours, theirs)
    assert struct.unpack("<3i", ours.variables["hits"].get()) == (3, 1, 3)


def test_map_in_map(both: Callable[[str | CollectionSpec], tuple[Collection, Any]]) -> None:
    ours, theirs = both("map_in_map.o")
    for side in (ours, theirs):
        side.maps["inner_hash"].update(struct.pack("<I", 1), struct.pack("<Q", 5))
    for _ in range(4):
        run_both(ours, theirs, "mim_lookup", b"\x00" * 14)
    compare_maps(ours, theirs)
    assert ours.maps["inner_hash"][struct.pack("<I", 1)] == struct.pack("<Q", 9)


def test_tc_classifier(both: Callable[[str | CollectionSpec], tuple[Collection, Any]]) -> None:
    ours, theirs = both("tc_cls.o")
    for packet in (ipv4("10.0.0.1"), ipv4("10.0.0.2", proto=6), ipv4("10.0.0.1")):
        run_both(ours, theirs, "tc_classify", packet)
        run_both(ours, theirs, "cls_legacy", packet)
    run_both(ours, theirs, "tcx_out", ipv4("10.0.0.1"))
    compare_maps(ours, theirs)
    assert ours.variables["loop_total"].get_int() == 105


def test_socket_filter(both: Callable[[str | CollectionSpec], tuple[Collection, Any]]) -> None:
    ours, theirs = both("socket_filter.o")
    for packet in (ipv4("10.0.0.1", proto=6), ipv4("10.0.0.1", proto=17), ipv4("10.0.0.2", proto=6)):
        run_both(ours, theirs, "keep_tcp", packet)
    compare_maps(ours, theirs)
    assert ours.variables["accepted"].get_int() == 2


SELF_TAIL_CALL = """
    r6 = r1
    r1 = 0 ll
    r2 = *(u32 *)(r1 + 0)
    r2 += 1
    *(u32 *)(r1 + 0) = r2
    r1 = r6
    r2 = 0 ll
    r3 = 0
    call 12
    r0 = 2
    exit
"""


def test_tail_call_limit(both: Callable[[str | CollectionSpec], tuple[Collection, Any]]) -> None:
    """A program that tail-calls itself runs 1 + MAX_TAIL_CALL_CNT times, then falls through."""
    prog = program("again", SELF_TAIL_CALL, [("value", ".bss", 0), ("map", "jump")], type=ProgramType.XDP)
    prog.license = "GPL"
    spec = CollectionSpec(
        programs={"again": prog},
        maps={
            "jump": MapSpec("jump", MapType.PROG_ARRAY, 4, 4, 1, slots={0: "again"}),
            ".bss": global_map(".bss", bytes(4)),
        },
        variables={"runs": VariableSpec("runs", ".bss", 0, 4)},
        license="GPL",
    )
    ours, theirs = both(spec)
    run_both(ours, theirs, "again", b"\x00" * 14)
    run_both(ours, theirs, "again", b"\x00" * 14, repeat=3)
    compare_maps(ours, theirs)
    assert ours.variables["runs"].get_int() == 4 * 34


@pytest.fixture(scope="module")
def firewall() -> Iterator[tuple[Collection, Any]]:
    spec = load_collection_spec(DATA / "xdp_fw.o")
    with Collection(spec, helpers=default_helpers()) as ours:
        theirs = MiniKernelCollection(spec)
        try:
            yield ours, theirs
        finally:
            theirs.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    saddr=st.integers(0, 2**32 - 1),
    proto=st.integers(0, 255),
    blocked=st.lists(st.tuples(st.integers(0, 32), st.integers(0, 2**32 - 1)), max_size=4),
    cut=st.integers(14, 60),
)
def test_xdp_firewall_random(
    firewall: tuple[Collection, Any], saddr: int, proto: int, blocked: list[tuple[int, int]], cut: int
) -> None:
    """Random packets (some truncated) and LPM blocklists: same verdicts, same maps after."""
    ours, theirs = firewall
    for side in (ours, theirs):
        for key in list(side.maps["blocklist"]):
            side.maps["blocklist"].delete(key)
        for plen, addr in blocked:
            side.maps["blocklist"].update(
                struct.pack("<I", plen) + struct.pack(">I", addr), struct.pack("<I", 1)
            )
    packet = ipv4(socket.inet_ntoa(struct.pack(">I", saddr)), proto=proto)[:cut]
    run_both(ours, theirs, "xdp_firewall", packet)
    compare_maps(ours, theirs)


EMPTY_THEN_SELF = """
    r6 = r1
    r1 = 0 ll
    r2 = *(u32 *)(r1 + 0)
    r2 += 1
    *(u32 *)(r1 + 0) = r2
    r1 = r6
    r2 = 0 ll
    r3 = 1
    call 12
    r1 = r6
    r2 = 0 ll
    r3 = 0
    call 12
    r0 = 2
    exit
"""


def test_tail_call_count_skips_empty_slots(
    both: Callable[[str | CollectionSpec], tuple[Collection, Any]],
) -> None:
    """A tail call into an empty slot does not count toward the limit of 33 (Linux 6.18, JIT)."""
    refs: list[Any] = [("value", ".bss", 0), ("map", "jump"), ("map", "jump")]
    prog = program("again", EMPTY_THEN_SELF, refs, type=ProgramType.XDP)
    spec = CollectionSpec(
        programs={"again": prog},
        maps={
            "jump": MapSpec("jump", MapType.PROG_ARRAY, 4, 4, 2, slots={0: "again"}),
            ".bss": global_map(".bss", bytes(4)),
        },
        variables={"runs": VariableSpec("runs", ".bss", 0, 4)},
    )
    ours, theirs = both(spec)
    run_both(ours, theirs, "again", b"\x00" * 14)
    compare_maps(ours, theirs)
    assert ours.variables["runs"].get_int() == 34


def test_raw_tracepoint_and_syscall_contexts(
    both: Callable[[str | CollectionSpec], tuple[Collection, Any]],
) -> None:
    """ctx_in as raw tracepoint arguments (read-only) and as a SYSCALL context (written back)."""
    raw = program("raw", "r0 = *(u64 *)(r1 + 0)\nr2 = *(u64 *)(r1 + 8)\nr0 += r2\nexit", [])
    raw.type, raw.section = ProgramType.RAW_TRACEPOINT, "raw_tp/sys_enter"
    text = "r0 = *(u32 *)(r1 + 0)\nr2 = *(u32 *)(r1 + 4)\nr0 -= r2\n*(u32 *)(r1 + 8) = r0\nexit"
    sys_prog = program("sys", text, [], type=ProgramType.SYSCALL)
    sys_prog.flags = 1 << 4  # BPF_F_SLEEPABLE, as libbpf loads "syscall" sections
    ours, theirs = both(CollectionSpec(programs={"raw": raw, "sys": sys_prog}, license="GPL"))
    for a, b in ((40, 2), (1, 2**40), (2**64 - 1, 3)):
        run_both(ours, theirs, "raw", b"", ctx_in=struct.pack("<QQ", a, b))
        run_both(ours, theirs, "sys", b"", ctx_in=struct.pack("<III", a & 0xFFFFFFFF, b & 0xFFFFFFFF, 7))


CORPUS = [
    "legacy_maps.o",
    "linked.o",
    "map_in_map.o",
    "nobtf.o",
    "samesec.o",
    "socket_filter.o",
    "subprogs.o",
    "tailcall.o",
    "tc_cls.o",
    "xdp_fw.o",
]
RUNNABLE = {
    ProgramType.XDP,
    ProgramType.SOCKET_FILTER,
    ProgramType.SCHED_CLS,
    ProgramType.SCHED_ACT,
    ProgramType.CGROUP_SKB,
}


@pytest.mark.parametrize("obj", CORPUS)
def test_corpus(both: Callable[[str | CollectionSpec], tuple[Collection, Any]], obj: str) -> None:
    """Every test-runnable program of the ELF corpus on a few frames, then every data map."""
    ours, theirs = both(obj)
    frames = (ipv4("10.0.0.1", proto=6), ipv4("10.0.0.2"), b"\x01" * 60, b"\x00" * 14)
    ran = 0
    for name, prog in ours.programs.items():
        if prog.type in RUNNABLE:
            for frame in frames:
                run_both(ours, theirs, name, frame)
            ran += 1
    assert ran
    compare_maps(ours, theirs)


SPILL_AND_SUBPROG = """
    r6 = r1
    *(u64 *)(r10 - 16) = r6
    r1 = 0
    r2 = *(u64 *)(r10 - 16)
    call sub
    r1 = *(u32 *)(r6 + 4)
    r0 += r1
    exit
sub:
    r0 = *(u32 *)(r2 + 28)
    exit
"""


def test_max_ctx_offset_is_the_kernels(
    both: Callable[[str | CollectionSpec], tuple[Collection, Any]],
) -> None:
    """Program.max_ctx_offset is the bound the kernel's test run enforces on ctx_in (EINVAL below)."""
    raw = program("raw", "r0 = *(u64 *)(r1 + 16)\nexit", [])
    raw.type, raw.section = ProgramType.RAW_TRACEPOINT, "raw_tp/sys_enter"
    sys_prog = program("sys", SPILL_AND_SUBPROG, [], type=ProgramType.SYSCALL)
    sys_prog.flags = 1 << 4  # BPF_F_SLEEPABLE
    ours, theirs = both(CollectionSpec(programs={"raw": raw, "sys": sys_prog}, license="GPL"))
    assert (ours.programs["raw"].max_ctx_offset, ours.programs["sys"].max_ctx_offset) == (24, 32)
    for name in ("raw", "sys"):
        bound = ours.programs[name].max_ctx_offset
        with pytest.raises(BPFError) as info:
            theirs.programs[name].test_run(b"", ctx_in=bytes(bound - 1))
        assert info.value.errno == errno.EINVAL  # type: ignore[attr-defined]
        assert theirs.programs[name].test_run(b"", ctx_in=bytes(bound)).retval == 0
