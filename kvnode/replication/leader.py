"""The primary's side of replication: one stream per (follower connection, partition).

A stream starts in catch-up (entries read back from the log in chunks, yielding to the reactor between
chunks), switches to live (each entry pushed as soon as it is committed) once it has reached the end of
the log, and falls back to catch-up whenever the connection's send buffer is full. A follower whose
position is no longer in the log, or whose log diverged from ours, first receives a snapshot of the
partition taken from a consistent LevelDB view, then the log from the snapshot's seq on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from kvcommon.output import turn_writer
from kvcommon.resp import encode
from kvnode.replica import Role
from kvnode.storage.records import LogEntry, encode_entry, encode_meta

if TYPE_CHECKING:
    from kvnode.protocol import NodeProtocol
    from kvnode.replica import Replica
    from kvnode.service import NodeService

log = logging.getLogger(__name__)

CATCH_UP_CHUNK = 512
SNAPSHOT_CHUNK = 1000


def entry_message(partition: int, entry: LogEntry, payload: bytes | None = None) -> bytes:
    """The stream message of an entry; ``payload`` is encode_entry(entry) when the caller has it."""
    return encode([b"ENTRY", partition, entry.generation, entry.seq, payload or encode_entry(entry)])


class FollowerStream:
    def __init__(self, streams: LeaderStreams, conn: NodeProtocol, follower: str, replica: Replica,
                 next_seq: int):
        self.streams = streams
        self.conn = conn
        self.follower = follower
        self.replica = replica
        self.partition = replica.partition
        self.next_seq = next_seq
        self.live = False
        self.closed = False
        self._scheduled = False

    def start(self, snapshot: bool) -> None:
        if snapshot:
            self._send_snapshot()
        else:
            self.pump()

    def close(self) -> None:
        self.closed = True

    # -- log ---------------------------------------------------------------------------------------

    def pump(self) -> None:
        """Send log entries until caught up or the connection pushes back."""
        self._scheduled = False
        if self.closed or self.conn.paused:
            return
        store = self.streams.service.store
        committed = self.replica.committed_seq
        if self.next_seq > committed:
            self.live = True
            return
        entries = store.read_log(self.partition, self.next_seq, CATCH_UP_CHUNK)
        if not entries or entries[0].seq != self.next_seq:
            log.info("partition %d: follower %s needs seq %d, no longer in the log: sending a snapshot",
                     self.partition, self.follower, self.next_seq)
            self._send_snapshot()
            return
        for entry in entries:
            if entry.seq > committed:
                break
            turn_writer.write(self.conn.transport, entry_message(self.partition, entry))
            self.next_seq = entry.seq + 1
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled and not self.closed:
            self._scheduled = True
            self.streams.service.reactor.callLater(0, self.pump)

    def on_committed(self, entry: LogEntry, message: bytes) -> None:
        if not self.live or self.closed:
            return
        if entry.seq != self.next_seq or self.conn.paused:
            self.live = False
            self._schedule()
            return
        turn_writer.write(self.conn.transport, message)
        self.next_seq = entry.seq + 1

    def on_resume(self) -> None:
        if not self.live:
            self._schedule()

    # -- snapshot ----------------------------------------------------------------------------------

    def _send_snapshot(self) -> None:
        """Send every key of the partition, with its history, as of the last committed entry, then continue
        with the log."""
        self.live = False
        service = self.streams.service
        store = service.store
        # Everything committed is in LevelDB and nothing else is: the view and the seq agree.
        view = store.engine.snapshot()
        meta = self.replica.meta.at(self.replica.committed_seq)
        turn_writer.write(self.conn.transport, encode([b"SNAP-BEGIN", self.partition, encode_meta(meta)]))
        items = store.snapshot_rows(self.partition, snapshot=view)
        self.next_seq = meta.seq + 1
        self.streams.snapshots_sent += 1

        def send_chunk():
            if self.closed:
                view.close()
                return
            if self.conn.paused:
                service.reactor.callLater(0.01, send_chunk)
                return
            chunk: list[bytes] = []
            for key, raw in items:
                chunk += (key, raw)
                if len(chunk) >= 2 * SNAPSHOT_CHUNK:
                    break
            if chunk:
                turn_writer.write(self.conn.transport, encode([b"SNAP-DATA", self.partition, chunk]))
                service.reactor.callLater(0, send_chunk)
            else:
                view.close()
                turn_writer.write(self.conn.transport, encode([b"SNAP-END", self.partition]))
                self._schedule()

        send_chunk()


class LeaderStreams:
    def __init__(self, service: NodeService):
        self.service = service
        self.by_partition: dict[int, list[FollowerStream]] = {}
        self.snapshots_sent = 0

    def follow(self, conn: NodeProtocol, follower: str, partition: int, generation: int, next_seq: int,
               last_generation: int, token: int) -> None:
        """A follower asks for partition's entries from next_seq."""
        # START tells the follower that what follows on this connection answers its latest FOLLOW, the
        # ERROR of a refusal included.
        turn_writer.write(conn.transport, encode([b"START", partition, token]))
        self._remove(conn, partition)
        refused = self._refusal(partition, generation)
        if refused:
            turn_writer.write(conn.transport, encode([b"ERROR", partition, refused.encode()]))
            return
        replica = self.service.replicas[partition]
        last = next_seq - 1
        diverged = last > replica.committed_seq or (
            last > 0 and replica.meta.generation_at(last) != last_generation
        )
        stream = FollowerStream(self, conn, follower, replica, next_seq)
        self.by_partition.setdefault(partition, []).append(stream)
        conn.streams.append(stream)
        if diverged:
            log.info("partition %d: follower %s diverged at seq %d (generation %d): sending a snapshot",
                     partition, follower, last, last_generation)
        stream.start(snapshot=diverged)
        return None

    def _refusal(self, partition: int, generation: int) -> str | None:
        service = self.service
        replica = service.replicas.get(partition)
        if replica is None or replica.role != Role.PRIMARY or not service.connected:
            return f"node {service.id} is not the primary of partition {partition}"
        if generation != replica.generation:
            return (f"node {service.id} is primary of partition {partition} in generation {replica.generation}, "
                    f"not {generation}")
        return None

    def unfollow(self, conn: NodeProtocol, partition: int) -> None:
        self._remove(conn, partition)

    def _remove(self, conn: NodeProtocol, partition: int) -> None:
        streams = self.by_partition.get(partition, [])
        for stream in [s for s in streams if s.conn is conn]:
            stream.close()
            streams.remove(stream)
            conn.streams.remove(stream)

    def ship(self, replica: Replica, entry: LogEntry, payload: bytes | None = None) -> None:
        streams = self.by_partition.get(replica.partition)
        if streams:
            message = entry_message(replica.partition, entry, payload)
            for stream in streams:
                stream.on_committed(entry, message)

    def drop_partition(self, partition: int) -> None:
        """We stopped being primary: end the partition's streams, telling each follower why."""
        for stream in self.by_partition.pop(partition, []):
            stream.close()
            if stream in stream.conn.streams:
                stream.conn.streams.remove(stream)
            message = f"node {self.service.id} is no longer the primary of partition {partition}"
            turn_writer.write(stream.conn.transport, encode([b"ERROR", partition, message.encode()]))

    def connection_lost(self, conn: NodeProtocol) -> None:
        for stream in list(conn.streams):
            stream.close()
            streams = self.by_partition.get(stream.partition, [])
            if stream in streams:
                streams.remove(stream)
        conn.streams.clear()

    def oldest_needed_seq(self, partition: int) -> int | None:
        streams = self.by_partition.get(partition)
        return min(s.next_seq for s in streams) if streams else None
