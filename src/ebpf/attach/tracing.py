"""Tracing attachments: tracepoints, raw and BTF tracepoints, trampolines, kprobes, perf events.

Above the kernel line. Calls bpf(2), ``perf_event_open(2)`` and reads/writes tracefs.

Rule 1: perf-event based hooks (tracepoint, kprobe, uprobe, sampling) open one perf event
and bind the program with a ``BPF_LINK_CREATE``/``BPF_PERF_EVENT`` link (Linux >= 5.15), so
they can be pinned and queried like every other link. Older kernels get the
``PERF_EVENT_IOC_SET_BPF`` ioctl instead, as a link that cannot be pinned.

Rule 2: kprobes use the kprobe PMU (``/sys/bus/event_source/devices/kprobe``) and fall back to
tracefs ``kprobe_events``. When neither exists the error says so and quotes the kernel's build
config (``CONFIG_KPROBES``) when the kernel exposes it; nothing is guessed.

Rule 3: trampoline programs (fentry, fexit, fmod_ret, LSM) and ``tp_btf`` attach to the
target chosen at load time (``attach_btf_id``); a refusal is reported with the errno and the
lockdown mode read from securityfs.
"""

from __future__ import annotations

import errno as _errno
import itertools
import os
import struct
from collections.abc import Sequence

from ebpf.attach import _abi, _observe, _tracefs
from ebpf.attach.link import Closeable, FDLink, Link, LinkInfo, ProgramLike, _LinkBase
from ebpf.errors import NotSupportedError, SyscallError
from ebpf.kernel._syscall import bpf
from ebpf.kernel.fd import FD
from ebpf.kernel.uapi import Cmd
from ebpf.kernel.version import kernel_version
from ebpf.spec import AttachType

__all__ = [
    "fentry",
    "fexit",
    "fmod_ret",
    "kprobe",
    "kprobe_multi",
    "kretprobe",
    "lsm",
    "perf_event",
    "raw_tracepoint",
    "tp_btf",
    "tracepoint",
]

_PERF_SAMPLE_RAW = 1 << 10
_BPF_F_KPROBE_MULTI_RETURN = 1


class PerfIoctlLink(_LinkBase):
    """A program bound to a perf event with ``PERF_EVENT_IOC_SET_BPF`` (kernels before 5.15)."""

    def __init__(self, perf_fd: FD, *, kind: str, extra: tuple[Closeable, ...] = ()) -> None:
        self._fd = perf_fd
        self._extra = extra
        self.kind = kind

    @property
    def closed(self) -> bool:
        return self._fd.closed

    def update(self, program: ProgramLike, *, old: ProgramLike | None = None) -> None:
        raise NotSupportedError("updating a perf event attachment", "5.15", "needs BPF_LINK_CREATE links")

    def pin(self, path: str | os.PathLike[str]) -> None:
        raise NotSupportedError("pinning a perf event attachment", "5.15", "needs BPF_LINK_CREATE links")

    def unpin(self) -> None:
        pass

    def detach(self) -> None:
        if not self._fd.closed:
            _abi.perf_ioctl(self._fd.fileno(), _abi.PERF_EVENT_IOC_DISABLE)

    def info(self) -> LinkInfo:
        raise NotSupportedError("link info of a perf event attachment", "5.15", "it is not a BPF link")

    def close(self) -> None:
        self._fd.close()
        for extra in self._extra:
            extra.close()

    def __repr__(self) -> str:
        return f"<{self.kind} perf-ioctl attachment {'closed' if self.closed else 'open'}>"


