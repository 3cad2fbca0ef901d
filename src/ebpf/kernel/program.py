"""``Program``: a BPF program loaded into the kernel, and what can be done with it.

Calls bpf(2).

Rule 1: a ``Program`` owns one :class:`~ebpf.kernel.fd.FD`. It is a context manager and
``close()`` is idempotent; a program that is never closed leaks and warns.

Rule 2: a kernel verifier rejection is a :class:`~ebpf.errors.VerifierError` with
``source=VerifierSource.KERNEL`` and the *whole* log, chained from the
:class:`~ebpf.errors.SyscallError`. To get that log, a failed load without one is
retried with ``log_level=1``, and a log buffer that is too small (``ENOSPC``) is grown
and the load retried. Failures that are not a verdict on the program (``EPERM`` from a
missing capability, ``ENOMEM``, ...) stay a ``SyscallError``.

Rule 3: instructions are raw bytecode in the host's byte order (8 bytes per slot, the
wide ``lddw`` takes two), or objects with an ``encode() -> bytes`` method such as
``ebpf.isa`` instructions and programs. This module never decodes them.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from ebpf.errors import (
    KernelTestRunError,
    NotSupportedError,
    SyscallError,
    TestRunError,
    VerifierError,
    VerifierSource,
)
from ebpf.isa.encoding import encode
from ebpf.isa.instruction import Instruction
from ebpf.isa.program import Program as IsaProgram
from ebpf.kernel._syscall import bpf
from ebpf.kernel.fd import FD
from ebpf.kernel.uapi import (
    BPF_OBJ_NAME_LEN,
    BpfProgInfo,
    Cmd,
    EnableStatsAttr,
    GetIdAttr,
    LogLevel,
    ObjInfoAttr,
    ProgLoadAttr,
    StatsType,
    TestRunAttr,
    TestRunFlags,
)
from ebpf.spec import ProgramType
from ebpf.testrun import TestRunResult  # shared with the user-space runtime

__all__ = [
    "DEFAULT_LOG_SIZE",
    "MAX_LOG_SIZE",
    "Program",
    "ProgramInfo",
    "SupportsEncode",
    "TestRunResult",
    "enable_stats",
    "last_insn_index",
    "program_ids",
    "test_run",
]

DEFAULT_LOG_SIZE = 64 * 1024
"""Initial verifier log buffer, in bytes; grown on demand."""

MAX_LOG_SIZE = (2**32 - 1) >> 2
"""The largest ``log_size`` the kernel accepts (``UINT_MAX >> 2``, Linux >= 5.2)."""

_MIN_LOG_SIZE = 128  # the kernel rejects smaller log buffers with EINVAL
# Room for an XDP program to grow the packet: bpf_xdp_adjust_tail grows the last fragment of a
# multi-buffer frame up to its 4 KiB page, bpf_xdp_adjust_head into the 256-byte headroom.
_DATA_OUT_PAD = 4096 + 256
_SKB_OUT_PAD = 65536  # skb programs may grow the packet further (bpf_skb_change_tail, adjust_room)
_CTX_OUT_MIN = 1024  # larger than every context the kernel copies out (__sk_buff is 192 bytes)
_NAME_CHARS = re.compile(r"^[A-Za-z0-9_.]*$")
_INSN_LINE = re.compile(r"^(\d+): ")
_CTX_ONLY_TYPES = frozenset({ProgramType.RAW_TRACEPOINT, ProgramType.SYSCALL})


@runtime_checkable
class SupportsEncode(Protocol):
    """Anything that encodes to raw bytecode: an instruction, or a whole program."""

    def encode(self) -> bytes: ...


Instructions = bytes | bytearray | memoryview | SupportsEncode | Iterable[SupportsEncode]


@dataclass(frozen=True, slots=True)
class ProgramInfo:
    """What the kernel reports about a loaded program (``struct bpf_prog_info``).

    ``run_time_ns`` and ``run_cnt`` only count while run-time statistics are enabled
    (:func:`enable_stats` or the ``kernel.bpf_stats_enabled`` sysctl). Fields a kernel is
    too old to know are 0.
    """

    id: int
    type: ProgramType | int
    name: str
    tag: str
    """The program tag as 16 hex digits, as ``bpftool prog`` prints it."""
    xlated_prog_len: int
    jited_prog_len: int
    load_time_ns: int
    """Load time in nanoseconds since boot."""
    created_by_uid: int
    gpl_compatible: bool
    nr_map_ids: int
    btf_id: int
    run_time_ns: int
    run_cnt: int
    recursion_misses: int
    verified_insns: int
    attach_btf_id: int = 0
    """The BTF id of the hook (tp_btf, fentry, LSM, struct_ops), 0 for other programs."""
    attach_btf_obj_id: int = 0
    """The BTF object holding ``attach_btf_id`` (vmlinux's id for kernel hooks)."""

    @classmethod
    def from_raw(cls, raw: BpfProgInfo) -> ProgramInfo:
        """Convert the kernel's ``struct bpf_prog_info``."""
        return cls(
            id=int(raw.id),
            type=_program_type(int(raw.type)),
            name=bytes(raw.name).decode("utf-8", "replace"),
            tag=bytes(raw.tag).hex(),
            xlated_prog_len=int(raw.xlated_prog_len),
            jited_prog_len=int(raw.jited_prog_len),
            load_time_ns=int(raw.load_time),
            created_by_uid=int(raw.created_by_uid),
            gpl_compatible=bool(raw.gpl_compatible),
            nr_map_ids=int(raw.nr_map_ids),
            btf_id=int(raw.btf_id),
            run_time_ns=int(raw.run_time_ns),
            run_cnt=int(raw.run_cnt),
            recursion_misses=int(raw.recursion_misses),
            verified_insns=int(raw.verified_insns),
            attach_btf_id=int(raw.attach_btf_id),
            attach_btf_obj_id=int(raw.attach_btf_obj_id),
        )


class Program:
    """A program loaded into the kernel. Owns its file descriptor; use as a context manager.

    Create one with :meth:`load` or :meth:`from_id`.

    Attributes:
        type: the program type.
        name: the name given at load time ("" if none).
        verifier_log: the verifier log of a load with ``log_level > 0``, one line per
            item; empty otherwise.
    """

    def __init__(
        self,
        fd: FD,
        prog_type: ProgramType | int,
        *,
        name: str = "",
        verifier_log: Sequence[str] = (),
    ) -> None:
        """Wrap an already loaded program, taking ownership of ``fd``."""
        self._fd = fd
        self.type = _program_type(int(prog_type))
        self.name = name
        self.verifier_log: tuple[str, ...] = tuple(verifier_log)

    @classmethod
    def load(
        cls,
        insns: Instructions,
        prog_type: ProgramType,
        *,
        license: str = "GPL",
        log_level: LogLevel | int = LogLevel.NONE,
        log_size: int = DEFAULT_LOG_SIZE,
        name: str = "",
        expected_attach_type: int | None = None,
        prog_flags: int = 0,
        kern_version: int = 0,
        prog_btf_fd: int | None = None,
        func_info: bytes = b"",
        line_info: bytes = b"",
        attach_btf_id: int = 0,
        attach_btf_obj_fd: int = 0,
        attach_prog_fd: int = 0,
    ) -> Program:
        """Load a program with ``BPF_PROG_LOAD``.

        Args:
            insns: raw bytecode (8 bytes per slot, host byte order), an object with
                ``encode() -> bytes``, or an iterable of such objects.
            prog_type: the program type.
            license: the license string; helpers marked GPL-only need a GPL-compatible one.
            log_level: 0 for no log (one is fetched if the load fails), 1 for branch
                states, 2 for every instruction, optionally ``| LogLevel.STATS``.
            log_size: initial size of the log buffer in bytes; grown while the kernel
                reports ``ENOSPC``, up to :data:`MAX_LOG_SIZE`.
            name: up to 15 characters of ``[A-Za-z0-9_.]``, shown by ``bpftool prog``.
            expected_attach_type: ``expected_attach_type`` (an :class:`~ebpf.spec.AttachType`).
            prog_flags: ``prog_flags`` (:class:`~ebpf.kernel.uapi.ProgLoadFlags`).
            kern_version: ``kern_version`` (only kprobes of kernels before 5.0 check it).
            prog_btf_fd: the program's BTF in the kernel (needed by ``func_info``/``line_info``).
            func_info: ``struct bpf_func_info`` records (8 bytes each), host byte order.
            line_info: ``struct bpf_line_info`` records (16 bytes each), host byte order.
            attach_btf_id: the BTF id of the hook (tp_btf, fentry, LSM, iterators).
            attach_btf_obj_fd: the BTF object holding ``attach_btf_id`` (0: vmlinux).
            attach_prog_fd: the program an ``EXT``/fentry program attaches to.

        Returns:
            The loaded program, with ``verifier_log`` set when ``log_level > 0``.

        Raises:
            VerifierError: the kernel verifier rejected the program (``.log`` has the
                verifier's log, ``.insn_index`` the last instruction it mentions).
            SyscallError: bpf() failed for another reason (permissions, memory, ...).
            ValueError: malformed arguments (empty or misaligned bytecode, bad name).

        Requires Linux >= 3.18 (program names: 4.15).
        """
        code = _bytecode(insns)
        prog_type = ProgramType(prog_type)
        if int(log_level) & ~int(LogLevel.BRANCH | LogLevel.INSTRUCTION | LogLevel.STATS) or log_level < 0:
            raise ValueError(f"invalid log_level {log_level!r}")
        level = LogLevel(log_level)
        if not _MIN_LOG_SIZE <= log_size <= MAX_LOG_SIZE:
            raise ValueError(f"log_size must be in [{_MIN_LOG_SIZE}, {MAX_LOG_SIZE}], not {log_size}")
        name_bytes = _object_name(name)
        if "\0" in license or not license.isascii():
            raise ValueError(f"license must be ASCII without NUL, not {license!r}")

        if len(func_info) % 8 or len(line_info) % 16:
            raise ValueError("func_info must be 8-byte and line_info 16-byte records")
        func_buf = (ctypes.c_char * len(func_info)).from_buffer_copy(func_info) if func_info else None
        line_buf = (ctypes.c_char * len(line_info)).from_buffer_copy(line_info) if line_info else None
        insn_buf = (ctypes.c_char * len(code)).from_buffer_copy(code)
        license_buf = ctypes.create_string_buffer(license.encode("ascii"))
        attempt_level, size = level, log_size
        first_error: SyscallError | None = None
        truncated = False
        while True:
            log_buf = ctypes.create_string_buffer(size) if attempt_level else None
            attr = ProgLoadAttr(
                prog_type=prog_type,
                insn_cnt=len(code) // 8,
                insns=ctypes.addressof(insn_buf),
                license=ctypes.addressof(license_buf),
                log_level=attempt_level,
                log_size=size if log_buf is not None else 0,
                log_buf=ctypes.addressof(log_buf) if log_buf is not None else 0,
                prog_name=name_bytes,
                kern_version=kern_version,
                prog_flags=prog_flags,
                expected_attach_type=expected_attach_type or 0,
                prog_btf_fd=prog_btf_fd or 0,
                func_info_rec_size=8 if func_buf is not None else 0,
                func_info=ctypes.addressof(func_buf) if func_buf is not None else 0,
                func_info_cnt=len(func_info) // 8,
                line_info_rec_size=16 if line_buf is not None else 0,
                line_info=ctypes.addressof(line_buf) if line_buf is not None else 0,
                line_info_cnt=len(line_info) // 16,
                attach_btf_id=attach_btf_id,
            )
            if attach_btf_obj_fd:
                attr.attach_btf_obj_fd = attach_btf_obj_fd
            elif attach_prog_fd:
                attr.attach_prog_fd = attach_prog_fd
            try:
                raw_fd = bpf(Cmd.PROG_LOAD, attr)
            except SyscallError as err:
                if err.errno == _errno.ENOSPC and log_buf is not None:
                    if size < MAX_LOG_SIZE:
                        # Linux >= 6.4 reports the size it needed; older kernels: double.
                        size = min(MAX_LOG_SIZE, max(size * 2, int(attr.log_true_size)))
                        continue
                    truncated = True
                if log_buf is None and first_error is None:
                    first_error = err
                    attempt_level, size = LogLevel.BRANCH, log_size
                    continue
                failure = _load_error(err, first_error, _log_lines(log_buf), prog_type, name, truncated)
                if failure is err:
                    raise
                raise failure from err
            fd = FD(raw_fd)
            return cls(fd, prog_type, name=name, verifier_log=_log_lines(log_buf) if level else ())

    @classmethod
    def from_id(cls, prog_id: int) -> Program:
        """Open the loaded program with ID ``prog_id`` (``BPF_PROG_GET_FD_BY_ID``).

        Raises:
            SyscallError: no such program (``ENOENT``), or not permitted.

        Requires Linux >= 4.13.
        """
        fd = FD(bpf(Cmd.PROG_GET_FD_BY_ID, GetIdAttr(prog_id=prog_id)))
        try:
            raw = _prog_info(fd.fileno())
        except BaseException:
            fd.close()
            raise
        return cls(fd, int(raw.type), name=bytes(raw.name).decode("utf-8", "replace"))

    @classmethod
    def from_pin(cls, path: str | os.PathLike[str]) -> Program:
        """Open the program pinned at ``path`` on a bpffs (``BPF_OBJ_GET``)."""
        from ebpf.kernel.map import obj_get

        fd = obj_get(path)
        try:
            raw = _prog_info(fd.fileno())
        except BaseException:
            fd.close()
            raise
        return cls(fd, int(raw.type), name=bytes(raw.name).decode("utf-8", "replace"))

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the program at ``path`` on a bpffs (``BPF_OBJ_PIN``); it stays loaded while pinned."""
        from ebpf.kernel.map import obj_pin

        try:
            obj_pin(self.fd, path)
        except SyscallError as err:
            err.add_note(f"while pinning {self!r} at {os.fspath(path)}")
            raise

    @property
    def fd(self) -> int:
        """The program's file descriptor number (still owned by this object).

        Raises:
            ValueError: the program is closed.
        """
        return self._fd.fileno()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._fd.closed

    def close(self) -> None:
        """Close the program's descriptor. Calling it again does nothing."""
        self._fd.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self.fd}"
        type_name = self.type.name if isinstance(self.type, ProgramType) else str(self.type)
        return f"Program({type_name}, name={self.name!r}, {state})"

    def test_run(
        self,
        data_in: bytes = b"",
        *,
        ctx_in: bytes | None = None,
        repeat: int = 1,
        data_size_out: int | None = None,
        ctx_size_out: int | None = None,
        flags: int = 0,
        cpu: int | None = None,
    ) -> TestRunResult:
        """Run the program once or ``repeat`` times on ``data_in`` (``BPF_PROG_TEST_RUN``).

        Args:
            data_in: the packet (for XDP and skb programs at least an Ethernet header).
            ctx_in: the context to start from (``struct xdp_md``, ``__sk_buff``, ...).
            repeat: how often to run; ``duration_ns`` is the average.
            data_size_out: size of the output packet buffer; by default the input size
                plus 4 KiB for XDP (a frame is one page), none for SK_LOOKUP (the kernel
                refuses one), plus 64 KiB for other types. The program runs exactly once:
                a buffer too small is an ``ENOSPC`` error saying the size needed (after the run).
            ctx_size_out: size of the output context buffer; by default at least 1 KiB
                (the kernel's context, whatever ``ctx_in`` held), and no context output
                without ``ctx_in``. NETFILTER runs have no context output (``None``).
            flags: :class:`~ebpf.kernel.uapi.TestRunFlags`.
            cpu: run on this CPU (``BPF_F_TEST_RUN_ON_CPU``; the kernel allows it for raw
                tracepoint programs only), as the user-space runtime's ``cpu=``.

        RAW_TRACEPOINT and SYSCALL programs take only ``ctx_in`` and run once: ``repeat`` 0 or 1
        is sent as the kernel's 0; ``data_in`` and a larger ``repeat`` go to the kernel, which
        refuses them (``EINVAL``: ``bpf_prog_test_run_raw_tp``/``_syscall`` want ``data_in``,
        ``repeat``, ``data_out`` and ``ctx_out`` all unset); ``data_size_out`` and
        ``ctx_size_out`` are ignored (a SYSCALL context comes back through ``ctx_in``).

        Raises:
            KernelTestRunError: the kernel refused the run's arguments (``EINVAL``, ``E2BIG``,
                ``ENODEV``; the input is too short, a field of ``ctx_in`` is not allowed...) or
                an output buffer was too small (``ENOSPC``; ``err.result`` holds what the kernel
                copied out). Both a ``SyscallError`` and the runtime's ``TestRunError``.
            TestRunError: ``repeat`` is not a u32 (``EINVAL``, as the runtime answers).
            SyscallError: any other failure, e.g. the kernel cannot test-run this program type
                (``ENOTSUPP``).

        Requires Linux >= 4.12 (``ctx_in``/``ctx_out``: 5.2).
        """
        if not 0 <= repeat < 2**32:
            raise TestRunError(f"repeat must be a u32, not {repeat}", errno=_errno.EINVAL)
        data = bytes(data_in)
        ctx = bytes(ctx_in) if ctx_in is not None else None
        if self.type in _CTX_ONLY_TYPES:
            return self._test_run_ctx_only(data, ctx, repeat, flags, cpu)
        # Output buffers are sized so the kernel never has to refuse them: a second run after
        # ENOSPC would run the program twice (map updates twice), so there is no retry.
        pad = _DATA_OUT_PAD if self.type == ProgramType.XDP else _SKB_OUT_PAD
        if data_size_out is None:  # sk_lookup runs refuse any data_out buffer (EINVAL)
            out_size = 0 if self.type == ProgramType.SK_LOOKUP else len(data) + pad
        else:
            out_size = data_size_out
        if ctx_size_out is None:
            ctx_out_size = max(len(ctx), _CTX_OUT_MIN) if ctx else 0  # no (or an empty) ctx_in: no ctx_out
        else:
            ctx_out_size = ctx_size_out
        data_in_buf = _in_buffer(data)
        ctx_in_buf = _in_buffer(ctx or b"")
        data_out_buf = ctypes.create_string_buffer(out_size) if out_size else None
        ctx_out_buf = ctypes.create_string_buffer(ctx_out_size) if ctx_out_size else None
        attr = TestRunAttr(
            prog_fd=self.fd,
            data_size_in=len(data),
            data_in=_address(data_in_buf),
            data_size_out=out_size,
            data_out=_address(data_out_buf),
            repeat=repeat,
            ctx_size_in=len(ctx or b""),
            ctx_in=_address(ctx_in_buf),
            ctx_size_out=ctx_out_size,
            ctx_out=_address(ctx_out_buf),
            flags=flags | (TestRunFlags.RUN_ON_CPU if cpu is not None else 0),
            cpu=cpu or 0,
        )
        try:
            bpf(Cmd.PROG_TEST_RUN, attr)
        except SyscallError as err:
            result = None
            if err.errno == _errno.ENOSPC:
                err.add_note(
                    f"the program ran; its output needs data_size_out >= {int(attr.data_size_out)} and "
                    f"ctx_size_out >= {int(attr.ctx_size_out)} (given {out_size} and {ctx_out_size})"
                )
                # bpf_test_finish copied what fits before failing: the runtime's err.result
                data_got = min(out_size, int(attr.data_size_out))
                ctx_got = min(ctx_out_size, int(attr.ctx_size_out))
                result = TestRunResult(
                    retval=int(attr.retval),
                    data_out=data_out_buf.raw[:data_got] if data_out_buf is not None else b"",
                    ctx_out=ctx_out_buf.raw[:ctx_got] if ctx_out_buf is not None else None,
                    duration_ns=int(attr.duration),
                )
            err.add_note(f"while test-running {self!r}")
            typed = _refusal(err, result)
            if typed is None:
                raise
            raise typed from err
        data_out = data_out_buf.raw[: int(attr.data_size_out)] if data_out_buf is not None else b""
        ctx_out = ctx_out_buf.raw[: int(attr.ctx_size_out)] if ctx_out_buf is not None else None
        if self.type == ProgramType.NETFILTER:
            ctx_out = None  # bpf_prog_test_run_nf writes no ctx_out (the buffer stays as given)
        return TestRunResult(
            retval=int(attr.retval), data_out=data_out, ctx_out=ctx_out, duration_ns=int(attr.duration)
        )

    def _test_run_ctx_only(
        self, data: bytes, ctx: bytes | None, repeat: int, flags: int, cpu: int | None
    ) -> TestRunResult:
        """RAW_TRACEPOINT and SYSCALL test runs: a context in, no packet, one run
        (``bpf_prog_test_run_raw_tp`` / ``_syscall`` refuse data, ``repeat`` and outputs: the
        request goes to the kernel as given, so it answers ``EINVAL`` itself);
        a SYSCALL program's context changes come back in ``ctx_out``."""
        ctx_buf = _in_buffer(ctx or b"")
        data_buf = _in_buffer(data)
        attr = TestRunAttr(
            prog_fd=self.fd,
            data_size_in=len(data),
            data_in=_address(data_buf),
            repeat=repeat if repeat > 1 else 0,  # "once" is the kernel's 0 here: it refuses 1
            ctx_size_in=len(ctx or b""),
            ctx_in=_address(ctx_buf),
            flags=flags | (TestRunFlags.RUN_ON_CPU if cpu is not None else 0),
            cpu=cpu or 0,
        )
        try:
            bpf(Cmd.PROG_TEST_RUN, attr)
        except SyscallError as err:
            err.add_note(f"while test-running {self!r}")
            typed = _refusal(err, None)
            if typed is None:
                raise
            raise typed from err
        ctx_out = ctx_buf.raw if (ctx_buf is not None and self.type == ProgramType.SYSCALL) else None
        return TestRunResult(retval=int(attr.retval), data_out=b"", ctx_out=ctx_out, duration_ns=0)

    def info(self) -> ProgramInfo:
        """What the kernel reports about this program (``BPF_OBJ_GET_INFO_BY_FD``).

        Requires Linux >= 4.13.
        """
        return ProgramInfo.from_raw(_prog_info(self.fd))

    def map_ids(self) -> tuple[int, ...]:
        """IDs of the maps the program uses, as the verifier recorded them (``map_ids``).

        Requires Linux >= 4.13.
        """
        count = int(_prog_info(self.fd).nr_map_ids)
        if count == 0:
            return ()
        ids = (ctypes.c_uint32 * count)()
        raw = _prog_info(self.fd, BpfProgInfo(nr_map_ids=count, map_ids=ctypes.addressof(ids)))
        return tuple(int(i) for i in ids[: min(count, int(raw.nr_map_ids))])

    def xlated(self) -> bytes:
        """The instructions as the kernel translated them (after rewrites), as raw bytecode.

        Raises:
            NotSupportedError: the kernel does not show them to this process (no CAP_BPF,
                or ``kernel.kptr_restrict`` forbids raw dumps).

        Requires Linux >= 4.13.
        """
        length = int(_prog_info(self.fd).xlated_prog_len)
        if length == 0:
            raise NotSupportedError(
                "reading translated instructions", detail="the kernel reported none (needs CAP_BPF or root)"
            )
        buf = ctypes.create_string_buffer(length)
        raw = _prog_info(
            self.fd, BpfProgInfo(xlated_prog_len=length, xlated_prog_insns=ctypes.addressof(buf))
        )
        if int(raw.xlated_prog_insns) == 0:
            raise NotSupportedError(
                "reading translated instructions",
                detail="the kernel withheld them (kernel.kptr_restrict or missing CAP_SYSLOG/CAP_SYS_ADMIN)",
            )
        return buf.raw[: min(length, int(raw.xlated_prog_len))]


