"""Sizes and offsets of the hand-written UAPI structures, pinned to include/uapi/linux/bpf.h (Linux 6.18).

Pure: no kernel access. The expected numbers are offsetof()/sizeof() of the C header.
"""

from __future__ import annotations

import ctypes
import sys

import pytest

from ebpf.kernel import uapi
from ebpf.kernel.uapi import (
    BpfBtfInfo,
    BpfFuncInfo,
    BpfLineInfo,
    BpfMapInfo,
    BpfProgInfo,
    BtfLoadAttr,
    Cmd,
    EnableStatsAttr,
    GetIdAttr,
    MapBatchAttr,
    MapCreateAttr,
    MapElemAttr,
    ObjInfoAttr,
    ObjPinAttr,
    ProgLoadAttr,
    TestRunAttr,
)
from ebpf.spec import AttachType, MapType, ProgramType

pytestmark = pytest.mark.skipif(
    ctypes.sizeof(ctypes.c_void_p) != 8, reason="layouts are pinned for 64-bit ABIs"
)

# (structure, field, offset, size) from offsetof()/sizeof() on union bpf_attr and
# struct bpf_prog_info.
LAYOUT = [
    (MapCreateAttr, "map_type", 0, 4),
    (MapCreateAttr, "key_size", 4, 4),
    (MapCreateAttr, "value_size", 8, 4),
    (MapCreateAttr, "max_entries", 12, 4),
    (MapCreateAttr, "map_flags", 16, 4),
    (MapCreateAttr, "inner_map_fd", 20, 4),
    (MapCreateAttr, "numa_node", 24, 4),
    (MapCreateAttr, "map_name", 28, 16),
    (MapCreateAttr, "map_ifindex", 44, 4),
    (MapCreateAttr, "btf_fd", 48, 4),
    (MapCreateAttr, "btf_key_type_id", 52, 4),
    (MapCreateAttr, "btf_value_type_id", 56, 4),
    (MapCreateAttr, "btf_vmlinux_value_type_id", 60, 4),
    (MapCreateAttr, "map_extra", 64, 8),
    (MapCreateAttr, "value_type_btf_obj_fd", 72, 4),
    (MapCreateAttr, "map_token_fd", 76, 4),
    (MapCreateAttr, "excl_prog_hash", 80, 8),
    (MapCreateAttr, "excl_prog_hash_size", 88, 4),
    (MapElemAttr, "map_fd", 0, 4),
    (MapElemAttr, "key", 8, 8),
    (MapElemAttr, "value", 16, 8),
    (MapElemAttr, "next_key", 16, 8),
    (MapElemAttr, "flags", 24, 8),
    (ProgLoadAttr, "prog_type", 0, 4),
    (ProgLoadAttr, "insn_cnt", 4, 4),
    (ProgLoadAttr, "insns", 8, 8),
    (ProgLoadAttr, "license", 16, 8),
    (ProgLoadAttr, "log_level", 24, 4),
    (ProgLoadAttr, "log_size", 28, 4),
    (ProgLoadAttr, "log_buf", 32, 8),
    (ProgLoadAttr, "kern_version", 40, 4),
    (ProgLoadAttr, "prog_flags", 44, 4),
    (ProgLoadAttr, "prog_name", 48, 16),
    (ProgLoadAttr, "prog_ifindex", 64, 4),
    (ProgLoadAttr, "expected_attach_type", 68, 4),
    (ProgLoadAttr, "prog_btf_fd", 72, 4),
    (ProgLoadAttr, "func_info_rec_size", 76, 4),
    (ProgLoadAttr, "func_info", 80, 8),
    (ProgLoadAttr, "func_info_cnt", 88, 4),
    (ProgLoadAttr, "line_info_rec_size", 92, 4),
    (ProgLoadAttr, "line_info", 96, 8),
    (ProgLoadAttr, "line_info_cnt", 104, 4),
    (ProgLoadAttr, "attach_btf_id", 108, 4),
    (ProgLoadAttr, "attach_prog_fd", 112, 4),
    (ProgLoadAttr, "attach_btf_obj_fd", 112, 4),
    (ProgLoadAttr, "core_relo_cnt", 116, 4),
    (ProgLoadAttr, "fd_array", 120, 8),
    (ProgLoadAttr, "core_relos", 128, 8),
    (ProgLoadAttr, "core_relo_rec_size", 136, 4),
    (ProgLoadAttr, "log_true_size", 140, 4),
    (ProgLoadAttr, "prog_token_fd", 144, 4),
    (ProgLoadAttr, "fd_array_cnt", 148, 4),
    (ProgLoadAttr, "signature", 152, 8),
    (ProgLoadAttr, "signature_size", 160, 4),
    (ProgLoadAttr, "keyring_id", 164, 4),
    (TestRunAttr, "prog_fd", 0, 4),
    (TestRunAttr, "retval", 4, 4),
    (TestRunAttr, "data_size_in", 8, 4),
    (TestRunAttr, "data_size_out", 12, 4),
    (TestRunAttr, "data_in", 16, 8),
    (TestRunAttr, "data_out", 24, 8),
    (TestRunAttr, "repeat", 32, 4),
    (TestRunAttr, "duration", 36, 4),
    (TestRunAttr, "ctx_size_in", 40, 4),
    (TestRunAttr, "ctx_size_out", 44, 4),
    (TestRunAttr, "ctx_in", 48, 8),
    (TestRunAttr, "ctx_out", 56, 8),
    (TestRunAttr, "flags", 64, 4),
    (TestRunAttr, "cpu", 68, 4),
    (TestRunAttr, "batch_size", 72, 4),
    (GetIdAttr, "start_id", 0, 4),
    (GetIdAttr, "prog_id", 0, 4),
    (GetIdAttr, "map_id", 0, 4),
    (GetIdAttr, "btf_id", 0, 4),
    (GetIdAttr, "link_id", 0, 4),
    (GetIdAttr, "next_id", 4, 4),
    (GetIdAttr, "open_flags", 8, 4),
    (GetIdAttr, "fd_by_id_token_fd", 12, 4),
    (ObjInfoAttr, "bpf_fd", 0, 4),
    (ObjInfoAttr, "info_len", 4, 4),
    (ObjInfoAttr, "info", 8, 8),
    (EnableStatsAttr, "type", 0, 4),
    (BpfProgInfo, "type", 0, 4),
    (BpfProgInfo, "id", 4, 4),
    (BpfProgInfo, "tag", 8, 8),
    (BpfProgInfo, "jited_prog_len", 16, 4),
    (BpfProgInfo, "xlated_prog_len", 20, 4),
    (BpfProgInfo, "jited_prog_insns", 24, 8),
    (BpfProgInfo, "xlated_prog_insns", 32, 8),
    (BpfProgInfo, "load_time", 40, 8),
    (BpfProgInfo, "created_by_uid", 48, 4),
    (BpfProgInfo, "nr_map_ids", 52, 4),
    (BpfProgInfo, "map_ids", 56, 8),
    (BpfProgInfo, "name", 64, 16),
    (BpfProgInfo, "ifindex", 80, 4),
    (BpfProgInfo, "netns_dev", 88, 8),
    (BpfProgInfo, "netns_ino", 96, 8),
    (BpfProgInfo, "nr_jited_ksyms", 104, 4),
    (BpfProgInfo, "nr_jited_func_lens", 108, 4),
    (BpfProgInfo, "jited_ksyms", 112, 8),
    (BpfProgInfo, "jited_func_lens", 120, 8),
    (BpfProgInfo, "btf_id", 128, 4),
    (BpfProgInfo, "func_info_rec_size", 132, 4),
    (BpfProgInfo, "func_info", 136, 8),
    (BpfProgInfo, "nr_func_info", 144, 4),
    (BpfProgInfo, "nr_line_info", 148, 4),
    (BpfProgInfo, "line_info", 152, 8),
    (BpfProgInfo, "jited_line_info", 160, 8),
    (BpfProgInfo, "nr_jited_line_info", 168, 4),
    (BpfProgInfo, "line_info_rec_size", 172, 4),
    (BpfProgInfo, "jited_line_info_rec_size", 176, 4),
    (BpfProgInfo, "nr_prog_tags", 180, 4),
    (BpfProgInfo, "prog_tags", 184, 8),
    (BpfProgInfo, "run_time_ns", 192, 8),
    (BpfProgInfo, "run_cnt", 200, 8),
    (BpfProgInfo, "recursion_misses", 208, 8),
    (BpfProgInfo, "verified_insns", 216, 4),
    (BpfProgInfo, "attach_btf_obj_id", 220, 4),
    (BpfProgInfo, "attach_btf_id", 224, 4),
    (BtfLoadAttr, "btf", 0, 8),
    (BtfLoadAttr, "btf_log_buf", 8, 8),
    (BtfLoadAttr, "btf_size", 16, 4),
    (BtfLoadAttr, "btf_log_size", 20, 4),
    (BtfLoadAttr, "btf_log_level", 24, 4),
    (BtfLoadAttr, "btf_log_true_size", 28, 4),
    (BtfLoadAttr, "btf_flags", 32, 4),
    (BtfLoadAttr, "btf_token_fd", 36, 4),
    (ObjPinAttr, "pathname", 0, 8),
    (ObjPinAttr, "bpf_fd", 8, 4),
    (ObjPinAttr, "file_flags", 12, 4),
    (ObjPinAttr, "path_fd", 16, 4),
    (MapBatchAttr, "in_batch", 0, 8),
    (MapBatchAttr, "out_batch", 8, 8),
    (MapBatchAttr, "keys", 16, 8),
    (MapBatchAttr, "values", 24, 8),
    (MapBatchAttr, "count", 32, 4),
    (MapBatchAttr, "map_fd", 36, 4),
    (MapBatchAttr, "elem_flags", 40, 8),
    (MapBatchAttr, "flags", 48, 8),
    (BpfMapInfo, "type", 0, 4),
    (BpfMapInfo, "id", 4, 4),
    (BpfMapInfo, "key_size", 8, 4),
    (BpfMapInfo, "value_size", 12, 4),
    (BpfMapInfo, "max_entries", 16, 4),
    (BpfMapInfo, "map_flags", 20, 4),
    (BpfMapInfo, "name", 24, 16),
    (BpfMapInfo, "ifindex", 40, 4),
    (BpfMapInfo, "btf_vmlinux_value_type_id", 44, 4),
    (BpfMapInfo, "netns_dev", 48, 8),
    (BpfMapInfo, "netns_ino", 56, 8),
    (BpfMapInfo, "btf_id", 64, 4),
    (BpfMapInfo, "btf_key_type_id", 68, 4),
    (BpfMapInfo, "btf_value_type_id", 72, 4),
    (BpfMapInfo, "btf_vmlinux_id", 76, 4),
    (BpfMapInfo, "map_extra", 80, 8),
    (BpfMapInfo, "hash", 88, 8),
    (BpfMapInfo, "hash_size", 96, 4),
    (BpfBtfInfo, "btf", 0, 8),
    (BpfBtfInfo, "btf_size", 8, 4),
    (BpfBtfInfo, "id", 12, 4),
    (BpfBtfInfo, "name", 16, 8),
    (BpfBtfInfo, "name_len", 24, 4),
    (BpfBtfInfo, "kernel_btf", 28, 4),
    (BpfFuncInfo, "insn_off", 0, 4),
    (BpfFuncInfo, "type_id", 4, 4),
    (BpfLineInfo, "insn_off", 0, 4),
    (BpfLineInfo, "file_name_off", 4, 4),
    (BpfLineInfo, "line_off", 8, 4),
    (BpfLineInfo, "line_col", 12, 4),
]

