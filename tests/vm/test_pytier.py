"""The fast tier (engine ``py``): every operation form, every fault kind and every budget edge.

Each case runs on the reference interpreter and on the fast tier over one memory layout (the
harness of ``test_pytier_diff``) and the outcomes must be identical: r0, count and memory, or
the fault's type, pc, instruction, message and address. Operation tables run many operand
pairs through one compiled loop, so every opcode form meets the interesting values (sign
bits, 32-bit boundaries, zero divisors, shift counts past the width) cheaply.
"""

from __future__ import annotations

import pickle
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from ebpf.errors import BudgetExceededError, DecodeError, VMError
from ebpf.isa import Instruction as I
from ebpf.isa import Program
from ebpf.vm import (
    ENGINES,
    HelperRegistry,
    ProgramExit,
    PyTier,
    RawInput,
    XdpInput,
    create_engine,
    run,
)
from ebpf.vm.pytier import compile_program

from .test_pytier_diff import HELPERS, assert_same

M64 = (1 << 64) - 1
EXIT = I(0x95)

VALUES = [0, 1, 2, 7, 31, 32, 63, 64, 0x7F, 0x80, 0xFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]
VALUES += [0x1_0000_0007, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000, M64, 0xFFFFFFFF80000000, 0x123456789ABCDEF0]
IMMS = [0, 1, -1, 2, 5, -7, 31, 32, 63, 64, 0xFF, 0x1FF, 0xFFFF, 0x1FFFF, 0x7FFFFFFF, -0x80000000]
PAIRS = [(a, b) for a in VALUES for b in VALUES]


def lddw(dst: int, value: int) -> I:
    return I(0x18, dst=dst, imm=value & M64)


RECORD = 32  # bytes written per recorded register


def _consumers(reg: int, at: int) -> list[I]:
    """Uses of ``reg`` whose code depends on what is known of its width, recorded at r7 + ``at``.

    The register itself, its narrow stores (u8, u16, u32), 32-bit compares (flags in r8) and
    32-bit shift/divide results (r5): the fast tier drops masks it believes redundant.
    """
    flags = [
        (0x26, 127),  # if w > 127 (jgt32)
        (0x66, 5),  # if w s> 5 (jsgt32)
        (0x46, -0x80000000),  # if w & 0x80000000 (jset32)
        (0x16, 0xFF),  # if w == 0xff (jeq32)
        (0xA6, 0x10000),  # if w < 0x10000 (jlt32)
    ]
    out = [
        I(0x7B, dst=7, src=reg, offset=at),
        I(0x73, dst=7, src=reg, offset=at + 8),
        I(0x6B, dst=7, src=reg, offset=at + 9),
        I(0x63, dst=7, src=reg, offset=at + 11),
        I(0xB7, dst=8, imm=0),
    ]
    for bit, (opcode, imm) in enumerate(flags):
        out += [I(opcode, dst=reg, imm=imm, offset=1), I(0x05, offset=1), I(0x47, dst=8, imm=1 << bit)]
    out += [
        I(0x7B, dst=7, src=8, offset=at + 16),
        I(0xBC, dst=5, src=reg),  # w5 = w
        I(0x74, dst=5, imm=3),  # w5 >>= 3
        I(0x34, dst=5, imm=3),  # w5 /= 3
        I(0xAC, dst=5, src=reg),  # w5 ^= w
        I(0x7B, dst=7, src=5, offset=at + 24),
    ]
    return out


