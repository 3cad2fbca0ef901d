"""Differential tests: the interpreter against the kernel (BPF_PROG_TEST_RUN) on generated programs.

The kernel returns only the low 32 bits of r0, so every generated program stores all its scalar
registers (64 bits each) into the packet before it exits, and the whole output packet is
compared along with the return value.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebpf.errors import VerifierError
from ebpf.isa import Program
from ebpf.spec import ProgramType
from ebpf.vm import XdpInput, run

from .progen import packets, xdp_program

pytestmark = pytest.mark.kernel

M32 = 0xFFFFFFFF
EXAMPLES = int(os.environ.get("EBPF_DIFF_EXAMPLES", "2500"))


def kernel_run(program: Program, packet: bytes) -> tuple[int, bytes]:
    from ebpf import kernel

    try:
        with kernel.Program.load(program, ProgramType.XDP) as prog:
            result = prog.test_run(packet)
    except VerifierError as err:
        pytest.fail(f"the generator made a program the kernel refuses:\n{program}\n{err.format(tail=30)}")
    return result.retval, result.data_out


def check_same(program: Program, packet: bytes) -> None:
    ours = run(program, XdpInput(packet))
    retval, data_out = kernel_run(program, packet)
    assert data_out == ours.data, f"packets differ for\n{program}"
    assert retval == ours.retval & M32, f"r0 differs for\n{program}"


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(program=xdp_program(), packet=packets)
def test_generated_programs_agree_with_kernel(program: Program, packet: bytes) -> None:
    check_same(program, packet)


@settings(max_examples=max(EXAMPLES // 3, 50), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=xdp_program(with_calls=False, with_loops=False), packet=packets)
def test_straight_line_and_branches_agree_with_kernel(program: Program, packet: bytes) -> None:
    check_same(program, packet)


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(min_size=14, max_size=80),
    offset=st.integers(-4, 90),
    size=st.sampled_from([1, 2, 4]),
    indirect=st.booleans(),
)
def test_legacy_packet_loads_agree_with_kernel(data: bytes, offset: int, size: int, indirect: bool) -> None:
    """ld_abs / ld_ind in a tc (SCHED_CLS) program: network byte order, out of bounds -> r0 = 0."""
    from ebpf import kernel
    from ebpf.isa import Instruction as I

    # The kernel refuses IPv4/IPv6 ethertypes without a full IP header (EINVAL): use an
    # experimental ethertype so that any payload is a valid test packet.
    data = data[:12] + b"\x88\xb5" + data[14:]
    mode_size = {1: 0x10, 2: 0x08, 4: 0x00}[size]
    if indirect:
        insns = [I(0xBF, dst=6, src=1), I(0xB7, dst=7, imm=offset - 3), I(0x40 | mode_size, src=7, imm=3)]
    else:
        insns = [I(0xBF, dst=6, src=1), I(0x20 | mode_size, imm=offset)]
    # r0 = loaded value + 1 so that "out of bounds" (0) differs from loading a zero.
    program = Program([*insns, I(0x07, dst=0, imm=1), I(0x95)])
    ours = run(program, data).retval
    with kernel.Program.load(program, ProgramType.SCHED_CLS) as prog:
        theirs = prog.test_run(data).retval
    assert theirs == ours & M32
