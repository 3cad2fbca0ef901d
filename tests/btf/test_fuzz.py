"""Hypothesis: whatever the bytes, ``Spec.from_bytes`` returns a Spec or raises BTFError.

What parses also re-encodes to a blob that parses to the same types (cilium's
FuzzLoadCollectionSpec, for BTF).
"""

from __future__ import annotations

import struct
from pathlib import Path

from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebpf import btf
from ebpf.errors import BTFError

from .test_parse import EVERY_KIND


def _clang_btf() -> bytes:
    with (Path(__file__).parent / "data" / "kinds.el.o").open("rb") as f:
        section = ELFFile(f).get_section_by_name(".BTF")
        assert section is not None
        data: bytes = section.data()
        return data


SEEDS = [
    _clang_btf(),
    btf.Spec.build(EVERY_KIND).to_bytes(),
    btf.Spec.build(EVERY_KIND).to_bytes(byteorder="big"),
]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(data: bytes) -> None:
    try:
        spec = btf.Spec.from_bytes(data, source="fuzz")
    except BTFError as err:
        assert err.source == "fuzz"
        return
    again = btf.Spec.from_bytes(spec.to_bytes())
    assert again == spec


@FUZZ
@given(st.binary(max_size=256))
def test_random_bytes(data: bytes) -> None:
    check(data)


@FUZZ
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=8),
)
def test_mutated_bytes(seed: bytes, edits: list[tuple[int, int]]) -> None:
    data = bytearray(seed)
    for pos, value in edits:
        data[pos % len(data)] = value
    check(bytes(data))


@FUZZ
@given(st.sampled_from(SEEDS), st.integers(0, 2**16), st.integers(0, 2**16))
def test_truncated_and_sliced(seed: bytes, start: int, length: int) -> None:
    check(seed[: start % (len(seed) + 1)])
    check(seed[:24] + seed[24 + start % len(seed) :][:length])


@FUZZ
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 2**32 - 1)), min_size=1, max_size=4),
)
def test_mutated_words(seed: bytes, edits: list[tuple[int, int]]) -> None:
    """Overwrite whole aligned words of the type section: reaches the per-kind checks."""
    data = bytearray(seed)
    order = "<" if data[0] == 0x9F else ">"
    type_len = struct.unpack_from(order + "I", data, 12)[0]
    for pos, value in edits:
        if type_len:
            struct.pack_into(order + "I", data, 24 + 4 * (pos % (type_len // 4)), value)
    check(bytes(data))


@FUZZ
@given(st.lists(st.integers(0, 2**32 - 1), max_size=40), st.binary(max_size=40))
def test_random_type_words(words: list[int], strings: bytes) -> None:
    """A valid header around random type words and a random string section."""
    types = struct.pack(f"<{len(words)}I", *words)
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    check(header + types + strings)


NAME = st.sampled_from([0, 0, 1, 3])  # valid offsets in every STRINGS table
SMALL = st.integers(0, 8)
TYPE_RECORD = st.builds(
    lambda name, kind, vlen, flag, size, extra: [name, flag << 31 | kind << 24 | vlen, size, *extra],
    NAME,
    st.one_of(st.integers(1, 19), st.integers(0, 31)),
    st.sampled_from([0, 0, 1, 2]),
    st.sampled_from([0, 0, 0, 1]),
    SMALL,
    st.lists(st.one_of(NAME, SMALL, st.integers(0, 2**32 - 1)), max_size=6),
)
STRINGS = st.sampled_from([b"\0a\0bc\0", b"\0a\0b\xffc\0", b"\0a\0bc"])


@FUZZ
@given(st.lists(TYPE_RECORD, max_size=8), STRINGS)
def test_plausible_type_records(records: list[list[int]], strings: bytes) -> None:
    """Records with small names, kinds, vlens and ids: most parse, the rest fail deep inside."""
    words = [w for record in records for w in record]
    types = struct.pack(f"<{len(words)}I", *words)
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    check(header + types + strings)
