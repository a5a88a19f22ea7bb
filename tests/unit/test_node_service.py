"""The node's logic without sockets: write levels, fencing by generation, following, streaming."""

from types import SimpleNamespace

import pytest
from twisted.internet import defer, task
from twisted.internet.testing import StringTransport

from kvcommon.errors import NotPrimaryError, OutcomeUnknownError, TryAgainError
from kvcommon.replies import Pending
from kvcommon.resp import INCOMPLETE, OK, ReplyParser, encode_command
from kvmeta.schema import ClusterConfig, PartitionState
from kvnode.protocol import NodeProtocol
from kvnode.replica import Role
from kvnode.service import NodeService, RequestOptions
from kvnode.storage.memory import MemoryEngine
from kvnode.storage.records import LogEntry, decode_entry, encode_value

STATE = PartitionState(0, 3, "n1", ("n1", "n2", "n3"), ("n1", "n2", "n3"))


class FollowerInTouch:
    """Stands for a follower's stream whose connection spoke at ``clock``'s current time."""

    def __init__(self, follower, clock):
        self.follower = follower
        self.conn = SimpleNamespace(last_contact=clock.seconds(), streams=[], transport=StringTransport())

    def on_committed(self, entry, message):
        pass

    def close(self):
        pass


def make_service(node_id="n1", state=STATE, write_level="quorum"):
    clock = task.Clock()
    clock.advance(100)
    service = NodeService(clock, MemoryEngine(), node_id, write_timeout=5)
    service.on_config(ClusterConfig(1, 3, write_level=write_level))
    service.on_session(True)
    service.on_partition_state(state)
    service.leader.by_partition[0] = [FollowerInTouch(n, clock) for n in state.secondaries]
    clock.advance(0)
    return service, clock


def result_of(reply):
    """The value a reply has now: a Deferred's result, or the reply itself; None while pending."""
    if isinstance(reply, defer.Deferred):
        return reply.result if reply.called else None
    if isinstance(reply, Pending):
        return reply.result if reply.resolved else None
    return reply


def test_a_level_1_write_is_acknowledged_once_committed_locally():
    service, clock = make_service(write_level="1")
    reply = service.execute([b"SET", b"k", b"v"], 0, 3)
    assert result_of(reply) is None, "nothing is acknowledged before the group commit"
    clock.advance(0)
    assert result_of(reply) == OK
    assert result_of(service.execute([b"GET", b"k"], 0, 3)) == b"v"


def test_a_quorum_write_waits_for_one_follower_and_reads_of_its_key_wait_too():
    service, clock = make_service()
    write = service.execute([b"SET", b"k", b"v"], 0, 3)
    clock.advance(0)
    read = service.execute([b"GET", b"k"], 0, 3)
    other = service.execute([b"GET", b"other"], 0, 3)
    assert result_of(write) is None and result_of(read) is None
    assert result_of(other) is None, "a key without a pending write answers at once (None = missing)"
    service.on_follower_ack("n3", 0, 1)
    assert result_of(write) == OK
    assert result_of(read) == b"v"


def test_level_all_waits_for_every_in_sync_follower():
    service, clock = make_service()
    write = service.execute([b"SET", b"k", b"v"], 0, 3, RequestOptions(write_level="all"))
    clock.advance(0)
    service.on_follower_ack("n2", 0, 1)
    assert result_of(write) is None
    service.on_follower_ack("n3", 0, 1)
    assert result_of(write) == OK


def test_a_write_that_cannot_reach_its_level_times_out_with_a_clear_error():
    service, clock = make_service()
    write = service.execute([b"SET", b"k", b"v"], 0, 3)
    clock.advance(0)
    read = service.execute([b"GET", b"k"], 0, 3)
    clock.advance(5)
    service.expire_overdue()
    assert isinstance(result_of(read), TryAgainError), "a read did nothing: it may simply be retried"
    error = result_of(write)
    assert isinstance(error, OutcomeUnknownError), "not TRYAGAIN: a retry could overwrite newer writes"
    assert "may or may not survive" in error.message


def test_routes_by_an_old_or_unknown_generation_are_refused():
    service, _ = make_service()
    assert isinstance(service.execute([b"GET", b"k"], 0, 2), NotPrimaryError)
    assert isinstance(service.execute([b"GET", b"k"], 0, 4), TryAgainError)


def test_a_node_without_its_zookeeper_session_refuses_writes_and_strong_reads():
    service, _ = make_service()
    service.on_session(False)
    assert isinstance(service.execute([b"SET", b"k", b"v"], 0, 3), TryAgainError)
    assert isinstance(service.execute([b"GET", b"k"], 0, 3), TryAgainError)


def test_a_primary_out_of_touch_with_a_majority_of_its_replicas_stops_serving():
    service, clock = make_service(write_level="1")
    clock.advance(0.5)
    assert result_of(service.execute([b"GET", b"k"], 0, 3)) is None, "contacts 0.5s old: still serving"
    clock.advance(0.6)
    for command in ([b"GET", b"k"], [b"SET", b"k", b"v"]):
        error = service.execute(command, 0, 3)
        assert isinstance(error, TryAgainError) and "has not heard from a majority" in error.message
    assert result_of(service.execute([b"GET", b"k"], 0, 3, RequestOptions(read_level="eventual"))) is None
    service.leader.by_partition[0][0].conn.last_contact = clock.seconds()
    assert result_of(service.execute([b"GET", b"k"], 0, 3)) is None, "one follower in touch makes a majority"


