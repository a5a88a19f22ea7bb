"""Background work on the reactor thread in small ticks, paced by how far behind it is.

A node's background walks (the history compaction, the sweep of expired keys) run on the reactor thread,
so every request waits behind a tick: ticks are kept small. A fixed rate of small ticks, though, caps the
work a node can do, and past that cap the work piles up (old versions, expired keys on disk). So a
``PacedTask`` ticks every ``interval`` while its work keeps up and, while the work says it is behind, again
as soon as the ticks stay within ``share`` of the thread: a tick that took t seconds is followed by a pause
of t * (1 - share) / share.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# The share of the reactor thread a task behind on its work may take.
BEHIND_SHARE = 0.1


class PacedTask:
    def __init__(self, reactor, name: str, tick: Callable[[], object], behind: Callable[[], bool],
                 interval: float, share: float = BEHIND_SHARE, timer: Callable[[], float] = time.perf_counter):
        self.reactor = reactor
        self.name = name
        self.tick = tick
        self.behind = behind
        self.interval = interval
        self.share = share
        self.timer = timer
        self._call = None
        self.seconds = 0.0  # spent in ticks, for INFO

    def start(self) -> None:
        self._call = self.reactor.callLater(self.interval, self._run)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _run(self) -> None:
        started = self.timer()
        behind = False
        try:
            self.tick()
            behind = self.behind()
        except Exception:
            # A failed tick (the store closing under it, a corrupt record) must not stop the work for good.
            log.exception("%s failed", self.name)
        elapsed = self.timer() - started
        self.seconds += elapsed
        delay = elapsed * (1 - self.share) / self.share if behind else self.interval
        self._call = self.reactor.callLater(min(delay, self.interval), self._run)
