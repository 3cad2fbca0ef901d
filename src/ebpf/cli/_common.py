"""CLI layer: what every subcommand shares: error reporting, ``--json``, and output.

Rule 1: a :class:`~ebpf.errors.BPFError` raised while a command runs is turned into
:class:`LibraryError` by the group (:mod:`ebpf.cli.main`): one ``error: ...`` line on
stderr, exit status 1; with ``--json`` also ``{"error": {...}}`` on stdout.

Rule 2: :class:`Printer` decides once per command between rich output (a terminal, or
``--color always``) and plain, stable text (pipes, files, tests). JSON never goes through
rich.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click

from ebpf.errors import BPFError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "COLOR_META",
    "JSON_META",
    "CLIError",
    "LibraryError",
    "Printer",
    "error_payload",
    "format_duration",
    "format_hex_bytes",
    "json_option",
]

JSON_META = "ebpf.json"
COLOR_META = "ebpf.color"

F = TypeVar("F", bound=Callable[..., Any])

# Attributes of BPFError subclasses worth passing on to JSON consumers, in display order.
_ERROR_FIELDS = ("source", "line", "column", "index", "offset", "pc", "insn", "address", "cmd", "errno")


def error_payload(err: BaseException) -> dict[str, Any]:
    """The JSON form of an error: its type, message and the typed fields it carries."""
    payload: dict[str, Any] = {"type": type(err).__name__, "message": str(err)}
    for name in _ERROR_FIELDS:
        value = getattr(err, name, None)
        if isinstance(value, str | int) and not isinstance(value, bool):
            payload[name] = value
    return payload


class CLIError(click.ClickException):
    """A user error found by the CLI itself (bad hex, unknown section, ...): exit status 1."""

    exit_code = 1

    def __init__(self, message: str, *, as_json: bool = False, payload: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.as_json = as_json
        self.payload = payload if payload is not None else {"type": "CLIError", "message": message}

    def show(self, file: IO[Any] | None = None) -> None:
        if self.as_json:
            click.echo(json.dumps({"error": self.payload}, indent=2))
        click.echo(f"error: {self.format_message()}", err=True)


class LibraryError(CLIError):
    """A :class:`~ebpf.errors.BPFError` from the library, reported as one line.

    ``context`` (e.g. the input file of a run) prefixes the message when the error has no
    source of its own.
    """

    def __init__(self, err: BPFError, *, as_json: bool = False, context: str | None = None) -> None:
        message = f"{context}: {err}" if context else str(err)
        payload = error_payload(err)
        payload["message"] = message
        super().__init__(message, as_json=as_json, payload=payload)
        self.error = err


def _remember_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    # ctx.meta is shared by the whole context chain, so the group sees it when it reports errors.
    ctx.meta[JSON_META] = bool(value)
    return value


def json_option(func: F) -> F:
    """The ``--json`` flag every subcommand has."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        callback=_remember_json,
        help='Print one JSON document on stdout instead of text (errors too: {"error": {...}}).',
    )(func)


def wants_json() -> bool:
    """Whether the running command was given ``--json``."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.meta.get(JSON_META))


def fail(message: str) -> CLIError:
    """A CLI-level error for the running command (raise the result)."""
    return CLIError(message, as_json=wants_json())


def format_hex_bytes(data: bytes) -> str:
    """``b"\\xb7\\x00"`` -> ``"b7 00"`` (the llvm-objdump and bpf_conformance spelling)."""
    return " ".join(f"{byte:02x}" for byte in data)


def format_duration(ns: int, *, unicode: bool = False) -> str:
    """A wall time for humans: ``"812 ns"``, ``"12.3 us"``, ``"4.56 ms"``, ``"1.23 s"``."""
    if ns < 1_000:
        return f"{ns} ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.1f} {'µs' if unicode else 'us'}"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.2f} ms"
    return f"{ns / 1_000_000_000:.2f} s"


def format_retval(value: int) -> str:
    """r0 as hex and decimal, plus the signed reading when the top bit is set."""
    text = f"{value:#x} ({value})"
    if value >> 63:
        text = f"{value:#x} ({value}, signed {value - (1 << 64)})"
    return text


class Printer:
    """Output for one command: rich on a terminal (or ``--color always``), plain text otherwise.

    Plain mode writes with :func:`click.echo` only, so output is stable and never wrapped.
    """

    def __init__(self) -> None:
        ctx = click.get_current_context(silent=True)
        color = ctx.meta.get(COLOR_META, "auto") if ctx else "auto"
        if color == "always":
            self.rich = True
        elif color == "never" or os.environ.get("NO_COLOR"):
            self.rich = False
        else:
            self.rich = sys.stdout.isatty()
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        """The rich console (created on first use; only in rich mode)."""
        assert self.rich, "the rich console is only used in rich mode"
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=sys.stdout, force_terminal=True, highlight=False, soft_wrap=True)
        return self._console

    def line(self, text: str = "", style: str | None = None) -> None:
        """One line of text (rich markup is *not* interpreted)."""
        if self.rich:
            self.console.print(text, style=style, markup=False)
        else:
            click.echo(text)

    def heading(self, text: str) -> None:
        if self.rich:
            self.console.print(text, style="bold cyan", markup=False)
        else:
            click.echo(text)

    def fields(self, rows: Sequence[tuple[str, str]], *, indent: int = 0) -> None:
        """Aligned ``name: value`` lines."""
        if not rows:
            return
        width = max(len(name) for name, _ in rows) + 1
        pad = " " * indent
        for name, value in rows:
            label = f"{name}:".ljust(width)
            if self.rich:
                self.console.print(f"{pad}[bold]{_escape(label)}[/bold] {_escape(value)}")
            else:
                click.echo(f"{pad}{label} {value}")

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[str]],
        *,
        right: Sequence[int] = (),
        styles: Sequence[str | None] = (),
    ) -> None:
        """A table: a rich one on a terminal, tab-free aligned columns otherwise.

        ``right``: indexes of right-aligned columns; ``styles``: a rich style per column.
        """
        widths = [max([len(headers[i]), *(len(row[i]) for row in rows)]) for i in range(len(headers))]
        if self.rich:
            from rich.table import Table

            table = Table(box=None, pad_edge=False, header_style="bold")
            for i, header in enumerate(headers):
                table.add_column(
                    header,
                    justify="right" if i in right else "left",
                    no_wrap=True,
                    min_width=widths[i],
                    style=styles[i] if i < len(styles) else None,
                )
            for row in rows:
                table.add_row(*(_escape(cell) for cell in row))
            # Never squeeze columns into a narrow terminal (rich would cut them with "…").
            needed = sum(widths) + 2 * (len(widths) - 1)
            self.console.print(table, width=max(self.console.width, needed), crop=False)
            return

        def fmt(cells: Sequence[str]) -> str:
            parts = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)]
            return "  ".join(parts).rstrip()

        click.echo(fmt(headers))
        for row in rows:
            click.echo(fmt(row))

    @staticmethod
    def json(document: Any) -> None:
        """One JSON document on stdout."""
        click.echo(json.dumps(document, indent=2))


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
