"""Type relations for CO-RE (private to :mod:`ebpf.btf.core`). Core layer. Pure.

libbpf's candidate rules, written anew: essential names (``___flavor`` suffixes), kind
compatibility, the candidate index per target, ``btf__resolve_size`` with the target's pointer
size, field compatibility, type compatibility and the "types match" relation.
"""

from __future__ import annotations

from typing import ClassVar

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

__all__ = [
    "MAX_DEPTH",
    "CandidateIndex",
    "CoreFail",
    "essential_name",
    "fields_compat",
    "kind_compat",
    "pointer_size",
    "resolve",
    "resolve_size",
    "types_compat",
    "types_match",
]

MAX_DEPTH = 32  # libbpf's recursion limit for type compatibility


class CoreFail(Exception):
    """The relocation cannot be applied: becomes a RelocationError with context."""


# --- names and the candidate index ----------------------------------------------------------


def essential_name(name: str) -> str:
    """The name without its ``___flavor`` suffix (libbpf's ``bpf_core_essential_name_len``).

    The suffix starts at the last ``___`` that has a non-underscore on both sides:

    >>> essential_name("task_struct___v2"), essential_name("a___b___c"), essential_name("____x")
    ('task_struct', 'a___b', '____x')
    """
    if "___" not in name:
        return name
    for i in range(len(name) - 5, -1, -1):
        if name[i] != "_" and name[i + 1 : i + 4] == "___" and name[i + 4] != "_":
            return name[: i + 1]
    return name


def _any_enum(t: Type) -> bool:
    return isinstance(t, Enum | Enum64)


def kind_compat(a: Type, b: Type) -> bool:
    """libbpf's ``btf_kind_core_compat``: the same kind, or both enums (ENUM / ENUM64)."""
    return a.kind == b.kind or (_any_enum(a) and _any_enum(b))


class CandidateIndex:
    """Target type ids by essential name, built once per target :class:`~ebpf.btf.Spec`.

    ``CandidateIndex.of(spec)`` returns a cached index (the last few targets are kept).
    """

    _cache: ClassVar[list[tuple[Spec, CandidateIndex]]] = []
    _CACHE_SIZE: ClassVar[int] = 4

    def __init__(self, target: Spec) -> None:
        self.target = target
        index: dict[str, list[int]] = {}
        for type_id, t in enumerate(target.types):
            name = getattr(t, "name", "")
            if name:
                if "___" in name:
                    name = essential_name(name)
                bucket = index.get(name)
                if bucket is None:
                    index[name] = [type_id]
                else:
                    bucket.append(type_id)
        self._by_name = index

    @classmethod
    def of(cls, target: Spec) -> CandidateIndex:
        """The index of ``target``, built on first use."""
        for spec, index in cls._cache:
            if spec is target:
                return index
        index = cls(target)
        cls._cache.insert(0, (target, index))
        del cls._cache[cls._CACHE_SIZE :]
        return index

    def candidates(self, local_type: Type) -> list[int]:
        """Target ids with the essential name and a compatible kind of ``local_type``."""
        name = essential_name(getattr(local_type, "name", ""))
        types = self.target.types
        return [i for i in self._by_name.get(name, ()) if kind_compat(types[i], local_type)]


def resolve(spec: Spec, type_id: int) -> tuple[int, Type]:
    """Skip typedefs and modifiers (libbpf's ``skip_mods_and_typedefs``)."""
    try:
        rid = spec.resolve_id(type_id)
        return rid, spec.types[rid]
    except BTFError as err:
        raise CoreFail(err.message) from None


_LONG_NAMES = frozenset(
    {
        "long",
        "long int",
        "int long",
        "unsigned long",
        "long unsigned",
        "unsigned long int",
        "unsigned int long",
        "long unsigned int",
        "long int unsigned",
        "int unsigned long",
        "int long unsigned",
    }
)
_ptr_sizes: list[tuple[Spec, int]] = []


def pointer_size(spec: Spec) -> int:
    """The pointer size of the machine ``spec`` describes: the size of its ``long`` (4 on
    32-bit kernels), else 8. libbpf's ``btf__pointer_size`` heuristic; cached per Spec."""
    for known, size in _ptr_sizes:
        if known is spec:
            return size
    size = 8
    for t in spec.types:
        if isinstance(t, Int) and t.size in (4, 8) and t.name in _LONG_NAMES:
            size = t.size
            break
    _ptr_sizes.insert(0, (spec, size))
    del _ptr_sizes[8:]
    return size


def resolve_size(spec: Spec, type_id: int) -> int:
    """libbpf's ``btf__resolve_size``: pointers take the target's pointer size."""
    nelems = 1
    types = spec.types
    for _ in range(32):  # MAX_RESOLVE_DEPTH
        if not 0 <= type_id < len(types):
            raise CoreFail(f"type id {type_id} out of range")
        t = types[type_id]
        match t:
            case Int() | Struct() | Union() | Enum() | Enum64() | Float() | Datasec() | Pointer():
                size = pointer_size(spec) if isinstance(t, Pointer) else t.size
                if nelems * size > 0xFFFFFFFF:
                    raise CoreFail(f"type [{type_id}]: size {nelems} * {size} does not fit in 32 bits")
                return nelems * size
            case Typedef() | Volatile() | Const() | Restrict() | Var() | DeclTag() | TypeTag():
                type_id = t.type
            case Array():
                nelems *= t.nelems
                type_id = t.type
            case _:
                raise CoreFail(f"type [{type_id}] ({t.kind.name.lower()}) has no size")
    raise CoreFail(f"type [{type_id}]: typedef/modifier chain too long")


