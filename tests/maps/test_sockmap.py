"""SOCKMAP / SOCKHASH in user space: the kernel's creation rules, empty-map answers, no sockets.

The expected errnos are what Linux 6.18 answered (tests/differential/test_progtypes_kernel.py
checks them against the kernel again).
"""

from __future__ import annotations

import errno
import os
import socket
import struct

import pytest

from ebpf.errors import KeyNotFoundError, NotSupportedError
from ebpf.maps import MapDef, MapError, create
from ebpf.maps.sockmap import SocketMapNotSupportedError, SockHashMap, SockMap
from ebpf.spec import MapType

SOCKMAP, SOCKHASH = MapType.SOCKMAP, MapType.SOCKHASH


def make(t: MapType, key: int = 4, value: int = 8, entries: int = 4, flags: int = 0) -> SockMap | SockHashMap:
    m = create(MapDef(t, key, value, entries, flags))
    assert isinstance(m, SockMap | SockHashMap)
    return m


@pytest.mark.parametrize(
    ("t", "key", "value", "entries", "flags"),
    [
        (SOCKMAP, 8, 8, 4, 0),  # SOCKMAP keys are u32 indexes
        (SOCKMAP, 2, 4, 4, 0),
        (SOCKHASH, 0, 4, 4, 0),
        (SOCKMAP, 4, 16, 4, 0),  # value: a u32 or u64 fd
        (SOCKHASH, 4, 2, 4, 0),
        (SOCKMAP, 4, 4, 0, 0),
        (SOCKHASH, 4, 4, 4, 1),  # BPF_F_NO_PREALLOC
        (SOCKMAP, 4, 4, 4, 1 << 7),  # BPF_F_RDONLY_PROG
        (SOCKHASH, 4, 4, 4, 1 << 8),  # BPF_F_WRONLY_PROG
        (SOCKMAP, 4, 4, 4, 1 << 10),  # BPF_F_MMAPABLE
    ],
)
def test_creation_rules(t: MapType, key: int, value: int, entries: int, flags: int) -> None:
    with pytest.raises(MapError) as info:
        make(t, key, value, entries, flags)
    assert info.value.errno == errno.EINVAL


def test_sockhash_takes_any_key_size() -> None:
    with make(SOCKHASH, key=64) as m:
        assert len(m) == 0 and list(m) == []


@pytest.mark.parametrize("t", [SOCKMAP, SOCKHASH])
@pytest.mark.parametrize("value", [4, 8])
def test_dict_view_is_empty(t: MapType, value: int) -> None:
    with make(t, value=value) as m:
        assert (len(m), m.keys(), m.items(), bytes(4) in m) == (0, [], [], False)


@pytest.mark.parametrize("t", [SOCKMAP, SOCKHASH])
def test_empty_answers(t: MapType) -> None:
    with make(t, value=8) as m:
        with pytest.raises(KeyNotFoundError):
            m.lookup(bytes(4))
        assert m.value_address(bytes(4)) is None  # a program's lookup: NULL
    with make(t, value=4) as m, pytest.raises(MapError) as info:
        m.lookup(struct.pack("<I", 9))  # the syscall answers with 8-byte cookies
    assert info.value.errno == errno.ENOSPC


def test_sockmap_walks_indexes_and_deletes_nothing() -> None:
    with make(SOCKMAP, entries=3) as m:
        assert m.get_next_key(None) == struct.pack("<I", 0)
        assert m.get_next_key(struct.pack("<I", 1)) == struct.pack("<I", 2)
        assert m.get_next_key(struct.pack("<I", 7)) == struct.pack("<I", 0)
        with pytest.raises(KeyNotFoundError):
            m.get_next_key(struct.pack("<I", 2))
        for index in (0, 9):
            with pytest.raises(MapError) as info:
                m.delete(struct.pack("<I", index))
            assert info.value.errno == errno.EINVAL


def test_sockhash_is_empty() -> None:
    with make(SOCKHASH) as m:
        for key in (None, bytes(4)):
            with pytest.raises(KeyNotFoundError):
                m.get_next_key(key)
        with pytest.raises(KeyNotFoundError):
            m.delete(bytes(4))


@pytest.mark.parametrize("t", [SOCKMAP, SOCKHASH])
@pytest.mark.parametrize("what", ["file", "closed", "socket", "huge"])
def test_no_sockets_to_store(t: MapType, what: str) -> None:
    with open(os.devnull, "rb") as f, socket.socket() as sock, make(t, value=4) as m:
        value, err = {
            "file": (f.fileno(), errno.ENOTSOCK),
            "closed": (999_999, errno.EBADF),
            "socket": (sock.fileno(), errno.EOPNOTSUPP),  # the kernel's answer for this one too
            "huge": (0xFFFFFFFF, errno.EINVAL),
        }[what]
        with pytest.raises(SocketMapNotSupportedError) as info:
            m.update(bytes(4), struct.pack("<I", value))
        assert isinstance(info.value, NotSupportedError) and info.value.errno == err
        assert len(m) == 0


@pytest.mark.parametrize("t", [SOCKMAP, SOCKHASH])
@pytest.mark.parametrize(("flag", "op"), [(3, "update"), (3, "delete"), (4, "lookup"), (4, "get_next_key")])
def test_rdonly_wronly(t: MapType, flag: int, op: str) -> None:
    """BPF_F_RDONLY (1 << 3) refuses writes, BPF_F_WRONLY (1 << 4) reads: EPERM first."""
    with make(t, value=4, flags=1 << flag) as m, pytest.raises(MapError) as info:
        if op == "update":
            m.update(bytes(4), bytes(4))
        elif op == "delete":
            m.delete(bytes(4))
        elif op == "lookup":
            m.lookup(bytes(4))
        else:
            m.get_next_key(None)
    assert info.value.errno == errno.EPERM
