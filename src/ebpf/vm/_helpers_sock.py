"""Socket helpers on ``skb->sk``: ``bpf_sk_fullsock``, ``bpf_tcp_sock``, ``bpf_get_listener_sock``.

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
"""

from __future__ import annotations

from ebpf.errors import NotSupportedError, VMError
from ebpf.helpers import HelperId
from ebpf.vm._context_sock import IPPROTO_TCP, TCP_LISTEN, SockRegion
from ebpf.vm.helpers import HelperEnv, HelperRegistry

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


def register(reg: HelperRegistry) -> None:
    """Add this module's helpers to ``reg``."""
    for hid, fn in (
        (HelperId.SK_FULLSOCK, sk_fullsock),
        (HelperId.TCP_SOCK, tcp_sock),
        (HelperId.GET_LISTENER_SOCK, get_listener_sock),
    ):
        reg.register(hid, f"bpf_{hid.name.lower()}", fn)
