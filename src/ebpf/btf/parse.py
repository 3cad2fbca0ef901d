"""Parse raw BTF into a :class:`~ebpf.btf.Spec`. Foundation layer. Pure: no kernel access.

Rule 1: every malformation raises :class:`~ebpf.errors.BTFError` naming the byte offset (from
the start of the blob) and what is wrong; ``struct.error``/``IndexError`` never escape.

Rule 2: parsing is strict where the kernel is strict (unused ``info`` bits, names on kinds
that have none, vlen/kind_flag on kinds that do not use them), so every bit of a parsed blob
is kept in the types and re-encoding reproduces it.

The header (``struct btf_header``, ``include/uapi/linux/btf.h``)::

    0  magic    u16  0xeb9f, in the blob's byte order (which it therefore tells)
    2  version  u8   1
    3  flags    u8   0
    4  hdr_len  u32  24 (longer headers must have zero bytes after the known fields)
    8  type_off u32  \\ the type section, from the end of the header
   12  type_len u32  /
   16  str_off  u32  \\ the string section, from the end of the header
   20  str_len  u32  /

Not handled yet: split BTF (module BTF whose ids continue a base BTF's).
"""

from __future__ import annotations

import gc
import struct
import sys
from array import array
from collections.abc import Callable
from typing import NoReturn

from ..errors import BTFError
from .spec import ByteOrder, Spec, StringTable, references
from .types import (
    Array,
    Const,
    Datasec,
    DeclTag,
    Enum,
    Enum64,
    EnumValue,
    Float,
    Func,
    FuncLinkage,
    FuncParam,
    FuncProto,
    Fwd,
    Int,
    IntEncoding,
    Kind,
    Member,
    Pointer,
    Restrict,
    Struct,
    Type,
    Typedef,
    TypeTag,
    Union,
    Var,
    VarLinkage,
    VarSecinfo,
    Void,
    Volatile,
)

__all__ = ["BTF_MAGIC", "BTF_VERSION", "HEADER_SIZE", "parse", "parse_header"]

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1
HEADER_SIZE = 24
MAX_KIND = max(Kind)
# BTF_INFO_MASK in the kernel: vlen, kind and kind_flag; bits 16-23 and 29-30 must be zero.
_INFO_UNUSED = 0x60FF0000
# An INT's extra word: encoding bits 24-27, offset bits 16-23, bits 0-7; the rest is unused.
_INT_UNUSED = 0xF000FF00

_ENCODINGS = {int(e): e for e in (IntEncoding.NONE, IntEncoding.SIGNED, IntEncoding.CHAR, IntEncoding.BOOL)}
_FUNC_LINKAGE = tuple(FuncLinkage)
# PTR, TYPEDEF, VOLATILE, CONST, RESTRICT: a type id in the size/type word and nothing else.
_REF_KINDS = frozenset((2, 8, 9, 10, 11))
_VAR_LINKAGE = tuple(VarLinkage)


def _unpack(fmt: str, data: bytes, offset: int, what: str, source: str | None) -> tuple[int, ...]:
    """``struct.unpack_from`` that reports a short read as a BTFError (pyelftools' struct_parse)."""
    try:
        return struct.unpack_from(fmt, data, offset)
    except struct.error:
        size = struct.calcsize(fmt)
        raise BTFError(
            f"truncated {what}: need {size} bytes, {max(0, len(data) - offset)} left",
            source=source,
            offset=offset,
        ) from None


