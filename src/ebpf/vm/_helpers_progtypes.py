"""User-space kernel helpers for the flow dissector and sk_lookup program types.

Core layer: pure, no kernel access.

Rule 1 (``bpf_skb_load_bytes`` on a flow dissector context, ``bpf_flow_dissector_load_bytes``
in ``net/core/filter.c``): the kernel reads through the context's ``skb``; a
``BPF_PROG_TEST_RUN`` context has none, so the helper zeroes ``len`` bytes at ``to`` and
returns ``-EFAULT`` (measured on Linux 6.18). On any other context the helper is the socket
buffer one of :mod:`ebpf.vm._helpers_net`.

Rule 2 (``bpf_sk_assign`` on an sk_lookup context, ``bpf_sk_lookup_assign``): flags other than
``BPF_SK_LOOKUP_F_REPLACE | BPF_SK_LOOKUP_F_NO_REUSEPORT`` give ``-EINVAL``; assigning while
a socket is selected without ``F_REPLACE`` gives ``-EEXIST``; otherwise the socket (NULL
clears the selection) becomes the lookup's result and the helper returns 0. The runtime has
no sockets (no socket map holds one), so the only socket a program can pass is NULL; any
other pointer is a :class:`~ebpf.errors.VMError`. ``bpf_sk_assign`` on a tc context needs a
real socket, which the runtime cannot give: a ``VMError`` as well.
"""

from __future__ import annotations

import errno

from ebpf.errors import VMError
from ebpf.helpers import HelperId
from ebpf.vm._context_base import mapped_at
from ebpf.vm._context_flow import FlowDissectorMapped
from ebpf.vm._context_sklookup import (
    BPF_SK_LOOKUP_F_NO_REUSEPORT,
    BPF_SK_LOOKUP_F_REPLACE,
    SkLookupMapped,
)
from ebpf.vm.helpers import M64, HelperEnv, HelperFn, HelperRegistry, RunEnv, run_env

__all__ = ["register"]

M32 = (1 << 32) - 1


def _context(env: RunEnv, address: int) -> object:
    mapped = mapped_at(env.memory, address)
    if mapped is None and env.context is not None and env.context.r1 == address:
        return env.context
    return mapped


def _flow_load_bytes(previous: HelperFn | None) -> HelperFn:
    def skb_load_bytes(e: HelperEnv, ctx: int, offset: int, to: int, length: int, x: int) -> int:
        env = run_env(e)
        if isinstance(_context(env, ctx), FlowDissectorMapped):
            env.memory.write_bytes(to, bytes(length & M32))
            return -errno.EFAULT & M64
        if previous is None:
            raise VMError(f"bpf_skb_load_bytes: {ctx:#x} is not the context of this program type")
        return previous(e, ctx, offset, to, length, x)

    return skb_load_bytes


def sk_assign(e: HelperEnv, ctx: int, sk: int, flags: int, _d: int, _e: int) -> int:
    """``bpf_sk_assign`` (Rule 2)."""
    env = run_env(e)
    mapped = _context(env, ctx)
    if not isinstance(mapped, SkLookupMapped):
        raise VMError(
            "bpf_sk_assign outside sk_lookup programs needs a socket; the user-space runtime has none"
        )
    if flags & ~(BPF_SK_LOOKUP_F_REPLACE | BPF_SK_LOOKUP_F_NO_REUSEPORT):
        return -errno.EINVAL & M64
    if sk:
        raise VMError(f"bpf_sk_assign: {sk:#x} is not a socket (the user-space runtime has no sockets)")
    if mapped.selected and not flags & BPF_SK_LOOKUP_F_REPLACE:
        return -errno.EEXIST & M64
    mapped.selected = False  # NULL: no socket selected
    mapped.no_reuseport = bool(flags & BPF_SK_LOOKUP_F_NO_REUSEPORT)
    return 0


def register(reg: HelperRegistry) -> None:
    """Add this module's helpers to ``reg`` (after :mod:`ebpf.vm._helpers_net`, whose
    ``bpf_skb_load_bytes`` it extends to flow dissector contexts)."""
    previous = reg[HelperId.SKB_LOAD_BYTES].fn if HelperId.SKB_LOAD_BYTES in reg else None
    reg.register(HelperId.SKB_LOAD_BYTES, "bpf_skb_load_bytes", _flow_load_bytes(previous))
    reg.register(HelperId.SK_ASSIGN, "bpf_sk_assign", sk_assign)
