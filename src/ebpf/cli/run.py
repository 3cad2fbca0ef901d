"""CLI layer: ``ebpf run``, one run of a program in the user-space runtime (:func:`ebpf.vm.run`).

Rule 1: no root and no kernel: the program runs on an engine of :data:`ebpf.vm.ENGINES`.

Rule 2: a run-time fault is a library error: ``error: pc N (<instruction>): <what>`` on
stderr and exit status 1.

Rule 3: an ELF object given without the section-mode options (``--section``, ``--xdp``,
``--mem``, ``--mem-file``, ``--helpers``, ``--profile``) is loaded as a whole collection
into :class:`ebpf.runtime.Collection` (maps, global data, tail-call slots) and one program
runs like ``BPF_PROG_TEST_RUN`` (``--program``, ``--data-in``/``--data-file``, ``--ctx-in``,
``--repeat``); afterwards every map's contents are printed. With the section-mode options
one section's bytecode runs alone, as for raw bytecode.

Rule 4: the map dump after an object run lists data maps as ``[key_hex, value_hex]`` pairs
(per-CPU maps: ``[key_hex, [cpu0_hex, ...]]``); prog arrays and maps of maps as
``[key_hex, {"program"|"map": name}]``; queues and stacks by popping them (the collection
is discarded afterwards) as ``["", value_hex]`` in pop order; maps whose contents user
space cannot read (bloom filter, perf event array, ring buffer) as ``null``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from ebpf.cli._common import (
    LibraryError,
    Printer,
    fail,
    format_duration,
    format_hex_bytes,
    format_retval,
    json_option,
)
from ebpf.cli._input import (
    BYTEORDER_CHOICE,
    InputFormat,
    detect_format,
    display_name,
    load_program,
    parse_hex,
    read_input,
)
from ebpf.errors import BPFError, VMError
from ebpf.isa import ByteOrder, Syntax

if TYPE_CHECKING:
    from ebpf.isa import Program
    from ebpf.maps import Map
    from ebpf.runtime import Collection
    from ebpf.spec import CollectionSpec, ProgramSpec
    from ebpf.testrun import TestRunResult
    from ebpf.vm import RunResult

__all__ = ["TC_ACTIONS", "XDP_ACTIONS", "ObjectRunOptions", "hexdump", "map_contents", "run", "verdict"]

# enum xdp_action, for display only.
XDP_ACTIONS = {0: "XDP_ABORTED", 1: "XDP_DROP", 2: "XDP_PASS", 3: "XDP_TX", 4: "XDP_REDIRECT"}
# TC_ACT_* of linux/pkt_cls.h (a tc program's retval, read as a signed 32-bit number).
TC_ACTIONS = {
    -1: "TC_ACT_UNSPEC",
    0: "TC_ACT_OK",
    1: "TC_ACT_RECLASSIFY",
    2: "TC_ACT_SHOT",
    3: "TC_ACT_PIPE",
    4: "TC_ACT_STOLEN",
    5: "TC_ACT_QUEUED",
    6: "TC_ACT_REPEAT",
    7: "TC_ACT_REDIRECT",
    8: "TC_ACT_TRAP",
}


def hexdump(data: bytes, *, width: int = 16) -> list[str]:
    """``"0000  45 00 ..."`` lines, ``width`` bytes each."""
    return [f"{i:04x}  {format_hex_bytes(data[i : i + width])}" for i in range(0, len(data), width)]


def changed_ranges(before: bytes, after: bytes) -> list[tuple[int, int]]:
    """Half-open byte ranges where ``after`` differs from ``before`` (a length change counts)."""
    ranges: list[tuple[int, int]] = []
    start: int | None = None
    for i in range(max(len(before), len(after))):
        differs = i >= len(before) or i >= len(after) or before[i] != after[i]
        if differs and start is None:
            start = i
        elif not differs and start is not None:
            ranges.append((start, i))
            start = None
    if start is not None:
        ranges.append((start, max(len(before), len(after))))
    return ranges


def format_ranges(ranges: list[tuple[int, int]]) -> str:
    return ", ".join(f"{a}" if b == a + 1 else f"{a}-{b - 1}" for a, b in ranges)


@click.command(short_help="Run a program in the user-space runtime; print r0.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--mem", metavar="HEX", help="Input memory as hex bytes, e.g. '01 02 ff'.")
@click.option(
    "--mem-file",
    type=click.Path(exists=True, dir_okay=False),
    help="Input memory from a file (raw bytes, or hex text when it reads as hex).",
)
@click.option("--xdp", is_flag=True, help="Pass the memory as an XDP packet (r1 = struct xdp_md *).")
@click.option(
    "--engine",
    metavar="NAME",
    default="interp",
    show_default=True,
    help="Execution engine (see ebpf.vm.ENGINES).",
)
@click.option(
    "--max-insns", type=click.IntRange(min=1), help="Instruction budget (default: the engine's, 10 million)."
)
@click.option(
    "--helpers",
    type=click.Choice(["none", "ubpf"]),
    default="none",
    show_default=True,
    help="Helper functions: none, or uBPF's test helpers (as bpf_conformance programs call them).",
)
@click.option(
    "--syntax",
    type=click.Choice(["auto", "llvm", "ubpf"]),
    default="auto",
    show_default=True,
    help="Syntax of assembly text; auto: whichever reads it.",
)
@click.option(
    "--input-format",
    type=click.Choice([f.value for f in InputFormat]),
    default="auto",
    show_default=True,
    help="What FILE holds; auto: ELF magic, hex text, assembly text, else raw bytecode.",
)
@click.option(
    "--section", "-j", metavar="NAME", help="The ELF section to run (needed when there are several)."
)
@click.option(
    "--byteorder",
    type=BYTEORDER_CHOICE,
    default="little",
    show_default=True,
    help="Byte order of raw/hex input.",
)
@click.option("--profile", is_flag=True, help="Also list how often each instruction ran.")
@click.option(
    "--program",
    "-p",
    "program",
    metavar="NAME",
    help="Object mode: the program to run (default: the only one).",
)
@click.option("--data-in", metavar="HEX", help="Object mode: the packet (data_in) as hex bytes.")
@click.option(
    "--data-file",
    type=click.Path(exists=True, dir_okay=False),
    help="Object mode: the packet (data_in) from a file of raw bytes.",
)
@click.option(
    "--ctx-in", metavar="HEX", help="Object mode: the context (ctx_in: xdp_md, __sk_buff...) as hex."
)
@click.option(
    "--repeat",
    type=click.IntRange(min=0),
    help="Object mode: runs; the duration is the average. [default: 1]",
)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="NAME=VALUE",
    help="Object mode: set a global variable before the load (repeatable); VALUE is an "
    "integer (42, -1, 0x2a) or hex bytes ('c0 a8 00 01').",
)
@click.option(
    "--map-init",
    "map_init",
    multiple=True,
    metavar="MAP:KEYHEX=VALUEHEX",
    help="Object mode: update a map after the load, before the run (repeatable).",
)
@click.option(
    "--ncpus", type=click.IntRange(min=1), help="Object mode: simulated CPUs (per-CPU maps). [default: 1]"
)
@click.option("--cpu", type=click.IntRange(min=0), help="Object mode: the CPU the run uses. [default: 0]")
@click.option(
    "--deterministic", is_flag=True, help="Object mode: fixed clock and random seed for the helpers."
)
@json_option
def run(
    file: str,
    mem: str | None,
    mem_file: str | None,
    xdp: bool,
    engine: str,
    max_insns: int | None,
    helpers: str,
    syntax: str,
    input_format: str,
    section: str | None,
    byteorder: ByteOrder,
    profile: bool,
    program: str | None,
    data_in: str | None,
    data_file: str | None,
    ctx_in: str | None,
    repeat: int | None,
    assignments: tuple[str, ...],
    map_init: tuple[str, ...],
    ncpus: int | None,
    cpu: int | None,
    deterministic: bool,
    as_json: bool,
) -> None:
    """Run FILE in the user-space runtime and print r0 and the instruction count.

    FILE is assembly text (LLVM or uBPF syntax), raw or hex bytecode, or a self-contained
    section of an ELF object. The input memory is passed as r1 (pointer) and r2 (length),
    or with --xdp as the packet of a struct xdp_md in r1.

    A BPF ELF object given without the section options (--section, --xdp, --mem,
    --mem-file, --helpers, --profile) is loaded whole, maps and global data included, and
    one program runs as BPF_PROG_TEST_RUN would run it; the retval (with its XDP/tc verdict),
    the packet and context afterwards and every map's contents are printed.

    \b
    ebpf run prog.s
    ebpf run subnet.s --mem '00 00 c0 9f ...' --json
    ebpf run prog.o -j xdp --xdp --mem-file packet.bin --profile
    ebpf run fw.o --program xdp_firewall --data-file packet.bin --repeat 100
    ebpf run fw.o --data-in "$(xxd -p packet.bin)" --set drop_action=2 --json
    """
    from ebpf import vm

    if mem is not None and mem_file is not None:
        raise click.UsageError("use either --mem or --mem-file, not both")
    if data_in is not None and data_file is not None:
        raise click.UsageError("use either --data-in or --data-file, not both")
    if engine not in vm.ENGINES:
        raise click.BadParameter(
            f"{engine!r}; choose from {', '.join(sorted(vm.ENGINES))}", param_hint="--engine"
        )

    source = display_name(file)
    data = read_input(file)
    fmt = InputFormat(input_format)
    kind = detect_format(data) if fmt is InputFormat.AUTO else fmt
    object_options = [
        name
        for name, given in (
            ("--program", program is not None),
            ("--data-in", data_in is not None),
            ("--data-file", data_file is not None),
            ("--ctx-in", ctx_in is not None),
            ("--repeat", repeat is not None),
            ("--set", bool(assignments)),
            ("--map-init", bool(map_init)),
            ("--ncpus", ncpus is not None),
            ("--cpu", cpu is not None),
            ("--deterministic", deterministic),
        )
        if given
    ]
    section_options = [
        name
        for name, given in (
            ("--section", section is not None),
            ("--xdp", xdp),
            ("--mem", mem is not None),
            ("--mem-file", mem_file is not None),
            ("--helpers", helpers != "none"),
            ("--profile", profile),
        )
        if given
    ]
    if object_options and kind is not InputFormat.ELF:
        raise click.UsageError(f"{', '.join(object_options)}: only for ELF objects (FILE is {kind.value})")
    if object_options and section_options:
        raise click.UsageError(
            f"{', '.join(object_options)} run a program of the loaded object; "
            f"{', '.join(section_options)} run one section's bytecode alone: use one or the other"
        )
    if kind is InputFormat.ELF and not section_options:
        _run_object(
            data,
            source,
            ObjectRunOptions(
                program=program,
                data_in=_data_in(data_in, data_file),
                ctx_in=None if ctx_in is None else parse_hex(ctx_in, source="--ctx-in"),
                repeat=1 if repeat is None else repeat,
                assignments=assignments,
                map_init=map_init,
                engine=engine,
                ncpus=1 if ncpus is None else ncpus,
                cpu=0 if cpu is None else cpu,
                deterministic=deterministic,
                max_insns=max_insns,
            ),
            as_json=as_json,
        )
        return

    loaded = load_program(
        data,
        fmt,
        source=source,
        syntax=None if syntax == "auto" else Syntax(syntax),
        byteorder=byteorder,
        section=section,
    )
    memory = _memory(mem, mem_file)
    registry = vm.ubpf_test_helpers() if helpers == "ubpf" else None
    budget = max_insns if max_insns is not None else vm.DEFAULT_MAX_INSNS
    runner = vm.create_engine(loaded.program, engine, helpers=registry, max_insns=budget)
    inp: vm.Input = vm.XdpInput(memory) if xdp else vm.RawInput(memory)
    try:
        result = runner.run(inp, profile=True) if profile else runner.run(inp)
    except VMError as err:  # name the program: "error: prog.s: pc 3 (...): ..."
        raise LibraryError(err, as_json=as_json, context=source) from err

    changes = changed_ranges(memory, result.data)
    if as_json:
        doc: dict[str, Any] = {
            "retval": result.retval,
            "retval_hex": f"{result.retval:#x}",
            "insns": result.insns,
            "wall_ns": result.elapsed_ns,
            "engine": engine,
            "input_format": loaded.format.value,
            "syntax": loaded.syntax.value if loaded.syntax else None,
            "section": loaded.section,
            "data": result.data.hex(),
            "data_changed": [list(r) for r in changes],
        }
        if xdp:
            doc["xdp_action"] = XDP_ACTIONS.get(result.retval)
        if profile:
            doc["profile"] = list(result.profile or ())
        Printer.json(doc)
        return

    out = Printer()
    r0 = format_retval(result.retval)
    if xdp and result.retval in XDP_ACTIONS:
        r0 += f" {XDP_ACTIONS[result.retval]}"
    rows = [
        ("r0", r0),
        ("instructions", str(result.insns)),
        ("time", f"{format_duration(result.elapsed_ns, unicode=out.rich)} (engine {engine})"),
    ]
    if memory or result.data:
        what = "packet" if xdp else "memory"
        rows.append(
            (
                what,
                f"changed at bytes {format_ranges(changes)}"
                if changes
                else f"unchanged ({len(memory)} bytes)",
            )
        )
    out.fields(rows)
    if changes:
        out.line()
        out.line(f"{'packet' if xdp else 'memory'} after the run:")
        for text in hexdump(result.data):
            out.line(text)
    if profile:
        out.line()
        _print_profile(out, loaded.program, result)


def _memory(mem: str | None, mem_file: str | None) -> bytes:
    if mem is not None:
        return parse_hex(mem, source="--mem")
    if mem_file is None:
        return b""
    data = read_input(mem_file)
    if data and detect_format(data) is InputFormat.HEX:
        return parse_hex(data.decode("utf-8"), source=mem_file)
    return data


def _print_profile(out: Printer, program: Program, result: RunResult) -> None:
    from ebpf.cli._listing import labeled_text, listing_rows

    counts = result.profile or ()
    if not counts:
        raise fail("this engine does not count executions (--profile)")
    labels = program.labels
    rows: list[list[str]] = []
    for row in listing_rows(program, Syntax.LLVM):
        if row.pc in labels:
            rows.append(["", "", f"{labels[row.pc]}:"])
        rows.append(
            [str(counts[row.pc]) if row.pc < len(counts) else "", f"{row.pc}:", labeled_text(row, labels)]
        )
    out.table(["count", "pc", "instruction"], rows, right=(0, 1), styles=("bold", "dim", "green"))


# --- object mode (Rule 3) ----------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectRunOptions:
    """What one object-mode run needs besides the object (the CLI options, parsed)."""

    program: str | None = None
    data_in: bytes = b""
    ctx_in: bytes | None = None
    repeat: int = 1
    assignments: tuple[str, ...] = ()
    map_init: tuple[str, ...] = ()
    engine: str = "interp"
    ncpus: int = 1
    cpu: int = 0
    deterministic: bool = False
    max_insns: int | None = None


def _data_in(data_in: str | None, data_file: str | None) -> bytes:
    if data_in is not None:
        return parse_hex(data_in, source="--data-in")
    if data_file is not None:
        return read_input(data_file)
    return b""


def verdict(program_type: int, retval: int) -> str | None:
    """The meaning of a test run's ``retval`` for XDP, tc, socket filter and cgroup skb programs, else ``None``."""
    from ebpf.spec import ProgramType

    retval &= 0xFFFFFFFF
    if program_type == ProgramType.XDP:
        return XDP_ACTIONS.get(retval, f"XDP_UNKNOWN({retval})")
    if program_type in (ProgramType.SCHED_CLS, ProgramType.SCHED_ACT):
        signed = retval - (1 << 32) if retval >> 31 else retval
        return TC_ACTIONS.get(signed, f"TC_ACT_UNKNOWN({signed})")
    if program_type == ProgramType.SOCKET_FILTER:
        return "drop" if retval == 0 else f"keep {retval} bytes"
    if program_type == ProgramType.CGROUP_SKB:  # bit 0: allow; bit 1 (egress): congestion notification
        return ("allow" if retval & 1 else "drop") + (" (cn)" if retval & 2 else "")
    return None


