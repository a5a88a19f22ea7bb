"""The storage engine contract, run against every engine: LevelDB and the in-memory one."""

import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvnode.storage import LevelDBEngine, MemoryEngine, StorageError, WriteBatch

ENGINES = ["memory", "leveldb"]


@pytest.fixture(params=ENGINES)
def open_engine(request, tmp_path):
    """Opens fresh engines of one kind (each LevelDB in its own directory) and closes them afterwards."""
    opened = []
    counter = iter(range(1_000_000))

    def open_():
        if request.param == "memory":
            engine = MemoryEngine()
        else:
            engine = LevelDBEngine(tmp_path / f"db{next(counter)}", cache_bytes=1 << 20)
        opened.append(engine)
        return engine

    yield open_
    for engine in opened:
        engine.close()


@pytest.fixture
def engine(open_engine):
    return open_engine()


def write(engine, puts=(), deletes=(), sync=False):
    batch = WriteBatch()
    for key, value in puts:
        batch.put(key, value)
    for key in deletes:
        batch.delete(key)
    engine.write(batch, sync=sync)


def fill(engine, keys):
    write(engine, [(key, b"v" + key) for key in keys])


def keys_of(items):
    return [key for key, _ in items]


# -- point reads and writes ---------------------------------------------------------------------------


def test_get_of_a_missing_key_is_none(engine):
    assert engine.get(b"nope") is None


def test_put_overwrite_delete(engine):
    write(engine, [(b"k", b"1")])
    assert engine.get(b"k") == b"1"
    write(engine, [(b"k", b"2")], sync=True)
    assert engine.get(b"k") == b"2"
    write(engine, deletes=[b"k"])
    assert engine.get(b"k") is None
    write(engine, deletes=[b"never-there"])
    assert list(engine.iterate()) == []


def test_empty_values_and_keys_are_stored(engine):
    write(engine, [(b"", b"empty key"), (b"k", b"")])
    assert engine.get(b"") == b"empty key"
    assert engine.get(b"k") == b""
    assert list(engine.iterate()) == [(b"", b"empty key"), (b"k", b"")]


# -- batches ------------------------------------------------------------------------------------------


def test_a_batch_is_invisible_until_written_then_visible_at_once(engine):
    fill(engine, [b"a", b"b"])
    batch = WriteBatch()
    batch.put(b"c", b"3")
    batch.delete(b"a")
    batch.put(b"b", b"new")
    assert len(batch) == 3
    assert keys_of(engine.iterate()) == [b"a", b"b"]
    engine.write(batch)
    assert list(engine.iterate()) == [(b"b", b"new"), (b"c", b"3")]


def test_later_operations_on_a_key_win(engine):
    batch = WriteBatch()
    batch.put(b"x", b"1")
    batch.delete(b"x")
    batch.put(b"y", b"1")
    batch.delete(b"y")
    batch.put(b"y", b"2")
    engine.write(batch)
    assert engine.get(b"x") is None
    assert engine.get(b"y") == b"2"


def test_a_batch_with_a_non_bytes_value_writes_nothing(engine):
    batch = WriteBatch()
    batch.put(b"good", b"1")
    batch.put(b"bad", "not bytes")
    with pytest.raises(TypeError):
        engine.write(batch)
    assert engine.get(b"good") is None


def test_an_empty_batch_is_a_no_op(engine):
    engine.write(WriteBatch(), sync=True)
    assert list(engine.iterate()) == []


# -- iteration ----------------------------------------------------------------------------------------

KEYS = [b"a", b"b", b"c", b"d", b"e"]


@pytest.mark.parametrize(
    "start, stop, expected",
    [
        (b"", None, KEYS),
        (b"b", None, [b"b", b"c", b"d", b"e"]),
        (b"", b"c", [b"a", b"b"]),
        (b"b", b"d", [b"b", b"c"]),
        (b"b", b"b", []),
        (b"d", b"b", []),
        (b"a0", b"c0", [b"b", b"c"]),
        (b"b", b"b\x00", [b"b"]),
        (b"f", None, []),
        (b"", b"a", []),
    ],
)
def test_iterate_forward_and_reverse_over_half_open_ranges(engine, start, stop, expected):
    fill(engine, KEYS)
    assert list(engine.iterate(start, stop)) == [(key, b"v" + key) for key in expected]
    assert list(engine.iterate(start, stop, reverse=True)) == [(key, b"v" + key) for key in expected[::-1]]
    assert list(engine.keys(start, stop)) == expected
    assert list(engine.keys(start, stop, reverse=True)) == expected[::-1]


