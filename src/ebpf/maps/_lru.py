"""The kernel's BPF LRU (``kernel/bpf/bpf_lru_list.c``) as a model: which elements a full LRU evicts. Pure.

Written from the kernel's documented behaviour (``Documentation/bpf/map_hash.rst``, the
comments of ``bpf_lru_list.c``) and checked against Linux 6.18 by
``tests/differential/test_lru_kernel.py``. Every preallocated element has one *node*; a
node sits on exactly one list. Free nodes carry no data, so the free lists are counts;
the other lists are doubly linked (head = most recently added, tail = oldest).

Common LRU (the default): one global list set (``active``, ``inactive``, free) plus, per
CPU, a *local* free list and a *pending* list.

* Creation: all ``nr_elems`` nodes are global free nodes. ``target_free`` is
  ``clamp(nr_elems / ncpus / 2, 1, 128)`` (``LOCAL_FREE_TARGET``).
* Pop (an update needs a node, on CPU ``c``): take a node from ``c``'s local free list. If
  it is empty, under the global lock: flush ``c``'s pending list into the global lists
  (oldest first, each to the head of ``active`` if its reference bit is set, else of
  ``inactive``; bits cleared), *rotate*, move up to ``target_free`` global free nodes to
  ``c``'s local free list and, if fewer, *shrink* the rest from the global lists: those
  elements are evicted from the map *in a batch*. The popped node goes to the head of
  ``c``'s pending list with its bit clear. If there is still none, *steal* from the CPUs'
  local lists round-robin from ``c``'s ``next_steal`` (initially ``c``): a local free
  node, else the oldest pending node without its bit (any pending node if all have it),
  whose element is evicted.
* Push (delete, replace): a pending node goes back to its CPU's local free list, any
  other node to the global free list.
* Rotate: if ``inactive`` has fewer nodes than ``active``, walk ``active`` from the tail
  (at most ``nr_scans`` = 128 nodes, stopping after the head node): referenced nodes go
  back to the head of ``active``, the others to the head of ``inactive``. Then walk
  ``inactive`` backwards from the rotation cursor (``next_inactive_rotation``, initially
  the list head; it wraps around the head and moves to the previous node when its node
  leaves the list) for at most ``nr_scans`` nodes, once around: referenced nodes go to
  the head of ``active``; the cursor ends before the last node looked at.
* Shrink ``n``: walk ``inactive`` from the tail (at most ``nr_scans`` nodes): referenced
  nodes go to ``active``, the others are evicted until ``n`` are. If none were, evict
  the tail node of ``inactive`` (of ``active`` if ``inactive`` is empty), ignoring bits.

Per-CPU LRU (``BPF_F_NO_COMMON_LRU``): each CPU has its own list set holding
``nr_elems / ncpus`` nodes, ``nr_scans`` is 4; a pop on CPU ``c`` rotates ``c``'s lists,
shrinks 4 (``PERCPU_FREE_TARGET``) if ``c`` has no free node, and puts the node at the
head of ``inactive``; a push returns a node to the lists of the CPU it belongs to.

Moving a node between lists clears its reference bit; lookups by programs set it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["LOCAL_FREE_TARGET", "LRU", "PERCPU_FREE_TARGET", "Node"]

LOCAL_FREE_TARGET = 128
"""The most free nodes a CPU takes from the global lists at once (also their scan limit)."""
PERCPU_FREE_TARGET = 4
"""Per-CPU LRU: nodes shrunk at once when a CPU has no free node (also the scan limit)."""

# node types (enum bpf_lru_list_type)
ACTIVE, INACTIVE, FREE, LOCAL_FREE, PENDING = range(5)


class Node:
    """One element's place in the LRU lists (``struct bpf_lru_node``), or a list head."""

    __slots__ = ("cpu", "elem", "next", "prev", "ref", "type")

    def __init__(self, type_: int = FREE, cpu: int = 0) -> None:
        self.prev: Node = self
        self.next: Node = self
        self.type = type_
        self.ref = 0
        self.cpu = cpu
        self.elem: Any = None  # the map's element that owns the node


