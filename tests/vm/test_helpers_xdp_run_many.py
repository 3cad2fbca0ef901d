"""run_many on XDP inputs that helpers resize: every run starts from the original packet."""

from __future__ import annotations

from ebpf.isa.asm import assemble
from ebpf.vm import PyTier
from ebpf.vm.context import XdpInput
from ebpf.vm.helpers import RunEnv, runtime_helpers
from ebpf.vm.memory import Memory


def test_run_many_restores_a_packet_the_program_shrank() -> None:
    # bpf_xdp_adjust_head(ctx, 4): drop 4 bytes from the front, return the new length
    source = """
        r6 = r1
        r2 = 4
        call 44
        r2 = *(u32 *)(r6 + 0)
        r3 = *(u32 *)(r6 + 4)
        r3 -= r2
        r0 = r3
        exit
    """
    memory = Memory()
    env = RunEnv(memory=memory)
    tier = PyTier(assemble(source), helpers=runtime_helpers(), memory=memory)
    results = tier.run_many(XdpInput(bytes(range(60))), 3, env=env)
    assert [r.retval for r in results] == [56, 56, 56]
    assert all(r.data == bytes(range(4, 60)) for r in results)
