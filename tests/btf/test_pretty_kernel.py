"""``format_value`` against the real ``bpftool map dump``: the same BTF, the same bytes, the same text.

The BTF is loaded into the kernel (``BPF_BTF_LOAD``), an ARRAY map is created with its key and
value types, one value is written, and bpftool prints it.
"""

from __future__ import annotations

import shutil
import struct
import subprocess

import pytest

from ebpf import btf
from ebpf.btf.pretty import format_value

BPFTOOL = shutil.which("bpftool")
S = btf.IntEncoding.SIGNED

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(BPFTOOL is None, reason="bpftool is not installed")]

TYPES: list[btf.Type] = [
    btf.Int("unsigned int", 4, bits=32),  # 1
    btf.Int("int", 4, S, bits=32),  # 2
    btf.Int("char", 1, S, bits=8),  # 3
    btf.Int("_Bool", 1, btf.IntEncoding.BOOL, bits=8),  # 4
    btf.Int("long long unsigned int", 8, bits=64),  # 5
    btf.Array(3, 1, 8),  # 6: char[8]
    btf.Enum("color", 4, (btf.EnumValue("RED", 0), btf.EnumValue("BLUE", 2))),  # 7
    btf.Pointer(2),  # 8
    btf.Array(2, 1, 3),  # 9: int[3]
    btf.Struct("inner", 8, (btf.Member("x", 2, 0), btf.Member("y", 7, 32))),  # 10
    btf.Array(10, 1, 2),  # 11: struct inner[2]
    btf.Struct(
        "value",
        72,
        (
            btf.Member("name", 6, 0),
            btf.Member("a", 1, 64, 3),
            btf.Member("b", 2, 67, 5),
            btf.Member("c", 1, 72, 20),
            btf.Member("color", 7, 96),
            btf.Member("p", 8, 128),
            btf.Member("v", 9, 192),
            btf.Member("ok", 4, 288),
            btf.Member("big", 5, 320),
            btf.Member("pairs", 11, 384),
            btf.Member("raw", 6, 512),
        ),
        kind_flag=True,
    ),  # 12
]


def value_bytes() -> bytes:
    bits = 5 | (0x13 << 3) | (12345 << 8)  # a=5, b=-13 (5 bits), c=12345
    return (
        b"lo\0\0\0\0\0\0"
        + struct.pack("<I", bits)
        + struct.pack("<I", 2)
        + struct.pack("<Q", 0xFFFF888012345678)
        + struct.pack("<3i", -1, 0, 7)
        + b"\x01\0\0\0"
        + struct.pack("<Q", 1 << 63)
        + struct.pack("<iIiI", 1, 0, -2, 9)
        + b"a\x01bcdefg"
    )


def test_value_like_bpftool_map_dump() -> None:
    from ebpf.kernel.btf import KernelBTF
    from ebpf.kernel.map import Map
    from ebpf.spec import MapSpec, MapType

    spec = btf.Spec.build(TYPES)
    data = value_bytes()
    assert len(data) == 72
    with KernelBTF.load(spec) as kbtf:
        mspec = MapSpec(
            name="pretty_test",
            type=MapType.ARRAY,
            key_size=4,
            value_size=72,
            max_entries=1,
            key_type_id=1,
            value_type_id=12,
            btf=spec,
        )
        with Map.create(mspec, btf=kbtf) as m:
            m.update(struct.pack("<I", 0), data)
            assert BPFTOOL is not None
            out = subprocess.run(
                [BPFTOOL, "map", "dump", "id", str(m.info().id)], capture_output=True, text=True, check=True
            ).stdout
    ours = format_value(spec, 12, data)
    # bpftool prints the value two levels deep: [{ "key": 0, "value": ... }]
    expected = '[{\n        "key": 0,\n        "value": ' + ours.replace("\n", "\n        ") + "\n    }\n]\n"
    assert out == expected