SIZES = [
    (MapCreateAttr, 96),
    (MapElemAttr, 32),
    (ProgLoadAttr, 168),  # == sizeof(union bpf_attr) in 6.18: PROG_LOAD is the largest member
    (TestRunAttr, 80),
    (GetIdAttr, 16),
    (ObjInfoAttr, 16),
    (EnableStatsAttr, 4),
    (BpfProgInfo, 232),
    (BtfLoadAttr, 40),
    (ObjPinAttr, 24),
    (MapBatchAttr, 56),
    (BpfMapInfo, 104),
    (BpfBtfInfo, 32),
    (BpfFuncInfo, 8),
    (BpfLineInfo, 16),
]


@pytest.mark.parametrize(
    ("struct", "field", "offset", "size"),
    LAYOUT,
    ids=[f"{s.__name__}.{f}" for s, f, _, _ in LAYOUT],
)
def test_field_offset_and_size(struct: type[ctypes.Structure], field: str, offset: int, size: int) -> None:
    descriptor = getattr(struct, field)
    assert (descriptor.offset, descriptor.size) == (offset, size)


@pytest.mark.parametrize(("struct", "size"), SIZES, ids=[s.__name__ for s, _ in SIZES])
def test_struct_size(struct: type[ctypes.Structure], size: int) -> None:
    assert ctypes.sizeof(struct) == size


