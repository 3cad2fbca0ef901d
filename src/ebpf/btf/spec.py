"""``btf.Spec``: the types of one BTF blob and the queries over them. Pure: no kernel access.

Rule 1: a Spec is a sequence indexed by type id: ``spec[0]`` is :class:`Void`, ``len(spec)``
counts it, and iterating yields every type in id order.

Rule 2: a parsed Spec keeps its original string table, so ``to_bytes`` reproduces the parsed
bytes exactly. A Spec built from fresh types (:meth:`Spec.build`) gets a new string table
when it is encoded.

Lookups that find nothing, or find several types where one was asked for, raise
:class:`~ebpf.errors.BTFError` with ``offset=None``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal, TypeVar

from ..errors import BTFError
from .types import (
    Array,
    Const,
    Datasec,
    DeclTag,
    Enum,
    Enum64,
    Float,
    Func,
    FuncProto,
    Int,
    Pointer,
    Restrict,
    Struct,
    Type,
    Typedef,
    TypeTag,
    Union,
    Var,
    Void,
    Volatile,
)

__all__ = ["ByteOrder", "Spec", "StringTable", "references"]

ByteOrder = Literal["little", "big"]
T = TypeVar("T", bound=Type)

POINTER_SIZE = 8
_MODIFIERS = (Typedef, Const, Volatile, Restrict, TypeTag)


class StringTable:
    """The BTF string section: NUL-terminated strings addressed by byte offset.

    Offset 0 is the empty string. :meth:`offset_of` finds the offset of a string, preferring
    the offsets the parsed types used, so re-encoding reproduces them.

    Split BTF (module BTF on a base): ``base`` is the base's table; this table's own bytes
    start at offset :attr:`start` (the end of the base's), and lower offsets are the base's.
    """

    __slots__ = ("_by_offset", "_by_string", "base", "data", "start")

    def __init__(self, data: bytes, *, base: StringTable | None = None) -> None:
        self.data = bytes(data)
        self.base = base
        self.start = 0 if base is None else base.end
        self._by_offset: dict[int, str] = {0: ""}
        self._by_string: dict[str, int] | None = None

    @property
    def end(self) -> int:
        """The offset just past this table (and its base)."""
        return self.start + len(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StringTable) and other.data == self.data and other.base == self.base

    def __hash__(self) -> int:
        return hash(self.data)

    def __repr__(self) -> str:
        split = f", split at {self.start}" if self.base is not None else ""
        return f"StringTable({len(self.data)} bytes{split})"

    def lookup(self, offset: int) -> str:
        """Return the string at ``offset``.

        Raises:
            BTFError: the offset is outside the table or the string has no NUL terminator.
        """
        try:
            return self._by_offset[offset]
        except KeyError:
            pass
        if offset < self.start and self.base is not None:
            return self.base.lookup(offset)
        data = self.data
        local = offset - self.start
        if not 0 <= local < len(data):
            raise BTFError(f"string offset {offset} out of range (string section ends at {self.end})")
        end = data.find(b"\0", local)
        if end < 0:
            raise BTFError(f"string at offset {offset} is not NUL-terminated")
        try:
            text = data[local:end].decode()
        except UnicodeDecodeError as err:
            raise BTFError(f"string at offset {offset} is not valid UTF-8: {err.reason}") from None
        self._by_offset[offset] = text
        return text

    def offset_of(self, text: str) -> int | None:
        """The offset of ``text`` in this table (its own bytes, then its base), or ``None``."""
        if self._by_string is None:
            index: dict[str, int] = {}
            for off in sorted(self._by_offset):
                index.setdefault(self._by_offset[off], off)
            pos = self.start
            for raw in self.data.split(b"\0")[: self.data.count(b"\0")]:
                try:
                    index.setdefault(raw.decode(), pos)
                except UnicodeDecodeError:
                    pass
                pos += len(raw) + 1
            self._by_string = index
        found = self._by_string.get(text)
        if found is None and self.base is not None:
            return self.base.offset_of(text)
        return found


def references(t: Type) -> tuple[int, ...]:
    """Every type id that ``t`` refers to, in encoding order."""
    match t:
        case Pointer() | Typedef() | Volatile() | Const() | Restrict() | Func() | Var():
            return (t.type,)
        case DeclTag() | TypeTag():
            return (t.type,)
        case Array():
            return (t.type, t.index_type)
        case Struct() | Union():
            return tuple(m.type for m in t.members)
        case FuncProto():
            return (t.return_type, *(p.type for p in t.params))
        case Datasec():
            return tuple(v.type for v in t.vars)
        case _:
            return ()


class Spec(Sequence[Type]):
    """The types of one BTF blob (``btf.Spec``), indexed by type id.

    Args:
        types: every type in id order, ``Void()`` first (for split BTF: the base's types, then
            its own).
        strings: the string table the types were parsed from, or ``None`` for fresh types.
        byteorder: the byte order of the parsed blob; the default for :meth:`to_bytes`.
        base: for split BTF (a kernel module's), the base Spec (vmlinux) whose ids and strings
            this one continues. Its own types have ids from :attr:`first_id` on; only they
            are encoded by :meth:`to_bytes`.

    >>> from ebpf import btf
    >>> spec = btf.Spec.build([btf.Int("int", 4, btf.IntEncoding.SIGNED, bits=32), btf.Typedef("pid_t", 1)])
    >>> spec.find("pid_t", btf.Typedef)
    Typedef(name='pid_t', type=1)
    >>> spec.resolve(2).name, spec.sizeof(2)
    ('int', 4)
    >>> btf.Spec.from_bytes(spec.to_bytes()) == spec
    True
    """

    __slots__ = ("_names", "base", "byteorder", "strings", "types")

    def __init__(
        self,
        types: Sequence[Type],
        *,
        strings: StringTable | None = None,
        byteorder: ByteOrder = "little",
        base: Spec | None = None,
    ) -> None:
        self.types: tuple[Type, ...] = tuple(types)
        if not self.types or not isinstance(self.types[0], Void):
            raise BTFError("type id 0 must be Void")
        if base is not None:
            n = len(base.types)
            # (a base whose types are a lazy sequence, not a tuple, is taken at its word)
            if len(self.types) < n or (isinstance(base.types, tuple) and self.types[:n] != base.types):
                raise BTFError("a split Spec's types must start with its base's types")
        self.base = base
        self.strings = strings
        self.byteorder: ByteOrder = byteorder
        self._names: dict[str, list[int]] | None = None

    @property
    def first_id(self) -> int:
        """The id of this Spec's first own type: 1, or the base's type count for split BTF."""
        return 1 if self.base is None else len(self.base.types)

    # --- construction -------------------------------------------------------------------

    @classmethod
    def build(
        cls, types: Iterable[Type], *, byteorder: ByteOrder = "little", base: Spec | None = None
    ) -> Spec:
        """A Spec of fresh types; the first gets id 1 (split BTF: the base's type count).

        Checks that every reference exists (in this Spec or its base).

        Raises:
            BTFError: a type refers to an id beyond the table, or a type is ``Void``.
        """
        if base is None:
            spec = cls([Void(), *types], byteorder=byteorder)
        else:
            spec = cls([*base.types, *types], byteorder=byteorder, base=base)
        first = spec.first_id
        for type_id, t in enumerate(spec.types[first:], first):
            if isinstance(t, Void):
                raise BTFError(f"type [{type_id}]: Void can only be type id 0")
            for ref in references(t):
                if not 0 <= ref < len(spec.types):
                    raise BTFError(
                        f"type [{type_id}] {t.kind.name} refers to type id {ref}, beyond the table"
                    )
        return spec

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        byteorder: ByteOrder | None = None,
        source: str | None = None,
        base: Spec | None = None,
    ) -> Spec:
        """Parse raw BTF (the ``.BTF`` section, or ``/sys/kernel/btf/vmlinux``).

        Args:
            data: the blob, header first.
            byteorder: expected byte order; ``None`` takes it from the magic.
            source: a name for the input, used in error messages.
            base: parse split BTF (``/sys/kernel/btf/<module>``) on this base (vmlinux):
                type ids and string offsets continue the base's.

        Raises:
            BTFError: the blob is malformed; the error names the offset and the problem.
        """
        from .parse import parse

        return parse(data, byteorder=byteorder, source=source, base=base)

    @classmethod
    def from_file(
        cls, path: str | Path, *, byteorder: ByteOrder | None = None, base: Spec | None = None
    ) -> Spec:
        """Parse a raw BTF file (not an ELF object), e.g. ``/sys/kernel/btf/vmlinux``."""
        return cls.from_bytes(Path(path).read_bytes(), byteorder=byteorder, source=str(path), base=base)

    def to_bytes(self, byteorder: ByteOrder | None = None) -> bytes:
        """Encode as raw BTF; see :func:`ebpf.btf.marshal.marshal`."""
        from .marshal import marshal

        return marshal(self, byteorder=byteorder)

    # --- the sequence -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.types)

    def __getitem__(self, type_id: int) -> Type:  # type: ignore[override]
        return self.type_by_id(type_id)

    def __iter__(self) -> Iterator[Type]:
        return iter(self.types)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Spec) and other.types == self.types

    def __hash__(self) -> int:
        return hash(self.types)

    def __repr__(self) -> str:
        if self.base is not None:
            own = len(self.types) - self.first_id
            return f"Spec({own} types on a base of {self.first_id - 1}, {self.byteorder})"
        return f"Spec({len(self.types) - 1} types, {self.byteorder})"

    # --- queries ------------------------------------------------------------------------

    def type_by_id(self, type_id: int) -> Type:
        """The type with id ``type_id``.

        Raises:
            BTFError: no such id.
        """
        if not 0 <= type_id < len(self.types):
            raise BTFError(f"type id {type_id} out of range (the spec has ids 0..{len(self.types) - 1})")
        return self.types[type_id]

    def _name_index(self) -> dict[str, list[int]]:
        if self._names is None:
            index: dict[str, list[int]] = {}
            for type_id, t in enumerate(self.types):
                name = getattr(t, "name", "")
                if name:
                    index.setdefault(name, []).append(type_id)
            self._names = index
        return self._names

    def ids_by_name(self, name: str) -> tuple[int, ...]:
        """The ids of every type called ``name`` (any kind), in id order."""
        return tuple(self._name_index().get(name, ()))

    def types_by_name(self, name: str) -> tuple[Type, ...]:
        """Every type called ``name`` (any kind), in id order."""
        return tuple(self.types[i] for i in self._name_index().get(name, ()))

    def find_id(self, name: str, kind: type[T]) -> int:
        """The id of the one type of class ``kind`` called ``name``.

        Raises:
            BTFError: there is none, or more than one.
        """
        found = [i for i in self._name_index().get(name, ()) if isinstance(self.types[i], kind)]
        if not found:
            raise BTFError(f"no {kind.__name__} named {name!r}")
        if len(found) > 1:
            raise BTFError(f"{len(found)} types {kind.__name__} named {name!r}: ids {found}")
        return found[0]

    def find(self, name: str, kind: type[T]) -> T:
        """The one type of class ``kind`` (e.g. ``btf.Struct``) called ``name``.

        Raises:
            BTFError: there is none, or more than one.
        """
        t = self.types[self.find_id(name, kind)]
        assert isinstance(t, kind)
        return t

    def resolve_id(self, type_id: int) -> int:
        """Follow typedefs and modifiers (const, volatile, restrict, type tags) from ``type_id``.

        Raises:
            BTFError: an id is out of range, or the chain loops.
        """
        for _ in range(len(self.types)):
            t = self.type_by_id(type_id)
            if not isinstance(t, _MODIFIERS):
                return type_id
            type_id = t.type
        raise BTFError(f"typedef/modifier chain from type id {type_id} loops")

    def resolve(self, t: Type | int) -> Type:
        """The type ``t`` (a type or an id) stands for, skipping typedefs and modifiers."""
        if isinstance(t, int):
            return self.types[self.resolve_id(t)]
        if isinstance(t, _MODIFIERS):
            return self.types[self.resolve_id(t.type)]
        return t

    def sizeof(self, t: Type | int) -> int:
        """The size in bytes of ``t`` (a type or an id), as C's ``sizeof``.

        Raises:
            BTFError: the type has no size (void, functions, forward declarations).
        """
        for _ in range(len(self.types) + 1):
            t = self.resolve(t)
            match t:
                case Int() | Struct() | Union() | Enum() | Enum64() | Float() | Datasec():
                    return t.size
                case Pointer():
                    return POINTER_SIZE
                case Array():
                    return t.nelems * self.sizeof(t.type)
                case Var():
                    t = t.type
                case _:
                    raise BTFError(f"{t.kind.name} has no size")
        raise BTFError("type chain loops")

    def alignof(self, t: Type | int) -> int:
        """The alignment in bytes of ``t``, as libbpf's ``btf__align_of``.

        Scalars align to their size (at most 8); an aggregate to its most aligned member
        (bitfields included), or 1 when a member that is not a bitfield sits at an offset its
        type cannot have, or the size is not a multiple of the alignment (a packed struct).

        Raises:
            BTFError: the type has no alignment (void, functions, forward declarations).
        """
        t = self.resolve(t)
        match t:
            case Int() | Enum() | Enum64() | Float():
                return min(POINTER_SIZE, t.size)
            case Pointer():
                return POINTER_SIZE
            case Array():
                return self.alignof(t.type)
            case Var():
                return self.alignof(t.type)
            case Struct() | Union():
                align = 1
                for m in t.members:
                    member_align = self.alignof(m.type)
                    if not m.bitfield_size and m.offset % (8 * member_align):
                        return 1
                    align = max(align, member_align)
                if t.size % align:
                    return 1
                return align
            case _:
                raise BTFError(f"{t.kind.name} has no alignment")

    def __contains__(self, item: object) -> bool:
        return item in self.types

    def count(self, value: object) -> int:
        return self.types.count(value)

    def index(self, value: object, start: int = 0, stop: int | None = None) -> int:
        return self.types.index(value, start, len(self.types) if stop is None else stop)
