"""BTF in the kernel: loading an object's BTF, the kernel's own BTF, and listing BTF objects.

Calls bpf(2). This is the only module of ``ebpf`` that reads ``/sys/kernel/btf/vmlinux``.

Rule 1: :class:`KernelBTF` owns one BTF descriptor (``BPF_BTF_LOAD`` or
``BPF_BTF_GET_FD_BY_ID``); a context manager, ``close()`` idempotent, leaks warn.

Rule 2: clang's ``.BTF`` is not loadable as is: data section sizes and variable offsets
are 0 (the linker fixes them in ELF, not in BTF) and externs have ``extern`` linkage.
:func:`fixup_for_kernel` does what libbpf does before ``BPF_BTF_LOAD``: DATASEC sizes and
VAR offsets from the ELF's section sizes and symbol values, extern VARs of ``.kconfig``
become allocated globals, extern FUNCs become global ones, ``.ksyms`` entries become allocated 4-byte ints (function
externs point at one dummy VAR), and the VARs of every DATASEC are sorted by offset.

Rule 3: the kernel's BTF is parsed once per process (:func:`vmlinux_spec`) and its name
index is cached on disk under ``$XDG_CACHE_HOME/ebpf`` (or ``~/.cache/ebpf``), keyed by a
SHA-256 of the BTF's bytes, so a later process resolves names (kfuncs, ksyms, attach
targets) without parsing all of it (:func:`vmlinux_index`).
"""

from __future__ import annotations

import bisect
import ctypes
import errno as _errno
import hashlib
import itertools
import marshal
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

from ebpf import btf as _btf
from ebpf.errors import BTFError, SyscallError
from ebpf.kernel._syscall import bpf
from ebpf.kernel.fd import FD
from ebpf.kernel.uapi import BpfBtfInfo, BtfLoadAttr, Cmd, GetIdAttr, ObjInfoAttr

__all__ = [
    "VMLINUX_PATH",
    "BTFInfo",
    "KernelBTF",
    "KernelBTFError",
    "VmlinuxIndex",
    "btf_ids",
    "cache_dir",
    "fixup_for_kernel",
    "list_btf",
    "vmlinux_bytes",
    "vmlinux_index",
    "vmlinux_spec",
]

VMLINUX_PATH = "/sys/kernel/btf/vmlinux"
_DEFAULT_LOG_SIZE = 64 * 1024
_MAX_LOG_SIZE = (2**32 - 1) >> 2
_INDEX_FORMAT = 4


class KernelBTFError(BTFError):
    """The kernel refused a BTF blob (``BPF_BTF_LOAD``); ``log`` holds the kernel's BTF log."""

    def __init__(self, message: str, log: tuple[str, ...]) -> None:
        super().__init__(message)
        self.log = log

    def __str__(self) -> str:
        tail = [line for line in self.log if line.strip()][-3:]
        return str(self.args[0]) + (": " + " | ".join(tail) if tail else "")


@dataclass(frozen=True, slots=True)
class BTFInfo:
    """What the kernel reports about a BTF object (``struct bpf_btf_info``)."""

    id: int
    name: str
    size: int
    kernel_btf: bool


