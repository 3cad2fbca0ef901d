"""RINGBUF against the kernel: the same program-side steps on both, then byte-identical rings.

Each step is one XDP program run in the kernel (``bpf_ringbuf_output`` / ``reserve`` + fill +
``submit`` or ``discard`` / ``query``) and the same call on our map; after every step the
whole data area (headers with their busy/discard bits and ``pg_off``, samples, padding), the
producer and consumer positions and the helper's return value must be equal. The consumer
side advances the kernel's consumer page through ``mmap`` and ours through :meth:`consume`.
"""

from __future__ import annotations

import errno

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebpf.errors import SyscallError
from ebpf.kernel._syscall import bpf
from ebpf.kernel.uapi import Cmd, MapCreateAttr
from ebpf.maps import MapDef, RingBufMap, create
from ebpf.maps.ringbuf import BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT
from ebpf.spec import MapType

from ._bpfprog import (
    R0,
    R1,
    R2,
    R3,
    R6,
    R7,
    R10,
    KernelRing,
    add_imm,
    call,
    close_fd,
    exit_,
    fill,
    jeq_imm,
    ld_map_fd,
    mov_imm,
    mov_reg,
    run_xdp,
)

pytestmark = pytest.mark.kernel

RINGBUF_OUTPUT, RINGBUF_RESERVE, RINGBUF_SUBMIT, RINGBUF_DISCARD, RINGBUF_QUERY = 130, 131, 132, 133, 134
SIZE = 4096


def kernel_ringbuf(size: int) -> int:
    return bpf(Cmd.MAP_CREATE, MapCreateAttr(map_type=MapType.RINGBUF, max_entries=size))


