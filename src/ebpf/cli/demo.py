"""CLI layer: ``ebpf demo``, the whole idea of the package on one screen.

It assembles a small XDP program from LLVM-syntax text (:data:`DEMO_SOURCE`), lists it in
both syntaxes with its raw bytes, runs it on the interpreter over an embedded
Ethernet/IPv4/UDP packet (:data:`DEMO_PACKET`) and, when ``bpf()`` works here, loads the
same bytecode into the kernel and checks with ``BPF_PROG_TEST_RUN`` that the kernel returns
the same r0 and the same output packet.

Rule 1: no root needed: without a usable ``bpf()`` the kernel step prints one line with
the reason (:func:`ebpf.kernel.bpf_unavailable_reason`) and the demo still succeeds.

Step 4 (:mod:`ebpf.cli._demo_object`) opens the bundled XDP firewall object and runs the same
frames through the user-space runtime and, with ``bpf()``, the kernel.

Rule 2: exit status 1 if the kernel and the user-space engines disagree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ebpf.cli._common import Printer, format_duration, format_hex_bytes, format_retval, json_option
from ebpf.cli.run import XDP_ACTIONS, changed_ranges, format_ranges

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ebpf.cli._listing import Row
    from ebpf.vm import RunResult

__all__ = ["DEMO_NAME", "DEMO_PACKET", "DEMO_SOURCE", "demo", "kernel_unavailable_reason"]

DEMO_NAME = "ttl_guard"

DEMO_SOURCE = """\
# ttl_guard: one step of an IPv4 router, as an XDP program.
#   not IPv4, or IPv4 with options  -> XDP_PASS (2), packet untouched
#   bad header checksum, TTL <= 1   -> XDP_DROP (1)
#   otherwise: TTL - 1 and the checksum updated (RFC 1624) -> XDP_TX (3)
    r2 = *(u32 *)(r1 + 0)           # r2 = ctx->data
    r3 = *(u32 *)(r1 + 4)           # r3 = ctx->data_end
    r0 = 2                          # XDP_PASS
    r4 = r2
    r4 += 34                        # Ethernet (14) + IPv4 header (20)
    if r4 > r3 goto out             # too short: not ours to judge
    r4 = *(u16 *)(r2 + 12)          # EtherType, in network byte order
    if r4 != 0x8 goto out           # 0x0800 (IPv4), read little-endian
    r4 = *(u8 *)(r2 + 14)           # IP version and header length
    if r4 != 0x45 goto out          # IPv4 with a 20-byte header
    r0 = 1                          # XDP_DROP, unless it is forwarded below
    r5 = 0                          # the one's-complement sum of the header
    r6 = r2
    r6 += 14                        # r6 = the IPv4 header
    r7 = 0
sum:
    r8 = *(u16 *)(r6 + 0)
    r5 += r8
    r6 += 2
    r7 += 1
    if r7 < 10 goto sum             # ten 16-bit words
    r8 = r5                         # fold the carries back in, twice
    r8 >>= 16
    r5 &= 0xffff
    r5 += r8
    r8 = r5
    r8 >>= 16
    r5 += r8
    r5 &= 0xffff
    if r5 != 0xffff goto out        # bad checksum: drop
    r4 = *(u8 *)(r2 + 22)           # TTL
    if r4 <= 1 goto out             # it would expire here: drop
    r8 = *(u16 *)(r2 + 22)          # m: the TTL/protocol word before
    r4 += -1
    *(u8 *)(r2 + 22) = r4
    r9 = *(u16 *)(r2 + 22)          # m': the same word after
    r5 = *(u16 *)(r2 + 24)          # HC: the header checksum
    r5 ^= 0xffff                    # HC' = ~(~HC + ~m + m')
    r8 ^= 0xffff
    r5 += r8
    r5 += r9
    r8 = r5
    r8 >>= 16
    r5 &= 0xffff
    r5 += r8
    r8 = r5
    r8 >>= 16
    r5 += r8
    r5 ^= 0xffff
    *(u16 *)(r2 + 24) = r5          # a u16 store keeps the low 16 bits
    r0 = 3                          # XDP_TX: send it on its way
out:
    exit
