"""Model-based tests: HASH and ARRAY against a dict model of the kernel's rules (Hypothesis)."""

from __future__ import annotations

import struct

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ebpf.errors import KeyNotFoundError
from ebpf.maps import (
    InvalidMapArgumentError,
    KeyExistsError,
    MapDef,
    MapFullError,
    create,
)
from ebpf.spec import MapType
from ebpf.vm.memory import Memory

MAX = 4
keys = st.integers(0, 7).map(lambda i: struct.pack("<I", i))
values = st.binary(min_size=4, max_size=4)
flags = st.sampled_from([0, 1, 2])


class HashModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.mem = Memory()
        self.map = create(MapDef(MapType.HASH, 4, 4, MAX), self.mem)
        self.model: dict[bytes, bytes] = {}

    @rule(key=keys, value=values, flag=flags)
    def update(self, key: bytes, value: bytes, flag: int) -> None:
        exists = key in self.model
        if flag == 1 and exists:
            expected: type[Exception] | None = KeyExistsError
        elif flag == 2 and not exists:
            expected = KeyNotFoundError
        elif not exists and len(self.model) >= MAX:
            expected = MapFullError
        else:
            expected = None
        try:
            self.map.update(key, value, flag)
        except (KeyExistsError, KeyNotFoundError, MapFullError) as err:
            assert expected is not None and isinstance(err, expected)
        else:
            assert expected is None
            self.model[key] = value

    @rule(key=keys)
    def delete(self, key: bytes) -> None:
        try:
            self.map.delete(key)
        except KeyNotFoundError:
            assert key not in self.model
        else:
            del self.model[key]

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def store_through_pointer(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.model)))
        value = data.draw(values)
        addr = self.map.value_address(key)
        assert addr is not None
        self.mem.write_bytes(addr, value)
        self.model[key] = value

    @invariant()
    def same_contents(self) -> None:
        assert dict(self.map.items()) == self.model
        assert len(self.map) == len(self.model)
        assert len(self.mem) == len(self.model)  # one region per live element

    def teardown(self) -> None:
        self.map.close()


class ArrayModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.mem = Memory()
        self.map = create(MapDef(MapType.ARRAY, 4, 4, MAX), self.mem)
        self.model = {struct.pack("<I", i): bytes(4) for i in range(MAX)}

    @rule(key=keys, value=values, flag=flags)
    def update(self, key: bytes, value: bytes, flag: int) -> None:
        try:
            self.map.update(key, value, flag)
        except MapFullError:
            assert key not in self.model
        except KeyExistsError:
            assert flag == 1 and key in self.model
        else:
            assert key in self.model and flag != 1
            self.model[key] = value

    @rule(key=keys)
    def delete(self, key: bytes) -> None:
        try:
            self.map.delete(key)
        except InvalidMapArgumentError:
            pass
        else:
            raise AssertionError("array delete must fail")

    @rule(key=keys, value=values)
    def store_through_pointer(self, key: bytes, value: bytes) -> None:
        addr = self.map.value_address(key)
        assert (addr is None) == (key not in self.model)
        if addr is not None:
            self.mem.write_bytes(addr, value)
            self.model[key] = value

    @invariant()
    def same_contents(self) -> None:
        assert self.map.items() == sorted(self.model.items())

    def teardown(self) -> None:
        self.map.close()


TestHashModel = HashModel.TestCase
TestHashModel.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestArrayModel = ArrayModel.TestCase
TestArrayModel.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
