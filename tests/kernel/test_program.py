"""Program.load / test_run / info / xlated against a scripted fake kernel. Pure: no bpf()."""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Iterator
from typing import Any

import pytest

from ebpf.errors import NotSupportedError, SyscallError, VerifierError, VerifierSource
from ebpf.kernel import program as program_module
from ebpf.kernel.fd import FD
from ebpf.kernel.program import Program, ProgramInfo, last_insn_index, program_ids
from ebpf.kernel.program import test_run as kernel_test_run
from ebpf.kernel.uapi import BpfProgInfo, Cmd, LogLevel, ObjInfoAttr, ProgLoadAttr, TestRunAttr
from ebpf.spec import ProgramType

from ._fakes import FakeKernel, Handler, is_open, write_log

XDP_RET2 = bytes.fromhex("b700000002000000 9500000000000000")  # r0 = 2; exit
REJECT_LOG = (
    "0: R1=ctx() R10=fp0\n"
    "0: (b7) r1 = 1                        ; R1_w=1\n"
    "1: (85) call unknown#999\n"
    "invalid func unknown#999\n"
    "processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n"
)


class Insn:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def encode(self) -> bytes:
        return self.raw


def _loads_ok(fake: FakeKernel) -> None:
    fake.on(Cmd.PROG_LOAD, lambda attr: fake.new_fd())


def _load_attrs(fake: FakeKernel) -> list[ProgLoadAttr]:
    return [attr for cmd, attr in fake.calls if isinstance(attr, ProgLoadAttr) and cmd == Cmd.PROG_LOAD]


# --- load ---------------------------------------------------------------------------------------


def test_load_fills_prog_load_attr(fake_kernel: FakeKernel) -> None:
    seen: dict[str, bytes] = {}

    def load(attr: ctypes.Structure) -> int:
        assert isinstance(attr, ProgLoadAttr)
        seen["insns"] = ctypes.string_at(attr.insns, attr.insn_cnt * 8)
        seen["license"] = ctypes.string_at(attr.license)
        return fake_kernel.new_fd()

    fake_kernel.on(Cmd.PROG_LOAD, load)
    with Program.load(XDP_RET2, ProgramType.XDP, name="xdp_ret2", license="Dual MIT/GPL") as prog:
        (attr,) = _load_attrs(fake_kernel)
        assert attr.prog_type == ProgramType.XDP
        assert attr.insn_cnt == 2
        assert (attr.log_level, attr.log_size, attr.log_buf) == (0, 0, 0)
        assert attr.prog_name == b"xdp_ret2"
        assert seen == {"insns": XDP_RET2, "license": b"Dual MIT/GPL"}
        assert prog.fd == fake_kernel.opened[0]
        assert prog.type is ProgramType.XDP
        assert prog.name == "xdp_ret2"
        assert prog.verifier_log == ()
        assert repr(prog) == f"Program(XDP, name='xdp_ret2', fd={prog.fd})"
    assert prog.closed and not is_open(fake_kernel.opened[0])
    prog.close()  # idempotent
    with pytest.raises(ValueError):
        _ = prog.fd


@pytest.mark.parametrize(
    "insns",
    [
        [Insn(XDP_RET2[:8]), Insn(XDP_RET2[8:])],
        Insn(XDP_RET2),  # a whole program object with encode()
        bytearray(XDP_RET2),
        memoryview(XDP_RET2),
    ],
    ids=["instruction-objects", "program-object", "bytearray", "memoryview"],
)
def test_load_accepts_encodable_instructions(fake_kernel: FakeKernel, insns: Any) -> None:
    seen: list[bytes] = []

    def load(attr: ctypes.Structure) -> int:
        assert isinstance(attr, ProgLoadAttr)
        seen.append(ctypes.string_at(attr.insns, attr.insn_cnt * 8))
        return fake_kernel.new_fd()

    fake_kernel.on(Cmd.PROG_LOAD, load)
    with Program.load(insns, ProgramType.SOCKET_FILTER):
        assert seen == [XDP_RET2]


