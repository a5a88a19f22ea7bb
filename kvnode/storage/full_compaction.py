"""Compacting a node's whole store on demand (``KV.COMPACT`` on a node, ``kvctl compact`` for an operator).

After a bulk load LevelDB holds the keys over several levels. A read that has to look into more than one
table file counts against the first one, and after about a hundred such reads LevelDB compacts that file,
in the background, while the reads go on. Over a freshly loaded store of three million keys that doubled
the CPU of every read until some six hundred thousand reads had gone by. Compacting the whole store once,
right after the load, does that work at a time the operator picks instead.

The store is compacted one range at a time (each kind of key of each partition) on a thread of its own,
so the node can say how far it is, and can stop between two ranges when it shuts down.

LevelDB compacts a range down to the deepest level that already holds some of its keys. Meanwhile a level
grown past its size (1 GB for level 3: a node of ten million keys) has files moved a level down, so a
range compacted into it can end up in two levels again, and reads of it go on setting off compactions. So
the last step compacts the whole store once more, into the deepest level in use: where every range lies in
one level already, it has nothing to do.
"""

from __future__ import annotations

import logging
import threading
import time

from kvnode.storage import keys
from kvnode.storage.interface import Engine

log = logging.getLogger(__name__)

# The kinds of key compacted, partition by partition; a partition's meta is a single key.
KINDS = (keys.DATA, keys.HISTORY, keys.LOG)
# Every key of the store: each starts with a kind byte (keys.py) or 0x00 (the schema key).
WHOLE_STORE = (b"\x00", b"\xff")


def store_ranges(partitions: list[int]) -> list[tuple[bytes, bytes]]:
    """The ranges a full compaction goes through: each kind of key of each partition in key order, then the
    whole store (see the module's text)."""
    return [*sorted(keys.partition_range(kind, partition) for kind in KINDS for partition in partitions),
            WHOLE_STORE]


class FullCompaction:
    """One compaction of the whole store, running on its own thread from construction on."""

    def __init__(self, engine: Engine, ranges: list[tuple[bytes, bytes]]):
        self.engine = engine
        self.ranges = ranges
        self.done = 0  # ranges compacted so far
        self.error: Exception | None = None
        self.started = time.monotonic()
        self.finished: float | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="full-compaction", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self.finished is None

    def status(self) -> str:
        """``running``, ``done``, ``stopped`` or ``failed: why``."""
        if self.running:
            return "running"
        if self.error is not None:
            return "failed: " + " ".join(str(self.error).split())  # one line, for INFO
        return "done" if self.done == len(self.ranges) else "stopped"

    def seconds(self) -> float:
        return (self.finished if self.finished is not None else time.monotonic()) - self.started

    def stop(self) -> None:
        """Stop after the range being compacted, and wait for it: the engine must outlive the thread. The
        last range, the whole store, takes long only where LevelDB left ranges in two levels."""
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            step_seconds = 0.0
            for start, stop in self.ranges:
                if self._stopping.is_set():
                    return
                step_started = time.monotonic()
                self.engine.compact_range(start, stop)
                step_seconds = time.monotonic() - step_started
                self.done += 1
            log.info("store compacted: %d ranges in %.1f s, the last (the whole store) in %.1f s",
                     len(self.ranges), self.seconds(), step_seconds)
        except Exception as exc:  # noqa: BLE001 - reported in INFO and the log
            self.error = exc
            log.error("the compaction of the store failed after %d of %d ranges: %s", self.done,
                      len(self.ranges), exc)
        finally:
            self.finished = time.monotonic()