def perf_link(
    program: ProgramLike, perf_fd: FD, *, kind: str, cookie: int = 0, extra: tuple[Closeable, ...] = ()
) -> Link:
    """Bind ``program`` to an open perf event; the returned link owns ``perf_fd`` and ``extra``."""
    try:
        try:
            lfd = _abi.link_create(
                program.fd, perf_fd.fileno(), AttachType.PERF_EVENT, 0, struct.pack("=Q", cookie)
            )
        except SyscallError as err:
            if err.errno == _errno.EINVAL and kernel_version() < (5, 15, 0) and not cookie:
                _abi.perf_ioctl(perf_fd.fileno(), _abi.PERF_EVENT_IOC_SET_BPF, program.fd)
                _abi.perf_ioctl(perf_fd.fileno(), _abi.PERF_EVENT_IOC_ENABLE)
                return PerfIoctlLink(perf_fd, kind=kind, extra=extra)
            err.add_note(f"while attaching the program to a {kind} perf event")
            raise
    except BaseException:
        perf_fd.close()
        for item in extra:
            item.close()
        raise
    return FDLink(FD(lfd), kind=kind, extra=(perf_fd, *extra))


def _open_perf(attr: _abi.PerfEventAttr, pid: int, cpu: int, what: str) -> FD:
    try:
        return FD(_abi.perf_event_open(attr, pid, cpu))
    except SyscallError as err:
        err.add_note(f"while opening the perf event for {what}")
        raise


def tracepoint(program: ProgramLike, category: str, name: str, *, cookie: int = 0) -> Link:
    """Attach a tracepoint program to ``category:name`` (``SEC("tracepoint/<category>/<name>")``).

    Opens the tracepoint's perf event (its id from tracefs, mounting tracefs if needed) on
    CPU 0 for every process, then links the program to it.

    Args:
        program: a loaded ``TRACEPOINT`` program (``KPROBE``/``PERF_EVENT`` work too).
        category: e.g. ``"syscalls"``.
        name: e.g. ``"sys_enter_openat"``.
        cookie: value for ``bpf_get_attach_cookie()`` (Linux >= 5.15).

    Raises:
        NotSupportedError: no such tracepoint, or tracefs unavailable.
        SyscallError: perf_event_open or BPF_LINK_CREATE failed.

    Requires Linux >= 4.7 (as a BPF link: 5.15).
    """
    tp_id = _tracefs.tracepoint_id(category, name)
    attr = _abi.PerfEventAttr(
        type=_abi.PerfType.TRACEPOINT,
        config=tp_id,
        sample_period=1,
        sample_type=_PERF_SAMPLE_RAW,
        wakeup_events=1,
    )
    fd = _open_perf(attr, -1, 0, f"tracepoint {category}:{name}")
    return perf_link(program, fd, kind=f"tracepoint {category}:{name}", cookie=cookie)


def raw_tracepoint(program: ProgramLike, name: str, *, cookie: int = 0) -> Link:
    """Attach a ``RAW_TRACEPOINT`` program to tracepoint ``name`` (``BPF_RAW_TRACEPOINT_OPEN``).

    Args:
        name: the bare tracepoint name, e.g. ``"sys_enter"`` or ``"sched_switch"``.
        cookie: for ``bpf_get_attach_cookie()`` (Linux >= 6.10).

    Requires Linux >= 4.17.
    """
    if not name or "\0" in name:
        raise ValueError(f"invalid raw tracepoint name {name!r}")
    buf = _abi.cstr(name)
    attr = _abi.RawTracepointOpenAttr(name=buf.address, prog_fd=program.fd, cookie=cookie)
    try:
        fd = bpf(Cmd.RAW_TRACEPOINT_OPEN, attr)
    except SyscallError as err:
        if err.errno == _errno.ENOENT:
            raise NotSupportedError(
                f"raw tracepoint {name!r}", detail="the kernel has no such tracepoint"
            ) from err
        err.add_note(f"while attaching to raw tracepoint {name!r}")
        raise
    return FDLink(FD(fd), kind=f"raw_tracepoint {name}")