# UAPI layouts of the test-run contexts, for display: (name, offset, size).
_XDP_MD_FIELDS = [
    (name, 4 * i, 4)
    for i, name in enumerate(
        ["data", "data_end", "data_meta", "ingress_ifindex", "rx_queue_index", "egress_ifindex"]
    )
]
_SK_BUFF_FIELDS = [
    *(
        (name, 4 * i, 4)
        for i, name in enumerate(
            [
                "len",
                "pkt_type",
                "mark",
                "queue_mapping",
                "protocol",
                "vlan_present",
                "vlan_tci",
                "vlan_proto",
                "priority",
                "ingress_ifindex",
                "ifindex",
                "tc_index",
                "cb[0]",
                "cb[1]",
                "cb[2]",
                "cb[3]",
                "cb[4]",
                "hash",
                "tc_classid",
                "data",
                "data_end",
                "napi_id",
                "family",
                "remote_ip4",
                "local_ip4",
            ]
        )
    ),
    *((f"remote_ip6[{i}]", 100 + 4 * i, 4) for i in range(4)),
    *((f"local_ip6[{i}]", 116 + 4 * i, 4) for i in range(4)),
    ("remote_port", 132, 4),
    ("local_port", 136, 4),
    ("data_meta", 140, 4),
    ("flow_keys", 144, 8),
    ("tstamp", 152, 8),
    ("wire_len", 160, 4),
    ("gso_segs", 164, 4),
    ("sk", 168, 8),
    ("gso_size", 176, 4),
    ("tstamp_type", 180, 1),
    ("hwtstamp", 184, 8),
]


