"""User-space kernel helpers for legacy cgroup storage and cgroup arrays.

Core layer: pure, no kernel access (cgroup ancestry is read from this host's cgroup v2 tree).

Rule 1 (``bpf_get_local_storage``): a run's storage is a temporary zeroed storage per storage
type (shared / per-CPU), as ``BPF_PROG_TEST_RUN`` allocates one (``bpf_cgroup_storage_alloc``
in ``bpf_test_run``) for the whole call: the runs of one ``repeat`` share it, the next test
run starts from zero, and no key of the map reaches it (measured on Linux 6.18). The runtime
allocates it on first use in a run and frees it in :func:`end_run`, which the runtime's
``Program.test_run`` and ``Program.run`` call at their end; a run with another mapped input
(``RunEnv.context``) also starts afresh, for engines driven without ``end_run``. A per-CPU storage returns the value of
``RunEnv.cpu``. The kernel returns the storage of the *program's* map of that type (the
verifier lets a program use at most one of each); a second map of the same type in one run
is a :class:`~ebpf.errors.VMError`. ``flags`` is ignored (the kernel's verifier requires 0).

Rule 2 (``bpf_current_task_under_cgroup``, ``bpf_skb_under_cgroup``): an index at or past
``max_entries`` is ``-E2BIG``, an empty slot ``-EAGAIN``, else 1 when the cgroup of the task is
the slot's cgroup or below it, 0 otherwise. The task is :meth:`RunEnv.current_task` (its
``cgroup_id``). The socket of a packet is the one ``BPF_PROG_TEST_RUN`` gives every test-run
skb: allocated by the test-running task, so in that task's cgroup (measured: both helpers
give the same answers in every cgroup); the runtime's packets always have it, so the
kernel's ``-ENOENT`` (no full socket) never happens here.
"""

from __future__ import annotations

import errno
import weakref
from dataclasses import dataclass, field

from ebpf.errors import VMError
from ebpf.helpers import HelperId
from ebpf.maps.cgroup import CgroupArrayMap, CgroupStorage, CgroupStorageMap, CgroupStorageType, is_descendant
from ebpf.vm.helpers import M64, HelperEnv, HelperRegistry, RunEnv, run_env

__all__ = ["end_run", "register", "run_storage"]


@dataclass(eq=False)
class _RunStorages:
    """The temporary storages of the current run of one ``RunEnv``."""

    context: weakref.ref[object] | None = None
    storages: dict[CgroupStorageType, tuple[CgroupStorageMap, CgroupStorage]] = field(default_factory=dict)

    def free(self) -> None:
        for m, storage in self.storages.values():
            m.free_run_storage(storage)
        self.storages.clear()


_RUNS: weakref.WeakKeyDictionary[RunEnv, _RunStorages] = weakref.WeakKeyDictionary()


def _same_run(runs: _RunStorages, context: object) -> bool:
    if runs.context is None:
        return context is None
    return runs.context() is context


def run_storage(env: RunEnv, m: CgroupStorageMap) -> CgroupStorage:
    """The temporary storage of ``m``'s type for the current run of ``env`` (Rule 1).

    Raises:
        VMError: another map of the same storage type was used in this run.
    """
    runs = _RUNS.get(env)
    if runs is None:
        runs = _RUNS[env] = _RunStorages()
    context = env.context
    if not _same_run(runs, context):
        runs.free()
        runs.context = None if context is None else weakref.ref(context)
    found = runs.storages.get(m.storage_type)
    if found is not None:
        owner, storage = found
        if owner is not m:
            raise VMError(
                f"bpf_get_local_storage on {m.name!r} after {owner.name!r}: a program can use "
                f"only one {m.type.name} map"
            )
        if storage.regions:  # not freed by closing the map
            return storage
    storage = m.new_run_storage()
    runs.storages[m.storage_type] = (m, storage)
    return storage


def end_run(env: RunEnv) -> None:
    """Free the temporary storages of ``env``'s run (``bpf_cgroup_storage_free`` at the end of
    ``bpf_test_run``); the runtime calls it after every test run and run."""
    runs = _RUNS.get(env)
    if runs is not None:
        runs.free()
        runs.context = None


def get_local_storage(e: HelperEnv, map_ptr: int, _flags: int, _c: int, _d: int, _e: int) -> int:
    env = run_env(e)
    m = env.map_at(map_ptr)
    if not isinstance(m, CgroupStorageMap):
        raise VMError(f"bpf_get_local_storage on {m.type.name} map {m.name!r} (needs cgroup storage)")
    return run_storage(env, m).address(env.cpu)


def _under(env: RunEnv, map_ptr: int, index: int) -> int:
    m = env.map_at(map_ptr)
    if not isinstance(m, CgroupArrayMap):
        raise VMError(f"an *_under_cgroup helper on {m.type.name} map {m.name!r} (needs CGROUP_ARRAY)")
    index &= 0xFFFFFFFF
    if index >= m.max_entries:
        return (-errno.E2BIG) & M64
    cgroup = m.cgroup_at(index)
    if cgroup is None:
        return (-errno.EAGAIN) & M64
    return int(is_descendant(env.current_task().cgroup_id, cgroup))


def current_task_under_cgroup(e: HelperEnv, map_ptr: int, index: int, _c: int, _d: int, _e: int) -> int:
    return _under(run_env(e), map_ptr, index)


def skb_under_cgroup(e: HelperEnv, _skb: int, map_ptr: int, index: int, _d: int, _e: int) -> int:
    return _under(run_env(e), map_ptr, index)


def register(reg: HelperRegistry) -> None:
    """Add this module's helpers to ``reg``."""
    for hid, fn in (
        (HelperId.GET_LOCAL_STORAGE, get_local_storage),
        (HelperId.CURRENT_TASK_UNDER_CGROUP, current_task_under_cgroup),
        (HelperId.SKB_UNDER_CGROUP, skb_under_cgroup),
    ):
        reg.register(hid, f"bpf_{hid.name.lower()}", fn)
