"""The node's RESP adapter: bytes in, commands to the service, replies out in order.

Clients of a node are proxies (``PX`` commands), other nodes (replication) and operators (``redis-cli``
for inspection). The protocol is also the producer of its connection's writes, so a replication stream
can tell when the peer reads too slowly and stop pushing.
"""

from __future__ import annotations

import logging

from twisted.internet import protocol
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from kvcommon.errors import CommandError, KVError, ProtocolError
from kvcommon.output import turn_writer
from kvcommon.replies import OrderedReplies
from kvcommon.request_parser import FastRequestParser
from kvcommon.resp import OK, PONG, ErrorReply, Status, encode
from kvnode.service import NodeService, RequestOptions

log = logging.getLogger(__name__)

_PX = (b"PX", b"px")
_GET = (b"GET", b"get")


def _int(raw: bytes, what: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise CommandError(f"{what} must be an integer, got {raw[:32]!r}") from None


@implementer(IPushProducer)
class NodeProtocol(protocol.Protocol):
    def __init__(self, service: NodeService, max_bulk_len: int):
        self.service = service
        self.parser = FastRequestParser(max_bulk_len=max_bulk_len)
        self.replies = OrderedReplies(self._write_reply)
        self.streams: list = []  # replication streams to the follower at the other end
        self.paused = False
        self.follower_id: str | None = None
        # When a follower on this connection last spoke: the primary's lease counts recent contacts.
        self.last_contact = 0.0

    def connectionMade(self):
        # Small requests and replies must not wait for Nagle's algorithm.
        self.transport.setTcpNoDelay(True)
        self.transport.registerProducer(self, True)

    def connectionLost(self, reason=protocol.connectionDone):
        self.service.leader.connection_lost(self)

    # IPushProducer: the transport calls these as its send buffer fills and drains.
    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        for stream in list(self.streams):
            stream.on_resume()

    def stopProducing(self):
        self.paused = True

    def _write_reply(self, reply) -> None:
        if self.transport is not None:
            turn_writer.write(self.transport, encode(reply))

    def dataReceived(self, data: bytes):
        self.parser.feed(data)
        fast_get = self.service.fast_get
        try:
            while (args := self.parser.next_command()) is not None:
                # PX partition generation options GET key, answered at once unless the general path must
                # decide (and never ahead of an earlier reply still pending).
                if len(args) == 6 and args[4] in _GET and args[0] in _PX and not self.replies:
                    reply = fast_get(args[1], args[2], args[3], args[5])
                    if reply is not None:
                        turn_writer.write(self.transport, reply)
                        continue
                self._dispatch(args)
        except ProtocolError as err:
            self._write_reply(err)
            turn_writer.flush_transport(self.transport)
            self.transport.loseConnection()

    def _dispatch(self, args: list[bytes]) -> None:
        name = args[0].lower()
        try:
            if name == b"px":
                if len(args) < 5:
                    raise CommandError("wrong number of arguments for 'px' command")
                options = RequestOptions.parse(args[3])
                reply = self.service.execute(args[4:], _int(args[1], "partition"), _int(args[2], "generation"),
                                             options)
            elif name == b"repl.ack":
                self.last_contact = self.service.reactor.seconds()
                self.service.on_follower_ack(args[1].decode(), int(args[2]), int(args[3]))
                return
            elif name == b"repl.ping":
                self.last_contact = self.service.reactor.seconds()
                return
            elif name == b"repl.follow":
                self.last_contact = self.service.reactor.seconds()
                self._follow(args)
                return
            elif name == b"repl.unfollow":
                self.service.leader.unfollow(self, int(args[1]))
                return
            else:
                reply = self._admin(name, args)
                if reply is None:
                    reply = self.service.execute(args)
        except KVError as err:
            reply = err
        except (ValueError, IndexError):
            reply = CommandError(f"malformed {args[0][:32].decode('utf-8', 'replace')} command")
        self.replies.push(reply)

    def _follow(self, args: list[bytes]) -> None:
        follower, partition, generation, next_seq, last_generation, token = (
            args[1].decode(), int(args[2]), int(args[3]), int(args[4]), int(args[5]), int(args[6])
        )
        self.follower_id = follower
        self.service.leader.follow(self, follower, partition, generation, next_seq, last_generation, token)

    def _admin(self, name: bytes, args: list[bytes]):
        """Commands about the node itself. None if ``name`` is a data command."""
        if name == b"ping":
            return PONG if len(args) == 1 else args[1]
        if name == b"kv.dump":
            return self.service.dump(int(args[1]))
        if name == b"kv.positions":
            return self.service.roles()
        if name == b"kv.position":
            return self.service.position_of(int(args[1]))
        if name == b"kv.compact":
            return self.service.compact_store()
        if name == b"kv.pause":
            return self.service.pause_writes(int(args[1]), int(args[2]), float(args[3]))
        if name == b"select":
            return OK if args[1:] == [b"0"] else ErrorReply("ERR DB index is out of range")
        if name == b"quit":
            self.transport.loseConnection()
            return OK
        if name in (b"hello", b"command", b"client", b"info"):
            return self._info(name)
        return None

    def _full_compaction_info(self) -> str:
        """INFO lines on the last full compaction of the store (KV.COMPACT), if any."""
        compaction = self.service.full_compaction
        if compaction is None:
            return "kv_full_compaction:none\r\n"
        return (f"kv_full_compaction:{compaction.status()}\r\n"
                f"kv_full_compaction_ranges:{compaction.done}/{len(compaction.ranges)}\r\n"
                f"kv_full_compaction_seconds:{compaction.seconds():.1f}\r\n")

    def _background_info(self) -> str:
        service = self.service
        compactor, expiry = service.compactor, service.expiry
        return (f"kv_history_records_read:{compactor.read}\r\n"
                f"kv_history_records_removed:{compactor.removed}\r\n"
                f"kv_history_compaction_behind:{int(compactor.behind)}\r\n"
                f"kv_history_compaction_seconds:{service.compaction_task.seconds:.1f}\r\n"
                f"kv_expired_keys_deleted:{expiry.deleted}\r\n"
                f"kv_expiry_sweep_behind:{int(expiry.behind)}\r\n"
                f"kv_expiry_sweep_seconds:{service.expiry_task.seconds:.1f}\r\n")

    def _info(self, name: bytes):
        if name == b"info":
            roles = self.service.roles()
            primaries = sum(1 for i in range(1, len(roles), 4) if roles[i] == "primary")
            text = (
                "# Server\r\n"
                f"kv_node_id:{self.service.id}\r\n"
                f"kv_partitions:{len(self.service.replicas)}\r\n"
                f"kv_primaries:{primaries}\r\n"
                f"kv_connected:{int(self.service.connected)}\r\n"
                f"kv_group_commits:{self.service.commit.batches}\r\n"
                f"kv_group_commits_on_writer_thread:{self.service.commit.offloaded}\r\n"
                f"kv_group_commits_held:{self.service.commit.held}\r\n"
                f"kv_commands_processed:{self.service.commands_processed}\r\n"
                f"kv_store_files_per_level:{','.join(map(str, self.service.store.engine.files_per_level()))}\r\n"
                f"{self._full_compaction_info()}"
                f"{self._background_info()}"
            )
            return text.encode()
        if name == b"hello":
            return ErrorReply("NOPROTO a node speaks RESP2 only; connect to a proxy for RESP3")
        if name == b"command":
            return []
        return Status("OK")


class NodeFactory(protocol.Factory):
    def __init__(self, service: NodeService, max_bulk_len: int = 64 * 1024 * 1024):
        self.service = service
        self.max_bulk_len = max_bulk_len

    def buildProtocol(self, addr):
        return NodeProtocol(self.service, self.max_bulk_len)
