"""Split BTF (a kernel module's BTF on vmlinux): ids and string offsets continue the base's.

This kernel boots with ``nomodule``, so /sys/kernel/btf holds no module BTF: the tests build
split blobs with the builder, by hand (the layout pahole writes), and on the real vmlinux.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from ebpf import btf
from ebpf.btf.cdump import dump_c
from ebpf.btf.pretty import dump_raw
from ebpf.errors import BTFError

VMLINUX = Path("/sys/kernel/btf/vmlinux")
S = btf.IntEncoding.SIGNED


@pytest.fixture
def base() -> btf.Spec:
    fresh = btf.Spec.build(
        [
            btf.Int("int", 4, S, bits=32),  # 1
            btf.Struct("list_head", 16, (btf.Member("next", 3, 0), btf.Member("prev", 3, 64))),  # 2
            btf.Pointer(2),  # 3
        ]
    )
    return btf.Spec.from_bytes(fresh.to_bytes())


def module(base: btf.Spec) -> btf.Spec:
    return btf.Spec.build(
        [
            btf.Struct("mod_dev", 24, (btf.Member("list", 2, 0), btf.Member("id", 1, 128))),  # 4
            btf.Pointer(4),  # 5
            btf.FuncProto(1, (btf.FuncParam("dev", 5),)),  # 6
            btf.Func("mod_probe", 6, btf.FuncLinkage.GLOBAL),  # 7
        ],
        base=base,
    )


def test_ids_continue_the_base(base: btf.Spec) -> None:
    mod = module(base)
    assert mod.first_id == 4 == len(base)
    assert mod.base is base
    assert isinstance(mod[2], btf.Struct) and mod[2].name == "list_head"  # base ids resolve
    assert mod.find("mod_dev", btf.Struct).members[0].type == 2
    assert mod.sizeof(5) == 8 and mod.sizeof(4) == 24
    assert repr(mod) == "Spec(4 types on a base of 3, little)"


def test_round_trip(base: btf.Spec) -> None:
    mod = module(base)
    raw = mod.to_bytes()
    again = btf.Spec.from_bytes(raw, base=base)
    assert again == mod
    assert again.to_bytes() == raw
    assert btf.Spec.from_bytes(mod.to_bytes(byteorder="big"), base=base) == mod


def test_layout_of_the_blob(base: btf.Spec) -> None:
    """Only the module's types are encoded; names already in the base reuse its offsets."""
    mod = module(base)
    raw = mod.to_bytes()
    magic, _, _, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<HBBIIIII", raw)
    assert (magic, hdr_len, type_off) == (0xEB9F, 24, 0)
    assert base.strings is not None
    strings = raw[hdr_len + str_off : hdr_len + str_off + str_len]
    # the split section starts empty (no leading NUL, as libbpf writes it) and holds only new names
    assert strings == b"mod_dev\0list\0id\0dev\0mod_probe\0"
    first_name_off = struct.unpack_from("<I", raw, hdr_len)[0]
    assert first_name_off == len(base.strings)  # offsets continue after the base's strings
    list_name_off = struct.unpack_from("<I", raw, hdr_len + 12)[0]
    assert list_name_off == len(base.strings) + len(b"mod_dev\0")
    # the 'id' member: new; 'next'? not used. The base's "int" name would be reused:
    reuse = btf.Spec.build([btf.Typedef("int", 1)], base=base).to_bytes()
    assert struct.unpack_from("<I", reuse, 24)[0] == base.strings.offset_of("int")
    assert len(raw) == hdr_len + type_len + str_len


def test_hand_made_blob_with_a_leading_nul(base: btf.Spec) -> None:
    """pahole's module BTF starts its strings with a NUL too; both forms parse and re-encode."""
    assert base.strings is not None
    start = len(base.strings)
    types = struct.pack("<III", start + 1, 8 << 24, 1)  # [4] TYPEDEF 'myint' -> int
    strings = b"\0myint\0"
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    raw = header + types + strings
    mod = btf.Spec.from_bytes(raw, base=base)
    assert mod[4] == btf.Typedef("myint", 1)
    assert mod.to_bytes() == raw


def test_errors(base: btf.Spec) -> None:
    mod = module(base)
    raw = mod.to_bytes()
    with pytest.raises(BTFError, match="does not start with an empty string"):
        btf.Spec.from_bytes(raw)  # without its base, a split blob is not valid BTF
    with pytest.raises(BTFError, match="beyond the table"):
        btf.Spec.build([btf.Pointer(99)], base=base)
    with pytest.raises(BTFError, match="must start with its base"):
        btf.Spec([btf.Void()], base=base)
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 12, 12, 0)
    with pytest.raises(BTFError, match="string offset"):
        btf.Spec.from_bytes(header + struct.pack("<III", 10_000, 8 << 24, 1), base=base)