def _table_program(op_insns: list[I], record: tuple[int, ...]) -> Program:
    """Loop over 16-byte records (a, b) at r6: r1 = a, r2 = b, <ops>, then record registers.

    Each recorded register is written with its width-sensitive uses (see ``_consumers``).
    """
    body = [
        I(0x79, dst=1, src=6, offset=0),  # r1 = a
        I(0x79, dst=2, src=6, offset=8),  # r2 = b
        I(0xB7, dst=0, imm=0),
        *op_insns,
        *[insn for i, reg in enumerate(record) for insn in _consumers(reg, RECORD * i)],
        I(0x07, dst=6, imm=16),
        I(0x07, dst=7, imm=RECORD * len(record)),
        I(0x07, dst=9, imm=-1),
    ]
    back = -(sum(insn.slots for insn in body) + 1)
    return Program(
        [
            I(0xBF, dst=6, src=1),  # r6: records
            I(0xBF, dst=7, src=1),
            I(0x07, dst=7, imm=16 * len(PAIRS)),  # r7: results, after the records
            I(0xB7, dst=9, imm=len(PAIRS)),
            *body,
            I(0x55, dst=9, imm=0, offset=back),
            EXIT,
        ]
    )


def _table_input(record: int) -> RawInput:
    data = b"".join(struct.pack("<QQ", a, b) for a, b in PAIRS)
    return RawInput(data + bytes(RECORD * record * len(PAIRS)))


def _check_table(op_insns: list[I], record: tuple[int, ...] = (1,)) -> None:
    """Run the table once per recorded register (its uses first, while its width is known)."""
    assert 5 not in record and 8 not in record, "r5 and r8 are scratch registers of the consumers"
    for reg in record:
        result = assert_same(_table_program(op_insns, (reg,)), _table_input(1), max_insns=1_000_000)
        assert result[0] == "ok", result


# ALU op codes: (code, name); forms: 64/32-bit, register or immediate source.
ALU_CODES = [0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x90, 0xA0, 0xB0, 0xC0]


@pytest.mark.parametrize("is64", [True, False], ids=["alu64", "alu32"])
@pytest.mark.parametrize("code", ALU_CODES, ids=lambda c: f"{c:#04x}")
def test_alu_register_forms(code: int, is64: bool) -> None:
    cls = 0x07 if is64 else 0x04
    _check_table([I(code | cls | 0x08, dst=1, src=2)])
    _check_table([I(code | cls | 0x08, dst=1, src=1)])  # dst == src


@pytest.mark.parametrize("is64", [True, False], ids=["alu64", "alu32"])
@pytest.mark.parametrize("code", ALU_CODES, ids=lambda c: f"{c:#04x}")
def test_alu_immediate_forms(code: int, is64: bool) -> None:
    cls = 0x07 if is64 else 0x04
    _check_table([I(code | cls, dst=1, imm=imm) for imm in IMMS[:1]] + [I(0xBF, dst=3, src=1)], (3,))
    for imm in IMMS:
        _check_table([I(code | cls, dst=1, imm=imm)])


@pytest.mark.parametrize("is64", [True, False], ids=["alu64", "alu32"])
@pytest.mark.parametrize("code", [0x30, 0x90], ids=["sdiv", "smod"])
def test_signed_division(code: int, is64: bool) -> None:
    cls = 0x07 if is64 else 0x04
    _check_table([I(code | cls | 0x08, dst=1, src=2, offset=1)])
    for imm in [1, -1, 2, -7, 0x7FFFFFFF, -0x80000000]:
        _check_table([I(code | cls, dst=1, imm=imm, offset=1)])


@pytest.mark.parametrize(("is64", "width"), [(True, 8), (True, 16), (True, 32), (False, 8), (False, 16)])
def test_movsx(is64: bool, width: int) -> None:
    _check_table([I(0xBC | (0x07 if is64 else 0x04), dst=1, src=2, offset=width)])


@pytest.mark.parametrize(("opcode", "width"), [(op, w) for op in (0xD4, 0xDC, 0xD7) for w in (16, 32, 64)])
def test_byte_swaps(opcode: int, width: int) -> None:
    _check_table([I(opcode, dst=1, imm=width)])


@pytest.mark.parametrize("opcode", [0x87, 0x84], ids=["neg64", "neg32"])
def test_neg(opcode: int) -> None:
    _check_table([I(opcode, dst=1)])


JMP_CODES = [0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0xA0, 0xB0, 0xC0, 0xD0]


