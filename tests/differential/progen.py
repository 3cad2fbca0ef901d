"""Hypothesis strategies for programs the kernel verifier accepts, for differential tests.

Shape of a generated XDP program::

    r6 = r1; r7 = ctx->data; r8 = ctx->data_end        (pointers; never stored or modified)
    if r7 + PKT_LEN > r8 goto bail                      (the whole packet is then in range)
    *(u64 *)(r10 - 8*k) = 0   for k in 1..STACK_WORDS  (stack initialised)
    r0..r5, r9 = random constants
    body: blocks of ALU ops, stack/packet loads and stores, atomics on the stack, forward
          branches over the next block, bounded loops counted down in r9, and local calls
    *(u64 *)(r7 + 8*i) = r_i  for every scalar register (all 64 bits reach the output packet)
    exit with r0

Scalars live in r0-r5 and r9; r6-r8 hold pointers, r10 is the frame pointer. After a local
call r1-r5 are re-initialised (the verifier marks them unreadable).
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import strategies as st

from ebpf.isa import Instruction as I
from ebpf.isa import Program

PKT_LEN = 96  # bytes guaranteed in the packet
OUT_AREA = 64  # bytes at the end of the packet where registers are stored
STACK_WORDS = 8
SCALARS = (0, 1, 2, 3, 4, 5, 9)
BODY_SCALARS = (0, 1, 2, 3, 4, 5)  # r9 is the loop counter inside loops

Draw = Callable[..., object]

# ALU op codes (high nibble) usable with both sources; shift ops need range-limited immediates.
ALU_OPS = (0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x90, 0xA0, 0xB0)
SHIFT_OPS = (0x60, 0x70, 0xC0)
JMP_OPS = (0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0xA0, 0xB0, 0xC0, 0xD0)
SIZES = {1: 0x10, 2: 0x08, 4: 0x00, 8: 0x18}

imm32 = st.one_of(
    st.integers(-(1 << 31), (1 << 31) - 1),
    st.sampled_from([0, 1, -1, 2, 0x7FFFFFFF, -0x80000000, 0xFF, 0xFFFF, 31, 32, 63, 64]),
)
imm64 = st.one_of(
    st.integers(0, (1 << 64) - 1),
    st.sampled_from([0, 1, (1 << 64) - 1, 1 << 63, (1 << 63) - 1, 0xFFFFFFFF, 0x80000000, 1 << 32]),
)


@st.composite
def alu_insn(draw: st.DrawFn, regs: tuple[int, ...] = BODY_SCALARS) -> I:
    is64 = draw(st.booleans())
    cls = 0x07 if is64 else 0x04
    dst = draw(st.sampled_from(regs))
    kind = draw(st.sampled_from(["alu", "alu", "alu", "shift", "neg", "end", "movsx", "sdivmod"]))
    if kind == "neg":
        return I(0x80 | cls, dst=dst)
    if kind == "end":
        width = draw(st.sampled_from([16, 32, 64]))
        opcode = draw(st.sampled_from([0xD4, 0xDC, 0xD7]))
        return I(opcode, dst=dst, imm=width)
    src_reg = draw(st.booleans())
    src = draw(st.sampled_from(regs))
    if kind == "movsx":
        widths = [8, 16, 32] if is64 else [8, 16]
        return I(0xB0 | cls | 0x08, dst=dst, src=src, offset=draw(st.sampled_from(widths)))
    if kind == "sdivmod":
        op = draw(st.sampled_from([0x30, 0x90]))
        if src_reg:
            return I(op | cls | 0x08, dst=dst, src=src, offset=1)
        return I(op | cls, dst=dst, imm=draw(imm32.filter(lambda v: v != 0)), offset=1)
    if kind == "shift":
        op = draw(st.sampled_from(SHIFT_OPS))
        if src_reg:
            return I(op | cls | 0x08, dst=dst, src=src)
        return I(op | cls, dst=dst, imm=draw(st.integers(0, 63 if is64 else 31)))
    op = draw(st.sampled_from(ALU_OPS))
    if src_reg:
        return I(op | cls | 0x08, dst=dst, src=src)
    imm = draw(imm32)
    if op in (0x30, 0x90) and imm == 0:
        imm = 1  # the verifier refuses division by a zero immediate
    return I(op | cls, dst=dst, imm=imm)


@st.composite
def mem_insns(draw: st.DrawFn) -> list[I]:
    """One load, store or atomic on the stack or the packet."""
    size = draw(st.sampled_from([1, 2, 4, 8]))
    reg = draw(st.sampled_from(BODY_SCALARS))
    on_stack = draw(st.booleans())
    if on_stack:
        base = 10
        offset = -draw(st.integers(1, STACK_WORDS * 8 // size)) * size
    else:
        base = 7
        offset = draw(st.integers(0, PKT_LEN - OUT_AREA - size))
    kind = draw(st.sampled_from(["load", "load", "ldsx", "stx", "st", "atomic"]))
    if kind == "atomic" and on_stack and size in (4, 8):
        imm = draw(st.sampled_from([0x00, 0x01, 0x40, 0x41, 0x50, 0x51, 0xA0, 0xA1, 0xE1, 0xF1]))
        return [I(0xC3 | SIZES[size], dst=base, src=reg, offset=offset, imm=imm)]
    if kind == "ldsx" and size != 8:
        return [I(0x81 | SIZES[size], dst=reg, src=base, offset=offset)]
    if kind == "stx":
        return [I(0x63 | SIZES[size], dst=base, src=reg, offset=offset)]
    if kind == "st":
        return [I(0x62 | SIZES[size], dst=base, offset=offset, imm=draw(imm32))]
    return [I(0x61 | SIZES[size], dst=reg, src=base, offset=offset)]


@st.composite
def straight_block(draw: st.DrawFn) -> list[I]:
    kind = draw(st.sampled_from(["alu", "alu", "mem", "lddw"]))
    if kind == "alu":
        return [draw(alu_insn())]
    if kind == "lddw":
        return [I(0x18, dst=draw(st.sampled_from(BODY_SCALARS)), imm=draw(imm64))]
    return draw(mem_insns())


def cond_jump(draw: st.DrawFn, skip: int) -> I:
    is64 = draw(st.booleans())
    cls = 0x05 if is64 else 0x06
    op = draw(st.sampled_from(JMP_OPS))
    dst = draw(st.sampled_from(BODY_SCALARS))
    if draw(st.booleans()):
        return I(op | cls | 0x08, dst=dst, src=draw(st.sampled_from(BODY_SCALARS)), offset=skip)
    return I(op | cls, dst=dst, imm=draw(imm32), offset=skip)


def _slots(insns: list[I]) -> int:
    return sum(i.slots for i in insns)


@st.composite
def branch_block(draw: st.DrawFn) -> list[I]:
    inner = draw(st.lists(straight_block(), min_size=1, max_size=3))
    body = [i for block in inner for i in block]
    return [cond_jump(draw, _slots(body)), *body]


@st.composite
def loop_block(draw: st.DrawFn) -> list[I]:
    count = draw(st.integers(1, 5))
    inner_blocks = draw(st.lists(st.one_of(straight_block(), branch_block()), min_size=1, max_size=3))
    inner = [i for block in inner_blocks for i in block]
    body = [*inner, I(0x07, dst=9, imm=-1)]
    back = -(_slots(body) + 1)
    return [I(0xB7, dst=9, imm=count), *body, I(0x55, dst=9, imm=0, offset=back)]


def reinit_args(draw: st.DrawFn) -> list[I]:
    return [I(0xB7, dst=r, imm=draw(imm32)) for r in (1, 2, 3, 4, 5)]


@st.composite
def xdp_program(draw: st.DrawFn, *, with_calls: bool = True, with_loops: bool = True) -> Program:
    """A random XDP program (see the module docstring) that the kernel verifier accepts."""
    blocks = [straight_block(), straight_block(), branch_block()]
    if with_loops:
        blocks.append(loop_block())
    block_lists = draw(st.lists(st.one_of(*blocks), min_size=1, max_size=10))
    nsubs = draw(st.integers(0, 2)) if with_calls else 0
    subs = [draw(st.lists(alu_insn((0, 1, 2, 3, 4, 5)), min_size=0, max_size=6)) for _ in range(nsubs)]

    head: list[I] = [
        I(0xBF, dst=6, src=1),
        I(0x61, dst=7, src=6, offset=0),
        I(0x61, dst=8, src=6, offset=4),
        I(0xBF, dst=9, src=7),
        I(0x07, dst=9, imm=PKT_LEN),
        I(0xBD, dst=9, src=8, offset=2),  # if r9 <= r8 goto +2
        I(0xB7, dst=0, imm=0),
        I(0x95),  # bail: packet too short
    ]
    head += [I(0x7A, dst=10, offset=-8 * k, imm=0) for k in range(1, STACK_WORDS + 1)]
    for reg in SCALARS:
        if draw(st.booleans()):
            head.append(I(0x18, dst=reg, imm=draw(imm64)))
        else:
            head.append(I(0xB7, dst=reg, imm=draw(imm32)))

    body: list[I] = []
    call_sites: list[tuple[int, int]] = []  # (index in body, subprogram number)
    for block in block_lists:
        body += block
        if subs and draw(st.booleans()):
            call_sites.append((len(body), draw(st.integers(0, nsubs - 1))))
            body.append(I(0x85, src=1, imm=0))  # patched below
            body += reinit_args(draw)

    tail = [I(0x7B, dst=7, src=reg, offset=PKT_LEN - OUT_AREA + 8 * i) for i, reg in enumerate(SCALARS)]
    tail.append(I(0x95))
    main = head + body + tail

    # Lay out the called subprograms after main (an uncalled one would be unreachable code,
    # which the verifier refuses) and patch the call offsets (relative to the next slot).
    sub_starts: dict[int, int] = {}
    slot = _slots(main)
    sub_code: list[I] = []
    for number in sorted({sub for _, sub in call_sites}):
        code = subs[number]
        sub_starts[number] = slot
        chunk = [I(0xBF, dst=0, src=1), *code, I(0x95)]
        sub_code += chunk
        slot += _slots(chunk)
    insns = list(main)
    base = len(head)
    for body_index, sub in call_sites:
        index = base + body_index
        call_slot = _slots(insns[:index])
        insns[index] = I(0x85, src=1, imm=sub_starts[sub] - call_slot - 1)
    return Program(insns + sub_code)


_long = st.binary(min_size=PKT_LEN, max_size=PKT_LEN + 32)
# Mostly long enough; sometimes too short (the program bails out; XDP needs >= 14 bytes).
packets = st.one_of(_long, _long, _long, st.binary(min_size=14, max_size=PKT_LEN - 1))
