"""Kfunc calls through the user-space runtime (both engines) and through the kernel.

Hand-assembled ``SEC("syscall")`` programs call kfuncs by name (``KFUNC`` relocations, which
each engine resolves: the runtime to its registry ids, the kernel loader to vmlinux BTF ids)
and write what the kfuncs returned into their context; each test runs the same inputs on both
sides with ``BPF_PROG_TEST_RUN`` and compares the return value and the context out.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from ebpf.errors import BPFError
from ebpf.isa import assemble
from ebpf.isa.encoding import slot_offsets
from ebpf.isa.opcodes import CallKind
from ebpf.isa.program import Program
from ebpf.runtime import Collection
from ebpf.spec import CollectionSpec, ProgramSpec, ProgramType, Relocation, RelocKind

pytestmark = pytest.mark.kernel

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
MAX_LOOPS = 8 * 1024 * 1024
BPF_F_SLEEPABLE = 1 << 4


def kfunc_program(name: str, text: str) -> ProgramSpec:
    """A syscall ProgramSpec from assembly in which ``kcall NAME`` calls the kfunc ``NAME``."""
    names: list[str] = []

    def call(m: re.Match[str]) -> str:
        names.append(m.group(1))
        return "call kfunc(0)"

    prog = assemble(re.sub(r"kcall (\w+)", call, text))
    slots = slot_offsets(prog.instructions)
    calls = [
        slots[i]
        for i, insn in enumerate(prog.instructions)
        if insn.opcode == 0x85 and insn.src == CallKind.KFUNC
    ]
    assert len(calls) == len(names)
    relocations = {slot: Relocation(RelocKind.KFUNC, n) for slot, n in zip(calls, names, strict=True)}
    return ProgramSpec(
        name,
        "syscall",
        ProgramType.SYSCALL,
        Program(prog.instructions, prog.labels),
        license="GPL",
        flags=BPF_F_SLEEPABLE,  # syscall programs are sleepable
        relocations=relocations,
    )


Loader = Callable[[str, str], tuple[Any, ...]]


@pytest.fixture
def both() -> Iterator[Loader]:
    """load(name, text) -> (py runtime, interp runtime, kernel) collections of one program."""
    from ebpf.kernel.collection import Collection as KernelCollection

    with ExitStack() as stack:

        def load(name: str, text: str) -> tuple[Any, ...]:
            spec = CollectionSpec(programs={name: kfunc_program(name, text)}, license="GPL")
            sides = [stack.enter_context(Collection(spec, engine=e)) for e in ("py", "interp")]
            sides.append(stack.enter_context(KernelCollection(spec)))
            return tuple(sides)

        yield load


def outcome(side: Any, name: str, ctx: bytes) -> tuple[Any, ...]:
    try:
        res = side.programs[name].test_run(b"", ctx_in=ctx)
    except (BPFError, OSError) as err:
        return ("error", getattr(err, "errno", None), type(err).__name__)
    return ("ok", res.retval, bytes(res.ctx_out))


def run_all(sides: tuple[Any, ...], name: str, ctx: bytes) -> tuple[Any, ...]:
    """One test run on every side; all must agree. Returns the kernel's outcome."""
    results = [outcome(side, name, ctx) for side in sides]
    kernel = results[-1]
    assert results[0] == kernel, f"py: ctx {ctx.hex()}"
    assert results[1] == kernel, f"interp: ctx {ctx.hex()}"
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
