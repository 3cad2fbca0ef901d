"""CLI layer: kernel object listings like bpftool's: ``prog list|show``, ``map list|show|dump``,
``link list``, ``btf list``.

Rule 1: only reads: ids come from ``BPF_*_GET_NEXT_ID``, details from ``BPF_OBJ_GET_INFO_BY_FD``
on a descriptor opened by id (closed again at once); nothing is loaded or changed.

Rule 2: ``--json`` output uses bpftool's field names (``id``, ``type``, ``name``, ``tag``,
``gpl_compatible``, ``loaded_at``, ``uid``, ``bytes_xlated``, ``bytes_jited``, ``map_ids``,
``btf_id``; maps: ``key``, ``value``, ``max_entries``, ``flags``), so the two can be compared.

Rule 3: objects that vanish between listing and opening are skipped, as bpftool does.
"""

from __future__ import annotations

import errno as _errno
import time
from typing import Any

import click

from ebpf.cli._common import Printer, fail, json_option
from ebpf.errors import BPFError, SyscallError

__all__ = ["btf_list", "link", "map_", "prog_list", "prog_show"]


def _need_bpf() -> None:
    from ebpf.kernel.features import bpf_unavailable_reason

    reason = bpf_unavailable_reason()
    if reason is not None:
        raise fail(f"bpf() is unavailable: {reason}")


def _type_name(value: object) -> str:
    return value.name.lower() if hasattr(value, "name") else str(value)


def _boot_time_s() -> float:
    """Wall-clock time of boot (for ``loaded_at``), from CLOCK_REALTIME - CLOCK_BOOTTIME."""
    return time.clock_gettime(time.CLOCK_REALTIME) - time.clock_gettime(time.CLOCK_BOOTTIME)


# --- programs ----------------------------------------------------------------------------------


def _prog_doc(prog_id: int) -> dict[str, Any] | None:
    from ebpf.kernel.program import Program

    try:
        prog = Program.from_id(prog_id)
    except SyscallError as err:
        if err.errno == _errno.ENOENT:
            return None
        raise
    with prog:
        info = prog.info()
        map_ids = list(prog.map_ids()) if info.nr_map_ids else []
    doc: dict[str, Any] = {
        "id": info.id,
        "type": _type_name(info.type),
        "name": info.name,
        "tag": info.tag,
        "gpl_compatible": info.gpl_compatible,
        "loaded_at": int(_boot_time_s() + info.load_time_ns / 1e9),
        "uid": info.created_by_uid,
        "bytes_xlated": info.xlated_prog_len,
        "jited": info.jited_prog_len > 0,
        "bytes_jited": info.jited_prog_len,
        "map_ids": map_ids,
    }
    if info.btf_id:
        doc["btf_id"] = info.btf_id
    if info.run_cnt:
        doc["run_time_ns"] = info.run_time_ns
        doc["run_cnt"] = info.run_cnt
    doc["verified_insns"] = info.verified_insns
    return doc


def _print_progs(docs: list[dict[str, Any]]) -> None:
    out = Printer()
    for d in docs:
        name = f" name {d['name']}" if d["name"] else ""
        out.line(f"{d['id']}: {d['type']}{name}  tag {d['tag']}{'  gpl' if d['gpl_compatible'] else ''}")
        loaded = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(d["loaded_at"]))
        out.line(f"\tloaded_at {loaded}  uid {d['uid']}")
        line = f"\txlated {d['bytes_xlated']}B"
        line += f"  jited {d['bytes_jited']}B" if d["jited"] else "  not jited"
        if d["map_ids"]:
            line += "  map_ids " + ",".join(map(str, d["map_ids"]))
        if "btf_id" in d:
            line += f"  btf_id {d['btf_id']}"
        out.line(line)
        if "run_cnt" in d:
            out.line(f"\trun_time_ns {d['run_time_ns']} run_cnt {d['run_cnt']}")


@click.command("list", short_help="List the programs loaded in the kernel (bpftool prog show).")
@json_option
def prog_list(as_json: bool) -> None:
    """List every program loaded in the kernel."""
    from ebpf.kernel.program import program_ids

    _need_bpf()
    docs = [d for d in (_prog_doc(i) for i in program_ids()) if d is not None]
    if as_json:
        Printer.json(docs)
    else:
        _print_progs(docs)


@click.command("show", short_help="Show one program by id (bpftool prog show id N).")
@click.argument("prog_id", type=int)
@json_option
def prog_show(prog_id: int, as_json: bool) -> None:
    """Show program PROG_ID."""
    _need_bpf()
    doc = _prog_doc(prog_id)
    if doc is None:
        raise fail(f"no program with id {prog_id}")
    if as_json:
        Printer.json(doc)
    else:
        _print_progs([doc])


# --- maps --------------------------------------------------------------------------------------


def _map_doc(info: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": info.id,
        "type": _type_name(info.type),
        "name": info.name,
        "flags": info.flags,
        "bytes_key": info.key_size,
        "bytes_value": info.value_size,
        "max_entries": info.max_entries,
    }
    if info.btf_id:
        doc["btf_id"] = info.btf_id
    return doc


def _map_infos() -> list[Any]:
    from ebpf.kernel.map import Map, map_ids

    infos = []
    for map_id in map_ids():
        try:
            with Map.from_id(map_id) as m:
                infos.append(m.info())
        except SyscallError as err:
            if err.errno != _errno.ENOENT:
                raise
    return infos