class KernelBTF:
    """A BTF object in the kernel. Owns its descriptor; use as a context manager."""

    def __init__(self, fd: FD, *, spec: _btf.Spec | None = None) -> None:
        self._fd = fd
        self.spec = spec
        self.log: tuple[str, ...] = ()

    @classmethod
    def load(
        cls,
        data: _btf.Spec | bytes,
        *,
        log_level: int = 0,
        log_size: int = _DEFAULT_LOG_SIZE,
    ) -> KernelBTF:
        """``BPF_BTF_LOAD`` of ``data`` (a Spec is encoded in host byte order).

        A failed load without a log is retried with ``log_level=1``; a log buffer that is too
        small is grown (``ENOSPC``) like the program verifier's.

        Raises:
            KernelBTFError: the kernel rejected the BTF (with its log).
            SyscallError: bpf() failed otherwise (permissions, memory).
        """
        if isinstance(data, _btf.Spec):
            spec: _btf.Spec | None = data
            blob = data.to_bytes(byteorder="little" if _host_little() else "big")
        else:
            spec, blob = None, bytes(data)
        buf = (ctypes.c_char * len(blob)).from_buffer_copy(blob)
        level, size = log_level, log_size
        first: SyscallError | None = None
        while True:
            log_buf = ctypes.create_string_buffer(size) if level else None
            attr = BtfLoadAttr(
                btf=ctypes.addressof(buf),
                btf_size=len(blob),
                btf_log_level=level,
                btf_log_size=size if log_buf is not None else 0,
                btf_log_buf=ctypes.addressof(log_buf) if log_buf is not None else 0,
            )
            try:
                raw = bpf(Cmd.BTF_LOAD, attr)
            except SyscallError as err:
                if err.errno == _errno.ENOSPC and log_buf is not None and size < _MAX_LOG_SIZE:
                    size = min(_MAX_LOG_SIZE, max(size * 2, int(attr.btf_log_true_size)))
                    continue
                if log_buf is None and first is None and err.errno in (_errno.EINVAL, _errno.E2BIG):
                    first, level = err, 1
                    continue
                log = _lines(log_buf)
                if err.errno in (_errno.EINVAL, _errno.E2BIG) or log:
                    raise KernelBTFError(f"the kernel rejected the BTF ({err})", log) from err
                raise
            kbtf = cls(FD(raw), spec=spec)
            kbtf.log = _lines(log_buf)
            return kbtf

    @classmethod
    def from_id(cls, btf_id: int) -> KernelBTF:
        """Open the BTF object with ID ``btf_id`` (``BPF_BTF_GET_FD_BY_ID``)."""
        return cls(FD(bpf(Cmd.BTF_GET_FD_BY_ID, GetIdAttr(btf_id=btf_id))))

    @property
    def fd(self) -> int:
        return self._fd.fileno()

    @property
    def closed(self) -> bool:
        return self._fd.closed

    def close(self) -> None:
        self._fd.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return "KernelBTF(closed)" if self.closed else f"KernelBTF(fd={self.fd})"

    def info(self) -> BTFInfo:
        """``BPF_OBJ_GET_INFO_BY_FD`` on the BTF object."""
        return _btf_info(self.fd)[0]

    def raw(self) -> bytes:
        """The BTF blob as the kernel holds it."""
        return _btf_info(self.fd, want_data=True)[1]

    def to_spec(self, *, base: _btf.Spec | None = None) -> _btf.Spec:
        """Parse the blob the kernel holds (``base`` is needed for split module BTF)."""
        if self.spec is not None:
            return self.spec
        data = self.raw()
        if base is not None:
            raise BTFError("split (module) BTF is not supported yet")
        return _btf.Spec.from_bytes(data, source=f"BTF object {self.info().id}")


def _host_little() -> bool:
    return sys.byteorder == "little"


def _lines(buf: ctypes.Array[ctypes.c_char] | None) -> tuple[str, ...]:
    if buf is None:
        return ()
    return tuple(line for line in buf.value.decode("utf-8", "replace").splitlines() if line.strip())


def _btf_info(fd: int, *, want_data: bool = False) -> tuple[BTFInfo, bytes]:
    name = ctypes.create_string_buffer(64)
    raw = BpfBtfInfo(name=ctypes.addressof(name), name_len=len(name))
    bpf(
        Cmd.OBJ_GET_INFO_BY_FD,
        ObjInfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(raw), info=ctypes.addressof(raw)),
    )
    data = b""
    if want_data:
        size = int(raw.btf_size)
        dbuf = ctypes.create_string_buffer(max(1, size))
        raw2 = BpfBtfInfo(btf=ctypes.addressof(dbuf), btf_size=size)
        bpf(
            Cmd.OBJ_GET_INFO_BY_FD,
            ObjInfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(raw2), info=ctypes.addressof(raw2)),
        )
        data = dbuf.raw[:size]
    info = BTFInfo(
        id=int(raw.id),
        name=name.value.decode("utf-8", "replace"),
        size=int(raw.btf_size),
        kernel_btf=bool(raw.kernel_btf),
    )
    return info, data


def btf_ids() -> Iterator[int]:
    """The IDs of every BTF object in the kernel, increasing (``BPF_BTF_GET_NEXT_ID``)."""
    current = 0
    while True:
        attr = GetIdAttr(start_id=current)
        try:
            bpf(Cmd.BTF_GET_NEXT_ID, attr)
        except SyscallError as err:
            if err.errno == _errno.ENOENT:
                return
            raise
        current = int(attr.next_id)
        yield current


