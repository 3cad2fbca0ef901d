"""Local-storage maps: ``TASK_STORAGE``, ``SK_STORAGE``, ``INODE_STORAGE``, ``CGRP_STORAGE``. Pure.

A local-storage map holds at most one value per *owner* (a task, a socket, an inode, a
cgroup); programs reach it through the owner's pointer (``bpf_task_storage_get(&map, task,
...)``), user space through a file descriptor naming the owner.

Rule 1 (``bpf_local_storage_map_alloc_check`` / ``_check_btf``, Linux 6.18; checked against
the kernel in ``tests/maps/test_storage.py``): ``map_flags`` must hold ``BPF_F_NO_PREALLOC``
and nothing but it and ``BPF_F_CLONE``; ``max_entries`` is 0; ``key_size`` is 4; the
value's BTF is required (``btf_value_type_id`` and ``btf_key_type_id``, the key a 4-byte
integer); ``value_size`` from 1 to :data:`MAX_VALUE_SIZE` (65407: ``E2BIG`` above). All else
``EINVAL``. The runtime checks these from :class:`~ebpf.maps.MapDef`'s ``btf`` /
``key_type_id`` / ``value_type_id`` as the kernel does (``maps.create`` then checks the
sizes against the BTF and finds a ``bpf_spin_lock``).

Rule 2 (owners): an :class:`Owner` is an identity: a task is its pid (thread id), a socket,
an inode or a cgroup the ``(st_dev, st_ino)`` of its inode. Values are keyed by owner, so
every local-storage map sharing one :class:`~ebpf.vm.memory.Memory` sees the same owners.
:func:`owners` gives the :class:`OwnerTable` of a memory, which says which *addresses* are
owners for programs (:meth:`OwnerTable.bind`, or :meth:`OwnerTable.new_object` to map a
zeroed stand-in object) and resolves *file descriptors* for user space. The runtime has no
``task_struct``/``struct sock``: a pointer it cannot name is a :class:`~ebpf.errors.VMError`
in the helpers (the kernel's verifier guarantees a valid object), except NULL, which the
helpers answer as the kernel does (NULL / ``-EINVAL``). :meth:`OwnerTable.release` is the
owner's death: its storage in every map goes away. The current task's pointer
(``bpf_get_current_task(_btf)``) is ``TaskInfo.task``, 0 unless configured:
``ebpf.vm._helpers_storage.current_task_object(env)`` maps and binds one. The runtime's
packet contexts give no socket pointers (``skb->sk`` reads 0), so socket storage from a
program needs sockets the caller binds.

Rule 3 (user space, the key is a file descriptor of THIS process, as with the kernel's
``bpf()``): task storage takes a pidfd (``os.pidfd_open``; its ``/proc/self/fdinfo``
``Pid:`` names the task: ``-1`` is an exited task, ``ENOENT``; any other fd ``EBADF``);
socket storage a socket fd (``ENOTSOCK`` for other files); inode storage any fd (its
inode); cgroup storage a directory fd of a cgroup v1 or v2 mount (``EBADF`` otherwise). A
closed fd is ``EBADF``. The fd is resolved before the update flags are checked, as in the
kernel; ``BPF_F_LOCK`` without a lock in the value is refused first (``EINVAL``).
``get_next_key`` and ``lookup_and_delete`` are ``ENOTSUPP`` (524): the kernel has no key
order here (its iterator is ``bpf_iter``); :meth:`LocalStorageMap.owners_with_storage`
lists the owners instead.

``BPF_F_CLONE`` is accepted and kept in the flags; the kernel copies such values to a
socket cloned from the owner (``accept``), and the runtime creates no sockets.

Rule 4: each value is its own host buffer region (stable address while it exists);
updates write in place. The kernel's per-owner recursion guard (``-EBUSY``) has no
counterpart: the runtime runs one program at a time.
"""

from __future__ import annotations

import errno
import os
import stat
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

