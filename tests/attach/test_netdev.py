"""XDP, tcx and classic tc on a veth pair into a test network namespace, with real pings."""

from __future__ import annotations

import errno
import os

import pytest

from ebpf import attach
from ebpf.attach import LinkType, TCDirection, XDPMode
from ebpf.errors import NotSupportedError, SyscallError
from ebpf.spec import AttachType, ProgramType

from ._util import ArrayMap, counter, links_of, load

pytestmark = pytest.mark.kernel


def test_xdp_counts_then_drops_packets(veth) -> None:
    with (
        ArrayMap() as m,
        load(counter(m.fd, 0, ret=2), ProgramType.XDP) as passing,
        load(counter(m.fd, 1, ret=1), ProgramType.XDP) as dropping,
    ):
        ids = {passing.info().id, dropping.info().id}
        with attach.xdp(passing, veth.host_index, mode=XDPMode.DRIVER) as link:
            info = link.info()
            assert info.type == LinkType.XDP and info.details["ifindex"] == veth.host_index
            assert info.prog_id == passing.info().id
            assert veth.ping_peer(3)
            assert m[0] >= 3  # three echo replies at least (plus ARP)
            with pytest.raises(SyscallError) as info:
                link.update(dropping, old=dropping)  # BPF_F_REPLACE: `old` is not attached
            assert info.value.errno == errno.EPERM
            link.update(dropping, old=passing)
            assert not veth.ping_peer(2)
            assert m[1] >= 2
            link.detach()  # defunct now, still open
            assert veth.ping_peer(1)
        assert links_of(ids) == []
        assert veth.ping_peer(1)


def test_xdp_generic_mode_by_name(veth) -> None:
    with (
        ArrayMap() as m,
        load(counter(m.fd, 0, ret=2), ProgramType.XDP) as prog,
        attach.xdp(prog, veth.host, mode=XDPMode.GENERIC) as link,
    ):
        assert veth.ping_peer(2)
        assert m[0] >= 2
        assert "generic" in repr(link)


@pytest.mark.parametrize("direction", [TCDirection.INGRESS, TCDirection.EGRESS])
def test_tcx_counts_packets(veth, direction: TCDirection) -> None:
    with ArrayMap() as m, load(counter(m.fd, 0, ret=0), ProgramType.SCHED_CLS) as prog:
        with attach.tc(prog, veth.host_index, direction) as link:
            info = link.info()
            assert info.type == LinkType.TCX
            assert info.details["attach_type"] == AttachType(direction)
            assert veth.ping_peer(3)
            assert m[0] >= 3
        assert links_of({prog.info().id}) == []


def test_tcx_drop_and_order(veth) -> None:
    # TC_ACT_SHOT = 2 drops; a second program placed before it with TCX_PASS (0) wins.
    with (
        ArrayMap() as m,
        load(counter(m.fd, 0, ret=2), ProgramType.SCHED_CLS) as shot,
        load(counter(m.fd, 1, ret=0), ProgramType.SCHED_CLS) as ok,
    ):
        with attach.tc(shot, veth.host_index, TCDirection.INGRESS):
            assert not veth.ping_peer(2)
            with attach.tc(ok, veth.host_index, TCDirection.INGRESS, flags=attach.TCXFlags.BEFORE):
                assert veth.ping_peer(2)
                assert m[1] >= 2
        assert veth.ping_peer(1)


@pytest.mark.parametrize("direction", [TCDirection.INGRESS, TCDirection.EGRESS])
def test_classic_clsact_filter(veth, direction: TCDirection) -> None:
    with (
        ArrayMap() as m,
        load(counter(m.fd, 0, ret=0), ProgramType.SCHED_CLS) as prog,
        load(counter(m.fd, 1, ret=2), ProgramType.SCHED_CLS) as shot,
    ):
        with attach.tc_clsact(prog, veth.host_index, direction) as link:
            assert veth.ping_peer(3)
            assert m[0] >= 3
            link.update(shot)
            assert not veth.ping_peer(2)
            with pytest.raises(NotSupportedError, match="not BPF links"):
                link.pin("/sys/fs/bpf/x")
            assert _qdisc_kinds(veth.host_index) >= {"clsact"}
        assert veth.ping_peer(1)
        assert "clsact" not in _qdisc_kinds(veth.host_index)  # we added it, so we removed it


