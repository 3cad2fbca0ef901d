"""User-space kernel helpers for printing, strings and memory probes.

Core layer: pure, no kernel access.

Rule 1 (``bpf_bprintf_prepare`` in ``kernel/bpf/helpers.c``): ``bpf_trace_printk``,
``bpf_trace_vprintk`` and ``bpf_snprintf`` accept the kernel's format subset and refuse the
rest with ``-EINVAL``: every character printable ASCII or white space; conversions
``%[flags][width]`` with flags from ``0+- `` and then ``d i u x X`` (with ``l``/``ll``),
``c``, ``s``, ``p`` (plain; ``pK px ps pS pB``; ``pks pus``; ``pI4 pi4 pI6 pi6``); a string
conversion must be followed by the end, a space or punctuation; more conversions than
arguments is ``-EINVAL``. Output follows the kernel's ``vsnprintf`` for these conversions.

Rule 2: strings and IP addresses are read through the memory model; an unreadable string
prints as empty and an unreadable address as zeros, as the kernel's fault-tolerant copies do.
``%p`` prints the raw address as 16 hex digits (the kernel prints a per-boot hash, which
cannot be reproduced); ``%ps``/``%pS``/``%pB`` print ``0x`` and the hex address (there are
no kernel symbols in user space).

Rule 3 (``bpf_probe_read_*``): reads outside the program-visible memory fail cleanly with
``-EFAULT`` and a zeroed destination, never a ``VMError``.

Rule 4 (user reads): ``bpf_probe_read_user(_str)`` read the program's memory when the address
is in it (up to the end of its region), else the host process's own memory
(:mod:`ebpf.vm._host_memory`): a raw tracepoint or SYSCALL test run runs in the caller's
process, whose memory the kernel reads. Deterministic mode (``RunEnv.deterministic``) never
reads host memory: such reads fault. The legacy ``bpf_probe_read(_str)`` read a user-half
address (below ``TASK_SIZE``) as user memory and anything else as kernel memory, as x86-64
does (``bpf_probe_read_compat``, ``CONFIG_ARCH_HAS_NON_OVERLAPPING_ADDRESS_SPACE``).

Rule 5 (``strncpy_from_user_nofault`` on x86-64): a user string is copied a word (8 bytes) at
a time while a whole word is readable and fits, then byte by byte; the word holding the NUL is
stored with the bytes after the NUL zeroed (so up to 7 bytes past the NUL become 0), a byte
copy stores up to the NUL. The result is the length with the NUL, or ``size`` with
``dst[size - 1] = 0`` when the string does not fit; an unreadable byte before the NUL is
``-EFAULT`` with ``dst`` zeroed (measured on Linux 6.18).
"""

from __future__ import annotations

import errno

from ebpf.helpers import HelperId
from ebpf.vm import _host_memory
from ebpf.vm.helpers import M64, HelperEnv, HelperRegistry, RunEnv, run_env
from ebpf.vm.memory import Memory

__all__ = ["FormatError", "format_bprintf", "register"]

MAX_TRACE_PRINTK_VARARGS = 3
MAX_BPRINTF_VARARGS = 12
MAX_BPRINTF_BUF = 1024  # the formatted message (with its NUL)
MAX_BPRINTF_BIN_ARGS = 512  # the binary arguments, strings included
MAX_SNPRINTF_FMT = 4096
_PUNCT = frozenset(chr(c) for c in range(0x21, 0x7F) if not chr(c).isalnum())
_SPACE = frozenset(" \t\n\v\f\r")


class FormatError(Exception):
    """The format or its arguments are refused (the helper returns ``-errno``)."""

    def __init__(self, code: int = errno.EINVAL) -> None:
        super().__init__(code)
        self.errno = code


def _neg(code: int) -> int:
    return (-code) & M64


def _end_or_sep(fmt: str, i: int) -> bool:
    return i >= len(fmt) or fmt[i] in _SPACE or fmt[i] in _PUNCT


def read_string(memory: Memory, address: int, limit: int) -> bytes | None:
    """A NUL-terminated string of at most ``limit - 1`` bytes at ``address``; ``None`` on a fault."""
    if limit <= 0:
        return b""
    region = memory.find(address, 1)
    if region is None:
        return None
    off = address - region.start
    data = region.view[off : min(region.size, off + limit - 1)].tobytes()
    nul = data.find(b"\0")
    if nul >= 0:
        return data[:nul]
    if len(data) == limit - 1:
        return data  # truncated to fit, as strncpy_from_kernel_nofault does
    return None  # ran off the end of the region without a NUL


