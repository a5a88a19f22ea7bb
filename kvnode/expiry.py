"""Removing expired keys from the partitions this node is primary of.

Reads already hide a key once its absolute expiry time has passed; removing it from disk is the primary's
job, by an ordinary replicated delete, so a secondary never expires a key on its own clock and always holds
exactly the primary's data. A command that touches an expired key deletes it (``CommandContext.changes``);
this sweep finds the others, with bounded work per tick (ticks every ``SWEEP_INTERVAL``, back to back within
a tenth of the reactor thread while it is behind: ``kvnode.pacing``):

- keys this primary wrote with an expiry wait in a heap and are deleted soon after they are due;
- a slow walk finds the rest: keys written before this node became primary, or while the heap was full.
  It walks a partition once when this node becomes its primary, putting every key that expires later in
  the heap, and again only if the heap had no room for one of its keys. A node whose keys are all in the
  heap reads nothing: a walk that ran all day long cost every node a few percent of a core for nothing,
  and its reads pushed hot blocks out of the cache.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from kvnode.storage.records import expire_at_of

# Seconds between ticks of the sweep while it keeps up.
# Small steps often rather than large ones seldom: every request waits for a tick (see compaction.py).
SWEEP_INTERVAL = 0.1
# Records the walk reads per tick, over all partitions.
WALK_BUDGET = 200
# Keys deleted per tick from the heap: more are left for the next tick, which then comes sooner. At a fixed
# tick every 0.1 s this capped a node at 4,000 deletes a second.
DELETE_BUDGET = 400
# Expiring keys remembered; beyond this the walk finds them, later.
MAX_TRACKED = 100_000


class ExpirySweeper:
    """The sweep's state. ``primaries()`` lists the partitions to sweep; ``store`` reads them;
    ``delete(partition, keys)`` deletes those of ``keys`` still expired, by a replicated write."""

    def __init__(self, store, primaries: Callable[[], list[int]], delete: Callable[[int, list[bytes]], int],
                 walk_budget: int = WALK_BUDGET, delete_budget: int = DELETE_BUDGET,
                 max_tracked: int = MAX_TRACKED):
        self.store = store
        self.primaries = primaries
        self.delete = delete
        self.walk_budget = walk_budget
        self.delete_budget = delete_budget
        self.max_tracked = max_tracked
        self._due: list[tuple[int, int, bytes]] = []  # (expire_at_ms, partition, key)
        self._walk_from: dict[int, bytes] = {}  # partition -> the key the walk resumes at
        self._primaries: set[int] = set()  # the primaries of the last tick
        # Partitions with expiring keys that may be neither in the heap nor deleted yet, in walk order.
        self._unwalked: dict[int, None] = {}
        self.deleted = 0
        self.read = 0  # data records the walk read, for tests
        # Whether the last tick left keys due in the heap for the next. Walks do not count: with a full heap
        # a walk puts its partition back for another, and walking back to back would cost a node a tenth of
        # a core for as long as it holds more expiring keys than the heap, where a walk at the base pace
        # finds the same keys.
        self.behind = False

    def note(self, partition: int, writes: dict[bytes, bytes | None]) -> None:
        """A write this primary appended: remember its keys that expire."""
        for key, raw in writes.items():
            if raw is not None:
                expire_at = expire_at_of(raw)
                if expire_at:
                    self._track(expire_at, partition, key)

    def _track(self, expire_at: int, partition: int, key: bytes) -> None:
        """Put the key in the heap; if it is full, the partition needs a walk to find the key again."""
        if len(self._due) < self.max_tracked:
            heapq.heappush(self._due, (expire_at, partition, key))
        else:
            self._unwalked[partition] = None

    def tick(self, now_ms: int) -> int:
        """One round of sweeping; returns how many keys it deleted."""
        primaries = self.primaries()
        self._follow_roles(primaries)
        expired: dict[int, list[bytes]] = {}
        self._pop_due(now_ms, expired)
        self._walk(now_ms, expired)
        deleted = sum(self.delete(partition, keys) for partition, keys in expired.items() if partition in primaries)
        self.deleted += deleted
        self.behind = bool(self._due and self._due[0][0] <= now_ms)
        return deleted

    def _pop_due(self, now_ms: int, out: dict[int, list[bytes]]) -> None:
        due = self._due
        for _ in range(self.delete_budget):
            if not due or due[0][0] > now_ms:
                return
            _, partition, key = heapq.heappop(due)
            out.setdefault(partition, []).append(key)

    def _follow_roles(self, primaries: list[int]) -> None:
        """A partition this node has just become primary of is walked: its keys were written elsewhere."""
        current = set(primaries)
        for partition in current - self._primaries:
            self._unwalked[partition] = None
        for partition in self._primaries - current:
            self._unwalked.pop(partition, None)
            self._walk_from.pop(partition, None)
        self._primaries = current

    def _walk(self, now_ms: int, out: dict[int, list[bytes]]) -> None:
        """Read up to walk_budget records of the partitions that need a walk, resuming where the last tick
        stopped, partition after partition."""
        budget = self.walk_budget
        while budget > 0 and self._unwalked:
            partition = next(iter(self._unwalked))
            del self._unwalked[partition]  # a full heap during the walk puts it back, at the end
            start = self._walk_from.pop(partition, b"")
            last = None
            for key, raw in self.store.iterate_data(partition, start):
                last = key
                budget -= 1
                self.read += 1
                expire_at = expire_at_of(raw)
                if expire_at:
                    if expire_at <= now_ms:
                        out.setdefault(partition, []).append(key)
                    else:
                        self._track(expire_at, partition, key)
                if budget == 0:
                    break
            if budget == 0 and last is not None:
                # Not done: go on from here next tick, before any other partition.
                self._walk_from[partition] = last + b"\0"
                self._unwalked = {partition: None, **self._unwalked}
                return
