"""Shared pieces of the program inputs: the mapped-input record, context regions, sub-buffers.

Core layer: pure, no kernel access.

Rule 1: an :class:`Input` describes what a program gets; :meth:`Input.map` puts it into a
:class:`~ebpf.vm.memory.Memory` and returns a :class:`MappedInput`: r1/r2, the regions to
unmap after the run, the bytes the caller gets back (:meth:`MappedInput.data`, the kernel's
``data_out``) and the context after the run (:meth:`MappedInput.ctx_out`, ``ctx_out``).

Rule 2: the context region of a mapped input is a :class:`ContextRegion` that points back at
its :class:`MappedInput`, so helpers that receive the context pointer (``bpf_xdp_adjust_head``,
``bpf_skb_load_bytes``, ``bpf_tail_call``...) find the packet state from r1 alone
(:func:`mapped_at`).

Rule 3: a packet lives in one host buffer with head- and tailroom, like the kernel's; the
program-visible region is a :class:`SubBuffer` window on it, re-made when a helper moves the
packet's start or end, so an access outside the current packet faults while the addresses of
the bytes never change.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import NamedTuple

from ebpf.vm.memory import HostBuffer, Memory, Region

__all__ = [
    "LOOPBACK",
    "ContextRegion",
    "Input",
    "MappedInput",
    "NetDevice",
    "SubBuffer",
    "host_devices",
    "mapped_at",
]


class NetDevice(NamedTuple):
    """What helpers and test-run checks need of a network device."""

    mtu: int
    header_len: int  # dev->hard_header_len
    rx_queues: int = 1  # real_num_rx_queues


LOOPBACK = NetDevice(65536, 14, 1)  # lo, where BPF_PROG_TEST_RUN runs packets


def host_devices() -> dict[int, NetDevice]:
    """ifindex -> :class:`NetDevice` of this host's network devices (from /sys/class/net)."""
    devices: dict[int, NetDevice] = {}
    try:
        names = os.listdir("/sys/class/net")
    except OSError:
        return {1: LOOPBACK}
    for name in names:
        base = os.path.join("/sys/class/net", name)
        try:
            with open(os.path.join(base, "ifindex")) as f:
                ifindex = int(f.read())
            with open(os.path.join(base, "mtu")) as f:
                mtu = int(f.read())
            with open(os.path.join(base, "type")) as f:
                arphrd = int(f.read())
            queues = sum(1 for q in os.listdir(os.path.join(base, "queues")) if q.startswith("rx-"))
        except (OSError, ValueError):
            continue
        header = 14 if arphrd in (1, 772) else 0  # ARPHRD_ETHER, ARPHRD_LOOPBACK
        devices[ifindex] = NetDevice(mtu, header, max(queues, 1))
    return devices or {1: LOOPBACK}


class SubBuffer(HostBuffer):
    """A window ``[offset, offset + size)`` on another host buffer (same addresses, no copy)."""

    __slots__ = ()

    def __init__(self, parent: HostBuffer, offset: int, size: int) -> None:
        assert 0 <= offset and offset + size <= parent.size, "window outside its buffer"
        self._raw = parent._raw  # keeps the memory alive
        self.size = size
        self.address = parent.address + offset
        self.view = parent.view[offset : offset + size]


@dataclass
class MappedInput:
    """An input mapped into a run's memory.

    Attributes:
        r1, r2: the program's first two arguments.
        data_region: the packet or input bytes (what ``ld_abs``/``ld_ind`` read).
        ctx_address: the address the legacy packet loads require in r6 (0: none).
        regions: every region to unmap after the run.
    """

    r1: int
    r2: int
    data_region: Region | None
    ctx_address: int
    regions: tuple[Region, ...]

    def data(self) -> bytes:
        """The data after the run (``data_out`` of ``BPF_PROG_TEST_RUN``)."""
        return bytes(self.data_region.buffer) if self.data_region is not None else b""

    def ctx_out(self) -> bytes | None:
        """The context after the run as the kernel copies it out (``ctx_out``), or ``None``.

        (Inputs without a context to copy out return ``None``.)
        """
        return None

    def begin_run(self) -> None:
        """Set up the per-run state before each top-level run (each ``repeat`` of a test run),
        as the kernel does inside its run loop (flow dissector keys); by default nothing."""

    def reset(self) -> bool:
        """Restore the state right after mapping, for batch runs that reuse one mapping.

        Returns ``False`` when this input has no state besides its region contents (the caller
        restores those). Stateful inputs (packets that helpers move or resize) restore their
        bytes and state and replace their packet region; it is mapped if the context region
        is, else the caller maps :attr:`regions`.
        """
        return False

    def rebind(self, inp: Input) -> bool:
        """Lay ``inp`` out in this mapping's host buffers and map it, as ``inp.map(memory)``
        would, without allocating new ones (a test-run loop reuses one mapping per program).

        The caller must have unmapped every region of :attr:`regions` first. The result is
        the same as a fresh mapping's in everything the program and the helpers see (bytes,
        offsets, state), except the host addresses, which repeat. Returns ``False`` (nothing
        done) when this mapping cannot take ``inp``; by default it never can.
        """
        return False


@dataclass(eq=False)
class ContextRegion(Region):
    """The region of a program's context; ``owner`` is the mapped input it belongs to."""

    owner: MappedInput | None = field(default=None, repr=False)


def mapped_at(memory: Memory, address: int) -> MappedInput | None:
    """The mapped input whose context region starts at ``address`` (a helper's ctx argument)."""
    region = memory.find(address, 1)
    if isinstance(region, ContextRegion) and region.start == address:
        return region.owner
    return None


class Input:
    """Base class of program inputs."""

    def map(self, memory: Memory) -> MappedInput:  # pragma: no cover - abstract
        raise NotImplementedError
