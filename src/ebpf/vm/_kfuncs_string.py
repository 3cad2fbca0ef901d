"""String kfuncs of the user-space runtime (``bpf_strcmp``, ``bpf_strlen``, ``bpf_strstr`` ...).

Core layer: pure, no kernel access.

Rule 1 (Linux 6.17+, ``kernel/bpf/helpers.c``): the strings are read byte by byte as
``copy_from_kernel_nofault`` would, at most ``XATTR_SIZE_MAX`` (65536) bytes: a string that
does not end by then is ``-E2BIG``, a byte that cannot be read ``-EFAULT``, and a string whose
first byte is outside the kernel's half of the address space ``-ERANGE``. Here "readable" means
mapped in the runtime's memory (which stands for kernel memory); an unmapped pointer below the
x86-64 kernel half is ``-ERANGE``, one in it ``-EFAULT``.

Rule 2: bytes compare as the kernel's ``char``, which is unsigned (the kernel is built with
``-funsigned-char``; measured): ``bpf_strcmp`` returns -1, 0 or 1; ``bpf_strcasecmp`` lowers
both sides with the kernel's Latin-1 ``tolower``; the ``char c`` arguments are the low byte of
the register, ``bpf_strrchr``'s ``int c`` its low 32 bits as a signed int. Positions are returned as ``int`` (r0's upper
half zero, see :mod:`ebpf.vm.kfuncs`); a missing character or substring is ``-ENOENT``.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from ebpf.errors import VMError
from ebpf.vm.helpers import HelperEnv, HelperFn
from ebpf.vm.kfuncs import NO_FLAGS, KfuncFlag, KfuncRegistry

__all__ = ["XATTR_SIZE_MAX", "register"]

M32 = 0xFFFFFFFF
M64 = (1 << 64) - 1
XATTR_SIZE_MAX = 65536  # include/uapi/linux/limits.h: the longest string the kfuncs walk
_KERNEL_START = 0xFFFF_8000_0000_0000  # x86-64, 4-level paging


class _Fault(Exception):
    """A byte of a string could not be read (-EFAULT)."""


def _int(value: int) -> int:
    """``value`` as a C function returning ``int`` leaves it in r0."""
    return value & M32


def _lower(b: int) -> int:
    """The kernel's ``tolower`` (lib/ctype.c: ASCII and Latin-1 capitals)."""
    if 0x41 <= b <= 0x5A or 0xC0 <= b <= 0xDE and b != 0xD7:
        return b + 32
    return b


class _Reader:
    """Byte ``i`` of the string at ``address``, fetched a page at a time."""

    def __init__(self, env: HelperEnv, address: int) -> None:
        self.memory = env.memory
        self.address = address
        self.chunk = b""
        self.start = 0

    def __getitem__(self, i: int) -> int:
        j = i - self.start
        if not 0 <= j < len(self.chunk):
            address = (self.address + i) & M64
            region = self.memory.find(address)
            if region is None:
                raise _Fault
            self.start = i
            self.chunk = self.memory.read_bytes(address, min(region.end - address, 4096))
            j = 0
        return self.chunk[j]


def _allowed(env: HelperEnv, *pointers: int) -> int:
    """0, or the error of a pointer whose first byte cannot be read (-ERANGE / -EFAULT)."""
    for ptr in pointers:
        if env.memory.find(ptr) is None:
            return -errno.ERANGE if ptr < _KERNEL_START else -errno.EFAULT
    return 0


def _run(env: HelperEnv, pointers: tuple[int, ...], fn: Callable[..., int]) -> int:
    """``fn`` on readers of the strings at ``pointers``: the ERANGE check first (each string's
    first byte), then -EFAULT for any byte that cannot be read."""
    err = _allowed(env, *pointers)
    if err:
        return _int(err)
    try:
        return _int(fn(*(_Reader(env, p) for p in pointers)))
    except (_Fault, VMError):
        return _int(-errno.EFAULT)


def _compare(s1: _Reader, s2: _Reader, fold: bool) -> int:
    for i in range(XATTR_SIZE_MAX):
        c1, c2 = s1[i], s2[i]
        if fold:
            c1, c2 = _lower(c1), _lower(c2)
        if c1 != c2:
            return -1 if c1 < c2 else 1
        if c1 == 0:
            return 0
    return -errno.E2BIG


def _nchr(s: _Reader, count: int, c: int) -> int:
    i = 0
    while i < count and i < XATTR_SIZE_MAX:
        sc = s[i]
        if sc == c:
            return i
        if sc == 0:
            return -errno.ENOENT
        i += 1
    return -errno.E2BIG if i == XATTR_SIZE_MAX else -errno.ENOENT


def _chrnul(s: _Reader, c: int) -> int:
    for i in range(XATTR_SIZE_MAX):
        sc = s[i]
        if sc == 0 or sc == c:
            return i
    return -errno.E2BIG


def _rchr(s: _Reader, c: int) -> int:
    last = -errno.ENOENT
    for i in range(XATTR_SIZE_MAX):
        sc = s[i]
        if sc == c:
            last = i
        if sc == 0:
            return last
    return -errno.E2BIG


def _nlen(s: _Reader, count: int) -> int:
    i = 0
    while i < count and i < XATTR_SIZE_MAX:
        if s[i] == 0:
            return i
        i += 1
    return -errno.E2BIG if i == XATTR_SIZE_MAX else i


