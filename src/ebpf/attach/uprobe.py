"""User-space probes: uprobes/uretprobes on any ELF, and USDT probes the libbpf way.

Above the kernel line. Calls ``perf_event_open(2)`` (the uprobe PMU) and bpf(2).

Rule 1: a uprobe is placed at a *file offset* in a binary or shared library: a symbol is
resolved through ``.symtab``/``.dynsym`` and the ``PT_LOAD`` segments (so PIE and libraries
work), or the caller gives the offset. The uprobe PMU type comes from
``/sys/bus/event_source/devices/uprobe/type``; the retprobe bit and the ``ref_ctr_offset``
field position come from its ``format/`` files. Without the PMU, tracefs ``uprobe_events``
is used.

Rule 2 (USDT, libbpf ``usdt.bpf.h`` convention): every probe site gets a uprobe at the note's
address with the semaphore's file offset as ``ref_ctr_offset`` (the kernel counts the
semaphore up while attached); each distinct argument spec is written into the program's
``__bpf_usdt_specs`` map under a spec id, and that id is the uprobe's BPF cookie, which
``bpf_usdt_arg()`` reads with ``bpf_get_attach_cookie()``.
"""

from __future__ import annotations

import os
import struct
import sys
import weakref
from typing import Protocol

from ebpf.attach import _abi, _elfsym, _observe, _usdt
from ebpf.attach.link import FDLink, Link, LinkInfo, ProgramLike, _LinkBase
from ebpf.attach.tracing import legacy_probe, perf_link
from ebpf.errors import ELFError, NotSupportedError, SyscallError
from ebpf.kernel.fd import FD
from ebpf.spec import AttachType

__all__ = ["USDTLink", "uprobe", "uprobe_multi", "usdt"]


class _MapLike(Protocol):
    @property
    def fd(self) -> int: ...


def _uprobe_at(
    program: ProgramLike,
    path: str,
    offset: int,
    *,
    pid: int,
    retprobe: bool,
    cookie: int,
    ref_ctr_offset: int = 0,
    label: str,
    legacy: bool = False,
) -> Link:
    kind = f"{'uretprobe' if retprobe else 'uprobe'} {label}"
    cpu = 0 if pid < 0 else -1
    pmu = None if legacy else _observe.pmu_type("uprobe")
    if pmu is not None:
        config = (1 << (_bit("retprobe", 0))) if retprobe else 0
        if ref_ctr_offset:
            config |= ref_ctr_offset << _bit("ref_ctr_offset", 32)
        name = _abi.cstr(path)
        attr = _abi.PerfEventAttr(
            type=pmu, config=config, config1=name.address, config2=offset, sample_period=1, wakeup_events=1
        )
        try:
            fd = FD(_abi.perf_event_open(attr, pid, cpu))
        except SyscallError as err:
            err.add_note(f"while opening {kind} ({path} at file offset {offset:#x})")
            raise
        return perf_link(program, fd, kind=kind, cookie=cookie)
    if ref_ctr_offset:
        target = f"{path}:{offset:#x}({ref_ctr_offset:#x})"
    else:
        target = f"{path}:{offset:#x}"
    try:
        tp_id, probe = legacy_probe("uprobe_events", f"{'r' if retprobe else 'p'} {target}", kind)
    except (NotSupportedError, SyscallError) as err:
        no_pmu = "" if legacy else f"no uprobe PMU at {_observe.PMU_DIR}/uprobe and "
        raise NotSupportedError("uprobes", detail=f"{no_pmu}uprobe_events failed: {err}") from err
    attr = _abi.PerfEventAttr(type=_abi.PerfType.TRACEPOINT, config=tp_id, sample_period=1, wakeup_events=1)
    try:
        fd = FD(_abi.perf_event_open(attr, pid, cpu))
    except BaseException:
        probe.close()
        raise
    return perf_link(program, fd, kind=kind, cookie=cookie, extra=(probe,))


