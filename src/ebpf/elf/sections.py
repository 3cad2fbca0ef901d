"""libbpf's table of ``SEC()`` names: program type, expected attach type and flags. Core layer. Pure.

A program's section name says what kind of program it is (``libbpf.c: section_defs[]``, as of
libbpf 1.5 / Linux 6.18). Each entry is one :class:`SectionDef`.

Rule 1: an entry whose name ends in ``+`` matches the name itself and every name that
continues with ``/`` (``"kprobe+"`` matches ``"kprobe"`` and ``"kprobe/do_unlinkat"``); what
follows the ``/`` is the attach target. Every other entry matches only its exact name.

Rule 2: entries are tried in table order; the first match wins. A name that matches nothing
is ``ProgramType.UNSPEC`` (libbpf refuses to load such a program unless the user sets a type).

Rule 3: ``.s`` entries make a sleepable program (``BPF_F_SLEEPABLE``), ``xdp.frags`` entries
one that handles multi-buffer packets (``BPF_F_XDP_HAS_FRAGS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ebpf.spec import AttachType, ProgramType

__all__ = [
    "BPF_F_SLEEPABLE",
    "BPF_F_XDP_HAS_FRAGS",
    "SECTION_DEFS",
    "SectionDef",
    "SectionType",
    "find_section_def",
    "section_type",
]

BPF_F_SLEEPABLE = 1 << 4  # BPF_F_SLEEPABLE (prog_flags)
BPF_F_XDP_HAS_FRAGS = 1 << 5  # BPF_F_XDP_HAS_FRAGS (prog_flags)

_P = ProgramType
_A = AttachType
_S = BPF_F_SLEEPABLE
_F = BPF_F_XDP_HAS_FRAGS


@dataclass(frozen=True, slots=True)
class SectionDef:
    """One entry of libbpf's ``section_defs[]``.

    Attributes:
        name: the section name, with a trailing ``+`` when a ``/target`` may follow.
        type: the program type.
        attach_type: ``expected_attach_type``, or None when libbpf leaves it 0 by default.
        flags: ``prog_flags`` the section implies.
        needs_btf: the program attaches to a kernel BTF id (``SEC_ATTACH_BTF``).
    """

    name: str
    type: ProgramType
    attach_type: AttachType | None = None
    flags: int = 0
    needs_btf: bool = False

    def match(self, section: str) -> str | None:
        """The attach target if ``section`` matches this entry (``""`` for none), else None."""
        if self.name.endswith("+"):
            prefix = self.name[:-1]
            if section == prefix:
                return ""
            if section.startswith(prefix + "/"):
                return section[len(prefix) + 1 :]
            return None
        return "" if section == self.name else None


def _d(
    name: str, type: ProgramType, attach: AttachType | None = None, flags: int = 0, btf: bool = False
) -> SectionDef:
    return SectionDef(name, type, attach, flags, btf)


SECTION_DEFS: tuple[SectionDef, ...] = (
    _d("socket", _P.SOCKET_FILTER),
    _d("sk_reuseport/migrate", _P.SK_REUSEPORT, _A.SK_REUSEPORT_SELECT_OR_MIGRATE),
    _d("sk_reuseport", _P.SK_REUSEPORT, _A.SK_REUSEPORT_SELECT),
    _d("kprobe+", _P.KPROBE),
    _d("uprobe+", _P.KPROBE),
    _d("uprobe.s+", _P.KPROBE, None, _S),
    _d("kretprobe+", _P.KPROBE),
    _d("uretprobe+", _P.KPROBE),
    _d("uretprobe.s+", _P.KPROBE, None, _S),
    _d("kprobe.multi+", _P.KPROBE, _A.TRACE_KPROBE_MULTI),
    _d("kretprobe.multi+", _P.KPROBE, _A.TRACE_KPROBE_MULTI),
    _d("kprobe.session+", _P.KPROBE, _A.TRACE_KPROBE_SESSION),
    _d("uprobe.multi+", _P.KPROBE, _A.TRACE_UPROBE_MULTI),
    _d("uretprobe.multi+", _P.KPROBE, _A.TRACE_UPROBE_MULTI),
    _d("uprobe.multi.s+", _P.KPROBE, _A.TRACE_UPROBE_MULTI, _S),
    _d("uretprobe.multi.s+", _P.KPROBE, _A.TRACE_UPROBE_MULTI, _S),
    _d("uprobe.session+", _P.KPROBE, _A.TRACE_UPROBE_SESSION),
    _d("uprobe.session.s+", _P.KPROBE, _A.TRACE_UPROBE_SESSION, _S),
    _d("ksyscall+", _P.KPROBE),
    _d("kretsyscall+", _P.KPROBE),
    _d("usdt+", _P.KPROBE),
    _d("usdt.s+", _P.KPROBE, None, _S),
    _d("tc/ingress", _P.SCHED_CLS, _A.TCX_INGRESS),
    _d("tc/egress", _P.SCHED_CLS, _A.TCX_EGRESS),
    _d("tcx/ingress", _P.SCHED_CLS, _A.TCX_INGRESS),
    _d("tcx/egress", _P.SCHED_CLS, _A.TCX_EGRESS),
    _d("tc", _P.SCHED_CLS),
    _d("classifier", _P.SCHED_CLS),
    _d("action", _P.SCHED_ACT),
    _d("netkit/primary", _P.SCHED_CLS, _A.NETKIT_PRIMARY),
    _d("netkit/peer", _P.SCHED_CLS, _A.NETKIT_PEER),
    _d("tracepoint+", _P.TRACEPOINT),
    _d("tp+", _P.TRACEPOINT),
    _d("raw_tracepoint+", _P.RAW_TRACEPOINT),
    _d("raw_tp+", _P.RAW_TRACEPOINT),
    _d("raw_tracepoint.w+", _P.RAW_TRACEPOINT_WRITABLE),
    _d("raw_tp.w+", _P.RAW_TRACEPOINT_WRITABLE),
    _d("tp_btf+", _P.TRACING, _A.TRACE_RAW_TP, btf=True),
    _d("fentry+", _P.TRACING, _A.TRACE_FENTRY, btf=True),
    _d("fmod_ret+", _P.TRACING, _A.MODIFY_RETURN, btf=True),
    _d("fexit+", _P.TRACING, _A.TRACE_FEXIT, btf=True),
    _d("fentry.s+", _P.TRACING, _A.TRACE_FENTRY, _S, btf=True),
    _d("fmod_ret.s+", _P.TRACING, _A.MODIFY_RETURN, _S, btf=True),
    _d("fexit.s+", _P.TRACING, _A.TRACE_FEXIT, _S, btf=True),
    _d("freplace+", _P.EXT, None, btf=True),
    _d("lsm+", _P.LSM, _A.LSM_MAC, btf=True),
    _d("lsm.s+", _P.LSM, _A.LSM_MAC, _S, btf=True),
    _d("lsm_cgroup+", _P.LSM, _A.LSM_CGROUP, btf=True),
    _d("iter+", _P.TRACING, _A.TRACE_ITER, btf=True),
    _d("iter.s+", _P.TRACING, _A.TRACE_ITER, _S, btf=True),
    _d("syscall", _P.SYSCALL, None, _S),
    _d("xdp.frags/devmap", _P.XDP, _A.XDP_DEVMAP, _F),
    _d("xdp/devmap", _P.XDP, _A.XDP_DEVMAP),
    _d("xdp.frags/cpumap", _P.XDP, _A.XDP_CPUMAP, _F),
    _d("xdp/cpumap", _P.XDP, _A.XDP_CPUMAP),
    _d("xdp.frags", _P.XDP, _A.XDP, _F),
    _d("xdp", _P.XDP, _A.XDP),
    _d("perf_event", _P.PERF_EVENT),
    _d("lwt_in", _P.LWT_IN),
    _d("lwt_out", _P.LWT_OUT),
    _d("lwt_xmit", _P.LWT_XMIT),
    _d("lwt_seg6local", _P.LWT_SEG6LOCAL),
    _d("sockops", _P.SOCK_OPS, _A.CGROUP_SOCK_OPS),
    _d("sk_skb/stream_parser", _P.SK_SKB, _A.SK_SKB_STREAM_PARSER),
    _d("sk_skb/stream_verdict", _P.SK_SKB, _A.SK_SKB_STREAM_VERDICT),
    _d("sk_skb/verdict", _P.SK_SKB, _A.SK_SKB_VERDICT),
    _d("sk_skb", _P.SK_SKB),
    _d("sk_msg", _P.SK_MSG, _A.SK_MSG_VERDICT),
    _d("lirc_mode2", _P.LIRC_MODE2, _A.LIRC_MODE2),
    _d("flow_dissector", _P.FLOW_DISSECTOR, _A.FLOW_DISSECTOR),
    _d("cgroup_skb/ingress", _P.CGROUP_SKB, _A.CGROUP_INET_INGRESS),
    _d("cgroup_skb/egress", _P.CGROUP_SKB, _A.CGROUP_INET_EGRESS),
    _d("cgroup/skb", _P.CGROUP_SKB),
    _d("cgroup/sock_create", _P.CGROUP_SOCK, _A.CGROUP_INET_SOCK_CREATE),
    _d("cgroup/sock_release", _P.CGROUP_SOCK, _A.CGROUP_INET_SOCK_RELEASE),
    _d("cgroup/sock", _P.CGROUP_SOCK, _A.CGROUP_INET_SOCK_CREATE),
    _d("cgroup/post_bind4", _P.CGROUP_SOCK, _A.CGROUP_INET4_POST_BIND),
    _d("cgroup/post_bind6", _P.CGROUP_SOCK, _A.CGROUP_INET6_POST_BIND),
    _d("cgroup/bind4", _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_BIND),
    _d("cgroup/bind6", _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_BIND),
    _d("cgroup/connect4", _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_CONNECT),
    _d("cgroup/connect6", _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_CONNECT),
    _d("cgroup/connect_unix", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_CONNECT),
    _d("cgroup/sendmsg4", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UDP4_SENDMSG),
    _d("cgroup/sendmsg6", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UDP6_SENDMSG),
    _d("cgroup/sendmsg_unix", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_SENDMSG),
    _d("cgroup/recvmsg4", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UDP4_RECVMSG),
    _d("cgroup/recvmsg6", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UDP6_RECVMSG),
    _d("cgroup/recvmsg_unix", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_RECVMSG),
    _d("cgroup/getpeername4", _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_GETPEERNAME),
    _d("cgroup/getpeername6", _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_GETPEERNAME),
    _d("cgroup/getpeername_unix", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_GETPEERNAME),
    _d("cgroup/getsockname4", _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_GETSOCKNAME),
    _d("cgroup/getsockname6", _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_GETSOCKNAME),
    _d("cgroup/getsockname_unix", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_GETSOCKNAME),
    _d("cgroup/sysctl", _P.CGROUP_SYSCTL, _A.CGROUP_SYSCTL),
    _d("cgroup/getsockopt", _P.CGROUP_SOCKOPT, _A.CGROUP_GETSOCKOPT),
    _d("cgroup/setsockopt", _P.CGROUP_SOCKOPT, _A.CGROUP_SETSOCKOPT),
    _d("cgroup/dev", _P.CGROUP_DEVICE, _A.CGROUP_DEVICE),
    _d("struct_ops+", _P.STRUCT_OPS),
    _d("struct_ops.s+", _P.STRUCT_OPS, None, _S),
    _d("sk_lookup", _P.SK_LOOKUP, _A.SK_LOOKUP),
    _d("netfilter", _P.NETFILTER, _A.NETFILTER),
)


class SectionType(NamedTuple):
    """What a section name means: ``(type, attach_type, attach_to, flags)``."""

    type: ProgramType
    attach_type: AttachType | None
    attach_to: str
    flags: int


def find_section_def(section: str) -> tuple[SectionDef, str] | None:
    """The first entry of :data:`SECTION_DEFS` matching ``section`` and its attach target."""
    for sdef in SECTION_DEFS:
        target = sdef.match(section)
        if target is not None:
            return sdef, target
    return None


def section_type(section: str) -> SectionType:
    """The program type, expected attach type, attach target and flags of a ``SEC()`` name.

    >>> section_type("tracepoint/syscalls/sys_enter_execve")
    SectionType(type=<ProgramType.TRACEPOINT: 5>, attach_type=None, attach_to='syscalls/sys_enter_execve', flags=0)
    >>> section_type("xdp.frags").flags == BPF_F_XDP_HAS_FRAGS
    True
    >>> section_type("no-such-section").type
    <ProgramType.UNSPEC: 0>
    """
    found = find_section_def(section)
    if found is None:
        return SectionType(ProgramType.UNSPEC, None, "", 0)
    sdef, target = found
    return SectionType(sdef.type, sdef.attach_type, target, sdef.flags)
