"""The bpf() choke point: backend swapping, errno mapping, hints. Pure: the backend is faked."""

from __future__ import annotations

import ctypes
import errno
import os

import pytest

from ebpf.errors import NotSupportedError, SyscallError
from ebpf.kernel import _syscall
from ebpf.kernel._syscall import bpf, default_backend, override_backend, set_backend, sys_bpf_number
from ebpf.kernel.uapi import Cmd, GetIdAttr

from ._fakes import FakeKernel


def test_result_is_returned_and_attr_is_shared(fake_kernel: FakeKernel) -> None:
    def next_id(attr: ctypes.Structure) -> int:
        assert isinstance(attr, GetIdAttr)
        attr.next_id = attr.start_id + 5
        return 0

    fake_kernel.on(Cmd.PROG_GET_NEXT_ID, next_id)
    attr = GetIdAttr(start_id=7)
    assert bpf(Cmd.PROG_GET_NEXT_ID, attr) == 0
    assert attr.next_id == 12
    assert fake_kernel.commands() == [Cmd.PROG_GET_NEXT_ID]


def test_negative_result_becomes_syscall_error(fake_kernel: FakeKernel) -> None:
    fake_kernel.on(Cmd.PROG_GET_NEXT_ID, lambda attr: -errno.ENOENT)
    with pytest.raises(SyscallError) as info:
        bpf(Cmd.PROG_GET_NEXT_ID, GetIdAttr())
    err = info.value
    assert err.cmd == "BPF_PROG_GET_NEXT_ID"
    assert err.errno == errno.ENOENT
    assert isinstance(err, OSError)
    assert str(err).startswith("BPF_PROG_GET_NEXT_ID: ENOENT")


def test_eintr_is_retried(fake_kernel: FakeKernel) -> None:
    results = iter([-errno.EINTR, -errno.EINTR, 3])
    fake_kernel.on(Cmd.PROG_GET_FD_BY_ID, lambda attr: next(results))
    assert bpf(Cmd.PROG_GET_FD_BY_ID, GetIdAttr(prog_id=1)) == 3
    assert len(fake_kernel.calls) == 3


def test_override_restores_previous_backend_even_on_error() -> None:
    assert _syscall._backend is default_backend
    with pytest.raises(RuntimeError), override_backend(lambda cmd, attr: 0):
        assert _syscall._backend is not default_backend
        raise RuntimeError
    assert _syscall._backend is default_backend


def test_set_backend_returns_previous_and_none_restores_default() -> None:
    def fake(cmd: Cmd, attr: ctypes.Structure) -> int:
        return 0

    previous = set_backend(fake)
    try:
        assert previous is default_backend
        assert set_backend(None) is fake
        assert _syscall._backend is default_backend
    finally:
        set_backend(previous)


@pytest.mark.parametrize(
    ("machine", "pointer_size", "number"),
    [
        ("x86_64", 8, 321),
        ("aarch64", 8, 280),
        ("riscv64", 8, 280),
        ("i686", 4, 357),
        ("x86_64", 4, 357),  # 32-bit Python on a 64-bit kernel
        ("armv7l", 4, 386),
        ("ppc64le", 8, 361),
        ("s390x", 8, 351),
    ],
)
def test_sys_bpf_number(machine: str, pointer_size: int, number: int) -> None:
    assert sys_bpf_number(machine, pointer_size) == number


def test_sys_bpf_number_unknown_architecture() -> None:
    with pytest.raises(NotSupportedError, match="vax"):
        sys_bpf_number("vax", 4)


class TestEpermHint:
    def _eperm(self, fake: FakeKernel) -> SyscallError:
        fake.on(Cmd.PROG_LOAD, lambda attr: -errno.EPERM)
        with pytest.raises(SyscallError) as info:
            bpf(Cmd.PROG_LOAD, GetIdAttr())
        return info.value

    def _files(self, monkeypatch: pytest.MonkeyPatch, files: dict[str, str]) -> None:
        monkeypatch.setattr(_syscall, "_read_text", files.get)

    def test_not_root_needs_cap_bpf(self, fake_kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
        self._files(monkeypatch, {"/proc/self/status": "CapEff:\t0000000000000000\nSeccomp:\t0\n"})
        err = self._eperm(fake_kernel)
        assert err.hint == "needs CAP_BPF or root"
        assert str(err) == "BPF_PROG_LOAD: EPERM (Operation not permitted) — needs CAP_BPF or root"

    def test_root_under_lockdown_says_what_was_seen(
        self, fake_kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(os, "geteuid", lambda: 0)
        self._files(
            monkeypatch,
            {
                "/proc/self/status": "CapEff:\t000001ffffffffff\nSeccomp:\t0\n",
                "/sys/kernel/security/lockdown": "none [integrity] confidentiality\n",
            },
        )
        err = self._eperm(fake_kernel)
        assert err.hint is not None
        assert "needs" not in err.hint
        assert err.hint.startswith(
            "denied although running as root; lockdown mode is 'integrity' (/sys/kernel/security/lockdown)"
        )

    def test_root_without_capabilities_in_a_container(
        self, fake_kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(os, "geteuid", lambda: 0)
        self._files(monkeypatch, {"/proc/self/status": "CapEff:\t00000000a80425fb\nSeccomp:\t2\n"})
        hint = self._eperm(fake_kernel).hint or ""
        assert "neither CAP_BPF nor CAP_SYS_ADMIN" in hint
        assert "seccomp filter is active" in hint

    def test_root_with_nothing_observed(
        self, fake_kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(os, "geteuid", lambda: 0)
        self._files(monkeypatch, {"/proc/self/status": "CapEff:\t000001ffffffffff\nSeccomp:\t0\n"})
        hint = self._eperm(fake_kernel).hint or ""
        assert hint.startswith("denied although running as root; no lockdown, capability or seccomp")

    def test_cap_bpf_without_root_counts_as_privileged(
        self, fake_kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
        cap_bpf = f"{1 << 39:016x}"
        self._files(monkeypatch, {"/proc/self/status": f"CapEff:\t{cap_bpf}\nSeccomp:\t0\n"})
        hint = self._eperm(fake_kernel).hint or ""
        assert hint.startswith("denied although running with CAP_BPF")


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (errno.ENOSYS, "CONFIG_BPF_SYSCALL"),
        (errno.EBADF, "file descriptor"),
        (errno.EINVAL, "older kernels also reject"),
        (errno.E2BIG, "too many instructions"),
    ],
)
def test_hints_say_what_to_do(fake_kernel: FakeKernel, code: int, text: str) -> None:
    fake_kernel.on(Cmd.PROG_LOAD, lambda attr: -code)
    with pytest.raises(SyscallError) as info:
        bpf(Cmd.PROG_LOAD, GetIdAttr())
    assert text in (info.value.hint or "")
