"""Kfunc calls through the user-space runtime (both engines) and through the kernel.

Hand-assembled ``SEC("syscall")`` programs call kfuncs by name (``KFUNC`` relocations, which
each engine resolves: the runtime to its registry ids, the kernel loader to vmlinux BTF ids)
and write what the kfuncs returned into their context; each test runs the same inputs on both
sides with ``BPF_PROG_TEST_RUN`` and compares the return value and the context out.
"""

from __future__ import annotations

import os
import random
import re
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import dpkt
import pytest

from differential.test_objects_kernel import map_state
from ebpf.elf import load_collection_spec
from ebpf.errors import BPFError, NotSupportedError
from ebpf.isa import assemble
from ebpf.isa.encoding import slot_offsets
from ebpf.isa.opcodes import CallKind
from ebpf.isa.program import Program
from ebpf.runtime import Collection
from ebpf.spec import CollectionSpec, MapSpec, MapType, ProgramSpec, ProgramType, Relocation, RelocKind

pytestmark = pytest.mark.kernel

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
MAX_LOOPS = 8 * 1024 * 1024
BPF_F_SLEEPABLE = 1 << 4
BUF_MARK = 0x5EED5EED  # the lddw immediate that stands for the address of map "buf"
MAP_MARK = 0x5EED0000  # ... and for map "m"
SECTIONS = {
    ProgramType.SYSCALL: "syscall",
    ProgramType.XDP: "xdp",
    ProgramType.SCHED_CLS: "tc",
    ProgramType.SOCKET_FILTER: "socket",
}


def kfunc_program(name: str, text: str, type: ProgramType = ProgramType.SYSCALL) -> ProgramSpec:
    """A syscall ProgramSpec from assembly in which ``kcall NAME`` calls the kfunc ``NAME``."""
    names: list[str] = []

    def call(m: re.Match[str]) -> str:
        names.append(m.group(1))
        return "call kfunc(0)"

    text = re.sub(r"kcall (\w+)", call, text)
    text = re.sub(r"@buf\b", f"{BUF_MARK:#x} ll", text)  # rX = @buf: the map value of "buf"
    prog = assemble(re.sub(r"@map\b", f"{MAP_MARK:#x} ll", text))  # rX = @map: map "m"
    slots = slot_offsets(prog.instructions)
    calls = [
        slots[i]
        for i, insn in enumerate(prog.instructions)
        if insn.opcode == 0x85 and insn.src == CallKind.KFUNC
    ]
    assert len(calls) == len(names)
    relocations = {slot: Relocation(RelocKind.KFUNC, n) for slot, n in zip(calls, names, strict=True)}
    for i, insn in enumerate(prog.instructions):
        if insn.is_wide and insn.imm == BUF_MARK:
            relocations[slots[i]] = Relocation(RelocKind.MAP_VALUE, "buf", 0)
        elif insn.is_wide and insn.imm == MAP_MARK:
            relocations[slots[i]] = Relocation(RelocKind.MAP, "m")
    syscall = type == ProgramType.SYSCALL
    return ProgramSpec(
        name,
        SECTIONS[type],
        type,
        Program(prog.instructions, prog.labels),
        license="GPL",
        flags=BPF_F_SLEEPABLE if syscall else 0,  # syscall programs are sleepable
        relocations=relocations,
    )


Loader = Callable[..., tuple[Any, ...]]


@pytest.fixture
def both() -> Iterator[Loader]:
    """load(name, text[, type, map "m"]) -> (py runtime, interp runtime, kernel) collections."""
    from ebpf.kernel.collection import Collection as KernelCollection

    with ExitStack() as stack:

        def load(
            name: str,
            text: str,
            type: ProgramType = ProgramType.SYSCALL,
            m: MapSpec | None = None,
            buf_size: int = 64,
        ) -> tuple[Any, ...]:
            spec = CollectionSpec(programs={name: kfunc_program(name, text, type)}, license="GPL")
            if m is not None:
                spec.maps["m"] = m
                if m.inner is not None:
                    spec.maps[m.inner.name] = m.inner
            if "@buf" in text:  # 64 bytes of map value: bpf_dynptr_from_mem wants one, not the stack
                spec.maps["buf"] = MapSpec("buf", MapType.ARRAY, 4, buf_size, 1)
            sides = [stack.enter_context(Collection(spec, engine=e)) for e in ("py", "interp")]
            sides.append(stack.enter_context(KernelCollection(spec)))
            return tuple(sides)

        yield load


def outcome(side: Any, name: str, ctx: bytes | None, data: bytes) -> tuple[Any, ...]:
    try:
        res = side.programs[name].test_run(data, ctx_in=ctx)
    except (BPFError, OSError) as err:
        return ("error", getattr(err, "errno", None))
    if ctx is None:
        return ("ok", res.retval, bytes(res.data_out))
    return ("ok", res.retval, bytes(res.ctx_out))


