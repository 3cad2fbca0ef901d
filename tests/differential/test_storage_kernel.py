"""Stack and local-storage helpers: the same programs in the kernel and in the user-space runtime.

Raw tracepoint programs run with ``BPF_PROG_TEST_RUN`` in the kernel (the current task is the
test's thread, the kernel stack is the test-run call path) and with both engines of the
runtime. The runtime has no kernel stack: it gets the frames the kernel itself recorded
(read back from the kernel's map or buffer), and must then give the same stack ids, the
same error codes and the same map contents. Task storage is reached through
``bpf_get_current_task_btf()``; the runtime's current task is given a stand-in object for
the test's thread, and user space reads both maps through a pidfd of this process.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from ebpf import btf
from ebpf.btf.types import IntEncoding
from ebpf.helpers import HelperId
from ebpf.isa.asm import assemble
from ebpf.maps import Map, MapFlags, create
from ebpf.maps.stacktrace import (
    BPF_F_FAST_STACK_CMP,
    BPF_F_REUSE_STACKID,
    BPF_F_USER_BUILD_ID,
    BPF_F_USER_STACK,
    BPF_STACK_BUILD_ID_IP,
)
from ebpf.maps.storage import Owner, owners
from ebpf.runtime import ContextInput
from ebpf.spec import MapSpec, MapType, ProgramType
from ebpf.vm import ENGINES
from ebpf.vm._context_trace import RawTracepointInput
from ebpf.vm._helpers_storage import current_task_object
from ebpf.vm.helpers import RunEnv, runtime_helpers
from ebpf.vm.memory import HostBuffer

pytestmark = pytest.mark.kernel

ENGINE_NAMES = ("interp", "py")
BTF = btf.Spec.build(
    [btf.Int("int", 4, IntEncoding.SIGNED, bits=32), btf.Int("long", 8, IntEncoding.SIGNED, bits=64)]
)
CTX = struct.pack("<QQ", 1, 2)


def s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def kernel_run(text: str, prog_type: ProgramType = ProgramType.RAW_TRACEPOINT) -> int:
    with kernel_prog(text, prog_type) as run:
        return run(CTX)


BPF_F_SLEEPABLE = 1 << 4


@contextmanager
def kernel_prog(
    text: str, prog_type: ProgramType = ProgramType.RAW_TRACEPOINT
) -> Iterator[Callable[[bytes], int]]:
    """Load ``text`` once; test-run it on ``ctx_in`` (one program: one code address in the stack).
    SYSCALL programs are loaded sleepable, as the kernel requires."""
    from ebpf.kernel.program import Program

    flags = BPF_F_SLEEPABLE if prog_type == ProgramType.SYSCALL else 0
    with Program.load(assemble(text), prog_type, prog_flags=flags) as prog:
        yield lambda ctx: s32(prog.test_run(ctx_in=ctx).retval)


def args(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}Q", *values)


class Runtime:
    """A RunEnv whose current task is this thread, with a stand-in task object and given stacks."""

    def __init__(self, engine: str, kernel_stack: tuple[int, ...] = ()) -> None:
        self.engine = engine
        self.env = RunEnv(program_type=ProgramType.RAW_TRACEPOINT)
        current_task_object(self.env)
        assert self.env.task is not None and self.env.task.pid == threading.get_native_id()
        self.env.task = dataclasses.replace(self.env.task, kernel_stack=kernel_stack)
        self.helpers = runtime_helpers()

    def add(self, m: Map) -> int:
        return self.env.add_map(m)

    def run(self, text: str, ctx: bytes = CTX, prog_type: ProgramType = ProgramType.RAW_TRACEPOINT) -> int:
        program = assemble(text)
        code = self.env.memory.map_buffer("code", HostBuffer(len(program.encode()) + 8), writable=False)
        eng = ENGINES[self.engine](
            program, helpers=self.helpers, memory=self.env.memory, code_base=code.start
        )
        inp = ContextInput(ctx) if prog_type == ProgramType.SYSCALL else RawTracepointInput.from_test_run(ctx)
        mapped = inp.map(self.env.memory)
        self.env.begin_run(context=mapped)
        try:
            r0, _ = eng.execute(mapped, self.env, eng.max_insns)
        finally:
            for region in mapped.regions:
                self.env.memory.unmap(region)
            self.env.memory.unmap(code)
        return s32(r0)


@contextmanager
def kernel_map(spec: MapSpec) -> Iterator[object]:
    from ebpf.kernel.btf import KernelBTF
    from ebpf.kernel.map import Map as KernelMap

    if spec.btf is None:
        with KernelMap.create(spec) as m:
            yield m
        return
    with KernelBTF.load(spec.btf) as kbtf, KernelMap.create(spec, btf=kbtf) as m:
        yield m


# --- task storage -----------------------------------------------------------------------------------

TASK_STORAGE = MapSpec("ts", MapType.TASK_STORAGE, 4, 8, 0, MapFlags.NO_PREALLOC, key_type_id=1, value_type_id=2,
                       btf=BTF)  # fmt: skip


def task_get(m: str, flags: int, *, init: int | None = None, null_task: bool = False) -> str:
    """get storage of the current task (or NULL); increment it; return it (or 0xffff for NULL)."""
    value = "r3 = 0"
    if init is not None:
        value = f"r1 = {init}\n*(u64 *)(r10 - 8) = r1\nr3 = r10\nr3 += -8"
    task = "r2 = 0" if null_task else f"call {HelperId.GET_CURRENT_TASK_BTF}\nr2 = r0"
    return f"""
        {task}
        {value}
        r1 = {m} ll
        r4 = {flags}
        call {HelperId.TASK_STORAGE_GET}
        if r0 == 0 goto null
        r1 = *(u64 *)(r0 + 0)
        r1 += 1
        *(u64 *)(r0 + 0) = r1
        r0 = r1
        exit
    null:
        r0 = 0xffff
        exit
    """


def task_delete(m: str) -> str:
    return f"""
        call {HelperId.GET_CURRENT_TASK_BTF}
        r2 = r0
        r1 = {m} ll
        call {HelperId.TASK_STORAGE_DELETE}
        exit
    """


TASK_STEPS = [
    ("get", 0, None, False),  # no storage, no CREATE: NULL
    ("get", 2, None, False),  # an unknown flag: NULL
    ("get", 1, None, True),  # NULL task: NULL
    ("get", 1, None, False),  # created zeroed, incremented: 1
    ("get", 1, 40, False),  # exists: the init value is ignored
    ("get", 0, None, False),
    ("delete",),
    ("delete",),  # -ENOENT
    ("get", 1, 40, False),  # created from the init value: 41
]


def _task_program(step: tuple[object, ...], ref: str) -> str:
    if step[0] == "delete":
        return task_delete(ref)
    _, flags, init, null = step
    assert isinstance(flags, int) and isinstance(null, bool)
    return task_get(ref, flags, init=init if isinstance(init, int) else None, null_task=null)


def _pidfd_key() -> tuple[int, bytes]:
    fd = os.pidfd_open(os.getpid())
    return fd, struct.pack("<i", fd)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("prog_type", [ProgramType.RAW_TRACEPOINT, ProgramType.SYSCALL], ids=lambda t: t.name)
def test_task_storage_of_the_current_task(engine: str, prog_type: ProgramType) -> None:
    if threading.get_native_id() != os.getpid():
        pytest.skip("the pidfd names the main thread; this test runs in another one")
    fd, key = _pidfd_key()
    try:
        with kernel_map(TASK_STORAGE) as kmap:
            ref = f"map_fd({kmap.fd})"  # type: ignore[attr-defined]
            want = [kernel_run(_task_program(step, ref), prog_type) for step in TASK_STEPS]
            kernel_value = kmap.lookup(key)  # type: ignore[attr-defined]
        rt = Runtime(engine)
        with create(TASK_STORAGE, rt.env.memory) as ours:
            handle = rt.add(ours)
            got = [rt.run(_task_program(step, str(handle)), CTX, prog_type) for step in TASK_STEPS]
            assert got == want
            assert want[:4] == [0xFFFF, 0xFFFF, 0xFFFF, 1] and want[6:] == [0, -errno.ENOENT, 41]
            assert ours.lookup(key) == kernel_value == struct.pack("<q", 41)
    finally:
        os.close(fd)


# --- bpf_get_stackid ----------------------------------------------------------------------------------


def stackid(m: str) -> str:
    """bpf_get_stackid(ctx, map, flags) with ``flags`` the first raw tracepoint argument."""
    return f"""
        r3 = *(u64 *)(r1 + 0)
        r2 = {m} ll
        call {HelperId.GET_STACKID}
        exit
    """


def _stack_spec(max_entries: int, *, build_id: bool = False) -> MapSpec:
    if build_id:
        return MapSpec("stacks", MapType.STACK_TRACE, 4, 32 * 64, max_entries, MapFlags.STACK_BUILD_ID)
    return MapSpec("stacks", MapType.STACK_TRACE, 4, 8 * 127, max_entries)


STACKID_FLAGS = [
    0,
    0,  # the same stack: the same id
    1,  # one frame fewer: another stack in the only bucket
    1 | BPF_F_FAST_STACK_CMP,
    1 | BPF_F_REUSE_STACKID,  # replaces it if an element is free (else -ENOMEM)
    0,
    0 | BPF_F_FAST_STACK_CMP | BPF_F_REUSE_STACKID,
    255,  # skips every frame
    1 << 11,  # not a get_stackid flag
    1 << 40,
]


def _frames(value: bytes, *, build_id: bool = False) -> tuple[int, ...]:
    """The addresses in a stack map value (8-byte ips, or the ip of each build-id entry)."""
    if build_id:
        entries = struct.iter_unpack("<i20sQ", value)
        return tuple(ip for status, _, ip in entries if status == BPF_STACK_BUILD_ID_IP)
    ips = [v for (v,) in struct.iter_unpack("<Q", value)]
    while ips and ips[-1] == 0:
        ips.pop()
    return tuple(ips)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("build_id", [False, True], ids=["ips", "build_id"])
@pytest.mark.parametrize("max_entries", [1, 2])
def test_get_stackid_as_the_kernel(engine: str, max_entries: int, build_id: bool) -> None:
    """Few buckets: the same stack keeps its id, another is -EEXIST unless REUSE (-ENOMEM with
    no free element; build-id maps take the element before comparing); skipping every frame
    -EFAULT; bad flags -EINVAL. Build-id entries of kernel frames hold the address."""
    spec = _stack_spec(max_entries, build_id=build_id)
    with kernel_map(spec) as kmap, kernel_prog(stackid(f"map_fd({kmap.fd})")) as run:  # type: ignore[attr-defined]
        first = struct.pack("<I", run(args(0)))
        frames = _frames(kmap.lookup(first), build_id=build_id)  # type: ignore[attr-defined]
        kmap.delete(first)  # type: ignore[attr-defined]
        want = [run(args(f)) for f in STACKID_FLAGS]
        kernel_items = sorted(kmap.items())  # type: ignore[attr-defined]
    assert len(frames) > 2
    rt = Runtime(engine, kernel_stack=frames)
    with create(spec, rt.env.memory) as ours:
        text = stackid(str(rt.add(ours)))
        got = [rt.run(text, args(f)) for f in STACKID_FLAGS]
        assert got == want
        assert -errno.EFAULT in got and -errno.EINVAL in got
        if max_entries == 1:  # one bucket: the stacks collide, and no element is spare
            assert -errno.ENOMEM in got
        assert sorted(ours.items()) == kernel_items


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_stack_ids_are_the_kernels(engine: str) -> None:
    """1024 buckets: the stack id of each skip is the kernel's (jhash2 of the frames)."""
    with kernel_map(_stack_spec(1024)) as kmap, kernel_prog(stackid(f"map_fd({kmap.fd})")) as run:  # type: ignore[attr-defined]
        want = [run(args(skip)) for skip in range(4)]
        frames = _frames(kmap.lookup(struct.pack("<I", want[0])))  # type: ignore[attr-defined]
        kernel_items = sorted(kmap.items())  # type: ignore[attr-defined]
        kernel_next = kmap.get_next_key(None)  # type: ignore[attr-defined]
    rt = Runtime(engine, kernel_stack=frames)
    with create(_stack_spec(1024), rt.env.memory) as ours:
        text = stackid(str(rt.add(ours)))
        got = [rt.run(text, args(skip)) for skip in range(4)]
        assert got == want and any(i >= 0 for i in got)  # (4 stacks in 1024 buckets may collide)
        assert sorted(ours.items()) == kernel_items
        assert ours.get_next_key(None) == kernel_next


