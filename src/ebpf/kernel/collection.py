"""``Collection``: a :class:`~ebpf.spec.CollectionSpec` loaded into the kernel (a pure-Python libbpf).

Calls bpf(2) (through :mod:`ebpf.kernel.map`, :mod:`ebpf.kernel.btf`, :mod:`ebpf.kernel.program`).

The steps, in libbpf's order (``bpf_object__load``):

1. the object's BTF, fixed up for the kernel (:func:`~ebpf.kernel.btf.fixup_for_kernel`), is
   loaded; a kernel that refuses it costs the maps and programs their BTF, not the load
   (libbpf does the same and warns). ``LoadOptions.require_btf`` makes that an error.
2. ``.kconfig`` externs are filled: ``LINUX_KERNEL_VERSION`` from ``uname``,
   ``LINUX_HAS_SYSCALL_WRAPPER`` / ``LINUX_HAS_BPF_COOKIE`` as libbpf computes them, ``CONFIG_*``
   from ``/proc/config.gz`` or ``/boot/config-$(uname -r)``; ``LoadOptions.kconfig``
   overrides both. A missing value is 0 for a ``__weak`` extern and an error otherwise.
3. maps are created (pinned ``LIBBPF_PIN_BY_NAME`` maps reused), filled, and ``.rodata`` /
   ``.kconfig`` frozen. Global data maps get libbpf's kernel names: up to 8 characters of
   the object name followed by the section name (``prog.rodata``); a section name with a
   second dot (``.data.foo``, ``.rodata.str1.1``) is used alone.
4. CO-RE relocations are applied against the kernel's BTF (or ``LoadOptions.target_btf``).
5. every program is relocated (``lddw`` of maps and global data -> ``BPF_PSEUDO_MAP_FD`` /
   ``BPF_PSEUDO_MAP_VALUE``, ``__ksym`` variables -> ``BPF_PSEUDO_BTF_ID`` or their kallsyms
   address, kfunc calls -> ``BPF_PSEUDO_KFUNC_CALL`` with the vmlinux BTF id) and loaded with
   its BTF, func info, line info, expected attach type and attach BTF id. A rejection is a
   :class:`~ebpf.errors.VerifierError` with the kernel's log, naming the failing instruction
   and its source line.
6. ``PROG_ARRAY`` slots and map-in-map slots from ``.values`` are written.

STRUCT_OPS maps are created with the kernel's ``bpf_struct_ops_<struct>`` value type, their
programs loaded against the kernel struct's member they fill; the value that registers them
(:meth:`Collection.struct_ops_value`) is written by the attach layer, as libbpf's
``bpf_map__attach_struct_ops`` does.

A failure anywhere closes what was created so far and removes the pins it made.
"""

from __future__ import annotations

import errno
import gzip
import os
import struct
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from ebpf import btf as _btf
from ebpf.errors import BPFError, NotSupportedError, RelocationError, VerifierError, VerifierSource
from ebpf.kernel.btf import KernelBTF, KernelBTFError, fixup_for_kernel, vmlinux_index, vmlinux_spec
from ebpf.kernel.map import Map, sanitize_name
from ebpf.kernel.program import DEFAULT_LOG_SIZE, Program
from ebpf.kernel.uapi import BPF_PSEUDO_KFUNC_CALL, LogLevel, PseudoSrc
from ebpf.kernel.version import kernel_version
from ebpf.spec import AttachType, CollectionSpec, MapSpec, MapType, ProgramSpec, ProgramType, RelocKind

if TYPE_CHECKING:
    from ebpf.btf.ext import LineInfo

__all__ = [
    "Collection",
    "KconfigError",
    "LoadOptions",
    "Variable",
    "attach_btf_target",
    "internal_map_name",
    "kernel_version_code",
    "read_kconfig",
]

_BPF_F_MMAPABLE = 1 << 10
_GLOBAL_DATA_PREFIXES = (".data", ".bss", ".rodata", ".kconfig")
_CONFIG_FILES = ("/proc/config.gz", "/boot/config-{release}")


class KconfigError(BPFError):
    """A strong (non-``__weak``) ``.kconfig`` extern has no value."""


