"""Tools on the kernel engine: observability, security and networking tools, like bcc's. Tool layer.

Each tool is a Python class over a bundled BPF object (``tools/bpf/*.bpf.o``, C sources beside
them, rebuilt by ``tools/bpf/build.sh``) and an ``ebpf tools <name>`` command:

* :mod:`~ebpf.tools.execsnoop` — every exec with arguments (``ExecSnoop``)
* :mod:`~ebpf.tools.opensnoop` — file opens with flags and results (``OpenSnoop``)
* :mod:`~ebpf.tools.syscount` — syscall counts and latency (``Syscount``)
* :mod:`~ebpf.tools.biolatency` — block I/O latency histograms (``BioLatency``)
* :mod:`~ebpf.tools.xdp_firewall` — drop by source prefix at XDP (``XdpFirewall``)
* :mod:`~ebpf.tools.execguard` — kill execs of denied binaries (``ExecGuard``)

:func:`bundled_object` gives the path of a bundled object, usable with every engine.
"""

from __future__ import annotations

from ebpf.tools._common import ToolError
from ebpf.tools._common import object_path as bundled_object

__all__ = ["ToolError", "bundled_object"]