# --- bpf_get_stack ------------------------------------------------------------------------------------

BUF = 8 * 40


def get_stack(m: str) -> str:
    """get_stack(ctx, &array[0], size, flags) with size and flags the raw tracepoint arguments."""
    return f"""
        r6 = r1
        r1 = 0
        *(u32 *)(r10 - 4) = r1
        r1 = {m} ll
        r2 = r10
        r2 += -4
        call {HelperId.MAP_LOOKUP_ELEM}
        if r0 == 0 goto out
        r1 = r6
        r2 = r0
        r3 = *(u64 *)(r6 + 0)
        if r3 > {BUF} goto out
        r4 = *(u64 *)(r6 + 8)
        call {HelperId.GET_STACK}
        exit
    out:
        r0 = 0x7777
        exit
    """


def _array() -> MapSpec:
    return MapSpec("buf", MapType.ARRAY, 4, BUF, 1)


def _stack_cases(depth: int) -> list[tuple[int, int]]:
    return [
        (BUF, 0),
        (BUF, 3),
        (16, 1),  # truncated to 2 frames
        (BUF, depth),  # skips every frame there is
        (BUF, depth + 1),
        (BUF, 255),
        (12, 0),  # not a whole number of frames
        (BUF, BPF_F_USER_BUILD_ID),  # build ids need the user stack
        (BUF, BPF_F_FAST_STACK_CMP),  # not a get_stack flag
        (0, 0),
        (BUF - 8, 2),
    ]


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_get_stack_as_the_kernel(engine: str) -> None:
    marker = b"\xaa" * BUF
    zero = struct.pack("<I", 0)
    with kernel_map(_array()) as kbuf, kernel_prog(get_stack(f"map_fd({kbuf.fd})")) as run:  # type: ignore[attr-defined]
        n = run(args(BUF, 0))
        assert n > 16 and n % 8 == 0
        frames = _frames(kbuf.lookup(zero))  # type: ignore[attr-defined]
        assert len(frames) * 8 == n
        want = []
        for size, flags in _stack_cases(len(frames)):
            kbuf.update(zero, marker)  # type: ignore[attr-defined]
            want.append((run(args(size, flags)), kbuf.lookup(zero)))  # type: ignore[attr-defined]
    rt = Runtime(engine, kernel_stack=frames)
    with create(_array(), rt.env.memory) as ours:
        text = get_stack(str(rt.add(ours)))
        got = []
        for size, flags in _stack_cases(len(frames)):
            ours.update(zero, marker)
            got.append((rt.run(text, args(size, flags)), ours.lookup(zero)))
    assert [g[0] for g in got] == [w[0] for w in want]
    assert got == want


