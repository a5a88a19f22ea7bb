"""The contract every storage engine meets, and the write batch they commit.

An engine is an ordered map from bytes to bytes: point reads, atomic multi-key writes, range scans in
byte order and consistent read views. ``LevelDBEngine`` is the production engine; ``MemoryEngine`` meets
the same contract in memory so higher layers can be unit tested quickly. The contract test suite
(``tests/unit/test_storage_engine.py``) runs against both.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Protocol

from kvcommon.errors import KVError


class StorageError(KVError):
    """The storage engine cannot do what was asked: store locked or closed, disk error, bad layout."""


class CorruptionError(StorageError):
    """Bytes read from the store (or received as a log payload) do not decode."""


class ClosedOnExit:
    """``with x:`` closes ``x`` at the end: engines and snapshots hold resources until closed."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class WriteBatch:
    """Puts and deletes that an engine commits atomically with ``Engine.write``.

    Operations apply in the order they were added, so a later operation on a key wins. The batch is a
    plain list of operations, not tied to an engine, so a group commit can gather the writes of several
    partitions into one batch before a single ``write``.
    """

    __slots__ = ("ops",)

    def __init__(self) -> None:
        # (key, value) for a put, (key, None) for a delete.
        self.ops: list[tuple[bytes, bytes | None]] = []

    def put(self, key: bytes, value: bytes) -> None:
        self.ops.append((key, value))

    def delete(self, key: bytes) -> None:
        self.ops.append((key, None))

    def __len__(self) -> int:
        return len(self.ops)

    def __repr__(self) -> str:
        return f"<WriteBatch of {len(self.ops)} operations>"


class Snapshot(Protocol):
    """A consistent read view: later writes are invisible through it. Close it to free what it pins."""

    def close(self) -> None: ...

    def __enter__(self) -> Snapshot: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Engine(Protocol):
    """An ordered byte-string map.

    Keys and values are ``bytes``. Ranges are half-open, ``[start, stop)``, in unsigned byte order;
    ``stop=None`` means "to the end". Every read takes an optional ``snapshot`` from this engine's
    ``snapshot()``; without one it reads the latest committed state. An iterator sees the store as it was
    when ``iterate`` (or ``keys``) was called, whatever is written while it is consumed.

    Using a closed engine or a closed snapshot raises ``StorageError``.
    """

    def get(self, key: bytes, snapshot: Snapshot | None = None) -> bytes | None:
        """The value of ``key``, or None if it is absent."""
        ...

    def write(self, batch: WriteBatch, sync: bool = False) -> None:
        """Commit every operation of ``batch`` atomically: after a crash either all or none are visible.

        ``sync=True`` returns only once the batch is on stable storage; without it a machine crash (not
        a process crash) may lose the most recent batches. A batch holding a key or value that is not
        ``bytes`` raises ``TypeError`` and writes nothing. An empty batch is a no-op.
        """
        ...

    def iterate(
        self,
        start: bytes = b"",
        stop: bytes | None = None,
        reverse: bool = False,
        snapshot: Snapshot | None = None,
    ) -> Iterator[tuple[bytes, bytes]]:
        """``(key, value)`` for every key in ``[start, stop)``, ascending, or descending if ``reverse``."""
        ...

    def keys(
        self,
        start: bytes = b"",
        stop: bytes | None = None,
        reverse: bool = False,
        snapshot: Snapshot | None = None,
    ) -> Iterator[bytes]:
        """Like ``iterate`` but only the keys, which saves copying values when counting or deleting."""
        ...

    def snapshot(self) -> Snapshot:
        """A read view of the current state, for reads that must agree with each other."""
        ...

    def approximate_size(self, start: bytes, stop: bytes) -> int:
        """Roughly how many bytes ``[start, stop)`` takes on disk; recent writes may not be counted yet."""
        ...

    def write_backlog(self) -> int:
        """How far the engine is behind with its background work, in LevelDB's measure: the files in level 0.
        LevelDB compacts them from 4 on, delays every write from 8 on and stops writes at 12 until its
        compaction catches up. An engine without such work says 0."""
        ...

    def files_per_level(self) -> list[int]:
        """How many table files each level of the store holds, level 0 first; empty for an engine without
        levels. A key found in a deeper level than another file covering it costs a read more."""
        ...

    def compact_range(self, start: bytes, stop: bytes) -> None:
        """Rewrite the keys in ``[start, stop)`` into the fewest levels they fit in, dropping what deletes
        and overwrites left behind; returns when done. Reads and writes go on meanwhile, from other
        threads. An engine without levels does nothing."""
        ...

    def close(self) -> None:
        """Release the store. Closing twice is allowed."""
        ...
