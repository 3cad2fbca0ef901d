"""``ebpf run OBJ``: a BPF ELF object loaded whole into the user-space runtime, one program test-run.

The corpus objects of tests/data/elf run on real packets built with dpkt; retval, data_out and
the maps afterwards are checked, and (marked ``kernel``) compared with the same object and
input through the kernel's ``BPF_PROG_TEST_RUN`` (``ebpf.kernel.collection.Collection``).
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dpkt
import pytest
from click.testing import Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebpf.elf import load_collection_spec
from ebpf.spec import MapType

Invoke = Callable[..., Result]

ELF = Path(__file__).resolve().parent.parent / "data" / "elf"
XDP_FW = str(ELF / "xdp_fw.o")
TC_CLS = str(ELF / "tc_cls.o")
SOCKET = str(ELF / "socket_filter.o")
TAILCALL = str(ELF / "tailcall.o")
MAP_IN_MAP = str(ELF / "map_in_map.o")


def packet(saddr: str = "10.0.0.1", *, proto: str = "tcp", payload: bytes = b"hello") -> bytes:
    """An Ethernet + IPv4 + TCP/UDP frame, checksums filled in by dpkt."""
    l4: Any = (
        dpkt.tcp.TCP(sport=40000, dport=80, flags=dpkt.tcp.TH_SYN, data=payload)
        if proto == "tcp"
        else dpkt.udp.UDP(sport=40000, dport=53, data=payload)
    )
    ip = dpkt.ip.IP(
        src=socket.inet_aton(saddr),
        dst=socket.inet_aton("10.9.9.9"),
        p=dpkt.ip.IP_PROTO_TCP if proto == "tcp" else dpkt.ip.IP_PROTO_UDP,
        ttl=64,
        data=l4,
    )
    eth = dpkt.ethernet.Ethernet(
        src=bytes.fromhex("021122334455"),
        dst=bytes.fromhex("0266778899aa"),
        type=dpkt.ethernet.ETH_TYPE_IP,
        data=ip,
    )
    return bytes(eth)


def packet6() -> bytes:
    """Ethernet + IPv6 + TCP."""
    tcp = dpkt.tcp.TCP(sport=40000, dport=443, flags=dpkt.tcp.TH_SYN)
    ip6 = dpkt.ip6.IP6(
        src=socket.inet_pton(socket.AF_INET6, "fe80::1"),
        dst=socket.inet_pton(socket.AF_INET6, "fe80::2"),
        nxt=dpkt.ip.IP_PROTO_TCP,
        hlim=64,
        plen=len(tcp),
        data=tcp,
    )
    return bytes(
        dpkt.ethernet.Ethernet(
            src=bytes.fromhex("021122334455"),
            dst=bytes.fromhex("0266778899aa"),
            type=dpkt.ethernet.ETH_TYPE_IP6,
            data=ip6,
        )
    )


def vlan_tagged(frame: bytes, vid: int = 5) -> bytes:
    """``frame`` with an 802.1Q tag after the MAC addresses."""
    return frame[:12] + struct.pack("!HH", 0x8100, vid) + frame[12:]


def xdp_md(*, data_end: int, data: int = 0, ifindex: int = 0, rx_queue: int = 0) -> bytes:
    """``struct xdp_md`` as ``ctx_in``: ``data`` = metadata length, data_end = data_in size."""
    return struct.pack("<6I", data, data_end, 0, ifindex, rx_queue, 0)


def sk_buff(*, mark: int = 0, priority: int = 0, cb0: int = 0, ifindex: int = 0) -> bytes:
    """``struct __sk_buff`` (192 bytes) as ``ctx_in``, with the fields the kernel lets a test set."""
    ctx = bytearray(192)
    struct.pack_into("<I", ctx, 8, mark)
    struct.pack_into("<I", ctx, 32, priority)
    struct.pack_into("<I", ctx, 40, ifindex)
    struct.pack_into("<I", ctx, 48, cb0)
    return bytes(ctx)


def run_json(invoke: Invoke, *args: str) -> dict[str, Any]:
    result = invoke("run", *args, "--json")
    assert result.exit_code == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def entries(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """One map of the JSON document as ``{key_hex: value}``."""
    return dict(doc["maps"][name])


# --- XDP firewall ------------------------------------------------------------------------------


def test_firewall_passes_and_counts(invoke: Invoke) -> None:
    frame = packet("10.0.0.1")
    doc = run_json(invoke, XDP_FW, "--program", "xdp_firewall", "--data-in", frame.hex())
    assert (doc["program"], doc["type"], doc["section"]) == ("xdp_firewall", "xdp", "xdp")
    assert (doc["retval"], doc["verdict"]) == (2, "XDP_PASS")
    assert doc["data_out"] == frame.hex() and doc["data_changed"] == []
    assert doc["ctx_out"] is None
    assert doc["repeat"] == 1 and isinstance(doc["duration_ns"], int) and doc["duration_ns"] > 0
    counters = entries(doc, "counters")
    assert counters == {
        "00000000": [bytes(8).hex()],
        "01000000": [bytes(8).hex()],
        "02000000": [struct.pack("<Q", 1).hex()],
        "03000000": [bytes(8).hex()],
    }
    packets_seen, last_saddr = struct.unpack("<QI", bytes.fromhex(entries(doc, ".bss")["00000000"]))
    assert packets_seen == 1 and last_saddr == struct.unpack("<I", socket.inet_aton("10.0.0.1"))[0]
    assert entries(doc, "blocklist") == {}
    assert entries(doc, ".rodata") == {"00000000": "0100000000"}  # drop_action XDP_DROP, verbose 0
    assert entries(doc, ".data") == {"00000000": struct.pack("<4H", 22, 80, 443, 8080).hex()}


def test_firewall_drops_a_blocked_source(invoke: Invoke) -> None:
    key = (struct.pack("<I", 24) + socket.inet_aton("10.0.0.0")).hex()
    blocked = packet("10.0.0.7")
    doc = run_json(
        invoke,
        XDP_FW,
        "-p",
        "xdp_firewall",
        "--data-in",
        blocked.hex(),
        "--map-init",
        f"blocklist:{key}=01000000",
    )
    assert (doc["retval"], doc["verdict"]) == (1, "XDP_DROP")
    assert entries(doc, "blocklist") == {key: "01000000"}
    assert entries(doc, "counters")["01000000"] == [struct.pack("<Q", 1).hex()]
    # another /24 passes
    doc = run_json(
        invoke,
        XDP_FW,
        "-p",
        "xdp_firewall",
        "--data-in",
        packet("10.0.1.7").hex(),
        "--map-init",
        f"blocklist:{key}=01000000",
    )
    assert doc["verdict"] == "XDP_PASS"


def test_set_rodata_before_load(invoke: Invoke) -> None:
    """``--set drop_action=3``: the frozen .rodata gets the new value before the load."""
    key = (struct.pack("<I", 32) + socket.inet_aton("10.0.0.7")).hex()
    args = [
        XDP_FW,
        "-p",
        "xdp_firewall",
        "--data-in",
        packet("10.0.0.7").hex(),
        "--map-init",
        f"blocklist:{key}=01000000",
    ]
    doc = run_json(invoke, *args, "--set", "drop_action=3", "--set", "verbose=0x1")
    assert (doc["retval"], doc["verdict"]) == (3, "XDP_TX")
    assert entries(doc, ".rodata") == {"00000000": "0300000001"}
    # verbose makes the frags variant count in slot 3 as well
    doc = run_json(invoke, *args[:1], "-p", "xdp_firewall_frags", *args[3:], "--set", "verbose=1")
    assert entries(doc, "counters")["03000000"] == [struct.pack("<Q", 1).hex()]


def test_set_hex_bytes_and_ctx_in(invoke: Invoke) -> None:
    """``--set port_table=<hex>`` (a u16[4] in .data) and ``--ctx-in`` (lo, rx_queue_index 0:
    lo has one rx queue, the kernel refuses others)."""
    frame = bytes(14)
    ctx = xdp_md(data_end=14, ifindex=1, rx_queue=0)
    base = [XDP_FW, "-p", "xdp_pass", "--data-in", frame.hex(), "--ctx-in", ctx.hex()]
    doc = run_json(invoke, *base)
    assert doc["verdict"] == "XDP_PASS"
    assert doc["ctx_out"] == ctx.hex()
    doc = run_json(invoke, *base, "--set", "port_table=00 00 50 00 bb 01 90 1f")  # port_table[0] = 0
    assert (doc["retval"], doc["verdict"]) == (0, "XDP_ABORTED")
    assert entries(doc, ".data") == {"00000000": "00005000bb01901f"}


def test_repeat_and_per_cpu(invoke: Invoke) -> None:
    frame = packet("192.168.1.1", proto="udp")
    doc = run_json(
        invoke,
        XDP_FW,
        "-p",
        "xdp_firewall",
        "--data-in",
        frame.hex(),
        "--repeat",
        "5",
        "--ncpus",
        "3",
        "--cpu",
        "2",
    )
    assert doc["repeat"] == 5 and doc["ncpus"] == 3
    assert entries(doc, "counters")["02000000"] == [
        bytes(8).hex(),
        bytes(8).hex(),
        struct.pack("<Q", 5).hex(),
    ]
    assert struct.unpack_from("<Q", bytes.fromhex(entries(doc, ".bss")["00000000"]))[0] == 5


def test_engines_agree(invoke: Invoke) -> None:
    frame = packet("10.0.0.1")
    docs = [
        run_json(invoke, XDP_FW, "-p", "xdp_firewall", "--data-in", frame.hex(), "--engine", engine)
        for engine in ("interp", "py")
    ]
    for doc in docs:
        doc.pop("duration_ns")
        doc.pop("engine")
    assert docs[0] == docs[1]


def test_data_file_and_stdin(invoke: Invoke, tmp_path: Path) -> None:
    frame = packet("10.0.0.1")
    (tmp_path / "frame.bin").write_bytes(frame)
    doc = run_json(invoke, XDP_FW, "-p", "xdp_firewall", "--data-file", str(tmp_path / "frame.bin"))
    assert doc["data_out"] == frame.hex() and doc["verdict"] == "XDP_PASS"
    result = invoke(
        "run", "-", "-p", "xdp_firewall", "--data-in", frame.hex(), "--json", input=Path(XDP_FW).read_bytes()
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["verdict"] == "XDP_PASS"


# --- tc, socket filter ------------------------------------------------------------------------


def test_tc_classifier(invoke: Invoke) -> None:
    frame = packet("10.0.0.1", proto="udp")
    doc = run_json(invoke, TC_CLS, "-p", "tc_classify", "--data-in", frame.hex())
    assert (doc["type"], doc["retval"], doc["verdict"]) == ("sched_cls", 0, "TC_ACT_OK")
    assert doc["data_out"] == frame.hex()
    flows = entries(doc, "flows")
    assert len(flows) == 1
    (value,) = flows.values()
    assert struct.unpack("<QQ", bytes.fromhex(value)) == (1, len(frame))  # packets, bytes (skb->len)
    assert entries(doc, "recent") == {"01000000": struct.pack("<Q", 1).hex()}  # lo's ifindex
    assert doc["maps"]["events_q"] == [["", "01000000"]]
    assert doc["maps"]["events_s"] == [["", struct.pack("<Q", 1).hex()]]
    assert doc["maps"]["seen"] is None  # a bloom filter cannot be listed
    assert entries(doc, ".data.marks") == {"00000000": struct.pack("<II", 0x42, 1).hex()}
    assert entries(doc, ".bss") == {"00000000": struct.pack("<i", 105).hex()}  # bpf_loop sum


def test_tc_unspec_is_signed(invoke: Invoke) -> None:
    """tcx_out returns TC_ACT_UNSPEC (-1) when a per-CPU value is set: retval 0xffffffff."""
    doc = run_json(
        invoke,
        TC_CLS,
        "-p",
        "tcx_out",
        "--data-in",
        packet().hex(),
        "--map-init",
        "percpu_hash:00000000=07000000",
    )
    assert (doc["retval"], doc["verdict"]) == (0xFFFFFFFF, "TC_ACT_UNSPEC")
    assert entries(doc, "percpu_hash") == {"00000000": ["07000000"]}
    result = invoke(
        "run",
        TC_CLS,
        "-p",
        "tcx_out",
        "--data-in",
        packet().hex(),
        "--map-init",
        "percpu_hash:00000000=07000000",
    )
    assert "retval:   0xffffffff (4294967295, signed -1) TC_ACT_UNSPEC" in result.stdout


def test_socket_filter(invoke: Invoke) -> None:
    tcp = packet("10.0.0.1", proto="tcp")
    doc = run_json(invoke, SOCKET, "--data-in", tcp.hex())
    assert (doc["program"], doc["type"]) == ("keep_tcp", "socket_filter")
    assert (doc["retval"], doc["verdict"]) == (len(tcp) - 14, f"keep {len(tcp) - 14} bytes")
    # BPF_PROG_TEST_RUN strips the Ethernet header for socket filters and zeroes it on the way out
    assert doc["data_out"] == (bytes(14) + tcp[14:]).hex()
    assert entries(doc, "totals")["00000000"] == struct.pack("<Q", 1).hex()
    assert entries(doc, ".bss") == {"00000000": struct.pack("<Q", 1).hex()}
    assert doc["maps"]["samples"] is None
    udp = packet("10.0.0.1", proto="udp")
    doc = run_json(invoke, SOCKET, "--data-in", udp.hex())
    assert (doc["retval"], doc["verdict"]) == (0, "drop")
    assert entries(doc, ".bss") == {"00000000": bytes(8).hex()}


# --- tail calls, maps of maps ------------------------------------------------------------------


@pytest.mark.parametrize(("queue", "retval", "hits"), [(0, 2, (1, 0, 1))])
def test_tail_call_through_the_prog_array(
    invoke: Invoke, queue: int, retval: int, hits: tuple[int, ...]
) -> None:
    """tail_entry jumps to jump_table[rx_queue_index]: tail_a (PASS). (lo has one rx queue:
    the kernel refuses others, so the empty slot and tail_b are covered by
    tests/runtime/test_elf_objects.py, with a 4-queue loopback.)"""
    ctx = xdp_md(data_end=14, ifindex=1, rx_queue=queue)
    doc = run_json(invoke, TAILCALL, "-p", "tail_entry", "--data-in", bytes(14).hex(), "--ctx-in", ctx.hex())
    assert doc["retval"] == retval
    assert struct.unpack("<3i", bytes.fromhex(entries(doc, ".bss")["00000000"])) == hits
    assert doc["maps"]["jump_table"] == [
        ["00000000", {"program": "tail_a"}],
        ["02000000", {"program": "tail_b"}],
    ]


def test_map_in_map(invoke: Invoke) -> None:
    doc = run_json(
        invoke,
        MAP_IN_MAP,
        "--data-in",
        bytes(14).hex(),
        "--repeat",
        "4",
        "--map-init",
        "inner_hash:01000000=0500000000000000",
    )
    assert (doc["program"], doc["verdict"]) == ("mim_lookup", "XDP_PASS")
    assert entries(doc, "inner_hash") == {"01000000": struct.pack("<Q", 9).hex()}
    assert entries(doc, "inner_one")["00000000"] == struct.pack("<I", 4).hex()
    assert set(entries(doc, "inner_two").values()) == {bytes(4).hex()}
    assert doc["maps"]["outer_array"] == [
        ["00000000", {"map": "inner_one"}],
        ["03000000", {"map": "inner_two"}],
    ]
    assert doc["maps"]["outer_hash"] == [["01000000", {"map": "inner_hash"}]]


# --- human output ------------------------------------------------------------------------------


def test_human_output(invoke: Invoke) -> None:
    tcp = packet("10.0.0.1", proto="tcp")
    result = invoke("run", SOCKET, "--data-in", tcp.hex(), "--repeat", "3")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "program:  keep_tcp (socket_filter, section socket)"
    assert lines[1] == f"retval:   {len(tcp) - 14:#x} ({len(tcp) - 14}) keep {len(tcp) - 14} bytes"
    assert lines[2].startswith("duration: ") and lines[2].endswith(" per run (3 runs, engine interp)")
    assert lines[3] == f"data_out: changed at bytes 0-12 ({len(tcp)} bytes)"  # byte 13 (0x00 of 0x0800) stays
    dump = lines[lines.index("data_out after the run (^^: changed):") + 1 :]
    assert dump[0] == "0000  " + " ".join(["00"] * 14) + " 45 00"
    assert dump[1] == "      " + " ".join(["^^"] * 13)
    assert dump[2].startswith("0010  ")
    maps = result.stdout.split("maps after the run:\n")[1].splitlines()
    assert maps == [
        "  totals: 2 entries, 1 all-zero not shown",
        "    00000000: 0300000000000000  = 0 -> 3",
        "  samples: (contents not readable from user space)",
        "  .bss: 1 entry",
        "    00000000: 0300000000000000  = {accepted: 3}",
    ]


def test_human_output_per_cpu_and_slots(invoke: Invoke) -> None:
    result = invoke(
        "run", XDP_FW, "-p", "xdp_firewall", "--data-in", packet().hex(), "--ncpus", "2", "--cpu", "1"
    )
    assert result.exit_code == 0, result.stderr
    assert "retval:   0x2 (2) XDP_PASS" in result.stdout
    assert "data_out: unchanged (" in result.stdout and "^^" not in result.stdout
    assert "    02000000: cpu0: 0000000000000000  cpu1: 0100000000000000\n" in result.stdout
    assert "  blocklist: 0 entries\n" in result.stdout
    result = invoke("run", TAILCALL, "-p", "tail_entry", "--data-in", bytes(14).hex())
    assert "    00000000: program tail_a\n    02000000: program tail_b\n" in result.stdout
    assert "  .bss: 1 entry\n    00000000: 010000000000000001000000  = {hits: [1, 0, 1]}\n" in result.stdout


# --- errors -------------------------------------------------------------------------------------


def one_line_error(result: Result, code: int = 1) -> str:
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 or code == 2, result.stderr
    return result.stderr


def test_several_programs_need_a_choice(invoke: Invoke) -> None:
    err = one_line_error(invoke("run", XDP_FW, "--data-in", "00"))
    assert err.startswith(f"error: {XDP_FW}: several programs: xdp_firewall (xdp), xdp_pass (xdp), ")
    assert "choose one with --program NAME" in err


def test_unknown_program(invoke: Invoke) -> None:
    err = one_line_error(invoke("run", XDP_FW, "-p", "nope"))
    assert err == f"error: {XDP_FW}: no program 'nope'; it has: xdp_firewall, xdp_pass, xdp_firewall_frags\n"
    result = invoke("run", XDP_FW, "-p", "nope", "--json")
    assert json.loads(result.stdout)["error"]["type"] == "CLIError"


def test_bad_hex(invoke: Invoke) -> None:
    err = one_line_error(invoke("run", SOCKET, "--data-in", "00 zz"))
    assert err == "error: --data-in: line 1, column 4: not hex bytes: 'zz'\n"
    err = one_line_error(invoke("run", SOCKET, "--ctx-in", "0"))
    assert err.startswith("error: --ctx-in: ")
    err = one_line_error(invoke("run", SOCKET, "--map-init", "totals:00000000=1"))
    assert err.startswith("error: --map-init value: ")
    err = one_line_error(invoke("run", SOCKET, "--map-init", "totals"))
    assert err == "error: --map-init totals: expected MAP:KEYHEX=VALUEHEX\n"


def test_bad_set(invoke: Invoke) -> None:
    err = one_line_error(invoke("run", SOCKET, "--set", "nope=1"))
    assert err == "error: --set nope=1: no global variable 'nope'; the object has: accepted\n"
    err = one_line_error(invoke("run", SOCKET, "--set", "accepted=0x1ffffffffffffffff"))
    assert err.startswith("error: --set accepted=0x1ffffffffffffffff: ") and "does not fit" in err
    err = one_line_error(invoke("run", SOCKET, "--set", "accepted=01 02"))
    assert "is 8 bytes, got 2" in err
    assert (
        one_line_error(invoke("run", SOCKET, "--set", "accepted"))
        == "error: --set accepted: expected NAME=VALUE\n"
    )


def test_bad_map_init(invoke: Invoke) -> None:
    err = one_line_error(invoke("run", SOCKET, "--map-init", "nope:00=00"))
    assert err.startswith(
        "error: --map-init nope:00=00: no map 'nope'; the object has: totals, samples, .bss"
    )
    err = one_line_error(invoke("run", SOCKET, "--map-init", "totals:05000000=0000000000000000"))
    assert err.startswith("error: --map-init totals:05000000=0000000000000000: ")


def test_runtime_faults_are_one_line(invoke: Invoke) -> None:
    err = one_line_error(
        invoke("run", XDP_FW, "-p", "xdp_firewall", "--data-in", packet().hex(), "--max-insns", "5")
    )
    assert err.startswith(f"error: {XDP_FW}: program 'xdp_firewall': ") and "budget of 5" in err
    # ctx_in that BPF_PROG_TEST_RUN refuses (data_end past the packet): EINVAL
    err = one_line_error(
        invoke(
            "run",
            TAILCALL,
            "-p",
            "tail_entry",
            "--data-in",
            bytes(14).hex(),
            "--ctx-in",
            xdp_md(data_end=15).hex(),
        )
    )
    assert err.startswith(f"error: {TAILCALL}: program 'tail_entry': ")
    result = invoke("run", TAILCALL, "-p", "tail_entry", "--ctx-in", xdp_md(data_end=9).hex(), "--json")
    assert json.loads(result.stdout)["error"]["type"] == "TestRunError"


def test_big_endian_objects_are_refused(invoke: Invoke) -> None:
    err = one_line_error(invoke("run", str(ELF / "xdp_fw.be.o"), "-p", "xdp_firewall"))
    assert err.startswith(f"error: {ELF / 'xdp_fw.be.o'}: program 'xdp_firewall': ") and "big-endian" in err


def test_usage_errors(invoke: Invoke) -> None:
    result = invoke("run", "-", "--data-in", "00", input="r0 = 0\nexit\n")
    assert result.exit_code == 2 and "--data-in: only for ELF objects (FILE is asm)" in result.stderr
    result = invoke("run", XDP_FW, "-p", "xdp_pass", "--xdp")
    assert result.exit_code == 2 and "use one or the other" in result.stderr
    result = invoke("run", XDP_FW, "-p", "xdp_pass", "--cpu", "1")
    assert result.exit_code == 2 and "1 >= --ncpus 1" in result.stderr
    result = invoke("run", XDP_FW, "-p", "xdp_pass", "--data-in", "00", "--data-file", XDP_FW)
    assert result.exit_code == 2


def test_section_mode_still_runs_raw_sections(invoke: Invoke) -> None:
    """With --xdp/--mem the section's bytecode runs alone, as before; self-contained sections only."""
    result = invoke("run", XDP_FW, "-j", "xdp", "--xdp", "--mem", "00")
    assert result.exit_code == 1 and "relocation(s)" in result.stderr


