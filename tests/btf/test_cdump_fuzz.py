"""Differential fuzz of the C dump: random C structs -> clang BTF -> dump_c -> clang BTF again.

Every named struct, union and enum must come back with the same size, member names, bit
offsets and bitfield sizes: the dump is checked against the compiler, not against itself.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ebpf import btf
from ebpf.btf.cdump import dump_c

CLANG = shutil.which("clang-19") or shutil.which("clang")

pytestmark = pytest.mark.skipif(CLANG is None, reason="clang-19 is not installed")

SCALARS = [
    "char",
    "unsigned char",
    "short",
    "unsigned short",
    "int",
    "unsigned int",
    "long",
    "unsigned long",
    "long long",
    "void *",
    "enum small",
    "enum wide",
    "float",
    "double",
]
BITFIELD_TYPES = {
    "char": 8,
    "unsigned char": 8,
    "short": 16,
    "unsigned int": 32,
    "int": 32,
    "unsigned long": 64,
}


@st.composite
def member(draw: st.DrawFn, depth: int, counter: list[int]) -> str:
    index = counter[0]
    counter[0] += 1
    name = f"m{index}"
    choice = draw(st.integers(0, 9 if depth < 2 else 6))
    if choice <= 3:
        return f"{draw(st.sampled_from(SCALARS))} {name};"
    if choice == 4:
        return f"{draw(st.sampled_from(SCALARS))} {name}[{draw(st.integers(1, 5))}];"
    if choice in (5, 6):
        base = draw(st.sampled_from(sorted(BITFIELD_TYPES)))
        width = draw(st.integers(0 if index else 1, BITFIELD_TYPES[base]))
        return f"{base} {'' if width == 0 else name}: {width};"
    if choice == 7:
        align = draw(st.sampled_from([2, 4, 8, 16, 32]))
        return f"{draw(st.sampled_from(SCALARS))} {name} __attribute__((aligned({align})));"
    kind = draw(st.sampled_from(["struct", "union"]))
    inner = draw(aggregate_body(depth + 1, counter))
    named = draw(st.booleans())
    return f"{kind} {{{inner}}}{' ' + name if named else ''};"


@st.composite
def aggregate_body(draw: st.DrawFn, depth: int, counter: list[int]) -> str:
    count = draw(st.integers(1, 6))
    return " ".join(draw(member(depth, counter)) for _ in range(count))


@st.composite
def program(draw: st.DrawFn) -> str:
    decls = ["enum small { S0, S1 } __attribute__((packed));", "enum wide { W0, W1 = 0x1ffffffffULL };"]
    for i in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["struct", "union"]))
        attr = draw(st.sampled_from(["", " __attribute__((packed))", " __attribute__((aligned(16)))"]))
        decls.append(f"{kind} t{i} {{{draw(aggregate_body(0, [0]))}}}{attr};")
        decls.append(f"{kind} t{i} v{i};")
    return "\n".join(decls) + "\n"


def compile_c(path: Path, text: str) -> btf.Spec:
    assert CLANG is not None
    path.with_suffix(".c").write_text(text)
    proc = subprocess.run(
        [
            CLANG,
            "-g",
            "-O2",
            "-target",
            "bpf",
            "-c",
            str(path.with_suffix(".c")),
            "-o",
            str(path.with_suffix(".o")),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise AssertionError(f"clang failed:\n{text}\n{proc.stderr}")
    with path.with_suffix(".o").open("rb") as f:
        section = ELFFile(f).get_section_by_name(".BTF")
        assert section is not None
        return btf.Spec.from_bytes(section.data())


def layouts(spec: btf.Spec) -> dict[str, tuple[int, tuple[tuple[str, int, int], ...]]]:
    out = {}
    for t in spec:
        if isinstance(t, btf.Struct | btf.Union) and t.name:
            out[t.name] = (t.size, tuple((m.name, m.offset, m.bitfield_size) for m in t.members))
        elif isinstance(t, btf.Enum | btf.Enum64) and t.name:
            out[t.name] = (t.size, ())
    return out


ENUMS = "enum small { S0, S1 } __attribute__((packed));\nenum wide { W0, W1 = 0x1ffffffffULL };\n"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source=program())
# found by this test (libbpf 1.1 gets both wrong): a gap in a packed struct left to natural
# alignment, and a packed union smaller than its member's type
@example(
    source=ENUMS
    + "struct t0 {char m0; short m1; char m2 __attribute__((aligned(16)));} __attribute__((packed));\n"
    + "struct t0 v0;\n"
)
@example(source=ENUMS + "union t0 {int m0: 1;} __attribute__((packed));\nunion t0 v0;\n")
def test_dump_compiles_to_the_same_layout(tmp_path: Path, source: str) -> None:
    original = compile_c(tmp_path / "orig", source)
    header = dump_c(original)
    uses = "".join(f"{kind} {name} u_{name};\n" for kind, name in _named(original))
    again = compile_c(tmp_path / "again", header + uses)
    want = layouts(original)
    got = layouts(again)
    assert {k: got.get(k) for k in want} == want, header


def _named(spec: btf.Spec) -> list[tuple[str, str]]:
    out = []
    for t in spec:
        if isinstance(t, btf.Struct | btf.Union) and t.name:
            out.append(("struct" if isinstance(t, btf.Struct) else "union", t.name))
    return out
