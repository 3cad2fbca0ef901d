"""XdpInput: the xdp_md context, head/tail room and adjust_head/tail/meta, against the kernel."""

from __future__ import annotations

import errno
import struct

import pytest

from ebpf.errors import TestRunError
from ebpf.spec import ProgramType
from ebpf.vm.context import LOOPBACK, XDP_MAX_LINEAR, XdpInput, XdpMapped, host_devices
from ebpf.vm.helpers import RunEnv

from ._helper_util import ENGINE_NAMES, M32, kernel_test_run, user_test_run

XDP = ProgramType.XDP
PKT = bytes(range(64))


def md(
    data: int = 0, data_end: int = 64, meta: int = 0, ifindex: int = 0, queue: int = 0, egress: int = 0
) -> bytes:
    return struct.pack("<6I", data, data_end, meta, ifindex, queue, egress)


LENGTH = """
    r2 = *(u32 *)(r1 + 0)
    r3 = *(u32 *)(r1 + 4)
    r0 = r3
    r0 -= r2
    exit
"""

FIELDS = """
    r0 = *(u32 *)(r1 + 12)
    r0 <<= 8
    r2 = *(u32 *)(r1 + 16)
    r0 |= r2
    exit
"""


def adjust_head(delta: int) -> str:
    return f"""
    r6 = r1
    r2 = {delta}
    call 44
    r7 = r0
    r2 = *(u32 *)(r6 + 0)
    r3 = *(u32 *)(r6 + 4)
    r4 = r2
    r4 += 2
    if r4 > r3 goto out
    r5 = 0xab
    *(u8 *)(r2 + 0) = r5
    r5 = *(u8 *)(r2 + 1)
    r5 += 1
    *(u8 *)(r2 + 1) = r5
out:
    r0 = r7
    exit
"""


def adjust_tail(delta: int) -> str:
    return f"""
    r6 = r1
    r2 = {delta}
    call 65
    r7 = r0
    r2 = *(u32 *)(r6 + 0)
    r3 = *(u32 *)(r6 + 4)
    r4 = r2
    r4 += 14
    if r4 > r3 goto out
    r5 = 0xcd
    *(u8 *)(r2 + 13) = r5
out:
    r0 = r7
    exit
"""


def adjust_meta(delta: int, head: int = 0) -> str:
    return f"""
    r6 = r1
    r2 = {delta}
    call 54
    r7 = r0
    if r7 != 0 goto out
    r2 = *(u32 *)(r6 + 8)
    r3 = *(u32 *)(r6 + 0)
    r4 = r2
    r4 += 4
    if r4 > r3 goto out
    r5 = 0x11223344
    *(u32 *)(r2 + 0) = r5
    r1 = r6
    r2 = {head}
    call 44
    r7 = r0
    r2 = *(u32 *)(r6 + 8)
    r3 = *(u32 *)(r6 + 0)
    r4 = r2
    r4 += 4
    if r4 > r3 goto out
    r5 = *(u32 *)(r2 + 0)
    r5 += 1
    *(u32 *)(r2 + 0) = r5
out:
    r0 = r7
    exit
"""


def xdp_bytes(offset: int, length: int, adjust: int = 0) -> str:
    """xdp_load_bytes at ``offset`` (after adjust_head(adjust)), stores it back 1 byte later, buff len."""
    size = length
    return f"""
    r6 = r1
    r2 = {adjust}
    call 44
    r1 = 0x5555555555555555 ll
    *(u64 *)(r10 - 16) = r1
    *(u64 *)(r10 - 8) = r1
    r1 = r6
    r2 = {offset}
    r3 = r10
    r3 += -16
    r4 = {length}
    call 189
    r7 = r0
    r1 = r6
    r2 = {offset + 1}
    r3 = r10
    r3 += -16
    r4 = {size}
    call 190
    r8 = r0
    r1 = r6
    call 188
    r7 &= 0xff
    r7 <<= 8
    r8 &= 0xff
    r7 |= r8
    r7 <<= 16
    r0 |= r7
    exit
"""


