"""Reads at a version on a primary: when they are safe, what they wait for, what they refuse."""

import time

from kvcommon.errors import CommandError, NotPrimaryError
from kvcommon.hlc import LOGICAL_BITS
from kvmeta.schema import PartitionState
from kvnode.compaction import STEP_MS, HistoryCompactor
from kvnode.service import RequestOptions
from kvnode.storage.history import read_as_of
from kvnode.storage.records import KIND_TOMBSTONE, decode_meta, kind_of, value_of
from tests.unit.test_node_service import follow, make_service, result_of


def settle(service, clock, seq):
    """Commit locally and have a follower acknowledge up to ``seq``: quorum reached."""
    clock.advance(0)
    service.on_follower_ack("n3", 0, seq)


def now_version(offset_ms=0):
    return (time.time_ns() // 1_000_000 + offset_ms) << LOGICAL_BITS


def test_a_read_as_of_v_waits_for_the_pending_writes_at_or_below_v_only():
    service, clock = make_service()
    service.execute([b"SET", b"k", b"one"], 0, 3)
    settle(service, clock, 1)
    service.execute([b"SET", b"k", b"two"], 0, 3)
    clock.advance(0)
    version = service.clock.last  # the pending write's version
    read = service.execute([b"KV.GETASOF", b"k", b"%d" % version], 0, 3)
    part = service.execute([b"KV.RANGEPART", b"", b"", b"10", b"0", b"0", b"%d" % version], 0, 3)
    assert result_of(read) is None and result_of(part) is None, "the write at v is not complete yet"
    # A write after the read gets a later version and does not hold the read back.
    service.execute([b"SET", b"k", b"three"], 0, 3)
    clock.advance(0)
    assert service.clock.last > version
    service.on_follower_ack("n3", 0, 2)
    assert result_of(read) == b"two"
    assert result_of(part) == [0, [b"k", b"two"]]
    earlier = service.execute([b"KV.GETASOF", b"k", b"%d" % (version - 1)], 0, 3)
    assert result_of(earlier) == b"one", "nothing pending at or below v-1: answered at once"


def test_a_read_at_a_version_ahead_of_the_clock_pushes_later_writes_past_it():
    service, clock = make_service(write_level="1")
    ahead = now_version(500)
    assert result_of(service.execute([b"KV.GETASOF", b"k", b"%d" % ahead], 0, 3)) is None
    service.execute([b"SET", b"k", b"v"], 0, 3)
    clock.advance(0)
    value, version = result_of(service.execute([b"KV.GETVERSION", b"k"], 0, 3))
    assert value == b"v" and version > ahead
    assert result_of(service.execute([b"KV.GETASOF", b"k", b"%d" % ahead], 0, 3)) is None


def test_versions_far_ahead_or_before_the_retention_window_are_refused():
    service, _ = make_service()
    error = service.execute([b"KV.GETASOF", b"k", b"%d" % now_version(5000)], 0, 3)
    assert isinstance(error, CommandError) and "ahead of this node's clock" in error.message
    old = now_version(-3601 * 1000)
    error = service.execute([b"KV.RANGEPART", b"", b"", b"1", b"0", b"0", b"%d" % old], 0, 3)
    assert isinstance(error, CommandError)
    assert "older than the retention window (3600 s)" in error.message


def test_versioned_reads_need_the_primary_even_at_read_level_eventual():
    service, _ = make_service(node_id="n2")
    error = service.execute([b"KV.GETVERSION", b"k"], 0, 3, RequestOptions(read_level="eventual"))
    assert isinstance(error, NotPrimaryError)


def test_compaction_removes_old_versions_on_its_own_replica():
    service, clock = make_service(write_level="1")
    for value in (b"one", b"two", b"three"):
        service.execute([b"SET", b"k", value], 0, 3)
        clock.advance(0)
    last = service.clock.last
    compactor = HistoryCompactor(service, budget=10, grace_ms=0)
    retention_ms = service.config.retention_seconds * 1000
    # Long after the last write: only the newest version is kept.
    assert compactor.tick((last >> LOGICAL_BITS) + retention_ms + 1) == 2
    clock.advance(0)
    assert result_of(service.execute([b"KV.GETASOF", b"k", b"%d" % last], 0, 3)) == b"three"
    assert compactor.tick((last >> LOGICAL_BITS) + retention_ms + 1) == 0


def test_compaction_walks_a_partition_only_once_a_step_of_its_writes_is_past_the_cutoff():
    service, clock = make_service(write_level="1")
    compactor = service.compactor
    compactor.grace_ms = 0
    for value in (b"one", b"two"):
        service.execute([b"SET", b"k", value], 0, 3)
        clock.advance(0)
    now_ms = service.clock.last >> LOGICAL_BITS
    assert compactor.tick(now_ms) == 0, "everything is within the retention window"
    read = compactor.read
    assert read > 0, "a partition new to the node is walked once: it may hold versions of any age"
    for _ in range(100):
        assert compactor.tick(now_ms) == 0
    assert compactor.read == read, "no write is past the cutoff: nothing is read"
    retention_ms = service.config.retention_seconds * 1000
    past_step = (now_ms // STEP_MS + 1) * STEP_MS + retention_ms  # the writes' step is wholly past the cutoff
    assert compactor.tick(past_step) == 1
    read = compactor.read
    assert compactor.tick(past_step + 1) == 0
    assert compactor.read == read, "no write since that walk"
    service.execute([b"SET", b"k", b"three"], 0, 3)
    clock.advance(0)
    later_ms = service.clock.last >> LOGICAL_BITS
    assert compactor.tick(later_ms + retention_ms + 1) == 0
    assert compactor.read == read, "the new write's step is not past the cutoff yet"
    assert compactor.tick(later_ms + retention_ms + STEP_MS) == 1
    assert compactor.read > read


def test_a_snapshot_copy_carries_the_history_to_the_follower():
    primary, clock = make_service(write_level="1")
    versions = []
    for value in (b"one", b"two"):
        primary.execute([b"SET", b"k", value], 0, 3)
        clock.advance(0)
        versions.append(primary.clock.last)
    primary.execute([b"DEL", b"k"], 0, 3)
    clock.advance(0)
    # It claims entry 1 was written in generation 2; ours was written in generation 3: a snapshot follows.
    _, _, messages = follow(primary, clock, next_seq=2, last_generation=2)
    follower, follower_clock = make_service("n2", PartitionState(0, 3, "n1", ("n1", "n2", "n3"),
                                                                  ("n1", "n2", "n3")))
    done = []
    for message in messages:
        if message[0] == b"SNAP-BEGIN":
            follower.begin_snapshot(0, decode_meta(message[2]))
        elif message[0] == b"SNAP-DATA":
            follower.snapshot_data(0, message[2])
        elif message[0] == b"SNAP-END":
            follower.end_snapshot(0, done.append)
    follower_clock.advance(0)
    assert done == [3]
    engine = follower.store.engine
    assert [value_of(read_as_of(engine, 0, b"k", v)) for v in versions] == [b"one", b"two"]
    assert kind_of(read_as_of(engine, 0, b"k", primary.clock.last)) == KIND_TOMBSTONE
    assert follower.store.get(0, b"k") is None
    assert follower.clock.last >= primary.clock.last, "a promoted follower must version after what it holds"
