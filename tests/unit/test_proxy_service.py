"""The proxy's send-and-retry logic against a scripted pool: what is retried, and for how long."""

from twisted.internet import defer, task
from twisted.internet.testing import StringTransport

from kvcommon.errors import ClusterDownError, OutcomeUnknownError, TryAgainError
from kvcommon.resp import RawReply, encode_command
from kvmeta.schema import NodeRecord, PartitionState
from kvproxy.commands import ClientSession
from kvproxy.pool import NodeConnection, NodeUnavailable
from kvproxy.routing import ClusterView
from kvproxy.service import ProxyService


class ScriptedPool:
    """Answers each request with the next scripted reply (a RawReply, or an exception to fail with)."""

    def __init__(self, *replies):
        self.replies = list(replies)
        self.requests = []

    def request(self, node, host, port, args):
        self.requests.append(args)
        reply = self.replies.pop(0)
        return defer.fail(reply) if isinstance(reply, Exception) else defer.succeed(RawReply(reply))


def make(pool):
    clock = task.Clock()
    view = ClusterView(1, {0: PartitionState(0, 1, "a", ("a",), ("a",))}, {"a": NodeRecord("a", "h", 1)})
    return ProxyService(clock, pool, view, retry_seconds=2), clock


def outcome(d):
    """What a Deferred has fired with so far (None while it waits), without consuming it."""
    return d.result if d.called else None


def test_routing_refusals_are_retried_until_a_node_answers():
    pool = ScriptedPool(b"-NOTPRIMARY partition 0 ...\r\n", b"-TRYAGAIN not yet\r\n", b"+OK\r\n")
    service, clock = make(pool)
    d = service.send(0, [b"SET", b"k", b"v"])
    clock.advance(0.1)
    clock.advance(0.1)
    assert outcome(d) == b"+OK\r\n"
    assert len(pool.requests) == 3 and pool.requests[0][:3] == [b"PX", 0, 1]


def test_a_write_that_may_have_been_applied_is_never_retried():
    pool = ScriptedPool(b"-UNCERTAIN the write was applied on the primary but ...\r\n", b"+OK\r\n")
    service, clock = make(pool)
    assert outcome(service.send(0, [b"SET", b"k", b"v"])).startswith(b"-UNCERTAIN")
    assert len(pool.requests) == 1


def test_a_write_whose_connection_broke_after_sending_is_reported_uncertain_but_a_read_is_retried():
    broke = NodeUnavailable("a", "connection lost before the reply", sent=True)
    service, clock = make(ScriptedPool(broke))
    assert isinstance(outcome(service.send(0, [b"SET", b"k", b"v"])), OutcomeUnknownError)
    service, clock = make(ScriptedPool(broke, b"$1\r\nv\r\n"))
    d = service.send(0, [b"GET", b"k"], readonly=True)
    clock.advance(0.1)
    assert outcome(d) == b"$1\r\nv\r\n"


def test_the_retry_budget_counts_from_when_the_request_arrived():
    service, clock = make(ScriptedPool(*[b"-TRYAGAIN not yet\r\n"] * 100))
    d = service.send(0, [b"GET", b"k"], readonly=True)
    for _ in range(30):
        clock.advance(0.1)
    assert isinstance(outcome(d), ClusterDownError)
    assert "after 2s" in outcome(d).message


def test_a_connection_whose_oldest_request_is_overdue_is_closed_and_its_writes_fail_uncertain():
    conn = NodeConnection("a")
    transport = StringTransport()
    transport.abortConnection = lambda: conn.connectionLost(None)
    conn.transport = transport
    first = conn.request([b"PX", 0, 1, b"-", b"SET", b"k", b"v"], now=100.0)
    conn.abort_if_stuck(now=105.0, timeout=12)
    assert outcome(first) is None
    conn.abort_if_stuck(now=113.0, timeout=12)
    failure = outcome(first)
    assert failure.check(NodeUnavailable) and failure.value.sent and "no answer within 12s" in str(failure.value)


class ConnectedPool(ScriptedPool):
    """An open connection (over a StringTransport) for the first attempt; scripted replies for retries."""

    def __init__(self, *replies):
        super().__init__(*replies)
        self.conn = NodeConnection("a")
        self.conn.transport = StringTransport()

    def connection(self, node, host, port):
        return self.conn


def pending_outcome(pending):
    got = []
    pending.then(got.append)
    return got[0] if got else None


