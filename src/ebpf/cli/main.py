"""CLI layer: the ``ebpf`` command group, its global options and the ``version`` command.

Rule 1: subcommands live in their own modules and are imported only when used
(:class:`EbpfGroup` maps names to ``module:attribute``), so ``ebpf --help`` and
``ebpf version`` stay fast.

Rule 2: this group is the one place where library errors become exit status 1 (see
:mod:`ebpf.cli._common`).
"""

from __future__ import annotations

import errno
import importlib
import platform
import sys
from typing import Any

import click

from ebpf.cli._common import COLOR_META, JSON_META, CLIError, LibraryError, Printer, json_option
from ebpf.errors import BPFError

__all__ = ["EbpfGroup", "main"]

# name -> "module:attribute", in the order ``ebpf --help`` lists them.
COMMANDS: dict[str, str] = {
    "asm": "ebpf.cli.asm:asm",
    "disasm": "ebpf.cli.disasm:disasm",
    "run": "ebpf.cli.run:run",
    "inspect": "ebpf.cli.inspect:inspect",
    "btf": "ebpf.cli.btf:btf",
    "xdp": "ebpf.cli.xdp:xdp",
    "prog": "ebpf.cli.prog:prog",
    "map": "ebpf.cli.kobjects:map_",
    "link": "ebpf.cli.kobjects:link",
    "features": "ebpf.cli.features:features",
    "tools": "ebpf.cli.tools:tools",
    "demo": "ebpf.cli.demo:demo",
    "version": "ebpf.cli.main:version",
}


class EbpfGroup(click.Group):
    """A group whose subcommands are imported lazily and whose errors are reported in one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *(name for name in super().list_commands(ctx) if name not in COMMANDS)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command), target
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BPFError as err:
            raise LibraryError(err, as_json=bool(ctx.meta.get(JSON_META))) from err
        except OSError as err:
            if err.errno == errno.EPIPE:
                raise  # click exits quietly on a closed pipe
            what = f"{err.filename}: " if err.filename else ""
            raise CLIError(f"{what}{err.strerror or err}", as_json=bool(ctx.meta.get(JSON_META))) from err


def _version() -> str:
    from ebpf import __version__

    return __version__


@click.group(cls=EbpfGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "-V", "--version", prog_name="ebpf", message="%(prog)s %(version)s")
@click.option(
    "--color",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="Styled output: on a terminal (auto), always or never. NO_COLOR is honoured.",
)
@click.pass_context
def main(ctx: click.Context, color: str) -> None:
    """ebpf: assemble, disassemble and run eBPF programs, in user space or in the kernel.

    \b
    Examples:
      ebpf demo                       what this package does, in one screen
      ebpf asm prog.s                 assemble LLVM-syntax text to prog.bin
      ebpf disasm prog.o              llvm-objdump -d, for eBPF objects
      ebpf run prog.s --mem '01 02'   run on the interpreter, print r0

    Library errors print one line ("error: ...") and exit with status 1; usage errors exit
    with status 2. Every command takes --json.
    """
    ctx.meta[COLOR_META] = color


@click.command()
@json_option
def version(as_json: bool) -> None:
    """Show the version of ebpf, Python and the running kernel."""
    info = {
        "version": _version(),
        "python": platform.python_version(),
        "platform": sys.platform,
        "kernel": platform.release() if sys.platform.startswith("linux") else None,
    }
    if as_json:
        Printer.json(info)
        return
    kernel = f", Linux {info['kernel']}" if info["kernel"] else f", {sys.platform}"
    Printer().line(f"ebpf {info['version']} (Python {info['python']}{kernel})")