def ctx_fields(program_type: int, ctx: bytes) -> list[tuple[str, int]]:
    """The non-zero fields of an ``xdp_md`` / ``__sk_buff`` context (XDP: every field)."""
    from ebpf.spec import ProgramType

    skb_types = {
        ProgramType.SOCKET_FILTER,
        ProgramType.SCHED_CLS,
        ProgramType.SCHED_ACT,
        ProgramType.CGROUP_SKB,
        ProgramType.LWT_IN,
        ProgramType.LWT_OUT,
        ProgramType.LWT_XMIT,
    }
    if program_type == ProgramType.XDP:
        table, show_zero = _XDP_MD_FIELDS, True
    elif program_type in skb_types:
        table, show_zero = _SK_BUFF_FIELDS, False
    else:
        return []
    out = []
    for name, offset, size in table:
        if offset + size <= len(ctx):
            value = int.from_bytes(ctx[offset : offset + size], "little")
            if value or show_zero:
                out.append((name, value))
    return out


def _parse_value(text: str) -> int | bytes:
    """``--set`` values: a Python integer literal (42, -1, 0x2a, 0b101), else hex bytes."""
    try:
        return int(text.replace("_", ""), 0)
    except ValueError:
        return parse_hex(text, source="--set")


def _choose_program(spec: CollectionSpec, wanted: str | None, data: bytes, source: str) -> ProgramSpec:
    if wanted is not None:
        if wanted not in spec.programs:
            have = ", ".join(spec.programs) or "no programs"
            raise fail(f"{source}: no program {wanted!r}; it has: {have}")
        return spec.programs[wanted]
    if len(spec.programs) == 1:
        return next(iter(spec.programs.values()))
    if not spec.programs:
        raise fail(f"{source}: the object has no programs")
    listing = ", ".join(f"{p.name} ({p.section})" for p in spec.programs.values())
    message = f"{source}: several programs: {listing}; choose one with --program NAME"
    try:  # the way to run one section's bytecode alone, as before objects were loaded whole
        from ebpf.cli._elf import executable_sections

        sections = executable_sections(data, source=source)
    except BPFError:
        sections = []
    if len(sections) > 1:
        names = ", ".join(repr(s.name) for s in sections)
        message += f". As raw bytecode: several program sections ({names}); choose one with --section"
    raise fail(message)