# --- the realistic object: exec_trace.o -----------------------------------------------------------


def test_exec_trace_runs_in_the_runtime() -> None:
    """exec_trace.o (STACK_TRACE + TASK_STORAGE) runs in the runtime: on_switch keeps per-task
    timestamps in task storage of the tasks it is given and adds off-CPU time; on_execve
    records -EFAULT as the stack id with no frames and a real id once frames are configured."""
    from pathlib import Path

    from ebpf.btf.types import Struct
    from ebpf.elf import load_collection_spec
    from ebpf.kernel.btf import vmlinux_spec
    from ebpf.maps.perf import PerfEventArrayMap
    from ebpf.maps.stacktrace import StackTraceMap
    from ebpf.maps.storage import TaskStorageMap
    from ebpf.runtime import Collection
    from ebpf.vm._context_trace import TracepointInput

    vmlinux = vmlinux_spec()
    spec = load_collection_spec(Path(__file__).parent.parent / "data" / "realistic" / "exec_trace.o")
    task_struct = vmlinux.find("task_struct", Struct)
    pid_offset = next(m.offset for m in task_struct.members if m.name == "pid") // 8
    with Collection(spec, engine="py", target_btf=vmlinux, deterministic=True) as coll:
        table = owners(coll.memory)
        tasks = {}
        for pid in (100, 200):
            tasks[pid] = table.new_object(Owner.task(pid), task_struct.size)
            coll.memory.write_bytes(tasks[pid] + pid_offset, struct.pack("<i", pid))
        on_switch = coll.programs["on_switch"]
        assert coll.env.clock is not None
        coll.env.clock.step_ns = 1000  # type: ignore[attr-defined]
        on_switch.run(RawTracepointInput((0, tasks[100], tasks[200])))  # 100 goes off the CPU
        on_switch.run(RawTracepointInput((0, tasks[200], tasks[100])))  # 100 comes back
        storage = coll.maps["switch_ts"]
        assert isinstance(storage, TaskStorageMap)
        assert set(storage.owners_with_storage()) == {Owner.task(100), Owner.task(200)}
        (key, value), *_ = coll.maps["offcpu_ns"].items()
        assert key == struct.pack("<I", 100) and struct.unpack("<Q", value)[0] == 1000

        fmt = Path("/sys/kernel/tracing/events/syscalls/sys_enter_execve/format")
        if not fmt.exists():
            pytest.skip("no tracefs format for syscalls/sys_enter_execve")
        record = TracepointInput.from_format(fmt.read_text(), {})
        events = coll.maps["exec_events"]
        stacks = coll.maps["stacks"]
        assert isinstance(events, PerfEventArrayMap) and isinstance(stacks, StackTraceMap)
        events.open_buffers()
        on_execve = coll.programs["on_execve"]
        on_execve.run(record)
        assert coll.env.task is not None
        coll.env.task = dataclasses.replace(
            coll.env.task, kernel_stack=(0xFFFFFFFF81000000, 0xFFFFFFFF81000100)
        )
        on_execve.run(record)
        samples = events.read(0)
        ids = [struct.unpack_from("<i", sample, 12)[0] for sample in samples]
        assert ids[0] == -errno.EFAULT and ids[1] >= 0
        assert stacks.lookup(struct.pack("<I", ids[1]))[:16] == struct.pack(
            "<2Q", 0xFFFFFFFF81000000, 0xFFFFFFFF81000100
        )