def list_btf() -> list[BTFInfo]:
    """Every BTF object the kernel holds (vmlinux, modules, programs' BTF), like ``bpftool btf list``."""
    out = []
    for btf_id in btf_ids():
        try:
            with KernelBTF.from_id(btf_id) as kbtf:
                out.append(kbtf.info())
        except SyscallError as err:
            if err.errno == _errno.ENOENT:  # freed meanwhile
                continue
            raise
    return out


# --- the kernel's own BTF ---------------------------------------------------------------------


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ebpf``, or ``~/.cache/ebpf``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ebpf"


@cache
def vmlinux_bytes() -> bytes:
    """The raw bytes of ``/sys/kernel/btf/vmlinux`` (read once per process).

    Raises:
        NotSupportedError: the kernel exposes no BTF (CONFIG_DEBUG_INFO_BTF).
    """
    try:
        return Path(VMLINUX_PATH).read_bytes()
    except OSError as err:
        from ebpf.errors import NotSupportedError

        raise NotSupportedError(
            "kernel BTF",
            "5.4",
            detail=f"cannot read {VMLINUX_PATH} ({err.strerror}); needs CONFIG_DEBUG_INFO_BTF",
        ) from err


_VMLINUX: _btf.Spec | None = None


def vmlinux_spec() -> _btf.Spec:
    """The kernel's BTF, once per process.

    With a valid on-disk index (:func:`vmlinux_index`) the spec is *lazy*: each type is
    decoded from the raw bytes on first access (the cache holds every type's offset), the
    name lookups come from the index, and CO-RE's candidate index is seeded from it, so a
    process that relocates a few dozen accesses decodes a few hundred types instead of
    ~130,000. Without the cache the whole blob is parsed (and the cache written).
    """
    global _VMLINUX
    if _VMLINUX is None:
        index = vmlinux_index()
        if index.offsets is not None:
            _VMLINUX = _lazy_spec(vmlinux_bytes(), index)
        else:  # pragma: no cover - vmlinux_index always fills offsets
            _VMLINUX = _btf.Spec.from_bytes(vmlinux_bytes(), source=VMLINUX_PATH)
        _seed_core_index(_VMLINUX, index)
    return _VMLINUX


class NameTable(Mapping[str, list[int]]):
    """``name -> [type ids]`` over a sorted name list and two flat id arrays.

    The on-disk form loads in a fraction of a dict's time (a list of strings and two byte
    strings); lookups bisect the sorted names.
    """

    def __init__(self, keys: list[str], starts: bytes, ids: bytes) -> None:
        from array import array

        self._keys = keys
        self._starts = array("I")
        self._starts.frombytes(starts)
        self._ids = array("I")
        self._ids.frombytes(ids)

    @classmethod
    def from_dict(cls, names: Mapping[str, list[int]]) -> NameTable:
        from array import array

        keys = sorted(names)
        starts, ids = array("I", [0]), array("I")
        for key in keys:
            ids.extend(names[key])
            starts.append(len(ids))
        return cls(keys, starts.tobytes(), ids.tobytes())

    def to_payload(self) -> tuple[list[str], bytes, bytes]:
        return self._keys, self._starts.tobytes(), self._ids.tobytes()

    def _find(self, name: str) -> int:
        i = bisect.bisect_left(self._keys, name)
        return i if i < len(self._keys) and self._keys[i] == name else -1

    def __getitem__(self, name: str) -> list[int]:
        i = self._find(name)
        if i < 0:
            raise KeyError(name)
        return list(self._ids[self._starts[i] : self._starts[i + 1]])

    def get(self, name: str, default: Any = None) -> Any:
        i = self._find(name)
        return default if i < 0 else list(self._ids[self._starts[i] : self._starts[i + 1]])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._find(name) >= 0

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


