"""Differential: linked programs against ``llvm-objdump-19 -d`` of the same object.

Each program must be its own function's bytes followed by whole functions of the object, as
llvm-objdump decodes them, with only relocated ``lddw``s (placeholders), calls and
``BPF_PSEUDO_FUNC`` loads differing, and every call landing on the start of an appended function.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from tests.elf.conftest import DATA

from ebpf.elf import load_collection_spec

OBJDUMP = shutil.which("llvm-objdump-19") or shutil.which("llvm-objdump")
pytestmark = pytest.mark.skipif(OBJDUMP is None, reason="llvm-objdump-19 is not installed")

_FUNC = re.compile(r"^[0-9a-f]+ <(?P<name>[^>]+)>:$")
_INSN = re.compile(r"^\s*(?P<slot>\d+):\t(?P<bytes>[0-9a-f]{2}(?: [0-9a-f]{2})*)")

OBJECTS = [
    "xdp_fw.o",
    "xdp_fw.be.o",
    "tc_cls.o",
    "tc_cls.be.o",
    "tailcall.o",
    "map_in_map.o",
    "tracer.o",
    "subprogs.o",
    "subprogs.be.o",
]


def _objdump(name: str) -> dict[str, bytes]:
    out = subprocess.run(
        [str(OBJDUMP), "-d", str(DATA / name)], check=True, capture_output=True, text=True
    ).stdout
    funcs: dict[str, bytearray] = {}
    current: bytearray | None = None
    for line in out.splitlines():
        if m := _FUNC.match(line):
            current = funcs.setdefault(m["name"], bytearray())
        elif (m := _INSN.match(line)) and current is not None:
            current += bytes.fromhex(m["bytes"].replace(" ", ""))
    return {k: bytes(v) for k, v in funcs.items()}


def _same(code: bytes, special: set[int], at: int, body: bytes) -> bool:
    """``body`` (objdump bytes of a function) sits at slot ``at`` of ``code``; at ``special``
    slots (lddw placeholders, calls, BPF_PSEUDO_FUNC loads) only the opcode byte must agree."""
    if at * 8 + len(body) > len(code):
        return False
    for k in range(len(body) // 8):
        s = at + k
        if s in special:
            if code[s * 8] != body[k * 8]:
                return False
            continue
        if (s - 1) in special and code[(s - 1) * 8] == 0x18:
            continue  # second slot of a relocated lddw
        if code[s * 8 : s * 8 + 8] != body[k * 8 : k * 8 + 8]:
            return False
    return True


@pytest.mark.parametrize("name", OBJECTS)
def test_programs_are_linked_objdump_functions(name: str) -> None:
    spec = load_collection_spec(DATA / name)
    funcs = _objdump(name)
    for prog in spec.programs.values():
        code = prog.instructions.encode(spec.byteorder)
        slots = len(code) // 8
        special: set[int] = set(prog.relocations)
        call_targets: set[int] = set()
        slot = 0
        for insn in prog.instructions:
            if insn.opcode == 0x85 and insn.src == 1:
                special.add(slot)
                call_targets.add(slot + 1 + insn.imm)
            elif insn.opcode == 0x18 and insn.src == 4:
                special.add(slot)
                call_targets.add(slot + 1 + (insn.imm & 0xFFFFFFFF))
            slot += insn.slots

        assert _same(code, special, 0, funcs[prog.name]), prog.name
        starts = {0}
        at = len(funcs[prog.name]) // 8
        while at < slots:
            found = [f for f, body in funcs.items() if f != prog.name and _same(code, special, at, body)]
            assert found, f"{prog.name}: slots {at}.. are no function of the object"
            starts.add(at)
            at += len(funcs[found[0]]) // 8
        assert call_targets <= starts, (prog.name, call_targets - starts)
