"""PartitionStore over every engine: applying log entries, reading and cutting the log, dropping."""

import pytest

from kvnode.storage import (
    CorruptionError,
    LevelDBEngine,
    LogEntry,
    MemoryEngine,
    PartitionMeta,
    PartitionStore,
    WriteBatch,
    decode_value,
    encode_entry,
    encode_value,
    keys,
)
from kvnode.storage.records import IN_HISTORY, decode_entry

LAST_PARTITION = 2**32 - 1


@pytest.fixture(params=["memory", "leveldb"])
def store(request, tmp_path):
    engine = MemoryEngine() if request.param == "memory" else LevelDBEngine(tmp_path, cache_bytes=1 << 20)
    yield PartitionStore(engine)
    engine.close()


def commit(store, fill, sync=False):
    batch = WriteBatch()
    result = fill(batch)
    store.engine.write(batch, sync=sync)
    return result


class Writer:
    """Appends entries to one partition the way a primary does, tracking its meta."""

    def __init__(self, store, partition, generation=1):
        self.store = store
        self.partition = partition
        self.meta = store.read_meta(partition).begin_generation(generation)
        self.version = 100

    def entry(self, *ops):
        """The next entry: ops are (key, value) to set or (key, None) to delete."""
        self.version += 1
        seq = self.meta.seq + 1
        self.meta = self.meta.advance(seq)
        encoded = tuple((k, None if v is None else encode_value(self.version, v)) for k, v in ops)
        return LogEntry(self.meta.generation, seq, self.version, encoded), self.meta

    def add(self, batch, *ops):
        entry, meta = self.entry(*ops)
        self.store.apply(batch, self.partition, entry, meta)
        return entry

    def write(self, *ops):
        return commit(self.store, lambda batch: self.add(batch, *ops))


def value(store, partition, key):
    raw = store.get(partition, key)
    return None if raw is None else decode_value(raw).value


def data(store, partition, **kwargs):
    return [(key, decode_value(raw).value) for key, raw in store.iterate_data(partition, **kwargs)]


# -- apply --------------------------------------------------------------------------------------------


def test_a_partition_without_meta_is_at_generation_zero_seq_zero(store):
    assert store.read_meta(3) == PartitionMeta(0, 0, ())
    assert store.first_log_seq(3) is None
    assert store.read_log(3, 1, 10) == []
    assert store.count_keys(3) == 0
    assert store.partitions() == []


def test_apply_writes_data_log_entry_and_meta_together(store):
    writer = Writer(store, 7)
    first = writer.write((b"a", b"1"), (b"b", b"2"))
    second = writer.write((b"a", None), (b"c", b"3"))
    assert value(store, 7, b"a") is None
    assert value(store, 7, b"b") == b"2"
    assert decode_value(store.get(7, b"c")).version == second.version
    assert store.read_meta(7) == PartitionMeta(1, 2, ((1, 0),))
    assert store.read_log(7, 1, 10) == [first, second]
    assert store.partitions() == [7]


def test_apply_refuses_a_meta_that_is_not_at_the_entrys_seq(store):
    entry, meta = Writer(store, 1).entry((b"k", b"v"))
    with pytest.raises(ValueError, match="meta at seq 0 for log entry 1"):
        store.apply(WriteBatch(), 1, entry, meta.at(0))


def test_the_log_leaves_the_values_to_the_history(store):
    writer = Writer(store, 1)
    entry = writer.write((b"k", b"v" * 1000), (b"gone", None))
    stored = store.engine.get(keys.log_key(1, entry.seq))
    assert len(stored) < 100, "a stored log entry holds no value"
    assert decode_entry(stored).ops == ((b"k", IN_HISTORY), (b"gone", None))
    assert store.read_log(1, 1, 10) == [entry]