def test_every_field_is_pinned() -> None:
    def public_fields(struct: type[ctypes.Structure]) -> set[str]:
        names: set[str] = set()
        for name, ftype, *bits in struct._fields_:
            if bits:  # a bit-field (gpl_compatible): pinned by its own test
                continue
            if name.startswith("_"):  # an anonymous union: its members are the fields
                names.update(n for n, *_ in ftype._fields_)  # type: ignore[union-attr]
            else:
                names.add(name)
        return names

    pinned: dict[type[ctypes.Structure], set[str]] = {}
    for struct, field, _, _ in LAYOUT:
        pinned.setdefault(struct, set()).add(field)
    for struct, _ in SIZES:
        assert public_fields(struct) == pinned[struct], struct.__name__


@pytest.mark.skipif(sys.byteorder != "little", reason="bit-field order is pinned for little-endian")
def test_gpl_compatible_is_the_low_bit_after_ifindex() -> None:
    info = BpfProgInfo()
    info.gpl_compatible = 1
    assert bytes(info)[84:88] == b"\x01\x00\x00\x00"
    assert BpfProgInfo.gpl_compatible.offset == 84


def test_cmd_numbers() -> None:
    assert int(Cmd.MAP_CREATE) == 0
    assert int(Cmd.PROG_LOAD) == 5
    assert int(Cmd.PROG_TEST_RUN) == 10
    assert Cmd["PROG_RUN"] is Cmd.PROG_TEST_RUN  # alias
    assert int(Cmd.OBJ_GET_INFO_BY_FD) == 15
    assert int(Cmd.ENABLE_STATS) == 32
    assert int(Cmd.TOKEN_CREATE) == 36
    assert int(Cmd.PROG_STREAM_READ_BY_FD) == 37
    assert len(Cmd) == 38  # __MAX_BPF_CMD in 6.18 (aliases are not counted)
    assert list(Cmd) == sorted(Cmd)
    assert [int(c) for c in Cmd] == list(range(38))
    assert Cmd.PROG_LOAD.uapi_name() == "BPF_PROG_LOAD"


