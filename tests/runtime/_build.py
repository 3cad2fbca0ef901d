"""Hand-built collection specs and minimal kernel-like helpers for the runtime tests."""

from __future__ import annotations

import errno

from ebpf.isa import assemble
from ebpf.isa.encoding import slot_offsets
from ebpf.isa.instruction import Instruction
from ebpf.isa.program import Program
from ebpf.runtime import MAX_TAIL_CALL_CNT, RunEnv
from ebpf.spec import MapSpec, MapType, ProgramSpec, ProgramType, Relocation, RelocKind
from ebpf.vm.helpers import HelperEnv, HelperRegistry
from ebpf.vm.interpreter import TailCall
from ebpf.vm.memory import HostBuffer

M64 = (1 << 64) - 1

# A placeholder: ("map", name) | ("value", name, offset) | ("func", label)
Ref = tuple[str, str] | tuple[str, str, int]


def program(name: str, text: str, refs: list[Ref], type: ProgramType = ProgramType.SYSCALL) -> ProgramSpec:
    """A ProgramSpec from assembly whose ``rX = 0 ll`` lines are, in order, ``refs``."""
    prog = assemble(text)
    insns = list(prog.instructions)
    slots = slot_offsets(prog.instructions)
    wide = [i for i, insn in enumerate(insns) if insn.is_wide]
    assert len(wide) == len(refs), (len(wide), len(refs))
    labels = {label: slot for slot, label in prog.labels.items()}
    relocations: dict[int, Relocation] = {}
    for i, ref in zip(wide, refs, strict=True):
        kind = ref[0]
        if kind == "map":
            relocations[slots[i]] = Relocation(RelocKind.MAP, ref[1])
        elif kind == "value":
            relocations[slots[i]] = Relocation(RelocKind.MAP_VALUE, ref[1], ref[2])  # type: ignore[misc]
        else:
            target = labels[ref[1]]
            insns[i] = Instruction(0x18, insns[i].dst, 4, 0, (target - slots[i] - 1) & 0xFFFFFFFF)
    return ProgramSpec(name, "syscall", type, Program(insns, prog.labels), relocations=relocations)


def global_map(name: str, data: bytes, *, rodata: bool = False) -> MapSpec:
    """A global data section as libbpf describes it."""
    return MapSpec(
        name,
        MapType.ARRAY,
        4,
        len(data),
        1,
        flags=0x80 if rodata else 0,
        contents=[(bytes(4), data)],
        freeze=rodata,
        section=name,
    )


# --- helpers (the runtime's contract with helper code: RuntimeEnv) ---------------------------------


def _env(env: HelperEnv) -> RunEnv:
    assert isinstance(env, RunEnv)
    return env


def _lookup(e: HelperEnv, map_ptr: int, key_ptr: int, _c: int, _d: int, _e: int) -> int:
    env = _env(e)
    m = env.map_at(map_ptr)
    key = env.memory.read_bytes(key_ptr, m.key_size)
    return m.value_address(key, env.cpu) or 0


def _update(e: HelperEnv, map_ptr: int, key_ptr: int, value_ptr: int, flags: int, _e: int) -> int:
    env = _env(e)
    m = env.map_at(map_ptr)
    key = env.memory.read_bytes(key_ptr, m.key_size)
    value = env.memory.read_bytes(value_ptr, m.value_size)
    try:
        m.update(key, value, flags)
    except Exception as err:  # noqa: BLE001 - map errors carry the errno
        return -getattr(err, "errno", errno.EINVAL) & M64
    return 0


def _tail_call(e: HelperEnv, ctx: int, map_ptr: int, index: int, _d: int, _e: int) -> int:
    env = _env(e)
    m = env.map_at(map_ptr)
    target = m.tail_call_target(index & 0xFFFFFFFF)  # type: ignore[attr-defined]
    if target is None or env.tail_calls >= MAX_TAIL_CALL_CNT:
        return -errno.ENOENT & M64
    env.tail_calls += 1
    raise TailCall(target)


def _loop(e: HelperEnv, n: int, fn: int, ctx: int, flags: int, _e: int) -> int:
    env = _env(e)
    for i in range(n):
        if env.call(fn, i, ctx):
            return i + 1
    return n


def _for_each(e: HelperEnv, map_ptr: int, fn: int, ctx: int, flags: int, _e: int) -> int:
    """bpf_for_each_map_elem: callback(map, &key, &value, ctx) for each element until it returns 1."""
    env = _env(e)
    m = env.map_at(map_ptr)
    done = 0
    for key in list(m):
        value = m.value_address(key, env.cpu)
        assert value is not None
        region = env.memory.map_buffer("for_each:key", HostBuffer.from_bytes(key), writable=False)
        try:
            done += 1
            if env.call(fn, map_ptr, region.start, value, ctx):
                break
        finally:
            env.memory.unmap(region)
    return done


def _cpu(e: HelperEnv, *_: int) -> int:
    return _env(e).cpu


def test_helpers() -> HelperRegistry:
    reg = HelperRegistry()
    reg.register(1, "map_lookup_elem", _lookup)
    reg.register(2, "map_update_elem", _update)
    reg.register(8, "get_smp_processor_id", _cpu)
    reg.register(12, "tail_call", _tail_call)
    reg.register(164, "for_each_map_elem", _for_each)
    reg.register(181, "loop", _loop)
    return reg


test_helpers.__test__ = False  # type: ignore[attr-defined]


def default_helpers() -> HelperRegistry:
    """The runtime's own helpers, with the test versions of those it does not have yet."""
    from ebpf.vm.helpers import runtime_helpers

    reg = runtime_helpers()
    for helper_id, helper in test_helpers().items():
        if helper_id not in reg:
            reg.register(helper_id, helper.name, helper.fn)
    return reg