from ebpf.errors import BTFError, KeyNotFoundError
from ebpf.maps._base import BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST, ENOTSUPP, Map, MapDef, MapFlags
from ebpf.maps._errors import InvalidMapArgumentError, KeyExistsError, MapError, MapOperationNotSupportedError
from ebpf.spec import MapType
from ebpf.vm.memory import HostBuffer, Memory, Region

__all__ = [
    "BPF_LOCAL_STORAGE_GET_F_CREATE",
    "MAX_VALUE_SIZE",
    "CgrpStorageMap",
    "InodeStorageMap",
    "LocalStorageMap",
    "Owner",
    "OwnerError",
    "OwnerKind",
    "OwnerTable",
    "SkStorageMap",
    "TaskStorageMap",
    "owners",
    "resolve_fd",
]

BPF_LOCAL_STORAGE_GET_F_CREATE = 1
"""``bpf_*_storage_get`` flag: create the value (from the init value, or zeroed) if missing."""
MAX_VALUE_SIZE = 65407
"""``BPF_LOCAL_STORAGE_MAX_VALUE_SIZE`` on x86-64, Linux 6.18 (``U16_MAX`` minus the element)."""
CREATE_FLAG_MASK = MapFlags.NO_PREALLOC | MapFlags.CLONE


class OwnerKind(Enum):
    """What a local-storage map hangs its values on."""

    TASK = "task"
    SOCK = "sk"
    INODE = "inode"
    CGROUP = "cgroup"


@dataclass(frozen=True)
class Owner:
    """An owner of local storage: its kind and identity (see the module docstring, Rule 2)."""

    kind: OwnerKind
    ident: tuple[int, ...]

    @classmethod
    def task(cls, pid: int) -> Owner:
        """The task with thread id ``pid``."""
        return cls(OwnerKind.TASK, (pid,))

    @classmethod
    def socket(cls, dev: int, ino: int) -> Owner:
        """The socket whose sockfs inode is ``(dev, ino)``."""
        return cls(OwnerKind.SOCK, (dev, ino))

    @classmethod
    def inode(cls, dev: int, ino: int) -> Owner:
        """The inode ``(dev, ino)``."""
        return cls(OwnerKind.INODE, (dev, ino))

    @classmethod
    def cgroup(cls, dev: int, ino: int) -> Owner:
        """The cgroup whose directory is ``(dev, ino)`` (``ino`` is the v2 cgroup id)."""
        return cls(OwnerKind.CGROUP, (dev, ino))

    def __str__(self) -> str:
        return f"{self.kind.value}:{'/'.join(str(i) for i in self.ident)}"


class OwnerError(MapError):
    """A file descriptor that names no owner of the map's kind (``EBADF``, ``ENOTSOCK``, ``ENOENT``)."""

    default_errno = errno.EBADF


# --- file descriptors -> owners -------------------------------------------------------------------

_CGROUP_FS = frozenset({"cgroup", "cgroup2"})


def _fdinfo(fd: int) -> dict[str, str]:
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in f)}
    except OSError:
        return {}


def _mount_fstype(mnt_id: str) -> str | None:
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if fields and fields[0] == mnt_id and "-" in fields:
                    return fields[fields.index("-") + 1]
    except OSError:
        pass
    return None