def xdp_check_mtu(ifindex: int, mtu_in: int, diff: int, flags: int) -> str:
    return (
        f"r6 = r1\nr1 = {mtu_in}\n*(u32 *)(r10 - 4) = r1\nr1 = r6\nr2 = {ifindex}\nr3 = r10\nr3 += -4\n"
        f"r4 = {diff}\nr5 = {flags}\ncall 163\nr0 &= 0xff\nr0 <<= 24\nr1 = *(u32 *)(r10 - 4)\nr0 |= r1\nexit"
    )


CSUM_DIFF_XDP = (
    "r1 = 0x0a000001\n*(u64 *)(r10 - 8) = r1\nr1 = r10\nr1 += -8\nr2 = 8\nr3 = r10\n"
    "r3 += -8\nr4 = 4\nr5 = 0x1234\ncall 28\nexit"
)

CASES: list[tuple[str, bytes, bytes | None]] = [
    (LENGTH, PKT, None),
    (LENGTH, PKT, md(data_end=64)),
    (LENGTH, bytes(72), md(data=8, data_end=72)),
    (FIELDS, PKT, None),
    (FIELDS, PKT, md(ifindex=1)),
    *[(adjust_head(d), PKT, None) for d in (-216, -217, -220, -200, -1, 0, 7, 50, 51, 64)],
    *[(adjust_head(d), bytes(range(40)), md(data=8, data_end=40)) for d in (-208, -209, -8, 4, 18, 19)],
    *[(adjust_tail(d), PKT, None) for d in (3456, 3457, 100, 1, 0, -1, -50, -51, -64)],
    *[(adjust_tail(d), PKT, md(data=4, data_end=64)) for d in (3460, 3461, -46, -47)],
    *[(adjust_meta(d), PKT, None) for d in (-4, -8, -216, -220, -2, 4, 0)],
    *[(adjust_meta(-8, h), PKT, None) for h in (-200, -208, -209, 10, 50, 51)],
    *[(adjust_meta(d), bytes(range(80)), md(data=16, data_end=80)) for d in (4, 8, 12, 16, 20, -200, -201)],
    *[(f"r1 = {i}\nr2 = {f}\ncall 23\nexit", PKT, None) for i, f in ((3, 0), (3, 1), (1, 0))],
    (CSUM_DIFF_XDP, PKT, None),
    *[
        (xdp_check_mtu(i, m, d, f), PKT, None)
        for i, m, d, f in ((0, 0, 0, 0), (0, 0, 70000, 0), (1, 1500, 0, 0), (0, 0, 0, 1), (9999, 7, 0, 0))
    ],
    *[
        (xdp_bytes(o, n), PKT, None)
        for o, n in ((0, 8), (56, 8), (57, 8), (60, 4), (0x10000, 1), (0xFFFF, 1))
    ],
    (xdp_bytes(4, 8, adjust=-20), PKT, None),
]


@pytest.mark.kernel
@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_xdp_matches_the_kernel(case: int, engine: str) -> None:
    text, data, ctx = CASES[case]
    ours = user_test_run(text, XDP, data, ctx, engine=engine)
    kernel = kernel_test_run(text, XDP, data, ctx)
    assert ours == kernel


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_data_pointers_are_real_addresses(engine: str) -> None:
    res = user_test_run(LENGTH, XDP, PKT, engine=engine)
    assert res.retval == 64
    res = user_test_run(FIELDS, XDP, PKT, engine=engine)
    assert res.retval == (1 << 8) | 0  # loopback, queue 0
    res = user_test_run(adjust_head(-20), XDP, PKT, engine=engine)
    assert res.retval == 0 and len(res.data_out) == 84 and res.data_out[:2] == b"\xab\x01"
    res = user_test_run(adjust_head(-217), XDP, PKT, engine=engine)
    assert res.retval == -errno.EINVAL & M32 and res.data_out == b"\xab\x02" + PKT[2:]


