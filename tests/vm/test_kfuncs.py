"""Kfunc calls in the user-space runtime: the registry, both engines, relocation by name."""

from __future__ import annotations

import re
import struct

import pytest

from ebpf.errors import BudgetExceededError, NotSupportedError, VMError
from ebpf.isa import assemble
from ebpf.isa.encoding import slot_offsets
from ebpf.isa.opcodes import CallKind
from ebpf.isa.program import Program
from ebpf.runtime import Collection
from ebpf.spec import CollectionSpec, ProgramSpec, ProgramType, Relocation, RelocKind
from ebpf.vm import ENGINES
from ebpf.vm.kfuncs import BPF_MAX_LOOPS, KfuncFlag, KfuncRegistry, runtime_kfuncs
from ebpf.vm.memory import HostBuffer, Memory

ENGINE_NAMES = ("interp", "py")
KFUNCS = runtime_kfuncs()


def with_ids(text: str) -> str:
    """``kcall NAME`` -> ``call kfunc(ID)`` with the runtime's id for NAME."""
    return re.sub(r"kcall (\w+)", lambda m: f"call kfunc({KFUNCS.id_of(m.group(1))})", text)


def run(text: str, engine: str, data: bytes = b"", max_insns: int | None = None) -> tuple[int, int, bytes]:
    eng = ENGINES[engine](assemble(with_ids(text)), memory=Memory())
    res = eng.run(data, max_insns=max_insns)
    return res.retval, res.insns, res.data


def test_registry() -> None:
    reg = KfuncRegistry()
    a = reg.register("a", lambda env, *args: 1, "int a(void)")
    b = reg.register("b", lambda env, *args: 2, "int b(void)", KfuncFlag.RET_NULL)
    assert (a.id, b.id) == (1, 2)
    again = reg.register("a", lambda env, *args: 3, "int a(void)")
    assert again.id == 1 and reg[1] is again and reg.by_name("a") is again
    assert reg.names() == ["a", "b"] and len(reg) == 2 and list(reg) == [1, 2]
    assert reg.by_name("c") is None and 0 not in reg
    assert a.unmaps_memory  # by default a kfunc may unmap memory: engines drop their region caches
    reg.register("b", lambda env, *args: 2, "int b(void)", unmaps_memory=False)
    assert not reg.register("b", lambda env, *args: 4, "int b(void)").unmaps_memory  # kept on replace
    with pytest.raises(KeyError, match="no kfunc 'c'"):
        reg.id_of("c")


def test_runtime_kfuncs() -> None:
    assert runtime_kfuncs() is KFUNCS  # one registry: ids are stable
    for name in ("bpf_iter_num_new", "bpf_iter_num_next", "bpf_iter_num_destroy"):
        kfunc = KFUNCS.by_name(name)
        assert kfunc is not None and kfunc.id > 0 and name in kfunc.prototype
    next_ = KFUNCS.by_name("bpf_iter_num_next")
    assert next_ is not None and next_.flags == KfuncFlag.ITER_NEXT | KfuncFlag.RET_NULL


# r1 = data (s32 start, s32 end); sums the values of [start, end) into r7, counts them in r8.
SUM = """
r6 = r1
r7 = 0
r8 = 0
r2 = *(u32 *)(r6 + 0)
r3 = *(u32 *)(r6 + 4)
r1 = r10
r1 += -8
kcall bpf_iter_num_new
*(u32 *)(r6 + 8) = r0
loop:
r1 = r10
r1 += -8
kcall bpf_iter_num_next
if r0 == 0 goto done
r1 = *(s32 *)(r0 + 0)
r7 += r1
r8 += 1
goto loop
done:
r1 = r10
r1 += -8
kcall bpf_iter_num_destroy
*(u64 *)(r6 + 16) = r7
r1 = *(u64 *)(r10 - 8)
*(u64 *)(r6 + 24) = r1
r0 = r8
exit
"""
IO = struct.Struct("<iiIIqQ")


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize(
    ("start", "end", "ret"),
    [
        (0, 5, 0),
        (-3, 3, 0),
        (-3, 0, 0),
        (7, 7, 0),
        (2**31 - 3, 2**31 - 1, 0),
        (-(2**31), -(2**31) + 2, 0),
        (3, 2, 0xFFFFFFEA),  # -EINVAL, zero-extended: the kfunc returns a C int
        (0, BPF_MAX_LOOPS + 1, 0xFFFFFFF9),  # -E2BIG
        (-(2**31), 2**31 - 1, 0xFFFFFFF9),
    ],
)
def test_iter_num(engine: str, start: int, end: int, ret: int) -> None:
    r0, _, data = run(SUM, engine, IO.pack(start, end, 0, 0, 0, 0xAA))
    n = max(0, end - start) if ret == 0 else 0
    # the iterator is empty (all zero) after next() returned NULL, after destroy() and after a failure
    assert (r0, data) == (n, IO.pack(start, end, ret, 0, sum(range(start, end)) if n else 0, 0))


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_iter_num_state_layout(engine: str) -> None:
    """The 8 bytes of struct bpf_iter_num: the current value and the end, as s32s."""
    text = """
    r6 = r1
    r1 = r10
    r1 += -8
    r2 = -5
    r3 = 9
    kcall bpf_iter_num_new
    r1 = *(u64 *)(r10 - 8)
    *(u64 *)(r6 + 0) = r1
    r1 = r10
    r1 += -8
    kcall bpf_iter_num_next
    r0 -= r10
    *(u64 *)(r6 + 8) = r0
    r1 = *(u64 *)(r10 - 8)
    *(u64 *)(r6 + 16) = r1
    r0 = 0
    exit
    """
    _, _, data = run(text, engine, bytes(24))
    assert struct.unpack("<iiqii", data) == (-6, 9, -8, -5, 9)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_unknown_kfunc_id_faults(engine: str) -> None:
    text = "r0 = 1\ncall kfunc(0)\nexit"
    with pytest.raises(VMError, match="call to unknown kfunc 0") as info:
        run(text, engine)
    assert info.value.pc == 1


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_bad_iterator_pointer_faults(engine: str) -> None:
    text = with_ids("r1 = 16\nr2 = 0\nr3 = 1\nkcall bpf_iter_num_new\nexit")
    with pytest.raises(VMError) as info:
        run(text, engine)
    assert info.value.pc == 3


