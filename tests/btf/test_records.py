"""btf.records: record classes against clang's own layout of initialised globals, both byte orders.

The C below is compiled with clang for ``bpfel`` and ``bpfeb``; each global's bytes in
``.data`` are what clang laid out for its initialiser. Decoding them with the class made
from the object's BTF must give the initialiser's values back, and packing must give the
same bytes again (bitfields, nested and anonymous members, unions, enums, char arrays).
"""

from __future__ import annotations

import ctypes
import enum
import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import given, settings
from hypothesis import strategies as st

from ebpf import btf
from ebpf.btf.records import CharArray, Record, numpy_dtype, record_class
from ebpf.errors import BTFError

SOURCE = r"""
enum color { RED = 1, GREEN = 2, BLUE = -1 };
enum big { HUGE = 0x1234567890ULL };
typedef unsigned int u32;
typedef struct { short lo; short hi; } pair_t;

struct inner { unsigned char tag; long long count; };

struct sample {
    u32 pid;
    char comm[8];
    enum color color;
    struct inner in;
    union { int as_int; unsigned char raw[4]; } u;
    struct { int anon_a; };
    unsigned int flag : 1;
    unsigned int level : 3;
    int delta : 5;
    unsigned long long wide : 40;
    pair_t pair;
    short arr[3];
    enum big big;
    _Bool ok;
    float f;
    double d;
    void *ptr;
};

struct sample v = {
    .pid = 4242, .comm = "bash", .color = BLUE, .in = { .tag = 7, .count = -5 },
    .u = { .as_int = 0x01020304 }, .anon_a = -9, .flag = 1, .level = 5, .delta = -3,
    .wide = 0xABCDEF0123ULL, .pair = { -2, 3 }, .arr = { 1, -1, 300 }, .big = HUGE,
    .ok = 1, .f = 1.5f, .d = -2.25,
};
"""

CLANG = shutil.which("clang-19") or shutil.which("clang")


def compile_object(tmp_path: Path, target: str) -> tuple[btf.Spec, bytes]:
    if CLANG is None:
        pytest.skip("clang is not installed")
    src = tmp_path / "rec.c"
    src.write_text(SOURCE)
    obj = tmp_path / f"rec.{target}.o"
    subprocess.run([CLANG, "-g", "-O2", "-target", target, "-c", str(src), "-o", str(obj)], check=True)
    with obj.open("rb") as f:
        elf = ELFFile(f)
        spec = btf.Spec.from_bytes(elf.get_section_by_name(".BTF").data())
        data = elf.get_section_by_name(".data").data()
    return spec, data


def value_type(spec: btf.Spec) -> int:
    var = spec.find("v", btf.Var)
    return var.type


