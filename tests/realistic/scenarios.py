"""Replayable scenarios over the realistic corpus (tests/data/realistic), as transcripts.

A scenario loads one object with some knobs and map contents, runs a fixed list of test runs
and reads every map back.  :func:`transcript` does that on any collection with the common
shape (``ebpf.runtime.Collection`` or ``ebpf.kernel.collection.Collection``) and returns plain
JSON data; ``golden.json`` holds the kernel's transcripts (recorded on Linux 6.18 by
``python -m realistic.record_golden`` from tests/, pinned to CPU 0), so the user-space runtime
can be checked against the kernel where no bpf() is available.
"""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from differential.test_objects_kernel import NO_CONTENTS, map_state
from differential.test_realistic_kernel import (
    BACKENDS,
    GLOBAL_KNOBS,
    VIP4,
    VIP6,
    backend_value,
    cidr,
    emit_args,
    frame,
    lb_packets,
    mutate,
    rl_packet,
    rule,
    seed_packets,
    sk_buff,
    sock_packets,
    tc_edit_inputs,
    tc_packets,
    tunnel_knobs,
)
from ebpf.errors import BPFError

DATA = Path(__file__).resolve().parent.parent / "data" / "realistic"
GOLDEN = DATA / "golden.json"

Run = tuple[str, bytes, bytes | None, int]


@dataclass
class Scenario:
    name: str
    obj: str
    runs: list[Run]
    knobs: dict[str, bytes | int] = field(default_factory=dict)
    fills: dict[str, list[tuple[bytes, bytes]]] = field(default_factory=dict)
    rings: tuple[str, ...] = ()


def _lb() -> Scenario:
    knobs: dict[str, bytes | int] = {
        "nbackends": len(BACKENDS),
        "vip4": socket.inet_aton(VIP4),
        "vip6": socket.inet_pton(socket.AF_INET6, VIP6),
        "vip_port": struct.pack("!H", 80),
    }
    fills = {"backends": [(struct.pack("<I", i), backend_value(*b)) for i, b in enumerate(BACKENDS)]}
    rng = random.Random("lb")
    runs: list[Run] = [("xdp_lb", p, None, 1) for p in lb_packets()]
    runs += [("xdp_lb", mutate(rng, rng.choice(lb_packets()[:16])), None, 1) for _ in range(60)]
    return Scenario("xdp_lb", "xdp_lb", runs, knobs, fills)


def _tc() -> Scenario:
    fills = {
        "rules": [
            (cidr("10.0.0.0/8"), rule(0, 0x10)),
            (cidr("10.1.0.0/16"), rule(2, 0)),
            (cidr("192.168.1.7/32"), rule(0, 7)),
        ],
        "dscp_class": [(struct.pack("<I", 46), struct.pack("<I", 0x2E0005))],
    }
    rng = random.Random("tc")
    packets = tc_packets() + [mutate(rng, rng.choice(seed_packets())) for _ in range(40)]
    runs: list[Run] = []
    for i, p in enumerate(packets):
        runs.append(("tc_fw", p, None, 1))
        runs.append(("tc_stamp", p, sk_buff(mark=i, priority=i % 3, cb=(i, 0, 0, 0, 1)), 1))
    return Scenario("tc_fw", "tc_fw", runs, {}, fills)


def _sock() -> Scenario:
    rng = random.Random("sock")
    packets = sock_packets() + [mutate(rng, rng.choice(seed_packets())) for _ in range(40)]
    return Scenario(
        "sock_proto", "sock_proto", [("sock_proto", p, None, 1) for p in packets], {"snaplen": 40}
    )


def _chain() -> Scenario:
    rng = random.Random("chain")
    runs: list[Run] = [("dispatch", frame(bytes([b])), None, 1) for b in (0, 1, 2, 3, 4, 7, 0x11, 0xFF)]
    runs += [("mim", frame(rng.randbytes(4)), None, 1) for _ in range(30)]
    fills = {
        "arr_b": [(struct.pack("<I", 3), struct.pack("<Q", 1000))],
        "hash_y": [(struct.pack("<I", 9), struct.pack("<I", 50))],
    }
    return Scenario("chain_mim", "chain_mim", runs, {}, fills)


