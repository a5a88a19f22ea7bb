"""TurnWriter: one send per connection per reactor turn, and the transport's buffer for what does not fit."""

import socket

import pytest
from twisted.internet import task
from twisted.internet.testing import StringTransport

from kvcommon.output import TurnWriter


class SocketTransport:
    """The parts of a Twisted TCP transport TurnWriter uses, over one end of a real socket pair."""

    def __init__(self, sock: socket.socket, clock: task.Clock):
        self.socket = sock
        self.reactor = clock
        self.connected = True
        self.disconnecting = False
        self.dataBuffer = b""
        self._tempDataLen = 0
        self.buffered: list[bytes] = []  # what went through write(): the transport's own buffer

    def write(self, data: bytes) -> None:
        self.buffered.append(data)
        self._tempDataLen += len(data)


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def writer_on(sock: socket.socket) -> tuple[task.Clock, SocketTransport, TurnWriter]:
    clock = task.Clock()
    return clock, SocketTransport(sock, clock), TurnWriter()


def received(sock: socket.socket) -> bytes:
    try:
        return sock.recv(1 << 20)
    except BlockingIOError:
        return b""


def test_writes_of_a_turn_leave_in_one_send_when_the_turn_ends(pair):
    clock, transport, writer = writer_on(pair[0])
    writer.write(transport, b"+OK\r\n")
    writer.write(transport, b"$1\r\na\r\n")
    assert received(pair[1]) == b""  # nothing before the turn ends
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(0)
    assert received(pair[1]) == b"+OK\r\n$1\r\na\r\n"
    assert transport.buffered == []


def test_one_end_of_turn_call_serves_every_connection(pair):
    clock = task.Clock()
    a, b = socket.socketpair()
    with a, b:
        first, second = SocketTransport(pair[0], clock), SocketTransport(a, clock)
        writer = TurnWriter()
        writer.write(first, b"one")
        writer.write(second, b"two")
        assert len(clock.getDelayedCalls()) == 1
        clock.advance(0)
        assert received(pair[1]) == b"one"
        assert b.recv(10) == b"two"


def test_what_the_kernel_does_not_take_goes_to_the_transport(pair):
    pair[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    clock, transport, writer = writer_on(pair[0])
    data = bytes(range(256)) * 40_000
    writer.write(transport, data)
    clock.advance(0)
    sent = b""
    while chunk := received(pair[1]):
        sent += chunk
    assert 0 < len(sent) < len(data)
    assert sent + b"".join(transport.buffered) == data


def test_a_transport_holding_bytes_keeps_the_order(pair):
    clock, transport, writer = writer_on(pair[0])
    transport.dataBuffer = b"older"
    writer.write(transport, b"newer")
    clock.advance(0)
    assert received(pair[1]) == b""
    assert transport.buffered == [b"newer"]


def test_a_closing_transport_gets_the_bytes_itself(pair):
    clock, transport, writer = writer_on(pair[0])
    writer.write(transport, b"-ERR bye\r\n")
    transport.disconnecting = True
    clock.advance(0)
    assert transport.buffered == [b"-ERR bye\r\n"]


def test_flush_transport_sends_one_connection_at_once(pair):
    clock, transport, writer = writer_on(pair[0])
    writer.write(transport, b"last words")
    writer.flush_transport(transport)
    assert received(pair[1]) == b"last words"
    clock.advance(0)
    assert received(pair[1]) == b""


def test_other_transports_are_written_at_once():
    transport = StringTransport()
    writer = TurnWriter()
    writer.write(transport, b"+PONG\r\n")
    assert transport.value() == b"+PONG\r\n"
