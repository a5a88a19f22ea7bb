"""Group commit: every change made in one reactor turn goes to LevelDB in one write batch.

Callers add a function that puts its changes into the batch and a callback to run once the batch is on
disk; nothing is acknowledged to anyone before that. With ``sync`` the batch is also flushed to stable
storage (fsync) before the callbacks run, so one fsync pays for every write of the turn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime

from kvnode.storage.interface import Engine, WriteBatch

log = logging.getLogger(__name__)

BatchFiller = Callable[[WriteBatch], None]


class GroupCommit:
    def __init__(self, reactor: IReactorTime, engine: Engine, sync: bool = False):
        self._reactor = reactor
        self._engine = engine
        self.sync = sync
        self._fillers: list[BatchFiller] = []
        self._callbacks: list[Callable[[], None]] = []
        self._scheduled = None
        self.batches = 0
        self.writes = 0

    def add(self, filler: BatchFiller, on_commit: Callable[[], None] | None = None) -> None:
        self._fillers.append(filler)
        if on_commit is not None:
            self._callbacks.append(on_commit)
        if self._scheduled is None:
            # callLater(0) runs after the reactor has handled every readable socket of this turn.
            self._scheduled = self._reactor.callLater(0, self.flush)

    def flush(self) -> None:
        self._scheduled = None
        if not self._fillers:
            return
        fillers, self._fillers = self._fillers, []
        callbacks, self._callbacks = self._callbacks, []
        batch = WriteBatch()
        for fill in fillers:
            fill(batch)
        self._engine.write(batch, sync=self.sync)
        self.batches += 1
        self.writes += len(fillers)
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("commit callback failed")

    @property
    def pending(self) -> int:
        return len(self._fillers)
