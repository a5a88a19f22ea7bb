"""Removing versions older than the retention window from the history of every replica this node holds.

Each replica compacts its own history, primaries and secondaries alike, rather than replicating the
removals: what to remove follows from the versions alone (``history.compactable``), so every replica reaches
the same history without log entries, and a compaction never competes with writes for the log. Replicas
use their own clocks, so the cutoff trails the retention window by ``grace_ms``: reads are refused only
before the window (``kvnode.versions``), so replicas whose clocks differ by less than the grace all still
hold every version a read they accept may need, including after a failover.

Work is bounded per tick: the walk reads about ``budget`` history records, resuming where it stopped. Ticks
come every ``COMPACT_INTERVAL``, and back to back while the walk is behind, up to a share of the reactor
thread (``kvnode.pacing``). A walk reads the whole retained history of a partition, so it must read the
write rate times (retention + step) / step records a second to keep up: 13 times the write rate for the
default hour. At a fixed 2,000 records a second, a node fell behind from about 150 writes a second (its
secondaries' included): its history then held versions ever longer past the window, and from 2,000 writes
a second grew without bound. Behind, at a tenth of the thread, a walk reads some 40,000 cached records a
second: enough for 3,000 writes a second per node at the default retention.

A partition is walked only when it may hold something to remove: once after this node starts holding it
(at start, or after a snapshot copy), and then once a step of ``STEP_MS`` in which it was written to is
wholly past the cutoff. A walk that ran all day long over unchanged history cost every node a few percent of a
core, and its reads pushed hot blocks out of the cache. A partition written to all the time is walked
every step at most, and an old version outlives the window by a step at most.
"""

from __future__ import annotations

import time

from kvcommon.hlc import LOGICAL_BITS, LOGICAL_MASK
from kvnode.replica import Role
from kvnode.storage.history import compactable

# Seconds between ticks while the walk keeps up (a kvnode.pacing.PacedTask runs them). A tick runs on the
# reactor thread and every request waits for it: 2000 records at once took 4-12 ms over a million keys, a
# stall at the tail of GET latency every second, so the walk goes in small steps instead.
COMPACT_INTERVAL = 0.1
# History records read per tick, over all partitions (0.3-0.5 ms: 1.6-2.7 µs a record when cached).
COMPACT_BUDGET = 200
GRACE_MS = 10_000
# Writes are remembered by the step of wall time their version falls in (see the module's text).
STEP_MS = 300_000
# The step that stands for "walk it now": a partition whose history may hold versions of any age.
_ANY_AGE = -1


class HistoryCompactor:
    def __init__(self, service, budget: int = COMPACT_BUDGET, grace_ms: int = GRACE_MS):
        self.service = service
        self.budget = budget
        self.grace_ms = grace_ms
        self._resume: dict[int, bytes] = {}  # partition -> where its walk goes on
        # partition -> the steps, ascending, of writes no walk has looked at past the cutoff yet
        self._written: dict[int, list[int]] = {}
        self._held: set[int] = set()  # the partitions of the last tick
        self.removed = 0
        self.read = 0  # history records read, for tests and INFO
        # Whether the last tick left due work for the next: a walk to resume, or partitions not reached.
        self.behind = False

    def note(self, partition: int, version: int) -> None:
        """A write at ``version`` reached the partition's history: walk it once its step is past the cutoff."""
        step = (version >> LOGICAL_BITS) // STEP_MS
        steps = self._written.get(partition)
        if steps is None:
            self._written[partition] = [step]
        elif steps[-1] < step:
            steps.append(step)  # an older step is covered by the walk that the newest one asks for

    def cutoff(self, now_ms: int, retention_seconds: int) -> int:
        """The newest version compaction may treat as old: the last one of its millisecond."""
        return ((now_ms - retention_seconds * 1000 - self.grace_ms) << LOGICAL_BITS) | LOGICAL_MASK

    def tick(self, now_ms: int | None = None) -> int:
        """One round of compaction; returns how many history records it queued for removal."""
        service = self.service
        if service.config is None:
            return 0
        # A replica receiving a snapshot is being rewritten: leave it alone until it is installed.
        held = {p for p, r in service.replicas.items() if r.role != Role.NONE and not r.snapshotting}
        for partition in held - self._held:
            self._written[partition] = [_ANY_AGE, *self._written.get(partition, ())]  # new here, or copied again
        for partition in self._held - held:
            self._resume.pop(partition, None)
        self._held = held
        if now_ms is None:
            now_ms = time.time_ns() // 1_000_000
        cutoff = self.cutoff(now_ms, service.config.retention_seconds)
        # The steps wholly at or below the cutoff.
        past = ((cutoff >> LOGICAL_BITS) + 1) // STEP_MS
        written = self._written
        due = sorted(p for p in held if p in self._resume or (p in written and written[p][0] < past))
        budget = self.budget
        doomed: list[bytes] = []
        reached = 0
        for partition in due:
            if budget <= 0:
                break
            reached += 1
            resume = self._resume.pop(partition, None)
            if resume is None:
                # This walk looks at every write past the cutoff; later steps wait for a later walk.
                steps = [step for step in written[partition] if step >= past]
                if steps:
                    written[partition] = steps
                else:
                    del written[partition]
            found, resume, read = compactable(service.store.engine, partition, cutoff, resume, budget)
            doomed += found
            budget -= max(1, read)
            self.read += read
            if resume is not None:
                self._resume[partition] = resume
        if doomed:
            service.commit.add(lambda batch: [batch.delete(key) for key in doomed])
        self.removed += len(doomed)
        self.behind = bool(self._resume) or reached < len(due)
        return len(doomed)
