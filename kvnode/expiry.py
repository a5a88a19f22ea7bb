"""Removing expired keys from the partitions this node is primary of.

Reads already hide a key once its absolute expiry time has passed; removing it from disk is the primary's
job, by an ordinary replicated delete, so a secondary never expires a key on its own clock and always holds
exactly the primary's data. A command that touches an expired key deletes it (``CommandContext.changes``);
this sweep finds the others, with bounded work per tick:

- keys this primary wrote with an expiry wait in a heap and are deleted soon after they are due;
- a slow walk over every partition finds the rest: keys written before this node became primary, or
  while the heap was full.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from kvnode.storage.records import expire_at_of

# Seconds between ticks of the sweep (kvnode.main runs it).
# Small steps often rather than large ones seldom: every request waits for a tick (see compaction.py).
SWEEP_INTERVAL = 0.1
# Records the walk reads per tick, over all partitions; at a tick every 0.1s, 2000 records a second.
WALK_BUDGET = 200
# Keys deleted per tick from the heap: more are left for the next tick.
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
        self._next_partition = 0
        self.deleted = 0

    def note(self, partition: int, writes: dict[bytes, bytes | None]) -> None:
        """A write this primary appended: remember its keys that expire."""
        for key, raw in writes.items():
            if raw is not None and len(self._due) < self.max_tracked:
                expire_at = expire_at_of(raw)
                if expire_at:
                    heapq.heappush(self._due, (expire_at, partition, key))

    def tick(self, now_ms: int) -> int:
        """One round of sweeping; returns how many keys it deleted."""
        primaries = self.primaries()
        expired: dict[int, list[bytes]] = {}
        self._pop_due(now_ms, expired)
        self._walk(now_ms, primaries, expired)
        deleted = sum(self.delete(partition, keys) for partition, keys in expired.items() if partition in primaries)
        self.deleted += deleted
        return deleted

    def _pop_due(self, now_ms: int, out: dict[int, list[bytes]]) -> None:
        due = self._due
        for _ in range(self.delete_budget):
            if not due or due[0][0] > now_ms:
                return
            _, partition, key = heapq.heappop(due)
            out.setdefault(partition, []).append(key)

    def _walk(self, now_ms: int, primaries: list[int], out: dict[int, list[bytes]]) -> None:
        """Read up to walk_budget records, resuming where the last tick stopped, partition after partition."""
        budget = self.walk_budget
        for _ in range(len(primaries)):
            if budget <= 0:
                return
            partition = primaries[self._next_partition % len(primaries)]
            start = self._walk_from.get(partition, b"")
            last = None
            for key, raw in self.store.iterate_data(partition, start):
                last = key
                expire_at = expire_at_of(raw)
                if expire_at and expire_at <= now_ms:
                    out.setdefault(partition, []).append(key)
                budget -= 1
                if budget == 0:
                    break
            if budget == 0 and last is not None:
                self._walk_from[partition] = last + b"\0"
                return
            # This partition is done: start it over next time, and go on with the next one.
            self._walk_from.pop(partition, None)
            self._next_partition += 1
