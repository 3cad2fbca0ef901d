"""``BPF_MAP_TYPE_PROG_ARRAY``: the jump table of ``bpf_tail_call``. Pure: no kernel access.

Rule 1 (``kernel/bpf/arraymap.c``, fd arrays): ``key_size`` and ``value_size`` are 4 (an
index and a program fd in the syscall); ``BPF_F_RDONLY_PROG`` / ``BPF_F_WRONLY_PROG``,
``BPF_F_MMAPABLE`` and ``BPF_F_NO_PREALLOC`` are ``EINVAL``. Updates take only ``BPF_ANY``
(else ``EINVAL``); an index past the end is ``E2BIG`` on update and delete and ``ENOENT``
on lookup; an empty slot is ``ENOENT``; ``get_next_key`` walks every index.

Rule 2: slots hold program objects of the runtime that uses the map (any object here;
the runtime checks the program type, as the kernel's "owner" check does on tail calls).
:meth:`update_prog` / :meth:`lookup_prog` work on them; the syscall's ``bytes`` view (fd
in, program id out) has no meaning without kernel ids, so :meth:`lookup` / :meth:`update`
are ``EINVAL``. :meth:`tail_call_target` is what ``bpf_tail_call`` consults.

Rule 3 (``__bpf_prog_map_compatible``, ``kernel/bpf/core.c``; measured on Linux 6.18 by
``tests/maps/test_progarray_compat.py``): the first program put in the array, or loaded with
a reference to it (the kernel checks every program array a program uses when it loads it),
becomes the array's *owner*, for the array's whole life (emptying it changes nothing). Every
later program must have the owner's program type, ``xdp.frags`` flag
(``BPF_F_XDP_HAS_FRAGS``), ``BPF_F_SLEEPABLE`` flag and expected attach type (``None`` is 0),
else the update (or the load) is ``EINVAL`` and the slot and owner are unchanged. An update
refused earlier (flags, an index past the end) does not make an owner. The kernel also
compares ``jited`` (one engine here: always equal) and, for
TRACING/LSM/EXT/STRUCT_OPS, the attach function's prototype (not modelled: such programs
have no tail calls in this runtime). Legacy cgroup storage: a program using a
``CGROUP_STORAGE`` / ``PERCPU_CGROUP_STORAGE`` map other than the owner's of that kind is
refused; one using none is accepted (measured). Only objects that describe a program (a
:class:`~ebpf.spec.ProgramType` ``type``; flags and attach type from their ``spec`` or their
own ``flags`` / ``attach_type``) are checked; other objects are taken as they are.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field

from ebpf.errors import KeyNotFoundError
from ebpf.maps._base import BPF_ANY, MapDef
from ebpf.maps._errors import InvalidMapArgumentError, MapFullError, MapOperationNotSupportedError
from ebpf.maps.array import FdArrayMap
from ebpf.spec import MapType, ProgramType
from ebpf.vm.memory import Memory

__all__ = ["ProgArrayMap", "ProgArrayOwner"]

_U32 = struct.Struct("<I")
BPF_F_SLEEPABLE = 1 << 4
BPF_F_XDP_HAS_FRAGS = 1 << 5


@dataclass(frozen=True)
class ProgArrayOwner:
    """What every program of a program array must share (Rule 3)."""

    type: ProgramType
    xdp_has_frags: bool = False
    sleepable: bool = False
    expected_attach_type: int = 0
    storage: tuple[object | None, object | None] = field(default=(None, None), compare=False)
    """The legacy cgroup storage maps (shared, per-CPU) the program uses, or ``None`` each (the
    kernel's storage cookies): compared by identity, see :meth:`accepts`."""

    def accepts(self, other: ProgArrayOwner) -> bool:
        """Whether a program of kind ``other`` may join an array this record owns: the same
        type, flags and attach type, and for each cgroup storage kind no storage or the
        owner's (``storage_cookie[i] == cookie || !cookie``)."""
        return self == other and all(
            theirs is None or theirs is mine for mine, theirs in zip(self.storage, other.storage, strict=True)
        )

    @classmethod
    def of(cls, prog: object) -> ProgArrayOwner | None:
        """The owner record ``prog`` would make; ``None`` when it does not describe a program."""
        prog_type = getattr(prog, "type", None)
        if not isinstance(prog_type, ProgramType):
            return None
        spec = getattr(prog, "spec", None)
        source = spec if spec is not None else prog
        flags = getattr(source, "flags", 0) or 0
        attach = getattr(source, "attach_type", None)
        return cls(
            prog_type,
            bool(flags & BPF_F_XDP_HAS_FRAGS),
            bool(flags & BPF_F_SLEEPABLE),
            0 if attach is None else int(attach),
            _storage_of(prog),
        )

    def describe(self) -> str:
        extras = [f"expected attach type {self.expected_attach_type}"]
        extras += [f"{kind} {getattr(m, 'label', m)}" for kind, m in zip(_STORAGE_KINDS, self.storage) if m]
        if self.xdp_has_frags:
            extras.append("xdp.frags")
        if self.sleepable:
            extras.append("sleepable")
        return f"{self.type.name} ({', '.join(extras)})"


_STORAGE_TYPES = (MapType.CGROUP_STORAGE, MapType.PERCPU_CGROUP_STORAGE)
_STORAGE_KINDS = ("cgroup storage", "per-CPU cgroup storage")


def _storage_of(prog: object) -> tuple[object | None, object | None]:
    """The cgroup storage maps a loaded program references (its spec's map relocations looked
    up in its collection's ``maps``); none for objects without both."""
    found: list[object | None] = [None, None]
    spec = getattr(prog, "spec", None)
    maps = getattr(getattr(prog, "collection", None), "maps", None)
    if spec is None or not isinstance(maps, dict):
        return (None, None)
    for reloc in getattr(spec, "relocations", {}).values():
        m = maps.get(getattr(reloc, "symbol", None))
        map_type = getattr(m, "type", None)
        if map_type in _STORAGE_TYPES:
            found[_STORAGE_TYPES.index(map_type)] = m
    return (found[0], found[1])


class ProgArrayMap(FdArrayMap[object]):
    """A program array (``BPF_MAP_TYPE_PROG_ARRAY``)."""

    types = (MapType.PROG_ARRAY,)
    kind = "program array"
    entry = "program"

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        super().__init__(defn, memory, ncpus=ncpus)
        self.owner: ProgArrayOwner | None = None
        """The program kind every program of this array must be (Rule 3); ``None`` until the
        first program is put in or loaded with a reference to the array."""

    def claim(self, prog: object) -> None:
        """Check that ``prog`` may join this array, making it the owner if there is none yet
        (``bpf_prog_map_compatible``: what the kernel does when a program is put in the
        array, and when a program that uses the array is loaded).

        Raises:
            InvalidMapArgumentError: ``prog`` differs from the owner (``EINVAL``).
        """
        record = ProgArrayOwner.of(prog)
        if record is None:
            return
        if self.owner is None:
            self.owner = record
        elif not self.owner.accepts(record):
            raise InvalidMapArgumentError(
                f"{self.label}: a {record.describe()} program cannot join a program array of "
                f"{self.owner.describe()} programs"
            )

    def update_prog(self, key: bytes, prog: object, flags: int = BPF_ANY) -> None:
        """Put ``prog`` in slot ``key`` (``BPF_MAP_UPDATE_ELEM`` with the program's fd)."""
        if flags != BPF_ANY:
            raise InvalidMapArgumentError(f"{self.label}: a program array only takes BPF_ANY")
        index = self._index(key)
        if index >= self.max_entries:
            raise MapFullError(f"{self.label}: index {index} >= max_entries {self.max_entries}")
        if prog is None:
            raise InvalidMapArgumentError(f"{self.label}: no program given")
        self.claim(prog)
        self._slots[index] = prog

    def lookup_prog(self, key: bytes) -> object:
        """The program in slot ``key``.

        Raises:
            KeyNotFoundError: the slot is empty or past the end (``ENOENT``).
        """
        prog = self._slots.get(self._index(key))
        if prog is None:
            raise KeyNotFoundError(key, f"{self.label}: no program in this slot")
        return prog

    def tail_call_target(self, index: int) -> object | None:
        """The program ``bpf_tail_call(ctx, map, index)`` jumps to, or ``None`` (fall through)."""
        return self._slots.get(index)

    def lookup(self, key: bytes) -> bytes:
        raise MapOperationNotSupportedError(
            f"{self.label}: values are programs; use lookup_prog()", errno=errno.EINVAL
        )

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        raise MapOperationNotSupportedError(
            f"{self.label}: values are programs; use update_prog()", errno=errno.EINVAL
        )

    def _release(self) -> None:
        super()._release()
        self.owner = None
