"""libbpf's section-name table (ebpf.elf.sections)."""

from __future__ import annotations

import pytest

from ebpf.elf import SECTION_DEFS, section_type
from ebpf.elf.sections import BPF_F_SLEEPABLE, BPF_F_XDP_HAS_FRAGS
from ebpf.spec import AttachType as A
from ebpf.spec import ProgramType as P


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("socket", (P.SOCKET_FILTER, None, "", 0)),
        ("xdp", (P.XDP, A.XDP, "", 0)),
        ("xdp.frags", (P.XDP, A.XDP, "", BPF_F_XDP_HAS_FRAGS)),
        ("xdp/devmap", (P.XDP, A.XDP_DEVMAP, "", 0)),
        ("xdp.frags/cpumap", (P.XDP, A.XDP_CPUMAP, "", BPF_F_XDP_HAS_FRAGS)),
        ("tc", (P.SCHED_CLS, None, "", 0)),
        ("tcx/ingress", (P.SCHED_CLS, A.TCX_INGRESS, "", 0)),
        ("tcx/egress", (P.SCHED_CLS, A.TCX_EGRESS, "", 0)),
        ("tc/ingress", (P.SCHED_CLS, A.TCX_INGRESS, "", 0)),
        ("classifier", (P.SCHED_CLS, None, "", 0)),
        ("action", (P.SCHED_ACT, None, "", 0)),
        ("tracepoint/syscalls/sys_enter_execve", (P.TRACEPOINT, None, "syscalls/sys_enter_execve", 0)),
        ("tp/sched/sched_switch", (P.TRACEPOINT, None, "sched/sched_switch", 0)),
        ("raw_tracepoint/sched_switch", (P.RAW_TRACEPOINT, None, "sched_switch", 0)),
        ("raw_tp/x", (P.RAW_TRACEPOINT, None, "x", 0)),
        ("raw_tp.w/x", (P.RAW_TRACEPOINT_WRITABLE, None, "x", 0)),
        ("tp_btf/sched_process_fork", (P.TRACING, A.TRACE_RAW_TP, "sched_process_fork", 0)),
        ("kprobe/do_unlinkat", (P.KPROBE, None, "do_unlinkat", 0)),
        ("kprobe", (P.KPROBE, None, "", 0)),
        ("kretprobe/do_unlinkat", (P.KPROBE, None, "do_unlinkat", 0)),
        ("kprobe.multi/vfs_*", (P.KPROBE, A.TRACE_KPROBE_MULTI, "vfs_*", 0)),
        ("kprobe.session/f", (P.KPROBE, A.TRACE_KPROBE_SESSION, "f", 0)),
        ("uprobe//bin/sh:main", (P.KPROBE, None, "/bin/sh:main", 0)),
        ("uprobe.s//bin/sh:main", (P.KPROBE, None, "/bin/sh:main", BPF_F_SLEEPABLE)),
        ("uretprobe.multi.s/x", (P.KPROBE, A.TRACE_UPROBE_MULTI, "x", BPF_F_SLEEPABLE)),
        ("usdt/libc:probe", (P.KPROBE, None, "libc:probe", 0)),
        ("fentry/do_unlinkat", (P.TRACING, A.TRACE_FENTRY, "do_unlinkat", 0)),
        ("fexit/do_unlinkat", (P.TRACING, A.TRACE_FEXIT, "do_unlinkat", 0)),
        ("fmod_ret/f", (P.TRACING, A.MODIFY_RETURN, "f", 0)),
        ("fentry.s/f", (P.TRACING, A.TRACE_FENTRY, "f", BPF_F_SLEEPABLE)),
        ("freplace/handler", (P.EXT, None, "handler", 0)),
        ("lsm/file_open", (P.LSM, A.LSM_MAC, "file_open", 0)),
        ("lsm.s/bprm", (P.LSM, A.LSM_MAC, "bprm", BPF_F_SLEEPABLE)),
        ("lsm_cgroup/socket_bind", (P.LSM, A.LSM_CGROUP, "socket_bind", 0)),
        ("iter/task", (P.TRACING, A.TRACE_ITER, "task", 0)),
        ("iter.s/bpf_map", (P.TRACING, A.TRACE_ITER, "bpf_map", BPF_F_SLEEPABLE)),
        ("cgroup_skb/ingress", (P.CGROUP_SKB, A.CGROUP_INET_INGRESS, "", 0)),
        ("cgroup_skb/egress", (P.CGROUP_SKB, A.CGROUP_INET_EGRESS, "", 0)),
        ("cgroup/skb", (P.CGROUP_SKB, None, "", 0)),
        ("cgroup/sock", (P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, "", 0)),
        ("cgroup/connect_unix", (P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_CONNECT, "", 0)),
        ("cgroup/getsockopt", (P.CGROUP_SOCKOPT, A.CGROUP_GETSOCKOPT, "", 0)),
        ("cgroup/dev", (P.CGROUP_DEVICE, A.CGROUP_DEVICE, "", 0)),
        ("cgroup/sysctl", (P.CGROUP_SYSCTL, A.CGROUP_SYSCTL, "", 0)),
        ("sk_skb/stream_parser", (P.SK_SKB, A.SK_SKB_STREAM_PARSER, "", 0)),
        ("sk_skb/verdict", (P.SK_SKB, A.SK_SKB_VERDICT, "", 0)),
        ("sk_skb", (P.SK_SKB, None, "", 0)),
        ("sk_msg", (P.SK_MSG, A.SK_MSG_VERDICT, "", 0)),
        ("sk_lookup", (P.SK_LOOKUP, A.SK_LOOKUP, "", 0)),
        ("sk_reuseport", (P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT, "", 0)),
        ("sk_reuseport/migrate", (P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT_OR_MIGRATE, "", 0)),
        ("flow_dissector", (P.FLOW_DISSECTOR, A.FLOW_DISSECTOR, "", 0)),
        ("lwt_in", (P.LWT_IN, None, "", 0)),
        ("lwt_seg6local", (P.LWT_SEG6LOCAL, None, "", 0)),
        ("sockops", (P.SOCK_OPS, A.CGROUP_SOCK_OPS, "", 0)),
        ("perf_event", (P.PERF_EVENT, None, "", 0)),
        ("syscall", (P.SYSCALL, None, "", BPF_F_SLEEPABLE)),
        ("struct_ops/dummy", (P.STRUCT_OPS, None, "dummy", 0)),
        ("struct_ops.s/dummy", (P.STRUCT_OPS, None, "dummy", BPF_F_SLEEPABLE)),
        ("netfilter", (P.NETFILTER, A.NETFILTER, "", 0)),
        ("netkit/peer", (P.SCHED_CLS, A.NETKIT_PEER, "", 0)),
        ("lirc_mode2", (P.LIRC_MODE2, A.LIRC_MODE2, "", 0)),
    ],
)
def test_section_type(section: str, expected: tuple[object, ...]) -> None:
    assert tuple(section_type(section)) == expected


@pytest.mark.parametrize(
    "section",
    ["", "xdpfoo", "xdp/foo", "tc/foo", "socket/x", "kprobeX/f", "tracepointx", "sk_skb/unknown", ".text"],
)
def test_unknown_sections_are_unspec(section: str) -> None:
    """Exact entries match only themselves; '+' entries need '/' after the prefix."""
    assert section_type(section).type is P.UNSPEC


def test_table_has_no_shadowed_entries() -> None:
    """No entry is made unreachable by an earlier one (first match wins)."""
    for i, sdef in enumerate(SECTION_DEFS):
        probe = sdef.name[:-1] + "/x" if sdef.name.endswith("+") else sdef.name
        first = next(d for d in SECTION_DEFS if d.match(probe) is not None)
        assert first is sdef, (i, sdef.name, first.name)
    names = [d.name for d in SECTION_DEFS]
    assert len(names) == len(set(names))
