"""BTF as text: type listings like ``bpftool btf dump``, values like ``bpftool map dump``.

Foundation layer. Pure: no kernel access.

Rule 1 (types): :func:`dump_raw` writes one ``[id] KIND 'name' ...`` line per type (members,
parameters, enumerators and section entries on tab-indented lines below), exactly as bpftool
7.1 prints ``bpftool btf dump file X``; :func:`types_json` is the same as data.

Rule 2 (values): :func:`format_value` reads ``data`` as ``type_id`` and prints it the way
``bpftool map dump`` does with BTF: JSON-like text, 4-space indents, integers in decimal,
bitfields and 128-bit integers in hex, ``char`` arrays holding a C string as a string,
enumerators by name, pointers in hex (``(nil)`` for NULL), structs as objects and arrays as
lists. :func:`to_python` gives the same value as Python data for JSON. Too little data
raises :class:`~ebpf.errors.BTFError` naming the type and the sizes.
"""

from __future__ import annotations

import struct
from typing import Any, Literal

from ..errors import BTFError
from .spec import Spec
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
    IntEncoding,
    Pointer,
    Restrict,
    Struct,
    Type,
    Typedef,
    TypeTag,
    Union,
    Var,
    VarLinkage,
    Void,
    Volatile,
)

__all__ = ["dump_raw", "format_type", "format_value", "to_python", "type_json", "types_json"]

_ENCODING_NAMES = {
    IntEncoding.NONE: "(none)",
    IntEncoding.SIGNED: "SIGNED",
    IntEncoding.CHAR: "CHAR",
    IntEncoding.BOOL: "BOOL",
}
_VAR_LINKAGE = {
    VarLinkage.STATIC: "static",
    VarLinkage.GLOBAL_ALLOCATED: "global",
    VarLinkage.GLOBAL_EXTERN: "extern",
}


def _name(text: str) -> str:
    return text or "(anon)"


def format_type(spec: Spec, type_id: int) -> str:
    """One type as bpftool prints it: ``[id] KIND 'name' ...`` plus its indented sub-lines."""
    t = spec.type_by_id(type_id)
    head = f"[{type_id}] {t.kind.name} '{_name(getattr(t, 'name', ''))}'"
    match t:
        case Int():
            encoding = _ENCODING_NAMES.get(t.encoding, "UNKN")
            return f"{head} size={t.size} bits_offset={t.offset} nr_bits={t.bits} encoding={encoding}"
        case Pointer() | Const() | Volatile() | Restrict() | Typedef() | TypeTag():
            return f"{head} type_id={t.type}"
        case Array():
            return f"{head} type_id={t.type} index_type_id={t.index_type} nr_elems={t.nelems}"
        case Struct() | Union():
            lines = [f"{head} size={t.size} vlen={len(t.members)}"]
            for m in t.members:
                line = f"\t'{_name(m.name)}' type_id={m.type} bits_offset={m.offset}"
                if m.bitfield_size:
                    line += f" bitfield_size={m.bitfield_size}"
                lines.append(line)
            return "\n".join(lines)
        case Enum() | Enum64():
            lines = [
                f"{head} encoding={'SIGNED' if t.signed else 'UNSIGNED'} size={t.size} vlen={len(t.values)}"
            ]
            is64 = isinstance(t, Enum64)
            mask = (1 << 64) - 1 if is64 else (1 << 32) - 1
            suffix = ("LL" if t.signed else "ULL") if is64 else ""
            for v in t.values:
                value = v.value if t.signed else v.value & mask
                lines.append(f"\t'{_name(v.name)}' val={value}{suffix}")
            return "\n".join(lines)
        case Fwd():
            return f"{head} fwd_kind={'union' if t.union else 'struct'}"
        case Func():
            return f"{head} type_id={t.type} linkage={t.linkage.name.lower()}"
        case FuncProto():
            lines = [f"{head} ret_type_id={t.return_type} vlen={len(t.params)}"]
            lines += [f"\t'{_name(p.name)}' type_id={p.type}" for p in t.params]
            return "\n".join(lines)
        case Var():
            return f"{head} type_id={t.type}, linkage={_VAR_LINKAGE[t.linkage]}"
        case Datasec():
            lines = [f"{head} size={t.size} vlen={len(t.vars)}"]
            for sec in t.vars:
                line = f"\ttype_id={sec.type} offset={sec.offset} size={sec.size}"
                if 0 <= sec.type < len(spec.types):
                    target = spec.types[sec.type]
                    line += f" ({target.kind.name} '{_name(getattr(target, 'name', ''))}')"
                lines.append(line)
            return "\n".join(lines)
        case Float():
            return f"{head} size={t.size}"
        case DeclTag():
            return f"{head} type_id={t.type} component_idx={t.component_idx}"
        case _:
            return head


