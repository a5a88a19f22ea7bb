"""One partition's replica on this node: its role, its log position, and writes waiting for acknowledgement.

No I/O here. The service appends entries and reports commits and acknowledgements; the replica decides
when a write has reached the level it was written at, and hands out Deferreds that fire then.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterable

from twisted.internet import defer

from kvcommon.errors import OutcomeUnknownError
from kvmeta.schema import PartitionState
from kvnode.storage.records import LogEntry, PartitionMeta


class Role(enum.Enum):
    NONE = "none"
    PRIMARY = "primary"
    SECONDARY = "secondary"


class PendingEntry:
    """A log entry the primary appended whose write level is not yet reached."""

    __slots__ = ("seq", "version", "level", "keys", "_waiters", "done")

    def __init__(self, seq: int, level: str, keys: Iterable[bytes], version: int = 0):
        self.seq = seq
        self.version = version
        self.level = level
        self.keys = tuple(keys)
        self._waiters: list[Callable[[Exception | None], None]] = []
        self.done = False

    def wait(self) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.on_done(lambda failure: d.callback(None) if failure is None else d.errback(failure))
        return d

    def on_done(self, callback: Callable[[Exception | None], None]) -> None:
        """Call callback(None) once the entry reached its level, or callback(error) if it never will."""
        if self.done:
            callback(None)
        else:
            self._waiters.append(callback)

    def finish(self, failure: Exception | None = None) -> None:
        self.done = True
        waiters, self._waiters = self._waiters, []
        for callback in waiters:
            callback(failure)


class Replica:
    def __init__(self, partition: int, meta: PartitionMeta):
        self.partition = partition
        self.role = Role.NONE
        self.state: PartitionState | None = None
        # The generation this replica acts in: as primary, the one it writes its entries in.
        self.generation = 0
        # ``meta`` runs ahead of the disk by the entries queued for the next group commit;
        # ``committed_seq`` is what the disk holds.
        self.meta = meta
        self.committed_seq = meta.seq
        self.snapshotting = False
        self.snapshot_meta: PartitionMeta | None = None
        # Log entries below this seq have been trimmed (or were never here).
        self.trimmed_before = 0
        # A planned switch of primary pauses writes (and strong reads) until this reactor time.
        self.paused_until = 0.0
        # The primary's lease holds until this reactor time at least (kvnode.service.has_lease).
        self.lease_until = 0.0
        # Primary only: the newest raw record of keys whose last write is not complete yet.
        self.pending_keys: dict[bytes, tuple[bytes | None, PendingEntry]] = {}
        self._pending: dict[str, deque[PendingEntry]] = {"1": deque(), "quorum": deque(), "all": deque()}
        # Primary only: follower id -> highest seq it has acknowledged as committed.
        self.follower_acks: dict[str, int] = {}

    @property
    def seq(self) -> int:
        return self.meta.seq

    # -- primary: appending ------------------------------------------------------------------------

    def append(self, version: int, writes: dict[bytes, bytes | None], level: str) -> tuple[LogEntry, PendingEntry]:
        seq = self.meta.seq + 1
        entry = LogEntry(self.generation, seq, version, tuple(writes.items()))
        self.meta = self.meta.advance(seq)
        pending = PendingEntry(seq, level, writes, version)
        self._pending[level].append(pending)
        for key, raw in writes.items():
            self.pending_keys[key] = (raw, pending)
        return entry, pending

    def pending_up_to(self, version: int) -> list[PendingEntry]:
        """The entries not yet at their write level whose version is at or below ``version``."""
        # A primary's versions increase with seq, so within a level they are a prefix of the queue.
        found = []
        for queue in self._pending.values():
            for pending in queue:
                if pending.version > version:
                    break
                found.append(pending)
        return found

    def pending_raw(self, key: bytes) -> tuple[bytes | None, PendingEntry] | None:
        return self.pending_keys.get(key)

    # -- progress --------------------------------------------------------------------------------

    def on_committed(self, seq: int) -> None:
        if seq > self.committed_seq:
            self.committed_seq = seq
        self._complete_ready()

    def on_ack(self, follower: str, seq: int) -> None:
        if seq > self.follower_acks.get(follower, 0):
            self.follower_acks[follower] = seq
            self._complete_ready()

    def on_state(self, state: PartitionState) -> None:
        self.state = state
        self.lease_until = 0.0  # the replica set may have changed
        self._complete_ready()

    def acked_by(self, seq: int) -> int:
        """How many replicas, this one included, hold entry ``seq``."""
        local = 1 if self.committed_seq >= seq else 0
        followers = self.state.secondaries if self.state else ()
        return local + sum(1 for f in followers if self.follower_acks.get(f, 0) >= seq)

    def level_reached(self, seq: int, level: str) -> bool:
        if self.committed_seq < seq:
            return False
        if level == "1":
            return True
        if self.state is None:
            return False
        if level == "quorum":
            return self.acked_by(seq) >= len(self.state.replicas) // 2 + 1
        in_sync_followers = [f for f in self.state.in_sync if f != self.state.primary]
        return all(self.follower_acks.get(f, 0) >= seq for f in in_sync_followers)

    def _complete_ready(self) -> None:
        # Within one level, entries complete in seq order: if seq s has not reached it, no later one has.
        for level, queue in self._pending.items():
            while queue and self.level_reached(queue[0].seq, level):
                self._finish(queue.popleft())

    def _finish(self, pending: PendingEntry, failure: Exception | None = None) -> None:
        for key in pending.keys:
            current = self.pending_keys.get(key)
            if current is not None and current[1] is pending:
                del self.pending_keys[key]
        pending.finish(failure)

    def abandon_pending(self, reason: str) -> None:
        """Fail every write still waiting: this replica stopped being primary before they completed."""
        error = OutcomeUnknownError(
            f"partition {self.partition} changed primary while the write was being replicated ({reason}); "
            "it may or may not have been applied: read the key before retrying"
        )
        for queue in self._pending.values():
            while queue:
                self._finish(queue.popleft(), error)
        self.pending_keys.clear()
        self.follower_acks.clear()

    def pending_count(self) -> int:
        return sum(len(q) for q in self._pending.values())
