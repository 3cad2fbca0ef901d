"""bpf_unavailable_reason() and kernel_version(). Pure: the backend is faked (one test is gated)."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator

import pytest

from ebpf.kernel import _syscall
from ebpf.kernel.features import bpf_unavailable_reason
from ebpf.kernel.uapi import Cmd
from ebpf.kernel.version import kernel_version, parse_kernel_release

from ._fakes import FakeKernel, is_open


@pytest.fixture
def fresh_probe() -> Iterator[None]:
    """Forget the cached verdict before and after, so faked answers do not leak into other tests."""
    bpf_unavailable_reason.cache_clear()
    yield
    bpf_unavailable_reason.cache_clear()


def test_available(fresh_probe: None, fake_kernel: FakeKernel) -> None:
    fake_kernel.on(Cmd.PROG_LOAD, lambda attr: fake_kernel.new_fd())
    assert bpf_unavailable_reason() is None
    (attr,) = [a for _, a in fake_kernel.calls]
    assert attr.prog_type == 1 and attr.insn_cnt == 2
    assert not is_open(fake_kernel.opened[0])  # the probe program is closed again


def test_result_is_cached(fresh_probe: None, fake_kernel: FakeKernel) -> None:
    fake_kernel.on(Cmd.PROG_LOAD, lambda attr: fake_kernel.new_fd())
    bpf_unavailable_reason()
    bpf_unavailable_reason()
    assert len(fake_kernel.calls) == 1


def test_eperm_without_root(
    fresh_probe: None, fake_kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(_syscall, "_effective_caps", lambda: 0)
    fake_kernel.on(Cmd.PROG_LOAD, lambda attr: -errno.EPERM)
    assert bpf_unavailable_reason() == "bpf(): EPERM — needs CAP_BPF or root"


def test_enosys(fresh_probe: None, fake_kernel: FakeKernel) -> None:
    fake_kernel.on(Cmd.PROG_LOAD, lambda attr: -errno.ENOSYS)
    reason = bpf_unavailable_reason()
    assert reason is not None
    assert reason.startswith("bpf(): ENOSYS — kernel built without CONFIG_BPF_SYSCALL")


def test_rejected_probe(fresh_probe: None, fake_kernel: FakeKernel) -> None:
    fake_kernel.on(Cmd.PROG_LOAD, lambda attr: -errno.EACCES)
    reason = bpf_unavailable_reason()
    assert reason is not None and reason.startswith("bpf(): the kernel rejected a trivial socket filter")


def test_not_linux(fresh_probe: None, fake_kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert bpf_unavailable_reason() == "not Linux: bpf() exists only on Linux (darwin)"
    assert fake_kernel.calls == []


@pytest.mark.parametrize(
    ("release", "version"),
    [
        ("6.18.44-fc-v657", (6, 18, 44)),
        ("5.15.0-91-generic", (5, 15, 0)),
        ("6.1", (6, 1, 0)),
        ("4.19.0+", (4, 19, 0)),
    ],
)
def test_parse_kernel_release(release: str, version: tuple[int, int, int]) -> None:
    assert parse_kernel_release(release) == version


def test_parse_kernel_release_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_kernel_release("Darwin")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kernel_version() reads the Linux release")
def test_kernel_version_is_sane() -> None:
    major, minor, patch = kernel_version()
    assert major >= 3 and minor >= 0 and patch >= 0


@pytest.mark.kernel
def test_bpf_is_available_here() -> None:
    assert bpf_unavailable_reason() is None
