"""The production engine: one LevelDB per node, through plyvel. The only module that imports plyvel."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from itertools import takewhile

import plyvel

from kvnode.storage.interface import ClosedOnExit, CorruptionError, Snapshot, StorageError, WriteBatch

MiB = 1024 * 1024
LEVELS = 7  # LevelDB's config::kNumLevels


class LevelDBSnapshot(ClosedOnExit):
    """A LevelDB snapshot: pins the versions it can see until closed."""

    __slots__ = ("_engine", "_snapshot")

    def __init__(self, engine: LevelDBEngine, snapshot: plyvel.Snapshot):
        self._engine = engine
        self._snapshot: plyvel.Snapshot | None = snapshot

    def close(self) -> None:
        if self._snapshot is not None:
            self._snapshot.close()
            self._snapshot = None


class LevelDBEngine(ClosedOnExit):
    """A LevelDB store at ``path`` (a directory), with a bloom filter and an LRU block cache.

    ``cache_bytes`` sizes the block cache, ``bloom_bits`` the bloom filter (bits per key; about 1% false
    positives at 10), which saves a disk read for most lookups of absent keys. ``write_buffer_bytes`` is
    the memtable size: larger absorbs write bursts with fewer level-0 files, at the cost of memory and a
    longer log replay at open. ``max_open_files`` bounds the table files LevelDB keeps open (its table
    cache): a read in a table that is not open opens it and reads its index and filter again.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        cache_bytes: int = 64 * MiB,
        bloom_bits: int = 10,
        create: bool = True,
        write_buffer_bytes: int = 16 * MiB,
        max_open_files: int = 1000,
    ):
        self.path = os.fspath(path)
        if create:
            # LevelDB creates the last directory only; --data-dir may name a fresh tree.
            try:
                os.makedirs(self.path, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create data directory {self.path}: {exc.strerror}") from None
        try:
            self._db = plyvel.DB(
                self.path,
                create_if_missing=create,
                bloom_filter_bits=bloom_bits,
                lru_cache_size=cache_bytes,
                write_buffer_size=write_buffer_bytes,
                max_open_files=max_open_files,
            )
        except plyvel.IOError as exc:
            message = _message(exc)
            if "lock " in message:
                raise StorageError(
                    f"data directory {self.path} is in use by another kvnode process (LevelDB lock held); "
                    "stop it or pick another --data-dir"
                ) from None
            raise StorageError(f"cannot open data directory {self.path}: {message}") from None
        except plyvel.CorruptionError as exc:
            raise CorruptionError(f"data directory {self.path} is corrupt: {_message(exc)}") from None
        except plyvel.Error as exc:
            # Typically "does not exist (create_if_missing is false)".
            raise StorageError(f"cannot open data directory {self.path}: {_message(exc)}") from None

    def get(self, key: bytes, snapshot: Snapshot | None = None) -> bytes | None:
        try:
            return self._reader(snapshot).get(key)
        except RuntimeError:
            raise self._closed_error(snapshot) from None
        except plyvel.Error as exc:
            raise _storage_error(exc) from None

    def write(self, batch: WriteBatch, sync: bool = False) -> None:
        if not batch.ops:
            return
        try:
            leveldb_batch = self._db.write_batch(sync=sync)
            put, delete = leveldb_batch.put, leveldb_batch.delete
            for key, value in batch.ops:
                if value is None:
                    delete(key)
                else:
                    put(key, value)
            leveldb_batch.write()
        except RuntimeError:
            raise self._closed_error(None) from None
        except plyvel.Error as exc:
            raise _storage_error(exc) from None

    def iterate(
        self,
        start: bytes = b"",
        stop: bytes | None = None,
        reverse: bool = False,
        snapshot: Snapshot | None = None,
    ) -> Iterator[tuple[bytes, bytes]]:
        if reverse and start:
            return takewhile(lambda item: item[0] >= start, self._iterator(None, stop, True, snapshot, True))
        return self._iterator(start, stop, reverse, snapshot, True)

    def keys(
        self,
        start: bytes = b"",
        stop: bytes | None = None,
        reverse: bool = False,
        snapshot: Snapshot | None = None,
    ) -> Iterator[bytes]:
        if reverse and start:
            return takewhile(lambda key: key >= start, self._iterator(None, stop, True, snapshot, False))
        return self._iterator(start, stop, reverse, snapshot, False)

    def snapshot(self) -> LevelDBSnapshot:
        try:
            return LevelDBSnapshot(self, self._db.snapshot())
        except RuntimeError:
            raise self._closed_error(None) from None

    def approximate_size(self, start: bytes, stop: bytes) -> int:
        try:
            return self._db.approximate_size(start, stop)
        except RuntimeError:
            raise self._closed_error(None) from None

    def write_backlog(self) -> int:
        # The group commit polls this (kvnode.commit): level 0 is all it needs.
        return self._files_at_level(0)

    def files_per_level(self) -> list[int]:
        return [self._files_at_level(level) for level in range(LEVELS)]

    def _files_at_level(self, level: int) -> int:
        try:
            return int(self._db.get_property(b"leveldb.num-files-at-level%d" % level))
        except RuntimeError:
            raise self._closed_error(None) from None

    def compact_range(self, start: bytes, stop: bytes) -> None:
        try:
            # Both bounds, always: plyvel's compact_range() without them compacts nothing (plyvel 1.5.1).
            self._db.compact_range(start=start, stop=stop)
        except RuntimeError:
            raise self._closed_error(None) from None
        except plyvel.Error as exc:
            raise _storage_error(exc) from None

    def close(self) -> None:
        self._db.close()

    def __repr__(self) -> str:
        return f"<LevelDBEngine {self.path}{' (closed)' if self._db.closed else ''}>"

    def _iterator(
        self,
        start: bytes | None,
        stop: bytes | None,
        reverse: bool,
        snapshot: Snapshot | None,
        include_value: bool,
    ) -> plyvel.Iterator:
        # plyvel 1.5 drops the first key of a reverse scan when it equals ``start``, so reverse scans
        # with a lower bound pass start=None here and stop at the bound themselves (see iterate, keys).
        try:
            return self._reader(snapshot).iterator(
                start=start or None, stop=stop, reverse=reverse, include_value=include_value
            )
        except RuntimeError:
            raise self._closed_error(snapshot) from None
        except plyvel.Error as exc:
            raise _storage_error(exc) from None

    def _reader(self, snapshot: Snapshot | None) -> plyvel.DB | plyvel.Snapshot:
        """The plyvel object to read through: the database, or the snapshot's LevelDB snapshot."""
        if snapshot is None:
            return self._db
        if not isinstance(snapshot, LevelDBSnapshot) or snapshot._engine is not self:
            raise StorageError("the snapshot was taken from another storage engine")
        if snapshot._snapshot is None:
            raise StorageError("the snapshot is closed")
        return snapshot._snapshot

    def _closed_error(self, snapshot: Snapshot | None) -> StorageError:
        # plyvel reports a closed database (or snapshot) as RuntimeError.
        if self._db.closed:
            return StorageError(f"the storage engine for {self.path} is closed")
        return StorageError("the snapshot is closed")


# File descriptors left for sockets, LevelDB's log and manifest, and everything else a node opens.
OTHER_FILES = 512


def table_files_allowed(wanted: int) -> int:
    """How many table files LevelDB may keep open: ``wanted``, or fewer if the process's file limit
    cannot be raised far enough. Raises the soft limit up to the hard one as needed; a table cache larger
    than the limit would make reads fail with "Too many open files" instead of reopening tables."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + OTHER_FILES
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(64, min(wanted, soft - OTHER_FILES))


def _message(exc: plyvel.Error) -> str:
    # plyvel passes LevelDB's status text as bytes.
    arg = exc.args[0] if exc.args else ""
    return arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)


def _storage_error(exc: plyvel.Error) -> StorageError:
    if isinstance(exc, plyvel.CorruptionError):
        return CorruptionError(f"LevelDB reports corruption: {_message(exc)}")
    return StorageError(f"LevelDB error: {_message(exc)}")
