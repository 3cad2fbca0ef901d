"""``Map``: a BPF map in the kernel, with the same raw view as the user-space maps.

Calls bpf(2) (and mmap(2) on map descriptors, and touches bpffs for pins).

Rule 1: a ``Map`` owns one :class:`~ebpf.kernel.fd.FD`; it is a context manager, ``close()``
is idempotent (and unmaps what :meth:`Map.mmap` mapped), and a leaked map warns.

Rule 2: the operations have the user-space maps' names and shapes (:mod:`ebpf.maps`):
``lookup`` / ``update`` / ``delete`` / ``get_next_key`` / ``lookup_and_delete``, dict sugar
(``m[k]``, ``in``, iteration in ``get_next_key`` order, ``keys()``/``values()``/``items()``),
``lookup_percpu`` / ``update_percpu`` with one value per *possible* CPU, ``push``/``pop``/
``peek`` for queues and stacks. A failure raises the same typed error the user-space map
raises for the same errno (``ENOENT`` -> :class:`~ebpf.errors.KeyNotFoundError`, ``EEXIST``
-> ``KeyExistsError``, ``E2BIG`` on update -> ``MapFullError``, ``EINVAL`` ->
``InvalidMapArgumentError``, ``EOPNOTSUPP``/``ENOTSUPP`` -> ``MapOperationNotSupportedError``),
chained from the :class:`~ebpf.errors.SyscallError`.

Rule 3: like libbpf, a PERF_EVENT_ARRAY with max_entries 0 gets one slot per possible CPU,
a ring buffer's size is rounded up to a power-of-2 number of pages, maps of the types in
:data:`NO_BTF_TYPES` are created without BTF types, and a creation the kernel refuses with
BTF types is retried without them.

Rule 4: pinning follows libbpf's ``LIBBPF_PIN_BY_NAME``: a map is pinned at
``<pin root>/<name>`` (default root ``/sys/fs/bpf``, mounted as bpffs when it is not); a map
already pinned there is reused when its type, key and value sizes, max_entries, flags and
map_extra equal the spec's, and is an error naming the differing attribute otherwise.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import mmap as _mmap
import os
import re
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Self, cast

from ebpf.errors import BPFError, KeyNotFoundError, SyscallError
from ebpf.kernel._syscall import bpf
from ebpf.kernel.fd import FD
from ebpf.kernel.uapi import (
    BPF_OBJ_NAME_LEN,
    BpfMapInfo,
    Cmd,
    GetIdAttr,
    MapBatchAttr,
    MapCreateAttr,
    MapElemAttr,
    ObjInfoAttr,
    ObjPinAttr,
)
from ebpf.spec import MapSpec, MapType, PinType

if TYPE_CHECKING:
    from ebpf.kernel.btf import KernelBTF
    from ebpf.maps import Map as UserMap
    from ebpf.maps.typed import TypedMap

__all__ = [
    "DEFAULT_PIN_ROOT",
    "Map",
    "MapInfo",
    "PinMismatchError",
    "ensure_bpffs",
    "map_ids",
    "possible_cpus",
    "ringbuf_size",
]

DEFAULT_PIN_ROOT = "/sys/fs/bpf"
"""libbpf's default pin root for ``LIBBPF_PIN_BY_NAME`` maps."""

BPF_F_MMAPABLE = 1 << 10
BPF_F_RDONLY_PROG = 1 << 7
_BPF_FS_MAGIC = 0xCAFE4A11
_ENOTSUPP = 524  # the kernel-internal "operation not supported" some map types return

PERCPU_TYPES = frozenset(
    {MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH, MapType.PERCPU_CGROUP_STORAGE}
)
"""Map types whose syscall values hold one 8-byte-aligned slot per possible CPU."""

NO_BTF_TYPES = frozenset(
    {
        MapType.PERF_EVENT_ARRAY,
        MapType.CGROUP_ARRAY,
        MapType.STACK_TRACE,
        MapType.ARRAY_OF_MAPS,
        MapType.HASH_OF_MAPS,
        MapType.DEVMAP,
        MapType.DEVMAP_HASH,
        MapType.CPUMAP,
        MapType.XSKMAP,
        MapType.SOCKMAP,
        MapType.SOCKHASH,
        MapType.QUEUE,
        MapType.STACK,
        MapType.ARENA,
    }
)
"""Map types libbpf creates without BTF key/value types (the kernel refuses or ignores them)."""

_KEYLESS = frozenset({MapType.QUEUE, MapType.STACK, MapType.BLOOM_FILTER})
_NAME_OK = re.compile(r"[A-Za-z0-9_.]{0,15}")


class PinMismatchError(BPFError):
    """A map pinned at the path does not match the spec that wants to reuse it."""

    def __init__(self, path: str, differences: Sequence[str]) -> None:
        self.path = path
        self.differences = tuple(differences)
        super().__init__(
            f"cannot reuse the map pinned at {path}: it differs from the spec in "
            + "; ".join(differences)
            + " (unpin it or change the spec)"
        )


