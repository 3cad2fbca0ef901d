"""The running kernel's BTF: parse it, find well-known types, encode it back byte for byte."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from ebpf import btf
from ebpf.errors import BTFError

VMLINUX = Path("/sys/kernel/btf/vmlinux")


@pytest.fixture(scope="module")
def raw() -> bytes:
    if not VMLINUX.exists():
        pytest.skip(f"{VMLINUX} is absent: kernel built without CONFIG_DEBUG_INFO_BTF")
    return VMLINUX.read_bytes()


@pytest.fixture(scope="module")
def spec(raw: bytes) -> btf.Spec:
    return btf.Spec.from_bytes(raw, source=str(VMLINUX))


def test_parse_is_fast(raw: bytes) -> None:
    start = time.perf_counter()
    btf.Spec.from_bytes(raw)
    elapsed = time.perf_counter() - start
    assert elapsed < 5, f"parsing vmlinux BTF took {elapsed:.2f} s"


def test_round_trip_is_byte_identical(raw: bytes, spec: btf.Spec) -> None:
    assert spec.to_bytes() == raw


def test_counts_per_kind(raw: bytes, spec: btf.Spec) -> None:
    counts = Counter(t.kind for t in spec)
    assert counts[btf.Kind.UNKN] == 1
    for kind in (btf.Kind.INT, btf.Kind.PTR, btf.Kind.STRUCT, btf.Kind.FUNC, btf.Kind.FUNC_PROTO):
        assert counts[kind] > 0
    # Every kind's count matches a direct walk of the info words' kind bits.
    assert sum(counts.values()) == len(spec)
    hdr_len = int.from_bytes(raw[4:8], "little" if spec.byteorder == "little" else "big")
    assert hdr_len == 24
    assert counts[btf.Kind.DATASEC] >= 1  # .data..percpu
    assert spec.to_bytes(byteorder="big") != raw


def test_task_struct_pid(spec: btf.Spec) -> None:
    task = spec.find("task_struct", btf.Struct)
    pid = next(m for m in task.members if m.name == "pid")
    pid_t = spec[pid.type]
    assert isinstance(pid_t, btf.Typedef) and pid_t.name == "pid_t"
    base = spec.resolve(pid_t)
    assert isinstance(base, btf.Int) and base.size == 4 and base.signed
    assert spec.sizeof(pid.type) == 4
    assert spec.alignof(task) == 8
    assert spec.sizeof(task) == task.size


def test_xdp_md(spec: btf.Spec) -> None:
    xdp_md = spec.find("xdp_md", btf.Struct)
    assert xdp_md.size == 24
    names = [m.name for m in xdp_md.members]
    assert names[:3] == ["data", "data_end", "data_meta"]
    assert [m.offset for m in xdp_md.members] == [32 * i for i in range(len(names))]
    assert all(spec.sizeof(m.type) == 4 for m in xdp_md.members)
    assert spec.sizeof(spec.find_id("xdp_md", btf.Struct)) == 24


def test_lookups(spec: btf.Spec) -> None:
    ids = spec.ids_by_name("pid_t")
    assert ids and all(spec[i].kind == btf.Kind.TYPEDEF for i in ids)
    assert spec.types_by_name("no such type, surely") == ()
    with pytest.raises(BTFError, match="no Struct"):
        spec.find("no_such_struct_anywhere", btf.Struct)
    func = spec.find("bpf_prog_load", btf.Func)
    assert isinstance(spec[func.type], btf.FuncProto)


def test_big_endian_round_trip(spec: btf.Spec) -> None:
    big = spec.to_bytes(byteorder="big")
    again = btf.Spec.from_bytes(big)
    assert again.byteorder == "big"
    assert again == spec
    assert again.to_bytes() == big
    assert again.to_bytes(byteorder="little") == spec.to_bytes()