@pytest.fixture(params=["bpfel", "bpfeb"])
def compiled(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[btf.Spec, bytes]:
    return compile_object(tmp_path, request.param)


def test_decodes_clangs_layout(compiled: tuple[btf.Spec, bytes]) -> None:
    spec, data = compiled
    Sample = record_class(spec, value_type(spec))
    assert issubclass(Sample, Record) and Sample.__name__ == "sample"
    assert Sample.size == len(data)
    s = Sample.unpack(data)
    assert s.pid == 4242
    assert isinstance(s.comm, CharArray) and s.comm == b"bash\0\0\0\0" and s.comm.text == "bash"
    assert isinstance(s.color, enum.IntEnum) and s.color.name == "BLUE" and s.color == -1
    assert (s.__getattr__("in").tag, s.__getattr__("in").count) == (7, -5)
    assert s.u.as_int == 0x01020304
    assert s.u.raw == (b"\4\3\2\1" if spec.byteorder == "little" else b"\1\2\3\4")  # u8[]: bytes
    assert s._anon0.anon_a == -9
    assert (s.flag, s.level, s.delta, s.wide) == (1, 5, -3, 0xABCDEF0123)
    assert type(s.pair).__name__ == "pair_t" and (s.pair.lo, s.pair.hi) == (-2, 3)
    assert s.arr == (1, -1, 300)
    assert s.big == 0x1234567890 and s.big.name == "HUGE"
    assert s.ok == 1 and s.f == 1.5 and s.d == -2.25 and s.ptr == 0
    assert s.pack() == data  # every byte, padding included, round-trips


@pytest.mark.parametrize("target", ["bpfel", "bpfeb"])
def test_datasec_is_a_record_of_its_variables(tmp_path: Path, target: str) -> None:
    """Global data through the ELF loader (which fixes DATASEC sizes and offsets like libbpf)."""
    from ebpf.elf import load_collection_spec
    from ebpf.maps import create

    spec, data = compile_object(tmp_path, target)
    coll = load_collection_spec(tmp_path / f"rec.{target}.o")
    mspec = coll.maps[".data"]
    assert mspec.btf is not None
    Data = record_class(mspec.btf, mspec.value_type_id)
    assert Data.__name__ == "data" and Data.fields == ("v",) and Data.size == len(data)
    assert Data.unpack(data).v.pack() == record_class(spec, value_type(spec)).unpack(data).pack() == data
    with create(mspec) as m:
        view = m.typed()
        assert view[0].v.pid == 4242 and view[0].v.comm.text == "bash"
        view[0] = view[0]._replace(v=view[0].v._replace(pid=7))
        assert m.lookup(bytes(4))[:4] == (7).to_bytes(4, spec.byteorder)


def test_build_from_keywords_matches_clang(compiled: tuple[btf.Spec, bytes]) -> None:
    spec, data = compiled
    Sample = record_class(spec, value_type(spec))
    s = Sample.unpack(data)
    fields = s._asdict()
    rebuilt = Sample(**fields)
    assert rebuilt == s
    assert rebuilt.pack() == data  # clang zero-fills padding, so do we
    changed = s._replace(level=2, comm=b"zsh")
    assert changed.level == 2 and changed.flag == 1 and changed.delta == -3
    assert changed.comm == b"zsh\0\0\0\0\0"
    assert Sample.unpack(changed.pack()) == changed


def test_numpy_dtype(compiled: tuple[btf.Spec, bytes]) -> None:
    np = pytest.importorskip("numpy")
    spec, data = compiled
    dtype = numpy_dtype(spec, value_type(spec))
    assert dtype.itemsize == len(data)
    arr = np.frombuffer(data * 3, dtype=dtype)
    assert len(arr) == 3
    assert int(arr["pid"][2]) == 4242 and bytes(arr["comm"][0]) == b"bash"
    assert int(arr["in"]["count"][1]) == -5 and int(arr["color"][0]) == -1
    assert list(arr["arr"][0]) == [1, -1, 300] and float(arr["d"][0]) == -2.25
    assert "flag" not in dtype.names  # bitfields have no numpy type


def build(*types: btf.Type) -> btf.Spec:
    return btf.Spec.build(types)


INT = btf.Int("int", 4, btf.IntEncoding.SIGNED, 0, 32)
U8 = btf.Int("unsigned char", 1, btf.IntEncoding.NONE, 0, 8)


def test_scalars_and_errors() -> None:
    spec = build(
        INT,
        btf.Struct("s", 8, (btf.Member("a", 1, 0), btf.Member("b", 1, 32))),
        btf.Union("u", 4, (btf.Member("i", 1, 0), btf.Member("c", 4, 0))),
        btf.Array(5, 1, 4),
        U8,
        btf.Func("f", 0),
        btf.Enum("e", 4, (btf.EnumValue("A", 0),)),
        btf.Array(1, 1, 2),
    )
    Int = record_class(spec, 1)
    assert Int.unpack(b"\xff\xff\xff\xff") == -1 and Int(7).pack() == b"\7\0\0\0"
    with pytest.raises(BTFError):
        Int(1 << 31).pack()
    with pytest.raises(BTFError):
        Int.unpack(b"\0")
    S = record_class(spec, 2)
    assert record_class(spec, 2) is S  # cached
    match S(a=1, b=2):
        case S(1, b):
            assert b == 2
        case _:
            raise AssertionError("positional pattern did not match")
    with pytest.raises(BTFError):
        S(c=1)
    with pytest.raises(BTFError):
        S(a="x")
    with pytest.raises(AttributeError):
        S().a = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        _ = S().zz
    U = record_class(spec, 3)
    u = U(c=b"\1\2\3\4")
    assert u.pack() == b"\1\2\3\4" and u.i == 0x04030201
    assert U(i=5, c=b"\x09").pack() == b"\x09\0\0\0"  # the later keyword wins
    with pytest.raises(BTFError):
        record_class(spec, 6)  # a function has no size
    with pytest.raises(BTFError):
        record_class(spec, 99)
    E = record_class(spec, 7)
    assert E.unpack(b"\0\0\0\0") is E.A and E.unpack(b"\5\0\0\0") == 5  # unnamed value: plain int
    assert E.A.pack() == bytes(4)
    with pytest.raises(BTFError):
        record_class(spec, 4)(b"12345").pack()  # 5 bytes for char[4]
    Pair = record_class(spec, 8)
    assert Pair.unpack(b"\1\0\0\0\xff\xff\xff\xff") == (1, -1) and Pair((3,)).pack() == b"\3" + bytes(7)
    with pytest.raises(BTFError):
        Pair(range(3))  # 3 elements for [2]


def test_long_double_is_raw_bytes() -> None:
    spec = build(btf.Float("long double", 16))
    LD = record_class(spec, 1)
    assert LD.size == 16 and LD.unpack(bytes(range(16))) == bytes(range(16))
    assert numpy_dtype(spec, 1).itemsize == 16


def test_old_style_int_bitfields() -> None:
    """Bitfields encoded in the INT type (bits/offset), as older compilers emit them."""
    spec = build(
        btf.Int("unsigned int", 4, btf.IntEncoding.NONE, 0, 32),
        btf.Int("unsigned int", 4, btf.IntEncoding.NONE, 4, 3),
        btf.Struct("old", 4, (btf.Member("x", 2, 0),)),
    )
    Old = record_class(spec, 3)
    assert Old.unpack(bytes([0b0101_0000, 0, 0, 0])).x == 5
    assert Old(x=5).pack() == bytes([0b0101_0000, 0, 0, 0])
    with pytest.raises(BTFError):
        Old(x=8)


# --- random layouts against ctypes (the host's C layout, little-endian x86-64/arm64) ------------


SCALARS = [
    ("unsigned char", 1, False, ctypes.c_uint8),
    ("signed char", 1, True, ctypes.c_int8),
    ("unsigned short", 2, False, ctypes.c_uint16),
    ("short", 2, True, ctypes.c_int16),
    ("unsigned int", 4, False, ctypes.c_uint32),
    ("int", 4, True, ctypes.c_int32),
    ("unsigned long long", 8, False, ctypes.c_uint64),
    ("long long", 8, True, ctypes.c_int64),
]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, len(SCALARS) - 1), st.integers(0, 3)), min_size=1, max_size=8),
    st.data(),
)
def test_random_structs_match_ctypes(members: list[tuple[int, int]], data: st.DataObject) -> None:
    """Scalars and scalar arrays at natural alignment: same bytes as ctypes, same values back."""
    types: list[btf.Type] = [
        btf.Int(n, s, btf.IntEncoding.SIGNED if sg else btf.IntEncoding.NONE, 0, s * 8)
        for n, s, sg, _ in SCALARS
    ]
    btf_members, c_fields, values = [], [], {}
    offset, align = 0, 1
    for i, (kind, count) in enumerate(members):
        name, size, signed, ctype = SCALARS[kind]
        tid = kind + 1
        if count:
            types.append(btf.Array(tid, 5, count))
            tid = len(types)
            ctype = ctype * count  # type: ignore[assignment]
        offset = (offset + size - 1) // size * size
        align = max(align, size)
        btf_members.append(btf.Member(f"m{i}", tid, offset * 8))
        c_fields.append((f"m{i}", ctype))
        lo, hi = (-(1 << (size * 8 - 1)), (1 << (size * 8 - 1)) - 1) if signed else (0, (1 << (size * 8)) - 1)
        if count and size == 1 and "char" in name:
            values[f"m{i}"] = data.draw(st.binary(min_size=count, max_size=count))
        elif count:
            values[f"m{i}"] = tuple(data.draw(st.lists(st.integers(lo, hi), min_size=count, max_size=count)))
        else:
            values[f"m{i}"] = data.draw(st.integers(lo, hi))
        offset += size * max(count, 1)
    total = (offset + align - 1) // align * align
    types.append(btf.Struct("s", total, tuple(btf_members)))
    spec = btf.Spec.build(types)
    S = record_class(spec, len(types))

    class C(ctypes.Structure):
        _fields_ = c_fields

    c = C()
    for name, value in values.items():
        field = getattr(c, name)
        if isinstance(field, ctypes.Array):
            for j, item in enumerate(value):
                field[j] = item
        else:
            setattr(c, name, value)
    assert S.size == ctypes.sizeof(C)
    assert S(**values).pack() == bytes(c)
    decoded = S.unpack(bytes(c))
    for name, value in values.items():
        assert getattr(decoded, name) == value