def parse_header(
    data: bytes, *, byteorder: ByteOrder | None = None, source: str | None = None
) -> tuple[ByteOrder, int, int, int, int, int]:
    """Check the header and return ``(byteorder, hdr_len, type_off, type_len, str_off, str_len)``.

    Offsets are from the start of ``data``, already checked to lie inside it.
    """
    (magic_le,) = _unpack("<H", data, 0, "BTF header", source)
    if magic_le == BTF_MAGIC:
        found: ByteOrder = "little"
    elif magic_le == 0x9FEB:
        found = "big"
    else:
        raise BTFError(f"bad magic {magic_le:#06x} (expected 0xeb9f)", source=source, offset=0)
    if byteorder is not None and byteorder != found:
        raise BTFError(f"blob is {found}-endian, {byteorder}-endian expected", source=source, offset=0)
    e = "<" if found == "little" else ">"
    _, version, flags, hdr_len, type_off, type_len, str_off, str_len = _unpack(
        e + "HBBIIIII", data, 0, "BTF header", source
    )
    if version != BTF_VERSION:
        raise BTFError(f"unsupported BTF version {version}", source=source, offset=2)
    if flags != 0:
        raise BTFError(f"unsupported header flags {flags:#x}", source=source, offset=3)
    if hdr_len < HEADER_SIZE:
        raise BTFError(f"header length {hdr_len} is shorter than {HEADER_SIZE}", source=source, offset=4)
    if hdr_len > len(data):
        raise BTFError(
            f"header length {hdr_len} exceeds the blob ({len(data)} bytes)", source=source, offset=4
        )
    if any(data[HEADER_SIZE:hdr_len]):
        raise BTFError("unknown non-zero header fields", source=source, offset=HEADER_SIZE)
    body = len(data) - hdr_len
    if type_off % 4:
        raise BTFError(f"type section offset {type_off} is not 4-byte aligned", source=source, offset=8)
    if type_len % 4:
        raise BTFError(f"type section length {type_len} is not a multiple of 4", source=source, offset=12)
    if type_off + type_len > body:
        raise BTFError(
            f"type section [{type_off}, {type_off + type_len}) out of bounds ({body} bytes after the header)",
            source=source,
            offset=8,
        )
    if str_off + str_len > body:
        raise BTFError(
            f"string section [{str_off}, {str_off + str_len}) out of bounds ({body} bytes after the header)",
            source=source,
            offset=16,
        )
    if type_off < str_off + str_len and str_off < type_off + type_len:
        raise BTFError("type and string sections overlap", source=source, offset=8)
    return found, hdr_len, hdr_len + type_off, type_len, hdr_len + str_off, str_len


def parse(
    data: bytes, *, byteorder: ByteOrder | None = None, source: str | None = None, base: Spec | None = None
) -> Spec:
    """Parse a raw BTF blob; see :meth:`ebpf.btf.Spec.from_bytes`."""
    data = bytes(data)
    order, _, type_start, type_len, str_start, str_len = parse_header(
        data, byteorder=byteorder, source=source
    )
    raw_strings = data[str_start : str_start + str_len]
    if base is None and raw_strings and raw_strings[0] != 0:
        raise BTFError("string section does not start with an empty string", source=source, offset=str_start)
    if raw_strings and raw_strings[-1] != 0:
        raise BTFError("string section does not end with NUL", source=source, offset=str_start + str_len - 1)
    if base is None:
        strings = StringTable(raw_strings)
    else:
        if base.strings is None:
            from .marshal import string_table

            base_strings = string_table(base)
        else:
            base_strings = base.strings
        strings = StringTable(raw_strings, base=base_strings)
    words = array("I")
    assert words.itemsize == 4
    words.frombytes(data[type_start : type_start + type_len])
    if order != sys.byteorder:
        words.byteswap()
    # The walk allocates a few hundred thousand objects for vmlinux and frees none: the cyclic
    # collector's passes over them would cost more than the walk itself (0.4 s against 0.9 s).
    collecting = gc.isenabled()
    gc.disable()
    try:
        types, offsets, max_ref = _parse_types(
            words, strings, type_start, source, list(base.types) if base is not None else [Void()]
        )
    except (IndexError, struct.error, ValueError, OverflowError) as err:  # pragma: no cover - safety net
        raise BTFError(f"malformed type section: {err}", source=source, offset=type_start) from None
    finally:
        if collecting:
            gc.enable()
    first = 1 if base is None else len(base.types)
    if max_ref >= len(types):
        for type_id, t in enumerate(types[first:], first):
            for ref in references(t):
                if ref >= len(types):
                    raise BTFError(
                        f"type [{type_id}] {t.kind.name} refers to type id {ref}, beyond the table "
                        f"(last id {len(types) - 1})",
                        source=source,
                        offset=offsets[type_id],
                    )
    problem = _check_targets(types, first)
    if problem is not None:
        type_id, message = problem
        t = types[type_id]
        raise BTFError(f"type [{type_id}] {t.kind.name}: {message}", source=source, offset=offsets[type_id])
    return Spec(types, strings=strings, byteorder=order, base=base)


