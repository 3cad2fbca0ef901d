"""BTF as a C header, like ``bpftool btf dump file X format c`` (``vmlinux.h``). Foundation layer.

Pure: no kernel access. :func:`dump_c` writes the same text as bpftool 7.1 (libbpf 1.1's
``btf_dump``) for the same BTF: the behaviour below is libbpf's documented output, re-derived
here, not its code.

Rule 1 (order): types are visited in id order (or the ``ids`` given). Visiting a type first
*orders* it: everything it embeds by value (members, array elements, typedef targets) is
queued before it; what it only points to needs nothing but a forward declaration. A named
struct/union reached through a pointer is a "weak" edge and breaks cycles; a typedef is
emitted early only if what it names is complete ("strong").

Rule 2 (emit): queued types are written top-level: named structs/unions, named enums (and
anonymous ones nothing refers to), forward declarations, typedefs. Anonymous structs,
unions and enums are written inline where they are used. A struct needed before its
definition gets ``struct X;``.

Rule 3 (layout): member offsets come from BTF, so gaps get explicit padding bitfields
(``long: 64;``, ``int: 3;``); a struct whose members sit at offsets their types cannot have,
or whose size is not a multiple of its alignment, gets ``__attribute__((packed))``. Enums of
1 byte get ``mode(byte)``, 8-byte ones that C would make 4 bytes ``mode(word)``. Two
additions to libbpf 1.1, which drops them and so gets those sizes wrong: ``mode(byte)``
(libbpf 1.2+ writes it too), and ``aligned(N)``/``packed`` on a union whose BTF size is not
the size C would give it.

Rule 4 (names): two different types with the same name (``struct foo`` twice, after BTF
deduplication left two shapes) get ``foo``, ``foo___2``, ... in the order they are first
written; enumerators and typedefs share one namespace, structs/unions/enums another.
``__builtin_va_list`` is never redefined.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from ..errors import BTFError
from .spec import Spec
from .types import Kind

__all__ = ["dump_c"]

POINTER_SIZE = 8

_INT = int(Kind.INT)
_PTR = int(Kind.PTR)
_ARRAY = int(Kind.ARRAY)
_STRUCT = int(Kind.STRUCT)
_UNION = int(Kind.UNION)
_ENUM = int(Kind.ENUM)
_FWD = int(Kind.FWD)
_TYPEDEF = int(Kind.TYPEDEF)
_VOLATILE = int(Kind.VOLATILE)
_CONST = int(Kind.CONST)
_RESTRICT = int(Kind.RESTRICT)
_FUNC = int(Kind.FUNC)
_FUNC_PROTO = int(Kind.FUNC_PROTO)
_VAR = int(Kind.VAR)
_DATASEC = int(Kind.DATASEC)
_FLOAT = int(Kind.FLOAT)
_DECL_TAG = int(Kind.DECL_TAG)
_TYPE_TAG = int(Kind.TYPE_TAG)
_ENUM64 = int(Kind.ENUM64)

# States of the ordering and emitting passes.
_NOT = 0
_BUSY = 1
_DONE = 2

_MODS = frozenset((_VOLATILE, _CONST, _RESTRICT, _TYPE_TAG))
_NOT_C = frozenset((_FUNC, _VAR, _DATASEC, _DECL_TAG))
_CHAIN_NEXT = frozenset((_PTR, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG, _ARRAY))
_CHAIN_END = frozenset((0, _INT, _ENUM, _ENUM64, _FWD, _STRUCT, _UNION, _TYPEDEF, _FLOAT))

# GCC's Arm SIMD typedefs refer to base types that other compilers lack.
_MISSING_BASE_TYPES = {
    "__Poly8_t": "unsigned char",
    "__Poly16_t": "unsigned short",
    "__Poly64_t": "unsigned long long",
    "__Poly128_t": "unsigned __int128",
}

PREAMBLE = (
    "#ifndef __VMLINUX_H__\n"
    "#define __VMLINUX_H__\n"
    "\n"
    "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n"
    "#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)\n"
    "#endif\n"
    "\n"
)
POSTAMBLE = "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute pop\n#endif\n\n#endif /* __VMLINUX_H__ */\n"

KFUNC_MACROS = (
    "#ifndef __ksym\n"
    '#define __ksym __attribute__((section(".ksyms")))\n'
    "#endif\n"
    "\n"
    "#ifndef __weak\n"
    "#define __weak __attribute__((weak))\n"
    "#endif\n"
    "\n"
    "#ifndef __bpf_fastcall\n"
    "#if __has_attribute(bpf_fastcall)\n"
    "#define __bpf_fastcall __attribute__((bpf_fastcall))\n"
    "#else\n"
    "#define __bpf_fastcall\n"
    "#endif\n"
    "#endif\n"
    "\n"
)

_PADS = (("long", 64), ("int", 32), ("short", 16), ("char", 8))


def dump_c(spec: Spec, *, ids: Iterable[int] | None = None, kfuncs: bool = False) -> str:
    """The types of ``spec`` as a C header (``vmlinux.h`` style).

    Args:
        spec: the types; for split BTF, the base's and its own, as bpftool writes it (for the
            module's own only, pass ``ids=range(spec.first_id, len(spec))``: the base types
            they need come along).
        ids: dump only these types and what they need, in this order; default: every type.
        kfuncs: also what newer bpftool (7.5+) writes: ``__ksym``/``__weak``/``__bpf_fastcall``
            macros after the preamble and, before the postamble, an ``extern ... __weak __ksym;``
            prototype of every FUNC tagged ``bpf_kfunc`` (inside ``#ifndef
            BPF_NO_KFUNC_PROTOTYPES``). Off: exactly bpftool 7.1's text.

    Raises:
        BTFError: an id is out of range, or a type cannot be written as C (a loop of anonymous
            types, a reference to a FUNC where a type is needed).
    """
    roots = range(1, len(spec.types)) if ids is None else list(ids)
    for type_id in roots if ids is not None else ():
        if not 0 < type_id < len(spec.types):
            raise BTFError(f"type id {type_id} out of range (the spec has ids 1..{len(spec.types) - 1})")
    dumper = _Dumper(spec)
    old_limit = sys.getrecursionlimit()
    if old_limit < 20000:
        sys.setrecursionlimit(20000)
    try:
        dumper.out(PREAMBLE)
        if kfuncs:
            dumper.out(KFUNC_MACROS)
        order_state = dumper.order_state
        kinds = dumper.kinds
        for type_id in roots:
            # Already ordered, or a kind that is never written: nothing to queue.
            if order_state[type_id] != _DONE and kinds[type_id] not in _NOT_C:
                dumper.dump_type(type_id)
        if kfuncs:
            dumper.kfunc_prototypes()
        dumper.out(POSTAMBLE)
    except RecursionError:
        raise BTFError("type graph too deep to write as C") from None
    finally:
        sys.setrecursionlimit(old_limit)
    return "".join(dumper.parts)


class _Dumper:
    """The state of one dump: per-type order/emit states and the names given so far."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        types = self.types = spec.types
        n = len(types)
        self.kinds = kinds = [int(t.kind) for t in types]
        self.parts: list[str] = []
        self.out = self.parts.append
        self.order_state = bytearray(n)
        self.emit_state = bytearray(n)
        self.order_state[0] = self.emit_state[0] = _DONE  # void needs nothing
        self.fwd_emitted = bytearray(n)
        self.referenced = self._referenced(types, kinds)
        self.names: dict[int, str] = {}
        self.type_names: dict[str, int] = {}
        self.ident_names: dict[str, int] = {}
        self.queue: list[int] = []
        self._align: list[int] = [-1] * n
        self._size: list[int] = [-1] * n

    @staticmethod
    def _referenced(types: tuple[object, ...], kinds: list[int]) -> bytearray:
        """Which ids some other type refers to (an anonymous enum nothing uses is top-level)."""
        ref = bytearray(len(types))
        for t, k in zip(types, kinds, strict=True):
            if k in (_PTR, _TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _FUNC, _VAR, _DECL_TAG, _TYPE_TAG):
                ref[t.type] = 1  # type: ignore[attr-defined]
            elif k == _STRUCT or k == _UNION:
                for m in t.members:  # type: ignore[attr-defined]
                    ref[m.type] = 1
            elif k == _ARRAY:
                ref[t.type] = 1  # type: ignore[attr-defined]
                ref[t.index_type] = 1  # type: ignore[attr-defined]
            elif k == _FUNC_PROTO:
                ref[t.return_type] = 1  # type: ignore[attr-defined]
                for p in t.params:  # type: ignore[attr-defined]
                    ref[p.type] = 1
            elif k == _DATASEC:
                for v in t.vars:  # type: ignore[attr-defined]
                    ref[v.type] = 1
        return ref

    # --- one root ---------------------------------------------------------------------

    def dump_type(self, type_id: int) -> None:
        self.queue = []
        self._order(type_id, False)
        for queued in self.queue:
            self._emit(queued, 0)

    def kfunc_prototypes(self) -> None:
        """``extern <prototype> __weak __ksym;`` for each FUNC with a ``bpf_kfunc`` decl tag."""
        types = self.types
        out = self.out
        out("\n/* BPF kfuncs */\n#ifndef BPF_NO_KFUNC_PROTOTYPES\n")
        fastcall = {
            t.type  # type: ignore[union-attr]
            for t in types
            if t.kind == Kind.DECL_TAG and t.name == "bpf_fastcall" and t.component_idx == -1  # type: ignore[union-attr]
        }
        for t in types:
            if t.kind != Kind.DECL_TAG or t.name != "bpf_kfunc" or t.component_idx != -1:  # type: ignore[union-attr]
                continue
            func = types[t.type]  # type: ignore[union-attr]
            if func.kind != Kind.FUNC:
                continue
            out("extern ")
            self._decl(func.type, func.name, 0)  # type: ignore[union-attr]
            if t.type in fastcall:  # type: ignore[union-attr]
                out(" __bpf_fastcall")
            out(" __weak __ksym;\n")
        out("#endif\n\n")

    # --- pass 1: order -----------------------------------------------------------------

    def _order(self, type_id: int, through_ptr: bool) -> int:
        """Queue what ``type_id`` needs, then it. Returns 1 if it is complete ("strong")."""
        state = self.order_state
        if state[type_id] == _DONE:
            return 1
        t = self.types[type_id]
        k = self.kinds[type_id]
        if state[type_id] == _BUSY:
            if (k == _STRUCT or k == _UNION) and through_ptr and t.name:  # type: ignore[union-attr]
                return 0
            raise BTFError(f"type [{type_id}] {Kind(k).name}: unresolvable type loop")
        if k == _INT or k == _FLOAT:
            state[type_id] = _DONE
            return 0
        if k == _PTR:
            target = t.type  # type: ignore[union-attr]
            err = 1 if state[target] == _DONE else self._order(target, True)
            state[type_id] = _DONE
            return err
        if k == _ARRAY:
            return self._order(t.type, False)  # type: ignore[union-attr]
        if k == _STRUCT or k == _UNION:
            if through_ptr and t.name:  # type: ignore[union-attr]
                return 0
            state[type_id] = _BUSY
            order = self._order
            for m in t.members:  # type: ignore[union-attr]
                if state[m.type] != _DONE:
                    order(m.type, False)
            if t.name:  # type: ignore[union-attr]
                self.queue.append(type_id)
            state[type_id] = _DONE
            return 1
        if k == _ENUM or k == _ENUM64 or k == _FWD:
            if t.name or not self.referenced[type_id]:  # type: ignore[union-attr]
                self.queue.append(type_id)
            state[type_id] = _DONE
            return 1
        if k == _TYPEDEF:
            strong = self._order(t.type, through_ptr)  # type: ignore[union-attr]
            if through_ptr and not strong:
                return 0
            self.queue.append(type_id)
            state[type_id] = _DONE
            return 1
        if k in _MODS:
            return self._order(t.type, through_ptr)  # type: ignore[union-attr]
        if k == _FUNC_PROTO:
            ret = t.return_type  # type: ignore[union-attr]
            strong = 1 if state[ret] == _DONE else self._order(ret, through_ptr)
            for p in t.params:  # type: ignore[union-attr]
                if state[p.type] == _DONE or self._order(p.type, through_ptr):
                    strong = 1
            return strong
        # FUNC, VAR, DATASEC, DECL_TAG: nothing to write as a C type.
        state[type_id] = _DONE
        return 0

    # --- pass 2: emit ------------------------------------------------------------------

    def _emit(self, type_id: int, cont_id: int) -> None:
        """Write ``type_id`` (top-level when ``cont_id`` is 0) after what it depends on."""
        estate = self.emit_state
        state = estate[type_id]
        if state == _DONE:
            return
        t = self.types[type_id]
        k = self.kinds[type_id]
        out = self.out
        if state == _BUSY:
            if self.fwd_emitted[type_id]:
                return
            if k == _STRUCT or k == _UNION:
                if type_id == cont_id:
                    return
                if not t.name:  # type: ignore[union-attr]
                    return  # an anonymous struct in a loop: nothing to declare
                self._struct_fwd(type_id, k)
                out(";\n\n")
                self.fwd_emitted[type_id] = 1
            elif k == _TYPEDEF:
                if t.name != "__builtin_va_list":  # type: ignore[union-attr]
                    self._typedef_def(type_id, t)
                    out(";\n\n")
                self.fwd_emitted[type_id] = 1
            return
        if k == _INT:
            alias = _MISSING_BASE_TYPES.get(t.name)  # type: ignore[union-attr]
            if alias is not None:
                out(f"typedef {alias} {t.name};\n\n")  # type: ignore[union-attr]
            estate[type_id] = _DONE
        elif k == _ENUM or k == _ENUM64:
            if cont_id == 0:
                self._enum_def(type_id, t, 0)
                out(";\n\n")
            estate[type_id] = _DONE
        elif k == _PTR or k in _MODS or k == _ARRAY:
            self._emit(t.type, cont_id)  # type: ignore[union-attr]
        elif k == _FWD:
            self._fwd_def(type_id, t)
            out(";\n\n")
            estate[type_id] = _DONE
        elif k == _TYPEDEF:
            estate[type_id] = _BUSY
            self._emit(t.type, type_id)  # type: ignore[union-attr]
            if not self.fwd_emitted[type_id] and t.name != "__builtin_va_list":  # type: ignore[union-attr]
                self._typedef_def(type_id, t)
                out(";\n\n")
            estate[type_id] = _DONE
        elif k == _STRUCT or k == _UNION:
            estate[type_id] = _BUSY
            named = bool(t.name)  # type: ignore[union-attr]
            if cont_id == 0 or not named:
                new_cont = type_id if named else cont_id
                for m in t.members:  # type: ignore[union-attr]
                    self._emit(m.type, new_cont)
            elif not self.fwd_emitted[type_id] and type_id != cont_id:
                self._struct_fwd(type_id, k)
                out(";\n\n")
                self.fwd_emitted[type_id] = 1
            if cont_id == 0:
                self._struct_def(type_id, t, 0)
                out(";\n\n")
                estate[type_id] = _DONE
            else:
                estate[type_id] = _NOT
        elif k == _FUNC_PROTO:
            self._emit(t.return_type, cont_id)  # type: ignore[union-attr]
            for p in t.params:  # type: ignore[union-attr]
                self._emit(p.type, cont_id)

    # --- names -------------------------------------------------------------------------

    def _resolve_name(self, type_id: int, namespace: dict[str, int]) -> str:
        name = self.names.get(type_id)
        if name is not None:
            return name
        t = self.types[type_id]
        name = t.name  # type: ignore[union-attr]
        k = self.kinds[type_id]
        if name and not (k == _FWD or (k == _ENUM and not t.values)):  # type: ignore[union-attr]
            count = namespace.get(name, 0) + 1
            namespace[name] = count
            if count > 1:
                name = f"{name}___{count}"
        self.names[type_id] = name
        return name

    def _type_name(self, type_id: int) -> str:
        return self._resolve_name(type_id, self.type_names)

    def _ident_name(self, type_id: int) -> str:
        return self._resolve_name(type_id, self.ident_names)

    # --- definitions -------------------------------------------------------------------

    def _struct_fwd(self, type_id: int, k: int) -> None:
        name = self._type_name(type_id)
        self.out(
            ("struct " if k == _STRUCT else "union ") + name
            if name
            else ("struct" if k == _STRUCT else "union")
        )

    def _fwd_def(self, type_id: int, t: object) -> None:
        self.out(("union " if t.union else "struct ") + self._type_name(type_id))  # type: ignore[attr-defined]

    def _typedef_def(self, type_id: int, t: object) -> None:
        name = self._ident_name(type_id)
        target = t.type  # type: ignore[attr-defined]
        if target == 0 and name == "__gnuc_va_list":
            self.out("typedef __builtin_va_list __gnuc_va_list")
            return
        self.out("typedef ")
        self._decl(target, name, 0)

    def _enum_def(self, type_id: int, t: object, lvl: int) -> None:
        out = self.out
        name = self._type_name(type_id)
        out(f"enum {name}" if name else "enum")
        values = t.values  # type: ignore[attr-defined]
        if not values:
            return
        out(" {")
        pfx = "\n" + "\t" * (lvl + 1)
        idents = self.ident_names
        is64 = self.kinds[type_id] == _ENUM64
        signed = t.signed  # type: ignore[attr-defined]
        suffix = ("LL" if signed else "ULL") if is64 else ""
        mask = (1 << 64) - 1 if is64 else (1 << 32) - 1
        for v in values:
            vname = v.name
            count = idents.get(vname, 0) + 1
            idents[vname] = count
            value = v.value if signed else v.value & mask
            if count > 1:
                out(f"{pfx}{vname}___{count} = {value}{suffix},")
            else:
                out(f"{pfx}{vname} = {value}{suffix},")
        out("\n" + "\t" * lvl + "}")
        size = t.size  # type: ignore[attr-defined]
        if size == 1:
            out(" __attribute__((mode(byte)))")
        elif size == 8 and (not is64 or all((v.value & mask) >> 32 == 0 for v in values)):
            # A 32-bit enum cannot be 8 bytes without mode(word); an ENUM64 becomes 8 bytes by
            # itself only if some value needs more than 32 bits.
            out(" __attribute__((mode(word)))")

    def _struct_def(self, type_id: int, t: object, lvl: int) -> None:
        out = self.out
        k = self.kinds[type_id]
        is_struct = k == _STRUCT
        name = self._type_name(type_id)
        kw = "struct" if is_struct else "union"
        out(f"{kw} {name} {{" if name else f"{kw} {{")
        members = t.members  # type: ignore[attr-defined]
        size = t.size  # type: ignore[attr-defined]
        packed = is_struct and self._is_packed(t)
        pfx = "\n" + "\t" * (lvl + 1)
        off = 0
        prev_bitfield = False
        decl = self._decl
        size_of = self.size_of
        for m in members:
            m_sz = m.bitfield_size
            m_off = m.offset
            if off < m_off:
                m_align = 1 if packed else self.align_of(m.type)
                self._bit_padding(off, m_off, m_align, prev_bitfield and m_sz != 0, lvl + 1, packed)
            out(pfx)
            decl(m.type, m.name, lvl + 1)
            if m_sz:
                out(f": {m_sz};")
                off = m_off + m_sz
                prev_bitfield = True
            else:
                off = m_off + size_of(m.type) * 8
                prev_bitfield = False
                out(";")
        if is_struct and off < size * 8:
            self._bit_padding(off, size * 8, self.align_of(type_id), False, lvl + 1, packed)
        if members or size:
            out("\n" + "\t" * lvl + "}")
        else:
            out("}")
        if packed:
            out(" __attribute__((packed))")
        elif not is_struct and members:
            out(self._union_attribute(t))

    def _union_attribute(self, t: object) -> str:
        """What a union needs for C to give it its BTF size (libbpf writes nothing here).

        C makes a union as big as its biggest member, rounded up to its alignment: a bigger
        BTF size (an over-aligned union) needs ``aligned(N)``, a smaller one (a packed union)
        ``packed``.
        """
        size = t.size  # type: ignore[attr-defined]
        biggest = max(
            (m.offset + m.bitfield_size + 7) // 8 if m.bitfield_size else self.size_of(m.type)
            for m in t.members  # type: ignore[attr-defined]
        )
        align = max(max(self.align_of(m.type) for m in t.members), 1)  # type: ignore[attr-defined]
        natural = -(-biggest // align) * align
        if natural == size:
            return ""
        if size < natural:
            return " __attribute__((packed))" if biggest == size else ""
        n = align
        while n <= size:
            if -(-biggest // n) * n == size:
                return f" __attribute__((aligned({n})))"
            n *= 2
        return ""

    def _bit_padding(
        self, cur: int, nxt: int, next_align: int, in_bitfield: bool, lvl: int, packed: bool = False
    ) -> None:
        """Explicit padding from bit ``cur`` to bit ``nxt`` (libbpf's choice of pad types).

        libbpf lets the pad type's natural alignment cover the first part of a gap; in a packed
        struct nothing is aligned but the next byte, so a ``long: 0;`` marker (zero-width
        bitfields align even there) is written when more than a byte's rest is skipped.
        """
        out = self.out
        pfx = "\n" + "\t" * lvl
        pad_type, pad_bits, new = "char", 8, cur
        for pad_type, pad_bits in _PADS:
            new = -(-cur // pad_bits) * pad_bits
            if new <= nxt:
                break
        if cur < new <= nxt:
            align_bits = next_align * 8
            if (
                in_bitfield
                or (packed and -(-cur // 8) * 8 != new)
                or (new == nxt and -(-cur // align_bits) * align_bits != new)
                or (new != nxt and nxt - new <= new - cur)
            ):
                out(f"{pfx}{pad_type}: {new - cur if in_bitfield else 0};")
            cur = new
        while cur != nxt:
            bits = min(nxt - cur, pad_bits)
            if bits == pad_bits:
                out(f"{pfx}{pad_type}: {pad_bits};")
                cur += bits
                continue
            for small_type, small_bits in reversed(_PADS):
                if small_bits >= bits:
                    out(f"{pfx}{small_type}: {bits};")
                    cur += bits
                    break

    # --- declarations ------------------------------------------------------------------

    def _decl(self, type_id: int, fname: str, lvl: int) -> None:
        """``<type> <fname>`` in C declarator syntax (``int (*f[4])(void)``)."""
        types = self.types
        kinds = self.kinds
        k = kinds[type_id]
        # The common one-word cases, written directly: `int x`, `u32 x`, `struct s x`, `T *x`.
        if k == _TYPEDEF or k == _INT or k == _PTR:
            target = type_id
            ptr = k == _PTR
            if ptr:
                target = types[type_id].type  # type: ignore[union-attr]
                k = kinds[target]
            if k == _TYPEDEF:
                base = self._ident_name(target)
            elif k == _INT or k == _FLOAT:
                base = types[target].name  # type: ignore[union-attr]
            elif (k == _STRUCT or k == _UNION) and types[target].name:  # type: ignore[union-attr]
                base = ("struct " if k == _STRUCT else "union ") + self._type_name(target)
            elif target == 0 and ptr:
                base = "void"
            else:
                base = ""
            if base:
                if ptr:
                    self.out(f"{base} *{fname}")
                elif fname:
                    self.out(f"{base} {fname}")
                else:
                    self.out(base)
                return
            k = kinds[type_id]
        stack = []
        while True:
            stack.append(type_id)
            k = kinds[type_id]
            if k in _CHAIN_NEXT:
                type_id = types[type_id].type  # type: ignore[union-attr]
            elif k == _FUNC_PROTO:
                type_id = types[type_id].return_type  # type: ignore[union-attr]
            elif k in _CHAIN_END:
                break
            else:
                raise BTFError(f"type [{type_id}] {Kind(k).name} cannot be part of a C declaration")
            if type_id == 0:
                stack.append(0)
                break
        self._chain(stack, fname, lvl)

    def _mods(self, decls: list[int]) -> None:
        kinds = self.kinds
        out = self.out
        while decls:
            k = kinds[decls[-1]]
            if k == _VOLATILE:
                out("volatile ")
            elif k == _CONST:
                out("const ")
            elif k == _RESTRICT:
                out("restrict ")
            else:
                return
            decls.pop()

    def _drop_mods(self, decls: list[int]) -> None:
        kinds = self.kinds
        while decls and kinds[decls[-1]] in _MODS:
            decls.pop()

    def _chain(self, decls: list[int], fname: str, lvl: int) -> None:
        types = self.types
        kinds = self.kinds
        out = self.out
        last_was_ptr = True
        while decls:
            type_id = decls.pop()
            if type_id == 0:
                self._mods(decls)
                out("void")
                last_was_ptr = False
                continue
            k = kinds[type_id]
            t = types[type_id]
            if k == _PTR:
                out("*" if last_was_ptr else " *")
                last_was_ptr = True
                continue
            if k == _TYPEDEF:
                self._mods(decls)
                out(self._ident_name(type_id))
            elif k == _INT or k == _FLOAT:
                self._mods(decls)
                out(t.name)  # type: ignore[union-attr]
            elif k == _STRUCT or k == _UNION:
                self._mods(decls)
                if t.name:  # type: ignore[union-attr]
                    self._struct_fwd(type_id, k)
                else:
                    self._struct_def(type_id, t, lvl)
            elif k == _CONST:
                out(" const")
            elif k == _VOLATILE:
                out(" volatile")
            elif k == _RESTRICT:
                out(" restrict")
            elif k == _ENUM or k == _ENUM64:
                self._mods(decls)
                if t.name:  # type: ignore[union-attr]
                    out("enum " + self._type_name(type_id))
                else:
                    self._enum_def(type_id, t, lvl)
            elif k == _FWD:
                self._mods(decls)
                self._fwd_def(type_id, t)
            elif k == _TYPE_TAG:
                self._mods(decls)
                if t.attribute:  # type: ignore[union-attr]
                    out(f" __attribute__(({t.name}))")  # type: ignore[union-attr]
                else:
                    out(f' __attribute__((btf_type_tag("{t.name}")))')  # type: ignore[union-attr]
            elif k == _ARRAY:
                self._drop_mods(decls)
                nelems = t.nelems  # type: ignore[union-attr]
                if not decls:
                    if fname and not last_was_ptr:
                        out(" ")
                    out(f"{fname}[{nelems}]")
                    return
                multidim = kinds[decls[-1]] == _ARRAY
                if fname and not last_was_ptr:
                    out(" ")
                if not multidim:
                    out("(")
                self._chain(decls, fname, lvl)
                if not multidim:
                    out(")")
                out(f"[{nelems}]")
                return
            elif k == _FUNC_PROTO:
                self._drop_mods(decls)
                if decls:
                    out(" (")
                    self._chain(decls, fname, lvl)
                    out(")")
                else:
                    if fname and not last_was_ptr:
                        out(" ")
                    out(fname)
                params = t.params  # type: ignore[union-attr]
                if not params or (len(params) == 1 and params[0].type == 0):
                    out("(void)")
                    return
                out("(")
                last = len(params) - 1
                for i, p in enumerate(params):
                    if i:
                        out(", ")
                    if i == last and p.type == 0:
                        out("...")
                        break
                    self._decl(p.type, p.name, lvl)
                out(")")
                return
            last_was_ptr = False
        if fname and not last_was_ptr:
            out(" ")
        out(fname)

    # --- sizes and alignment -----------------------------------------------------------

    def size_of(self, type_id: int) -> int:
        """libbpf's ``btf__resolve_size``, with 0 for what has no size."""
        size = self._size[type_id]
        if size < 0:
            size = self._size[type_id] = self._resolve_size(type_id)
        return size

    def _resolve_size(self, type_id: int) -> int:
        types = self.types
        kinds = self.kinds
        nelems = 1
        for _ in range(32):
            if type_id == 0:
                return 0
            k = kinds[type_id]
            t = types[type_id]
            if k == _PTR:
                return nelems * POINTER_SIZE
            if k in (_INT, _STRUCT, _UNION, _ENUM, _ENUM64, _DATASEC, _FLOAT):
                return nelems * t.size  # type: ignore[union-attr]
            if k == _ARRAY:
                nelems *= t.nelems  # type: ignore[union-attr]
                type_id = t.type  # type: ignore[union-attr]
            elif k in (_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _VAR, _DECL_TAG, _TYPE_TAG):
                type_id = t.type  # type: ignore[union-attr]
            else:
                return 0
        return 0

    def align_of(self, type_id: int) -> int:
        """libbpf's ``btf__align_of`` (0 for what has no alignment)."""
        cached = self._align[type_id]
        if cached >= 0:
            return cached
        types = self.types
        k = self.kinds[type_id]
        t = types[type_id]
        align: int
        if k in (_INT, _ENUM, _ENUM64, _FLOAT):
            align = min(POINTER_SIZE, t.size)  # type: ignore[union-attr]
        elif k == _PTR:
            align = POINTER_SIZE
        elif k in (_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG, _ARRAY):
            align = self.align_of(t.type)  # type: ignore[union-attr]
        elif k == _STRUCT or k == _UNION:
            align = 1
            for m in t.members:  # type: ignore[union-attr]
                member_align = self.align_of(m.type)
                if member_align <= 0:
                    align = 0
                    break
                align = max(align, member_align)
                if not m.bitfield_size and m.offset % (8 * member_align):
                    align = 1
                    break
            else:
                if t.size % align:  # type: ignore[union-attr]
                    align = 1
        else:
            align = 0
        self._align[type_id] = align
        return align

    def _is_packed(self, t: object) -> bool:
        """Whether a struct needs ``__attribute__((packed))`` to get its BTF layout.

        As libbpf: a member off its alignment, or a size that is not a multiple of it. Also
        (libbpf misses it): a bitfield straddling a unit of its type (``int x: 17`` at bit
        16), which a non-packed struct would move to the next unit.
        """
        max_align = 1
        for m in t.members:  # type: ignore[attr-defined]
            align = self.align_of(m.type)
            if align:
                if m.bitfield_size:
                    unit = 8 * align
                    if m.offset // unit != (m.offset + m.bitfield_size - 1) // unit:
                        return True
                elif m.offset % (8 * align):
                    return True
            max_align = max(max_align, align)
        return bool(t.size % max_align)  # type: ignore[attr-defined]
