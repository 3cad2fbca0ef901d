"""The committed corpus: objects decode, inputs are mkinput.py's, and the ELF reader's edges.

Pure: no bpf(); clang-19 only for the rebuild check, skipped without it.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from ebpf.bench import COMPUTE_KERNELS, PROGRAMS, load_benchmark, read_object
from ebpf.bench.objects import default_bench_dir
from ebpf.errors import ELFError, ParseError
from ebpf.spec import ProgramType

from .conftest import TABLE3


def test_program_list_matches_the_corpus(bench_dir: Path) -> None:
    assert set(PROGRAMS) == set(TABLE3)
    assert sorted(p.stem for p in (bench_dir / "obj").glob("*.o")) == sorted(PROGRAMS)
    assert sorted(p.stem for p in (bench_dir / "src").glob("*.c")) == sorted(PROGRAMS)
    assert sorted(p.stem for p in (bench_dir / "inputs").glob("*.in")) == sorted(PROGRAMS)
    assert len(COMPUTE_KERNELS) == 10 and "nop" not in COMPUTE_KERNELS and "add_mem" not in COMPUTE_KERNELS


def test_default_dir_is_the_checkout(bench_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EBPF_BENCH_DIR", raising=False)
    assert default_bench_dir().resolve() == bench_dir
    monkeypatch.setenv("EBPF_BENCH_DIR", "/elsewhere")
    assert default_bench_dir() == Path("/elsewhere")


@pytest.mark.parametrize("name", PROGRAMS)
def test_object_decodes(name: str, bench_dir: Path) -> None:
    bench = load_benchmark(name, bench_dir)
    obj = bench.program
    assert obj.section == "xdp"
    assert obj.type is ProgramType.XDP
    assert obj.function == f"bench_{name}"
    # Table 3's "bytecode insns" counts an lddw once (log2, switch, fnv1a have two each).
    assert len(obj.program) == TABLE3[name].instructions
    assert obj.program.slots == len(obj.program) + sum(1 for i in obj.program if i.slots == 2)
    assert len(bench.packet) >= 64  # at least an Ethernet header for BPF_PROG_TEST_RUN


def _mkinput(bench_dir: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_mkinput", bench_dir / "src" / "mkinput.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_inputs_are_what_mkinput_writes(bench_dir: Path) -> None:
    generated = dict(_mkinput(bench_dir).inputs())
    assert list(generated) == list(PROGRAMS)
    for name, blob in generated.items():
        assert (bench_dir / "inputs" / f"{name}.in").read_bytes() == blob, name


@pytest.mark.skipif(shutil.which("clang-19") is None, reason="clang-19 is not installed")
def test_build_script_reproduces_the_committed_files(bench_dir: Path) -> None:
    proc = subprocess.run(
        [str(bench_dir / "build.sh"), "--check"], check=False, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr


def test_missing_benchmark_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"obj/fib\.o not found"):
        load_benchmark("fib", tmp_path)


def test_not_an_elf_is_an_elf_error() -> None:
    with pytest.raises(ELFError, match="x.o"):
        read_object(b"\x7fELF garbage", source="x.o")
    with pytest.raises(ELFError):
        read_object(b"", source="empty.o")


def test_truncated_object_is_an_elf_error(bench_dir: Path) -> None:
    data = (bench_dir / "obj" / "fib.o").read_bytes()
    for cut in range(0, len(data), 8):
        try:
            read_object(data[:cut], source="cut.o")
        except ParseError:  # ELFError, or DecodeError for a cut-short section
            pass


def test_section_selection(bench_dir: Path) -> None:
    data = (bench_dir / "obj" / "fib.o").read_bytes()
    assert read_object(data, source="fib.o", section="xdp").function == "bench_fib"
    with pytest.raises(ELFError, match="no executable section named 'tc'"):
        read_object(data, source="fib.o", section="tc")


@pytest.mark.skipif(shutil.which("clang-19") is None, reason="clang-19 is not installed")
def test_relocations_and_unknown_sections_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "reloc.c"
    src.write_text(
        "int counter;\n"
        '__attribute__((section("xdp"), used)) int f(void *ctx) { return counter++; }\n'
        '__attribute__((section("kprobe/x"), used)) int g(void *ctx) { return 0; }\n'
    )
    obj = tmp_path / "reloc.o"
    subprocess.run(["clang-19", "-O2", "-target", "bpf", "-c", str(src), "-o", str(obj)], check=True)
    data = obj.read_bytes()
    with pytest.raises(ELFError, match="expected one program section, found: xdp, kprobe/x"):
        read_object(data, source="reloc.o")
    with pytest.raises(ELFError, match="relocation"):
        read_object(data, source="reloc.o", section="xdp")
    with pytest.raises(ELFError, match="no known program type"):
        read_object(data, source="reloc.o", section="kprobe/x")
