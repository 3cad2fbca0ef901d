"""User-space kernel helpers: string parsing, cgroup and namespace ids, signals, perf counters.

Core layer: pure, no kernel access (it reads the host's ``/proc`` and cgroup2 tree, and asks a
socket of this process for its network namespace cookie, as the other host-facing helpers do).

Each helper answers as Linux 6.18 does in ``BPF_PROG_TEST_RUN`` (every rule below was measured
there; the differential tests in ``tests/differential/test_helpers_misc_kernel.py`` hold them).

Rule 1 (``bpf_strtol`` / ``bpf_strtoul``, ``kernel/bpf/helpers.c``): ``*res`` is zeroed first.
``flags`` holds the base in its low 5 bits (0, 8, 10 or 16; any other base or any higher flag
bit: ``-EINVAL``). White space (``isspace``: ``\\t\\n\\v\\f\\r``, space and Latin-1 0xA0)
is skipped, then one ``-`` (no ``+``); nothing left: ``-EINVAL``. At most 63 more bytes are
parsed (the kernel copies them into a 64-byte string): base 0 is 16 after ``0x``/``0X``
followed by a hex digit, 8 after another leading ``0``, else 10; base 16 skips a leading
``0x`` even with no digit after it. No digit: ``-EINVAL``; a value above 64 bits: ``-ERANGE``;
``bpf_strtol`` also gives ``-ERANGE`` outside ``s64``, ``bpf_strtoul`` ``-EINVAL`` for any
negative number (even ``-0``). Otherwise ``*res`` is the value and the return value is the
number of bytes consumed (white space and sign included).

Rule 2 (the socket of a test-run skb): ``bpf_prog_test_run_skb`` gives the skb a fresh dummy
socket in the caller's network namespace and cgroup, with uid 0. So ``bpf_get_socket_uid`` is
0; ``bpf_skb_cgroup_id`` is the cgroup v2 id of the task that runs the test (the runtime's
current task, :meth:`~ebpf.vm.helpers.RunEnv.current_task`) and ``bpf_skb_ancestor_cgroup_id``
its ancestor at a level (0 is the root, id 1; beyond the task's own level: 0).
``bpf_get_socket_cookie`` numbers that socket from a boot-wide counter user space cannot
read: the runtime does not have it. ``bpf_sk_cgroup_id`` & co. need a socket pointer, which
the runtime cannot produce: not provided either.

Rule 3 (``bpf_get_current_ancestor_cgroup_id``): the ancestor at ``level`` (an ``int``) of the
current task's cgroup: ids are the inode numbers of the cgroup2 directories on the path from
the root (id 1) down; a level below 0 or above the task's own: 0. The path comes from
``/proc/thread-self/cgroup`` when its directory is the task's cgroup id, else from a walk of
the cgroup2 mount (:class:`~ebpf.errors.VMError` if no directory has that id).

Rule 4 (``bpf_get_netns_cookie``): with a context, the cookie of the test run's network
namespace, i.e. this thread's (``SO_NETNS_COOKIE`` of a socket, Linux >= 5.14); with NULL,
the cookie of ``init_net``, which user space can read only from inside it (the runtime raises
:class:`~ebpf.errors.NotSupportedError` when the thread is in another namespace).

Rule 5 (``bpf_get_ns_current_pid_tgid``): ``size`` must be 8 (``struct bpf_pidns_info``),
``dev`` fit 32 bits and ``(dev, ino)`` be the ``st_dev``/``st_ino`` of the current task's pid
namespace (``/proc/self/ns/pid``; the deterministic task is taken to live in this process's
namespace), else ``-EINVAL`` with ``size`` bytes zeroed; on success ``{pid, tgid}`` of the task
(as :class:`~ebpf.vm.helpers.TaskInfo` holds them: ids in this process's namespace).

Rule 6 (``bpf_send_signal`` / ``bpf_send_signal_thread``): the signal is a ``u32``; above 64:
``-EINVAL``; to a task whose tgid is 1 (init): ``-EPERM``; else 0. The runtime never signals
anyone by surprise: it records each accepted request in the env's :class:`SignalLog`
(:func:`signal_log`), and delivers it only when :attr:`SignalLog.deliver` is set and the
current task is this process (group signal: ``os.kill``; thread signal: ``pthread_kill`` of the
Python thread whose native id is the task's pid). Signal 0 is recorded and never delivered.

Rule 7 (``bpf_perf_event_read`` / ``bpf_perf_event_read_value`` on a ``PERF_EVENT_ARRAY``):
``flags`` other than the index (low 32 bits; ``BPF_F_CURRENT_CPU`` is the running CPU):
``-EINVAL``; an index past ``max_entries``: ``-E2BIG``; an empty slot: ``-ENOENT``. The
``_value`` form needs ``size`` 24 (``struct bpf_perf_event_value``), else ``-EINVAL``, and
zeroes the buffer on every error. A filled slot holds a perf event the runtime cannot count:
:class:`~ebpf.errors.NotSupportedError`.

Not provided (measured, and not reproducible in user space): ``bpf_get_hash_recalc`` (the
kernel's flow dissector and siphash under a key chosen at boot), ``bpf_get_socket_cookie``
(Rule 2), ``bpf_get_retval`` / ``bpf_set_retval`` (Linux 6.18 allows them only in cgroup
program types that have no test run: CGROUP_SOCK, CGROUP_SOCKOPT, CGROUP_SOCK_ADDR...).
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import socket
import struct
import threading
import weakref
from dataclasses import dataclass, field

from ebpf.errors import NotSupportedError, VMError
from ebpf.helpers import HelperId
from ebpf.spec import MapType
from ebpf.vm._context_skb import SkbMapped
from ebpf.vm._helpers_net import context_of
from ebpf.vm.helpers import M64, HelperEnv, HelperFn, HelperRegistry, RunEnv, TaskInfo, run_env

__all__ = [
    "SignalLog",
    "SignalRequest",
    "cgroup_ancestors",
    "parse_strtox",
    "register",
    "signal_log",
]

M32 = (1 << 32) - 1
S64_MAX = (1 << 63) - 1


def _err(code: int) -> int:
    return -code & M64


# --- Rule 1: bpf_strtol / bpf_strtoul --------------------------------------------------------------

BPF_STRTOX_BASE_MASK = 0x1F
_SPACE = frozenset(b"\t\n\v\f\r \xa0")  # the kernel's isspace (lib/ctype.c: 9-13, 32, 160)
_HEX = frozenset(b"0123456789abcdefABCDEF")
_STR_MAX = 63  # char str[64] with its NUL


def _digit(c: int) -> int:
    if 0x30 <= c <= 0x39:
        return c - 0x30
    lc = c | 0x20
    if 0x61 <= lc <= 0x66:
        return lc - 0x61 + 10
    return 99


def parse_strtox(buf: bytes, flags: int) -> tuple[int, int, bool]:
    """The kernel's ``__bpf_strtoull``: ``(consumed or -errno, value, negative)`` (Rule 1)."""
    base = flags & BPF_STRTOX_BASE_MASK
    if not buf or base not in (0, 8, 10, 16) or flags & ~BPF_STRTOX_BASE_MASK & M64:
        return -errno.EINVAL, 0, False
    pos = 0
    while pos < len(buf) and buf[pos] in _SPACE:
        pos += 1
    negative = pos < len(buf) and buf[pos] == 0x2D
    if negative:
        pos += 1
    if pos == len(buf):
        return -errno.EINVAL, 0, negative
    s = buf[pos : pos + _STR_MAX] + b"\0\0\0"  # NUL-terminated, as the kernel's copy
    i = 0
    if base == 0:
        if s[0] == 0x30:
            base = 16 if s[1] | 0x20 == 0x78 and s[2] in _HEX else 8
        else:
            base = 10
    if base == 16 and s[0] == 0x30 and s[1] | 0x20 == 0x78:
        i = 2
    value = 0
    digits = 0
    end = min(len(buf) - pos, _STR_MAX)
    while i < end:
        d = _digit(s[i])
        if d >= base:
            break
        value = value * base + d
        digits += 1
        i += 1
    if value > M64:
        return -errno.ERANGE, 0, negative
    if not digits:
        return -errno.EINVAL, 0, negative
    return pos + i, value, negative