def test_adjust_limits_without_a_program() -> None:
    env = RunEnv(deterministic=True)
    mapped = XdpInput(PKT).map(env.memory)
    assert isinstance(mapped, XdpMapped)
    assert mapped.adjust_meta(-255) == -errno.EINVAL  # below the xdp_frame
    assert mapped.adjust_meta(-6) == -errno.EACCES  # not a multiple of 4
    assert mapped.adjust_meta(-8) == 0
    assert mapped.adjust_head(-208) == 0  # metadata moves along
    assert mapped.adjust_head(-1) == -errno.EINVAL
    assert mapped.data() == bytes(8) + bytes(208) + PKT
    assert mapped.ctx_out() == md(data=8, data_end=8 + 208 + 64)
    assert mapped.adjust_tail(-(208 + 64 - 14)) == 0
    assert mapped.adjust_tail(-1) == -errno.EINVAL
    for region in mapped.regions:
        env.memory.unmap(region)


def test_test_run_input_checks() -> None:
    with pytest.raises(TestRunError) as err:
        XdpInput.from_test_run(bytes(13))
    assert err.value.errno == errno.EINVAL
    for bad in (
        md(data=2),
        md(meta=4),
        md(data_end=65),
        md(egress=1),
        md(queue=1),
        md(data=220, data_end=64),
    ):
        with pytest.raises(TestRunError) as err:
            XdpInput.from_test_run(PKT, bad)
        assert err.value.errno == errno.EINVAL
    with pytest.raises(TestRunError) as err:
        XdpInput.from_test_run(PKT, md() + b"\x01")
    assert err.value.errno == errno.E2BIG
    assert XdpInput.from_test_run(PKT, md(data_end=20)).linear == 20  # multi-buffer, see test_xdp_frags
    assert XdpInput.from_test_run(bytes(XDP_MAX_LINEAR + 1)).linear == XDP_MAX_LINEAR
    assert XdpInput.from_test_run(PKT, md(data_end=64) + bytes(8)).ingress_ifindex == 1
    lo = {1: LOOPBACK}
    with pytest.raises(TestRunError) as err:
        XdpInput.from_test_run(PKT, md(ifindex=2), devices=lo)
    assert err.value.errno == errno.ENODEV
    with pytest.raises(TestRunError) as err:
        XdpInput.from_test_run(PKT, md(ifindex=1, queue=1), devices=lo)
    assert err.value.errno == errno.EINVAL
    assert XdpInput.from_test_run(PKT, md(ifindex=1), devices=lo).ingress_ifindex == 1
    assert XdpInput.from_test_run(PKT, md(ifindex=7, queue=3)).rx_queue_index == 3  # unchecked


@pytest.mark.kernel
@pytest.mark.parametrize(
    "ctx",
    [
        md(data=2),
        md(meta=4),
        md(data_end=65),
        md(egress=1),
        md(queue=1),
        md() + b"\x01",
        md(data=220),
        md(ifindex=1, queue=5),
        md(ifindex=999_999),
    ],
)
def test_the_kernel_refuses_the_same_inputs(ctx: bytes) -> None:
    from ebpf.errors import SyscallError

    with pytest.raises(SyscallError) as kernel_err:
        kernel_test_run("r0 = 2\nexit", XDP, PKT, ctx)
    with pytest.raises(TestRunError) as our_err:
        XdpInput.from_test_run(PKT, ctx, devices=host_devices())
    assert our_err.value.errno == kernel_err.value.errno


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_reset_restores_the_first_mapping(engine: str) -> None:
    from ._helper_util import make_engine

    env = RunEnv(deterministic=True, program_type=XDP)
    eng = make_engine(adjust_meta(-8, -20), env, engine)
    mapped = XdpInput(PKT).map(env.memory)
    first = (eng.execute(mapped, env, 1000)[0], mapped.data(), mapped.ctx_out())
    for region in mapped.regions:
        env.memory.unmap(region)
    assert mapped.reset()
    for region in mapped.regions:
        env.memory.map(region)
    assert (eng.execute(mapped, env, 1000)[0], mapped.data(), mapped.ctx_out()) == first
    assert mapped.reset()  # while mapped: the new window is mapped in place
    assert (eng.execute(mapped, env, 1000)[0], mapped.data(), mapped.ctx_out()) == first
    for region in mapped.regions:
        env.memory.unmap(region)
