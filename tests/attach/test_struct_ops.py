"""struct_ops: a TCP congestion control written in BPF registered through a .struct_ops.link map."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from ebpf import attach
from ebpf.elf import load_collection_spec
from ebpf.errors import BPFError
from ebpf.kernel.collection import Collection

pytestmark = pytest.mark.kernel

OBJECT = Path(__file__).resolve().parents[1] / "data" / "elf" / "struct_ops.o"
AVAILABLE = Path("/proc/sys/net/ipv4/tcp_available_congestion_control")


def available() -> list[str]:
    return AVAILABLE.read_text().split()


def test_congestion_control_registered_while_the_link_lives() -> None:
    assert "ebpf_cc" not in available()
    with Collection(load_collection_spec(OBJECT)) as coll:
        with attach.struct_ops(coll, "ebpf_cc") as link:
            assert "ebpf_cc" in available()  # the kernel now offers our algorithm
            assert link.info().type.name.lower() == "struct_ops"
        assert "ebpf_cc" not in available()  # closing the link unregistered it


def test_unregistrable_struct_ops_reports_the_kernels_answer() -> None:
    # bpf_dummy_ops exists for BPF_PROG_TEST_RUN only: the kernel refuses to register it.
    with Collection(load_collection_spec(OBJECT)) as coll, pytest.raises(BPFError) as info:
        attach.struct_ops(coll, "dummy_ops")
    assert getattr(info.value, "errno", None) in (errno.ENOTSUP, 524)  # EOPNOTSUPP / ENOTSUPP
