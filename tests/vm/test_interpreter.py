"""Reference interpreter semantics (RFC 9669 §4-5), faults, calls and budget."""

from __future__ import annotations

import struct

import pytest

from ebpf.errors import BudgetExceededError, DecodeError, VMError
from ebpf.isa import Instruction as I
from ebpf.isa import Program
from ebpf.vm import MAX_CALL_FRAMES, HelperRegistry, ProgramExit, RawInput, XdpInput, run, ubpf_test_helpers

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
EXIT = I(0x95)


def lddw(dst: int, value: int) -> I:
    return I(0x18, dst=dst, imm=value & M64)


def r0_of(*insns: I, mem: bytes = b"", helpers: HelperRegistry | None = None) -> int:
    return run(Program([*insns, EXIT]), mem, helpers=helpers).retval


# ALU opcodes (class | op | source) used below.
ADD64, SUB64, MUL64, DIV64, OR64, AND64, LSH64, RSH64, MOD64, XOR64, MOV64, ARSH64 = (
    0x07,
    0x17,
    0x27,
    0x37,
    0x47,
    0x57,
    0x67,
    0x77,
    0x97,
    0xA7,
    0xB7,
    0xC7,
)


def alu(op: int, a: int, b: int, *, reg: bool = True, offset: int = 0) -> int:
    """r0 = a; r0 <op>= b (register form when reg, else immediate)."""
    if reg:
        return r0_of(lddw(0, a), lddw(1, b), I(op | 0x08, dst=0, src=1, offset=offset))
    return r0_of(lddw(0, a), I(op, dst=0, imm=b, offset=offset))


@pytest.mark.parametrize(
    ("op", "a", "b", "want"),
    [
        (ADD64, M64, 1, 0),
        (SUB64, 0, 1, M64),
        (MUL64, 1 << 63, 2, 0),
        (DIV64, 7, 2, 3),
        (DIV64, 7, 0, 0),  # division by zero gives 0
        (MOD64, 7, 0, 7),  # modulo by zero leaves dst
        (MOD64, 7, 4, 3),
        (LSH64, 1, 65, 2),  # shift count masked to 63
        (RSH64, 1 << 63, 127, 1),
        (ARSH64, 1 << 63, 63, M64),
        (XOR64, 0xF0, 0xFF, 0x0F),
    ],
)
def test_alu64_register(op: int, a: int, b: int, want: int) -> None:
    assert alu(op, a, b) == want


@pytest.mark.parametrize(
    ("op", "a", "b", "want"),
    [
        (ADD64 & ~7 | 4, M64, 1, 0),  # 32-bit: upper bits of dst dropped, result zero-extended
        (SUB64 & ~7 | 4, 0, 1, M32),
        (MUL64 & ~7 | 4, 0x1_0000_0003, 3, 9),
        (DIV64 & ~7 | 4, 0x1_0000_0007, 2, 3),
        (DIV64 & ~7 | 4, 0xFFFF_FFFF_0000_0007, 0, 0),
        (MOD64 & ~7 | 4, 0xFFFF_FFFF_0000_0007, 0, 7),  # ALU32 mod by zero: upper 32 bits zeroed
        (LSH64 & ~7 | 4, 1, 33, 2),  # masked to 31
        (RSH64 & ~7 | 4, 0xFFFF_FFFF_8000_0000, 31, 1),
        (ARSH64 & ~7 | 4, 0x8000_0000, 31, M32),
        (MOV64 & ~7 | 4, M64, M64, M32),
    ],
)
def test_alu32_register(op: int, a: int, b: int, want: int) -> None:
    assert alu(op, a, b) == want


def test_alu64_immediate_is_sign_extended() -> None:
    assert alu(ADD64, 0, -1, reg=False) == M64
    assert alu(MOV64, 0, -2, reg=False) == M64 - 1
    assert alu(DIV64, M64, -1, reg=False) == 1  # imm sign-extended, then unsigned division
    assert alu(AND64, M64, 0x7FFFFFFF, reg=False) == 0x7FFFFFFF


def test_alu32_immediate() -> None:
    assert alu(MOV64 & ~7 | 4, M64, -1, reg=False) == M32
    assert alu(ADD64 & ~7 | 4, M64, 1, reg=False) == 0


