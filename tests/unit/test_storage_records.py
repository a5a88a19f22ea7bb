"""Binary records, the key schema, and the generation history arithmetic."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvnode.storage import CorruptionError, MemoryEngine, StorageError, WriteBatch, keys
from kvnode.storage.records import (
    IN_HISTORY,
    KIND_STRING,
    KIND_TOMBSTONE,
    LogEntry,
    PartitionMeta,
    ValueRecord,
    decode_entry,
    decode_meta,
    decode_value,
    divergence_seq,
    encode_entry,
    encode_log_record,
    encode_meta,
    encode_value,
    expire_at_of,
    generation_of,
    kind_of,
    value_of,
    version_of,
)

u64 = st.integers(0, 2**64 - 1)
u32 = st.integers(0, 2**32 - 1)

# -- value records ------------------------------------------------------------------------------------


@given(version=u64, value=st.binary(), expire_at_ms=u64, kind=st.sampled_from([KIND_STRING, KIND_TOMBSTONE]))
def test_value_records_round_trip(version, value, expire_at_ms, kind):
    raw = encode_value(version, value, expire_at_ms, kind)
    assert decode_value(raw) == ValueRecord(kind, version, expire_at_ms, value)
    assert (kind_of(raw), version_of(raw), expire_at_of(raw), value_of(raw)) == (
        kind, version, expire_at_ms, value
    )


def test_value_record_layout_is_kind_version_expiry_value():
    raw = encode_value(0x0102030405060708, b"hello", expire_at_ms=9)
    assert raw == b"\x00" + bytes(range(1, 9)) + (9).to_bytes(8, "big") + b"hello"
    assert encode_value(5, b"") == b"\x00" + (5).to_bytes(8, "big") + bytes(8)


def test_a_value_record_shorter_than_its_header_is_corrupt():
    with pytest.raises(CorruptionError, match="shorter than its header"):
        decode_value(b"\x00" * 16)


# -- log entries --------------------------------------------------------------------------------------

ops = st.lists(st.tuples(st.binary(max_size=20), st.none() | st.binary(max_size=40)), max_size=6)


@given(generation=u64, seq=u64, version=u64, ops=ops)
def test_log_entries_round_trip(generation, seq, version, ops):
    entry = LogEntry(generation, seq, version, tuple(ops))
    assert decode_entry(encode_entry(entry)) == entry


@given(generation=u64, seq=u64, version=u64, ops=ops)
def test_stored_log_entries_keep_everything_but_the_records_of_puts(generation, seq, version, ops):
    entry = LogEntry(generation, seq, version, ops)
    stored = decode_entry(encode_log_record(entry))
    assert stored._replace(ops=()) == entry._replace(ops=())
    assert stored.ops == tuple((key, None if record is None else IN_HISTORY) for key, record in ops)


def test_a_delete_and_an_empty_value_are_different_operations():
    entry = LogEntry(1, 2, 3, ((b"gone", None), (b"empty", b""), (b"", b"x")))
    assert decode_entry(encode_entry(entry)).ops == ((b"gone", None), (b"empty", b""), (b"", b"x"))


def test_every_truncation_of_a_log_entry_is_corrupt():
    raw = encode_entry(LogEntry(1, 2, 3, ((b"key", encode_value(3, b"value")), (b"other", None))))
    for length in range(len(raw)):
        with pytest.raises(CorruptionError):
            decode_entry(raw[:length])


def test_trailing_bytes_after_a_log_entry_are_corrupt():
    raw = encode_entry(LogEntry(1, 2, 3, ((b"key", b"v"),)))
    with pytest.raises(CorruptionError, match="does not match its 1 operations"):
        decode_entry(raw + b"\x00")


# -- partition meta -----------------------------------------------------------------------------------


@st.composite
def metas(draw):
    """A well-formed meta: increasing generations, non-decreasing start seqs, seq at or after the last."""
    generations = sorted(draw(st.sets(st.integers(1, 2**40), max_size=6)))
    starts = sorted(draw(st.lists(st.integers(0, 2**40), min_size=len(generations), max_size=len(generations))))
    history = tuple(zip(generations, starts))
    seq = draw(st.integers(starts[-1] if starts else 0, 2**41))
    return PartitionMeta(generations[-1] if generations else 0, seq, history)


@given(metas())
def test_partition_meta_round_trips(meta):
    assert decode_meta(encode_meta(meta)) == meta


def test_an_empty_meta_is_generation_zero_at_seq_zero():
    assert PartitionMeta() == PartitionMeta(0, 0, ())
    assert decode_meta(encode_meta(PartitionMeta())) == PartitionMeta()


@pytest.mark.parametrize("length", [0, 8, 15, 17, 31, 40])
def test_a_meta_with_a_partial_field_is_corrupt(length):
    with pytest.raises(CorruptionError, match="partial field"):
        decode_meta(bytes(length))


def test_generations_begin_after_the_last_entry():
    meta = PartitionMeta().begin_generation(1)
    assert meta == PartitionMeta(1, 0, ((1, 0),))
    meta = meta.advance(1).advance(2)
    assert meta == PartitionMeta(1, 2, ((1, 0),))
    meta = meta.begin_generation(3, at_seq=2)
    assert meta == PartitionMeta(3, 2, ((1, 0), (3, 2)))
    with pytest.raises(ValueError, match="does not follow generation 3"):
        meta.begin_generation(3)
    with pytest.raises(ValueError, match="must begin after the last applied seq 2"):
        meta.begin_generation(4, at_seq=1)


def test_advance_begins_a_newer_generation_and_refuses_gaps_and_older_ones():
    meta = PartitionMeta(1, 5, ((1, 0),))
    assert meta.advance(6, 1) == PartitionMeta(1, 6, ((1, 0),))
    assert meta.advance(6, 4) == PartitionMeta(4, 6, ((1, 0), (4, 5)))
    with pytest.raises(ValueError, match="does not follow seq 5"):
        meta.advance(7)
    with pytest.raises(ValueError, match="older than 4"):
        meta.advance(6, 4).advance(7, 3)


def test_generation_at_names_the_generation_that_wrote_a_seq():
    # Generation 2 wrote nothing: 3 began where 2 did.
    meta = PartitionMeta(3, 9, ((1, 0), (2, 4), (3, 4)))
    assert [meta.generation_at(seq) for seq in range(10)] == [0, 1, 1, 1, 1, 3, 3, 3, 3, 3]
    assert generation_of((), 5) == 0


def test_at_is_the_meta_as_it_was_at_an_earlier_seq():
    meta = PartitionMeta(3, 9, ((1, 0), (2, 4), (3, 6)))
    assert meta.at(9) == meta
    assert meta.at(6) == PartitionMeta(3, 6, ((1, 0), (2, 4), (3, 6)))
    assert meta.at(5) == PartitionMeta(2, 5, ((1, 0), (2, 4)))
    assert meta.at(3) == PartitionMeta(1, 3, ((1, 0),))
    assert meta.at(0) == PartitionMeta(1, 0, ((1, 0),))
    assert PartitionMeta(2, 3, ((2, 1),)).at(0) == PartitionMeta()
    with pytest.raises(ValueError, match="ends at 9"):
        meta.at(10)


# -- divergence ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "local_history, local_seq, leader_history, expected",
    [
        # Same generation, replica behind or level: keep everything.
        (((1, 0),), 10, ((1, 0),), 10),
        ((), 0, ((1, 0),), 0),
        # The leader moved on; the replica has none of the newer entries.
        (((1, 0),), 10, ((1, 0), (2, 15)), 10),
        # An old primary wrote 16..20 that never reached the new primary, which began at 15.
        (((1, 0),), 20, ((1, 0), (2, 15)), 15),
        # The replica followed a short-lived primary (generation 2, from 10) the leader never saw.
        (((1, 0), (2, 10)), 15, ((1, 0), (3, 8)), 8),
        (((1, 0), (2, 10)), 15, ((1, 0), (3, 12)), 10),
        # Generations without entries do not matter.
        (((1, 0), (3, 10)), 14, ((1, 0), (2, 10), (3, 10)), 14),
        (((1, 0), (2, 5), (3, 5)), 9, ((1, 0), (3, 5), (4, 20)), 9),
        # Diverged from the first entry.
        (((2, 0),), 5, ((1, 0), (3, 7)), 0),
        # A log without any generation cannot match.
        ((), 5, ((1, 0),), 0),
    ],
)
def test_divergence_seq(local_history, local_seq, leader_history, expected):
    assert divergence_seq(local_history, local_seq, leader_history) == expected


@st.composite
def replicated_logs(draw):
    """A leader's log and a replica's log, built the way the protocol builds them.

    A log is the list of the generations that wrote its entries 1..n. The primary of each generation
    starts from a prefix of some earlier primary's log (what it had replicated) and appends entries of
    its generation, possibly none. The replica holds a prefix of some primary's log; the leader is the
    primary of the newest generation. Cuts lean towards whole logs so that logs share long prefixes.
    """

    def cut(log):
        return draw(st.just(len(log)) | st.integers(0, len(log)))

    def pick(logs):
        return logs[draw(st.integers(0, len(logs) - 1))]

    finals: list[tuple[list[int], tuple[tuple[int, int], ...]]] = [([], ())]
    for generation in range(1, draw(st.integers(1, 6)) + 1):
        base_log, base_history = pick(finals[1:] or finals)
        start = cut(base_log)
        history = tuple(pair for pair in base_history if pair[1] <= start) + ((generation, start),)
        log = base_log[:start] + [generation] * draw(st.integers(0, 4))
        finals.append((log, history))
    leader_log, leader_history = finals[-1]
    source_log, source_history = pick(finals[1:])
    length = cut(source_log)
    local_history = tuple(pair for pair in source_history if pair[1] <= length)
    return source_log[:length], local_history, leader_log, leader_history


@settings(max_examples=200)
@given(replicated_logs())
def test_divergence_seq_is_the_length_of_the_common_prefix(logs):
    local_log, local_history, leader_log, leader_history = logs
    common = 0
    while common < min(len(local_log), len(leader_log)) and local_log[common] == leader_log[common]:
        common += 1
    assert divergence_seq(local_history, len(local_log), leader_history) == common


# -- key schema ---------------------------------------------------------------------------------------

partitions = st.integers(0, 2**32 - 1)


def test_key_layout():
    assert keys.data_key(1, b"user") == b"d\x00\x00\x00\x01user"
    assert keys.log_key(258, 3) == b"l\x00\x00\x01\x02" + (3).to_bytes(8, "big")
    assert keys.meta_key(7) == b"p\x00\x00\x00\x07"
    assert keys.data_prefix(1) == b"d\x00\x00\x00\x01"
    assert keys.log_prefix(1) == b"l\x00\x00\x00\x01"
    assert keys.SCHEMA_KEY == b"\x00schema"


@given(partition=partitions, user_key=st.binary(), seq=u64)
def test_keys_decode(partition, user_key, seq):
    assert keys.user_key_of(keys.data_key(partition, user_key)) == user_key
    assert keys.seq_of(keys.log_key(partition, seq)) == seq
    for key in (keys.data_key(partition, user_key), keys.log_key(partition, seq), keys.meta_key(partition)):
        assert keys.partition_of(key) == partition


@given(a=st.tuples(partitions, st.binary(max_size=6)), b=st.tuples(partitions, st.binary(max_size=6)))
def test_data_keys_sort_by_partition_then_user_key(a, b):
    # So a partition's keys are contiguous, in user key byte order, and never interleave with another's.
    assert (keys.data_key(*a) < keys.data_key(*b)) == (a < b)


@given(a=st.tuples(partitions, u64), b=st.tuples(partitions, u64))
def test_log_keys_sort_by_partition_then_seq(a, b):
    assert (keys.log_key(*a) < keys.log_key(*b)) == (a < b)


@given(partition=partitions, other=partitions, user_key=st.binary(), seq=u64)
def test_a_partition_range_holds_exactly_that_partitions_keys(partition, other, user_key, seq):
    for kind, key in (
        (keys.DATA, keys.data_key(other, user_key)),
        (keys.LOG, keys.log_key(other, seq)),
        (keys.META, keys.meta_key(other)),
    ):
        start, stop = keys.partition_range(kind, partition)
        assert (start <= key < stop) == (other == partition)
    # Other kinds of key are outside the range whatever their partition.
    start, stop = keys.partition_range(keys.DATA, partition)
    assert not start <= keys.log_key(partition, seq) < stop
    assert not start <= keys.meta_key(partition) < stop
    assert not start <= keys.SCHEMA_KEY < stop


def test_the_last_partition_range_ends_at_the_next_kind():
    assert keys.partition_range(keys.DATA, 2**32 - 1) == (b"d\xff\xff\xff\xff", b"e")
    assert keys.partition_range(keys.LOG, 5) == (b"l\x00\x00\x00\x05", b"l\x00\x00\x00\x06")
    assert keys.partition_range(keys.LOG, 255) == (b"l\x00\x00\x00\xff", b"l\x00\x00\x01")
    with pytest.raises(ValueError, match="one prefix byte"):
        keys.partition_range(b"dd", 0)
    with pytest.raises(ValueError, match="no successor"):
        keys.prefix_successor(b"\xff\xff")


def test_check_schema_marks_an_empty_store():
    engine = MemoryEngine()
    keys.check_schema(engine, "/data")
    assert engine.get(keys.SCHEMA_KEY) == b"2"
    keys.check_schema(engine, "/data")


def put(engine, key, value):
    batch = WriteBatch()
    batch.put(key, value)
    engine.write(batch)


@pytest.mark.parametrize(
    "contents, message",
    [
        ({keys.SCHEMA_KEY: b"3"}, "data directory /data has storage schema 3; this kvnode reads schema 2"),
        ({keys.SCHEMA_KEY: b"1"}, "data directory /data has storage schema 1, which keeps no version history"),
        ({keys.SCHEMA_KEY: b"\xff"}, "data directory /data has an unreadable storage schema marker"),
        ({b"d\x00\x00\x00\x00k": b"v"}, "data directory /data holds data but no storage schema marker"),
    ],
)
def test_check_schema_refuses_another_layout(contents, message):
    engine = MemoryEngine()
    for key, value in contents.items():
        put(engine, key, value)
    with pytest.raises(StorageError) as raised:
        keys.check_schema(engine, "/data")
    assert raised.value.message.startswith(message)
