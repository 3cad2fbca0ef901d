"""The callback hook of :class:`~ebpf.vm.helpers.RunEnv` for the engines of :mod:`ebpf.vm`.

Core layer: pure, no kernel access.

``bpf_loop``, ``bpf_for_each_map_elem`` and friends call a BPF function of the running program
(a *callback*, loaded with ``lddw rX, FUNC``) and use its r0. An engine built with a
``code_base`` loads ``code_base + 8 * slot`` for such an ``lddw``; :func:`engine_callback`
turns that address back into the slot and runs the function with
:meth:`~ebpf.vm.interpreter.Interpreter.call` (fresh stack frames, until its ``exit``).

Not modelled: the callback's instructions do not count toward the caller's budget (each call
gets the engine's full budget).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ebpf.errors import VMError
from ebpf.vm.helpers import Callback, RunEnv

if TYPE_CHECKING:
    from ebpf.vm.interpreter import Interpreter

__all__ = ["engine_callback"]


def engine_callback(engine: Interpreter, env: RunEnv) -> Callback:
    """A ``RunEnv.callback`` that runs callbacks of ``engine``'s program (which needs a ``code_base``)."""

    def call(func: int, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        base = engine.code_base
        if base is None or func < base or (func - base) % 8:
            raise VMError(f"callback {func:#x} is not a function of the program")
        r0, _count = engine.call((func - base) // 8, (r1, r2, r3, r4, r5), env, engine.max_insns)
        return r0

    return call
