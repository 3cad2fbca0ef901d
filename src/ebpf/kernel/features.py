"""Feature probes: what the running kernel can do, asked once and cached.

Calls bpf(2).

The contract of every probe here (cilium's ``features/doc.go``):

Rule 1: a probe is a cached function. It returns ``None`` when the feature is
available and raises :class:`~ebpf.errors.NotSupportedError` (with ``feature`` and,
when known, ``min_kernel`` as ``"X.Y"``) when it is not.

Rule 2: a probe only says "unsupported" when the kernel said so. Any other failure
(``EPERM`` for lack of privileges, ``ENOMEM``, ...) propagates as
:class:`~ebpf.errors.SyscallError`: a permission problem is never reported as a
missing feature.

Rule 3: a probe answers for this process on this kernel; results are cached for the
life of the process and never written to disk.

Rule 4: tests turn ``NotSupportedError`` into a skip, and *fail* when the running
kernel is at least ``min_kernel`` (the probe must be wrong then); see
``tests/conftest.py``.

:func:`bpf_unavailable_reason` is the root gate every other probe sits behind: it is
the one function here that returns a reason instead of raising, so callers (the test
gate, ``ebpf probe``) can show a human why bpf() cannot be used.
"""

from __future__ import annotations

import errno as _errno
import functools
import os
import sys

from ebpf.errors import NotSupportedError, SyscallError, VerifierError
from ebpf.kernel.program import Program
from ebpf.kernel.version import kernel_version
from ebpf.spec import ProgramType

__all__ = ["bpf_unavailable_reason", "kernel_version"]

# r0 = 0; exit -- the smallest program every kernel with bpf() accepts.
_TRIVIAL_PROGRAM = bytes.fromhex("b700000000000000 9500000000000000")


@functools.cache
def bpf_unavailable_reason() -> str | None:
    """``None`` if bpf() works here, else why not, in words a human can act on.

    Probes by loading a two-instruction socket filter (``r0 = 0; exit``). Cached.

    Examples of reasons: ``"bpf(): EPERM — needs CAP_BPF or root"``,
    ``"bpf(): ENOSYS — kernel built without CONFIG_BPF_SYSCALL, ..."``,
    ``"not Linux: bpf() exists only on Linux (darwin)"``.

    Requires Linux >= 3.19.
    """
    if not sys.platform.startswith("linux"):
        return f"not Linux: bpf() exists only on Linux ({sys.platform})"
    try:
        with Program.load(_TRIVIAL_PROGRAM, ProgramType.SOCKET_FILTER):
            pass
    except SyscallError as err:
        code = err.errno or 0
        name = _errno.errorcode.get(code, str(code))
        return f"bpf(): {name} — {err.hint or os.strerror(code)}"
    except VerifierError as err:
        return f"bpf(): the kernel rejected a trivial socket filter: {err}"
    except NotSupportedError as err:
        return f"bpf(): {err}"
    except OSError as err:  # no libc, no syscall() symbol, ...
        return f"bpf(): cannot call syscall() through libc: {err}"
    return None
