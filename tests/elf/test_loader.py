"""load_collection_spec on the committed corpus: programs, linking, maps, variables, relocations."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from tests.elf.conftest import DATA, corpus

from ebpf import btf
from ebpf.elf import load_collection_spec
from ebpf.isa import Program, decode, validate
from ebpf.spec import AttachType, CollectionSpec, MapType, PinType, ProgramType, RelocKind

Load = Callable[[str], CollectionSpec]

BPF_F_NO_PREALLOC = 1
BPF_F_RDONLY_PROG = 0x80
BPF_F_MMAPABLE = 0x400

ALL_OBJECTS = sorted(p.name for p in DATA.glob("*.o"))
BOTH_ORDERS = ["xdp_fw", "tc_cls", "map_in_map", "legacy_maps", "subprogs"]


def test_corpus_is_complete() -> None:
    expected = {
        f"{n}.o"
        for n in (
            "xdp_fw",
            "tc_cls",
            "socket_filter",
            "legacy_maps",
            "tailcall",
            "map_in_map",
            "tracer",
            "sections",
            "nobtf",
            "subprogs",
            "samesec",
            "linked",
            "struct_ops",
        )
    }
    expected |= {f"{n}.be.o" for n in BOTH_ORDERS}
    assert set(ALL_OBJECTS) == expected


@pytest.mark.parametrize("name", ALL_OBJECTS)
def test_deterministic_and_sources(name: str) -> None:
    path = corpus(name)
    a = load_collection_spec(path)
    b = load_collection_spec(str(path))
    c = load_collection_spec(path.read_bytes())
    d = load_collection_spec(io.BytesIO(path.read_bytes()))
    assert a == b == c == d
    assert a.byteorder == ("big" if name.endswith(".be.o") else "little")


@pytest.mark.parametrize("base", BOTH_ORDERS)
def test_big_endian_equals_little_endian(base: str, load: Load) -> None:
    """The same source for bpfeb gives the same spec, up to byte order of data and insns."""
    le, be = load(f"{base}.o"), load(f"{base}.be.o")
    assert list(le.programs) == list(be.programs)
    for name, p in le.programs.items():
        q = be.programs[name]
        # byte-order specific code (bpf_htons constants, byte swaps) may differ a little
        assert abs(p.instructions.slots - q.instructions.slots) <= 4
        key = lambda r: (r.kind.value, r.symbol, r.offset)
        assert sorted(map(key, p.relocations.values())) == sorted(map(key, q.relocations.values()))
        if base != "xdp_fw":
            assert p.instructions == q.instructions and p.relocations == q.relocations
        assert (p.type, p.attach_type, p.flags, p.section) == (q.type, q.attach_type, q.flags, q.section)
    assert list(le.maps) == list(be.maps)
    for name, m in le.maps.items():
        n = be.maps[name]
        assert (m.type, m.key_size, m.value_size, m.max_entries, m.flags, m.slots, m.inner) == (
            n.type,
            n.key_size,
            n.value_size,
            n.max_entries,
            n.flags,
            n.slots,
            n.inner,
        )
    assert le.variables == be.variables
    for var, vspec in le.variables.items():
        le_bytes, be_bytes = le.get_variable(var), be.get_variable(var)
        if le.btf is not None and vspec.type_id and isinstance(le.btf.resolve(vspec.type_id), btf.Int):
            assert le_bytes == be_bytes[::-1]


def test_xdp_firewall(load: Load) -> None:
    spec = load("xdp_fw.o")
    assert spec.license == "GPL"
    assert list(spec.programs) == ["xdp_firewall", "xdp_pass", "xdp_firewall_frags"]
    fw = spec.programs["xdp_firewall"]
    assert (fw.type, fw.attach_type, fw.flags, fw.section) == (ProgramType.XDP, AttachType.XDP, 0, "xdp")
    frags = spec.programs["xdp_firewall_frags"]
    assert frags.section == "xdp.frags" and frags.flags == 0x20
    # xdp_firewall: 40 slots of its own, then parse_ipv4 (14) and count (14) from .text
    assert fw.instructions.slots == 68
    assert spec.programs["xdp_pass"].instructions.slots == 12
    assert frags.instructions.slots == 75
    calls = [(i, insn.imm) for i, insn in _slots(fw.instructions) if insn.opcode == 0x85 and insn.src == 1]
    for slot, imm in calls:
        assert slot + 1 + imm in (40, 54)
    assert {k: (r.kind, r.symbol, r.offset) for k, r in fw.relocations.items()} == {
        2: (RelocKind.MAP_VALUE, ".bss", 0),
        19: (RelocKind.MAP_VALUE, ".bss", 8),
        26: (RelocKind.MAP, "blocklist", 0),
        32: (RelocKind.MAP_VALUE, ".rodata", 0),
        57: (RelocKind.MAP, "counters", 0),
    }
    for slot in fw.relocations:
        insn = dict(_slots(fw.instructions))[slot]
        assert insn.opcode == 0x18 and insn.src == 0 and insn.imm == 0
    bl = spec.maps["blocklist"]
    assert (bl.type, bl.key_size, bl.value_size, bl.max_entries, bl.flags, bl.pinning) == (
        MapType.LPM_TRIE,
        8,
        4,
        1024,
        BPF_F_NO_PREALLOC,
        PinType.BY_NAME,
    )
    assert bl.btf is not None and bl.btf[bl.key_type_id].name == "lpm_key"
    c = spec.maps["counters"]
    assert (c.type, c.key_size, c.value_size, c.max_entries, c.key_type_id) == (
        MapType.PERCPU_ARRAY,
        4,
        8,
        4,
        0,
    )
    ro = spec.maps[".rodata"]
    assert (ro.type, ro.key_size, ro.value_size, ro.max_entries, ro.freeze) == (MapType.ARRAY, 4, 5, 1, True)
    assert ro.flags == BPF_F_RDONLY_PROG | BPF_F_MMAPABLE
    assert spec.maps[".bss"].value_size == 12 and spec.maps[".bss"].contents == [(bytes(4), bytes(12))]
    assert spec.maps[".data"].flags == BPF_F_MMAPABLE
    assert {n: (v.map, v.offset, v.size) for n, v in spec.variables.items()} == {
        "drop_action": (".rodata", 0, 4),
        "verbose": (".rodata", 4, 1),
        "packets_seen": (".bss", 0, 8),
        "last_saddr": (".bss", 8, 4),
        "port_table": (".data", 0, 8),
    }
    assert spec.get_variable("drop_action") == (1).to_bytes(4, "little")  # XDP_DROP
    assert spec.get_variable("port_table") == b"".join(p.to_bytes(2, "little") for p in (22, 80, 443, 8080))
    spec.set_variable("drop_action", 2)
    assert spec.maps[".rodata"].contents[0][1][:4] == (2).to_bytes(4, "little")
    # func_info rebased onto the linked program
    assert [f.insn for f in fw.func_info] == [0, 40, 54]


def test_tc_classifier(load: Load) -> None:
    spec = load("tc_cls.o")
    assert {n: (p.type, p.attach_type) for n, p in spec.programs.items()} == {
        "tc_classify": (ProgramType.SCHED_CLS, None),
        "tcx_in": (ProgramType.SCHED_CLS, AttachType.TCX_INGRESS),
        "tcx_out": (ProgramType.SCHED_CLS, AttachType.TCX_EGRESS),
        "cls_legacy": (ProgramType.SCHED_CLS, None),
        "act_legacy": (ProgramType.SCHED_ACT, None),
    }
    prog = spec.programs["tc_classify"]
    insns = dict(_slots(prog.instructions))
    assert prog.instructions.slots == 57 + 34 + 9  # entry + account + sum_cb
    # call account: first appended function
    assert insns[9].opcode == 0x85 and insns[9].src == 1 and 9 + 1 + insns[9].imm == 57
    # lddw r2, sum_cb  (BPF_PSEUDO_FUNC, the bpf_loop callback)
    assert insns[13].opcode == 0x18 and insns[13].src == 4 and 13 + 1 + insns[13].imm == 91
    assert insns[16].imm == 181  # bpf_loop
    relocs = {k: (r.kind, r.symbol, r.offset) for k, r in prog.relocations.items()}
    assert relocs[17] == (RelocKind.MAP_VALUE, ".bss", 0)
    assert relocs[50] == (RelocKind.MAP_VALUE, ".data.marks", 4)
    assert relocs[57 + 15] == (RelocKind.MAP, "flows", 0)  # inside the appended `account`
    assert spec.programs["cls_legacy"].instructions.slots == 3 + 34  # calls account only
    types = {n: m.type for n, m in spec.maps.items()}
    assert types == {
        "recent": MapType.LRU_HASH,
        "events_q": MapType.QUEUE,
        "events_s": MapType.STACK,
        "seen": MapType.BLOOM_FILTER,
        "percpu_hash": MapType.PERCPU_HASH,
        "lru_percpu": MapType.LRU_PERCPU_HASH,
        "flows": MapType.HASH,
        ".data.marks": MapType.ARRAY,
        ".bss": MapType.ARRAY,
        ".rodata.str1.1": MapType.ARRAY,
        ".rodata.cst16": MapType.ARRAY,
    }
    assert (spec.maps["flows"].key_size, spec.maps["flows"].value_size) == (16, 16)
    q = spec.maps["events_q"]
    assert (q.key_size, q.value_size, q.max_entries) == (0, 4, 32)
    seen = spec.maps["seen"]
    assert (seen.key_size, seen.value_size, seen.map_extra) == (0, 4, 3)
    s = spec.maps[".rodata.str1.1"]
    assert s.contents[0][1] == b"tcx ingress %d\0" and s.freeze and s.value_type_id == 0
    assert spec.programs["tcx_in"].relocations[1].symbol == ".rodata.str1.1"
    assert spec.get_variable("mark_value") == (0x42).to_bytes(4, "little")
    assert spec.variables["mark_hits"].offset == 4


def test_socket_filter(load: Load) -> None:
    spec = load("socket_filter.o")
    assert spec.license == "Dual MIT/GPL"
    prog = spec.programs["keep_tcp"]
    assert prog.type is ProgramType.SOCKET_FILTER and prog.attach_type is None
    pe = spec.maps["samples"]
    assert (pe.type, pe.key_size, pe.value_size, pe.max_entries) == (MapType.PERF_EVENT_ARRAY, 4, 4, 0)
    t = spec.maps["totals"]
    assert (t.type, t.flags, t.max_entries) == (MapType.ARRAY, BPF_F_MMAPABLE, 2)


def test_legacy_maps_and_version(load: Load) -> None:
    spec = load("legacy_maps.o")
    assert spec.kernel_version == 0x060C00
    assert spec.programs["legacy_prog"].kernel_version == 0x060C00
    maps = {n: (m.type, m.key_size, m.value_size, m.max_entries, m.section) for n, m in spec.maps.items()}
    assert maps == {
        "legacy_hash": (MapType.HASH, 4, 8, 64, "maps"),
        "legacy_array": (MapType.ARRAY, 4, 16, 4, "maps"),
    }
    syms = {r.symbol for r in spec.programs["legacy_prog"].relocations.values()}
    assert syms == {"legacy_hash", "legacy_array"}


def test_tail_calls(load: Load) -> None:
    spec = load("tailcall.o")
    jt = spec.maps["jump_table"]
    assert (jt.type, jt.key_size, jt.value_size, jt.max_entries) == (MapType.PROG_ARRAY, 4, 4, 4)
    assert jt.slots == {0: "tail_a", 2: "tail_b"}
    assert set(spec.programs) == {"tail_a", "tail_b", "tail_entry"}
    entry = spec.programs["tail_entry"]
    assert [r.symbol for r in entry.relocations.values()] == [".bss", "jump_table"]


def test_map_in_map(load: Load) -> None:
    spec = load("map_in_map.o")
    outer = spec.maps["outer_array"]
    assert (outer.type, outer.key_size, outer.value_size, outer.max_entries) == (
        MapType.ARRAY_OF_MAPS,
        4,
        4,
        4,
    )
    assert outer.slots == {0: "inner_one", 3: "inner_two"}
    assert outer.inner is not None
    assert (
        outer.inner.name,
        outer.inner.type,
        outer.inner.key_size,
        outer.inner.value_size,
        outer.inner.max_entries,
    ) == ("outer_array.inner", MapType.ARRAY, 4, 4, 8)
    oh = spec.maps["outer_hash"]
    assert oh.type is MapType.HASH_OF_MAPS and oh.slots == {1: "inner_hash"}
    assert oh.inner is not None and (oh.inner.type, oh.inner.value_size, oh.inner.max_entries) == (
        MapType.HASH,
        8,
        16,
    )
    assert spec.maps["inner_one"].type is MapType.ARRAY


def test_tracer(load: Load) -> None:
    spec = load("tracer.o")
    progs = {n: (p.type, p.attach_type, p.attach_to, p.flags) for n, p in spec.programs.items()}
    assert progs == {
        "trace_execve": (ProgramType.TRACEPOINT, None, "syscalls/sys_enter_execve", 0),
        "trace_exit": (ProgramType.TRACEPOINT, None, "sched/sched_process_exit", 0),
        "raw_switch": (ProgramType.RAW_TRACEPOINT, None, "sched_switch", 0),
        "raw_wakeup": (ProgramType.RAW_TRACEPOINT, None, "sched_wakeup", 0),
        "btf_fork": (ProgramType.TRACING, AttachType.TRACE_RAW_TP, "sched_process_fork", 0),
        "kprobe_unlink": (ProgramType.KPROBE, None, "do_unlinkat", 0),
        "kretprobe_unlink": (ProgramType.KPROBE, None, "do_unlinkat", 0),
        "fentry_unlink": (ProgramType.TRACING, AttachType.TRACE_FENTRY, "do_unlinkat", 0),
        "fexit_unlink": (ProgramType.TRACING, AttachType.TRACE_FEXIT, "do_unlinkat", 0),
        "lsm_open": (ProgramType.LSM, AttachType.LSM_MAC, "file_open", 0),
        "iter_tasks": (ProgramType.TRACING, AttachType.TRACE_ITER, "task", 0),
        "uprobe_readline": (ProgramType.KPROBE, None, "/bin/bash:readline", 0x10),
    }
    rb = spec.maps["events"]
    assert (rb.type, rb.key_size, rb.value_size, rb.max_entries) == (MapType.RINGBUF, 0, 0, 4096)
    ec = spec.maps["exec_count"]
    assert ec.pinning is PinType.BY_NAME and ec.max_entries == 1024
    kc = spec.maps[".kconfig"]
    assert (kc.type, kc.value_size, kc.freeze) == (MapType.ARRAY, 9, True)
    assert kc.flags & BPF_F_RDONLY_PROG
    ext = {n: (v.offset, v.size, v.weak) for n, v in spec.variables.items() if v.extern}
    # libbpf's layout: by alignment (descending), then name
    assert ext == {
        "CONFIG_HZ": (0, 4, True),
        "LINUX_KERNEL_VERSION": (4, 4, False),
        "CONFIG_BPF_SYSCALL": (8, 1, False),
    }
    fork = spec.programs["btf_fork"]
    relocs = {k: (r.kind, r.symbol, r.weak) for k, r in fork.relocations.items()}
    assert relocs == {
        2: (RelocKind.KFUNC, "bpf_task_acquire", False),
        4: (RelocKind.KSYM, "bpf_prog_active", False),
        10: (RelocKind.KSYM, "bpf_rcu_read_lock", True),
        13: (RelocKind.KFUNC, "bpf_rcu_read_lock", True),
        15: (RelocKind.KFUNC, "bpf_task_release", False),
    }
    insns = dict(_slots(fork.instructions))
    assert (insns[2].src, insns[2].imm) == (2, 0)  # kfunc placeholder
    execve = spec.programs["trace_execve"]
    kcfg = {(r.symbol, r.offset) for r in execve.relocations.values() if r.kind is RelocKind.MAP_VALUE}
    assert {(".kconfig", 4), (".kconfig", 8), (".kconfig", 0), (".rodata", 0)} <= kcfg
    assert [(c.insn, c.access) for c in fork.core_relos] == [(16, "0:92")]
    assert len(execve.core_relos) >= 2  # BPF_CORE_READ(task, real_parent, tgid)


def test_sections_object(load: Load) -> None:
    spec = load("sections.o")
    assert len(spec.programs) == 59
    opt = spec.programs["optional_tp"]
    assert (opt.section, opt.type, opt.attach_to, opt.autoload) == (
        "tp/sched/sched_switch",
        ProgramType.TRACEPOINT,
        "sched/sched_switch",
        False,
    )
    assert spec.programs["optional_xdp"].section == "xdp" and not spec.programs["optional_xdp"].autoload
    assert sum(p.autoload for p in spec.programs.values()) == 57
    assert all(p.type is not ProgramType.UNSPEC for p in spec.programs.values())
    assert spec.programs["xdp_frags_devmap"].flags == 0x20
    assert spec.programs["sys_prog"].flags == 0x10


@pytest.mark.parametrize("name", ["subprogs.o", "subprogs.be.o"])
def test_subprogram_layout(name: str, load: Load) -> None:
    """libbpf's depth-first order: entry, mid, leaf (mid's callee), global_helper,
    local_in_section, loop_cb (the bpf_loop callback)."""
    spec = load(name)
    assert set(spec.programs) == {"entry", "other"}
    entry = spec.programs["entry"]
    assert entry.instructions.slots == 43
    assert not entry.relocations
    slots = dict(_slots(entry.instructions))
    targets = {
        s: s + 1 + (i.imm if i.opcode == 0x85 else i.imm & 0xFFFFFFFF)
        for s, i in slots.items()
        if (i.opcode == 0x85 and i.src == 1) or (i.opcode == 0x18 and i.src == 4)
    }
    assert targets == {1: 24, 4: 30, 8: 33, 14: 36, 24: 27, 37: 27}
    assert slots[14].opcode == 0x18 and slots[14].src == 4  # lddw r2, loop_cb
    assert [f.insn for f in entry.func_info] == [0, 24, 27, 30, 33, 36]
    names = [spec.btf[f.type_id].name for f in entry.func_info] if spec.btf else []
    assert names == ["entry", "mid", "leaf", "global_helper", "local_in_section", "loop_cb"]
    other = spec.programs["other"]
    assert other.type is ProgramType.SCHED_CLS and other.instructions.slots == 7


def test_static_function_in_program_section(load: Load) -> None:
    """Called static function of the program's own section (no relocation): a subprogram."""
    spec = load("samesec.o")
    assert list(spec.programs) == ["samesec"]
    prog = spec.programs["samesec"]
    slots = dict(_slots(prog.instructions))
    own = prog.instructions.slots - 3  # add_seven is 3 slots, appended
    call = slots[1]
    assert call.opcode == 0x85 and call.src == 1 and 1 + 1 + call.imm == own