def _apply_assignments(spec: CollectionSpec, assignments: tuple[str, ...]) -> None:
    for entry in assignments:
        name, sep, text = entry.partition("=")
        if not sep or not name:
            raise fail(f"--set {entry}: expected NAME=VALUE")
        if name not in spec.variables:
            have = ", ".join(spec.variables) or "none"
            raise fail(f"--set {entry}: no global variable {name!r}; the object has: {have}")
        value = _parse_value(text)
        try:
            spec.set_variable(name, value)
        except ValueError as err:
            raise fail(f"--set {entry}: {err}") from None


def _parse_map_init(entries: tuple[str, ...]) -> list[tuple[str, str, bytes, bytes]]:
    """``MAP:KEYHEX=VALUEHEX`` entries as ``(entry, map, key, value)``."""
    parsed = []
    for entry in entries:
        name, sep, rest = entry.partition(":")
        key_text, sep2, value_text = rest.partition("=")
        if not sep or not sep2:
            raise fail(f"--map-init {entry}: expected MAP:KEYHEX=VALUEHEX")
        key = parse_hex(key_text, source="--map-init key")
        value = parse_hex(value_text, source="--map-init value")
        parsed.append((entry, name, key, value))
    return parsed


def _apply_map_init(coll: Collection, entries: list[tuple[str, str, bytes, bytes]]) -> None:
    for entry, name, key, value in entries:
        if name not in coll.maps:
            raise fail(f"--map-init {entry}: no map {name!r}; the object has: {', '.join(coll.maps)}")
        try:
            coll.maps[name].update(key, value)
        except BPFError as err:
            raise fail(f"--map-init {entry}: {err}") from None