class _Overlay(Mapping[str, list[int]]):
    """``top`` entries shadow ``base`` ones (CO-RE's essential-name buckets over the names)."""

    def __init__(self, top: Mapping[str, list[int]], base: Mapping[str, list[int]]) -> None:
        self._top, self._base = top, base

    def __getitem__(self, name: str) -> list[int]:
        found = self._top.get(name)
        return found if found is not None else self._base[name]

    def get(self, name: str, default: Any = None) -> Any:
        found = self._top.get(name)
        return found if found is not None else self._base.get(name, default)

    def __iter__(self) -> Iterator[str]:
        yield from self._top
        yield from (k for k in self._base if k not in self._top)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class VmlinuxIndex:
    """The kernel's BTF type index: ``name -> [type ids]``, every type's kind and byte offset.

    Built from the parsed spec once, then loaded from the on-disk cache by later processes.
    """

    def __init__(
        self,
        names: Mapping[str, list[int]],
        kinds: bytes,
        digest: str,
        offsets: bytes | None = None,
        essential: dict[str, list[int]] | None = None,
    ) -> None:
        self.names = names
        self.kinds = kinds
        """``kinds[type_id]`` is the BTF kind of the type (0 for Void)."""
        self.digest = digest
        self.offsets = offsets
        """Word offset of every type in the type section (plus the end), as native uint32s."""
        self.essential = essential or {}
        """CO-RE candidates for names whose ``___flavor`` suffix drops (only those differ)."""

    def ids(self, name: str, kind: _btf.Kind | None = None) -> tuple[int, ...]:
        """Type ids called ``name`` (of ``kind`` if given)."""
        kinds = self.kinds
        return tuple(i for i in self.names.get(name, ()) if kind is None or kinds[i] == int(kind))

    def find(self, name: str, kind: _btf.Kind) -> int | None:
        """The first type id of ``kind`` called ``name``, or ``None``."""
        ids = self.ids(name, kind)
        return ids[0] if ids else None


_INDEX: VmlinuxIndex | None = None


def vmlinux_index(*, use_cache: bool = True) -> VmlinuxIndex:
    """The kernel's BTF name index: in-process, else from the disk cache, else built and saved.

    Building it walks the type headers once (no type objects); the cache then saves the walk.
    """
    global _INDEX
    if _INDEX is not None:
        return _INDEX
    data = vmlinux_bytes()
    digest = hashlib.sha256(data).hexdigest()
    path = cache_dir() / f"vmlinux-{digest[:32]}.index"
    if use_cache:
        try:
            payload = marshal.loads(path.read_bytes())
            if isinstance(payload, tuple) and payload[0] == _INDEX_FORMAT and payload[1] == digest:
                _, _, keys, starts, ids, kinds, offsets, essential = payload
                _INDEX = VmlinuxIndex(NameTable(keys, starts, ids), kinds, digest, offsets, essential)
                return _INDEX
        except (OSError, ValueError, EOFError, TypeError, IndexError):
            pass
    names, kinds, offsets = _walk_types(data)
    essential = _essential_names(names)
    table = NameTable.from_dict(names)
    _INDEX = VmlinuxIndex(table, kinds, digest, offsets, essential)
    if use_cache:
        _save(path, marshal.dumps((_INDEX_FORMAT, digest, *table.to_payload(), kinds, offsets, essential)))
    return _INDEX


def _essential_names(names: Mapping[str, list[int]]) -> dict[str, list[int]]:
    """CO-RE's buckets (essential name -> ids) that differ from the plain name buckets."""
    try:
        from ebpf.btf.core import essential_name
    except ImportError:  # pragma: no cover
        return {}
    merged: dict[str, list[int]] = {}
    for name, ids in names.items():
        if "___" in name:
            key = essential_name(name)
            if key != name:
                merged.setdefault(key, list(names.get(key, ()))).extend(ids)
    for ids in merged.values():
        ids.sort()
    return merged


# Words after the 3-word header, per kind (Documentation/bpf/btf.rst §2.2); vlen-scaled kinds
# are in _PER_VLEN.
_EXTRA_WORDS = {1: 1, 3: 3, 14: 1, 17: 1}  # INT, ARRAY, VAR, DECL_TAG
_PER_VLEN = {4: 3, 5: 3, 6: 2, 13: 2, 15: 3, 19: 3}  # STRUCT UNION ENUM FUNC_PROTO DATASEC ENUM64


