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

Split BTF (a module's, on vmlinux) passes ``base``: ids and string offsets continue the base's.

Rule 3: two walks give the same types: a batch walk (numpy: boundaries found one by one,
every field, check and object made per kind over whole arrays), and the sequential walk it
falls back on for anything unusual (no numpy, split BTF, non-ASCII or repeated strings, names
inside strings, any malformation), which names the first problem.
"""

from __future__ import annotations

import gc
import struct
import sys
from array import array
from collections.abc import Callable
from itertools import accumulate
from typing import Any, NoReturn, cast

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
    prefix: list[Type] = list(base.types) if base is not None else [Void()]
    parts = _string_parts(strings)
    # The walk allocates a few hundred thousand objects for vmlinux and frees none: the cyclic
    # collector's passes over them would cost more than the walk itself.
    collecting = gc.isenabled()
    gc.disable()
    try:
        result = None
        if parts is not None and base is None and type_len >= _BATCH_MIN_BYTES:
            raw = data[type_start : type_start + type_len]
            result = _batch_parse(words, raw, order, strings, parts, type_start)
        if result is None:
            w = words.tolist()
            starts = _string_starts(strings, parts) if parts is not None else None
            result = _parse_types(w, strings, starts, type_start, source, prefix)
            if starts is not None and len(strings._by_offset) > 1:
                # Some name points into the middle of a string: which of the offsets that spell
                # the same text each type used matters for re-encoding, so record them all.
                strings._by_offset = {0: ""}
                result = _parse_types(w, strings, None, type_start, source, prefix)
        types, offsets, max_ref, funcs, tags, secs = result
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
    problem = _check_targets(types, funcs, tags, secs)
    if problem is not None:
        type_id, message = problem
        t = types[type_id]
        raise BTFError(f"type [{type_id}] {t.kind.name}: {message}", source=source, offset=offsets[type_id])
    return Spec(types, strings=strings, byteorder=order, base=base)


def _string_parts(strings: StringTable) -> list[str] | None:
    """Every string of the table, in order (``split`` at the NULs), decoded at once.

    ``None`` when the names cannot be taken from this list: a non-ASCII table (offsets would
    not be character positions) or one that spells a string twice (re-encoding must then learn
    which copy each type used).
    """
    raw = strings.data
    if not raw.isascii():
        return None
    parts = raw.decode("ascii").split("\0")
    parts.pop()  # after the final NUL
    distinct = len(set(parts))
    if distinct != len(parts) and distinct != len(parts) - max(0, parts.count("") - 1):
        return None
    return parts


def _string_starts(strings: StringTable, parts: list[str]) -> dict[int, str]:
    """The strings that start right after a NUL, by offset (0 is always the empty string)."""
    offsets = accumulate(map((1).__add__, map(len, parts)), initial=strings.start)
    starts = dict(zip(offsets, parts))
    starts.setdefault(0, "")
    return starts


class _StringError(Exception):
    """A bad name offset met inside the walk; turned into a BTFError naming the type."""


class _Names(dict[int, str]):
    """Name by offset: a plain dict lookup when the offset is known, the table's lookup if not."""

    __slots__ = ("lookup",)
    lookup: Callable[[int], str]

    def __missing__(self, offset: int) -> str:
        try:
            text: str = self.lookup(offset)
        except BTFError as err:
            raise _StringError(err.message) from None
        return text


def _check_targets(
    types: list[Type], funcs: list[int], tags: list[int], secs: list[int]
) -> tuple[int, str] | None:
    """The kernel's checks of what FUNC, DECL_TAG and DATASEC may refer to: ``(id, problem)``.

    ``funcs``, ``tags`` and ``secs`` are the ids of the types of those kinds, in id order.
    """
    problems: list[tuple[int, str]] = []
    for type_id in funcs:
        target = types[types[type_id].type]  # type: ignore[union-attr]
        if target.__class__ is not FuncProto:
            problems.append(
                (type_id, f"refers to type id {types[type_id].type}, a {target.kind.name}, not a FUNC_PROTO")  # type: ignore[union-attr]
            )
            break
    for type_id in tags:
        t = types[type_id]
        assert isinstance(t, DeclTag)
        target = types[t.type]
        components: int
        if isinstance(target, Struct | Union):
            components = len(target.members)
        elif isinstance(target, Func):
            proto = types[target.type]
            components = len(proto.params) if isinstance(proto, FuncProto) else 0
        elif isinstance(target, Var | Typedef):
            components = 0
        else:
            problems.append((type_id, f"tags type id {t.type}, a {target.kind.name}"))
            break
        if t.component_idx >= components:
            problems.append(
                (type_id, f"component_idx {t.component_idx} beyond the {components} of type id {t.type}")
            )
            break
    for type_id in secs:
        t = types[type_id]
        assert isinstance(t, Datasec)
        bad = next((sec for sec in t.vars if not isinstance(types[sec.type], Var | Func)), None)
        if bad is not None:
            problems.append(
                (type_id, f"holds type id {bad.type}, a {types[bad.type].kind.name}, not a VAR or FUNC")
            )
            break
    return min(problems) if problems else None


def _parse_types(
    w: list[int],
    strings: StringTable,
    starts: dict[int, str] | None,
    base: int,
    source: str | None,
    prefix: list[Type],
) -> tuple[list[Type], list[int], int, list[int], list[int], list[int]]:
    """Walk the type section (its words ``w``) after ``prefix`` (``[Void()]``, or a base's types).

    Returns every type, their offsets (0 for base types), the largest reference, and the ids
    of the FUNC, DECL_TAG and DATASEC types (for :func:`_check_targets`).
    """
    types = list(prefix)
    offsets = [0] * len(types)
    funcs: list[int] = []
    tags: list[int] = []
    secs: list[int] = []
    names = _Names(starts if starts is not None else strings._by_offset)
    names.lookup = strings.lookup
    n = len(w)
    max_ref = 0
    i = start = 0
    append = types.append
    append_offset = offsets.append
    typedef, pointer, const, volatile, restrict = Typedef, Pointer, Const, Volatile, Restrict
    member, param, enum_value = Member, FuncParam, EnumValue

    def fail(message: str) -> NoReturn:
        raise BTFError(f"type [{len(types)}]: {message}", source=source, offset=base + 4 * start)

    def overrun(count: int, what: str) -> NoReturn:
        fail(f"{what} overruns the type section ({count * 4} bytes needed, {(n - i) * 4} left)")

    try:
        while i < n:
            start = i
            if i + 3 > n:
                overrun(3, "type header")
            name_off = w[i]
            info = w[i + 1]
            size = w[i + 2]
            i += 3
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            kflag = info >> 31
            if info & _INFO_UNUSED:
                fail(f"unused bits set in info {info:#010x}")
            t: Type
            if kind == 12:  # FUNC
                if kflag or vlen > 2:
                    fail(f"FUNC with linkage {vlen} / kind_flag {kflag}")
                max_ref = max(max_ref, size)
                funcs.append(len(types))
                t = Func(names[name_off], size, _FUNC_LINKAGE[vlen])
            elif kind == 13:  # FUNC_PROTO
                if name_off or kflag:
                    fail("FUNC_PROTO with a name or kind_flag")
                end = i + 2 * vlen
                if end > n:
                    overrun(2 * vlen, f"{vlen} parameters")
                max_ref = max(max_ref, size)
                if vlen:
                    seg = w[i:end]
                    ptypes = seg[1::2]
                    top = max(ptypes)
                    max_ref = max(max_ref, top)
                    t = FuncProto(size, tuple(map(param, [names[o] for o in seg[0::2]], ptypes)))
                else:
                    t = FuncProto(size, ())
                i = end
            elif kind in _REF_KINDS:
                if vlen or kflag:
                    fail(f"{Kind(kind).name} with vlen {vlen} / kind_flag {kflag}")
                if kind == 8:
                    t = typedef(names[name_off], size)
                elif name_off:
                    fail(f"{Kind(kind).name} has a name")
                elif kind == 2:
                    t = pointer(size)
                elif kind == 10:
                    t = const(size)
                elif kind == 9:
                    t = volatile(size)
                else:
                    t = restrict(size)
                max_ref = max(max_ref, size)
            elif kind == 4 or kind == 5:  # STRUCT UNION
                end = i + 3 * vlen
                if end > n:
                    overrun(3 * vlen, f"{vlen} members")
                name = names[name_off]
                if vlen:
                    seg = w[i:end]
                    mtypes = seg[1::3]
                    top = max(mtypes)
                    max_ref = max(max_ref, top)
                    mnames = [names[o] for o in seg[0::3]]
                    if kflag:
                        bits = seg[2::3]
                        members = tuple(
                            map(member, mnames, mtypes, [b & 0xFFFFFF for b in bits], [b >> 24 for b in bits])
                        )
                    else:
                        members = tuple(map(member, mnames, mtypes, seg[2::3]))
                else:
                    members = ()
                i = end
                t = (Struct if kind == 4 else Union)(name, size, members, bool(kflag))
            elif kind == 3:  # ARRAY
                if name_off or vlen or kflag or size:
                    fail("ARRAY with a name, vlen, kind_flag or size")
                if i + 3 > n:
                    overrun(3, "ARRAY data")
                elem = w[i]
                index = w[i + 1]
                max_ref = max(max_ref, elem)
                max_ref = max(max_ref, index)
                t = Array(elem, index, w[i + 2])
                i += 3
            elif kind == 1:  # INT
                if vlen or kflag:
                    fail(f"INT with vlen {vlen} / kind_flag {kflag}")
                if i + 1 > n:
                    overrun(1, "INT data")
                extra = w[i]
                i += 1
                if extra & _INT_UNUSED:
                    fail(f"unused bits set in INT data {extra:#010x}")
                encoding = _ENCODINGS.get(extra >> 24)
                if encoding is None:
                    fail(f"unsupported INT encoding {extra >> 24:#x}")
                t = Int(names[name_off], size, encoding, (extra >> 16) & 0xFF, extra & 0xFF)
            elif kind == 6 or kind == 19:  # ENUM ENUM64
                step = 2 if kind == 6 else 3
                end = i + step * vlen
                if end > n:
                    overrun(step * vlen, f"{vlen} enumerators")
                seg = w[i:end]
                vnames = [names[o] for o in seg[0::step]]
                if kind == 6:
                    raw = seg[1::2]
                    if kflag:
                        raw = [v - (1 << 32) if v & 0x80000000 else v for v in raw]
                else:
                    raw = [lo | hi << 32 for lo, hi in zip(seg[1::3], seg[2::3], strict=True)]
                    if kflag:
                        raw = [v - (1 << 64) if v >> 63 else v for v in raw]
                i = end
                t = (Enum if kind == 6 else Enum64)(
                    names[name_off], size, tuple(map(enum_value, vnames, raw)), bool(kflag)
                )
            elif kind == 7:  # FWD
                if vlen or size:
                    fail(f"FWD with vlen {vlen} / type {size}")
                t = Fwd(names[name_off], bool(kflag))
            elif kind == 14:  # VAR
                if vlen or kflag:
                    fail(f"VAR with vlen {vlen} / kind_flag {kflag}")
                if i + 1 > n:
                    overrun(1, "VAR data")
                linkage = w[i]
                i += 1
                if linkage > 2:
                    fail(f"VAR with unknown linkage {linkage}")
                max_ref = max(max_ref, size)
                t = Var(names[name_off], size, _VAR_LINKAGE[linkage])
            elif kind == 15:  # DATASEC
                if kflag:
                    fail("DATASEC with kind_flag")
                end = i + 3 * vlen
                if end > n:
                    overrun(3 * vlen, f"{vlen} variables")
                name = names[name_off]
                seg = w[i:end]
                vtypes = seg[0::3]
                if vtypes:
                    top = max(vtypes)
                    max_ref = max(max_ref, top)
                i = end
                secs.append(len(types))
                t = Datasec(name, size, tuple(map(VarSecinfo, vtypes, seg[1::3], seg[2::3])))
            elif kind == 16:  # FLOAT
                if vlen or kflag:
                    fail(f"FLOAT with vlen {vlen} / kind_flag {kflag}")
                t = Float(names[name_off], size)
            elif kind == 17:  # DECL_TAG
                if vlen:
                    fail(f"DECL_TAG with vlen {vlen}")
                if i + 1 > n:
                    overrun(1, "DECL_TAG data")
                component = w[i]
                i += 1
                if component & 0x80000000:
                    component -= 1 << 32
                if component < -1:
                    fail(f"DECL_TAG with component_idx {component}")
                max_ref = max(max_ref, size)
                tags.append(len(types))
                t = DeclTag(names[name_off], size, component, bool(kflag))
            elif kind == 18:  # TYPE_TAG
                if vlen:
                    fail(f"TYPE_TAG with vlen {vlen}")
                max_ref = max(max_ref, size)
                t = TypeTag(names[name_off], size, bool(kflag))
            else:
                fail(f"unknown kind {kind}")
            append(t)
            append_offset(base + 4 * start)
    except _StringError as err:
        fail(str(err))
    return types, offsets, max_ref, funcs, tags, secs


# --- the batch walk ---------------------------------------------------------------------------
#
# The sequential walk above spends most of its time on per-type interpretation. With numpy,
# only the type boundaries are found one by one (a type's length depends on its kind and
# vlen); every field, check and reference bound is then computed per kind over whole
# arrays, and the objects are made with map(). Any check that fails sends the blob back to
# the sequential walk, which finds the first problem and names it.

# Words after the 3-word header, by ``info >> 24`` (kind, 2 unused bits, kind_flag): fixed
# count and count per vlen. None: unknown kind (the sequential walk reports it).
_FIXED: list[int | None] = [None] * 256
_PER_VLEN = [0] * 256
for _top in range(256):
    _kind = _top & 0x1F
    if 1 <= _kind <= 19:
        _FIXED[_top] = {1: 1, 3: 3, 14: 1, 17: 1}.get(_kind, 0)
        _PER_VLEN[_top] = {4: 3, 5: 3, 6: 2, 13: 2, 15: 3, 19: 3}.get(_kind, 0)
_STEP = [(3 + f, p) if f is not None else (0, -1) for f, p in zip(_FIXED, _PER_VLEN, strict=True)]


_BATCH_MIN_BYTES = 64 * 1024
"""Below this type-section size (an object's BTF) the sequential walk is faster than importing numpy."""


def _batch_parse(
    w: array[int],
    raw: bytes,
    order: ByteOrder,
    strings: StringTable,
    parts: list[str],
    base: int,
) -> tuple[list[Type], list[int], int, list[int], list[int], list[int]] | None:
    """The walk over whole arrays; ``None`` if numpy is missing or anything is malformed.

    ``w`` is the type section as words, ``raw`` its bytes, ``parts`` the strings of
    the string table (:func:`_string_parts`). Every name must start a string (else ``None``).
    """
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is optional
        return None
    n = len(w)
    pos: list[int] = []
    add = pos.append
    step = _STEP
    i = 0
    try:
        while i < n:
            add(i)
            info = w[i + 1]
            fixed, per = step[info >> 24]
            if per < 0:
                return None
            i += fixed + per * (info & 0xFFFF)
    except IndexError:
        return None
    if i != n:
        return None
    W = np.frombuffer(raw, dtype=("<u4" if order == "little" else ">u4")).astype(np.int64)
    P = np.array(pos, dtype=np.int64)
    INFO = W[P + 1]
    KIND = (INFO >> 24) & 0x1F
    VLEN = INFO & 0xFFFF
    KFLAG = INFO >> 31
    NAME = W[P]
    SIZE = W[P + 2]
    if (INFO & _INFO_UNUSED).any():
        return None
    first = 1
    count = len(pos)
    objs = np.empty(count, dtype=object)
    table = np.frombuffer(strings.data, dtype=np.uint8)
    string_starts = np.flatnonzero(table == 0) + 1
    string_starts[1:] = string_starts[:-1]
    string_starts[0] = 0
    max_ref = 0
    part = parts.__getitem__

    def name_list(offsets: Any) -> list[str]:
        at = np.searchsorted(string_starts, offsets, side="right") - 1
        if len(offsets) and not np.array_equal(string_starts[at], offsets):
            raise _StringError("a name that does not start a string")
        return list(map(part, at.tolist()))

    def refmax(values: Any) -> None:
        nonlocal max_ref
        if len(values):
            max_ref = max(max_ref, int(values.max()))

    def members_of(sel: Any, per: int) -> tuple[Any, Any, Any]:
        """Start word of every member of the selected types, and where each type's run starts."""
        vl = VLEN[sel]
        total = int(vl.sum())
        owner_start = P[sel] + 3
        run = np.repeat(owner_start - per * np.concatenate(([0], np.cumsum(vl)[:-1])), vl)
        at = run + per * np.arange(total, dtype=np.int64)
        bounds = np.concatenate(([0], np.cumsum(vl))).tolist()
        return at, bounds, vl

    def split(items: list[Any], bounds: list[int]) -> list[tuple[Any, ...]]:
        return list(map(tuple, map(items.__getitem__, map(slice, bounds[:-1], bounds[1:]))))

    try:
        # FUNC
        sel = np.nonzero(KIND == 12)[0]
        if (KFLAG[sel] | (VLEN[sel] > 2)).any():
            return None
        refmax(SIZE[sel])
        linkage = [_FUNC_LINKAGE[v] for v in VLEN[sel].tolist()]
        objs[sel] = list(map(Func, name_list(NAME[sel]), SIZE[sel].tolist(), linkage))
        funcs = (sel + first).tolist()
        # FUNC_PROTO: identical parameters are one object (pahole repeats them a lot)
        sel = np.nonzero(KIND == 13)[0]
        if (NAME[sel] | KFLAG[sel]).any():
            return None
        refmax(SIZE[sel])
        at, bounds, _ = members_of(sel, 2)
        ptypes = W[at + 1]
        refmax(ptypes)
        keys = W[at] << 32 | ptypes
        uniq, inverse = np.unique(keys, return_inverse=True)
        made_params = list(map(FuncParam, name_list(uniq >> 32), (uniq & 0xFFFFFFFF).tolist()))
        params = [made_params[j] for j in inverse.tolist()]
        objs[sel] = list(map(FuncProto, SIZE[sel].tolist(), split(params, bounds)))
        # PTR CONST VOLATILE RESTRICT TYPEDEF
        for kind, ref_cls in ((2, Pointer), (10, Const), (9, Volatile), (11, Restrict)):
            sel = np.nonzero(KIND == kind)[0]
            if (NAME[sel] | VLEN[sel] | KFLAG[sel]).any():
                return None
            refmax(SIZE[sel])
            objs[sel] = list(map(ref_cls, SIZE[sel].tolist()))
        sel = np.nonzero(KIND == 8)[0]
        if (VLEN[sel] | KFLAG[sel]).any():
            return None
        refmax(SIZE[sel])
        objs[sel] = list(map(Typedef, name_list(NAME[sel]), SIZE[sel].tolist()))
        # STRUCT UNION
        for kind, agg_cls in ((4, Struct), (5, Union)):
            sel = np.nonzero(KIND == kind)[0]
            at, bounds, _ = members_of(sel, 3)
            mtypes = W[at + 1]
            refmax(mtypes)
            bits = W[at + 2]
            flags = np.repeat(KFLAG[sel], VLEN[sel]).astype(bool)
            offs = np.where(flags, bits & 0xFFFFFF, bits)
            sizes = np.where(flags, bits >> 24, 0)
            made_members = list(map(Member, name_list(W[at]), mtypes.tolist(), offs.tolist(), sizes.tolist()))
            kflags = KFLAG[sel].astype(bool).tolist()
            objs[sel] = list(
                map(agg_cls, name_list(NAME[sel]), SIZE[sel].tolist(), split(made_members, bounds), kflags)
            )
        # ARRAY
        sel = np.nonzero(KIND == 3)[0]
        if (NAME[sel] | VLEN[sel] | KFLAG[sel] | SIZE[sel]).any():
            return None
        at = P[sel] + 3
        elem, index = W[at], W[at + 1]
        refmax(elem)
        refmax(index)
        objs[sel] = list(map(Array, elem.tolist(), index.tolist(), W[at + 2].tolist()))
        # INT
        sel = np.nonzero(KIND == 1)[0]
        if (VLEN[sel] | KFLAG[sel]).any():
            return None
        extra = W[P[sel] + 3]
        if (extra & _INT_UNUSED).any():
            return None
        maybe = [_ENCODINGS.get(e) for e in (extra >> 24).tolist()]
        if None in maybe:
            return None
        encodings = cast(list[IntEncoding], maybe)
        objs[sel] = list(
            map(
                Int,
                name_list(NAME[sel]),
                SIZE[sel].tolist(),
                encodings,
                ((extra >> 16) & 0xFF).tolist(),
                (extra & 0xFF).tolist(),
            )
        )
        # ENUM ENUM64
        for kind, enum_cls, per in ((6, Enum, 2), (19, Enum64, 3)):
            sel = np.nonzero(KIND == kind)[0]
            at, bounds, vl = members_of(sel, per)
            flags = np.repeat(KFLAG[sel], vl).astype(bool)
            if kind == 6:
                values = W[at + 1]
                values = np.where(flags & (values >= 1 << 31), values - (1 << 32), values).tolist()
            else:
                lo, hi = W[at + 1], W[at + 2]
                values = [
                    (h << 32 | low) - (1 << 64) if signed and h >> 31 else h << 32 | low
                    for low, h, signed in zip(lo.tolist(), hi.tolist(), flags.tolist(), strict=True)
                ]
            made_values = list(map(EnumValue, name_list(W[at]), values))
            kflags = KFLAG[sel].astype(bool).tolist()
            objs[sel] = list(
                map(enum_cls, name_list(NAME[sel]), SIZE[sel].tolist(), split(made_values, bounds), kflags)
            )
        # FWD
        sel = np.nonzero(KIND == 7)[0]
        if (VLEN[sel] | SIZE[sel]).any():
            return None
        objs[sel] = list(map(Fwd, name_list(NAME[sel]), KFLAG[sel].astype(bool).tolist()))
        # VAR
        sel = np.nonzero(KIND == 14)[0]
        if (VLEN[sel] | KFLAG[sel]).any():
            return None
        link = W[P[sel] + 3]
        if (link > 2).any():
            return None
        refmax(SIZE[sel])
        objs[sel] = list(
            map(Var, name_list(NAME[sel]), SIZE[sel].tolist(), [_VAR_LINKAGE[v] for v in link.tolist()])
        )
        # DATASEC
        sel = np.nonzero(KIND == 15)[0]
        if KFLAG[sel].any():
            return None
        at, bounds, _ = members_of(sel, 3)
        vtypes = W[at]
        refmax(vtypes)
        made_secs = list(map(VarSecinfo, vtypes.tolist(), W[at + 1].tolist(), W[at + 2].tolist()))
        objs[sel] = list(map(Datasec, name_list(NAME[sel]), SIZE[sel].tolist(), split(made_secs, bounds)))
        secs = (sel + first).tolist()
        # FLOAT
        sel = np.nonzero(KIND == 16)[0]
        if (VLEN[sel] | KFLAG[sel]).any():
            return None
        objs[sel] = list(map(Float, name_list(NAME[sel]), SIZE[sel].tolist()))
        # DECL_TAG
        sel = np.nonzero(KIND == 17)[0]
        if VLEN[sel].any():
            return None
        component = W[P[sel] + 3]
        component = np.where(component >= 1 << 31, component - (1 << 32), component)
        if (component < -1).any():
            return None
        refmax(SIZE[sel])
        kflags = KFLAG[sel].astype(bool).tolist()
        objs[sel] = list(map(DeclTag, name_list(NAME[sel]), SIZE[sel].tolist(), component.tolist(), kflags))
        tags = (sel + first).tolist()
        # TYPE_TAG
        sel = np.nonzero(KIND == 18)[0]
        if VLEN[sel].any():
            return None
        refmax(SIZE[sel])
        kflags = KFLAG[sel].astype(bool).tolist()
        objs[sel] = list(map(TypeTag, name_list(NAME[sel]), SIZE[sel].tolist(), kflags))
    except _StringError:
        return None
    types: list[Type] = [Void(), *objs.tolist()]
    offsets = [0, *(P * 4 + base).tolist()]
    return types, offsets, max_ref, funcs, tags, secs
