"""Attach loaded programs to kernel hooks; every attachment is a :class:`Link`.

Above the kernel line: calls bpf(2) link commands, ``perf_event_open(2)``, rtnetlink (through
pyroute2), ``setsockopt(2)`` and tracefs; never shells out.

>>> from ebpf import attach                                   # doctest: +SKIP
>>> with attach.tracepoint(prog, "syscalls", "sys_enter_openat") as link:  # doctest: +SKIP
...     link.info().id
"""

from __future__ import annotations

from ebpf.attach._abi import PerfType
from ebpf.attach.auto import auto
from ebpf.attach.cgroup import cgroup, cgroup2_root, reuseport, socket_filter, sockmap
from ebpf.attach.iter import IterLink, iterator
from ebpf.attach.link import (
    FDLink,
    Link,
    LinkInfo,
    LinkType,
    PerfEventType,
    ProgramLike,
    link_ids,
    open_link,
    open_pinned_link,
)
from ebpf.attach.netdev import (
    NetfilterHook,
    TCDirection,
    TCXFlags,
    XDPMode,
    netfilter,
    netns,
    tc,
    tc_clsact,
    xdp,
)
from ebpf.attach.struct_ops import StructOpsRegistration, struct_ops
from ebpf.attach.tracing import (
    fentry,
    fexit,
    fmod_ret,
    kprobe,
    kprobe_multi,
    kretprobe,
    lsm,
    perf_event,
    raw_tracepoint,
    tp_btf,
    tracepoint,
)
from ebpf.attach.uprobe import USDTLink, uprobe, uprobe_multi, usdt

__all__ = [
    "FDLink",
    "IterLink",
    "Link",
    "LinkInfo",
    "LinkType",
    "NetfilterHook",
    "PerfEventType",
    "PerfType",
    "ProgramLike",
    "StructOpsRegistration",
    "TCDirection",
    "TCXFlags",
    "USDTLink",
    "XDPMode",
    "auto",
    "cgroup",
    "cgroup2_root",
    "fentry",
    "fexit",
    "fmod_ret",
    "iterator",
    "kprobe",
    "kprobe_multi",
    "kretprobe",
    "link_ids",
    "lsm",
    "netfilter",
    "netns",
    "open_link",
    "open_pinned_link",
    "perf_event",
    "raw_tracepoint",
    "reuseport",
    "socket_filter",
    "sockmap",
    "struct_ops",
    "tc",
    "tc_clsact",
    "tp_btf",
    "tracepoint",
    "uprobe",
    "uprobe_multi",
    "usdt",
    "xdp",
]