def _walk_types(data: bytes) -> tuple[dict[str, list[int]], bytes, bytes]:
    """One pass over the type headers: names -> ids, each type's kind, each type's word offset.

    No type objects are built (that is what makes a cold start cheaper than a full parse);
    the lazy spec decodes the types a caller touches, checking each as the parser does.
    """
    from array import array

    from ebpf.btf.parse import parse_header

    order, _, type_start, type_len, str_start, str_len = parse_header(data, source=VMLINUX_PATH)
    words = array("I")
    words.frombytes(data[type_start : type_start + type_len])
    if order != sys.byteorder:
        words.byteswap()
    strings = data[str_start : str_start + str_len]
    offsets = array("I")
    kinds = bytearray(1)  # Void
    names: dict[str, list[int]] = {}
    name_at: dict[int, str] = {}
    extra, per_vlen = _EXTRA_WORDS, _PER_VLEN
    i, n, type_id = 0, len(words), 1
    try:
        while i < n:
            offsets.append(i)
            name_off = words[i]
            info = words[i + 1]
            kind = (info >> 24) & 0x1F
            kinds.append(kind)
            if name_off:
                name = name_at.get(name_off)
                if name is None:
                    end = strings.index(b"\0", name_off)
                    name = name_at[name_off] = strings[name_off:end].decode("utf-8", "replace")
                bucket = names.get(name)
                if bucket is None:
                    names[name] = [type_id]
                else:
                    bucket.append(type_id)
            i += 3 + extra.get(kind, 0) + per_vlen.get(kind, 0) * (info & 0xFFFF)
            type_id += 1
    except (IndexError, ValueError) as err:
        raise BTFError(f"malformed kernel BTF near type [{type_id}]: {err}", source=VMLINUX_PATH) from None
    if i != n:
        raise BTFError(f"kernel BTF: type [{type_id - 1}] overruns the type section", source=VMLINUX_PATH)
    offsets.append(i)
    return names, bytes(kinds), offsets.tobytes()


class _LazyTypes(Sequence[_btf.Type]):
    """The types of a BTF blob, each decoded on first access."""

    def __init__(self, data: bytes, offsets: bytes, source: str) -> None:
        from array import array

        from ebpf.btf.parse import parse_header
        from ebpf.btf.spec import StringTable

        order, _, type_start, type_len, str_start, str_len = parse_header(data, source=source)
        words = array("I")
        words.frombytes(data[type_start : type_start + type_len])
        if order != sys.byteorder:
            words.byteswap()
        offs = array("I")
        offs.frombytes(offsets)
        self._words = words
        self._offsets = offs
        self._type_start = type_start
        self._source = source
        self.order = order
        self.strings = StringTable(data[str_start : str_start + str_len])
        self._decoded: list[_btf.Type | None] = [_btf.Void()] + [None] * (len(offs) - 1)

    def __len__(self) -> int:
        return len(self._decoded)

    def _decode(self, type_id: int) -> _btf.Type:
        lo = self._offsets[type_id - 1]
        t = decode_type(self._words, lo, self.strings.lookup)
        self._decoded[type_id] = t
        return t

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self))))
        t = self._decoded[index]
        if t is None:
            if index < 0:
                index += len(self)
            t = self._decode(index)
        return t

    def __iter__(self) -> Iterator[_btf.Type]:
        for type_id in range(len(self._decoded)):
            yield self[type_id]

    def __eq__(self, other: object) -> bool:
        return tuple(self) == tuple(other) if isinstance(other, Sequence) else NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))


_ENCODINGS = {
    int(e): e
    for e in (_btf.IntEncoding.NONE, _btf.IntEncoding.SIGNED, _btf.IntEncoding.CHAR, _btf.IntEncoding.BOOL)
}
_FUNC_LINKAGES = tuple(_btf.FuncLinkage)
_VAR_LINKAGES = tuple(_btf.VarLinkage)


