"""Network attachments: XDP, tcx, classic clsact ``cls_bpf`` filters, netns hooks, netfilter.

Above the kernel line. Calls bpf(2) (``BPF_LINK_CREATE``) and, for classic tc, rtnetlink
through pyroute2 (:mod:`ebpf.attach._netlink`).

Rule 1: XDP and tcx attach through BPF links on an ifindex in the caller's network namespace;
closing the link detaches the program, pinning keeps it.

Rule 2: classic tc (:func:`tc_clsact`) is for kernels before 6.6 without tcx: it adds the
``clsact`` qdisc when missing and a direct-action ``cls_bpf`` filter; closing removes the
filter, and the qdisc too if this link created it and no other filter is left under it.
"""

from __future__ import annotations

import os
import struct
from enum import IntEnum, IntFlag

from ebpf.attach import _abi, _netlink
from ebpf.attach.link import FDLink, Link, LinkInfo, ProgramLike, _LinkBase
from ebpf.errors import NotSupportedError, SyscallError
from ebpf.kernel.fd import FD
from ebpf.spec import AttachType

__all__ = [
    "NetfilterHook",
    "TCDirection",
    "TCXFlags",
    "XDPMode",
    "netfilter",
    "netns",
    "tc",
    "tc_clsact",
    "xdp",
]


class XDPMode(IntFlag):
    """Where an XDP program runs (``XDP_FLAGS_*`` of ``BPF_LINK_CREATE``)."""

    AUTO = 0  # the driver's native XDP when it has one, else generic
    GENERIC = 2  # XDP_FLAGS_SKB_MODE: after the skb is built; works on every device
    DRIVER = 4  # XDP_FLAGS_DRV_MODE: in the driver, before the skb exists
    OFFLOAD = 8  # XDP_FLAGS_HW_MODE: on the NIC


class TCDirection(IntEnum):
    """Which side of the device a tc program runs on."""

    INGRESS = AttachType.TCX_INGRESS  # BPF_TCX_INGRESS
    EGRESS = AttachType.TCX_EGRESS  # BPF_TCX_EGRESS


class TCXFlags(IntFlag):
    """Ordering flags of a tcx link (``BPF_F_BEFORE`` ... from ``bpf.h``)."""

    NONE = 0
    REPLACE = 1 << 2  # BPF_F_REPLACE
    BEFORE = 1 << 3  # BPF_F_BEFORE
    AFTER = 1 << 4  # BPF_F_AFTER
    ID = 1 << 5  # BPF_F_ID: relative_to is a program/link id
    LINK = 1 << 13  # BPF_F_LINK: relative_to is a link


def _ifindex(ifindex: int | str) -> int:
    if isinstance(ifindex, str):
        try:
            return int(__import__("socket").if_nametoindex(ifindex))
        except OSError:
            raise ValueError(f"no network interface named {ifindex!r} in this namespace") from None
    if ifindex <= 0:
        raise ValueError(f"ifindex must be positive, not {ifindex}")
    return ifindex


def xdp(program: ProgramLike, ifindex: int | str, mode: XDPMode = XDPMode.AUTO) -> Link:
    """Attach an ``XDP`` program to a network device through an XDP link.

    Args:
        ifindex: interface index, or name (looked up in this network namespace).
        mode: ``DRIVER`` (native), ``GENERIC`` (skb) or ``OFFLOAD``; ``AUTO`` lets the
            kernel choose native when the driver supports it.

    Raises:
        SyscallError: ``EBUSY`` (another program is attached in another mode or without a
            link), ``EOPNOTSUPP`` (the driver has no such mode), ``EINVAL``.

    Requires Linux >= 5.9.
    """
    index = _ifindex(ifindex)
    mode = XDPMode(mode)
    if int(mode).bit_count() > 1:
        raise ValueError(f"choose one XDP mode, not {mode!r}")
    try:
        fd = _abi.link_create(program.fd, index, AttachType.XDP, int(mode))
    except SyscallError as err:
        err.add_note(f"while attaching XDP ({mode.name}) to ifindex {index}")
        raise
    return FDLink(FD(fd), kind=f"xdp {mode.name.lower() if mode.name else mode} ifindex {index}")