@pytest.mark.parametrize("is64", [True, False], ids=["jmp", "jmp32"])
@pytest.mark.parametrize("code", JMP_CODES, ids=lambda c: f"{c:#04x}")
def test_conditional_jumps(code: int, is64: bool) -> None:
    cls = 0x05 if is64 else 0x06
    taken = [I(0xB7, dst=0, imm=1)]  # r0 = 1 when the branch is taken
    _check_table([I(code | cls | 0x08, dst=1, src=2, offset=1), I(0x05, offset=1), *taken], (0,))
    _check_table([I(code | cls | 0x08, dst=2, src=2, offset=1), I(0x05, offset=1), *taken], (0,))
    for imm in IMMS:
        _check_table([I(code | cls, dst=1, imm=imm, offset=1), I(0x05, offset=1), *taken], (0,))


ATOMIC_IMMS = [0x00, 0x01, 0x40, 0x41, 0x50, 0x51, 0xA0, 0xA1, 0xE1, 0xF1]


@pytest.mark.parametrize("size", [4, 8])
@pytest.mark.parametrize("imm", ATOMIC_IMMS, ids=lambda i: f"{i:#04x}")
def test_atomics(imm: int, size: int) -> None:
    """*(r10 - 8) = a; r0 = a ^ 1 (for cmpxchg); atomic(r10 - 8, r2 = b); record memory, r2, r0."""
    opcode = 0xDB if size == 8 else 0xC3
    ops = [
        I(0x7B, dst=10, src=1, offset=-8),
        I(0xBF, dst=0, src=1),
        I(0xA7, dst=0, imm=1),
        I(opcode, dst=10, src=2, offset=-8, imm=imm),
        I(0x79, dst=3, src=10, offset=-8),
    ]
    _check_table(ops, (3, 2, 0))
    # cmpxchg that succeeds: r0 == old.
    ops[2] = I(0xA7, dst=0, imm=0)
    _check_table(ops, (3, 2, 0))


