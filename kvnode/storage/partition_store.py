"""Partition replicas on top of an engine: the data, log and meta of each partition (see keys.py).

Every change of a partition's data goes through ``apply``, which puts the data, the log entry and the new
meta in one write batch, so after a crash the three always agree. Writes are added to a ``WriteBatch`` the
caller commits with ``engine.write``: the node's group commit gathers the changes of a reactor turn,
across partitions, into one batch, and committing everything through it keeps them in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

from kvnode.storage import keys
from kvnode.storage.history import tombstone
from kvnode.storage.interface import CorruptionError, Engine, Snapshot, WriteBatch
from kvnode.storage.records import (
    IN_HISTORY,
    LogEntry,
    PartitionMeta,
    decode_entry,
    decode_meta,
    encode_log_record,
    encode_meta,
)


class PartitionStore:
    """The operations the replication layer needs on the partitions a node holds."""

    def __init__(self, engine: Engine):
        self.engine = engine

    # -- reads ---------------------------------------------------------------------------------------

    def partitions(self) -> list[int]:
        """Every partition with a meta on this node, ascending."""
        start, stop = keys.kind_range(keys.META)
        return [keys.partition_of(key) for key in self.engine.keys(start, stop)]

    def read_meta(self, partition: int, snapshot: Snapshot | None = None) -> PartitionMeta:
        """The partition's meta; generation 0, seq 0 and no history if it has none yet."""
        raw = self.engine.get(keys.meta_key(partition), snapshot)
        return PartitionMeta() if raw is None else decode_meta(raw)

    def get(self, partition: int, user_key: bytes, snapshot: Snapshot | None = None) -> bytes | None:
        """The raw value record of a key (records.decode_value reads it), or None."""
        return self.engine.get(keys.data_key(partition, user_key), snapshot)

    def iterate_data(
        self,
        partition: int,
        start: bytes = b"",
        stop: bytes | None = None,
        reverse: bool = False,
        snapshot: Snapshot | None = None,
    ) -> Iterator[tuple[bytes, bytes]]:
        """``(user_key, raw value record)`` for the partition's user keys in ``[start, stop)``."""
        prefix, partition_stop = keys.partition_range(keys.DATA, partition)
        items = self.engine.iterate(
            prefix + start, partition_stop if stop is None else prefix + stop, reverse, snapshot
        )
        cut = keys.PREFIX_LENGTH
        return ((key[cut:], value) for key, value in items)

    def count_keys(self, partition: int, snapshot: Snapshot | None = None) -> int:
        """How many user keys the partition holds (expired ones included); a scan of its keys."""
        start, stop = keys.partition_range(keys.DATA, partition)
        return sum(1 for _ in self.engine.keys(start, stop, snapshot=snapshot))

    def read_log(self, partition: int, from_seq: int, limit: int) -> list[LogEntry]:
        """Up to ``limit`` log entries from ``from_seq`` on, in seq order; fewer at the end of the log.

        The first entry is not ``from_seq`` if the log was trimmed past it: callers compare. The records
        of puts come from the history; where compaction removed one (an entry older than the retention
        window), the entries stop before it, as if the log were trimmed there.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        _, stop = keys.partition_range(keys.LOG, partition)
        entries = []
        for key, raw in islice(self.engine.iterate(keys.log_key(partition, from_seq), stop), limit):
            entry = decode_entry(raw)
            if entry.seq != keys.seq_of(key):
                raise CorruptionError(
                    f"partition {partition}: log key {keys.seq_of(key)} holds entry {entry.seq}"
                )
            entry = self._with_records(partition, entry)
            if entry is None:
                break
            entries.append(entry)
        return entries

    def _with_records(self, partition: int, entry: LogEntry) -> LogEntry | None:
        """The entry with the history's records in place of IN_HISTORY; None if one is gone."""
        ops = []
        for user_key, record in entry.ops:
            if record is IN_HISTORY:
                record = self.engine.get(keys.history_key(partition, user_key, entry.version))
                if record is None:
                    return None
            ops.append((user_key, record))
        return entry._replace(ops=tuple(ops))

    def first_log_seq(self, partition: int) -> int | None:
        """The oldest seq still in the partition's log, or None if the log is empty."""
        start, stop = keys.partition_range(keys.LOG, partition)
        first = next(self.engine.keys(start, stop), None)
        return None if first is None else keys.seq_of(first)

    # -- writes: added to a batch the caller commits --------------------------------------------------

    def apply(
        self,
        batch: WriteBatch,
        partition: int,
        entry: LogEntry,
        meta: PartitionMeta,
        log_record: bytes | None = None,
    ) -> None:
        """Add to ``batch`` the writes of one log entry: its operations on data keys and their history
        records at the entry's version, the entry itself under its log key, and ``meta``, the partition's
        meta once the entry is applied.

        The log keeps the entry without the records of its puts (``encode_log_record``): the history has
        them. ``log_record`` is that encoding when the caller already has it. The batch may gather entries
        of several partitions, and several consecutive entries of one partition, before one
        ``engine.write`` (group commit).
        """
        if meta.seq != entry.seq:
            raise ValueError(f"partition {partition}: meta at seq {meta.seq} for log entry {entry.seq}")
        prefix = keys.data_prefix(partition)
        put, delete = batch.put, batch.delete
        history_key, version = keys.history_key, entry.version
        deleted = None
        for user_key, record in entry.ops:
            if record is None:
                delete(prefix + user_key)
                if deleted is None:
                    deleted = tombstone(version)
                put(history_key(partition, user_key, version), deleted)
            else:
                put(prefix + user_key, record)
                put(history_key(partition, user_key, version), record)
        put(keys.log_key(partition, entry.seq), encode_log_record(entry) if log_record is None else log_record)
        put(keys.meta_key(partition), encode_meta(meta))

    def write_meta(self, batch: WriteBatch, partition: int, meta: PartitionMeta) -> None:
        """Add the partition's meta to ``batch``: a generation began without an entry (promotion), or a
        snapshot copy is complete."""
        batch.put(keys.meta_key(partition), encode_meta(meta))

    def put_data(self, batch: WriteBatch, partition: int, user_key: bytes, record: bytes) -> None:
        """Add one key's raw value record to ``batch`` without a log entry: a snapshot copy."""
        batch.put(keys.data_key(partition, user_key), record)

    def snapshot_rows(self, partition: int, snapshot: Snapshot | None = None) -> Iterator[tuple[bytes, bytes]]:
        """The partition's data and history for a snapshot copy: ``(row, raw)`` where ``row`` is the
        store key without its partition (``put_snapshot_row`` puts it back)."""
        for kind in (keys.DATA, keys.HISTORY):
            start, stop = keys.partition_range(kind, partition)
            for key, raw in self.engine.iterate(start, stop, snapshot=snapshot):
                yield kind + key[keys.PREFIX_LENGTH:], raw

    def put_snapshot_row(self, batch: WriteBatch, partition: int, row: bytes, raw: bytes) -> None:
        """Add one row of ``snapshot_rows`` to ``batch``."""
        kind = row[:1]
        if kind not in (keys.DATA, keys.HISTORY):
            raise CorruptionError(f"partition {partition}: snapshot row of unknown kind {kind!r}")
        batch.put(keys.partition_range(kind, partition)[0] + row[1:], raw)

    # The deletes below name the keys the engine holds when they are called: keys put earlier in the same,
    # not yet committed batch are not seen and survive.

    def trim_log(self, batch: WriteBatch, partition: int, up_to_seq: int) -> int:
        """Add to ``batch`` the deletion of the log entries up to and including ``up_to_seq``; returns
        how many.

        LevelDB keeps deleted keys as tombstones until compaction, and a scan from the start of the log
        (first_log_seq) steps over them, so trim in large steps rather than one entry at a time.
        """
        start, _ = keys.partition_range(keys.LOG, partition)
        return self._delete_range(batch, start, self._log_key_after(partition, up_to_seq))

    def truncate_log_after(self, batch: WriteBatch, partition: int, seq: int) -> int:
        """Add to ``batch`` the deletion of the log entries after ``seq``; returns how many.

        Data and meta are left alone: this does not undo what the deleted entries wrote to data keys. A
        replica whose applied entries diverge from the primary's (records.divergence_seq) is copied again
        from the primary (drop_partition, then a snapshot). We keep no undo records because they would
        cost a read and a second copy of every value on every write, to speed up a rare recovery; and a
        copy is needed anyway once the primary has trimmed its log past the divergence.
        """
        _, stop = keys.partition_range(keys.LOG, partition)
        return self._delete_range(batch, self._log_key_after(partition, seq), stop)

    def drop_partition(self, batch: WriteBatch, partition: int) -> int:
        """Add to ``batch`` the deletion of the partition's data, history, log and meta; returns how many
        keys.

        One batch, so a crash never leaves half a partition; it holds every key of the partition, so it
        costs memory in proportion to the key count.
        """
        count = 0
        for kind in (keys.DATA, keys.HISTORY, keys.LOG, keys.META):
            count += self._delete_range(batch, *keys.partition_range(kind, partition))
        return count

    def _delete_range(self, batch: WriteBatch, start: bytes, stop: bytes) -> int:
        delete = batch.delete
        count = 0
        for key in self.engine.keys(start, stop):
            delete(key)
            count += 1
        return count

    @staticmethod
    def _log_key_after(partition: int, seq: int) -> bytes:
        """The smallest log key of the partition above ``seq``."""
        if seq >= keys.MAX_SEQ:
            return keys.partition_range(keys.LOG, partition)[1]
        return keys.log_key(partition, seq + 1)
