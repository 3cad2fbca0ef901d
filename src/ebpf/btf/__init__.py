"""BTF, the BPF Type Format: types, parsing and encoding. Foundation layer. Pure: no kernel access.

::

    spec = btf.Spec.from_file("/sys/kernel/btf/vmlinux")
    task = spec.find("task_struct", btf.Struct)
    spec.to_bytes() == open("/sys/kernel/btf/vmlinux", "rb").read()   # True

The modules ``parse`` and ``marshal`` hold the functions behind ``Spec.from_bytes`` and
``Spec.to_bytes`` (split BTF: ``Spec.from_bytes(data, base=vmlinux)``). ``dump_c`` writes a
C header (``vmlinux.h``); ``format_value``/``to_python`` print and decode values by type.
"""

from __future__ import annotations

from .cdump import dump_c
from .ext import BTFExt, CoreRelo, CoreRelocKind, FuncInfo, LineInfo, parse_btf_ext
from .marshal import StringTableBuilder
from .pretty import format_value, to_python
from .records import Record, numpy_dtype, record_class
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

__all__ = [
    "Array",
    "BTFExt",
    "ByteOrder",
    "Const",
    "CoreRelo",
    "CoreRelocKind",
    "Datasec",
    "DeclTag",
    "Enum",
    "Enum64",
    "EnumValue",
    "Float",
    "Func",
    "FuncInfo",
    "FuncLinkage",
    "FuncParam",
    "FuncProto",
    "Fwd",
    "Int",
    "IntEncoding",
    "Kind",
    "LineInfo",
    "Member",
    "Pointer",
    "Record",
    "Restrict",
    "Spec",
    "StringTable",
    "StringTableBuilder",
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
    "dump_c",
    "format_value",
    "numpy_dtype",
    "parse_btf_ext",
    "record_class",
    "references",
    "to_python",
]