def _loaded_programs(spec: CollectionSpec, chosen: ProgramSpec) -> None:
    """Load only the chosen program and the programs prog arrays start with (tail-call targets)."""
    from ebpf.spec import MapType

    keep = {chosen.name}
    for mspec in spec.maps.values():
        if mspec.type == MapType.PROG_ARRAY:
            keep.update(mspec.slots.values())
    for pspec in spec.programs.values():
        pspec.autoload = pspec.name in keep


def map_contents(m: Map) -> list[list[Any]] | None:
    """A user-space map's contents as JSON-ready lists (Rule 4); destructive for queues/stacks."""
    from ebpf.errors import KeyNotFoundError
    from ebpf.maps import MapOperationNotSupportedError
    from ebpf.spec import MapType

    t = m.type
    if t == MapType.PROG_ARRAY:
        return [[k.hex(), {"program": getattr(m.lookup_prog(k), "name", "?")}] for k in m if k in m]  # type: ignore[attr-defined]
    if t in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
        return [[k.hex(), {"map": m.lookup_map(k).name}] for k in m if k in m]  # type: ignore[attr-defined]
    if t in (MapType.QUEUE, MapType.STACK):
        popped: list[list[Any]] = []
        while True:
            try:
                popped.append(["", m.lookup_and_delete().hex()])
            except KeyNotFoundError:
                return popped
    if t in (MapType.BLOOM_FILTER, MapType.PERF_EVENT_ARRAY, MapType.RINGBUF, MapType.USER_RINGBUF):
        return None
    try:
        if getattr(m, "percpu", False):
            return [[k.hex(), [v.hex() for v in m.lookup_percpu(k)]] for k in m]  # type: ignore[attr-defined]
        return [[k.hex(), v.hex()] for k, v in m.items()]
    except MapOperationNotSupportedError:  # a map type whose values user space cannot read
        return None