def _check_targets(types: list[Type], first: int = 1) -> tuple[int, str] | None:
    """The kernel's checks of what FUNC, DECL_TAG and DATASEC may refer to: ``(id, problem)``."""
    for type_id in range(first, len(types)):
        t = types[type_id]
        if isinstance(t, Func):
            target = types[t.type]
            if not isinstance(target, FuncProto):
                return type_id, f"refers to type id {t.type}, a {target.kind.name}, not a FUNC_PROTO"
        elif isinstance(t, DeclTag):
            target = types[t.type]
            components: int | None
            if isinstance(target, Struct | Union):
                components = len(target.members)
            elif isinstance(target, Func):
                proto = types[target.type]
                components = len(proto.params) if isinstance(proto, FuncProto) else 0
            elif isinstance(target, Var | Typedef):
                components = 0
            else:
                return type_id, f"tags type id {t.type}, a {target.kind.name}"
            if t.component_idx >= components:
                return type_id, f"component_idx {t.component_idx} beyond the {components} of type id {t.type}"
        elif isinstance(t, Datasec):
            for sec in t.vars:
                target = types[sec.type]
                if not isinstance(target, Var | Func):
                    return type_id, f"holds type id {sec.type}, a {target.kind.name}, not a VAR or FUNC"
    return None


