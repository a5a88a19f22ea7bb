"""Group commit: one batch at a time, what comes meanwhile in the next; off the reactor thread when slow."""

import queue
import threading
import time

from twisted.internet import task

from kvcommon.resp import OK
from kvmeta.schema import ClusterConfig
from kvnode.commit import (
    BACKLOG_CHECK_SECONDS,
    LEVEL0_BEHIND,
    LEVEL0_SLOWDOWN,
    MAX_HOLD_SECONDS,
    OFFLOAD_SECONDS,
    GroupCommit,
    StorageWriter,
)
from kvnode.service import NodeService
from kvnode.storage.memory import MemoryEngine
from tests.unit.test_node_service import STATE, FollowerInTouch, result_of


class HeldWriter:
    """A StorageWriter whose writes finish when the test says so."""

    def __init__(self, engine):
        self.engine = engine
        self.jobs = []

    def submit(self, batch, sync, done):
        self.jobs.append((batch, sync, done))

    def finish_next(self, error=None):
        batch, sync, done = self.jobs.pop(0)
        if error is None:
            self.engine.write(batch, sync=sync)
        done(error)


class ThreadReactor:
    """The reactor as StorageWriter sees it: callFromThread queues calls the test runs on its own thread."""

    def __init__(self):
        self.calls = queue.Queue()

    def callFromThread(self, f, *args):
        self.calls.put((f, args))

    def run_next(self, timeout=5.0):
        f, args = self.calls.get(timeout=timeout)
        f(*args)


def held_commit(engine=None, sync=True):
    """A group commit whose writer thread is a HeldWriter: with ``sync`` every batch goes to it."""
    clock, engine = task.Clock(), engine or MemoryEngine()
    writer = HeldWriter(engine)
    return clock, engine, writer, GroupCommit(clock, engine, sync=sync, writer=writer)


def put(key, value=b"v"):
    return lambda batch: batch.put(key, value)


class BackloggedEngine(MemoryEngine):
    """An engine with ``level0`` files waiting for compaction, which takes ``delay`` seconds to write."""

    def __init__(self):
        super().__init__()
        self.level0 = 0
        self.delay = 0.0

    def write_backlog(self):
        return self.level0

    def write(self, batch, sync=False):
        time.sleep(self.delay)
        super().write(batch, sync)


def test_batches_go_to_the_writer_only_while_the_engine_is_behind_or_slow():
    clock, engine, writer, commit = held_commit(BackloggedEngine(), sync=False)
    commit.add(put(b"a"))
    clock.advance(0)
    assert engine.get(b"a") == b"v" and not writer.jobs, "written on the reactor thread"
    engine.level0 = LEVEL0_BEHIND
    clock.advance(1)
    commit.add(put(b"b"))
    clock.advance(0)
    assert len(writer.jobs) == 1 and commit.offloaded == 1
    writer.finish_next()
    engine.level0 = 0
    commit.add(put(b"c"))
    clock.advance(0)
    assert len(writer.jobs) == 1, "stays on the writer a while after the engine was behind"
    writer.finish_next()
    clock.advance(OFFLOAD_SECONDS)
    commit.add(put(b"d"))
    clock.advance(0)
    assert not writer.jobs and engine.get(b"d") == b"v"

    engine.delay = 0.03
    commit.add(put(b"e"))
    clock.advance(0)
    assert engine.get(b"e") == b"v" and not writer.jobs, "a slow write is noticed once it is done"
    commit.add(put(b"f"))
    clock.advance(0)
    assert len(writer.jobs) == 1, "after a slow write, the next batches go to the writer"


def test_changes_added_while_a_batch_is_written_go_in_the_next_one():
    clock, engine, writer, commit = held_commit()
    done = []
    commit.add(put(b"a"), lambda: done.append("a"))
    clock.advance(0)
    commit.add(put(b"b"), lambda: done.append("b"))
    commit.add(put(b"c"), lambda: done.append("c"))
    clock.advance(0)
    assert len(writer.jobs) == 1, "one batch at a time"
    assert done == [] and engine.get(b"a") is None
    writer.finish_next()
    assert done == ["a"] and engine.get(b"a") == b"v"
    assert len(writer.jobs) == 1 and engine.get(b"b") is None
    writer.finish_next()
    assert done == ["a", "b", "c"] and engine.get(b"c") == b"v"
    assert commit.batches == 2 and commit.writes == 3