def test_budget_is_exact_on_both_engines() -> None:
    """A budget that runs out inside a kfunc loop: the same pc and count on both engines."""
    data = IO.pack(0, 1000, 0, 0, 0, 0)
    full = {e: run(SUM, e, data) for e in ENGINE_NAMES}
    assert full["py"] == full["interp"]
    for budget in (3, 50, 1001):
        errors = []
        for engine in ENGINE_NAMES:
            with pytest.raises(BudgetExceededError) as info:
                run(SUM, engine, data, max_insns=budget)
            errors.append((str(info.value), info.value.pc))
        assert errors[0] == errors[1]


def test_fast_tier_pays_nothing_without_kfuncs() -> None:
    py = ENGINES["py"]
    plain = py(assemble("r0 = 1\ncall 7\nexit"), memory=Memory())
    assert "kfuncs" not in plain.source  # type: ignore[attr-defined]
    uses = py(assemble(with_ids(SUM)), memory=Memory())
    assert "_E.kfuncs.get(" in uses.source  # type: ignore[attr-defined]


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_engine_kfuncs_can_be_replaced(engine: str) -> None:
    reg = KfuncRegistry()
    kid = reg.register("triple", lambda env, a, *rest: a * 3, "u64 triple(u64)").id
    eng = ENGINES[engine](assemble(f"r1 = 14\ncall kfunc({kid})\nexit"), memory=Memory())
    eng.kfuncs = reg
    assert eng.run(b"").retval == 42


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_iter_on_another_region(engine: str) -> None:
    """The iterator may live in any writable memory (the kernel wants the stack; no check here)."""
    memory = Memory()
    region = memory.map_buffer("it", HostBuffer(8))
    eng = ENGINES[engine](
        assemble(with_ids(f"r1 = {region.start} ll\nr2 = 1\nr3 = 3\nkcall bpf_iter_num_new\nexit")),
        memory=memory,
    )
    assert eng.run(b"").retval == 0
    assert struct.unpack("<ii", bytes(region.view)) == (0, 3)


# ---------------------------------------------------------------- relocation by name in the runtime


