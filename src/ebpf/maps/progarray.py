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
"""

from __future__ import annotations

import errno
import struct

from ebpf.errors import KeyNotFoundError
from ebpf.maps._base import BPF_ANY, MapDef
from ebpf.maps._errors import InvalidMapArgumentError, MapFullError, MapOperationNotSupportedError
from ebpf.maps.array import FdArrayMap, array_next_key
from ebpf.spec import MapType
from ebpf.vm.memory import Memory

__all__ = ["ProgArrayMap"]

_U32 = struct.Struct("<I")


class ProgArrayMap(FdArrayMap):
    """A program array (``BPF_MAP_TYPE_PROG_ARRAY``)."""

    types = (MapType.PROG_ARRAY,)
    kind = "program array"

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        super().__init__(defn, memory, ncpus=ncpus)
        self._slots: dict[int, object] = {}

    def update_prog(self, key: bytes, prog: object, flags: int = BPF_ANY) -> None:
        """Put ``prog`` in slot ``key`` (``BPF_MAP_UPDATE_ELEM`` with the program's fd)."""
        if flags != BPF_ANY:
            raise InvalidMapArgumentError(f"{self.label}: a program array only takes BPF_ANY")
        index = self._index(key)
        if index >= self.max_entries:
            raise MapFullError(f"{self.label}: index {index} >= max_entries {self.max_entries}")
        if prog is None:
            raise InvalidMapArgumentError(f"{self.label}: no program given")
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

    def delete(self, key: bytes) -> None:
        index = self._index(key)
        if index >= self.max_entries:
            raise MapFullError(f"{self.label}: index {index} >= max_entries {self.max_entries}")
        if self._slots.pop(index, None) is None:
            raise KeyNotFoundError(key, f"{self.label}: no program in slot {index}")

    def get_next_key(self, key: bytes | None) -> bytes:
        index = 0xFFFFFFFF if key is None else self._index(key)
        return array_next_key(self.label, key, index, self.max_entries)

    def lookup(self, key: bytes) -> bytes:
        raise MapOperationNotSupportedError(
            f"{self.label}: values are programs; use lookup_prog()", errno=errno.EINVAL
        )

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        raise MapOperationNotSupportedError(
            f"{self.label}: values are programs; use update_prog()", errno=errno.EINVAL
        )

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, (bytes, bytearray, memoryview)) or len(key) != 4:
            return False
        return _U32.unpack(bytes(key))[0] in self._slots

    def __len__(self) -> int:
        return self.max_entries

    def _release(self) -> None:
        self._slots.clear()
