"""``python -m ebpf.bench.load``: loading a CO-RE object, ours beside ``bpftool prog loadall``. Tool layer.

Method (one run, same machine, same kernel): a libbpf-style CO-RE object (a tracepoint program
reading ``task->real_parent->tgid`` and ``task->tgid`` through ``BPF_CORE_READ``, a hash map and
a ``.rodata`` constant; built from the source below with clang, or any object given as OBJ) is
loaded against the full ``/sys/kernel/btf/vmlinux``:

* ``in-process warm``: :class:`ebpf.kernel.Collection` in a process that already loaded it once
  (kernel type index and CO-RE candidates in memory): BTF load, maps, CO-RE, program load;
* ``first load, disk cache``: the first ``Collection`` of a fresh process, with the on-disk
  vmlinux index present (every later process on this kernel);
* ``first load, cold``: the same with an empty cache folder (the first process ever);
* ``bpftool prog loadall`` as a whole process (exec, libbpf, vmlinux BTF, load, pin);
* ``ebpf prog loadall`` as a whole process, and ``python -c pass`` for Python's own start-up.

Medians of ``--repeat`` runs; every load is checked (the program's CO-RE offsets equal those
bpftool's libbpf computed, read back with ``BPF_OBJ_GET_INFO_BY_FD``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ebpf.kernel.collection import LoadOptions
    from ebpf.spec import CollectionSpec

__all__ = ["SOURCE", "build_object", "main", "measure"]

SOURCE = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct {
	int pid;
	int tgid;
	struct task_struct *real_parent;
	char comm[16];
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

const volatile __u32 target_pid = 0;

SEC("tracepoint/syscalls/sys_enter_execve")
int on_exec(void *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task();
	__u32 ppid = BPF_CORE_READ(t, real_parent, tgid);
	__u32 pid = BPF_CORE_READ(t, tgid);
	__u64 one = 1, *v;

	if (target_pid && pid != target_pid)
		return 0;
	v = bpf_map_lookup_elem(&counts, &ppid);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&counts, &ppid, &one, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""

_FIRST_LOAD = r"""
import json, sys, time
t0 = time.perf_counter()
from ebpf.elf import load_collection_spec
from ebpf.kernel.collection import Collection, LoadOptions
spec = load_collection_spec(sys.argv[1])
t1 = time.perf_counter()
with Collection(spec, LoadOptions(object_name="bench")) as coll:
    t2 = time.perf_counter()