def test_run(
    program: Program,
    data_in: bytes = b"",
    *,
    ctx_in: bytes | None = None,
    repeat: int = 1,
    data_size_out: int | None = None,
    ctx_size_out: int | None = None,
    flags: int = 0,
) -> TestRunResult:
    """``BPF_PROG_TEST_RUN`` (alias ``BPF_PROG_RUN``): the same as :meth:`Program.test_run`.

    Requires Linux >= 4.12 (``ctx_in``/``ctx_out``: 5.2).
    """
    return program.test_run(
        data_in,
        ctx_in=ctx_in,
        repeat=repeat,
        data_size_out=data_size_out,
        ctx_size_out=ctx_size_out,
        flags=flags,
    )


test_run.__test__ = False  # type: ignore[attr-defined]  # not a pytest test, despite the name


def program_ids() -> Iterator[int]:
    """The IDs of all programs loaded in the kernel, in increasing order (``BPF_PROG_GET_NEXT_ID``).

    Requires Linux >= 4.13.
    """
    current = 0
    while True:
        attr = GetIdAttr(start_id=current)
        try:
            bpf(Cmd.PROG_GET_NEXT_ID, attr)
        except SyscallError as err:
            if err.errno == _errno.ENOENT:
                return
            raise
        current = int(attr.next_id)
        yield current