def tc(
    program: ProgramLike,
    ifindex: int | str,
    direction: TCDirection,
    *,
    flags: TCXFlags = TCXFlags.NONE,
    relative_to: int = 0,
    expected_revision: int = 0,
) -> Link:
    """Attach a ``SCHED_CLS`` program to a device's ingress or egress through a tcx link.

    Args:
        direction: :class:`TCDirection`.
        flags, relative_to: place the program before/after another program or link
            (``TCXFlags.BEFORE | TCXFlags.LINK`` with a link fd, ...); default: last.
        expected_revision: fail with ``ESTALE`` unless the hook's revision is this (0: any).

    Requires Linux >= 6.6 (use :func:`tc_clsact` before).
    """
    index = _ifindex(ifindex)
    direction = TCDirection(direction)
    extra = struct.pack("=IIQ", relative_to, 0, expected_revision)
    try:
        fd = _abi.link_create(program.fd, index, int(direction), int(flags), extra)
    except SyscallError as err:
        err.add_note(f"while attaching a tcx {direction.name.lower()} program to ifindex {index}")
        raise
    return FDLink(FD(fd), kind=f"tcx {direction.name.lower()} ifindex {index}")


class ClsactFilter(_LinkBase):
    """A direct-action ``cls_bpf`` filter under the ``clsact`` qdisc of one device."""

    def __init__(
        self, ifindex: int, direction: TCDirection, priority: int, handle: int, created_qdisc: bool, name: str
    ) -> None:
        self.name = name
        self.ifindex = ifindex
        self.direction = direction
        self.priority = priority
        self.handle = handle
        self._created_qdisc = created_qdisc
        self._attached = True
        self._closed = False

    @property
    def _parent(self) -> int:
        return _netlink.CLSACT_INGRESS if self.direction == TCDirection.INGRESS else _netlink.CLSACT_EGRESS

    @property
    def closed(self) -> bool:
        return self._closed

    def update(self, program: ProgramLike, *, old: ProgramLike | None = None) -> None:
        """Replace the filter's program (``RTM_NEWTFILTER`` with ``NLM_F_REPLACE``)."""
        if self._closed or not self._attached:
            raise ValueError("the tc filter is detached")
        if old is not None:
            raise NotSupportedError("conditional update of a tc filter", detail="netlink has no compare")
        _netlink.add_bpf_filter(
            self.ifindex, self._parent, program.fd, self.name, self.priority, self.handle, replace=True
        )

    def pin(self, path: str | os.PathLike[str]) -> None:
        raise NotSupportedError("pinning a classic tc filter", detail="cls_bpf filters are not BPF links")

    def unpin(self) -> None:
        pass

    def detach(self) -> None:
        """Remove the filter, and the clsact qdisc if this link added it and no filter is left."""
        if not self._attached:
            return
        self._attached = False
        _netlink.del_bpf_filter(self.ifindex, self._parent, self.priority, self.handle)
        if self._created_qdisc and _netlink.filter_count(self.ifindex) == 0:
            _netlink.del_clsact(self.ifindex)

    def info(self) -> LinkInfo:
        raise NotSupportedError(
            "link info of a classic tc filter", detail="cls_bpf filters are not BPF links"
        )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.detach()

    def __del__(self) -> None:
        self._warn_unclosed()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "attached"
        return f"<tc clsact {self.direction.name.lower()} filter ifindex {self.ifindex} prio {self.priority} {state}>"