def spec_of(
    text: str, names: list[tuple[str, bool]], type: ProgramType = ProgramType.SYSCALL
) -> CollectionSpec:
    prog = assemble(text)
    slots = slot_offsets(prog.instructions)
    calls = [slots[i] for i, insn in enumerate(prog.instructions) if insn.src == CallKind.KFUNC]
    relocs = {
        slot: Relocation(RelocKind.KFUNC, name, weak=weak)
        for slot, (name, weak) in zip(calls, names, strict=True)
    }
    pspec = ProgramSpec("p", "syscall", type, Program(prog.instructions, prog.labels), relocations=relocs)
    return CollectionSpec(programs={"p": pspec}, license="GPL")


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_relocation_by_name(engine: str) -> None:
    text = "r6 = r1\nr1 = r10\nr1 += -8\nr2 = 2\nr3 = 5\ncall kfunc(-1)\n" + (
        "r1 = r10\nr1 += -8\ncall kfunc(-1)\nr0 = *(u32 *)(r0 + 0)\nexit"
    )
    spec = spec_of(text, [("bpf_iter_num_new", False), ("bpf_iter_num_next", False)])
    with Collection(spec, engine=engine) as coll:
        assert coll.programs["p"].test_run(b"", ctx_in=bytes(8)).retval == 2


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_unknown_kfunc_is_not_supported(engine: str) -> None:
    spec = spec_of("call kfunc(-1)\nexit", [("bpf_no_such_kfunc", False)])
    with pytest.raises(NotSupportedError, match="bpf_no_such_kfunc"):
        Collection(spec, engine=engine)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_missing_weak_kfunc_faults_only_when_called(engine: str) -> None:
    text = "r0 = *(u32 *)(r1 + 0)\nif r0 == 0 goto out\ncall kfunc(5)\nout:\nexit"
    spec = spec_of(text, [("bpf_no_such_kfunc", True)])
    with Collection(spec, engine=engine) as coll:
        prog = coll.programs["p"]
        assert prog.test_run(b"", ctx_in=bytes(4)).retval == 0
        with pytest.raises(VMError, match="unknown kfunc 0"):
            prog.test_run(b"", ctx_in=b"\x01\0\0\0")


# ---------------------------------------------------------------- dynptr kfuncs (kernel-checked in
# tests/differential/test_kfuncs_kernel.py; here without a kernel)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_dynptr_kfuncs(engine: str) -> None:
    from ebpf.vm.helpers import RunEnv

    from ._helper_util import make_engine

    env = RunEnv(deterministic=True)
    region = env.memory.map_buffer("buf", HostBuffer.from_bytes(bytes(range(10, 42))))
    text = with_ids(f"""
    r6 = r1
    r1 = {region.start} ll
    r2 = 16
    r3 = 0
    r4 = r10
    r4 += -16
    call 197
    r1 = r10
    r1 += -16
    r2 = r10
    r2 += -32
    kcall bpf_dynptr_clone
    r1 = r10
    r1 += -16
    r2 = 2
    r3 = 6
    kcall bpf_dynptr_adjust
    *(u32 *)(r6 + 0) = r0
    r1 = r10
    r1 += -16
    kcall bpf_dynptr_size
    *(u32 *)(r6 + 4) = r0
    r1 = r10
    r1 += -32
    kcall bpf_dynptr_size
    *(u32 *)(r6 + 8) = r0
    r1 = r10
    r1 += -16
    r2 = 0
    r3 = 0
    r4 = 4
    kcall bpf_dynptr_slice
    r0 = *(u32 *)(r0 + 0)
    *(u32 *)(r6 + 12) = r0
    r1 = r10
    r1 += -16
    r2 = 1
    r3 = 0
    r4 = 4
    kcall bpf_dynptr_slice_rdwr
    *(u64 *)(r6 + 16) = r0
    r1 = r10
    r1 += -16
    r2 = 5
    r3 = 7
    kcall bpf_dynptr_adjust
    *(u32 *)(r6 + 24) = r0
    r1 = r10
    r1 += -32
    r2 = 12
    r3 = 4
    r4 = 0x55
    kcall bpf_dynptr_memset
    *(u32 *)(r6 + 28) = r0
    r1 = r10
    r1 += -32
    kcall bpf_dynptr_is_null
    r0 = 0
    exit
    """)
    eng = make_engine(text, env, engine)
    env.begin_run()
    out = eng.run(bytes(32), env=env).data
    assert struct.unpack("<IIIIQII", out) == (0, 4, 16, 0x0F0E0D0C, 0, 0xFFFFFFDE, 0)
    assert bytes(region.view) == bytes(range(10, 22)) + b"\x55" * 4 + bytes(range(26, 42))


PACKET = """
r2 = 0
r3 = r10
r3 += -16
call kfunc(-1)
r1 = r10
r1 += -16
call kfunc(-1)
r6 = r0
r1 = r10
r1 += -16
call kfunc(-1)
r0 <<= 16
r0 |= r6
exit
"""


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize(
    ("type", "source", "expected"),
    [
        (ProgramType.SCHED_CLS, "bpf_dynptr_from_skb", 60),
        (ProgramType.SOCKET_FILTER, "bpf_dynptr_from_skb", (1 << 16) | 46),  # read-only, from L3
        (ProgramType.XDP, "bpf_dynptr_from_xdp", 60),
    ],
)
def test_packet_dynptr(engine: str, type: ProgramType, source: str, expected: int) -> None:
    names = [(source, False), ("bpf_dynptr_size", False), ("bpf_dynptr_is_rdonly", False)]
    with Collection(spec_of(PACKET, names, type), engine=engine) as coll:
        assert coll.programs["p"].test_run(bytes(12) + b"\x08\x00" + bytes(46)).retval == expected


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_packet_dynptr_of_a_multi_buffer_frame_is_not_supported(engine: str) -> None:
    names = [("bpf_dynptr_from_xdp", False), ("bpf_dynptr_size", False), ("bpf_dynptr_is_rdonly", False)]
    with Collection(spec_of(PACKET, names, ProgramType.XDP), engine=engine) as coll:
        prog = coll.programs["p"]
        assert prog.test_run(bytes(1000)).retval == 1000
        xdp_md = struct.pack("<IIIIII", 0, 100, 0, 1, 0, 0)  # 100 linear bytes, the rest in fragments
        with pytest.raises(NotSupportedError, match="multi-buffer"):
            prog.test_run(bytes(1000), ctx_in=xdp_md)


