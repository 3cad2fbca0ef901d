"""Differential CO-RE tests: libbpf (libbpf-dev, through tests/data/core/libbpf_oracle.c)
relocates tests/data/core/local.el.o against target BTFs built here, and logs every patch;
our engine must make the same instructions, poison the same ones and fail on the same
relocation. libbpf's ``bpf_object__load`` calls bpf() (feature probes, program loads), hence
the kernel mark; the programs themselves are rejected afterwards, which does not matter.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from ebpf import btf, isa
from ebpf.btf.core import POISON_IMM, relocate_core, relocate_program
from ebpf.errors import RelocationError
from ebpf.spec import CollectionSpec

from .test_core import CHAR, INT, INT8, LOCAL, LONG, OBJ, PINNER, UINT, VMLINUX, Obj, load, target_types

pytestmark = pytest.mark.kernel

DATA = Path(__file__).parent.parent / "data" / "core"
GCC = shutil.which("gcc") or shutil.which("cc")

_PATCH = re.compile(
    r"prog '(\w+)': relo #(\d+): patched insn #(\d+) \((ALU/ALU64|LDX/ST/STX|LDIMM64)\) (imm64|imm|off|mem_sz) (\d+) -> (\d+)"
)
_POISON = re.compile(r"prog '(\w+)': relo #(\d+): substituting insn #(\d+) w/ invalid insn")
_RELO = re.compile(r"prog '(\w+)': relo #(\d+): ")
_SIZE = {1: 0x10, 2: 0x08, 4: 0x00, 8: 0x18}


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if GCC is None:
        pytest.skip("no C compiler to build the libbpf oracle")
    if not Path("/usr/include/bpf/libbpf.h").exists():
        pytest.skip("libbpf-dev is not installed (no <bpf/libbpf.h>)")
    exe = tmp_path_factory.mktemp("oracle") / "libbpf_oracle"
    subprocess.run([GCC, "-O1", "-o", str(exe), str(DATA / "libbpf_oracle.c"), "-lbpf"], check=True)
    return exe


_LINE = re.compile(r"libbpf: (prog '(\w+)': relo #\d+: .*)")


def libbpf_log(log: str) -> dict[str, list[str]]:
    """libbpf's CO-RE debug lines per program (without the partial specs of non-matching
    candidates, which we do not print)."""
    out: dict[str, list[str]] = {}
    for line in log.splitlines():
        if (m := _LINE.match(line)) and "non-matching candidate" not in line:
            out.setdefault(m[2], []).append(m[1])
    return out


class OracleCrashError(Exception):
    """libbpf itself crashed (it divides by the size of a bitfield's type, for one)."""


def libbpf(
    oracle: Path, target: btf.Spec | Path, tmp_path: Path, obj: Obj = LOCAL, name: str = "local.el.o"
) -> tuple[dict[str, isa.Program], tuple[str, int] | None, dict[str, list[str]]]:
    """The programs as libbpf relocated them (those it got to), (program, relo #) of the
    relocation that failed, if any, and libbpf's log lines per program."""
    if isinstance(target, Path):
        path = target
    else:
        path = tmp_path / "target.btf"
        path.write_bytes(target.to_bytes())
    run = subprocess.run(
        [str(oracle), str(DATA / name), str(path)], capture_output=True, text=True, check=False
    )
    if run.returncode:
        raise OracleCrashError(f"libbpf oracle exited with {run.returncode}")
    log = run.stdout
    by_name = {p.name: p for p in obj.programs.values()}
    slots: dict[str, dict[int, list[isa.Instruction]]] = {}

    def program(name: str) -> dict[int, list[isa.Instruction]]:
        if name not in slots:
            pos, table = 0, {}
            for insn in by_name[name].instructions:
                table[pos] = [insn]
                pos += insn.slots
            slots[name] = table
        return slots[name]

    last: tuple[str, int] | None = None
    done: set[tuple[str, int]] = set()
    for line in log.splitlines():
        if m := _RELO.search(line):
            last = (m[1], int(m[2]))
        if m := _PATCH.search(line):
            name, slot, what, new = m[1], int(m[3]), m[5], int(m[7])
            (insn,) = program(name)[slot]
            if what in ("imm", "imm64"):
                insn = isa.Instruction(insn.opcode, insn.dst, insn.src, insn.offset, new)
            elif what == "off":
                insn = isa.Instruction(insn.opcode, insn.dst, insn.src, new, insn.imm)
            else:
                insn = isa.Instruction(
                    insn.opcode & ~0x18 | _SIZE[new], insn.dst, insn.src, insn.offset, insn.imm
                )
            program(name)[slot] = [insn]
            done.add((name, int(m[2])))
        elif m := _POISON.search(line):
            program(m[1])[int(m[3])] = [isa.Instruction(0x85, imm=POISON_IMM)]
            done.add((m[1], int(m[2])))
    # libbpf stops at the first relocation it cannot apply: the last one it logged, unpatched
    failed = last if last is not None and last not in done else None
    out = {
        name: isa.Program([i for _, insns in sorted(table.items()) for i in insns])
        for name, table in slots.items()
    }
    return out, failed, libbpf_log(log)


def compare(
    oracle: Path, target: btf.Spec | None, tmp_path: Path, obj: Obj = LOCAL, file: str = "local.el.o"
) -> tuple[str, int] | None:
    """Relocate the whole object as libbpf does (programs in .BTF.ext order, one candidate
    cache) and compare instructions and log lines program by program."""
    theirs, failed, logs = libbpf(oracle, VMLINUX if target is None else target, tmp_path, obj, file)
    if target is None:
        target = btf.Spec.from_file(VMLINUX)
    if failed is None:
        assert set(theirs) == {p.name for p in obj.programs.values()}, "libbpf skipped programs"
    coll = CollectionSpec(programs={p.name: p for p in obj.programs.values()}, btf=obj.btf)
    lines: list[str] = []
    if failed is None:
        out = relocate_core(coll, target, log=lines).programs
    else:
        with pytest.raises(RelocationError, match=rf"relo #{failed[1]}:") as info:
            relocate_core(coll, target, log=lines)
        assert info.value.program == failed[0]
        # what libbpf got through before the failing relocation
        done = list(coll.programs)[: list(coll.programs).index(failed[0])]
        coll.programs = {name: coll.programs[name] for name in done}
        out = relocate_core(coll, target).programs
    ours_log: dict[str, list[str]] = {}
    for line in lines:
        ours_log.setdefault(line.split("'")[1], []).append(line)
    for name, expected in theirs.items():
        if failed and failed[0] == name:
            # up to the failure, the same lines (libbpf then prints why, in its words)
            assert ours_log[name] == logs[name][: len(ours_log[name])], name
            continue
        assert ours_log.get(name, []) == logs.get(name, []), name
        ours = out[name].instructions
        diffs = [
            f"{i}: ours {a} libbpf {b}" for i, (a, b) in enumerate(zip(ours, expected, strict=True)) if a != b
        ]
        assert diffs == [], name
    return failed


@pytest.mark.skipif(not VMLINUX.exists(), reason="no /sys/kernel/btf/vmlinux")
def test_tracer_against_vmlinux_like_libbpf(oracle: Path, tmp_path: Path) -> None:
    """tracer.o against the kernel's BTF: 28 relocations, same instructions and log lines."""
    assert compare(oracle, None, tmp_path, load("tracer.o"), "tracer.o") is None


def test_moved_renamed_resized(oracle: Path, tmp_path: Path) -> None:
    assert compare(oracle, btf.Spec.build(target_types()), tmp_path) is None


def test_signed_resize_poisons(oracle: Path, tmp_path: Path) -> None:
    assert compare(oracle, btf.Spec.build(target_types(half=(INT, 1152, 0))), tmp_path) is None


def test_incompatible_and_missing_members(oracle: Path, tmp_path: Path) -> None:
    target = btf.Spec.build(target_types(x=(PINNER, 320, 0), arr=None, flags=None, name=(INT8, 0, 0)))
    assert compare(oracle, target, tmp_path) is None


def test_missing_enumerators_and_types(oracle: Path, tmp_path: Path) -> None:
    types = target_types()
    types[12] = btf.Enum(
        "color", 4, (btf.EnumValue("GREEN", -5), btf.EnumValue("BLUE", 0xFFFFFFFF)), signed=False
    )
    types[13] = btf.Enum("big", 8, (btf.EnumValue("SMALL", 1),))
    assert compare(oracle, btf.Spec.build(types), tmp_path) is None


def test_empty_target(oracle: Path, tmp_path: Path) -> None:
    assert (
        compare(oracle, btf.Spec.build([btf.Int("int", 4, btf.IntEncoding.SIGNED, bits=32)]), tmp_path)
        is None
    )


def test_flavored_target_candidates(oracle: Path, tmp_path: Path) -> None:
    """obj___v2 finds both obj and a target obj___v2 that has `gone`; they agree on y."""
    v2 = btf.Struct("obj___v2", 40, (btf.Member("gone", INT, 0), btf.Member("y", LONG, 256)))
    assert compare(oracle, btf.Spec.build([*target_types(), v2]), tmp_path) is None


def test_ambiguity_fails_like_libbpf(oracle: Path, tmp_path: Path) -> None:
    types = target_types()
    obj = types[OBJ - 1]
    assert isinstance(obj, btf.Struct)
    other = btf.Struct(
        "obj___other",
        obj.size,
        tuple(
            btf.Member(m.name, m.type, m.offset + 64 * (m.name == "y"), m.bitfield_size) for m in obj.members
        ),
        True,
    )
    assert compare(oracle, btf.Spec.build([*types, other]), tmp_path) == ("offsets", 1)


def test_bitfield_wider_than_u64_fails(oracle: Path, tmp_path: Path) -> None:
    target = btf.Spec.build(target_types(flags=(UINT, 1024 + 62, 3), sbits=None, y=(CHAR, 256, 0)))
    assert compare(oracle, target, tmp_path) == ("bitfields", 0)
    with pytest.raises(RelocationError, match="can't be read with a 64-bit load"):
        relocate_program(LOCAL.programs["socket/bitfields"], target)


# --- random targets -----------------------------------------------------------------------------

SHORT, INNER, CHAR32, ANON = 4, 6, 8, 9
_FIELD_TYPES = [INT, LONG, UINT, SHORT, CHAR, INNER, INT8, CHAR32, PINNER]
_SIZES = {INT: 4, LONG: 8, UINT: 4, SHORT: 2, CHAR: 1, INNER: 12, INT8: 32, CHAR32: 32, PINNER: 8, ANON: 8}


@st.composite
def random_target(draw: st.DrawFn) -> btf.Spec:
    changes: dict[str, tuple[int, int, int] | None] = {}
    for name in ("name", "y", "x", "in", "", "arr", "ptr", "half"):
        action = draw(st.sampled_from(["keep", "keep", "drop", "move", "retype"]))
        if action == "drop":
            changes[name] = None
        elif action in ("move", "retype"):
            tid = ANON if name == "" else draw(st.sampled_from(_FIELD_TYPES)) if action == "retype" else None
            if tid is None:
                tid = dict(target_types_members())[name]
            size = _SIZES[tid]
            changes[name] = (
                tid,
                8 * size * draw(st.integers(0, 1280 // size - 1))
                if size <= 8
                else 8 * draw(st.integers(0, 80)) * 8,
                0,
            )
    for name in ("flags", "sbits"):
        if draw(st.booleans()):
            kind = draw(st.sampled_from([UINT, INT, SHORT, LONG, CHAR]))
            width = draw(st.integers(1, 8 * _SIZES[kind]))
            changes[name] = (
                (kind, 1024 + draw(st.integers(0, 200)), width) if draw(st.integers(0, 5)) else None
            )
    types = target_types(**changes)
    # enums: values kept, dropped or changed
    values = [
        btf.EnumValue(n, draw(st.integers(-(2**31), 2**32 - 1)))
        for n in ("RED", "GREEN", "BLUE")
        if draw(st.booleans())
    ]
    signed = any(v.value < 0 for v in values)
    if not signed:
        values = [btf.EnumValue(v.name, v.value) for v in values]
    else:
        values = [btf.EnumValue(v.name, v.value if v.value < 2**31 else v.value - 2**32) for v in values]
    types[12] = btf.Enum("color", 4, tuple(values), signed=signed)
    if draw(st.booleans()):
        types[13] = btf.Enum64("big", 8, (btf.EnumValue("HUGE", draw(st.integers(0, 2**64 - 1))),))
    # struct inner: members shuffled, retyped or dropped (type_size, type_matches, in.b)
    inner = [
        btf.Member(n, draw(st.sampled_from([INT, SHORT, UINT, LONG, CHAR])), 64 * i)
        for i, n in enumerate("abc")
    ]
    inner = [m for m in draw(st.permutations(inner)) if draw(st.integers(0, 4))]
    types[INNER - 1] = btf.Struct("inner", draw(st.sampled_from([8, 12, 24])), tuple(inner))
    extra: list[btf.Type] = []
    if draw(st.booleans()):
        extra.append(btf.Struct("missing_type", 4, (btf.Member("z", INT, 0),)))
    if draw(st.booleans()):
        types[11] = btf.Typedef("obj_t___x", OBJ)
    obj = types[OBJ - 1]
    assert isinstance(obj, btf.Struct)
    for _ in range(draw(st.integers(0, 2))):
        # flavored duplicates: identical (no ambiguity) or with one member moved
        members = list(obj.members)
        if members and draw(st.booleans()):
            i = draw(st.integers(0, len(members) - 1))
            m = members[i]
            if not m.bitfield_size:
                members[i] = btf.Member(m.name, m.type, m.offset + 64, 0)
        extra.append(btf.Struct(f"obj___{len(extra)}", obj.size + 8, tuple(members), True))
    return btf.Spec.build([*types, *extra])


def target_types_members() -> list[tuple[str, int]]:
    obj = target_types()[OBJ - 1]
    assert isinstance(obj, btf.Struct)
    return [(m.name, m.type) for m in obj.members]


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(random_target())
def test_random_targets_agree_with_libbpf(oracle: Path, tmp_path: Path, target: btf.Spec) -> None:
    compare(oracle, target, tmp_path)


# --- mutated copies of the objects' own BTF -------------------------------------------------------

_SCALAR_SIZES = (1, 2, 4, 8)


@st.composite
def mutated(draw: st.DrawFn, spec: btf.Spec) -> btf.Spec:
    """A target made from the object's own BTF: members dropped, renamed, moved, retyped or
    turned into bitfields; ints resized; enums changed; arrays resized; names flavored; and
    sometimes a flavored duplicate of an aggregate (ambiguity)."""
    n = len(spec)
    plain = [
        i
        for i in range(1, n)
        if isinstance(spec[i], btf.Int | btf.Pointer | btf.Struct | btf.Union | btf.Enum)
    ]
    out: list[btf.Type] = []
    dups: list[btf.Type] = []
    for t in spec.types[1:]:
        if isinstance(t, btf.Struct | btf.Union) and draw(st.integers(0, 2)) == 0:
            members = []
            for m in t.members:
                op = draw(st.integers(0, 12))
                name, typ, off, bits = m.name, m.type, m.offset, m.bitfield_size
                if op == 0:
                    continue
                if op == 1 and name:
                    name += "x"
                elif op == 2:
                    off += 8 * draw(st.integers(1, 24))
                elif op == 3:
                    off = max(0, off - 8 * draw(st.integers(1, 8)))
                elif op == 4 and isinstance(spec.resolve(m.type), btf.Int | btf.Enum):
                    bits = draw(st.integers(1, 40))  # may exceed the type: libbpf's E2BIG path
                    off += draw(st.integers(0, 7))
                elif op == 5:
                    typ = draw(st.sampled_from(plain))
                    bits = 0
                members.append(btf.Member(name, typ, off, bits))
            if draw(st.booleans()):
                members = draw(st.permutations(members))
            kind_flag = t.kind_flag or any(m.bitfield_size for m in members)
            t = type(t)(t.name, t.size + 8 * draw(st.integers(0, 4)), tuple(members), kind_flag)
            if t.name and draw(st.integers(0, 3)) == 0:
                dup = list(t.members)
                if dup and draw(st.booleans()):
                    i = draw(st.integers(0, len(dup) - 1))
                    dup[i] = btf.Member(dup[i].name, dup[i].type, dup[i].offset + 32, dup[i].bitfield_size)
                dups.append(type(t)(f"{t.name}___dup{len(dups)}", t.size, tuple(dup), kind_flag))
        elif isinstance(t, btf.Int) and draw(st.integers(0, 4)) == 0:
            size = draw(st.sampled_from(_SCALAR_SIZES))
            t = btf.Int(
                t.name,
                size,
                draw(st.sampled_from([btf.IntEncoding.NONE, btf.IntEncoding.SIGNED])),
                bits=8 * size,
            )
        elif isinstance(t, btf.Enum | btf.Enum64) and draw(st.integers(0, 1)) == 0:
            values = [v for v in t.values if draw(st.integers(0, 3))]
            values = [btf.EnumValue(v.name, v.value + draw(st.sampled_from([0, 0, 1, 100]))) for v in values]
            signed = any(v.value < 0 for v in values)
            if draw(st.booleans()):
                t = btf.Enum64(t.name, 8, tuple(values), signed)
            else:
                values = [btf.EnumValue(v.name, max(-(2**31), min(v.value, 2**31 - 1))) for v in values]
                t = btf.Enum(t.name, draw(st.sampled_from([1, 2, 4, 8])), tuple(values), signed)
        elif isinstance(t, btf.Array) and draw(st.integers(0, 3)) == 0:
            t = btf.Array(t.type, t.index_type, draw(st.integers(0, 6)))
        if (
            getattr(t, "name", "")
            and isinstance(t, btf.Struct | btf.Union | btf.Typedef | btf.Enum | btf.Enum64)
            and draw(st.integers(0, 7)) == 0
        ):
            t = _renamed(t, t.name + draw(st.sampled_from(["___v1", "x", "___"])))
        out.append(t)
    return btf.Spec.build([*out, *dups])


def _renamed(t: btf.Type, name: str) -> btf.Type:
    import dataclasses

    return dataclasses.replace(t, name=name)  # type: ignore[type-var]


SHAPES = load("shapes.o")


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(st.data())
def test_mutated_own_btf_agrees_with_libbpf(oracle: Path, tmp_path: Path, data: st.DataObject) -> None:
    name, obj = data.draw(st.sampled_from([("shapes.o", SHAPES), ("local.el.o", LOCAL)]))
    target = data.draw(mutated(obj.btf))
    try:
        compare(oracle, target, tmp_path, obj, name)
    except OracleCrashError:
        reject()


# --- a thousand relocations against the running kernel ---------------------------------------------

CLANG = shutil.which("clang-19") or shutil.which("clang")


def _big_source(vmlinux: btf.Spec) -> str:
    """~1100 relocations over random vmlinux structs (fixed seed): scalar and bitfield members
    (offset, size, exists, signed, shifts), enumerator values, type sizes/matches/ids."""
    import random
    from collections import Counter

    rnd = random.Random(2)
    structs = [t for t in vmlinux.types if isinstance(t, btf.Struct) and t.name and t.members]
    enums = [t for t in vmlinux.types if isinstance(t, btf.Enum | btf.Enum64) and t.name and t.values]
    once = Counter(t.name for t in structs)
    once_enum = Counter(t.name for t in enums)
    lines: list[str] = []
    while len(lines) < 700:
        t = rnd.choice(structs)
        m = rnd.choice(t.members)
        mt = vmlinux.resolve(m.type)
        if (
            once[t.name] > 1
            or not m.name
            or not isinstance(mt, btf.Int | btf.Pointer | btf.Enum | btf.Enum64)
        ):
            continue
        kinds = ["BYTE_OFFSET", "BYTE_SIZE", "EXISTS"] + ([] if isinstance(mt, btf.Pointer) else ["SIGNED"])
        kinds += ["LSHIFT_U64", "RSHIFT_U64"] * 2 if m.bitfield_size else []
        k = rnd.choice(kinds)
        lines.append(f"r += __builtin_preserve_field_info(((struct {t.name} *)0)->{m.name}, BPF_FIELD_{k});")
    while len(lines) < 800:
        e = rnd.choice(enums)
        if once_enum[e.name] == 1:
            lines.append(f"r += bpf_core_enum_value(enum {e.name}, {rnd.choice(e.values).name});")
    while len(lines) < 900:
        t = rnd.choice(structs)
        if once[t.name] == 1:
            n = t.name
            lines.append(
                f"r += bpf_core_type_size(struct {n}) + bpf_core_type_matches(struct {n})"
                f" + bpf_core_type_id_kernel(struct {n});"
            )
    body = "\n\t".join(lines)
    return (
        '#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n#include <bpf/bpf_core_read.h>\n'
        f'SEC("tracepoint/x")\nint big(void *ctx)\n{{\n\tlong r = 0;\n\t{body}\n\treturn r;\n}}\n'
        'char LICENSE[] SEC("license") = "GPL";\n'
    )


@pytest.mark.skipif(not VMLINUX.exists(), reason="no /sys/kernel/btf/vmlinux")
@pytest.mark.skipif(CLANG is None or shutil.which("bpftool") is None, reason="needs clang and bpftool")
def test_a_thousand_vmlinux_relocations_like_libbpf(oracle: Path, tmp_path: Path) -> None:
    vmlinux = btf.Spec.from_file(VMLINUX)
    header = subprocess.run(
        ["bpftool", "btf", "dump", "file", str(VMLINUX), "format", "c"], check=True, capture_output=True
    ).stdout
    (tmp_path / "vmlinux.h").write_bytes(header)
    (tmp_path / "big.c").write_text(_big_source(vmlinux))
    obj_path = tmp_path / "big.o"
    assert CLANG is not None
    cc = subprocess.run(
        [
            CLANG,
            "-g",
            "-O2",
            "-target",
            "bpf",
            "-mllvm",
            "-bpf-stack-size=100000",
            "-c",
            "big.c",
            "-o",
            "big.o",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    if cc.returncode:
        pytest.skip(f"the generated source does not compile for this kernel: {cc.stderr[-300:]}")
    obj = load(obj_path)
    assert sum(len(p.core_relos) for p in obj.programs.values()) > 1000
    assert compare(oracle, None, tmp_path, obj, str(obj_path)) is None
