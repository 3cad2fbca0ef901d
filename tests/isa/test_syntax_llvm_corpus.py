"""format_llvm and assemble_llvm against llvm-objdump-19 on clang-built objects.

The corpus (tests/data/llvm/, rebuilt by build.sh) holds clang-19 objects for cpus v1-v4,
little- and big-endian, and their committed ``llvm-objdump-19 -d -r`` listings. These tests
need neither clang nor llvm-objdump; where llvm-objdump-19 is installed, the ``live`` tests
also run it, on the corpus and on random instructions.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebpf.isa import Instruction, Program, decode
from ebpf.isa.encoding import ByteOrder, encode
from ebpf.isa.opcodes import OP_CALL, OP_LDDW, CallKind, InsnClass, Mode
from ebpf.isa.syntax_llvm import assemble_llvm, disassemble_llvm, format_llvm

from .llvm_corpus import OBJ, code_sections, make_object, read_listing, sample_instructions
from .test_syntax_llvm_props import instructions

OBJDUMP = shutil.which("llvm-objdump-19")
needs_objdump = pytest.mark.skipif(OBJDUMP is None, reason="llvm-objdump-19 not installed")

OBJECTS = sorted(OBJ.glob("*.o"))
V1_OBJECTS = [o for o in OBJECTS if o.with_suffix(".objdump-v1.txt").exists()]


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def _listing_path(obj: Path, v1: bool = False) -> Path:
    return obj.with_suffix(".objdump-v1.txt" if v1 else ".objdump.txt")


def _llvm_divergence(insn: Instruction, llvm_text: str) -> bool:
    """The documented places where format_llvm is lossless and llvm-objdump is not."""
    if insn.opcode == OP_LDDW and insn.src:  # llvm: ld_pseudo, without the second immediate
        return llvm_text == f"ld_pseudo\tr{insn.dst}, {insn.src:#x}, {insn.imm & 0xFFFFFFFF:#x}"
    if insn.opcode & 0xE7 == InsnClass.LD | Mode.IND and insn.imm:  # llvm drops ld_ind's imm
        return format_llvm(Instruction(insn.opcode, src=insn.src)) == llvm_text
    return False


def _compare(obj: Path, listing_text: str, alu32: bool) -> list[str]:
    """Mismatches between format_llvm on the object's bytes and the listing's text."""
    listing = read_listing(listing_text)
    problems = []
    sections = code_sections(obj)
    assert sections, f"{obj.name} has no code"
    assert [s.name for s in sections] == list(listing), "sections differ"
    for section in sections:
        insns = decode(section.data, section.byteorder)
        lines = listing[section.name]
        assert len(insns) == len(lines), f"{section.name}: {len(insns)} instructions, {len(lines)} lines"
        slot = 0
        for insn, line in zip(insns, lines, strict=True):
            assert line.slot == slot
            slot += insn.slots
            mine = format_llvm(insn, alu32=alu32)
            if mine != line.text and not _llvm_divergence(insn, line.text):
                problems.append(f"{section.name}: {line.line!r}: format_llvm gives {mine!r}")
    return problems


def _decoded(obj: Path) -> list[Instruction]:
    out: list[Instruction] = []
    for section in code_sections(obj):
        out.extend(decode(section.data, section.byteorder))
    return out


def test_corpus_is_present() -> None:
    names = {o.stem for o in OBJECTS}
    assert {"all_opcodes", "asm_all-v4", "atomics-v3", "calls-v4", "maps-v3-eb"} <= names
    assert len(OBJECTS) >= 30


def test_corpus_covers_every_opcode() -> None:
    opcodes = {insn.opcode for obj in OBJECTS for insn in _decoded(obj)}
    assert opcodes == {insn.opcode for insn in sample_instructions()}


@pytest.mark.parametrize("obj", OBJECTS, ids=_ids(OBJECTS))
def test_format_matches_objdump(obj: Path) -> None:
    assert _compare(obj, _listing_path(obj).read_text(), alu32=True) == []


@pytest.mark.parametrize("obj", V1_OBJECTS, ids=_ids(V1_OBJECTS))
def test_format_matches_objdump_default_cpu(obj: Path) -> None:
    """llvm-objdump without --mcpu (v1) prints narrow loads and stores with r registers."""
    assert _compare(obj, _listing_path(obj, v1=True).read_text(), alu32=False) == []


@pytest.mark.parametrize("obj", OBJECTS, ids=_ids(OBJECTS))
def test_listing_assembles_to_the_bytes(obj: Path) -> None:
    """A whole listing (headers, raw bytes, relocations) assembles to the decoded bytes."""
    program = assemble_llvm(_listing_path(obj).read_text(), source=obj.name)
    assert list(program.instructions) == _decoded(obj)
    if obj.stem.startswith("calls"):
        assert {"caller", "caller2", "mix", "square"} <= set(program.labels.values())


@pytest.mark.parametrize("obj", V1_OBJECTS, ids=_ids(V1_OBJECTS))
def test_default_cpu_listing_assembles_to_the_bytes(obj: Path) -> None:
    program = assemble_llvm(_listing_path(obj, v1=True).read_text())
    assert list(program.instructions) == _decoded(obj)


@pytest.mark.parametrize("obj", OBJECTS, ids=_ids(OBJECTS))
def test_listing_text_alone_assembles(obj: Path) -> None:
    """Without the raw bytes, only what llvm's text cannot say is lost (the call kind)."""
    lines = [
        line.text for section in read_listing(_listing_path(obj).read_text()).values() for line in section
    ]
    program = assemble_llvm("\n".join(lines))
    for mine, real in zip(program.instructions, _decoded(obj), strict=True):
        if real.opcode == OP_CALL and real.src != CallKind.HELPER:
            assert mine == Instruction(OP_CALL, imm=real.imm)
        elif real.opcode == OP_LDDW and real.src:
            assert (mine.src, mine.imm) == (real.src, real.imm & 0xFFFFFFFF)
        elif real.opcode & 0xE7 == InsnClass.LD | Mode.IND:
            assert mine == Instruction(real.opcode, src=real.src)
        else:
            assert mine == real


