"""Tracing contexts: tracepoint records (from a tracefs ``format`` file) and raw tracepoint args.

Core layer: pure, no kernel access.

Rule 1: a ``BPF_PROG_TYPE_TRACEPOINT`` program gets a pointer to the event's record exactly as
the tracing ring buffer holds it: the common fields (``common_type`` = event id,
``common_flags``, ``common_preempt_count``, ``common_pid``) then the event's fields at the
offsets the event's ``format`` file lists; ``__data_loc`` fields hold ``(length << 16) |
offset`` of data appended after the fixed part. The record is read-only, as the verifier
enforces for tracepoint contexts.

Rule 2: a ``BPF_PROG_TYPE_RAW_TRACEPOINT`` program gets a read-only array of u64 arguments
(``BPF_PROG_TEST_RUN``'s ``ctx_in``: at most ``MAX_BPF_FUNC_ARGS`` = 12 of them).
"""

from __future__ import annotations

import errno
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ebpf.errors import ParseError, TestRunError
from ebpf.vm._context_base import ContextRegion, Input, MappedInput
from ebpf.vm.memory import HostBuffer, Memory

__all__ = [
    "MAX_BPF_FUNC_ARGS",
    "RawTracepointInput",
    "TracepointField",
    "TracepointFormat",
    "TracepointInput",
    "parse_tracepoint_format",
]

MAX_BPF_FUNC_ARGS = 12

_FIELD = re.compile(
    r"^\s*field:(?P<decl>[^;]*);\s*offset:(?P<offset>\d+);\s*size:(?P<size>\d+);\s*(?:signed:(?P<signed>\d+);)?"
)


@dataclass(frozen=True)
class TracepointField:
    """One ``field:`` line: the C declaration, the field name, offset, size and signedness."""

    decl: str
    name: str
    offset: int
    size: int
    signed: bool

    @property
    def data_loc(self) -> bool:
        """A dynamic field (``__data_loc``): the slot holds ``(length << 16) | offset``."""
        return self.decl.startswith("__data_loc")


@dataclass(frozen=True)
class TracepointFormat:
    """A parsed tracefs ``events/<system>/<event>/format`` file."""

    name: str
    id: int
    fields: tuple[TracepointField, ...]

    @property
    def size(self) -> int:
        """Bytes of the fixed part of the record."""
        return max((f.offset + f.size for f in self.fields), default=0)

    def field(self, name: str) -> TracepointField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


def parse_tracepoint_format(text: str) -> TracepointFormat:
    """Parse the text of a tracefs ``format`` file.

    Raises:
        ParseError: no ``format:`` section or a malformed ``field:`` line.
    """
    name = ""
    event_id = 0
    fields: list[TracepointField] = []
    seen_format = False
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("name:"):
            name = stripped[5:].strip()
        elif stripped.startswith("ID:"):
            try:
                event_id = int(stripped[3:].strip())
            except ValueError:
                raise ParseError(f"line {lineno}: bad ID {stripped!r}", source="format") from None
        elif stripped.startswith("format:"):
            seen_format = True
        elif stripped.startswith("field:"):
            m = _FIELD.match(line)
            if m is None:
                raise ParseError(f"line {lineno}: malformed field line {stripped!r}", source="format")
            decl = m["decl"].strip()
            ident = re.search(r"(\w+)\s*(\[[^\]]*\])?\s*$", decl)
            if ident is None:
                raise ParseError(f"line {lineno}: no field name in {decl!r}", source="format")
            fields.append(
                TracepointField(decl, ident[1], int(m["offset"]), int(m["size"]), m["signed"] == "1")
            )
    if not seen_format and not fields:
        raise ParseError("not a tracepoint format file (no 'format:' section)", source="format")
    return TracepointFormat(name, event_id, tuple(fields))


