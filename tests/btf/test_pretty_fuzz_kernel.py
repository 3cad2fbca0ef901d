"""Differential fuzz of ``format_value`` against ``bpftool map dump``: random C types (clang's
BTF, loaded into the kernel), random bytes in an ARRAY map, the same text.

Floating point members are left out: bpftool 7.1 prints ``(unsupported-kind`` for them.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from ebpf import btf
from ebpf.btf.pretty import format_value

from .test_cdump_fuzz import CLANG, SCALARS, compile_c, program

BPFTOOL = shutil.which("bpftool")

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(BPFTOOL is None or CLANG is None, reason="needs bpftool and clang-19"),
]


def without_floats(source: str) -> bool:
    return "float" not in source and "double" not in source


assert "double" in SCALARS  # the generator can make them; they are filtered out here


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source=program().filter(without_floats), data=st.data())
def test_value_text_equals_bpftool(tmp_path: Path, source: str, data: st.DataObject) -> None:
    from ebpf.kernel.btf import KernelBTF, KernelBTFError
    from ebpf.kernel.map import Map
    from ebpf.spec import MapSpec, MapType

    # no globals: a function keeps the types in the BTF without DATASECs
    source = "\n".join(
        line for line in source.splitlines() if not line.startswith(("struct t", "union t")) or "{" in line
    )
    source = source.replace("struct later later_v;", "")
    source += "\nint use_it(struct t0 *p, unsigned int key) { return 0; }\n"
    spec = compile_c(tmp_path / "types", source)
    type_id = spec.find_id("t0", btf.Struct)
    key_id = spec.find_id("unsigned int", btf.Int)
    size = spec.sizeof(type_id)
    value = data.draw(st.binary(min_size=size, max_size=size))
    try:
        kernel_btf = KernelBTF.load(spec)
    except KernelBTFError:
        # e.g. Linux sizes a 1-byte enum member of a bitfield struct as an int and refuses it
        reject()
    with kernel_btf:
        mspec = MapSpec(
            name="pretty_fuzz",
            type=MapType.ARRAY,
            key_size=4,
            value_size=size,
            max_entries=1,
            key_type_id=key_id,
            value_type_id=type_id,
            btf=spec,
        )
        with Map.create(mspec, btf=kernel_btf) as m:
            m.update(struct.pack("<I", 0), value)
            assert BPFTOOL is not None
            out = subprocess.run(
                [BPFTOOL, "map", "dump", "id", str(m.info().id)], capture_output=True, text=True, check=True
            ).stdout
    ours = format_value(spec, type_id, value)
    assert (
        out == '[{\n        "key": 0,\n        "value": ' + ours.replace("\n", "\n        ") + "\n    }\n]\n"
    )