def tc_clsact(
    program: ProgramLike,
    ifindex: int | str,
    direction: TCDirection,
    *,
    priority: int = 1,
    handle: int = 1,
    name: str = "ebpf",
) -> Link:
    """Attach a ``SCHED_CLS`` program as a direct-action ``cls_bpf`` filter under ``clsact``.

    The classic path (``tc filter add dev X ingress bpf da``) for kernels without tcx; adds
    the clsact qdisc when the device has none (removed again on close).

    Requires Linux >= 4.5.
    """
    index = _ifindex(ifindex)
    direction = TCDirection(direction)
    if not 1 <= priority <= 0xFFFF:
        raise ValueError(f"priority must be in [1, 65535], not {priority}")
    created = _netlink.add_clsact(index)
    parent = _netlink.CLSACT_INGRESS if direction == TCDirection.INGRESS else _netlink.CLSACT_EGRESS
    try:
        _netlink.add_bpf_filter(index, parent, program.fd, name, priority, handle)
    except BaseException:
        if created:
            _netlink.del_clsact(index)
        raise
    return ClsactFilter(index, direction, priority, handle, created, name)


_NETNS_ATTACH_TYPES = (AttachType.SK_LOOKUP, AttachType.FLOW_DISSECTOR)


def netns(
    program: ProgramLike, attach_type: AttachType, namespace: str | os.PathLike[str] = "/proc/self/ns/net"
) -> Link:
    """Attach an ``SK_LOOKUP`` or ``FLOW_DISSECTOR`` program to a network namespace.

    Args:
        attach_type: ``AttachType.SK_LOOKUP`` or ``AttachType.FLOW_DISSECTOR``.
        namespace: a network namespace file: ``/proc/<pid>/ns/net``, ``/var/run/netns/<name>``
            (default: this thread's namespace).

    Requires Linux >= 5.8 (flow dissector links), 5.9 (sk_lookup).
    """
    attach_type = AttachType(attach_type)
    if attach_type not in _NETNS_ATTACH_TYPES:
        raise ValueError(f"{attach_type.name} does not attach to a network namespace")
    path = os.fspath(namespace)
    ns = FD(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
    try:
        fd = _abi.link_create(program.fd, ns.fileno(), attach_type)
    except SyscallError as err:
        err.add_note(f"while attaching {attach_type.name} to network namespace {path!r}")
        raise
    finally:
        ns.close()
    return FDLink(FD(fd), kind=f"netns {attach_type.name.lower()} {path}")


class NetfilterHook(IntEnum):
    """``enum nf_inet_hooks``."""

    PRE_ROUTING = 0  # NF_INET_PRE_ROUTING
    LOCAL_IN = 1  # NF_INET_LOCAL_IN
    FORWARD = 2  # NF_INET_FORWARD
    LOCAL_OUT = 3  # NF_INET_LOCAL_OUT
    POST_ROUTING = 4  # NF_INET_POST_ROUTING


_NFPROTO = {4: 2, 6: 10}  # NFPROTO_IPV4, NFPROTO_IPV6
_BPF_F_NETFILTER_IP_DEFRAG = 1


def netfilter(
    program: ProgramLike,
    hook: NetfilterHook,
    *,
    family: int = 4,
    priority: int = 0,
    defrag: bool = False,
) -> Link:
    """Attach a ``NETFILTER`` program to a netfilter hook of this network namespace.

    Args:
        hook: where in the IP stack (:class:`NetfilterHook`).
        family: 4 or 6.
        priority: the hook priority; the kernel refuses ``INT_MIN``/``INT_MAX`` and a priority
            already taken by another BPF program on the same hook (``EBUSY``).
        defrag: reassemble fragments first (``BPF_F_NETFILTER_IP_DEFRAG``, Linux >= 6.6).

    Requires Linux >= 6.4 (CONFIG_NETFILTER_BPF_LINK).
    """
    if family not in _NFPROTO:
        raise ValueError(f"family must be 4 or 6, not {family}")
    hook = NetfilterHook(hook)
    flags = _BPF_F_NETFILTER_IP_DEFRAG if defrag else 0
    extra = struct.pack("=IIiI", _NFPROTO[family], int(hook), priority, flags)
    try:
        fd = _abi.link_create(program.fd, 0, AttachType.NETFILTER, 0, extra)
    except SyscallError as err:
        err.add_note(f"while attaching to netfilter IPv{family} {hook.name} priority {priority}")
        raise
    return FDLink(FD(fd), kind=f"netfilter ipv{family} {hook.name.lower()}")
