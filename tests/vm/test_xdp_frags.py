"""Multi-buffer XDP inputs and ctx_in device checks, kernel-free.

The expected values were measured with Linux 6.18's ``BPF_PROG_TEST_RUN``
(tests/differential/test_xdp_frags_kernel.py compares with the kernel directly).
"""

from __future__ import annotations

import errno
import struct
from pathlib import Path

import pytest

from ebpf.elf import load_collection_spec
from ebpf.errors import TestRunError
from ebpf.runtime import Collection
from ebpf.spec import ProgramType
from ebpf.vm.context import LOOPBACK, MAX_SKB_FRAGS, XDP_MAX_LINEAR, NetDevice, SkbInput, XdpInput, XdpMapped
from ebpf.vm.helpers import RunEnv

from ._helper_util import ENGINE_NAMES, M32, user_test_run

XDP = ProgramType.XDP
PAGE = 4096
PKT = bytes(range(256)) * 40  # 10240 bytes
MAX_SIZE = XDP_MAX_LINEAR + MAX_SKB_FRAGS * PAGE  # 73152
ELF = Path(__file__).parent.parent / "data" / "elf"


def md(data: int = 0, data_end: int = 64, ifindex: int = 0, queue: int = 0, egress: int = 0) -> bytes:
    return struct.pack("<6I", data, data_end, 0, ifindex, queue, egress)


def mapped(inp: XdpInput) -> tuple[XdpMapped, RunEnv]:
    env = RunEnv(deterministic=True, program_type=XDP)
    return inp.map(env.memory), env


# --- layout ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "ctx", "linear", "frags", "data_end_out"),
    [
        (60, md(0, 30), 30, [30], 30),
        (60, md(0, 0), 0, [60], 0),  # an empty linear part is fine
        (14, md(0, 13), 13, [1], 13),
        (60, md(8, 8), 8, [52], 8),
        (3520, None, 3520, [], None),
        (3521, None, 3520, [1], None),
        (10240, None, 3520, [4096, 2624], None),
        (5000, md(0, 4000), 3520, [1480], 3520),  # data_end clamped to the page
        (5000, md(8, 3529), 3528, [1472], 3528),  # ... after the metadata
        (MAX_SIZE, None, 3520, [4096] * 17, None),
        (100 + 17 * PAGE, md(0, 100), 100, [4096] * 17, 100),
    ],
)
def test_layout(
    size: int, ctx: bytes | None, linear: int, frags: list[int], data_end_out: int | None
) -> None:
    data = (PKT * 8)[:size]
    inp = XdpInput.from_test_run(data, ctx)
    assert inp.linear == linear
    m, _env = mapped(inp)
    assert [len(f) for f in m.frags] == frags
    assert m.end - m.meta == linear
    assert m.data() == data  # data_out: the linear part and the fragments
    assert m.buff_len() == size - inp.meta_len
    if data_end_out is not None:
        assert struct.unpack_from("<I", m.ctx_out(), 4)[0] == data_end_out


@pytest.mark.parametrize(
    ("size", "ctx", "err"),
    [
        (MAX_SIZE + 1, None, errno.ENOMEM),  # an 18th fragment
        (101 + 17 * PAGE, md(0, 100), errno.ENOMEM),
        (13, None, errno.EINVAL),
        (13, md(0, 13), errno.EINVAL),
        (20, md(8, 20), errno.EINVAL),  # 12 bytes after the metadata
        (10, md(0, 10) + b"\x01", errno.E2BIG),  # E2BIG first
        (13, md(0, 13, ifindex=999), errno.EINVAL),  # size before the device
        (MAX_SIZE + 1, md(0, 100, ifindex=999), errno.ENODEV),  # the device before ENOMEM
        (MAX_SIZE + 1, md(0, 100, ifindex=1, queue=1), errno.EINVAL),
        (MAX_SIZE + 1, md(0, 100, egress=1), errno.EINVAL),
        (60, md(4, 70), errno.EINVAL),
        (60, md(20, 10), errno.EINVAL),
    ],
)
def test_refusals(size: int, ctx: bytes | None, err: int) -> None:
    with pytest.raises(TestRunError) as refused:
        XdpInput.from_test_run((PKT * 8)[:size], ctx, devices={1: LOOPBACK})
    assert refused.value.errno == err


