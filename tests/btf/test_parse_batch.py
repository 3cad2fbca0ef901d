"""The two walks of the type section (numpy batch and sequential) agree type for type."""

from __future__ import annotations

import sys
from array import array
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from ebpf import btf
from ebpf.btf import parse as btf_parse
from ebpf.errors import BTFError

DATA = Path(__file__).parent / "data"
VMLINUX = Path("/sys/kernel/btf/vmlinux")


def walks(raw: bytes) -> tuple[object, object]:
    order, _, type_start, type_len, str_start, str_len = btf_parse.parse_header(raw)
    strings = btf.StringTable(raw[str_start : str_start + str_len])
    words = array("I", raw[type_start : type_start + type_len])
    if order != sys.byteorder:
        words.byteswap()
    parts = btf_parse._string_parts(strings)
    assert parts is not None
    batch = btf_parse._batch_parse(
        words, raw[type_start : type_start + type_len], order, strings, parts, type_start
    )
    starts = btf_parse._string_starts(strings, parts)
    sequential = btf_parse._parse_types(words.tolist(), strings, starts, type_start, None, [btf.Void()])
    return batch, sequential


def blobs() -> list[tuple[str, bytes]]:
    out = []
    for name in ("kinds.el.o", "kinds.eb.o", "vars.el.o", "vars.eb.o"):
        with (DATA / name).open("rb") as f:
            section = ELFFile(f).get_section_by_name(".BTF")
            assert section is not None
            out.append((name, section.data()))
    return out


@pytest.mark.parametrize(("name", "raw"), blobs(), ids=[n for n, _ in blobs()])
def test_objects(name: str, raw: bytes) -> None:
    batch, sequential = walks(raw)
    assert batch is not None
    assert batch == sequential


def test_vmlinux_both_byte_orders() -> None:
    pytest.importorskip("numpy")
    if not VMLINUX.exists():
        pytest.skip(f"{VMLINUX} is absent")
    raw = VMLINUX.read_bytes()
    batch, sequential = walks(raw)
    assert batch is not None and batch == sequential
    big = btf.Spec.from_bytes(raw).to_bytes(byteorder="big")
    batch, sequential = walks(big)
    assert batch is not None and batch == sequential


def test_malformed_blob_falls_back_to_the_named_error() -> None:
    spec = btf.Spec.build([btf.Int("int", 4, btf.IntEncoding.SIGNED, bits=32), btf.Pointer(1)])
    raw = bytearray(spec.to_bytes())
    raw[24 + 16 + 7] |= 0x80  # kind_flag on the PTR: the batch walk declines, the walk names it
    order, _, type_start, type_len, str_start, str_len = btf_parse.parse_header(bytes(raw))
    strings = btf.StringTable(bytes(raw[str_start : str_start + str_len]))
    parts = btf_parse._string_parts(strings)
    assert parts is not None
    words = array("I", raw[type_start : type_start + type_len])
    assert (
        btf_parse._batch_parse(
            words, bytes(raw[type_start : type_start + type_len]), order, strings, parts, type_start
        )
        is None
    )
    with pytest.raises(BTFError, match=r"type \[2\]: PTR with vlen 0 / kind_flag 1"):
        btf.Spec.from_bytes(bytes(raw))