def get_task_stack(m: str) -> str:
    """get_task_stack(get_current_task_btf(), &array[0], size, flags), size and flags from ctx."""
    return f"""
        r6 = r1
        r1 = 0
        *(u32 *)(r10 - 4) = r1
        r1 = {m} ll
        r2 = r10
        r2 += -4
        call {HelperId.MAP_LOOKUP_ELEM}
        if r0 == 0 goto out
        r7 = r0
        call {HelperId.GET_CURRENT_TASK_BTF}
        r1 = r0
        r2 = r7
        r3 = *(u64 *)(r6 + 0)
        if r3 > {BUF} goto out
        r4 = *(u64 *)(r6 + 8)
        call {HelperId.GET_TASK_STACK}
        exit
    out:
        r0 = 0x7777
        exit
    """


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_get_task_stack_as_the_kernel(engine: str) -> None:
    """bpf_get_task_stack of the current task: the kernel's frames, sizes, skips and errors."""
    marker = b"\xaa" * BUF
    zero = struct.pack("<I", 0)
    with kernel_map(_array()) as kbuf, kernel_prog(get_task_stack(f"map_fd({kbuf.fd})")) as run:  # type: ignore[attr-defined]
        n = run(args(BUF, 0))
        frames = _frames(kbuf.lookup(zero))  # type: ignore[attr-defined]
        assert n == len(frames) * 8 > 16
        want = []
        for size, flags in _stack_cases(len(frames)):
            kbuf.update(zero, marker)  # type: ignore[attr-defined]
            want.append((run(args(size, flags)), kbuf.lookup(zero)))  # type: ignore[attr-defined]
    rt = Runtime(engine, kernel_stack=frames)
    with create(_array(), rt.env.memory) as ours:
        text = get_task_stack(str(rt.add(ours)))
        got = []
        for size, flags in _stack_cases(len(frames)):
            ours.update(zero, marker)
            got.append((rt.run(text, args(size, flags)), ours.lookup(zero)))
    assert got == want