@dataclass
class LoadOptions:
    """How to load a collection.

    Attributes:
        log_level: verifier log level of every program (a failed load always fetches a log).
        log_size: initial verifier log buffer size (grown on demand).
        pin_root: directory of ``LIBBPF_PIN_BY_NAME`` pins (default ``/sys/fs/bpf``).
        kconfig: values of ``.kconfig`` externs (``CONFIG_*``, ``LINUX_KERNEL_VERSION``), int
            or raw bytes, overriding the kernel's.
        map_replacements: maps to use instead of creating the spec's (by spec name); they
            stay owned by the caller.
        object_name: the object name libbpf derives map names from (the file name without
            its extension); empty: global data maps are named by their section.
        target_btf: the BTF CO-RE relocates against (default: the running kernel's).
        require_btf: fail when the kernel refuses the object's BTF instead of loading without.
        attach_targets: freplace (``EXT``) program name -> (loaded target program, name of
            the global function it replaces), libbpf's ``bpf_program__set_attach_target``.
    """

    log_level: LogLevel | int = LogLevel.NONE
    log_size: int = DEFAULT_LOG_SIZE
    pin_root: str | None = None
    kconfig: dict[str, int | bytes] = field(default_factory=dict)
    map_replacements: dict[str, Map] = field(default_factory=dict)
    object_name: str = ""
    target_btf: _btf.Spec | None = None
    require_btf: bool = False
    attach_targets: dict[str, tuple[Program, str]] = field(default_factory=dict)


def internal_map_name(object_name: str, section: str) -> str:
    """libbpf's kernel name of a global data map (``internal_map_name``).

    >>> internal_map_name("minimal", ".rodata"), internal_map_name("a_long_object", ".bss")
    ('minimal.rodata', 'a_long_o.bss')
    >>> internal_map_name("prog", ".rodata.str1.1")
    '.rodata.str1.1'
    """
    suffix_len = max(7, len(section))
    if "." in section[1:]:
        prefix_len = 0
    else:
        prefix_len = min(16 - suffix_len - 1, len(object_name))
    prefix_len = max(prefix_len, 0)
    return sanitize_name(object_name[:prefix_len] + section)


def kernel_version_code(version: tuple[int, int, int] | None = None) -> int:
    """``KERNEL_VERSION(a, b, c)`` of the running kernel (``LINUX_KERNEL_VERSION``), patch capped at 255."""
    a, b, c = version if version is not None else kernel_version()
    return (a << 16) + (b << 8) + min(c, 255)


def read_kconfig() -> tuple[dict[str, str], str | None]:
    """The kernel's configuration ``CONFIG_X -> value text`` and the file it came from.

    Returns ``({}, None)`` when neither ``/proc/config.gz`` nor ``/boot/config-$(uname -r)`` exists.
    """
    release = os.uname().release
    for pattern in _CONFIG_FILES:
        path = pattern.format(release=release)
        try:
            raw = Path(path).read_bytes()
        except OSError:
            continue
        text = (gzip.decompress(raw) if path.endswith(".gz") else raw).decode("utf-8", "replace")
        values: dict[str, str] = {}
        for line in text.splitlines():
            if line.startswith("CONFIG_") and "=" in line:
                key, _, value = line.partition("=")
                values[key] = value
        return values, path
    return {}, None


def _kconfig_bytes(name: str, text: str, size: int, byteorder: str) -> bytes:
    """libbpf's kconfig value rules: ``y``/``m``/``n`` as tristate 1/2/0, numbers, strings."""
    if text in ("y", "m", "n"):
        value = {"y": 1, "m": 2, "n": 0}[text]
        return value.to_bytes(size, byteorder)  # type: ignore[arg-type]
    if text.startswith('"'):
        data = text.strip('"').encode()
        if len(data) >= size:
            raise KconfigError(f"kconfig {name}: string {text} does not fit {size} bytes")
        return data.ljust(size, b"\0")
    try:
        number = int(text, 0)
    except ValueError:
        raise KconfigError(f"kconfig {name}: cannot parse value {text!r}") from None
    try:
        return number.to_bytes(size, byteorder, signed=number < 0)  # type: ignore[arg-type]
    except OverflowError:
        raise KconfigError(f"kconfig {name}: {number} does not fit {size} bytes") from None


# The architecture prefix of syscall entry points (libbpf's SYSCALL_PREFIX list).
_SYSCALL_PREFIXES = {
    "x86_64": "__x64_",
    "i686": "__ia32_",
    "aarch64": "__arm64_",
    "s390x": "__s390x_",
    "armv7l": "__arm_",
    "riscv64": "__riscv_",
    "ppc64le": "__powerpc_",
    "ppc64": "__powerpc_",
    "loongarch64": "__loongarch_",
}