def test_dumps(base: btf.Spec) -> None:
    mod = btf.Spec.from_bytes(module(base).to_bytes(), base=base)
    assert dump_raw(mod).splitlines()[0] == "[4] STRUCT 'mod_dev' size=24 vlen=2"
    header = dump_c(mod)
    assert "struct list_head {" in header  # the base types the module needs come along
    assert header.index("struct list_head {") < header.index("struct mod_dev {")


def test_on_vmlinux() -> None:
    if not VMLINUX.exists():
        pytest.skip(f"{VMLINUX} is absent")
    vmlinux = btf.Spec.from_file(VMLINUX)
    skb = vmlinux.find_id("sk_buff", btf.Struct)
    mod = btf.Spec.build(
        [btf.Pointer(skb), btf.Struct("my_mod_ctx", 8, (btf.Member("skb", len(vmlinux), 0),))], base=vmlinux
    )
    raw = mod.to_bytes()
    again = btf.Spec.from_bytes(raw, base=vmlinux)
    assert again.first_id == len(vmlinux)
    assert again.types[len(vmlinux) + 1] == btf.Struct("my_mod_ctx", 8, (btf.Member("skb", len(vmlinux), 0),))
    assert again.to_bytes() == raw
    assert len(raw) < 100  # only the module's two types and its new strings


def test_on_the_kernel_layer_s_lazy_vmlinux() -> None:
    """ebpf.kernel.btf.vmlinux_spec() is a lazily decoded Spec: it serves as a base too."""
    if not VMLINUX.exists():
        pytest.skip(f"{VMLINUX} is absent")
    from ebpf.kernel.btf import vmlinux_spec

    lazy = vmlinux_spec()
    task = lazy.find_id("task_struct", btf.Struct)
    mod = btf.Spec.build([btf.Pointer(task), btf.Typedef("task_ptr", len(lazy))], base=lazy)
    again = btf.Spec.from_bytes(mod.to_bytes(), base=lazy)
    assert again.types[len(lazy) + 1] == btf.Typedef("task_ptr", len(lazy))
    assert again.sizeof(len(lazy) + 1) == 8


def test_alignment_counts_bitfields_like_libbpf() -> None:
    ulong = btf.Int("long unsigned int", 8, bits=64)
    spec = btf.Spec.build([ulong, btf.Struct("b", 8, (btf.Member("x", 1, 0, 3),), kind_flag=True)])
    assert spec.alignof(2) == 8


def test_dumps_equal_bpftool_with_a_base(tmp_path: Path) -> None:
    """``bpftool btf dump file MOD -B vmlinux [format c]``: the same listing; the same header
    (base types included, as bpftool writes it) up to the 1-byte enums of test_cdump."""
    bpftool = shutil.which("bpftool")
    if bpftool is None or not VMLINUX.exists():
        pytest.skip("needs bpftool and /sys/kernel/btf/vmlinux")
    vmlinux = btf.Spec.from_file(VMLINUX)
    n = len(vmlinux)
    skb = vmlinux.find_id("sk_buff", btf.Struct)
    u32 = vmlinux.find_id("u32", btf.Typedef)
    mod = btf.Spec.build(
        [
            btf.Pointer(skb),
            btf.Struct("my_mod_ctx", 16, (btf.Member("skb", n, 0), btf.Member("cnt", u32, 64))),
            btf.Typedef("my_ctx_t", n + 1),
        ],
        base=vmlinux,
    )
    path = tmp_path / "mod.btf"
    path.write_bytes(mod.to_bytes())
    again = btf.Spec.from_file(path, base=vmlinux)

    def run(*args: str) -> str:
        return subprocess.run(
            [bpftool, "btf", "dump", "file", str(path), "-B", str(VMLINUX), *args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    assert dump_raw(again) == run()
    theirs = run("format", "c").splitlines()
    ours = dump_c(again).splitlines()
    assert len(ours) == len(theirs)
    differ = [(a, b) for a, b in zip(ours, theirs, strict=True) if a != b]
    assert all(a == "} __attribute__((mode(byte)));" and b == "};" for a, b in differ)
    own = dump_c(again, ids=range(again.first_id, len(again)))
    assert "typedef struct my_mod_ctx my_ctx_t;" in own and own.count("\n") < 100