# --- the kernel differential --------------------------------------------------------------------

_PERCPU = {MapType.PERCPU_ARRAY, MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH}
_ORDERED = {MapType.QUEUE, MapType.STACK}


def _sum_lanes(values: list[bytes]) -> bytes:
    """Per-CPU values summed over CPUs, lane by lane (u64 lanes when the size allows)."""
    size = len(values[0])
    lane = 8 if size % 8 == 0 else 4 if size % 4 == 0 else 1
    total = [0] * (size // lane)
    for v in values:
        for i in range(len(total)):
            total[i] += int.from_bytes(v[i * lane : (i + 1) * lane], "little")
    return b"".join((t & ((1 << (8 * lane)) - 1)).to_bytes(lane, "little") for t in total)


def _normal(mtype: MapType, rows: list[list[Any]] | None) -> Any:
    """Map contents as compared: ordered lists for queues/stacks, dicts otherwise, CPU sums."""
    if rows is None:
        return None
    if mtype in _ORDERED:
        return [value for _, value in rows]
    if mtype in _PERCPU:
        return {key: _sum_lanes([bytes.fromhex(v) for v in value]).hex() for key, value in rows}
    return {key: value for key, value in rows}


def _kernel_rows(coll: Any, name: str, mtype: MapType) -> list[list[Any]] | None:
    """What ``ebpf run --json`` lists for a map, read from the kernel's copy."""
    from ebpf.errors import KeyNotFoundError

    m = coll.maps[name]
    if mtype in (MapType.BLOOM_FILTER, MapType.PERF_EVENT_ARRAY, MapType.RINGBUF, MapType.USER_RINGBUF):
        return None
    if mtype in _ORDERED:
        popped = []
        while True:
            try:
                popped.append(["", m.pop().hex()])
            except KeyNotFoundError:
                return popped
    if mtype in (MapType.PROG_ARRAY, MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
        objects = coll.programs if mtype == MapType.PROG_ARRAY else coll.maps
        kind = "program" if mtype == MapType.PROG_ARRAY else "map"
        by_id = {obj.info().id: obj_name for obj_name, obj in objects.items()}
        rows = []
        for key in list(m):
            try:
                value = m.lookup(key)
            except KeyNotFoundError:
                continue  # an empty prog array / array-of-maps slot
            rows.append([key.hex(), {kind: by_id[struct.unpack("<I", value)[0]]}])
        return rows
    if mtype in _PERCPU:
        return [[key.hex(), [v.hex() for v in m.lookup_percpu(key)]] for key in list(m)]
    return [[key.hex(), m.lookup(key).hex()] for key in list(m)]


# (object, program, data_in, ctx_in, --map-init entries, --set entries, repeat)
KERNEL_CASES: dict[str, tuple[str, str, bytes, bytes | None, tuple[str, ...], tuple[str, ...], int]] = {
    "xdp_fw-pass": (XDP_FW, "xdp_firewall", packet("10.0.0.1"), None, (), (), 3),
    "xdp_fw-drop": (
        XDP_FW,
        "xdp_firewall",
        packet("10.0.0.7", proto="udp"),
        None,
        ("blocklist:180000000a000000=01000000",),
        (),
        2,
    ),
    "xdp_fw-set-tx": (
        XDP_FW,
        "xdp_firewall_frags",
        packet("10.0.0.7"),
        None,
        ("blocklist:200000000a000007=01000000",),
        ("drop_action=3", "verbose=1"),
        1,
    ),
    "xdp_fw-short": (XDP_FW, "xdp_firewall", bytes(14), None, (), (), 1),
    "xdp_pass-ctx": (XDP_FW, "xdp_pass", bytes(20), xdp_md(data_end=20, ifindex=1), (), ("port_table=0",), 1),
    "tc_classify": (TC_CLS, "tc_classify", packet("10.0.0.1", proto="udp"), None, (), (), 2),
    "tc_classify-ctx": (
        TC_CLS,
        "tc_classify",
        packet("10.0.0.3"),
        sk_buff(mark=5, priority=7, cb0=9, ifindex=1),
        (),
        ("mark_value=0x1234",),
        1,
    ),
    "xdp_fw-meta": (
        XDP_FW,
        "xdp_firewall",
        bytes(range(8)) + packet("10.0.0.8"),
        xdp_md(data=8, data_end=8 + len(packet("10.0.0.8"))),
        (),
        (),
        1,
    ),
    "tc_classify-ip6": (TC_CLS, "tc_classify", packet6(), None, (), (), 1),
    "xdp_fw-vlan": (XDP_FW, "xdp_firewall", vlan_tagged(packet("10.0.0.1")), None, (), (), 1),
    "socket-ip6": (SOCKET, "keep_tcp", packet6(), None, (), (), 1),
    "socket-vlan": (SOCKET, "keep_tcp", vlan_tagged(packet(proto="tcp")), None, (), (), 1),
    "socket-ctx": (SOCKET, "keep_tcp", packet(proto="tcp"), sk_buff(mark=3, priority=1), (), (), 1),
    "cls_legacy": (TC_CLS, "cls_legacy", packet("10.0.0.2"), None, (), (), 1),
    "tcx_out": (TC_CLS, "tcx_out", packet(), None, ("percpu_hash:00000000=07000000",), (), 1),
    "socket-tcp": (SOCKET, "keep_tcp", packet(proto="tcp"), None, (), (), 2),
    "socket-udp": (SOCKET, "keep_tcp", packet(proto="udp"), None, (), (), 1),
    "tailcall": (TAILCALL, "tail_entry", bytes(14), xdp_md(data_end=14, ifindex=1), (), (), 3),
    "subprogs-xdp": (str(ELF / "subprogs.o"), "entry", packet(), None, (), (), 1),
    "subprogs-tc": (str(ELF / "subprogs.o"), "other", packet(proto="udp"), None, (), (), 1),
    "linked-tailcall": (str(ELF / "linked.o"), "tail_entry", bytes(14), None, (), (), 2),
    "linked-firewall": (
        str(ELF / "linked.o"),
        "xdp_firewall",
        packet("10.0.0.9"),
        None,
        ("blocklist:200000000a000009=01000000",),
        (),
        1,
    ),
    "legacy_maps": (str(ELF / "legacy_maps.o"), "legacy_prog", packet(), None, (), (), 2),
    "samesec": (str(ELF / "samesec.o"), "samesec", packet(), None, (), (), 1),
    "nobtf": (str(ELF / "nobtf.o"), "count_packets", packet(proto="udp"), None, (), (), 3),
    "map_in_map": (
        MAP_IN_MAP,
        "mim_lookup",
        bytes(14),
        None,
        ("inner_hash:01000000=0500000000000000",),
        (),
        4,
    ),
}


@pytest.mark.kernel
@pytest.mark.parametrize("case", sorted(KERNEL_CASES))
def test_same_as_the_kernel(invoke: Invoke, case: str) -> None:
    """``ebpf run --json`` and the kernel's BPF_PROG_TEST_RUN: same retval, data_out, ctx_out, maps."""
    _same_as_the_kernel(invoke, *KERNEL_CASES[case])


def _same_as_the_kernel(
    invoke: Invoke,
    obj: str,
    prog: str,
    data: bytes,
    ctx: bytes | None,
    map_init: tuple[str, ...],
    assignments: tuple[str, ...],
    repeat: int,
) -> None:
    from ebpf.errors import BPFError
    from ebpf.kernel.collection import Collection as KernelCollection
    from ebpf.kernel.map import possible_cpus
    from ebpf.spec import PinType

    ncpus = possible_cpus()  # a value written for "all CPUs" sums the same on both sides
    args = [obj, "-p", prog, "--data-in", data.hex(), "--repeat", str(repeat), "--ncpus", str(ncpus)]
    if ctx is not None:
        args += ["--ctx-in", ctx.hex()]
    for entry in map_init:
        args += ["--map-init", entry]
    for entry in assignments:
        args += ["--set", entry]
    cli = invoke("run", *args, "--json")

    spec = load_collection_spec(obj)
    for entry in assignments:
        name, _, value = entry.partition("=")
        spec.set_variable(name, bytes.fromhex(value.replace(" ", "")) if " " in value else int(value, 0))
    for mspec in spec.maps.values():
        mspec.pinning = PinType.NONE  # no pins under /sys/fs/bpf from a test
    with KernelCollection(spec) as coll:
        for entry in map_init:
            name, _, kv = entry.partition(":")
            key, _, value = kv.partition("=")
            coll.maps[name].update(bytes.fromhex(key), bytes.fromhex(value))
        try:
            result = coll.programs[prog].test_run(data, ctx_in=ctx, repeat=repeat)
        except BPFError as refused:  # the kernel refuses the input: so must the CLI, with its errno
            assert cli.exit_code == 1, cli.stdout
            assert json.loads(cli.stdout)["error"].get("errno") == getattr(refused, "errno", None)
            return
        theirs = {name: _kernel_rows(coll, name, mspec.type) for name, mspec in spec.maps.items()}

    assert cli.exit_code == 0, cli.stderr
    ours = json.loads(cli.stdout)
    assert ours["retval"] == result.retval
    assert ours["data_out"] == result.data_out.hex()
    assert ours["ctx_out"] == (None if result.ctx_out is None else result.ctx_out.hex())
    assert set(ours["maps"]) == set(theirs)
    for name, mspec in spec.maps.items():
        assert _normal(mspec.type, ours["maps"][name]) == _normal(mspec.type, theirs[name]), name


@pytest.mark.kernel
def test_xdp_multi_buffer_as_the_kernel(invoke: Invoke) -> None:
    from ebpf.kernel.collection import Collection as KernelCollection
    from ebpf.spec import PinType

    data, ctx = bytes(60), xdp_md(data_end=30)
    spec = load_collection_spec(XDP_FW)
    for mspec in spec.maps.values():
        mspec.pinning = PinType.NONE
    with KernelCollection(spec) as coll:
        kernel = coll.programs["xdp_firewall_frags"].test_run(data, ctx_in=ctx)
    result = invoke(
        "run", XDP_FW, "-p", "xdp_firewall_frags", "--data-in", data.hex(), "--ctx-in", ctx.hex(), "--json"
    )
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["retval"], doc["data_out"], doc["ctx_out"]) == (
        kernel.retval,
        kernel.data_out.hex(),
        None if kernel.ctx_out is None else kernel.ctx_out.hex(),
    )


@pytest.mark.kernel
@pytest.mark.parametrize(("ifindex", "queue", "errno_"), [(0x7FFF_FFF0, 0, 19), (1, 1, 22)])
def test_xdp_ctx_device_checks_as_the_kernel(invoke: Invoke, ifindex: int, queue: int, errno_: int) -> None:
    from ebpf.errors import BPFError
    from ebpf.kernel.collection import Collection as KernelCollection
    from ebpf.spec import PinType

    data, ctx = bytes(14), xdp_md(data_end=14, ifindex=ifindex, rx_queue=queue)
    spec = load_collection_spec(TAILCALL)
    for mspec in spec.maps.values():
        mspec.pinning = PinType.NONE
    with KernelCollection(spec) as coll, pytest.raises(BPFError) as refused:
        coll.programs["tail_entry"].test_run(data, ctx_in=ctx)
    assert getattr(refused.value, "errno", None) == errno_
    result = invoke("run", TAILCALL, "-p", "tail_entry", "--data-in", data.hex(), "--ctx-in", ctx.hex())
    assert result.exit_code == 1, result.stdout


_RANDOM_PROGRAMS = [
    (XDP_FW, "xdp_firewall"),
    (TC_CLS, "tc_classify"),
    (TC_CLS, "cls_legacy"),
    (SOCKET, "keep_tcp"),
]


@pytest.mark.kernel
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.integers(0, len(_RANDOM_PROGRAMS) - 1),
    ethertype=st.sampled_from([0x0800, 0x86DD, 0x8100, 0x0806, 0x1234]),
    body=st.binary(min_size=0, max_size=90),
    ip_header=st.booleans(),
    repeat=st.integers(1, 3),
)
def test_random_frames_same_as_the_kernel(
    invoke: Invoke, which: int, ethertype: int, body: bytes, ip_header: bool, repeat: int
) -> None:
    """Random frames (IPv4 ones with a valid-looking header, or any bytes, short ones included):
    CLI JSON == kernel, or both refuse the input with the same errno."""
    obj, prog = _RANDOM_PROGRAMS[which]
    if ip_header and ethertype == 0x0800:
        body = bytes([0x45]) + body[1:9] + bytes([6 if len(body) % 2 else 17]) + body[10:]
    frame = bytes.fromhex("0266778899aa021122334455") + struct.pack("!H", ethertype) + body
    _same_as_the_kernel(invoke, obj, prog, frame, None, (), (), repeat)