def run_all(sides: tuple[Any, ...], name: str, ctx: bytes | None, data: bytes = b"") -> tuple[Any, ...]:
    """One test run on every side; all must agree. Returns the kernel's outcome: ("ok", r0,
    ctx_out, or data_out when no ctx goes in) or ("error", errno)."""
    results = [outcome(side, name, ctx, data) for side in sides]
    kernel = results[-1]
    where = f"ctx {ctx.hex() if ctx else None} data {data.hex()}"
    assert results[0] == kernel, f"py: {where}"
    assert results[1] == kernel, f"interp: {where}"
    return kernel


# ---------------------------------------------------------------- bpf_iter_num

# ctx: s32 start, s32 end, then u64 slots: new()'s r0, the first two next() values (-1: NULL),
# and a third next() after the iterator ran dry when the range was at most 2 long.
ITER_EDGES = """
r6 = r1
r1 = r10
r1 += -8
r2 = *(u32 *)(r6 + 0)
r3 = *(u32 *)(r6 + 4)
kcall bpf_iter_num_new
*(u64 *)(r6 + 8) = r0
r1 = r10
r1 += -8
kcall bpf_iter_num_next
r7 = -1
if r0 == 0 goto a
r7 = *(u32 *)(r0 + 0)
a:
*(u64 *)(r6 + 16) = r7
r1 = r10
r1 += -8
kcall bpf_iter_num_next
r7 = -1
if r0 == 0 goto b
r7 = *(u32 *)(r0 + 0)
b:
*(u64 *)(r6 + 24) = r7
r1 = r10
r1 += -8
kcall bpf_iter_num_next
r7 = -1
if r0 == 0 goto c
r7 = *(u32 *)(r0 + 0)
c:
*(u64 *)(r6 + 32) = r7
r1 = r10
r1 += -8
kcall bpf_iter_num_destroy
r0 = 0
exit
"""
EDGE = struct.Struct("<iiQQQQ")

EDGE_RANGES = [
    (0, 0),
    (0, 1),
    (0, 2),
    (5, 3),  # start > end: -EINVAL
    (-3, -1),
    (INT_MIN, INT_MIN + 2),
    (INT_MAX - 1, INT_MAX),
    (INT_MAX, INT_MAX),
    (INT_MIN, INT_MAX),  # too long: -E2BIG
    (0, MAX_LOOPS),
    (0, MAX_LOOPS + 1),
    (-1, MAX_LOOPS - 1),
    (-5, MAX_LOOPS),
    (INT_MAX, INT_MIN),
]


def test_iter_num_edges(both: Loader) -> None:
    sides = both("edges", ITER_EDGES)
    seen = set()
    for start, end in EDGE_RANGES:
        kernel = run_all(sides, "edges", EDGE.pack(start, end, 0, 0, 0, 0))
        assert kernel[0] == "ok"
        seen.add(EDGE.unpack(kernel[2])[2])
    assert seen == {0, 0xFFFFFFEA, 0xFFFFFFF9}  # 0, -EINVAL, -E2BIG (as the kernel's int: 32 bits)


# ctx: s32 start, s32 end, u64 sum of the values, u64 count (a bpf_for loop)
ITER_SUM = """
r6 = r1
r7 = 0
r8 = 0
r1 = r10
r1 += -8
r2 = *(u32 *)(r6 + 0)
r3 = *(u32 *)(r6 + 4)
kcall bpf_iter_num_new
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
*(u64 *)(r6 + 8) = r7
*(u64 *)(r6 + 16) = r8
r0 = r8
exit
"""
SUM = struct.Struct("<iiQQ")


def test_iter_num_loop(both: Loader) -> None:
    sides = both("sum", ITER_SUM)
    for start, end in [(0, 10), (-7, 3), (INT_MAX - 3, INT_MAX), (INT_MIN, INT_MIN + 4), (4, 4), (9, 2)]:
        kernel = run_all(sides, "sum", SUM.pack(start, end, 0, 0))
        n = max(0, end - start)
        assert kernel == ("ok", n, SUM.pack(start, end, sum(range(start, end)) & (2**64 - 1), n))


def test_iter_num_loop_long(both: Loader) -> None:
    """A bpf_repeat-sized range: every side runs 3000 iterations."""
    sides = both("sum", ITER_SUM)
    kernel = run_all(sides, "sum", SUM.pack(-1000, 2000, 0, 0))
    assert kernel[1] == 3000


# ---------------------------------------------------------------- RCU

RCU = """
r6 = r1
kcall bpf_rcu_read_lock
r1 = *(u64 *)(r6 + 0)
r1 += 1
*(u64 *)(r6 + 8) = r1
kcall bpf_rcu_read_unlock
r0 = 7
exit
"""


def test_rcu_read_lock(both: Loader) -> None:
    sides = both("rcu", RCU)
    assert run_all(sides, "rcu", struct.pack("<QQ", 41, 0)) == ("ok", 7, struct.pack("<QQ", 41, 42))


def test_preempt_disable(both: Loader) -> None:
    text = RCU.replace("rcu_read_lock", "preempt_disable").replace("rcu_read_unlock", "preempt_enable")
    sides = both("preempt", text)
    assert run_all(sides, "preempt", struct.pack("<QQ", 1, 0)) == ("ok", 7, struct.pack("<QQ", 1, 2))


# ---------------------------------------------------------------- dynptr kfuncs

