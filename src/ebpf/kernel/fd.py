"""``FD``: ownership of one file descriptor returned by bpf(2).

Kernel layer, but never calls bpf(2) itself: it only closes descriptors.

Rule 1: exactly one ``FD`` owns a descriptor, and closes it once. ``close()`` is
idempotent; ``disown()`` hands the raw number to the caller and stops owning it.

Rule 2: an ``FD`` that is garbage-collected while still open is a leak. ``__del__``
closes it and emits a :class:`ResourceWarning` (the tests run with
``-W error::ResourceWarning``, the Python counterpart of cilium's fd-leak tracer).
"""

from __future__ import annotations

import os
import warnings
from types import TracebackType
from typing import Self

__all__ = ["FD"]


class FD:
    """An owned file descriptor. Context manager; ``close()`` is idempotent.

    >>> import os
    >>> r, w = os.pipe()
    >>> os.close(w)
    >>> with FD(r) as fd:
    ...     fd.closed
    False
    >>> fd.closed
    True
    """

    __slots__ = ("__weakref__", "_fd")

    def __init__(self, fd: int) -> None:
        if fd < 0:
            raise ValueError(f"invalid file descriptor {fd}")
        self._fd = fd

    def fileno(self) -> int:
        """The raw descriptor number.

        Raises:
            ValueError: if the descriptor was closed or disowned.
        """
        if self._fd < 0:
            raise ValueError("file descriptor is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        """True once :meth:`close` or :meth:`disown` was called."""
        return self._fd < 0

    def close(self) -> None:
        """Close the descriptor. Calling it again does nothing."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def disown(self) -> int:
        """Stop owning the descriptor and return it; the caller must close it now.

        Raises:
            ValueError: if the descriptor was already closed or disowned.
        """
        fd = self.fileno()
        self._fd = -1
        return fd

    def dup(self) -> FD:
        """A new ``FD`` owning a duplicate (``F_DUPFD_CLOEXEC``) of this descriptor."""
        import fcntl  # POSIX only

        return FD(fcntl.fcntl(self.fileno(), fcntl.F_DUPFD_CLOEXEC, 0))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        fd = getattr(self, "_fd", -1)
        if fd >= 0:
            # Close before warning: with ``-W error::ResourceWarning`` the warning raises.
            self._fd = -1
            try:
                os.close(fd)
            except OSError:
                pass
            warnings.warn(
                f"unclosed file descriptor {fd} (FD leaked; call close())", ResourceWarning, source=self
            )

    def __repr__(self) -> str:
        return "FD(closed)" if self._fd < 0 else f"FD({self._fd})"
