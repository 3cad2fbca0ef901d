"""User-space kernel helper ``bpf_user_ringbuf_drain`` (209) for ``BPF_MAP_TYPE_USER_RINGBUF``.

Core layer: pure, no kernel access.

Rule 1 (``kernel/bpf/ringbuf.c``, the UAPI ``bpf.h`` doc): ``bpf_user_ringbuf_drain(map,
callback_fn, ctx, flags)`` runs ``callback_fn(dynptr, ctx)`` for each committed sample, in
order, as :meth:`ebpf.maps.user_ringbuf.UserRingBufMap.drain` describes (flags, ``-EBUSY``,
``-EINVAL``, ``-E2BIG``, discarded samples, the count returned, wake-ups).

Rule 2: the dynptr is a local one (type 1, not read-only, offset 0) over the sample in the
ring, in the 16-byte ``struct bpf_dynptr_kern`` layout of :mod:`ebpf.vm._helpers_dynptr`. The
kernel builds it on its own stack and passes a pointer the program may only hand to dynptr
helpers; here it lives in a small read-only region mapped for the duration of the drain.
"""

from __future__ import annotations

from ebpf.errors import VMError
from ebpf.helpers import HelperId
from ebpf.maps.user_ringbuf import UserRingBufMap
from ebpf.vm._helpers_dynptr import _KERN, DYNPTR_TYPE_SHIFT, TYPE_LOCAL
from ebpf.vm.helpers import M64, HelperEnv, HelperRegistry, run_env
from ebpf.vm.memory import HostBuffer

__all__ = ["register", "user_ringbuf_drain"]


def user_ringbuf_drain(e: HelperEnv, map_ptr: int, callback_fn: int, ctx: int, flags: int, _e: int) -> int:
    """``bpf_user_ringbuf_drain``: the number of samples drained, or a negative errno."""
    env = run_env(e)
    m = env.map_at(map_ptr)
    if not isinstance(m, UserRingBufMap):
        raise VMError(f"bpf_user_ringbuf_drain: {m.label} is not a user ring buffer")
    buf = HostBuffer(16)
    region = env.memory.map_buffer("user_ringbuf_dynptr", buf, writable=False)

    def each(address: int, size: int) -> int:
        buf.view[:] = _KERN.pack(address, size | (TYPE_LOCAL << DYNPTR_TYPE_SHIFT), 0)
        return env.call(callback_fn, region.start, ctx)

    try:
        return m.drain(each, flags) & M64
    finally:
        env.memory.unmap(region)


def register(reg: HelperRegistry) -> None:
    """Add this module's helper to ``reg``."""
    reg.register(HelperId.USER_RINGBUF_DRAIN, "bpf_user_ringbuf_drain", user_ringbuf_drain)