def _bit(field: str, default: int) -> int:
    bits = _observe.pmu_format_bit("uprobe", field)
    return bits[0] if bits is not None else default


def uprobe(
    program: ProgramLike,
    binary: str,
    symbol: str | None = None,
    *,
    offset: int = 0,
    pid: int = -1,
    retprobe: bool = False,
    cookie: int = 0,
) -> Link:
    """Attach a ``KPROBE``-type program to a function of a user-space binary or library.

    Args:
        binary: a path, or a library name (``"libc.so.6"``, ``"c"``) looked up in the maps
            of ``pid`` and the standard library folders.
        symbol: a function in ``.symtab``/``.dynsym``; ``offset`` is then added to it. Without
            ``symbol``, ``offset`` is the file offset to probe.
        pid: only this process (-1: every process that runs the binary).
        retprobe: fire on return (uretprobe) instead of entry.
        cookie: for ``bpf_get_attach_cookie()``.

    Raises:
        FileNotFoundError: no such binary or library.
        ELFError: not an ELF file, or no such function.
        SyscallError: perf_event_open or the link failed.

    Requires Linux >= 4.17 (uprobe PMU; as a BPF link: 5.15).
    """
    path = _elfsym.find_library(binary, pid)
    if offset < 0:
        raise ValueError(f"offset must be >= 0, not {offset}")
    if symbol is not None:
        file_offset = _elfsym.resolve_symbol(path, symbol) + offset
        label = f"{path}:{symbol}" + (f"+{offset:#x}" if offset else "")
    else:
        if offset == 0:
            raise ValueError("give a symbol or a non-zero file offset")
        file_offset = offset
        label = f"{path}:{offset:#x}"
    return _uprobe_at(program, path, file_offset, pid=pid, retprobe=retprobe, cookie=cookie, label=label)


_BPF_F_UPROBE_MULTI_RETURN = 1


def uprobe_multi(
    program: ProgramLike,
    binary: str,
    symbols: list[str] | tuple[str, ...] = (),
    *,
    offsets: list[int] | tuple[int, ...] = (),
    ref_ctr_offsets: list[int] | tuple[int, ...] = (),
    cookies: list[int] | tuple[int, ...] = (),
    pid: int = 0,
    retprobe: bool = False,
) -> Link:
    """Attach one ``KPROBE`` program (loaded with ``expected_attach_type=TRACE_UPROBE_MULTI``)
    to many places of one binary with a single ``BPF_TRACE_UPROBE_MULTI`` link.

    Args:
        symbols: functions to probe (resolved like :func:`uprobe`), or ``offsets``: file
            offsets; with both, each offset is added to its symbol.
        ref_ctr_offsets: semaphore file offsets (USDT), one per place, or none.
        cookies: ``bpf_get_attach_cookie()`` values, one per place, or none.
        pid: only this process (0: every process).
        retprobe: fire on return (``BPF_F_UPROBE_MULTI_RETURN``).

    Requires Linux >= 6.6.
    """
    path = _elfsym.find_library(binary, pid if pid > 0 else -1)
    if symbols:
        places = [_elfsym.resolve_symbol(path, sym) for sym in symbols]
        if offsets:
            if len(offsets) != len(places):
                raise ValueError(f"{len(offsets)} offsets for {len(places)} symbols")
            places = [p + o for p, o in zip(places, offsets, strict=True)]
    else:
        places = list(offsets)
    if not places:
        raise ValueError("give symbols or offsets")
    for name, values in (("ref_ctr_offsets", ref_ctr_offsets), ("cookies", cookies)):
        if values and len(values) != len(places):
            raise ValueError(f"{len(values)} {name} for {len(places)} places")
    name_buf = _abi.cstr(path)
    offs = _abi.U64Array(places)
    refs = _abi.U64Array(list(ref_ctr_offsets)) if ref_ctr_offsets else None
    cks = _abi.U64Array(list(cookies)) if cookies else None
    extra = struct.pack(
        "=QQQQIII",
        name_buf.address,
        offs.address,
        refs.address if refs else 0,
        cks.address if cks else 0,
        len(places),
        _BPF_F_UPROBE_MULTI_RETURN if retprobe else 0,
        max(pid, 0),
    )
    try:
        fd = _abi.link_create(program.fd, 0, AttachType.TRACE_UPROBE_MULTI, 0, extra)
    except SyscallError as err:
        err.add_note(f"while attaching a multi-uprobe to {len(places)} places of {path}")
        raise
    return FDLink(FD(fd), kind=f"uprobe_multi {path} ({len(places)} places)")


