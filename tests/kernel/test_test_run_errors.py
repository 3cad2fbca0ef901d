"""kernel.Program.test_run: what the kernel refuses becomes a typed ``KernelTestRunError``.

RAW_TRACEPOINT and SYSCALL requests go to the kernel as given (``data_in``, ``repeat`` > 1),
and the kernel's ``EINVAL`` comes back as an error that is both a ``SyscallError`` and the
runtime's ``TestRunError``. The first half scripts bpf() (pure); the second asks Linux.
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Iterator

import pytest

from ebpf import isa
from ebpf.errors import KernelTestRunError, SyscallError, TestRunError
from ebpf.kernel.fd import FD
from ebpf.kernel.program import Program
from ebpf.kernel.uapi import Cmd, ProgLoadFlags, TestRunAttr
from ebpf.spec import ProgramType

from ._fakes import FakeKernel


@pytest.fixture(params=[ProgramType.RAW_TRACEPOINT, ProgramType.SYSCALL], ids=["raw_tp", "syscall"])
def ctx_prog(request: pytest.FixtureRequest, fake_kernel: FakeKernel) -> Iterator[Program]:
    with Program(FD(fake_kernel.new_fd()), request.param, name="fake") as prog:
        yield prog


def _recording(fake: FakeKernel, answer: int = 0) -> list[dict[str, object]]:
    seen: list[dict[str, object]] = []

    def run(attr: ctypes.Structure) -> int:
        assert isinstance(attr, TestRunAttr)
        data = ctypes.string_at(attr.data_in, attr.data_size_in) if attr.data_size_in else b""
        seen.append({"repeat": int(attr.repeat), "data": data, "data_out": int(attr.data_out)})
        return answer

    fake.on(Cmd.PROG_TEST_RUN, run)
    return seen


# --- the request goes to the kernel as given (scripted bpf()) -----------------------------------


@pytest.mark.parametrize(("repeat", "sent"), [(0, 0), (1, 0), (2, 2), (1000, 1000)])
def test_repeat_is_sent_once_meaning_zero(
    fake_kernel: FakeKernel, ctx_prog: Program, repeat: int, sent: int
) -> None:
    seen = _recording(fake_kernel)
    ctx_prog.test_run(ctx_in=bytes(8), repeat=repeat)
    assert seen == [{"repeat": sent, "data": b"", "data_out": 0}]


def test_data_in_is_sent(fake_kernel: FakeKernel, ctx_prog: Program) -> None:
    seen = _recording(fake_kernel)
    ctx_prog.test_run(b"abc", ctx_in=bytes(8))
    assert seen[0]["data"] == b"abc"


@pytest.mark.parametrize("code", [errno.EINVAL, errno.E2BIG, errno.ENOSPC, errno.ENODEV])
def test_refusals_are_typed(fake_kernel: FakeKernel, ctx_prog: Program, code: int) -> None:
    _recording(fake_kernel, -code)
    with pytest.raises(KernelTestRunError) as info:
        ctx_prog.test_run(b"abc", ctx_in=bytes(8), repeat=3)
    err = info.value
    assert isinstance(err, SyscallError) and isinstance(err, TestRunError) and isinstance(err, OSError)
    assert err.errno == code and err.cmd == "BPF_PROG_TEST_RUN"
    assert err.result is None
    assert any("while test-running" in note for note in err.__notes__)
    assert isinstance(err.__cause__, SyscallError)


@pytest.mark.parametrize("code", [errno.EPERM, errno.EFAULT, 524])  # 524: ENOTSUPP
def test_other_failures_stay_syscall_errors(fake_kernel: FakeKernel, ctx_prog: Program, code: int) -> None:
    _recording(fake_kernel, -code)
    with pytest.raises(SyscallError) as info:
        ctx_prog.test_run(ctx_in=bytes(8))
    assert not isinstance(info.value, TestRunError)
    assert info.value.errno == code


@pytest.mark.parametrize("repeat", [-1, 2**32])
def test_repeat_out_of_u32_range(fake_kernel: FakeKernel, ctx_prog: Program, repeat: int) -> None:
    with pytest.raises(TestRunError) as info:
        ctx_prog.test_run(ctx_in=bytes(8), repeat=repeat)
    assert info.value.errno == errno.EINVAL
    assert fake_kernel.calls == []


def test_enospc_keeps_what_the_kernel_copied(fake_kernel: FakeKernel) -> None:
    def run(attr: ctypes.Structure) -> int:
        assert isinstance(attr, TestRunAttr)
        ctypes.memmove(attr.data_out, b"0123456789", attr.data_size_out)
        attr.data_size_out = 64  # the size the output needed
        attr.retval = 2
        return -errno.ENOSPC

    fake_kernel.on(Cmd.PROG_TEST_RUN, run)
    with (
        Program(FD(fake_kernel.new_fd()), ProgramType.XDP, name="fake") as prog,
        pytest.raises(KernelTestRunError) as info,
    ):
        prog.test_run(bytes(64), data_size_out=10)
    assert info.value.errno == errno.ENOSPC
    assert info.value.result is not None
    assert (info.value.result.retval, info.value.result.data_out) == (2, b"0123456789")
    assert any("needs data_size_out >= 64" in note for note in info.value.__notes__)


# --- what Linux answers ---------------------------------------------------------------------------

RET2 = "r0 = 2\nexit"


def _load(kind: ProgramType) -> Program:
    flags = ProgLoadFlags.SLEEPABLE if kind == ProgramType.SYSCALL else 0
    return Program.load(isa.assemble(RET2), kind, prog_flags=flags)


@pytest.mark.kernel
@pytest.mark.parametrize("kind", [ProgramType.RAW_TRACEPOINT, ProgramType.SYSCALL], ids=["raw_tp", "syscall"])
@pytest.mark.parametrize(
    ("data", "repeat"),
    [(b"", 2), (b"", 100), (b"abc", 1), (b"abc", 0)],
    ids=["repeat2", "repeat100", "data", "data0"],
)
def test_kernel_refuses_data_and_repeat(kind: ProgramType, data: bytes, repeat: int) -> None:
    with _load(kind) as prog:
        assert prog.test_run(ctx_in=bytes(16)).retval == 2  # repeat 1 (the default) runs once
        assert prog.test_run(ctx_in=bytes(16), repeat=0).retval == 2
        with pytest.raises(KernelTestRunError) as info:
            prog.test_run(data, ctx_in=bytes(16), repeat=repeat)
        assert info.value.errno == errno.EINVAL


@pytest.mark.kernel
def test_kernel_xdp_refusal_and_short_output() -> None:
    with Program.load(isa.assemble(RET2), ProgramType.XDP) as prog:
        with pytest.raises(KernelTestRunError) as info:
            prog.test_run(bytes(10))  # shorter than an Ethernet header
        assert info.value.errno == errno.EINVAL
        frame = bytes(range(64))
        with pytest.raises(KernelTestRunError) as info:
            prog.test_run(frame, data_size_out=10)
        assert info.value.errno == errno.ENOSPC
        assert info.value.result is not None
        assert (info.value.result.retval, info.value.result.data_out) == (2, frame[:10])
