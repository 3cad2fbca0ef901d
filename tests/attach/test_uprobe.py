"""uprobes on a small C program built with gcc and on libc; USDT with semaphores, the libbpf spec."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from ebpf import attach
from ebpf.attach import LinkType, PerfEventType, _elfsym, _usdt
from ebpf.errors import ELFError, KeyNotFoundError, NotSupportedError
from ebpf.spec import AttachType, MapType, ProgramType

from ._util import ArrayMap, counter, links_of, load
from .conftest import run_probed as run

pytestmark = pytest.mark.kernel

DATA = Path(__file__).resolve().parent / "data"


def test_uprobe_by_symbol_and_offset(probed: Path) -> None:
    with (
        ArrayMap() as m,
        load(counter(m.fd, 0), ProgramType.KPROBE) as p0,
        load(counter(m.fd, 1), ProgramType.KPROBE) as p1,
    ):
        offset = _elfsym.resolve_symbol(str(probed), "target_add")
        with (
            attach.uprobe(p0, str(probed), "target_add", cookie=3) as by_name,
            attach.uprobe(p1, str(probed), offset=offset),
        ):
            run(probed, 5)
            info = by_name.info()
            assert info.type == LinkType.PERF_EVENT
            assert info.details["perf_event_type"] == PerfEventType.UPROBE
            assert info.details["file_name"] == str(probed)
            assert info.details["offset"] == offset
            assert info.details["cookie"] == 3
        assert (m[0], m[1]) == (5, 5)
        run(probed, 2)
        assert m[0] == 5
        assert links_of({p0.info().id, p1.info().id}) == []


def test_uretprobe(probed: Path) -> None:
    with ArrayMap() as m, load(counter(m.fd), ProgramType.KPROBE) as prog:
        with attach.uprobe(prog, str(probed), "target_add", retprobe=True) as link:
            run(probed, 4)
            assert link.info().details["perf_event_type"] == PerfEventType.URETPROBE
        assert m[0] == 4


def test_uprobe_in_shared_library_for_one_process() -> None:
    pid = os.getpid()
    with ArrayMap() as m, load(counter(m.fd, pid=pid), ProgramType.KPROBE) as prog:
        with attach.uprobe(prog, "libc.so.6", "getpid", pid=pid) as link:
            for _ in range(7):
                os.getpid()
            assert link.info().details["file_name"].endswith("libc.so.6")
        assert m[0] == 7


def test_uprobe_errors(probed: Path) -> None:
    with ArrayMap() as m, load(counter(m.fd), ProgramType.KPROBE) as prog:
        with pytest.raises(ELFError, match="no function 'no_such_function'"):
            attach.uprobe(prog, str(probed), "no_such_function")
        with pytest.raises(FileNotFoundError):
            attach.uprobe(prog, "/nonexistent/binary", "main")
        with pytest.raises(ELFError, match="not an ELF"):
            attach.uprobe(prog, str(DATA / "probed.c"), "main")


# A USDT program in the libbpf convention: bpf_usdt_arg(ctx, ARG) read through the spec that
# bpf_get_attach_cookie() names, summed into slot 0; slot 1 counts hits.
USDT_ARG = """
    r6 = r1
    call 174
    *(u32 *)(r10 - 4) = r0
    r1 = map_fd({specs}) ll
    r2 = r10
    r2 += -4
    call 1
    if r0 == 0 goto out
    r7 = r0
    r9 = *(u32 *)(r7 + {at} + 8)
    r9 &= 0xff
    if r9 == 0 goto constant
    r2 = *(u16 *)(r7 + {at} + 12)
    r3 = r6
    r3 += r2
    r1 = r10
    r1 += -16
    r2 = 8
    call 113
    if r0 != 0 goto out
    if r9 != 2 goto value
    r3 = *(u64 *)(r10 - 16)
    r1 = *(u64 *)(r7 + {at})
    r3 += r1
    r1 = r10
    r1 += -16
    r2 = 8
    call 112
    if r0 != 0 goto out
value:
    r8 = *(u64 *)(r10 - 16)
    goto apply
constant:
    r8 = *(u64 *)(r7 + {at})
apply:
    r1 = *(u8 *)(r7 + {at} + 15)
    r8 <<= r1
    r2 = *(u8 *)(r7 + {at} + 14)
    if r2 == 0 goto unsigned
    r8 s>>= r1
    goto store
unsigned:
    r8 >>= r1