def decode_type(w: Sequence[int], i: int, name_of: Callable[[int], str]) -> _btf.Type:
    """Decode the one BTF type whose header starts at word ``i`` of type section ``w``.

    The kernel's encoding (Documentation/bpf/btf.rst §2); used on a blob the kernel itself
    produced, so only the structure is checked (an unknown kind is a BTFError).
    """
    name_off, info, size = w[i], w[i + 1], w[i + 2]
    kind = (info >> 24) & 0x1F
    vlen = info & 0xFFFF
    kflag = bool(info >> 31)
    name = name_of(name_off) if name_off else ""
    d = i + 3
    if kind == 1:
        extra = w[d]
        return _btf.Int(name, size, _ENCODINGS[extra >> 24], (extra >> 16) & 0xFF, extra & 0xFF)
    if kind == 2:
        return _btf.Pointer(size)
    if kind == 3:
        return _btf.Array(w[d], w[d + 1], w[d + 2])
    if kind in (4, 5):
        members = []
        for j in range(d, d + 3 * vlen, 3):
            bits = w[j + 2]
            mname = name_of(w[j]) if w[j] else ""
            if kflag:
                members.append(_btf.Member(mname, w[j + 1], bits & 0xFFFFFF, bits >> 24))
            else:
                members.append(_btf.Member(mname, w[j + 1], bits))
        cls: type[_btf.Struct | _btf.Union] = _btf.Struct if kind == 4 else _btf.Union
        return cls(name, size, tuple(members), kflag)
    if kind in (6, 19):
        step = 2 if kind == 6 else 3
        values = []
        for j in range(d, d + step * vlen, step):
            if kind == 6:
                v = w[j + 1]
                if kflag and v & 0x80000000:
                    v -= 1 << 32
            else:
                v = w[j + 1] | w[j + 2] << 32
                if kflag and v >> 63:
                    v -= 1 << 64
            values.append(_btf.EnumValue(name_of(w[j]) if w[j] else "", v))
        enum_cls: type[_btf.Enum | _btf.Enum64] = _btf.Enum if kind == 6 else _btf.Enum64
        return enum_cls(name, size, tuple(values), kflag)
    if kind == 7:
        return _btf.Fwd(name, kflag)
    if kind == 8:
        return _btf.Typedef(name, size)
    if kind == 9:
        return _btf.Volatile(size)
    if kind == 10:
        return _btf.Const(size)
    if kind == 11:
        return _btf.Restrict(size)
    if kind == 12:
        return _btf.Func(name, size, _FUNC_LINKAGES[vlen])
    if kind == 13:
        params = tuple(
            _btf.FuncParam(name_of(w[j]) if w[j] else "", w[j + 1]) for j in range(d, d + 2 * vlen, 2)
        )
        return _btf.FuncProto(size, params)
    if kind == 14:
        return _btf.Var(name, size, _VAR_LINKAGES[w[d]])
    if kind == 15:
        secinfos = tuple(_btf.VarSecinfo(w[j], w[j + 1], w[j + 2]) for j in range(d, d + 3 * vlen, 3))
        return _btf.Datasec(name, size, secinfos)
    if kind == 16:
        return _btf.Float(name, size)
    if kind == 17:
        component = w[d]
        if component & 0x80000000:
            component -= 1 << 32
        return _btf.DeclTag(name, size, component, kflag)
    if kind == 18:
        return _btf.TypeTag(name, size, kflag)
    raise BTFError(f"unknown BTF kind {kind} at word {i}", source=VMLINUX_PATH)


def _lazy_spec(data: bytes, index: VmlinuxIndex) -> _btf.Spec:
    assert index.offsets is not None
    types = _LazyTypes(data, index.offsets, VMLINUX_PATH)
    spec = _btf.Spec.__new__(_btf.Spec)
    spec.types = cast("tuple[_btf.Type, ...]", types)  # a lazy sequence in the tuple's place
    spec.base = None
    spec.strings = types.strings
    spec.byteorder = types.order
    spec._names = cast("dict[str, list[int]]", index.names)  # read-only use (.get): ours
    return spec


def _seed_core_index(spec: _btf.Spec, index: VmlinuxIndex) -> None:
    """Give CO-RE its candidate index (essential name -> ids) from ours, instead of a full walk."""
    try:
        from ebpf.btf.core import CandidateIndex
    except ImportError:  # pragma: no cover - CO-RE is part of the package
        return
    by_name: Mapping[str, list[int]] = index.names
    if index.essential:
        by_name = _Overlay(index.essential, index.names)
    seeded = CandidateIndex.__new__(CandidateIndex)
    seeded.target = spec
    seeded._by_name = cast("dict[str, list[int]]", by_name)  # CO-RE only calls .get()
    CandidateIndex._cache.insert(0, (spec, seeded))


