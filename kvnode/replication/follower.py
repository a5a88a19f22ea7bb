"""The secondary's side of replication: one connection to each node that is primary of a partition we hold.

On that connection we send ``REPL.FOLLOW`` for each such partition with our position, apply the entries
(or the snapshot) the primary streams back, and acknowledge what is committed on our disk. Connections
are re-made with back-off while there is something to follow.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from twisted.internet import protocol

from kvcommon.output import turn_writer
from kvcommon.resp import INCOMPLETE, ErrorReply, ReplyParser, encode_command
from kvnode.storage.records import decode_entry, decode_meta

if TYPE_CHECKING:
    from kvnode.service import NodeService

log = logging.getLogger(__name__)

RETRY_DELAY = 0.2
MAX_BACKOFF = 2.0
# Followers ping their primaries this often; a primary's lease needs recent contact (kvnode.service).
PING_INTERVAL = 0.2


class PrimaryLinkProtocol(protocol.Protocol):
    def __init__(self, link: PrimaryLink):
        self.link = link
        self.parser = ReplyParser()

    def connectionMade(self):
        # Small requests and replies must not wait for Nagle's algorithm.
        self.transport.setTcpNoDelay(True)
        self.link.on_connected(self)

    def dataReceived(self, data: bytes):
        self.parser.feed(data)
        while True:
            message = self.parser.next_reply()
            if message is INCOMPLETE:
                return
            if isinstance(message, ErrorReply) or not isinstance(message, list):
                log.warning("replication link to %s: unexpected reply %r", self.link.primary, message)
                continue
            self.link.on_message(message)

    def connectionLost(self, reason=protocol.connectionDone):
        self.link.on_disconnected(self)


class PrimaryLink:
    """Our replication connection to one primary, shared by every partition we follow there."""

    def __init__(self, links: FollowerLinks, primary: str):
        self.links = links
        self.service = links.service
        self.primary = primary
        self.partitions: dict[int, int] = {}  # partition -> generation we follow it in
        self.proto: PrimaryLinkProtocol | None = None
        self.connecting = False
        self.backoff = RETRY_DELAY
        self._tokens: dict[int, int] = {}  # partition -> token of the FOLLOW we wait to see started
        self._active: set[int] = set()
        self._next_token = 1
        self._acks: dict[int, int] = {}
        self._ack_scheduled = False

    # -- membership ----------------------------------------------------------------------------------

    def follow(self, partition: int, generation: int) -> None:
        if self.partitions.get(partition) == generation:
            return
        self.partitions[partition] = generation
        if self.proto is not None:
            self._send_follow(partition)
        else:
            self.connect()

    def unfollow(self, partition: int) -> None:
        if self.partitions.pop(partition, None) is None:
            return
        self._active.discard(partition)
        self._tokens.pop(partition, None)
        if self.proto is not None:
            turn_writer.write(self.proto.transport, encode_command([b"REPL.UNFOLLOW", partition]))
            if not self.partitions:
                turn_writer.flush_transport(self.proto.transport)
                self.proto.transport.loseConnection()

    # -- connection ----------------------------------------------------------------------------------

    def connect(self) -> None:
        if self.proto is not None or self.connecting or not self.partitions:
            return
        record = self.service.live_nodes.get(self.primary)
        if record is None:
            return  # on_live_nodes calls us again when the primary registers
        self.connecting = True
        factory = protocol.ClientFactory.forProtocol(lambda: PrimaryLinkProtocol(self))
        factory.clientConnectionFailed = lambda connector, reason: self._failed(reason)
        self.service.reactor.connectTCP(record.host, record.port, factory, timeout=5)

    def _failed(self, reason) -> None:
        self.connecting = False
        # Once per outage: while the primary is down this repeats with back-off until a failover.
        if self.backoff == RETRY_DELAY:
            log.info("replication link to %s failed: %s; retrying with back-off", self.primary,
                     reason.getErrorMessage())
        self._retry_later()

    def _retry_later(self) -> None:
        delay, self.backoff = self.backoff, min(self.backoff * 2, MAX_BACKOFF)
        self.service.reactor.callLater(delay, self.connect)

    def on_connected(self, proto: PrimaryLinkProtocol) -> None:
        self.connecting = False
        self.proto = proto
        self.backoff = RETRY_DELAY
        for partition in list(self.partitions):
            self._send_follow(partition)

    def on_disconnected(self, proto: PrimaryLinkProtocol) -> None:
        if self.proto is proto:
            self.proto = None
            self._active.clear()
            self._tokens.clear()
            if self.partitions:
                self._retry_later()

    def _send_follow(self, partition: int) -> None:
        replica = self.service.replica(partition)
        token = self._next_token
        self._next_token += 1
        self._tokens[partition] = token
        self._active.discard(partition)
        last = replica.seq
        turn_writer.write(self.proto.transport, encode_command([
            b"REPL.FOLLOW", self.service.id, partition, self.partitions[partition], last + 1,
            replica.meta.generation_at(last), token,
        ]))

    def _resync_later(self, partition: int, why: str) -> None:
        log.info("partition %d: replication from %s paused (%s); asking again", partition, self.primary, why)
        self._active.discard(partition)
        self._tokens.pop(partition, None)

        def again():
            if partition in self.partitions and self.proto is not None and partition not in self._tokens:
                self._send_follow(partition)

        self.service.reactor.callLater(RETRY_DELAY, again)

    # -- the stream --------------------------------------------------------------------------------------

    def on_message(self, message: list) -> None:
        kind, partition = message[0], message[1]
        if kind == b"START":
            if self._tokens.get(partition) == message[2]:
                self._active.add(partition)
            return
        if partition not in self._active:
            return  # left over from a stream we have since restarted
        if kind == b"ENTRY":
            entry = decode_entry(message[4])
            if entry.seq <= self.service.replica(partition).seq:
                return
            refused = self.service.apply_replicated(partition, entry, lambda seq: self.ack(partition, seq))
            if refused:
                self._resync_later(partition, refused)
        elif kind == b"SNAP-BEGIN":
            self.service.begin_snapshot(partition, decode_meta(message[2]))
        elif kind == b"SNAP-DATA":
            self.service.snapshot_data(partition, message[2])
        elif kind == b"SNAP-END":
            self.service.end_snapshot(partition, lambda seq: self.ack(partition, seq))
        elif kind == b"ERROR":
            self._resync_later(partition, message[2].decode("utf-8", "replace"))

    def ack(self, partition: int, seq: int) -> None:
        """Acknowledge a committed seq; acks of one reactor turn go out together."""
        if seq > self._acks.get(partition, 0):
            self._acks[partition] = seq
        if not self._ack_scheduled:
            self._ack_scheduled = True
            self.service.reactor.callLater(0, self._send_acks)

    def _send_acks(self) -> None:
        self._ack_scheduled = False
        acks, self._acks = self._acks, {}
        if self.proto is None:
            return
        turn_writer.write(self.proto.transport, b"".join(
            encode_command([b"REPL.ACK", self.service.id, p, seq]) for p, seq in acks.items()
        ))


class FollowerLinks:
    def __init__(self, service: NodeService):
        self.service = service
        self.links: dict[str, PrimaryLink] = {}
        self.following: dict[int, str] = {}  # partition -> primary

    def follow(self, partition: int, primary: str | None, generation: int) -> None:
        current = self.following.get(partition)
        if current is not None and current != primary:
            self.links[current].unfollow(partition)
            del self.following[partition]
        if primary is None:
            return
        self.following[partition] = primary
        link = self.links.get(primary)
        if link is None:
            link = self.links[primary] = PrimaryLink(self, primary)
        link.follow(partition, generation)

    def unfollow(self, partition: int) -> None:
        primary = self.following.pop(partition, None)
        if primary is not None:
            self.links[primary].unfollow(partition)

    def on_live_nodes(self) -> None:
        for link in self.links.values():
            link.connect()

    def ping(self) -> None:
        """Tell every primary we follow that we are here, so it keeps its lease."""
        for link in self.links.values():
            if link.proto is not None and link.partitions:
                turn_writer.write(link.proto.transport, encode_command([b"REPL.PING", self.service.id]))