def _strtox(signed: bool) -> HelperFn:
    def helper(e: HelperEnv, buf: int, buf_len: int, flags: int, res: int, _e: int) -> int:
        env = run_env(e)
        env.memory.write_bytes(res, bytes(8))
        data = env.memory.read_bytes(buf, buf_len & M64) if buf_len else b""
        consumed, value, negative = parse_strtox(data, flags)
        if consumed < 0:
            return _err(-consumed)
        if signed:
            if negative:
                if value > S64_MAX + 1:
                    return _err(errno.ERANGE)
                value = -value
            elif value > S64_MAX:
                return _err(errno.ERANGE)
        elif negative:
            return _err(errno.EINVAL)
        env.memory.write_bytes(res, struct.pack("<Q", value & M64))
        return consumed

    return helper


# --- cgroups (Rules 2 and 3) -----------------------------------------------------------------------


def _cgroup2_mount() -> str | None:
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[2] == "cgroup2":
                    return parts[1]
    except OSError:
        pass
    return None


def _chain(mount: str, rel: str) -> tuple[int, ...]:
    ids = [os.stat(mount).st_ino]
    path = mount
    for part in [p for p in rel.split("/") if p]:
        path = os.path.join(path, part)
        ids.append(os.stat(path).st_ino)
    return tuple(ids)