def test_a_log_read_stops_where_compaction_took_a_record(store):
    writer = Writer(store, 1)
    first = writer.write((b"a", b"1"))
    second = writer.write((b"b", b"2"))
    writer.write((b"c", b"3"))
    commit(store, lambda batch: batch.delete(keys.history_key(1, b"b", second.version)))
    assert store.read_log(1, 1, 10) == [first]
    assert store.read_log(1, 2, 10) == []


def test_log_entries_stored_with_their_records_still_read(store):
    # Entries written before the log left values to the history hold their records.
    entry, meta = Writer(store, 1).entry((b"k", b"v"))
    commit(store, lambda batch: store.apply(batch, 1, entry, meta))
    commit(store, lambda batch: batch.put(keys.log_key(1, 1), encode_entry(entry)))
    assert store.read_log(1, 1, 10) == [entry]


def test_one_batch_commits_entries_of_several_partitions_or_none(store):
    writers = {p: Writer(store, p) for p in (0, 5, LAST_PARTITION)}
    batch = WriteBatch()
    for p, writer in writers.items():
        writer.add(batch, (b"k", b"%d" % p))
        writer.add(batch, (b"k", b"%d again" % p), (b"other", b"x"))
    # Nothing is visible before the batch is written.
    assert store.partitions() == []
    assert value(store, 5, b"k") is None
    store.engine.write(batch, sync=True)
    assert store.partitions() == [0, 5, LAST_PARTITION]
    for p in writers:
        assert value(store, p, b"k") == b"%d again" % p
        assert store.read_meta(p).seq == 2
        assert [entry.seq for entry in store.read_log(p, 1, 10)] == [1, 2]
        assert store.count_keys(p) == 2


def test_a_new_generation_is_recorded_by_write_meta(store):
    writer = Writer(store, 2)
    writer.write((b"k", b"1"))
    meta = writer.meta.begin_generation(2)
    commit(store, lambda batch: store.write_meta(batch, 2, meta))
    assert store.read_meta(2) == PartitionMeta(2, 1, ((1, 0), (2, 1)))


def test_put_data_writes_a_record_without_a_log_entry(store):
    commit(store, lambda batch: store.put_data(batch, 4, b"k", encode_value(9, b"copied")))
    assert value(store, 4, b"k") == b"copied"
    assert store.first_log_seq(4) is None
    assert store.read_meta(4) == PartitionMeta()


# -- reading data -------------------------------------------------------------------------------------


def test_iterate_data_stays_inside_its_partition(store):
    for p in (4, 5, 6):
        Writer(store, p).write(*((bytes([k]), b"%d" % p) for k in (0x00, 0x61, 0x62, 0xFF)))
    assert data(store, 5) == [(b"\x00", b"5"), (b"a", b"5"), (b"b", b"5"), (b"\xff", b"5")]
    assert data(store, 5, reverse=True) == [(b"\xff", b"5"), (b"b", b"5"), (b"a", b"5"), (b"\x00", b"5")]
    assert data(store, 5, start=b"a", stop=b"b") == [(b"a", b"5")]
    assert data(store, 5, start=b"a", stop=b"b", reverse=True) == [(b"a", b"5")]
    assert data(store, 5, start=b"b") == [(b"b", b"5"), (b"\xff", b"5")]
    assert data(store, 5, stop=b"b", reverse=True) == [(b"a", b"5"), (b"\x00", b"5")]
    assert store.count_keys(5) == 4


def test_the_last_partition_is_iterated_to_its_end(store):
    Writer(store, LAST_PARTITION).write((b"\xff\xff", b"last"))
    Writer(store, LAST_PARTITION - 1).write((b"\xff\xff", b"before"))
    assert data(store, LAST_PARTITION) == [(b"\xff\xff", b"last")]
    assert data(store, LAST_PARTITION, reverse=True) == [(b"\xff\xff", b"last")]
    assert store.count_keys(LAST_PARTITION) == 1