def dump_raw(spec: Spec) -> str:
    """Every type of ``spec`` (a split Spec: its own), like ``bpftool btf dump file X``."""
    return "".join(format_type(spec, i) + "\n" for i in range(spec.first_id, len(spec.types)))


def type_json(spec: Spec, type_id: int) -> dict[str, Any]:
    """One type as data, as ``bpftool -j btf dump`` (7.1) gives it, except that values of
    unsigned 32-bit enums keep bit 31 (bpftool sign-extends them to 64 bits)."""
    t = spec.type_by_id(type_id)
    doc: dict[str, Any] = {"id": type_id, "kind": t.kind.name, "name": _name(getattr(t, "name", ""))}
    match t:
        case Int():
            doc.update(
                size=t.size,
                bits_offset=t.offset,
                nr_bits=t.bits,
                encoding=_ENCODING_NAMES.get(t.encoding, "UNKN"),
            )
        case Pointer() | Const() | Volatile() | Restrict() | Typedef() | TypeTag():
            doc["type_id"] = t.type
        case Array():
            doc.update(type_id=t.type, index_type_id=t.index_type, nr_elems=t.nelems)
        case Struct() | Union():
            members = []
            for m in t.members:
                member: dict[str, Any] = {"name": _name(m.name), "type_id": m.type, "bits_offset": m.offset}
                if m.bitfield_size:
                    member["bitfield_size"] = m.bitfield_size
                members.append(member)
            doc.update(size=t.size, vlen=len(t.members), members=members)
        case Enum() | Enum64():
            doc.update(
                encoding="SIGNED" if t.signed else "UNSIGNED",
                size=t.size,
                vlen=len(t.values),
                values=[{"name": v.name, "val": v.value} for v in t.values],
            )
        case Fwd():
            doc["fwd_kind"] = "union" if t.union else "struct"
        case Func():
            doc.update(type_id=t.type, linkage=t.linkage.name.lower())
        case FuncProto():
            doc.update(
                ret_type_id=t.return_type,
                vlen=len(t.params),
                params=[{"name": _name(p.name), "type_id": p.type} for p in t.params],
            )
        case Var():
            doc.update(type_id=t.type, linkage=_VAR_LINKAGE[t.linkage])
        case Datasec():
            doc.update(
                size=t.size,
                vlen=len(t.vars),
                vars=[{"type_id": v.type, "offset": v.offset, "size": v.size} for v in t.vars],
            )
        case Float():
            doc["size"] = t.size
        case DeclTag():
            doc.update(type_id=t.type, component_idx=t.component_idx)
    return doc


def types_json(spec: Spec) -> dict[str, Any]:
    """``{"types": [...]}``, like ``bpftool -j btf dump file X``."""
    return {"types": [type_json(spec, i) for i in range(spec.first_id, len(spec.types))]}


# --- values -----------------------------------------------------------------------------


class _Hex(int):
    """An integer bpftool prints in hex (bitfields, 128-bit integers): ``text`` is the raw bits."""

    text: str


def _hex(value: int, raw: int) -> _Hex:
    h = _Hex(value)
    h.text = f"{raw:#x}"
    return h


class _Ptr(int):
    """A pointer value: ``0x...`` (``(nil)`` for NULL) in text, an integer in JSON."""


