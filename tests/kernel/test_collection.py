"""kernel.collection logic that needs no kernel: libbpf's names, kconfig values, attach targets,
relocation of placeholders (with a scripted bpf() backend)."""

from __future__ import annotations

import ctypes
import struct

import pytest

from ebpf import isa
from ebpf.errors import RelocationError
from ebpf.kernel.collection import (
    Collection,
    KconfigError,
    _kconfig_bytes,
    attach_btf_target,
    internal_map_name,
    kernel_version_code,
)
from ebpf.kernel.uapi import Cmd, ProgLoadAttr
from ebpf.spec import (
    AttachType,
    CollectionSpec,
    MapSpec,
    MapType,
    ProgramSpec,
    ProgramType,
    Relocation,
    RelocKind,
)

from ._fakes import FakeKernel


@pytest.mark.parametrize(
    ("obj", "section", "name"),
    [
        ("minimal", ".rodata", "minimal.rodata"),  # bpftool: "minimal.rodata"
        ("g", ".bss", "g.bss"),
        ("a_long_object_name", ".data", "a_long_o.data"),  # 8 characters of the object name
        ("tailcall", ".kconfig", "tailcal.kconfig"),  # ".kconfig" is 8: 7 left
        ("prog", ".rodata.str1.1", ".rodata.str1.1"),  # a second dot: the section alone
        ("prog", ".data.a_very_long_name", ".data.a_very_lo"),
        ("my-obj", ".bss", "my_obj.bss"),
    ],
)
def test_internal_map_names_like_libbpf(obj: str, section: str, name: str) -> None:
    assert internal_map_name(obj, section) == name


def test_kconfig_values() -> None:
    assert _kconfig_bytes("CONFIG_X", "y", 1, "little") == b"\x01"
    assert _kconfig_bytes("CONFIG_X", "m", 4, "little") == b"\x02\0\0\0"
    assert _kconfig_bytes("CONFIG_X", "n", 1, "little") == b"\x00"
    assert _kconfig_bytes("CONFIG_HZ", "250", 4, "little") == struct.pack("<I", 250)
    assert _kconfig_bytes("CONFIG_X", "0x10", 8, "big") == (16).to_bytes(8, "big")
    assert _kconfig_bytes("CONFIG_S", '"abc"', 8, "little") == b"abc\0\0\0\0\0"
    with pytest.raises(KconfigError, match="does not fit"):
        _kconfig_bytes("CONFIG_S", '"abcdefgh"', 8, "little")
    with pytest.raises(KconfigError, match="cannot parse"):
        _kconfig_bytes("CONFIG_X", "maybe", 4, "little")
    assert kernel_version_code((6, 18, 300)) == (6 << 16) + (18 << 8) + 255


def test_attach_btf_targets() -> None:
    insns = isa.assemble("r0 = 0\nexit")
    tp = ProgramSpec("p", "tp_btf/x", ProgramType.TRACING, insns, AttachType.TRACE_RAW_TP, "sched_switch")
    assert attach_btf_target(tp) is not None and attach_btf_target(tp)[0] == "btf_trace_sched_switch"  # type: ignore[index]
    fentry = ProgramSpec("p", "fentry/x", ProgramType.TRACING, insns, AttachType.TRACE_FENTRY, "do_exit")
    assert attach_btf_target(fentry)[0] == "do_exit"  # type: ignore[index]
    lsm = ProgramSpec("p", "lsm/x", ProgramType.LSM, insns, AttachType.LSM_MAC, "file_open")
    assert attach_btf_target(lsm)[0] == "bpf_lsm_file_open"  # type: ignore[index]
    it = ProgramSpec("p", "iter/task", ProgramType.TRACING, insns, AttachType.TRACE_ITER, "task")
    assert attach_btf_target(it)[0] == "bpf_iter_task"  # type: ignore[index]
    xdp = ProgramSpec("p", "xdp", ProgramType.XDP, insns)
    assert attach_btf_target(xdp) is None


def test_map_placeholders_become_pseudo_map_fd_and_value(fake_kernel: FakeKernel) -> None:
    fds: list[int] = []

    def create(attr: ctypes.Structure) -> int:
        fds.append(fake_kernel.new_fd())
        return fds[-1]

    loaded: list[bytes] = []

    def load(attr: ctypes.Structure) -> int:
        assert isinstance(attr, ProgLoadAttr)
        loaded.append(ctypes.string_at(attr.insns, attr.insn_cnt * 8))
        return fake_kernel.new_fd()

    fake_kernel.on(Cmd.MAP_CREATE, create)
    fake_kernel.on(Cmd.MAP_UPDATE_ELEM, lambda attr: 0)
    fake_kernel.on(Cmd.PROG_LOAD, load)
    spec = CollectionSpec(license="GPL")
    spec.maps["m"] = MapSpec("m", MapType.HASH, 4, 4, 1)
    spec.maps[".data"] = MapSpec(
        ".data", MapType.ARRAY, 4, 16, 1, flags=0x400, contents=[(bytes(4), bytes(16))]
    )
    insns = isa.assemble("r1 = 0 ll\nr2 = 0 ll\nr0 = 0\nexit")
    spec.programs["p"] = ProgramSpec(
        "p",
        "xdp",
        ProgramType.XDP,
        insns,
        license="GPL",
        relocations={
            0: Relocation(RelocKind.MAP, "m"),
            2: Relocation(RelocKind.MAP_VALUE, ".data", offset=12),
        },
    )
    with Collection(spec) as coll:
        assert set(coll.maps) == {"m", ".data"}
    (code,) = loaded
    slots = [struct.unpack_from("<BBhi", code, i * 8) for i in range(len(code) // 8)]
    assert slots[0][1] >> 4 == 1 and slots[0][3] == fds[0]  # BPF_PSEUDO_MAP_FD, imm = fd
    assert slots[2][1] >> 4 == 2 and slots[2][3] == fds[1]  # BPF_PSEUDO_MAP_VALUE, imm = fd
    assert slots[3][3] == 12  # next slot: the offset into the value


def test_a_relocation_to_an_unknown_map_names_program_and_slot(fake_kernel: FakeKernel) -> None:
    spec = CollectionSpec(license="GPL")
    insns = isa.assemble("r1 = 0 ll\nr0 = 0\nexit")
    spec.programs["p"] = ProgramSpec(
        "p", "xdp", ProgramType.XDP, insns, relocations={0: Relocation(RelocKind.MAP, "nope")}
    )
    with pytest.raises(RelocationError, match="unknown map 'nope'") as info:
        Collection(spec)
    assert (info.value.program, info.value.insn_index) == ("p", 0)


def test_an_object_of_the_other_byte_order_is_refused(fake_kernel: FakeKernel) -> None:
    import sys

    from ebpf.errors import NotSupportedError

    other = "big" if sys.byteorder == "little" else "little"
    spec = CollectionSpec(license="GPL", byteorder=other)
    with pytest.raises(NotSupportedError, match=f"{other}-endian object"):
        Collection(spec)
    assert fake_kernel.calls == []  # refused before any bpf() call