def _pad(text: str, width: int, left: bool, zero: bool) -> str:
    if len(text) >= width:
        return text
    if left:
        return text.ljust(width)
    if zero:
        sign = text[0] if text[:1] in ("-", "+", " ") else ""
        return sign + text[len(sign) :].rjust(width - len(sign), "0")
    return text.rjust(width)


def format_bprintf(fmt: bytes, args: list[int], memory: Memory) -> str:
    """Format ``fmt`` (without its NUL) with u64 ``args`` as the BPF printf helpers do.

    Raises:
        FormatError: a character, conversion or argument count the kernel refuses.
    """
    text = fmt.decode("latin-1")
    for ch in text:
        if not (0x20 <= ord(ch) < 0x7F or ch in _SPACE):
            raise FormatError
    out: list[str] = []
    used = 0  # bytes of the binary argument buffer
    nspec = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        if i + 1 < n and text[i + 1] == "%":
            out.append("%")
            i += 2
            continue
        if nspec >= len(args):
            raise FormatError
        i += 1
        left = zero = plus = space = False
        while i < n and text[i] in "0+- ":
            left |= text[i] == "-"
            zero |= text[i] == "0"
            plus |= text[i] == "+"
            space |= text[i] == " "
            i += 1
        width = 0
        if i < n and "1" <= text[i] <= "9":
            while i < n and text[i].isdigit():
                width = width * 10 + int(text[i])
                i += 1
        arg = args[nspec] & M64
        conv = text[i] if i < n else ""
        if conv == "p":
            nxt = text[i + 1] if i + 1 < n else ""
            if _end_or_sep(text, i + 1):
                piece = f"{arg:016x}"
                i += 1
                used += 8
            elif nxt in "ku" and i + 2 < n and text[i + 2] == "s":
                i += 3
                if not _end_or_sep(text, i):
                    raise FormatError
                piece, used = _string(memory, arg, used)
            elif nxt in "KxsSB":
                piece = f"{arg:016x}" if nxt in "Kx" else f"0x{arg:x}"
                i += 2
                used += 8
            elif nxt in "iI" and i + 2 < n and text[i + 2] in "46":
                piece = _ip(memory, arg, nxt, text[i + 2])
                used += len(piece) + 1
                i += 3
            else:
                raise FormatError
            out.append(_pad(piece, width, left, False))
        elif conv == "s":
            i += 1
            if not _end_or_sep(text, i):
                raise FormatError
            piece, used = _string(memory, arg, used)
            out.append(_pad(piece, width, left, False))
        elif conv == "c":
            i += 1
            used += 1
            out.append(_pad(chr(arg & 0xFF), width, left, False))
        else:
            size = 4
            if conv == "l":
                size = 8
                i += 1
                if i < n and text[i] == "l":
                    i += 1
            conv = text[i] if i < n else ""
            if conv not in ("d", "i", "u", "x", "X"):
                raise FormatError
            i += 1
            used = (used + 3) // 4 * 4 + size
            value = arg & ((1 << (8 * size)) - 1)
            if conv in "di":
                if value >> (8 * size - 1):
                    value -= 1 << (8 * size)
                piece = str(value)
                if value >= 0 and plus:
                    piece = "+" + piece
                elif value >= 0 and space:
                    piece = " " + piece
            elif conv == "u":
                piece = str(value)
            else:
                piece = f"{value:x}" if conv == "x" else f"{value:X}"
            out.append(_pad(piece, width, left, zero and not left))
        if used > MAX_BPRINTF_BIN_ARGS:
            raise FormatError(errno.ENOSPC)
        nspec += 1
    return "".join(out)


def _string(memory: Memory, address: int, used: int) -> tuple[str, int]:
    room = MAX_BPRINTF_BIN_ARGS - used
    if room <= 0:
        raise FormatError(errno.ENOSPC)
    data = read_string(memory, address, room)
    if data is None:
        data = b""
    return data.decode("latin-1"), used + len(data) + 1


def _ip(memory: Memory, address: int, style: str, version: str) -> str:
    size = 4 if version == "4" else 16
    region = memory.find(address, size)
    raw = memory.read_bytes(address, size) if region is not None else bytes(size)
    if version == "4":
        return ".".join(f"{b:03d}" if style == "i" else str(b) for b in raw)
    groups = [raw[k : k + 2].hex() for k in range(0, 16, 2)]
    return "".join(groups) if style == "i" else ":".join(groups)


def _emit(env: RunEnv, message: str) -> None:
    env.emit_trace(message[: MAX_BPRINTF_BUF - 1])


# --- the helpers ----------------------------------------------------------------------------------


def _fmt_bytes(memory: Memory, fmt: int, fmt_size: int) -> bytes | None:
    """The format up to its NUL within ``fmt_size`` bytes, or ``None`` if there is no NUL."""
    data = memory.read_bytes(fmt, fmt_size)
    nul = data.find(b"\0")
    return None if nul < 0 else data[:nul]


