"""Typed errors of the user-space maps, each carrying the kernel's ``errno``. Pure: no kernel access.

Rule 1: every failed map operation raises what the kernel's ``bpf()`` would return as an
errno, as a typed error with an ``.errno`` attribute: :class:`MapError` subclasses here,
plus :class:`~ebpf.errors.KeyNotFoundError` (``ENOENT``) from ``errors.py``.
:func:`errno_of` gives the errno of any of them, which is what differential tests compare.
"""

from __future__ import annotations

import errno as _errno

from ebpf.errors import BPFError, KeyNotFoundError

__all__ = [
    "InvalidMapArgumentError",
    "KeyExistsError",
    "MapError",
    "MapFullError",
    "MapOperationNotSupportedError",
    "errno_of",
]


class MapError(BPFError):
    """A map operation failed the way the kernel's would.

    Attributes:
        errno: the kernel's errno for the same operation.
    """

    default_errno = _errno.EINVAL

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errno: int = self.default_errno if errno is None else errno

    def __str__(self) -> str:
        return f"{self.message} ({_errno.errorcode.get(self.errno, str(self.errno))})"


class InvalidMapArgumentError(MapError, ValueError):
    """A bad map definition, key/value size or flag (``EINVAL``, ``E2BIG`` for too large sizes)."""


class KeyExistsError(MapError, KeyError):
    """``BPF_NOEXIST`` on a key that exists (``EEXIST``)."""

    default_errno = _errno.EEXIST

    def __str__(self) -> str:  # KeyError.__str__ would repr() the message
        return MapError.__str__(self)


class MapFullError(MapError):
    """No room for a new element (``E2BIG`` for hash/array/queue/stack, ``ENOSPC`` for LPM)."""

    default_errno = _errno.E2BIG


class MapOperationNotSupportedError(MapError):
    """The map type has no such operation (``EOPNOTSUPP``, or ``EINVAL`` where the kernel says so)."""

    default_errno = _errno.EOPNOTSUPP


def errno_of(err: BaseException) -> int | None:
    """The kernel errno a map error stands for (``ENOENT`` for KeyNotFoundError), else ``None``."""
    if isinstance(err, MapError):
        return err.errno
    if isinstance(err, KeyNotFoundError):
        return _errno.ENOENT
    return None