BPF_FUNC_DYNPTR_FROM_MEM = 197


def buf_copy(pairs: list[tuple[int, int]], to_buf: bool) -> str:
    """Copy 32 bytes between the context (r6 + ctx_off) and the map value (r7 + buf_off)."""
    lines = []
    for ctx_off, buf_off in pairs:
        for k in range(0, 32, 8):
            ctx, buf = f"*(u64 *)(r6 + {ctx_off + k})", f"*(u64 *)(r7 + {buf_off + k})"
            src, dst = (ctx, buf) if to_buf else (buf, ctx)
            lines.append(f"r1 = {src}\n{dst} = r1")
    return "\n".join(lines)


def bounded(reg: str, ctx_off: int, label: str) -> str:
    """``reg`` = the u32 at ctx_off, at most 32 (the verifier wants a bounded size)."""
    return f"{reg} = *(u32 *)(r6 + {ctx_off})\nif {reg} <= 32 goto {label}\n{reg} = 32\n{label}:"


# ctx: u8 data[32]; u32 size, flags (1: a null dynptr), adjust start, end, slice offset, pad;
# then u64 results (see the program). A kfunc returning bool defines only the low byte of r0
# (the kernel left 0xffffff01 for true): the program masks it, as compiled C does.
DYN = f"""
r6 = r1
r7 = @buf
{buf_copy([(0, 0)], True)}
r1 = r7
{bounded("r2", 32, "sized")}
r3 = *(u32 *)(r6 + 36)
r4 = r10
r4 += -16
call {BPF_FUNC_DYNPTR_FROM_MEM}
*(u64 *)(r6 + 56) = r0
r1 = r10
r1 += -16
r2 = r10
r2 += -32
kcall bpf_dynptr_clone
*(u64 *)(r6 + 64) = r0
r1 = r10
r1 += -16
r2 = *(u32 *)(r6 + 40)
r3 = *(u32 *)(r6 + 44)
kcall bpf_dynptr_adjust
*(u64 *)(r6 + 72) = r0
r1 = r10
r1 += -16
kcall bpf_dynptr_size
*(u64 *)(r6 + 80) = r0
r1 = r10
r1 += -32
kcall bpf_dynptr_size
*(u64 *)(r6 + 88) = r0
r1 = r10
r1 += -16
kcall bpf_dynptr_is_null
r0 &= 0xff
*(u64 *)(r6 + 96) = r0
r1 = r10
r1 += -16
kcall bpf_dynptr_is_rdonly
r0 &= 0xff
*(u64 *)(r6 + 104) = r0
r1 = r10
r1 += -16
r2 = *(u32 *)(r6 + 48)
r3 = 0
r4 = 4
kcall bpf_dynptr_slice
r7 = -1
if r0 == 0 goto s1
r7 = *(u32 *)(r0 + 0)
s1:
*(u64 *)(r6 + 112) = r7
r7 = @buf
{buf_copy([(0, 0)], False)}
r0 = 0
exit
"""
DYN_IN = struct.Struct("<32sIIIIII")
DYN_CTX = DYN_IN.size + 8 * 9


def dyn_cases() -> list[tuple[int, ...]]:
    rng = random.Random(7)
    cases = [
        (32, 0, 0, 32, 0),
        (32, 0, 4, 12, 2),
        (32, 1, 0, 0, 0),  # a null dynptr: -EINVAL everywhere, NULL slices
        (16, 0, 9, 3, 0),  # start > end: -EINVAL
        (16, 0, 3, 17, 0),  # end > size: -ERANGE
        (16, 0, 17, 17, 0),
        (20, 0, 20, 20, 0),
        (8, 0, 0, 8, 4),
        (8, 0, 0, 8, 5),  # a 4-byte slice past the end: NULL
        (0, 0, 0, 0, 0),
        (33, 0, 0, 0, 0),  # size clamped to 32 by the program
        (32, 2, 0, 1, 0),  # unknown flags: -EINVAL
    ]
    for _ in range(28):
        size = rng.randrange(0, 33)
        cases.append(
            (size, 0, rng.randrange(0, size + 3), rng.randrange(0, size + 3), rng.randrange(0, size + 2))
        )
    return cases


def test_dynptr_kfuncs(both: Loader) -> None:
    sides = both("dyn", DYN)
    seen = set()
    for size, flags, start, end, off in dyn_cases():
        ctx = DYN_IN.pack(bytes(range(100, 132)), size, flags, start, end, off, 0) + bytes(8 * 9)
        assert len(ctx) == DYN_CTX
        kernel = run_all(sides, "dyn", ctx)
        assert kernel[0] == "ok"
        seen.add(struct.unpack_from("<Q", kernel[2], 72)[0])
    assert seen == {0, 0xFFFFFFEA, 0xFFFFFFDE}  # adjust: 0, -EINVAL, -ERANGE


