"""How many bytes of its context a program reads or writes (the verifier's ``max_ctx_offset``).

Core layer. Pure: no kernel access.

``BPF_PROG_TEST_RUN`` of raw tracepoint and syscall programs refuses a ``ctx_in`` shorter
than the furthest context byte the program touches (``prog->aux->max_ctx_offset``, which the
kernel's verifier records in ``check_ctx_access``). Without a verifier, this module finds the
same bound by a may-analysis over the program's slots: which registers and 8-byte stack slots
hold the unmodified context pointer (``r1`` at entry; copied by ``mov``, spilled and filled
through the stack, passed to subprograms in ``r1``-``r5``; a helper call clobbers ``r0``-``r5``),
and the largest ``offset + size`` of an access through one of them.

Rule: the kernel only accepts programs that access the context through an unmodified context
pointer, and an instruction that does so on one path must do so on every path, so merging
paths by union gives the verifier's bound for every program the kernel would load.
"""

from __future__ import annotations

from ebpf.isa.ir import (
    Atomic,
    Bin,
    BinOp,
    Branch,
    Call,
    CallLocal,
    CallReg,
    Exit,
    Jump,
    Load,
    LoadImm64,
    Op,
    Store,
    Un,
)

__all__ = ["max_ctx_offset"]

# (registers holding ctx, stack offsets holding ctx); frozen for the worklist
State = tuple[frozenset[int], frozenset[int]]
FP = 10


def max_ctx_offset(ops: list[Op | None]) -> int:
    """The largest ``offset + size`` of a context access in ``ops`` (0 if none)."""
    n = len(ops)
    states: dict[int, State] = {0: (frozenset({1}), frozenset())}
    work = [0]
    bound = 0
    while work:
        pc = work.pop()
        regs, slots = (set(x) for x in states[pc])
        op = ops[pc] if pc < n else None
        succs: list[int] = []
        nxt = pc + 2 if isinstance(op, LoadImm64) else pc + 1
        match op:
            case Load(dst=dst, base=base, offset=off, size=size):
                if base in regs:
                    bound = max(bound, off + size)
                filled = base == FP and size == 8 and off in slots
                regs.discard(dst)
                if filled:
                    regs.add(dst)
                succs.append(nxt)
            case Store(base=base, offset=off, size=size, src=src):
                if base in regs:
                    bound = max(bound, off + size)
                if base == FP:
                    slots.discard(off)
                    if size == 8 and src is not None and src in regs:
                        slots.add(off)
                succs.append(nxt)
            case Atomic(base=base, offset=off, size=size, src=src, fetch=fetch):
                if base in regs:
                    bound = max(bound, off + size)
                if base == FP:
                    slots.discard(off)
                if fetch:
                    regs.discard(src)
                regs.discard(0)
                succs.append(nxt)
            case Bin(op=BinOp.MOV, dst=dst, src=src, is64=True) if src is not None:
                if src in regs:
                    regs.add(dst)
                else:
                    regs.discard(dst)
                succs.append(nxt)
            case Bin(dst=dst) | Un(dst=dst) | LoadImm64(dst=dst):
                regs.discard(dst)
                succs.append(nxt)
            case Call() | CallReg():
                regs -= {0, 1, 2, 3, 4, 5}
                succs.append(nxt)
            case CallLocal(target=target):
                # the callee starts with the arguments' ctx-ness and a stack of its own
                _merge(states, work, target, (frozenset(regs & {1, 2, 3, 4, 5}), frozenset()))
                regs -= {0, 1, 2, 3, 4, 5}
                succs.append(nxt)
            case Branch(target=target):
                succs.extend((target, nxt))
            case Jump(target=target):
                succs.append(target)
            case Exit() | None:
                pass
            case _:
                regs.discard(0)  # legacy packet loads, kfunc calls
                succs.append(nxt)
        out = (frozenset(regs), frozenset(slots))
        for succ in succs:
            if 0 <= succ < n:
                _merge(states, work, succ, out)
    return bound


def _merge(states: dict[int, State], work: list[int], pc: int, state: State) -> None:
    old = states.get(pc)
    new = state if old is None else (old[0] | state[0], old[1] | state[1])
    if new != old:
        states[pc] = new
        work.append(pc)
