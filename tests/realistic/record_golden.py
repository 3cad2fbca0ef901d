"""Record the kernel's transcripts of every scenario into tests/data/realistic/golden.json.

Run from tests/ as root on a machine with bpf(): ``python -m realistic.record_golden``.
The process pins itself to CPU 0 (the runtime's default CPU) so per-CPU state lines up.
Kernel layer: this script drives ``ebpf.kernel.collection.Collection``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from realistic.scenarios import GOLDEN, SCENARIOS, load_spec, transcript


def kernel_drain(coll: Any, name: str) -> list[bytes]:
    from ebpf.events.ringbuf import RingBuffer

    with RingBuffer(coll.maps[name]) as rb:
        return rb.drain()


def record() -> dict[str, Any]:
    from ebpf.kernel.collection import Collection as KernelCollection

    os.sched_setaffinity(0, {0})
    out: dict[str, Any] = {"kernel": os.uname().release, "scenarios": {}}
    for name, make in SCENARIOS.items():
        scenario = make()
        spec = load_spec(scenario)
        with KernelCollection(spec) as coll:
            out["scenarios"][name] = transcript(coll, spec, scenario, kernel_drain)
    return out


def main() -> None:
    GOLDEN.write_text(json.dumps(record(), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