"""

# Ethernet (02:00:00:00:00:02 <- 02:00:00:00:00:01, IPv4) + IPv4 (192.0.2.1 -> 198.51.100.7,
# UDP, TTL 64, valid checksum 0x3c55) + UDP (40000 -> 53) + "hello, eBPF!".
DEMO_PACKET = bytes.fromhex(
    "02 00 00 00 00 02  02 00 00 00 00 01  08 00"  # Ethernet: dst, src, type
    "45 00 00 28 12 34 40 00 40 11 3c 55"  # IPv4: ..., TTL 64, UDP, checksum
    "c0 00 02 01 c6 33 64 07"  # IPv4: source, destination
    "9c 40 00 35 00 14 00 00"  # UDP: ports, length, no checksum
    "68 65 6c 6c 6f 2c 20 65 42 50 46 21"  # "hello, eBPF!"
)

_TTL = 22  # byte offsets in DEMO_PACKET
_CSUM = 24


def kernel_unavailable_reason() -> str | None:
    """``None`` if programs can be loaded into the running kernel, else why not."""
    try:
        from ebpf import kernel
    except ImportError as err:  # pragma: no cover - the kernel layer ships with the package
        return f"the kernel layer cannot be imported: {err}"
    return kernel.bpf_unavailable_reason()


def _action(retval: int) -> str:
    return XDP_ACTIONS.get(retval, "?")


def _packet_summary(packet: bytes) -> str:
    return f"TTL {packet[_TTL]}, checksum {int.from_bytes(packet[_CSUM : _CSUM + 2], 'big'):#06x}"


@click.command(short_help="Assemble and run a tiny XDP program; check it against the kernel.")
@json_option
def demo(as_json: bool) -> None:
    """Assemble, list and run a tiny XDP program; then check it against the kernel.

    The program (ttl_guard) verifies an IPv4 header checksum, decrements the TTL and fixes
    the checksum. It runs on the user-space interpreter over an embedded packet and, when
    bpf() is usable (root or CAP_BPF), in the kernel with BPF_PROG_TEST_RUN: both must
    return the same r0 and the same packet. Without bpf() the kernel step is skipped with
    the reason. Exit status 1 if the two disagree.
    """
    from ebpf.cli._listing import listing_rows
    from ebpf.isa import Syntax, assemble
    from ebpf.vm import XdpInput
    from ebpf.vm import run as vm_run

    program = assemble(DEMO_SOURCE, Syntax.LLVM, source=f"<{DEMO_NAME}>")
    code = program.encode()
    llvm_rows = listing_rows(program, Syntax.LLVM)
    ubpf_rows = listing_rows(program, Syntax.UBPF)
    interp = vm_run(program, XdpInput(DEMO_PACKET))
    interp_changes = changed_ranges(DEMO_PACKET, interp.data)

    reason = kernel_unavailable_reason()
    from ebpf.cli._demo_object import object_step

    object_doc = object_step(reason)
    kernel_doc: dict[str, Any] = {"available": reason is None, "skipped_reason": reason}
    agree = True
    if reason is None:
        from ebpf import kernel
        from ebpf.spec import ProgramType

        with kernel.Program.load(code, ProgramType.XDP, name=DEMO_NAME) as prog:
            result = prog.test_run(DEMO_PACKET)
        agree = result.retval == interp.retval and result.data_out == interp.data
        kernel_doc.update(
            retval=result.retval,
            action=_action(result.retval),
            packet_out=result.data_out.hex(),
            duration_ns=result.duration_ns,
            same_retval=result.retval == interp.retval,
            same_packet=result.data_out == interp.data,
        )

    if as_json:
        Printer.json(
            {
                "program": {
                    "name": DEMO_NAME,
                    "syntax": "llvm",
                    "source": DEMO_SOURCE,
                    "instructions": len(program),
                    "slots": program.slots,
                    "bytecode": code.hex(),
                    "labels": {name: pc for pc, name in sorted(program.labels.items())},
                    "listing": [
                        {"pc": a.pc, "bytes": format_hex_bytes(a.raw), "llvm": a.text, "ubpf": b.text}
                        for a, b in zip(llvm_rows, ubpf_rows, strict=True)
                    ],
                },
                "input": {"packet": DEMO_PACKET.hex(), "length": len(DEMO_PACKET)},
                "interpreter": {
                    "retval": interp.retval,
                    "action": _action(interp.retval),
                    "insns": interp.insns,
                    "wall_ns": interp.elapsed_ns,
                    "packet_out": interp.data.hex(),
                    "changed": [list(r) for r in interp_changes],
                },
                "kernel": kernel_doc,
                "object": object_doc,
                "agree": agree and object_doc["agree"],
            }
        )
    else:
        _show(
            program.labels, len(program), len(code), llvm_rows, ubpf_rows, interp, interp_changes, kernel_doc
        )
        _show_object(object_doc)
    if not (agree and object_doc["agree"]):
        raise click.exceptions.Exit(1)


def _show_object(doc: dict[str, Any]) -> None:
    out = Printer()
    out.line()
    out.heading(
        f"4. One object file on both engines: {doc['object']} "
        f"({len(doc['programs'])} program, {len(doc['maps'])} maps), blocking {', '.join(doc['blocks'])}"
    )
    kernel = doc["kernel"]
    headers = ["frame", "user space (py tier)", "kernel"]
    rows = []
    for i, label in enumerate(doc["frames"]):
        theirs = kernel["verdicts"][i] if kernel["available"] else "-"
        rows.append([label, doc["userspace"]["verdicts"][i], theirs])
    out.table(headers, rows)
    counts = ", ".join(
        f"{b}: {n}" for b, n in zip(doc["blocks"], doc["userspace"]["rule_packets"], strict=True)
    )
    out.line(f"per-rule packet counters afterwards: {counts}")
    if not kernel["available"]:
        out.line(f"kernel run skipped: {kernel['skipped_reason']}")
    elif doc["agree"]:
        out.line("same verdicts and the same map contents in the kernel", style="bold green")
    else:
        out.line(
            f"kernel and user space DISAGREE (kernel counters {kernel['rule_packets']})", style="bold red"
        )


def _show(
    labels: Mapping[int, str],
    count: int,
    size: int,
    llvm_rows: list[Row],
    ubpf_rows: list[Row],
    interp: RunResult,
    changes: list[tuple[int, int]],
    kernel_doc: dict[str, Any],
) -> None:
    from ebpf.cli._listing import labeled_text

    out = Printer()
    out.heading(f"1. Assemble {DEMO_NAME} (LLVM syntax): {count} instructions, {size} bytes")
    table: list[list[str]] = []
    for a, b in zip(llvm_rows, ubpf_rows, strict=True):
        if a.pc in labels:
            table.append(["", "", f"{labels[a.pc]}:", f"{labels[a.pc]}:"])
        table.append([f"{a.pc}:", format_hex_bytes(a.raw), labeled_text(a, labels), labeled_text(b, labels)])
    out.table(
        ["pc", "bytes", "LLVM syntax", "uBPF syntax"],
        table,
        right=(0,),
        styles=("dim", "dim", "green", "cyan"),
    )
    out.line()
    out.heading(
        f"2. Run on the interpreter: an Ethernet/IPv4/UDP packet of {len(DEMO_PACKET)} bytes "
        f"({_packet_summary(DEMO_PACKET)})"
    )
    out.fields(
        [
            ("r0", f"{format_retval(interp.retval)} {_action(interp.retval)}"),
            ("instructions", f"{interp.insns} executed"),
            ("time", format_duration(interp.elapsed_ns, unicode=out.rich)),
            (
                "packet",
                f"changed at bytes {format_ranges(changes)}: {_packet_summary(interp.data)}"
                if changes
                else "unchanged",
            ),
        ]
    )
    out.line()
    out.heading("3. Check against the kernel (BPF_PROG_TEST_RUN, program type XDP)")
    if not kernel_doc["available"]:
        out.line(f"kernel check skipped: {kernel_doc['skipped_reason']}")
        return
    same_r0 = "same as the interpreter" if kernel_doc["same_retval"] else "DIFFERENT from the interpreter"
    same_pkt = (
        "identical to the interpreter's" if kernel_doc["same_packet"] else "DIFFERENT from the interpreter's"
    )
    out.fields(
        [
            ("r0", f"{format_retval(kernel_doc['retval'])} {kernel_doc['action']} ({same_r0})"),
            ("packet", same_pkt),
            ("time", f"{format_duration(kernel_doc['duration_ns'], unicode=out.rich)} per run in the kernel"),
        ]
    )
    if kernel_doc["same_retval"] and kernel_doc["same_packet"]:
        out.line("kernel and interpreter agree", style="bold green")
    else:
        out.line("kernel and interpreter DISAGREE", style="bold red")