# --- compatibility ---------------------------------------------------------------------------


def _names_match(a: str, b: str) -> bool:
    return not a or not b or essential_name(a) == essential_name(b)


def fields_compat(local: Spec, local_id: int, target: Spec, targ_id: int) -> bool:
    """libbpf's ``bpf_core_fields_are_compat``: may the leaf field be relocated?"""
    for _ in range(MAX_DEPTH):
        local_id, lt = resolve(local, local_id)
        targ_id, tt = resolve(target, targ_id)
        if isinstance(lt, Struct | Union) and isinstance(tt, Struct | Union):
            return True
        if not kind_compat(lt, tt):
            return False
        match lt:
            case Pointer() | Float():
                return True
            case Fwd() | Enum() | Enum64():
                ln, tn = essential_name(lt.name), essential_name(getattr(tt, "name", ""))
                return not ln or not tn or ln == tn
            case Int():
                assert isinstance(tt, Int)
                return lt.offset == 0 and tt.offset == 0
            case Array():
                assert isinstance(tt, Array)
                local_id, targ_id = lt.type, tt.type
            case _:
                return False
    raise CoreFail("type nesting too deep")


def types_compat(local: Spec, local_id: int, target: Spec, targ_id: int, level: int = MAX_DEPTH) -> bool:
    """libbpf's ``bpf_core_types_are_compat`` (TYPE_EXISTS, TYPE_SIZE, TYPE_ID_TARGET)."""
    if not kind_compat(local.types[local_id], target.types[targ_id]):
        return False
    for _ in range(MAX_DEPTH):
        local_id, lt = resolve(local, local_id)
        targ_id, tt = resolve(target, targ_id)
        if not kind_compat(lt, tt):
            return False
        match lt:
            case Void() | Struct() | Union() | Enum() | Enum64() | Fwd():
                return True
            case Int():
                assert isinstance(tt, Int)
                return lt.offset == 0 and tt.offset == 0
            case Pointer():
                assert isinstance(tt, Pointer)
                local_id, targ_id = lt.type, tt.type
            case Array():
                assert isinstance(tt, Array)
                local_id, targ_id = lt.type, tt.type
            case FuncProto():
                assert isinstance(tt, FuncProto)
                if len(lt.params) != len(tt.params):
                    return False
                for lp, tp in zip(lt.params, tt.params, strict=True):
                    if level <= 0:
                        raise CoreFail("type nesting too deep")
                    lp_id, _ = resolve(local, lp.type)
                    tp_id, _ = resolve(target, tp.type)
                    if not types_compat(local, lp_id, target, tp_id, level - 1):
                        return False
                local_id, targ_id = lt.return_type, tt.return_type
            case _:
                return False
    raise CoreFail("type nesting too deep")


def types_match(
    local: Spec, local_id: int, target: Spec, targ_id: int, behind_ptr: bool = False, level: int = MAX_DEPTH
) -> bool:
    """libbpf's ``bpf_core_types_match`` (TYPE_MATCHES)."""
    if level <= 0:
        raise CoreFail("type nesting too deep")
    for _ in range(MAX_DEPTH):
        local_id, lt = resolve(local, local_id)
        targ_id, tt = resolve(target, targ_id)
        if not _names_match(getattr(lt, "name", ""), getattr(tt, "name", "")):
            return False
        match lt:
            case Void():
                return isinstance(tt, Void)
            case Fwd():
                if isinstance(tt, Fwd):
                    return lt.union == tt.union
                if behind_ptr:
                    return isinstance(tt, Union) if lt.union else isinstance(tt, Struct)
                return False
            case Enum() | Enum64():
                if not isinstance(tt, Enum | Enum64) or lt.size != tt.size or len(lt.values) > len(tt.values):
                    return False
                return all(any(_names_match(v.name, w.name) for w in tt.values) for v in lt.values)
            case Struct() | Union():
                if behind_ptr:
                    if lt.kind == tt.kind:
                        return True
                    return isinstance(tt, Fwd) and tt.union == isinstance(lt, Union)
                if lt.kind != tt.kind:
                    return False
                assert isinstance(tt, Struct | Union)
                if len(lt.members) > len(tt.members):
                    return False
                for lm in lt.members:
                    if not any(
                        _names_match(lm.name, tm.name)
                        and types_match(local, lm.type, target, tm.type, behind_ptr, level - 1)
                        for tm in tt.members
                    ):
                        return False
                return True
            case Int():
                if not isinstance(tt, Int):
                    return False
                return lt.size == tt.size and lt.signed == tt.signed
            case Pointer():
                if not isinstance(tt, Pointer):
                    return False
                behind_ptr = True
                local_id, targ_id = lt.type, tt.type
            case Array():
                if not isinstance(tt, Array) or lt.nelems != tt.nelems:
                    return False
                local_id, targ_id = lt.type, tt.type
            case FuncProto():
                if not isinstance(tt, FuncProto) or len(lt.params) != len(tt.params):
                    return False
                for lp, tp in zip(lt.params, tt.params, strict=True):
                    if not types_match(local, lp.type, target, tp.type, behind_ptr, level - 1):
                        return False
                local_id, targ_id = lt.return_type, tt.return_type
            case _:
                return False
    raise CoreFail("type nesting too deep")
