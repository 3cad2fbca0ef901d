"""``ebpf prog/map/link/btf list``: our listings agree with bpftool's on the same objects."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import pytest
from click.testing import CliRunner

from ebpf.cli.main import main
from ebpf.isa.asm import assemble
from ebpf.kernel.map import Map
from ebpf.kernel.program import Program
from ebpf.spec import MapSpec, MapType, ProgramType

pytestmark = pytest.mark.kernel

needs_bpftool = pytest.mark.skipif(shutil.which("bpftool") is None, reason="bpftool not installed")


def ours(*args: str) -> Any:
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def bpftool(*args: str) -> Any:
    return json.loads(
        subprocess.run(["bpftool", "-j", *args], capture_output=True, text=True, check=True).stdout
    )


_made = iter(range(1000))


@pytest.fixture
def objects() -> Any:
    # unique per use: the kernel frees a closed map asynchronously, so its name may linger
    name = f"kobj{os.getpid() % 100000}_{next(_made)}"
    m = Map.create(MapSpec(name, MapType.HASH, 4, 8, 16))
    m.update(b"\x01\0\0\0", b"\x2a" + bytes(7))
    source = f"""
        *(u32 *)(r10 - 4) = 1
        r1 = map_fd({m.fd}) ll
        r2 = r10
        r2 += -4
        call 1
        r0 = 2
        exit
    """
    prog = Program.load(assemble(source), ProgramType.XDP, license="GPL", name=name)
    yield prog, m
    prog.close()
    m.close()


@needs_bpftool
def test_prog_show_agrees_with_bpftool(objects: Any) -> None:
    prog, m = objects
    pid = prog.info().id
    mine = ours("prog", "show", str(pid))
    theirs = bpftool("prog", "show", "id", str(pid))
    for key in (
        "id",
        "type",
        "name",
        "tag",
        "gpl_compatible",
        "uid",
        "bytes_xlated",
        "jited",
        "bytes_jited",
        "map_ids",
    ):
        assert mine[key] == theirs[key], key
    assert abs(mine["loaded_at"] - theirs["loaded_at"]) <= 1
    assert mine["map_ids"] == [m.info().id]
    listed = {d["id"]: d for d in ours("prog", "list")}
    assert listed[pid]["tag"] == theirs["tag"]


@needs_bpftool
def test_map_list_and_dump_agree_with_bpftool(objects: Any) -> None:
    _prog, m = objects
    mid = m.info().id
    mine = {d["id"]: d for d in ours("map", "list")}[mid]
    theirs = bpftool("map", "show", "id", str(mid))
    for key in ("id", "type", "name", "flags", "bytes_key", "bytes_value", "max_entries"):
        assert mine[key] == theirs[key], key
    dumped = ours("map", "dump", str(mid))
    assert dumped == [{"key": "01000000", "value": "2a00000000000000"}]
    by_name = ours("map", "dump", m.info().name)
    assert by_name == dumped
    their_dump = bpftool("map", "dump", "id", str(mid))
    assert [bytes(int(x, 16) for x in e["key"]).hex() for e in their_dump] == ["01000000"]


def test_map_dump_errors() -> None:
    result = CliRunner().invoke(main, ["map", "dump", "no_such_map_name"])
    assert result.exit_code != 0 and "no map named 'no_such_map_name'" in result.output
    result = CliRunner().invoke(main, ["prog", "show", str(2**31 - 1)])
    assert result.exit_code != 0 and "no program with id" in result.output


@needs_bpftool
def test_btf_and_link_lists_agree_with_bpftool() -> None:
    mine = {d["id"]: d for d in ours("btf", "list")}
    theirs = {d["id"]: d for d in bpftool("btf", "show")}
    common = set(mine) & set(theirs)  # objects may come and go between the two calls
    assert common and any(mine[i]["name"] == "vmlinux" for i in common)
    for i in common:
        assert mine[i]["size"] == theirs[i]["size"]
    from ebpf import attach

    with Program.load(assemble("r0 = 0\nexit"), ProgramType.RAW_TRACEPOINT, license="GPL") as prog:
        prog_id = prog.info().id
        with attach.raw_tracepoint(prog, "sys_enter") as link:
            link_id = link.info().id
            mine_links = {d["id"]: d for d in ours("link", "list")}
            their_links = {d["id"]: d for d in bpftool("link", "show")}
    assert mine_links[link_id]["prog_id"] == their_links[link_id]["prog_id"] == prog_id
    assert mine_links[link_id]["type"] == their_links[link_id]["type"] == "raw_tracepoint"
    assert mine_links[link_id]["tp_name"] == their_links[link_id]["tp_name"] == "sys_enter"