# ctx: u8 a[32], b[32]; u32 size_a, size_b, dst_off, src_off, n, memset off, memset n, flags of b
# (1: b is null); u64 copy's r0, memset's r0
DYN_COPY = f"""
r6 = r1
r7 = @buf
{buf_copy([(0, 0), (32, 32)], True)}
r1 = r7
{bounded("r2", 64, "a")}
r3 = 0
r4 = r10
r4 += -16
call {BPF_FUNC_DYNPTR_FROM_MEM}
r1 = r7
r1 += 32
{bounded("r2", 68, "b")}
r3 = *(u32 *)(r6 + 92)
r4 = r10
r4 += -112
call {BPF_FUNC_DYNPTR_FROM_MEM}
r1 = r10
r1 += -112
r2 = *(u32 *)(r6 + 72)
r3 = r10
r3 += -16
r4 = *(u32 *)(r6 + 76)
r5 = *(u32 *)(r6 + 80)
kcall bpf_dynptr_copy
*(u64 *)(r6 + 96) = r0
r1 = r10
r1 += -112
r2 = *(u32 *)(r6 + 84)
r3 = *(u32 *)(r6 + 88)
r4 = 0x15a
kcall bpf_dynptr_memset
*(u64 *)(r6 + 104) = r0
{buf_copy([(0, 0), (32, 32)], False)}
r0 = 0
exit
"""
COPY_IN = struct.Struct("<32s32sIIIIIIII")


def copy_cases() -> list[tuple[int, ...]]:
    rng = random.Random(11)
    cases = [
        (32, 32, 0, 0, 32, 0, 32, 0),
        (32, 32, 4, 0, 8, 30, 2, 0),
        (8, 32, 0, 4, 8, 0, 0, 0),  # the source is too short: -E2BIG
        (32, 8, 4, 0, 8, 8, 1, 0),  # the destination is too short, memset past the end
        (32, 32, 0, 0, 8, 0, 4, 1),  # the destination is null: -EINVAL; memset of a null: -E2BIG
        (32, 32, 0, 0, 0, 0, 0, 1),  # null destination, nothing to copy
        (16, 16, 2, 3, 0, 16, 0, 0),
    ]
    for _ in range(30):
        sa, sb = rng.randrange(0, 33), rng.randrange(0, 33)
        cases.append(
            (
                sa,
                sb,
                rng.randrange(0, sb + 2),
                rng.randrange(0, sa + 2),
                rng.randrange(0, 12),
                rng.randrange(0, sb + 2),
                rng.randrange(0, 12),
                rng.choice([0, 0, 0, 1]),
            )
        )
    return cases


def test_dynptr_copy_memset(both: Loader) -> None:
    sides = both("dcopy", DYN_COPY)
    seen = set()
    for case in copy_cases():
        ctx = COPY_IN.pack(bytes(range(32)), bytes(range(200, 232)), *case) + bytes(16)
        kernel = run_all(sides, "dcopy", ctx)
        assert kernel[0] == "ok"
        seen.update(struct.unpack_from("<QQ", kernel[2], 96))
    assert seen == {0, 0xFFFFFFEA, 0xFFFFFFF9}


# XDP (the verifier lets only packet programs write through bpf_dynptr_slice_rdwr): a dynptr
# over packet[0] bytes of the map value; a 2-byte writable slice at packet[1] gets 0xbeef. The
# packet gets the slice's success at [2] and the map value's first 32 bytes at [16, 48).
RDWR = f"""
r6 = r1
r2 = *(u32 *)(r6 + 0)
r3 = *(u32 *)(r6 + 4)
r1 = r2
r1 += 48
if r1 > r3 goto out
r8 = *(u8 *)(r2 + 1)
r7 = @buf
r1 = r7
r4 = *(u8 *)(r2 + 0)
r2 = r4
if r2 <= 32 goto sized
r2 = 32
sized:
r3 = 0
r4 = r10
r4 += -16
call {BPF_FUNC_DYNPTR_FROM_MEM}
r1 = r10
r1 += -16
r2 = r8
r3 = 0
r4 = 2
kcall bpf_dynptr_slice_rdwr
r9 = 0
if r0 == 0 goto done
r1 = 0xbeef
*(u16 *)(r0 + 0) = r1
r9 = 1
done:
r2 = *(u32 *)(r6 + 0)
r3 = *(u32 *)(r6 + 4)
r1 = r2
r1 += 48
if r1 > r3 goto out
*(u8 *)(r2 + 2) = r9
r6 = r2
r6 += 16
{buf_copy([(0, 0)], False)}
out:
r0 = 2
exit
"""


def test_dynptr_slice_rdwr(both: Loader) -> None:
    sides = both("rdwr", RDWR, ProgramType.XDP)
    seen = set()
    for size, off in [(32, 0), (32, 30), (32, 31), (4, 2), (4, 3), (0, 0), (40, 31), (2, 0), (8, 6)]:
        packet = bytes([size, off]) + bytes(62)
        kernel = run_all(sides, "rdwr", None, packet)
        assert kernel[0] == "ok"
        seen.add(kernel[2][2])
    assert seen == {0, 1}


# ---------------------------------------------------------------- packet dynptrs

BPF_FUNC_DYNPTR_READ, BPF_FUNC_DYNPTR_WRITE = 201, 202