@pytest.mark.kernel
@pytest.mark.parametrize(("obj", "prog"), [(TC_CLS, "tc_classify"), (SOCKET, "keep_tcp")])
@pytest.mark.parametrize(("ethertype", "size"), [(0x0800, 19), (0x86DD, 39)])
def test_short_ip_frames_refused_as_by_the_kernel(
    invoke: Invoke, obj: str, prog: str, ethertype: int, size: int
) -> None:
    """Linux 6.18 refuses an skb test run whose IPv4/IPv6 frame is shorter than its IP header."""
    from ebpf.errors import BPFError
    from ebpf.kernel.collection import Collection as KernelCollection

    frame = bytes.fromhex("0266778899aa021122334455") + struct.pack("!H", ethertype) + bytes(size)
    with KernelCollection(load_collection_spec(obj)) as coll, pytest.raises(BPFError) as refused:
        coll.programs[prog].test_run(frame)
    assert getattr(refused.value, "errno", None) == 22
    result = invoke("run", obj, "-p", prog, "--data-in", frame.hex())
    assert result.exit_code == 1, result.stdout
    assert result.stderr.startswith(f"error: {obj}: program {prog!r}: ") and result.stderr.count("\n") == 1
    error = json.loads(invoke("run", obj, "-p", prog, "--data-in", frame.hex(), "--json").stdout)["error"]
    assert (error["type"], error["errno"]) == ("TestRunError", 22)
    # one byte more of IP header and both run it
    _same_as_the_kernel(invoke, obj, prog, frame + b"\0", None, (), (), 1)


def test_human_output_names_context_fields(invoke: Invoke) -> None:
    """ctx_out is shown as hex and as the non-zero ``__sk_buff`` fields (every ``xdp_md`` field)."""
    ctx = sk_buff(mark=5, priority=7, cb0=9)
    frame = packet()
    result = invoke("run", TC_CLS, "-p", "tc_classify", "--data-in", frame.hex(), "--ctx-in", ctx.hex())
    assert result.exit_code == 0, result.stderr
    out = result.stdout.splitlines()
    # tc_classify sets skb->mark from .data.marks (0x42); the kernel reports wire_len = len(data_in)
    assert f"ctx_fields: mark=66 priority=7 ifindex=1 cb[0]=9 wire_len={len(frame)}" in out
    result = invoke(
        "run",
        TAILCALL,
        "-p",
        "tail_entry",
        "--data-in",
        bytes(14).hex(),
        "--ctx-in",
        xdp_md(data_end=14).hex(),
    )
    assert (
        "ctx_fields: data=0 data_end=14 data_meta=0 ingress_ifindex=0 rx_queue_index=0 egress_ifindex=0"
        in result.stdout.splitlines()
    )
