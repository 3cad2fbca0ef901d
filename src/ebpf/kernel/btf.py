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

import ctypes
import errno as _errno
import hashlib
import itertools
import marshal
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Self

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
_INDEX_FORMAT = 1


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
    import sys

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
    """The kernel's BTF, parsed once per process."""
    global _VMLINUX
    if _VMLINUX is None:
        _VMLINUX = _btf.Spec.from_bytes(vmlinux_bytes(), source=VMLINUX_PATH)
    return _VMLINUX


class VmlinuxIndex:
    """Names of the kernel's BTF types: ``name -> ((type_id, kind), ...)``.

    Built from the parsed spec once, then loaded from the on-disk cache by later processes.
    """

    def __init__(self, names: Mapping[str, tuple[tuple[int, int], ...]], digest: str) -> None:
        self.names = names
        self.digest = digest

    def ids(self, name: str, kind: _btf.Kind | None = None) -> tuple[int, ...]:
        """Type ids called ``name`` (of ``kind`` if given)."""
        return tuple(i for i, k in self.names.get(name, ()) if kind is None or k == int(kind))

    def find(self, name: str, kind: _btf.Kind) -> int | None:
        """The first type id of ``kind`` called ``name``, or ``None``."""
        ids = self.ids(name, kind)
        return ids[0] if ids else None


_INDEX: VmlinuxIndex | None = None


def vmlinux_index(*, use_cache: bool = True) -> VmlinuxIndex:
    """The kernel's BTF name index: in-process, else from the disk cache, else built and saved."""
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
                _INDEX = VmlinuxIndex(payload[2], digest)
                return _INDEX
        except (OSError, ValueError, EOFError, TypeError, IndexError):
            pass
    spec = vmlinux_spec()
    names: dict[str, list[tuple[int, int]]] = {}
    for type_id, t in enumerate(spec.types):
        name = getattr(t, "name", "")
        if name:
            names.setdefault(name, []).append((type_id, int(t.kind)))
    frozen = {k: tuple(v) for k, v in names.items()}
    _INDEX = VmlinuxIndex(frozen, digest)
    if use_cache:
        _save(path, marshal.dumps((_INDEX_FORMAT, digest, frozen)))
    return _INDEX


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
