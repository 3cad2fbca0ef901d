"""Program against the real kernel: load, BPF_PROG_TEST_RUN, verifier errors, info, leaks.

Calls bpf(2). Every test is marked ``kernel`` and skipped with a reason when bpf() is
unavailable (or fails with ``EBPF_REQUIRE_KERNEL=1``). Bytecode is written as hex:
opcode, dst|src<<4, 16-bit offset, 32-bit immediate, all little-endian.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest

from ebpf.errors import VerifierError, VerifierSource
from ebpf.kernel import LogLevel, Program, enable_stats, program_ids, test_run
from ebpf.spec import ProgramType

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(sys.byteorder != "little", reason="the hex bytecode below is little-endian"),
]

RET2 = bytes.fromhex(
    "b700000002000000"  # r0 = 2
    "9500000000000000"  # exit
)

# XDP: if the packet has 14 bytes, pkt[13] = pkt[0] ^ 0xff and return XDP_TX (3); else XDP_DROP (1).
XDP_REWRITE = bytes.fromhex(
    "6112000000000000"  # 0: r2 = *(u32 *)(r1 + 0)      ; xdp_md->data
    "6113040000000000"  # 1: r3 = *(u32 *)(r1 + 4)      ; xdp_md->data_end
    "bf24000000000000"  # 2: r4 = r2
    "070400000e000000"  # 3: r4 += 14
    "2d34050000000000"  # 4: if r4 > r3 goto +5         ; to 10
    "7125000000000000"  # 5: r5 = *(u8 *)(r2 + 0)
    "a7050000ff000000"  # 6: r5 ^= 0xff
    "73520d0000000000"  # 7: *(u8 *)(r2 + 13) = r5
    "b700000003000000"  # 8: r0 = 3                     ; XDP_TX
    "9500000000000000"  # 9: exit
    "b700000001000000"  # 10: r0 = 1                    ; XDP_DROP
    "9500000000000000"  # 11: exit
)

# Socket filter: return skb->len (the kernel's test run strips the Ethernet header first).
SOCKET_LEN = bytes.fromhex(
    "6110000000000000"  # r0 = *(u32 *)(r1 + 0)        ; __sk_buff->len
    "9500000000000000"  # exit
)

EXIT_ONLY = bytes.fromhex("9500000000000000")  # exit, with r0 never written

# r1 = 1; r2 = 2; exit -- rejected at instruction 2.
LATE_EXIT = bytes.fromhex("b701000001000000 b702000002000000 9500000000000000")

PACKET = bytes(range(64))


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_xdp_returns_r0_and_leaves_the_packet() -> None:
    with Program.load(RET2, ProgramType.XDP, name="ret2") as prog:
        result = prog.test_run(PACKET)
    assert result.retval == 2
    assert result.data_out == PACKET
    assert result.ctx_out is None


def test_kernel_test_run_alias() -> None:
    with Program.load(RET2, ProgramType.XDP) as prog:
        assert test_run(prog, PACKET).retval == 2


def test_socket_filter() -> None:
    with Program.load(SOCKET_LEN, ProgramType.SOCKET_FILTER, name="sock_len") as prog:
        result = prog.test_run(PACKET)
    assert result.retval == len(PACKET) - 14  # ETH_HLEN pulled by eth_type_trans()
    # A socket filter does not see L2: the kernel hands back a zeroed Ethernet header.
    assert result.data_out == bytes(14) + PACKET[14:]


def test_xdp_reads_and_writes_the_packet() -> None:
    with Program.load(XDP_REWRITE, ProgramType.XDP, name="rewrite") as prog:
        result = prog.test_run(PACKET)
    expected = bytearray(PACKET)
    expected[13] = PACKET[0] ^ 0xFF
    assert result.retval == 3
    assert result.data_out == bytes(expected)
    assert result.data_out != PACKET


def test_xdp_context_in_and_out(require_kernel: Callable[[str, str], None]) -> None:
    require_kernel("5.15", "xdp_md context for BPF_PROG_TEST_RUN")
    # struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
    ctx = bytes(4) + len(PACKET).to_bytes(4, "little") + bytes(16)
    with Program.load(XDP_REWRITE, ProgramType.XDP) as prog:
        result = prog.test_run(PACKET, ctx_in=ctx)
    assert result.retval == 3
    assert result.ctx_out is not None and len(result.ctx_out) == len(ctx)


def test_verifier_rejection_has_log_and_insn_index() -> None:
    with pytest.raises(VerifierError) as info:
        Program.load(EXIT_ONLY, ProgramType.XDP, name="no_r0")
    err = info.value
    assert err.source is VerifierSource.KERNEL
    assert any("R0 !read_ok" in line for line in err.log)
    assert "R0 !read_ok" in str(err)
    assert err.insn_index == 0
    assert err.errno is not None and err.errno > 0
    assert err.__cause__ is not None


def test_verifier_rejection_insn_index_points_at_the_culprit() -> None:
    with pytest.raises(VerifierError) as info:
        Program.load(LATE_EXIT, ProgramType.SOCKET_FILTER, log_level=LogLevel.INSTRUCTION)
    assert info.value.insn_index == 2
    assert any("R0 !read_ok" in line for line in info.value.log)


def test_small_log_buffer_is_grown() -> None:
    with Program.load(XDP_REWRITE, ProgramType.XDP, log_level=2, log_size=128) as prog:
        assert len("\n".join(prog.verifier_log)) > 128
        assert prog.verifier_log[-1].startswith("processed ")


def test_repeat_gives_a_duration() -> None:
    with Program.load(XDP_REWRITE, ProgramType.XDP) as prog:
        result = prog.test_run(PACKET, repeat=1000)
    assert result.retval == 3
    assert result.duration_ns > 0


def test_info_is_sane() -> None:
    with Program.load(RET2, ProgramType.XDP, name="info_test") as prog:
        info = prog.info()
        assert info.id > 0
        assert info.id in set(program_ids())
        with Program.from_id(info.id) as again:
            assert again.type is ProgramType.XDP
            assert again.info().tag == info.tag
    assert info.type is ProgramType.XDP
    assert info.name == "info_test"
    assert len(info.tag) == 16 and int(info.tag, 16) != 0
    assert info.xlated_prog_len == len(RET2)
    assert info.verified_insns == 2
    assert info.gpl_compatible
    assert info.created_by_uid == os.geteuid()


def test_run_statistics(require_kernel: Callable[[str, str], None]) -> None:
    require_kernel("5.8", "BPF_ENABLE_STATS")
    with enable_stats(), Program.load(RET2, ProgramType.XDP) as prog:
        prog.test_run(PACKET, repeat=50)
        info = prog.info()
    assert info.run_cnt == 50
    assert info.run_time_ns > 0


def test_xlated_returns_the_translated_program(
    skip_if_not_supported: Callable[[], AbstractContextManager[None]],
) -> None:
    with Program.load(RET2, ProgramType.XDP) as prog, skip_if_not_supported():
        assert prog.xlated() == RET2


def test_log_level_2_success_keeps_the_log() -> None:
    with Program.load(RET2, ProgramType.XDP, log_level=2) as prog:
        log = prog.verifier_log
    assert any("(b7) r0 = 2" in line for line in log)
    assert log[-1].startswith("processed 2 insns")


def test_log_level_0_success_has_no_log() -> None:
    with Program.load(RET2, ProgramType.XDP) as prog:
        assert prog.verifier_log == ()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_no_descriptor_leaks() -> None:
    before = _open_fds()
    for _ in range(20):
        with Program.load(XDP_REWRITE, ProgramType.XDP) as prog:
            prog.test_run(PACKET)
            prog.info()
        with pytest.raises(VerifierError):
            Program.load(EXIT_ONLY, ProgramType.XDP)
    assert _open_fds() == before


def test_a_leaked_program_warns_and_is_closed() -> None:
    prog = Program.load(RET2, ProgramType.XDP)
    fd = prog.fd
    with pytest.warns(ResourceWarning, match=f"unclosed file descriptor {fd}"):
        del prog  # the last reference: the FD it owns is finalized here
    with pytest.raises(OSError):
        os.fstat(fd)
