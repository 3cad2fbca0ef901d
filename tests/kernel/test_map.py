"""kernel.Map logic with a scripted bpf() backend: errno -> typed errors, pin compatibility, names."""

from __future__ import annotations

import ctypes
import errno
import struct

import pytest

from ebpf.errors import KeyNotFoundError, SyscallError
from ebpf.kernel.map import Map, MapInfo, _compat_differences, sanitize_name
from ebpf.kernel.uapi import Cmd, MapCreateAttr
from ebpf.maps import InvalidMapArgumentError, KeyExistsError, MapFullError, MapOperationNotSupportedError
from ebpf.spec import MapSpec, MapType

from ._fakes import FakeKernel

SPEC = MapSpec("m", MapType.HASH, key_size=4, value_size=4, max_entries=1)


def _created(fake: FakeKernel) -> Map:
    fake.on(Cmd.MAP_CREATE, lambda attr: fake.new_fd())
    return Map.create(SPEC)


@pytest.mark.parametrize(
    ("code", "op", "error"),
    [
        (errno.ENOENT, "lookup", KeyNotFoundError),
        (errno.EEXIST, "update", KeyExistsError),
        (errno.E2BIG, "update", MapFullError),
        (errno.EINVAL, "delete", InvalidMapArgumentError),
        (errno.EOPNOTSUPP, "delete", MapOperationNotSupportedError),
        (524, "lookup", MapOperationNotSupportedError),
    ],
)
def test_errno_becomes_the_user_space_error(fake_kernel: FakeKernel, code: int, op: str, error: type) -> None:
    with _created(fake_kernel) as m:
        for cmd in (Cmd.MAP_LOOKUP_ELEM, Cmd.MAP_UPDATE_ELEM, Cmd.MAP_DELETE_ELEM):
            fake_kernel.on(cmd, lambda attr: -code)
        key = struct.pack("=I", 1)
        with pytest.raises(error) as info:
            if op == "lookup":
                m.lookup(key)
            elif op == "update":
                m.update(key, key)
            else:
                m.delete(key)
        assert isinstance(info.value.__cause__, SyscallError)
        assert "map:m" in str(info.value)


def test_create_passes_the_spec(fake_kernel: FakeKernel) -> None:
    spec = MapSpec(
        "a-very-long-map-name", MapType.BLOOM_FILTER, 0, 8, 100, flags=0x40, map_extra=3, numa_node=0
    )
    fake_kernel.on(Cmd.MAP_CREATE, lambda attr: fake_kernel.new_fd())
    with Map.create(spec) as m:
        assert m.name == spec.name
    ((_cmd, attr),) = fake_kernel.calls
    assert isinstance(attr, MapCreateAttr)
    assert (attr.map_type, attr.value_size, attr.max_entries, attr.map_flags, attr.map_extra) == (
        30,
        8,
        100,
        0x40,
        3,
    )
    assert attr.map_name == b"a_very_long_map"


def test_sizes_are_checked_before_the_syscall(fake_kernel: FakeKernel) -> None:
    with _created(fake_kernel) as m:
        with pytest.raises(InvalidMapArgumentError, match="key is 2 bytes, expected key_size 4"):
            m.lookup(b"ab")
        with pytest.raises(InvalidMapArgumentError, match="value is 1 bytes"):
            m.update(b"abcd", b"x")
    assert fake_kernel.commands() == [Cmd.MAP_CREATE]


def test_get_next_key_walks_until_enoent(fake_kernel: FakeKernel) -> None:
    keys = [b"\1\0\0\0", b"\2\0\0\0"]

    def next_key(attr: ctypes.Structure) -> int:
        current = ctypes.string_at(attr.key, 4) if attr.key else None  # type: ignore[attr-defined]
        pos = 0 if current is None else keys.index(current) + 1
        if pos >= len(keys):
            return -errno.ENOENT
        ctypes.memmove(attr.next_key, keys[pos], 4)  # type: ignore[attr-defined]
        return 0

    with _created(fake_kernel) as m:
        fake_kernel.on(Cmd.MAP_GET_NEXT_KEY, next_key)
        assert list(m) == keys


def test_pin_compatibility_names_every_difference() -> None:
    info = MapInfo(1, MapType.ARRAY, "x", 4, 8, 10, 0, 0, 0, 0, 0, 0, 0)
    spec = MapSpec("x", MapType.HASH, key_size=4, value_size=4, max_entries=10, flags=1)
    assert _compat_differences(info, spec) == [
        "type (pinned ARRAY, spec HASH)",
        "value_size (pinned 8, spec 4)",
        "flags (pinned 0x0, spec 0x1)",
    ]


def test_sanitize_name() -> None:
    assert sanitize_name("my-map!") == "my_map_"
    assert sanitize_name("x" * 20) == "x" * 15