def test_reverse_iteration_includes_a_start_key_that_exists(engine):
    # plyvel 1.5 drops it when it is the first key the reverse scan would yield.
    fill(engine, [b"a", b"b", b"c"])
    assert keys_of(engine.iterate(b"a", b"b", reverse=True)) == [b"a"]
    assert keys_of(engine.iterate(b"b", None, reverse=True)) == [b"c", b"b"]
    assert list(engine.keys(b"c", b"d", reverse=True)) == [b"c"]


BINARY_KEYS = [b"", b"\x00", b"\x00\x00", b"\x00\xff", b"\x01", b"a", b"a\x00", b"a\xff", b"\x7f", b"\x80",
               b"\xfe", b"\xff", b"\xff\x00", b"\xff\xff", b"\xff\xff\xff"]


def test_binary_keys_sort_as_unsigned_bytes(engine):
    fill(engine, BINARY_KEYS[::-1])
    assert list(engine.keys()) == sorted(BINARY_KEYS)
    assert list(engine.keys(reverse=True)) == sorted(BINARY_KEYS, reverse=True)
    assert list(engine.keys(b"\x00", b"\x01")) == [b"\x00", b"\x00\x00", b"\x00\xff"]
    assert list(engine.keys(b"\xff", reverse=True)) == [b"\xff\xff\xff", b"\xff\xff", b"\xff\x00", b"\xff"]
    assert list(engine.keys(b"\xff\x00", b"\xff\xff", reverse=True)) == [b"\xff\x00"]
    for key in BINARY_KEYS:
        assert engine.get(key) == b"v" + key


def test_an_iterator_sees_the_store_as_it_was_when_created(engine):
    fill(engine, [b"a", b"b", b"c"])
    forward = engine.iterate()
    backward = engine.keys(reverse=True)
    assert next(forward) == (b"a", b"va")
    write(engine, [(b"b", b"changed"), (b"d", b"new")], deletes=[b"c"])
    assert list(forward) == [(b"b", b"vb"), (b"c", b"vc")]
    assert list(backward) == [b"c", b"b", b"a"]


key_strategy = st.binary(max_size=4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(
        st.lists(st.tuples(key_strategy, st.none() | st.binary(max_size=3)), max_size=8), max_size=5
    ),
    start=key_strategy,
    stop=st.none() | key_strategy,
    reverse=st.booleans(),
)
def test_the_engine_behaves_like_a_sorted_dict(open_engine, batches, start, stop, reverse):
    # open_engine gives every example its own store.
    engine = open_engine()
    model: dict[bytes, bytes] = {}
    for ops in batches:
        batch = WriteBatch()
        for key, value in ops:
            if value is None:
                batch.delete(key)
                model.pop(key, None)
            else:
                batch.put(key, value)
                model[key] = value
        engine.write(batch)
    expected = sorted(
        (key, value) for key, value in model.items() if key >= start and (stop is None or key < stop)
    )
    if reverse:
        expected.reverse()
    assert list(engine.iterate(start, stop, reverse)) == expected
    assert list(engine.keys(start, stop, reverse)) == keys_of(expected)
    assert all(engine.get(key) == value for key, value in model.items())


# -- snapshots ----------------------------------------------------------------------------------------


def test_writes_after_a_snapshot_are_invisible_through_it(engine):
    fill(engine, [b"a", b"b", b"c"])
    with engine.snapshot() as snapshot:
        write(engine, [(b"a", b"changed"), (b"d", b"new")], deletes=[b"b"])
        assert engine.get(b"a", snapshot) == b"va"
        assert engine.get(b"b", snapshot) == b"vb"
        assert engine.get(b"d", snapshot) is None
        assert list(engine.iterate(snapshot=snapshot)) == [(b"a", b"va"), (b"b", b"vb"), (b"c", b"vc")]
        assert list(engine.keys(b"b", reverse=True, snapshot=snapshot)) == [b"c", b"b"]
        # The live view moved on.
        assert list(engine.iterate()) == [(b"a", b"changed"), (b"c", b"vc"), (b"d", b"new")]


def test_two_snapshots_see_their_own_moment(engine):
    write(engine, [(b"k", b"1")])
    first = engine.snapshot()
    write(engine, [(b"k", b"2")])
    second = engine.snapshot()
    write(engine, [(b"k", b"3")])
    assert (engine.get(b"k", first), engine.get(b"k", second), engine.get(b"k")) == (b"1", b"2", b"3")
    first.close()
    second.close()


def test_a_closed_snapshot_cannot_be_read(engine):
    snapshot = engine.snapshot()
    snapshot.close()
    snapshot.close()
    with pytest.raises(StorageError, match="snapshot is closed"):
        engine.get(b"k", snapshot)
    with pytest.raises(StorageError, match="snapshot is closed"):
        engine.iterate(snapshot=snapshot)