def _open_map(what: str) -> Any:
    """A kernel Map by id (digits) or by name (must be unique)."""
    from ebpf.kernel.map import Map

    if what.isdigit():
        try:
            return Map.from_id(int(what))
        except SyscallError as err:
            if err.errno == _errno.ENOENT:
                raise fail(f"no map with id {what}") from None
            raise
    matches = [info for info in _map_infos() if info.name == what]
    if not matches:
        raise fail(f"no map named {what!r} (kernel map names are at most 15 characters)")
    if len(matches) > 1:
        raise fail(
            f"{len(matches)} maps are named {what!r} (ids {', '.join(str(m.id) for m in matches)}); use an id"
        )
    return Map.from_id(matches[0].id)


@click.group("map")
def map_() -> None:
    """Maps in the kernel (like bpftool map)."""


@map_.command("list", short_help="List the maps in the kernel (bpftool map show).")
@json_option
def map_list(as_json: bool) -> None:
    """List every map in the kernel."""
    _need_bpf()
    docs = [_map_doc(info) for info in _map_infos()]
    if as_json:
        Printer.json(docs)
        return
    out = Printer()
    for d in docs:
        out.line(f"{d['id']}: {d['type']}  name {d['name']}  flags {d['flags']:#x}")
        tail = f"  btf_id {d['btf_id']}" if "btf_id" in d else ""
        out.line(f"\tkey {d['bytes_key']}B  value {d['bytes_value']}B  max_entries {d['max_entries']}{tail}")


@map_.command("dump", short_help="Dump a map's entries by id or name (bpftool map dump).")
@click.argument("map_ref", metavar="NAME|ID")
@json_option
def map_dump(map_ref: str, as_json: bool) -> None:
    """Dump every entry of a map; values are decoded through the map's BTF when it has one."""
    _need_bpf()
    with _open_map(map_ref) as m:
        info = m.info()
        spec = None
        if info.btf_id and (info.btf_key_type_id or info.btf_value_type_id):
            from ebpf.kernel.btf import KernelBTF, vmlinux_spec

            with KernelBTF.from_id(info.btf_id) as kbtf:
                try:
                    spec = kbtf.to_spec()
                except BPFError:  # split BTF (a module's, or one built on vmlinux) needs its base
                    spec = kbtf.to_spec(base=vmlinux_spec())
        entries = _entries(m)
    docs: list[dict[str, Any]] = []
    for key, value in entries:
        doc: dict[str, Any] = {
            "key": key.hex(),
            "value": value.hex() if isinstance(value, bytes) else [v.hex() for v in value],
        }
        if spec is not None:
            from ebpf.btf.pretty import to_python

            formatted: dict[str, Any] = {}
            if info.btf_key_type_id and key:
                formatted["key"] = to_python(spec, info.btf_key_type_id, key)
            if info.btf_value_type_id:
                if isinstance(value, bytes):
                    formatted["value"] = to_python(spec, info.btf_value_type_id, value)
                else:
                    formatted["values"] = [
                        {"cpu": i, "value": to_python(spec, info.btf_value_type_id, v)}
                        for i, v in enumerate(value)
                    ]
            doc["formatted"] = formatted
        docs.append(doc)
    if as_json:
        Printer.json(docs)
        return
    out = Printer()
    for doc in docs:
        if "formatted" in doc:
            import json

            out.line(json.dumps(doc["formatted"]))
        else:
            value = doc["value"]
            shown = value if isinstance(value, str) else " | ".join(value)
            out.line(f"key: {_spaced(doc['key'])}  value: {_spaced(shown)}")
    out.line(f"Found {len(docs)} element{'s' if len(docs) != 1 else ''}")


def _spaced(hexstr: str) -> str:
    return " ".join(hexstr[i : i + 2] for i in range(0, len(hexstr), 2))


def _entries(m: Any) -> list[tuple[bytes, Any]]:
    out: list[tuple[bytes, Any]] = []
    percpu = getattr(m, "percpu", False)
    for key in m:
        try:
            out.append((key, m.lookup_percpu(key) if percpu else m.lookup(key)))
        except SyscallError as err:
            if err.errno == _errno.ENOENT:
                continue
            raise
        except KeyError:
            continue
    return out


# --- links -------------------------------------------------------------------------------------


@click.group("link")
def link() -> None:
    """Links in the kernel (like bpftool link)."""


@link.command("list", short_help="List the BPF links in the kernel (bpftool link show).")
@json_option
def link_list(as_json: bool) -> None:
    """List every BPF link: its type, program and what it is attached to."""
    from ebpf.attach.link import link_ids, open_link

    _need_bpf()
    docs = []
    for link_id in link_ids():
        try:
            with open_link(link_id) as opened:
                info = opened.info()
        except SyscallError as err:
            if err.errno == _errno.ENOENT:
                continue
            raise
        docs.append(
            {"id": info.id, "type": _type_name(info.type), "prog_id": info.prog_id, **dict(info.details)}
        )
    if as_json:
        Printer.json(docs)
        return
    out = Printer()
    for d in docs:
        extra = "  ".join(f"{k} {v}" for k, v in d.items() if k not in ("id", "type", "prog_id"))
        out.line(f"{d['id']}: {d['type']}  prog {d['prog_id']}" + (f"\n\t{extra}" if extra else ""))


# --- BTF ---------------------------------------------------------------------------------------


@click.command("list", short_help="List the BTF objects in the kernel (bpftool btf show).")
@json_option
def btf_list(as_json: bool) -> None:
    """List every BTF object loaded in the kernel (vmlinux, modules, programs' BTF)."""
    from ebpf.kernel.btf import list_btf

    _need_bpf()
    docs = [{"id": b.id, "name": b.name, "size": b.size, "kernel": b.kernel_btf} for b in list_btf()]
    if as_json:
        Printer.json(docs)
        return
    out = Printer()
    for d in docs:
        name = f"  name {d['name']}" if d["name"] else ""
        out.line(f"{d['id']}: size {d['size']}B{name}{'  kernel' if d['kernel'] else ''}")
