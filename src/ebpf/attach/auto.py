"""Attach a program where its ``SEC()`` name says, like libbpf's ``bpf_program__attach()``.

Above the kernel line. Calls the ``attach.*`` functions; parses section names only.

Rule 1: the section names with a target attach automatically, in libbpf's spelling:
``tracepoint/<cat>/<name>`` (``tp/``), ``raw_tracepoint/<name>`` (``raw_tp/``, ``.w``),
``tp_btf/``, ``fentry/``, ``fexit/``, ``fmod_ret/``, ``lsm/`` (also ``.s``), ``iter/``,
``kprobe/<func>[+<off>]``, ``kretprobe/<func>``, ``ksyscall/<name>``, ``kretsyscall/<name>``,
``kprobe.multi/<glob>``, ``kretprobe.multi/<glob>``, ``uprobe/<binary>:<func>[+<off>]``,
``uretprobe/...`` (also ``.s``) and ``usdt/<binary>:<provider>:<name>``.

Rule 2: sections that need a target only the caller knows (``xdp``, ``tc``, ``cgroup/*``,
``socket``, ``perf_event``, a bare ``uprobe`` ...) raise :class:`ValueError` naming the
function to call instead.
"""

from __future__ import annotations

import fnmatch
import os
import platform

from ebpf.attach import _tracefs, tracing
from ebpf.attach.iter import iterator
from ebpf.attach.link import Link, ProgramLike
from ebpf.attach.uprobe import _MapLike, uprobe, usdt
from ebpf.errors import NotSupportedError
from ebpf.spec import ProgramSpec

__all__ = ["auto"]

_SYSCALL_PREFIX = {
    "x86_64": "__x64_sys_",
    "aarch64": "__arm64_sys_",
    "s390x": "__s390x_sys_",
    "riscv64": "__riscv_sys_",
}


def _split_offset(target: str) -> tuple[str, int]:
    name, plus, off = target.partition("+")
    if not plus:
        return name, 0
    try:
        return name, int(off, 0)
    except ValueError:
        raise ValueError(f"bad offset in {target!r}") from None


def _kernel_functions(pattern: str) -> list[str]:
    path = os.path.join(_tracefs.tracefs_root(), "available_filter_functions")
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            names = {line.split()[0] for line in f if line.strip()}
    except OSError as err:
        raise NotSupportedError("kprobe.multi patterns", detail=f"cannot read {path}: {err}") from err
    found = sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))
    if not found:
        raise NotSupportedError(f"kprobe.multi/{pattern}", detail=f"no function in {path} matches")
    return found


def auto(
    program: ProgramLike,
    spec: ProgramSpec | str,
    *,
    specs_map: _MapLike | None = None,
    ip_map: _MapLike | None = None,
) -> Link:
    """Attach ``program`` to the hook its section name ``spec.section`` (or ``spec``) names.

    Args:
        program: the loaded program.
        spec: its :class:`~ebpf.spec.ProgramSpec`, or the section name itself.
        specs_map, ip_map: a USDT program's ``__bpf_usdt_specs`` and
            ``__bpf_usdt_ip_to_spec_id`` maps (see :func:`ebpf.attach.usdt`).

    Raises:
        ValueError: the section does not say where to attach (the message names the
            function that takes the missing target).
    """
    section = spec if isinstance(spec, str) else spec.section
    kind, _, target = section.partition("/")
    base = kind.removesuffix(".s").removesuffix(".w")
    if base in ("tracepoint", "tp") and target:
        category, sep, name = target.partition("/")
        if not sep:
            raise ValueError(f"SEC({section!r}): expected tracepoint/<category>/<name>")
        return tracing.tracepoint(program, category, name)
    if base in ("raw_tracepoint", "raw_tp") and target:
        return tracing.raw_tracepoint(program, target)
    trampolines = {
        "tp_btf": tracing.tp_btf,
        "fentry": tracing.fentry,
        "fexit": tracing.fexit,
        "fmod_ret": tracing.fmod_ret,
        "lsm": tracing.lsm,
    }
    if base in trampolines:
        return trampolines[base](program)
    if base == "iter":
        return iterator(program)
    if base in ("kprobe", "kretprobe") and target:
        func, offset = _split_offset(target)
        if base == "kretprobe":
            if offset:
                raise ValueError(f"SEC({section!r}): a kretprobe takes no offset")
            return tracing.kretprobe(program, func)
        return tracing.kprobe(program, func, offset)
    if base in ("ksyscall", "kretsyscall") and target:
        prefix = _SYSCALL_PREFIX.get(platform.machine(), "__se_sys_")
        if base == "kretsyscall":
            return tracing.kretprobe(program, prefix + target)
        return tracing.kprobe(program, prefix + target)
    if base in ("kprobe.multi", "kretprobe.multi") and target:
        return tracing.kprobe_multi(program, _kernel_functions(target), retprobe=base == "kretprobe.multi")
    if base in ("uprobe", "uretprobe") and target:
        binary, sep, func = target.rpartition(":")
        if not sep or not binary:
            raise ValueError(f"SEC({section!r}): expected {base}/<binary>:<function>[+<offset>]")
        name, offset = _split_offset(func)
        if name:
            return uprobe(program, binary, name, offset=offset, retprobe=base == "uretprobe")
        return uprobe(program, binary, offset=offset, retprobe=base == "uretprobe")
    if base == "usdt" and target:
        parts = target.rsplit(":", 2)
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"SEC({section!r}): expected usdt/<binary>:<provider>:<name>")
        return usdt(program, parts[0], parts[1], parts[2], specs_map=specs_map, ip_map=ip_map)
    needs = {
        "xdp": "attach.xdp(program, ifindex)",
        "tc": "attach.tc(program, ifindex, direction)",
        "tcx": "attach.tc(program, ifindex, direction)",
        "classifier": "attach.tc / attach.tc_clsact",
        "cgroup": "attach.cgroup(program, path, attach_type)",
        "cgroup_skb": "attach.cgroup(program, path, attach_type)",
        "sockops": "attach.cgroup(program, path, AttachType.CGROUP_SOCK_OPS)",
        "socket": "attach.socket_filter(program, sock)",
        "perf_event": "attach.perf_event(program, ...)",
        "sk_lookup": "attach.netns(program, AttachType.SK_LOOKUP, namespace)",
        "flow_dissector": "attach.netns(program, AttachType.FLOW_DISSECTOR, namespace)",
        "netfilter": "attach.netfilter(program, hook)",
        "uprobe": "attach.uprobe(program, binary, symbol)",
        "uretprobe": "attach.uprobe(program, binary, symbol, retprobe=True)",
        "usdt": "attach.usdt(program, binary, provider, name)",
        "kprobe": "attach.kprobe(program, symbol)",
        "tracepoint": "attach.tracepoint(program, category, name)",
        "raw_tracepoint": "attach.raw_tracepoint(program, name)",
    }
    hint = needs.get(base) or needs.get(kind.split(".")[0])
    if hint is not None:
        raise ValueError(f"SEC({section!r}) does not name a target: use {hint}")
    raise ValueError(f"SEC({section!r}) has no automatic attachment")
