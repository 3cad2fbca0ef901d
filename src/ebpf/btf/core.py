"""CO-RE: relocate a program's field offsets, sizes, type ids and enum values against a
target BTF. Core layer. Pure: the target BTF is an argument, nothing here reads the kernel.

::

    target = btf.Spec.from_file("/sys/kernel/btf/vmlinux")   # the caller's business
    spec = relocate_core(collection_spec, target)             # a copy, core_relos applied

The behaviour is libbpf's (``tools/lib/bpf/relo_core.c``, described in
``Documentation/bpf/libbpf/program_types`` and the ``bpf_core_read.h`` comments), written
anew here:

Rule 1 (candidates): a local type finds its target candidates by *essential name* (the name
without a ``___flavor`` suffix: ``task_struct___v2`` -> ``task_struct``) and compatible kind
(the same kind; ENUM and ENUM64 count as one). Each candidate is then matched against the
access string: members by exact name, searching into anonymous struct/union members; array
indices within bounds (a flexible array at the end of a struct takes any index); the leaf
field's type must be compatible (both composite; or the same kind with ints of any size,
enums/fwds of equal essential name, pointers, floats, arrays of compatible elements).
Type-based relocations use libbpf's type compatibility (``TYPE_MATCHES``: the stricter
"types match" relation).

Rule 2 (ambiguity): when several candidates match, they must agree on the field's bit offset
and on the relocated value (or all be poisoned); otherwise the relocation fails. As in
libbpf, candidates are cached per local type for a whole object, and once some of them
matched a relocation, only those are tried for the type's later relocations.

Rule 3 (poisoning): a relocation that finds no target (a missing field, type or enumerator)
is not an error when the kind has a natural answer (``FIELD_EXISTS``, ``TYPE_EXISTS``,
``TYPE_MATCHES``, ``ENUMVAL_EXISTS`` give 0; ``TYPE_ID_TARGET`` and ``TYPE_SIZE`` give 0).
For the others (offsets, sizes, shifts, ``ENUMVAL_VALUE``) the instruction is *poisoned*:
replaced by ``call 0xbad2310`` (both slots of an ``lddw``), which the verifier rejects only
if the instruction is reachable (``invalid func unknown#195896080``): code guarded by a
``bpf_core_field_exists`` check stays loadable. ``strict=True`` raises instead of poisoning.

Rule 4 (patching): ALU/ALU64 with an immediate get a new ``imm``; LDX/ST/STX a new ``off``
(at most 32767) and, when the field's size changed, a new access size, allowed only for
pointers and unsigned integers (else the instruction is poisoned); ``lddw`` a new 64-bit
immediate. Before patching, the instruction must hold the value the local BTF gives
(libbpf's validation; skipped for bitfield offsets and target type ids).

Sizes are libbpf's ``btf__resolve_size``: a pointer has the size of the BTF's ``long`` (4 in
a 32-bit kernel's BTF; :func:`pointer_size`). Bitfield shifts (``FIELD_LSHIFT_U64``) follow
the byte order of the local BTF (the object's); libbpf uses the host's, which is the same
thing unless one cross-loads. The type relations live in :mod:`ebpf.btf._core_types`.

Checked against libbpf 1.1 (libbpf-dev) on the objects in ``tests/data/core`` and on random
target BTFs: the same instructions and the same debug log lines (``log=[...]``).

A relocation that cannot be applied (malformed access string, ambiguity, an instruction of
the wrong form or value) raises :class:`~ebpf.errors.RelocationError` naming the program,
the instruction slot and the relocation with its types, as libbpf's log does::

    program 'tp', insn 3: relo #1: <byte_off> [5] struct task_struct.pid (0:92 @ offset 1264): ...
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import RelocationError
from ..isa.instruction import Instruction
from ..isa.program import Program
from ..spec import CollectionSpec, ProgramSpec
from ._core_types import CandidateIndex, essential_name, pointer_size
from ._core_types import CoreFail as _Fail
from ._core_types import fields_compat as _fields_compat
from ._core_types import resolve as _resolve
from ._core_types import resolve_size as _sizeof
from ._core_types import types_compat as _types_compat
from ._core_types import types_match as _types_match
from .ext import CoreRelo, CoreRelocKind
from .spec import Spec
from .types import (
    Array,
    Enum,
    Enum64,
    Int,
    IntEncoding,
    Pointer,
    Struct,
    Union,
    Void,
)

__all__ = [
    "POISON_IMM",
    "CandidateIndex",
    "essential_name",
    "pointer_size",
    "relocate_core",
    "relocate_instructions",
    "relocate_program",
]

POISON_IMM = 0xBAD2310
"""The helper number of a poisoned instruction (``call 0xbad2310``), as libbpf writes it."""

_SPEC_MAX_LEN = 64  # BPF_CORE_SPEC_MAX_LEN
_U64 = (1 << 64) - 1
_ACCESS_RE = re.compile(r"[0-9]+(:[0-9]+)*\Z")

_FIELD_KINDS = frozenset(
    {
        CoreRelocKind.FIELD_BYTE_OFFSET,
        CoreRelocKind.FIELD_BYTE_SIZE,
        CoreRelocKind.FIELD_EXISTS,
        CoreRelocKind.FIELD_SIGNED,
        CoreRelocKind.FIELD_LSHIFT_U64,
        CoreRelocKind.FIELD_RSHIFT_U64,
    }
)
_TYPE_KINDS = frozenset(
    {
        CoreRelocKind.TYPE_ID_LOCAL,
        CoreRelocKind.TYPE_ID_TARGET,
        CoreRelocKind.TYPE_EXISTS,
        CoreRelocKind.TYPE_MATCHES,
        CoreRelocKind.TYPE_SIZE,
    }
)
_KIND_STR = {
    CoreRelocKind.FIELD_BYTE_OFFSET: "byte_off",
    CoreRelocKind.FIELD_BYTE_SIZE: "byte_sz",
    CoreRelocKind.FIELD_EXISTS: "field_exists",
    CoreRelocKind.FIELD_SIGNED: "signed",
    CoreRelocKind.FIELD_LSHIFT_U64: "lshift_u64",
    CoreRelocKind.FIELD_RSHIFT_U64: "rshift_u64",
    CoreRelocKind.TYPE_ID_LOCAL: "local_type_id",
    CoreRelocKind.TYPE_ID_TARGET: "target_type_id",
    CoreRelocKind.TYPE_EXISTS: "type_exists",
    CoreRelocKind.TYPE_MATCHES: "type_matches",
    CoreRelocKind.TYPE_SIZE: "type_size",
    CoreRelocKind.ENUMVAL_EXISTS: "enumval_exists",
    CoreRelocKind.ENUMVAL_VALUE: "enumval_value",
}

# opcode fields (RFC 9669 §3)
_CLS_LD, _CLS_LDX, _CLS_ST, _CLS_STX, _CLS_ALU, _CLS_ALU64 = 0x00, 0x01, 0x02, 0x03, 0x04, 0x07
_OP_LDDW = 0x18
_OP_CALL = 0x85
_SRC_X = 0x08
_SIZE_BYTES = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}
_BYTES_SIZE = {v: k for k, v in _SIZE_BYTES.items()}


class _Poison(Exception):
    """The relocation has no target value: poison the instruction (libbpf's -EUCLEAN)."""


# --- access specs ----------------------------------------------------------------------------


@dataclass
class _Accessor:
    type_id: int  # the struct/union for a named member; the element type for an index
    idx: int
    name: str | None


@dataclass
class _CoreSpec:
    btf: Spec
    root_type_id: int
    kind: CoreRelocKind
    raw: list[int] = field(default_factory=list)
    accessors: list[_Accessor] = field(default_factory=list)
    bit_offset: int = 0


def _is_flex_array(spec: Spec, acc: _Accessor | None, arr: Array) -> bool:
    """An array of 0 elements that is the last member of its struct."""
    if acc is None or acc.name is None or arr.nelems > 0:
        return False
    t = spec.types[acc.type_id]
    return isinstance(t, Struct | Union) and acc.idx == len(t.members) - 1


def _parse_spec(spec: Spec, relo: CoreRelo) -> _CoreSpec:
    """The local access spec of ``relo`` (libbpf's ``bpf_core_parse_spec``)."""
    kind, access = relo.kind, relo.access
    if not 0 <= relo.type_id < len(spec):
        raise _Fail(f"type id {relo.type_id} out of range")
    out = _CoreSpec(spec, relo.type_id, kind)
    if kind in _TYPE_KINDS:
        if access != "0":
            raise _Fail(f"type-based relocation has access string {access!r}, expected '0'")
        return out
    if not _ACCESS_RE.match(access):
        raise _Fail(f"invalid access string {access!r}")
    raw = [int(x) for x in access.split(":")]
    if len(raw) > _SPEC_MAX_LEN:
        raise _Fail(f"access string {access!r} is longer than {_SPEC_MAX_LEN}")
    out.raw = raw
    type_id, t = _resolve(spec, relo.type_id)
    out.accessors.append(_Accessor(type_id, raw[0], None))
    if kind not in _FIELD_KINDS:  # enumerator relocations
        if not isinstance(t, Enum | Enum64) or len(raw) > 1 or raw[0] >= len(t.values):
            raise _Fail(f"access {access!r} is not an enumerator of [{relo.type_id}]")
        out.accessors[0].name = t.values[raw[0]].name
        return out
    out.bit_offset = raw[0] * _sizeof(spec, type_id) * 8
    for idx in raw[1:]:
        type_id, t = _resolve(spec, type_id)
        if isinstance(t, Struct | Union):
            if idx >= len(t.members):
                raise _Fail(f"member index {idx} out of range for [{type_id}] {_type_str(spec, type_id)}")
            m = t.members[idx]
            out.bit_offset += m.offset
            if m.name:
                out.accessors.append(_Accessor(type_id, idx, m.name))
            type_id = m.type
        elif isinstance(t, Array):
            elem_id, _ = _resolve(spec, t.type)
            if not _is_flex_array(spec, out.accessors[-1], t) and idx >= t.nelems:
                raise _Fail(f"array index {idx} out of range for [{type_id}] ({t.nelems} elements)")
            out.accessors.append(_Accessor(elem_id, idx, None))
            out.bit_offset += idx * _sizeof(spec, elem_id) * 8
            type_id = elem_id
        else:
            raise _Fail(f"access {access!r} steps into [{type_id}] of kind {t.kind.name.lower()}")
    return out


def _type_str(spec: Spec, type_id: int) -> str:
    t = spec.types[type_id] if 0 <= type_id < len(spec) else Void()
    name = getattr(t, "name", "")
    return f"{t.kind.name.lower()} {name or '<anon>'}"


def _format_spec(s: _CoreSpec) -> str:
    """libbpf's ``bpf_core_format_spec``: ``<byte_off> [5] struct task_struct.pid (0:92 @ offset 1264)``."""
    text = f"<{_KIND_STR[s.kind]}> [{s.root_type_id}] {_type_str(s.btf, s.root_type_id)}"
    if s.kind in _TYPE_KINDS:
        return text
    if s.kind not in _FIELD_KINDS:
        if s.accessors and s.raw:
            t = s.btf.types[s.accessors[0].type_id]
            if isinstance(t, Enum | Enum64) and s.raw[0] < len(t.values):
                v = t.values[s.raw[0]]
                bits = 32 if isinstance(t, Enum) else 64
                value = v.value & ((1 << bits) - 1)
                if t.signed and value >> (bits - 1):
                    value -= 1 << bits
                text += f"::{v.name} = {value}"
        return text
    for i, acc in enumerate(s.accessors):
        if acc.name:
            text += f".{acc.name}"
        elif i > 0 or acc.idx > 0:
            text += f"[{acc.idx}]"
    offset = f"{s.bit_offset // 8}" + (f".{s.bit_offset % 8}" if s.bit_offset % 8 else "")
    return text + f" ({':'.join(map(str, s.raw))} @ offset {offset})"


def _match_member(
    local: Spec, local_acc: _Accessor, target: Spec, targ_id: int, out: _CoreSpec
) -> tuple[bool, int]:
    """Find the local member ``local_acc`` in target composite ``targ_id``, searching into
    anonymous members; on success push the accessor(s) and return the member's type id."""
    lt = local.types[local_acc.type_id]
    assert isinstance(lt, Struct | Union)
    local_member = lt.members[local_acc.idx]
    targ_id, tt = _resolve(target, targ_id)
    if not isinstance(tt, Struct | Union):
        return False, 0
    for i, m in enumerate(tt.members):
        if len(out.raw) == _SPEC_MAX_LEN:
            raise _Fail("struct/union/array nesting too deep")
        out.bit_offset += m.offset
        out.raw.append(i)
        if not m.name:
            found, next_id = _match_member(local, local_acc, target, m.type, out)
            if found:
                return True, next_id
        elif m.name == local_member.name:
            if not _fields_compat(local, local_member.type, target, m.type):
                out.bit_offset -= m.offset
                out.raw.pop()
                return False, 0
            out.accessors.append(_Accessor(targ_id, i, m.name))
            return True, m.type
        out.bit_offset -= m.offset
        out.raw.pop()
    return False, 0


def _match_spec(local_spec: _CoreSpec, target: Spec, targ_id: int) -> _CoreSpec | None:
    """The target spec of candidate ``targ_id``, or None if it does not match."""
    local = local_spec.btf
    out = _CoreSpec(target, targ_id, local_spec.kind)
    kind = local_spec.kind
    if kind in _TYPE_KINDS:
        if kind == CoreRelocKind.TYPE_MATCHES:
            ok = _types_match(local, local_spec.root_type_id, target, targ_id)
        else:
            ok = _types_compat(local, local_spec.root_type_id, target, targ_id)
        return out if ok else None
    if kind not in _FIELD_KINDS:
        targ_id, tt = _resolve(target, targ_id)
        if not isinstance(tt, Enum | Enum64):
            return None
        name = local_spec.accessors[0].name or ""
        for i, v in enumerate(tt.values):
            if essential_name(v.name) == essential_name(name):
                out.accessors.append(_Accessor(targ_id, i, v.name))
                out.raw.append(i)
                return out
        return None
    for i, acc in enumerate(local_spec.accessors):
        targ_id, tt = _resolve(target, targ_id)
        if acc.name is not None:
            found, targ_id = _match_member(local, acc, target, targ_id, out)
            if not found:
                return None
            continue
        if i > 0:
            if not isinstance(tt, Array):
                return None
            if (
                not _is_flex_array(target, out.accessors[-1] if out.accessors else None, tt)
                and acc.idx >= tt.nelems
            ):
                return None
            targ_id, _ = _resolve(target, tt.type)
        if len(out.raw) == _SPEC_MAX_LEN:
            raise _Fail("struct/union/array nesting too deep")
        out.accessors.append(_Accessor(targ_id, acc.idx, None))
        out.raw.append(acc.idx)
        out.bit_offset += acc.idx * _sizeof(target, targ_id) * 8
    return out


# --- relocation values -----------------------------------------------------------------------


@dataclass
class _Result:
    orig_val: int = 0
    new_val: int = 0
    poison: bool = False
    validate: bool = True
    orig_sz: int = 0
    new_sz: int = 0
    orig_type_id: int = 0
    new_type_id: int = 0
    fail_memsz_adjust: bool = False


@dataclass
class _FieldValue:
    val: int
    size: int = 0  # the field's byte size, for load/store size adjustment
    type_id: int = 0
    validate: bool = True


def _field_value(kind: CoreRelocKind, s: _CoreSpec | None, byteorder: str) -> _FieldValue:
    """libbpf's ``bpf_core_calc_field_relo``."""
    if kind == CoreRelocKind.FIELD_EXISTS:
        return _FieldValue(1 if s is not None else 0)
    if s is None:
        raise _Poison
    spec = s.btf
    acc = s.accessors[-1]
    if acc.name is None:  # the root or an array element
        if kind == CoreRelocKind.FIELD_BYTE_OFFSET:
            return _FieldValue(s.bit_offset // 8, _sizeof(spec, acc.type_id), acc.type_id)
        if kind == CoreRelocKind.FIELD_BYTE_SIZE:
            return _FieldValue(_sizeof(spec, acc.type_id))
        raise _Fail(f"{_KIND_STR[kind]} can't be applied to an array access")
    t = spec.types[acc.type_id]
    assert isinstance(t, Struct | Union)
    m = t.members[acc.idx]
    field_id, mt = _resolve(spec, m.type)
    bit_off = s.bit_offset
    bit_sz = m.bitfield_size
    bitfield = bit_sz > 0
    if bitfield:
        byte_sz = getattr(mt, "size", 0)
        if byte_sz <= 0:
            raise _Fail(f"bitfield {m.name!r} has a type without size")
        byte_off = bit_off // 8 // byte_sz * byte_sz
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
            if byte_sz >= 8:
                raise _Fail(f"bitfield {m.name!r} can't be read with a 64-bit load")
            byte_sz *= 2
            byte_off = bit_off // 8 // byte_sz * byte_sz
    else:
        byte_sz = _sizeof(spec, field_id)
        byte_off = bit_off // 8
        bit_sz = byte_sz * 8
    # Bitfield offsets and sizes may legitimately differ from what the compiler chose.
    validate = not bitfield
    if kind == CoreRelocKind.FIELD_BYTE_OFFSET:
        if bitfield:
            return _FieldValue(byte_off, validate=validate)
        return _FieldValue(byte_off, byte_sz, field_id, validate)
    if kind == CoreRelocKind.FIELD_BYTE_SIZE:
        return _FieldValue(byte_sz, validate=validate)
    if kind == CoreRelocKind.FIELD_SIGNED:
        signed = (isinstance(mt, Enum | Enum64) and mt.signed) or (isinstance(mt, Int) and mt.signed)
        return _FieldValue(int(signed))
    if kind == CoreRelocKind.FIELD_LSHIFT_U64:
        if byteorder == "little":
            return _FieldValue(64 - (bit_off + bit_sz - byte_off * 8), validate=validate)
        return _FieldValue((8 - byte_sz) * 8 + (bit_off - byte_off * 8), validate=validate)
    assert kind == CoreRelocKind.FIELD_RSHIFT_U64
    return _FieldValue(64 - bit_sz)


def _type_value(kind: CoreRelocKind, s: _CoreSpec | None) -> tuple[int, bool]:
    """libbpf's ``bpf_core_calc_type_relo``: (value, validate)."""
    if s is None:
        return 0, True
    if kind == CoreRelocKind.TYPE_ID_TARGET:
        return s.root_type_id, False
    if kind in (CoreRelocKind.TYPE_EXISTS, CoreRelocKind.TYPE_MATCHES):
        return 1, True
    assert kind == CoreRelocKind.TYPE_SIZE
    return _sizeof(s.btf, s.root_type_id), True


def _enum_value(kind: CoreRelocKind, s: _CoreSpec | None) -> int:
    """libbpf's ``bpf_core_calc_enumval_relo`` (32-bit values sign-extend, as ``__s32 val``)."""
    if kind == CoreRelocKind.ENUMVAL_EXISTS:
        return 1 if s is not None else 0
    if s is None:
        raise _Poison
    acc = s.accessors[0]
    t = s.btf.types[acc.type_id]
    assert isinstance(t, Enum | Enum64)
    value = t.values[acc.idx].value
    if isinstance(t, Enum):
        value &= 0xFFFFFFFF
        value -= (value >> 31) << 32
    return value & _U64


def _calc(relo: CoreRelo, local_spec: _CoreSpec, targ_spec: _CoreSpec | None) -> _Result:
    """libbpf's ``bpf_core_calc_relo``: the original and the new value."""
    kind = relo.kind
    res = _Result()
    try:
        if kind in _FIELD_KINDS:
            order = local_spec.btf.byteorder
            lv = _field_value(kind, local_spec, order)
            res.orig_val, res.orig_sz, res.orig_type_id, res.validate = (
                lv.val,
                lv.size,
                lv.type_id,
                lv.validate,
            )
            tv = _field_value(kind, targ_spec, order)
            res.new_val, res.new_sz, res.new_type_id = tv.val, tv.size, tv.type_id
            if res.orig_sz != res.new_sz:
                assert targ_spec is not None
                ot = local_spec.btf.types[res.orig_type_id]
                nt = targ_spec.btf.types[res.new_type_id]
                ptrs = isinstance(ot, Pointer) and isinstance(nt, Pointer)
                unsigned = (
                    isinstance(ot, Int)
                    and isinstance(nt, Int)
                    and ot.encoding != IntEncoding.SIGNED
                    and nt.encoding != IntEncoding.SIGNED
                )
                res.fail_memsz_adjust = not (ptrs or unsigned)
        elif kind in _TYPE_KINDS:
            res.orig_val, res.validate = _type_value(kind, local_spec)
            res.new_val, _ = _type_value(kind, targ_spec)
        else:
            res.orig_val = _enum_value(kind, local_spec)
            res.new_val = _enum_value(kind, targ_spec)
    except _Poison:
        res.poison = True
    return res


def _resolve_relo(
    relo: CoreRelo,
    local_spec: _CoreSpec,
    index: CandidateIndex,
    cands: dict[int, list[int]],
    note: Callable[[str], None],
) -> _Result:
    """libbpf's ``bpf_core_calc_relo_insn`` minus the patching. Raises _Fail.

    ``cands`` caches the candidates per local type id; like libbpf, once some candidates
    matched a relocation, only those are tried for the next relocations of the same type.
    """
    if relo.kind == CoreRelocKind.TYPE_ID_LOCAL:
        return _Result(relo.type_id, relo.type_id, validate=False)
    local_type = local_spec.btf.types[relo.type_id]
    if not getattr(local_type, "name", ""):
        raise _Fail("relocation of an anonymous type is not supported")
    targ_res: _Result | None = None
    targ_spec: _CoreSpec | None = None
    candidates = cands.get(relo.type_id)
    if candidates is None:
        candidates = cands[relo.type_id] = index.candidates(local_type)
    matched: list[int] = []
    for j, cand_id in enumerate(candidates):
        cand_spec = _match_spec(local_spec, index.target, cand_id)
        if cand_spec is None:
            continue
        matched.append(cand_id)
        note(f"matching candidate #{j} {_format_spec(cand_spec)}")
        res = _calc(relo, local_spec, cand_spec)
        if targ_res is None or targ_spec is None:
            targ_res, targ_spec = res, cand_spec
            continue
        if cand_spec.bit_offset != targ_spec.bit_offset:
            raise _Fail(
                f"field offset ambiguity: {targ_spec.bit_offset // 8} != {cand_spec.bit_offset // 8} "
                f"(target candidates [{targ_spec.root_type_id}] and [{cand_id}])"
            )
        if res.poison != targ_res.poison or res.new_val != targ_res.new_val:
            raise _Fail(
                f"relocation decision ambiguity: "
                f"{'poison' if targ_res.poison else 'success'} {targ_res.new_val} != "
                f"{'poison' if res.poison else 'success'} {res.new_val} "
                f"(target candidates [{targ_spec.root_type_id}] and [{cand_id}])"
            )
    if targ_res is None:
        note("no matching targets found")
        targ_res = _calc(relo, local_spec, None)
    else:
        cands[relo.type_id] = matched
    return targ_res


# --- patching --------------------------------------------------------------------------------


def _poison_insn() -> Instruction:
    return Instruction(_OP_CALL, imm=POISON_IMM)


def _s64(value: int) -> int:
    return value & _U64


def _patch(
    insn: Instruction, slot: int, res: _Result, note: Callable[[str], None], strict: bool = False
) -> list[Instruction]:
    """libbpf's ``bpf_core_patch_insn``: the replacement instruction(s). Raises _Fail."""
    if res.poison:
        if insn.opcode == _OP_LDDW:
            note(f"substituting insn #{slot + 1} w/ invalid insn")
            note(f"substituting insn #{slot} w/ invalid insn")
            return [_poison_insn(), _poison_insn()]
        note(f"substituting insn #{slot} w/ invalid insn")
        return [_poison_insn()]
    cls = insn.opcode & 0x07
    orig, new = res.orig_val & _U64, res.new_val & _U64
    if cls in (_CLS_ALU, _CLS_ALU64):
        if insn.opcode & _SRC_X:
            raise _Fail("ALU instruction uses a register, not an immediate")
        if res.validate and _s64(insn.imm) != orig:
            raise _Fail(f"unexpected ALU/ALU64 value: got {insn.imm}, exp {orig} -> {new}")
        imm = new & 0xFFFFFFFF
        note(f"patched insn #{slot} (ALU/ALU64) imm {insn.imm & 0xFFFFFFFF} -> {imm}")
        return [Instruction(insn.opcode, insn.dst, insn.src, insn.offset, imm)]
    if cls in (_CLS_LDX, _CLS_ST, _CLS_STX):
        if res.validate and _s64(insn.offset) != orig:
            raise _Fail(f"unexpected LDX/ST/STX value: got {insn.offset}, exp {orig} -> {new}")
        if new > 0x7FFF:
            raise _Fail(f"LDX/ST/STX offset {new} does not fit in the 16-bit offset")
        if res.fail_memsz_adjust:
            if strict:
                raise _Fail(
                    f"the field's size changed from {res.orig_sz} to {res.new_sz} and it is not "
                    "a pointer or an unsigned integer (the access would be poisoned)"
                )
            note(
                f"insn #{slot} (LDX/ST/STX) accesses field incorrectly. Make sure you are accessing "
                "pointers, unsigned integers, or fields of matching type and size."
            )
            note(f"substituting insn #{slot} w/ invalid insn")
            return [_poison_insn()]
        opcode = insn.opcode
        note(f"patched insn #{slot} (LDX/ST/STX) off {insn.offset & 0xFFFF} -> {new}")
        if res.new_sz != res.orig_sz:
            size = _SIZE_BYTES[opcode & 0x18]
            if size != res.orig_sz:
                raise _Fail(f"LDX/ST/STX unexpected mem size: got {size}, exp {res.orig_sz}")
            new_size = _BYTES_SIZE.get(res.new_sz)
            if new_size is None:
                raise _Fail(f"LDX/ST/STX invalid new mem size: {res.new_sz}")
            opcode = (opcode & ~0x18) | new_size
            note(f"patched insn #{slot} (LDX/ST/STX) mem_sz {res.orig_sz} -> {res.new_sz}")
        return [Instruction(opcode, insn.dst, insn.src, new, insn.imm)]
    if cls == _CLS_LD:
        if insn.opcode != _OP_LDDW or insn.src != 0 or insn.offset != 0:
            raise _Fail("LDIMM64 instruction has an unexpected form")
        if res.validate and insn.imm != orig:
            raise _Fail(f"unexpected LDIMM64 value: got {insn.imm}, exp {orig} -> {new}")
        note(f"patched insn #{slot} (LDIMM64) imm64 {insn.imm} -> {new}")
        return [Instruction(insn.opcode, insn.dst, insn.src, insn.offset, new)]
    raise _Fail(f"cannot relocate instruction with opcode {insn.opcode:#04x}")


def relocate_instructions(
    instructions: Program,
    relos: Sequence[CoreRelo],
    local: Spec,
    target: Spec,
    *,
    program: str = "",
    strict: bool = False,
    log: list[str] | None = None,
    candidates: dict[int, list[int]] | None = None,
) -> Program:
    """Apply CO-RE relocations to ``instructions`` (``relo.insn`` = slot index).

    See :func:`relocate_program`; this form takes the parts instead of a ProgramSpec.
    ``candidates`` (local type id -> target ids still in the running) is libbpf's per-object
    candidate cache: pass the same dict for every program of one object.

    >>> from ebpf import btf, isa
    >>> i32 = btf.Int("int", 4, btf.IntEncoding.SIGNED, bits=32)
    >>> local = btf.Spec.build([i32, btf.Struct("task___mine", 8, (btf.Member("pid", 1, 32),))])
    >>> target = btf.Spec.build([i32, btf.Struct("task", 16, (btf.Member("tgid", 1, 0), btf.Member("pid", 1, 96)))])
    >>> code = isa.Program([isa.Instruction(0x61, dst=0, src=1, offset=4), isa.Instruction(0x95)])
    >>> relo = btf.CoreRelo(0, 2, "0:0", btf.CoreRelocKind.FIELD_BYTE_OFFSET)
    >>> log = []
    >>> relocate_instructions(code, [relo], local, target, program="p", log=log)[0].offset
    12
    >>> print(log[-1])
    prog 'p': relo #0: patched insn #0 (LDX/ST/STX) off 4 -> 12
    """
    if not relos:
        return instructions
    index = CandidateIndex.of(target)
    cands = {} if candidates is None else candidates
    by_slot: dict[int, list[Instruction]] = {}
    slot = 0
    for insn in instructions:
        by_slot[slot] = [insn]
        slot += insn.slots
    for i, relo in enumerate(relos):
        where = by_slot.get(relo.insn)
        if where is None or len(where) != 1:
            raise RelocationError(
                f"relo #{i}: slot {relo.insn} is not the start of an instruction "
                f"(the program has {slot} slots)",
                program=program,
                insn_index=relo.insn,
            )
        prefix = f"prog '{program}': relo #{i}: "

        def note(line: str, prefix: str = prefix) -> None:
            if log is not None:
                log.append(prefix + line)

        local_spec: _CoreSpec | None = None
        try:
            local_spec = _parse_spec(local, relo)
            note(_format_spec(local_spec))
            res = _resolve_relo(relo, local_spec, index, cands, note)
            if res.poison and strict:
                raise _Fail("no matching target (the instruction would be poisoned)")
            patched = _patch(where[0], relo.insn, res, note, strict)
        except _Fail as err:
            described = _describe(relo, local, local_spec)
            raise RelocationError(
                f"relo #{i}: {described}: {err}", program=program, insn_index=relo.insn
            ) from None
        if len(patched) == 2:  # a poisoned lddw: two one-slot calls
            by_slot[relo.insn] = [patched[0]]
            by_slot[relo.insn + 1] = [patched[1]]
        else:
            by_slot[relo.insn] = patched
    out = [insn for _, insns in sorted(by_slot.items()) for insn in insns]
    return Program(out, instructions.labels)


def _describe(relo: CoreRelo, local: Spec, local_spec: _CoreSpec | None) -> str:
    if local_spec is not None:
        return _format_spec(local_spec)
    return f"<{_KIND_STR[relo.kind]}> [{relo.type_id}] {_type_str(local, relo.type_id)} + {relo.access}"


def relocate_program(
    prog: ProgramSpec,
    target: Spec,
    *,
    local: Spec | None = None,
    strict: bool = False,
    log: list[str] | None = None,
    candidates: dict[int, list[int]] | None = None,
) -> Program:
    """The instructions of ``prog`` with its CO-RE relocations applied against ``target``.

    Args:
        prog: the program; ``prog.core_relos`` refer to slots of ``prog.instructions``.
        target: the BTF to relocate against (the kernel's ``vmlinux`` BTF, or any Spec).
        local: the BTF the relocations' type ids refer to; defaults to ``prog.btf``.
        strict: raise instead of poisoning an instruction whose target is missing.
        log: if given, receives libbpf's debug lines (``prog 'x': relo #0: <byte_off> [2]
            struct obj.x (0:0 @ offset 0)``, ``... matching candidate #0 ...``, ``...
            patched insn #0 (LDX/ST/STX) off 0 -> 40``, ``... substituting insn #3 w/
            invalid insn``).
        candidates: libbpf's candidate cache, shared by the programs of one object (see
            :func:`relocate_instructions`); :func:`relocate_core` does that.

    Raises:
        RelocationError: a relocation cannot be applied; names the program, the slot and
            the relocation (kind, root type and access path).
    """
    if not prog.core_relos:
        return prog.instructions
    btf = local if local is not None else prog.btf
    if btf is None:
        raise RelocationError("the program has CO-RE relocations but no BTF", program=prog.name)
    return relocate_instructions(
        prog.instructions,
        prog.core_relos,
        btf,
        target,
        program=prog.name,
        strict=strict,
        log=log,
        candidates=candidates,
    )


def relocate_core(
    coll: CollectionSpec, target: Spec, *, strict: bool = False, log: list[str] | None = None
) -> CollectionSpec:
    """A copy of ``coll`` with every program's CO-RE relocations applied and cleared.

    Programs are relocated in order with one candidate cache, as libbpf does for an object.
    Like libbpf, programs with ``autoload`` off are left alone (their ``core_relos`` stay):
    a relocation that fails there does not fail the collection.

    Raises:
        RelocationError: see :func:`relocate_program`.
    """
    out = coll.copy()
    caches: dict[int, dict[int, list[int]]] = {}  # libbpf's per-object candidate cache
    for prog in out.programs.values():
        if prog.core_relos and prog.autoload:
            local = prog.btf or coll.btf
            cands = caches.setdefault(id(local), {})
            prog.instructions = relocate_program(
                prog, target, local=local, strict=strict, log=log, candidates=cands
            )
            prog.core_relos = []
    return out
