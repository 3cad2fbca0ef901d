"""C dumps (``vmlinux.h``): text as bpftool writes it, and headers that compile to the same layout.

Golden headers: ``data/kinds.h`` and ``data/vars.h`` are bpftool 7.1's
``bpftool btf dump file X.el.o format c``. The layout checks compile our header with clang-19
(``-target bpf -g``) and compare the BTF clang emits (names, kinds, sizes, member offsets) with
the BTF the header came from.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from ebpf import btf
from ebpf.btf.cdump import dump_c
from ebpf.errors import BTFError

DATA = Path(__file__).parent / "data"
VMLINUX = Path("/sys/kernel/btf/vmlinux")
CLANG = shutil.which("clang-19") or shutil.which("clang")
BPFTOOL = shutil.which("bpftool")
S = btf.IntEncoding.SIGNED

needs_clang = pytest.mark.skipif(CLANG is None, reason="clang-19 is not installed")


def elf_btf(path: Path) -> btf.Spec:
    with path.open("rb") as f:
        section = ELFFile(f).get_section_by_name(".BTF")
        assert section is not None
        return btf.Spec.from_bytes(section.data())


def body(text: str) -> str:
    """The header without bpftool's fixed preamble and postamble."""
    start = text.index("#endif\n\n") + len("#endif\n\n")
    end = text.rindex("#ifndef BPF_NO_PRESERVE_ACCESS_INDEX")
    return text[start:end]


Shape = tuple[int, tuple[tuple[str, int, int], ...]]


def shapes(spec: btf.Spec) -> dict[tuple[str, str], set[Shape]]:
    """Named structs, unions and enums by (kind, name without ___N): their sizes and layouts."""
    out: dict[tuple[str, str], set[Shape]] = {}
    for t in spec:
        if isinstance(t, btf.Struct | btf.Union) and t.name:
            shape: Shape = (t.size, tuple((m.name, m.offset, m.bitfield_size) for m in t.members))
        elif isinstance(t, btf.Enum | btf.Enum64) and t.name and t.values:
            shape = (t.size, tuple((re.sub(r"___\d+$", "", v.name), v.value, 0) for v in t.values))
        else:
            continue
        kind = "enum" if isinstance(t, btf.Enum | btf.Enum64) else type(t).__name__.lower()
        out.setdefault((kind, re.sub(r"___\d+$", "", t.name)), set()).add(shape)
    return out


