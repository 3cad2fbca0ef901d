"""Socket helpers on ``skb->sk``: ``bpf_sk_fullsock``, ``bpf_tcp_sock``, ``bpf_get_listener_sock``,
``bpf_skc_to_*``, ``bpf_sk_cgroup_id``/``bpf_sk_ancestor_cgroup_id`` and
``bpf_sk_storage_get``/``_delete``.

Core layer: pure, no kernel access.

Rule 1: the socket argument must be the start of a :class:`~ebpf.vm._context_sock.SockRegion`
(the only sockets the runtime has: the dummy socket of an skb test run); anything else is a
``VMError`` (the verifier lets only socket pointers through).

Rule 2 (``net/core/filter.c``, measured on Linux 6.18 with the test run's dummy socket):
``bpf_sk_fullsock`` returns the socket unless it is a time-wait or request socket (the dummy
socket, ``TCP_CLOSE``, is full); ``bpf_tcp_sock`` returns NULL for a socket that is not a full
``IPPROTO_TCP`` socket (the dummy's protocol is 0); ``bpf_get_listener_sock`` returns the socket
only in ``TCP_LISTEN`` with ``SOCK_RCU_FREE`` (never for the dummy). A full TCP socket would need
a ``struct bpf_tcp_sock``, which the runtime does not model: ``NotSupportedError``.

Rule 3 (``bpf_skc_to_*``, ``net/core/filter.c``): each cast returns NULL unless the socket is
of its kind (``tcp6``/``tcp``/``mptcp``: a full ``IPPROTO_TCP`` socket, ``tcp6`` of ``AF_INET6``;
``tcp_timewait``/``tcp_request``: a TCP socket in ``TCP_TIME_WAIT``/``TCP_NEW_SYN_RECV``;
``udp6``: a full ``IPPROTO_UDP`` datagram socket of ``AF_INET6``; ``unix``: a full ``AF_UNIX``
socket). The dummy socket is none of them (NULL, measured); a socket that is one would need
the kernel's struct, which the runtime does not model: ``NotSupportedError``.

Rule 4 (``bpf_sk_cgroup_id``/``bpf_sk_ancestor_cgroup_id``): a socket region belongs to the
cgroup of the task that made it (``cgroup_sk_alloc`` in ``sk_alloc``): the dummy socket of a
test run to the caller's cgroup, as ``bpf_skb_cgroup_id`` (measured: the caller's cgroup id,
its ancestors by level, 0 past the leaf).

Rule 5 (``bpf_sk_assign`` in tc, measured): assigning a socket region fails with ``-EINVAL``
for non-zero flags, else ``-EOPNOTSUPP`` (a test-run skb is not at tc ingress); other sockets
go to :func:`ebpf.vm._helpers_progtypes.sk_assign` (the ``sk_lookup`` variant).

Rule 6 (``bpf_sk_storage_get``/``_delete`` on a socket region, measured on Linux 6.18): a
socket region is a local-storage owner of its own (bound in
:func:`ebpf.maps.storage.owners` on first use); its storage lives until the socket dies
(:meth:`~ebpf.vm._context_sock.SockRegion.renew`: the next test run of the mapping, or the
mapping's end), so the ``repeat`` runs of one skb test run share it and the next test run
starts without. A socket that is not full has no storage (get: NULL, delete: ``-EINVAL``).
Other pointers go to :mod:`ebpf.vm._helpers_storage` unchanged.
"""

from __future__ import annotations

import errno
import weakref
from collections.abc import Callable

from ebpf.errors import NotSupportedError, VMError
from ebpf.helpers import HelperId
from ebpf.maps.storage import Owner, OwnerKind, owners
from ebpf.vm import _helpers_progtypes, _helpers_storage
from ebpf.vm._context_sock import (
    AF_INET6,
    IPPROTO_TCP,
    TCP_LISTEN,
    TCP_NEW_SYN_RECV,
    TCP_TIME_WAIT,
    SockRegion,
)
from ebpf.vm._helpers_misc import current_ancestor_cgroup_id
from ebpf.vm.helpers import M64, HelperEnv, HelperFn, HelperRegistry, run_env

__all__ = ["register"]


def _sock(e: HelperEnv, sk: int, helper: str) -> SockRegion:
    region = e.memory.find(sk, 1)
    if not isinstance(region, SockRegion) or region.start != sk:
        raise VMError(f"{helper}: {sk:#x} is not a socket")
    return region