def cgroup_ancestors(cgroup_id: int) -> tuple[int, ...]:
    """The cgroup v2 ids from the root (1) down to ``cgroup_id`` (Rule 3).

    Raises:
        VMError: no cgroup2 directory of this machine has that id.
    """
    mount = _cgroup2_mount()
    if mount is None:
        if cgroup_id == 1:
            return (1,)
        raise VMError(f"cgroup id {cgroup_id}: no cgroup2 file system is mounted")
    try:
        with open("/proc/thread-self/cgroup") as f:
            rel = next((line[3:].strip() for line in f if line.startswith("0::")), None)
        if rel is not None:
            chain = _chain(mount, rel)
            if chain[-1] == cgroup_id:
                return chain
    except OSError:
        pass
    try:
        if os.stat(mount).st_ino == cgroup_id:
            return (cgroup_id,)
        for root, dirs, _files in os.walk(mount):
            for d in dirs:
                path = os.path.join(root, d)
                if os.stat(path).st_ino == cgroup_id:
                    return _chain(mount, os.path.relpath(path, mount))
    except OSError:
        pass
    raise VMError(f"cgroup id {cgroup_id} is no cgroup2 directory under {mount}")


def _ancestor(task: TaskInfo, level: int) -> int:
    level &= M32
    if level >> 31:  # an int below 0
        return 0
    chain = cgroup_ancestors(task.cgroup_id)
    return chain[level] if level < len(chain) else 0