def packet_program(source: str, flags: int, rdwr: bool) -> str:
    """A dynptr over the packet; r0 sums up what each call gave: bits 0-15 the size, 16 read-only,
    17 a 4-byte slice at 12 (its second byte in bits 24-31), 18 a writable 2-byte slice at 14
    (0x4242 written), 19 dynptr_read of 4 bytes at 20, 20 dynptr_write of them at 30, 21
    the constructor failed. The packet comes out with the writes."""
    writable = """
r1 = r10
r1 += -16
r2 = 14
r3 = 0
r4 = 2
kcall bpf_dynptr_slice_rdwr
if r0 == 0 goto nordwr
r1 = 0x4242
*(u16 *)(r0 + 0) = r1
r8 |= 0x40000
nordwr:
"""
    return f"""
r6 = r1
r2 = {flags}
r3 = r10
r3 += -16
kcall {source}
r7 = r0
r1 = r10
r1 += -16
kcall bpf_dynptr_size
r8 = r0
r8 &= 0xffff
r1 = r10
r1 += -16
kcall bpf_dynptr_is_rdonly
r0 &= 1
r0 <<= 16
r8 |= r0
r1 = r10
r1 += -16
r2 = 12
r3 = r10
r3 += -48
r4 = 4
kcall bpf_dynptr_slice
if r0 == 0 goto noslice
r1 = *(u8 *)(r0 + 1)
r1 <<= 24
r8 |= r1
r8 |= 0x20000
noslice:
{writable if rdwr else ""}
r1 = r10
r1 += -56
r2 = 4
r3 = r10
r3 += -16
r4 = 20
r5 = 0
call {BPF_FUNC_DYNPTR_READ}
if r0 != 0 goto noread
r8 |= 0x80000
noread:
r1 = r10
r1 += -16
r2 = 30
r3 = r10
r3 += -56
r4 = 4
r5 = 0
call {BPF_FUNC_DYNPTR_WRITE}
if r0 != 0 goto nowrite
r8 |= 0x100000
nowrite:
if r7 == 0 goto made
r8 |= 0x200000
made:
r0 = r8
exit
"""


PACKET_TYPES = [
    (ProgramType.SCHED_CLS, "bpf_dynptr_from_skb", True),
    (ProgramType.XDP, "bpf_dynptr_from_xdp", True),
    (ProgramType.SOCKET_FILTER, "bpf_dynptr_from_skb", False),  # read-only: from_skb_rdonly
]


@pytest.mark.parametrize(("type", "source", "rdwr"), PACKET_TYPES, ids=[t.name for t, _, _ in PACKET_TYPES])
@pytest.mark.parametrize("flags", [0, 1])
def test_packet_dynptrs(both: Loader, type: ProgramType, source: str, rdwr: bool, flags: int) -> None:
    sides = both("pkt", packet_program(source, flags, rdwr), type)
    rets = set()
    for size in (14, 15, 16, 24, 33, 34, 60, 128):  # 14: skb test runs refuse it (EINVAL)
        packet = bytes([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 2, 0, 0, 0, 0, 1, 8, 0]) + bytes(
            range(0x30, 0x30 + size - 14)
        )
        kernel = run_all(sides, "pkt", None, packet)
        rets.add(kernel[1])
    assert len(rets) >= (1 if flags else 4)


# ---------------------------------------------------------------- a libbpf-style object

DATA = Path(__file__).resolve().parent.parent / "data" / "kfuncs"