def test_reads_through_a_snapshot_ignore_later_writes(store):
    writer = Writer(store, 1)
    writer.write((b"a", b"1"))
    with store.engine.snapshot() as snapshot:
        writer.write((b"a", b"2"), (b"b", b"2"))
        assert data(store, 1, snapshot=snapshot) == [(b"a", b"1")]
        assert store.count_keys(1, snapshot=snapshot) == 1
        assert store.read_meta(1, snapshot=snapshot).seq == 1
        assert decode_value(store.get(1, b"a", snapshot)).value == b"1"
    assert data(store, 1) == [(b"a", b"2"), (b"b", b"2")]


# -- the log ------------------------------------------------------------------------------------------


def fill_log(store, partition, count):
    writer = Writer(store, partition)
    return [writer.write((b"k%d" % i, b"v")) for i in range(count)]


def test_read_log_pages_through_the_log(store):
    entries = fill_log(store, 3, 10)
    fill_log(store, 4, 3)
    assert store.read_log(3, 1, 4) == entries[:4]
    assert store.read_log(3, 5, 4) == entries[4:8]
    assert store.read_log(3, 9, 4) == entries[8:]
    assert store.read_log(3, 11, 4) == []
    with pytest.raises(ValueError, match="limit"):
        store.read_log(3, 1, 0)


def test_trim_log_drops_old_entries(store):
    entries = fill_log(store, 3, 10)
    fill_log(store, 4, 3)
    assert store.first_log_seq(3) == 1
    assert commit(store, lambda batch: store.trim_log(batch, 3, 4)) == 4
    assert store.first_log_seq(3) == 5
    # Reading from a trimmed seq starts at the oldest entry left.
    assert store.read_log(3, 1, 2) == entries[4:6]
    assert commit(store, lambda batch: store.trim_log(batch, 3, 4)) == 0
    assert commit(store, lambda batch: store.trim_log(batch, 3, keys.MAX_SEQ)) == 6
    assert store.first_log_seq(3) is None
    # Data, meta and the next partition's log are untouched.
    assert store.count_keys(3) == 10
    assert store.read_meta(3).seq == 10
    assert store.first_log_seq(4) == 1


def test_truncate_log_after_drops_newer_entries_only(store):
    entries = fill_log(store, 3, 10)
    fill_log(store, 4, 3)
    assert commit(store, lambda batch: store.truncate_log_after(batch, 3, 6)) == 4
    assert store.read_log(3, 1, 100) == entries[:6]
    assert commit(store, lambda batch: store.truncate_log_after(batch, 3, keys.MAX_SEQ)) == 0
    assert commit(store, lambda batch: store.truncate_log_after(batch, 3, 0)) == 6
    assert store.first_log_seq(3) is None
    # Data and meta are kept: undoing applied writes takes a copy from the primary.
    assert store.count_keys(3) == 10
    assert store.read_meta(3).seq == 10
    assert len(store.read_log(4, 1, 100)) == 3


def test_a_log_key_holding_another_seq_is_corrupt(store):
    entry, _ = Writer(store, 1).entry((b"k", b"v"))
    batch = WriteBatch()
    batch.put(keys.log_key(1, 5), encode_entry(entry))
    store.engine.write(batch)
    with pytest.raises(CorruptionError, match="log key 5 holds entry 1"):
        store.read_log(1, 1, 10)


# -- dropping -----------------------------------------------------------------------------------------


def test_drop_partition_removes_data_history_log_and_meta_of_that_partition_only(store):
    fill_log(store, 2, 3)
    fill_log(store, 3, 5)
    fill_log(store, 4, 2)
    # five data keys, their five history records, five log entries and the meta
    assert commit(store, lambda batch: store.drop_partition(batch, 3), sync=True) == 5 + 5 + 5 + 1
    assert store.read_meta(3) == PartitionMeta()
    assert store.count_keys(3) == 0
    assert store.first_log_seq(3) is None
    assert store.partitions() == [2, 4]
    assert (store.count_keys(2), store.count_keys(4)) == (3, 2)
    assert (store.read_meta(2).seq, store.read_meta(4).seq) == (3, 2)
    assert commit(store, lambda batch: store.drop_partition(batch, 3)) == 0
