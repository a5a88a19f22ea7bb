"""Removing expired keys on a node: the sweep, and deletes by the commands that meet an expired key.

The node runs on a task.Clock with an in-memory engine; expiry times are wall-clock milliseconds, so the
tests give keys a few milliseconds to live and sleep past them.
"""

import time

from twisted.internet import defer, task

from kvmeta.schema import ClusterConfig, PartitionState
from kvnode.service import NodeService
from kvnode.storage.memory import MemoryEngine
from kvnode.storage.records import LogEntry, encode_value

# Node n1 alone holds the partition when it is primary, so it needs no follower to keep its lease.
ALONE = ("n1",)


def make_service(primary="n1"):
    clock = task.Clock()
    service = NodeService(clock, MemoryEngine(), "n1", write_timeout=5)
    service.on_config(ClusterConfig(1, 1, write_level="1"))
    service.on_session(True)
    replicas = ALONE if primary == "n1" else ("n1", primary)
    service.on_partition_state(PartitionState(0, 3, primary, replicas, replicas))
    clock.advance(0)
    return service, clock


def run(service, clock, *args):
    reply = service.execute([a if isinstance(a, bytes) else str(a).encode() for a in args], 0, 3)
    clock.advance(0)
    return reply.result if isinstance(reply, defer.Deferred) else reply


def last_entry(service) -> LogEntry:
    replica = service.replicas[0]
    return service.store.read_log(0, replica.committed_seq, 1)[0]


def test_the_sweep_deletes_due_keys_by_a_log_entry():
    service, clock = make_service()
    run(service, clock, "SET", "k", "v", "PX", "100")
    run(service, clock, "SET", "keep", "v", "EX", "100")
    assert service.sweep_expired() == 0, "nothing is due yet"
    time.sleep(0.15)
    assert run(service, clock, "DBSIZE") == 2, "like Redis, DBSIZE counts a key until it is removed"
    assert service.sweep_expired() == 1
    clock.advance(0)
    assert last_entry(service).ops == ((b"k", None),), "secondaries get the delete in the log"
    assert service.store.get(0, b"k") is None and run(service, clock, "DBSIZE") == 1


def test_the_sweep_finds_keys_written_before_this_node_became_primary():
    service, clock = make_service(primary="n2")
    expired = encode_value(1 << 16, b"old", int(time.time() * 1000) - 1)
    service.apply_replicated(0, LogEntry(3, 1, 1 << 16, ((b"gone", expired), (b"live", encode_value(1, b"v")))),
                             lambda seq: None)
    clock.advance(0)
    assert service.sweep_expired() == 0, "a secondary never deletes on its own clock"
    assert service.store.get(0, b"gone") == expired
    service.on_partition_state(PartitionState(0, 4, "n1", ALONE, ALONE))
    clock.advance(0)
    assert service.sweep_expired() == 1
    clock.advance(0)
    assert service.store.get(0, b"gone") is None and service.store.get(0, b"live") is not None


def test_the_sweep_leaves_a_key_written_again_without_expiry():
    service, clock = make_service()
    run(service, clock, "SET", "k", "v", "PX", "100")
    time.sleep(0.15)
    run(service, clock, "SET", "k", "again")
    assert service.sweep_expired() == 0
    assert run(service, clock, "GET", "k") == b"again"


def test_a_read_that_meets_an_expired_key_deletes_it_without_waiting_for_the_delete():
    service, clock = make_service()
    run(service, clock, "SET", "k", "v", "PX", "100")
    seq = service.replicas[0].committed_seq
    time.sleep(0.15)
    assert service.execute([b"GET", b"k"], 0, 3) is None, "answered at once"
    clock.advance(0)
    assert service.replicas[0].committed_seq == seq + 1
    assert last_entry(service).ops == ((b"k", None),)


def test_reads_on_a_secondary_hide_expired_keys_but_write_nothing():
    from kvnode.service import RequestOptions

    service, clock = make_service(primary="n2")
    expired = encode_value(1 << 16, b"old", int(time.time() * 1000) - 1)
    service.apply_replicated(0, LogEntry(3, 1, 1 << 16, ((b"k", expired),)), lambda seq: None)
    clock.advance(0)
    eventual = RequestOptions(read_level="eventual")
    assert service.execute([b"EXISTS", b"k"], 0, 3, eventual) == 0
    assert service.execute([b"PTTL", b"k"], 0, 3, eventual) == -2
    clock.advance(0)
    assert service.replicas[0].seq == 1 and service.store.get(0, b"k") == expired


def test_the_walk_reads_a_partition_once_when_this_node_becomes_its_primary():
    service, clock = make_service(primary="n2")
    soon = encode_value(1 << 16, b"v", int(time.time() * 1000) + 100)
    service.apply_replicated(0, LogEntry(3, 1, 1 << 16, ((b"soon", soon), (b"live", encode_value(1, b"v")))),
                             lambda seq: None)
    clock.advance(0)
    service.on_partition_state(PartitionState(0, 4, "n1", ALONE, ALONE))
    clock.advance(0)
    assert service.sweep_expired() == 0
    read = service.expiry.read
    assert read == 2, "the walk read the partition and put the key that expires later in the heap"
    time.sleep(0.15)
    assert service.sweep_expired() == 1, "found in the heap, without another walk"
    assert service.expiry.read == read
    clock.advance(0)
    assert service.store.get(0, b"soon") is None


def test_a_primary_whose_expiring_keys_are_all_in_the_heap_reads_nothing():
    service, clock = make_service()
    service.sweep_expired()  # the walk of a partition this node has just become primary of
    read = service.expiry.read
    run(service, clock, "SET", "k", "v", "PX", "100")
    for _ in range(10):
        service.sweep_expired()
    assert service.expiry.read == read


def test_keys_the_full_heap_has_no_room_for_are_found_by_a_walk():
    service, clock = make_service()
    service.expiry.max_tracked = 1
    service.sweep_expired()
    run(service, clock, "SET", "a", "v", "PX", "100")
    run(service, clock, "SET", "b", "v", "PX", "100")  # no room: the partition is walked again
    time.sleep(0.15)
    assert service.sweep_expired() == 2
    clock.advance(0)
    assert run(service, clock, "DBSIZE") == 0