@pytest.mark.parametrize(
    ("is64", "a", "b", "quot", "rem"),
    [
        (True, -7, 2, -3, -1),
        (True, 7, -2, -3, 1),
        (True, -7, -2, 3, -1),
        (True, -(1 << 63), -1, -(1 << 63), 0),  # INT_MIN / -1 overflows to INT_MIN
        (False, -7, 2, -3, -1),
        (False, -(1 << 31), -1, -(1 << 31), 0),
    ],
)
def test_signed_div_mod(is64: bool, a: int, b: int, quot: int, rem: int) -> None:
    cls = 0x07 if is64 else 0x04
    mask = M64 if is64 else M32
    assert alu(0x30 | cls, a & M64, b & M64, offset=1) == quot & mask
    assert alu(0x90 | cls, a & M64, b & M64, offset=1) == rem & mask
    assert alu(0x30 | cls, a & M64, b, reg=False, offset=1) == quot & mask  # immediate divisor
    assert alu(0x90 | cls, a & M64, b, reg=False, offset=1) == rem & mask


def test_signed_div_by_zero() -> None:
    assert alu(0x37, 5, 0, offset=1) == 0
    assert alu(0x97, (-5) & M64, 0, offset=1) == (-5) & M64
    assert alu(0x94, 0xFFFF_FFFF_FFFF_FFFB, 0, offset=1) == 0xFFFF_FFFB


@pytest.mark.parametrize(
    ("opcode", "width", "want"),
    [
        (0xBF, 8, 0xFFFF_FFFF_FFFF_FF80),
        (0xBF, 16, 0xFFFF_FFFF_FFFF_8080),
        (0xBF, 32, 0xFFFF_FFFF_8080_8080),
        (0xBC, 8, 0xFFFF_FF80),
        (0xBC, 16, 0xFFFF_8080),
    ],
)
def test_movsx(opcode: int, width: int, want: int) -> None:
    assert r0_of(lddw(1, 0x8080_8080_8080_8080), I(opcode, dst=0, src=1, offset=width)) == want


def test_neg() -> None:
    assert r0_of(I(0xB7, dst=0, imm=1), I(0x87, dst=0)) == M64
    assert r0_of(lddw(0, 1 << 63), I(0x87, dst=0)) == 1 << 63
    assert r0_of(lddw(0, 0x1_0000_0001), I(0x84, dst=0)) == M32


@pytest.mark.parametrize(
    ("opcode", "imm", "want"),
    [
        (0xD4, 16, 0x2211),  # le16 truncates on a little-endian machine
        (0xD4, 32, 0x44332211),
        (0xD4, 64, 0x8877665544332211),
        (0xDC, 16, 0x1122),
        (0xDC, 32, 0x11223344),
        (0xDC, 64, 0x1122334455667788),
        (0xD7, 16, 0x1122),
        (0xD7, 32, 0x11223344),
        (0xD7, 64, 0x1122334455667788),
    ],
)
def test_byte_swaps(opcode: int, imm: int, want: int) -> None:
    assert r0_of(lddw(0, 0x8877665544332211), I(opcode, dst=0, imm=imm)) == want


@pytest.mark.parametrize(
    ("opcode", "a", "b", "taken"),
    [
        (0x1D, 1, 1, True),  # jeq
        (0x2D, M64, 1, True),  # jgt unsigned
        (0x6D, M64, 1, False),  # jsgt signed: -1 > 1 is false
        (0xAD, 1, M64, True),  # jlt
        (0xCD, M64, 0, True),  # jslt
        (0x4D, 6, 2, True),  # jset
        (0x5D, 1, 1, False),  # jne
        (0x1E, 0x1_0000_0001, 1, True),  # jeq32 compares low 32 bits
        (0x6E, 0x8000_0000, 0, False),  # jsgt32: INT_MIN > 0 false
        (0x2E, 0x8000_0000, 0, True),  # jgt32 unsigned
    ],
)
def test_conditional_jumps(opcode: int, a: int, b: int, taken: bool) -> None:
    prog = [
        lddw(1, a),
        lddw(2, b),
        I(0xB7, dst=0, imm=0),
        I(opcode, dst=1, src=2, offset=1),
        EXIT,
        I(0xB7, dst=0, imm=1),
    ]
    assert r0_of(*prog) == int(taken)


def test_jump_immediate_sign_extension() -> None:
    # jeq r1, -1 (64-bit compare against sign-extended imm)
    prog = [
        lddw(1, M64),
        I(0xB7, dst=0, imm=0),
        I(0x15, dst=1, imm=-1, offset=1),
        EXIT,
        I(0xB7, dst=0, imm=1),
    ]
    assert r0_of(*prog) == 1
    # jeq32 w1, -1 compares low 32 bits only
    prog = [
        lddw(1, M32),
        I(0xB7, dst=0, imm=0),
        I(0x16, dst=1, imm=-1, offset=1),
        EXIT,
        I(0xB7, dst=0, imm=1),
    ]
    assert r0_of(*prog) == 1


