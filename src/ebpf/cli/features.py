"""CLI layer: ``ebpf features``, what this kernel supports (like ``bpftool feature probe``).

Every answer comes from a probe that asks the kernel (:mod:`ebpf.kernel.probes`); nothing is
read from a version table. "refused" means the kernel knows the feature but denied this process
(the observed errno and lockdown mode are shown); "not probed" says why no safe probe exists.
"""

from __future__ import annotations

from typing import Any

import click

from ebpf.cli._common import Printer, fail, json_option

__all__ = ["features"]


@click.command(short_help="Probe the kernel: program, map, attach types and helpers.")
@click.option(
    "--helpers/--no-helpers", "with_helpers", default=False, help="Also list helpers per program type."
)
@click.option(
    "--program-type", "only_type", metavar="TYPE", help="Helpers of this program type only (e.g. xdp)."
)
@json_option
def features(with_helpers: bool, only_type: str | None, as_json: bool) -> None:
    """Probe what this kernel's BPF supports, by asking it.

    \b
    Examples:
      ebpf features
      ebpf features --helpers --program-type xdp
      ebpf features --json
    """
    from ebpf.helpers import HelperId
    from ebpf.kernel.features import bpf_unavailable_reason
    from ebpf.kernel.probes import (
        Status,
        probe_attach_type,
        probe_helper,
        probe_map_type,
        probe_program_type,
    )
    from ebpf.spec import AttachType, MapType, ProgramType

    reason = bpf_unavailable_reason()
    if reason:
        raise fail(f"cannot probe: {reason}")
    prog_types: list[ProgramType] = [t for t in ProgramType if t is not ProgramType.UNSPEC]
    if only_type is not None:
        try:
            chosen = [ProgramType[only_type.upper()]]
        except KeyError:
            raise fail(f"unknown program type {only_type!r}") from None
        with_helpers = True
    else:
        chosen = prog_types
    progs: dict[ProgramType, Any] = {t: probe_program_type(t) for t in prog_types}
    maps = {t: probe_map_type(t) for t in MapType if t is not MapType.UNSPEC}
    attach = {t: probe_attach_type(t) for t in AttachType}
    helpers: dict[ProgramType, list[str]] = {}
    if with_helpers or as_json:
        for t in chosen:
            if progs[t].ok:
                helpers[t] = [
                    h.name.lower() for h in HelperId if h and probe_helper(t, h).status is Status.SUPPORTED
                ]

    def doc(p: Any) -> dict[str, str]:
        return {"status": p.status.value, **({"detail": p.detail} if p.detail else {})}

    if as_json:
        Printer.json(
            {
                "program_types": {t.name.lower(): doc(p) for t, p in progs.items()},
                "map_types": {t.name.lower(): doc(p) for t, p in maps.items()},
                "attach_types": {t.name.lower(): doc(p) for t, p in attach.items()},
                "helpers": {t.name.lower(): names for t, names in helpers.items()},
            }
        )
        return
    out = Printer()
    for title, results in (("Program types", progs), ("Map types", maps), ("Attach types", attach)):
        out.heading(title)
        out.table(
            ["name", "status", "detail"],
            [[t.name.lower(), p.status.value, p.detail] for t, p in results.items()],
        )
        out.line()
    if helpers:
        out.heading("Helpers")
        for t, names in helpers.items():
            out.line(f"{t.name.lower()} ({len(names)}): {', '.join(names)}")