def _qdisc_kinds(ifindex: int) -> set[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return {msg.get_attr("TCA_KIND") for msg in ipr.get_qdiscs(index=ifindex)}


def test_sk_lookup_on_the_test_namespace(veth) -> None:
    import socket

    with (
        ArrayMap() as m,
        load(counter(m.fd, ret=1), ProgramType.SK_LOOKUP, attach_type=AttachType.SK_LOOKUP) as prog,
        attach.netns(prog, AttachType.SK_LOOKUP, f"/var/run/netns/{veth.netns}") as link,
    ):
        info = link.info()
        assert info.type == LinkType.NETNS and info.details["attach_type"] == AttachType.SK_LOOKUP
        with pytest.raises(ConnectionRefusedError), socket.create_connection((veth.peer_ip, 9), timeout=3):
            pass  # nothing listens: the SYN is looked up in the namespace, then refused
        assert m[0] >= 1
    with pytest.raises(ValueError, match="does not attach to a network namespace"):
        attach.netns(prog, AttachType.XDP)


def test_netfilter_local_in_counts_replies(veth) -> None:
    with (
        ArrayMap() as m,
        load(counter(m.fd, ret=1), ProgramType.NETFILTER, attach_type=AttachType.NETFILTER) as prog,
    ):
        priority = -(10_000 + os.getpid() % 10_000)  # unique per test process: one program per priority
        with attach.netfilter(prog, attach.NetfilterHook.LOCAL_IN, priority=priority) as link:
            info = link.info()
            assert info.type == LinkType.NETFILTER
            assert (info.details["pf"], info.details["hooknum"], info.details["priority"]) == (2, 1, priority)
            assert veth.ping_peer(3)
            assert m[0] >= 3
        assert links_of({prog.info().id}) == []


def test_clsact_qdisc_stays_while_other_filters_use_it(veth) -> None:
    with (
        ArrayMap() as m,
        load(counter(m.fd, 0, ret=0), ProgramType.SCHED_CLS) as first,
        load(counter(m.fd, 1, ret=0), ProgramType.SCHED_CLS) as second,
    ):
        a = attach.tc_clsact(first, veth.host_index, TCDirection.INGRESS)  # adds clsact
        with attach.tc_clsact(second, veth.host_index, TCDirection.EGRESS, priority=2) as b:
            a.close()  # b still needs the qdisc
            seen_by_a = m[0]
            assert "clsact" in _qdisc_kinds(veth.host_index)
            assert veth.ping_peer(2)
            assert m[1] >= 2
            assert m[0] == seen_by_a  # a's filter is gone
        assert b.closed
        assert "clsact" in _qdisc_kinds(veth.host_index)  # b did not add it: left in place


def test_flow_dissector_on_the_test_namespace(veth) -> None:
    # with RPS on, each received packet is hashed, which runs the namespace's flow dissector
    from .conftest import run

    rps = f"/sys/class/net/{veth.peer}/queues/rx-0/rps_cpus"
    run("ip", "netns", "exec", veth.netns, "sh", "-c", f"echo 1 > {rps}")  # steer to CPU 0
    with (
        ArrayMap() as m,
        load(counter(m.fd, ret=0), ProgramType.FLOW_DISSECTOR, attach_type=AttachType.FLOW_DISSECTOR) as prog,
        attach.netns(prog, AttachType.FLOW_DISSECTOR, f"/var/run/netns/{veth.netns}") as link,
    ):
        assert link.info().details["attach_type"] == AttachType.FLOW_DISSECTOR
        assert veth.ping_peer(3)
        assert m[0] >= 3