def _save(path: Path, blob: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs time


def reset_vmlinux_cache() -> None:
    """Forget the in-process vmlinux spec and index (tests, benchmarks of a cold start)."""
    global _VMLINUX, _INDEX
    _VMLINUX = None
    _INDEX = None
    vmlinux_bytes.cache_clear()


# --- making clang's BTF loadable ----------------------------------------------------------------


def fixup_for_kernel(
    spec: _btf.Spec,
    *,
    section_sizes: Mapping[str, int],
    var_offsets: Mapping[str, int],
) -> _btf.Spec:
    """The object's BTF as the kernel accepts it (libbpf's fix-ups before ``BPF_BTF_LOAD``).

    Args:
        spec: the object's ``.BTF``.
        section_sizes: ELF section name -> size, for DATASECs clang left at size 0.
        var_offsets: variable name -> offset in its section (ELF symbol values; ``.kconfig``
            externs: the offsets the loader laid them out at).

    Type ids never change (fix-ups replace types in place, one dummy VAR may be appended),
    so ``key_type_id`` / ``func_info`` ids stay valid.
    """
    types = list(spec.types)
    int_id: int | None = None
    dummy_var: int | None = None
    for type_id, t in enumerate(types):
        if isinstance(t, _btf.Int) and t.size == 4 and int_id is None:
            int_id = type_id
    for type_id, t in enumerate(list(types)):
        if not isinstance(t, _btf.Datasec):
            continue
        if t.name == ".ksyms":
            new_vars = []
            off = 0
            for vs in t.vars:
                target = types[vs.type]
                if isinstance(target, _btf.Var):
                    if int_id is None:
                        int_id = len(types)
                        types.append(_btf.Int("int", 4, _btf.IntEncoding.SIGNED, bits=32))
                    types[vs.type] = replace(target, type=int_id, linkage=_btf.VarLinkage.GLOBAL_ALLOCATED)
                    new_vars.append(_btf.VarSecinfo(vs.type, off, 4))
                else:  # a kfunc: the DATASEC may only list VARs
                    if dummy_var is None:
                        if int_id is None:
                            int_id = len(types)
                            types.append(_btf.Int("int", 4, _btf.IntEncoding.SIGNED, bits=32))
                        dummy_var = len(types)
                        types.append(_btf.Var("dummy_ksym", int_id, _btf.VarLinkage.GLOBAL_ALLOCATED))
                    new_vars.append(_btf.VarSecinfo(dummy_var, off, 4))
                off += 4
            types[type_id] = replace(t, size=off, vars=tuple(new_vars))
            continue
        known = t.name in section_sizes
        fixed = []
        end = 0
        for vs in t.vars:
            var = types[vs.type]
            if isinstance(var, _btf.Var) and var.linkage == _btf.VarLinkage.GLOBAL_EXTERN:
                var = replace(var, linkage=_btf.VarLinkage.GLOBAL_ALLOCATED)
                types[vs.type] = var
            name = getattr(var, "name", "")
            if known and name in var_offsets:
                offset = var_offsets[name]
            elif t.size:
                offset = vs.offset  # the section was already fixed up
            else:  # no ELF layout for it (.maps, license): any consistent layout loads
                offset = (end + 7) & ~7
            fixed.append(_btf.VarSecinfo(vs.type, offset, vs.size))
            end = max(end, offset + vs.size)
        fixed.sort(key=lambda v: v.offset)
        for prev, nxt in itertools.pairwise(fixed):
            if prev.offset + prev.size > nxt.offset:  # overlapping guesses: lay out in order
                fixed, end = _sequential(fixed)
                break
        size = max(t.size, section_sizes.get(t.name, 0), end)
        types[type_id] = replace(t, size=size, vars=tuple(fixed))
    # extern functions (kfuncs): the kernel refuses extern linkage and unnamed parameters.
    for type_id, t in enumerate(types):
        if isinstance(t, _btf.Func) and t.linkage == _btf.FuncLinkage.EXTERN:
            types[type_id] = replace(t, linkage=_btf.FuncLinkage.GLOBAL)
            proto = types[t.type]
            if isinstance(proto, _btf.FuncProto) and any(not p.name for p in proto.params):
                params = tuple(
                    p if p.name else _btf.FuncParam(f"arg{i}", p.type) for i, p in enumerate(proto.params)
                )
                types[t.type] = replace(proto, params=params)
    return _btf.Spec(types, strings=spec.strings, byteorder=spec.byteorder)


def _sequential(vars_: list[_btf.VarSecinfo]) -> tuple[list[_btf.VarSecinfo], int]:
    out, end = [], 0
    for vs in vars_:
        offset = (end + 7) & ~7
        out.append(_btf.VarSecinfo(vs.type, offset, vs.size))
        end = offset + vs.size
    return out, end
