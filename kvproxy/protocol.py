"""The client-facing RESP adapter: RESP2, RESP3 (after HELLO 3) and inline commands."""

from __future__ import annotations

from twisted.internet import protocol

from kvcommon.errors import ProtocolError
from kvcommon.output import turn_writer
from kvcommon.replies import OrderedReplies
from kvcommon.request_parser import FastRequestParser
from kvcommon.resp import OK, encode
from kvproxy.commands import ClientSession, Commands


class ClientProtocol(protocol.Protocol):
    def __init__(self, commands: Commands, max_bulk_len: int):
        self.commands = commands
        self.parser = FastRequestParser(max_bulk_len=max_bulk_len)
        self.replies = OrderedReplies(self._write)
        self.session: ClientSession | None = None
        self.closing = False

    def connectionMade(self):
        # Small requests and replies must not wait for Nagle's algorithm.
        self.transport.setTcpNoDelay(True)
        peer = self.transport.getPeer()
        self.session = ClientSession(f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}",
                                     self.commands.service.default_read_level)
        self.commands.connected_clients += 1

    def connectionLost(self, reason=protocol.connectionDone):
        self.commands.connected_clients -= 1
        self.session.connected = False
        # Replies still pending are dropped with the connection; the commands themselves run to the end,
        # so a client that disconnects mid-request loses nothing that was acknowledged. What a node refused
        # is not sent again (see ProxyService.send): a write landing that late could undo newer ones.
        self.closing = True

    def _write(self, reply) -> None:
        if not self.closing:
            turn_writer.write(self.transport, encode(reply, self.session.protocol))

    def dataReceived(self, data: bytes):
        if self.closing:
            return
        self.parser.feed(data)
        commands = self.commands
        try:
            while (args := self.parser.next_command()) is not None:
                if args[0].lower() == b"quit":
                    self.replies.push(OK)
                    self.closing_after_replies()
                    return
                self.replies.push(commands.execute(self.session, args))
        except ProtocolError as err:
            # As Redis does: say what was wrong, then close, since the stream cannot be resynchronised.
            self.replies.push(err)
            self.closing_after_replies()

    def closing_after_replies(self) -> None:
        def close(_=None):
            self.closing = True
            turn_writer.flush_transport(self.transport)
            self.transport.loseConnection()

        if len(self.replies) == 0:
            close()
        else:
            self.replies.push_callback(close)


class ClientFactory(protocol.Factory):
    def __init__(self, commands: Commands, max_bulk_len: int = 64 * 1024 * 1024):
        self.commands = commands
        self.max_bulk_len = max_bulk_len

    def buildProtocol(self, addr):
        return ClientProtocol(self.commands, self.max_bulk_len)