@dataclass(frozen=True)
class TracepointInput(Input):
    """A tracepoint record: r1 points at a read-only copy of ``record``."""

    record: bytes

    @classmethod
    def from_format(
        cls,
        fmt: TracepointFormat | str,
        values: Mapping[str, int | bytes] | None = None,
        *,
        pid: int = 0,
        flags: int = 0,
        preempt_count: int = 0,
    ) -> TracepointInput:
        """Build the record of event ``fmt`` with field ``values`` (ints or bytes; missing: 0).

        ``common_type`` is the event's id and ``common_pid``/``common_flags``/
        ``common_preempt_count`` come from the keyword arguments unless ``values`` sets them.
        ``__data_loc`` fields take bytes, stored after the fixed part.

        Raises:
            ParseError: ``fmt`` is text that does not parse.
            ValueError: an unknown field, or a value that does not fit its field.
        """
        if isinstance(fmt, str):
            fmt = parse_tracepoint_format(fmt)
        given: dict[str, int | bytes] = {
            "common_type": fmt.id,
            "common_flags": flags,
            "common_preempt_count": preempt_count,
            "common_pid": pid,
        }
        given.update(values or {})
        names = {f.name for f in fmt.fields}
        unknown = [n for n in (values or {}) if n not in names]
        if unknown:
            raise ValueError(f"event {fmt.name!r} has no field {unknown[0]!r}")
        record = bytearray(fmt.size)
        for f in fmt.fields:
            value = given.get(f.name, 0)
            if f.data_loc:
                data = value if isinstance(value, bytes) else b""
                loc = (len(data) << 16) | len(record)
                record += data
                record[f.offset : f.offset + f.size] = loc.to_bytes(f.size, "little")
            elif isinstance(value, bytes):
                if len(value) > f.size:
                    raise ValueError(f"{f.name}: {len(value)} bytes do not fit {f.size}")
                record[f.offset : f.offset + f.size] = value.ljust(f.size, b"\0")
            else:
                lo = -(1 << (8 * f.size - 1)) if f.signed else 0
                if not lo <= value < (1 << (8 * f.size)):
                    raise ValueError(f"{f.name}: {value} does not fit {f.size} bytes")
                record[f.offset : f.offset + f.size] = (value & ((1 << (8 * f.size)) - 1)).to_bytes(
                    f.size, "little"
                )
        return cls(bytes(record))

    def map(self, memory: Memory) -> MappedInput:
        buf = HostBuffer.from_bytes(self.record) if self.record else HostBuffer(8)
        mapped = MappedInput(0, 0, None, 0, ())
        region = ContextRegion("ctx", buf, False, None, owner=mapped)
        memory.map(region)
        mapped.r1 = mapped.ctx_address = region.start
        mapped.regions = (region,)
        return mapped


_U64 = struct.Struct("<Q")


@dataclass(frozen=True)
class RawTracepointInput(Input):
    """Raw tracepoint arguments: r1 points at a read-only ``u64 args[]``."""

    args: Sequence[int] = ()

    def __post_init__(self) -> None:
        if len(self.args) > MAX_BPF_FUNC_ARGS:
            raise TestRunError(f"at most {MAX_BPF_FUNC_ARGS} raw tracepoint arguments", errno=errno.EINVAL)

    @classmethod
    def from_test_run(cls, ctx_in: bytes | None) -> RawTracepointInput:
        """``BPF_PROG_TEST_RUN`` for a raw tracepoint: ``ctx_in`` is the argument array.

        Raises:
            TestRunError: more than 12 arguments' worth of bytes (``EINVAL``).
        """
        ctx = bytes(ctx_in or b"")
        if len(ctx) > MAX_BPF_FUNC_ARGS * 8:
            raise TestRunError(
                f"ctx_in of {len(ctx)} bytes: at most {MAX_BPF_FUNC_ARGS} u64 arguments", errno=errno.EINVAL
            )
        padded = ctx.ljust(-(-len(ctx) // 8) * 8, b"\0")
        return cls(tuple(v for (v,) in _U64.iter_unpack(padded)))

    def map(self, memory: Memory) -> MappedInput:
        data = b"".join(_U64.pack(a & ((1 << 64) - 1)) for a in self.args)
        if not data:
            return MappedInput(0, 0, None, 0, ())  # no ctx_in: the kernel passes NULL
        buf = HostBuffer.from_bytes(data)
        mapped = MappedInput(0, 0, None, 0, ())
        region = ContextRegion("ctx", buf, False, None, owner=mapped)
        memory.map(region)
        mapped.r1 = mapped.ctx_address = region.start
        mapped.regions = (region,)
        return mapped
