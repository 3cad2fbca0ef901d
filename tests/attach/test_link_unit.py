"""Link info decoding and link-id iteration against a scripted bpf() backend (no kernel needed)."""

from __future__ import annotations

import ctypes
import errno
import struct

import pytest

from ebpf.attach import LinkType, PerfEventType, link_ids
from ebpf.attach.link import _decode_info
from ebpf.errors import SyscallError
from ebpf.kernel._syscall import override_backend
from ebpf.kernel.uapi import Cmd
from ebpf.spec import AttachType


def info_backend(ltype: int, union: bytes, name: bytes = b""):  # type: ignore[no-untyped-def]
    """A backend answering BPF_OBJ_GET_INFO_BY_FD like the kernel does for one link."""

    def backend(cmd: Cmd, attr: ctypes.Structure) -> int:
        assert cmd == Cmd.OBJ_GET_INFO_BY_FD
        buf = (ctypes.c_char * 64).from_address(attr.info)  # type: ignore[attr-defined]
        given = bytes(buf[16:64])
        data = bytearray(struct.pack("=IIII", ltype, 42, 7, 0) + union.ljust(48, b"\0"))
        if name:
            # the caller passed (pointer, length) somewhere in the union; copy the name there
            ptr_off, len_off = (8, 16) if ltype == LinkType.PERF_EVENT else (0, 8)
            ptr = struct.unpack_from("=Q", given, ptr_off)[0]
            size = struct.unpack_from("=I", given, len_off)[0]
            if ptr and size:
                ctypes.memmove(ptr, name + b"\0", len(name) + 1)
                data[16 + ptr_off : 16 + ptr_off + 8] = given[ptr_off : ptr_off + 8]
        ctypes.memmove(attr.info, bytes(data), 64)  # type: ignore[attr-defined]
        return 0

    return backend


def test_xdp_and_cgroup_info() -> None:
    with override_backend(info_backend(LinkType.XDP, struct.pack("=I", 3))):
        info = _decode_info(99)
    assert (info.type, info.id, info.prog_id, dict(info.details)) == (LinkType.XDP, 42, 7, {"ifindex": 3})
    union = struct.pack("=QI", 1234, AttachType.CGROUP_INET4_CONNECT)
    with override_backend(info_backend(LinkType.CGROUP, union)):
        info = _decode_info(99)
    assert info.details == {"cgroup_id": 1234, "attach_type": AttachType.CGROUP_INET4_CONNECT}


def test_named_infos_fetch_the_name() -> None:
    with override_backend(info_backend(LinkType.RAW_TRACEPOINT, b"", name=b"sched_switch")):
        assert _decode_info(1).details == {"tp_name": "sched_switch", "cookie": 0}
    union = struct.pack("=IIQIIQQ", PerfEventType.UPROBE, 0, 0, 0, 0x1139, 5, 0x3018)
    with override_backend(info_backend(LinkType.PERF_EVENT, union, name=b"/usr/bin/x")):
        details = _decode_info(1).details
    assert details["perf_event_type"] == PerfEventType.UPROBE
    assert details["file_name"] == "/usr/bin/x"
    assert (details["offset"], details["cookie"], details["ref_ctr_offset"]) == (0x1139, 5, 0x3018)


def test_unknown_link_type_is_kept_as_a_number() -> None:
    with override_backend(info_backend(200, b"")):
        info = _decode_info(1)
    assert info.type == 200 and info.details == {}


def test_link_ids_stop_at_enoent() -> None:
    ids = iter([3, 8, 21])

    def backend(cmd: Cmd, attr: ctypes.Structure) -> int:
        assert cmd == Cmd.LINK_GET_NEXT_ID
        try:
            attr.next_id = next(ids)  # type: ignore[attr-defined]
        except StopIteration:
            return -errno.ENOENT
        return 0

    with override_backend(backend):
        assert list(link_ids()) == [3, 8, 21]

    with override_backend(lambda cmd, attr: -errno.EPERM), pytest.raises(SyscallError):
        list(link_ids())