def _btf_attach(program: ProgramLike, kind: str, attach_type: AttachType, cookie: int) -> Link:
    """Link a program whose target was fixed at load time (``attach_btf_id``)."""
    try:
        if cookie:
            extra = struct.pack("=IIQ", 0, 0, cookie)  # tracing: target_btf_id, pad, cookie
            fd = _abi.link_create(program.fd, 0, attach_type, 0, extra)
        else:
            fd = bpf(Cmd.RAW_TRACEPOINT_OPEN, _abi.RawTracepointOpenAttr(name=0, prog_fd=program.fd))
    except SyscallError as err:
        if err.errno == _errno.EPERM:
            mode = _observe.lockdown_mode()
            if mode is not None:
                err.add_note(f"observed: lockdown mode is '{mode}' (/sys/kernel/security/lockdown)")
        err.add_note(f"while attaching the {kind} program")
        raise
    return FDLink(FD(fd), kind=kind)


def tp_btf(program: ProgramLike, *, cookie: int = 0) -> Link:
    """Attach a BTF-enabled tracepoint program (``SEC("tp_btf/<name>")``; type ``TRACING``).

    The tracepoint was chosen at load time: ``expected_attach_type=TRACE_RAW_TP`` and
    ``attach_btf_id`` = the id of ``btf_trace_<name>`` in vmlinux BTF.

    Requires Linux >= 5.5.
    """
    return _btf_attach(program, "tp_btf", AttachType.TRACE_RAW_TP, cookie)


def fentry(program: ProgramLike, *, cookie: int = 0) -> Link:
    """Attach an fentry program (``SEC("fentry/<func>")``): runs at the entry of the function
    chosen at load time (``attach_btf_id``) through a BPF trampoline.

    Raises:
        SyscallError: the kernel refused; an ``EPERM`` notes the observed lockdown mode.

    Requires Linux >= 5.5.
    """
    return _btf_attach(program, "fentry", AttachType.TRACE_FENTRY, cookie)


def fexit(program: ProgramLike, *, cookie: int = 0) -> Link:
    """Attach an fexit program (``SEC("fexit/<func>")``). Requires Linux >= 5.5."""
    return _btf_attach(program, "fexit", AttachType.TRACE_FEXIT, cookie)


def fmod_ret(program: ProgramLike, *, cookie: int = 0) -> Link:
    """Attach an fmod_ret program (``SEC("fmod_ret/<func>")``). Requires Linux >= 5.7."""
    return _btf_attach(program, "fmod_ret", AttachType.MODIFY_RETURN, cookie)


def lsm(program: ProgramLike, *, cookie: int = 0) -> Link:
    """Attach a BPF LSM program (``SEC("lsm/<hook>")``, type ``LSM``). Requires Linux >= 5.7."""
    return _btf_attach(program, "lsm", AttachType.LSM_MAC, cookie)


# --- kprobes -------------------------------------------------------------------------------------

_legacy_counter = itertools.count()