def prog_output(fd: int, size: int, byte: int, flags: int) -> bytes:
    at = -max((size + 7) // 8 * 8, 8)
    code = fill(R10, at, size, byte)
    code += ld_map_fd(R1, fd) + mov_reg(R2, R10) + add_imm(R2, at) + mov_imm(R3, size)
    code += insn_flags(flags) + call(RINGBUF_OUTPUT) + exit_()
    return code


def insn_flags(flags: int) -> bytes:
    return mov_imm(4, flags)


def prog_reserve(fd: int, size: int, byte: int, discard: bool, flags: int) -> bytes:
    body = fill(R6, 0, size, byte) + mov_reg(R1, R6) + mov_imm(R2, flags)
    body += call(RINGBUF_DISCARD if discard else RINGBUF_SUBMIT) + mov_imm(R0, 1) + exit_()
    code = ld_map_fd(R1, fd) + mov_imm(R2, size) + mov_imm(R3, 0) + call(RINGBUF_RESERVE)
    code += mov_reg(R6, R0) + jeq_imm(R0, 0, len(body) // 8) + body + exit_()  # NULL: return 0
    return code


def prog_pair(fd: int, a: int, b: int, discard_first: bool) -> bytes:
    """Reserve A and B (both busy at once), commit B first, then A; 0/1/2 says how far it got."""
    release_a = mov_reg(R1, R6) + mov_imm(R2, 0) + call(RINGBUF_DISCARD if discard_first else RINGBUF_SUBMIT)
    only_a = mov_reg(R1, R6) + mov_imm(R2, 0) + call(RINGBUF_DISCARD) + mov_imm(R0, 1) + exit_()
    both = fill(R7, 0, b, 0xB0) + mov_reg(R1, R7) + mov_imm(R2, 0) + call(RINGBUF_SUBMIT)
    both += fill(R6, 0, a, 0xA0) + release_a + mov_imm(R0, 2) + exit_()
    second = ld_map_fd(R1, fd) + mov_imm(R2, b) + mov_imm(R3, 0) + call(RINGBUF_RESERVE) + mov_reg(R7, R0)
    second += jeq_imm(R0, 0, len(both) // 8) + both + only_a
    code = ld_map_fd(R1, fd) + mov_imm(R2, a) + mov_imm(R3, 0) + call(RINGBUF_RESERVE) + mov_reg(R6, R0)
    code += jeq_imm(R0, 0, len(second) // 8) + second + exit_()
    return code


def ours_pair(rb: RingBufMap, a: int, b: int, discard_first: bool) -> int:
    addr_a = rb.reserve(a)
    if addr_a == 0:
        return 0
    addr_b = rb.reserve(b)
    if addr_b == 0:
        rb.discard(addr_a)
        return 1
    rb.memory.write_bytes(addr_b, b"\xb0" * b)
    rb.submit(addr_b)
    rb.memory.write_bytes(addr_a, b"\xa0" * a)
    (rb.discard if discard_first else rb.submit)(addr_a)
    return 2


def prog_query(fd: int, what: int) -> bytes:
    return ld_map_fd(R1, fd) + mov_imm(R2, what) + call(RINGBUF_QUERY) + exit_()


def ours_reserve(rb: RingBufMap, size: int, byte: int, discard: bool, flags: int) -> int:
    address = rb.reserve(size)
    if address == 0:
        return 0
    rb.memory.write_bytes(address, bytes([byte]) * size)
    (rb.discard if discard else rb.submit)(address, flags)
    return 1


Step = tuple[object, ...]


def run_steps(steps: list[Step], size: int = SIZE) -> None:
    fd = kernel_ringbuf(size)
    ring = KernelRing(fd, size)
    rb = create(MapDef(MapType.RINGBUF, 0, 0, size))
    assert isinstance(rb, RingBufMap)
    try:
        for i, step in enumerate(steps):
            kind = step[0]
            if kind == "output":
                _, n, byte, flags = step
                assert isinstance(n, int) and isinstance(byte, int) and isinstance(flags, int)
                want = run_xdp(prog_output(fd, n, byte, flags))
                got = rb.output(bytes([byte]) * n, flags)
            elif kind == "reserve":
                _, n, byte, discard, flags = step
                assert isinstance(n, int) and isinstance(byte, int) and isinstance(flags, int)
                want = run_xdp(prog_reserve(fd, n, byte, bool(discard), flags))
                got = ours_reserve(rb, n, byte, bool(discard), flags)
            elif kind == "pair":
                _, a, b, discard_first = step
                assert isinstance(a, int) and isinstance(b, int)
                want = run_xdp(prog_pair(fd, a, b, bool(discard_first)))
                got = ours_pair(rb, a, b, bool(discard_first))
            elif kind == "query":
                what = step[1]
                assert isinstance(what, int)
                want = run_xdp(prog_query(fd, what)) & 0xFFFFFFFF
                got = rb.query(what) & 0xFFFFFFFF
            elif kind == "consume":
                rb.consume()
                ring.consumer_pos = ring.producer_pos  # nothing is busy between runs
                got = want = 0
            else:
                raise AssertionError(step)
            assert got == want, f"step {i} {step}: ours {got}, kernel {want}"
            assert (rb.consumer_pos, rb.producer_pos) == (ring.consumer_pos, ring.producer_pos), f"step {i}"
            assert bytes(rb.data) == ring.data, f"step {i} {step}: data area differs"
    finally:
        ring.close()
        close_fd(fd)
        rb.close()


def test_headers_and_wrap_match_the_kernel() -> None:
    steps: list[Step] = [
        ("query", 0),
        ("query", 1),
        ("output", 5, 0xAA, 0),
        ("reserve", 12, 0xBB, False, 0),
        ("reserve", 3, 0xCC, True, 0),  # discarded: header keeps the DISCARD bit
        ("output", 0, 0, 1),
        ("output", 8, 1, 4),  # bad flags: -EINVAL, nothing written
        ("query", 2),
        ("query", 3),
        ("consume",),
    ]
    # Fill towards the end so records wrap around (the kernel's double mapping).
    steps += [("output", 200, 0x10 + k, 0) for k in range(19)]
    steps += [("query", 0), ("consume",), ("reserve", 300, 0x77, False, 2), ("output", 250, 0x66, 0)]
    steps += [("query", 2), ("query", 3), ("consume",), ("query", 0), ("query", 9)]
    run_steps(steps)


def test_two_reservations_at_once() -> None:
    steps: list[Step] = [("pair", 100, 200, False), ("pair", 1000, 2000, True), ("pair", 3000, 2000, False)]
    steps += [("consume",), ("pair", 2040, 2040, False), ("consume",), ("pair", 500, 700, True), ("query", 0)]
    run_steps(steps)


def test_full_ring_fails_like_the_kernel() -> None:
    steps: list[Step] = [("output", 248, k, 0) for k in range(17)]  # 256 bytes each: 16 fit
    steps += [("reserve", 100, 1, False, 0), ("output", 0, 0, 0), ("query", 0)]
    steps += [("consume",), ("output", 248, 9, 0), ("reserve", SIZE - 8, 1, False, 0)]
    steps += [("reserve", SIZE - 16, 1, False, 0)]
    run_steps(steps)


def test_reserve_flags_and_big_sizes() -> None:
    steps: list[Step] = [("reserve", 16, 1, False, 0), ("reserve", SIZE, 2, False, 0)]
    run_steps(steps)
    rb = create(MapDef(MapType.RINGBUF, 0, 0, SIZE))
    assert isinstance(rb, RingBufMap)
    assert rb.reserve(8, flags=1) == 0 and rb.dropped == 0  # flags: NULL, not a drop
    assert rb.reserve(SIZE) == 0 and rb.dropped == 1
    rb.close()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.just("output"), st.integers(0, 512), st.integers(0, 255), st.sampled_from([0, 1, 2])
            ),
            st.tuples(
                st.just("reserve"),
                st.integers(0, 700),
                st.integers(0, 255),
                st.booleans(),
                st.sampled_from([0, 1, 2, 3]),
            ),
            st.tuples(st.just("consume")),
            st.tuples(st.just("query"), st.integers(0, 3)),
            st.tuples(st.just("pair"), st.integers(0, 2100), st.integers(0, 2100), st.booleans()),
        ),
        max_size=25,
    )
)
def test_random_steps(steps: list[Step]) -> None:
    run_steps(steps)


def test_busy_record_blocks_consumer_and_header_bits() -> None:
    rb = create(MapDef(MapType.RINGBUF, 0, 0, SIZE))
    assert isinstance(rb, RingBufMap)
    a = rb.reserve(4)
    b = rb.reserve(4)
    rb.submit(b)
    length, pg_off = int.from_bytes(rb.data[0:4], "little"), int.from_bytes(rb.data[4:8], "little")
    assert length == 4 | BPF_RINGBUF_BUSY_BIT and pg_off == 3
    assert rb.consume() == [] and len(rb) == 2
    rb.discard(a)
    assert int.from_bytes(rb.data[0:4], "little") == 4 | BPF_RINGBUF_DISCARD_BIT
    assert rb.consume() == [b"\0" * 4]
    rb.close()


@pytest.mark.parametrize("size", [3 * 4096, 2048, 0, 1 << 16])
def test_create_errors_match(size: int) -> None:
    try:
        close_fd(kernel_ringbuf(size))
        want = None
    except SyscallError as err:
        want = err.errno
    try:
        create(MapDef(MapType.RINGBUF, 0, 0, size)).close()
        got = None
    except Exception as err:  # noqa: BLE001
        got = getattr(err, "errno", None)
    assert got == want
    assert want in (errno.EINVAL, errno.E2BIG, errno.ENOMEM, None)
