"""Event streams from the kernel: ring buffers, perf buffers, trace_pipe. Above the kernel line.

``RingBuffer`` reads ``BPF_MAP_TYPE_RINGBUF`` maps through mmap + epoll (callback, iterator and
numpy batch styles; several rings in one poll).
"""

from __future__ import annotations

from ebpf.events.ringbuf import RingBuffer, RingBufferError

__all__ = ["RingBuffer", "RingBufferError"]
