"""Event streams from the kernel: ring buffers, perf buffers, trace_pipe. Above the kernel line.

* :class:`RingBuffer` reads ``BPF_MAP_TYPE_RINGBUF`` maps through mmap + epoll (callback,
  iterator and numpy batch styles; several rings in one poll).
* :class:`PerfBuffer` reads ``BPF_MAP_TYPE_PERF_EVENT_ARRAY`` maps (one perf ring per CPU,
  lost samples counted).
* :class:`TracePipe` reads ``bpf_printk`` output from tracefs' ``trace_pipe``.
* :class:`UserRingBuffer` writes records into ``BPF_MAP_TYPE_USER_RINGBUF`` maps (kernel or
  user-space runtime) for programs to drain with ``bpf_user_ringbuf_drain``.
"""

from __future__ import annotations

from ebpf.events.perf import PerfBuffer, PerfBufferError
from ebpf.events.ringbuf import RingBuffer, RingBufferError
from ebpf.events.trace_pipe import TraceLine, TracePipe, parse_trace_line
from ebpf.events.user_ringbuf import (
    UserRingBufError,
    UserRingBuffer,
    UserRingBufFullError,
    UserRingBufSample,
    UserRingBufTooBigError,
)

__all__ = [
    "PerfBuffer",
    "PerfBufferError",
    "RingBuffer",
    "RingBufferError",
    "TraceLine",
    "TracePipe",
    "UserRingBufError",
    "UserRingBufFullError",
    "UserRingBufSample",
    "UserRingBufTooBigError",
    "UserRingBuffer",
    "parse_trace_line",
]
