"""QUEUE / STACK: order, full behaviour (E2BIG, BPF_EXIST replaces the oldest), errors."""

from __future__ import annotations

import errno

import pytest

from ebpf.errors import KeyNotFoundError
from ebpf.maps import (
    BPF_EXIST,
    BPF_NOEXIST,
    InvalidMapArgumentError,
    MapDef,
    MapFullError,
    MapOperationNotSupportedError,
    QueueMap,
    StackMap,
    create,
)
from ebpf.spec import MapType


def qs(mtype: MapType, max_entries: int = 3) -> QueueMap:
    m = create(MapDef(mtype, 0, 1, max_entries))
    assert isinstance(m, QueueMap)
    return m


def test_queue_is_fifo() -> None:
    with qs(MapType.QUEUE) as q:
        for c in b"abc":
            q.push(bytes([c]))
        assert len(q) == 3 and q.peek() == b"a" and q.lookup(b"") == b"a"
        assert [q.pop(), q.pop(), q.lookup_and_delete()] == [b"a", b"b", b"c"]
        with pytest.raises(KeyNotFoundError):
            q.pop()
        with pytest.raises(KeyNotFoundError):
            q.peek()


def test_stack_is_lifo() -> None:
    s = qs(MapType.STACK)
    assert isinstance(s, StackMap)
    for c in b"abc":
        s.update(b"", bytes([c]))
    assert s.peek() == b"c"
    assert [s.pop(), s.pop(), s.pop()] == [b"c", b"b", b"a"]


@pytest.mark.parametrize(("mtype", "order"), [(MapType.QUEUE, b"bcd"), (MapType.STACK, b"dcb")])
def test_full(mtype: MapType, order: bytes) -> None:
    m = qs(mtype)
    for c in b"abc":
        m.push(bytes([c]))
    with pytest.raises(MapFullError) as exc:
        m.push(b"d")
    assert exc.value.errno == errno.E2BIG
    m.push(b"d", BPF_EXIST)  # drops the oldest ("a"), for a stack too
    assert bytes(m.pop()[0] for _ in range(3)) == order


def test_errors() -> None:
    m = qs(MapType.QUEUE)
    with pytest.raises(InvalidMapArgumentError):
        m.push(b"a", BPF_NOEXIST)
    with pytest.raises(InvalidMapArgumentError, match="value is 2 bytes, expected value_size 1"):
        m.push(b"ab")
    with pytest.raises(InvalidMapArgumentError, match="key is 4 bytes, expected key_size 0"):
        m.update(b"\0\0\0\0", b"a")
    for op in (lambda: m.delete(b""), lambda: m.get_next_key(None), lambda: list(m)):
        with pytest.raises(MapOperationNotSupportedError) as exc:
            op()
        assert exc.value.errno == errno.EINVAL
    assert m.value_address(b"") is None


@pytest.mark.parametrize("mtype", [MapType.QUEUE, MapType.STACK])
@pytest.mark.parametrize(("key_size", "value_size", "max_entries"), [(4, 1, 1), (0, 0, 1), (0, 1, 0)])
def test_create_rejects(mtype: MapType, key_size: int, value_size: int, max_entries: int) -> None:
    with pytest.raises(InvalidMapArgumentError) as exc:
        create(MapDef(mtype, key_size, value_size, max_entries))
    assert exc.value.errno == errno.EINVAL