store:
    *(u32 *)(r10 - 4) = 0
    r1 = map_fd({result}) ll
    r2 = r10
    r2 += -4
    call 1
    if r0 == 0 goto out
    lock *(u64 *)(r0 + 0) += r8
    *(u32 *)(r10 - 4) = 1
    r1 = map_fd({result}) ll
    r2 = r10
    r2 += -4
    call 1
    if r0 == 0 goto out
    r1 = 1
    lock *(u64 *)(r0 + 0) += r1
out:
    r0 = 0
    exit
"""


def usdt_arg_program(specs_fd: int, result_fd: int, arg: int) -> str:
    text = USDT_ARG.format(specs=specs_fd, result=result_fd, at=arg * 16)
    # the assembler wants one displacement: fold "+ A + B"
    import re

    return re.sub(r"\+ (\d+) \+ (\d+)\)", lambda m: f"+ {int(m[1]) + int(m[2])})", text)


@pytest.mark.parametrize(("arg", "expected"), [(0, sum(range(1000, 1005))), (1, 40 + 81 + 123 + 166 + 210)])
def test_usdt_arguments_and_semaphore(probed: Path, arg: int, expected: int) -> None:
    (note,) = _usdt.read_notes(str(probed))
    assert (note.provider, note.name) == ("ebpftest", "tick")
    assert note.semaphore != 0
    with (
        ArrayMap(max_entries=256, value_size=_usdt.SPEC_SIZE) as specs,
        ArrayMap() as result,
        load(usdt_arg_program(specs.fd, result.fd, arg), ProgramType.KPROBE) as prog,
    ):
        run(probed, 5)
        assert result[1] == 0  # semaphore is 0 while nothing is attached: the probe is skipped
        with attach.usdt(prog, str(probed), "ebpftest", "tick", specs_map=specs, cookie=99) as link:
            spec = specs.get_bytes(link.info().details["cookie"])
            assert spec == _usdt.encode_spec(_usdt.parse_args(note.args), 99)
            run(probed, 5)
        assert result[1] == 5
        assert result[0] == expected
        run(probed, 5)
        assert result[1] == 5
        assert links_of({prog.info().id}) == []


def test_usdt_in_debian_python() -> None:
    python = "/usr/bin/python3.11"
    if not Path(python).exists():
        pytest.skip(f"{python} (Debian's, built with USDT notes) is not installed")
    notes = {(n.provider, n.name): n for n in _usdt.read_notes(python)}
    gc_start = notes[("python", "gc__start")]
    assert gc_start.semaphore and _usdt.parse_args(gc_start.args)[0].type == _usdt.ArgType.REG_DEREF
    with (
        ArrayMap(max_entries=256, value_size=_usdt.SPEC_SIZE) as specs,
        ArrayMap() as result,
        load(usdt_arg_program(specs.fd, result.fd, 0), ProgramType.KPROBE) as prog,
    ):
        with attach.usdt(prog, python, "python", "gc__start", specs_map=specs):
            code = "import gc\ngc.disable()\nfor _ in range(100):\n    gc.collect(2)\n"
            subprocess.run([python, "-S", "-c", code], check=True, timeout=30)
        count, total = result[1], result[0]
        # 100 explicit full collections (generation 2, read from the stack through the spec)
        # plus a few automatic ones at start-up and exit, of generation 0 to 2
        assert 100 <= count <= 130
        assert 200 <= total <= 2 * count
        with pytest.raises(ELFError, match="no USDT probe python:nope"):
            attach.usdt(prog, python, "python", "nope")


def test_usdt_argument_parsing() -> None:
    specs = _usdt.parse_args("-4@%eax 8@-16(%rbp) 2@$7 1@(%rsp)")
    assert [(s.type, s.val_off, s.reg_off, s.size, s.signed) for s in specs] == [
        (_usdt.ArgType.REG, 0, 80, 4, True),
        (_usdt.ArgType.REG_DEREF, -16, 32, 8, False),
        (_usdt.ArgType.CONST, 7, 0, 2, False),
        (_usdt.ArgType.REG_DEREF, 0, 152, 1, False),
    ]
    encoded = _usdt.encode_spec(specs, cookie=5)
    assert len(encoded) == _usdt.SPEC_SIZE
    assert encoded[16:32] == (-16 & (2**64 - 1)).to_bytes(8, "little") + bytes([2, 0, 0, 0, 32, 0, 0, 0])
    assert encoded[192:202] == (5).to_bytes(8, "little") + (4).to_bytes(2, "little")
    for bad in ("3@%eax", "8@%xyz", "8@[rax]"):
        with pytest.raises(ELFError):
            _usdt.parse_args(bad)


def test_usdt_ip_map_for_kernels_without_cookies() -> None:
    python = "/usr/bin/python3.11"
    if not Path(python).exists() or _elfsym.elf_type(python) != "ET_EXEC":
        pytest.skip(f"needs Debian's non-PIE {python}")
    (site,) = [n for n in _usdt.read_notes(python) if (n.provider, n.name) == ("python", "gc__start")]
    with (
        ArrayMap(max_entries=256, value_size=_usdt.SPEC_SIZE) as specs,
        ArrayMap(max_entries=64, key_size=8, value_size=4, map_type=MapType.HASH) as ips,
        load(counter(specs.fd), ProgramType.KPROBE) as prog,
    ):
        with attach.usdt(prog, python, "python", "gc__start", specs_map=specs, ip_map=ips) as link:
            assert link.ips == (site.pc,)  # a non-PIE executable runs at its link address
            spec_id = link.info().details["cookie"]
            assert int.from_bytes(ips.get_bytes(site.pc), "little") == spec_id
        with pytest.raises(KeyNotFoundError):
            ips.get_bytes(site.pc)  # removed on close


def test_usdt_ip_map_in_a_pie_needs_the_process(probed: Path) -> None:
    (site,) = _usdt.read_notes(str(probed))
    with (
        ArrayMap(max_entries=256, value_size=_usdt.SPEC_SIZE) as specs,
        ArrayMap(max_entries=64, key_size=8, value_size=4, map_type=MapType.HASH) as ips,
        load(counter(specs.fd), ProgramType.KPROBE) as prog,
    ):
        with pytest.raises(NotSupportedError, match="position independent"):
            attach.usdt(prog, str(probed), "ebpftest", "tick", specs_map=specs, ip_map=ips)
        child = subprocess.Popen([str(probed), "1", "3000"])
        try:
            time.sleep(0.2)  # let the loader map it
            base = min(
                int(line.split("-")[0], 16)
                for line in Path(f"/proc/{child.pid}/maps").read_text().splitlines()
                if line.endswith(str(probed))
            )
            with attach.usdt(
                prog, str(probed), "ebpftest", "tick", specs_map=specs, ip_map=ips, pid=child.pid
            ) as link:
                assert link.ips == (base + site.pc,)  # PIE: linked at 0, loaded at base
        finally:
            child.kill()
            child.wait()


def test_uprobe_through_tracefs_uprobe_events(probed: Path) -> None:
    """The tracefs fallback (kernels without the uprobe PMU), shared with legacy kprobes."""
    from ebpf.attach import _tracefs
    from ebpf.attach.uprobe import _uprobe_at

    events = Path(_tracefs.tracefs_root()) / "uprobe_events"
    if not events.exists():
        pytest.skip("no uprobe_events in tracefs")
    offset = _elfsym.resolve_symbol(str(probed), "target_add")
    with ArrayMap() as m, load(counter(m.fd), ProgramType.KPROBE) as prog:
        link = _uprobe_at(
            prog, str(probed), offset, pid=-1, retprobe=False, cookie=0, label="legacy", legacy=True
        )
        with link:
            mine = [line for line in events.read_text().splitlines() if f"ebpf_{os.getpid()}_" in line]
            assert len(mine) == 1 and f"{probed}:{offset:#018x}" in mine[0]
            run(probed, 3)
            assert link.info().details["perf_event_type"] == PerfEventType.UPROBE
        assert m[0] == 3
        assert not [line for line in events.read_text().splitlines() if f"ebpf_{os.getpid()}_" in line]


def test_uprobe_multi_one_link_many_places(probed: Path) -> None:
    with (
        ArrayMap() as m,
        load(counter(m.fd), ProgramType.KPROBE, attach_type=AttachType.TRACE_UPROBE_MULTI) as prog,
    ):
        with attach.uprobe_multi(prog, str(probed), ["target_add", "main"], cookies=[1, 2]) as link:
            run(probed, 5)
            info = link.info()
            assert info.type == LinkType.UPROBE_MULTI
            assert (info.details["path"], info.details["count"], info.details["flags"]) == (str(probed), 2, 0)
        assert m[0] == 5 + 1  # five calls of target_add, one of main
        with attach.uprobe_multi(prog, str(probed), ["target_add"], retprobe=True) as link:
            run(probed, 2)
            assert link.info().details["flags"] == 1  # BPF_F_UPROBE_MULTI_RETURN
        assert m[0] == 6 + 2
        with pytest.raises(ValueError, match="1 cookies for 2 places"):
            attach.uprobe_multi(prog, str(probed), ["target_add", "main"], cookies=[1])
        assert links_of({prog.info().id}) == []
