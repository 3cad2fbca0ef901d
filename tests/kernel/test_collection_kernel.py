"""kernel.Collection on the running kernel: the ELF corpus, global data, kconfig, pins, slots.

The corpus objects are those of tests/data/elf (H-elf's). Where bpftool's libbpf can parse an
object, its verdict is compared with ours: every object it loads must load through us.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ebpf import isa
from ebpf.errors import VerifierError
from ebpf.kernel.collection import Collection, KconfigError, LoadOptions, internal_map_name
from ebpf.kernel.map import ensure_bpffs, possible_cpus
from ebpf.spec import (
    CollectionSpec,
    MapSpec,
    MapType,
    PinType,
    ProgramSpec,
    ProgramType,
    Relocation,
    RelocKind,
    VariableSpec,
)

pytestmark = pytest.mark.kernel

CORPUS = Path(__file__).resolve().parents[1] / "data" / "elf"
OBJECTS = sorted(p for p in CORPUS.glob("*.o") if not p.name.endswith(".be.o"))

# What the kernel says about the corpus objects it rejects (checked against bpftool -d where
# bpftool's libbpf knows every section of the object; tracer.o: same log line).
REJECTED = {
    "sections.o": "should have been in [1, 1]",  # cgroup/recvmsg6 returning 0
    "tracer.o": "ldimm64 failed to find the address for kernel symbol 'bpf_prog_active'",
}


def load_spec(path: Path) -> CollectionSpec:
    from ebpf.elf import load_collection_spec

    return load_collection_spec(path)


def u32(n: int) -> bytes:
    return struct.pack("=I", n)


@pytest.fixture
def pin_dir() -> Iterator[Path]:
    root = Path(f"/sys/fs/bpf/ebpf_test_coll_{os.getpid()}")
    ensure_bpffs(root)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def bpftool_verdict(obj: Path, pin_dir: Path) -> str | None:
    """ "ok", "kernel" (the kernel refused a program or map), "libbpf" (libbpf refused to open
    the object: legacy maps section, section names it does not know), None: no bpftool."""
    if shutil.which("bpftool") is None:
        return None
    target = pin_dir / f"bpftool_{obj.stem}"
    target.mkdir()
    try:
        run = subprocess.run(
            ["bpftool", "prog", "loadall", str(obj), str(target)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        shutil.rmtree(target, ignore_errors=True)
    if run.returncode == 0:
        return "ok"
    if "failed to open object file" in run.stderr or "failed to guess program type" in run.stderr:
        return "libbpf"
    return "kernel"


@pytest.mark.parametrize("obj", OBJECTS, ids=[p.name for p in OBJECTS])
def test_corpus_object_loads_or_the_kernel_says_why(obj: Path, pin_dir: Path) -> None:
    spec = load_spec(obj)
    verdict = bpftool_verdict(obj, pin_dir)
    try:
        coll = Collection(spec, LoadOptions(object_name=obj.stem))
    except VerifierError as err:
        assert verdict != "ok", f"bpftool loads {obj.name}, we must too: {err}"
        assert err.log, "a kernel rejection carries the kernel's log"
        if obj.name in REJECTED:
            assert any(REJECTED[obj.name] in line for line in err.log), err.format()
        return
    with coll:
        assert obj.name not in REJECTED, f"{obj.name} should have been rejected"
        assert verdict != "kernel", f"bpftool's load of {obj.name} fails in the kernel, ours did not"
        assert set(coll.programs) == {n for n, p in spec.programs.items() if p.autoload}
        for name, prog in coll.programs.items():
            info = prog.info()
            assert info.type == spec.programs[name].type
            assert info.name == name[:15]
            if spec.programs[name].func_info and coll.btf is not None:
                assert info.btf_id == coll.btf.info().id
            used = {
                coll.maps[r.symbol].info().id
                for r in spec.programs[name].relocations.values()
                if r.kind in (RelocKind.MAP, RelocKind.MAP_VALUE)
            }
            assert set(prog.map_ids()) == used  # the kernel's record of the maps it references
        for name, m in coll.maps.items():
            mspec = spec.maps[name]
            minfo = m.info()
            assert minfo.type == mspec.type
            if mspec.type == MapType.STRUCT_OPS:  # the kernel's bpf_struct_ops_<struct> value
                assert minfo.btf_vmlinux_value_type_id != 0
                continue
            assert (minfo.key_size, minfo.value_size) == (mspec.key_size, mspec.value_size)
            assert minfo.max_entries == (mspec.max_entries or possible_cpus())
            assert minfo.flags == mspec.flags
            if name.startswith("."):
                assert minfo.name == internal_map_name(obj.stem, name)
            else:
                assert minfo.name == name[:15]


def test_tail_calls_through_the_prog_array_slots() -> None:
    with Collection.from_file(CORPUS / "tailcall.o") as coll:
        assert coll.maps[".bss"].info().name == "tailcall.bss"  # named after the file
        result = coll.programs["tail_entry"].test_run(bytes(64))
        assert result.retval == 2  # XDP_PASS from tail_a at slot 0
        hits = coll.maps[".bss"].mmap()
        assert struct.unpack("=3I", hits[:12]) == (1, 0, 1)


def test_map_in_map_slots_hold_the_inner_maps() -> None:
    spec = load_spec(CORPUS / "map_in_map.o")
    with Collection(spec, LoadOptions(object_name="map_in_map")) as coll:
        outer = coll.maps["outer_array"]
        with outer.lookup_map(u32(0)) as inner:
            assert inner.info().id == coll.maps["inner_one"].info().id
        with outer.lookup_map(u32(3)) as inner:
            assert inner.info().id == coll.maps["inner_two"].info().id


def test_rejection_names_the_instruction_and_source_line() -> None:
    spec = load_spec(CORPUS / "sections.o")
    with pytest.raises(VerifierError) as info:
        Collection(spec)
    err = info.value
    assert err.insn_index is not None
    assert "sections.c:" in str(err) and f"failing instruction {err.insn_index}" in str(err)
    assert err.log and err.errno is not None


def _global_data_spec(*, strong_config: str | None = None) -> CollectionSpec:
    """r0 = *(u32 *)(.rodata + 0) + *(u32 *)(.kconfig + 0); exit."""
    prog = isa.assemble(
        """
        r1 = 0 ll
        r0 = *(u32 *)(r1 + 0)
        r2 = 0 ll
        r2 = *(u32 *)(r2 + 0)
        r0 += r2
        exit
        """
    )
    spec = CollectionSpec(license="GPL")
    spec.maps[".rodata"] = MapSpec(
        ".rodata", MapType.ARRAY, 4, 4, 1, flags=0x480, freeze=True, contents=[(u32(0), u32(5))]
    )
    spec.maps[".kconfig"] = MapSpec(".kconfig", MapType.ARRAY, 4, 4, 1, flags=0x480, freeze=True)
    spec.variables["limit"] = VariableSpec("limit", ".rodata", 0, 4)
    name = strong_config or "LINUX_KERNEL_VERSION"
    spec.variables[name] = VariableSpec(name, ".kconfig", 0, 4, extern=True)
    spec.programs["gd"] = ProgramSpec(
        "gd",
        "socket",
        ProgramType.SOCKET_FILTER,
        prog,
        license="GPL",
        relocations={
            0: Relocation(RelocKind.MAP_VALUE, ".rodata"),
            3: Relocation(RelocKind.MAP_VALUE, ".kconfig"),
        },
    )
    return spec


def test_rodata_set_before_load_and_kconfig_from_uname() -> None:
    from ebpf.kernel.collection import kernel_version_code

    spec = _global_data_spec()
    spec.set_variable("limit", 100)
    with Collection(spec, LoadOptions(object_name="gd")) as coll:
        result = coll.programs["gd"].test_run(bytes(64))
        assert result.retval == 100 + kernel_version_code()
        assert coll.maps[".rodata"].info().name == "gd.rodata"
        with pytest.raises(Exception, match="EPERM|not permitted"):
            coll.maps[".rodata"][u32(0)] = u32(1)  # frozen
    overridden = _global_data_spec()
    with Collection(overridden, LoadOptions(kconfig={"LINUX_KERNEL_VERSION": 7})) as coll:
        assert coll.programs["gd"].test_run(bytes(64)).retval == 5 + 7


def test_strong_kconfig_without_a_value_is_an_error() -> None:
    spec = _global_data_spec(strong_config="CONFIG_EBPF_TEST_DOES_NOT_EXIST")
    with pytest.raises(KconfigError, match="CONFIG_EBPF_TEST_DOES_NOT_EXIST is not set in /proc/config.gz"):
        Collection(spec)
    spec.variables["CONFIG_EBPF_TEST_DOES_NOT_EXIST"].weak = True
    with Collection(spec) as coll:
        assert coll.programs["gd"].test_run(bytes(64)).retval == 5


def test_pinned_maps_are_reused_by_a_second_collection(pin_dir: Path) -> None:
    spec = _global_data_spec()
    spec.maps["shared"] = MapSpec("shared", MapType.HASH, 4, 4, 8, pinning=PinType.BY_NAME)
    opts = LoadOptions(pin_root=str(pin_dir))
    with Collection(spec, opts) as first:
        first.maps["shared"][u32(1)] = u32(2)
        assert (pin_dir / "shared").exists()
        with Collection(spec, opts) as second:
            assert second.maps["shared"].reused
            assert second.maps["shared"][u32(1)] == u32(2)


def test_tp_btf_gets_its_attach_btf_id_and_a_missing_target_is_named() -> None:
    from ebpf.errors import NotSupportedError
    from ebpf.spec import AttachType

    prog = isa.assemble("r0 = 0\nexit")
    spec = CollectionSpec(license="GPL")
    spec.programs["tp"] = ProgramSpec(
        "tp", "tp_btf/sched_switch", ProgramType.TRACING, prog, AttachType.TRACE_RAW_TP, "sched_switch", "GPL"
    )
    with Collection(spec) as coll:
        from ebpf import btf
        from ebpf.kernel.btf import list_btf, vmlinux_index

        info = coll.programs["tp"].info()
        assert info.type == ProgramType.TRACING
        assert info.attach_btf_id == vmlinux_index().find("btf_trace_sched_switch", btf.Kind.TYPEDEF)
        assert info.attach_btf_obj_id in {b.id for b in list_btf() if b.name == "vmlinux"}
    spec.programs["tp"].attach_to = "no_such_tracepoint_ebpf"
    with pytest.raises(NotSupportedError, match="btf_trace_no_such_tracepoint_ebpf"):
        Collection(spec)


def test_kfunc_calls_are_resolved_from_vmlinux_btf() -> None:
    prog = isa.assemble("r6 = r1\ncall 0\nr0 = 2\nexit")
    spec = CollectionSpec(license="GPL")
    spec.programs["k"] = ProgramSpec(
        "k",
        "xdp",
        ProgramType.XDP,
        prog,
        license="GPL",
        relocations={1: Relocation(RelocKind.KFUNC, "bpf_cast_to_kern_ctx")},
    )
    with Collection(spec) as coll:
        assert coll.programs["k"].test_run(bytes(64)).retval == 2
    spec.programs["k"].relocations[1] = Relocation(RelocKind.KFUNC, "ebpf_no_such_kfunc")
    from ebpf.errors import RelocationError

    with pytest.raises(RelocationError, match="ebpf_no_such_kfunc"):
        Collection(spec)


def test_typed_views_from_the_object_btf_and_from_a_pinned_map(pin_dir: Path) -> None:
    from ebpf.kernel.map import Map

    spec = load_spec(CORPUS / "tc_cls.o")
    with Collection(spec, LoadOptions(object_name="tc_cls")) as coll:
        flows = coll.maps["flows"].typed()
        assert flows.key_class.__name__ == "flow_key" and flows.value_class.__name__ == "flow_stats"
        key = flows.key_class.unpack(bytes(range(16)))
        flows[key] = flows.value_class.unpack(struct.pack("=QQ", 3, 300))
        assert flows[key] == flows.value_class.unpack(struct.pack("=QQ", 3, 300))
        per_cpu = coll.maps["percpu_hash"].typed()
        per_cpu[1] = 7
        assert per_cpu[1] == [7] * possible_cpus()
        coll.maps["flows"].pin(pin_dir / "flows")
    with Map.from_pin(pin_dir / "flows") as again:  # BTF fetched from the kernel
        ((k, v),) = again.typed().items()
        assert (type(k).__name__, type(v).__name__) == ("flow_key", "flow_stats")
        assert k.pack() == key.pack()  # a class of the kernel's copy of the BTF: compare bytes


def test_typeless_ksym_is_its_kallsyms_address() -> None:
    from ebpf import btf

    symbol = "bpf_prog_put"
    with open("/proc/kallsyms") as f:
        address = next(int(line.split()[0], 16) for line in f if line.split()[2] == symbol)
    if address == 0:
        pytest.skip("/proc/kallsyms hides addresses (kernel.kptr_restrict)")
    prog = isa.assemble("r0 = 0 ll\nr0 >>= 32\nexit")
    obj_btf = btf.Spec.build(
        [btf.Var(symbol, 0, btf.VarLinkage.GLOBAL_EXTERN)]
    )  # extern const void sym __ksym
    spec = CollectionSpec(license="GPL")
    spec.programs["k"] = ProgramSpec(
        "k",
        "socket",
        ProgramType.SOCKET_FILTER,
        prog,
        license="GPL",
        relocations={0: Relocation(RelocKind.KSYM, symbol)},
        btf=obj_btf,
    )
    with Collection(spec) as coll:
        assert coll.programs["k"].test_run(bytes(64)).retval == address >> 32
    spec.programs["k"].relocations[0] = Relocation(RelocKind.KSYM, "ebpf_no_such_symbol", weak=True)
    spec.programs["k"].btf = btf.Spec.build([btf.Var("ebpf_no_such_symbol", 0, btf.VarLinkage.GLOBAL_EXTERN)])
    with Collection(spec) as coll:  # a weak missing ksym is 0, as in libbpf
        assert coll.programs["k"].test_run(bytes(64)).retval == 0


def test_a_failed_load_removes_the_pins_it_made(pin_dir: Path) -> None:
    spec = _global_data_spec(strong_config=None)
    spec.maps["shared"] = MapSpec("shared", MapType.HASH, 4, 4, 8, pinning=PinType.BY_NAME)
    spec.programs["gd"].relocations[0] = Relocation(RelocKind.MAP_VALUE, "no_such_map")
    from ebpf.errors import RelocationError

    with pytest.raises(RelocationError, match="no_such_map"):
        Collection(spec, LoadOptions(pin_root=str(pin_dir)))
    assert not (pin_dir / "shared").exists()


@pytest.mark.parametrize("name", ["LINUX_HAS_SYSCALL_WRAPPER", "LINUX_HAS_BPF_COOKIE"])
def test_libbpf_computed_kconfig_externs(name: str) -> None:
    spec = _global_data_spec(strong_config=name)
    expected = 1  # x86-64 / arm64 kernels >= 5.15 have both
    if name == "LINUX_HAS_SYSCALL_WRAPPER" and os.uname().machine not in ("x86_64", "aarch64", "s390x"):
        pytest.skip(f"syscall wrapper expectation not pinned for {os.uname().machine}")
    with Collection(spec) as coll:
        assert coll.programs["gd"].test_run(bytes(64)).retval == 5 + expected


def test_struct_ops_programs_hook_the_kernel_struct_members() -> None:
    spec = load_spec(CORPUS / "struct_ops.o")
    with Collection(spec, LoadOptions(object_name="struct_ops")) as coll:
        cc = coll.maps["ebpf_cc"]
        assert cc.info().flags & 0x2000  # BPF_F_LINK: registered by a link (attach layer)
        value = coll.struct_ops_value("ebpf_cc")
        assert len(value) == cc.info().value_size
        assert b"ebpf_cc\0" in value  # the .name member copied into the kernel's struct
        # the kernel checks each program's attach_btf_id / expected_attach_type against the
        # member it is stored in: accepting the value proves the hook plan
        cc.update(u32(0), value)
        assert coll.programs["cc_ssthresh"].info().type == ProgramType.STRUCT_OPS


def test_variables_and_test_run_have_the_runtimes_shape() -> None:
    from ebpf import runtime
    from ebpf.maps import MapError

    spec = load_spec(CORPUS / "tailcall.o")
    with Collection(spec, LoadOptions(object_name="tailcall")) as kernel, runtime.Collection(spec) as user:
        for coll in (kernel, user):
            result = coll.programs["tail_entry"].test_run(data_in=bytes(64), repeat=3)
            assert (result.retval, result.data_out[:64]) == (2, bytes(64))
        assert kernel.variables["hits"].get() == user.variables["hits"].get() == struct.pack("=3I", 3, 0, 3)
        kernel.variables["hits"].set(bytes(12))
        assert kernel.maps[".bss"][u32(0)] == bytes(12)
    spec = _global_data_spec()
    with Collection(spec) as kernel:
        assert kernel.variables["limit"].get_int() == 5
        with pytest.raises(MapError, match="read-only"):
            kernel.variables["limit"].set(1)


def test_test_run_on_a_given_cpu() -> None:
    from ebpf.kernel.program import Program

    with Program.load(
        isa.assemble("call 8\nexit"), ProgramType.RAW_TRACEPOINT
    ) as prog:  # bpf_get_smp_processor_id
        last = possible_cpus() - 1
        assert prog.test_run(ctx_in=bytes(8), cpu=last).retval == last
        assert prog.test_run(ctx_in=bytes(8), cpu=0).retval == 0


def test_syscall_program_context_comes_back() -> None:
    import errno

    from ebpf.errors import TestRunError
    from ebpf.kernel.program import Program
    from ebpf.kernel.uapi import ProgLoadFlags

    code = isa.assemble("r2 = 42\n*(u32 *)(r1 + 0) = r2\nr0 = 7\nexit")
    with Program.load(code, ProgramType.SYSCALL, prog_flags=ProgLoadFlags.SLEEPABLE) as prog:
        result = prog.test_run(ctx_in=bytes(8))
        assert result.retval == 7
        assert result.ctx_out == struct.pack("=I", 42) + bytes(4)
        with pytest.raises(TestRunError) as info:  # the kernel's answer (bpf_prog_test_run_syscall)
            prog.test_run(b"x", ctx_in=bytes(8))
        assert info.value.errno == errno.EINVAL


def _lockdown() -> str | None:
    try:
        text = Path("/sys/kernel/security/lockdown").read_text()
    except OSError:
        return None
    return next((w[1:-1] for w in text.split() if w.startswith("[")), None)


def test_freplace_gets_its_target_program_and_function() -> None:
    import errno

    from ebpf import btf
    from ebpf.btf.ext import FuncInfo
    from ebpf.errors import NotSupportedError, SyscallError

    target_spec = load_spec(CORPUS / "subprogs.o")
    assert target_spec.btf is not None
    helper = next(
        i
        for i, t in enumerate(target_spec.btf.types)
        if isinstance(t, btf.Func) and t.name == "global_helper"
    )
    ext = CollectionSpec(license="GPL", btf=target_spec.btf)
    ext.programs["ext"] = ProgramSpec(
        "ext",
        "freplace/global_helper",
        ProgramType.EXT,
        isa.assemble("r0 = 0\nexit"),
        license="GPL",
        attach_to="global_helper",
        func_info=[FuncInfo(0, helper)],
        btf=target_spec.btf,
    )
    with pytest.raises(NotSupportedError, match="attach_targets"):
        Collection(ext)
    with Collection(target_spec, LoadOptions(object_name="subprogs")) as target:
        opts = LoadOptions(attach_targets={"ext": (target.programs["entry"], "global_helper")})
        if _lockdown() in ("integrity", "confidentiality"):
            # trampolines are refused under lockdown: the error says what was observed
            with pytest.raises(SyscallError) as info:
                Collection(ext, opts)
            assert info.value.errno == errno.EPERM and "lockdown" in str(info.value)
        else:
            with Collection(ext, opts) as coll:
                assert coll.programs["ext"].info().type == ProgramType.EXT