def enable_stats(stats_type: StatsType = StatsType.RUN_TIME) -> FD:
    """Turn on run-time statistics (``run_time_ns``, ``run_cnt``) while the returned FD is open.

    ``BPF_ENABLE_STATS``; close the FD to turn them off again.

    Requires Linux >= 5.8.
    """
    return FD(bpf(Cmd.ENABLE_STATS, EnableStatsAttr(type=stats_type)))


def _program_type(value: int) -> ProgramType | int:
    """``ProgramType(value)``, or the plain number for a type newer than this library."""
    try:
        return ProgramType(value)
    except ValueError:
        return value


def _prog_info(fd: int, info: BpfProgInfo | None = None) -> BpfProgInfo:
    info = BpfProgInfo() if info is None else info
    attr = ObjInfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    bpf(Cmd.OBJ_GET_INFO_BY_FD, attr)
    return info


def _bytecode(insns: Instructions) -> bytes:
    if isinstance(insns, str):
        raise TypeError("instructions must be bytecode or instruction objects, not str (assemble it first)")
    if isinstance(insns, (bytes, bytearray, memoryview)):
        code = bytes(insns)
    elif isinstance(insns, IsaProgram):
        code = insns.encode(sys.byteorder)  # the kernel takes instructions in host byte order
    elif isinstance(insns, SupportsEncode):
        code = insns.encode()
    else:
        items = list(insns)
        if all(isinstance(insn, Instruction) for insn in items):
            code = encode(items, sys.byteorder)  # type: ignore[arg-type]
        else:
            code = b"".join(insn.encode() for insn in items)
    if not code or len(code) % 8:
        raise ValueError(f"bytecode must be a non-empty multiple of 8 bytes, not {len(code)} bytes")
    if len(code) // 8 >= 2**32:
        raise ValueError("too many instructions")
    return code


