"""Run a bpf_conformance case in the kernel: the program wrapped as XDP, its memory as the packet."""

from __future__ import annotations

from ebpf.conformance import ConformanceCase, program
from ebpf.isa import Instruction as I
from ebpf.isa import Program


def wrap_as_xdp(case: ConformanceCase) -> tuple[Program, bytes]:
    """Prepend a prologue giving the program the conformance convention: r1 = memory, r2 = length.

    The memory is the packet (padded to the 14 bytes XDP needs); the prologue bounds-checks it
    so the verifier knows r1 points at ``len(mem)`` readable bytes.
    """
    length = len(case.mem)
    prologue = [
        I(0x61, dst=2, src=1, offset=0),  # r2 = ctx->data
        I(0x61, dst=3, src=1, offset=4),  # r3 = ctx->data_end
        I(0xBF, dst=4, src=2),
        I(0x07, dst=4, imm=length),
        I(0xBD, dst=4, src=3, offset=2),  # if r4 <= r3 goto +2
        I(0xB7, dst=0, imm=0),
        I(0x95),
        I(0xBF, dst=1, src=2),
        I(0xB7, dst=2, imm=length),
    ]
    body = program(case)
    packet = case.mem + bytes(max(0, 14 - length))
    return Program([*prologue, *body.instructions]), packet