def test_a_snapshot_of_another_engine_is_refused(open_engine):
    first, second = open_engine(), open_engine()
    with first.snapshot() as snapshot, pytest.raises(StorageError, match="another storage engine"):
        second.get(b"k", snapshot)


# -- size and lifecycle -------------------------------------------------------------------------------


def test_approximate_size_is_a_non_negative_int(engine):
    fill(engine, [b"a", b"b"])
    assert isinstance(engine.approximate_size(b"", b"\xff"), int)
    assert engine.approximate_size(b"", b"\xff") >= 0
    assert engine.approximate_size(b"x", b"y") == 0


def test_a_fresh_engine_has_no_write_backlog(engine):
    fill(engine, [b"a", b"b"])
    assert engine.write_backlog() == 0


def test_compacting_a_range_keeps_every_key_and_value(engine):
    for value in (b"1", b"2"):
        write(engine, [(b"k%d" % i, value) for i in range(100)])
    write(engine, [(b"k%d" % i, None) for i in range(0, 100, 2)])
    engine.compact_range(b"k", b"l")
    assert list(engine.iterate()) == [(b"k%d" % i, b"2") for i in sorted(range(1, 100, 2), key=lambda i: b"k%d" % i)]


def test_a_closed_engine_refuses_every_operation(engine):
    write(engine, [(b"k", b"1")])
    engine.close()
    engine.close()
    for operation in (
        lambda: engine.get(b"k"),
        lambda: write(engine, [(b"k", b"2")]),
        lambda: engine.iterate(),
        lambda: engine.keys(reverse=True),
        lambda: engine.snapshot(),
        lambda: engine.approximate_size(b"", b"z"),
        lambda: engine.write_backlog(),
        lambda: engine.compact_range(b"a", b"z"),
        lambda: engine.files_per_level(),
    ):
        with pytest.raises(StorageError, match="closed"):
            operation()


# -- LevelDB only -------------------------------------------------------------------------------------


def test_leveldb_counts_the_table_files_of_each_level(tmp_path):
    with LevelDBEngine(tmp_path / "db") as engine:
        assert engine.files_per_level() == [0] * 7
        write(engine, [(b"k%d" % i, b"v") for i in range(100)])
        engine.compact_range(b"k", b"l")  # the memtable becomes a table file
        assert sum(engine.files_per_level()) == 1


def test_leveldb_keeps_data_across_reopen(tmp_path):
    path = tmp_path / "a" / "b" / "db"  # missing parents are created
    with LevelDBEngine(path) as engine:
        fill(engine, [b"a", b"b"])
        write(engine, [(b"c", b"synced")], deletes=[b"a"], sync=True)
    with LevelDBEngine(path, create=False) as engine:
        assert list(engine.iterate()) == [(b"b", b"vb"), (b"c", b"synced")]


def test_leveldb_approximate_size_counts_data_on_disk(tmp_path):
    with LevelDBEngine(tmp_path) as engine:
        write(engine, [(b"k%05d" % i, b"x" * 100) for i in range(2000)])
    # Reopening replays the write-ahead log into a table file, which approximate_size measures.
    with LevelDBEngine(tmp_path) as engine:
        assert engine.approximate_size(b"k", b"l") > 0
        assert engine.approximate_size(b"z", b"zz") == 0


def test_leveldb_without_create_refuses_a_missing_store(tmp_path):
    with pytest.raises(StorageError, match="cannot open data directory .*does not exist"):
        LevelDBEngine(tmp_path / "missing", create=False)


def test_leveldb_reports_a_data_directory_it_cannot_create(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StorageError, match="cannot create data directory .*file/db"):
        LevelDBEngine(tmp_path / "file" / "db")


def test_leveldb_refuses_a_store_open_in_this_process(tmp_path):
    with LevelDBEngine(tmp_path), pytest.raises(StorageError, match="LevelDB lock held"):
        LevelDBEngine(tmp_path)


def test_leveldb_refuses_a_store_locked_by_another_process(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, plyvel
            db = plyvel.DB({str(tmp_path)!r}, create_if_missing=True)
            print("locked", flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StorageError) as raised:
            LevelDBEngine(tmp_path)
        assert raised.value.message == (
            f"data directory {tmp_path} is in use by another kvnode process (LevelDB lock held); "
            "stop it or pick another --data-dir"
        )
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    # Once the other process is gone the store opens.
    LevelDBEngine(tmp_path).close()


def test_the_table_cache_never_outgrows_the_file_limit():
    import resource

    from kvnode.storage.leveldb import OTHER_FILES, table_files_allowed

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert table_files_allowed(100) == 100
    if hard != resource.RLIM_INFINITY:
        assert table_files_allowed(hard * 2) == hard - OTHER_FILES, "capped by the hard limit"
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard, "the soft limit was raised to allow it"
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