def test_a_batch_is_filled_only_once_the_one_before_is_on_disk():
    clock, engine, writer, commit = held_commit()
    commit.add(put(b"a", b"1"))
    clock.advance(0)
    seen = []
    commit.add(lambda batch: seen.append(engine.get(b"a")))
    clock.advance(0)
    assert seen == [], "the filler waits while the batch before it is written"
    writer.finish_next()
    assert seen == [b"1"]


def test_a_failed_write_acknowledges_nothing_and_the_next_batch_still_goes():
    clock, engine, writer, commit = held_commit()
    done = []
    commit.add(put(b"a"), lambda: done.append("a"))
    clock.advance(0)
    commit.add(put(b"b"), lambda: done.append("b"))
    writer.finish_next(OSError("disk full"))
    assert done == [] and commit.batches == 0
    writer.finish_next()
    assert done == ["b"]


def test_close_waits_for_the_write_under_way_and_writes_the_rest():
    engine = MemoryEngine()
    reactor = ThreadReactor()
    gate = threading.Event()

    class SlowEngine(MemoryEngine):
        def write(self, batch, sync=False):
            gate.wait(5)
            engine.write(batch, sync)

    writer = StorageWriter(reactor, SlowEngine())
    commit = GroupCommit(task.Clock(), engine, writer=writer)
    commit.add(put(b"a"))
    commit.flush()
    commit.add(put(b"b"))
    threading.Timer(0.05, gate.set).start()
    commit.close()
    assert engine.get(b"a") == b"v" and engine.get(b"b") == b"v"


def test_a_node_answers_reads_while_its_storage_write_is_stalled():
    # What LevelDB does when level-0 files pile up: a write waits, here until the test lets it go.
    gate = threading.Event()

    class StallingEngine(BackloggedEngine):
        def write(self, batch, sync=False):
            gate.wait(5)
            super().write(batch, sync)

    clock, reactor = task.Clock(), ThreadReactor()
    clock.advance(100)
    engine = StallingEngine()
    engine.level0 = LEVEL0_BEHIND
    service = NodeService(clock, engine, "n1", write_timeout=5, writer=StorageWriter(reactor, engine))
    service.on_config(ClusterConfig(1, 3, write_level="1"))
    service.on_session(True)
    service.on_partition_state(STATE)
    service.leader.by_partition[0] = [FollowerInTouch(n, clock) for n in STATE.secondaries]
    clock.advance(0)
    gate.set()
    reactor.run_next()  # the new primary's meta
    gate.clear()
    write = service.execute([b"SET", b"k", b"v"], 0, 3)
    clock.advance(0)
    assert result_of(service.execute([b"GET", b"other"], 0, 3)) is None, "answered at once: the key is absent"
    assert result_of(write) is None, "not acknowledged before it is on disk"
    gate.set()
    reactor.run_next()
    assert result_of(write) == OK
    assert result_of(service.execute([b"GET", b"k"], 0, 3)) == b"v"
    service.commit.close()


def test_a_batch_waits_while_leveldb_would_delay_it_but_never_longer_than_the_hold_limit():
    clock, engine, writer, commit = held_commit(BackloggedEngine(), sync=False)
    engine.level0 = LEVEL0_SLOWDOWN
    done = []
    commit.add(put(b"a"), lambda: done.append("a"))
    clock.advance(0)
    clock.advance(0.5)
    commit.add(put(b"b"), lambda: done.append("b"))
    assert not writer.jobs and commit.held > 1, "held while level 0 is that full"
    engine.level0 = 1
    clock.advance(0.1)
    assert done == ["a", "b"], "written once level 0 has shrunk, with what came meanwhile"

    engine.level0 = LEVEL0_SLOWDOWN + 4  # LevelDB stops writes at 12: we wait no more than the limit
    clock.advance(BACKLOG_CHECK_SECONDS)
    commit.add(put(b"c"), lambda: done.append("c"))
    clock.advance(0)
    clock.pump([0.1] * int(MAX_HOLD_SECONDS / 0.1 - 1))
    assert not writer.jobs and done == ["a", "b"]
    clock.advance(0.2)
    assert len(writer.jobs) == 1, "after the hold limit the batch goes, to the writer thread"
