"""The version history: key encoding order, reads as of a version, snapshot rows, compaction."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcommon.hlc import LOGICAL_BITS
from kvnode.storage import LevelDBEngine, LogEntry, MemoryEngine, PartitionStore, WriteBatch, encode_value, keys
from kvnode.storage.history import compactable, is_live, items_as_of, read_as_of
from kvnode.storage.records import KIND_TOMBSTONE, kind_of, value_of

user_keys = st.binary(max_size=8)
versions = st.integers(min_value=0, max_value=keys.MAX_VERSION)


@given(a=user_keys, b=user_keys, va=versions, vb=versions)
def test_history_keys_sort_by_user_key_then_newest_version_first(a, b, va, vb):
    ka, kb = keys.history_key(7, a, va), keys.history_key(7, b, vb)
    if a != b:
        assert (ka < kb) == (a < b)
    else:
        assert (ka < kb) == (va > vb)
    assert keys.split_history_key(ka) == (a, va)


@given(key=user_keys, bound=user_keys, version=versions)
def test_a_history_bound_splits_keys_as_the_user_key_order_does(key, bound, version):
    assert (keys.history_key(3, key, version) >= keys.history_bound(3, bound)) == (key >= bound)
    assert keys.history_key(3, key, version) < keys.history_bound(3, None)
    assert keys.history_key(4, key, version) > keys.history_bound(3, None)


@pytest.fixture(params=["memory", "leveldb"])
def store(request, tmp_path):
    engine = MemoryEngine() if request.param == "memory" else LevelDBEngine(tmp_path, cache_bytes=1 << 20)
    yield PartitionStore(engine)
    engine.close()


def v(ms, logical=0):
    return (ms << LOGICAL_BITS) | logical


class Writer:
    def __init__(self, store, partition=1):
        self.store, self.partition = store, partition
        self.meta = store.read_meta(partition).begin_generation(1)

    def write(self, version, *ops, expire_at_ms=0):
        """Apply one entry at ``version``: ops are (key, value), or (key, None) for a delete."""
        seq = self.meta.seq + 1
        self.meta = self.meta.advance(seq)
        encoded = tuple((k, None if val is None else encode_value(version, val, expire_at_ms)) for k, val in ops)
        batch = WriteBatch()
        self.store.apply(batch, self.partition, LogEntry(1, seq, version, encoded), self.meta)
        self.store.engine.write(batch)


def live_value(raw, version):
    return value_of(raw) if raw is not None and is_live(raw, version) else None


def test_reads_as_of_a_version_see_the_newest_write_at_or_below_it(store):
    w = Writer(store)
    w.write(v(10), (b"k", b"one"))
    w.write(v(20), (b"k", b"two"), (b"other", b"x"))
    w.write(v(30), (b"k", None))
    w.write(v(40), (b"k", b"four"))
    engine = store.engine
    reads = {t: live_value(read_as_of(engine, 1, b"k", t), t) for t in (v(5), v(10), v(15), v(20), v(30), v(35),
                                                                         v(40), v(99))}
    assert reads == {v(5): None, v(10): b"one", v(15): b"one", v(20): b"two", v(30): None, v(35): None,
                     v(40): b"four", v(99): b"four"}
    assert kind_of(read_as_of(engine, 1, b"k", v(30))) == KIND_TOMBSTONE
    # Another partition, and a key that is a prefix of another, do not mix.
    assert read_as_of(engine, 2, b"k", v(99)) is None
    assert read_as_of(engine, 1, b"", v(99)) is None
    # The newest value stays in the data key, for GET.
    assert value_of(store.get(1, b"k")) == b"four"


def test_expired_records_read_as_absent_from_their_expiry_time(store):
    w = Writer(store)
    w.write(v(1000), (b"k", b"short"), expire_at_ms=2000)
    assert live_value(read_as_of(store.engine, 1, b"k", v(1999)), v(1999)) == b"short"
    assert live_value(read_as_of(store.engine, 1, b"k", v(2000)), v(2000)) is None


@pytest.mark.parametrize("jump_after", [0, 1, 8])
def test_ranges_as_of_a_version_in_both_directions(store, jump_after):
    w = Writer(store)
    w.write(v(10), (b"a", b"a1"), (b"a\x00", b"nul1"), (b"b", b"b1"), (b"c", b"c1"))
    w.write(v(20), (b"a", b"a2"), (b"b", None), (b"d", b"d2"))
    w.write(v(30), (b"a\x00", b"nul3"), (b"c", b"c3"))
    other = Writer(store, 2)
    other.write(v(15), (b"b", b"elsewhere"))

    def live(start, end, version, reverse=False):
        items = items_as_of(store.engine, 1, start, end, version, reverse, jump_after=jump_after)
        return [(k, value_of(raw)) for k, raw in items if is_live(raw, version)]

    assert live(b"", None, v(10)) == [(b"a", b"a1"), (b"a\x00", b"nul1"), (b"b", b"b1"), (b"c", b"c1")]
    assert live(b"", None, v(25)) == [(b"a", b"a2"), (b"a\x00", b"nul1"), (b"c", b"c1"), (b"d", b"d2")]
    assert live(b"", None, v(30)) == [(b"a", b"a2"), (b"a\x00", b"nul3"), (b"c", b"c3"), (b"d", b"d2")]
    assert live(b"", None, v(30), reverse=True) == list(reversed(live(b"", None, v(30))))
    assert live(b"", None, v(25), reverse=True) == list(reversed(live(b"", None, v(25))))
    assert live(b"a\x00", b"c", v(10)) == [(b"a\x00", b"nul1"), (b"b", b"b1")]
    assert live(b"a\x00", b"c", v(10), reverse=True) == [(b"b", b"b1"), (b"a\x00", b"nul1")]
    assert live(b"c", b"c", v(30)) == []
    assert live(b"", None, v(5)) == []


@pytest.mark.parametrize("jump_after", [0, 2, 1000])
@pytest.mark.parametrize("reverse", [False, True])
def test_ranges_over_keys_with_many_versions_give_each_key_once(store, jump_after, reverse):
    w = Writer(store)
    for t in range(1, 41):
        w.write(v(t), (b"hot", b"h%d" % t), (b"hot\x00", b"n%d" % t), *([(b"cold", b"c")] if t == 1 else []))
    w.write(v(50), (b"hot", None), (b"new", b"x"))
    for version, expected in [
        (v(25), [(b"cold", b"c"), (b"hot", b"h25"), (b"hot\x00", b"n25")]),
        (v(40), [(b"cold", b"c"), (b"hot", b"h40"), (b"hot\x00", b"n40")]),
        (v(60), [(b"cold", b"c"), (b"hot\x00", b"n40"), (b"new", b"x")]),
        (v(1), [(b"cold", b"c"), (b"hot", b"h1"), (b"hot\x00", b"n1")]),
    ]:
        items = items_as_of(store.engine, 1, b"", None, version, reverse, jump_after=jump_after)
        found = [(k, value_of(raw)) for k, raw in items if is_live(raw, version)]
        assert found == (expected[::-1] if reverse else expected), version >> LOGICAL_BITS


def test_snapshot_rows_copy_data_and_history_to_another_partition_store(store, tmp_path):
    w = Writer(store, 3)
    w.write(v(10), (b"k", b"one"), (b"gone", b"x"))
    w.write(v(20), (b"k", b"two"), (b"gone", None))
    copy = PartitionStore(MemoryEngine())
    batch = WriteBatch()
    for row, raw in store.snapshot_rows(3):
        copy.put_snapshot_row(batch, 3, row, raw)
    copy.engine.write(batch)
    assert list(copy.engine.iterate()) == [kv for kv in store.engine.iterate() if keys.partition_of(kv[0]) == 3
                                           and kv[0][:1] in (keys.DATA, keys.HISTORY)]
    assert live_value(read_as_of(copy.engine, 3, b"gone", v(15)), v(15)) == b"x"


def compact(store, partition, cutoff, budget=1000):
    doomed, resume, _ = compactable(store.engine, partition, cutoff, None, budget)
    while resume is not None:
        more, resume, _ = compactable(store.engine, partition, cutoff, resume, budget)
        doomed += more
    batch = WriteBatch()
    for key in doomed:
        batch.delete(key)
    store.engine.write(batch)
    return len(doomed)


@pytest.mark.parametrize("budget", [1, 2, 1000])
def test_compaction_keeps_what_reads_at_or_after_the_cutoff_need(store, budget):
    w = Writer(store)
    w.write(v(10), (b"k", b"one"), (b"dead", b"x"), (b"old", b"o"))
    w.write(v(20), (b"k", b"two"), (b"dead", None))
    w.write(v(30), (b"k", b"three"))
    w.write(v(40), (b"k", b"four"))
    cutoff = v(30)
    before = {(key, t): live_value(read_as_of(store.engine, 1, key, t), t)
              for key in (b"k", b"dead", b"old") for t in (v(30), v(35), v(40), v(50))}
    # k@10 and k@20 go (k@30 is the newest at the cutoff); the tombstone of "dead" and what it hides go.
    assert compact(store, 1, cutoff, budget) == 4
    after = {(key, t): live_value(read_as_of(store.engine, 1, key, t), t)
             for key in (b"k", b"dead", b"old") for t in (v(30), v(35), v(40), v(50))}
    assert after == before
    assert [keys.split_history_key(k) for k in store.engine.keys(*keys.partition_range(keys.HISTORY, 1))] == [
        (b"k", v(40)), (b"k", v(30)), (b"old", v(10))]
    assert compact(store, 1, cutoff, budget) == 0


@settings(max_examples=150, deadline=None)
@given(writes=st.lists(st.lists(st.tuples(st.sampled_from([b"", b"a", b"a\x00", b"a\x00\x00", b"ab", b"b"]),
                                          st.one_of(st.none(), st.binary(max_size=2))), min_size=1, max_size=3),
                       min_size=1, max_size=30),
       at=st.integers(min_value=0, max_value=31), reverse=st.booleans(), jump_after=st.integers(0, 3),
       bounds=st.tuples(st.sampled_from([b"", b"a", b"a\x00", b"aa"]),
                        st.sampled_from([None, b"a\x00", b"ab", b"c"])))
def test_ranges_as_of_a_version_match_a_model(writes, at, reverse, jump_after, bounds):
    store = PartitionStore(MemoryEngine())
    w = Writer(store)
    model: list[dict] = [{}]
    for t, ops in enumerate(writes, start=1):
        ops = dict(ops)  # one op per key and entry, as a command's writes are
        w.write(v(t), *ops.items())
        state = dict(model[-1])
        for key, value in ops.items():
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
        model.append(state)
    start, end = bounds
    state = model[min(at, len(writes))]
    expected = sorted((k, val) for k, val in state.items() if k >= start and (end is None or k < end))
    items = items_as_of(store.engine, 1, start, end, v(at), reverse, jump_after=jump_after)
    found = [(k, value_of(raw)) for k, raw in items if is_live(raw, v(at))]
    assert found == (expected[::-1] if reverse else expected)


@pytest.mark.parametrize("jump_after", [0, 1, 8])
def test_compaction_seeks_past_the_versions_a_key_keeps_in_the_window(store, jump_after):
    w = Writer(store)
    for ms in range(10, 15):  # before the cutoff: the newest stays, four go
        w.write(v(ms), (b"hot", b"old %d" % ms), (b"cold", b"c"))
    for ms in range(100, 300):  # in the window, all kept
        w.write(v(ms), (b"hot", b"new %d" % ms))
    cutoff = v(50)
    doomed, resume, read = compactable(store.engine, 1, cutoff, None, 10_000, jump_after)
    assert resume is None
    assert sorted(keys.split_history_key(k) for k in doomed) == sorted(
        [(b"hot", v(ms)) for ms in range(10, 14)] + [(b"cold", v(ms)) for ms in range(10, 14)])
    # "hot": jump_after + 1 of its 200 new versions, then its 5 old ones; "cold": its 5.
    assert read == jump_after + 1 + 5 + 5
    everything, _, _ = compactable(store.engine, 1, cutoff, None, 10_000, jump_after=10_000)
    assert sorted(everything) == sorted(doomed)


@settings(max_examples=150, deadline=None)
@given(writes=st.lists(st.lists(st.tuples(st.sampled_from([b"", b"a", b"a\x00", b"ab", b"b"]),
                                          st.one_of(st.none(), st.binary(max_size=2))), min_size=1, max_size=3),
                       min_size=1, max_size=30),
       cutoff=st.integers(min_value=0, max_value=31), jump_after=st.integers(0, 3), budget=st.integers(1, 5))
def test_compaction_keeps_every_read_at_or_after_the_cutoff_whatever_its_steps(writes, cutoff, jump_after,
                                                                                  budget):
    store = PartitionStore(MemoryEngine())
    w = Writer(store)
    for t, ops in enumerate(writes, start=1):
        w.write(v(t), *dict(ops).items())
    touched = sorted({key for ops in writes for key, _ in ops})
    later = range(cutoff, len(writes) + 2)
    before = {(key, t): live_value(read_as_of(store.engine, 1, key, v(t)), v(t)) for key in touched for t in later}
    doomed, resume, _ = compactable(store.engine, 1, v(cutoff), None, budget, jump_after)
    while resume is not None:
        more, resume, _ = compactable(store.engine, 1, v(cutoff), resume, budget, jump_after)
        doomed += more
    whole, _, _ = compactable(store.engine, 1, v(cutoff), None, 10_000, jump_after=10_000)
    assert sorted(doomed) == sorted(whole), "seeks and resumes find what one plain walk finds"
    batch = WriteBatch()
    for key in doomed:
        batch.delete(key)
    store.engine.write(batch)
    after = {(key, t): live_value(read_as_of(store.engine, 1, key, v(t)), v(t)) for key in touched for t in later}
    assert after == before