def _run_object(data: bytes, source: str, opts: ObjectRunOptions, *, as_json: bool) -> None:
    from ebpf.elf import load_collection_spec
    from ebpf.runtime import Collection
    from ebpf.vm import DEFAULT_MAX_INSNS

    if opts.cpu >= opts.ncpus:
        raise click.BadParameter(f"{opts.cpu} >= --ncpus {opts.ncpus}", param_hint="--cpu")
    try:
        spec = load_collection_spec(data)
    except BPFError as err:
        raise LibraryError(err, as_json=as_json, context=source) from err
    chosen = _choose_program(spec, opts.program, data, source)
    _apply_assignments(spec, opts.assignments)
    map_init = _parse_map_init(opts.map_init)
    _loaded_programs(spec, chosen)
    where = f"{source}: program {chosen.name!r}"
    try:
        with Collection(
            spec,
            engine=opts.engine,
            ncpus=opts.ncpus,
            deterministic=opts.deterministic,
            max_insns=opts.max_insns if opts.max_insns is not None else DEFAULT_MAX_INSNS,
        ) as coll:
            _apply_map_init(coll, map_init)
            result = coll.programs[chosen.name].test_run(
                data_in=opts.data_in, ctx_in=opts.ctx_in, repeat=opts.repeat, cpu=opts.cpu
            )
            maps = {name: map_contents(m) for name, m in coll.maps.items()}
            pretty = _pretty_maps(coll, maps) if not as_json else {}
    except BPFError as err:
        raise LibraryError(err, as_json=as_json, context=where) from err

    name = verdict(chosen.type, result.retval)
    keys = flow_keys(result.data_out) if _is_flow_dissector(chosen) else None
    if as_json:
        Printer.json(
            {
                "program": chosen.name,
                "type": chosen.type.name.lower(),
                "section": chosen.section,
                "retval": result.retval,
                "verdict": name,
                "data_out": result.data_out.hex(),
                # a flow dissector's data_out is its struct bpf_flow_keys, not the packet
                "data_changed": None
                if keys is not None
                else [list(r) for r in changed_ranges(opts.data_in, result.data_out)],
                **({"flow_keys": keys} if keys is not None else {}),
                "ctx_out": None if result.ctx_out is None else result.ctx_out.hex(),
                "duration_ns": result.duration_ns,
                "repeat": opts.repeat,
                "engine": opts.engine,
                "ncpus": opts.ncpus,
                "maps": maps,
            }
        )
        return
    _print_object_run(chosen, result, name, opts, maps, pretty, keys)


ETH_P_NAMES = {
    0x0800: "IPv4",
    0x0806: "ARP",
    0x86DD: "IPv6",
    0x8100: "802.1Q",
    0x88A8: "802.1ad",
    0x8847: "MPLS",
}
IP_PROTO_NAMES = {1: "icmp", 4: "ipip", 6: "tcp", 17: "udp", 41: "ipv6", 47: "gre", 58: "icmpv6", 132: "sctp"}