@pytest.fixture(params=["py", "interp"])
def kfuncs_obj(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    """(runtime collection on one engine, kernel collection) of tests/data/kfuncs/kfuncs.o."""
    from ebpf.kernel.collection import Collection as KernelCollection

    spec = load_collection_spec(DATA / "kfuncs.o")
    with Collection(spec, engine=request.param) as ours, KernelCollection(spec) as theirs:
        yield ours, theirs


def compare_maps(ours: Any, theirs: Any) -> None:
    for name, mspec in ours.spec.maps.items():
        assert map_state(ours.maps[name], mspec) == map_state(theirs.maps[name], mspec), name


def run_pair(
    ours: Any, theirs: Any, prog: str, data: bytes = b"", ctx: bytes | None = None
) -> tuple[Any, ...]:
    kernel = outcome(theirs, prog, ctx, data)
    assert outcome(ours, prog, ctx, data) == kernel, (
        f"{prog}: data {data.hex()} ctx {ctx.hex() if ctx else None}"
    )
    return kernel


def ip4_packet(proto: int, ttl: int, payload: bytes = b"0123456789abcdef") -> bytes:
    l4 = dpkt.udp.UDP(sport=1, dport=2, data=payload) if proto == 17 else payload
    ip = dpkt.ip.IP(src=b"\x0a\0\0\x01", dst=b"\x0a\0\0\x02", p=proto, ttl=ttl, data=l4)
    ip.len = len(bytes(ip))
    return b"\x02\0\0\0\0\x0b\x02\0\0\0\0\x0a\x08\x00" + bytes(ip)


def test_object_tc_dynptr(kfuncs_obj: tuple[Any, Any]) -> None:
    ours, theirs = kfuncs_obj
    verdicts = set()
    for packet in (
        ip4_packet(6, 64),
        ip4_packet(17, 2),
        ip4_packet(1, 1),  # TTL 1: shot
        ip4_packet(17, 0),
        ip4_packet(47, 255, b"x" * 100),
        b"\x02\0\0\0\0\x0b\x02\0\0\0\0\x0a\x86\xdd" + bytes(40),  # IPv6: untouched
        b"\x02\0\0\0\0\x0b\x02\0\0\0\0\x0a\x08\x00" + bytes(10),  # too short for an IPv4 header
        b"\x02\0\0\0\0\x0b\x02\0\0\0\0\x0a\x08\x06" + bytes(28),  # ARP
    ):
        verdicts.add(run_pair(ours, theirs, "tc_dynptr", packet)[1])
    assert {0, 2} <= verdicts
    compare_maps(ours, theirs)
    assert sum(
        int.from_bytes(v, "little")
        for v in map_state(theirs.maps["proto_bytes"], ours.spec.maps["proto_bytes"]).values()
    )


def test_object_xdp_dynptr(kfuncs_obj: tuple[Any, Any]) -> None:
    ours, theirs = kfuncs_obj
    rng = random.Random(3)
    for size in (14, 15, 17, 18, 22, 60, 61, 64, 200):
        assert run_pair(ours, theirs, "xdp_dynptr", rng.randbytes(size))[1] == 2
    compare_maps(ours, theirs)


JOB = struct.Struct("<IIIIqqQ")


def test_object_jobs(kfuncs_obj: tuple[Any, Any]) -> None:
    ours, theirs = kfuncs_obj
    results = set()
    for n, fill, copy_from, copy_len in [
        (0, 0, 0, 32),
        (5, 56, 8, 16),
        (1000, 57, 33, 31),  # copy past the end: -E2BIG; memset past the end: -E2BIG
        (3, 64, 32, 33),
        (-4 & 0xFFFFFFFF, 100, 0, 0),  # bpf_repeat(-4): -EINVAL, no rounds
        (20_000, 8, 60, 4),
    ]:
        kernel = run_pair(ours, theirs, "jobs", ctx=JOB.pack(n, fill, copy_from, copy_len, 0, 0, 0))
        assert kernel[0] == "ok"
        results.add(JOB.unpack(kernel[2])[4:])
        compare_maps(ours, theirs)
    assert len(results) >= 5


def test_object_is_the_one_build_sh_makes() -> None:
    """The committed kfuncs.o is current (clang-19 and the running kernel's BTF)."""
    proc = subprocess.run(
        ["sh", str(DATA / "build.sh"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, PYTHON=sys.executable),
    )
    if proc.returncode != 0 and "not found" in proc.stderr:
        pytest.skip(proc.stderr.strip())
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------- bpf_iter_bits

# ctx: u64 words[16]; u32 nr_words, mode (0: the words, 1: NULL, 2: a user-space address,
# 3: an unmapped kernel address);
# u64 new()'s r0, the number of set bits seen, their sum, the last one (-1: none)
ITER_BITS = """
r6 = r1
r2 = r6
r1 = *(u32 *)(r6 + 132)
if r1 == 0 goto pointed
r2 = 0
if r1 == 1 goto pointed
r2 = 0x1000
if r1 == 2 goto pointed
r2 = 0xffff800000001000 ll
pointed:
r1 = r10
r1 += -16
r3 = *(u32 *)(r6 + 128)
kcall bpf_iter_bits_new
*(u64 *)(r6 + 136) = r0
r7 = 0
r8 = 0
r9 = -1
loop:
r1 = r10
r1 += -16
kcall bpf_iter_bits_next
if r0 == 0 goto done
r1 = *(u32 *)(r0 + 0)
r7 += 1
r8 += r1
r9 = r1
goto loop
done:
r1 = r10
r1 += -16
kcall bpf_iter_bits_destroy
*(u64 *)(r6 + 144) = r7
*(u64 *)(r6 + 152) = r8
*(u64 *)(r6 + 160) = r9
r0 = 0
exit
"""
BITS_IN = struct.Struct("<16QII")


def test_iter_bits(both: Loader) -> None:
    sides = both("bits", ITER_BITS)
    rng = random.Random(5)
    words = [0x8000_0000_0000_0001, 0, 0xF0, 1 << 63, *(rng.getrandbits(64) for _ in range(12))]
    rets = set()
    for nr_words, mode in [
        (1, 0),
        (2, 0),
        (3, 0),
        (16, 0),
        (0, 0),
        (1, 1),
        (4, 1),
        (1, 2),
        (5, 2),
        (512, 0),
        (511, 1),
    ]:
        ctx = BITS_IN.pack(*words, nr_words, mode) + bytes(32)
        kernel = run_all(sides, "bits", ctx)
        assert kernel[0] == "ok"
        ret, count, total, last = struct.unpack_from("<QQQq", kernel[2], 136)
        rets.add(ret)
        if ret == 0:
            bits = [i for i in range(64 * nr_words) if words[i // 64] >> (i % 64) & 1]
            assert (count, total, last) == (len(bits), sum(bits), bits[-1] if bits else -1)
    assert rets == {0, 0xFFFFFFEA, 0xFFFFFFF9, 0xFFFFFFF2, 0xFFFFFFDE}  # 0, -EINVAL, -E2BIG, -EFAULT, -ERANGE


# ---------------------------------------------------------------- bpf_map_sum_elem_count


def count_program(lpm: bool) -> str:
    """XDP: insert keys 0..n-1 (n = packet[0] <= 8) into map m, delete key 0 when n >= 2, and
    return bpf_map_sum_elem_count(m)."""
    if lpm:
        key = "r1 = 32\n*(u32 *)(r10 - 8) = r1\n*(u32 *)(r10 - 4) = {reg}"
    else:
        key = "*(u32 *)(r10 - 8) = {reg}"
    return f"""
r2 = *(u32 *)(r1 + 0)
r3 = *(u32 *)(r1 + 4)
r1 = r2
r1 += 1
if r1 > r3 goto out
r8 = *(u8 *)(r2 + 0)
if r8 > 8 goto out
r7 = 0
loop:
if r7 >= r8 goto count
{key.format(reg="r7")}
*(u64 *)(r10 - 16) = r7
r1 = @map
r2 = r10
r2 += -8
r3 = r10
r3 += -16
r4 = 0
call 2
r7 += 1
goto loop
count:
if r8 < 2 goto counted
r6 = 0
{key.format(reg="r6")}
r1 = @map
r2 = r10
r2 += -8
call 3
counted:
r1 = @map
kcall bpf_map_sum_elem_count
exit
out:
r0 = 99
exit
"""


COUNT_MAPS = [
    (MapType.HASH, 0),
    (MapType.HASH, 1),  # BPF_F_NO_PREALLOC
    (MapType.LRU_HASH, 0),
    (MapType.PERCPU_HASH, 0),
    (MapType.LRU_PERCPU_HASH, 0),
    (MapType.ARRAY, 0),
    (MapType.PERCPU_ARRAY, 0),
    (MapType.LPM_TRIE, 1),
]


@pytest.mark.parametrize(("mtype", "flags"), COUNT_MAPS, ids=[f"{t.name}-{f}" for t, f in COUNT_MAPS])
def test_map_sum_elem_count(both: Loader, mtype: MapType, flags: int) -> None:
    lpm = mtype == MapType.LPM_TRIE
    m = MapSpec("m", mtype, 8 if lpm else 4, 8, 16, flags=flags)
    sides = both("count", count_program(lpm), ProgramType.XDP, m)
    counts = [run_all(sides, "count", None, bytes([n]) + bytes(63))[1] for n in (0, 1, 5, 8, 3)]
    counted = mtype in (MapType.HASH, MapType.LRU_HASH, MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH)
    assert counts == ([0, 1, 4, 7, 7] if counted else [0] * 5)


def test_map_sum_elem_count_of_maps(both: Loader) -> None:
    """A hash of maps counts its slots (programs cannot update it: filled at load time)."""
    inner = MapSpec("inner", MapType.ARRAY, 4, 8, 1)
    for mtype, expected in ((MapType.HASH_OF_MAPS, 3), (MapType.ARRAY_OF_MAPS, 0)):
        m = MapSpec("m", mtype, 4, 4, 8, inner=inner, slots={1: "inner", 5: "inner", 6: "inner"})
        text = "r1 = @map\nkcall bpf_map_sum_elem_count\nexit"
        sides = both(f"count_{mtype.name.lower()}", text, ProgramType.XDP, m)
        assert run_all(sides, f"count_{mtype.name.lower()}", None, bytes(64))[1] == expected


# ---------------------------------------------------------------- string kfuncs (Linux 6.17+)

# ctx: char s1[32], s2[32]; u8 c; pad; u32 count; pad; then one u64 per call (r0 as stored)
STRINGS = [
    ("bpf_strcmp", "r2 = r6\nr2 += 32"),
    ("bpf_strcasecmp", "r2 = r6\nr2 += 32"),
    ("bpf_strchr", "r2 = *(u8 *)(r6 + 64)"),
    ("bpf_strchrnul", "r2 = *(u8 *)(r6 + 64)"),
    ("bpf_strnchr", "r2 = *(u32 *)(r6 + 68)\nr3 = *(u8 *)(r6 + 64)"),
    ("bpf_strrchr", "r2 = *(u8 *)(r6 + 64)"),
    ("bpf_strlen", ""),
    ("bpf_strnlen", "r2 = *(u32 *)(r6 + 68)"),
    ("bpf_strspn", "r2 = r6\nr2 += 32"),
    ("bpf_strcspn", "r2 = r6\nr2 += 32"),
    ("bpf_strstr", "r2 = r6\nr2 += 32"),
    ("bpf_strnstr", "r2 = r6\nr2 += 32\nr3 = *(u32 *)(r6 + 68)"),
]
STR_OUT = 80
STRING_PROGRAM = (
    "r6 = r1\n"
    + "".join(
        f"r1 = r6\n{args}\nkcall {name}\n*(u64 *)(r6 + {STR_OUT + 8 * i}) = r0\n"
        for i, (name, args) in enumerate(STRINGS)
    )
    + (
        # bad pointers: a user-space address (-ERANGE) and an unmapped kernel one (-EFAULT)
        f"r1 = 0x1000\nkcall bpf_strlen\n*(u64 *)(r6 + {STR_OUT + 8 * len(STRINGS)}) = r0\n"
        f"r1 = 0xffff800000001000 ll\nkcall bpf_strlen\n*(u64 *)(r6 + {STR_OUT + 8 * len(STRINGS) + 8}) = r0\n"
        f"r1 = r6\nr2 = 0x1000\nkcall bpf_strcmp\n*(u64 *)(r6 + {STR_OUT + 8 * len(STRINGS) + 16}) = r0\n"
        "r0 = 0\nexit\n"
    )
)
STR_IN = struct.Struct("<32s32sBxxxI8x")


def string_cases() -> list[tuple[bytes, bytes, int, int]]:
    rng = random.Random(9)
    cases = [
        (b"hello", b"hello", ord("l"), 3),
        (b"hello", b"help", ord("z"), 10),
        (b"Hello World", b"hELLO wORLD", ord("o"), 5),
        (b"caf\xc9", b"CAF\xe9", 0xE9, 4),  # Latin-1 case folding; a byte above 0x7f
        (b"\x80abc", b"\x01abc", 0x80, 2),  # signed chars: 0x80 < 0x01
        (b"", b"", 0, 0),
        (b"abcabc", b"", ord("c"), 6),
        (b"aaab", b"ab", ord("a"), 3),
        (b"banana", b"nan", ord("n"), 4),
        (b"banana", b"nan", ord("n"), 5),
        (b"banana", b"ana", ord("a"), 100),
        (b"xyz", b"xyz!", ord("y"), 2),
        (b"123abc", b"0123456789", ord("3"), 1),
        (b"a" * 31, b"a" * 30, ord("a"), 31),
    ]
    alphabet = b"abcAB\xe1\xc1\x7f\x80"
    for _ in range(30):
        s1 = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))
        s2 = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 5)))
        cases.append((s1, s2, rng.choice(alphabet), rng.randrange(0, 14)))
    return cases