def _errors() -> ModuleType:
    """:mod:`ebpf.maps._errors`, imported on the first failure (it pulls in the user-space
    maps package, ~0.1 s that a process loading objects need not pay)."""
    import ebpf.maps._errors

    return ebpf.maps._errors


@cache
def possible_cpus() -> int:
    """The number of possible CPUs: highest index in ``/sys/devices/system/cpu/possible`` + 1.

    This is how many slots a per-CPU map value has in the syscall (libbpf's
    ``libbpf_num_possible_cpus``).
    """
    try:
        text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    except OSError:
        return os.cpu_count() or 1
    highest = 0
    for part in text.split(","):
        last = part.split("-")[-1]
        if last.strip().isdigit():
            highest = max(highest, int(last))
    return highest + 1


def ringbuf_size(size: int) -> int:
    """libbpf's ``adjust_ringbuf_sz``: the smallest power-of-2 multiple of the page size >= ``size``."""
    page = _mmap.PAGESIZE
    if size and size % page == 0 and (size // page) & (size // page - 1) == 0:
        return size
    n = page
    while n < size:
        n <<= 1
    return n


def _round8(n: int) -> int:
    return (n + 7) & ~7


@dataclass(frozen=True, slots=True)
class MapInfo:
    """What the kernel reports about a map (``struct bpf_map_info``)."""

    id: int
    type: MapType | int
    name: str
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    map_extra: int
    btf_id: int
    btf_key_type_id: int
    btf_value_type_id: int
    btf_vmlinux_value_type_id: int
    ifindex: int

    @classmethod
    def from_raw(cls, raw: BpfMapInfo) -> MapInfo:
        """Convert the kernel's ``struct bpf_map_info``."""
        try:
            map_type: MapType | int = MapType(int(raw.type))
        except ValueError:
            map_type = int(raw.type)
        return cls(
            id=int(raw.id),
            type=map_type,
            name=bytes(raw.name).decode("utf-8", "replace"),
            key_size=int(raw.key_size),
            value_size=int(raw.value_size),
            max_entries=int(raw.max_entries),
            flags=int(raw.map_flags),
            map_extra=int(raw.map_extra),
            btf_id=int(raw.btf_id),
            btf_key_type_id=int(raw.btf_key_type_id),
            btf_value_type_id=int(raw.btf_value_type_id),
            btf_vmlinux_value_type_id=int(raw.btf_vmlinux_value_type_id),
            ifindex=int(raw.ifindex),
        )


def map_info_of(fd: int) -> MapInfo:
    """``BPF_OBJ_GET_INFO_BY_FD`` on map descriptor ``fd``."""
    raw = BpfMapInfo()
    bpf(
        Cmd.OBJ_GET_INFO_BY_FD,
        ObjInfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(raw), info=ctypes.addressof(raw)),
    )
    return MapInfo.from_raw(raw)


def map_ids() -> Iterator[int]:
    """The IDs of every map in the kernel, increasing (``BPF_MAP_GET_NEXT_ID``)."""
    current = 0
    while True:
        attr = GetIdAttr(start_id=current)
        try:
            bpf(Cmd.MAP_GET_NEXT_ID, attr)
        except SyscallError as err:
            if err.errno == _errno.ENOENT:
                return
            raise
        current = int(attr.next_id)
        yield current


def _buf(data: bytes) -> ctypes.Array[ctypes.c_char]:
    return (ctypes.c_char * max(1, len(data))).from_buffer_copy(data or b"\0")


def _addr(buf: ctypes.Array[ctypes.c_char] | None) -> int:
    return ctypes.addressof(buf) if buf is not None else 0


def _compat_differences(info: MapInfo, spec: MapSpec) -> list[str]:
    """libbpf's ``map_is_reuse_compat``: the attributes in which a pinned map differs."""
    diffs = []
    pairs = [
        ("type", int(info.type), int(spec.type)),
        ("key_size", info.key_size, spec.key_size),
        ("value_size", info.value_size, spec.value_size),
        ("max_entries", info.max_entries, spec.max_entries),
        ("flags", info.flags, spec.flags),
        ("map_extra", info.map_extra, spec.map_extra),
    ]
    for what, pinned, wanted in pairs:
        if pinned != wanted:
            if what == "type":
                diffs.append(f"type (pinned {_type_name(pinned)}, spec {_type_name(wanted)})")
            elif what == "flags":
                diffs.append(f"flags (pinned {pinned:#x}, spec {wanted:#x})")
            else:
                diffs.append(f"{what} (pinned {pinned}, spec {wanted})")
    return diffs


def _type_name(value: int) -> str:
    try:
        return MapType(value).name
    except ValueError:
        return str(value)


def ensure_bpffs(path: str | os.PathLike[str]) -> None:
    """Make sure ``path`` is a directory on a bpffs, mounting bpffs on ``/sys/fs/bpf`` if needed.

    Raises:
        BPFError: ``path`` is not on a bpffs and cannot be made so.
    """
    directory = Path(path)
    inside_default = directory == Path(DEFAULT_PIN_ROOT) or Path(DEFAULT_PIN_ROOT) in directory.parents
    if inside_default and not _is_bpffs(Path(DEFAULT_PIN_ROOT)):
        _mount_bpffs(DEFAULT_PIN_ROOT)
    directory.mkdir(parents=True, exist_ok=True)
    if not _is_bpffs(directory):
        raise BPFError(f"{directory} is not on a BPF filesystem (mount -t bpf bpf {directory})")


