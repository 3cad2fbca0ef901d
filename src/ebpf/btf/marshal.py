"""Encode a :class:`~ebpf.btf.Spec` as raw BTF. Foundation layer. Pure: no kernel access.

Rule 1: a parsed Spec encodes back to the bytes it came from: its string table is reused
unchanged (strings that new types need are appended), and the layout is the canonical one
that the kernel, pahole and clang write (24-byte header, types, then strings).

Rule 2: a Spec built from fresh types gets a new string table: the empty string, then every
name in the order the types first use it, each once.

Values that do not fit their field raise :class:`~ebpf.errors.BTFError` naming the type id.
"""

from __future__ import annotations

import struct
import sys
from array import array

from ..errors import BTFError
from .parse import BTF_MAGIC, BTF_VERSION, HEADER_SIZE
from .spec import ByteOrder, Spec, StringTable
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
    Fwd,
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

__all__ = ["StringTableBuilder", "marshal", "string_table"]

_U32 = 0xFFFFFFFF


class StringTableBuilder:
    """Collects strings for a string section, each once.

    Args:
        base: an existing table to keep as is (new strings are appended), or ``None``.
        split_of: for split BTF, the base BTF's table: its strings are reused, and this
            section's offsets start where it ends (the section itself may start empty).
    """

    def __init__(self, base: StringTable | None = None, *, split_of: StringTable | None = None) -> None:
        if split_of is None and base is not None:
            split_of = base.base
        self._base = base
        self._split_of = split_of
        if split_of is None:
            first = base.data if base is not None and base.data else b"\0"
            self._start = 0
        else:
            first = base.data if base is not None else b""
            self._start = split_of.end
        self._chunks: list[bytes] = [first]
        self._size = len(first)
        self._added: dict[str, int] = {"": 0}

    def add(self, text: str) -> int:
        """The offset of ``text``, adding it if needed."""
        off = self._added.get(text)
        if off is not None:
            return off
        if self._base is not None:
            off = self._base.offset_of(text)
        if off is None and self._split_of is not None:
            off = self._split_of.offset_of(text)
        if off is None:
            raw = text.encode()
            if b"\0" in raw:
                raise BTFError(f"string {text!r} contains NUL")
            off = self._start + self._size
            self._chunks.append(raw + b"\0")
            self._size += len(raw) + 1
        self._added[text] = off
        return off

    def to_bytes(self) -> bytes:
        return b"".join(self._chunks)


def _info(kind: int, vlen: int, kind_flag: bool | int) -> int:
    return (1 << 31 if kind_flag else 0) | kind << 24 | vlen


def _encode(t: Type, out: list[int], add: StringTableBuilder) -> None:
    """Append the words of ``t`` to ``out``."""
    kind = int(t.kind)
    match t:
        case Pointer() | Const() | Volatile() | Restrict():
            out += (0, kind << 24, t.type)
        case Typedef():
            out += (add.add(t.name), kind << 24, t.type)
        case Struct() | Union():
            out += (add.add(t.name), _info(kind, len(t.members), t.kind_flag), t.size)
            for m in t.members:
                if m.bitfield_size and not t.kind_flag:
                    raise BTFError(f"member {m.name!r} is a bitfield but kind_flag is clear")
                if t.kind_flag and (m.offset >= 1 << 24 or not 0 <= m.bitfield_size < 256):
                    raise BTFError(f"member {m.name!r}: bit offset/bitfield size too large for kind_flag")
                out += (add.add(m.name), m.type, m.bitfield_size << 24 | m.offset)
        case FuncProto():
            out += (0, _info(kind, len(t.params), 0), t.return_type)
            for p in t.params:
                out += (add.add(p.name), p.type)
        case Func():
            out += (add.add(t.name), _info(kind, int(t.linkage), 0), t.type)
        case Int():
            if t.bits >= 256 or t.offset >= 256:
                raise BTFError(f"INT {t.name!r}: bits/offset {t.bits}/{t.offset} do not fit in 8 bits")
            out += (add.add(t.name), kind << 24, t.size, int(t.encoding) << 24 | t.offset << 16 | t.bits)
        case Enum():
            out += (add.add(t.name), _info(kind, len(t.values), t.signed), t.size)
            for v in t.values:
                out += (add.add(v.name), v.value & _U32)
        case Enum64():
            out += (add.add(t.name), _info(kind, len(t.values), t.signed), t.size)
            for v in t.values:
                value = v.value & 0xFFFFFFFFFFFFFFFF
                out += (add.add(v.name), value & _U32, value >> 32)
        case Array():
            out += (0, kind << 24, 0, t.type, t.index_type, t.nelems)
        case Fwd():
            out += (add.add(t.name), _info(kind, 0, t.union), 0)
        case Var():
            out += (add.add(t.name), kind << 24, t.type, int(t.linkage))
        case Datasec():
            out += (add.add(t.name), _info(kind, len(t.vars), 0), t.size)
            for sec in t.vars:
                out += (sec.type, sec.offset, sec.size)
        case Float():
            out += (add.add(t.name), kind << 24, t.size)
        case DeclTag():
            out += (add.add(t.name), _info(kind, 0, t.attribute), t.type, t.component_idx & _U32)
        case TypeTag():
            out += (add.add(t.name), _info(kind, 0, t.attribute), t.type)
        case _:
            raise BTFError(f"cannot encode {t!r}")


def string_table(spec: Spec) -> StringTable:
    """The string table ``spec`` encodes with: its parsed one, or the one a fresh Spec gets."""
    if spec.strings is not None:
        return spec.strings
    split_of = string_table(spec.base) if spec.base is not None else None
    builder = StringTableBuilder(split_of=split_of)
    for t in spec.types[spec.first_id :]:
        _encode(t, [], builder)
    return StringTable(builder.to_bytes(), base=split_of)


def marshal(spec: Spec, *, byteorder: ByteOrder | None = None) -> bytes:
    """Encode ``spec`` as a raw BTF blob.

    Args:
        spec: the types; ``spec.strings`` (if any) is kept as the start of the string section.
            A split Spec (``spec.base`` set) encodes only its own types, with string offsets
            that continue the base's string table.
        byteorder: ``"little"`` or ``"big"``; ``None`` means ``spec.byteorder``.

    Raises:
        BTFError: a value does not fit its field (the error names the type id).
    """
    order = spec.byteorder if byteorder is None else byteorder
    if spec.base is not None:
        split_of = spec.strings.base if spec.strings is not None else None
        builder = StringTableBuilder(spec.strings, split_of=split_of or string_table(spec.base))
    else:
        builder = StringTableBuilder(spec.strings)
    out: list[int] = []
    first = spec.first_id
    if not isinstance(spec.types[0], Void):
        raise BTFError("type id 0 must be Void")
    for type_id in range(first, len(spec.types)):
        t = spec.types[type_id]
        try:
            _encode(t, out, builder)
        except BTFError as err:
            raise BTFError(f"type [{type_id}] {t.kind.name}: {err.message}") from None
    try:
        words = array("I", out)
    except OverflowError:
        bad = next(w for w in out if not 0 <= w <= _U32)
        raise BTFError(f"value {bad} does not fit in 32 bits") from None
    if order != sys.byteorder:
        words.byteswap()
    type_bytes = words.tobytes()
    str_bytes = builder.to_bytes()
    e = "<" if order == "little" else ">"
    header = struct.pack(
        e + "HBBIIIII",
        BTF_MAGIC,
        BTF_VERSION,
        0,
        HEADER_SIZE,
        0,
        len(type_bytes),
        len(type_bytes),
        len(str_bytes),
    )
    return header + type_bytes + str_bytes