@pytest.mark.parametrize("obj", OBJECTS, ids=_ids(OBJECTS))
def test_disassembly_round_trips(obj: Path) -> None:
    for section in code_sections(obj):
        program = Program.from_bytes(section.data, section.byteorder)
        assert assemble_llvm(disassemble_llvm(program)) == program


# --- Live: llvm-objdump-19 on this machine --------------------------------------------------------


def _objdump(obj: Path, *args: str) -> str:
    assert OBJDUMP is not None
    done = subprocess.run(
        [OBJDUMP, "-d", "-r", *args, obj.name], cwd=obj.parent, capture_output=True, text=True, check=True
    )
    return done.stdout


@needs_objdump
@pytest.mark.parametrize("obj", OBJECTS, ids=_ids(OBJECTS))
def test_live_objdump_matches_golden(obj: Path) -> None:
    live = _objdump(obj, "--mcpu=v4")
    assert live == _listing_path(obj).read_text(), "golden listing is stale: rerun tests/data/llvm/build.sh"
    assert _compare(obj, live, alu32=True) == []


@needs_objdump
@pytest.mark.parametrize("obj", V1_OBJECTS, ids=_ids(V1_OBJECTS))
def test_live_objdump_default_cpu(obj: Path) -> None:
    live = _objdump(obj)
    assert live == _listing_path(obj, v1=True).read_text()
    assert _compare(obj, live, alu32=False) == []


@needs_objdump
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    insns=st.lists(instructions(), min_size=1, max_size=60),
    byteorder=st.sampled_from(["little", "big"]),
)
def test_live_objdump_on_random_instructions(
    tmp_path_factory: pytest.TempPathFactory, insns: list[Instruction], byteorder: str
) -> None:
    """Random valid instructions: format_llvm agrees with llvm-objdump-19 --mcpu=v4."""
    obj = tmp_path_factory.mktemp("objdump") / "random.o"
    order: ByteOrder = "little" if byteorder == "little" else "big"
    obj.write_bytes(make_object(encode(insns, order), byteorder=order))
    assert _compare(obj, _objdump(obj, "--mcpu=v4"), alu32=True) == []
    assert list(assemble_llvm(_objdump(obj, "--mcpu=v4")).instructions) == insns
