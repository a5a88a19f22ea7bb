"""Connections from the proxy to the nodes: one pipelined RESP connection per node, shared by all clients.

Requests are written as they come and replies matched in order, so many clients' commands share one
TCP stream without waiting for each other.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from twisted.internet import defer, protocol
from twisted.python.failure import Failure

from kvcommon.output import turn_writer
from kvcommon.resp import RawReply, encode_command, reply_end

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2.0
# A node that has not answered a request for this long is taken for unreachable and its connection closed.
# Longer than a node's own write timeout (10 s), so a slow write gets its node's answer first.
REQUEST_TIMEOUT = 12.0


def _fire(d: defer.Deferred, result) -> None:
    if isinstance(result, NodeUnavailable):
        d.errback(result)
    else:
        d.callback(result)


class NodeUnavailable(Exception):
    """The node could not be reached, or the connection broke before its reply came."""

    def __init__(self, node: str, reason: str, sent: bool):
        super().__init__(f"node {node}: {reason}")
        self.node = node
        self.sent = sent


class NodeConnection(protocol.Protocol):
    def __init__(self, node: str):
        self.node = node
        self.buffer = bytearray()
        # Who gets each reply, in the order the requests went: a callable taking the RawReply, or the
        # NodeUnavailable if the connection breaks first.
        self.waiting: deque[Callable[[object], None]] = deque()
        self.sent_at: deque[float] = deque()  # when each waiting request was sent, oldest first
        self.connected_d: defer.Deferred = defer.Deferred()
        self.lost = False

    def connectionMade(self):
        # Small requests and replies must not wait for Nagle's algorithm.
        self.transport.setTcpNoDelay(True)
        self.connected_d.callback(self)

    def request(self, args: list, now: float) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.send(encode_command(args), now, lambda result: _fire(d, result))
        return d

    def send(self, request: bytes, now: float, on_result: Callable[[object], None]) -> None:
        """Send one encoded request; on_result gets its RawReply, or the NodeUnavailable if the connection
        breaks before the reply."""
        self.waiting.append(on_result)
        self.sent_at.append(now)
        turn_writer.write(self.transport, request)

    def dataReceived(self, data: bytes):
        buffer = self.buffer
        if not buffer:  # the common case: the read starts with a reply, and is read in place
            taken = self._take_replies(data)
            if taken < len(data):
                buffer += memoryview(data)[taken:]
            return
        buffer += data
        del buffer[:self._take_replies(buffer)]

    def _take_replies(self, data: bytes | bytearray) -> int:
        """Hand each whole reply in data to its waiter; returns where the replies taken end."""
        waiting = self.waiting
        sent_at = self.sent_at
        pos = 0
        while (end := reply_end(data, pos)) > 0:
            if not waiting:
                log.warning("node %s sent a reply nobody asked for; closing the connection", self.node)
                self.transport.loseConnection()
                return len(data)
            reply = RawReply(data[pos:end])
            pos = end
            sent_at.popleft()
            waiting.popleft()(reply)
        return pos

    def connectionLost(self, reason=protocol.connectionDone):
        self.lost = True
        waiting, self.waiting = self.waiting, deque()
        self.sent_at.clear()
        why = self.abort_reason or "connection lost before the reply"
        for on_result in waiting:
            on_result(NodeUnavailable(self.node, why, sent=True))

    abort_reason = ""

    def abort_if_stuck(self, now: float, timeout: float) -> None:
        """Close the connection if its oldest request has waited too long: the node is cut off or hung, and
        every request behind it would wait too (replies come in order)."""
        if self.sent_at and now - self.sent_at[0] > timeout:
            self.abort_reason = f"no answer within {timeout:.0f}s"
            log.warning("node %s has not answered for %.0fs; closing the connection", self.node, timeout)
            self.transport.abortConnection()


class NodePool:
    def __init__(self, reactor, request_timeout: float = REQUEST_TIMEOUT):
        self.reactor = reactor
        self.request_timeout = request_timeout
        self._connections: dict[tuple[str, str, int], NodeConnection] = {}
        self._connecting: dict[tuple[str, str, int], list[defer.Deferred]] = {}

    def request(self, node: str, host: str, port: int, args: list) -> defer.Deferred:
        key = (node, host, port)
        conn = self._connections.get(key)
        if conn is not None and not conn.lost:
            return conn.request(args, self.reactor.seconds())
        d = self._connect(key)
        d.addCallback(lambda c: c.request(args, self.reactor.seconds()))
        return d

    def connection(self, node: str, host: str, port: int) -> NodeConnection | None:
        """The open connection to a node, if there is one (request() opens one)."""
        conn = self._connections.get((node, host, port))
        return conn if conn is not None and not conn.lost else None

    def check_stuck(self) -> None:
        """Run periodically: close connections whose oldest request is overdue."""
        now = self.reactor.seconds()
        for conn in list(self._connections.values()):
            conn.abort_if_stuck(now, self.request_timeout)

    def _connect(self, key: tuple[str, str, int]) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        waiters = self._connecting.get(key)
        if waiters is not None:
            waiters.append(d)
            return d
        self._connecting[key] = [d]
        node, host, port = key
        conn = NodeConnection(node)
        factory = protocol.ClientFactory.forProtocol(lambda: conn)

        def failed(connector, reason: Failure):
            problem = NodeUnavailable(node, f"cannot connect to {host}:{port}: {reason.getErrorMessage()}",
                                      sent=False)
            for waiter in self._connecting.pop(key, []):
                waiter.errback(problem)

        def made(c):
            self._connections[key] = c
            for waiter in self._connecting.pop(key, []):
                waiter.callback(c)

        factory.clientConnectionFailed = failed
        factory.clientConnectionLost = lambda connector, reason: self._forget(key, conn)
        conn.connected_d.addCallback(made)
        self.reactor.connectTCP(host, port, factory, timeout=CONNECT_TIMEOUT)
        return d

    def _forget(self, key, conn) -> None:
        if self._connections.get(key) is conn:
            del self._connections[key]

    def close(self) -> None:
        for conn in self._connections.values():
            conn.transport.loseConnection()
        self._connections.clear()

