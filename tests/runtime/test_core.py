"""CO-RE in the runtime: programs with core_relos run against the object's BTF or a target's."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ebpf import btf
from ebpf.btf import IntEncoding as E
from ebpf.btf.core import relocate_program
from ebpf.elf import load_collection_spec
from ebpf.runtime import Collection, ContextInput

CORE = Path(__file__).resolve().parent.parent / "data" / "core"
EXPECTED = 1 + 1000 + 20 + 300 + 5000 + 7  # o->x + o->y + o->in.b + o->arr[2] + o->u2 + o->half

INT, LONG, UINT, SHORT, INNER, INT8, ANON, OBJ = range(1, 9)


def moved_target() -> btf.Spec:
    """struct obj with every member the "offsets" program reads moved (and ``half`` widened)."""
    return btf.Spec.build(
        [
            btf.Int("int", 4, E.SIGNED, bits=32),
            btf.Int("long", 8, E.SIGNED, bits=64),
            btf.Int("unsigned int", 4, bits=32),
            btf.Int("short", 2, E.SIGNED, bits=16),
            btf.Struct("inner", 8, (btf.Member("a", INT, 0), btf.Member("b", SHORT, 32))),  # not CO-RE
            btf.Array(INT, INT, 8),
            btf.Union("", 8, (btf.Member("u2", LONG, 0), btf.Member("u1", INT, 0))),
            btf.Struct(
                "obj",
                160,
                (
                    btf.Member("y", LONG, 256),
                    btf.Member("x", INT, 320),
                    btf.Member("in", INNER, 384),
                    btf.Member("", ANON, 512),
                    btf.Member("arr", INT8, 576),
                    btf.Member("half", UINT, 1152),
                ),
            ),
        ]
    )


def local_ctx() -> bytes:
    ctx = bytearray(0x58)
    struct.pack_into("<i", ctx, 0, 1)
    struct.pack_into("<q", ctx, 8, 1000)
    struct.pack_into("<h", ctx, 0x18, 20)
    struct.pack_into("<q", ctx, 0x20, 5000)
    struct.pack_into("<i", ctx, 0x30, 300)
    struct.pack_into("<H", ctx, 0x50, 7)
    return bytes(ctx)


def moved_ctx() -> bytes:
    ctx = bytearray(160)
    struct.pack_into("<q", ctx, 32, 1000)
    struct.pack_into("<i", ctx, 40, 1)
    struct.pack_into("<h", ctx, 52, 20)
    struct.pack_into("<q", ctx, 64, 5000)
    struct.pack_into("<i", ctx, 80, 300)
    struct.pack_into("<I", ctx, 144, 7)
    return bytes(ctx)


@pytest.mark.parametrize("engine", ["interp", "py"])
def test_core_against_own_and_moved_btf(engine: str) -> None:
    spec = load_collection_spec(CORE / "local.el.o")
    spec.programs = {"offsets": spec.programs["offsets"]}
    pspec = spec.programs["offsets"]
    assert pspec.core_relos
    with Collection(spec, engine=engine) as coll:
        prog = coll.programs["offsets"]
        assert prog.instructions == relocate_program(pspec, pspec.btf)  # type: ignore[arg-type]
        assert prog.run(ContextInput(local_ctx(), writable=False)).retval == EXPECTED
    target = moved_target()
    with Collection(spec, engine=engine, target_btf=target) as coll:
        prog = coll.programs["offsets"]
        assert prog.instructions != pspec.instructions
        assert prog.run(ContextInput(moved_ctx(), writable=False)).retval == EXPECTED
        # the local layout read through the moved offsets gives something else
        assert (
            prog.run(ContextInput(moved_ctx()[:0x58] + bytes(160 - 0x58), writable=False)).retval != EXPECTED
        )
