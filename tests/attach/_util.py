"""Test helpers: programs with an expected attach type / BTF target, and small array maps.

Uses the kernel layer's committed primitives only (``bpf()``, ``uapi`` structs), so the attach
tests do not depend on the collection loader.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

from ebpf.errors import SyscallError
from ebpf.isa.asm import assemble
from ebpf.kernel import Program
from ebpf.kernel.map import Map
from ebpf.spec import AttachType, MapSpec, MapType, ProgramType


def load(
    text: str,
    prog_type: ProgramType,
    *,
    attach_type: AttachType | None = None,
    attach_btf_id: int = 0,
    license: str = "GPL",
    name: str | None = None,
) -> Program:
    """Assemble ``text`` and load it with ``kernel.Program.load`` (expected attach type and
    BTF target included). Programs are named :func:`program_name` unless ``name`` is given."""
    if name is None:
        name = program_name()
    return Program.load(
        assemble(text),
        prog_type,
        license=license,
        name=name,
        expected_attach_type=int(attach_type) if attach_type is not None else None,
        attach_btf_id=attach_btf_id,
    )


class ArrayMap:
    """A map made with ``kernel.Map.create`` (ARRAY of u64 by default), indexed by int keys."""

    def __init__(
        self, max_entries: int = 4, value_size: int = 8, map_type: MapType = MapType.ARRAY, key_size: int = 4
    ) -> None:
        spec = MapSpec(
            name="attach_test",
            type=map_type,
            key_size=key_size,
            value_size=value_size,
            max_entries=max_entries,
        )
        self.map = Map.create(spec)
        self.value_size = value_size
        self.key_size = key_size

    @property
    def fd(self) -> int:
        return self.map.fd

    def _key(self, index: int) -> bytes:
        return index.to_bytes(self.key_size, sys.byteorder, signed=index < 0)

    def get_bytes(self, index: int) -> bytes:
        """The raw value (raises SyscallError / KeyNotFoundError like the kernel map does)."""
        return self.map.lookup(self._key(index))

    def __getitem__(self, index: int) -> int:
        return int.from_bytes(self.get_bytes(index)[:8], sys.byteorder)

    def __setitem__(self, index: int, value: int | bytes) -> None:
        data = value if isinstance(value, bytes) else value.to_bytes(self.value_size, sys.byteorder)
        self.map.update(self._key(index), data)

    def close(self) -> None:
        self.map.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def program_name() -> str:
    """The name of this test process's programs (the session check finds their leftover links)."""
    return f"att{os.getpid()}"


def prog_id(prog: Program) -> int:
    return prog.info().id


def links_of(prog_ids: set[int]) -> list[int]:
    """IDs of live links whose program is one of ``prog_ids`` (``BPF_LINK_GET_NEXT_ID``)."""
    from ebpf.attach import link_ids, open_link

    found = []
    for lid in link_ids():
        try:
            link = open_link(lid)
        except SyscallError:
            continue  # went away meanwhile
        with link:
            if link.info().prog_id in prog_ids:
                found.append(lid)
    return found


COUNT_INSNS = """
    {filter}
    r1 = map_fd({fd}) ll
    r2 = r10
    r2 += -4
    *(u32 *)(r10 - 4) = {slot}
    call 1
    if r0 == 0 goto out
    r1 = 1
    lock *(u64 *)(r0 + 0) += r1
out:
    r0 = {ret}
    exit
"""


def counter(fd: int, slot: int = 0, ret: int = 0, *, pid: int | None = None) -> str:
    """Assembly that adds 1 to slot ``slot`` of array map ``fd`` and returns ``ret``.

    With ``pid``, only events of that process (``bpf_get_current_pid_tgid() >> 32``) count.
    """
    filt = "" if pid is None else f"call 14\n    r0 >>= 32\n    if r0 != {pid} goto out"
    return COUNT_INSNS.format(fd=fd, slot=slot, ret=ret, filter=filt)


@contextmanager
def pid_marker() -> Iterator[int]:
    yield os.getpid()
