"""CLI layer: ``ebpf btf``, the BPF Type Format: ``ebpf btf dump FILE`` like ``bpftool btf dump``.

Rule 1: FILE is raw BTF (``/sys/kernel/btf/vmlinux``, a module's ``/sys/kernel/btf/X`` with
``--base``) or an ELF object, whose ``.BTF`` section is read with pyelftools; the content
decides, not the name.

Rule 2: ``--format raw`` prints bpftool's ``[id] KIND 'name' ...`` listing, ``c`` a compilable
header (``vmlinux.h``), ``json`` (or ``--json``) bpftool's ``-j`` document; ``--format c --json``
gives ``{"file", "format": "c", "header"}``.

Rule 3: the group stays open: a subcommand written in another module (``btf list``) is one
line in :data:`SUBCOMMANDS` (``name -> "module:attribute"``), imported only when used.
"""

from __future__ import annotations

import importlib
import io
import sys

import click

from ebpf.btf import Spec
from ebpf.cli._common import Printer, fail, json_option
from ebpf.cli._input import display_name, read_input
from ebpf.errors import BTFError

__all__ = ["SUBCOMMANDS", "btf", "dump", "load_btf"]

_ELF_MAGIC = b"\x7fELF"

# name -> "module:attribute" of `ebpf btf` subcommands defined in other modules.
SUBCOMMANDS: dict[str, str] = {
    "list": "ebpf.cli.kobjects:btf_list",  # the kernel's BTF objects; `dump` needs no kernel
}


class _BTFGroup(click.Group):
    """``ebpf btf``: its own commands plus the lazily imported :data:`SUBCOMMANDS`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *SUBCOMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command), target
        return command


def load_btf(data: bytes, *, source: str, base: Spec | None = None) -> Spec:
    """Parse FILE's bytes: raw BTF, or the ``.BTF`` section of an ELF object."""
    if data[:4] == _ELF_MAGIC:
        data = _elf_btf(data, source)
    return Spec.from_bytes(data, source=source, base=base)


def _elf_btf(data: bytes, source: str) -> bytes:
    from elftools.common.exceptions import ELFError as PyELFError
    from elftools.common.exceptions import ELFParseError
    from elftools.elf.elffile import ELFFile

    try:
        section = ELFFile(io.BytesIO(data)).get_section_by_name(".BTF")
        if section is None:
            raise BTFError("the ELF object has no .BTF section (compile with clang -g)", source=source)
        raw: bytes = section.data()
    except (PyELFError, ELFParseError, ValueError, IndexError) as err:
        raise BTFError(f"malformed ELF object: {err}", source=source) from None
    return raw


@click.group(cls=_BTFGroup, short_help="Inspect BTF type information (like bpftool btf).")
def btf() -> None:
    """BTF, the BPF Type Format: the types of the kernel (/sys/kernel/btf/vmlinux) and of objects.

    \b
    ebpf btf dump /sys/kernel/btf/vmlinux              every type, like bpftool btf dump
    ebpf btf dump /sys/kernel/btf/vmlinux --format c   vmlinux.h
    ebpf btf dump prog.o --json                        an object's .BTF as JSON
    """


@btf.command(short_help="Print every type of a BTF file or an ELF object's .BTF.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["raw", "c", "json"]),
    default="raw",
    show_default=True,
    help="raw: bpftool's '[id] KIND ...' lines; c: a C header (vmlinux.h); json: bpftool -j.",
)
@click.option(
    "--base",
    "-B",
    "base_file",
    type=click.Path(exists=True, dir_okay=False),
    help="FILE is split BTF (a kernel module's) on this base, e.g. /sys/kernel/btf/vmlinux.",
)
@click.option(
    "--root",
    "roots",
    type=int,
    multiple=True,
    metavar="ID",
    help="With --format c: only this type and what it needs (repeatable).",
)
@click.option(
    "--kfuncs",
    is_flag=True,
    help="With --format c: also kfunc prototypes (extern ... __weak __ksym), as bpftool 7.5+ writes.",
)
@json_option
def dump(
    file: str, fmt: str, base_file: str | None, roots: tuple[int, ...], kfuncs: bool, as_json: bool
) -> None:
    """Print the types of FILE: raw BTF (/sys/kernel/btf/*) or an ELF object (its .BTF section).

    \b
    ebpf btf dump /sys/kernel/btf/vmlinux --format c > vmlinux.h
    ebpf btf dump /sys/kernel/btf/mod --base /sys/kernel/btf/vmlinux

    Needs no root and no kernel.
    """
    from ebpf.btf.cdump import dump_c
    from ebpf.btf.pretty import dump_raw, types_json

    base = None
    if base_file is not None:
        base = load_btf(read_input(base_file), source=base_file)
    source = display_name(file)
    spec = load_btf(read_input(file), source=source, base=base)
    if (roots or kfuncs) and fmt != "c":
        raise fail("--root and --kfuncs need --format c")
    if fmt == "c":
        text = dump_c(spec, ids=roots or None, kfuncs=kfuncs)
        if as_json:
            Printer.json({"file": source, "format": "c", "header": text})
            return
    elif as_json or fmt == "json":
        Printer.json(types_json(spec))
        return
    else:
        text = dump_raw(spec)
    sys.stdout.write(text)
    sys.stdout.flush()