@pytest.mark.parametrize(
    ("size", "signed"),
    [(1, False), (2, False), (4, False), (8, False), (1, True), (2, True), (4, True)],  # no 8-byte ldsx
)
def test_loads_and_stores(size: int, signed: bool) -> None:
    sz = {1: 0x10, 2: 0x08, 4: 0x00, 8: 0x18}[size]
    load = I((0x81 if signed else 0x61) | sz, dst=3, src=10, offset=-13)
    ops = [
        I(0x7B, dst=10, src=1, offset=-16),
        I(0x7B, dst=10, src=2, offset=-8),
        I(0x63 | sz, dst=10, src=2, offset=-11),
        I(0x62 | sz, dst=10, offset=-4 - size // 2, imm=-0x12345678),
        load,
        I(0x79, dst=4, src=10, offset=-16),
        I(0x79, dst=0, src=10, offset=-8),
    ]
    _check_table(ops, (3, 4, 0))


# --- faults --------------------------------------------------------------------------------------------


def _fault(program: Program, input: RawInput | XdpInput | bytes = b"", **kw: object) -> tuple[object, ...]:
    if isinstance(input, bytes):
        input = RawInput(input)
    result = assert_same(program, input, helpers=HELPERS, **kw)  # type: ignore[arg-type]
    assert result[0] == "error", result
    return result


@pytest.mark.parametrize(
    ("insns", "message"),
    [
        ([I(0x79, dst=0, src=10, offset=0)], "invalid read of 8 bytes"),  # at the stack's end
        ([I(0x79, dst=0, src=10, offset=-4)], "crossing the end of stack[0]"),
        ([I(0x79, dst=0, src=10, offset=-520)], "invalid read of 8 bytes"),  # before the stack
        ([I(0x7A, dst=10, offset=8, imm=1)], "invalid write of 8 bytes"),
        ([I(0x71, dst=0, src=1, offset=16)], "past the end of mem"),
        ([I(0x72, dst=1, offset=-1, imm=1)], "invalid write of 1 byte"),
        ([I(0x61, dst=0, src=2, offset=0)], "invalid read of 4 bytes"),  # r2 = length: not a pointer
        ([I(0xDB, dst=10, src=1, offset=-4, imm=0x01)], "crossing the end"),  # atomic
    ],
)
def test_memory_faults(insns: list[I], message: str) -> None:
    result = _fault(Program([*insns, EXIT]), bytes(16))
    assert message in str(result[4])


def test_fault_after_the_region_was_cached() -> None:
    """A pointer walking byte by byte off the end of the input faults at the first byte past it."""
    loop = [
        I(0x71, dst=0, src=1, offset=0),
        I(0x07, dst=1, imm=1),
        I(0x07, dst=9, imm=-1),
        I(0x55, dst=9, imm=0, offset=-4),
    ]
    for start in range(3):
        program = Program([I(0xB7, dst=9, imm=40), I(0x07, dst=1, imm=start), *loop, EXIT])
        result = _fault(program, bytes(range(30)))
        assert result[2] == 2 and "(0 bytes past the end of mem (size 30))" in str(result[4])


def test_fault_walking_backwards_off_the_start() -> None:
    """The same below a region's start: the input, then the stack (r10 - 512 is its first byte)."""
    for base, start in ((1, 5), (10, -505)):
        loop = [
            I(0x71, dst=0, src=6, offset=0),
            I(0x07, dst=6, imm=-1),
            I(0x07, dst=9, imm=-1),
            I(0x55, dst=9, imm=0, offset=-4),
        ]
        program = Program(
            [I(0xB7, dst=9, imm=40), I(0xBF, dst=6, src=base), I(0x07, dst=6, imm=start), *loop, EXIT]
        )
        result = _fault(program, bytes(range(30)))
        assert result[2] == 3, result


def test_fault_in_the_middle_of_a_group() -> None:
    """Accesses at r1+0 and r1+40 on a 16-byte input: the first runs, the second faults."""
    program = Program([I(0x72, dst=1, offset=0, imm=7), I(0x72, dst=1, offset=40, imm=8), EXIT])
    result = _fault(program, bytes(16))
    assert result[2] == 1


def test_read_only_context_and_hooked_loads() -> None:
    # data/data_end come from the load hook; the packet is read through them.
    ok = assert_same(
        Program(
            [
                I(0x61, dst=2, src=1, offset=0),
                I(0x61, dst=3, src=1, offset=4),
                I(0xBF, dst=0, src=3),
                I(0x1F, dst=0, src=2),
                I(0x71, dst=4, src=2, offset=3),
                I(0x0F, dst=0, src=4),
                EXIT,
            ]
        ),
        XdpInput(bytes(range(20))),
    )
    assert ok[:2] == ("ok", 20 + 3)
    result = _fault(Program([I(0x63, dst=1, src=2, offset=4), EXIT]), XdpInput(bytes(20)))
    assert "read-only ctx" in str(result[4])
    result = _fault(Program([I(0xC3, dst=1, src=2, offset=12, imm=0x01), EXIT]), XdpInput(bytes(20)))
    assert "read-only ctx" in str(result[4])


def test_hooked_loads_in_a_loop() -> None:
    """The context is never cached: every iteration's load asks the hook."""
    body = [
        I(0x61, dst=2, src=1, offset=0),
        I(0x61, dst=3, src=1, offset=4),
        I(0x1F, dst=3, src=2),
        I(0x0F, dst=0, src=3),
        I(0x07, dst=9, imm=-1),
    ]
    program = Program([I(0xB7, dst=9, imm=10), *body, I(0x55, dst=9, imm=0, offset=-6), EXIT])
    assert assert_same(program, XdpInput(bytes(30)))[:2] == ("ok", 300)


@pytest.mark.parametrize(
    ("insns", "message"),
    [
        ([I(0x85, imm=99)], "call to unknown helper 99"),
        ([I(0xB7, dst=3, imm=98), I(0x8D, dst=3)], "call to unknown helper 98"),
        ([I(0x85, src=2, imm=0)], "call to unknown kfunc 0"),
        ([I(0x18, dst=0, src=1, imm=3)], "lddw with pseudo source MAP_FD"),
        ([I(0x20, imm=0)], "ld_abs/ld_ind need the context pointer in r6"),
        ([I(0xB7, dst=0, imm=1)], "fell off the end"),
        ([I(0x85, src=1, imm=-1)], "frames is too deep"),  # endless recursion
    ],
)
def test_fault_kinds(insns: list[I], message: str) -> None:
    program = Program(insns if message == "fell off the end" else [*insns, EXIT])
    result = _fault(program, bytes(8))
    assert message in str(result[4])


def test_memory_faults_inside_helpers_report_the_call() -> None:
    program = Program(
        [I(0xBF, dst=1, src=10), I(0xB7, dst=2, imm=8), I(0x85, imm=1), EXIT]
    )  # memfrob past r10
    result = _fault(program, bytes(8))
    assert result[2] == 2 and "invalid read of 8 bytes" in str(result[4])


def test_legacy_loads() -> None:
    data = bytes(range(1, 41))
    for imm in (-1, 0, 3, 36, 37, 39, 40):
        for size in (0x00, 0x08, 0x10):
            program = Program([I(0xBF, dst=6, src=1), I(0x20 | size, imm=imm), I(0x07, dst=0, imm=1), EXIT])
            assert assert_same(program, RawInput(data))[0] == "ok"
            program = Program(
                [
                    I(0xBF, dst=6, src=1),
                    I(0xB7, dst=3, imm=imm - 5),
                    I(0x40 | size, src=3, imm=5),
                    I(0x07, dst=0, imm=1),
                    EXIT,
                ]
            )
            assert assert_same(program, RawInput(data))[0] == "ok"


def test_program_exit_from_a_helper() -> None:
    program = Program([I(0xB7, dst=1, imm=0), I(0x85, imm=5), I(0xB7, dst=0, imm=9), EXIT])
    assert assert_same(program, RawInput(b""), helpers=HELPERS)[:3] == ("ok", 0, 2)


def test_helpers_that_map_and_unmap_regions() -> None:
    """Cached regions are forgotten across helper calls (helper 10 unmaps, 11 maps)."""
    unmap_stack = Program(
        [
            I(0x7A, dst=10, offset=-8, imm=1),
            I(0xBF, dst=1, src=10),
            I(0x07, dst=1, imm=-8),
            I(0x85, imm=10),
            I(0x79, dst=0, src=10, offset=-8),
            EXIT,
        ]
    )
    result = _fault(unmap_stack)
    assert result[2] == 4 and "invalid read" in str(result[4])
    # Three loads from the cached stack, then the stack is unmapped: the fourth load faults.
    in_a_loop = Program(
        [
            I(0xB7, dst=9, imm=3),
            I(0x79, dst=0, src=10, offset=-8),
            I(0xBF, dst=1, src=10),
            I(0x07, dst=1, imm=-8),
            I(0x07, dst=9, imm=-1),
            I(0x55, dst=9, imm=0, offset=1),
            I(0x85, imm=10),
            I(0x05, offset=-7),
            EXIT,
        ]
    )
    assert _fault(in_a_loop)[2] == 1
    map_new = Program(
        [
            I(0x85, imm=11),
            I(0x7A, dst=0, offset=40, imm=5),
            I(0x79, dst=1, src=0, offset=40),
            I(0x7A, dst=0, offset=44, imm=5),
            EXIT,
        ]
    )
    assert "crossing the end of extra" in str(_fault(map_new)[4])


def test_errors_raised_by_helpers() -> None:
    """Located errors pass through; unlocated ones get the call's pc; budget errors pass unchanged."""
    for error in (VMError("inner", pc=77), VMError("no pc", address=5), BudgetExceededError("helper budget")):

        def fail(env: object, *args: int, error: VMError = error) -> int:
            raise error

        helpers = HelperRegistry()
        helpers.register(1, "fail", fail)
        program = Program([I(0xB7, dst=0, imm=1), I(0x85, imm=1), EXIT])
        result = assert_same(program, RawInput(b""), helpers=helpers)
        assert result[1] == type(error).__name__ and result[4] == error.message


def test_frame_pointer_is_read_only_and_decode_errors_at_construction() -> None:
    with pytest.raises(VMError, match="frame pointer is read only") as err:
        PyTier(Program([I(0xB7, dst=10, imm=0), EXIT]))
    assert err.value.pc == 0
    with pytest.raises(DecodeError, match="jump out of range"):
        PyTier(Program([I(0x05, offset=5), EXIT]))


# --- the budget -------------------------------------------------------------------------------------


CALLS = Program(
    [
        I(0xB7, dst=6, imm=3),
        I(0x85, src=1, imm=4),  # call sub
        I(0x07, dst=6, imm=-1),
        I(0x55, dst=6, imm=0, offset=-3),
        I(0xBF, dst=0, src=7),
        EXIT,
        # sub: r7 += r6 (loop r1 times), a stack store, a nested call
        I(0x07, dst=7, imm=1),
        I(0x7B, dst=10, src=7, offset=-8),
        I(0x85, src=1, imm=1),
        EXIT,
        I(0x79, dst=2, src=10, offset=-8),
        I(0x07, dst=2, imm=1),
        EXIT,
    ]
)

LOOPS = Program(
    [
        I(0xB7, dst=9, imm=5),
        I(0x71, dst=2, src=1, offset=0),
        I(0x0F, dst=0, src=2),
        I(0x07, dst=1, imm=1),
        I(0x25, dst=2, imm=100, offset=1),
        I(0x07, dst=0, imm=7),
        I(0x07, dst=9, imm=-1),
        I(0x55, dst=9, imm=0, offset=-7),
        I(0xB7, dst=1, imm=1),
        I(0x85, imm=5),  # unwind(1) returns 1
        EXIT,
    ]
)


@pytest.mark.parametrize("program", [CALLS, LOOPS], ids=["calls", "loops"])
def test_every_budget_edge(program: Program) -> None:
    """Every budget from 1 to the full count + 1: block boundaries, inside blocks, in callees."""
    full = run(program, bytes(range(200, 216)), helpers=HELPERS)
    for budget in range(1, full.insns + 2):
        result = assert_same(program, RawInput(bytes(range(200, 216))), helpers=HELPERS, max_insns=budget)
        if budget < full.insns:
            assert result[1] == "BudgetExceededError"
        else:
            assert result[:3] == ("ok", full.retval, full.insns)


def test_budget_at_the_end_of_the_program() -> None:
    """Falling off the end with the budget exhausted reports the budget, as the reference does."""
    program = Program([I(0xB7, dst=0, imm=1), I(0xB7, dst=1, imm=1)])
    assert assert_same(program, RawInput(b""), max_insns=2)[1] == "BudgetExceededError"
    assert "fell off" in str(assert_same(program, RawInput(b""), max_insns=3)[4])


def test_endless_loop_stops_at_the_budget() -> None:
    program = Program([I(0x07, dst=0, imm=1), I(0x05, offset=-2), EXIT])
    with pytest.raises(BudgetExceededError) as err:
        run(program, engine="py", max_insns=1001)
    assert err.value.pc == 1 and "1001" in err.value.message  # the 1002nd instruction is the ja
    assert assert_same(program, RawInput(b""), max_insns=1001)[2] == 1
    assert assert_same(program, RawInput(b""), max_insns=1000)[2] == 0


# --- the engine -------------------------------------------------------------------------------------


def test_registered_and_reported() -> None:
    assert ENGINES["py"] is PyTier
    engine = create_engine(LOOPS, "py", helpers=HELPERS)
    assert engine.engine == "py"
    assert "def _run(" in engine.source  # type: ignore[attr-defined]
    result = engine.run(bytes(16))
    assert result == run(LOOPS, bytes(16), helpers=HELPERS).__class__(
        result.retval, result.insns, result.data, result.elapsed_ns
    )


def test_compiled_code_is_cached() -> None:
    a = compile_program(LOOPS)
    assert compile_program(LOOPS) is a
    assert compile_program(Program(list(LOOPS))) is a  # equal instructions, another Program object


def test_programs_stay_picklable() -> None:
    program = Program(list(LOOPS))
    create_engine(program, "py")
    assert pickle.loads(pickle.dumps(program)) == program


def test_profile_runs_the_reference_interpreter() -> None:
    fast = create_engine(LOOPS, "py", helpers=HELPERS).run(bytes(16), profile=True)
    ref = create_engine(LOOPS, "interp", helpers=HELPERS).run(bytes(16), profile=True)
    assert fast.profile == ref.profile and fast.profile is not None


def test_run_many() -> None:
    """Every run of a batch starts from the input's bytes and zeroed stacks, as run() does."""
    engine = PyTier(LOOPS, helpers=HELPERS)
    results = engine.run_many(bytes(range(16)), 3)
    assert len(results) == 3 and len({(r.retval, r.insns, r.data) for r in results}) == 1
    # r0 = ++input[0] + ++stack[-8] + ++callee_stack[-8]: 1 + 1 + 1 more than the input byte each time.
    bump = Program(
        [
            I(0x71, dst=0, src=1, offset=0),
            I(0x07, dst=0, imm=1),
            I(0x73, dst=1, src=0, offset=0),
            I(0x79, dst=2, src=10, offset=-8),
            I(0x07, dst=2, imm=1),
            I(0x7B, dst=10, src=2, offset=-8),
            I(0x0F, dst=0, src=2),
            I(0xBF, dst=6, src=0),
            I(0x85, src=1, imm=2),
            I(0x0F, dst=0, src=6),
            EXIT,
            I(0x79, dst=0, src=10, offset=-8),
            I(0x07, dst=0, imm=1),
            I(0x7B, dst=10, src=0, offset=-8),
            EXIT,
        ]
    )
    single = PyTier(bump).run(bytes([40]))
    batch = PyTier(bump).run_many(bytes([40]), 4)
    assert single.retval == 43 and single.data == bytes([41])
    assert [(r.retval, r.insns, r.data) for r in batch] == [(single.retval, single.insns, single.data)] * 4
    with pytest.raises(VMError, match="invalid read"):
        PyTier(bump).run_many(b"", 2)


def test_helpers_are_looked_up_at_run_time() -> None:
    program = Program([I(0x85, imm=42), EXIT])
    helpers = HelperRegistry()
    engine = PyTier(program, helpers=helpers)
    with pytest.raises(VMError, match="unknown helper 42"):
        engine.run()
    helpers.register(42, "answer", lambda env, *args: 42)
    assert engine.run().retval == 42

    def stop(env: object, *args: int) -> int:
        raise ProgramExit(7)

    helpers.register(42, "stop", stop)
    assert engine.run().retval == 7


# --- real programs -------------------------------------------------------------------------------------

BENCH = Path("/work/shared/bench")
CLANG = shutil.which("clang-19") or shutil.which("clang")


def _bench_inputs() -> dict[str, bytes]:
    import runpy

    module = runpy.run_path(str(BENCH / "mkinput.py"))
    return dict(module["inputs"]())


@pytest.mark.skipif(
    not (BENCH.is_dir() and CLANG), reason="needs clang and the benchmark sources in /work/shared/bench"
)
def test_benchmark_kernels_agree(tmp_path: Path) -> None:
    """The benchmark suite's kernels, compiled by clang, agree on both engines (and run fast code)."""
    from elftools.elf.elffile import ELFFile

    assert CLANG is not None
    inputs = _bench_inputs()
    for source in sorted(BENCH.glob("*.c")):
        obj = tmp_path / (source.stem + ".o")
        subprocess.run(
            [CLANG, "-O2", "-target", "bpf", "-mcpu=v3", "-c", str(source), "-o", str(obj)], check=True
        )
        with obj.open("rb") as f:
            section = ELFFile(f).get_section_by_name("xdp")
            assert section is not None
            program = Program.from_bytes(section.data())
        result = assert_same(program, XdpInput(inputs[source.stem]), max_insns=1_000_000)
        assert result[0] == "ok" and isinstance(result[2], int) and result[2] > 1, (source.stem, result)