def test_gotol() -> None:
    assert r0_of(I(0xB7, dst=0, imm=1), I(0x06, imm=1), I(0xB7, dst=0, imm=2)) == 1


def test_loads_and_stores() -> None:
    mem = bytes(range(16))
    assert r0_of(I(0x71, dst=0, src=1, offset=15), mem=mem) == 15
    assert r0_of(I(0x69, dst=0, src=1, offset=1), mem=mem) == 0x0201
    assert r0_of(I(0x61, dst=0, src=1, offset=4), mem=mem) == 0x07060504
    assert r0_of(I(0x79, dst=0, src=1, offset=8), mem=mem) == 0x0F0E0D0C0B0A0908
    neg = bytes([0x80, 0x80, 0x80, 0x80])
    assert r0_of(I(0x91, dst=0, src=1), mem=neg) == 0xFFFF_FFFF_FFFF_FF80  # ldxsb
    assert r0_of(I(0x89, dst=0, src=1), mem=neg) == 0xFFFF_FFFF_FFFF_8080  # ldxsh
    assert r0_of(I(0x81, dst=0, src=1), mem=neg) == 0xFFFF_FFFF_8080_8080  # ldxsw


def test_store_immediate_to_stack() -> None:
    prog = [I(0x7A, dst=10, offset=-8, imm=-2), I(0x79, dst=0, src=10, offset=-8)]
    assert r0_of(*prog) == M64 - 1
    prog = [I(0x62, dst=10, offset=-4, imm=0x11223344), I(0x69, dst=0, src=10, offset=-2)]
    assert r0_of(*prog) == 0x1122


def test_memory_after_run_is_returned_and_input_untouched() -> None:
    data = bytes(4)
    result = run(Program([I(0x72, dst=1, offset=1, imm=0xAB), I(0xB7), EXIT]), data)
    assert result.data == b"\x00\xab\x00\x00" and data == bytes(4)


@pytest.mark.parametrize(
    ("imm", "src_before", "mem_after", "src_after", "r0_after"),
    [
        (0x00, 3, 13, 3, None),  # add
        (0x01, 3, 13, 10, None),  # fetch add
        (0x40, 5, 15, 5, None),  # or
        (0x51, 6, 2, 10, None),  # fetch and
        (0xA1, 3, 9, 10, None),  # fetch xor
        (0xE1, 7, 7, 10, None),  # xchg
        (0xF1, 99, 99, 99, 10),  # cmpxchg: r0 == 10 matches
    ],
)
def test_atomics_64(imm: int, src_before: int, mem_after: int, src_after: int, r0_after: int | None) -> None:
    prog = Program(
        [
            I(0x7A, dst=10, offset=-8, imm=10),
            I(0xB7, dst=1, imm=src_before),
            I(0xB7, dst=0, imm=10),
            I(0xDB, dst=10, src=1, offset=-8, imm=imm),
            I(0x79, dst=2, src=10, offset=-8),
            # r0 = mem | src << 16 | r0 << 32
            I(0x67, dst=1, imm=16),
            I(0x67, dst=0, imm=32),
            I(0x4F, dst=0, src=1),
            I(0x4F, dst=0, src=2),
            EXIT,
        ]
    )
    r0 = run(prog).retval
    assert r0 & 0xFFFF == mem_after
    assert (r0 >> 16) & 0xFFFF == src_after
    assert r0 >> 32 == (r0_after if r0_after is not None else 10)


def test_cmpxchg_mismatch_and_32bit() -> None:
    prog = Program(
        [
            lddw(1, 0xFFFF_FFFF_0000_0005),
            I(0x7B, dst=10, src=1, offset=-8),
            lddw(0, 0xAAAA_0000_0000_0006),  # low 32 bits 6 != 5: no store
            I(0xB7, dst=2, imm=9),
            I(0xC3, dst=10, src=2, offset=-8, imm=0xF1),
            EXIT,
        ]
    )
    assert run(prog).retval == 5  # old value, zero-extended from 32 bits
    prog = Program(
        [
            I(0x62, dst=10, offset=-4, imm=-1),
            I(0xB7, dst=1, imm=1),
            I(0xC3, dst=10, src=1, offset=-4, imm=0x01),  # fetch add32 wraps
            I(0x61, dst=0, src=10, offset=-4),
            I(0x67, dst=0, imm=32),
            I(0x4F, dst=0, src=1),
            EXIT,
        ]
    )
    assert run(prog).retval == 0xFFFF_FFFF  # mem 0, fetched old 0xffffffff (zero-extended)


