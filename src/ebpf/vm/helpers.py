"""Helper-function registry of the user-space runtime (helper id -> Python callable).

Core layer: pure, no kernel access.

Rule 1: a helper is a Python callable ``fn(env, r1, r2, r3, r4, r5) -> int``; ``env`` is the
:class:`HelperEnv` of the running program (its memory, and the engine's knobs). Arguments
arrive as unsigned 64-bit integers; the return value is masked to 64 bits and put in r0.

Rule 2: a helper that must end the program at once (uBPF's "unwind" helper, ``bpf_tail_call``
into another program) raises :class:`ProgramExit` with the program's return value.

Rule 3: the registry is data, filled by later layers (maps, packets, time, tracing); the
interpreter, the fast tier and the JIT call helpers only through it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from ebpf.vm.memory import Memory

__all__ = [
    "Helper",
    "HelperEnv",
    "HelperFn",
    "HelperRegistry",
    "ProgramExit",
    "ubpf_test_helpers",
]

M64 = (1 << 64) - 1


class HelperEnv(Protocol):
    """What a helper can see of the running program."""

    @property
    def memory(self) -> Memory: ...


HelperFn = Callable[[HelperEnv, int, int, int, int, int], int]


class ProgramExit(Exception):
    """Raised by a helper to end the program immediately with ``retval`` in r0."""

    def __init__(self, retval: int) -> None:
        super().__init__(retval)
        self.retval = retval & M64


@dataclass(frozen=True, slots=True)
class Helper:
    """A registered helper: its id, its kernel-style name and the callable."""

    id: int
    name: str
    fn: HelperFn


class HelperRegistry(Mapping[int, Helper]):
    """Helper id -> :class:`Helper`. Mutable: register more with :meth:`register`."""

    def __init__(self, helpers: Mapping[int, Helper] | None = None) -> None:
        self._helpers: dict[int, Helper] = dict(helpers or {})

    def register(self, helper_id: int, name: str, fn: HelperFn) -> None:
        """Add (or replace) the helper for ``helper_id``."""
        self._helpers[helper_id] = Helper(helper_id, name, fn)

    def copy(self) -> HelperRegistry:
        return HelperRegistry(self._helpers)

    def __getitem__(self, helper_id: int) -> Helper:
        return self._helpers[helper_id]

    def __iter__(self) -> Iterator[int]:
        return iter(self._helpers)

    def __len__(self) -> int:
        return len(self._helpers)

    def name_of(self, helper_id: int) -> str:
        """The helper's name, or ``"helper#<id>"`` when unknown."""
        helper = self._helpers.get(helper_id)
        return helper.name if helper else f"helper#{helper_id}"


# --- uBPF's test helpers, as the bpf_conformance runner expects them --------------------------------


def _gather_bytes(env: HelperEnv, a: int, b: int, c: int, d: int, e: int) -> int:
    return ((a & 0xFF) << 32) | ((b & 0xFF) << 24) | ((c & 0xFF) << 16) | ((d & 0xFF) << 8) | (e & 0xFF)


def _memfrob(env: HelperEnv, ptr: int, n: int, _c: int, _d: int, _e: int) -> int:
    data = env.memory.read_bytes(ptr, n)
    env.memory.write_bytes(ptr, bytes(byte ^ 42 for byte in data))
    return 0


def _no_op(env: HelperEnv, a: int, b: int, c: int, d: int, e: int) -> int:
    return 0


def _sqrti(env: HelperEnv, a: int, _b: int, _c: int, _d: int, _e: int) -> int:
    return math.isqrt(a & M64)


def _strcmp_ext(env: HelperEnv, p1: int, p2: int, _c: int, _d: int, _e: int) -> int:
    s1 = env.memory.read_cstring(p1)
    s2 = env.memory.read_cstring(p2)
    # C strcmp: difference of the first differing bytes (as unsigned char), else 0.
    for x, y in zip(s1 + b"\0", s2 + b"\0", strict=False):
        if x != y:
            return (x - y) & M64
    return 0


def _unwind(env: HelperEnv, a: int, _b: int, _c: int, _d: int, _e: int) -> int:
    if a == 0:
        raise ProgramExit(0)
    return a


def ubpf_test_helpers() -> HelperRegistry:
    """The helpers uBPF registers for its tests, which bpf_conformance programs call.

    0 gather_bytes, 1 memfrob, 2 no_op, 3 sqrti, 4 strcmp_ext, 5 unwind (returns its argument;
    when that is 0 the program ends at once returning 0).
    """
    reg = HelperRegistry()
    reg.register(0, "gather_bytes", _gather_bytes)
    reg.register(1, "memfrob", _memfrob)
    reg.register(2, "no_op", _no_op)
    reg.register(3, "sqrti", _sqrti)
    reg.register(4, "strcmp_ext", _strcmp_ext)
    reg.register(5, "unwind", _unwind)
    return reg
