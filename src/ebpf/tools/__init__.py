"""Tools on the kernel engine: observability, security and networking tools, like bcc's. Tool layer.

Each tool is a Python class over a bundled BPF object (``tools/bpf/*.bpf.o``) and a
``ebpf tools <name>`` command: :mod:`execsnoop`, :mod:`execguard`.
"""

from __future__ import annotations

from ebpf.tools._common import ToolError

__all__ = ["ToolError"]
