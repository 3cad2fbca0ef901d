"""BTF types as frozen values, one class per kind. Foundation layer. Pure: no kernel access.

Rule 1: types are the *raw* form. A type refers to another by its type id (an ``int``), exactly
as the encoded BTF does; :class:`ebpf.btf.Spec` turns ids into types (``spec[type_id]``).
Id 0 is :class:`Void`.

Rule 2: every field that changes the encoding is a field here, so a parsed type re-encodes to
the same bytes (``kind_flag`` on structs and unions, ``signed`` on enums, ...).

The common header of every type (``struct btf_type`` in ``include/uapi/linux/btf.h``)::

    name_off   u32   offset into the string section
    info       u32   bits  0-15: vlen (members, values, params, secinfos; linkage for FUNC)
                     bits 24-28: kind (Kind below)
                     bit  31   : kind_flag
    size/type  u32   size in bytes (INT, ENUM, STRUCT, UNION, DATASEC, FLOAT, ENUM64)
                     or a type id (PTR, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC,
                     FUNC_PROTO's return type, VAR, DECL_TAG, TYPE_TAG)

followed by kind-specific data (``Documentation/bpf/btf.rst`` §2.2).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "Array",
    "Const",
    "Datasec",
    "DeclTag",
    "Enum",
    "Enum64",
    "EnumValue",
    "Float",
    "Func",
    "FuncLinkage",
    "FuncParam",
    "FuncProto",
    "Fwd",
    "Int",
    "IntEncoding",
    "Kind",
    "Member",
    "Pointer",
    "Restrict",
    "Struct",
    "Type",
    "TypeTag",
    "Typedef",
    "Union",
    "Var",
    "VarLinkage",
    "VarSecinfo",
    "Void",
    "Volatile",
]


class Kind(enum.IntEnum):
    """The BTF kind, bits 24-28 of ``info``. Values equal ``BTF_KIND_*``."""

    UNKN = 0  # BTF_KIND_UNKN (only type id 0, void, which is never encoded)
    INT = 1  # BTF_KIND_INT
    PTR = 2  # BTF_KIND_PTR
    ARRAY = 3  # BTF_KIND_ARRAY
    STRUCT = 4  # BTF_KIND_STRUCT
    UNION = 5  # BTF_KIND_UNION
    ENUM = 6  # BTF_KIND_ENUM
    FWD = 7  # BTF_KIND_FWD
    TYPEDEF = 8  # BTF_KIND_TYPEDEF
    VOLATILE = 9  # BTF_KIND_VOLATILE
    CONST = 10  # BTF_KIND_CONST
    RESTRICT = 11  # BTF_KIND_RESTRICT
    FUNC = 12  # BTF_KIND_FUNC
    FUNC_PROTO = 13  # BTF_KIND_FUNC_PROTO
    VAR = 14  # BTF_KIND_VAR
    DATASEC = 15  # BTF_KIND_DATASEC
    FLOAT = 16  # BTF_KIND_FLOAT
    DECL_TAG = 17  # BTF_KIND_DECL_TAG
    TYPE_TAG = 18  # BTF_KIND_TYPE_TAG
    ENUM64 = 19  # BTF_KIND_ENUM64


class IntEncoding(enum.IntFlag):
    """``BTF_INT_ENCODING``: bits 24-27 of an INT's extra word. At most one bit is set."""

    NONE = 0
    SIGNED = 1  # BTF_INT_SIGNED
    CHAR = 2  # BTF_INT_CHAR
    BOOL = 4  # BTF_INT_BOOL


class FuncLinkage(enum.IntEnum):
    """Linkage of a FUNC, stored in its ``vlen``. Values equal ``BTF_FUNC_*``."""

    STATIC = 0  # BTF_FUNC_STATIC
    GLOBAL = 1  # BTF_FUNC_GLOBAL
    EXTERN = 2  # BTF_FUNC_EXTERN


class VarLinkage(enum.IntEnum):
    """Linkage of a VAR (``struct btf_var``). Values equal ``BTF_VAR_*``."""

    STATIC = 0  # BTF_VAR_STATIC
    GLOBAL_ALLOCATED = 1  # BTF_VAR_GLOBAL_ALLOCATED
    GLOBAL_EXTERN = 2  # BTF_VAR_GLOBAL_EXTERN


@dataclass(frozen=True, slots=True)
class Void:
    """Type id 0: ``void``. Never encoded."""

    kind = Kind.UNKN


@dataclass(frozen=True, slots=True)
class Int:
    """BTF_KIND_INT. The extra u32 holds the encoding, the bit offset and the bit count::

    bits 24-27  encoding (IntEncoding)
    bits 16-23  offset   (bit offset of the value, 0 in practice)
    bits  0-7   bits     (number of value bits, at most 128)
    """

    name: str
    size: int
    encoding: IntEncoding = IntEncoding.NONE
    offset: int = 0
    bits: int = 0
    kind = Kind.INT

    @property
    def signed(self) -> bool:
        return bool(self.encoding & IntEncoding.SIGNED)


@dataclass(frozen=True, slots=True)
class Pointer:
    """BTF_KIND_PTR: a pointer to ``type``. Its size is 8 (BPF is a 64-bit target)."""

    type: int
    kind = Kind.PTR


@dataclass(frozen=True, slots=True)
class Array:
    """BTF_KIND_ARRAY, with ``struct btf_array {type, index_type, nelems}`` after the header."""

    type: int
    index_type: int
    nelems: int
    kind = Kind.ARRAY


