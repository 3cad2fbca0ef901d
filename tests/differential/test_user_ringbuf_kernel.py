"""bpf_user_ringbuf_drain: the user-space runtime (both engines) against Linux.

tests/data/userrb/userrb.o drains a ``BPF_MAP_TYPE_USER_RINGBUF`` (``drain``: a SYSCALL program
whose context gives the drain flags, the sample on which the callback returns 1 and whether
the callback drains the same ring again or writes into the sample; ``xdp_drain``: the same from XDP) and sums what the
callback sees into an array. Python writes the records through the same producer class on
both sides (:class:`ebpf.events.UserRingBuffer`); after every run the return value, the
array, the consumer and producer positions and the whole data area must agree.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ebpf.elf import load_collection_spec
from ebpf.events import UserRingBuffer, UserRingBufFullError, UserRingBufSample, UserRingBufTooBigError
from ebpf.maps.ringbuf import BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP
from ebpf.runtime import Collection

pytestmark = pytest.mark.kernel

OBJ = Path(__file__).parent.parent / "data" / "userrb" / "userrb.o"
SIZE = 4096


class Side:
    """One engine: a collection, its producer and the samples reserved in a scenario."""

    def __init__(self, coll: Any) -> None:
        self.coll = coll
        self.rb = UserRingBuffer(coll.maps["urb"])
        self.samples: list[UserRingBufSample] = []

    def state(self) -> tuple[Any, ...]:
        stats = self.coll.maps["stats"]
        values = [struct.unpack("<Q", stats.lookup(struct.pack("<I", i)))[0] for i in range(8)]
        data = bytes(self.rb._producer._data[:SIZE])
        return tuple(values), self.rb.consumer_pos, self.rb.producer_pos, data

    def run(self, flags: int = 0, stop_at: int = 0, mode: int = 0) -> int:
        res = self.coll.programs["drain"].test_run(ctx_in=struct.pack("<QII", flags, stop_at, mode))
        return int(res.retval)

    def run_xdp(self) -> int:
        res = self.coll.programs["xdp_drain"].test_run(bytes(64))
        return int(res.retval)

    def close(self) -> None:
        self.rb.close()
        self.coll.close()


@pytest.fixture(params=["interp", "py"])
def sides(request: pytest.FixtureRequest) -> Iterator[tuple[Side, Side]]:
    from ebpf.kernel.collection import Collection as KernelCollection

    spec = load_collection_spec(OBJ)
    kernel = Side(KernelCollection(spec))
    ours = Side(Collection(spec, engine=request.param))
    yield kernel, ours
    ours.close()
    kernel.close()


Step = Callable[[Side], Any]


def check(sides: tuple[Side, Side], *steps: Step) -> list[Any]:
    """Apply each step to both sides; results and states must agree after every step."""
    kernel, ours = sides
    results = []
    for i, step in enumerate(steps):
        theirs, mine = outcome(step, kernel), outcome(step, ours)
        assert mine == theirs, f"step {i}"
        assert ours.state() == kernel.state(), f"state after step {i}"
        results.append(theirs)
    return results


def outcome(step: Step, side: Side) -> Any:
    try:
        return step(side)
    except (UserRingBufFullError, UserRingBufTooBigError) as err:
        return type(err).__name__, err.errno


def write(data: bytes) -> Step:
    return lambda s: s.rb.write(data)


def reserve(size: int, fill: int = 0xAB) -> Step:
    def step(s: Side) -> None:
        sample = s.rb.reserve(size)
        sample.data[:] = bytes([fill]) * size
        s.samples.append(sample)

    return step


def submit(i: int) -> Step:
    return lambda s: s.rb.submit(s.samples[i])


def discard(i: int) -> Step:
    return lambda s: s.rb.discard(s.samples[i])


def run(flags: int = 0, stop_at: int = 0, mode: int = 0) -> Step:
    return lambda s: s.run(flags, stop_at, mode)


def u64(v: int, extra: int = 0) -> bytes:
    return struct.pack("<Q", v) + bytes(i & 0xFF for i in range(1, extra + 1))


def test_drain_counts_sums_and_positions(sides: tuple[Side, Side]) -> None:
    res = check(
        sides, write(u64(5)), write(u64(7, 13)), write(b""), write(b"abc"), write(bytes(100)), run(), run()
    )
    assert res[-2:] == [5, 0]
    assert sides[0].state()[0][:2] == (12, 5)


def test_discarded_and_busy_records(sides: tuple[Side, Side]) -> None:
    res = check(
        sides,
        write(u64(1)),
        reserve(8),
        write(u64(2)),
        reserve(16),
        discard(1),
        write(u64(3)),
        run(),  # 1, then stops at the busy one
        submit(0),
        run(),  # the submitted one, 2, the discarded one (not counted), 3
        run(),
    )
    assert res[6] == 1 and res[8] == 3 and res[9] == 0


def test_callback_return_stops(sides: tuple[Side, Side]) -> None:
    steps = [write(u64(i)) for i in range(6)]
    res = check(sides, *steps, run(stop_at=2), run(stop_at=1), run(stop_at=9))
    assert res[-3:] == [2, 1, 3]


@pytest.mark.parametrize("flags", [BPF_RB_NO_WAKEUP, BPF_RB_FORCE_WAKEUP, 3, 4, 1 << 32])
def test_flags(sides: tuple[Side, Side], flags: int) -> None:
    res = check(sides, write(u64(9)), run(flags), run())
    expect_einval = flags & ~3
    assert res[1] == (-errno.EINVAL & 0xFFFFFFFF if expect_einval else 1)


def test_full_ring_wrap_and_oversized(sides: tuple[Side, Side]) -> None:
    fill = [write(u64(i, 8)) for i in range(SIZE // 24 + 1)]
    res = check(
        sides,
        *fill,
        write(u64(99)),  # the last 16 bytes: the ring is full
        write(b""),  # no room even for a header: ENOSPC on both
        reserve(SIZE),  # can never fit: E2BIG on both
        run(),
        write(u64(1, SIZE - 8 - 48)),
        run(),
        write(u64(2, 100)),  # wraps around the end of the ring
        run(),
    )
    assert res[len(fill) - 1] == ("UserRingBufFullError", errno.ENOSPC)  # 24 bytes, 16 free
    assert res[len(fill)] is None
    assert res[len(fill) + 1] == ("UserRingBufFullError", errno.ENOSPC)
    assert res[len(fill) + 2] == ("UserRingBufTooBigError", errno.E2BIG)
    assert res[-1] == 1


def test_nested_drain_is_ebusy(sides: tuple[Side, Side]) -> None:
    res = check(sides, write(u64(1)), write(u64(2)), run(mode=1))
    assert res[-1] == 2
    assert sides[0].state()[0][7] == -errno.EBUSY & (1 << 64) - 1  # the inner drain's result


def test_callback_writes_into_the_sample(sides: tuple[Side, Side]) -> None:
    """The dynptr is writable (measured: the kernel's verifier allows bpf_dynptr_write on it)."""
    res = check(sides, write(u64(1)), write(b"abc"), write(u64(3, 5)), run(mode=2))
    assert res[-1] == 3
    assert sides[0].state()[0][6] == 1  # the 3-byte sample is too short for 8 bytes: -E2BIG


def _poke(prod_delta: int = 0, header: tuple[int, int] | None = None) -> Step:
    """Write the producer position or a header directly, as a broken producer would."""

    def step(s: Side) -> None:
        p = s.rb._producer
        if header is not None:
            off, value = header
            p._words[((p.consumer_pos + off) & p.mask) >> 2] = value
        p._prod[0] = p.producer_pos + prod_delta

    return step


@pytest.mark.parametrize(
    ("pokes", "expect"),
    [
        ([_poke(4)], -errno.EINVAL),  # producer position not a multiple of 8
        ([_poke(header=(0, 64))], -errno.EINVAL),  # longer than the producer position announces
        ([_poke(2 * SIZE, header=(0, SIZE))], -errno.E2BIG),  # longer than the ring
        ([_poke(2 * SIZE, header=(16, SIZE))], -errno.E2BIG),  # after a good record: consumed anyway
        ([_poke(1 << 25, header=(0, (1 << 24) | (1 << 30)))], -errno.E2BIG),  # discarded, too long
        ([_poke(header=(0, 8 | (3 << 30)))], 1),  # busy and discarded: skipped
    ],
)
def test_malformed_producer(sides: tuple[Side, Side], pokes: list[Step], expect: int) -> None:
    res = check(sides, write(u64(1)), write(u64(2)), *pokes, run())
    assert res[-1] == expect & 0xFFFFFFFF


def test_xdp_drain(sides: tuple[Side, Side]) -> None:
    res = check(sides, write(u64(3)), write(u64(4, 3)), lambda s: s.run_xdp(), lambda s: s.run_xdp())
    assert res[2:] == [2, 2]  # XDP_PASS


def test_object_is_the_one_build_sh_makes() -> None:
    """tests/data/userrb/userrb.o is what build.sh compiles from userrb.c today."""
    import shutil
    import subprocess

    if shutil.which("clang-19") is None:
        pytest.skip("clang-19 is not installed")
    done = subprocess.run(
        ["sh", str(OBJ.parent / "build.sh"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _random_steps(seed: int, count: int) -> list[Step]:
    """Writes, reservations committed out of order, drains with random flags, stops and writes."""
    import random

    rng = random.Random(seed)
    steps: list[Step] = []

    def commit(k: int, bit: bool) -> Step:
        def step(s: Side) -> None:
            open_ = [x for x in s.samples if not x._done]
            if open_:
                (s.rb.discard if bit else s.rb.submit)(open_[k % len(open_)])

        return step

    for _ in range(count):
        op = rng.random()
        if op < 0.35:
            n = rng.choice([0, 1, 7, 8, 9, 16, 63, 64, 200, 1000])
            steps.append(write(bytes(rng.randrange(256) for _ in range(n))))
        elif op < 0.5:
            steps.append(reserve(rng.choice([0, 5, 8, 24, 500]), rng.randrange(256)))
        elif op < 0.7:
            steps.append(commit(rng.randrange(8), rng.random() < 0.3))
        else:
            steps.append(run(rng.choice([0, 0, 1, 2]), rng.choice([0, 0, 1, 2, 5]), rng.choice([0, 0, 2])))
    return steps


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_sequences(sides: tuple[Side, Side], seed: int) -> None:
    check(sides, *_random_steps(seed, 150))