def resolve_fd(kind: OwnerKind, fd: int) -> Owner:
    """The owner ``fd`` (a descriptor of this process) names for a map of ``kind`` (Rule 3).

    Raises:
        OwnerError: ``EBADF`` (closed, or not a pidfd / cgroup directory), ``ENOTSOCK`` (not
            a socket), ``ENOENT`` (the pidfd's task has exited).
    """
    try:
        st = os.fstat(fd) if fd >= 0 else None
    except OSError:
        st = None
    if st is None:
        raise OwnerError(f"fd {fd} is not open", errno=errno.EBADF)
    if kind is OwnerKind.TASK:
        pid = _fdinfo(fd).get("Pid")
        if pid is None:
            raise OwnerError(f"fd {fd} is not a pidfd", errno=errno.EBADF)
        if int(pid) <= 0:
            raise OwnerError(f"pidfd {fd}: the task has exited", errno=errno.ENOENT)
        return Owner.task(int(pid))
    if kind is OwnerKind.SOCK:
        if not stat.S_ISSOCK(st.st_mode):
            raise OwnerError(f"fd {fd} is not a socket", errno=errno.ENOTSOCK)
        return Owner.socket(st.st_dev, st.st_ino)
    if kind is OwnerKind.CGROUP:
        mnt = _fdinfo(fd).get("mnt_id")
        if not stat.S_ISDIR(st.st_mode) or mnt is None or _mount_fstype(mnt) not in _CGROUP_FS:
            raise OwnerError(f"fd {fd} is not a cgroup directory", errno=errno.EBADF)
        return Owner.cgroup(st.st_dev, st.st_ino)
    return Owner.inode(st.st_dev, st.st_ino)


FdResolver = Callable[[OwnerKind, int], Owner]


class OwnerTable:
    """The owners the programs of one :class:`~ebpf.vm.memory.Memory` can point at (Rule 2).

    Attributes:
        memory: the memory the addresses belong to.
        resolver: fd -> owner for user-space keys (default :func:`resolve_fd`; tests or
            embedders may substitute their own mapping).
    """

    def __init__(self, memory: Memory, resolver: FdResolver = resolve_fd) -> None:
        self.memory = memory
        self.resolver = resolver
        self._by_address: dict[int, Owner] = {}
        self._objects: dict[int, Region] = {}
        self._maps: weakref.WeakSet[LocalStorageMap] = weakref.WeakSet()

    def bind(self, address: int, owner: Owner) -> None:
        """Make the pointer ``address`` name ``owner`` (e.g. an object the caller mapped).

        Raises:
            InvalidMapArgumentError: ``address`` is NULL.
        """
        if address == 0:
            raise InvalidMapArgumentError("an owner cannot be at address 0 (NULL)")
        self._by_address[address] = owner

    def unbind(self, address: int) -> None:
        """Forget the pointer ``address`` (and unmap it, if :meth:`new_object` mapped it)."""
        self._by_address.pop(address, None)
        region = self._objects.pop(address, None)
        if region is not None:
            self.memory.unmap(region)

    def new_object(self, owner: Owner, size: int = 64) -> int:
        """Map ``size`` zeroed bytes as a stand-in for ``owner``'s kernel object; its address.

        Use it as ``TaskInfo.task`` (what ``bpf_get_current_task(_btf)`` returns) or as a
        context argument; the runtime has no real ``task_struct`` or ``struct sock``, so
        fields a program reads through it are whatever the caller writes there.
        """
        if size <= 0:
            raise InvalidMapArgumentError(f"an owner object needs a size > 0, got {size}")
        region = self.memory.map_buffer(f"owner:{owner}", HostBuffer(size))
        self._objects[region.start] = region
        self.bind(region.start, owner)
        return region.start

    def owner_at(self, address: int) -> Owner | None:
        """The owner bound at ``address``, or ``None``."""
        return self._by_address.get(address)

    def addresses_of(self, owner: Owner) -> list[int]:
        """Every address bound to ``owner``."""
        return [a for a, o in self._by_address.items() if o == owner]

    def resolve(self, kind: OwnerKind, fd: int) -> Owner:
        """The owner user-space key ``fd`` names (see :func:`resolve_fd`)."""
        return self.resolver(kind, fd)

    def release(self, owner: Owner) -> int:
        """The owner dies: drop its values from every local-storage map and unbind its addresses.

        Returns:
            How many values were dropped.
        """
        dropped = 0
        for m in list(self._maps):
            if m.owner_kind is owner.kind and m._drop(owner):
                dropped += 1
        for address in self.addresses_of(owner):
            self.unbind(address)
        return dropped


_TABLES: weakref.WeakKeyDictionary[Memory, OwnerTable] = weakref.WeakKeyDictionary()


