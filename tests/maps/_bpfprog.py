"""Tiny raw-bytecode builder and kernel helpers for the maps' kernel differential tests.

Programs are encoded by hand (8 bytes per slot) so the tests depend on nothing but the UAPI;
loading and test runs go through ``ebpf.kernel.program.Program`` and so ``_syscall.bpf``.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct

from ebpf.kernel.program import Program
from ebpf.spec import ProgramType

R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)


def insn(op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", op, (src << 4) | dst, off, imm)


def mov_imm(dst: int, imm: int) -> bytes:
    return insn(0xB7, dst, imm=imm)


def mov_reg(dst: int, src: int) -> bytes:
    return insn(0xBF, dst, src)


def add_imm(dst: int, imm: int) -> bytes:
    return insn(0x07, dst, imm=imm)


def ld_map_fd(dst: int, fd: int) -> bytes:
    return insn(0x18, dst, 1, imm=fd) + insn(0)


def call(helper: int) -> bytes:
    return insn(0x85, imm=helper)


def exit_() -> bytes:
    return insn(0x95)


def jeq_imm(dst: int, imm: int, off: int) -> bytes:
    return insn(0x15, dst, off=off, imm=imm)


def ja(off: int) -> bytes:
    return insn(0x05, off=off)


def fill(base: int, offset: int, size: int, byte: int) -> bytes:
    """Store ``size`` bytes of ``byte`` at ``base + offset`` (8 at a time, then single bytes)."""
    code = b""
    word = int.from_bytes(bytes([byte]) * 4, "little", signed=True)
    pos = 0
    while pos + 4 <= size:
        code += insn(0x62, base, off=offset + pos, imm=word)  # *(u32 *)(base + off) = imm
        pos += 4
    while pos < size:
        code += insn(0x72, base, off=offset + pos, imm=byte)  # *(u8 *)(base + off) = imm
        pos += 1
    return code


def run_xdp(code: bytes) -> int:
    """Load ``code`` as XDP, run it once on a 64-byte packet, return r0 (as a signed 32-bit value)."""
    with Program.load(code, ProgramType.XDP) as prog:
        retval = prog.test_run(bytes(64)).retval
    return retval - (1 << 32) if retval >= 1 << 31 else retval


class KernelRing:
    """A kernel ring buffer's ``mmap`` views: the consumer page (rw) and producer page + data (ro)."""

    PAGE = 4096

    def __init__(self, fd: int, size: int) -> None:
        self.size = size
        self.cons = mmap.mmap(fd, self.PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self.prod = mmap.mmap(fd, self.PAGE + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=self.PAGE)

    @property
    def consumer_pos(self) -> int:
        value: int = struct.unpack_from("<Q", self.cons, 0)[0]
        return value

    @consumer_pos.setter
    def consumer_pos(self, pos: int) -> None:
        struct.pack_into("<Q", self.cons, 0, pos)

    @property
    def producer_pos(self) -> int:
        value: int = struct.unpack_from("<Q", self.prod, 0)[0]
        return value

    @property
    def data(self) -> bytes:
        return bytes(self.prod[self.PAGE : self.PAGE + self.size])

    def close(self) -> None:
        self.cons.close()
        self.prod.close()


def possible_cpus() -> int:
    with open("/sys/devices/system/cpu/possible") as f:
        text = f.read().strip()
    return sum(int(r.split("-")[1]) - int(r.split("-")[0]) + 1 if "-" in r else 1 for r in text.split(","))


def close_fd(fd: int) -> None:
    if fd >= 0:
        os.close(fd)


def buf(data: bytes) -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(data, max(len(data), 1))


class BatchAttr(ctypes.Structure):
    """``union bpf_attr``'s ``batch`` member (``BPF_MAP_*_BATCH``), as in the UAPI."""

    _fields_ = [
        ("in_batch", ctypes.c_uint64),
        ("out_batch", ctypes.c_uint64),
        ("keys", ctypes.c_uint64),
        ("values", ctypes.c_uint64),
        ("count", ctypes.c_uint32),
        ("map_fd", ctypes.c_uint32),
        ("elem_flags", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]


class BtfLoadAttr(ctypes.Structure):
    """``union bpf_attr`` for ``BPF_BTF_LOAD``, as in the UAPI."""

    _fields_ = [
        ("btf", ctypes.c_uint64),
        ("btf_log_buf", ctypes.c_uint64),
        ("btf_size", ctypes.c_uint32),
        ("btf_log_size", ctypes.c_uint32),
        ("btf_log_level", ctypes.c_uint32),
        ("btf_log_true_size", ctypes.c_uint32),
    ]


def load_btf(blob: bytes) -> int:
    """``BPF_BTF_LOAD`` of ``blob``: a BTF fd."""
    from ebpf.kernel._syscall import bpf
    from ebpf.kernel.uapi import Cmd

    data = ctypes.create_string_buffer(blob, len(blob))
    log = ctypes.create_string_buffer(1 << 16)
    attr = BtfLoadAttr(btf=ctypes.addressof(data), btf_size=len(blob))
    attr.btf_log_buf, attr.btf_log_size, attr.btf_log_level = ctypes.addressof(log), 1 << 16, 1
    try:
        return bpf(Cmd.BTF_LOAD, attr)  # type: ignore[arg-type]
    except Exception as err:
        err.add_note(log.value.decode(errors="replace"))
        raise


def create_map_btf(
    mtype: int,
    key_size: int,
    value_size: int,
    max_entries: int,
    btf_fd: int,
    key_id: int,
    value_id: int,
    flags: int = 0,
) -> int:
    """``BPF_MAP_CREATE`` with BTF key/value types."""
    from ebpf.kernel._syscall import bpf
    from ebpf.kernel.uapi import Cmd, MapCreateAttr

    attr = MapCreateAttr(
        map_type=mtype,
        key_size=key_size,
        value_size=value_size,
        max_entries=max_entries,
        map_flags=flags,
        btf_fd=btf_fd,
        btf_key_type_id=key_id,
        btf_value_type_id=value_id,
    )
    return bpf(Cmd.MAP_CREATE, attr)


def ld_imm64(dst: int, value: int) -> bytes:
    """``dst = value ll`` (a 64-bit immediate in two slots)."""
    value &= (1 << 64) - 1
    low, high = value & 0xFFFFFFFF, value >> 32
    return insn(0x18, dst, imm=low - (1 << 32) if low >= 1 << 31 else low) + insn(
        0, imm=high - (1 << 32) if high >= 1 << 31 else high
    )