def _has_syscall_wrapper() -> int:
    """libbpf's ``LINUX_HAS_SYSCALL_WRAPPER``: the kernel has ``<arch prefix>sys_bpf``."""
    prefix = _SYSCALL_PREFIXES.get(os.uname().machine)
    if prefix is None:
        return 0
    return int(vmlinux_index().find(f"{prefix}sys_bpf", _btf.Kind.FUNC) is not None)


def _has_bpf_cookie() -> int:
    """libbpf's ``LINUX_HAS_BPF_COOKIE``: the kernel has ``bpf_get_attach_cookie`` (5.15+)."""
    return int(kernel_version() >= (5, 15, 0))


_LIBBPF_SPECIALS = {
    "LINUX_HAS_SYSCALL_WRAPPER": _has_syscall_wrapper,
    "LINUX_HAS_BPF_COOKIE": _has_bpf_cookie,
}
"""The ``.kconfig`` externs libbpf computes itself rather than reading the kernel config."""


def _fill_kconfig(spec: CollectionSpec, overrides: Mapping[str, int | bytes]) -> None:
    externs = [v for v in spec.variables.values() if v.extern and v.map in spec.maps]
    if not externs:
        return
    config: dict[str, str] | None = None
    source: str | None = None
    for var in externs:
        if var.name in overrides:
            spec.set_variable(var.name, overrides[var.name])
            continue
        if var.name == "LINUX_KERNEL_VERSION":
            spec.set_variable(var.name, kernel_version_code())
            continue
        if var.name in _LIBBPF_SPECIALS:
            spec.set_variable(var.name, _LIBBPF_SPECIALS[var.name]().to_bytes(var.size, spec.byteorder))  # type: ignore[arg-type]
            continue
        if var.name.startswith("CONFIG_"):
            if config is None:
                config, source = read_kconfig()
            if var.name in config:
                spec.set_variable(
                    var.name, _kconfig_bytes(var.name, config[var.name], var.size, spec.byteorder)
                )
                continue
        if var.weak:
            spec.set_variable(var.name, bytes(var.size))
            continue
        if var.name.startswith("CONFIG_") and source is None:
            raise KconfigError(
                f"kconfig extern {var.name} has no value: neither /proc/config.gz nor "
                f"/boot/config-{os.uname().release} exists (pass LoadOptions.kconfig or declare it __weak)"
            )
        where = f" in {source}" if source else ""
        raise KconfigError(f"kconfig extern {var.name} is not set{where} and is not __weak")


def attach_btf_target(prog: ProgramSpec) -> tuple[str, _btf.Kind] | None:
    """The vmlinux BTF type a program's ``attach_btf_id`` names, or ``None`` if it needs none."""
    at = prog.attach_type
    name = prog.attach_to
    if prog.type == ProgramType.TRACING:
        if at == AttachType.TRACE_RAW_TP:
            return f"btf_trace_{name}", _btf.Kind.TYPEDEF
        if at == AttachType.TRACE_ITER:
            return f"bpf_iter_{name}", _btf.Kind.FUNC
        return name, _btf.Kind.FUNC
    if prog.type == ProgramType.LSM:
        return f"bpf_lsm_{name}", _btf.Kind.FUNC
    return None


def _is_global_data(mspec: MapSpec) -> bool:
    return mspec.type == MapType.ARRAY and mspec.name.startswith(_GLOBAL_DATA_PREFIXES)