def trace_printk(e: HelperEnv, fmt: int, fmt_size: int, a1: int, a2: int, a3: int) -> int:
    env = run_env(e)
    raw = _fmt_bytes(env.memory, fmt, fmt_size & 0xFFFFFFFF)
    if raw is None:
        return _neg(errno.EINVAL)
    try:
        message = format_bprintf(raw, [a1, a2, a3], env.memory)
    except FormatError as err:
        return _neg(err.errno)
    _emit(env, message)
    return len(message)


def _varargs(env: RunEnv, data: int, data_len: int) -> list[int] | None:
    data_len &= 0xFFFFFFFF
    if data_len % 8 or data_len > MAX_BPRINTF_VARARGS * 8 or (not data and data_len):
        return None
    raw = env.memory.read_bytes(data, data_len) if data_len else b""
    return [int.from_bytes(raw[k : k + 8], "little") for k in range(0, data_len, 8)]


def trace_vprintk(e: HelperEnv, fmt: int, fmt_size: int, data: int, data_len: int, _e: int) -> int:
    env = run_env(e)
    args = _varargs(env, data, data_len)
    raw = _fmt_bytes(env.memory, fmt, fmt_size & 0xFFFFFFFF)
    if args is None or raw is None:
        return _neg(errno.EINVAL)
    try:
        message = format_bprintf(raw, args, env.memory)
    except FormatError as err:
        return _neg(err.errno)
    _emit(env, message)
    return len(message)


def snprintf(e: HelperEnv, out: int, out_size: int, fmt: int, data: int, data_len: int) -> int:
    """``bpf_snprintf``: the formatted length including the NUL (or ``-errno``)."""
    env = run_env(e)
    out_size &= 0xFFFFFFFF
    args = _varargs(env, data, data_len)
    if args is None:
        return _neg(errno.EINVAL)
    raw = read_string(env.memory, fmt, MAX_SNPRINTF_FMT)
    if raw is None:
        return _neg(errno.EINVAL)
    try:
        message = format_bprintf(raw, args, env.memory)
    except FormatError as err:
        return _neg(err.errno)
    encoded = message.encode("latin-1")
    if out_size:
        env.memory.write_bytes(out, encoded[: out_size - 1] + b"\0")
    return len(encoded) + 1


def strncmp(e: HelperEnv, s1: int, s1_size: int, s2: int, _d: int, _e: int) -> int:
    """``bpf_strncmp``: the kernel's ``strncmp`` (-1, 0 or 1) over at most ``s1_size`` bytes."""
    env = run_env(e)
    s1_size &= 0xFFFFFFFF
    a = env.memory.read_bytes(s1, s1_size)
    for k in range(s1_size):
        c1 = a[k]
        c2 = env.memory.load(s2 + k, 1)
        if c1 != c2:
            return _neg(1) if c1 < c2 else 1
        if c1 == 0:
            return 0
    return 0


_USER_END = 0x0000_7FFF_FFFF_F000  # x86-64 TASK_SIZE_MAX
_KERNEL_START = 0xFFFF_8000_0000_0000  # first canonical kernel-half address


def _kernel_read_error(src: int) -> int:
    """What ``copy_from_kernel_nofault`` answers for an address the runtime has not mapped.

    The kernel refuses user-half and non-canonical addresses (``-ERANGE``) before trying the
    read; an unmapped kernel-half address faults (``-EFAULT``).
    """
    return _neg(errno.EFAULT) if src >= _KERNEL_START else _neg(errno.ERANGE)


def _user_bytes(env: RunEnv, src: int, size: int) -> bytes:
    """The readable prefix of user memory ``[src, src + size)`` (Rule 4)."""
    region = env.memory.find(src, 1)
    if region is not None:
        off = src - region.start
        return region.view[off : off + size].tobytes()
    if env.deterministic:
        return b""
    return _host_memory.read(src, size)


def _probe_read(e: HelperEnv, dst: int, size: int, src: int, _d: int, _e: int) -> int:
    """``bpf_probe_read_user``: all ``size`` bytes or a fault (``dst`` zeroed, ``-EFAULT``)."""
    env = run_env(e)
    size &= 0xFFFFFFFF
    src &= M64
    if size == 0:
        return 0
    data = _user_bytes(env, src, size)
    if len(data) < size:
        env.memory.write_bytes(dst, bytes(size))
        return _neg(errno.EFAULT)
    env.memory.write_bytes(dst, data)
    return 0


