"""``BPF_MAP_TYPE_QUEUE`` (FIFO) and ``BPF_MAP_TYPE_STACK`` (LIFO). Pure: no kernel access.

Rule 1 (``kernel/bpf/queue_stack_maps.c``): ``key_size`` is 0, ``value_size`` > 0,
``max_entries`` > 0. :meth:`push` on a full map is ``E2BIG`` unless ``BPF_EXIST``, which
drops the *oldest* element to make room (for a stack too); ``BPF_NOEXIST`` or any other
flag is ``EINVAL``. :meth:`pop` / :meth:`peek` of an empty map is ``ENOENT``.

Rule 2: the ``Map`` operations map as the syscall does: ``update(b"", v)`` pushes,
``lookup(b"")`` peeks, :meth:`lookup_and_delete` pops; ``delete`` and ``get_next_key`` are
``EINVAL``. Programs copy values in and out (``bpf_map_push/pop/peek_elem``), so there is
no value pointer: :meth:`value_address` is ``None``.
"""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import Iterator

from ebpf.errors import KeyNotFoundError
from ebpf.maps._base import ACCESS_MASK, BPF_ANY, BPF_EXIST, VALUE_SIZE_MAX, Map, MapDef, MapFlags
from ebpf.maps._errors import InvalidMapArgumentError, MapFullError, MapOperationNotSupportedError
from ebpf.spec import MapType
from ebpf.vm.memory import Memory

__all__ = ["QueueMap", "StackMap"]

QUEUE_STACK_CREATE_FLAG_MASK = MapFlags.NUMA_NODE | ACCESS_MASK


class QueueMap(Map):
    """A FIFO queue (``BPF_MAP_TYPE_QUEUE``)."""

    types = (MapType.QUEUE,)
    lifo = False

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        super().__init__(defn, memory, ncpus=ncpus)
        if (
            defn.max_entries == 0
            or defn.key_size != 0
            or defn.value_size == 0
            or defn.flags & ~QUEUE_STACK_CREATE_FLAG_MASK
        ):
            raise InvalidMapArgumentError(
                f"{self.label}: queue/stack needs key_size 0, value_size > 0, max_entries > 0; got "
                f"key_size {defn.key_size}, value_size {defn.value_size}, "
                f"max_entries {defn.max_entries}, flags {defn.flags:#x}"
            )
        if defn.value_size > VALUE_SIZE_MAX:
            raise InvalidMapArgumentError(
                f"{self.label}: value_size {defn.value_size} is too large", errno=errno.E2BIG
            )
        self._items: deque[bytes] = deque()  # oldest on the left

    def push(self, value: bytes, flags: int = BPF_ANY) -> None:
        """``bpf_map_push_elem``: add ``value``; ``BPF_EXIST`` replaces the oldest when full.

        Raises:
            MapFullError: the map is full and ``flags`` is not ``BPF_EXIST`` (``E2BIG``).
            InvalidMapArgumentError: ``flags`` is not ``BPF_ANY`` or ``BPF_EXIST`` (``EINVAL``).
        """
        if flags not in (BPF_ANY, BPF_EXIST):
            raise InvalidMapArgumentError(f"{self.label}: invalid push flags {flags:#x}")
        value = self._value(value)
        if len(self._items) >= self.max_entries:
            if flags != BPF_EXIST:
                raise MapFullError(f"{self.label}: full (max_entries {self.max_entries})")
            self._items.popleft()
        self._items.append(value)

    def peek(self) -> bytes:
        """``bpf_map_peek_elem``: the next value :meth:`pop` would return.

        Raises:
            KeyNotFoundError: the map is empty (``ENOENT``).
        """
        if not self._items:
            raise KeyNotFoundError(None, f"{self.label}: empty")
        return self._items[-1] if self.lifo else self._items[0]

    def pop(self) -> bytes:
        """``bpf_map_pop_elem``: remove and return the next value (FIFO for a queue, LIFO for a stack).

        Raises:
            KeyNotFoundError: the map is empty (``ENOENT``).
        """
        value = self.peek()
        if self.lifo:
            self._items.pop()
        else:
            self._items.popleft()
        return value

    def _no_key(self, key: bytes) -> None:
        self._key(key)

    def lookup(self, key: bytes = b"") -> bytes:
        self._no_key(key)
        return self.peek()

    def _lookup_and_delete(self, key: bytes, flags: int) -> bytes:
        self._no_key(key)
        return self.pop()

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        self._no_key(key)
        self.push(value, flags)

    def delete(self, key: bytes) -> None:
        raise MapOperationNotSupportedError(
            f"{self.label}: cannot delete from a queue/stack", errno=errno.EINVAL
        )

    def get_next_key(self, key: bytes | None) -> bytes:
        raise MapOperationNotSupportedError(f"{self.label}: a queue/stack has no keys", errno=errno.EINVAL)

    def __iter__(self) -> Iterator[bytes]:
        raise MapOperationNotSupportedError(f"{self.label}: a queue/stack has no keys", errno=errno.EINVAL)

    def __contains__(self, key: object) -> bool:
        return False

    def __len__(self) -> int:
        return len(self._items)


class StackMap(QueueMap):
    """A LIFO stack (``BPF_MAP_TYPE_STACK``)."""

    types = (MapType.STACK,)
    lifo = True