def _unlink(node: Node) -> None:
    node.prev.next = node.next
    node.next.prev = node.prev


def _add_head(head: Node, node: Node) -> None:
    first = head.next
    node.prev = head
    node.next = first
    first.prev = node
    head.next = node


class _Lists:
    """One ``struct bpf_lru_list``: active, inactive, a free count and the rotation cursor."""

    __slots__ = ("active", "counts", "free", "inactive", "rotation")

    def __init__(self, free: int) -> None:
        self.active = Node(ACTIVE)
        self.inactive = Node(INACTIVE)
        self.counts = [0, 0]  # nodes on active, inactive
        self.free = free
        self.rotation: Node = self.inactive


class _Local:
    """One CPU's ``struct bpf_lru_locallist``: a free count and the pending list."""

    __slots__ = ("free", "next_steal", "pending")

    def __init__(self, cpu: int) -> None:
        self.free = 0
        self.pending = Node(PENDING)
        self.next_steal = cpu


class LRU:
    """The LRU of one map with ``nr_elems`` preallocated elements on ``ncpus`` CPUs.

    ``evict(node)`` removes ``node.elem`` from the map (the kernel's ``del_from_htab``) and
    says whether it did; it must not call :meth:`push_free`.
    """

    def __init__(self, nr_elems: int, ncpus: int, *, percpu: bool, evict: Callable[[Node], bool]) -> None:
        self.ncpus = ncpus
        self.percpu = percpu
        self._evict = evict
        if percpu:
            self.nr_scans = PERCPU_FREE_TARGET
            self.target_free = PERCPU_FREE_TARGET
            self._cpu_lists = [_Lists(nr_elems // ncpus) for _ in range(ncpus)]
        else:
            self.nr_scans = LOCAL_FREE_TARGET
            self.target_free = min(max(nr_elems // ncpus // 2, 1), LOCAL_FREE_TARGET)
            self._global = _Lists(nr_elems)
            self._locals = [_Local(cpu) for cpu in range(ncpus)]

    # --- node moves (the kernel's __bpf_lru_node_move*) ------------------------------------------

    @staticmethod
    def _move(lists: _Lists, node: Node, target: int) -> None:
        """Between or within active and inactive, or to the free list; clears the bit."""
        if node.type != target:
            lists.counts[node.type] -= 1
            if target != FREE:
                lists.counts[target] += 1
            node.type = target
        node.ref = 0
        if node is lists.rotation:
            lists.rotation = node.prev
        _unlink(node)
        if target == ACTIVE:
            _add_head(lists.active, node)
        elif target == INACTIVE:
            _add_head(lists.inactive, node)
        else:
            lists.free += 1
            node.elem = None

    @staticmethod
    def _take(lists: _Lists, node: Node) -> None:
        """Off active / inactive onto a free list (the caller counts it there)."""
        if node is lists.rotation:
            lists.rotation = node.prev
        lists.counts[node.type] -= 1
        _unlink(node)
        node.elem = None

    # --- rotate and shrink -------------------------------------------------------------------------

    def _rotate(self, lists: _Lists) -> None:
        nr_scans = self.nr_scans
        active = lists.active
        if lists.counts[INACTIVE] < lists.counts[ACTIVE]:
            first = active.next
            node = active.prev
            i = 0
            while node is not active:
                prev = node.prev
                self._move(lists, node, ACTIVE if node.ref else INACTIVE)
                i += 1
                if i == nr_scans or node is first:
                    break
                node = prev
        inactive = lists.inactive
        if inactive.next is inactive:
            return
        last = lists.rotation.next
        if last is inactive:
            last = last.next
        cur = lists.rotation
        nxt = inactive
        i = 0
        while i < nr_scans:
            if cur is inactive:
                cur = cur.prev
                continue
            nxt = cur.prev
            if cur.ref:
                self._move(lists, cur, ACTIVE)
            if cur is last:
                break
            cur = nxt
            i += 1
        lists.rotation = nxt

    def _shrink(self, lists: _Lists, want: int) -> int:
        """Evict up to ``want`` elements from ``lists``; returns how many (their nodes are free)."""
        inactive = lists.inactive
        node = inactive.prev
        done = 0
        i = 0
        while node is not inactive:
            prev = node.prev
            if node.ref:
                self._move(lists, node, ACTIVE)
            elif self._evict(node):
                self._take(lists, node)
                done += 1
                if done == want:
                    break
            i += 1
            if i == self.nr_scans:
                break
            node = prev
        if done:
            return done
        head = inactive if inactive.next is not inactive else lists.active
        node = head.prev
        while node is not head:
            prev = node.prev
            if self._evict(node):
                self._take(lists, node)
                return 1
            node = prev
        return 0

    # --- pop and push ------------------------------------------------------------------------------

    def pop_free(self, cpu: int) -> Node | None:
        """A free node for a new element, updated on ``cpu`` (may evict elements); ``None``: no node."""
        if self.percpu:
            return self._percpu_pop(cpu)
        local = self._locals[cpu]
        if not local.free:
            self._refill(local)
        if local.free:
            local.free -= 1
            return self._add_pending(local, cpu)
        node: Node | None = None
        first = steal = local.next_steal
        while True:
            victim = self._locals[steal]
            if victim.free:
                victim.free -= 1
                node = Node()
            else:
                node = self._pop_pending(victim)
            steal = (steal + 1) % self.ncpus
            if node is not None or steal == first:
                break
        local.next_steal = steal
        if node is None:
            return None
        return self._add_pending(local, cpu)

    def _refill(self, local: _Local) -> None:
        """``bpf_lru_list_pop_free_to_local``: flush, rotate, then free nodes to ``local``."""
        lists = self._global
        pending = local.pending
        node = pending.prev
        while node is not pending:
            prev = node.prev
            target = ACTIVE if node.ref else INACTIVE
            lists.counts[target] += 1
            node.type = target
            node.ref = 0
            _unlink(node)
            _add_head(lists.active if target == ACTIVE else lists.inactive, node)
            node = prev
        self._rotate(lists)
        got = min(lists.free, self.target_free)
        lists.free -= got
        local.free += got
        if got < self.target_free:
            local.free += self._shrink(lists, self.target_free - got)

    def _pop_pending(self, local: _Local) -> Node | None:
        """The oldest pending node of ``local`` without its bit (else any), its element evicted."""
        pending = local.pending
        for force in (False, True):
            node = pending.prev
            while node is not pending:
                if (force or not node.ref) and self._evict(node):
                    _unlink(node)
                    node.elem = None
                    return node
                node = node.prev
        return None

    @staticmethod
    def _add_pending(local: _Local, cpu: int) -> Node:
        node = Node(PENDING, cpu)
        _add_head(local.pending, node)
        return node

    def _percpu_pop(self, cpu: int) -> Node | None:
        lists = self._cpu_lists[cpu]
        self._rotate(lists)
        if not lists.free:
            lists.free += self._shrink(lists, PERCPU_FREE_TARGET)
        if not lists.free:
            return None
        lists.free -= 1
        node = Node(INACTIVE, cpu)
        lists.counts[INACTIVE] += 1
        _add_head(lists.inactive, node)
        return node

    def push_free(self, node: Node) -> None:
        """Give back the node of a deleted or replaced element (or of a failed update)."""
        if self.percpu:
            self._move(self._cpu_lists[node.cpu], node, FREE)
        elif node.type == PENDING:
            _unlink(node)
            node.type = LOCAL_FREE
            node.elem = None
            self._locals[node.cpu].free += 1
        else:
            self._move(self._global, node, FREE)

    # --- inspection (tests) ------------------------------------------------------------------------

    def free_counts(self) -> list[int]:
        """Free nodes per list set: common LRU ``[global, cpu0 local, cpu1 local, ...]``,
        per-CPU LRU ``[cpu0, cpu1, ...]``."""
        if self.percpu:
            return [lists.free for lists in self._cpu_lists]
        return [self._global.free, *(local.free for local in self._locals)]