# --- cgroup storage through task->cgroups->dfl_cgrp -----------------------------------------------


def _cgroup2_dir() -> str | None:
    """This process's cgroup v2 directory (its ``0::`` path under the cgroup2 mount)."""
    with open("/proc/self/cgroup") as f:
        path = next((line[3:].strip() for line in f if line.startswith("0::")), None)
    with open("/proc/self/mountinfo") as f:
        mount = next((line.split()[4] for line in f if " - cgroup2 " in line), None)
    if path is None or mount is None:
        return None
    return os.path.join(mount, path.lstrip("/"))


def cgrp_program(m: str, cgroups: int, dfl_cgrp: int, *, delete: bool = False) -> str:
    """cgrp_storage_get (CREATE, then increment) or _delete on the current task's v2 cgroup."""
    head = f"""
        call {HelperId.GET_CURRENT_TASK_BTF}
        r1 = *(u64 *)(r0 + {cgroups})
        r2 = *(u64 *)(r1 + {dfl_cgrp})
        r1 = {m} ll
    """
    if delete:
        return head + f"call {HelperId.CGRP_STORAGE_DELETE}\nexit"
    return (
        head
        + f"""
        r3 = 0
        r4 = 1
        call {HelperId.CGRP_STORAGE_GET}
        if r0 == 0 goto null
        r1 = *(u64 *)(r0 + 0)
        r1 += 1
        *(u64 *)(r0 + 0) = r1
        r0 = r1
        exit
    null:
        r0 = 0xffff
        exit
    """
    )


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_cgroup_storage_of_the_current_cgroup(engine: str) -> None:
    """The kernel and the runtime (given a task whose css_set points at a stand-in for this
    process's v2 cgroup) count in the same cgroup storage; user space reads it by the cgroup
    directory's fd in both."""
    from ebpf.btf.types import Struct
    from ebpf.kernel.btf import vmlinux_spec

    path = _cgroup2_dir()
    if path is None or not os.path.isdir(path):
        pytest.skip("no cgroup v2 directory for this process")
    vmlinux = vmlinux_spec()

    def field(struct_name: str, name: str) -> tuple[int, int]:
        s = vmlinux.find(struct_name, Struct)
        return next(m.offset // 8 for m in s.members if m.name == name), s.size

    cgroups, task_size = field("task_struct", "cgroups")
    dfl_cgrp, css_set_size = field("css_set", "dfl_cgrp")
    steps = [False, False, True, True, False]  # get, get, delete, delete, get
    spec = dataclasses.replace(TASK_STORAGE, name="cs", type=MapType.CGRP_STORAGE)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        key = struct.pack("<i", fd)
        with kernel_map(spec) as kmap:
            ref = f"map_fd({kmap.fd})"  # type: ignore[attr-defined]
            want = [kernel_run(cgrp_program(ref, cgroups, dfl_cgrp, delete=d)) for d in steps]
            kernel_value = kmap.lookup(key)  # type: ignore[attr-defined]
        rt = Runtime(engine)
        memory = rt.env.memory
        assert rt.env.task is not None
        table = owners(memory)
        task = table.new_object(Owner.task(rt.env.task.pid), task_size)
        rt.env.task = dataclasses.replace(rt.env.task, task=task)
        css_set = memory.map_buffer("css_set", HostBuffer(css_set_size)).start
        st = os.fstat(fd)
        cgroup = table.new_object(Owner.cgroup(st.st_dev, st.st_ino), 64)
        memory.store(task + cgroups, 8, css_set)
        memory.store(css_set + dfl_cgrp, 8, cgroup)
        with create(spec, memory) as ours:
            ref = str(rt.add(ours))
            got = [rt.run(cgrp_program(ref, cgroups, dfl_cgrp, delete=d)) for d in steps]
            assert got == want == [1, 2, 0, -errno.ENOENT, 1]
            assert ours.lookup(key) == kernel_value == struct.pack("<q", 1)
    finally:
        os.close(fd)


# --- user stacks with build ids ------------------------------------------------------------------

RAW = 8 * 16
IDS = 32 * 16


def user_stacks(m: str, stack_map: str | None) -> str:
    """In one run (one user stack): the raw user frames into array[0][0:RAW], then either the
    build-id entries into array[0][RAW:] (returns get_stack's result) or a stack id of the
    user stack in ``stack_map`` (returns it)."""
    second = (
        f"r1 = r6\nr2 = {stack_map} ll\nr3 = {BPF_F_USER_STACK}\ncall {HelperId.GET_STACKID}"
        if stack_map is not None
        else f"r1 = r6\nr2 = r7\nr2 += {RAW}\nr3 = {IDS}\nr4 = {BPF_F_USER_STACK | BPF_F_USER_BUILD_ID}\n"
        f"call {HelperId.GET_STACK}"
    )
    return f"""
        r6 = r1
        r1 = 0
        *(u32 *)(r10 - 4) = r1
        r1 = {m} ll
        r2 = r10
        r2 += -4
        call {HelperId.MAP_LOOKUP_ELEM}
        if r0 == 0 goto out
        r7 = r0
        r1 = r6
        r2 = r7
        r3 = {RAW}
        r4 = {BPF_F_USER_STACK}
        call {HelperId.GET_STACK}
        {second}
        exit
    out:
        r0 = 0x7777
        exit
    """


def _user_array() -> MapSpec:
    return MapSpec("ubuf", MapType.ARRAY, 4, RAW + IDS, 1)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_user_build_ids_as_the_kernel(engine: str) -> None:
    """bpf_get_stack(BPF_F_USER_STACK | BPF_F_USER_BUILD_ID) of this process: the runtime,
    given the kernel's raw user frames, resolves the same build ids and file offsets."""
    zero = struct.pack("<I", 0)
    with kernel_map(_user_array()) as kbuf, kernel_prog(user_stacks(f"map_fd({kbuf.fd})", None)) as run:  # type: ignore[attr-defined]
        want_ret = run(CTX)
        want = kbuf.lookup(zero)  # type: ignore[attr-defined]
    frames = _frames(want[:RAW])
    entries = [struct.unpack_from("<i20sQ", want, RAW + 32 * i) for i in range(len(frames))]
    if not any(status == 1 for status, _, _ in entries):
        pytest.skip("the kernel resolved no build id for this process's user stack")
    rt = Runtime(engine)
    assert rt.env.task is not None
    rt.env.task = dataclasses.replace(rt.env.task, user_stack=frames)
    with create(_user_array(), rt.env.memory) as ours:
        got_ret = rt.run(user_stacks(str(rt.add(ours)), None))
        assert (got_ret, ours.lookup(zero)) == (want_ret, want)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_user_stack_ids_in_a_build_id_map_as_the_kernel(engine: str) -> None:
    zero = struct.pack("<I", 0)
    spec = _stack_spec(8, build_id=True)
    with kernel_map(_user_array()) as kbuf, kernel_map(spec) as kstacks:
        text = user_stacks(f"map_fd({kbuf.fd})", f"map_fd({kstacks.fd})")  # type: ignore[attr-defined]
        with kernel_prog(text) as run:
            want_id = run(CTX)
        frames = _frames(kbuf.lookup(zero)[:RAW])  # type: ignore[attr-defined]
        kernel_items = sorted(kstacks.items())  # type: ignore[attr-defined]
    rt = Runtime(engine)
    assert rt.env.task is not None
    rt.env.task = dataclasses.replace(rt.env.task, user_stack=frames)
    with create(_user_array(), rt.env.memory) as ours, create(spec, rt.env.memory) as stacks:
        got_id = rt.run(user_stacks(str(rt.add(ours)), str(rt.add(stacks))))
        assert got_id == want_id
        assert sorted(stacks.items()) == kernel_items