@dataclass(frozen=True, slots=True)
class Member:
    """``struct btf_member``: a struct or union member.

    ``offset`` is the bit offset from the start of the aggregate. ``bitfield_size`` is the
    bitfield width, or 0 for an ordinary member; it can only be non-zero in an aggregate whose
    ``kind_flag`` is set, where the encoded offset word is ``bitfield_size << 24 | offset``.
    """

    name: str
    type: int
    offset: int
    bitfield_size: int = 0


@dataclass(frozen=True, slots=True)
class Struct:
    """BTF_KIND_STRUCT: ``size`` bytes and ``members`` (vlen of them)."""

    name: str
    size: int
    members: tuple[Member, ...] = ()
    kind_flag: bool = False
    kind = Kind.STRUCT


@dataclass(frozen=True, slots=True)
class Union:
    """BTF_KIND_UNION: like :class:`Struct`, members usually all at offset 0."""

    name: str
    size: int
    members: tuple[Member, ...] = ()
    kind_flag: bool = False
    kind = Kind.UNION


@dataclass(frozen=True, slots=True)
class EnumValue:
    """An enumerator: ``struct btf_enum`` (32-bit) or ``struct btf_enum64``.

    ``value`` is the mathematical value: negative values only when the enum is signed.
    """

    name: str
    value: int


@dataclass(frozen=True, slots=True)
class Enum:
    """BTF_KIND_ENUM: 32-bit enumerator values; ``size`` is 1, 2, 4 or 8.

    ``signed`` is the ``kind_flag`` (Linux 6.0+); when clear, values are unsigned.
    """

    name: str
    size: int
    values: tuple[EnumValue, ...] = ()
    signed: bool = False
    kind = Kind.ENUM


@dataclass(frozen=True, slots=True)
class Enum64:
    """BTF_KIND_ENUM64: 64-bit enumerator values, stored as two 32-bit halves."""

    name: str
    size: int
    values: tuple[EnumValue, ...] = ()
    signed: bool = False
    kind = Kind.ENUM64


@dataclass(frozen=True, slots=True)
class Fwd:
    """BTF_KIND_FWD: a forward declaration; ``union`` is the kind_flag (else ``struct``)."""

    name: str
    union: bool = False
    kind = Kind.FWD


@dataclass(frozen=True, slots=True)
class Typedef:
    """BTF_KIND_TYPEDEF: ``name`` for ``type``."""

    name: str
    type: int
    kind = Kind.TYPEDEF


@dataclass(frozen=True, slots=True)
class Volatile:
    """BTF_KIND_VOLATILE: ``volatile type``."""

    type: int
    kind = Kind.VOLATILE


@dataclass(frozen=True, slots=True)
class Const:
    """BTF_KIND_CONST: ``const type``."""

    type: int
    kind = Kind.CONST


@dataclass(frozen=True, slots=True)
class Restrict:
    """BTF_KIND_RESTRICT: ``restrict type``."""

    type: int
    kind = Kind.RESTRICT


@dataclass(frozen=True, slots=True)
class Func:
    """BTF_KIND_FUNC: a function (``name``) whose ``type`` is a :class:`FuncProto`."""

    name: str
    type: int
    linkage: FuncLinkage = FuncLinkage.STATIC
    kind = Kind.FUNC


@dataclass(frozen=True, slots=True)
class FuncParam:
    """``struct btf_param``. A last parameter with type 0 and no name means ``...``."""

    name: str
    type: int


@dataclass(frozen=True, slots=True)
class FuncProto:
    """BTF_KIND_FUNC_PROTO: ``return_type`` (0 for void) and ``params``."""

    return_type: int
    params: tuple[FuncParam, ...] = ()
    kind = Kind.FUNC_PROTO


@dataclass(frozen=True, slots=True)
class Var:
    """BTF_KIND_VAR: a global variable of ``type``, with ``struct btf_var {linkage}``."""

    name: str
    type: int
    linkage: VarLinkage = VarLinkage.STATIC
    kind = Kind.VAR


@dataclass(frozen=True, slots=True)
class VarSecinfo:
    """``struct btf_var_secinfo``: a VAR (or FUNC, for .ksyms) at ``offset`` in a section."""

    type: int
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class Datasec:
    """BTF_KIND_DATASEC: a data section (``.data``, ``.bss``, ``.maps``...) of ``size`` bytes."""

    name: str
    size: int
    vars: tuple[VarSecinfo, ...] = ()
    kind = Kind.DATASEC


@dataclass(frozen=True, slots=True)
class Float:
    """BTF_KIND_FLOAT: a floating point type of ``size`` bytes (2, 4, 8, 12 or 16)."""

    name: str
    size: int
    kind = Kind.FLOAT


@dataclass(frozen=True, slots=True)
class DeclTag:
    """BTF_KIND_DECL_TAG: ``btf_decl_tag(name)`` on ``type``.

    ``component_idx`` is -1 for the type itself, else the index of the member (struct/union)
    or parameter (func) that carries the tag. ``attribute`` is the kind_flag: the tag is a
    plain ``__attribute__`` to reproduce when dumping C.
    """

    name: str
    type: int
    component_idx: int = -1
    attribute: bool = False
    kind = Kind.DECL_TAG


@dataclass(frozen=True, slots=True)
class TypeTag:
    """BTF_KIND_TYPE_TAG: ``btf_type_tag(name)`` on ``type`` (e.g. ``__user`` pointers)."""

    name: str
    type: int
    attribute: bool = False
    kind = Kind.TYPE_TAG


Type = (
    Void
    | Int
    | Pointer
    | Array
    | Struct
    | Union
    | Enum
    | Enum64
    | Fwd
    | Typedef
    | Volatile
    | Const
    | Restrict
    | Func
    | FuncProto
    | Var
    | Datasec
    | Float
    | DeclTag
    | TypeTag
)
"""Any BTF type."""