def _span(s: _Reader, chars: _Reader, accept: bool) -> int:
    for i in range(XATTR_SIZE_MAX):
        cs = s[i]
        if cs == 0:
            return i
        j = 0
        while j < XATTR_SIZE_MAX:
            ca = chars[j]
            if cs == ca or ca == 0:
                break
            j += 1
        if j == XATTR_SIZE_MAX:
            return -errno.E2BIG
        if (ca == 0) == accept:  # strspn: a byte not accepted; strcspn: a rejected byte
            return i
    return -errno.E2BIG


def _nstr(s1: _Reader, s2: _Reader, length: int) -> int:
    for i in range(XATTR_SIZE_MAX):
        j = 0
        while i + j <= length and j < XATTR_SIZE_MAX:
            c2 = s2[j]
            if c2 == 0:
                return i
            if i + j == length:
                break
            c1 = s1[i + j]
            if c1 == 0:
                return -errno.ENOENT
            if c1 != c2:
                break
            j += 1
        if j == XATTR_SIZE_MAX:
            return -errno.E2BIG
        if i + j == length:
            return -errno.ENOENT
    return -errno.E2BIG


def _char(c: int) -> int:
    return c & 0xFF


def _s32(c: int) -> int:
    c &= M32
    return c - (1 << 32) if c >> 31 else c


def strcmp(env: HelperEnv, s1: int, s2: int, _c: int, _d: int, _e: int) -> int:
    return _run(env, (s1, s2), lambda a, b: _compare(a, b, False))


def strcasecmp(env: HelperEnv, s1: int, s2: int, _c: int, _d: int, _e: int) -> int:
    return _run(env, (s1, s2), lambda a, b: _compare(a, b, True))


def strnchr(env: HelperEnv, s: int, count: int, c: int, _d: int, _e: int) -> int:
    return _run(env, (s,), lambda a: _nchr(a, count, _char(c)))


def strchr(env: HelperEnv, s: int, c: int, _c: int, _d: int, _e: int) -> int:
    return _run(env, (s,), lambda a: _nchr(a, XATTR_SIZE_MAX, _char(c)))


def strchrnul(env: HelperEnv, s: int, c: int, _c: int, _d: int, _e: int) -> int:
    return _run(env, (s,), lambda a: _chrnul(a, _char(c)))


def strrchr(env: HelperEnv, s: int, c: int, _c: int, _d: int, _e: int) -> int:
    return _run(env, (s,), lambda a: _rchr(a, _s32(c)))


def strnlen(env: HelperEnv, s: int, count: int, _c: int, _d: int, _e: int) -> int:
    return _run(env, (s,), lambda a: _nlen(a, count))


def strlen(env: HelperEnv, s: int, _b: int, _c: int, _d: int, _e: int) -> int:
    return _run(env, (s,), lambda a: _nlen(a, XATTR_SIZE_MAX))


def strspn(env: HelperEnv, s: int, accept: int, _c: int, _d: int, _e: int) -> int:
    return _run(env, (s, accept), lambda a, b: _span(a, b, True))


def strcspn(env: HelperEnv, s: int, reject: int, _c: int, _d: int, _e: int) -> int:
    return _run(env, (s, reject), lambda a, b: _span(a, b, False))


def strnstr(env: HelperEnv, s1: int, s2: int, length: int, _d: int, _e: int) -> int:
    return _run(env, (s1, s2), lambda a, b: _nstr(a, b, length))


def strstr(env: HelperEnv, s1: int, s2: int, _c: int, _d: int, _e: int) -> int:
    return _run(env, (s1, s2), lambda a, b: _nstr(a, b, XATTR_SIZE_MAX))


_KFUNCS: tuple[tuple[str, HelperFn, str], ...] = (
    ("bpf_strcmp", strcmp, "int bpf_strcmp(const char *s1__ign, const char *s2__ign)"),
    ("bpf_strcasecmp", strcasecmp, "int bpf_strcasecmp(const char *s1__ign, const char *s2__ign)"),
    ("bpf_strchr", strchr, "int bpf_strchr(const char *s__ign, char c)"),
    ("bpf_strchrnul", strchrnul, "int bpf_strchrnul(const char *s__ign, char c)"),
    ("bpf_strnchr", strnchr, "int bpf_strnchr(const char *s__ign, size_t count, char c)"),
    ("bpf_strrchr", strrchr, "int bpf_strrchr(const char *s__ign, int c)"),
    ("bpf_strlen", strlen, "int bpf_strlen(const char *s__ign)"),
    ("bpf_strnlen", strnlen, "int bpf_strnlen(const char *s__ign, size_t count)"),
    ("bpf_strspn", strspn, "int bpf_strspn(const char *s__ign, const char *accept__ign)"),
    ("bpf_strcspn", strcspn, "int bpf_strcspn(const char *s__ign, const char *reject__ign)"),
    ("bpf_strstr", strstr, "int bpf_strstr(const char *s1__ign, const char *s2__ign)"),
    ("bpf_strnstr", strnstr, "int bpf_strnstr(const char *s1__ign, const char *s2__ign, size_t len)"),
)


def register(reg: KfuncRegistry, flags: KfuncFlag = NO_FLAGS) -> None:
    """Add the string kfuncs to ``reg``."""
    for name, fn, prototype in _KFUNCS:
        reg.register(name, fn, prototype, flags, unmaps_memory=False)