class Variable:
    """A global variable of a loaded collection (a skeleton's ``skel->bss->x``), as the
    user-space runtime's :class:`ebpf.runtime.Variable`: read and written through the mmap of
    its global data map (``BPF_F_MMAPABLE``), else through lookup/update."""

    def __init__(self, collection: Collection, name: str) -> None:
        var = collection.spec.variables[name]
        self.collection = collection
        self.name = name
        self.map_name = var.map
        self.offset = var.offset
        self.size = var.size
        self.read_only = collection.spec.maps[var.map].freeze or var.extern

    def _map(self) -> Map:
        return self.collection.maps[self.map_name]

    def get(self) -> bytes:
        """The variable's current bytes."""
        m = self._map()
        if m.flags & _BPF_F_MMAPABLE:
            view = m.mmap()
            return bytes(view[self.offset : self.offset + self.size])
        value = m.lookup(bytes(m.key_size))
        return value[self.offset : self.offset + self.size]

    def get_int(self, *, signed: bool = False) -> int:
        """The variable as an integer in the object's byte order."""
        return int.from_bytes(self.get(), self.collection.spec.byteorder, signed=signed)  # type: ignore[arg-type]

    def set(self, value: bytes | int) -> None:
        """Write the variable (an int is encoded in its size and the object's byte order).

        Raises:
            MapError: the variable is in a frozen read-only map (``EPERM``).
            ValueError: the value does not fit.
        """
        if self.read_only:
            from ebpf.maps import MapError

            raise MapError(
                f"variable {self.name!r} is read-only ({self.map_name} is frozen)", errno=errno.EPERM
            )
        if isinstance(value, int):
            try:
                data = value.to_bytes(self.size, self.collection.spec.byteorder, signed=value < 0)  # type: ignore[arg-type]
            except OverflowError:
                raise ValueError(
                    f"{value} does not fit variable {self.name!r} of {self.size} bytes"
                ) from None
        else:
            data = bytes(value)
            if len(data) != self.size:
                raise ValueError(f"variable {self.name!r} is {self.size} bytes, got {len(data)}")
        m = self._map()
        if m.flags & _BPF_F_MMAPABLE:
            m.mmap()[self.offset : self.offset + self.size] = data
            return
        key = bytes(m.key_size)
        old = m.lookup(key)
        m.update(key, old[: self.offset] + data + old[self.offset + self.size :])

    def __repr__(self) -> str:
        return f"Variable({self.name!r}, map={self.map_name!r}, offset={self.offset}, size={self.size})"