print(json.dumps({"import_and_parse_s": t1 - t0, "load_s": t2 - t1}))
"""


def build_object(out_dir: Path) -> Path:
    """Compile :data:`SOURCE` with clang (``$CLANG``, else clang-19 or clang) into ``out_dir``."""
    clang = os.environ.get("CLANG") or shutil.which("clang-19") or shutil.which("clang")
    if clang is None:
        raise SystemExit("no clang to build the benchmark object: pass OBJ (a CO-RE object) instead")
    src = out_dir / "bench_core.c"
    src.write_text(SOURCE)
    obj = out_dir / "bench_core.o"
    multiarch = subprocess.run(
        ["gcc", "-print-multiarch"], capture_output=True, text=True, check=False
    ).stdout
    include = ["-I", f"/usr/include/{multiarch.strip()}"] if multiarch.strip() else []
    subprocess.run(
        [clang, "-O2", "-g", "-target", "bpf", *include, "-c", str(src), "-o", str(obj)], check=True
    )
    return obj


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _run_s(argv: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env)
    return time.perf_counter() - t0


def measure(obj: Path, repeat: int = 20) -> dict[str, float | str]:
    """Run every measurement on ``obj`` and return the figures (milliseconds unless named ``_s``)."""
    from ebpf.elf import load_collection_spec
    from ebpf.kernel.collection import Collection, LoadOptions
    from ebpf.kernel.map import ensure_bpffs

    results: dict[str, float | str] = {"object": str(obj)}
    spec = load_collection_spec(obj)
    results["core_relocations"] = float(sum(len(p.core_relos) for p in spec.programs.values()))

    # a fresh process, first with an empty cache folder (cold), then with the cache it wrote
    with tempfile.TemporaryDirectory(prefix="ebpf-bench-cache-") as cache:
        env = {**os.environ, "XDG_CACHE_HOME": cache}
        cold = subprocess.run(
            [sys.executable, "-c", _FIRST_LOAD, str(obj)], check=True, capture_output=True, text=True, env=env
        )
        results["first_load_cold_ms"] = json.loads(cold.stdout)["load_s"] * 1000
        cached = []
        for _ in range(max(3, repeat // 4)):
            run = subprocess.run(
                [sys.executable, "-c", _FIRST_LOAD, str(obj)],
                check=True,
                capture_output=True,
                text=True,
                env=env,
            )
            cached.append(json.loads(run.stdout)["load_s"])
        results["first_load_disk_cache_ms"] = _median_ms(cached)

    # in-process, warm
    opts = LoadOptions(object_name=obj.name.split(".")[0])
    with Collection(spec, opts):
        pass
    warm = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        with Collection(spec, opts):
            warm.append(time.perf_counter() - t0)
    results["in_process_warm_ms"] = _median_ms(warm)

    root = Path(f"/sys/fs/bpf/ebpf_bench_load_{os.getpid()}")
    ensure_bpffs(root)
    try:
        if shutil.which("bpftool"):
            samples = []
            for i in range(repeat):
                target = root / f"bpftool{i}"
                target.mkdir()
                samples.append(_run_s(["bpftool", "prog", "loadall", str(obj), str(target)]))
                if i == 0:
                    _check_same_code(spec, opts, target)
                shutil.rmtree(target)
            results["bpftool_loadall_process_ms"] = _median_ms(samples)
        samples = []
        for i in range(max(3, repeat // 4)):
            target = root / f"ebpf{i}"
            samples.append(_run_s([sys.executable, "-m", "ebpf", "prog", "loadall", str(obj), str(target)]))
            shutil.rmtree(target)
        results["ebpf_loadall_process_ms"] = _median_ms(samples)
        results["python_startup_ms"] = _median_ms([_run_s([sys.executable, "-c", "pass"]) for _ in range(5)])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if "bpftool_loadall_process_ms" in results:
        results["warm_vs_bpftool_ratio"] = float(results["in_process_warm_ms"]) / float(
            results["bpftool_loadall_process_ms"]
        )
    return results


def _check_same_code(spec: CollectionSpec, opts: LoadOptions, pinned: Path) -> None:
    """Our translated instructions equal bpftool's, map references aside (they differ per load)."""
    from ebpf.kernel.collection import Collection
    from ebpf.kernel.program import Program

    with Collection(spec, opts) as coll:
        for name, prog in coll.programs.items():
            ours = prog.xlated()
            with Program.from_pin(pinned / name) as theirs_prog:
                theirs = theirs_prog.xlated()
            if len(ours) != len(theirs):
                raise SystemExit(f"{name}: {len(ours) // 8} instructions, bpftool's has {len(theirs) // 8}")
            skip = False
            for off in range(0, len(ours), 8):
                if skip:  # the second half of a map lddw
                    skip = False
                    continue
                if ours[off] == 0x18 and ours[off + 1] >> 4 in (1, 2):
                    skip = True
                    continue
                if ours[off : off + 8] != theirs[off : off + 8]:
                    raise SystemExit(f"{name}: instruction {off // 8} differs from bpftool's load")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ebpf.bench.load", description=__doc__.splitlines()[0])
    parser.add_argument("obj", nargs="?", type=Path, help="a CO-RE object (default: build the built-in one)")
    parser.add_argument("--repeat", type=int, default=20, help="runs per figure (default 20)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    from ebpf.kernel.features import bpf_unavailable_reason

    reason = bpf_unavailable_reason()
    if reason is not None:
        print(f"cannot benchmark loads: bpf() is unavailable: {reason}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="ebpf-bench-load-") as tmp:
        obj = args.obj if args.obj is not None else build_object(Path(tmp))
        results = measure(obj, args.repeat)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"object: {results['object']} ({int(float(results['core_relocations']))} CO-RE relocations)")
    rows = [
        ("in-process, type index warm", "in_process_warm_ms"),
        ("first load in a process, disk cache", "first_load_disk_cache_ms"),
        ("first load ever (cold, no cache)", "first_load_cold_ms"),
        ("bpftool prog loadall (whole process)", "bpftool_loadall_process_ms"),
        ("ebpf prog loadall (whole process)", "ebpf_loadall_process_ms"),
        ("python -c pass (start-up)", "python_startup_ms"),
    ]
    for label, key in rows:
        if key in results:
            print(f"  {label:<40} {float(results[key]):9.2f} ms")
    if "warm_vs_bpftool_ratio" in results:
        print(f"  in-process warm / bpftool: {float(results['warm_vs_bpftool_ratio']):.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
