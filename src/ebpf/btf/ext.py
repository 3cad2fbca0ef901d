"""``.BTF.ext``: function info, line info and CO-RE relocations. Foundation layer. Pure.

The ``.BTF.ext`` section of an object (``Documentation/bpf/btf.rst`` §4.2) carries, per ELF
section, three record lists that refer to instructions by byte offset. Once the ELF loader has
placed a program's instructions, each record here refers to an instruction by **slot index**
(``insn_off // 8`` as the kernel counts; an ``lddw`` takes two slots) within that program.

Rule: records are frozen values; the program's ``btf.Spec`` resolves their type ids and strings
have already been looked up.

The layout (all fields in the object's byte order)::

    header   u16 magic 0xeb9f, u8 version 1, u8 flags 0, u32 hdr_len,
             u32 func_info_off, u32 func_info_len, u32 line_info_off, u32 line_info_len,
             [u32 core_relo_off, u32 core_relo_len]            (when hdr_len >= 32)
    each sub-section (offsets from the end of the header):
             u32 rec_size, then per ELF section: u32 sec_name_off, u32 num_info,
             num_info records of rec_size bytes (the known fields first; libbpf accepts
             larger records and ignores the rest)
    bpf_func_info    u32 insn_off, u32 type_id                                    ( 8 bytes)
    bpf_line_info    u32 insn_off, u32 file_name_off, u32 line_off, u32 line_col  (16 bytes)
    bpf_core_relo    u32 insn_off, u32 type_id, u32 access_str_off, u32 kind      (16 bytes)

In ``.BTF.ext`` ``insn_off`` counts bytes from the start of the ELF section; the kernel's
``bpf_func_info``/``bpf_line_info`` (what :func:`encode_func_info` and :func:`encode_line_info`
write for ``BPF_PROG_LOAD``) count instruction slots from the start of the program.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from ..errors import BTFError
from .marshal import StringTableBuilder

if TYPE_CHECKING:
    from .spec import Spec, StringTable

__all__ = [
    "BTFExt",
    "CoreRelo",
    "CoreRelocKind",
    "FuncInfo",
    "LineInfo",
    "encode_core_relos",
    "encode_func_info",
    "encode_line_info",
    "parse_btf_ext",
]

BTF_EXT_MAGIC = 0xEB9F
BTF_EXT_VERSION = 1
HEADER_SIZE_MIN = 24  # up to line_info_len
HEADER_SIZE = 32  # with core_relo_off / core_relo_len
FUNC_INFO_SIZE = 8
LINE_INFO_SIZE = 16
CORE_RELO_SIZE = 16
_INSN_SIZE = 8


@dataclass(frozen=True, slots=True)
class FuncInfo:
    """``struct bpf_func_info``: the function (``btf.Func`` type id) starting at slot ``insn``."""

    insn: int
    type_id: int


@dataclass(frozen=True, slots=True)
class LineInfo:
    """``struct bpf_line_info``: the source position of the instruction at slot ``insn``.

    ``line`` and ``column`` are unpacked from ``line_col`` (``line << 10 | col``).
    """

    insn: int
    file_name: str
    line_text: str
    line: int
    column: int


class CoreRelocKind(enum.IntEnum):
    """``enum bpf_core_relo_kind`` (``include/uapi/linux/bpf.h``)."""

    FIELD_BYTE_OFFSET = 0  # BPF_CORE_FIELD_BYTE_OFFSET
    FIELD_BYTE_SIZE = 1  # BPF_CORE_FIELD_BYTE_SIZE
    FIELD_EXISTS = 2  # BPF_CORE_FIELD_EXISTS
    FIELD_SIGNED = 3  # BPF_CORE_FIELD_SIGNED
    FIELD_LSHIFT_U64 = 4  # BPF_CORE_FIELD_LSHIFT_U64
    FIELD_RSHIFT_U64 = 5  # BPF_CORE_FIELD_RSHIFT_U64
    TYPE_ID_LOCAL = 6  # BPF_CORE_TYPE_ID_LOCAL
    TYPE_ID_TARGET = 7  # BPF_CORE_TYPE_ID_TARGET
    TYPE_EXISTS = 8  # BPF_CORE_TYPE_EXISTS
    TYPE_SIZE = 9  # BPF_CORE_TYPE_SIZE
    ENUMVAL_EXISTS = 10  # BPF_CORE_ENUMVAL_EXISTS
    ENUMVAL_VALUE = 11  # BPF_CORE_ENUMVAL_VALUE
    TYPE_MATCHES = 12  # BPF_CORE_TYPE_MATCHES


@dataclass(frozen=True, slots=True)
class CoreRelo:
    """``struct bpf_core_relo``: a CO-RE relocation of the instruction at slot ``insn``.

    ``type_id`` is the root type in the object's (local) BTF; ``access`` the access string
    (``"0:1:2"``: first index into the root, then member / array indices).
    """

    insn: int
    type_id: int
    access: str
    kind: CoreRelocKind


@dataclass
class BTFExt:
    """A parsed ``.BTF.ext`` section: records per ELF section name, in file order.

    ``insn`` of every record is the slot index (byte offset // 8) from the start of its ELF
    section. The ``*_rec_size`` fields keep the record sizes of the parsed section (bytes
    beyond the known fields re-encode as zeros).
    """

    func_info: dict[str, list[FuncInfo]] = field(default_factory=dict)
    line_info: dict[str, list[LineInfo]] = field(default_factory=dict)
    core_relos: dict[str, list[CoreRelo]] = field(default_factory=dict)
    func_info_rec_size: int = FUNC_INFO_SIZE
    line_info_rec_size: int = LINE_INFO_SIZE
    core_relo_rec_size: int = CORE_RELO_SIZE

    def to_bytes(self, strings: StringTable | StringTableBuilder, byteorder: str = "little") -> bytes:
        """Encode as a ``.BTF.ext`` section (clang's layout: header of 32 bytes, then the
        func_info, line_info and core_relo sub-sections back to back).

        Args:
            strings: the BTF string table that section names, file names, line texts and
                access strings are looked up in (a :class:`StringTable` must already hold
                them; a :class:`StringTableBuilder` adds what is missing).
            byteorder: ``"little"`` or ``"big"``.

        Raises:
            BTFError: a string is not in ``strings`` or a value does not fit its field.
        """
        e = _endian(byteorder)
        add = _string_adder(strings)
        word = struct.Struct(e + "I")

        def sub(
            records: dict[str, list[_R]], rec_size: int, pack: Callable[[_R], bytes], always: bool
        ) -> bytes:
            if not records and not always:
                return b""
            out = [word.pack(rec_size)]
            for name, recs in records.items():
                out.append(struct.pack(e + "II", add(name), len(recs)))
                for r in recs:
                    raw = pack(r)
                    out.append(raw + bytes(rec_size - len(raw)))
            return b"".join(out)

        def pack_func(r: FuncInfo) -> bytes:
            return _pack(e + "II", r.insn * _INSN_SIZE, r.type_id)

        def pack_line(r: LineInfo) -> bytes:
            return _pack(e + "IIII", r.insn * _INSN_SIZE, add(r.file_name), add(r.line_text), _line_col(r))

        def pack_core(r: CoreRelo) -> bytes:
            return _pack(e + "IIII", r.insn * _INSN_SIZE, r.type_id, add(r.access), int(r.kind))

        # Like LLVM: func_info and line_info always carry their record size, core_relo only
        # when there are relocations.
        func = sub(self.func_info, self.func_info_rec_size, pack_func, True)
        line = sub(self.line_info, self.line_info_rec_size, pack_line, True)
        core = sub(self.core_relos, self.core_relo_rec_size, pack_core, False)
        header = struct.pack(
            e + "HBBIIIIIII",
            BTF_EXT_MAGIC,
            BTF_EXT_VERSION,
            0,
            HEADER_SIZE,
            0,
            len(func),
            len(func),
            len(line),
            len(func) + len(line),
            len(core),
        )
        return header + func + line + core


_R = TypeVar("_R", FuncInfo, LineInfo, CoreRelo)


def _endian(byteorder: str) -> str:
    if byteorder == "little":
        return "<"
    if byteorder == "big":
        return ">"
    raise BTFError(f"byteorder must be 'little' or 'big', not {byteorder!r}")


def _pack(fmt: str, *values: int) -> bytes:
    try:
        return struct.pack(fmt, *values)
    except struct.error:
        raise BTFError(f"a value of {values} does not fit in 32 bits") from None


def _line_col(r: LineInfo) -> int:
    if not 0 <= r.column < 1 << 10 or not 0 <= r.line < 1 << 22:
        raise BTFError(f"line {r.line} column {r.column} does not fit line_col (22 + 10 bits)")
    return r.line << 10 | r.column


def _string_adder(strings: StringTable | StringTableBuilder) -> Callable[[str], int]:
    if isinstance(strings, StringTableBuilder):
        return strings.add

    def lookup(text: str) -> int:
        off = strings.offset_of(text)
        if off is None:  # the tail of a longer string is a valid offset too
            found = strings.data.find(text.encode() + b"\0")
            off = strings.start + found if found >= 0 else None
        if off is None:
            raise BTFError(f"string {text!r} is not in the BTF string table")
        return off

    return lookup


# --- kernel layouts for BPF_PROG_LOAD -------------------------------------------------------


def encode_func_info(records: Sequence[FuncInfo], byteorder: str = "little") -> bytes:
    """``struct bpf_func_info`` array for ``BPF_PROG_LOAD`` (``func_info_rec_size`` = 8):
    ``insn_off`` is the slot index in the program, ``type_id`` the ``Func`` in the loaded BTF.

    >>> encode_func_info([FuncInfo(0, 3), FuncInfo(12, 7)]).hex()
    '00000000030000000c00000007000000'
    """
    e = _endian(byteorder)
    return b"".join(_pack(e + "II", r.insn, r.type_id) for r in records)


def encode_line_info(
    records: Sequence[LineInfo], strings: StringTable | StringTableBuilder, byteorder: str = "little"
) -> bytes:
    """``struct bpf_line_info`` array for ``BPF_PROG_LOAD`` (``line_info_rec_size`` = 16):
    ``insn_off`` in slots, ``file_name_off``/``line_off`` into ``strings`` (the string table
    of the BTF loaded with the program; a builder adds missing strings)."""
    e = _endian(byteorder)
    add = _string_adder(strings)
    return b"".join(
        _pack(e + "IIII", r.insn, add(r.file_name), add(r.line_text), _line_col(r)) for r in records
    )


def encode_core_relos(
    records: Sequence[CoreRelo], strings: StringTable | StringTableBuilder, byteorder: str = "little"
) -> bytes:
    """``struct bpf_core_relo`` array (``insn_off`` in bytes, as ``BPF_PROG_LOAD`` wants it)."""
    e = _endian(byteorder)
    add = _string_adder(strings)
    return b"".join(
        _pack(e + "IIII", r.insn * _INSN_SIZE, r.type_id, add(r.access), int(r.kind)) for r in records
    )


# --- parsing --------------------------------------------------------------------------------


def parse_btf_ext(data: bytes, btf: Spec, byteorder: str) -> BTFExt:
    """Parse a ``.BTF.ext`` section.

    Args:
        data: the section's bytes.
        btf: the object's BTF (``.BTF``): names are looked up in its string table and type
            ids checked against it.
        byteorder: the object's byte order, ``"little"`` or ``"big"``.

    Returns:
        The records keyed by ELF section name; ``insn`` is the slot (byte offset // 8) in
        that section.

    Raises:
        BTFError: the section is malformed (the error names the byte offset in ``data``).
    """
    e = _endian(byteorder)
    data = bytes(data)
    size = len(data)

    def fail(offset: int, message: str) -> BTFError:
        return BTFError(message, source=".BTF.ext", offset=offset)

    if btf.strings is None:
        raise BTFError("the BTF has no string table (it was not parsed from bytes)", source=".BTF.ext")
    table = btf.strings

    def string(offset: int, at: int, what: str) -> str:
        if not 0 <= offset < table.end:
            raise fail(
                at, f"{what} string offset {offset} out of range (string section is {table.end} bytes)"
            )
        try:
            return table.lookup(offset)
        except BTFError as err:
            raise fail(at, f"{what}: {err.message}") from None

    if size < 8:
        raise fail(0, f"section is {size} bytes, shorter than the 8-byte header prefix")
    magic, version, flags, hdr_len = struct.unpack_from(e + "HBBI", data, 0)
    if magic != BTF_EXT_MAGIC:
        raise fail(0, f"bad magic {magic:#06x} (expected {BTF_EXT_MAGIC:#06x} in {byteorder}-endian)")
    if version != BTF_EXT_VERSION:
        raise fail(2, f"unsupported version {version}")
    if flags:
        raise fail(3, f"flags {flags:#x} must be zero")
    if hdr_len < HEADER_SIZE_MIN or hdr_len % 4:
        raise fail(4, f"header length {hdr_len} is invalid (at least {HEADER_SIZE_MIN}, a multiple of 4)")
    if hdr_len > size:
        raise fail(4, f"header length {hdr_len} is beyond the end of the section ({size} bytes)")
    n_fields = 6 if hdr_len >= HEADER_SIZE else 4
    fields = struct.unpack_from(e + "I" * n_fields, data, 8)
    if hdr_len > 8 + 4 * n_fields and any(data[8 + 4 * n_fields : hdr_len]):
        raise fail(8 + 4 * n_fields, "unknown header fields are not zero")

    ext = BTFExt()
    ntypes = len(btf)

    def section(index: int, what: str, min_size: int, decode: Callable[[int, str, int], None]) -> int:
        """Walk one sub-section; calls ``decode(pos, sec_name, rec_index)`` per record."""
        off, length = fields[2 * index], fields[2 * index + 1]
        field_at = 8 + 8 * index
        if length == 0:
            return min_size
        if off % 4:
            raise fail(field_at, f"{what} offset {off} is not 4-byte aligned")
        start = hdr_len + off
        end = start + length
        if end > size:
            raise fail(
                field_at, f"{what} (off {off} len {length}) is beyond the end of the section ({size} bytes)"
            )
        if length < 4:
            raise fail(start, f"{what} has no record size")
        rec_size: int = struct.unpack_from(e + "I", data, start)[0]
        if rec_size < min_size or rec_size % 4:
            raise fail(
                start, f"{what} record size {rec_size} is invalid (at least {min_size}, a multiple of 4)"
            )
        pos = start + 4  # a record size and no records: LLVM writes that for an empty list
        while pos < end:
            if end - pos < 8:
                raise fail(pos, f"{what}: truncated section header ({end - pos} bytes left)")
            name_off, count = struct.unpack_from(e + "II", data, pos)
            if count == 0:
                raise fail(pos + 4, f"{what}: section has no records")
            if count * rec_size > end - pos - 8:
                raise fail(
                    pos + 4,
                    f"{what}: {count} records of {rec_size} bytes do not fit in {end - pos - 8} bytes",
                )
            name = string(name_off, pos, f"{what} section name")
            pos += 8
            for i in range(count):
                decode(pos, name, i)
                pos += rec_size
        return rec_size

    def slot(pos: int, insn_off: int, what: str) -> int:
        if insn_off % _INSN_SIZE:
            raise fail(pos, f"{what} insn_off {insn_off} is not a multiple of 8")
        return insn_off // _INSN_SIZE

    def type_id(pos: int, tid: int, what: str) -> int:
        if not 0 <= tid < ntypes:
            raise fail(pos, f"{what} type id {tid} out of range (the BTF has ids 0..{ntypes - 1})")
        return tid

    def func(pos: int, name: str, i: int) -> None:
        insn_off, tid = struct.unpack_from(e + "II", data, pos)
        rec = FuncInfo(slot(pos, insn_off, "func_info"), type_id(pos + 4, tid, "func_info"))
        ext.func_info.setdefault(name, []).append(rec)

    def line(pos: int, name: str, i: int) -> None:
        insn_off, file_off, line_off, line_col = struct.unpack_from(e + "IIII", data, pos)
        rec = LineInfo(
            slot(pos, insn_off, "line_info"),
            string(file_off, pos + 4, "line_info file name"),
            string(line_off, pos + 8, "line_info line"),
            line_col >> 10,
            line_col & 0x3FF,
        )
        ext.line_info.setdefault(name, []).append(rec)

    def core(pos: int, name: str, i: int) -> None:
        insn_off, tid, access_off, kind = struct.unpack_from(e + "IIII", data, pos)
        if kind > max(CoreRelocKind):
            raise fail(pos + 12, f"core_relo kind {kind} is unknown")
        access = string(access_off, pos + 8, "core_relo access")
        if not access:
            raise fail(pos + 8, "core_relo access string is empty")
        rec = CoreRelo(
            slot(pos, insn_off, "core_relo"), type_id(pos + 4, tid, "core_relo"), access, CoreRelocKind(kind)
        )
        ext.core_relos.setdefault(name, []).append(rec)

    ext.func_info_rec_size = section(0, "func_info", FUNC_INFO_SIZE, func)
    ext.line_info_rec_size = section(1, "line_info", LINE_INFO_SIZE, line)
    if n_fields == 6:
        ext.core_relo_rec_size = section(2, "core_relo", CORE_RELO_SIZE, core)
    return ext