def test_constructor_limits() -> None:
    assert XdpInput(bytes(100), linear=30).linear == 30
    with pytest.raises(TestRunError) as err:
        XdpInput(bytes(100), meta_len=8, linear=4)
    assert err.value.errno == errno.EINVAL
    with pytest.raises(TestRunError) as err:
        XdpInput(bytes(MAX_SIZE + 1))
    assert err.value.errno == errno.ENOMEM


# --- the packet state and helpers ----------------------------------------------------------------


def test_read_write_across_fragments() -> None:
    m, _env = mapped(XdpInput(PKT, linear=100))
    assert m.buff_len() == len(PKT)
    assert m.read(90, 20) == PKT[90:110]
    edge = 100 + PAGE
    assert m.read(edge - 5, 16) == PKT[edge - 5 : edge + 11]
    m.write(edge - 3, b"abcdef")
    assert m.data() == PKT[: edge - 3] + b"abcdef" + PKT[edge + 3 :]
    assert m.read(len(PKT) - 1, 1) == PKT[-1:]


def test_adjust_tail_with_fragments() -> None:
    m, _env = mapped(XdpInput(PKT[:200], linear=100))
    assert m.adjust_tail(PAGE - 100 + 1) == -errno.EINVAL  # past the last fragment's page
    assert m.adjust_tail(PAGE - 100) == 0  # grows the last fragment, zeroed
    assert m.data() == PKT[:200] + bytes(PAGE - 100)
    assert m.adjust_tail(-(PAGE - 100)) == 0
    assert m.adjust_tail(-(200 - 14) - 1) == -errno.EINVAL  # at least ETH_HLEN bytes stay
    assert m.adjust_tail(-150) == 0  # frees the fragment, the rest comes off the linear part
    assert (m.frags, m.end - m.start, m.data()) == ([], 50, PKT[:50])
    assert m.adjust_tail(10) == 0  # linear again: grows data_end
    assert m.data() == PKT[:50] + bytes(10)
    assert m.adjust_tail(-(1 << 31)) == -errno.EINVAL  # linear: data_end before data + ETH_HLEN


def test_adjust_tail_int_min_with_fragments() -> None:
    m, _env = mapped(XdpInput(PKT[:200], linear=100))
    assert m.adjust_tail(-(1 << 31)) == 0  # -INT_MIN wraps: nothing checked, nothing shrinks
    assert m.data() == PKT[:200]


def test_grow_needs_loopback() -> None:
    m, _env = mapped(XdpInput(PKT[:200], linear=100, ingress_ifindex=4))
    assert m.adjust_tail(0) == -errno.EOPNOTSUPP
    assert m.adjust_tail(-10) == 0
    linear, _env = mapped(XdpInput(PKT[:200], ingress_ifindex=4))
    assert linear.adjust_tail(10) == 0  # without fragments the frame's tailroom is used


def test_reset_restores_fragments() -> None:
    m, env = mapped(XdpInput(PKT, linear=100))
    m.adjust_tail(-(len(PKT) - 60))
    m.write(0, b"x")
    for region in m.regions:
        env.memory.unmap(region)
    assert m.reset()
    assert m.data() == PKT and len(m.frags) == 3


BUFF = """
    r6 = r1
    r1 = 0x5555555555555555 ll
    *(u64 *)(r10 - 16) = r1
    *(u64 *)(r10 - 8) = r1
    r1 = r6
    r2 = {offset}
    r3 = r10
    r3 += -16
    r4 = 16
    call 189
    r7 = r0
    r1 = r6
    r2 = {store}
    r3 = r10
    r3 += -16
    r4 = 16
    call 190
    r7 &= 0xff
    r7 <<= 8
    r0 &= 0xff
    r7 |= r0
    r1 = r6
    call 188
    r0 <<= 16
    r7 &= 0xffff
    r0 |= r7
    exit
"""


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_helpers_see_the_fragments(engine: str) -> None:
    res = user_test_run(BUFF.format(offset=90, store=9000), XDP, PKT, md(0, 100), engine=engine)
    assert res.retval == len(PKT) << 16
    assert res.data_out == PKT[:9000] + PKT[90:106] + PKT[9016:]
    assert res.ctx_out == md(0, 100)
    past = user_test_run(
        BUFF.format(offset=len(PKT) - 15, store=0x10000), XDP, PKT, md(0, 100), engine=engine
    )
    einval, efault = -errno.EINVAL & 0xFF, -errno.EFAULT & 0xFF
    assert past.retval == (len(PKT) << 16 | einval << 8 | efault) & M32
    assert past.data_out == PKT


