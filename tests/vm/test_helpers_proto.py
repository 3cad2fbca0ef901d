"""The helper prototype table: complete for the runtime's helpers, and what the kernel enforces."""

from __future__ import annotations

import pytest

from ebpf.helpers import PROTOTYPES, ArgType, HelperId, prototype
from ebpf.spec import ProgramType
from ebpf.vm.helpers import runtime_helpers

# Program types a program that only calls a helper can be loaded as (no attach type needed).
LOADABLE = [
    ProgramType.SOCKET_FILTER,
    ProgramType.KPROBE,
    ProgramType.SCHED_CLS,
    ProgramType.SCHED_ACT,
    ProgramType.TRACEPOINT,
    ProgramType.XDP,
    ProgramType.PERF_EVENT,
    ProgramType.CGROUP_SKB,
    ProgramType.CGROUP_SOCK,
    ProgramType.LWT_IN,
    ProgramType.LWT_OUT,
    ProgramType.LWT_XMIT,
    ProgramType.SOCK_OPS,
    ProgramType.SK_SKB,
    ProgramType.CGROUP_DEVICE,
    ProgramType.SK_MSG,
    ProgramType.RAW_TRACEPOINT,
    ProgramType.SK_REUSEPORT,
    ProgramType.FLOW_DISSECTOR,
    ProgramType.CGROUP_SYSCTL,
    ProgramType.RAW_TRACEPOINT_WRITABLE,
]
# Known differences: the kernel's config (no CONFIG_BPF_KPROBE_OVERRIDE here) and a per-type
# prototype (bpf_get_stackid for perf events is checked before the license).
CONFIG_DEPENDENT = {HelperId.OVERRIDE_RETURN}
GPL_EXCEPTIONS = {(HelperId.GET_STACKID, ProgramType.PERF_EVENT)}


def test_every_runtime_helper_has_a_prototype() -> None:
    for helper_id, helper in runtime_helpers().items():
        proto = prototype(helper_id)
        assert proto is not None, helper.name
        assert proto.name == helper.name
    assert prototype(10_000) is None and prototype(0) is None


def test_helper_ids_are_the_uapi_numbers() -> None:
    assert HelperId.MAP_LOOKUP_ELEM == 1
    assert HelperId.TRACE_PRINTK == 6
    assert HelperId.TAIL_CALL == 12
    assert HelperId.XDP_ADJUST_HEAD == 44
    assert HelperId.RINGBUF_OUTPUT == 130
    assert HelperId.LOOP == 181
    assert HelperId.USER_RINGBUF_DRAIN == 209
    assert max(HelperId) == HelperId.CGRP_STORAGE_DELETE == 211
    assert len(HelperId) == 212


def _load(helper: HelperId, prog_type: ProgramType, license: str) -> tuple[str, ...]:
    from ebpf.errors import VerifierError
    from ebpf.isa.asm import assemble
    from ebpf.kernel.program import Program

    try:
        with Program.load(assemble(f"r0 = 0\ncall {int(helper)}\nr0 = 0\nexit"), prog_type, license=license):
            return ()
    except VerifierError as err:
        return err.log or (str(err),)


@pytest.mark.kernel
@pytest.mark.parametrize("helper", sorted(set(PROTOTYPES) - CONFIG_DEPENDENT))
def test_program_types_and_license_match_the_kernel(helper: HelperId) -> None:
    proto = PROTOTYPES[helper]
    for prog_type in LOADABLE:
        log = "\n".join(_load(helper, prog_type, "Proprietary"))
        refused = "unknown func" in log or "cannot use helper" in log
        assert refused == (not proto.allowed_in(prog_type)), (prog_type.name, log[-300:])
        if not refused and (helper, prog_type) not in GPL_EXCEPTIONS:
            assert ("GPL-restricted" in log) == proto.gpl_only, (prog_type.name, log[-300:])


@pytest.mark.kernel
@pytest.mark.parametrize("helper", sorted(set(PROTOTYPES) - CONFIG_DEPENDENT))
def test_argument_order_matches_the_kernel(helper: HelperId) -> None:
    """With only r1 (the context) set, the verifier stops at the first argument that does not fit."""
    proto = PROTOTYPES[helper]
    prog_type = next((t for t in LOADABLE if proto.allowed_in(t)), None)
    if prog_type is None:  # e.g. bpf_inode_storage_*: LSM only, which cannot load here
        pytest.skip(f"{proto.name}: no loadable program type may call it")
    log = "\n".join(_load(helper, prog_type, "GPL"))
    args = [a.type for a in proto.args]
    if not args:
        assert "R1" not in log and "!read_ok" not in log, log[-300:]
    elif args[0] in (ArgType.PTR_TO_CTX, ArgType.ANYTHING):
        if len(args) >= 2:
            assert "R2 !read_ok" in log, log[-300:]
        else:
            assert "!read_ok" not in log, log[-300:]
    else:
        assert "R1 type=ctx expected=" in log, log[-300:]
