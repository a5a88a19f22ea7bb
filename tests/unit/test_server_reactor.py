"""ServerReactor: EPollReactor's event handling without the per-event logging context."""

import socket
import time

from twisted.internet import protocol

from kvcommon.reactor import ServerReactor


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        if data == b"boom":
            raise ValueError("a handler failed")
        self.transport.write(data)


def iterate_until(reactor, done, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        reactor.iterate(0.01)
    return done()


def received(sock):
    try:
        return sock.recv(100)
    except BlockingIOError:
        return b""


def test_serves_connections_and_closes_one_whose_handler_fails():
    reactor = ServerReactor()
    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")
    try:
        with socket.create_connection(("127.0.0.1", port.getHost().port)) as client:
            client.setblocking(False)
            client.sendall(b"hello")
            got = []
            assert iterate_until(reactor, lambda: got.append(received(client)) or b"".join(got) == b"hello")
            client.sendall(b"boom")
            closed = []

            def peer_closed():
                try:
                    closed.append(client.recv(100) == b"")
                except BlockingIOError:
                    pass
                return bool(closed)

            assert iterate_until(reactor, peer_closed) and closed[0] is True
    finally:
        port.stopListening()
        reactor.iterate(0)
