"""CLI layer: ``ebpf xdp run OBJ --pcap IN``, an XDP or tc program over a capture, in user space.

Rule 1: no kernel and no root: the object is loaded into the user-space runtime
(:class:`ebpf.runtime.Collection`) and every packet of the capture goes through the program's
``test_run``, as ``BPF_PROG_TEST_RUN`` would pass it (XDP: ``xdp_md``; tc: ``__sk_buff``).

Rule 2: the verdicts are counted by name; packets the program lets through (XDP_PASS, XDP_TX,
XDP_REDIRECT; tc TC_ACT_OK/TC_ACT_REDIRECT...) are written to ``--out`` as the program left
them (modified bytes included), with their original timestamps; ``--write`` chooses which.

Rule 3: captures are read and written with dpkt (pcap and pcapng, detected from the magic).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any, BinaryIO

import click

from ebpf.cli._common import Printer, fail, json_option

__all__ = ["TC_VERDICTS", "XDP_VERDICTS", "read_capture", "xdp"]

XDP_VERDICTS = {0: "XDP_ABORTED", 1: "XDP_DROP", 2: "XDP_PASS", 3: "XDP_TX", 4: "XDP_REDIRECT"}
TC_VERDICTS = {
    -1: "TC_ACT_UNSPEC",
    0: "TC_ACT_OK",
    1: "TC_ACT_RECLASSIFY",
    2: "TC_ACT_SHOT",
    3: "TC_ACT_PIPE",
    4: "TC_ACT_STOLEN",
    5: "TC_ACT_QUEUED",
    6: "TC_ACT_REPEAT",
    7: "TC_ACT_REDIRECT",
}
_PASSING = {
    "XDP_PASS",
    "XDP_TX",
    "XDP_REDIRECT",
    "TC_ACT_OK",
    "TC_ACT_UNSPEC",
    "TC_ACT_PIPE",
    "TC_ACT_REDIRECT",
}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


def read_capture(f: BinaryIO) -> tuple[list[tuple[float, bytes]], int]:
    """All ``(timestamp, frame)`` of a pcap or pcapng file, and its link type.

    Raises:
        click.ClickException: not a capture file dpkt can read.
    """
    import dpkt

    head = f.read(4)
    f.seek(0)
    try:
        reader: Any = dpkt.pcapng.Reader(f) if head == _PCAPNG_MAGIC else dpkt.pcap.Reader(f)
        packets = [(float(ts), bytes(buf)) for ts, buf in reader]
        return packets, int(reader.datalink())
    except (ValueError, dpkt.dpkt.NeedData, dpkt.dpkt.UnpackError) as err:
        raise fail(f"{getattr(f, 'name', 'capture')}: not a readable pcap/pcapng file: {err}") from None


def _verdict_name(prog_type: str, retval: int) -> str:
    if prog_type == "xdp":
        return XDP_VERDICTS.get(retval & 0xFFFFFFFF, f"XDP_UNKNOWN({retval})")
    signed = retval - (1 << 32) if retval & 0x80000000 else retval & 0xFFFFFFFF
    return TC_VERDICTS.get(signed, f"TC_ACT_UNKNOWN({signed})")


@click.group(short_help="Run XDP / tc programs over packet captures in user space.")
def xdp() -> None:
    """XDP and tc programs over packets, in the user-space runtime."""


@xdp.command("run", short_help="Run an XDP or tc program over a pcap/pcapng file.")
@click.argument("obj", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--program", "-p", "program", metavar="NAME", help="The program (default: the only XDP/tc one)."
)
@click.option("--pcap", "pcap", required=True, type=click.File("rb"), help="Input capture (pcap or pcapng).")
@click.option("--out", "out_path", type=click.File("wb"), help="Write the passed packets here (pcap).")
@click.option(
    "--write",
    "write",
    default="pass",
    show_default=True,
    type=click.Choice(["pass", "all", "modified", "dropped"]),
    help="Which packets --out gets: pass (PASS/TX/REDIRECT, tc OK/...), all, modified, dropped.",
)
@click.option("--engine", default="py", show_default=True, help="User-space engine (interp or py).")
@click.option(
    "--map-init",
    "map_init",
    multiple=True,
    metavar="MAP:KEYHEX=VALUEHEX",
    help="Update a map before the run (repeatable), e.g. an LPM trie's rules.",
)
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@json_option
def run(
    obj: str,
    program: str | None,
    pcap: BinaryIO,
    out_path: BinaryIO | None,
    write: str,
    engine: str,
    map_init: tuple[str, ...],
    progress: bool | None,
    as_json: bool,
) -> None:
    """Run OBJ's XDP or tc program over every packet of a capture; count verdicts.

    \b
    Examples:
      ebpf xdp run fw.o --pcap traffic.pcap
      ebpf xdp run fw.o --program xdp_firewall --pcap in.pcapng --out passed.pcap --json
      ebpf xdp run fw.o --pcap in.pcap --map-init fw_v4:18000000c0000200=00000000
    """
    import dpkt

    from ebpf.elf import load_collection_spec
    from ebpf.runtime import Collection
    from ebpf.spec import ProgramType

    spec = load_collection_spec(obj)
    kinds = {ProgramType.XDP: "xdp", ProgramType.SCHED_CLS: "tc", ProgramType.SCHED_ACT: "tc"}
    candidates = [p for p in spec.programs.values() if p.type in kinds]
    if program is not None:
        if program not in spec.programs:
            raise fail(f"no program {program!r} in {obj}; it has: {', '.join(spec.programs)}")
        chosen = spec.programs[program]
        if chosen.type not in kinds:
            raise fail(f"program {program!r} is {chosen.type.name.lower()}, not XDP or tc")
    elif len(candidates) == 1:
        chosen = candidates[0]
    elif not candidates:
        raise fail(f"{obj} has no XDP or tc program")
    else:
        raise fail(
            f"{obj} has several XDP/tc programs; choose one with --program: {', '.join(p.name for p in candidates)}"
        )
    kind = kinds[chosen.type]
    for other in spec.programs.values():  # only load what this run needs (plus tail-call targets)
        if other.type not in kinds and other is not chosen:
            other.autoload = False
    packets, linktype = read_capture(pcap)
    writer = dpkt.pcap.Writer(out_path, linktype=linktype) if out_path is not None else None
    verdicts: Counter[str] = Counter()
    modified = 0
    written = 0
    show = progress if progress is not None else (sys.stderr.isatty() and len(packets) > 2000 and not as_json)
    with Collection(spec, engine=engine) as coll:
        _init_maps(coll, map_init)
        prog = coll.programs[chosen.name]
        start = time.perf_counter()
        bar: Any = None
        if show:
            from rich.progress import Progress

            bar = Progress(transient=True)
            task = bar.add_task("packets", total=len(packets))
            bar.start()
        try:
            names: dict[int, str] = {}  # retval -> verdict name
            test_run = prog.test_run  # reuses one mapping from packet to packet (runtime Rule 4)
            for i, (ts, frame) in enumerate(packets):
                result = test_run(frame)
                name = names.get(result.retval)
                if name is None:
                    name = names[result.retval] = _verdict_name(kind, result.retval)
                verdicts[name] += 1
                changed = result.data_out != frame
                modified += changed
                if writer is not None:
                    keep = (
                        write == "all"
                        or (write == "pass" and name in _PASSING)
                        or (write == "modified" and changed)
                        or (write == "dropped" and name not in _PASSING)
                    )
                    if keep:
                        writer.writepkt(result.data_out, ts=ts)
                        written += 1
                if bar is not None and i % 256 == 0:
                    bar.update(task, completed=i)
        finally:
            if bar is not None:
                bar.stop()
        elapsed = time.perf_counter() - start
        maps = {name: [[k.hex(), _value_hex(v)] for k, v in _items(m)] for name, m in coll.maps.items()}
    pps = len(packets) / elapsed if elapsed > 0 else 0.0
    if as_json:
        Printer.json(
            {
                "file": obj,
                "program": chosen.name,
                "type": kind,
                "packets": len(packets),
                "verdicts": dict(sorted(verdicts.items())),
                "modified": modified,
                "written": written,
                "seconds": round(elapsed, 6),
                "packets_per_second": round(pps, 1),
                "maps": maps,
            }
        )
        return
    out = Printer()
    out.heading(
        f"{chosen.name} ({kind}) over {len(packets)} packets: {pps:,.0f} packets/s on engine {engine}"
    )
    out.table(
        ["verdict", "packets", "share"],
        [[name, str(n), f"{100 * n / max(1, len(packets)):.1f}%"] for name, n in verdicts.most_common()],
        right=[1, 2],
    )
    out.fields(
        [("modified", str(modified))] + ([("written", f"{written} to {out_path.name}")] if out_path else [])
    )


def _init_maps(coll: Any, entries: tuple[str, ...]) -> None:
    from ebpf.errors import BPFError

    for entry in entries:
        name, _, kv = entry.partition(":")
        key, _, value = kv.partition("=")
        if name not in coll.maps:
            raise fail(f"--map-init {entry}: no map {name!r}; the object has: {', '.join(coll.maps)}")
        try:
            coll.maps[name].update(bytes.fromhex(key), bytes.fromhex(value))
        except ValueError as err:
            raise fail(f"--map-init {entry}: expected MAP:KEYHEX=VALUEHEX ({err})") from None
        except BPFError as err:
            raise fail(f"--map-init {entry}: {err}") from None


def _items(m: Any) -> list[tuple[bytes, Any]]:
    from ebpf.errors import BPFError

    try:
        return list(m.items())
    except BPFError:  # queue/stack/ringbuf have no keys to list
        return []


def _value_hex(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, list):
        return [_value_hex(x) for x in v]
    return v