def _is_flow_dissector(chosen: ProgramSpec) -> bool:
    from ebpf.spec import ProgramType

    return chosen.type == ProgramType.FLOW_DISSECTOR


def flow_keys(data: bytes) -> dict[str, Any] | None:
    """A FLOW_DISSECTOR test run's ``data_out`` (``struct bpf_flow_keys``) decoded: integers in
    host order (``n_proto``, ports and ``flow_label`` converted from network order), the
    addresses as text for ``addr_proto`` IPv4/IPv6 (else ``None``); ``None`` unless ``data``
    has the struct's size."""
    import ipaddress

    from ebpf.vm._context_flow import FLOW_KEYS_FIELDS, FLOW_KEYS_SIZE

    if len(data) != FLOW_KEYS_SIZE:
        return None

    def get(name: str, order: str = "little") -> int:
        off, size = FLOW_KEYS_FIELDS[name]
        return int.from_bytes(data[off : off + size], "big" if order == "big" else "little")

    keys: dict[str, Any] = {
        name: get(name)
        for name in ("nhoff", "thoff", "addr_proto", "is_frag", "is_first_frag", "is_encap", "ip_proto")
    }
    for name in ("n_proto", "sport", "dport"):  # __be16
        keys[name] = get(name, "big")
    keys["flags"] = get("flags")
    keys["flow_label"] = get("flow_label", "big")  # __be32
    src: str | None = None
    dst: str | None = None
    if keys["addr_proto"] == 0x0800:
        src, dst = (str(ipaddress.IPv4Address(data[o : o + 4])) for o in (16, 20))
    elif keys["addr_proto"] == 0x86DD:
        src, dst = (str(ipaddress.IPv6Address(data[o : o + 16])) for o in (16, 32))
    keys["src"], keys["dst"] = src, dst
    return keys


def _flow_keys_lines(keys: dict[str, Any]) -> list[str]:
    def proto(value: int, names: dict[int, str], width: int) -> str:
        name = names.get(value)
        shown = f"{value:#0{width + 2}x}" if width else str(value)
        return f"{shown} ({name})" if name else shown

    lines = [
        f"n_proto {proto(keys['n_proto'], ETH_P_NAMES, 4)}"
        + f"  addr_proto {proto(keys['addr_proto'], ETH_P_NAMES, 4)}"
        + f"  ip_proto {proto(keys['ip_proto'], IP_PROTO_NAMES, 0)}",
        f"nhoff {keys['nhoff']}  thoff {keys['thoff']}",
    ]
    if keys["src"] is not None:
        lines.append(f"src {keys['src']} port {keys['sport']}  ->  dst {keys['dst']} port {keys['dport']}")
    else:
        lines.append(
            f"sport {keys['sport']}  dport {keys['dport']}  (no addresses: addr_proto is not IPv4/IPv6)"
        )
    lines.append(
        f"is_frag {keys['is_frag']}  is_first_frag {keys['is_first_frag']}  is_encap {keys['is_encap']}"
        f"  flags {keys['flags']:#x}  flow_label {keys['flow_label']:#x}"
    )
    return lines


def _pretty_maps(coll: Collection, maps: dict[str, list[list[Any]] | None]) -> dict[str, list[str]]:
    """BTF-typed renderings of each listed (key, value), where the map has BTF types."""
    from ebpf.btf.pretty import to_python

    out: dict[str, list[str]] = {}
    for name, rows in maps.items():
        mspec = coll.spec.maps[name]
        if not rows or mspec.btf is None or not mspec.value_type_id:
            continue
        texts = []
        try:
            for key_hex, value in rows:
                if not isinstance(value, str):
                    texts.append("")
                    continue
                shown = to_python(mspec.btf, mspec.value_type_id, bytes.fromhex(value))
                if isinstance(shown, dict) and list(shown) == [name] and isinstance(shown[name], list):
                    merged: dict[str, Any] = {}  # a DATASEC: {section: [{var: value}, ...]}
                    for var in shown[name]:
                        merged.update(var)
                    shown = merged
                text = _compact(shown)
                if mspec.key_type_id and key_hex:
                    text = f"{_compact(to_python(mspec.btf, mspec.key_type_id, bytes.fromhex(key_hex)))} -> {text}"
                texts.append(text)
        except BPFError:
            continue  # no pretty form: the hex stands alone
        out[name] = texts
    return out


