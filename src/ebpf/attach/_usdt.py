"""USDT probes: SystemTap SDT notes, their argument strings, and libbpf's ``usdt.bpf.h`` spec.

Above the kernel line; pure file reading and byte packing (pyelftools).

Rule 1 (notes): each ``NT_STAPSDT`` (type 3) note of owner ``stapsdt`` in ``.note.stapsdt``
holds ``pc``, ``base`` and ``semaphore`` (address-sized), then ``provider\\0name\\0args\\0``.
When the file has a ``.stapsdt.base`` section, addresses are shifted by
``sh_addr(.stapsdt.base) - base`` (prelink may have moved the file). A zero semaphore means
the probe has none.

Rule 2 (arguments, x86-64): ``SIZE@OP`` per argument, space separated; SIZE is 1, 2, 4 or 8,
negative for signed; OP is ``%reg`` (REG), ``OFF(%reg)`` (REG_DEREF) or ``$IMM`` (CONST).

Rule 3 (spec encoding, libbpf ``usdt.bpf.h``): ``struct __bpf_usdt_spec`` is 12 argument
specs of 16 bytes ``{u64 val_off; u32 arg_type (low byte); s16 reg_off; u8 arg_signed;
s8 arg_bitshift}``, then ``u64 usdt_cookie`` and ``s16 arg_cnt`` (208 bytes). The BPF side
finds its spec by ``bpf_get_attach_cookie()`` = spec id in ``__bpf_usdt_specs``.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from enum import IntEnum

from ebpf.errors import ELFError

__all__ = [
    "MAX_ARGS",
    "SPEC_SIZE",
    "ArgSpec",
    "ArgType",
    "Note",
    "encode_spec",
    "parse_args",
    "read_notes",
]

MAX_ARGS = 12  # BPF_USDT_MAX_ARG_CNT
SPEC_SIZE = 208  # sizeof(struct __bpf_usdt_spec)
_NT_STAPSDT = 3


class ArgType(IntEnum):
    """``enum __bpf_usdt_arg_type``."""

    CONST = 0  # BPF_USDT_ARG_CONST
    REG = 1  # BPF_USDT_ARG_REG
    REG_DEREF = 2  # BPF_USDT_ARG_REG_DEREF


# offsetof(struct pt_regs, X) on x86-64 (arch/x86/include/asm/ptrace.h), by every register name.
_X86_64_REGS: dict[str, int] = {}
for _names, _off in (
    (("r15", "r15d", "r15w", "r15b"), 0),
    (("r14", "r14d", "r14w", "r14b"), 8),
    (("r13", "r13d", "r13w", "r13b"), 16),
    (("r12", "r12d", "r12w", "r12b"), 24),
    (("rbp", "ebp", "bp", "bpl"), 32),
    (("rbx", "ebx", "bx", "bl", "bh"), 40),
    (("r11", "r11d", "r11w", "r11b"), 48),
    (("r10", "r10d", "r10w", "r10b"), 56),
    (("r9", "r9d", "r9w", "r9b"), 64),
    (("r8", "r8d", "r8w", "r8b"), 72),
    (("rax", "eax", "ax", "al", "ah"), 80),
    (("rcx", "ecx", "cx", "cl", "ch"), 88),
    (("rdx", "edx", "dx", "dl", "dh"), 96),
    (("rsi", "esi", "si", "sil"), 104),
    (("rdi", "edi", "di", "dil"), 112),
    (("rip", "eip", "ip"), 128),
    (("rsp", "esp", "sp", "spl"), 152),
):
    for _name in _names:
        _X86_64_REGS[_name] = _off


@dataclass(frozen=True, slots=True)
class ArgSpec:
    """One USDT argument as libbpf's BPF side reads it."""

    type: ArgType
    val_off: int  # CONST: the value; REG_DEREF: the offset added to the register
    reg_off: int  # offsetof(struct pt_regs, reg); 0 for CONST
    size: int  # bytes, 1/2/4/8
    signed: bool

    @property
    def bitshift(self) -> int:
        return 64 - self.size * 8


@dataclass(frozen=True, slots=True)
class Note:
    """One probe site from ``.note.stapsdt`` (addresses already adjusted for ``.stapsdt.base``)."""

    provider: str
    name: str
    pc: int  # virtual address of the probe's nop
    semaphore: int  # virtual address of the semaphore (0: none)
    args: str


_ARG = re.compile(
    r"^(?P<size>-?\d+)@(?:"
    r"\$(?P<imm>-?(?:0x[0-9a-fA-F]+|\d+))"
    r"|%(?P<reg>[a-z0-9]+)"
    r"|(?P<off>-?(?:0x[0-9a-fA-F]+|\d+))?\(%(?P<base>[a-z0-9]+)\)"
    r")$"
)


