"""Differential: links as ``ebpf.attach`` reports them vs ``bpftool link show --json``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ebpf import attach
from ebpf.attach import LinkType, XDPMode
from ebpf.spec import AttachType, ProgramType

from ._util import ArrayMap, counter, load

pytestmark = pytest.mark.kernel


def bpftool_links() -> dict[int, dict[str, object]]:
    out = subprocess.run(["bpftool", "link", "show", "--json"], capture_output=True, text=True, check=True)
    return {int(item["id"]): item for item in json.loads(out.stdout)}


def test_links_agree_with_bpftool(veth, test_cgroup: Path) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool is not installed")
    with (
        ArrayMap() as m,
        load(counter(m.fd), ProgramType.TRACEPOINT) as tp,
        load(counter(m.fd), ProgramType.RAW_TRACEPOINT) as raw,
        load(counter(m.fd, ret=2), ProgramType.XDP) as xdp,
        load(counter(m.fd, ret=1), ProgramType.CGROUP_SKB, attach_type=AttachType.CGROUP_INET_EGRESS) as skb,
        attach.tracepoint(tp, "syscalls", "sys_enter_getppid") as l_tp,
        attach.raw_tracepoint(raw, "sys_enter") as l_raw,
        attach.xdp(xdp, veth.host_index, XDPMode.GENERIC) as l_xdp,
        attach.cgroup(skb, test_cgroup, AttachType.CGROUP_INET_EGRESS) as l_cg,
    ):
        theirs = bpftool_links()
        for link in (l_tp, l_raw, l_xdp, l_cg):
            ours = link.info()
            other = theirs[ours.id]
            assert other["prog_id"] == ours.prog_id
            assert isinstance(ours.type, LinkType)
            assert other["type"] == ours.type.name.lower()
            for key in ("tp_name", "ifindex", "cgroup_id"):
                if key in other:
                    assert other[key] == ours.details[key], key
        assert theirs[l_raw.info().id]["tp_name"] == "sys_enter"
        cg = theirs[l_cg.info().id]
        assert cg["attach_type"] == "cgroup_inet_egress" == AttachType.CGROUP_INET_EGRESS.name.lower()