# --- device checks --------------------------------------------------------------------------------

DEVICES = {1: LOOPBACK, 7: NetDevice(1500, 14, 4)}


@pytest.mark.parametrize(
    ("ifindex", "queue", "err"),
    [
        (0, 0, None),
        (1, 0, None),
        (1, 1, errno.EINVAL),
        (7, 3, None),
        (7, 4, errno.EINVAL),
        (8, 0, errno.ENODEV),
    ],
)
def test_xdp_ingress_device_checks(ifindex: int, queue: int, err: int | None) -> None:
    if err is None:
        inp = XdpInput.from_test_run(PKT[:64], md(0, 64, ifindex, queue), devices=DEVICES)
        assert (inp.ingress_ifindex, inp.rx_queue_index) == (ifindex or 1, queue)
        return
    with pytest.raises(TestRunError) as refused:
        XdpInput.from_test_run(PKT[:64], md(0, 64, ifindex, queue), devices=DEVICES)
    assert refused.value.errno == err


def sk_buff(ifindex: int, tail: bytes = b"", len_field: int = 0) -> bytes:
    ctx = bytearray(192)
    struct.pack_into("<I", ctx, 40, ifindex)
    struct.pack_into("<I", ctx, 0, len_field)
    return bytes(ctx) + tail


FRAME = bytes(12) + b"\x88\xb5" + bytes(40)


@pytest.mark.parametrize(
    ("data", "ctx", "err"),
    [
        (FRAME, sk_buff(0), None),
        (FRAME, sk_buff(1), None),  # 0 and 1: loopback, never looked up
        (FRAME, sk_buff(7), None),
        (FRAME, sk_buff(8), errno.ENODEV),
        (FRAME, sk_buff(8, tail=b"\x01"), errno.E2BIG),
        (FRAME, sk_buff(8, len_field=1), errno.ENODEV),  # before the field checks
        (bytes(12) + b"\x08\x00" + bytes(5), sk_buff(8), errno.ENODEV),  # before the IPv4 check
        (bytes(13), sk_buff(8), errno.EINVAL),  # the size first
    ],
)
def test_skb_ifindex_checks(data: bytes, ctx: bytes, err: int | None) -> None:
    if err is None:
        SkbInput.from_test_run(data, ProgramType.SCHED_CLS, ctx, devices=DEVICES)
        return
    with pytest.raises(TestRunError) as refused:
        SkbInput.from_test_run(data, ProgramType.SCHED_CLS, ctx, devices=DEVICES)
    assert refused.value.errno == err


def test_skb_unchecked_without_devices() -> None:
    assert SkbInput.from_test_run(FRAME, ProgramType.SCHED_CLS, sk_buff(8)).ctx_in == sk_buff(8)


# --- through the runtime --------------------------------------------------------------------------


def test_runtime_runs_multibuffer_packets_and_checks_devices() -> None:
    """A deterministic collection knows only loopback: other devices are ENODEV, as in a
    network namespace with nothing but lo."""
    spec = load_collection_spec(ELF / "xdp_fw.o")
    with Collection(spec, deterministic=True) as coll:
        for name in ("xdp_firewall", "xdp_firewall_frags"):
            prog = coll.programs[name]
            res = prog.test_run(PKT, ctx_in=md(0, 30))
            assert res.data_out == PKT and res.ctx_out is not None and res.ctx_out[:24] == md(0, 30)
            with pytest.raises(TestRunError) as refused:
                prog.test_run(PKT[:64], ctx_in=md(0, 64, ifindex=2))
            assert refused.value.errno == errno.ENODEV
            with pytest.raises(TestRunError) as refused:
                prog.test_run(PKT[:64], ctx_in=md(0, 64, ifindex=1, queue=1))
            assert refused.value.errno == errno.EINVAL
