"""An engine that keeps everything in memory, for fast unit tests of the layers above storage.

Values live in a dict and the keys in a sorted list (``bisect``), so a new key costs O(n): fine for
tests, not for production data.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator

from kvnode.storage.interface import ClosedOnExit, Snapshot, StorageError, WriteBatch


class _State:
    """One version of the map. Shared states are never mutated (see MemoryEngine._writable)."""

    __slots__ = ("values", "keys")

    def __init__(self, values: dict[bytes, bytes], keys: list[bytes]):
        self.values = values
        self.keys = keys


class MemorySnapshot(ClosedOnExit):
    __slots__ = ("_engine", "_state")

    def __init__(self, engine: MemoryEngine, state: _State):
        self._engine = engine
        self._state: _State | None = state

    def close(self) -> None:
        self._state = None


class MemoryEngine(ClosedOnExit):
    """The engine contract in memory.

    Snapshots and iterators hold a reference to the current state instead of a copy; the next write
    then copies the state before changing it (copy on write). So a write copies everything only if a
    snapshot or an iterator was taken since the previous write.
    """

    def __init__(self) -> None:
        self._state: _State | None = _State({}, [])
        # True while a snapshot or an iterator may still read the current state.
        self._shared = False

    def get(self, key: bytes, snapshot: Snapshot | None = None) -> bytes | None:
        # A point read finishes before any write, so it need not mark the state shared.
        state = self._live() if snapshot is None else self._read_state(snapshot)
        return state.values.get(key)

    def write(self, batch: WriteBatch, sync: bool = False) -> None:
        self._live()
        # Check everything first so that a bad operation leaves the store untouched, as in LevelDB.
        for key, value in batch.ops:
            if type(key) is not bytes or (value is not None and type(value) is not bytes):
                raise TypeError(
                    f"keys and values must be bytes, not {type(key).__name__} and {type(value).__name__}"
                )
        if not batch.ops:
            return
        state = self._writable()
        values, keys = state.values, state.keys
        for key, value in batch.ops:
            if value is None:
                if values.pop(key, None) is not None:
                    del keys[bisect_left(keys, key)]
            else:
                if key not in values:
                    insort(keys, key)
                values[key] = value

    def iterate(
        self,
        start: bytes = b"",
        stop: bytes | None = None,
        reverse: bool = False,
        snapshot: Snapshot | None = None,
    ) -> Iterator[tuple[bytes, bytes]]:
        state = self._read_state(snapshot)
        values = state.values
        return ((key, values[key]) for key in _scan(state.keys, start, stop, reverse))

    def keys(
        self,
        start: bytes = b"",
        stop: bytes | None = None,
        reverse: bool = False,
        snapshot: Snapshot | None = None,
    ) -> Iterator[bytes]:
        return _scan(self._read_state(snapshot).keys, start, stop, reverse)

    def snapshot(self) -> MemorySnapshot:
        return MemorySnapshot(self, self._shared_state())

    def approximate_size(self, start: bytes, stop: bytes) -> int:
        state = self._live()
        return sum(len(key) + len(state.values[key]) for key in _scan(state.keys, start, stop, False))

    def write_backlog(self) -> int:
        self._live()  # a closed engine refuses this too
        return 0

    def files_per_level(self) -> list[int]:
        self._live()
        return []

    def compact_range(self, start: bytes, stop: bytes) -> None:
        self._live()

    def close(self) -> None:
        self._state = None

    def __repr__(self) -> str:
        if self._state is None:
            return "<MemoryEngine (closed)>"
        return f"<MemoryEngine of {len(self._state.keys)} keys>"

    def _live(self) -> _State:
        if self._state is None:
            raise StorageError("the storage engine is closed")
        return self._state

    def _shared_state(self) -> _State:
        """The current state, for a reader that may outlive the next write."""
        state = self._live()
        self._shared = True
        return state

    def _writable(self) -> _State:
        state = self._live()
        if self._shared:
            state = self._state = _State(dict(state.values), list(state.keys))
            self._shared = False
        return state

    def _read_state(self, snapshot: Snapshot | None) -> _State:
        if snapshot is None:
            return self._shared_state()
        if not isinstance(snapshot, MemorySnapshot) or snapshot._engine is not self:
            raise StorageError("the snapshot was taken from another storage engine")
        self._live()
        if snapshot._state is None:
            raise StorageError("the snapshot is closed")
        return snapshot._state


def _scan(keys: list[bytes], start: bytes, stop: bytes | None, reverse: bool) -> Iterator[bytes]:
    """The keys in [start, stop) of a sorted list that will not change."""
    low = bisect_left(keys, start)
    high = len(keys) if stop is None else bisect_left(keys, stop)
    if reverse:
        return (keys[i] for i in range(high - 1, low - 1, -1))
    return (keys[i] for i in range(low, high))
