"""Typed records from BTF: Python classes that pack and unpack the bytes of a C type. Core layer.

Pure: built on :mod:`struct` (no ctypes, no kernel access). numpy is optional and only
imported by :func:`numpy_dtype`.

``record_class(spec, type_id)`` gives one class per BTF type, with the same three members
whatever the kind: ``cls.size`` (bytes), ``cls.unpack(data) -> instance`` and
``instance.pack() -> bytes``:

==================  ===============================================================
BTF kind            class
==================  ===============================================================
STRUCT              a frozen record (:class:`Record`): one attribute per member, in order;
                    nested structs are nested records, anonymous members are ``_anon<N>``
UNION               a frozen record whose members all decode the same bytes; built from
                    keywords, only the given members are written (in the order given)
INT (and PTR)       an ``int`` subclass (range-checked on ``pack``; ``bool`` for BOOL ints)
ENUM / ENUM64       an ``IntEnum``; ``unpack`` of a value it does not name gives a plain ``int``
FLOAT               a ``float`` subclass (2, 4 or 8 bytes; other sizes: raw ``bytes``)
ARRAY of chars      (1-byte ints named ``*char*``: ``char``, ``unsigned char``) a ``bytes`` subclass of exactly the array's length (shorter input is
                    NUL-padded by ``pack``); other arrays: a ``tuple`` subclass of elements
TYPEDEF, modifiers  the class of the type they stand for (a typedef names an anonymous one)
DATASEC             a record of the section's variables at their offsets (``.data`` -> ``data``;
                    a ``.kconfig`` section clang left at size 0 gets the size its variables need)
VAR                 the class of the variable's type
==================  ===============================================================

Rule 1: bitfields (a member's ``bitfield_size``, or an INT type whose ``bits`` are fewer
than its size) decode as unsigned or sign-extended ints in the spec's byte order, with the
bit numbering of that order (little-endian: from the least significant bit of the first
byte; big-endian: from the most significant).

Rule 2: bad input raises :class:`~ebpf.errors.BTFError`: data of the wrong size, an
unknown member name, a value that does not fit its field, a type without a size.

>>> from ebpf import btf
>>> spec = btf.Spec.build([btf.Int("int", 4, btf.IntEncoding.SIGNED, 0, 32),
...     btf.Struct("pt", 8, (btf.Member("x", 1, 0), btf.Member("y", 1, 32)))])
>>> Pt = record_class(spec, 2)
>>> p = Pt.unpack(bytes([1, 0, 0, 0, 255, 255, 255, 255]))
>>> p
pt(x=1, y=-1)
>>> p.pack() == Pt(x=1, y=-1).pack(), Pt.size
(True, 8)
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Self

from ..errors import BTFError
from .types import (
    Array,
    Const,
    Datasec,
    Enum,
    Enum64,
    Float,
    Int,
    IntEncoding,
    Pointer,
    Restrict,
    Struct,
    Typedef,
    TypeTag,
    Union,
    Var,
    Volatile,
)

if TYPE_CHECKING:
    from .spec import Spec

__all__ = ["Record", "encode", "numpy_dtype", "record_class"]

_MODIFIERS = (Const, Volatile, Restrict, TypeTag)
_FLOAT_CODES = {2: "e", 4: "f", 8: "d"}
_CACHE: dict[int, tuple[Spec, dict[int, type]]] = {}
_CACHE_MAX = 16


def _check_size(cls: Any, data: bytes | bytearray | memoryview) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BTFError(f"{cls.__name__}.unpack needs bytes, got {type(data).__name__}")
    raw = bytes(data)
    if len(raw) != cls.size:
        raise BTFError(f"{cls.__name__}.unpack: {len(raw)} bytes, expected {cls.size}")
    return raw


# --- scalars --------------------------------------------------------------------------------------


class IntValue(int):
    """Base of generated integer classes (``size``, ``signed``, byte order)."""

    size: ClassVar[int] = 4
    signed: ClassVar[bool] = False
    byteorder: ClassVar[str] = "little"

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview) -> Self:
        return cls(int.from_bytes(_check_size(cls, data), cls.byteorder, signed=cls.signed))  # type: ignore[arg-type]

    def pack(self) -> bytes:
        return _int_bytes(int(self), self.size, self.signed, self.byteorder, type(self).__name__)


def _int_bytes(value: int, size: int, signed: bool, byteorder: str, what: str) -> bytes:
    try:
        return int(value).to_bytes(size, byteorder, signed=signed)  # type: ignore[arg-type]
    except OverflowError:
        raise BTFError(
            f"{what}: {value} does not fit {size} bytes ({'signed' if signed else 'unsigned'})"
        ) from None


class FloatValue(float):
    """Base of generated floating point classes."""

    size: ClassVar[int] = 8
    byteorder: ClassVar[str] = "little"

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview) -> Self:
        code = ("<" if cls.byteorder == "little" else ">") + _FLOAT_CODES[cls.size]
        return cls(struct.unpack(code, _check_size(cls, data))[0])

    def pack(self) -> bytes:
        code = ("<" if self.byteorder == "little" else ">") + _FLOAT_CODES[self.size]
        return struct.pack(code, float(self))


class CharArray(bytes):
    """Base of generated ``char[N]`` classes: bytes of exactly ``size`` (``pack`` pads with NULs)."""

    size: ClassVar[int] = 0

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview) -> Self:
        return cls(_check_size(cls, data))

    def pack(self) -> bytes:
        if len(self) > self.size:
            raise BTFError(f"{type(self).__name__}: {len(self)} bytes do not fit char[{self.size}]")
        return bytes(self).ljust(self.size, b"\0")

    @property
    def text(self) -> str:
        """The string up to the first NUL, decoded as UTF-8 (errors replaced)."""
        return bytes(self).split(b"\0", 1)[0].decode(errors="replace")


class ArrayValue(tuple[Any, ...]):
    """Base of generated array classes: a tuple of ``length`` elements of class ``element``."""

    size: ClassVar[int] = 0
    length: ClassVar[int] = 0
    element: ClassVar[Any] = None

    def __new__(cls, items: Any = ()) -> Self:
        items = tuple(items)
        if len(items) > cls.length:
            raise BTFError(f"{cls.__name__}: {len(items)} elements for an array of {cls.length}")
        return super().__new__(cls, items)

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview) -> Self:
        raw = _check_size(cls, data)
        step = cls.element.size
        return cls(cls.element.unpack(raw[i * step : (i + 1) * step]) for i in range(cls.length))

    def pack(self) -> bytes:
        out = b"".join(_pack_as(self.element, item) for item in self)
        return out.ljust(self.size, b"\0")


def _pack_as(cls: Any, value: Any) -> bytes:
    """``value`` encoded as ``cls``: instances pack themselves, plain values are converted."""
    if isinstance(value, cls):
        packed: bytes = value.pack()
        return packed
    if isinstance(value, Record) and not issubclass(cls, Record):
        raise BTFError(f"{cls.__name__}: got a {type(value).__name__} record")
    if issubclass(cls, Record):
        if isinstance(value, dict):
            packed = cls(**value).pack()
            return packed
        if isinstance(value, (bytes, bytearray, memoryview)):
            packed = cls.unpack(value).pack()
            return packed
        raise BTFError(
            f"{cls.__name__}: expected a {cls.__name__} record or a dict, got {type(value).__name__}"
        )
    try:
        packed = cls(value).pack()
    except (TypeError, ValueError) as err:
        raise BTFError(f"{cls.__name__}: cannot encode {value!r}: {err}") from None
    return packed


def encode(cls: Any, value: Any) -> bytes:
    """``value`` as the bytes of record class ``cls``.

    Accepts an instance of ``cls``, anything with a ``pack()`` method, a plain value the class
    converts (an ``int`` for an integer class, a ``dict`` of members for a record, a tuple for
    an array), or raw bytes of exactly ``cls.size``.

    Raises:
        BTFError: the value cannot be encoded, or the bytes have the wrong size.
    """
    if isinstance(value, (bytes, bytearray, memoryview)) and not issubclass(cls, CharArray):
        raw = bytes(value)
        if len(raw) != cls.size:
            raise BTFError(f"{cls.__name__}: {len(raw)} bytes, expected {cls.size}")
        return raw
    if not isinstance(value, cls) and callable(getattr(value, "pack", None)):
        packed = value.pack()
        if not isinstance(packed, bytes) or len(packed) != cls.size:
            raise BTFError(f"{cls.__name__}: {type(value).__name__}.pack() did not give {cls.size} bytes")
        return packed
    return _pack_as(cls, value)


# --- records (struct / union) -----------------------------------------------------------------


class Record:
    """Base of generated struct and union classes: frozen, fields by name, ``pack``/``unpack``.

    Construct with keywords (missing fields are zero); ``_replace(**changes)`` gives a copy.
    """

    __slots__ = ("_raw", "_values")
    size: ClassVar[int] = 0
    fields: ClassVar[tuple[str, ...]] = ()
    is_union: ClassVar[bool] = False
    _layout: ClassVar[tuple[_Field, ...]] = ()

    def __init__(self, **values: Any) -> None:
        unknown = set(values) - set(self.fields)
        if unknown:
            raise BTFError(f"{type(self).__name__} has no member {min(unknown)!r}")
        raw = bytearray(self.size)
        layout = {f.name: f for f in self._layout}
        order = list(values) if self.is_union else [f.name for f in self._layout if f.name in values]
        for name in order:
            layout[name].store(raw, values[name])
        object.__setattr__(self, "_raw", bytes(raw))
        object.__setattr__(self, "_values", {f.name: f.load(self._raw) for f in self._layout})

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview) -> Self:
        """Decode ``size`` bytes."""
        raw = _check_size(cls, data)
        obj = cls.__new__(cls)
        object.__setattr__(obj, "_raw", raw)
        object.__setattr__(obj, "_values", {f.name: f.load(raw) for f in cls._layout})
        return obj

    def pack(self) -> bytes:
        """The ``size`` bytes of this record (padding zero, or as unpacked)."""
        raw: bytes = self._raw
        return raw

    def __bytes__(self) -> bytes:
        return self.pack()

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "_values")
        try:
            return values[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no member {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} records are frozen; use _replace()")

    def _replace(self, **changes: Any) -> Self:
        """A copy with some members changed (the other bytes kept as they are)."""
        unknown = set(changes) - set(self.fields)
        if unknown:
            raise BTFError(f"{type(self).__name__} has no member {min(unknown)!r}")
        raw = bytearray(self._raw)
        layout = {f.name: f for f in self._layout}
        for name, value in changes.items():
            layout[name].store(raw, value)
        return type(self).unpack(bytes(raw))

    def _asdict(self) -> dict[str, Any]:
        """Members by name (nested records stay records)."""
        return dict(self._values)

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(self._values.items())

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return bool(self._values == other._values)

    def __hash__(self) -> int:
        return hash((type(self), tuple(self._values.items())))

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={value!r}" for name, value in self._values.items())
        return f"{type(self).__name__}({inner})"


class _Field:
    """One member: where it is and how it is read and written."""

    __slots__ = ("bit_offset", "bits", "byteorder", "cls", "name", "offset", "signed")

    def __init__(self, name: str, cls: Any, bit_offset: int, bits: int, signed: bool, byteorder: str) -> None:
        self.name = name
        self.cls = cls
        self.bit_offset = bit_offset
        self.offset = bit_offset // 8
        self.bits = bits  # 0: a whole member of cls.size bytes
        self.signed = signed
        self.byteorder = byteorder

    def _span(self) -> tuple[int, int, int]:
        first = self.bit_offset // 8
        last = (self.bit_offset + self.bits - 1) // 8
        nbytes = last - first + 1
        if self.byteorder == "little":
            shift = self.bit_offset % 8
        else:
            shift = nbytes * 8 - (self.bit_offset % 8) - self.bits
        return first, nbytes, shift

    def load(self, raw: bytes) -> Any:
        if not self.bits:
            return self.cls.unpack(raw[self.offset : self.offset + self.cls.size])
        first, nbytes, shift = self._span()
        word = int.from_bytes(raw[first : first + nbytes], self.byteorder)  # type: ignore[arg-type]
        value = (word >> shift) & ((1 << self.bits) - 1)
        if self.signed and value >> (self.bits - 1):
            value -= 1 << self.bits
        return self.cls(value) if issubclass(self.cls, (IntValue, bool)) else _enum_value(self.cls, value)

    def store(self, raw: bytearray, value: Any) -> None:
        if not self.bits:
            raw[self.offset : self.offset + self.cls.size] = _pack_as(self.cls, value)
            return
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise BTFError(
                f"member {self.name!r}: a bitfield needs an int, got {type(value).__name__}"
            ) from None
        low, high = (
            (-(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1)
            if self.signed
            else (0, (1 << self.bits) - 1)
        )
        if not low <= number <= high:
            raise BTFError(f"member {self.name!r}: {number} does not fit a {self.bits}-bit field")
        first, nbytes, shift = self._span()
        mask = ((1 << self.bits) - 1) << shift
        word = int.from_bytes(raw[first : first + nbytes], self.byteorder)  # type: ignore[arg-type]
        word = (word & ~mask) | ((number << shift) & mask)
        raw[first : first + nbytes] = word.to_bytes(nbytes, self.byteorder)  # type: ignore[arg-type]


def _enum_value(cls: Any, value: int) -> Any:
    try:
        return cls(value)
    except ValueError:
        return value


# --- the generator ----------------------------------------------------------------------------


def _cache_for(spec: Spec) -> dict[int, type]:
    entry = _CACHE.get(id(spec))
    if entry is not None and entry[0] is spec:
        return entry[1]
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.pop(next(iter(_CACHE)))
    classes: dict[int, type] = {}
    _CACHE[id(spec)] = (spec, classes)
    return classes


def record_class(spec: Spec, type_id: int) -> type:
    """The class for BTF type ``type_id`` of ``spec`` (cached per spec and id).

    Raises:
        BTFError: the id does not exist, or the type has no size (void, functions, ``FWD``,
            variables and sections).
    """
    return _Builder(spec).cls(type_id)


class _Builder:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.byteorder = spec.byteorder
        self.cache = _cache_for(spec)

    def cls(self, type_id: int, name: str | None = None) -> type:
        key = type_id if name is None else -type_id
        found = self.cache.get(key)
        if found is not None:
            return found
        try:
            t = self.spec[type_id]
        except (IndexError, KeyError, BTFError):
            raise BTFError(f"no BTF type with id {type_id}") from None
        made = self._make(t, type_id, name)
        self.cache[key] = made
        return made

    def _make(self, t: Any, type_id: int, name: str | None) -> type:
        order = self.byteorder
        if isinstance(t, Typedef):
            target = self.spec[t.type]
            anonymous = isinstance(target, (Struct, Union, Enum, Enum64)) and not target.name
            return self.cls(t.type, t.name if anonymous else None)
        if isinstance(t, _MODIFIERS):
            return self.cls(t.type, name)
        label = name or getattr(t, "name", "") or f"type{type_id}"
        if isinstance(t, Int):
            signed = t.signed
            if t.encoding & IntEncoding.BOOL:
                return type(label, (IntValue,), {"size": t.size, "signed": False, "byteorder": order})
            return type(label, (IntValue,), {"size": t.size, "signed": signed, "byteorder": order})
        if isinstance(t, Pointer):
            return type(f"ptr{type_id}", (IntValue,), {"size": 8, "signed": False, "byteorder": order})
        if isinstance(t, Float):
            if t.size not in _FLOAT_CODES:  # long double, __float128: kept as raw bytes
                return type(label, (CharArray,), {"size": t.size})
            return type(label, (FloatValue,), {"size": t.size, "byteorder": order})
        if isinstance(t, (Enum, Enum64)):
            return self._enum(t, label)
        if isinstance(t, Array):
            return self._array(t, type_id, label)
        if isinstance(t, (Struct, Union)):
            return self._record(t, label)
        if isinstance(t, Datasec):
            return self._datasec(t, label)
        if isinstance(t, Var):
            return self.cls(t.type, name)
        raise BTFError(f"type [{type_id}] ({type(t).__name__}) has no size: no record class")

    def _datasec(self, t: Datasec, label: str) -> type:
        """A data section as a record of its variables (a skeleton's ``skel->data``)."""
        layout: list[_Field] = []
        for info in t.vars:
            var = self.spec[info.type]
            if not isinstance(var, Var):  # .ksyms functions: no bytes of their own
                continue
            layout.append(_Field(var.name, self.cls(var.type), info.offset * 8, 0, False, self.byteorder))
        size = max([t.size, *(f.offset + f.cls.size for f in layout)])
        name = label.lstrip(".").replace(".", "_") or "datasec"
        return type(
            name,
            (Record,),
            {
                "__slots__": (),
                "size": size,
                "fields": tuple(f.name for f in layout),
                "__match_args__": tuple(f.name for f in layout),
                "is_union": False,
                "_layout": tuple(layout),
            },
        )

    def _enum(self, t: Enum | Enum64, label: str) -> type:
        members = [
            (v.name, v.value) for v in t.values if v.name.isidentifier() and not v.name.startswith("_")
        ]
        cls: Any = enum.IntEnum(label, members or [("_EMPTY", 0)])  # type: ignore[misc]
        size, signed, order = t.size, t.signed, self.byteorder

        def unpack(data: bytes | bytearray | memoryview) -> Any:
            raw = _check_size(cls, data)
            return _enum_value(cls, int.from_bytes(raw, order, signed=signed))

        def pack(value: Any) -> bytes:
            return _int_bytes(int(value), size, signed or int(value) < 0, order, label)

        type.__setattr__(cls, "size", size)
        type.__setattr__(cls, "signed", signed)
        type.__setattr__(cls, "unpack", staticmethod(unpack))
        type.__setattr__(cls, "pack", pack)
        enum_cls: type = cls
        return enum_cls

    def _array(self, t: Array, type_id: int, label: str) -> type:
        element = self.cls(t.type)
        size = element.size * t.nelems  # type: ignore[attr-defined]
        resolved = self.spec.resolve(t.type)
        if (
            isinstance(resolved, Int)
            and resolved.size == 1
            and not resolved.encoding & IntEncoding.BOOL
            and (resolved.encoding & IntEncoding.CHAR or "char" in resolved.name)
        ):
            return type(f"char{t.nelems}", (CharArray,), {"size": size})
        return type(
            f"{element.__name__}_array{t.nelems}",
            (ArrayValue,),
            {"size": size, "length": t.nelems, "element": element},
        )

    def _record(self, t: Struct | Union, label: str) -> type:
        layout: list[_Field] = []
        anon = 0
        for member in t.members:
            name = member.name
            if not name:
                name, anon = f"_anon{anon}", anon + 1
            mcls = self.cls(member.type)
            resolved = self.spec.resolve(member.type)
            bits, offset = member.bitfield_size, member.offset
            if (
                not bits
                and isinstance(resolved, Int)
                and resolved.bits
                and resolved.bits != resolved.size * 8
            ):
                bits, offset = resolved.bits, offset + resolved.offset
            signed = bool(getattr(resolved, "signed", False))
            if bits and not isinstance(resolved, (Int, Enum, Enum64)):
                raise BTFError(f"{label}.{name}: a bitfield of {type(resolved).__name__}")
            layout.append(_Field(name, mcls, offset, bits, signed, self.byteorder))
        return type(
            label,
            (Record,),
            {
                "__slots__": (),
                "size": t.size,
                "fields": tuple(f.name for f in layout),
                "__match_args__": tuple(f.name for f in layout),
                "is_union": isinstance(t, Union),
                "_layout": tuple(layout),
            },
        )


# --- numpy ------------------------------------------------------------------------------------


def numpy_dtype(spec: Spec, type_id: int) -> Any:
    """A numpy dtype with the layout of BTF type ``type_id`` (structured for structs/unions).

    For decoding many records at once (``numpy.frombuffer(data, dtype)``). Ints, enums and
    pointers become integer fields, floats float fields, char arrays ``S<n>``, other arrays
    sub-arrays, nested structs nested dtypes, unions overlapping fields. Bitfields have no
    numpy type and are left out (their bytes stay in the itemsize).

    Raises:
        BTFError: the type has no size.
        ImportError: numpy is not installed.
    """
    import numpy as np

    order = "<" if spec.byteorder == "little" else ">"

    def build(tid: int) -> Any:
        t = spec[tid]
        if isinstance(t, (Typedef, *_MODIFIERS)):
            return build(t.type)
        if isinstance(t, Int):
            if t.encoding & IntEncoding.BOOL and t.size == 1:
                return np.dtype("?")
            return np.dtype(f"{order}{'i' if t.signed else 'u'}{t.size}")
        if isinstance(t, (Enum, Enum64)):
            return np.dtype(f"{order}{'i' if t.signed else 'u'}{t.size}")
        if isinstance(t, Pointer):
            return np.dtype(f"{order}u8")
        if isinstance(t, Float):
            if t.size not in _FLOAT_CODES:
                return np.dtype(f"V{t.size}")  # raw bytes, as record_class does
            return np.dtype(f"{order}f{t.size}")
        if isinstance(t, Array):
            resolved = spec.resolve(t.type)
            if (
                isinstance(resolved, Int)
                and resolved.size == 1
                and (resolved.encoding & IntEncoding.CHAR or "char" in resolved.name)
            ):
                return np.dtype(f"S{t.nelems}")
            return np.dtype((build(t.type), (t.nelems,)))
        if isinstance(t, (Struct, Union)):
            names, formats, offsets = [], [], []
            anon = 0
            for member in t.members:
                resolved = spec.resolve(member.type)
                if member.bitfield_size or (
                    isinstance(resolved, Int) and resolved.bits and resolved.bits != resolved.size * 8
                ):
                    continue
                name = member.name
                if not name:
                    name, anon = f"_anon{anon}", anon + 1
                names.append(name)
                formats.append(build(member.type))
                offsets.append(member.offset // 8)
            return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": t.size})
        raise BTFError(f"type [{tid}] ({type(t).__name__}) has no size: no numpy dtype")

    try:
        return build(type_id)
    except IndexError:
        raise BTFError(f"no BTF type with id {type_id}") from None