class _Char(int):
    """A single ``char`` that is not printable: ``0x..`` in text."""


class _Obj(list[tuple[str, Any]]):
    """A struct, union, VAR or DATASEC value: ``(name, value)`` pairs in order (anonymous
    members all have the name ``""``, so this is not a dict)."""


class _Decoder:
    def __init__(self, spec: Spec, byteorder: Literal["little", "big"]) -> None:
        self.spec = spec
        self.order: Literal["little", "big"] = byteorder

    def _need(self, t: Type, data: bytes, offset: int, size: int) -> bytes:
        if offset < 0 or offset + size > len(data):
            raise BTFError(
                f"{t.kind.name} {getattr(t, 'name', '') or '(anon)'} needs {size} bytes at offset {offset}, "
                f"the data has {len(data)}"
            )
        return data[offset : offset + size]

    def _uint(self, t: Type, data: bytes, offset: int, size: int) -> int:
        return int.from_bytes(self._need(t, data, offset, size), self.order)

    @staticmethod
    def _signed(raw: int, nbits: int, signed: bool) -> int:
        return raw - (1 << nbits) if signed and nbits and raw >> (nbits - 1) else raw

    def bits(self, t: Type, data: bytes, byte_off: int, bit_off: int, nbits: int, signed: bool) -> int:
        """``nbits`` bits at bit ``bit_off`` from ``byte_off`` (in the BTF byte order's sense)."""
        nbytes = (bit_off + nbits + 7) // 8
        raw = self._uint(t, data, byte_off, nbytes)
        if self.order == "little":
            value = (raw >> bit_off) & ((1 << nbits) - 1)
        else:
            value = (raw >> (nbytes * 8 - bit_off - nbits)) & ((1 << nbits) - 1)
        return self._signed(value, nbits, signed)

    def value(self, type_id: int, data: bytes, offset: int, bit_off: int = 0) -> Any:
        spec = self.spec
        t = spec.type_by_id(type_id)
        match t:
            case Typedef() | Const() | Volatile() | Restrict() | TypeTag():
                return self.value(t.type, data, offset, bit_off)
            case Int():
                nbits = t.bits
                if bit_off or t.offset or nbits % 8:
                    raw = self.bits(t, data, offset, bit_off + t.offset, nbits, False)
                    return _hex(self._signed(raw, nbits, t.signed), raw)
                if nbits == 128:
                    raw = self._uint(t, data, offset, 16)
                    return _hex(self._signed(raw, nbits, t.signed), raw)
                raw = self._uint(t, data, offset, nbits // 8)
                if t.encoding & IntEncoding.SIGNED and raw >> (nbits - 1):
                    return raw - (1 << nbits)
                if t.encoding & IntEncoding.BOOL:
                    return bool(raw)
                if t.encoding & IntEncoding.CHAR:
                    return chr(raw) if 0x20 <= raw < 0x7F else _Char(raw)
                return raw
            case Pointer():
                return _Ptr(self._uint(t, data, offset, 8))
            case Enum() | Enum64():
                raw = self._uint(t, data, offset, t.size)
                signed_raw = raw - (1 << (8 * t.size)) if raw >> (8 * t.size - 1) else raw
                for v in t.values:
                    if v.value == signed_raw or v.value == raw:
                        return v.name
                return signed_raw
            case Float():
                raw_bytes = self._need(t, data, offset, t.size)
                fmt = {2: "e", 4: "f", 8: "d"}.get(t.size)
                if fmt is None:
                    raw = int.from_bytes(raw_bytes, self.order)
                    return _hex(raw, raw)
                return struct.unpack(("<" if self.order == "little" else ">") + fmt, raw_bytes)[0]
            case Array():
                elem_size = spec.sizeof(t.type) if t.nelems else 0
                self._need(t, data, offset, elem_size * t.nelems)
                text = self._c_string(t, data[offset : offset + t.nelems])
                if text is not None:
                    return text
                return [self.value(t.type, data, offset + i * elem_size) for i in range(t.nelems)]
            case Struct() | Union():
                self._need(t, data, offset, t.size)
                result = _Obj()
                for m in t.members:
                    byte_off, m_bit = divmod(m.offset, 8)
                    if m.bitfield_size:
                        target = spec.resolve(m.type)
                        signed = isinstance(target, Int) and target.signed
                        raw = self.bits(t, data, offset + byte_off, m_bit, m.bitfield_size, False)
                        result.append((m.name, _hex(self._signed(raw, m.bitfield_size, signed), raw)))
                    else:
                        result.append((m.name, self.value(m.type, data, offset + byte_off, m_bit)))
                return result
            case Var():
                return _Obj([(t.name, self.value(t.type, data, offset, bit_off))])
            case Datasec():
                return _Obj([(t.name, [self.value(v.type, data, offset + v.offset) for v in t.vars])])
            case Void():
                raise BTFError("void has no value")
            case _:
                raise BTFError(f"type [{type_id}] {t.kind.name} has no value to print")

    def _c_string(self, t: Array, raw: bytes) -> str | None:
        """bpftool's rule: a ``char`` array holding printable bytes up to a NUL is a string."""
        if not t.nelems:
            return None
        elem = self.spec.types[t.type]
        while isinstance(elem, Const | Volatile | Restrict | TypeTag):
            elem = self.spec.types[elem.type]
        if not isinstance(elem, Int) or elem.size != 1:
            return None
        if not (elem.encoding & IntEncoding.CHAR or elem.name == "char"):
            return None
        end = raw.find(b"\0")
        if end < 0 or any(b <= 0x1F or b >= 0x7F for b in raw[:end]):
            return None
        return raw[:end].decode("ascii")


def to_python(
    spec: Spec, type_id: int, data: bytes, *, byteorder: Literal["little", "big"] | None = None
) -> Any:
    """The value of ``type_id`` in ``data`` as Python data: dicts, lists, ints, strs (bools, floats).

    Strings stand for ``char`` arrays holding C strings, printable ``char`` values and
    enumerators known by name. The fields of anonymous struct/union members are the
    parent's, as in C.

    Raises:
        BTFError: ``data`` is shorter than the type, or the type has no value (void, FUNC...).
    """
    decoder = _Decoder(spec, byteorder or spec.byteorder)
    return _plain(decoder.value(type_id, bytes(data), 0))


def _plain(value: Any) -> Any:
    if isinstance(value, _Obj):
        result: dict[str, Any] = {}
        for key, item in value:
            plain = _plain(item)
            if key == "" and isinstance(plain, dict):
                result.update(plain)  # an anonymous struct/union: its fields are the parent's
            else:
                result[key] = plain
        return result
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    return value


def format_value(
    spec: Spec, type_id: int, data: bytes, *, byteorder: Literal["little", "big"] | None = None
) -> str:
    """The value of ``type_id`` in ``data`` as ``bpftool map dump`` prints it (see the module doc).

    Raises:
        BTFError: ``data`` is shorter than the type, or the type has no value (void, FUNC...).
    """
    decoder = _Decoder(spec, byteorder or spec.byteorder)
    parts: list[str] = []
    _write(decoder.value(type_id, bytes(data), 0), parts, 0)
    return "".join(parts)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, _Ptr):
        return f"{int(value):#x}" if value else "(nil)"
    if isinstance(value, _Hex):
        return value.text
    if isinstance(value, _Char):
        return f"{int(value):#x}"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return repr(value)
    return str(int(value))


def _write(value: Any, out: list[str], depth: int) -> None:
    """bpftool's pretty JSON writer: objects one member a line, arrays on one line until nested."""
    if isinstance(value, _Obj):
        out.append("{")
        inner = "\n" + "    " * (depth + 1)
        first = True
        for key, item in value:
            out.append(inner if first else "," + inner)
            first = False
            out.append(_scalar(key) + ": ")
            _write(item, out, depth + 1)
        if not first:
            out.append("\n" + "    " * depth)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out, depth + 1)
        if value:
            out.append("\n" + "    " * depth)
        out.append("]")
    else:
        out.append(_scalar(value))
