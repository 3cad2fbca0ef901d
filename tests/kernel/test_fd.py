"""FD ownership: idempotent close, disown, context manager, leak warning. Pure: no bpf()."""

from __future__ import annotations

import os

import pytest

from ebpf.kernel.fd import FD

from ._fakes import is_open


def _devnull() -> int:
    return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)


def test_close_is_idempotent() -> None:
    raw = _devnull()
    fd = FD(raw)
    assert fd.fileno() == raw and not fd.closed
    fd.close()
    assert fd.closed and not is_open(raw)
    fd.close()
    assert fd.closed


def test_context_manager_closes() -> None:
    raw = _devnull()
    with FD(raw) as fd:
        assert is_open(raw)
    assert fd.closed and not is_open(raw)
    assert repr(fd) == "FD(closed)"


def test_fileno_after_close_raises() -> None:
    fd = FD(_devnull())
    fd.close()
    with pytest.raises(ValueError, match="closed"):
        fd.fileno()


def test_disown_hands_over_the_descriptor() -> None:
    raw = _devnull()
    fd = FD(raw)
    assert fd.disown() == raw
    assert fd.closed
    fd.close()  # does not close what it no longer owns
    assert is_open(raw)
    os.close(raw)
    with pytest.raises(ValueError):
        fd.disown()


def test_dup_is_an_independent_owner() -> None:
    with FD(_devnull()) as fd, fd.dup() as copy:
        assert copy.fileno() != fd.fileno()
        fd.close()
        assert is_open(copy.fileno())


def test_negative_descriptor_rejected() -> None:
    with pytest.raises(ValueError):
        FD(-1)


def test_leak_is_closed_and_warns() -> None:
    raw = _devnull()
    fd = FD(raw)
    with pytest.warns(ResourceWarning, match=f"unclosed file descriptor {raw}"):
        del fd  # the last reference: FD.__del__ runs here
    assert not is_open(raw)