def test_static_linker_output(load: Load) -> None:
    """``bpftool gen object`` output (merged sections, Datasec sizes filled in) loads to the
    same programs as its inputs, with data offsets moved to the merged .bss."""
    linked, fw, tc = load("linked.o"), load("xdp_fw.o"), load("tailcall.o")
    assert set(linked.programs) == set(fw.programs) | set(tc.programs)
    for name, prog in fw.programs.items():
        assert linked.programs[name].instructions == prog.instructions
        assert linked.programs[name].relocations == prog.relocations
    hits = linked.variables["hits"]
    assert (hits.map, hits.offset) == (".bss", 16)  # after xdp_fw's 12 bytes, aligned to 8
    entry = linked.programs["tail_entry"]
    assert [(r.symbol, r.offset) for r in entry.relocations.values()] == [(".bss", 16), ("jump_table", 0)]
    assert linked.maps["jump_table"].slots == {0: "tail_a", 2: "tail_b"}


def test_struct_ops(load: Load) -> None:
    spec = load("struct_ops.o")
    dummy, cc = spec.maps["dummy_ops"], spec.maps["ebpf_cc"]
    assert (dummy.type, dummy.key_size, dummy.value_size, dummy.max_entries, dummy.flags) == (
        MapType.STRUCT_OPS,
        4,
        24,
        1,
        0,
    )
    assert dummy.slots == {0: "dummy_test_1", 16: "dummy_sleepable"}
    assert spec.btf is not None and spec.btf[dummy.value_type_id].name == "bpf_dummy_ops"
    assert cc.flags == 1 << 13 and cc.section == ".struct_ops.link"  # BPF_F_LINK
    assert cc.slots == {0: "cc_ssthresh", 8: "cc_cong_avoid", 64: "cc_undo_cwnd"}
    value_type = spec.btf[cc.value_type_id]
    assert isinstance(value_type, btf.Struct) and value_type.name == "tcp_congestion_ops"
    name_member = next(m for m in value_type.members if m.name == "name")
    assert cc.contents[0][1][name_member.offset // 8 :].startswith(b"ebpf_cc\0")
    progs = {n: (p.type, p.attach_to, p.flags) for n, p in spec.programs.items()}
    assert progs["dummy_sleepable"] == (ProgramType.STRUCT_OPS, "test_sleepable", 0x10)
    assert progs["cc_cong_avoid"] == (ProgramType.STRUCT_OPS, "cong_avoid", 0)


def test_without_btf(load: Load) -> None:
    """No .BTF: legacy maps, variables from symbols, no MMAPABLE on data maps (libbpf)."""
    spec = load("nobtf.o")
    assert spec.btf is None
    assert {n: (v.map, v.offset, v.size, v.type_id) for n, v in spec.variables.items()} == {
        "limit": (".data", 0, 4, 0),
        "scale": (".rodata", 0, 8, 0),
        "total": (".bss", 0, 8, 0),
    }
    assert spec.maps[".rodata"].flags == BPF_F_RDONLY_PROG and spec.maps[".data"].flags == 0
    assert spec.get_variable("limit") == (100).to_bytes(4, "little")
    assert spec.maps["counts"].max_entries == 2 and spec.maps["counts"].value_size == 8
    prog = spec.programs["count_packets"]
    assert prog.instructions.slots == 31  # with the static subprogram `bump`
    assert {r.symbol for r in prog.relocations.values()} == {".data", ".bss", "counts", ".rodata"}
    assert not prog.func_info and not prog.line_info


@pytest.mark.parametrize("name", [n for n in ALL_OBJECTS if n != "nobtf.o"])
def test_btf_ext_records_point_at_instructions(name: str, load: Load) -> None:
    """func_info / line_info / CO-RE records are rebased onto each linked program: each names an
    instruction start, func_info starts at 0 and names a BTF Func, line_info covers slot 0."""
    spec = load(name)
    assert spec.btf is not None
    for prog in spec.programs.values():
        starts = {slot for slot, _ in _slots(prog.instructions)}
        assert prog.func_info and prog.func_info[0].insn == 0, prog.name
        assert spec.btf[prog.func_info[0].type_id].name == prog.name
        for rec in [*prog.func_info, *prog.line_info, *prog.core_relos]:
            assert rec.insn in starts, (prog.name, rec)
        assert all(isinstance(spec.btf[f.type_id], btf.Func) for f in prog.func_info)
        assert prog.line_info and prog.line_info[0].insn == 0, prog.name
        insns = [i for i in (r.insn for r in prog.line_info)]
        assert insns == sorted(insns)


@pytest.mark.parametrize("name", ALL_OBJECTS)
def test_linked_programs_are_valid_bytecode(name: str, load: Load) -> None:
    """Every linked program (placeholders, src 4 callbacks, src 2 kfunc calls included) is valid
    RFC 9669 bytecode: it validates, round-trips through encode/decode and has a typed IR."""
    spec = load(name)
    for prog in spec.programs.values():
        assert all(validate(insn) is None for insn in prog.instructions), prog.name
        code = prog.instructions.encode(spec.byteorder)
        assert decode(code, spec.byteorder) == list(prog.instructions)
        assert len(prog.instructions.ops()) == prog.instructions.slots


def test_copy_is_deep(load: Load) -> None:
    spec = load("xdp_fw.o")
    clone = spec.copy()
    clone.set_variable("verbose", 1)
    clone.programs["xdp_firewall"].relocations.clear()
    assert spec.get_variable("verbose") == b"\0"
    assert spec.programs["xdp_firewall"].relocations


def _slots(program: Program) -> list[tuple[int, object]]:
    out = []
    slot = 0
    for insn in program:
        out.append((slot, insn))
        slot += insn.slots
    return out  # type: ignore[return-value]