def _object_name(name: str) -> bytes:
    if len(name) >= BPF_OBJ_NAME_LEN or not _NAME_CHARS.match(name):
        raise ValueError(f"program name {name!r}: at most {BPF_OBJ_NAME_LEN - 1} characters of [A-Za-z0-9_.]")
    return name.encode("ascii")


def _log_lines(buf: ctypes.Array[ctypes.c_char] | None) -> tuple[str, ...]:
    if buf is None:
        return ()
    lines = buf.value.decode("utf-8", "replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return tuple(lines)


def last_insn_index(log: Sequence[str]) -> int | None:
    """The index of the last instruction a kernel verifier log mentions (``"12: (85) call ..."``)."""
    for line in reversed(log):
        m = _INSN_LINE.match(line)
        if m:
            return int(m.group(1))
    return None


def _load_error(
    err: SyscallError,
    first_error: SyscallError | None,
    log: tuple[str, ...],
    prog_type: ProgramType,
    name: str,
    truncated: bool,
) -> BaseException:
    """The error a failed load raises: a VerifierError for a verdict, else the SyscallError."""
    # The errno of the load itself, not the ENOSPC of an overflowing log buffer.
    code = first_error.errno if (truncated and first_error is not None) else err.errno
    assert code is not None  # SyscallError always carries an errno
    what = f"load program {name!r} ({prog_type.name})" if name else f"load {prog_type.name} program"
    if not log and code not in (_errno.EACCES, _errno.EINVAL):
        err.add_note(f"while trying to {what}")
        return err
    errname = _errno.errorcode.get(code, str(code))
    cause = f"{what}: {errname} ({os.strerror(code)})"
    if not log:
        cause += "; the kernel wrote no verifier log"
    return VerifierError(
        cause,
        source=VerifierSource.KERNEL,
        log=log,
        insn_index=last_insn_index(log),
        errno=code,
        truncated=truncated,
    )


_TEST_RUN_REFUSALS = frozenset({_errno.EINVAL, _errno.E2BIG, _errno.ENOSPC, _errno.ENODEV})


def _refusal(err: SyscallError, result: TestRunResult | None) -> KernelTestRunError | None:
    """``err`` as a :class:`KernelTestRunError` when it is a refusal of the test run's
    arguments (the errnos the runtime's ``TestRunError`` uses), else ``None``."""
    if err.errno not in _TEST_RUN_REFUSALS:
        return None
    typed = KernelTestRunError(err.cmd, err.errno, err.hint, message=err.message, result=result)
    for note in getattr(err, "__notes__", ()):
        typed.add_note(note)
    return typed


def _in_buffer(data: bytes) -> ctypes.Array[ctypes.c_char] | None:
    return (ctypes.c_char * len(data)).from_buffer_copy(data) if data else None


def _address(buf: ctypes.Array[ctypes.c_char] | None) -> int:
    return ctypes.addressof(buf) if buf is not None else 0