def owners(memory: Memory) -> OwnerTable:
    """The :class:`OwnerTable` of ``memory`` (created on first use)."""
    table = _TABLES.get(memory)
    if table is None:
        table = _TABLES[memory] = OwnerTable(memory)
    return table


# --- the maps -------------------------------------------------------------------------------------


def _check_int_key(defn: MapDef, label: str) -> None:
    from ebpf.btf.types import Int

    assert defn.btf is not None
    try:
        t = defn.btf[defn.btf.resolve_id(defn.key_type_id)]
    except (BTFError, IndexError, KeyError) as err:
        raise InvalidMapArgumentError(f"{label}: bad BTF key type {defn.key_type_id}: {err}") from None
    if not isinstance(t, Int) or t.size != 4:
        raise InvalidMapArgumentError(f"{label}: the BTF key type of local storage must be a 4-byte int")


class LocalStorageMap(Map):
    """A local-storage map (see the module docstring); one value per :class:`Owner`."""

    owner_kind: ClassVar[OwnerKind]

    def __init__(self, defn: MapDef, memory: Memory | None = None, *, ncpus: int = 1) -> None:
        super().__init__(defn, memory, ncpus=ncpus)
        flags = defn.flags
        problem = None
        if flags & ~CREATE_FLAG_MASK:
            problem = f"unsupported flags {flags:#x}"
        elif not flags & MapFlags.NO_PREALLOC:
            problem = "needs BPF_F_NO_PREALLOC"
        elif defn.max_entries != 0:
            problem = f"max_entries must be 0, got {defn.max_entries}"
        elif defn.key_size != 4:
            problem = f"key_size must be 4 (a file descriptor), got {defn.key_size}"
        elif defn.btf is None or not defn.value_type_id or not defn.key_type_id:
            problem = "needs BTF key and value types (btf_key_type_id / btf_value_type_id)"
        elif defn.value_size == 0:
            problem = "value_size must be > 0"
        if problem is not None:
            raise InvalidMapArgumentError(f"{self.label}: {self.type.name} {problem}")
        if defn.value_size > MAX_VALUE_SIZE:
            raise InvalidMapArgumentError(
                f"{self.label}: value_size {defn.value_size} > {MAX_VALUE_SIZE}", errno=errno.E2BIG
            )
        _check_int_key(defn, self.label)
        self.owners = owners(self.memory)
        self.owners._maps.add(self)
        self._elems: dict[Owner, Region] = {}
        self._by_start: dict[int, Owner] = {}

    # --- by owner (what the helpers use) --------------------------------------------------------

    def storage_get(self, owner: Owner, init: bytes | None = None, *, create: bool = False) -> int | None:
        """``bpf_*_storage_get``: the address of ``owner``'s value, created if ``create``.

        A new value is ``init`` (``value_size`` bytes) or zeroes.
        """
        self._check_owner(owner)
        region = self._elems.get(owner)
        if region is None:
            if not create:
                return None
            region = self._insert(owner)
            if init is not None:
                self._write_value(region.view, self._value(init))
        return region.start

    def lookup_owner(self, owner: Owner) -> bytes:
        """``owner``'s value (the lock word reads as zero).

        Raises:
            KeyNotFoundError: ``owner`` has no value in this map (``ENOENT``).
        """
        self._check_owner(owner)
        region = self._elems.get(owner)
        if region is None:
            raise KeyNotFoundError(owner, f"{self.label}: {owner} has no storage")
        return self._mask_lock(region.view.tobytes())

    def update_owner(self, owner: Owner, value: bytes, flags: int = 0) -> None:
        """Set ``owner``'s value with ``BPF_ANY`` / ``BPF_NOEXIST`` / ``BPF_EXIST`` (+ ``BPF_F_LOCK``)."""
        self._check_owner(owner)
        self._check_update_flags(flags)
        value = self._value(value)
        region = self._elems.get(owner)
        mode = flags & ~BPF_F_LOCK
        if region is not None and mode == BPF_NOEXIST:
            raise KeyExistsError(f"{self.label}: {owner} has storage (BPF_NOEXIST)")
        if region is None and mode == BPF_EXIST:
            raise KeyNotFoundError(owner, f"{self.label}: {owner} has no storage (BPF_EXIST)")
        if region is None:
            region = self._insert(owner)
        self._write_value(region.view, value)

    def delete_owner(self, owner: Owner) -> None:
        """Delete ``owner``'s value.

        Raises:
            KeyNotFoundError: there is none (``ENOENT``).
        """
        self._check_owner(owner)
        if not self._drop(owner):
            raise KeyNotFoundError(owner, f"{self.label}: {owner} has no storage")

    def owners_with_storage(self) -> list[Owner]:
        """The owners that have a value in this map (not a kernel operation)."""
        return list(self._elems)

    def value_address(self, key: bytes, cpu: int = 0) -> int | None:
        region = self._elems.get(self._resolve(key))
        return None if region is None else region.start

    # --- by file descriptor (bpf() from user space) ---------------------------------------------

    def _resolve(self, key: bytes) -> Owner:
        fd = int.from_bytes(self._key(key), "little", signed=True)
        try:
            return self.owners.resolve(self.owner_kind, fd)
        except OwnerError as err:
            err.message = f"{self.label}: {err.message}"
            raise

    def lookup(self, key: bytes) -> bytes:
        return self.lookup_owner(self._resolve(key))

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        self._check_lock_flag(flags)
        self.update_owner(self._resolve(key), value, flags)

    def delete(self, key: bytes) -> None:
        self.delete_owner(self._resolve(key))

    def get_next_key(self, key: bytes | None) -> bytes:
        raise MapOperationNotSupportedError(
            f"{self.label}: {self.type.name} has no get_next_key (iterate with bpf_iter)", errno=ENOTSUPP
        )

    def __iter__(self) -> Iterator[bytes]:
        self.get_next_key(None)  # raises, as the kernel's get_next_key does
        return iter(())

    def __len__(self) -> int:
        return len(self._elems)

    # --- internals ------------------------------------------------------------------------------

    def _check_owner(self, owner: Owner) -> None:
        if not isinstance(owner, Owner) or owner.kind is not self.owner_kind:
            raise InvalidMapArgumentError(f"{self.label}: {owner!r} is not a {self.owner_kind.value}")

    def _insert(self, owner: Owner) -> Region:
        region = self._new_region(f"[{owner}]", self.value_size)
        self._elems[owner] = region
        self._by_start[region.start] = owner
        return region

    def _drop(self, owner: Owner) -> bool:
        region = self._elems.pop(owner, None)
        if region is None:
            return False
        self._by_start.pop(region.start, None)
        self.memory.unmap(region)
        return True

    def _lock_word_address(self, address: int) -> int | None:
        if self._lock_offset is None:
            return None
        start = address - self._lock_offset
        return start if start in self._by_start else None

    def _release(self) -> None:
        for owner in list(self._elems):
            self._drop(owner)
        self.owners._maps.discard(self)


class TaskStorageMap(LocalStorageMap):
    """``BPF_MAP_TYPE_TASK_STORAGE``: a value per task; user-space keys are pidfds."""

    types = (MapType.TASK_STORAGE,)
    owner_kind = OwnerKind.TASK


class SkStorageMap(LocalStorageMap):
    """``BPF_MAP_TYPE_SK_STORAGE``: a value per socket; user-space keys are socket fds."""

    types = (MapType.SK_STORAGE,)
    owner_kind = OwnerKind.SOCK


class InodeStorageMap(LocalStorageMap):
    """``BPF_MAP_TYPE_INODE_STORAGE``: a value per inode; user-space keys are any fds."""

    types = (MapType.INODE_STORAGE,)
    owner_kind = OwnerKind.INODE


class CgrpStorageMap(LocalStorageMap):
    """``BPF_MAP_TYPE_CGRP_STORAGE``: a value per cgroup; user-space keys are cgroup directory fds."""

    types = (MapType.CGRP_STORAGE,)
    owner_kind = OwnerKind.CGROUP
