"""Removing versions older than the retention window from the history of every replica this node holds.

Each replica compacts its own history, primaries and secondaries alike, rather than replicating the
removals: what to remove follows from the versions alone (``history.compactable``), so every replica reaches
the same history without log entries, and a compaction never competes with writes for the log. Replicas
use their own clocks, so the cutoff trails the retention window by ``grace_ms``: reads are refused only
before the window (``kvnode.versions``), so replicas whose clocks differ by less than the grace all still
hold every version a read they accept may need, including after a failover.

Work is bounded per tick: the walk reads about ``budget`` history records, resuming where it stopped. A
walk over every partition that finds nothing to remove rests for ``IDLE_REST_TICKS`` ticks: with a
retention window of an hour, finding old versions seconds later changes nothing, and the walk would
otherwise read history all day long for nothing.
"""

from __future__ import annotations

import time

from kvcommon.hlc import LOGICAL_BITS, LOGICAL_MASK
from kvnode.replica import Role
from kvnode.storage.history import compactable

# Seconds between ticks (kvnode.main runs them). A tick runs on the reactor thread and every request
# waits for it: 2000 records at once took 4-12 ms over a million keys, a stall at the tail of GET
# latency every second, so the walk goes in small steps instead, at the same 2000 records a second.
COMPACT_INTERVAL = 0.1
# History records read per tick, over all partitions.
COMPACT_BUDGET = 200
GRACE_MS = 10_000
# Ticks skipped after a walk over every partition found nothing to remove (30 s).
IDLE_REST_TICKS = 300


class HistoryCompactor:
    def __init__(self, service, budget: int = COMPACT_BUDGET, grace_ms: int = GRACE_MS):
        self.service = service
        self.budget = budget
        self.grace_ms = grace_ms
        self._resume: dict[int, bytes] = {}  # partition -> where its walk goes on
        self._next = 0
        self._removed_this_walk = 0
        self._rest = 0
        self.removed = 0
        self.read = 0  # history records read, for tests and INFO

    def cutoff(self, now_ms: int, retention_seconds: int) -> int:
        """The newest version compaction may treat as old: the last one of its millisecond."""
        return ((now_ms - retention_seconds * 1000 - self.grace_ms) << LOGICAL_BITS) | LOGICAL_MASK

    def tick(self, now_ms: int | None = None) -> int:
        """One round of compaction; returns how many history records it queued for removal."""
        service = self.service
        if service.config is None:
            return 0
        if self._rest:
            self._rest -= 1
            return 0
        # A replica receiving a snapshot is being rewritten: leave it alone until it is installed.
        partitions = sorted(p for p, r in service.replicas.items() if r.role != Role.NONE and not r.snapshotting)
        if not partitions:
            return 0
        if now_ms is None:
            now_ms = time.time_ns() // 1_000_000
        cutoff = self.cutoff(now_ms, service.config.retention_seconds)
        budget = self.budget
        doomed: list[bytes] = []
        for _ in range(len(partitions)):
            if budget <= 0:
                break
            partition = partitions[self._next % len(partitions)]
            found, resume, read = compactable(service.store.engine, partition, cutoff,
                                              self._resume.get(partition), budget)
            doomed += found
            budget -= max(1, read)
            self.read += read
            self._removed_this_walk += len(found)
            if resume is None:
                self._resume.pop(partition, None)
                self._next += 1
                if self._next % len(partitions) == 0:  # a walk over every partition is complete
                    if not self._removed_this_walk:
                        self._rest = IDLE_REST_TICKS
                        break
                    self._removed_this_walk = 0
            else:
                self._resume[partition] = resume
        if doomed:
            service.commit.add(lambda batch: [batch.delete(key) for key in doomed])
        self.removed += len(doomed)
        return len(doomed)