def test_a_deposed_primary_fails_its_pending_writes_and_refuses_new_ones():
    service, clock = make_service()
    write = service.execute([b"SET", b"k", b"v"], 0, 3)
    clock.advance(0)
    service.on_partition_state(PartitionState(0, 4, "n2", ("n1", "n2", "n3"), ("n1", "n2", "n3")))
    assert isinstance(result_of(write), OutcomeUnknownError)
    assert isinstance(service.execute([b"SET", b"k", b"v"], 0, 4), NotPrimaryError)
    assert service.replicas[0].role == Role.SECONDARY


def test_a_secondary_applies_entries_in_order_and_refuses_gaps_and_older_generations():
    state = PartitionState(0, 3, "n2", ("n1", "n2", "n3"), ("n1", "n2", "n3"))
    service, clock = make_service("n1", state)
    acked = []
    record = encode_value(1 << 16, b"v")
    assert service.apply_replicated(0, LogEntry(3, 1, 1 << 16, ((b"k", record),)), acked.append) is None
    assert "expected seq 2" in service.apply_replicated(0, LogEntry(3, 3, 1, ((b"k", record),)), acked.append)
    clock.advance(0)
    assert acked == [1]
    assert service.store.get(0, b"k") == record
    assert "older than generation" in service.apply_replicated(0, LogEntry(2, 2, 1, ()), acked.append)


class TCPStringTransport(StringTransport):
    def setTcpNoDelay(self, enabled):
        pass


def follow(service, clock, next_seq, last_generation=0):
    proto = NodeProtocol(service, 1 << 20)
    transport = TCPStringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(encode_command([b"REPL.FOLLOW", b"n2", 0, 3, next_seq, last_generation, 7]))
    clock.advance(0)
    return proto, transport, messages_in(transport.value())


def messages_in(data: bytes) -> list:
    parser = ReplyParser()
    parser.feed(data)
    messages = []
    while (message := parser.next_reply()) is not INCOMPLETE:
        messages.append(message)
    return messages


def test_a_follower_gets_the_log_from_its_position_then_live_entries():
    service, clock = make_service(write_level="1")
    for i in range(3):
        service.execute([b"SET", b"k%d" % i, b"v"], 0, 3)
    clock.advance(0)
    proto, transport, messages = follow(service, clock, next_seq=2, last_generation=3)
    assert messages[0] == [b"START", 0, 7]
    assert [decode_entry(m[4]).seq for m in messages[1:]] == [2, 3]
    transport.clear()
    service.execute([b"SET", b"live", b"v"], 0, 3)
    clock.advance(0)
    clock.advance(0)
    [live] = messages_in(transport.value())
    assert live[0] == b"ENTRY" and decode_entry(live[4]).ops[0][0] == b"live"


def test_a_follower_whose_log_diverged_gets_a_snapshot():
    service, clock = make_service(write_level="1")
    service.execute([b"SET", b"k", b"v"], 0, 3)
    clock.advance(0)
    # It claims entry 1 was written in generation 2; ours was written in generation 3.
    _, _, messages = follow(service, clock, next_seq=2, last_generation=2)
    kinds = [m[0] for m in messages]
    assert kinds[:2] == [b"START", b"SNAP-BEGIN"]
    assert b"SNAP-END" in kinds


@pytest.mark.parametrize("raw", [b"w=2", b"x=1", b"r=maybe"])
def test_bad_request_options_are_refused(raw):
    with pytest.raises(Exception, match="invalid request option"):
        RequestOptions.parse(raw)


def px_get(key, generation=3, options=b"-"):
    return encode_command([b"PX", 0, generation, options, b"GET", key])


def test_the_fast_get_answers_as_the_general_path_does_or_leaves_the_command_to_it():
    service, clock = make_service()
    service.commit.add(lambda batch: service.store.put_data(batch, 0, b"live", encode_value(1 << 16, b"v")))
    service.commit.add(lambda batch: service.store.put_data(batch, 0, b"old", encode_value(1 << 16, b"v", 1)))
    clock.advance(0)
    assert service.fast_get(b"0", b"3", b"-", b"live") is None, "the lease is not worked out yet"
    assert result_of(service.execute([b"GET", b"live"], 0, 3)) == b"v"
    assert service.fast_get(b"0", b"3", b"-", b"live") == b"$1\r\nv\r\n"
    assert service.fast_get(b"0", b"3", b"-", b"absent") == b"$-1\r\n"
    assert service.fast_get(b"0", b"3", b"-", b"old") is None, "expired: the general path deletes it"
    assert service.fast_get(b"0", b"2", b"-", b"live") is None, "an old generation gets NOTPRIMARY"
    assert service.fast_get(b"0", b"3", b"r=eventual", b"live") is None
    service.execute([b"SET", b"live", b"new"], 0, 3)
    clock.advance(0)
    assert service.fast_get(b"0", b"3", b"-", b"live") is None, "a pending write: the read waits for it"
    clock.advance(1.1)
    assert service.fast_get(b"0", b"3", b"-", b"absent") is None, "lease run out: the general path decides"
    service.on_session(False)
    assert service.fast_get(b"0", b"3", b"-", b"absent") is None


def test_px_get_replies_keep_request_order_and_errors_keep_their_words():
    service, clock = make_service()
    proto = NodeProtocol(service, 1 << 20)
    transport = TCPStringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(encode_command([b"PX", 0, 3, b"-", b"SET", b"k", b"v"]) + px_get(b"other"))
    clock.advance(0)
    assert transport.value() == b"", "the GET waits behind the pending SET"
    service.on_follower_ack("n2", 0, 1)
    assert transport.value() == b"+OK\r\n$-1\r\n"
    transport.clear()
    proto.dataReceived(px_get(b"k") + px_get(b"k", generation=2) + encode_command([b"PX", b"x", 3, b"-", b"GET", b"k"]))
    replies = messages_in(transport.value())
    assert replies[0] == b"v"
    assert str(replies[1]).startswith("NOTPRIMARY") and "must be an integer" in str(replies[2])