# --- USDT ----------------------------------------------------------------------------------------

_spec_ids: weakref.WeakKeyDictionary[object, set[int]] = weakref.WeakKeyDictionary()


def _allocate(specs_map: object, count: int, max_entries: int) -> list[int]:
    used = _spec_ids.setdefault(specs_map, set())
    free = [i for i in range(max_entries) if i not in used][:count]
    if len(free) < count:
        raise NotSupportedError(
            "more USDT specs", detail=f"__bpf_usdt_specs has {max_entries} entries and {len(used)} are in use"
        )
    used.update(free)
    return free


class USDTLink(_LinkBase):
    """All probe sites of one USDT probe, attached together (one uprobe link per site)."""

    def __init__(
        self,
        links: list[Link],
        specs_map: object | None,
        spec_ids: list[int],
        label: str,
        ip_map: _MapLike | None = None,
        ips: tuple[int, ...] = (),
    ) -> None:
        self.links = links
        self._specs_map = specs_map
        self._spec_ids = spec_ids
        self.label = label
        self._ip_map = ip_map
        self.ips = ips
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def update(self, program: ProgramLike, *, old: ProgramLike | None = None) -> None:
        """Swap the program on every site (each site's link is updated in turn)."""
        for link in self.links:
            link.update(program, old=old)

    def pin(self, path: str | os.PathLike[str]) -> None:
        raise NotSupportedError("pinning a USDT attachment", detail="it is one link per probe site")

    def unpin(self) -> None:
        pass

    def detach(self) -> None:
        for link in self.links:
            link.detach()

    def info(self) -> LinkInfo:
        """The info of the first site's link (see :attr:`links` for the others)."""
        return self.links[0].info()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for link in self.links:
            link.close()
        if self._ip_map is not None:
            for ip in self.ips:
                _abi.map_delete(self._ip_map.fd, struct.pack("=q", ip))
        if self._specs_map is not None:
            used = _spec_ids.get(self._specs_map)
            if used is not None:
                used.difference_update(self._spec_ids)

    def __repr__(self) -> str:
        return f"<usdt {self.label} ({len(self.links)} sites) {'closed' if self._closed else 'attached'}>"


