"""runtime.Collection on hand-built specs: maps, global data, kconfig, tail calls, callbacks."""

from __future__ import annotations

import errno
import struct

import pytest

from ebpf.errors import (
    BPFError,
    BudgetExceededError,
    NotSupportedError,
    RelocationError,
    TestRunError,
    VMError,
)
from ebpf.maps._errors import MapError
from ebpf.runtime import Collection, ContextInput, TestRunResult, kernel_version_code
from ebpf.spec import CollectionSpec, MapSpec, MapType, ProgramType, Relocation, RelocKind, VariableSpec
from ebpf.vm.pytier import PyTier

from ._build import default_helpers, global_map, program, test_helpers

ENGINES = ["interp", "py"]

COUNT = """
    *(u32 *)(r10 - 4) = 0
    r1 = 0 ll
    r2 = r10
    r2 += -4
    call 1
    if r0 == 0 goto out
    r1 = *(u64 *)(r0 + 0)
    r1 += 1
    *(u64 *)(r0 + 0) = r1
    r2 = 0 ll
    r2 = *(u32 *)(r2 + 0)
    r3 = 0 ll
    r4 = *(u32 *)(r3 + 0)
    r4 += r2
    *(u32 *)(r3 + 0) = r4
    r0 = r4
out:
    exit
"""


