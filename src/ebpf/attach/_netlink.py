"""rtnetlink for classic tc: the ``clsact`` qdisc and ``cls_bpf`` filters, through pyroute2.

Above the kernel line. Talks rtnetlink in the caller's network namespace; never shells out.

Rule 1: pyroute2 is imported lazily, so ``ebpf.attach`` imports without it; a missing
pyroute2 is a :class:`~ebpf.errors.NotSupportedError` naming the package.

Rule 2: netlink failures become :class:`~ebpf.errors.SyscallError` with ``cmd`` naming the
request (``RTM_NEWTFILTER``...) and the kernel's errno.
"""

from __future__ import annotations

import errno as _errno
from typing import Any

from ebpf.errors import NotSupportedError, SyscallError

__all__ = [
    "CLSACT_EGRESS",
    "CLSACT_INGRESS",
    "add_bpf_filter",
    "add_clsact",
    "del_bpf_filter",
    "del_clsact",
    "filter_count",
]

CLSACT_INGRESS = 0xFFFFFFF2  # TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)
CLSACT_EGRESS = 0xFFFFFFF3  # TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS)
_ETH_P_ALL = 0x0003


def _ipr() -> Any:
    try:
        from pyroute2 import IPRoute  # type: ignore[import-untyped,unused-ignore]
    except ImportError as err:  # pragma: no cover - pyroute2 is a dependency
        raise NotSupportedError("classic tc attachment", detail="needs the pyroute2 package") from err
    return IPRoute()


def _netlink_error(cmd: str, err: Exception, what: str) -> SyscallError:
    code = getattr(err, "code", None)
    if not isinstance(code, int) or code <= 0:
        code = _errno.EIO
    return SyscallError(cmd, code, what)


def add_clsact(ifindex: int) -> bool:
    """Add the ``clsact`` qdisc to ``ifindex``; ``False`` if it already had one."""
    with _ipr() as ipr:
        try:
            ipr.tc("add", "clsact", ifindex)
        except Exception as err:
            if getattr(err, "code", None) == _errno.EEXIST:
                return False
            raise _netlink_error("RTM_NEWQDISC", err, f"could not add clsact to ifindex {ifindex}") from err
    return True


def del_clsact(ifindex: int) -> None:
    """Remove the ``clsact`` qdisc (and every filter under it) from ``ifindex``."""
    with _ipr() as ipr:
        try:
            ipr.tc("del", "clsact", ifindex)
        except Exception as err:
            if getattr(err, "code", None) in (_errno.ENOENT, _errno.EINVAL, _errno.ENODEV):
                return
            raise _netlink_error(
                "RTM_DELQDISC", err, f"could not remove clsact from ifindex {ifindex}"
            ) from err


def add_bpf_filter(
    ifindex: int, parent: int, prog_fd: int, name: str, priority: int, handle: int, *, replace: bool = False
) -> None:
    """Add (or replace) a direct-action ``cls_bpf`` filter running ``prog_fd``."""
    with _ipr() as ipr:
        try:
            ipr.tc(
                "replace-filter" if replace else "add-filter",
                "bpf",
                ifindex,
                handle,
                fd=prog_fd,
                name=name,
                parent=parent,
                prio=priority,
                protocol=_ETH_P_ALL,
                direct_action=True,
            )
        except Exception as err:
            raise _netlink_error(
                "RTM_NEWTFILTER", err, f"could not add a bpf filter to ifindex {ifindex}"
            ) from err


def del_bpf_filter(ifindex: int, parent: int, priority: int, handle: int) -> None:
    """Delete the ``cls_bpf`` filter added by :func:`add_bpf_filter` (gone already: no error)."""
    with _ipr() as ipr:
        try:
            ipr.tc("del-filter", "bpf", ifindex, handle, parent=parent, prio=priority, protocol=_ETH_P_ALL)
        except Exception as err:
            if getattr(err, "code", None) in (_errno.ENOENT, _errno.EINVAL, _errno.ENODEV):
                return
            raise _netlink_error("RTM_DELTFILTER", err, "could not delete the bpf filter") from err


def filter_count(ifindex: int) -> int:
    """How many filters hang under the ``clsact`` qdisc of ``ifindex`` (both directions)."""
    total = 0
    with _ipr() as ipr:
        for parent in (CLSACT_INGRESS, CLSACT_EGRESS):
            try:
                total += sum(
                    1 for msg in ipr.get_filters(index=ifindex, parent=parent) if msg.get_attr("TCA_KIND")
                )
            except Exception as err:
                if getattr(err, "code", None) in (_errno.ENOENT, _errno.EINVAL, _errno.ENODEV):
                    continue
                raise _netlink_error(
                    "RTM_GETTFILTER", err, f"could not list filters of ifindex {ifindex}"
                ) from err
    return total