def _is_bpffs(path: Path) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)

    class _Statfs(ctypes.Structure):
        _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 120)]

    st = _Statfs()
    if libc.statfs(os.fsencode(path), ctypes.byref(st)) != 0:
        return False
    return bool((st.f_type & 0xFFFFFFFF) == _BPF_FS_MAGIC)


def _mount_bpffs(target: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    os.makedirs(target, exist_ok=True)
    if libc.mount(b"bpf", os.fsencode(target), b"bpf", ctypes.c_ulong(0), None) != 0:
        err = ctypes.get_errno()
        raise BPFError(f"mounting bpffs on {target} failed: {os.strerror(err)}")


def obj_pin(fd: int, path: str | os.PathLike[str]) -> None:
    """``BPF_OBJ_PIN``: pin BPF object ``fd`` at ``path`` (on a bpffs)."""
    raw = ctypes.create_string_buffer(os.fsencode(path))
    bpf(Cmd.OBJ_PIN, ObjPinAttr(pathname=ctypes.addressof(raw), bpf_fd=fd))


def obj_get(path: str | os.PathLike[str], flags: int = 0) -> FD:
    """``BPF_OBJ_GET``: open the BPF object pinned at ``path``."""
    raw = ctypes.create_string_buffer(os.fsencode(path))
    return FD(bpf(Cmd.OBJ_GET, ObjPinAttr(pathname=ctypes.addressof(raw), file_flags=flags)))


class Map:
    """A map in the kernel. Owns its descriptor; use as a context manager.

    Create one with :meth:`create` (from a :class:`~ebpf.spec.MapSpec`), :meth:`from_pin`,
    :meth:`from_id` or :meth:`from_fd`.

    Attributes:
        name: the spec's name (the ``CollectionSpec.maps`` key) or the kernel's name.
        type, key_size, value_size, max_entries, flags: as created.
        ncpus: value slots of a per-CPU map (possible CPUs); 1 otherwise.
        pinned: the bpffs path this object pinned or reused, or ``None``.
        reused: True when :meth:`create` reused a pinned map instead of creating one.
    """

    def __init__(
        self,
        fd: FD,
        *,
        type: MapType | int,
        key_size: int,
        value_size: int,
        max_entries: int,
        flags: int = 0,
        name: str = "",
        map_extra: int = 0,
    ) -> None:
        """Wrap an existing map descriptor, taking ownership of ``fd``."""
        self._fd = fd
        try:
            self.type: MapType | int = MapType(int(type))
        except ValueError:
            self.type = int(type)
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.flags = flags
        self.name = name
        self.map_extra = map_extra
        self.ncpus = possible_cpus() if self.type in PERCPU_TYPES else 1
        self.pinned: str | None = None
        self.reused = False
        self.spec: MapSpec | None = None
        self._mmap: _mmap.mmap | None = None
        self._view: memoryview | None = None

    # --- construction -------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        spec: MapSpec,
        *,
        name: str | None = None,
        inner_map_fd: int | None = None,
        btf: KernelBTF | None = None,
        pin_root: str | os.PathLike[str] | None = None,
        btf_vmlinux_value_type_id: int = 0,
    ) -> Map:
        """Create the map ``spec`` describes (``BPF_MAP_CREATE``), or reuse its pin.

        Args:
            spec: the map spec. Its ``contents`` are *not* written here (the collection
                does that, after relocation), except by :meth:`fill`.
            name: the kernel-side name (at most 15 of ``[A-Za-z0-9_.]``); default the
                spec's name, truncated to 15 characters.
            inner_map_fd: the inner map template of an ARRAY_OF_MAPS / HASH_OF_MAPS;
                default: a template created from ``spec.inner`` for the call.
            btf: the object's BTF loaded in the kernel; with it the spec's
                ``key_type_id`` / ``value_type_id`` are passed to the kernel.
            pin_root: the directory of ``PinType.BY_NAME`` pins (default ``/sys/fs/bpf``).
            btf_vmlinux_value_type_id: a STRUCT_OPS map's value type in the kernel's BTF
                (``bpf_struct_ops_<struct>``); the spec's value_size must be its size.

        Raises:
            PinMismatchError: a pinned map with the same name differs from the spec.
            SyscallError: the kernel refused the map.
            InvalidMapArgumentError: a name that the kernel would reject.
        """
        kname = sanitize_name(spec.name) if name is None else name
        if not _NAME_OK.fullmatch(kname):
            raise _errors().InvalidMapArgumentError(
                f"invalid map name {kname!r}: at most 15 of [A-Za-z0-9_.]"
            )
        max_entries = spec.max_entries
        if spec.type == MapType.PERF_EVENT_ARRAY and max_entries == 0:
            max_entries = possible_cpus()  # libbpf: one ring per possible CPU
        elif spec.type in (MapType.RINGBUF, MapType.USER_RINGBUF):
            max_entries = ringbuf_size(max_entries)
        if max_entries != spec.max_entries:
            spec = spec.copy()
            spec.max_entries = max_entries
        pin_path: str | None = None
        if spec.pinning == PinType.BY_NAME:
            root = os.fspath(pin_root) if pin_root is not None else DEFAULT_PIN_ROOT
            pin_path = os.path.join(root, spec.name)
            reused = cls._reuse_pinned(spec, pin_path)
            if reused is not None:
                return reused
        inner_owned: Map | None = None
        try:
            if spec.type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS) and inner_map_fd is None:
                if spec.inner is None:
                    raise _errors().InvalidMapArgumentError(
                        f"map {spec.name!r}: a {spec.type.name} needs an inner map template (spec.inner)"
                    )
                inner_owned = cls.create(spec.inner, name=kname[:15] if name else "", btf=btf)
                inner_map_fd = inner_owned.fd
            attr = MapCreateAttr(
                map_type=int(spec.type),
                key_size=spec.key_size,
                value_size=spec.value_size,
                max_entries=max_entries,
                map_flags=spec.flags,
                inner_map_fd=inner_map_fd or 0,
                numa_node=spec.numa_node,
                map_name=kname.encode("ascii"),
                map_extra=spec.map_extra,
            )
            with_btf = btf is not None and spec.value_type_id and spec.type not in NO_BTF_TYPES
            if btf_vmlinux_value_type_id:
                attr.btf_vmlinux_value_type_id = btf_vmlinux_value_type_id
                attr.btf_fd = btf.fd if btf is not None else 0
            elif with_btf:
                assert btf is not None
                attr.btf_fd = btf.fd
                attr.btf_key_type_id = spec.key_type_id
                attr.btf_value_type_id = spec.value_type_id
            try:
                try:
                    raw = bpf(Cmd.MAP_CREATE, attr)
                except SyscallError:
                    if not with_btf:
                        raise
                    # libbpf: "Retrying without BTF." (the kernel may refuse the types)
                    attr.btf_fd = attr.btf_key_type_id = attr.btf_value_type_id = 0
                    raw = bpf(Cmd.MAP_CREATE, attr)
            except SyscallError as err:
                err.add_note(
                    f"while creating map {spec.name!r} ({spec.type.name}, key_size={spec.key_size}, "
                    f"value_size={spec.value_size}, max_entries={spec.max_entries}, flags={spec.flags:#x})"
                )
                raise
        finally:
            if inner_owned is not None:
                inner_owned.close()
        m = cls(
            FD(raw),
            type=spec.type,
            key_size=spec.key_size,
            value_size=spec.value_size,
            max_entries=max_entries,
            flags=spec.flags,
            name=spec.name,
            map_extra=spec.map_extra,
        )
        m.spec = spec
        if pin_path is not None:
            try:
                ensure_bpffs(os.path.dirname(pin_path))
                m.pin(pin_path)
            except BaseException:
                m.close()
                raise
        return m

    @classmethod
    def _reuse_pinned(cls, spec: MapSpec, path: str) -> Map | None:
        if not os.path.exists(path):
            return None
        try:
            m = cls.from_pin(path)
        except SyscallError as err:
            raise BPFError(f"map {spec.name!r}: cannot open the object pinned at {path}: {err}") from err
        try:
            diffs = _compat_differences(m.info(), spec)
            if diffs:
                raise PinMismatchError(path, diffs)
        except BaseException:
            m.close()
            raise
        m.name = spec.name
        m.pinned = path
        m.reused = True
        m.spec = spec
        return m

    @classmethod
    def from_fd(cls, fd: FD, *, name: str | None = None) -> Map:
        """Wrap map descriptor ``fd`` (taking ownership), reading its attributes from the kernel."""
        try:
            info = map_info_of(fd.fileno())
        except BaseException:
            fd.close()
            raise
        return cls(
            fd,
            type=info.type,
            key_size=info.key_size,
            value_size=info.value_size,
            max_entries=info.max_entries,
            flags=info.flags,
            name=info.name if name is None else name,
            map_extra=info.map_extra,
        )

    @classmethod
    def from_pin(cls, path: str | os.PathLike[str]) -> Map:
        """Open the map pinned at ``path`` (``BPF_OBJ_GET``).

        Raises:
            SyscallError: nothing pinned there (``ENOENT``), or not a map.
        """
        fd = obj_get(path)
        m = cls.from_fd(fd)
        m.pinned = os.fspath(path)
        return m

    @classmethod
    def from_id(cls, map_id: int) -> Map:
        """Open the map with ID ``map_id`` (``BPF_MAP_GET_FD_BY_ID``)."""
        return cls.from_fd(FD(bpf(Cmd.MAP_GET_FD_BY_ID, GetIdAttr(map_id=map_id))))

    # --- ownership ----------------------------------------------------------------------

    @property
    def fd(self) -> int:
        """The descriptor number (still owned by this object).

        Raises:
            ValueError: the map is closed.
        """
        return self._fd.fileno()

    @property
    def closed(self) -> bool:
        return self._fd.closed

    def close(self) -> None:
        """Unmap what :meth:`mmap` mapped and close the descriptor. Idempotent."""
        if self._view is not None:
            self._view.release()
            self._view = None
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:
                pass  # the caller still holds a view derived from it; it unmaps when collected
            self._mmap = None
        self._fd.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._fd.fileno()}"
        tname = self.type.name if isinstance(self.type, MapType) else str(self.type)
        return (
            f"Map({tname}, name={self.name!r}, key_size={self.key_size}, value_size={self.value_size}, "
            f"max_entries={self.max_entries}, {state})"
        )

    @property
    def label(self) -> str:
        """``map:<name>``, as the user-space maps label themselves in errors."""
        tname = self.type.name.lower() if isinstance(self.type, MapType) else str(self.type)
        return f"map:{self.name or tname}"

    # --- info, pin, freeze --------------------------------------------------------------

    def info(self) -> MapInfo:
        """What the kernel reports about this map (``BPF_OBJ_GET_INFO_BY_FD``)."""
        return map_info_of(self.fd)

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the map at ``path`` on a bpffs (``BPF_OBJ_PIN``)."""
        try:
            obj_pin(self.fd, path)
        except SyscallError as err:
            err.add_note(f"while pinning {self.label} at {os.fspath(path)}")
            raise
        self.pinned = os.fspath(path)

    def unpin(self) -> None:
        """Remove the pin this object made or reused (the map lives on while open)."""
        if self.pinned is not None:
            try:
                os.unlink(self.pinned)
            except FileNotFoundError:
                pass
            self.pinned = None

    def freeze(self) -> None:
        """``BPF_MAP_FREEZE``: no more writes from user space (programs still may, unless RDONLY_PROG)."""
        self._call(Cmd.MAP_FREEZE, MapElemAttr(map_fd=self.fd), "freeze", None)

    # --- sizes and errors ---------------------------------------------------------------

    @property
    def percpu(self) -> bool:
        return self.type in PERCPU_TYPES

    @property
    def stride(self) -> int:
        """Bytes per CPU in a per-CPU value (``value_size`` rounded up to 8)."""
        return _round8(self.value_size)

    @property
    def syscall_value_size(self) -> int:
        """Bytes of one value in the syscall: ``ncpus * stride`` for per-CPU maps."""
        return self.stride * self.ncpus if self.percpu else self.value_size

    def _key(self, key: bytes | None) -> bytes:
        if self.key_size == 0 and key in (None, b""):
            return b""
        if not isinstance(key, (bytes, bytearray, memoryview)):
            raise _errors().InvalidMapArgumentError(
                f"{self.label}: key must be bytes of key_size {self.key_size}, got {type(key).__name__}"
            )
        key = bytes(key)
        if len(key) != self.key_size:
            raise _errors().InvalidMapArgumentError(
                f"{self.label}: key is {len(key)} bytes, expected key_size {self.key_size}"
            )
        return key

    def _value(self, value: bytes) -> bytes:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise _errors().InvalidMapArgumentError(
                f"{self.label}: value must be bytes of value_size {self.value_size}, got {type(value).__name__}"
            )
        value = bytes(value)
        if self.percpu:
            if len(value) == self.syscall_value_size:
                return value
            if len(value) == self.value_size:
                return value.ljust(self.stride, b"\0") * self.ncpus
            raise _errors().InvalidMapArgumentError(
                f"{self.label}: per-CPU value is {len(value)} bytes, expected value_size {self.value_size} "
                f"or {self.ncpus} CPUs x {self.stride} = {self.syscall_value_size}"
            )
        if len(value) != self.value_size:
            raise _errors().InvalidMapArgumentError(
                f"{self.label}: value is {len(value)} bytes, expected value_size {self.value_size}"
            )
        return value

    def _call(self, cmd: Cmd, attr: ctypes.Structure, op: str, key: bytes | None) -> int:
        try:
            return bpf(cmd, attr)
        except SyscallError as err:
            failure = _map_error(err, self.label, op, key)
            if failure is err:
                raise
            raise failure from err

    # --- element operations -------------------------------------------------------------

    def lookup(self, key: bytes = b"", flags: int = 0) -> bytes:
        """``BPF_MAP_LOOKUP_ELEM``: the value of ``key`` (per-CPU maps: every CPU's slot, joined).

        Raises:
            KeyNotFoundError: no element (``ENOENT``).
            InvalidMapArgumentError: ``key`` has the wrong size.
        """
        k = self._key(key)
        kbuf = _buf(k)
        vbuf = ctypes.create_string_buffer(max(1, self.syscall_value_size))
        attr = MapElemAttr(
            map_fd=self.fd, key=_addr(kbuf) if k else 0, value=ctypes.addressof(vbuf), flags=flags
        )
        self._call(Cmd.MAP_LOOKUP_ELEM, attr, "lookup", k)
        return vbuf.raw[: self.syscall_value_size]

    def lookup_percpu(self, key: bytes) -> list[bytes]:
        """The value of every possible CPU, CPU 0 first (per-CPU maps)."""
        raw = self.lookup(key)
        if not self.percpu:
            raise _errors().MapOperationNotSupportedError(
                f"{self.label}: not a per-CPU map", errno=_errno.EINVAL
            )
        return [raw[i * self.stride : i * self.stride + self.value_size] for i in range(self.ncpus)]

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        """``BPF_MAP_UPDATE_ELEM`` with ``BPF_ANY`` / ``BPF_NOEXIST`` / ``BPF_EXIST`` (| ``BPF_F_LOCK``).

        A per-CPU map takes either the kernel layout (``ncpus * stride`` bytes) or one value
        for every CPU.

        Raises:
            KeyExistsError, KeyNotFoundError, MapFullError, InvalidMapArgumentError: as the
            user-space maps, from the kernel's errno.
        """
        k = self._key(key)
        v = self._value(value)
        kbuf, vbuf = _buf(k), _buf(v)
        attr = MapElemAttr(map_fd=self.fd, key=_addr(kbuf) if k else 0, value=_addr(vbuf), flags=flags)
        self._call(Cmd.MAP_UPDATE_ELEM, attr, "update", k)

    def update_percpu(self, key: bytes, values: Sequence[bytes], flags: int = 0) -> None:
        """Set the value of every possible CPU (``len(values) == ncpus``)."""
        if not self.percpu:
            raise _errors().MapOperationNotSupportedError(
                f"{self.label}: not a per-CPU map", errno=_errno.EINVAL
            )
        if isinstance(values, (bytes, bytearray, memoryview)) or len(values) != self.ncpus:
            raise _errors().InvalidMapArgumentError(
                f"{self.label}: need a list of {self.ncpus} per-CPU values"
            )
        parts = []
        for v in values:
            if len(v) != self.value_size:
                raise _errors().InvalidMapArgumentError(
                    f"{self.label}: value is {len(v)} bytes, expected value_size {self.value_size}"
                )
            parts.append(bytes(v).ljust(self.stride, b"\0"))
        self.update(key, b"".join(parts), flags)

    def delete(self, key: bytes) -> None:
        """``BPF_MAP_DELETE_ELEM``.

        Raises:
            KeyNotFoundError: no element (``ENOENT``).
        """
        k = self._key(key)
        kbuf = _buf(k)
        self._call(Cmd.MAP_DELETE_ELEM, MapElemAttr(map_fd=self.fd, key=_addr(kbuf)), "delete", k)

    def get_next_key(self, key: bytes | None) -> bytes:
        """``BPF_MAP_GET_NEXT_KEY``: the key after ``key`` (the first for ``None``).

        Raises:
            KeyNotFoundError: ``key`` is the last key, or the map is empty (``ENOENT``).
        """
        kbuf = None if key is None else _buf(self._key(key))
        nbuf = ctypes.create_string_buffer(max(1, self.key_size))
        attr = MapElemAttr(map_fd=self.fd, key=_addr(kbuf), next_key=ctypes.addressof(nbuf))
        self._call(Cmd.MAP_GET_NEXT_KEY, attr, "get_next_key", None)
        return nbuf.raw[: self.key_size]

    def lookup_and_delete(self, key: bytes = b"", flags: int = 0) -> bytes:
        """``BPF_MAP_LOOKUP_AND_DELETE_ELEM`` (queue/stack: pop; hash maps: take the element)."""
        k = self._key(key)
        kbuf = _buf(k)
        vbuf = ctypes.create_string_buffer(max(1, self.syscall_value_size))
        attr = MapElemAttr(
            map_fd=self.fd, key=_addr(kbuf) if k else 0, value=ctypes.addressof(vbuf), flags=flags
        )
        self._call(Cmd.MAP_LOOKUP_AND_DELETE_ELEM, attr, "lookup_and_delete", k or None)
        return vbuf.raw[: self.syscall_value_size]

    # queue / stack vocabulary of the user-space maps

    def push(self, value: bytes, flags: int = 0) -> None:
        """``bpf_map_push_elem`` from user space: update with no key."""
        self.update(b"", value, flags)

    def peek(self) -> bytes:
        """The value :meth:`pop` would return (``KeyNotFoundError`` when empty)."""
        return self.lookup(b"")

    def pop(self) -> bytes:
        """Remove and return the next value (``KeyNotFoundError`` when empty)."""
        return self.lookup_and_delete(b"")

    # map-in-map and prog-array vocabulary

    def update_map(self, key: bytes, inner: Map, flags: int = 0) -> None:
        """Put map ``inner`` at ``key`` of an ARRAY_OF_MAPS / HASH_OF_MAPS."""
        self.update(key, struct.pack("=I", inner.fd), flags)

    def lookup_map(self, key: bytes) -> Map:
        """Open the map stored at ``key`` of a map-in-map (a new ``Map`` the caller closes)."""
        (map_id,) = struct.unpack("=I", self.lookup(key)[:4])
        return Map.from_id(map_id)

    def update_prog(self, key: bytes, prog: object, flags: int = 0) -> None:
        """Put program ``prog`` (anything with ``.fd``) at ``key`` of a PROG_ARRAY."""
        fd = getattr(prog, "fd", prog)
        if not isinstance(fd, int):
            raise _errors().InvalidMapArgumentError(
                f"{self.label}: need a program (with .fd), got {type(prog).__name__}"
            )
        self.update(key, struct.pack("=I", fd), flags)

    # --- batches ------------------------------------------------------------------------

    def lookup_batch(self, count: int | None = None, *, delete: bool = False) -> list[tuple[bytes, bytes]]:
        """Every element, fetched in batches (``BPF_MAP_LOOKUP_BATCH``; ``delete``: ``..._AND_DELETE_BATCH``).

        Args:
            count: elements per syscall (default: ``max_entries``, at least 1).

        Raises:
            MapOperationNotSupportedError: the map type has no batch operations.
        """
        chunk = max(1, min(count or self.max_entries, self.max_entries or 1))
        cmd = Cmd.MAP_LOOKUP_AND_DELETE_BATCH if delete else Cmd.MAP_LOOKUP_BATCH
        vsize = self.syscall_value_size
        keys = ctypes.create_string_buffer(max(1, chunk * self.key_size))
        values = ctypes.create_string_buffer(max(1, chunk * vsize))
        token_size = max(self.key_size, 8)
        in_tok = ctypes.create_string_buffer(token_size)
        out_tok = ctypes.create_string_buffer(token_size)
        result: list[tuple[bytes, bytes]] = []
        first = True
        while True:
            attr = MapBatchAttr(
                in_batch=0 if first else ctypes.addressof(in_tok),
                out_batch=ctypes.addressof(out_tok),
                keys=ctypes.addressof(keys),
                values=ctypes.addressof(values),
                count=chunk,
                map_fd=self.fd,
            )
            done = False
            try:
                bpf(cmd, attr)
            except SyscallError as err:
                if err.errno != _errno.ENOENT:
                    failure = _map_error(err, self.label, "lookup_batch", None)
                    if failure is err:
                        raise
                    raise failure from err
                done = True
            n = int(attr.count)
            kraw, vraw = keys.raw, values.raw
            for i in range(n):
                result.append(
                    (kraw[i * self.key_size : (i + 1) * self.key_size], vraw[i * vsize : (i + 1) * vsize])
                )
            if done:
                return result
            ctypes.memmove(in_tok, out_tok, token_size)
            first = False

    def update_batch(self, items: Sequence[tuple[bytes, bytes]], flags: int = 0) -> int:
        """Write every ``(key, value)`` with one ``BPF_MAP_UPDATE_BATCH``; returns how many were written."""
        if not items:
            return 0
        kdata = b"".join(self._key(k) for k, _ in items)
        vdata = b"".join(self._value(v) for _, v in items)
        kbuf, vbuf = _buf(kdata), _buf(vdata)
        attr = MapBatchAttr(
            keys=_addr(kbuf), values=_addr(vbuf), count=len(items), map_fd=self.fd, elem_flags=flags
        )
        try:
            bpf(Cmd.MAP_UPDATE_BATCH, attr)
        except SyscallError as err:
            failure = _map_error(err, self.label, "update_batch", None)
            failure.add_note(f"{int(attr.count)} of {len(items)} elements were written")
            raise failure from err
        return int(attr.count)

    def delete_batch(self, keys: Sequence[bytes]) -> int:
        """Delete every key with one ``BPF_MAP_DELETE_BATCH``; returns how many were deleted."""
        if not keys:
            return 0
        kbuf = _buf(b"".join(self._key(k) for k in keys))
        attr = MapBatchAttr(keys=_addr(kbuf), count=len(keys), map_fd=self.fd)
        try:
            bpf(Cmd.MAP_DELETE_BATCH, attr)
        except SyscallError as err:
            failure = _map_error(err, self.label, "delete_batch", None)
            failure.add_note(f"{int(attr.count)} of {len(keys)} keys were deleted")
            raise failure from err
        return int(attr.count)

    def items_batch(self, count: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Every ``(key, value)``, fetched with ``BPF_MAP_LOOKUP_BATCH`` (the user-space maps' name)."""
        yield from self.lookup_batch(count)

    # --- typed view ---------------------------------------------------------------------

    @property
    def defn(self) -> MapSpec:
        """The map's spec (BTF included), as the typed view reads it.

        For a map opened from a pin or an id, the kernel's own BTF of the map (if any) is
        fetched once, so typed views work on maps this process did not create.
        """
        if self.spec is None:
            from ebpf.kernel.btf import KernelBTF

            info = self.info()
            spec = MapSpec(
                self.name,
                MapType(int(self.type)),
                self.key_size,
                self.value_size,
                self.max_entries,
                flags=self.flags,
                map_extra=self.map_extra,
            )
            if info.btf_id and info.btf_value_type_id:
                with KernelBTF.from_id(info.btf_id) as kbtf:
                    spec.btf = kbtf.to_spec()
                spec.key_type_id = info.btf_key_type_id
                spec.value_type_id = info.btf_value_type_id
            self.spec = spec
        return self.spec

    def typed(self, key: object = None, value: object = None) -> TypedMap:
        """A dict-like view with typed keys and values, as :meth:`ebpf.maps.Map.typed`.

        Without arguments the types come from the map's BTF; ``key`` / ``value`` override
        them with record classes (:func:`ebpf.btf.records.record_class`).
        """
        from ebpf.maps.typed import TypedMap

        return TypedMap(cast("UserMap", self), key, value)

    # --- mmap ---------------------------------------------------------------------------

    def mmap(self) -> memoryview:
        """Map the values of a ``BPF_F_MMAPABLE`` array (global data) into this process.

        The view is writable unless the map is frozen or read-only for user space; it is
        released and unmapped by :meth:`close` (release views you derived from it first).

        Raises:
            InvalidMapArgumentError: the map is not an mmapable array.
        """
        if self._view is not None:
            return self._view
        if self.type != MapType.ARRAY or not self.flags & BPF_F_MMAPABLE:
            raise _errors().InvalidMapArgumentError(
                f"{self.label}: only BPF_F_MMAPABLE arrays can be mmapped"
            )
        size = _round8(self.value_size) * self.max_entries
        length = (size + _mmap.PAGESIZE - 1) // _mmap.PAGESIZE * _mmap.PAGESIZE
        try:
            mapping = _mmap.mmap(self.fd, length, _mmap.MAP_SHARED, _mmap.PROT_READ | _mmap.PROT_WRITE)
        except PermissionError:
            # frozen, or read-only for user space: only a read-only mapping is allowed
            mapping = _mmap.mmap(self.fd, length, _mmap.MAP_SHARED, _mmap.PROT_READ)
        self._mmap = mapping
        self._view = memoryview(mapping)[:size]
        return self._view

    # --- dict sugar (as the user-space maps) --------------------------------------------

    def __getitem__(self, key: bytes) -> bytes:
        return self.lookup(key)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.update(key, value)

    def __delitem__(self, key: bytes) -> None:
        self.delete(key)

    def __iter__(self) -> Iterator[bytes]:
        if self.type in _KEYLESS:
            raise _errors().MapOperationNotSupportedError(
                f"{self.label}: a queue, stack or bloom filter has no keys", errno=_errno.EINVAL
            )
        try:
            key = self.get_next_key(None)
        except KeyNotFoundError:
            return
        while True:
            yield key
            try:
                key = self.get_next_key(key)
            except KeyNotFoundError:
                return

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, (bytes, bytearray, memoryview)) or self.type in _KEYLESS:
            return False
        try:
            self.lookup(bytes(key))
        except KeyNotFoundError:
            return False
        return True

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def keys(self) -> list[bytes]:
        """Every key, in :meth:`get_next_key` order."""
        return list(self)

    def values(self) -> list[bytes]:
        """Every value, in key order (elements deleted meanwhile are skipped)."""
        return [v for _, v in self.items()]

    def items(self) -> list[tuple[bytes, bytes]]:
        """Every ``(key, value)``, in key order (elements deleted meanwhile are skipped)."""
        out = []
        for k in self:
            try:
                out.append((k, self.lookup(k)))
            except KeyNotFoundError:
                continue
        return out

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        """The value of ``key``, or ``default`` if there is none."""
        try:
            return self.lookup(key)
        except KeyNotFoundError:
            return default

    # --- filling from a spec ------------------------------------------------------------

    def fill(self, contents: Sequence[tuple[bytes, bytes]]) -> None:
        """Write a spec's initial ``contents`` (``BPF_ANY`` each)."""
        for key, value in contents:
            self.update(key, value)


