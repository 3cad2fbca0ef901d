"""The user-space runtime replays the kernel's recorded transcripts (no bpf() needed).

``tests/data/realistic/golden.json`` holds what Linux 6.18 answered for every scenario of
:mod:`realistic.scenarios` (retval, data_out, ctx_out or errno per run; every map after;
ring buffer records).  Here the same scenarios run through ``ebpf.runtime.Collection`` with
both engines and must give the same transcript.  tests/differential/test_realistic_kernel.py
checks that the recording is still what the kernel answers.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ebpf.runtime import Collection
from realistic.scenarios import GOLDEN, SCENARIOS, load_spec, transcript

GOLDEN_DATA: dict[str, Any] = json.loads(GOLDEN.read_text())["scenarios"]


def runtime_drain(coll: Any, name: str) -> list[bytes]:
    return list(coll.maps[name].consume())


@pytest.mark.parametrize("engine", ["py", "interp"])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_runtime_matches_recorded_kernel(name: str, engine: str) -> None:
    scenario = SCENARIOS[name]()
    spec = load_spec(scenario)
    with Collection(spec, engine=engine, ncpus=2) as coll:
        mine = transcript(coll, spec, scenario, runtime_drain)
    golden = GOLDEN_DATA[name]
    for i, (got, want) in enumerate(zip(mine["outcomes"], golden["outcomes"], strict=True)):
        assert got == want, f"{name} run {i}: {scenario.runs[i][0]}"
    assert mine["maps"] == golden["maps"]
    assert mine["rings"] == golden["rings"]


def test_golden_covers_every_scenario() -> None:
    assert set(GOLDEN_DATA) == set(SCENARIOS)
