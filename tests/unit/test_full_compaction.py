"""Compacting a node's whole store on demand: range by range on a thread, stoppable, refused twice at once."""

import threading
import time

import pytest
from twisted.internet import task

from kvcommon.errors import CommandError
from kvmeta.nodeclient import info_fields
from kvmeta.schema import ClusterConfig, PartitionState
from kvnode.protocol import NodeProtocol
from kvnode.service import NodeService
from kvnode.storage import keys
from kvnode.storage.full_compaction import FullCompaction, store_ranges
from kvnode.storage.interface import StorageError, WriteBatch
from kvnode.storage.leveldb import LevelDBEngine
from kvnode.storage.memory import MemoryEngine


class HeldEngine(MemoryEngine):
    """Each compact_range waits until the test lets it go; ``fail`` makes them raise."""

    def __init__(self, fail: bool = False):
        super().__init__()
        self.fail = fail
        self.entered = threading.Semaphore(0)
        self.release = threading.Semaphore(0)
        self.compacted: list[tuple[bytes, bytes]] = []

    def compact_range(self, start, stop):
        self.entered.release()
        self.release.acquire()
        if self.fail:
            raise StorageError("LevelDB error: IO error: no space left on device")
        self.compacted.append((start, stop))


def wait_until_finished(compaction: FullCompaction) -> None:
    deadline = time.monotonic() + 30
    while compaction.running:
        assert time.monotonic() < deadline, "the compaction did not finish"
        time.sleep(0.01)


def test_the_ranges_are_every_kind_of_key_of_every_partition_in_key_order_then_the_whole_store():
    ranges = store_ranges([1, 0])
    assert len(ranges) == 7 and ranges[:6] == sorted(ranges[:6])
    assert keys.partition_range(keys.DATA, 0) in ranges and keys.partition_range(keys.LOG, 1) in ranges
    whole_start, whole_stop = ranges[-1]
    for key in (keys.SCHEMA_KEY, keys.data_key(0, b""), keys.history_key(1, b"\xff" * 8, 0),
                keys.log_key(1, keys.MAX_SEQ), keys.meta_key(1)):
        assert whole_start <= key < whole_stop


def test_a_leveldb_store_is_compacted_and_keeps_its_data(tmp_path):
    with LevelDBEngine(tmp_path / "db", write_buffer_bytes=64 * 1024) as engine:
        for round_number in range(3):
            batch = WriteBatch()
            for i in range(3000):
                batch.put(keys.data_key(i % 2, b"k%d" % i), b"%d" % round_number * 100)
            engine.write(batch)
        compaction = FullCompaction(engine, store_ranges([0, 1]))
        wait_until_finished(compaction)
        assert compaction.status() == "done" and compaction.done == 7
        assert engine.get(keys.data_key(1, b"k7")) == b"2" * 100
        assert len(list(engine.iterate())) == 3000


class WritesMeanwhile(LevelDBEngine):
    """Once partition 0's data has been compacted, keys between its keys arrive and are flushed: they land a
    level above the rest, as files LevelDB moves down from a level grown past its size land a level below."""

    def compact_range(self, start, stop):
        super().compact_range(start, stop)
        if (start, stop) == keys.partition_range(keys.DATA, 0):
            batch = WriteBatch()
            for i in range(0, 1000, 10):
                batch.put(keys.data_key(0, b"k%06d+" % i), b"meanwhile")
            self.write(batch)
            super().compact_range(b"\x00", b"\x00")  # flushes the memtable, and compacts nothing


def test_a_range_left_in_two_levels_ends_in_one(tmp_path):
    with WritesMeanwhile(tmp_path / "db") as engine:
        batch = WriteBatch()
        for i in range(1000):
            batch.put(keys.data_key(0, b"k%06d" % i), b"%d" % i * 100)
        engine.write(batch)
        compaction = FullCompaction(engine, store_ranges([0, 1]))
        wait_until_finished(compaction)
        assert compaction.status() == "done"
        levels = engine.files_per_level()
        assert sum(1 for files in levels if files) == 1, levels
        assert engine.get(keys.data_key(0, b"k000990+")) == b"meanwhile"
        assert engine.get(keys.data_key(0, b"k000999")) == b"999" * 100


def test_stop_waits_for_the_range_under_way_and_goes_no_further():
    engine = HeldEngine()
    compaction = FullCompaction(engine, store_ranges([0, 1]))
    assert engine.entered.acquire(timeout=10)
    stopper = threading.Thread(target=compaction.stop)
    stopper.start()
    time.sleep(0.05)
    assert stopper.is_alive(), "stop waits for the range being compacted"
    engine.release.release()
    stopper.join(timeout=10)
    assert not stopper.is_alive()
    assert compaction.status() == "stopped" and compaction.done == 1 and len(engine.compacted) == 1


def test_a_failure_is_reported_with_the_engines_words():
    engine = HeldEngine(fail=True)
    compaction = FullCompaction(engine, store_ranges([0]))
    engine.release.release()
    wait_until_finished(compaction)
    assert compaction.status() == "failed: LevelDB error: IO error: no space left on device"
    assert compaction.done == 0


def test_a_node_compacts_one_at_a_time_and_says_so_in_info():
    engine = HeldEngine()
    clock = task.Clock()
    service = NodeService(clock, engine, "n1")
    service.on_config(ClusterConfig(2, 1))
    for partition in (0, 1):
        service.on_partition_state(PartitionState(partition, 1, "n1", ("n1",), ("n1",)))
    clock.advance(0)
    batch = WriteBatch()
    for partition in (0, 1):  # the partitions a node holds are those with a meta
        service.store.write_meta(batch, partition, service.replicas[partition].meta)
    engine.write(batch)
    protocol = NodeProtocol(service, 1 << 20)
    fields = info_fields(protocol._info(b"info"))
    assert fields["kv_full_compaction"] == "none"
    assert fields["kv_store_files_per_level"] == "", "an engine without levels has none to count"
    assert service.compact_store() == 7
    with pytest.raises(CommandError, match="already compacting its store"):
        service.compact_store()
    fields = info_fields(protocol._info(b"info"))
    assert fields["kv_full_compaction"] == "running" and fields["kv_full_compaction_ranges"] == "0/7"
    for _ in range(7):
        engine.release.release()
    wait_until_finished(service.full_compaction)
    fields = info_fields(protocol._info(b"info"))
    assert fields["kv_full_compaction"] == "done" and fields["kv_full_compaction_ranges"] == "7/7"
    assert service.compact_store() == 7, "a finished compaction does not stand in the way of the next"
    for _ in range(7):
        engine.release.release()
    service.stop_store_compaction()