def usdt(
    program: ProgramLike,
    binary: str,
    provider: str,
    name: str,
    *,
    specs_map: _MapLike | None = None,
    specs_max_entries: int = 256,
    ip_map: _MapLike | None = None,
    pid: int = -1,
    cookie: int = 0,
) -> USDTLink:
    """Attach a USDT program (libbpf's ``SEC("usdt/...")`` with ``usdt.bpf.h``) to every site of
    probe ``provider:name`` in ``binary``.

    Args:
        binary: the executable or library holding the ``.note.stapsdt`` notes.
        specs_map: the program's ``__bpf_usdt_specs`` map (ARRAY, value 208 bytes); each
            site's argument spec is written there and its id becomes the uprobe cookie.
            Without it the uprobes get ``cookie`` directly (for programs that do not use
            ``bpf_usdt_arg()``).
        specs_max_entries: ``max_entries`` of ``specs_map`` (libbpf's default: 256).
        ip_map: the program's ``__bpf_usdt_ip_to_spec_id`` map (HASH, ``long`` ip -> spec id),
            which ``usdt.bpf.h`` reads instead of the cookie on kernels without BPF cookies
            (``LINUX_HAS_BPF_COOKIE`` false). Filled with each site's run-time address:
            the note address in a non-PIE executable, else the address where ``pid`` maps
            it; removed again on close.
        cookie: the value ``bpf_usdt_cookie()`` returns.

    Raises:
        ELFError: no such probe in the binary, or an argument this parser cannot read.
        NotSupportedError: ``ip_map`` for a PIE executable or library without a ``pid``
            (its addresses differ per process).

    Requires Linux >= 5.15 (BPF cookies); semaphores (``ref_ctr_offset``) need 4.20.
    """
    path = _elfsym.find_library(binary, pid)
    sites = [n for n in _usdt.read_notes(path) if n.provider == provider and n.name == name]
    if not sites:
        raise ELFError(f"no USDT probe {provider}:{name} in .note.stapsdt", source=path)
    arg_specs = [_usdt.parse_args(site.args) for site in sites]
    if ip_map is not None and specs_map is None:
        raise ValueError("ip_map needs specs_map (it maps addresses to spec ids)")
    ips: tuple[int, ...] = ()
    if ip_map is not None:
        ips = _site_addresses(path, sites, pid)
    spec_ids: list[int] = []
    if specs_map is not None:
        distinct = sorted(set(arg_specs), key=arg_specs.index)
        spec_ids = _allocate(specs_map, len(distinct), specs_max_entries)
        ids = dict(zip(distinct, spec_ids, strict=True))
        for spec, spec_id in ids.items():
            _abi.map_update(
                specs_map.fd, struct.pack("=I", spec_id), _usdt.encode_spec(spec, cookie, sys.byteorder)
            )
    links: list[Link] = []
    try:
        if ip_map is not None:
            for ip, spec in zip(ips, arg_specs, strict=True):
                _abi.map_update(ip_map.fd, struct.pack("=q", ip), struct.pack("=I", ids[spec]))
        for site, spec in zip(sites, arg_specs, strict=True):
            offset = _elfsym.vaddr_to_offset(path, site.pc)
            ref = _elfsym.vaddr_to_offset(path, site.semaphore) if site.semaphore else 0
            site_cookie = ids[spec] if specs_map is not None else cookie
            links.append(
                _uprobe_at(
                    program,
                    path,
                    offset,
                    pid=pid,
                    retprobe=False,
                    cookie=site_cookie,
                    ref_ctr_offset=ref,
                    label=f"{path}:{provider}:{name}@{offset:#x}",
                )
            )
    except BaseException:
        for link in links:
            link.close()
        if ip_map is not None:
            for ip in ips:
                _abi.map_delete(ip_map.fd, struct.pack("=q", ip))
        if specs_map is not None:
            _spec_ids.get(specs_map, set()).difference_update(spec_ids)
        raise
    return USDTLink(links, specs_map, spec_ids, f"{provider}:{name} in {path}", ip_map, ips)


def _site_addresses(path: str, sites: list[_usdt.Note], pid: int) -> tuple[int, ...]:
    """Run-time addresses of the probe sites, for ``__bpf_usdt_ip_to_spec_id``."""
    if _elfsym.elf_type(path) == "ET_EXEC":
        return tuple(site.pc for site in sites)
    if pid <= 0:
        raise NotSupportedError(
            "filling __bpf_usdt_ip_to_spec_id for all processes",
            detail=f"{path} is position independent, so each process maps it elsewhere: give a pid",
        )
    try:
        return tuple(
            _elfsym.offset_to_address(path, _elfsym.vaddr_to_offset(path, site.pc), pid) for site in sites
        )
    except (LookupError, OSError) as err:
        raise NotSupportedError("filling __bpf_usdt_ip_to_spec_id", detail=str(err)) from err
