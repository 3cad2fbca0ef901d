"""``struct bpf_sk_lookup``: the context of ``BPF_PROG_TYPE_SK_LOOKUP`` programs.

Core layer: pure, no kernel access.

Rule 1 (uapi ``bpf.h``, ``Documentation/bpf/prog_sk_lookup.rst``): the context is 72 bytes,
read-only: ``sk`` (the selected socket, a pointer; ``cookie`` in test runs) at 0, ``family``
8, ``protocol`` 12, ``remote_ip4`` 16, ``remote_ip6`` 20, ``remote_port`` 36 (``__be16``; the
two bytes after it read as zero), ``local_ip4`` 40, ``local_ip6`` 44, ``local_port`` 60
(host order), ``ingress_ifindex`` 64. The kernel keeps ``family``, ``protocol`` and
``local_port`` as u16 values, IPv4 addresses only for ``AF_INET`` and IPv6 addresses only for
``AF_INET6`` (the others read as zero); the context region here holds exactly what those
loads give, so narrow loads read the same bytes.

Rule 2 (``BPF_PROG_TEST_RUN``, measured on Linux 6.18): no ``data_in`` and no ``data_out``
buffer (``EINVAL``); ``ctx_in`` is required (``EINVAL``), bytes past the struct must be zero
(``E2BIG``), ``sk``/``cookie`` and everything after ``local_port`` (``ingress_ifindex``) must
be zero (``EINVAL``), ``local_port`` at most 65535 (``ERANGE``), ``family`` (as u16)
``AF_INET`` or ``AF_INET6`` (``EAFNOSUPPORT``). The program sees ``ingress_ifindex`` 0 and no
selected socket. ``ctx_out`` is ``ctx_in`` with ``cookie`` set to the selected socket's
cookie (0: none).

Rule 3 (sockets): this runtime has no sockets (no ``SOCKMAP``/``SOCKHASH`` holds one), so no
socket is ever selected: ``ctx->sk`` reads 0, ``cookie`` comes back 0 and ``bpf_sk_assign``
only ever sees a NULL socket (see :mod:`ebpf.vm._helpers_progtypes`). The retval is the
program's ``SK_PASS`` (1) or ``SK_DROP`` (0).
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

from ebpf.errors import TestRunError, VMError
from ebpf.vm._context_base import ContextRegion, Input, MappedInput
from ebpf.vm.memory import HostBuffer, Memory

__all__ = [
    "AF_INET",
    "AF_INET6",
    "BPF_SK_LOOKUP_F_NO_REUSEPORT",
    "BPF_SK_LOOKUP_F_REPLACE",
    "SK_DROP",
    "SK_LOOKUP_FIELDS",
    "SK_LOOKUP_SIZE",
    "SK_PASS",
    "SkLookupInput",
    "SkLookupMapped",
]

AF_INET = 2
AF_INET6 = 10
SK_DROP = 0
SK_PASS = 1
BPF_SK_LOOKUP_F_REPLACE = 1 << 0
BPF_SK_LOOKUP_F_NO_REUSEPORT = 1 << 1
U16_MAX = 0xFFFF

SK_LOOKUP_SIZE = 72
# name -> (offset, size): struct bpf_sk_lookup in uapi bpf.h (Linux 6.18).
SK_LOOKUP_FIELDS: dict[str, tuple[int, int]] = {
    "sk": (0, 8),
    "family": (8, 4),
    "protocol": (12, 4),
    "remote_ip4": (16, 4),
    "remote_ip6": (20, 16),
    "remote_port": (36, 2),
    "local_ip4": (40, 4),
    "local_ip6": (44, 16),
    "local_port": (60, 4),
    "ingress_ifindex": (64, 4),
}
_END_OF_LOCAL_PORT = 64
_READABLE_END = 68  # the verifier refuses loads of the tail padding


def _field(buf: bytes, name: str) -> int:
    off, size = SK_LOOKUP_FIELDS[name]
    return int.from_bytes(buf[off : off + size], "little")


@dataclass(frozen=True)
class SkLookupInput(Input):
    """A socket lookup, as ``BPF_PROG_TEST_RUN`` takes it (see the module rules).

    Attributes:
        ctx_in: the caller's ``struct bpf_sk_lookup`` (zero-extended to 72 bytes).
    """

    ctx_in: bytes

    @classmethod
    def from_test_run(
        cls, data_in: bytes, ctx_in: bytes | None, *, data_size_out: int | None = None
    ) -> SkLookupInput:
        """The input of an sk_lookup test run, with the kernel's checks (Rule 2).

        ``data_size_out`` is the caller's output buffer size (``None`` or 0: none).

        Raises:
            TestRunError: with the kernel's errno (``EINVAL``, ``E2BIG``, ``ERANGE``,
                ``EAFNOSUPPORT``).
        """
        if data_in or data_size_out:
            raise TestRunError("sk_lookup test runs take no data_in and fill no data_out", errno=errno.EINVAL)
        ctx = bytes(ctx_in or b"")
        if any(ctx[SK_LOOKUP_SIZE:]):
            raise TestRunError("ctx_in has non-zero bytes past struct bpf_sk_lookup", errno=errno.E2BIG)
        if not ctx:
            raise TestRunError("sk_lookup test runs need a struct bpf_sk_lookup ctx_in", errno=errno.EINVAL)
        ctx = ctx[:SK_LOOKUP_SIZE].ljust(SK_LOOKUP_SIZE, b"\0")
        if _field(ctx, "sk"):
            raise TestRunError("ctx_in: bpf_sk_lookup.sk (cookie) must be 0", errno=errno.EINVAL)
        if any(ctx[_END_OF_LOCAL_PORT:]):
            raise TestRunError(
                "ctx_in: a test run cannot set bpf_sk_lookup.ingress_ifindex", errno=errno.EINVAL
            )
        if _field(ctx, "local_port") > U16_MAX:
            raise TestRunError(
                f"ctx_in: local_port {_field(ctx, 'local_port')} > {U16_MAX}", errno=errno.ERANGE
            )
        family = _field(ctx, "family") & U16_MAX
        if family not in (AF_INET, AF_INET6):
            raise TestRunError(
                f"ctx_in: address family {family} is neither AF_INET nor AF_INET6",
                errno=errno.EAFNOSUPPORT,
            )
        return cls(ctx)

    def map(self, memory: Memory) -> SkLookupMapped:
        return SkLookupMapped(memory, self)


class SkLookupMapped(MappedInput):
    """A mapped ``struct bpf_sk_lookup`` (read-only) and the lookup's selection state."""

    def __init__(self, memory: Memory, inp: SkLookupInput) -> None:
        self.input = inp
        src = inp.ctx_in
        family = _field(src, "family") & U16_MAX
        ctx = bytearray(SK_LOOKUP_SIZE)
        struct.pack_into("<II", ctx, 8, family, _field(src, "protocol") & U16_MAX)
        ip4 = family == AF_INET
        for name in ("remote_ip4", "local_ip4", "remote_ip6", "local_ip6"):
            if name.endswith("ip4") == ip4:
                off, size = SK_LOOKUP_FIELDS[name]
                ctx[off : off + size] = src[off : off + size]
        ctx[36:38] = src[36:38]  # remote_port; the padding after it reads 0
        struct.pack_into("<I", ctx, 60, _field(src, "local_port") & U16_MAX)
        self.ctx_region = ContextRegion(
            "ctx", HostBuffer.from_bytes(bytes(ctx)), False, self._hook, owner=self
        )
        memory.map(self.ctx_region)
        self.selected = False
        self.no_reuseport = False
        super().__init__(self.ctx_region.start, 0, None, self.ctx_region.start, (self.ctx_region,))

    def begin_run(self) -> None:
        self.selected = False
        self.no_reuseport = False

    def _hook(self, offset: int, size: int) -> int | None:
        if offset >= _READABLE_END or (offset < 8 and size != 8):
            raise VMError(
                f"sk_lookup context: load of {size} bytes at offset {offset} (the verifier refuses it)"
            )
        return None

    def ctx_out(self) -> bytes:
        return bytes(8) + self.input.ctx_in[8:]  # cookie 0: no socket was selected
