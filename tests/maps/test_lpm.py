"""LPM_TRIE: longest match (incl. /0, /32, IPv6-size keys), post-order iteration, errors."""

from __future__ import annotations

import errno
import ipaddress

import pytest

from ebpf.errors import KeyNotFoundError, VMError
from ebpf.maps import (
    BPF_EXIST,
    BPF_NOEXIST,
    InvalidMapArgumentError,
    KeyExistsError,
    LPMTrieMap,
    MapDef,
    MapFlags,
    MapFullError,
    create,
    lpm_key,
)
from ebpf.spec import MapType
from ebpf.vm.memory import Memory

NP = MapFlags.NO_PREALLOC


def net(text: str) -> bytes:
    n = ipaddress.ip_network(text, strict=False)
    return lpm_key(n.prefixlen, n.network_address.packed)


def host(text: str) -> bytes:
    a = ipaddress.ip_address(text)
    return lpm_key(8 * len(a.packed), a.packed)


def trie(key_size: int = 8, max_entries: int = 16, memory: Memory | None = None) -> LPMTrieMap:
    m = create(MapDef(MapType.LPM_TRIE, key_size, 1, max_entries, NP, "lpm"), memory)
    assert isinstance(m, LPMTrieMap)
    return m


def test_longest_match_ipv4() -> None:
    with trie() as t:
        t[net("0.0.0.0/0")] = b"D"
        t[net("10.0.0.0/8")] = b"A"
        t[net("10.1.0.0/16")] = b"B"
        t[net("10.1.2.3/32")] = b"H"
        assert t[host("10.1.2.3")] == b"H"
        assert t[host("10.1.2.4")] == b"B"
        assert t[host("10.2.0.0")] == b"A"
        assert t[host("192.0.2.1")] == b"D"
        assert t[lpm_key(8, bytes([10, 1, 2, 3]))] == b"A"  # the key's prefixlen limits the match
        del t[net("0.0.0.0/0")]
        with pytest.raises(KeyNotFoundError):
            t.lookup(host("192.0.2.1"))
        assert net("10.1.0.0/16") in t and lpm_key(16, bytes([10, 1, 9, 9])) in t
        assert host("10.1.2.4") not in t


def test_ipv6_keys() -> None:
    with trie(key_size=20) as t:
        t[net("2001:db8::/32")] = b"a"
        t[net("2001:db8:1::/48")] = b"b"
        t[host("2001:db8:1::1")] = b"c"
        assert t[host("2001:db8:1::1")] == b"c"
        assert t[host("2001:db8:1::2")] == b"b"
        assert t[host("2001:db8:2::1")] == b"a"
        with pytest.raises(KeyNotFoundError):
            t.lookup(host("2001:db9::1"))


def test_update_flags_and_errors() -> None:
    with trie(max_entries=2) as t:
        t.update(net("10.0.0.0/8"), b"a", BPF_NOEXIST)
        with pytest.raises(KeyExistsError):
            t.update(lpm_key(8, bytes([10, 9, 9, 9])), b"b", BPF_NOEXIST)  # same /8 prefix
        with pytest.raises(KeyNotFoundError):
            t.update(net("11.0.0.0/8"), b"b", BPF_EXIST)
        t.update(lpm_key(8, bytes([10, 9, 9, 9])), b"c", BPF_EXIST)
        assert list(t) == [lpm_key(8, bytes([10, 9, 9, 9]))]  # the stored key keeps the last bytes
        with pytest.raises(InvalidMapArgumentError):
            t.update(lpm_key(33, bytes(4)), b"x")
        with pytest.raises(InvalidMapArgumentError):
            t.delete(lpm_key(33, bytes(4)))
        with pytest.raises(KeyNotFoundError):
            t.delete(net("10.0.0.0/16"))
        t[net("12.0.0.0/8")] = b"d"
        with pytest.raises(MapFullError) as full:
            t[net("13.0.0.0/8")] = b"e"
        assert full.value.errno == errno.ENOSPC
        t[net("12.0.0.0/8")] = b"f"  # replacing in a full trie is fine


def test_post_order_iteration() -> None:
    with trie() as t:
        for text in ("192.168.0.0/16", "192.168.0.0/24", "192.168.128.0/24", "192.168.1.0/24", "0.0.0.0/0"):
            t[net(text)] = b"x"
        expected = ["192.168.0.0/24", "192.168.1.0/24", "192.168.128.0/24", "192.168.0.0/16", "0.0.0.0/0"]
        assert list(t) == [net(text) for text in expected]
        assert t.get_next_key(None) == net("192.168.0.0/24")
        assert t.get_next_key(net("10.0.0.0/8")) == net("192.168.0.0/24")  # missing: restart
        assert t.get_next_key(net("192.168.128.0/24")) == net("192.168.0.0/16")
        with pytest.raises(KeyNotFoundError):
            t.get_next_key(net("0.0.0.0/0"))


@pytest.mark.parametrize(
    ("key_size", "value_size", "max_entries", "flags"),
    [(8, 1, 1, 0), (4, 1, 1, NP), (261, 1, 1, NP), (8, 0, 1, NP), (8, 1, 0, NP)],
)
def test_create_rejects(key_size: int, value_size: int, max_entries: int, flags: int) -> None:
    with pytest.raises(InvalidMapArgumentError) as exc:
        create(MapDef(MapType.LPM_TRIE, key_size, value_size, max_entries, flags))
    assert exc.value.errno == errno.EINVAL


def test_value_address_is_the_longest_match() -> None:
    mem = Memory()
    with trie(memory=mem) as t:
        t[net("10.0.0.0/8")] = b"a"
        addr = t.value_address(host("10.1.1.1"))
        assert addr is not None
        mem.store(addr, 1, ord("z"))
        assert t[net("10.0.0.0/8")] == b"z"
        assert t.value_address(host("11.0.0.0")) is None
        del t[net("10.0.0.0/8")]
        with pytest.raises(VMError):
            mem.load(addr, 1)