def test_flag_values() -> None:
    assert uapi.BPF_OBJ_NAME_LEN == 16
    assert uapi.BPF_TAG_SIZE == 8
    flags = uapi.MapElemFlags
    assert [int(f) for f in (flags.ANY, flags.NOEXIST, flags.EXIST, flags.LOCK)] == [0, 1, 2, 4]
    assert int(uapi.TestRunFlags.RUN_ON_CPU) == 1
    assert int(uapi.TestRunFlags.XDP_LIVE_FRAMES) == 2
    assert int(uapi.StatsType.RUN_TIME) == 0


def test_spec_enums_are_dense_and_complete() -> None:
    # __MAX_BPF_PROG_TYPE, __MAX_BPF_MAP_TYPE, __MAX_BPF_ATTACH_TYPE in 6.18.
    assert [int(t) for t in ProgramType] == list(range(33))
    assert [int(t) for t in MapType] == list(range(34))
    assert [int(t) for t in AttachType] == list(range(58))
    assert int(ProgramType.XDP) == 6
    assert int(ProgramType.NETFILTER) == 32
    assert int(MapType.ARENA) == 33
    assert MapType["CGROUP_STORAGE_DEPRECATED"] is MapType.CGROUP_STORAGE  # aliases
    assert MapType["PERCPU_CGROUP_STORAGE_DEPRECATED"] is MapType.PERCPU_CGROUP_STORAGE
    assert int(AttachType.XDP) == 37
    assert int(AttachType.TRACE_UPROBE_SESSION) == 57


def test_pseudo_src_values() -> None:
    # BPF_PSEUDO_* in include/uapi/linux/bpf.h.
    assert [int(s) for s in uapi.PseudoSrc] == [1, 2, 3, 5, 6]
    assert (uapi.BPF_PSEUDO_CALL, uapi.BPF_PSEUDO_KFUNC_CALL) == (1, 2)
    assert int(uapi.ProgLoadFlags.SLEEPABLE) == 16
    assert int(uapi.ProgLoadFlags.XDP_HAS_FRAGS) == 32
