"""Typed views of user-space maps: keys and values as BTF records instead of bytes. Pure.

``m.typed()`` takes the key and value types from the map's BTF (``MapSpec.key_type_id`` /
``value_type_id``, through :func:`ebpf.btf.records.record_class`); ``m.typed(key=K,
value=V)`` uses any classes with ``size``, ``unpack(bytes)`` and ``pack()``. A side with no
type stays ``bytes``, except that array-like maps always have ``u32`` index keys.

Rule 1: inputs may be instances of the class, anything with ``pack()``, plain values the
class converts (an ``int`` for an integer key, a ``dict`` of members for a record), or any
object with the buffer protocol of the right size (``bytes``, ``ctypes.Structure``
instances: converted with ``bytes(obj)`` at this edge only). Outputs are always instances
of the class (or ``bytes``).

Rule 2: per-CPU values are lists with one value per CPU; an assignment takes such a list or
one value for every CPU. Queues and stacks have :meth:`TypedMap.push` / ``pop`` / ``peek``.
The view holds no state: every access goes to the map.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ebpf.btf.records import IntValue, encode, record_class
from ebpf.errors import BTFError, KeyNotFoundError
from ebpf.maps._errors import InvalidMapArgumentError

if TYPE_CHECKING:
    from ebpf.maps._base import Map

__all__ = ["TypedMap", "u32"]


class u32(IntValue):
    """The index of array-like maps (their keys are always ``u32``)."""

    size = 4
    signed = False


_INDEXED = ("ARRAY", "PERCPU_ARRAY", "PROG_ARRAY", "PERF_EVENT_ARRAY", "ARRAY_OF_MAPS")


def _class_size(cls: Any) -> int:
    size = getattr(cls, "size", None)
    if not isinstance(size, int) or not callable(getattr(cls, "unpack", None)):
        raise InvalidMapArgumentError(f"{cls!r} is not a record class (needs size and unpack())")
    return size


class TypedMap:
    """A dict-like view of ``map`` with typed keys and values (see the module docstring)."""

    def __init__(self, map: Map, key: Any = None, value: Any = None) -> None:
        defn = map.defn
        if key is None and defn.btf is not None and defn.key_type_id:
            key = record_class(defn.btf, defn.key_type_id)
        if key is None and map.type.name in _INDEXED and map.key_size == 4:
            key = u32
        if value is None and defn.btf is not None and defn.value_type_id:
            value = record_class(defn.btf, defn.value_type_id)
        if key is not None and _class_size(key) != map.key_size:
            raise InvalidMapArgumentError(
                f"{map.label}: key class {key.__name__} is {key.size} bytes, key_size is {map.key_size}"
            )
        if value is not None and _class_size(value) != map.value_size:
            raise InvalidMapArgumentError(
                f"{map.label}: value class {value.__name__} is {value.size} bytes, value_size is {map.value_size}"
            )
        self.map = map
        self.key_class = key
        self.value_class = value
        self.percpu = bool(getattr(map, "percpu", False))

    def __repr__(self) -> str:
        k = getattr(self.key_class, "__name__", "bytes")
        v = getattr(self.value_class, "__name__", "bytes")
        return f"TypedMap({self.map!r}, key={k}, value={v})"

    # --- conversion -----------------------------------------------------------------------------

    def _encode(self, cls: Any, obj: Any, size: int, what: str) -> bytes:
        if cls is None:
            try:
                raw = bytes(memoryview(obj))
            except TypeError:
                raise InvalidMapArgumentError(
                    f"{self.map.label}: {what} must be bytes-like (no BTF type), got {type(obj).__name__}"
                ) from None
            return raw
        if not isinstance(obj, (bytes, bytearray, memoryview)) and not callable(getattr(obj, "pack", None)):
            try:
                view = memoryview(obj)  # ctypes instances and other buffers: their bytes
            except TypeError:
                view = None
            if view is not None and view.nbytes == size:
                return bytes(view.cast("B"))
        try:
            return encode(cls, obj)
        except BTFError as err:
            raise InvalidMapArgumentError(f"{self.map.label}: bad {what}: {err}") from None

    def _key(self, key: Any) -> bytes:
        return self._encode(self.key_class, key, self.map.key_size, "key")

    def _decode_key(self, raw: bytes) -> Any:
        return raw if self.key_class is None else self.key_class.unpack(raw)

    def _one_value(self, value: Any) -> bytes:
        return self._encode(self.value_class, value, self.map.value_size, "value")

    def _encode_value(self, value: Any) -> bytes:
        if not self.percpu:
            return self._one_value(value)
        stride = (self.map.value_size + 7) // 8 * 8
        if isinstance(value, (list, tuple)) and not hasattr(value, "pack"):
            if len(value) != self.map.ncpus:
                raise InvalidMapArgumentError(f"{self.map.label}: need {self.map.ncpus} per-CPU values")
            return b"".join(self._one_value(v).ljust(stride, b"\0") for v in value)
        return self._one_value(value).ljust(stride, b"\0") * self.map.ncpus

    def _decode_value(self, raw: bytes) -> Any:
        def one(chunk: bytes) -> Any:
            return chunk if self.value_class is None else self.value_class.unpack(chunk)

        if not self.percpu:
            return one(raw)
        stride = (self.map.value_size + 7) // 8 * 8
        return [one(raw[i * stride : i * stride + self.map.value_size]) for i in range(self.map.ncpus)]

    # --- dict-like access -----------------------------------------------------------------------

    def lookup(self, key: Any) -> Any:
        """The value of ``key`` (per-CPU maps: a list, CPU 0 first)."""
        return self._decode_value(self.map.lookup(self._key(key)))

    def update(self, key: Any, value: Any, flags: int = 0) -> None:
        """``update`` with typed key and value (``flags`` as for the map)."""
        self.map.update(self._key(key), self._encode_value(value), flags)

    def delete(self, key: Any) -> None:
        self.map.delete(self._key(key))

    def __getitem__(self, key: Any) -> Any:
        return self.lookup(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.update(key, value)

    def __delitem__(self, key: Any) -> None:
        self.delete(key)

    def __iter__(self) -> Iterator[Any]:
        return (self._decode_key(raw) for raw in self.map)

    def __len__(self) -> int:
        return len(self.map)

    def __contains__(self, key: object) -> bool:
        try:
            raw = self._key(key)
        except InvalidMapArgumentError:
            return False
        return raw in self.map

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self.lookup(key)
        except KeyNotFoundError:
            return default

    def keys(self) -> list[Any]:
        return list(self)

    def values(self) -> list[Any]:
        return [value for _, value in self.items()]

    def items(self) -> list[tuple[Any, Any]]:
        return [(self._decode_key(k), self._decode_value(v)) for k, v in self.map.items()]

    def items_batch(self, count: int | None = None) -> Iterator[tuple[Any, Any]]:
        """Typed :meth:`Map.items_batch`."""
        for k, v in self.map.items_batch(count):
            yield self._decode_key(k), self._decode_value(v)

    def update_batch(self, items: Sequence[tuple[Any, Any]], flags: int = 0) -> int:
        """Typed :meth:`Map.update_batch`."""
        return self.map.update_batch([(self._key(k), self._encode_value(v)) for k, v in items], flags)

    # --- queue / stack --------------------------------------------------------------------------

    def push(self, value: Any, flags: int = 0) -> None:
        """Queue/stack: push a typed value."""
        self.map.update(b"", self._one_value(value), flags)

    def pop(self) -> Any:
        """Queue/stack: pop the next value, typed."""
        pop = getattr(self.map, "lookup_and_delete", None)
        if pop is None or self.map.key_size != 0:
            raise InvalidMapArgumentError(f"{self.map.label}: not a queue or stack")
        return self._decode_value(pop(b""))

    def peek(self) -> Any:
        """Queue/stack: the next value without removing it."""
        return self._decode_value(self.map.lookup(b""))