@pytest.mark.parametrize(
    ("insns", "kwargs", "error"),
    [
        ("r0 = 0", {}, TypeError),
        (b"", {}, ValueError),
        (XDP_RET2[:7], {}, ValueError),
        (XDP_RET2, {"name": "has space"}, ValueError),
        (XDP_RET2, {"name": "x" * 16}, ValueError),
        (XDP_RET2, {"log_level": 8}, ValueError),
        (XDP_RET2, {"log_size": 64}, ValueError),
        (XDP_RET2, {"license": "GPL\0"}, ValueError),
    ],
)
def test_load_rejects_bad_arguments_before_calling_the_kernel(
    fake_kernel: FakeKernel, insns: Any, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        Program.load(insns, ProgramType.XDP, **kwargs)
    assert fake_kernel.calls == []


def test_load_accepts_fifteen_character_names(fake_kernel: FakeKernel) -> None:
    _loads_ok(fake_kernel)
    with Program.load(XDP_RET2, ProgramType.XDP, name="abcdefghij.1234") as prog:
        assert prog.name == "abcdefghij.1234"


def test_rejection_retries_with_a_log_and_raises_verifier_error(fake_kernel: FakeKernel) -> None:
    def load(attr: ctypes.Structure) -> int:
        assert isinstance(attr, ProgLoadAttr)
        write_log(attr, REJECT_LOG)
        return -errno.EINVAL

    fake_kernel.on(Cmd.PROG_LOAD, load)
    with pytest.raises(VerifierError) as info:
        Program.load(XDP_RET2, ProgramType.XDP, name="bad")
    err = info.value
    assert [a.log_level for a in _load_attrs(fake_kernel)] == [0, 1]
    assert err.source is VerifierSource.KERNEL
    assert err.log == tuple(REJECT_LOG.splitlines())
    assert err.insn_index == 1
    assert err.errno == errno.EINVAL
    assert not err.truncated
    assert isinstance(err.__cause__, SyscallError) and err.__cause__.errno == errno.EINVAL
    assert str(err).startswith(
        "load program 'bad' (XDP): EINVAL (Invalid argument): invalid func unknown#999"
    )


def test_rejection_with_requested_log_is_not_retried(fake_kernel: FakeKernel) -> None:
    def load(attr: ctypes.Structure) -> int:
        assert isinstance(attr, ProgLoadAttr)
        write_log(attr, REJECT_LOG)
        return -errno.EACCES

    fake_kernel.on(Cmd.PROG_LOAD, load)
    with pytest.raises(VerifierError) as info:
        Program.load(XDP_RET2, ProgramType.XDP, log_level=LogLevel.INSTRUCTION)
    assert [a.log_level for a in _load_attrs(fake_kernel)] == [2]
    assert info.value.errno == errno.EACCES


@pytest.mark.parametrize("true_size_reported", [False, True], ids=["before-6.4", "log_true_size"])
def test_log_buffer_grows_on_enospc(fake_kernel: FakeKernel, true_size_reported: bool) -> None:
    big_log = "".join(f"{i}: (b7) r0 = {i}\n" for i in range(100))  # ~1.6 KB

    def load(attr: ctypes.Structure) -> int:
        assert isinstance(attr, ProgLoadAttr)
        fits = write_log(attr, big_log)
        if not true_size_reported:
            attr.log_true_size = 0
        return fake_kernel.new_fd() if fits else -errno.ENOSPC

    fake_kernel.on(Cmd.PROG_LOAD, load)
    with Program.load(XDP_RET2, ProgramType.XDP, log_level=1, log_size=128) as prog:
        assert prog.verifier_log == tuple(big_log.splitlines())
    sizes = [a.log_size for a in _load_attrs(fake_kernel)]
    assert sizes == ([128, len(big_log) + 1] if true_size_reported else [128, 256, 512, 1024, 2048])


def test_log_that_never_fits_is_reported_truncated(
    fake_kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(program_module, "MAX_LOG_SIZE", 512)

    def load(attr: ctypes.Structure) -> int:
        assert isinstance(attr, ProgLoadAttr)
        if not attr.log_level:
            return -errno.EACCES
        return -errno.EACCES if write_log(attr, REJECT_LOG * 10) else -errno.ENOSPC

    fake_kernel.on(Cmd.PROG_LOAD, load)
    with pytest.raises(VerifierError) as info:
        Program.load(XDP_RET2, ProgramType.XDP, log_size=128)
    assert [a.log_size for a in _load_attrs(fake_kernel)] == [0, 128, 512]  # log_true_size, capped
    assert info.value.truncated
    assert info.value.errno == errno.EACCES  # the load's errno, not the log's ENOSPC
    assert "(log truncated)" in str(info.value)


@pytest.mark.parametrize("code", [errno.EPERM, errno.ENOMEM, errno.E2BIG])
def test_failures_without_a_verdict_stay_syscall_errors(fake_kernel: FakeKernel, code: int) -> None:
    fake_kernel.on(Cmd.PROG_LOAD, lambda attr: -code)
    with pytest.raises(SyscallError) as info:
        Program.load(XDP_RET2, ProgramType.XDP, name="p")
    assert info.value.errno == code
    assert any("load program 'p'" in note for note in info.value.__notes__)


def test_einval_without_log_is_still_a_verdict(fake_kernel: FakeKernel) -> None:
    fake_kernel.on(Cmd.PROG_LOAD, lambda attr: -errno.EINVAL)
    with pytest.raises(VerifierError, match="the kernel wrote no verifier log") as info:
        Program.load(XDP_RET2, ProgramType.XDP)
    assert info.value.log == () and info.value.insn_index is None


def test_successful_load_keeps_requested_log(fake_kernel: FakeKernel) -> None:
    def load(attr: ctypes.Structure) -> int:
        assert isinstance(attr, ProgLoadAttr)
        write_log(attr, "0: (b7) r0 = 2\n1: (95) exit\nprocessed 2 insns\n\n")
        return fake_kernel.new_fd()

    fake_kernel.on(Cmd.PROG_LOAD, load)
    with Program.load(XDP_RET2, ProgramType.XDP, log_level=2) as prog:
        assert prog.verifier_log == ("0: (b7) r0 = 2", "1: (95) exit", "processed 2 insns")


@pytest.mark.parametrize(
    ("log", "index"),
    [
        ((), None),
        (("processed 0 insns",), None),
        (("0: R1=ctx() R10=fp0", "0: (95) exit", "R0 !read_ok"), 0),
        (("12: (85) call bpf_map_lookup_elem#1", "R1 type=scalar expected=map_ptr"), 12),
        (("3: (05) goto pc+1", "from 3 to 5: R0=1", "5: (95) exit", "      7: .... (95) exit"), 5),
    ],
)
def test_last_insn_index(log: tuple[str, ...], index: int | None) -> None:
    assert last_insn_index(log) == index


# --- test_run -----------------------------------------------------------------------------------


@pytest.fixture
def xdp_prog(fake_kernel: FakeKernel) -> Iterator[Program]:
    with Program(FD(fake_kernel.new_fd()), ProgramType.XDP, name="fake") as prog:
        yield prog


def test_test_run_passes_data_and_returns_results(fake_kernel: FakeKernel, xdp_prog: Program) -> None:
    seen: dict[str, object] = {}

    def run(attr: ctypes.Structure) -> int:
        assert isinstance(attr, TestRunAttr)
        data = ctypes.string_at(attr.data_in, attr.data_size_in)
        seen.update(prog_fd=attr.prog_fd, data=data, repeat=attr.repeat, flags=attr.flags, ctx_in=attr.ctx_in)
        out = b"\xff" + data[1:]
        ctypes.memmove(attr.data_out, out, len(out))
        attr.data_size_out = len(out)
        attr.retval = 0xFFFFFFFF
        attr.duration = 42
        return 0

    fake_kernel.on(Cmd.PROG_TEST_RUN, run)
    result = xdp_prog.test_run(b"\x01\x02\x03", repeat=10, flags=1)
    assert seen == {"prog_fd": xdp_prog.fd, "data": b"\x01\x02\x03", "repeat": 10, "flags": 1, "ctx_in": 0}
    assert (result.retval, result.data_out, result.ctx_out, result.duration_ns) == (
        0xFFFFFFFF,
        b"\xff\x02\x03",
        None,
        42,
    )
    assert kernel_test_run(xdp_prog, b"\x01\x02\x03") == result.__class__(
        0xFFFFFFFF, b"\xff\x02\x03", None, 42
    )


def test_test_run_context_in_and_out(fake_kernel: FakeKernel, xdp_prog: Program) -> None:
    def run(attr: ctypes.Structure) -> int:
        assert isinstance(attr, TestRunAttr)
        ctx = ctypes.string_at(attr.ctx_in, attr.ctx_size_in)
        assert attr.ctx_size_out >= 1024  # room for any context the kernel copies out
        ctypes.memmove(attr.ctx_out, ctx[::-1], len(ctx))
        attr.ctx_size_out = len(ctx)  # the kernel reports the size it copied
        attr.data_size_out = 0  # no packet: the kernel reports an empty output
        return 0

    fake_kernel.on(Cmd.PROG_TEST_RUN, run)
    result = xdp_prog.test_run(b"", ctx_in=b"abcd")
    assert result.ctx_out == b"dcba"
    assert result.data_out == b""


def test_test_run_runs_once_with_room_to_grow(fake_kernel: FakeKernel, xdp_prog: Program) -> None:
    """The default output buffer holds a grown packet, so the program never runs twice."""
    grown = bytes(range(256)) * 2

    def run(attr: ctypes.Structure) -> int:
        assert isinstance(attr, TestRunAttr)
        size = attr.data_size_out
        ctypes.memmove(attr.data_out, grown, min(size, len(grown)))
        attr.data_size_out = len(grown)
        return -errno.ENOSPC if size < len(grown) else 0

    fake_kernel.on(Cmd.PROG_TEST_RUN, run)
    assert xdp_prog.test_run(b"\0" * 14).data_out == grown
    sizes = [attr.data_size_out for _, attr in fake_kernel.calls if isinstance(attr, TestRunAttr)]
    assert len(sizes) == 1  # one run: map side effects happen once


def test_test_run_never_reruns_after_enospc(fake_kernel: FakeKernel, xdp_prog: Program) -> None:
    def run(attr: ctypes.Structure) -> int:
        assert isinstance(attr, TestRunAttr)
        attr.data_size_out = 9000
        return -errno.ENOSPC

    fake_kernel.on(Cmd.PROG_TEST_RUN, run)
    with pytest.raises(SyscallError) as info:
        xdp_prog.test_run(b"\0" * 14)
    assert "needs data_size_out >= 9000" in "\n".join(info.value.__notes__)
    assert len(fake_kernel.calls) == 1


def test_test_run_explicit_small_output_is_an_error(fake_kernel: FakeKernel, xdp_prog: Program) -> None:
    def run(attr: ctypes.Structure) -> int:
        assert isinstance(attr, TestRunAttr)
        attr.data_size_out = 100
        return -errno.ENOSPC

    fake_kernel.on(Cmd.PROG_TEST_RUN, run)
    with pytest.raises(SyscallError, match="smaller than what the program produced"):
        xdp_prog.test_run(b"\0" * 50, data_size_out=10)
    assert len(fake_kernel.calls) == 1


def test_test_run_without_output_buffer(fake_kernel: FakeKernel, xdp_prog: Program) -> None:
    def run(attr: ctypes.Structure) -> int:
        assert isinstance(attr, TestRunAttr)
        assert (attr.data_out, attr.data_size_out) == (0, 0)
        return 0

    fake_kernel.on(Cmd.PROG_TEST_RUN, run)
    assert xdp_prog.test_run(b"\0" * 14, data_size_out=0).data_out == b""


# --- info, xlated, ids ------------------------------------------------------------------------


def _fill_info(**values: object) -> Handler:
    def info(attr: ctypes.Structure) -> int:
        assert isinstance(attr, ObjInfoAttr)
        assert attr.info_len == ctypes.sizeof(BpfProgInfo)
        raw = BpfProgInfo.from_address(attr.info)
        for key, value in values.items():
            setattr(raw, key, value)
        return 0

    return info


def test_info_converts_bpf_prog_info(fake_kernel: FakeKernel, xdp_prog: Program) -> None:
    tag = (ctypes.c_uint8 * 8)(*bytes.fromhex("614b434cd8324ecc"))
    fake_kernel.on(
        Cmd.OBJ_GET_INFO_BY_FD,
        _fill_info(
            id=42, type=6, name=b"fake", tag=tag, xlated_prog_len=16, jited_prog_len=23,
            run_cnt=7, run_time_ns=700, verified_insns=2, gpl_compatible=1,
        ),
    )  # fmt: skip
    info = xdp_prog.info()
    assert info == ProgramInfo(
        id=42, type=ProgramType.XDP, name="fake", tag="614b434cd8324ecc", xlated_prog_len=16,
        jited_prog_len=23, load_time_ns=0, created_by_uid=0, gpl_compatible=True, nr_map_ids=0,
        btf_id=0, run_time_ns=700, run_cnt=7, recursion_misses=0, verified_insns=2,
    )  # fmt: skip
    (cmd, attr) = fake_kernel.calls[0]
    assert cmd == Cmd.OBJ_GET_INFO_BY_FD and isinstance(attr, ObjInfoAttr) and attr.bpf_fd == xdp_prog.fd


def test_info_keeps_unknown_program_types_as_numbers(fake_kernel: FakeKernel, xdp_prog: Program) -> None:
    fake_kernel.on(Cmd.OBJ_GET_INFO_BY_FD, _fill_info(type=999))
    assert xdp_prog.info().type == 999


def test_xlated_reads_the_translated_instructions(fake_kernel: FakeKernel, xdp_prog: Program) -> None:
    def info(attr: ctypes.Structure) -> int:
        assert isinstance(attr, ObjInfoAttr)
        raw = BpfProgInfo.from_address(attr.info)
        if raw.xlated_prog_insns:
            ctypes.memmove(raw.xlated_prog_insns, XDP_RET2, min(raw.xlated_prog_len, 16))
        raw.xlated_prog_len = 16
        return 0

    fake_kernel.on(Cmd.OBJ_GET_INFO_BY_FD, info)
    assert xdp_prog.xlated() == XDP_RET2


def test_xlated_hidden_is_not_supported(fake_kernel: FakeKernel, xdp_prog: Program) -> None:
    fake_kernel.on(Cmd.OBJ_GET_INFO_BY_FD, _fill_info(xlated_prog_len=0))
    with pytest.raises(NotSupportedError, match="translated instructions"):
        xdp_prog.xlated()


def test_program_ids_walks_until_enoent(fake_kernel: FakeKernel) -> None:
    ids = [3, 7, 9]

    def next_id(attr: ctypes.Structure) -> int:
        later = [i for i in ids if i > attr.start_id]
        if not later:
            return -errno.ENOENT
        attr.next_id = later[0]
        return 0

    fake_kernel.on(Cmd.PROG_GET_NEXT_ID, next_id)
    assert list(program_ids()) == ids


def test_from_id_opens_and_describes(fake_kernel: FakeKernel) -> None:
    fake_kernel.on(Cmd.PROG_GET_FD_BY_ID, lambda attr: fake_kernel.new_fd())
    fake_kernel.on(Cmd.OBJ_GET_INFO_BY_FD, _fill_info(type=1, name=b"sf"))
    with Program.from_id(5) as prog:
        assert (prog.type, prog.name) == (ProgramType.SOCKET_FILTER, "sf")
        assert fake_kernel.calls[0][1].prog_id == 5


def test_from_id_closes_the_fd_when_info_fails(fake_kernel: FakeKernel) -> None:
    fake_kernel.on(Cmd.PROG_GET_FD_BY_ID, lambda attr: fake_kernel.new_fd())
    fake_kernel.on(Cmd.OBJ_GET_INFO_BY_FD, lambda attr: -errno.EFAULT)
    with pytest.raises(SyscallError):
        Program.from_id(5)
    assert not is_open(fake_kernel.opened[0])