# --- faults -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "insn",
    [
        I(0x79, dst=0, src=1, offset=1),  # 8-byte read crossing the end of 8 bytes of input
        I(0x71, dst=0, src=1, offset=-1),  # before the input
        I(0x71, dst=0, src=10),  # at the frame pointer (one past the stack)
        I(0x71, dst=0, src=10, offset=-513),  # below the stack
        I(0x71, dst=0, src=1, offset=8 + 64),  # past the guard gap
    ],
)
def test_out_of_bounds_faults(insn: I) -> None:
    with pytest.raises(VMError) as info:
        r0_of(insn, mem=bytes(8))
    assert info.value.pc == 0 and info.value.address is not None
    assert "invalid read" in str(info.value)


def test_null_pointer_faults() -> None:
    with pytest.raises(VMError, match="invalid write"):
        r0_of(I(0xB7, dst=1, imm=0), I(0x72, dst=1, imm=1))


def test_wild_pointer_faults() -> None:
    with pytest.raises(VMError):
        r0_of(lddw(1, 0xDEADBEEF00), I(0x79, dst=0, src=1))


def test_context_is_read_only() -> None:
    with pytest.raises(VMError, match="read-only ctx"):
        run(Program([I(0x62, dst=1, imm=0), I(0xB7), EXIT]), XdpInput(b"x" * 14))


def test_frame_pointer_is_read_only() -> None:
    with pytest.raises(VMError, match="frame pointer is read only"):
        run(Program([I(0xB7, dst=10, imm=0), EXIT]))


def test_fall_off_the_end() -> None:
    with pytest.raises(VMError, match="fell off the end"):
        run(Program([I(0xB7, dst=0, imm=0)]))


def test_budget() -> None:
    with pytest.raises(BudgetExceededError, match="budget of 100"):
        run(Program([I(0x05, offset=-1), EXIT]), max_insns=100)
    assert run(Program([I(0xB7), EXIT]), max_insns=2).insns == 2


def test_invalid_program_is_refused() -> None:
    with pytest.raises(DecodeError):
        run(Program([I(0x05, offset=3), EXIT]))


# --- calls ------------------------------------------------------------------------------------------


def test_local_call_preserves_callee_saved_and_has_own_stack() -> None:
    prog = Program(
        [
            I(0xB7, dst=6, imm=6),
            I(0x7A, dst=10, offset=-8, imm=111),
            I(0xB7, dst=1, imm=5),
            I(0x85, src=1, imm=4),  # call +4 -> slot 8
            I(0x79, dst=1, src=10, offset=-8),  # caller's stack intact
            I(0x0F, dst=0, src=6),
            I(0x0F, dst=0, src=1),
            EXIT,
            # callee: clobber r6 and its own stack slot, return r1 * 2
            I(0xB7, dst=6, imm=1000),
            I(0x7A, dst=10, offset=-8, imm=999),
            I(0xBF, dst=0, src=1),
            I(0x27, dst=0, imm=2),
            EXIT,
        ]
    )
    assert run(prog).retval == 10 + 6 + 111


def test_call_depth_limit() -> None:
    # f calls itself forever: the 9th frame is refused.
    prog = Program([I(0x85, src=1, imm=-1), EXIT])
    with pytest.raises(VMError, match="too deep"):
        run(prog)
    # exactly MAX_CALL_FRAMES frames are fine: a chain of 7 calls.
    chain = [I(0x85, src=1, imm=1), EXIT] * (MAX_CALL_FRAMES - 1) + [I(0xB7, dst=0, imm=42), EXIT]
    assert run(Program(chain)).retval == 42


def test_helpers_and_callx() -> None:
    helpers = ubpf_test_helpers()
    assert (
        r0_of(
            I(0xB7, dst=1, imm=1),
            I(0xB7, dst=2, imm=2),
            I(0xB7, dst=3, imm=3),
            I(0xB7, dst=4, imm=4),
            I(0xB7, dst=5, imm=5),
            I(0x85, imm=0),
            helpers=helpers,
        )
        == 0x0102030405
    )
    assert r0_of(I(0xB7, dst=1, imm=0), I(0x85, imm=5), I(0xB7, dst=0, imm=7), helpers=helpers) == 0  # unwind
    assert r0_of(I(0xB7, dst=1, imm=9), I(0xB7, dst=2, imm=3), I(0x8D, dst=2), helpers=helpers) == 3  # sqrti
    with pytest.raises(VMError, match="unknown helper 77"):
        r0_of(I(0x85, imm=77))