BITS = """
r6 = r1
r1 = r10
r1 += -16
r2 = r6
r3 = *(u32 *)(r6 + 24)
kcall bpf_iter_bits_new
r7 = r0
r8 = 0
loop:
r1 = r10
r1 += -16
kcall bpf_iter_bits_next
if r0 == 0 goto done
r1 = *(u32 *)(r0 + 0)
r8 <<= 8
r8 |= r1
goto loop
done:
r1 = r10
r1 += -16
kcall bpf_iter_bits_destroy
*(u64 *)(r6 + 32) = r8
r0 = r7
exit
"""


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize(
    ("words", "nr_words", "ret", "seen"),
    [
        ((0b1001, 0, 0), 1, 0, 0x0003),
        ((1 << 63, 1, 0x10), 3, 0, 0x3F4084),  # bits 63, 64 and 132 (one byte each in r8)
        ((5, 0, 0), 0, 0xFFFFFFEA, 0),
        ((5, 0, 0), 600, 0xFFFFFFF9, 0),
    ],
)
def test_iter_bits(engine: str, words: tuple[int, ...], nr_words: int, ret: int, seen: int) -> None:
    memory = Memory()
    eng = ENGINES[engine](assemble(with_ids(BITS)), memory=memory)
    res = eng.run(struct.pack("<3QIIQ", *words, nr_words, 0, 0))
    assert res.retval == ret and struct.unpack_from("<Q", res.data, 32)[0] == seen
    assert len(memory) == 0  # the run's regions are gone, the copy of the words too (destroy)


def test_string_kfuncs_direct() -> None:
    """The string kfuncs on the runtime's memory (kernel-checked in test_kfuncs_kernel.py)."""
    from ebpf.vm import _kfuncs_string as ks

    class Env:
        memory = Memory()

    env = Env()
    a = env.memory.map_buffer("a", HostBuffer.from_bytes(b"banana\0")).start
    b = env.memory.map_buffer("b", HostBuffer.from_bytes(b"nan\0")).start
    tail = env.memory.map_buffer("t", HostBuffer.from_bytes(b"abc")).start  # no NUL: runs off the region
    neg = lambda code: -code & 0xFFFFFFFF
    assert ks.strstr(env, a, b, 0, 0, 0) == 2
    assert ks.strnstr(env, a, b, 4, 0, 0) == neg(2)  # -ENOENT: "nan" is not within "bana"
    assert ks.strrchr(env, a, ord("a"), 0, 0, 0) == 5
    assert ks.strcmp(env, a, b, 0, 0, 0) == neg(1)
    assert ks.strspn(env, a, b, 0, 0, 0) == 0 and ks.strcspn(env, a, b, 0, 0, 0) == 1
    assert ks.strlen(env, tail, 0, 0, 0, 0) == neg(14)  # -EFAULT
    assert ks.strlen(env, 0x1000, 0, 0, 0, 0) == neg(34)  # -ERANGE
    assert ks.strlen(env, 0xFFFF_8000_0000_1000, 0, 0, 0, 0) == neg(14)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_iter_num_next_in_read_only_memory_faults(engine: str) -> None:
    memory = Memory()
    region = memory.map_buffer("ro", HostBuffer.from_bytes(struct.pack("<ii", 0, 5)), writable=False)
    eng = ENGINES[engine](
        assemble(with_ids(f"r1 = {region.start} ll\nkcall bpf_iter_num_next\nexit")), memory=memory
    )
    with pytest.raises(VMError, match="write") as info:
        eng.run(b"")
    assert info.value.pc == 2


def test_only_region_unmapping_kfuncs_drop_the_fast_tier_caches() -> None:
    assert {k.name for k in KFUNCS.values() if k.unmaps_memory} == {"bpf_iter_bits_destroy"}
    source = ENGINES["py"](assemble(with_ids(SUM)), memory=Memory()).source  # type: ignore[attr-defined]
    assert "if _h.unmaps_memory:" in source