def compile_header(tmp_path: Path, header: str, names: list[str] | None = None) -> btf.Spec:
    """Compile ``header`` with a global of every named struct/union/enum it defines (or ``names``)."""
    assert CLANG is not None
    (tmp_path / "out.h").write_text(header)
    if names is None:
        names = [
            f"{m[1]} {m[2]}" for m in re.finditer(r"^(struct|union|enum) (\w+) \{", header, re.MULTILINE)
        ]
    uses = "".join(f"{name} __v{i};\n" for i, name in enumerate(names))
    (tmp_path / "use.c").write_text(f'#include "out.h"\n{uses}')
    subprocess.run(
        [CLANG, "-g", "-O2", "-target", "bpf", "-Werror", "-c", "use.c", "-o", "use.o"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    return elf_btf(tmp_path / "use.o")


def assert_same_layout(original: btf.Spec, compiled: btf.Spec) -> None:
    want = shapes(original)
    got = shapes(compiled)
    for key, found in got.items():
        assert key in want, f"{key} is not in the original BTF"
        assert found <= want[key], f"{key}: compiled {found}, original {want[key]}"


# --- text ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stem", ["kinds", "vars"])
def test_objects_match_bpftool(stem: str) -> None:
    spec = elf_btf(DATA / f"{stem}.el.o")
    assert dump_c(spec) == (DATA / f"{stem}.h").read_text()


def test_preamble_and_postamble() -> None:
    text = dump_c(btf.Spec.build([]))
    assert text.startswith(
        "#ifndef __VMLINUX_H__\n#define __VMLINUX_H__\n\n#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n"
    )
    assert "#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)" in text
    assert text.endswith("#pragma clang attribute pop\n#endif\n\n#endif /* __VMLINUX_H__ */\n")
    assert body(text) == ""


INT = btf.Int("int", 4, S, bits=32)  # id 1
CHAR = btf.Int("char", 1, S, bits=8)  # id 2
ULONG = btf.Int("long unsigned int", 8, bits=64)  # id 3


def build(*types: btf.Type) -> btf.Spec:
    return btf.Spec.build([INT, CHAR, ULONG, *types])


def test_struct_cycle_gets_a_forward_declaration() -> None:
    # 4: struct a { struct b *b; }  5: ptr b  6: struct b { struct a a; int x; }
    spec = build(
        btf.Struct("a", 8, (btf.Member("b", 5, 0),)),
        btf.Pointer(6),
        btf.Struct("b", 16, (btf.Member("a", 4, 0), btf.Member("x", 1, 64))),
    )
    assert body(dump_c(spec)) == (
        "struct b;\n\nstruct a {\n\tstruct b *b;\n};\n\nstruct b {\n\tstruct a a;\n\tint x;\n};\n\n"
    )


def test_declarators() -> None:
    # function pointers, arrays of them, pointer to array, const/volatile/restrict, varargs
    spec = build(
        btf.FuncProto(1, (btf.FuncParam("x", 1), btf.FuncParam("", 0))),  # 4: int (int x, ...)
        btf.Pointer(4),  # 5
        btf.Array(5, 1, 4),  # 6: int (*[4])(int, ...)
        btf.Const(2),  # 7
        btf.Pointer(7),  # 8: const char *
        btf.Const(8),  # 9: const char *const
        btf.Array(1, 1, 3),  # 10: int [3]
        btf.Pointer(10),  # 11: int (*)[3]
        btf.Array(10, 1, 2),  # 12: int [2][3]
        btf.FuncProto(0, ()),  # 13: void (void)
        btf.Pointer(13),  # 14
        btf.Volatile(1),  # 15
        btf.Pointer(1),  # 16
        btf.Restrict(16),  # 17
        btf.Struct(
            "s",
            96,
            (
                btf.Member("ops", 6, 0),
                btf.Member("name", 9, 256),
                btf.Member("row", 11, 320),
                btf.Member("grid", 12, 384),
                btf.Member("cb", 14, 576),
                btf.Member("v", 15, 640),
                btf.Member("r", 17, 704),
            ),
        ),  # 18
        btf.Typedef("cb_t", 13),  # 19: typedef void cb_t(void)
    )
    assert body(dump_c(spec)) == (
        "struct s {\n"
        "\tint (*ops[4])(int x, ...);\n"
        "\tconst char * const name;\n"
        "\tint (*row)[3];\n"
        "\tint grid[2][3];\n"
        "\tvoid (*cb)(void);\n"
        "\tvolatile int v;\n"
        "\tint * restrict r;\n"
        "};\n\n"
        "typedef void cb_t(void);\n\n"
    )


def test_bitfields_padding_and_packed() -> None:
    spec = build(
        btf.Struct(
            "flags",
            8,
            (btf.Member("a", 1, 0, 3), btf.Member("b", 1, 8, 2), btf.Member("c", 2, 40)),
            kind_flag=True,
        ),  # 4
        btf.Struct("packed", 5, (btf.Member("c", 2, 0), btf.Member("x", 1, 8))),  # 5
        btf.Struct("empty", 0),  # 6
        btf.Union("u", 8, (btf.Member("x", 1, 0), btf.Member("l", 3, 0))),  # 7
    )
    assert body(dump_c(spec)) == (
        "struct flags {\n\tint a: 3;\n\tchar: 5;\n\tint b: 2;\n\tint: 0;\n\tchar: 8;\n\tchar c;\n};\n\n"
        "struct packed {\n\tchar c;\n\tint x;\n} __attribute__((packed));\n\n"
        "struct empty {};\n\n"
        "union u {\n\tint x;\n\tlong unsigned int l;\n};\n\n"
    )


def test_anonymous_members_enums_and_name_conflicts() -> None:
    red = btf.EnumValue("RED", 0)
    spec = build(
        btf.Enum("", 4, (btf.EnumValue("A", 1),)),  # 4: unreferenced anonymous: top-level
        btf.Enum("", 4, (btf.EnumValue("B", 2),)),  # 5: referenced: inline
        btf.Union("", 4, (btf.Member("i", 1, 0), btf.Member("e", 5, 0))),  # 6
        btf.Struct("outer", 8, (btf.Member("", 6, 0), btf.Member("n", 1, 32))),  # 7
        btf.Struct("outer", 4, (btf.Member("m", 1, 0),)),  # 8: same name
        btf.Enum("color", 1, (red,)),  # 9: one byte
        btf.Enum("color2", 4, (red,)),  # 10: RED again
        btf.Enum64("wide", 8, (btf.EnumValue("W", 1),)),  # 11: needs mode(word)
        btf.Enum64("huge", 8, (btf.EnumValue("H", 1 << 40),)),  # 12: 64-bit by itself
        btf.Typedef("__builtin_va_list", 14),  # 13: never redefined
        btf.Pointer(2),  # 14
        btf.Typedef("va_list", 13),  # 15
    )
    assert body(dump_c(spec)) == (
        "enum {\n\tA = 1,\n};\n\n"
        "struct outer {\n\tunion {\n\t\tint i;\n\t\tenum {\n\t\t\tB = 2,\n\t\t} e;\n\t};\n\tint n;\n};\n\n"
        "struct outer___2 {\n\tint m;\n};\n\n"
        "enum color {\n\tRED = 0,\n} __attribute__((mode(byte)));\n\n"
        "enum color2 {\n\tRED___2 = 0,\n};\n\n"
        "enum wide {\n\tW = 1ULL,\n} __attribute__((mode(word)));\n\n"
        "enum huge {\n\tH = 1099511627776ULL,\n};\n\n"
        "typedef __builtin_va_list va_list;\n\n"
    )


def test_ids_dump_only_what_the_roots_need() -> None:
    spec = build(
        btf.Struct("a", 4, (btf.Member("x", 1, 0),)),  # 4
        btf.Struct("b", 4, (btf.Member("a", 4, 0),)),  # 5
        btf.Struct("c", 4, (btf.Member("x", 1, 0),)),  # 6
    )
    text = body(dump_c(spec, ids=[5]))
    assert "struct a {" in text and "struct b {" in text and "struct c" not in text
    with pytest.raises(BTFError, match="out of range"):
        dump_c(spec, ids=[99])


def test_anonymous_struct_loop_is_an_error() -> None:
    spec = build(btf.Struct("", 4, (btf.Member("x", 4, 0),)))
    with pytest.raises(BTFError, match="loop"):
        dump_c(spec)


# --- compiled layouts ---------------------------------------------------------------------


@needs_clang
def test_built_types_compile_to_the_same_layout(tmp_path: Path) -> None:
    spec = build(
        btf.Struct(
            "flags",
            16,
            (
                btf.Member("a", 1, 0, 3),
                btf.Member("b", 1, 8, 2),
                btf.Member("c", 2, 40),
                btf.Member("d", 3, 64),
            ),
            kind_flag=True,
        ),  # 4
        btf.Struct("packed", 5, (btf.Member("c", 2, 0), btf.Member("x", 1, 8))),  # 5
        btf.Struct("holes", 32, (btf.Member("c", 2, 0), btf.Member("l", 3, 128))),  # 6
        btf.Enum("small", 1, (btf.EnumValue("S", 1),)),  # 7
        btf.Struct("with_small", 2, (btf.Member("s", 7, 0), btf.Member("c", 2, 8))),  # 8
        btf.Struct("outer", 24, (btf.Member("p", 5, 8), btf.Member("f", 4, 64))),  # 9
    )
    header = dump_c(spec)
    assert_same_layout(spec, compile_header(tmp_path, header))


@needs_clang
@pytest.mark.parametrize("stem", ["kinds", "vars"])
def test_objects_compile_to_the_same_layout(tmp_path: Path, stem: str) -> None:
    spec = elf_btf(DATA / f"{stem}.el.o")
    assert_same_layout(spec, compile_header(tmp_path, dump_c(spec)))


# --- vmlinux ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vmlinux() -> btf.Spec:
    if not VMLINUX.exists():
        pytest.skip(f"{VMLINUX} is absent")
    return btf.Spec.from_file(VMLINUX)


@pytest.fixture(scope="module")
def vmlinux_h(vmlinux: btf.Spec) -> str:
    return dump_c(vmlinux)


def test_vmlinux_dump_is_fast(vmlinux: btf.Spec) -> None:
    start = time.perf_counter()
    dump_c(vmlinux)
    elapsed = time.perf_counter() - start
    assert elapsed < 5, f"C dump of vmlinux took {elapsed:.2f} s"


@pytest.mark.skipif(BPFTOOL is None, reason="bpftool is not installed")
def test_vmlinux_text_is_bpftool_s(vmlinux_h: str) -> None:
    """Same text as bpftool 7.1 except mode(byte) on 1-byte enums (libbpf 1.1 drops it and
    gets their size wrong)."""
    assert BPFTOOL is not None
    theirs = subprocess.run(
        [BPFTOOL, "btf", "dump", "file", str(VMLINUX), "format", "c"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    ours_lines = vmlinux_h.splitlines()
    their_lines = theirs.splitlines()
    assert len(ours_lines) == len(their_lines)
    differ = [(a, b) for a, b in zip(ours_lines, their_lines, strict=True) if a != b]
    assert all(a == "} __attribute__((mode(byte)));" and b == "};" for a, b in differ), differ[:5]
    assert len(differ) < 50


@needs_clang
def test_vmlinux_header_compiles_to_the_kernel_layout(
    tmp_path: Path, vmlinux: btf.Spec, vmlinux_h: str
) -> None:
    """A sample of vmlinux's aggregates (every 25th, plus some big ones): clang's layout of our
    header equals the kernel's BTF. (The whole header, all 11k of them, takes clang 15 s.)"""
    defined = [
        f"{m[1]} {m[2]}" for m in re.finditer(r"^(struct|union|enum) (\w+) \{", vmlinux_h, re.MULTILINE)
    ]
    sample = defined[::25] + ["struct task_struct", "struct sk_buff", "struct bio", "enum rw_hint"]
    compiled = compile_header(tmp_path, vmlinux_h, sample)
    got = shapes(compiled)
    assert len(got) > 400
    want = shapes(vmlinux)
    # va_list is 24 bytes on x86-64 and 8 on the BPF target: the one inherent difference.
    mismatched = [key for key, found in got.items() if not found <= want.get(key, set())]
    assert set(mismatched) <= {("struct", "warn_args"), ("struct", "va_format")}, mismatched


def test_unions_get_the_attribute_their_size_needs(tmp_path: Path) -> None:
    """libbpf writes neither: an over-aligned union gets aligned(N), a packed one packed."""
    spec = build(
        btf.Union("over", 16, (btf.Member("x", 1, 0),)),  # 4
        btf.Array(2, 1, 5),  # 5: char[5]
        btf.Union("pk", 5, (btf.Member("c", 5, 0), btf.Member("x", 1, 0))),  # 6
        btf.Struct("holder", 32, (btf.Member("o", 4, 0), btf.Member("p", 6, 128))),  # 7
    )
    text = body(dump_c(spec))
    assert "union over {\n\tint x;\n} __attribute__((aligned(16)));\n" in text
    assert "union pk {\n\tchar c[5];\n\tint x;\n} __attribute__((packed));\n" in text
    if CLANG is not None:
        assert_same_layout(spec, compile_header(tmp_path, dump_c(spec)))


@needs_clang
@pytest.mark.skipif(BPFTOOL is None, reason="bpftool is not installed")
def test_vmlinux_headers_ours_and_bpftool_s_compile_alike(
    tmp_path: Path, vmlinux: btf.Spec, vmlinux_h: str
) -> None:
    """Both headers compiled by clang-19 (every 10th aggregate, same names in both): the same
    types, sizes and offsets, except where bpftool 7.1's header is wrong (its 1-byte enums are
    4 bytes, so the structs holding them move) and ours is the kernel's."""
    assert BPFTOOL is not None
    theirs_h = subprocess.run(
        [BPFTOOL, "btf", "dump", "file", str(VMLINUX), "format", "c"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    defined = [
        f"{m[1]} {m[2]}" for m in re.finditer(r"^(struct|union|enum) (\w+) \{", vmlinux_h, re.MULTILINE)
    ]
    sample = defined[::10]
    (tmp_path / "ours").mkdir()
    (tmp_path / "theirs").mkdir()
    ours = shapes(compile_header(tmp_path / "ours", vmlinux_h, sample))
    theirs = shapes(compile_header(tmp_path / "theirs", theirs_h, sample))
    kernel = shapes(vmlinux)
    assert ours.keys() == theirs.keys() and len(ours) > 1000
    differ = {key for key in ours if ours[key] != theirs[key]}
    for key in differ:  # where the two differ, ours is the kernel's layout
        assert ours[key] <= kernel[key], key
    one_byte_enums = {("enum", t.name) for t in vmlinux if isinstance(t, btf.Enum) and t.size == 1 and t.name}
    assert {key for key in differ if key[0] == "enum"} <= one_byte_enums
    wrong_in_ours = {key for key in ours if not ours[key] <= kernel.get(key, set())}
    assert wrong_in_ours <= {("struct", "warn_args"), ("struct", "va_format")}, wrong_in_ours


def test_kfunc_prototypes() -> None:
    spec = build(
        btf.Struct("task", 4, (btf.Member("pid", 1, 0),)),  # 4
        btf.Pointer(4),  # 5
        btf.FuncProto(5, (btf.FuncParam("pid", 1),)),  # 6
        btf.Func("bpf_task_from_pid", 6, btf.FuncLinkage.GLOBAL),  # 7
        btf.DeclTag("bpf_kfunc", 7),  # 8
        btf.DeclTag("bpf_fastcall", 7),  # 9
        btf.Func("not_a_kfunc", 6, btf.FuncLinkage.GLOBAL),  # 10
    )
    plain = dump_c(spec)
    assert "__ksym" not in plain  # bpftool 7.1's text by default
    text = dump_c(spec, kfuncs=True)
    assert '#ifndef __ksym\n#define __ksym __attribute__((section(".ksyms")))\n#endif\n' in text
    assert text.endswith(
        "/* BPF kfuncs */\n#ifndef BPF_NO_KFUNC_PROTOTYPES\n"
        "extern struct task *bpf_task_from_pid(int pid) __bpf_fastcall __weak __ksym;\n"
        "#endif\n\n#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute pop\n#endif\n\n"
        "#endif /* __VMLINUX_H__ */\n"
    )


@needs_clang
def test_vmlinux_kfuncs_compile_and_link_by_name(tmp_path: Path, vmlinux: btf.Spec) -> None:
    assert CLANG is not None
    (tmp_path / "vmlinux.h").write_text(dump_c(vmlinux, kfuncs=True))
    (tmp_path / "prog.c").write_text(
        '#include "vmlinux.h"\n'
        '__attribute__((section("tc"), used)) int prog(struct __sk_buff *skb)\n'
        "{\n\tstruct cgroup *c = bpf_cgroup_from_id(1);\n\tif (c)\n\t\tbpf_cgroup_release(c);\n\treturn 0;\n}\n"
    )
    subprocess.run(
        [CLANG, "-g", "-O2", "-target", "bpf", "-Werror", "-c", "prog.c", "-o", "prog.o"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    with (tmp_path / "prog.o").open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        names = {sym.name for sym in symtab.iter_symbols()}  # type: ignore[union-attr]
    assert {"bpf_cgroup_from_id", "bpf_cgroup_release"} <= names
