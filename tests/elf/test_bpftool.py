"""Differential against libbpf: ``bpftool prog loadall`` creates the maps and loads the programs
of a corpus object; what the kernel reports must match our spec.

Compared per program (``bpftool prog show``): name, type, and the maps it references (name,
type, key/value size, max_entries, flags, frozen); for global data also the initial contents
(``bpftool map dump``). bpftool 7.1 links libbpf 1.1, which does not know ``tcx/*`` sections
(tc_cls.o) and cannot load fentry/kprobe programs here (tracer.o), so those are not compared.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.elf.conftest import DATA

from ebpf.elf import load_collection_spec
from ebpf.spec import CollectionSpec, MapSpec, MapType, PinType, RelocKind

BPFTOOL = shutil.which("bpftool")
pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(BPFTOOL is None, reason="bpftool is not installed"),
]
_COUNTER = itertools.count()
BPF_F_MMAPABLE = 0x400


def _bpftool(*args: str) -> Any:
    out = subprocess.run([str(BPFTOOL), "-j", *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out) if out.strip() else None


@pytest.fixture
def pin_dir() -> Iterator[Path]:
    root = Path("/sys/fs/bpf")
    if not root.is_dir():
        pytest.skip("bpffs is not mounted at /sys/fs/bpf")
    path = root / f"ebpf_elf_{os.getpid()}_{next(_COUNTER)}"
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _kernel_map_name(spec: MapSpec, obj: str) -> str:
    """libbpf's names: user maps as is, global data '<first 8 chars of object>.<section>'."""
    if spec.name.startswith("."):
        return (obj[:8] + spec.name)[:15]
    return spec.name[:15]


@contextmanager
def auto_pins(name: str) -> Iterator[None]:
    """libbpf pins LIBBPF_PIN_BY_NAME maps at /sys/fs/bpf/<map>; remove the pins it created."""
    spec = load_collection_spec(DATA / name)
    paths = [Path("/sys/fs/bpf") / m.name for m in spec.maps.values() if m.pinning is PinType.BY_NAME]
    existing = {p for p in paths if p.exists()}
    try:
        yield
    finally:
        for path in paths:
            if path not in existing and path.exists():
                path.unlink()


def loadall(name: str, target: Path) -> None:
    with auto_pins(name):
        subprocess.run(
            [str(BPFTOOL), "prog", "loadall", str(DATA / name), str(target)], check=True, capture_output=True
        )


def _loadall(name: str, pin_dir: Path) -> tuple[CollectionSpec, dict[str, Any]]:
    spec = load_collection_spec(DATA / name)
    target = pin_dir / "progs"
    loadall(name, target)
    progs = {p.name: _bpftool("prog", "show", "pinned", str(p)) for p in sorted(target.iterdir())}
    for pname, info in progs.items():
        assert info["name"] in (pname, pname[:15])  # bpftool completes it from BTF
    return spec, progs


@pytest.mark.parametrize("name", ["xdp_fw.o", "socket_filter.o", "tailcall.o", "map_in_map.o"])
def test_maps_and_programs_match_libbpf(name: str, pin_dir: Path) -> None:
    spec, progs = _loadall(name, pin_dir)
    obj = name.removesuffix(".o")
    assert sorted(progs) == sorted(spec.programs)
    for pname, pspec in spec.programs.items():
        info = progs[pname]
        assert info["type"] == pspec.type.name.lower()
        ours = {
            _kernel_map_name(spec.maps[r.symbol], obj): spec.maps[r.symbol]
            for r in pspec.relocations.values()
            if r.kind in (RelocKind.MAP, RelocKind.MAP_VALUE)
        }
        theirs = {
            m["name"]: m for m in (_bpftool("map", "show", "id", str(i)) for i in info.get("map_ids", []))
        }
        # libbpf binds .rodata to every program (BPF_PROG_BIND_MAP, for bpftool's metadata)
        extra = set(theirs) - set(ours)
        assert extra <= {_kernel_map_name(spec.maps[".rodata"], obj)} if ".rodata" in spec.maps else not extra
        assert set(ours) <= set(theirs), pname
        for kname, mspec in ours.items():
            m = theirs[kname]
            assert m["type"] == mspec.type.name.lower(), kname
            assert (m["bytes_key"], m["bytes_value"]) == (mspec.key_size, mspec.value_size), kname
            if mspec.max_entries:
                assert m["max_entries"] == mspec.max_entries, kname
            # libbpf 1.1 makes every global data map mmapable; newer ones (and we) only those
            # with a non-static variable -- all of the corpus's data maps have one.
            assert m["flags"] == mspec.flags, kname
            assert bool(m.get("frozen")) == mspec.freeze, kname
            if mspec.name.startswith("."):
                dump = _bpftool("map", "dump", "id", str(m["id"]))
                assert bytes(int(b, 16) for b in dump[0]["value"]) == mspec.contents[0][1], kname
    # map-in-map initial slots: what libbpf stored. (A PROG_ARRAY is emptied by the kernel when
    # its last user-space reference goes, i.e. when bpftool exits, so it cannot be compared.)
    for mname, mspec in spec.maps.items():
        if not mspec.slots or mspec.type is MapType.PROG_ARRAY:
            continue
        outer = next(
            (
                m
                for info in progs.values()
                for i in info.get("map_ids", [])
                if (m := _bpftool("map", "show", "id", str(i)))["name"] == mname[:15]
            ),
            None,
        )
        if outer is None:
            continue
        dump = _bpftool("map", "dump", "id", str(outer["id"]))
        filled = {int.from_bytes(bytes(int(b, 16) for b in e["key"]), "little") for e in dump}
        assert filled == set(mspec.slots), mname