def sanitize_name(name: str) -> str:
    """A kernel object name from ``name``: characters outside ``[A-Za-z0-9_.]`` become ``_``, 15 at most."""
    cleaned = "".join(c if (c.isascii() and (c.isalnum() or c in "_.")) else "_" for c in name)
    return cleaned[: BPF_OBJ_NAME_LEN - 1]


def _map_error(err: SyscallError, label: str, op: str, key: bytes | None) -> BaseException:
    """The user-space map error for the kernel's errno of a failed ``op``."""
    code = err.errno
    what = f"{label}: {op}"
    if code == _errno.ENOENT:
        if key:
            return KeyNotFoundError(key, f"{what}: no such element")
        return KeyNotFoundError(None, f"{what}: no element (empty, or the last key)")
    failure: BaseException = err
    if code == _errno.EEXIST:
        failure = _errors().KeyExistsError(f"{what}: the key exists (BPF_NOEXIST)", errno=code)
    elif code == _errno.E2BIG and op in ("update", "update_batch"):
        failure = _errors().MapFullError(f"{what}: the map is full or the index is out of range", errno=code)
    elif code == _errno.ENOSPC and op in ("update", "update_batch"):
        failure = _errors().MapFullError(f"{what}: no space left in the map", errno=code)
    elif code in (_errno.EOPNOTSUPP, _ENOTSUPP):
        failure = _errors().MapOperationNotSupportedError(
            f"{what}: not supported by this map type", errno=code
        )
    elif code == _errno.EINVAL:
        failure = _errors().InvalidMapArgumentError(
            f"{what}: the kernel rejected the arguments (flags, key or map type)", errno=code
        )
    elif code in (_errno.EPERM, _errno.EACCES):
        failure = _errors().MapError(f"{what}: not permitted ({err})", errno=code)
    return failure
