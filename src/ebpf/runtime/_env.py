"""What helpers see of a program running in the user-space runtime. Pure: no kernel access.

Rule 1: one :class:`RuntimeEnv` per collection; the runtime sets the per-run fields
(``cpu``, ``program_type``, ``context``, ``tail_calls``) before each run.

Rule 2: maps are found by the address of their *handle* (what ``lddw rX, map`` puts in a
register; a small read-only region per map), so a helper's map argument is a real address:
``env.maps[r1]``. :meth:`RuntimeEnv.handle_of` goes the other way (map-in-map lookups).

Rule 3: :meth:`RuntimeEnv.call` runs a callback (``bpf_loop``, ``bpf_for_each_map_elem``)
given the code address a program loaded with ``lddw rX, func``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ebpf.errors import VMError
from ebpf.spec import ProgramType
from ebpf.vm.context import MappedInput
from ebpf.vm.memory import Memory

if TYPE_CHECKING:
    from ebpf.maps import Map

__all__ = ["MAX_TAIL_CALL_CNT", "RuntimeEnv"]

MAX_TAIL_CALL_CNT = 33
"""The kernel's limit on chained tail calls in one run (``MAX_TAIL_CALL_CNT``)."""

# code address -> callable(args) -> r0: set by the collection.
Caller = Callable[[int, tuple[int, ...]], int]


@dataclass(eq=False)
class RuntimeEnv:
    """The helper environment of a collection (see the module rules).

    Attributes:
        memory: the collection's memory (maps, code, inputs, stacks).
        maps: handle address -> live map.
        ncpus: simulated CPUs; ``cpu`` is the one running now.
        deterministic: helpers that read clocks or random numbers must be reproducible.
        program_type: type of the program running now (the entry of a tail-call chain).
        context: the current run's mapped input (its ``r1`` is the context pointer).
        tail_calls: tail calls taken in the current run (the kernel's ``tail_call_cnt``).
        trace: lines written by ``bpf_trace_printk`` and friends.
    """

    memory: Memory
    maps: dict[int, Map] = field(default_factory=dict)
    ncpus: int = 1
    cpu: int = 0
    deterministic: bool = False
    program_type: ProgramType = ProgramType.UNSPEC
    context: MappedInput | None = None
    tail_calls: int = 0
    trace: list[bytes] = field(default_factory=list)
    _caller: Caller | None = field(default=None, repr=False)
    _handles: dict[int, int] = field(default_factory=dict, repr=False)

    def handle_of(self, map: Map) -> int:
        """The handle address of ``map`` (what a program holds for it).

        Raises:
            VMError: ``map`` does not belong to this collection.
        """
        try:
            return self._handles[id(map)]
        except KeyError:
            raise VMError(f"map {map.name!r} has no handle in this runtime") from None

    def map_at(self, address: int) -> Map:
        """The map whose handle is at ``address``.

        Raises:
            VMError: no map handle there.
        """
        found = self.maps.get(address)
        if found is None:
            raise VMError(f"{address:#x} is not a map pointer", address=address)
        return found

    def call(self, function: int, *args: int) -> int:
        """Run the program function at code address ``function`` with ``args`` (r1-r5); r0.

        Raises:
            VMError: ``function`` is not the address of a loaded program's instruction, or the
                callback faults.
        """
        if self._caller is None:
            raise VMError("callbacks need a runtime collection")
        return self._caller(function, args)

    def register(self, address: int, map: Map) -> None:
        """Make ``map`` reachable at handle ``address`` (the collection does this)."""
        self.maps[address] = map
        self._handles[id(map)] = address
