"""Bob Jenkins' lookup3 hash as the kernel's ``jhash`` / ``jhash2``, for hash-map buckets. Pure.

Written from the published algorithm (``include/linux/jhash.h`` documents the same one):
three 32-bit lanes start at ``0xdeadbeef + length_in_bytes + seed``, absorb the key 12 bytes
at a time with the ``mix`` step and the last 1..12 bytes with the ``final`` step; a key of
length 0 returns the initial lane ``c``. ``jhash2`` is the same over whole 32-bit words
(the kernel's ``htab_map_hash`` uses it when ``key_size`` is a multiple of 4), which reads
each word in the CPU's byte order (little-endian here) exactly as ``jhash`` does.
"""

from __future__ import annotations

__all__ = ["htab_hash", "jhash"]

_M = 0xFFFFFFFF
JHASH_INITVAL = 0xDEADBEEF


def _rol(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _M


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = (a - c) & _M
    a ^= _rol(c, 4)
    c = (c + b) & _M
    b = (b - a) & _M
    b ^= _rol(a, 6)
    a = (a + c) & _M
    c = (c - b) & _M
    c ^= _rol(b, 8)
    b = (b + a) & _M
    a = (a - c) & _M
    a ^= _rol(c, 16)
    c = (c + b) & _M
    b = (b - a) & _M
    b ^= _rol(a, 19)
    a = (a + c) & _M
    c = (c - b) & _M
    c ^= _rol(b, 4)
    b = (b + a) & _M
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    c ^= b
    c = (c - _rol(b, 14)) & _M
    a ^= c
    a = (a - _rol(c, 11)) & _M
    b ^= a
    b = (b - _rol(a, 25)) & _M
    c ^= b
    c = (c - _rol(b, 16)) & _M
    a ^= c
    a = (a - _rol(c, 4)) & _M
    b ^= a
    b = (b - _rol(a, 14)) & _M
    c ^= b
    c = (c - _rol(b, 24)) & _M
    return c


def jhash(key: bytes, seed: int = 0) -> int:
    """``jhash(key, len(key), seed)``: the 32-bit lookup3 hash of ``key``."""
    n = len(key)
    a = b = c = (JHASH_INITVAL + n + seed) & _M
    pos = 0
    while n - pos > 12:
        a = (a + int.from_bytes(key[pos : pos + 4], "little")) & _M
        b = (b + int.from_bytes(key[pos + 4 : pos + 8], "little")) & _M
        c = (c + int.from_bytes(key[pos + 8 : pos + 12], "little")) & _M
        a, b, c = _mix(a, b, c)
        pos += 12
    tail = key[pos:]
    if not tail:
        return c
    tail = tail.ljust(12, b"\0")  # the missing bytes add nothing
    a = (a + int.from_bytes(tail[0:4], "little")) & _M
    b = (b + int.from_bytes(tail[4:8], "little")) & _M
    c = (c + int.from_bytes(tail[8:12], "little")) & _M
    return _final(a, b, c)


def htab_hash(key: bytes, seed: int = 0) -> int:
    """The kernel's ``htab_map_hash``: ``jhash2`` over words when the size is a multiple of 4.

    ``jhash2`` over ``n`` words equals ``jhash`` over the same ``4 n`` little-endian bytes
    (same initial value, same lanes), so one implementation serves both.
    """
    return jhash(key, seed)