def counting_spec() -> CollectionSpec:
    prog = program("count", COUNT, [("map", "counts"), ("value", ".rodata", 0), ("value", ".bss", 4)])
    return CollectionSpec(
        programs={"count": prog},
        maps={
            "counts": MapSpec("counts", MapType.ARRAY, 4, 8, 4),
            ".rodata": global_map(".rodata", struct.pack("<I", 5), rodata=True),
            ".bss": global_map(".bss", bytes(8)),
        },
        variables={
            "step": VariableSpec("step", ".rodata", 0, 4),
            "other": VariableSpec("other", ".bss", 0, 4),
            "total": VariableSpec("total", ".bss", 4, 4),
        },
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_maps_and_global_data(engine: str) -> None:
    with Collection(counting_spec(), engine=engine, helpers=test_helpers()) as coll:
        prog = coll.programs["count"]
        assert prog.test_run().retval == 5
        with pytest.raises(TestRunError, match="repeat"):
            prog.test_run(repeat=3)  # the kernel's syscall test run cannot repeat (EINVAL)
        for _ in range(3):
            result = prog.test_run()
        assert isinstance(result, TestRunResult)
        assert result.retval == 20
        assert result.duration_ns > 0
        assert coll.maps["counts"][bytes(4)] == struct.pack("<Q", 4)
        assert coll.variables["total"].get_int() == 20
        coll.variables["total"].set(100)
        assert prog.test_run().retval == 105
        assert coll.variables["step"].get_int() == 5


@pytest.mark.parametrize("engine", ENGINES)
def test_rodata_is_read_only(engine: str) -> None:
    spec = counting_spec()
    spec.set_variable("step", 7)  # before loading: a skeleton's rodata
    spec.programs["store"] = program(
        "store", "r1 = 0 ll\n*(u32 *)(r1 + 0) = 1\nr0 = 0\nexit", [("value", ".rodata", 0)]
    )
    with Collection(spec, engine=engine, helpers=test_helpers()) as coll:
        assert coll.programs["count"].test_run().retval == 7
        with pytest.raises(VMError, match="read-only"):
            coll.programs["store"].test_run()
        with pytest.raises(MapError) as info:
            coll.maps[".rodata"].update(bytes(4), bytes(4))
        assert info.value.errno == errno.EPERM
        with pytest.raises(MapError) as info:
            coll.variables["step"].set(1)
        assert info.value.errno == errno.EPERM
        coll.maps[".bss"].update(bytes(4), struct.pack("<II", 0, 1))  # not frozen
        assert coll.programs["count"].test_run().retval == 8


def test_kconfig_externs() -> None:
    kconfig = MapSpec(
        ".kconfig", MapType.ARRAY, 4, 24, 1, flags=0x80, freeze=True, contents=[(bytes(4), bytes(24))]
    )
    spec = CollectionSpec(
        programs={"p": program("p", "r0 = 0\nexit", [])},
        maps={".kconfig": kconfig},
        variables={
            "LINUX_KERNEL_VERSION": VariableSpec("LINUX_KERNEL_VERSION", ".kconfig", 0, 4, extern=True),
            "CONFIG_HZ": VariableSpec("CONFIG_HZ", ".kconfig", 4, 4, extern=True),
            "CONFIG_BPF_JIT": VariableSpec("CONFIG_BPF_JIT", ".kconfig", 8, 1, extern=True),
            "CONFIG_MISSING": VariableSpec("CONFIG_MISSING", ".kconfig", 12, 4, extern=True, weak=True),
            "CONFIG_NAME": VariableSpec("CONFIG_NAME", ".kconfig", 16, 8, extern=True),
        },
    )
    values = {"CONFIG_HZ": "250", "CONFIG_BPF_JIT": "y", "CONFIG_NAME": '"abc"', "CONFIG_MISSING": "n"}
    del values["CONFIG_MISSING"]
    with Collection(spec, kconfig=values, kernel_release="6.18.3-foo") as coll:
        v = coll.variables
        assert v["LINUX_KERNEL_VERSION"].get_int() == (6 << 16) | (18 << 8) | 3
        assert v["CONFIG_HZ"].get_int() == 250
        assert v["CONFIG_BPF_JIT"].get_int() == 1
        assert v["CONFIG_MISSING"].get_int() == 0
        assert v["CONFIG_NAME"].get() == b"abc\0\0\0\0\0"
    with pytest.raises(RelocationError, match="CONFIG_HZ"):
        Collection(spec, kconfig={"CONFIG_BPF_JIT": 1, "CONFIG_NAME": '"x"'})
    assert kernel_version_code("5.4.300") == (5 << 16) | (4 << 8) | 255


TAIL = """
    r6 = r1
    r1 = 0 ll
    r2 = *(u32 *)(r1 + 0)
    r2 += 1
    *(u32 *)(r1 + 0) = r2
    r1 = r6
    r2 = 0 ll
    r3 = *(u32 *)(r6 + 0)
    call 12
    r0 = 1000
    exit
"""


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("helpers", ["runtime", "test"])
def test_tail_calls(engine: str, helpers: str) -> None:
    jump = MapSpec("jump", MapType.PROG_ARRAY, 4, 4, 4, slots={0: "entry", 1: "leaf"})
    spec = CollectionSpec(
        programs={
            "entry": program("entry", TAIL, [("value", ".bss", 0), ("map", "jump")]),
            "leaf": program("leaf", "r0 = *(u32 *)(r1 + 4)\nexit", []),
        },
        maps={"jump": jump, ".bss": global_map(".bss", bytes(4))},
        variables={"runs": VariableSpec("runs", ".bss", 0, 4)},
    )
    registry = default_helpers() if helpers == "runtime" else test_helpers()
    with Collection(spec, engine=engine, helpers=registry) as coll:
        entry = coll.programs["entry"]
        # slot 1: one tail call into "leaf", which returns the ctx's second word
        assert entry.test_run(ctx_in=struct.pack("<II", 1, 77)).retval == 77
        assert coll.variables["runs"].get_int() == 1
        # slot 0: "entry" calls itself; the kernel allows 33 tail calls, so 34 runs, then 1000
        coll.variables["runs"].set(0)
        result = entry.run(ContextInput(struct.pack("<II", 0, 0), writable=True))
        assert result.retval == 1000
        assert coll.variables["runs"].get_int() == 34
        assert result.insns == 33 * 9 + 11  # every program's instructions count, across the chain
        # an empty slot: the call falls through
        assert entry.test_run(ctx_in=struct.pack("<II", 3, 0)).retval == 1000
        del coll.maps["jump"][struct.pack("<I", 1)]
        assert entry.test_run(ctx_in=struct.pack("<II", 1, 0)).retval == 1000


LOOP = """
    *(u64 *)(r10 - 8) = 0
    r1 = 10
    r2 = 0 ll
    r3 = r10
    r3 += -8
    r4 = 0
    call 181
    r1 = *(u64 *)(r10 - 8)
    r0 <<= 32
    r0 |= r1
    exit
cb:
    r3 = *(u64 *)(r2 + 0)
    r3 += r1
    *(u64 *)(r2 + 0) = r3
    r0 = 0
    if r1 == 6 goto stop
    exit
stop:
    r0 = 1
    exit
"""


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("helpers", ["runtime", "test"])
def test_bpf_loop_callback(engine: str, helpers: str) -> None:
    spec = CollectionSpec(programs={"loop": program("loop", LOOP, [("func", "cb")])})
    registry = default_helpers() if helpers == "runtime" else test_helpers()
    with Collection(spec, engine=engine, helpers=registry) as coll:
        result = coll.programs["loop"].run(b"")
        assert result.retval == (7 << 32) | sum(range(7))
        assert result.insns == 11 + 6 * 6 + 7  # the program, then 7 callback calls
        with pytest.raises(BudgetExceededError, match="budget of 30"):
            coll.programs["loop"].run(b"", max_insns=30)  # the callbacks share the run's budget


FOR_EACH = """
    *(u64 *)(r10 - 8) = 0
    r1 = 0 ll
    r2 = 0 ll
    r3 = r10
    r3 += -8
    r4 = 0
    call 164
    r1 = *(u64 *)(r10 - 8)
    r0 <<= 32
    r0 |= r1
    exit
sum:
    r5 = *(u32 *)(r2 + 0)
    r6 = *(u64 *)(r3 + 0)
    r6 *= r5
    r7 = *(u64 *)(r4 + 0)
    r7 += r6
    *(u64 *)(r4 + 0) = r7
    *(u64 *)(r3 + 0) = r5
    r0 = 0
    exit
"""


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("helpers", ["runtime", "test"])
def test_for_each_map_elem_callback(engine: str, helpers: str) -> None:
    """A 4-argument callback (map, key, value, ctx) that reads the key and writes the value."""
    spec = CollectionSpec(
        programs={"each": program("each", FOR_EACH, [("map", "vals"), ("func", "sum")])},
        maps={"vals": MapSpec("vals", MapType.HASH, 4, 8, 8)},
    )
    registry = default_helpers() if helpers == "runtime" else test_helpers()
    with Collection(spec, engine=engine, helpers=registry) as coll:
        vals = coll.maps["vals"]
        for k, v in ((1, 10), (2, 20), (7, 3)):
            vals[struct.pack("<I", k)] = struct.pack("<Q", v)
        result = coll.programs["each"].run()
        assert result.retval == (3 << 32) | (10 + 40 + 21)
        assert {k: struct.unpack("<Q", v)[0] for k, v in vals.items()} == {
            struct.pack("<I", k): k for k in (1, 2, 7)
        }


@pytest.mark.parametrize("engine", ENGINES)
def test_per_run_cpu_and_percpu_maps(engine: str) -> None:
    text = """
    call 8
    *(u32 *)(r10 - 4) = 0
    r6 = r0
    r1 = 0 ll
    r2 = r10
    r2 += -4
    call 1
    if r0 == 0 goto out
    *(u64 *)(r0 + 0) = r6
out:
    r0 = r6
    exit
    """
    spec = CollectionSpec(
        programs={"cpu": program("cpu", text, [("map", "pcpu")])},
        maps={"pcpu": MapSpec("pcpu", MapType.PERCPU_ARRAY, 4, 8, 1)},
    )
    with Collection(spec, engine=engine, ncpus=4, helpers=test_helpers()) as coll:
        for cpu in (3, 1):
            assert coll.programs["cpu"].test_run(cpu=cpu).retval == cpu
        with pytest.raises(ValueError, match="cpu 4"):
            coll.programs["cpu"].test_run(cpu=4)
        values = [coll.maps["pcpu"].value_address(bytes(4), cpu) for cpu in range(4)]
        assert all(values)
        got = [coll.memory.load(a, 8) for a in values if a is not None]
        assert got == [0, 1, 0, 3]


def test_xdp_test_run_and_data_size_out() -> None:
    text = """
    r2 = *(u32 *)(r1 + 0)
    r3 = *(u32 *)(r1 + 4)
    r4 = r2
    r4 += 2
    if r4 > r3 goto out
    *(u16 *)(r2 + 0) = 0xaaaa
    r0 = 2
    exit
out:
    r0 = 1
    exit
    """
    spec = CollectionSpec(programs={"x": program("x", text, [], type=ProgramType.XDP)})
    with Collection(spec) as coll:
        x = coll.programs["x"]
        frame = bytes(range(1, 17))
        res = x.test_run(frame)
        assert (res.retval, res.data_out, res.ctx_out) == (2, b"\xaa\xaa" + frame[2:], None)
        md = struct.pack("<6I", 0, 16, 0, 1, 0, 0)
        res = x.test_run(frame, ctx_in=md)
        assert res.ctx_out is not None and struct.unpack("<6I", res.ctx_out)[:2] == (0, 16)
        with pytest.raises(TestRunError) as info:
            x.test_run(frame, data_size_out=2)
        assert info.value.errno == errno.ENOSPC
        assert info.value.result.data_out == b"\xaa\xaa"
        with pytest.raises(TestRunError) as info:
            x.test_run(b"\x01")  # shorter than an Ethernet header
        assert info.value.errno == errno.EINVAL
        with pytest.raises(TestRunError):
            x.test_run(frame, repeat=-1)
        with pytest.raises(TestRunError) as info:
            x.test_run(frame, ctx_in=md, ctx_size_out=8)
        assert info.value.errno == errno.ENOSPC and len(info.value.result.ctx_out) == 8
        with pytest.raises(TestRunError, match="flags"):
            x.test_run(frame, flags=4)
        with pytest.raises(NotSupportedError, match="live"):
            x.test_run(frame, flags=2)
        assert x.test_run(frame, flags=1).retval == 2


def test_errors_and_lifetime() -> None:
    spec = counting_spec()
    bad = spec.copy()
    bad.programs["count"].relocations[1].symbol = "nope"
    with pytest.raises(RelocationError, match="nope"):
        Collection(bad, helpers=test_helpers())
    unsupported = CollectionSpec(maps={"ev": MapSpec("ev", MapType.REUSEPORT_SOCKARRAY, 4, 8, 1)})
    with pytest.raises(NotSupportedError):
        Collection(unsupported)
    with pytest.raises(ValueError, match="engine"):
        Collection(spec, engine="nope")
    coll = Collection(spec, helpers=test_helpers())
    prog = coll.programs["count"]
    coll.close()
    coll.close()
    with pytest.raises(BPFError, match="closed"):
        prog.test_run()
    with pytest.raises(NotSupportedError):
        Collection(
            CollectionSpec(programs={"t": program("t", "r0 = 0\nexit", [], type=ProgramType.TRACEPOINT)})
        ).programs["t"].test_run()


UPDATE = """
    *(u32 *)(r10 - 4) = 7
    *(u64 *)(r10 - 16) = 42
    r1 = 0 ll
    r2 = r10
    r2 += -4
    r3 = r10
    r3 += -16
    r4 = 0
    call 2
    exit
"""


def test_frozen_map_stays_writable_for_programs() -> None:
    """BPF_MAP_FREEZE stops the syscall side only; without RDONLY_PROG programs still update."""
    frozen = MapSpec("frozen", MapType.HASH, 4, 8, 4, freeze=True)
    spec = CollectionSpec(
        programs={"up": program("up", UPDATE, [("map", "frozen")])}, maps={"frozen": frozen}
    )
    with Collection(spec, helpers=test_helpers()) as coll:
        assert coll.programs["up"].test_run().retval == 0
        m = coll.maps["frozen"]
        assert m[struct.pack("<I", 7)] == struct.pack("<Q", 42)
        for write in (lambda: m.update(bytes(4), bytes(8)), lambda: m.delete(struct.pack("<I", 7))):
            with pytest.raises(MapError) as info:
                write()
            assert info.value.errno == errno.EPERM


def test_kernel_symbols() -> None:
    """A weak __ksym that the runtime cannot provide is 0 (libbpf); a strong one cannot load."""
    prog = program("ks", "r0 = 0 ll\nexit", [("map", "unused")])
    slot = next(iter(prog.relocations))
    prog.relocations[slot] = Relocation(RelocKind.KSYM, "bpf_prog_active", weak=True)
    spec = CollectionSpec(programs={"ks": prog})
    with Collection(spec) as coll:
        assert coll.programs["ks"].test_run().retval == 0
    prog.relocations[slot] = Relocation(RelocKind.KSYM, "bpf_prog_active")
    with pytest.raises(NotSupportedError, match="bpf_prog_active"):
        Collection(spec)
    prog.relocations[slot] = Relocation(RelocKind.MAP, "nowhere")
    with pytest.raises(RelocationError, match="nowhere"):
        Collection(spec)
    prog.relocations = {0: Relocation(RelocKind.MAP, "m")}
    spec.maps["m"] = MapSpec("m", MapType.ARRAY, 4, 4, 1)
    spec.programs["ks"] = program("ks", "r0 = 1\nexit", [])
    spec.programs["ks"].relocations = {0: Relocation(RelocKind.MAP, "m")}
    with pytest.raises(RelocationError, match="not lddw"):
        Collection(spec)


def test_run_many_with_callbacks_keeps_the_callers_stack() -> None:
    """PyTier.run_many reuses stack buffers; a callback must not get the running frame's."""
    spec = CollectionSpec(programs={"loop": program("loop", LOOP, [("func", "cb")])})
    with Collection(spec, engine="py", helpers=test_helpers()) as coll:
        engine = coll.programs["loop"].engine
        assert isinstance(engine, PyTier)
        results = engine.run_many(b"", 3, env=coll.env)
        assert [r.retval for r in results] == [(7 << 32) | 21] * 3


def test_deterministic_helpers() -> None:
    """deterministic=True reaches the helpers: the same clock and random numbers every time."""
    text = "call 5\nr6 = r0\ncall 7\nr0 ^= r6\nexit"  # bpf_ktime_get_ns ^ bpf_get_prandom_u32
    spec = CollectionSpec(programs={"d": program("d", text, [])})
    values = set()
    for _ in range(2):
        with Collection(spec, deterministic=True) as coll:
            values.add(coll.programs["d"].run().retval)
            assert coll.env.deterministic
    assert len(values) == 1


def test_syscall_and_raw_tracepoint_runs_refused_like_the_kernel() -> None:
    """No data_in, no repeat, ctx_in covering max_ctx_offset and within the kernel's limits."""
    raw = program("raw", "r0 = *(u64 *)(r1 + 8)\nexit", [], type=ProgramType.RAW_TRACEPOINT)
    sys_prog = program("sys", "r0 = *(u32 *)(r1 + 4)\nexit", [])
    with Collection(CollectionSpec(programs={"raw": raw, "sys": sys_prog})) as coll:
        r, s = coll.programs["raw"], coll.programs["sys"]
        assert (r.max_ctx_offset, s.max_ctx_offset) == (16, 8)
        assert r.test_run(ctx_in=bytes(8) + bytes([7]) + bytes(7)).retval == 7
        assert s.test_run(ctx_in=bytes(4) + bytes([9, 0, 0, 0])).retval == 9
        refused = [
            lambda: r.test_run(ctx_in=bytes(15)),
            lambda: r.test_run(),
            lambda: r.test_run(ctx_in=bytes(104)),
            lambda: r.test_run(b"\x00" * 14, ctx_in=bytes(16)),
            lambda: s.test_run(ctx_in=bytes(7)),
            lambda: s.test_run(ctx_in=bytes(0x10000)),
            lambda: s.test_run(ctx_in=bytes(8), repeat=2),
            lambda: s.test_run(ctx_in=bytes(8), flags=1),
        ]
        for run in refused:
            with pytest.raises(TestRunError) as info:
                run()
            assert info.value.errno == errno.EINVAL