def test_the_hot_path_sends_px_and_hands_back_the_node_reply():
    pool = ConnectedPool()
    service, clock = make(pool)
    pending = service.send_one(0, [b"GET", b"k"], readonly=True)
    assert pool.conn.transport.value() == encode_command([b"PX", 0, 1, b"-", b"GET", b"k"])
    pool.conn.dataReceived(b"$1\r\nv\r\n")
    assert pending_outcome(pending) == b"$1\r\nv\r\n"


def test_the_hot_path_retries_a_refusal_the_slow_way():
    pool = ConnectedPool(b"+OK\r\n")
    service, clock = make(pool)
    pending = service.send_one(0, [b"SET", b"k", b"v"])
    pool.conn.dataReceived(b"-NOTPRIMARY partition 0 ...\r\n")
    clock.advance(0.1)
    assert pending_outcome(pending) == b"+OK\r\n"
    assert len(pool.requests) == 1


def test_the_hot_path_reports_a_broken_write_uncertain():
    pool = ConnectedPool()
    service, clock = make(pool)
    pending = service.send_one(0, [b"SET", b"k", b"v"])
    pool.conn.connectionLost(None)
    assert isinstance(pending_outcome(pending), OutcomeUnknownError)
    assert pool.requests == []


def test_a_refused_write_is_not_sent_again_once_its_client_has_gone():
    # A client that timed out and wrote the key again must not have its old write land after the new one.
    pool = ConnectedPool(b"+OK\r\n")
    service, clock = make(pool)
    client = ClientSession()
    pending = service.send_one(0, [b"SET", b"k", b"old"], client=client)
    client.connected = False
    pool.conn.dataReceived(b"-NOTPRIMARY partition 0 ...\r\n")
    clock.advance(0.1)
    assert pool.requests == []
    assert isinstance(pending_outcome(pending), OutcomeUnknownError)


def test_a_client_that_leaves_while_its_command_waits_for_a_new_primary_stops_the_retries():
    pool = ScriptedPool(b"-TRYAGAIN not yet\r\n", b"+OK\r\n")
    service, clock = make(pool)
    client = ClientSession()
    d = service.send(0, [b"SET", b"k", b"v"], client=client)
    assert len(pool.requests) == 1
    client.connected = False
    clock.advance(0.1)
    assert len(pool.requests) == 1
    assert isinstance(outcome(d), OutcomeUnknownError) and "client disconnected" in outcome(d).message


def test_a_refused_command_of_a_connected_client_is_sent_again():
    pool = ConnectedPool(b"+OK\r\n")
    service, clock = make(pool)
    pending = service.send_one(0, [b"SET", b"k", b"v"], client=ClientSession())
    pool.conn.dataReceived(b"-NOTPRIMARY partition 0 ...\r\n")
    clock.advance(0.1)
    assert pending_outcome(pending) == b"+OK\r\n"


def test_a_refused_command_with_a_later_one_of_its_client_behind_it_is_not_sent_again():
    # Sent again, it could run after the later one: the client gets TRYAGAIN (nothing was done) instead.
    pool = ConnectedPool(b"+OK\r\n")
    service, clock = make(pool)
    client = ClientSession()
    first = service.send_one(0, [b"SET", b"k", b"a"], client=client)
    second = service.send_one(0, [b"SET", b"k", b"b"], client=client)
    pool.conn.dataReceived(b"-NOTPRIMARY partition 0 ...\r\n+OK\r\n")
    clock.advance(0.1)
    assert pool.requests == []
    assert isinstance(pending_outcome(first), TryAgainError)
    assert "later commands of this connection" in pending_outcome(first).message
    assert pending_outcome(second) == b"+OK\r\n"


def test_a_later_command_to_another_partition_does_not_stop_a_retry():
    pool = ConnectedPool(b"+OK\r\n")
    clock = task.Clock()
    view = ClusterView(2, {p: PartitionState(p, 1, "a", ("a",), ("a",)) for p in (0, 1)},
                       {"a": NodeRecord("a", "h", 1)})
    service = ProxyService(clock, pool, view, retry_seconds=2)
    client = ClientSession()
    first = service.send_one(0, [b"SET", b"k", b"a"], client=client)
    service.send_one(1, [b"SET", b"other", b"b"], client=client)
    pool.conn.dataReceived(b"-NOTPRIMARY partition 0 ...\r\n")
    clock.advance(0.1)
    assert pending_outcome(first) == b"+OK\r\n"
    assert len(pool.requests) == 1