def current_ancestor_cgroup_id(e: HelperEnv, level: int, _b: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_get_current_ancestor_cgroup_id`` (Rule 3)."""
    return _ancestor(run_env(e).current_task(), level)


def skb_cgroup_id(e: HelperEnv, ctx: int, _b: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_skb_cgroup_id``: the cgroup of the test run's socket (Rule 2)."""
    env = run_env(e)
    context_of(env, ctx, SkbMapped, "bpf_skb_cgroup_id")
    return env.current_task().cgroup_id


def skb_ancestor_cgroup_id(e: HelperEnv, ctx: int, level: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_skb_ancestor_cgroup_id`` (Rule 2)."""
    env = run_env(e)
    context_of(env, ctx, SkbMapped, "bpf_skb_ancestor_cgroup_id")
    return _ancestor(env.current_task(), level)


def get_socket_uid(e: HelperEnv, ctx: int, _b: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_get_socket_uid``: 0, the uid of the test run's socket (Rule 2)."""
    context_of(run_env(e), ctx, SkbMapped, "bpf_get_socket_uid")
    return 0


# --- namespaces (Rules 4 and 5) --------------------------------------------------------------------

SO_NETNS_COOKIE = 71
PROC_NET_INIT_INO = 0xEFFFFFF9  # init_net's inode number (include/linux/proc_ns.h)


@functools.cache
def _netns_cookie(netns_ino: int) -> int:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            raw = s.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8)
    except OSError as err:
        raise NotSupportedError("SO_NETNS_COOKIE (bpf_get_netns_cookie)", "5.14", detail=str(err)) from None
    return int(struct.unpack("<Q", raw)[0])


def _netns_ino() -> int:
    try:
        return os.stat("/proc/thread-self/ns/net").st_ino
    except OSError as err:
        raise NotSupportedError("network namespaces (bpf_get_netns_cookie)", detail=str(err)) from None


def get_netns_cookie(e: HelperEnv, ctx: int, _b: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_get_netns_cookie`` (Rule 4)."""
    env = run_env(e)
    ino = _netns_ino()
    if ctx:
        context_of(env, ctx, SkbMapped, "bpf_get_netns_cookie")
    elif ino != PROC_NET_INIT_INO:
        raise NotSupportedError(
            "bpf_get_netns_cookie(NULL) outside the initial network namespace",
            detail="it returns init_net's cookie, which user space reads only from inside init_net",
        )
    return _netns_cookie(ino)


BPF_PIDNS_INFO_SIZE = 8


def _pid_namespace() -> tuple[int, int]:
    st = os.stat("/proc/self/ns/pid")
    return st.st_dev, st.st_ino


def get_ns_current_pid_tgid(e: HelperEnv, dev: int, ino: int, nsdata: int, size: int, _e: int) -> int:
    """``bpf_get_ns_current_pid_tgid`` (Rule 5)."""
    env = run_env(e)
    size &= M32
    if size == BPF_PIDNS_INFO_SIZE and dev <= M32:
        try:
            ns = _pid_namespace()
        except OSError as err:
            raise NotSupportedError("pid namespaces (bpf_get_ns_current_pid_tgid)", detail=str(err)) from None
        if (dev, ino) == ns:
            task = env.current_task()
            env.memory.write_bytes(nsdata, struct.pack("<II", task.pid & M32, task.tgid & M32))
            return 0
    if size:
        env.memory.write_bytes(nsdata, bytes(size))
    return _err(errno.EINVAL)


# --- Rule 6: signals ------------------------------------------------------------------------------

_NSIG = 64


@dataclass(frozen=True)
class SignalRequest:
    """One accepted ``bpf_send_signal*`` call: the signal, whether it was for the thread only,
    and the task it was for."""

    sig: int
    thread: bool
    pid: int
    tgid: int
    delivered: bool = False


@dataclass
class SignalLog:
    """The signals programs asked for in one :class:`~ebpf.vm.helpers.RunEnv` (Rule 6).

    Attributes:
        requests: every accepted request, oldest first (clear it as you like).
        deliver: also deliver them to the current task when it is this process (off by default).
    """

    requests: list[SignalRequest] = field(default_factory=list)
    deliver: bool = False


_LOGS: weakref.WeakKeyDictionary[RunEnv, SignalLog] = weakref.WeakKeyDictionary()


def signal_log(env: RunEnv) -> SignalLog:
    """The :class:`SignalLog` of ``env`` (created empty on first use)."""
    log = _LOGS.get(env)
    if log is None:
        log = _LOGS[env] = SignalLog()
    return log


def _deliver(task: TaskInfo, sig: int, thread: bool) -> bool:
    if sig == 0 or task.tgid != os.getpid():
        return False
    if not thread:
        os.kill(os.getpid(), sig)
        return True
    target = next((t for t in threading.enumerate() if t.native_id == task.pid), None)
    if target is None or target.ident is None:
        return False
    signal.pthread_kill(target.ident, sig)
    return True


def _send_signal(thread: bool) -> HelperFn:
    def helper(e: HelperEnv, sig: int, _b: int, _c: int, _d: int, _e: int) -> int:
        env = run_env(e)
        sig &= M32
        task = env.current_task()
        if task.tgid == 1:
            return _err(errno.EPERM)
        if sig > _NSIG:
            return _err(errno.EINVAL)
        log = signal_log(env)
        delivered = _deliver(task, sig, thread) if log.deliver else False
        log.requests.append(SignalRequest(sig, thread, task.pid, task.tgid, delivered))
        return 0

    return helper


# --- Rule 7: perf counters ------------------------------------------------------------------------

BPF_F_INDEX_MASK = 0xFFFFFFFF
BPF_F_CURRENT_CPU = BPF_F_INDEX_MASK
PERF_EVENT_VALUE_SIZE = 24


def _perf_counter(env: RunEnv, map_ptr: int, flags: int, helper: str) -> int:
    """0 (never: a filled slot raises) or the negative errno of the kernel's checks."""
    m = env.map_at(map_ptr)
    if m.type != MapType.PERF_EVENT_ARRAY:
        raise VMError(f"{helper}: map {m.name!r} is a {m.type.name}, not a PERF_EVENT_ARRAY")
    if flags & ~BPF_F_INDEX_MASK:
        return -errno.EINVAL
    index = env.cpu if flags == BPF_F_CURRENT_CPU else flags
    if index >= m.max_entries:
        return -errno.E2BIG
    if getattr(m, "buffer", lambda _i: None)(index) is None:
        return -errno.ENOENT
    raise NotSupportedError(
        f"{helper} on a filled perf event array slot",
        detail="the user-space runtime has no hardware or software perf counters to read",
    )


def perf_event_read(e: HelperEnv, map_ptr: int, flags: int, _c: int, _d: int, _e: int) -> int:
    """``bpf_perf_event_read`` (Rule 7)."""
    return _perf_counter(run_env(e), map_ptr, flags, "bpf_perf_event_read") & M64


def perf_event_read_value(e: HelperEnv, map_ptr: int, flags: int, buf: int, size: int, _e: int) -> int:
    """``bpf_perf_event_read_value`` (Rule 7)."""
    env = run_env(e)
    size &= M32
    err = -errno.EINVAL
    if size == PERF_EVENT_VALUE_SIZE:
        err = _perf_counter(env, map_ptr, flags, "bpf_perf_event_read_value")
    env.memory.write_bytes(buf, bytes(size))
    return err & M64


def register(reg: HelperRegistry) -> None:
    """Add this module's helpers to ``reg``."""
    h = HelperId
    for helper_id, fn in (
        (h.STRTOL, _strtox(True)),
        (h.STRTOUL, _strtox(False)),
        (h.GET_SOCKET_UID, get_socket_uid),
        (h.SKB_CGROUP_ID, skb_cgroup_id),
        (h.SKB_ANCESTOR_CGROUP_ID, skb_ancestor_cgroup_id),
        (h.GET_CURRENT_ANCESTOR_CGROUP_ID, current_ancestor_cgroup_id),
        (h.GET_NETNS_COOKIE, get_netns_cookie),
        (h.GET_NS_CURRENT_PID_TGID, get_ns_current_pid_tgid),
        (h.SEND_SIGNAL, _send_signal(False)),
        (h.SEND_SIGNAL_THREAD, _send_signal(True)),
        (h.PERF_EVENT_READ, perf_event_read),
        (h.PERF_EVENT_READ_VALUE, perf_event_read_value),
    ):
        reg.register(helper_id, f"bpf_{helper_id.name.lower()}", fn)
