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

Rule 3 (kfuncs on a netfilter ``ctx->skb``): the kernel's skb kfuncs take a
``struct __sk_buff *``, which in a netfilter program is the ``struct sk_buff`` of its context;
the runtime's implementations read ``data``/``data_end`` of a ``__sk_buff`` context, so the
netfilter skb is passed to them as its ``__sk_buff`` view
(:meth:`~ebpf.vm._context_netfilter.NfMapped.sk_buff_view`). :func:`register` installs this in
the shared kfunc registry (:func:`~ebpf.vm.kfuncs.runtime_kfuncs`), once.
"""

from __future__ import annotations

import errno

from ebpf.errors import VMError
from ebpf.helpers import HelperId
from ebpf.vm._context_base import mapped_at
from ebpf.vm._context_flow import FlowDissectorMapped
from ebpf.vm._context_netfilter import NfMapped
from ebpf.vm._context_sklookup import (
    BPF_SK_LOOKUP_F_NO_REUSEPORT,
    BPF_SK_LOOKUP_F_REPLACE,
    SkLookupMapped,
)
from ebpf.vm.helpers import M64, HelperEnv, HelperFn, HelperRegistry, RunEnv, run_env
from ebpf.vm.kfuncs import runtime_kfuncs

__all__ = ["SKB_KFUNCS", "register"]

M32 = (1 << 32) - 1
SKB_KFUNCS = ("bpf_dynptr_from_skb",)
"""The runtime's kfuncs whose first argument is a ``struct __sk_buff *`` (Rule 3)."""


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


def _nf_skb_kfunc(previous: HelperFn) -> HelperFn:
    def kfunc(e: HelperEnv, skb: int, b: int, c: int, d: int, x: int) -> int:
        env = run_env(e)
        mapped = mapped_at(env.memory, skb)
        if isinstance(mapped, NfMapped) and skb == mapped.skb_address:
            skb = mapped.sk_buff_view(env.memory).start
        return previous(e, skb, b, c, d, x)

    kfunc.netfilter_skb = True  # type: ignore[attr-defined]
    return kfunc


def _extend_kfuncs() -> None:
    """Rule 3: the skb kfuncs take a netfilter program's ``ctx->skb`` as its ``__sk_buff`` view."""
    kfuncs = runtime_kfuncs()
    for name in SKB_KFUNCS:
        k = kfuncs.by_name(name)
        if k is not None and not getattr(k.fn, "netfilter_skb", False):
            kfuncs.register(k.name, _nf_skb_kfunc(k.fn), k.prototype, k.flags)


def register(reg: HelperRegistry) -> None:
    """Add this module's helpers to ``reg`` (after :mod:`ebpf.vm._helpers_net`, whose
    ``bpf_skb_load_bytes`` it extends to flow dissector contexts), and extend the runtime's
    skb kfuncs to netfilter socket buffers (Rule 3)."""
    previous = reg[HelperId.SKB_LOAD_BYTES].fn if HelperId.SKB_LOAD_BYTES in reg else None
    reg.register(HelperId.SKB_LOAD_BYTES, "bpf_skb_load_bytes", _flow_load_bytes(previous))
    reg.register(HelperId.SK_ASSIGN, "bpf_sk_assign", sk_assign)
    _extend_kfuncs()