def _parse_types(
    words: array[int], strings: StringTable, base: int, source: str | None, types: list[Type]
) -> tuple[list[Type], list[int], int]:
    """Walk the type section after ``types`` (``[Void()]``, or a split BTF's base types).

    Returns every type, their offsets (0 for base types) and the largest reference.
    """
    offsets = [0] * len(types)
    n = len(words)
    cache_get = strings._by_offset.get
    max_ref = 0
    i = 0

    def fail(message: str) -> NoReturn:
        raise BTFError(f"type [{len(types)}]: {message}", source=source, offset=base + 4 * start)

    def string(off: int) -> str:
        try:
            return strings.lookup(off)
        except BTFError as err:
            fail(err.message)

    def need(count: int, what: str) -> None:
        if i + count > n:
            fail(f"{what} overruns the type section ({count * 4} bytes needed, {(n - i) * 4} left)")

    s: Callable[[int], str] = string
    while i < n:
        start = i
        need(3, "type header")
        name_off = words[i]
        info = words[i + 1]
        size = words[i + 2]
        i += 3
        kind = (info >> 24) & 0x1F
        vlen = info & 0xFFFF
        kflag = info >> 31
        if info & _INFO_UNUSED:
            fail(f"unused bits set in info {info:#010x}")
        name = cache_get(name_off)
        if name is None:
            name = s(name_off)
        t: Type
        if kind in _REF_KINDS:
            if vlen or kflag:
                fail(f"{Kind(kind).name} with vlen {vlen} / kind_flag {kflag}")
            if kind == 8:
                t = Typedef(name, size)
            elif name_off:
                fail(f"{Kind(kind).name} has a name")
            elif kind == 2:
                t = Pointer(size)
            elif kind == 10:
                t = Const(size)
            elif kind == 9:
                t = Volatile(size)
            else:
                t = Restrict(size)
            max_ref = max(max_ref, size)
        elif kind == 4 or kind == 5:  # STRUCT UNION
            need(3 * vlen, f"{vlen} members")
            members = []
            for j in range(i, i + 3 * vlen, 3):
                moff = words[j]
                mname = cache_get(moff)
                if mname is None:
                    mname = s(moff)
                mtype = words[j + 1]
                max_ref = max(max_ref, mtype)
                bit = words[j + 2]
                if kflag:
                    members.append(Member(mname, mtype, bit & 0xFFFFFF, bit >> 24))
                else:
                    members.append(Member(mname, mtype, bit))
            i += 3 * vlen
            t = (Struct if kind == 4 else Union)(name, size, tuple(members), bool(kflag))
        elif kind == 13:  # FUNC_PROTO
            if name_off or kflag:
                fail("FUNC_PROTO with a name or kind_flag")
            need(2 * vlen, f"{vlen} parameters")
            params = []
            for j in range(i, i + 2 * vlen, 2):
                poff = words[j]
                pname = cache_get(poff)
                if pname is None:
                    pname = s(poff)
                ptype = words[j + 1]
                max_ref = max(max_ref, ptype)
                params.append(FuncParam(pname, ptype))
            i += 2 * vlen
            max_ref = max(max_ref, size)
            t = FuncProto(size, tuple(params))
        elif kind == 12:  # FUNC
            if kflag or vlen > 2:
                fail(f"FUNC with linkage {vlen} / kind_flag {kflag}")
            max_ref = max(max_ref, size)
            t = Func(name, size, _FUNC_LINKAGE[vlen])
        elif kind == 1:  # INT
            if vlen or kflag:
                fail(f"INT with vlen {vlen} / kind_flag {kflag}")
            need(1, "INT data")
            extra = words[i]
            i += 1
            if extra & _INT_UNUSED:
                fail(f"unused bits set in INT data {extra:#010x}")
            encoding = _ENCODINGS.get(extra >> 24)
            if encoding is None:
                fail(f"unsupported INT encoding {extra >> 24:#x}")
            t = Int(name, size, encoding, (extra >> 16) & 0xFF, extra & 0xFF)
        elif kind == 6 or kind == 19:  # ENUM ENUM64
            step = 2 if kind == 6 else 3
            need(step * vlen, f"{vlen} enumerators")
            values = []
            for j in range(i, i + step * vlen, step):
                voff = words[j]
                vname = cache_get(voff)
                if vname is None:
                    vname = s(voff)
                if kind == 6:
                    value = words[j + 1]
                    if kflag and value & 0x80000000:
                        value -= 1 << 32
                else:
                    value = words[j + 1] | words[j + 2] << 32
                    if kflag and value & (1 << 63):
                        value -= 1 << 64
                values.append(EnumValue(vname, value))
            i += step * vlen
            t = (Enum if kind == 6 else Enum64)(name, size, tuple(values), bool(kflag))
        elif kind == 3:  # ARRAY
            if name_off or vlen or kflag or size:
                fail("ARRAY with a name, vlen, kind_flag or size")
            need(3, "ARRAY data")
            elem, index, nelems = words[i], words[i + 1], words[i + 2]
            i += 3
            max_ref = max(max_ref, elem, index)
            t = Array(elem, index, nelems)
        elif kind == 7:  # FWD
            if vlen or size:
                fail(f"FWD with vlen {vlen} / type {size}")
            t = Fwd(name, bool(kflag))
        elif kind == 14:  # VAR
            if vlen or kflag:
                fail(f"VAR with vlen {vlen} / kind_flag {kflag}")
            need(1, "VAR data")
            linkage = words[i]
            i += 1
            if linkage > 2:
                fail(f"VAR with unknown linkage {linkage}")
            max_ref = max(max_ref, size)
            t = Var(name, size, _VAR_LINKAGE[linkage])
        elif kind == 15:  # DATASEC
            if kflag:
                fail("DATASEC with kind_flag")
            need(3 * vlen, f"{vlen} variables")
            secinfos = []
            for j in range(i, i + 3 * vlen, 3):
                vtype = words[j]
                max_ref = max(max_ref, vtype)
                secinfos.append(VarSecinfo(vtype, words[j + 1], words[j + 2]))
            i += 3 * vlen
            t = Datasec(name, size, tuple(secinfos))
        elif kind == 16:  # FLOAT
            if vlen or kflag:
                fail(f"FLOAT with vlen {vlen} / kind_flag {kflag}")
            t = Float(name, size)
        elif kind == 17:  # DECL_TAG
            if vlen:
                fail(f"DECL_TAG with vlen {vlen}")
            need(1, "DECL_TAG data")
            component = words[i]
            i += 1
            if component & 0x80000000:
                component -= 1 << 32
            if component < -1:
                fail(f"DECL_TAG with component_idx {component}")
            max_ref = max(max_ref, size)
            t = DeclTag(name, size, component, bool(kflag))
        elif kind == 18:  # TYPE_TAG
            if vlen:
                fail(f"TYPE_TAG with vlen {vlen}")
            max_ref = max(max_ref, size)
            t = TypeTag(name, size, bool(kflag))
        else:
            fail(f"unknown kind {kind}")
        types.append(t)
        offsets.append(base + 4 * start)
    return types, offsets, max_ref
