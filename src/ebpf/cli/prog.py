"""CLI layer: ``ebpf prog`` — programs in the kernel. ``loadall`` loads and pins an object's programs.

Rule 1: ``ebpf prog loadall OBJ PIN_DIR [--pinmaps MAP_DIR]`` behaves like
``bpftool prog loadall OBJ PIN_DIR [pinmaps MAP_DIR]``: every program is pinned at
``PIN_DIR/<function name>``, and with ``--pinmaps`` every map at ``MAP_DIR/<map name>`` with
dots turned into underscores (libbpf's ``bpf_object__pin_maps``: ``.rodata`` of ``prog.o`` is
``prog_rodata``). A failed load pins nothing; a failure while pinning removes the pins made.

Rule 2: the command prints one line per pin (``--json``: a list of objects); bpftool prints
nothing, and nothing else differs.

Other subcommands (``list``, ``show``) join this group later.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from ebpf.cli._common import Printer, fail, json_option

__all__ = ["loadall", "prog"]


@click.group("prog")
def prog() -> None:
    """Programs in the kernel (like bpftool prog)."""


@prog.command("loadall")
@click.argument("obj", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("pin_dir", type=click.Path(path_type=Path))
@click.option(
    "--pinmaps", "map_dir", type=click.Path(path_type=Path), help="Also pin every map in this directory."
)
@click.option("--log-level", type=int, default=0, show_default=True, help="Verifier log level (0, 1, 2).")
@json_option
def loadall(obj: Path, pin_dir: Path, map_dir: Path | None, log_level: int, as_json: bool) -> None:
    """Load every program and map of OBJ into the kernel and pin the programs under PIN_DIR."""
    from ebpf.kernel.collection import Collection, LoadOptions
    from ebpf.kernel.features import bpf_unavailable_reason
    from ebpf.kernel.map import ensure_bpffs

    reason = bpf_unavailable_reason()
    if reason is not None:
        raise fail(f"cannot load {obj}: bpf() is unavailable: {reason}")
    options = LoadOptions(log_level=log_level)
    pinned: list[dict[str, str]] = []
    with Collection.from_file(obj, options) as coll:
        made: list[str] = []
        try:
            ensure_bpffs(pin_dir)
            for name, program in coll.programs.items():
                path = os.path.join(pin_dir, name)
                program.pin(path)
                made.append(path)
                pinned.append({"kind": "prog", "name": name, "path": path})
            if map_dir is not None:
                ensure_bpffs(map_dir)
                for name, m in coll.maps.items():
                    if m.pinned is not None and m.reused:
                        continue
                    kernel_name = m.info().name
                    path = os.path.join(map_dir, (kernel_name or name).replace(".", "_"))
                    m.pin(path)
                    made.append(path)
                    pinned.append({"kind": "map", "name": name, "path": path})
        except BaseException:
            for path in made:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            raise
    if as_json:
        Printer.json(pinned)
        return
    out = Printer()
    for item in pinned:
        out.line(f"{item['kind']} {item['name']} pinned at {item['path']}")


# ``list`` and ``show`` live with the other kernel object listings (cli/kobjects.py).
from ebpf.cli.kobjects import prog_list, prog_show

prog.add_command(prog_list)
prog.add_command(prog_show)
