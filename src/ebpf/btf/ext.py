"""``.BTF.ext`` records: function info, line info and CO-RE relocations. Foundation layer. Pure.

The ``.BTF.ext`` section of an object (``Documentation/bpf/btf.rst`` §4.2) carries, per ELF
section, three record lists that refer to instructions by byte offset. Once the ELF loader has
placed a program's instructions, each record here refers to an instruction by **slot index**
(``insn_off // 8`` as the kernel counts; an ``lddw`` takes two slots) within that program.

Rule: records are frozen values; the program's ``btf.Spec`` resolves their type ids and strings
have already been looked up.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["CoreRelo", "CoreRelocKind", "FuncInfo", "LineInfo"]


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