def _append(path: str, line: str) -> None:
    """One ``write(2)`` with ``O_APPEND`` (Python's ``open(path, "a")`` seeks, and tracefs
    answers that with EINVAL)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    try:
        os.write(fd, line.encode("ascii"))
    finally:
        os.close(fd)


class _LegacyProbe:
    """A kprobe/uprobe created through tracefs ``*_events``; ``close()`` removes it."""

    def __init__(self, events_file: str, group: str, name: str) -> None:
        self.events_file = events_file
        self.group = group
        self.name = name
        self._open = True

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                _append(self.events_file, f"-:{self.group}/{self.name}\n")
            except OSError:
                pass


def legacy_probe(events: str, definition: str, what: str) -> tuple[int, _LegacyProbe]:
    """Create a probe event by writing ``definition`` (``"p:GROUP/NAME TARGET"`` minus the
    ``GROUP/NAME``) to ``<tracefs>/<events>``; returns its tracepoint id and its remover."""
    root = _tracefs.tracefs_root()
    events_file = os.path.join(root, events)
    name = f"ebpf_{os.getpid()}_{next(_legacy_counter)}"
    kind, _, target = definition.partition(" ")
    try:
        _append(events_file, f"{kind}:ebpf/{name} {target}\n")
    except OSError as err:
        raise SyscallError(
            f"write {events_file}", err.errno or _errno.EIO, f"could not create {what}"
        ) from err
    probe = _LegacyProbe(events_file, "ebpf", name)
    try:
        return _tracefs.tracepoint_id("ebpf", name), probe
    except BaseException:
        probe.close()
        raise


def _probe_bit(pmu: str, field: str, default: int) -> int:
    bits = _observe.pmu_format_bit(pmu, field)
    return bits[0] if bits is not None else default


def _no_kprobes() -> NotSupportedError:
    root = _tracefs.mounted_at("tracefs") or _tracefs.DEFAULT_TRACEFS
    detail = f"no kprobe PMU at {_observe.PMU_DIR}/kprobe and no kprobe_events in {root}"
    config = _observe.describe_config("CONFIG_KPROBES")
    if config is not None:
        detail += f"; {config}"
    return NotSupportedError("kprobes", detail=detail)


def _kprobe(program: ProgramLike, symbol: str, offset: int, retprobe: bool, cookie: int) -> Link:
    if not symbol or not all(c.isalnum() or c in "_." for c in symbol):
        raise ValueError(f"invalid kernel symbol {symbol!r}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, not {offset}")
    kind = ("kretprobe " if retprobe else "kprobe ") + symbol + (f"+{offset:#x}" if offset else "")
    pmu = _observe.pmu_type("kprobe")
    if pmu is not None:
        name = _abi.cstr(symbol)
        attr = _abi.PerfEventAttr(
            type=pmu,
            config=(1 << _probe_bit("kprobe", "retprobe", 0)) if retprobe else 0,
            config1=name.address,
            config2=offset,
            sample_period=1,
            wakeup_events=1,
        )
        fd = _open_perf(attr, -1, 0, kind)
        return perf_link(program, fd, kind=kind, cookie=cookie)
    if _tracefs.has_kprobe_events():
        target = symbol + (f"+{offset}" if offset else "")
        tp_id, probe = legacy_probe("kprobe_events", f"{'r' if retprobe else 'p'} {target}", kind)
        attr = _abi.PerfEventAttr(
            type=_abi.PerfType.TRACEPOINT, config=tp_id, sample_period=1, wakeup_events=1
        )
        try:
            fd = _open_perf(attr, -1, 0, kind)
        except BaseException:
            probe.close()
            raise
        return perf_link(program, fd, kind=kind, cookie=cookie, extra=(probe,))
    raise _no_kprobes()


def kprobe(program: ProgramLike, symbol: str, offset: int = 0, *, cookie: int = 0) -> Link:
    """Attach a ``KPROBE`` program at kernel function ``symbol`` (+ ``offset``).

    Raises:
        NotSupportedError: the kernel has no kprobes (no kprobe PMU and no ``kprobe_events``;
            the message quotes ``CONFIG_KPROBES`` from the build config when readable).
        SyscallError: perf_event_open or the link failed (e.g. ``ENOENT``: no such symbol).

    Requires Linux >= 4.1 (kprobe PMU: 4.17).
    """
    return _kprobe(program, symbol, offset, False, cookie)


def kretprobe(program: ProgramLike, symbol: str, *, cookie: int = 0) -> Link:
    """Attach a ``KPROBE`` program at the return of kernel function ``symbol``. See :func:`kprobe`."""
    return _kprobe(program, symbol, 0, True, cookie)


def kprobe_multi(
    program: ProgramLike,
    symbols: Sequence[str] = (),
    *,
    addresses: Sequence[int] = (),
    cookies: Sequence[int] = (),
    retprobe: bool = False,
) -> Link:
    """Attach one ``KPROBE`` program (loaded with ``expected_attach_type=TRACE_KPROBE_MULTI``)
    to many kernel functions at once (``BPF_TRACE_KPROBE_MULTI`` link, fprobe based).

    Give either ``symbols`` or ``addresses``; ``cookies`` (same length) feed
    ``bpf_get_attach_cookie()``.

    Raises:
        NotSupportedError: the kernel refused with ``EOPNOTSUPP`` (the message quotes
            ``CONFIG_FPROBE`` from the build config when readable).

    Requires Linux >= 5.18.
    """
    if bool(symbols) == bool(addresses):
        raise ValueError("give exactly one of symbols and addresses")
    count = len(symbols) or len(addresses)
    if cookies and len(cookies) != count:
        raise ValueError(f"{len(cookies)} cookies for {count} functions")
    names = [_abi.cstr(s) for s in symbols]
    syms = _abi.U64Array([n.address for n in names]) if symbols else None
    addrs = _abi.U64Array(list(addresses)) if addresses else None
    cks = _abi.U64Array(list(cookies)) if cookies else None
    extra = struct.pack(
        "=IIQQQ",
        _BPF_F_KPROBE_MULTI_RETURN if retprobe else 0,
        count,
        syms.address if syms else 0,
        addrs.address if addrs else 0,
        cks.address if cks else 0,
    )
    try:
        fd = _abi.link_create(program.fd, 0, AttachType.TRACE_KPROBE_MULTI, 0, extra)
    except SyscallError as err:
        if err.errno in (_errno.EOPNOTSUPP, 524):  # EOPNOTSUPP / ENOTSUPP
            name = "EOPNOTSUPP" if err.errno == _errno.EOPNOTSUPP else "ENOTSUPP (524)"
            detail = f"BPF_LINK_CREATE(BPF_TRACE_KPROBE_MULTI) failed with {name}"
            config = _observe.describe_config("CONFIG_FPROBE")
            if config is not None:
                detail += f"; {config}"
            raise NotSupportedError("multi-kprobes", detail=detail) from err
        err.add_note("while attaching a multi-kprobe")
        raise
    return FDLink(FD(fd), kind=f"kprobe_multi ({count} functions)")


# --- perf event sampling -------------------------------------------------------------------------


def perf_event(
    program: ProgramLike,
    *,
    type: int = _abi.PerfType.SOFTWARE,
    config: int = 0,
    sample_period: int | None = None,
    sample_freq: int | None = None,
    pid: int = -1,
    cpu: int = 0,
    cookie: int = 0,
) -> Link:
    """Run a ``PERF_EVENT`` program on every sample of a perf event (``SEC("perf_event")``).

    Args:
        type: ``perf_type_id`` (:class:`~ebpf.attach._abi.PerfType`: ``SOFTWARE``,
            ``HARDWARE``, ...), or a dynamic PMU's type number.
        config: the event within the type (e.g. ``PERF_COUNT_SW_CPU_CLOCK`` = 0).
        sample_period: sample every N events; or ``sample_freq``: N samples per second.
        pid: the process to sample (-1: all, with a ``cpu``).
        cpu: the CPU to sample (-1: any, with a ``pid``).

    Raises:
        SyscallError: ``ENOENT``/``EOPNOTSUPP`` for an event this machine does not have
            (no hardware PMU in many VMs).

    Requires Linux >= 4.9 (as a BPF link: 5.15).
    """
    if (sample_period is None) == (sample_freq is None):
        raise ValueError("give exactly one of sample_period and sample_freq")
    if pid == -1 and cpu == -1:
        raise ValueError("pid and cpu cannot both be -1")
    attr = _abi.PerfEventAttr(type=int(type), config=config, wakeup_events=1)
    if sample_freq is not None:
        attr.sample_period = sample_freq
        attr.flags = _abi.PERF_FLAG_FREQ
    else:
        assert sample_period is not None
        attr.sample_period = sample_period
    fd = _open_perf(attr, pid, cpu, f"perf event type {type} config {config}")
    return perf_link(program, fd, kind=f"perf_event {type}:{config} cpu {cpu}", cookie=cookie)