def _probe_read_kernel(e: HelperEnv, dst: int, size: int, src: int, _d: int, _e: int) -> int:
    """``bpf_probe_read_kernel``/``bpf_probe_read``: memory the runtime maps (program memory stands
    in for kernel memory); anything else fails as the kernel fails it (``-ERANGE``/``-EFAULT``)."""
    env = run_env(e)
    size &= 0xFFFFFFFF
    if size == 0:
        return 0
    if env.memory.find(src, size) is None:
        env.memory.write_bytes(dst, bytes(size))
        # starts in mapped memory but runs past it: a fault; else the kernel's address check
        return _neg(errno.EFAULT) if env.memory.find(src, 1) is not None else _kernel_read_error(src)
    env.memory.write_bytes(dst, env.memory.read_bytes(src, size))
    return 0


def strncpy_from_user(avail: bytes, count: int, limit: int) -> tuple[int, bytes]:
    """``strncpy_from_user_nofault(dst, src, count)`` over the readable prefix ``avail`` of the
    source, reading at most ``limit`` bytes (``TASK_SIZE_MAX - src``, capped at ``count``):
    ``(result, bytes stored at dst)``, ``result < 0`` being ``-EFAULT`` (Rule 5)."""
    out = bytearray()
    res = 0
    left = limit
    while left >= 8 and res + 8 <= len(avail):  # a word that faults: byte at a time from here
        word = avail[res : res + 8]
        nul = word.find(b"\0")
        if nul >= 0:
            out += word[: nul + 1] + bytes(7 - nul)
            return res + nul + 1, bytes(out)
        out += word
        res += 8
        left -= 8
    while left:
        if res >= len(avail):
            return -errno.EFAULT, b""
        out.append(avail[res])
        if avail[res] == 0:
            return res + 1, bytes(out)
        res += 1
        left -= 1
    if res < count:
        return -errno.EFAULT, b""  # stopped at TASK_SIZE_MAX before count bytes
    out[count - 1] = 0
    return count, bytes(out)


def _probe_read_str(
    e: HelperEnv, dst: int, size: int, src: int, _d: int, _e: int, *, kernel: bool = False
) -> int:
    """``strncpy_from_*_nofault``: the length with the NUL, ``size`` when truncated, or an error."""
    env = run_env(e)
    size &= 0xFFFFFFFF
    src &= M64
    if size == 0:
        return 0
    if not kernel:
        limit = min(size, max(0, _USER_END - src)) if env.memory.find(src, 1) is None else size
        result, stored = strncpy_from_user(_user_bytes(env, src, limit), size, limit)
        if result < 0:
            env.memory.write_bytes(dst, bytes(size))
            return _neg(-result)
        env.memory.write_bytes(dst, stored)
        return result
    data = read_string(env.memory, src, size)
    if data is None:
        env.memory.write_bytes(dst, bytes(size))
        return _kernel_read_error(src) if env.memory.find(src, 1) is None else _neg(errno.EFAULT)
    env.memory.write_bytes(dst, data + b"\0")
    return len(data) + 1


def _probe_read_kernel_str(e: HelperEnv, dst: int, size: int, src: int, d: int, f: int) -> int:
    return _probe_read_str(e, dst, size, src, d, f, kernel=True)


def _probe_read_compat(e: HelperEnv, dst: int, size: int, src: int, d: int, f: int) -> int:
    """Legacy ``bpf_probe_read``: user memory below ``TASK_SIZE``, else kernel memory (Rule 4)."""
    if (src & M64) < _USER_END:
        return _probe_read(e, dst, size, src, d, f)
    return _probe_read_kernel(e, dst, size, src, d, f)


def _probe_read_compat_str(e: HelperEnv, dst: int, size: int, src: int, d: int, f: int) -> int:
    """Legacy ``bpf_probe_read_str``: as :func:`_probe_read_compat`, for strings."""
    return _probe_read_str(e, dst, size, src, d, f, kernel=(src & M64) >= _USER_END)


def register(reg: HelperRegistry) -> None:
    """Add this module's helpers to ``reg``."""
    for hid, fn in (
        (HelperId.TRACE_PRINTK, trace_printk),
        (HelperId.TRACE_VPRINTK, trace_vprintk),
        (HelperId.SNPRINTF, snprintf),
        (HelperId.STRNCMP, strncmp),
        (HelperId.PROBE_READ, _probe_read_compat),
        (HelperId.PROBE_READ_KERNEL, _probe_read_kernel),
        (HelperId.PROBE_READ_USER, _probe_read),
        (HelperId.PROBE_READ_STR, _probe_read_compat_str),
        (HelperId.PROBE_READ_KERNEL_STR, _probe_read_kernel_str),
        (HelperId.PROBE_READ_USER_STR, _probe_read_str),
    ):
        reg.register(hid, f"bpf_{hid.name.lower()}", fn)
