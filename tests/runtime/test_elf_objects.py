"""The ELF corpus (tests/data/elf, clang-19) loaded and run end to end in the user-space runtime."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from ebpf.elf import load_collection_spec
from ebpf.errors import NotSupportedError
from ebpf.runtime import Collection
from ebpf.spec import CollectionSpec
from ebpf.vm.context import LOOPBACK

from ._build import default_helpers, test_helpers

DATA = Path(__file__).resolve().parent.parent / "data" / "elf"
ENGINES = ["interp", "py"]
XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX = 0, 1, 2, 3


def spec_of(name: str) -> CollectionSpec:
    return load_collection_spec(DATA / name)


def ipv4_packet(saddr: str, daddr: str = "10.9.9.9", proto: int = 17) -> bytes:
    eth = b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", 0x0800)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, 64, proto, 0, socket.inet_aton(saddr), socket.inet_aton(daddr)
    )
    return eth + ip + struct.pack("!HHHH", 1000, 53, 8, 0)


def xdp_md(rx_queue_index: int, size: int = 14) -> bytes:
    """``struct xdp_md`` for ``ctx_in``: data 0, data_end = the frame size, loopback."""
    return struct.pack("<6I", 0, size, 0, 1, rx_queue_index, 0)


LO_4_QUEUES = {1: LOOPBACK._replace(rx_queues=4)}  # rx queues 0-3 (the kernel's lo has one: EINVAL past it)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("helpers", ["runtime", "test"])
def test_xdp_firewall(engine: str, helpers: str) -> None:
    spec = spec_of("xdp_fw.o")
    registry = default_helpers() if helpers == "runtime" else test_helpers()
    with Collection(spec, engine=engine, helpers=registry, ncpus=2) as coll:
        coll.env.devices = LO_4_QUEUES
        fw = coll.programs["xdp_firewall"]
        coll.maps["blocklist"][struct.pack("<I", 32) + socket.inet_aton("10.0.0.1")] = struct.pack("<I", 1)
        assert fw.test_run(ipv4_packet("10.0.0.1")).retval == XDP_DROP
        assert fw.test_run(ipv4_packet("10.0.0.2"), cpu=1).retval == XDP_PASS
        assert fw.test_run(b"\x00" * 20).retval == XDP_PASS  # too short: counter 0
        result = fw.test_run(ipv4_packet("10.0.0.3"), repeat=5)
        assert result.retval == XDP_PASS
        assert result.data_out == ipv4_packet("10.0.0.3")
        v = coll.variables
        assert v["packets_seen"].get_int() == 8
        assert v["last_saddr"].get() == socket.inet_aton("10.0.0.3")
        counters = coll.maps["counters"]
        per_cpu = [
            [coll.memory.load(counters.value_address(struct.pack("<I", k), cpu) or 0, 8) for cpu in range(2)]
            for k in range(4)
        ]
        assert per_cpu == [[1, 0], [1, 0], [5, 1], [0, 0]]
        # the frags variant reads .rodata: verbose is off
        assert coll.programs["xdp_firewall_frags"].test_run(ipv4_packet("10.0.0.1")).retval == XDP_DROP
        # port_table in .data, indexed by the rx queue from ctx_in
        assert coll.programs["xdp_pass"].test_run(b"\x00" * 14, ctx_in=xdp_md(2)).retval == XDP_PASS


def test_rodata_set_before_load() -> None:
    spec = spec_of("xdp_fw.o")
    spec.set_variable("drop_action", XDP_TX)
    spec.set_variable("port_table", bytes(8))
    with Collection(spec, helpers=test_helpers()) as coll:
        coll.maps["blocklist"][struct.pack("<I", 32) + socket.inet_aton("10.0.0.1")] = struct.pack("<I", 1)
        assert coll.programs["xdp_firewall"].test_run(ipv4_packet("10.0.0.1")).retval == XDP_TX
        assert coll.programs["xdp_pass"].test_run(b"\x00" * 14).retval == XDP_ABORTED
        assert coll.variables["drop_action"].read_only


@pytest.mark.parametrize("engine", ENGINES)
def test_tail_calls_from_values(engine: str) -> None:
    with Collection(spec_of("tailcall.o"), engine=engine, helpers=default_helpers()) as coll:
        coll.env.devices = LO_4_QUEUES
        entry = coll.programs["tail_entry"]
        assert entry.test_run(b"\x00" * 14, ctx_in=xdp_md(0)).retval == XDP_PASS
        assert entry.test_run(b"\x00" * 14, ctx_in=xdp_md(2)).retval == XDP_DROP
        assert entry.test_run(b"\x00" * 14, ctx_in=xdp_md(1)).retval == XDP_ABORTED  # empty slot
        hits = coll.variables["hits"].get()
        assert struct.unpack("<3i", hits) == (1, 1, 3)


def test_legacy_maps_object() -> None:
    spec = spec_of("legacy_maps.o")
    assert set(spec.maps) == {"legacy_hash", "legacy_array"}
    with Collection(spec, helpers=test_helpers()) as coll:
        coll.maps["legacy_hash"][struct.pack("<I", 1)] = struct.pack("<Q", 41)
        prog = coll.programs["legacy_prog"]
        assert prog.type.name == "SOCKET_FILTER"
        assert prog.test_run(b"\x00" * 64).retval == 42


def test_objects_that_cannot_load_say_why() -> None:
    with pytest.raises(NotSupportedError, match="bpf_task_acquire"):
        Collection(spec_of("tracer.o"), kconfig={"CONFIG_BPF_SYSCALL": "y"})


def test_big_endian_objects_are_refused() -> None:
    with pytest.raises(NotSupportedError, match="big-endian"):
        Collection(load_collection_spec(DATA / "xdp_fw.be.o"))


@pytest.mark.parametrize("engine", ENGINES)
def test_map_in_map(engine: str) -> None:
    with Collection(spec_of("map_in_map.o"), engine=engine, helpers=default_helpers()) as coll:
        coll.maps["inner_hash"][struct.pack("<I", 1)] = struct.pack("<Q", 5)
        prog = coll.programs["mim_lookup"]
        for _ in range(3):
            assert prog.test_run(b"\x00" * 14).retval == XDP_PASS
        assert coll.maps["inner_one"][struct.pack("<I", 0)] == struct.pack("<I", 3)
        assert coll.maps["inner_two"][struct.pack("<I", 0)] == struct.pack("<I", 0)
        assert coll.maps["inner_hash"][struct.pack("<I", 1)] == struct.pack("<Q", 8)
        # swap the inner map of slot 0 from Python: the program follows
        coll.maps["outer_array"].update_map(struct.pack("<I", 0), coll.maps["inner_two"])
        prog.test_run(b"\x00" * 14)
        assert coll.maps["inner_two"][struct.pack("<I", 0)] == struct.pack("<I", 1)


@pytest.mark.parametrize("engine", ENGINES)
def test_socket_filter(engine: str) -> None:
    with Collection(spec_of("socket_filter.o"), engine=engine, ncpus=2) as coll:
        prog = coll.programs["keep_tcp"]
        tcp, udp = ipv4_packet("10.0.0.1", proto=6), ipv4_packet("10.0.0.1", proto=17)
        assert prog.test_run(tcp).retval == len(tcp) - 14  # skb->len without the Ethernet header
        assert prog.test_run(udp).retval == 0
        assert coll.variables["accepted"].get_int() == 1
        assert coll.maps["totals"][bytes(4)] == struct.pack("<Q", 2)


def test_empty_ctx_in_is_no_context() -> None:
    """ctx_size_in 0: the kernel builds its default context and copies no ctx_out."""
    with Collection(spec_of("socket_filter.o")) as coll:
        prog = coll.programs["keep_tcp"]
        frame = ipv4_packet("10.0.0.1", proto=6)
        assert prog.test_run(frame, ctx_in=b"").ctx_out is None
        assert prog.test_run(frame, ctx_in=bytes(8)).ctx_out is not None
    with Collection(spec_of("xdp_fw.o")) as coll:
        assert coll.programs["xdp_pass"].test_run(b"\x00" * 14, ctx_in=b"").retval == XDP_PASS
