"""Feature probes on this kernel, and against bpftool's ``feature probe`` where bpftool exists."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from ebpf.cli.main import main
from ebpf.errors import NotSupportedError
from ebpf.helpers import HelperId
from ebpf.kernel.probes import (
    _CONFIG,
    MIN_KERNEL_MAP,
    MIN_KERNEL_PROG,
    Status,
    probe_attach_type,
    probe_helper,
    probe_map_type,
    probe_program_type,
    require_map_type,
    require_program_type,
)
from ebpf.kernel.version import kernel_version
from ebpf.spec import AttachType, MapType, ProgramType

pytestmark = pytest.mark.kernel


def _new_enough(min_kernel: str) -> bool:
    major, minor = (int(x) for x in min_kernel.split("."))
    return tuple(kernel_version()[:2]) >= (major, minor)


@pytest.mark.parametrize(
    "prog_type", [t for t in ProgramType if t is not ProgramType.UNSPEC], ids=lambda t: t.name
)
def test_program_types_are_never_wrongly_unsupported(prog_type: ProgramType) -> None:
    probe = probe_program_type(prog_type)
    if probe.status is Status.UNSUPPORTED and prog_type not in _CONFIG:
        assert not _new_enough(MIN_KERNEL_PROG[prog_type]), f"{prog_type.name}: {probe.detail}"
    try:
        require_program_type(prog_type)
    except NotSupportedError as err:
        assert probe.status is not Status.SUPPORTED
        if err.min_kernel:
            assert not _new_enough(err.min_kernel)


@pytest.mark.parametrize("map_type", [t for t in MapType if t is not MapType.UNSPEC], ids=lambda t: t.name)
def test_map_types_are_never_wrongly_unsupported(map_type: MapType) -> None:
    probe = probe_map_type(map_type)
    if probe.status is Status.UNSUPPORTED and map_type not in _CONFIG:
        assert not _new_enough(MIN_KERNEL_MAP[map_type]), f"{map_type.name}: {probe.detail}"
    if probe.ok:
        require_map_type(map_type)


def test_known_answers_here() -> None:
    assert probe_program_type(ProgramType.XDP).ok
    assert probe_map_type(MapType.RINGBUF).ok
    assert probe_map_type(MapType.TASK_STORAGE).ok  # needs the BTF the probe loads
    assert probe_helper(ProgramType.XDP, HelperId.MAP_LOOKUP_ELEM).ok
    xdp_only = probe_helper(ProgramType.SOCKET_FILTER, HelperId.XDP_ADJUST_HEAD)
    assert xdp_only.status is Status.UNSUPPORTED and "cannot use helper" in xdp_only.detail
    unknown = probe_helper(ProgramType.XDP, 10_000)
    assert unknown.status is Status.UNSUPPORTED and "invalid func" in unknown.detail
    assert probe_attach_type(AttachType.CGROUP_INET4_CONNECT).ok
    assert probe_attach_type(AttachType.TCX_INGRESS).ok


def test_refused_is_not_unsupported() -> None:
    lsm = probe_program_type(ProgramType.LSM)
    if lsm.status is Status.REFUSED:  # lockdown here: EPERM with an empty log
        assert "EPERM" in lsm.detail
        with pytest.raises(NotSupportedError) as info:
            require_program_type(ProgramType.LSM)
        assert info.value.min_kernel is None


@pytest.mark.skipif(shutil.which("bpftool") is None, reason="bpftool not installed (apt-get install bpftool)")
def test_agrees_with_bpftool() -> None:
    proc = subprocess.run(
        ["bpftool", "feature", "probe", "kernel", "-j"], capture_output=True, text=True, check=True
    )
    theirs = json.loads(proc.stdout)
    for key, have in theirs["program_types"].items():
        name = key.removeprefix("have_").removesuffix("_prog_type")
        ours = probe_program_type(ProgramType[name.upper()])
        if name == "tracing" and not have:
            # libbpf 1.1 probes TRACING with an fentry load, which lockdown refuses here (EPERM);
            # the type itself exists: tp_btf programs (TRACING) load and attach on this kernel.
            assert ours.ok
            continue
        # bpftool says False when a load is refused (EPERM), we say "refused": both not usable.
        assert ours.ok == have or (ours.status is Status.REFUSED and not have), name
    for key, have in theirs["map_types"].items():
        name = key.removeprefix("have_").removesuffix("_map_type")
        if name == "struct_ops":
            continue  # ours: not probed
        assert probe_map_type(MapType[name.upper()]).ok == have, name
    checked = 0
    everything = {n.removeprefix("bpf_") for names in theirs["helpers"].values() for n in names}
    for key, names in theirs["helpers"].items():
        ptype = ProgramType[key.removesuffix("_available_helpers").upper()]
        if not probe_program_type(ptype).ok or ptype in {ProgramType.TRACING, ProgramType.STRUCT_OPS}:
            continue
        ours = {h.name.lower() for h in HelperId if h and probe_helper(ptype, h).ok}
        theirs_set = {n.removeprefix("bpf_") for n in names}
        # bpftool 7.1 probes the helpers its libbpf knows, minus those that write to the kernel log
        # (trace_printk, trace_vprintk, probe_write_user) unless given "full".
        known = everything - {"trace_printk", "trace_vprintk", "probe_write_user"}
        assert ours & known <= theirs_set, ptype
        # libbpf 1.1 only recognises "invalid func"/"unknown func": it counts helpers the verifier
        # refuses for the program type ("cannot use helper", "might sleep in a non-sleepable
        # prog") as available; we do not.
        for name in (theirs_set - ours) & known:
            detail = probe_helper(ptype, HelperId[name.upper()]).detail
            assert any(m in detail for m in ("cannot use helper", "not supported", "might sleep")), (
                ptype,
                name,
                detail,
            )
        checked += 1
    assert checked > 10


def test_cli_json() -> None:
    result = CliRunner().invoke(main, ["features", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["program_types"]["xdp"]["status"] == "supported"
    assert "map_lookup_elem" in doc["helpers"]["xdp"]