def _globals() -> Scenario:
    runs: list[Run] = [("apply", frame(b"\xaa", n), None, 1) for n in (10, 14, 20, 64, 300, 1199, 1300, 1600)]
    return Scenario("globals", "globals", runs + [("apply", frame(b"\xbb", 90), None, 3)], dict(GLOBAL_KNOBS))


def _tunnel() -> Scenario:
    rng = random.Random("tunnel")
    runs: list[Run] = []
    for _ in range(30):
        p = mutate(rng, rng.choice(seed_packets()))
        runs += [("encap", p, None, 1), ("decap", p, None, 1), ("trim", p, None, 1), ("meta", p, None, 1)]
    return Scenario("xdp_tunnel", "xdp_tunnel", runs, tunnel_knobs(tail_delta=-6))


def _tc_edit() -> Scenario:
    runs: list[Run] = []
    for p in tc_edit_inputs():
        for prog in ("vlan_tag", "make_room", "resize", "hashes"):
            runs += [(prog, p, None, 1), (prog, p, sk_buff(mark=3), 1)]
    return Scenario("tc_edit", "tc_edit", runs)


def _ratelimit() -> Scenario:
    rng = random.Random("rl")
    now = 10**12
    runs: list[Run] = []
    for _ in range(120):
        now += rng.choice([0, 100_000, 1_000_000, 3_000_000, -2_000_000])
        p = rl_packet(rng.randrange(5), now % 2**64, rng.randrange(-128, 128), rng.randrange(-32768, 32768))
        runs.append(("ratelimit", p, None, 1))
    return Scenario("ratelimit", "ratelimit", runs, {"rate_per_ms": 2, "burst": 4})


def _tracer() -> Scenario:
    runs: list[Run] = [
        ("emit", b"", emit_args(n, m, b, t), 1)
        for n, m, b, t in [
            (0, 0, 0, b"e"),
            (5, 0, 100, b"five"),
            (17, 3, 7, b"odd"),
            (60, 4, 1, b"fill"),
            (60, 0, 1, b"x"),
        ]
    ]
    runs += [
        ("on_sys_enter", b"", struct.pack("<2Q", a, i), 1) for a, i in [(1, 39), (2, 0), (3, 39), (4, 59)]
    ]
    return Scenario("rb_tracer", "rb_tracer", runs, rings=("events",))


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    s().name: s for s in (_lb, _tc, _sock, _chain, _globals, _tunnel, _tc_edit, _ratelimit, _tracer)
}


def _outcome(run: Callable[[], Any], with_ctx: bool) -> list[Any]:
    try:
        res = run()
    except (BPFError, OSError) as err:
        return ["error", getattr(err, "errno", None)]
    ctx = bytes(res.ctx_out).hex() if with_ctx and res.ctx_out else None
    return ["ok", res.retval, bytes(res.data_out).hex(), ctx]


def load_spec(scenario: Scenario) -> Any:
    from ebpf.elf import load_collection_spec

    spec = load_collection_spec(DATA / f"{scenario.obj}.o")
    for name, value in scenario.knobs.items():
        spec.set_variable(name, value)
    return spec


def transcript(
    coll: Any, spec: Any, scenario: Scenario, drain: Callable[[Any, str], list[bytes]]
) -> dict[str, Any]:
    """Fill maps, run every test run, read every map: JSON-ready."""
    for name, items in scenario.fills.items():
        for key, value in items:
            coll.maps[name].update(key, value)
    outcomes = []
    for prog, data, ctx, repeat in scenario.runs:
        kw: dict[str, Any] = {"repeat": repeat}
        if ctx is not None:
            kw["ctx_in"] = ctx
        outcomes.append(_outcome(lambda: coll.programs[prog].test_run(data, **kw), ctx is not None))  # noqa: B023
    maps = {
        name: {k.hex(): v.hex() for k, v in sorted(map_state(coll.maps[name], mspec).items())}
        for name, mspec in spec.maps.items()
        if mspec.type not in NO_CONTENTS
    }
    rings = {name: [r.hex() for r in drain(coll, name)] for name in scenario.rings}
    return {"outcomes": outcomes, "maps": maps, "rings": rings}