class Collection:
    """The maps and programs of a spec, live in the kernel. Context manager; ``close()`` idempotent.

    Attributes:
        programs: name -> :class:`~ebpf.kernel.program.Program` (programs with ``autoload``).
        maps: name -> :class:`~ebpf.kernel.map.Map` (spec names: ``.rodata``, ``my_map``...).
        variables: name -> :class:`Variable` (global variables, read and written live).
        btf: the object's BTF in the kernel, or ``None``.
        btf_error: why the kernel refused the object's BTF, when it did.
    """

    def __init__(self, spec: CollectionSpec, options: LoadOptions | None = None) -> None:
        self.options = options if options is not None else LoadOptions()
        self.spec = spec.copy()
        self.programs: dict[str, Program] = {}
        self.maps: dict[str, Map] = {}
        self.btf: KernelBTF | None = None
        self.btf_error: KernelBTFError | None = None
        self._fixed_btf: _btf.Spec | None = None
        self._owned: list[Map] = []
        self.variables: dict[str, Variable] = {}
        self._struct_ops_types: dict[str, tuple[_btf.Struct, int, int]] = {}
        self._struct_ops_hooks: dict[str, tuple[int, int]] = {}
        try:
            self._load()
        except BaseException:
            for m in self._owned:  # libbpf: a failed load removes the pins it made, not reused ones
                if m.pinned is not None and not m.reused and not m.closed:
                    m.unpin()
            self.close()
            raise

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], options: LoadOptions | None = None) -> Collection:
        """Parse the object at ``path`` and load it, naming global data maps after the file as
        libbpf does (``prog.bpf.o`` -> ``prog.rodata``) unless ``options.object_name`` is set.

        Raises:
            ELFError / BTFError: the object is malformed; and everything ``Collection()`` raises.
        """
        from dataclasses import replace

        from ebpf.elf import load_collection_spec

        opts = options if options is not None else LoadOptions()
        if not opts.object_name:
            opts = replace(opts, object_name=os.path.basename(os.fspath(path)).split(".")[0])
        return cls(load_collection_spec(os.fspath(path)), opts)

    # --- the load -----------------------------------------------------------------------

    def _load(self) -> None:
        spec = self.spec
        opts = self.options
        if spec.byteorder != sys.byteorder:
            raise NotSupportedError(
                f"loading a {spec.byteorder}-endian object into this {sys.byteorder}-endian kernel",
                detail="its instructions' immediates, map keys and global data are in the wrong byte "
                f"order (libbpf refuses it too: endianness mismatch); build it for {sys.byteorder}-endian",
            )
        self._load_btf()
        _fill_kconfig(spec, opts.kconfig)
        if any(m.type == MapType.STRUCT_OPS for m in spec.maps.values()):
            self._struct_ops_plan()
        for name, mspec in spec.maps.items():
            if name in opts.map_replacements:
                self.maps[name] = opts.map_replacements[name]
                continue
            self.maps[name] = self._create_map(mspec)
        for name, mspec in spec.maps.items():
            if name in opts.map_replacements:
                continue
            m = self.maps[name]
            if m.reused:
                continue
            if mspec.contents and mspec.type != MapType.STRUCT_OPS:
                m.fill(mspec.contents)
            if mspec.freeze:
                m.freeze()
        if any(p.core_relos for p in spec.programs.values() if p.autoload):
            self._relocate_core()
        for name, pspec in spec.programs.items():
            if pspec.autoload:
                self.programs[name] = self._load_program(pspec)
        for name, mspec in spec.maps.items():
            if mspec.slots and not self.maps[name].reused and mspec.type != MapType.STRUCT_OPS:
                self._fill_slots(mspec)
        self.variables = {
            name: Variable(self, name) for name, var in spec.variables.items() if var.map in self.maps
        }

    def _load_btf(self) -> None:
        spec = self.spec
        if spec.btf is None:
            return
        sizes = {m.name: m.value_size for m in spec.maps.values() if _is_global_data(m)}
        offsets = {v.name: v.offset for v in spec.variables.values()}
        fixed = fixup_for_kernel(spec.btf, section_sizes=sizes, var_offsets=offsets)
        try:
            self.btf = KernelBTF.load(fixed)
            self._fixed_btf = fixed
        except KernelBTFError as err:
            if self.options.require_btf:
                raise
            self.btf_error = err

    def _struct_ops_plan(self) -> None:
        """Kernel types of each STRUCT_OPS map, and each struct_ops program's hook (libbpf's
        ``bpf_map__init_kern_struct_ops``): the program plugged into member ``m`` of kernel
        struct ``S`` loads with ``attach_btf_id = S`` and ``expected_attach_type = index of m``.
        Programs no STRUCT_OPS map refers to are not loaded (as libbpf >= 1.3)."""
        used: set[str] = set()
        for mspec in self.spec.maps.values():
            if mspec.type != MapType.STRUCT_OPS:
                continue
            obj_btf = mspec.btf or self.spec.btf
            if obj_btf is None or not mspec.value_type_id:
                raise BPFError(f"struct_ops map {mspec.name!r} has no BTF type")
            local = obj_btf.resolve(mspec.value_type_id)
            if not isinstance(local, _btf.Struct):
                raise BPFError(f"struct_ops map {mspec.name!r}: the value is not a struct")
            index = vmlinux_index()
            kid = index.find(local.name, _btf.Kind.STRUCT)
            vid = index.find(f"bpf_struct_ops_{local.name}", _btf.Kind.STRUCT)
            if kid is None or vid is None:
                raise NotSupportedError(
                    f"struct_ops {local.name!r} (map {mspec.name!r})",
                    detail=f"the kernel's BTF has no struct {local.name} / bpf_struct_ops_{local.name}",
                )
            kernel = vmlinux_spec()
            kstruct = kernel[kid]
            assert isinstance(kstruct, _btf.Struct)
            by_offset = {m.offset // 8: m for m in local.members}
            knames = [m.name for m in kstruct.members]
            for offset, prog_name in mspec.slots.items():
                member = by_offset.get(offset)
                if member is None or member.name not in knames:
                    raise BPFError(
                        f"struct_ops map {mspec.name!r}: no member of kernel struct {local.name} "
                        f"for the program {prog_name!r} at offset {offset}"
                    )
                pspec = self.spec.programs.get(prog_name)
                if pspec is None:
                    raise BPFError(f"struct_ops map {mspec.name!r}: unknown program {prog_name!r}")
                self._struct_ops_hooks[prog_name] = (kid, knames.index(member.name))
                used.add(prog_name)
            self._struct_ops_types[mspec.name] = (local, kid, vid)
        for name, pspec in self.spec.programs.items():
            if pspec.type == ProgramType.STRUCT_OPS and name not in used:
                pspec.autoload = False

    def struct_ops_value(self, name: str) -> bytes:
        """The kernel value of STRUCT_OPS map ``name`` (``bpf_struct_ops_<struct>``): the object's
        data members copied by name into the kernel struct and each program's fd at its
        function pointer, ready for ``BPF_MAP_UPDATE_ELEM`` (which registers it; attach does that).

        Raises:
            KeyError: no such STRUCT_OPS map.
            BPFError: a data member has no counterpart of the same size in the kernel struct.
        """
        local, kid, vid = self._struct_ops_types[name]
        mspec = self.spec.maps[name]
        kernel = vmlinux_spec()
        kvalue = kernel[vid]
        kstruct = kernel[kid]
        assert isinstance(kvalue, _btf.Struct) and isinstance(kstruct, _btf.Struct)
        data_member = next((m for m in kvalue.members if m.name == "data"), None)
        if data_member is None:
            raise BPFError(f"bpf_struct_ops_{local.name} has no 'data' member")
        base = data_member.offset // 8
        value = bytearray(kernel.sizeof(vid))
        local_data = mspec.contents[0][1] if mspec.contents else bytes(mspec.value_size)
        obj_btf = mspec.btf or self.spec.btf
        assert obj_btf is not None
        kmembers = {m.name: m for m in kstruct.members}
        for member in local.members:
            off = member.offset // 8
            kmember = kmembers.get(member.name)
            prog_name = mspec.slots.get(off)
            if prog_name is not None:
                assert kmember is not None
                prog = self.programs[prog_name]
                struct.pack_into("=Q", value, base + kmember.offset // 8, prog.fd)
                continue
            size = obj_btf.sizeof(member.type)
            chunk = local_data[off : off + size]
            if not any(chunk):
                continue
            if kmember is None or kernel.sizeof(kmember.type) != size:
                raise BPFError(
                    f"struct_ops map {name!r}: member {member.name!r} has no same-sized member in the kernel's {local.name}"
                )
            koff = base + kmember.offset // 8
            value[koff : koff + size] = chunk
        return bytes(value)

    def _create_map(self, mspec: MapSpec) -> Map:
        if mspec.type == MapType.STRUCT_OPS and mspec.name in self._struct_ops_types:
            _, _, vid = self._struct_ops_types[mspec.name]
            kspec = mspec.copy()
            kspec.value_size = vmlinux_spec().sizeof(vid)
            kspec.key_type_id = kspec.value_type_id = 0
            kspec.contents = []  # written when attached (it registers the ops)
            m = Map.create(kspec, name=sanitize_name(mspec.name), btf=self.btf, btf_vmlinux_value_type_id=vid)
            self._owned.append(m)
            return m
        name = (
            internal_map_name(self.options.object_name, mspec.name)
            if _is_global_data(mspec)
            else sanitize_name(mspec.name)
        )
        kbtf = self.btf
        if kbtf is not None and self._fixed_btf is not None and mspec.value_type_id:
            try:
                if self._fixed_btf.sizeof(mspec.value_type_id) != mspec.value_size:
                    kbtf = None  # BTF that does not describe the value: create without it
            except BPFError:
                kbtf = None
        m = Map.create(mspec, name=name, btf=kbtf, pin_root=self.options.pin_root)
        self._owned.append(m)
        return m

    def _relocate_core(self) -> None:
        try:
            from ebpf.btf.core import relocate_program
        except ImportError as err:
            raise NotSupportedError(
                "CO-RE relocation", detail="ebpf.btf.core.relocate_program is not available"
            ) from err
        target = self.options.target_btf if self.options.target_btf is not None else vmlinux_spec()
        for pspec in self.spec.programs.values():
            if pspec.autoload and pspec.core_relos:
                pspec.instructions = relocate_program(pspec, target)
                pspec.core_relos = []

    def _relocated_code(self, pspec: ProgramSpec) -> bytes:
        code = bytearray(pspec.instructions.encode(sys.byteorder))
        little = sys.byteorder == "little"
        nslots = len(code) // 8

        def set_src(slot: int, src: int) -> None:
            regs = code[slot * 8 + 1]
            code[slot * 8 + 1] = (regs & 0x0F) | (src << 4) if little else (regs & 0xF0) | src

        def set_imm(slot: int, imm: int) -> None:
            struct.pack_into("=i" if imm < 2**31 else "=I", code, slot * 8 + 4, imm)

        def set_off(slot: int, off: int) -> None:
            struct.pack_into("=h", code, slot * 8 + 2, off)

        for slot, reloc in sorted(pspec.relocations.items()):
            if not 0 <= slot < nslots:
                raise RelocationError(
                    f"relocation of {reloc.symbol!r} at slot {slot} is outside the program",
                    program=pspec.name,
                    insn_index=slot,
                )
            opcode = code[slot * 8]
            wide = opcode == 0x18
            if reloc.kind in (RelocKind.MAP, RelocKind.MAP_VALUE):
                if not wide:
                    raise RelocationError(
                        f"a map reference to {reloc.symbol!r} must be an lddw (opcode {opcode:#x})",
                        program=pspec.name,
                        insn_index=slot,
                    )
                m = self.maps.get(reloc.symbol)
                if m is None:
                    raise RelocationError(
                        f"unknown map {reloc.symbol!r}", program=pspec.name, insn_index=slot
                    )
                set_src(slot, PseudoSrc.MAP_FD if reloc.kind == RelocKind.MAP else PseudoSrc.MAP_VALUE)
                set_imm(slot, m.fd)
                set_imm(slot + 1, reloc.offset if reloc.kind == RelocKind.MAP_VALUE else 0)
            elif reloc.kind == RelocKind.KSYM:
                self._relocate_ksym(pspec, slot, reloc.symbol, reloc.weak, set_src, set_imm)
            elif reloc.kind == RelocKind.KFUNC:
                btf_id = vmlinux_index().find(reloc.symbol, _btf.Kind.FUNC)
                if btf_id is None and not reloc.weak:
                    raise RelocationError(
                        f"kfunc {reloc.symbol!r} is not in the kernel's BTF",
                        program=pspec.name,
                        insn_index=slot,
                    )
                set_src(slot, BPF_PSEUDO_KFUNC_CALL)
                set_imm(slot, btf_id or 0)
                set_off(slot, 0)
        return bytes(code)

    def _relocate_ksym(
        self,
        pspec: ProgramSpec,
        slot: int,
        name: str,
        weak: bool,
        set_src: Callable[[int, int], None],
        set_imm: Callable[[int, int], None],
    ) -> None:
        typeless = True
        if pspec.btf is not None:
            for type_id in pspec.btf.ids_by_name(name):
                t = pspec.btf[type_id]
                if isinstance(t, _btf.Var):
                    typeless = isinstance(pspec.btf.resolve(t.type), _btf.Void)
        if not typeless:
            btf_id = vmlinux_index().find(name, _btf.Kind.VAR)
            if btf_id is not None:
                set_src(slot, PseudoSrc.BTF_ID)
                set_imm(slot, btf_id)
                set_imm(slot + 1, 0)
                return
        else:
            address = _kallsyms().get(name)
            if address is not None:
                set_src(slot, 0)
                set_imm(slot, address & 0xFFFFFFFF)
                set_imm(slot + 1, address >> 32)
                return
        if not weak:
            raise RelocationError(
                f"kernel symbol {name!r} (__ksym) is not in the kernel's "
                + ("/proc/kallsyms" if typeless else "BTF"),
                program=pspec.name,
                insn_index=slot,
            )
        set_src(slot, 0)
        set_imm(slot, 0)
        set_imm(slot + 1, 0)

    def _load_program(self, pspec: ProgramSpec) -> Program:
        opts = self.options
        code = self._relocated_code(pspec)
        func_info = line_info = b""
        btf_fd: int | None = None
        if self.btf is not None and self._fixed_btf is not None and pspec.func_info:
            from ebpf.btf.ext import encode_func_info, encode_line_info

            btf_fd = self.btf.fd
            func_info = encode_func_info(pspec.func_info, sys.byteorder)
            if pspec.line_info and self._fixed_btf.strings is not None:
                try:
                    line_info = encode_line_info(pspec.line_info, self._fixed_btf.strings, sys.byteorder)
                except BPFError:
                    line_info = b""
        attach_btf_id = attach_prog_fd = 0
        expected = int(pspec.attach_type) if pspec.attach_type is not None else None
        target = attach_btf_target(pspec)
        if pspec.type == ProgramType.STRUCT_OPS:
            attach_btf_id, expected = self._struct_ops_hooks[pspec.name]
        elif target is not None:
            type_name, kind = target
            found = vmlinux_index().find(type_name, kind)
            if found is None:
                raise NotSupportedError(
                    f"attach target {type_name!r} of program {pspec.name!r}",
                    detail=f"no {kind.name} called {type_name!r} in the kernel's BTF",
                )
            attach_btf_id = found
        elif pspec.type == ProgramType.EXT:
            attach_prog_fd, attach_btf_id = self._ext_target(pspec)
        kern_version = pspec.kernel_version
        if not kern_version and pspec.type == ProgramType.KPROBE:
            kern_version = kernel_version_code()
        try:
            return Program.load(
                code,
                pspec.type,
                license=pspec.license or self.spec.license or "",
                log_level=opts.log_level,
                log_size=opts.log_size,
                name=sanitize_name(pspec.name),
                expected_attach_type=expected,
                prog_flags=pspec.flags,
                kern_version=kern_version,
                prog_btf_fd=btf_fd,
                func_info=func_info,
                line_info=line_info,
                attach_btf_id=attach_btf_id,
                attach_prog_fd=attach_prog_fd,
            )
        except VerifierError as err:
            raise _with_source(err, pspec) from err

    def _ext_target(self, pspec: ProgramSpec) -> tuple[int, int]:
        """``attach_prog_fd`` and ``attach_btf_id`` of a freplace program: the target program and
        its global function's id in the target's own BTF (as the kernel recorded it)."""
        target = self.options.attach_targets.get(pspec.name)
        if target is None:
            raise NotSupportedError(
                f"loading freplace program {pspec.name!r}",
                detail="a BPF_PROG_TYPE_EXT program needs a target: pass "
                f"LoadOptions(attach_targets={{{pspec.name!r}: (program, function_name)}}), "
                "or set autoload = False to load the rest",
            )
        prog, func_name = target
        btf_id = prog.info().btf_id
        if not btf_id:
            raise BPFError(
                f"freplace {pspec.name!r}: the target program {prog.name!r} was loaded without BTF"
            )
        with KernelBTF.from_id(btf_id) as kbtf:
            target_btf = kbtf.to_spec()
        funcs = [i for i in target_btf.ids_by_name(func_name) if isinstance(target_btf[i], _btf.Func)]
        if not funcs:
            raise BPFError(f"freplace {pspec.name!r}: the target program has no function {func_name!r}")
        return prog.fd, funcs[0]

    def _fill_slots(self, mspec: MapSpec) -> None:
        m = self.maps[mspec.name]
        for slot, target in sorted(mspec.slots.items()):
            key = struct.pack("=I", slot)
            if mspec.type == MapType.PROG_ARRAY:
                prog = self.programs.get(target)
                if prog is None:
                    raise BPFError(f"map {mspec.name!r} slot {slot}: program {target!r} was not loaded")
                m.update_prog(key, prog)
            else:
                inner = self.maps.get(target)
                if inner is None:
                    raise BPFError(f"map {mspec.name!r} slot {slot}: unknown map {target!r}")
                m.update_map(key, inner)

    # --- ownership ----------------------------------------------------------------------

    def close(self) -> None:
        """Close every program, every map this collection created, and the BTF. Idempotent."""
        for prog in self.programs.values():
            prog.close()
        for m in self._owned:
            m.close()
        if self.btf is not None:
            self.btf.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Collection(programs={sorted(self.programs)}, maps={sorted(self.maps)})"

    def __iter__(self) -> Iterator[str]:
        return iter(self.programs)


def _source_line(line_info: list[LineInfo], insn: int) -> LineInfo | None:
    best = None
    for rec in line_info:
        if rec.insn <= insn and (best is None or rec.insn >= best.insn):
            best = rec
    return best


def _with_source(err: VerifierError, pspec: ProgramSpec) -> VerifierError:
    """The kernel's VerifierError, naming the failing instruction and its C source line."""
    cause = err.cause
    if err.insn_index is not None:
        cause += f"; failing instruction {err.insn_index}"
        rec = _source_line(pspec.line_info, err.insn_index)
        if rec is not None:
            cause += f" at {rec.file_name}:{rec.line}: {rec.line_text.strip()}"
    new = VerifierError(
        cause,
        source=VerifierSource.KERNEL,
        log=err.log,
        insn_index=err.insn_index,
        errno=err.errno,
        truncated=err.truncated,
    )
    return new


_KALLSYMS: dict[str, int] | None = None


def _kallsyms() -> dict[str, int]:
    global _KALLSYMS
    if _KALLSYMS is None:
        table: dict[str, int] = {}
        try:
            with open("/proc/kallsyms", encoding="ascii", errors="replace") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 3 and parts[2] not in table:
                        table[parts[2]] = int(parts[0], 16)
        except OSError:
            pass
        _KALLSYMS = table
    return _KALLSYMS
