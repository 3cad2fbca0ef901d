"""The flow dissector context: ``__sk_buff`` with ``flow_keys``, and ``struct bpf_flow_keys``.

Core layer: pure, no kernel access.

Rule 1 (the verifier's ``flow_dissector_is_valid_access``): a ``BPF_PROG_TYPE_FLOW_DISSECTOR``
program gets an ``__sk_buff *`` of which it may only *read* ``data``, ``data_end`` (4-byte
loads, packet pointers) and ``flow_keys`` (an 8-byte load, a pointer to a
``struct bpf_flow_keys``). Here the context region answers those three loads with host
addresses; any other access is a :class:`~ebpf.errors.VMError` (the kernel refuses the
program). The packet is read-only (the verifier refuses packet writes for this type); the
flow keys are read-write.

Rule 2 (``BPF_PROG_TEST_RUN``, ``Documentation/bpf/prog_flow_dissector.rst``): ``data_in`` is
an Ethernet frame of 14 to 4096 bytes (else ``EINVAL``); ``data`` points at its first byte and
``data_end`` past its last. Before every run (each ``repeat``) the flow keys are zeroed and
then get ``n_proto`` = the frame's Ethernet type (network byte order), ``nhoff`` = ``thoff`` =
14 and ``flags`` = ``ctx_in.flags``. After the run the kernel clamps ``nhoff`` to
``[14, len]`` and ``thoff`` to ``[nhoff, len]`` (as u16 values). ``data_out`` is the 56-byte
``struct bpf_flow_keys``, ``retval`` the program's return (``BPF_OK`` 0, ``BPF_DROP`` 2...).

Rule 3 (``ctx_in``): a ``struct bpf_flow_keys`` of which only ``flags`` may be non-zero
(``EINVAL``); bytes past the struct must be zero (``E2BIG``). ``ctx_out`` is ``ctx_in`` as
given (zero-extended to 56 bytes): the kernel copies its input back unchanged.

Rule 4 (``bpf_skb_load_bytes`` on this context, ``bpf_flow_dissector_load_bytes``): the
helper reads through the context's ``skb``, which a test run does not have, so it zeroes the
destination and returns ``-EFAULT`` (measured on Linux 6.18); see
:mod:`ebpf.vm._helpers_progtypes`.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

from ebpf.errors import TestRunError, VMError
from ebpf.vm._context_base import ContextRegion, Input, MappedInput
from ebpf.vm._context_skb import SK_BUFF_FIELDS, SK_BUFF_SIZE
from ebpf.vm.memory import HostBuffer, Memory, Region

__all__ = [
    "BPF_DROP",
    "BPF_FLOW_DISSECTOR_F_PARSE_1ST_FRAG",
    "BPF_FLOW_DISSECTOR_F_STOP_AT_ENCAP",
    "BPF_FLOW_DISSECTOR_F_STOP_AT_FLOW_LABEL",
    "BPF_OK",
    "FLOW_KEYS_FIELDS",
    "FLOW_KEYS_SIZE",
    "FlowDissectorInput",
    "FlowDissectorMapped",
]

BPF_OK = 0
BPF_DROP = 2
BPF_FLOW_DISSECTOR_F_PARSE_1ST_FRAG = 1 << 0
BPF_FLOW_DISSECTOR_F_STOP_AT_FLOW_LABEL = 1 << 1
BPF_FLOW_DISSECTOR_F_STOP_AT_ENCAP = 1 << 2

FLOW_KEYS_SIZE = 56
# name -> (offset, size): struct bpf_flow_keys in uapi bpf.h (Linux 6.18); the IPv4 and IPv6
# addresses share a union at offset 16.
FLOW_KEYS_FIELDS: dict[str, tuple[int, int]] = {
    "nhoff": (0, 2),
    "thoff": (2, 2),
    "addr_proto": (4, 2),
    "is_frag": (6, 1),
    "is_first_frag": (7, 1),
    "is_encap": (8, 1),
    "ip_proto": (9, 1),
    "n_proto": (10, 2),
    "sport": (12, 2),
    "dport": (14, 2),
    "ipv4_src": (16, 4),
    "ipv4_dst": (20, 4),
    "ipv6_src": (16, 16),
    "ipv6_dst": (32, 16),
    "flags": (48, 4),
    "flow_label": (52, 4),
}
_FLAGS_OFF = FLOW_KEYS_FIELDS["flags"][0]
ETH_HLEN = 14
PAGE_SIZE = 4096  # bpf_test_init: no head- or tailroom for this type
_DATA = SK_BUFF_FIELDS["data"][0]
_DATA_END = SK_BUFF_FIELDS["data_end"][0]
_FLOW_KEYS = SK_BUFF_FIELDS["flow_keys"][0]


@dataclass(frozen=True)
class FlowDissectorInput(Input):
    """A flow dissector test run's input (see the module rules).

    Attributes:
        packet: the frame, Ethernet header first (``data_in``).
        flags: ``BPF_FLOW_DISSECTOR_F_*`` the program finds in ``flow_keys->flags``.
        ctx_in: the ``struct bpf_flow_keys`` the caller gave (echoed as ``ctx_out``), or ``None``.
    """

    packet: bytes
    flags: int = 0
    ctx_in: bytes | None = None

    def __post_init__(self) -> None:
        size = len(self.packet)
        if not ETH_HLEN <= size <= PAGE_SIZE:
            raise TestRunError(
                f"data_in of {size} bytes: a flow dissector test run needs {ETH_HLEN} to {PAGE_SIZE}",
                errno=errno.EINVAL,
            )

    @classmethod
    def from_test_run(cls, data_in: bytes, ctx_in: bytes | None = None) -> FlowDissectorInput:
        """The input ``BPF_PROG_TEST_RUN`` builds for a flow dissector, with the kernel's checks.

        Raises:
            TestRunError: ``data_in`` out of range or ``ctx_in`` setting anything but
                ``flags`` (``EINVAL``); non-zero ``ctx_in`` bytes past the struct (``E2BIG``).
        """
        packet = bytes(data_in)
        plain = cls(packet)  # the size checks come first
        if ctx_in is None:
            return plain
        ctx = bytes(ctx_in)
        if any(ctx[FLOW_KEYS_SIZE:]):
            raise TestRunError("ctx_in has non-zero bytes past struct bpf_flow_keys", errno=errno.E2BIG)
        keys = ctx[:FLOW_KEYS_SIZE].ljust(FLOW_KEYS_SIZE, b"\0")
        if any(keys[:_FLAGS_OFF]) or any(keys[_FLAGS_OFF + 4 :]):
            raise TestRunError(
                "ctx_in: a flow dissector test run takes only bpf_flow_keys.flags", errno=errno.EINVAL
            )
        (flags,) = struct.unpack_from("<I", keys, _FLAGS_OFF)
        return cls(packet, flags, keys)

    def map(self, memory: Memory) -> FlowDissectorMapped:
        return FlowDissectorMapped(memory, self)


class FlowDissectorMapped(MappedInput):
    """A mapped flow dissector context: the read-only frame, the ``__sk_buff`` and the flow keys."""

    def __init__(self, memory: Memory, inp: FlowDissectorInput) -> None:
        self.memory = memory
        self.input = inp
        packet = memory.map_buffer("packet", HostBuffer.from_bytes(inp.packet), writable=False)
        self.keys_region = memory.map_buffer("flow_keys", HostBuffer(FLOW_KEYS_SIZE))
        self.ctx_region = ContextRegion("ctx", HostBuffer(SK_BUFF_SIZE), False, self._hook, owner=self)
        memory.map(self.ctx_region)
        self.begin_run()
        regions: tuple[Region, ...] = (packet, self.keys_region, self.ctx_region)
        super().__init__(self.ctx_region.start, 0, packet, self.ctx_region.start, regions)

    def begin_run(self) -> None:
        """``bpf_flow_dissect``'s set-up before each run: zeroed keys, then the inputs."""
        view = self.keys_region.view
        view[:] = bytes(FLOW_KEYS_SIZE)
        view[10:12] = self.input.packet[12:14]  # n_proto: the Ethernet type, as on the wire
        struct.pack_into("<HH", view, 0, ETH_HLEN, ETH_HLEN)
        struct.pack_into("<I", view, _FLAGS_OFF, self.input.flags)

    def _hook(self, offset: int, size: int) -> int:
        assert self.data_region is not None
        if offset == _DATA and size == 4:
            return self.data_region.start
        if offset == _DATA_END and size == 4:
            return self.data_region.end
        if offset == _FLOW_KEYS and size == 8:
            return self.keys_region.start
        raise VMError(
            f"flow dissector context: load of {size} bytes at __sk_buff offset {offset}; the "
            "verifier lets these programs read only data, data_end (4 bytes) and flow_keys (8 bytes)"
        )

    @property
    def packet(self) -> memoryview:
        """The frame (read-only for the program)."""
        assert self.data_region is not None
        return self.data_region.view

    def flow_keys(self) -> bytes:
        """The flow keys as the kernel returns them: ``nhoff`` and ``thoff`` clamped (Rule 2)."""
        keys = bytearray(self.keys_region.view)
        nhoff, thoff = struct.unpack_from("<HH", keys, 0)
        hlen = len(self.input.packet)
        nhoff = min(max(nhoff, ETH_HLEN), hlen)
        thoff = min(max(thoff, nhoff), hlen)
        struct.pack_into("<HH", keys, 0, nhoff, thoff)
        return bytes(keys)

    def data(self) -> bytes:
        return self.flow_keys()

    def ctx_out(self) -> bytes | None:
        return self.input.ctx_in
