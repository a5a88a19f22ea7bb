"""Group commit: the changes of one reactor turn (or of every turn while a batch is written) in one write batch.

Callers add a function that puts its changes into the batch and a callback to run once the batch is on
disk; nothing is acknowledged to anyone before that. With ``sync`` the batch is also flushed to stable
storage (fsync) before the callbacks run, so one fsync pays for every write of the batch.

LevelDB makes a writer wait while it compacts (when level-0 files pile up under a bulk load, for seconds),
and fsync takes as long as the disk wants: on the reactor thread either would stop the node answering
reads, replication and its proxies, which would then take it for dead. So a node hands such batches to a
thread of its own (``StorageWriter``): every batch with ``sync``, and every batch while LevelDB is behind
with its compactions or a write has just been slow. Otherwise a batch is written on the reactor thread,
which costs nothing more: handing each batch to a thread costs thread switches and GIL handovers, a fifth
more CPU per SET. One batch is written at a time; what is added meanwhile waits for the next. A batch's
fillers run on the reactor thread once the batch before it is on disk, so a filler that reads the store
(a snapshot dropping a partition's keys) sees every earlier change.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime

from kvnode.storage.interface import Engine, WriteBatch

log = logging.getLogger(__name__)

BatchFiller = Callable[[WriteBatch], None]
WriteDone = Callable[[BaseException | None], None]

# How often to ask the engine how far behind it is (write_backlog: LevelDB's level-0 files).
BACKLOG_CHECK_SECONDS = 0.1
# LevelDB compacts level 0 from 4 files on: beyond that its compaction is falling behind.
LEVEL0_BEHIND = 5
# From 8 level-0 files LevelDB delays each write by 1 ms, which does not slow a node's large batches; at 12
# it stops writes until it has compacted all of level 0, for over 10 s under a bulk load on a busy machine.
LEVEL0_SLOWDOWN = 8
# So from 8 files a batch is held until level 0 shrinks, for at most this long.
MAX_HOLD_SECONDS = 1.0
# A write on the reactor thread slower than this means the engine is busy: the next go to the thread.
SLOW_WRITE_SECONDS = 0.02
# Once behind, batches go to the thread at least this long.
OFFLOAD_SECONDS = 2.0


class StorageWriter:
    """Writes batches on a thread of its own; ``done`` runs on the reactor thread with the error, if any."""

    def __init__(self, reactor, engine: Engine):
        self._reactor = reactor
        self._engine = engine
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="storage-writer", daemon=True)
        self._thread.start()

    def submit(self, batch: WriteBatch, sync: bool, done: WriteDone) -> None:
        self._queue.put((batch, sync, done))

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            batch, sync, done = job
            error = None
            try:
                self._engine.write(batch, sync=sync)
            except Exception as exc:  # noqa: BLE001 - reported on the reactor thread
                error = exc
            self._reactor.callFromThread(done, error)

    def close(self) -> None:
        """Wait for the batch being written, then stop the thread."""
        self._queue.put(None)
        self._thread.join()


class GroupCommit:
    def __init__(self, reactor: IReactorTime, engine: Engine, sync: bool = False,
                 writer: StorageWriter | None = None):
        self._reactor = reactor
        self._engine = engine
        self.sync = sync
        # None: always write on the reactor thread, at the end of the turn (unit tests, with a fake clock).
        self._writer = writer
        self._writing = False
        self._offload_until = 0.0
        self._next_backlog_check = 0.0
        self._level0 = 0
        self._held_since: float | None = None
        self._fillers: list[BatchFiller] = []
        self._callbacks: list[Callable[[], None]] = []
        self._scheduled = None
        self.batches = 0
        self.writes = 0
        self.offloaded = 0  # batches written on the writer thread
        self.held = 0  # times a batch was held back while LevelDB caught up

    def add(self, filler: BatchFiller, on_commit: Callable[[], None] | None = None) -> None:
        self._fillers.append(filler)
        if on_commit is not None:
            self._callbacks.append(on_commit)
        if self._scheduled is None and not self._writing:
            # callLater(0) runs after the reactor has handled every readable socket of this turn.
            self._scheduled = self._reactor.callLater(0, self.flush)

    def flush(self) -> None:
        """Write what was added, unless a batch is being written (then it goes once that one is done) or the
        engine is too far behind (then it goes once the engine caught up, or after MAX_HOLD_SECONDS)."""
        self._scheduled = None
        if self._writing or not self._fillers:
            return
        if self._writer is not None and self._hold():
            self.held += 1
            self._scheduled = self._reactor.callLater(BACKLOG_CHECK_SECONDS, self.flush)
            return
        batch, callbacks, count = self._take()
        if self._writer is not None and self._offload():
            self._writing = True
            self.offloaded += 1
            self._writer.submit(batch, self.sync, lambda error: self._written(callbacks, count, error))
            return
        started = time.perf_counter()
        self._engine.write(batch, sync=self.sync)
        if time.perf_counter() - started > SLOW_WRITE_SECONDS:
            self._offload_until = self._reactor.seconds() + OFFLOAD_SECONDS
        self._written(callbacks, count, None)

    def _backlog(self) -> int:
        now = self._reactor.seconds()
        if now >= self._next_backlog_check:
            self._next_backlog_check = now + BACKLOG_CHECK_SECONDS
            self._level0 = self._engine.write_backlog()
        return self._level0

    def _hold(self) -> bool:
        """Pacing: should the next batch wait for the engine's compaction? Writers then wait here, a second
        at most, rather than in LevelDB's stop at 12 level-0 files, however long that lasts."""
        if self._backlog() < LEVEL0_SLOWDOWN:
            self._held_since = None
            return False
        now = self._reactor.seconds()
        if self._held_since is None:
            self._held_since = now
        if now - self._held_since < MAX_HOLD_SECONDS:
            return True
        self._held_since = None
        return False

    def _offload(self) -> bool:
        """Should the next batch go to the writer thread: is it fsynced, or is the engine behind?"""
        if self.sync:
            return True
        now = self._reactor.seconds()
        if now < self._offload_until:
            return True
        if self._backlog() >= LEVEL0_BEHIND:
            self._offload_until = now + OFFLOAD_SECONDS
            return True
        return False

    def close(self) -> None:
        """On shutdown: wait for the batch being written, then write the rest on this thread."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._fillers:
            batch, _, _ = self._take()
            self._engine.write(batch, sync=self.sync)

    def _take(self) -> tuple[WriteBatch, list[Callable[[], None]], int]:
        fillers, self._fillers = self._fillers, []
        callbacks, self._callbacks = self._callbacks, []
        batch = WriteBatch()
        for fill in fillers:
            fill(batch)
        return batch, callbacks, len(fillers)

    def _written(self, callbacks: list[Callable[[], None]], count: int, error: BaseException | None) -> None:
        self._writing = False
        if error is not None:
            # Nothing of the batch is acknowledged: its writers get their write timeout's answer.
            log.error("a storage write of %d changes failed: %s", count, error)
        else:
            self.batches += 1
            self.writes += count
            for callback in callbacks:
                try:
                    callback()
                except Exception:
                    log.exception("commit callback failed")
        if self._fillers and self._scheduled is None:
            self.flush()