def _compact(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_compact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_compact(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) else str(value)


def marked_hexdump(before: bytes, after: bytes, *, width: int = 16) -> list[tuple[str, bool]]:
    """``after`` as hexdump lines, each followed by a ``^^`` line under the bytes that differ
    from ``before`` (when any do); ``(text, is_marker)`` pairs."""
    lines: list[tuple[str, bool]] = []
    for i in range(0, len(after), width):
        row = after[i : i + width]
        lines.append((f"{i:04x}  {format_hex_bytes(row)}", False))
        marks = ["^^" if i + j >= len(before) or before[i + j] != b else "  " for j, b in enumerate(row)]
        if "^^" in marks:
            lines.append((("      " + " ".join(marks)).rstrip(), True))
    return lines


def _print_object_run(
    chosen: ProgramSpec,
    result: TestRunResult,
    name: str | None,
    opts: ObjectRunOptions,
    maps: dict[str, list[list[Any]] | None],
    pretty: dict[str, list[str]],
    keys: dict[str, Any] | None = None,
) -> None:
    out = Printer()
    retval = result.retval
    shown = f"{retval:#x} ({retval})"
    if retval >> 31:
        shown = f"{retval:#x} ({retval}, signed {retval - (1 << 32)})"
    if name is not None:
        shown += f" {name}"
    runs = max(opts.repeat, 1)
    duration = format_duration(result.duration_ns, unicode=out.rich)
    changes = [] if keys is not None else changed_ranges(opts.data_in, result.data_out)
    sizes = (
        f"{len(opts.data_in)} -> {len(result.data_out)} bytes"
        if len(opts.data_in) != len(result.data_out)
        else f"{len(result.data_out)} bytes"
    )
    rows = [
        ("program", f"{chosen.name} ({chosen.type.name.lower()}, section {chosen.section})"),
        ("retval", shown),
        ("duration", f"{duration} per run ({runs} run{'s' if runs != 1 else ''}, engine {opts.engine})"),
        (
            "data_out",
            f"struct bpf_flow_keys ({len(result.data_out)} bytes)"
            if keys is not None
            else f"changed at bytes {format_ranges(changes)} ({sizes})"
            if changes
            else f"unchanged ({sizes})",
        ),
    ]
    if result.ctx_out is not None:
        rows.append(("ctx_out", format_hex_bytes(result.ctx_out) or "(empty)"))
        fields = ctx_fields(chosen.type, result.ctx_out)
        if fields:
            rows.append(("ctx_fields", " ".join(f"{k}={v}" for k, v in fields)))
    out.fields(rows)
    if keys is not None:
        out.line()
        out.line("flow keys (data_out):")
        for text in _flow_keys_lines(keys):
            out.line(f"  {text}")
    if changes:
        out.line()
        out.line("data_out after the run (^^: changed):")
        for text, marker in marked_hexdump(opts.data_in, result.data_out):
            out.line(text, style="red" if marker else None)
    out.line()
    out.line("maps after the run:" if maps else "maps after the run: (the object has none)")
    for map_name, entries in maps.items():
        _print_map(out, map_name, entries, pretty.get(map_name))


def _print_map(out: Printer, name: str, entries: list[list[Any]] | None, pretty: list[str] | None) -> None:
    if entries is None:
        out.line(f"  {name}: (contents not readable from user space)")
        return
    shown: list[tuple[int, list[Any]]] = []
    zero = 0
    for i, (key, value) in enumerate(entries):
        values = value if isinstance(value, list) else [value]
        if all(isinstance(v, str) and v and not v.strip("0") for v in values):
            zero += 1  # an all-zero value (array slots mostly): counted, not listed
            continue
        shown.append((i, [key, value]))
    note = f", {zero} all-zero not shown" if zero and shown else (", all zero" if zero else "")
    out.line(f"  {name}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}{note}")
    for i, (key, value) in shown:
        label = f"    {key}" if key else "   "
        if isinstance(value, dict):
            ((kind, target),) = value.items()
            text = f"{kind} {target}"
        elif isinstance(value, list):
            text = "  ".join(f"cpu{c}: {v}" for c, v in enumerate(value))
        else:
            text = value
        line = f"{label}: {text}" if key else f"{label} {text}"
        if pretty is not None and i < len(pretty) and pretty[i]:
            line += f"  = {pretty[i]}"
        out.line(line)