def test_helper_memory_access_is_checked() -> None:
    helpers = ubpf_test_helpers()
    result = run(Program([I(0xB7, dst=2, imm=2), I(0x85, imm=1), EXIT]), b"\x00\x01", helpers=helpers)
    assert result.data == bytes([42, 43])
    with pytest.raises(VMError, match="invalid read"):
        run(Program([I(0xB7, dst=2, imm=3), I(0x85, imm=1), EXIT]), b"\x00\x01", helpers=helpers)


def test_custom_helper_can_stop_program() -> None:
    reg = HelperRegistry()

    def stop(env: object, a: int, *_: int) -> int:
        raise ProgramExit(a + 1)

    reg.register(1, "stop", stop)
    assert r0_of(I(0xB7, dst=1, imm=41), I(0x85, imm=1), I(0xB7, dst=0, imm=0), helpers=reg) == 42


def test_lddw_pseudo_source_needs_a_loader() -> None:
    with pytest.raises(VMError, match="MAP_FD"):
        run(Program([I(0x18, dst=1, src=1, imm=3), EXIT]))


# --- legacy packet access ---------------------------------------------------------------------------


def test_ld_abs_ind_network_order() -> None:
    pkt = bytes(range(32))
    prog = Program([I(0xBF, dst=6, src=1), I(0x28, imm=12), EXIT])
    assert run(prog, pkt).retval == 0x0C0D
    prog = Program([I(0xBF, dst=6, src=1), I(0xB7, dst=7, imm=4), I(0x40, src=7, imm=2), EXIT])
    assert run(prog, pkt).retval == 0x06070809


def test_ld_abs_out_of_bounds_exits_with_zero() -> None:
    prog = Program(
        [I(0xBF, dst=6, src=1), I(0xB7, dst=0, imm=9), I(0x20, imm=30), I(0xB7, dst=0, imm=5), EXIT]
    )
    assert run(prog, bytes(32)).retval == 0
    prog = Program(
        [I(0xBF, dst=6, src=1), I(0xB7, dst=7, imm=-8), I(0x50, src=7, imm=4), I(0xB7, dst=0, imm=5), EXIT]
    )
    assert run(prog, bytes(32)).retval == 0


def test_ld_abs_requires_context_in_r6() -> None:
    with pytest.raises(VMError, match="r6"):
        run(Program([I(0x30, imm=0), EXIT]), bytes(4))


# --- XDP context ------------------------------------------------------------------------------------


def test_xdp_data_pointers() -> None:
    prog = Program(
        [
            I(0x61, dst=2, src=1, offset=0),  # r2 = ctx->data
            I(0x61, dst=3, src=1, offset=4),  # r3 = ctx->data_end
            I(0xBF, dst=4, src=2),
            I(0x07, dst=4, imm=2),
            I(0x2D, dst=4, src=3, offset=3),  # if data + 2 > data_end goto drop
            I(0x69, dst=0, src=2, offset=0),
            I(0x6B, dst=2, src=0, offset=0),  # write it back byte-swapped? no: store same
            EXIT,
            I(0xB7, dst=0, imm=1),
            EXIT,
        ]
    )
    result = run(prog, XdpInput(b"\x34\x12" + bytes(12)))
    assert result.retval == 0x1234 and result.data[:2] == b"\x34\x12"
    assert run(prog, XdpInput(b"\x01")).retval == 1


def test_raw_input_registers() -> None:
    prog = Program([I(0xBF, dst=0, src=2), EXIT])
    assert run(prog, RawInput(b"abc")).retval == 3
    assert run(prog).retval == 0


def test_profile_counts() -> None:
    from ebpf.vm import Interpreter

    prog = Program([I(0xB7, dst=0, imm=3), I(0x17, dst=0, imm=1), I(0x55, dst=0, imm=0, offset=-2), EXIT])
    result = Interpreter(prog).run(b"", profile=True)
    assert result.profile == (1, 3, 3, 1) and result.insns == 8


def test_stack_is_zeroed_between_runs() -> None:
    from ebpf.vm import Interpreter

    vm = Interpreter(Program([I(0x79, dst=0, src=10, offset=-8), I(0x7A, dst=10, offset=-8, imm=5), EXIT]))
    assert vm.run().retval == 0 and vm.run().retval == 0


def test_struct_sizes() -> None:
    assert struct.calcsize("<6I") == 24