def test_string_kfuncs(both: Loader) -> None:
    try:
        sides = both("strings", STRING_PROGRAM)
    except NotSupportedError as err:  # the kernel's BTF has no string kfuncs (before 6.17)
        pytest.skip(str(err))
    seen: set[int] = set()
    for s1, s2, c, count in string_cases():
        ctx = STR_IN.pack(s1, s2, c, count) + bytes(8 * (len(STRINGS) + 3))
        kernel = run_all(sides, "strings", ctx)
        assert kernel[0] == "ok"
        seen.update(struct.unpack_from(f"<{len(STRINGS) + 3}Q", kernel[2], STR_OUT))
    errors = {0xFFFFFFFE, 0xFFFFFFDE, 0xFFFFFFF2}  # -ENOENT, -ERANGE, -EFAULT
    assert errors <= seen and {0, 1, 0xFFFFFFFF} <= seen


def test_string_kfuncs_too_long(both: Loader) -> None:
    """Strings that do not end within XATTR_SIZE_MAX (65536) bytes: -E2BIG."""
    text = (
        "r6 = r1\nr7 = @buf\nr8 = 0\n"
        "fill:\nr1 = r7\nr1 += r8\nr2 = 0x61\n*(u8 *)(r1 + 0) = r2\nr8 += 1\nif r8 < 70000 goto fill\n"
        "r1 = r7\nkcall bpf_strlen\n*(u64 *)(r6 + 0) = r0\n"
        "r1 = r7\nr2 = 0x62\nkcall bpf_strchr\n*(u64 *)(r6 + 8) = r0\n"
        "r1 = r7\nr2 = r7\nkcall bpf_strcmp\n*(u64 *)(r6 + 16) = r0\n"
        "r1 = r7\nr2 = 70000\nkcall bpf_strnlen\n*(u64 *)(r6 + 24) = r0\n"
        "r1 = r7\nr2 = 1000\nkcall bpf_strnlen\n*(u64 *)(r6 + 32) = r0\n"
        "r0 = 0\nexit"
    )
    try:
        sides = both("long", text, buf_size=70000)
    except NotSupportedError as err:
        pytest.skip(str(err))
    kernel = run_all(sides, "long", bytes(40))
    assert struct.unpack("<5Q", kernel[2]) == (0xFFFFFFF9, 0xFFFFFFF9, 0xFFFFFFF9, 0xFFFFFFF9, 1000)


def test_local_irq_save_restore(both: Loader) -> None:
    text = """
    r6 = r1
    r1 = r10
    r1 += -8
    kcall bpf_local_irq_save
    r1 = *(u64 *)(r6 + 0)
    r1 *= 3
    *(u64 *)(r6 + 8) = r1
    r1 = r10
    r1 += -8
    kcall bpf_local_irq_restore
    r0 = 5
    exit
    """
    sides = both("irq", text)
    assert run_all(sides, "irq", struct.pack("<QQ", 14, 0)) == ("ok", 5, struct.pack("<QQ", 14, 42))
