"""An inner map whose value holds a spin lock and a timer: the kernel needs the inner map
template created with BTF (as libbpf creates it), or the verifier refuses the program with
"map '' has to have BTF in order to use bpf_spin_lock". Same results on both engines."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ebpf.elf import load_collection_spec
from ebpf.kernel import Collection as KernelCollection
from ebpf.runtime import Collection

pytestmark = pytest.mark.kernel

SOURCE = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct val { struct bpf_spin_lock lock; __u64 n; struct bpf_timer t; };
struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct val);
};
struct inner in0 SEC(".maps");
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps") = { .values = { &in0 } };
SEC("xdp") int prog(struct xdp_md *ctx)
{
	__u32 k = 0;
	void *m = bpf_map_lookup_elem(&outer, &k);
	if (!m)
		return 1;
	struct val *v = bpf_map_lookup_elem(m, &k);
	if (!v)
		return 1;
	bpf_spin_lock(&v->lock);
	v->n++;
	bpf_spin_unlock(&v->lock);
	return 2 + bpf_timer_init(&v->t, m, 1);  /* 0, then -EBUSY */
}
char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def obj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clang = shutil.which("clang-19")
    if clang is None or not Path("/usr/include/bpf/bpf_helpers.h").exists():
        pytest.skip("needs clang-19 and libbpf-dev's bpf_helpers.h to build the object")
    work = tmp_path_factory.mktemp("inner")
    (work / "inner.c").write_text(SOURCE)
    multiarch = subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True, check=False)
    inc = f"/usr/include/{multiarch.stdout.strip() or 'x86_64-linux-gnu'}"
    subprocess.run(
        [clang, "-O2", "-g", "-target", "bpf", f"-I{inc}", "-c", "inner.c", "-o", "inner.o"],
        cwd=work,
        check=True,
    )
    return work / "inner.o"


def test_inner_map_with_spin_lock_and_timer(obj: Path) -> None:
    spec = load_collection_spec(obj)
    results = {}
    with KernelCollection(spec) as coll:
        runs = [coll.programs["prog"].test_run(bytes(64)).retval for _ in range(2)]
        results["kernel"] = (runs, bytes(coll.maps["in0"].lookup(bytes(4)))[8:16])
    for engine in ("py", "interp"):
        with Collection(spec, engine=engine) as rt:
            runs = [rt.programs["prog"].test_run(bytes(64)).retval for _ in range(2)]
            results[engine] = (runs, bytes(rt.maps["in0"].lookup(bytes(4)))[8:16])
    assert results["kernel"] == ([2, (2 - 16) & 0xFFFFFFFF], (2).to_bytes(8, "little"))
    assert results["py"] == results["kernel"]
    assert results["interp"] == results["kernel"]