def sk_fullsock(e: HelperEnv, sk: int, _b: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_sk_fullsock``: the socket if it is a full socket, else NULL."""
    return sk if _sock(e, sk, "bpf_sk_fullsock").full else 0


def tcp_sock(e: HelperEnv, sk: int, _b: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_tcp_sock``: NULL unless the socket is a full TCP socket (not modelled)."""
    sock = _sock(e, sk, "bpf_tcp_sock")
    if sock.full and sock.field("protocol") == IPPROTO_TCP:
        raise NotSupportedError(
            "bpf_tcp_sock on a TCP socket", detail="the runtime has no struct bpf_tcp_sock"
        )
    return 0


def get_listener_sock(e: HelperEnv, sk: int, _b: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_get_listener_sock``: the socket if it listens and is RCU-freed, else NULL."""
    sock = _sock(e, sk, "bpf_get_listener_sock")
    if sock.full and sock.field("state") == TCP_LISTEN and sock.rcu_free:
        raise NotSupportedError(
            "bpf_get_listener_sock on a listener", detail="the runtime has no struct bpf_tcp_sock"
        )
    return 0


IPPROTO_UDP, SOCK_DGRAM, AF_UNIX = 17, 2, 1
_SKC_KINDS: dict[HelperId, Callable[[SockRegion], bool]] = {
    HelperId.SKC_TO_TCP6_SOCK: lambda s: (
        s.full and s.field("protocol") == IPPROTO_TCP and s.field("family") == AF_INET6
    ),
    HelperId.SKC_TO_TCP_SOCK: lambda s: s.full and s.field("protocol") == IPPROTO_TCP,
    HelperId.SKC_TO_TCP_TIMEWAIT_SOCK: lambda s: (
        s.field("protocol") == IPPROTO_TCP and s.field("state") == TCP_TIME_WAIT
    ),
    HelperId.SKC_TO_TCP_REQUEST_SOCK: lambda s: (
        s.field("protocol") == IPPROTO_TCP and s.field("state") == TCP_NEW_SYN_RECV
    ),
    HelperId.SKC_TO_UDP6_SOCK: lambda s: (
        s.full
        and s.field("protocol") == IPPROTO_UDP
        and s.field("type") == SOCK_DGRAM
        and s.field("family") == AF_INET6
    ),
    HelperId.SKC_TO_UNIX_SOCK: lambda s: s.full and s.field("family") == AF_UNIX,
    HelperId.SKC_TO_MPTCP_SOCK: lambda s: s.full and s.field("protocol") == IPPROTO_TCP,
}


def _skc_to(hid: HelperId) -> HelperFn:
    """``bpf_skc_to_<kind>``: NULL for a socket of another kind (Rule 3)."""
    name = f"bpf_{hid.name.lower()}"
    is_kind = _SKC_KINDS[hid]

    def cast(e: HelperEnv, sk: int, _b: int, _c: int, _d: int, _e: int) -> int:
        if is_kind(_sock(e, sk, name)):
            raise NotSupportedError(
                f"{name} on a socket of its kind", detail="the runtime has no such kernel struct"
            )
        return 0

    return cast


def _storage_owner(e: HelperEnv, sk: int) -> SockRegion | None:
    """The socket region at ``sk``, bound as a local-storage owner (Rule 6), or ``None``."""
    region = e.memory.find(sk, 1) if sk else None
    if not isinstance(region, SockRegion) or region.start != sk:
        return None
    if region.owner is None:
        table = owners(e.memory)
        owner = Owner(OwnerKind.SOCK, (-1, region.serial))  # no sockfs inode: a dev no file has
        table.bind(sk, owner)
        region.owner = owner
        region.at_renew(weakref.finalize(region, table.release, owner))
    return region


def sk_storage_get(e: HelperEnv, map_ptr: int, sk: int, value: int, flags: int, _e: int) -> int:
    """``bpf_sk_storage_get``, socket regions included (Rule 6)."""
    region = _storage_owner(e, sk)
    if region is not None and not region.full:
        return 0
    return _helpers_storage.sk_storage_get(e, map_ptr, sk, value, flags, _e)


def sk_storage_delete(e: HelperEnv, map_ptr: int, sk: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_sk_storage_delete``, socket regions included (Rule 6)."""
    region = _storage_owner(e, sk)
    if region is not None and not region.full:
        return -errno.EINVAL & M64
    return _helpers_storage.sk_storage_delete(e, map_ptr, sk, _c, _d, _e)


def sk_cgroup_id(e: HelperEnv, sk: int, _b: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_sk_cgroup_id``: the socket's cgroup, the creator's (Rule 4)."""
    _sock(e, sk, "bpf_sk_cgroup_id")
    return run_env(e).current_task().cgroup_id


def sk_ancestor_cgroup_id(e: HelperEnv, sk: int, level: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_sk_ancestor_cgroup_id``: the ancestor at ``level`` of the socket's cgroup (Rule 4)."""
    _sock(e, sk, "bpf_sk_ancestor_cgroup_id")
    return current_ancestor_cgroup_id(e, level, 0, 0, 0, 0)


def sk_assign(e: HelperEnv, ctx: int, sk: int, flags: int, _d: int, _e: int) -> int:
    """``bpf_sk_assign`` of a socket region (Rule 5), else the ``sk_lookup`` helper."""
    region = e.memory.find(sk, 1) if sk else None
    if isinstance(region, SockRegion) and region.start == sk:
        return -(errno.EINVAL if flags else errno.EOPNOTSUPP) & M64
    return _helpers_progtypes.sk_assign(e, ctx, sk, flags, _d, _e)


def register(reg: HelperRegistry) -> None:
    """Add this module's helpers to ``reg``."""
    for hid, fn in (
        (HelperId.SK_FULLSOCK, sk_fullsock),
        (HelperId.TCP_SOCK, tcp_sock),
        (HelperId.GET_LISTENER_SOCK, get_listener_sock),
        (HelperId.SK_STORAGE_GET, sk_storage_get),
        (HelperId.SK_STORAGE_DELETE, sk_storage_delete),
        (HelperId.SK_CGROUP_ID, sk_cgroup_id),
        (HelperId.SK_ASSIGN, sk_assign),
        (HelperId.SK_ANCESTOR_CGROUP_ID, sk_ancestor_cgroup_id),
        *((hid, _skc_to(hid)) for hid in _SKC_KINDS),
    ):
        reg.register(hid, f"bpf_{hid.name.lower()}", fn)
