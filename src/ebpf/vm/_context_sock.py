"""``struct bpf_sock``: the socket a socket-buffer program reaches through ``skb->sk``.

Core layer: pure, no kernel access.

Rule 1 (uapi ``bpf.h``): :data:`BPF_SOCK_FIELDS` is the layout of ``struct bpf_sock`` (80
bytes). A :class:`SockRegion` is a read-only region holding one socket's fields as a
program's loads read them (addresses and ``dst_port`` in network order, ``src_port`` in host
order, ``rx_queue_mapping`` signed).

Rule 2 (``bpf_prog_test_run_skb`` in ``net/bpf/test_run.c``, measured on Linux 6.18): the
test skb of every socket-buffer program type carries a dummy socket made by
``sk_alloc(AF_UNSPEC)`` + ``sock_init_data(NULL, sk)``: ``state`` is ``TCP_CLOSE`` (7),
``rx_queue_mapping`` is -1 (no queue), ``type``, ``protocol``, ``mark``, ``priority``,
``bound_dev_if`` and the ports are 0. For an IPv4 (IPv6) packet its family is ``AF_INET``
(``AF_INET6``) and its source / destination addresses are the packet's; any other packet
leaves the family ``AF_UNSPEC`` and the addresses zero. :func:`dummy_sock_fields` builds it.

Rule 3 (``sk_fullsock``, ``bpf_tcp_sock``, ``bpf_get_listener_sock``): a socket is full
unless its state is ``TCP_TIME_WAIT`` or ``TCP_NEW_SYN_RECV``; it is a TCP socket only with
``IPPROTO_TCP``; it is a listener only in ``TCP_LISTEN`` with ``SOCK_RCU_FREE`` set, which a
dummy socket never has (see :mod:`ebpf.vm._helpers_sock`).
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from ebpf.vm.memory import HostBuffer, Region

__all__ = [
    "BPF_SOCK_FIELDS",
    "BPF_SOCK_SIZE",
    "SockRegion",
    "dummy_sock_fields",
    "new_sock_region",
    "sock_addresses",
]

BPF_SOCK_SIZE = 80
# name -> (offset, size): struct bpf_sock in uapi bpf.h (Linux 6.18).
BPF_SOCK_FIELDS: dict[str, tuple[int, int]] = {
    "bound_dev_if": (0, 4),
    "family": (4, 4),
    "type": (8, 4),
    "protocol": (12, 4),
    "mark": (16, 4),
    "priority": (20, 4),
    "src_ip4": (24, 4),
    "src_ip6": (28, 16),
    "src_port": (44, 4),
    "dst_port": (48, 2),
    "dst_ip4": (52, 4),
    "dst_ip6": (56, 16),
    "state": (72, 4),
    "rx_queue_mapping": (76, 4),
}
AF_UNSPEC, AF_INET, AF_INET6 = 0, 2, 10
IPPROTO_TCP = 6
TCP_LISTEN, TCP_CLOSE, TCP_TIME_WAIT, TCP_NEW_SYN_RECV = 10, 7, 6, 12
ETH_HLEN = 14
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")


_SERIALS = itertools.count(1)


@dataclass(eq=False)
class SockRegion(Region):
    """A read-only ``struct bpf_sock`` (Rule 1).

    Attributes:
        rcu_free: the socket's ``SOCK_RCU_FREE`` flag.
        serial: which socket this is: :meth:`renew` makes the region a new socket (each skb
            test run has its own dummy socket).
        owner: the local-storage owner helpers bound to this socket (``None``: none yet).
    """

    rcu_free: bool = False
    serial: int = field(default_factory=lambda: next(_SERIALS))
    owner: object | None = None
    _on_renew: list[Callable[[], object]] = field(default_factory=list, repr=False)

    def at_renew(self, fn: Callable[[], object]) -> None:
        """Call ``fn`` when this socket dies (:meth:`renew`), e.g. to free its storage."""
        self._on_renew.append(fn)

    def renew(self) -> None:
        """The socket dies and a new one takes its place (the callbacks of :meth:`at_renew` run)."""
        callbacks, self._on_renew = self._on_renew, []
        self.owner = None
        self.serial = next(_SERIALS)
        for fn in callbacks:
            fn()

    def field(self, name: str) -> int:
        """A field as a program's load reads it (unsigned)."""
        off, size = BPF_SOCK_FIELDS[name]
        return int.from_bytes(self.view[off : off + size], "little")

    @property
    def full(self) -> bool:
        """``sk_fullsock``: not a time-wait or request socket (Rule 3)."""
        return self.field("state") not in (TCP_TIME_WAIT, TCP_NEW_SYN_RECV)

    def fill(self, fields: bytes) -> None:
        """Replace the socket's 80 bytes (only while no program runs)."""
        self.buffer.view[:] = fields


def new_sock_region(name: str = "sock") -> SockRegion:
    """An unmapped, zeroed socket region."""
    return SockRegion(name, HostBuffer(BPF_SOCK_SIZE), False)


def sock_addresses(frame: bytes) -> tuple[int, bytes, bytes]:
    """``(family, local, remote)`` of the dummy socket for the Ethernet frame ``frame`` (Rule 2):
    ``AF_INET``/``AF_INET6`` with the packet's source and destination, else ``AF_UNSPEC``, b"", b""."""
    ethertype = frame[12:14]
    if ethertype == b"\x08\x00" and len(frame) >= ETH_HLEN + 20:
        return AF_INET, frame[26:30], frame[30:34]  # iphdr saddr, daddr
    if ethertype == b"\x86\xdd" and len(frame) >= ETH_HLEN + 40:
        return AF_INET6, frame[22:38], frame[38:54]  # ipv6hdr saddr, daddr
    return AF_UNSPEC, b"", b""


def dummy_sock_fields(frame: bytes) -> bytes:
    """The fields of the dummy socket of an skb test run on the Ethernet frame ``frame`` (Rule 2).

    ``frame`` must hold a whole IP header after the Ethernet header for IPv4 / IPv6 packets (the
    test run checks that first).
    """
    out = bytearray(BPF_SOCK_SIZE)
    _U32.pack_into(out, BPF_SOCK_FIELDS["state"][0], TCP_CLOSE)
    _I32.pack_into(out, BPF_SOCK_FIELDS["rx_queue_mapping"][0], -1)
    family, local, remote = sock_addresses(frame)
    _U32.pack_into(out, BPF_SOCK_FIELDS["family"][0], family)
    if family == AF_INET:
        out[24:28], out[52:56] = local, remote  # src_ip4 = sk_rcv_saddr, dst_ip4 = sk_daddr
    elif family == AF_INET6:
        out[28:44], out[56:72] = local, remote
    return bytes(out)