def parse_args(text: str, machine: str = "x86_64") -> tuple[ArgSpec, ...]:
    """Parse a note's argument string (``"8@%rbx -4@-20(%rbp) 4@$5"``) for x86-64.

    Raises:
        ELFError: an argument this parser does not understand (the message quotes it), an
            unknown register, or more than 12 arguments.
    """
    if machine not in ("x86_64", "EM_X86_64", "amd64"):
        raise ELFError(f"USDT arguments on {machine} are not supported (x86-64 only)")
    specs = []
    for item in text.split():
        m = _ARG.match(item)
        if m is None:
            raise ELFError(f"USDT argument {item!r} is not SIZE@%reg, SIZE@OFF(%reg) or SIZE@$IMM")
        size = int(m["size"])
        if abs(size) not in (1, 2, 4, 8):
            raise ELFError(f"USDT argument {item!r}: size {size} is not 1, 2, 4 or 8")
        signed = size < 0
        if m["imm"] is not None:
            specs.append(ArgSpec(ArgType.CONST, int(m["imm"], 0), 0, abs(size), signed))
            continue
        reg = m["reg"] or m["base"]
        if reg not in _X86_64_REGS:
            raise ELFError(f"USDT argument {item!r}: unknown register %{reg}")
        if m["reg"] is not None:
            specs.append(ArgSpec(ArgType.REG, 0, _X86_64_REGS[reg], abs(size), signed))
        else:
            off = int(m["off"], 0) if m["off"] else 0
            specs.append(ArgSpec(ArgType.REG_DEREF, off, _X86_64_REGS[reg], abs(size), signed))
    if len(specs) > MAX_ARGS:
        raise ELFError(f"USDT probe has {len(specs)} arguments; usdt.bpf.h supports {MAX_ARGS}")
    return tuple(specs)


def encode_spec(args: tuple[ArgSpec, ...], cookie: int = 0, byteorder: str = "little") -> bytes:
    """``struct __bpf_usdt_spec`` for ``args`` (see Rule 3); ``cookie`` is ``bpf_usdt_cookie()``."""
    end = "<" if byteorder == "little" else ">"
    out = bytearray(SPEC_SIZE)
    for i, arg in enumerate(args):
        val = arg.val_off & 0xFFFFFFFFFFFFFFFF
        struct.pack_into(
            f"{end}QIhBb", out, i * 16, val, int(arg.type), arg.reg_off, int(arg.signed), arg.bitshift
        )
    struct.pack_into(f"{end}Qh", out, MAX_ARGS * 16, cookie & 0xFFFFFFFFFFFFFFFF, len(args))
    return bytes(out)


def read_notes(path: str) -> tuple[Note, ...]:
    """Every USDT probe site of ELF file ``path``.

    Raises:
        ELFError: not an ELF file, or a malformed note.
    """
    from elftools.common.exceptions import ELFError as PyELFError
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        try:
            elf = ELFFile(f)
        except PyELFError as err:
            raise ELFError(f"not an ELF file: {err}", source=path) from None
        section = elf.get_section_by_name(".note.stapsdt")
        if section is None:
            return ()
        base_section = elf.get_section_by_name(".stapsdt.base")
        actual_base = int(base_section["sh_addr"]) if base_section is not None else None
        addr_size = elf.elfclass // 8
        end = "<" if elf.little_endian else ">"
        data = section.data()
    return _parse_notes(data, addr_size, end, actual_base, path)


def _parse_notes(
    data: bytes, addr_size: int, end: str, actual_base: int | None, path: str
) -> tuple[Note, ...]:
    notes = []
    pos = 0
    fmt = f"{end}{'Q' if addr_size == 8 else 'I'}"
    try:
        while pos + 12 <= len(data):
            namesz, descsz, ntype = struct.unpack_from(f"{end}III", data, pos)
            pos += 12
            owner = data[pos : pos + namesz].rstrip(b"\0")
            pos += (namesz + 3) & ~3
            desc = data[pos : pos + descsz]
            pos += (descsz + 3) & ~3
            if owner != b"stapsdt" or ntype != _NT_STAPSDT:
                continue
            pc = struct.unpack_from(fmt, desc, 0)[0]
            base = struct.unpack_from(fmt, desc, addr_size)[0]
            sema = struct.unpack_from(fmt, desc, 2 * addr_size)[0]
            strings = desc[3 * addr_size :].split(b"\0")
            if len(strings) < 3:
                raise ELFError("stapsdt note without provider, name and arguments", source=path)
            if actual_base is not None and base:
                shift = actual_base - base
                pc += shift
                if sema:
                    sema += shift
            notes.append(
                Note(
                    provider=strings[0].decode("utf-8", "replace"),
                    name=strings[1].decode("utf-8", "replace"),
                    pc=pc,
                    semaphore=sema,
                    args=strings[2].decode("utf-8", "replace"),
                )
            )
    except struct.error as err:
        raise ELFError(f"truncated stapsdt note: {err}", source=path, offset=pos) from None
    return tuple(notes)
