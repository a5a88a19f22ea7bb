"""The node's logic: which partitions it serves in which role, and how a command runs on one of them.

The RESP adapter (``kvnode.protocol``) hands commands here; ZooKeeper (``kvnode.coordination``) reports the
partition map and the session state; the replication streams (``kvnode.replication``) report entries and
acknowledgements. Everything runs on the reactor thread.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import asdict

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from kvcommon.commands import DATA_COMMANDS, check_arity, unknown_command
from kvcommon.errors import CommandError, KVError, NotPrimaryError, OutcomeUnknownError, TryAgainError
from kvcommon.hashing import partition_for
from kvcommon.hlc import HybridClock
from kvcommon.replies import Pending, unwrap_first_error
from kvmeta.schema import READ_LEVELS, WRITE_LEVELS, ClusterConfig, NodeRecord, PartitionState
from kvnode.commands import HANDLERS, CommandContext
from kvnode.commit import GroupCommit, StorageWriter
from kvnode.compaction import COMPACT_INTERVAL, HistoryCompactor
from kvnode.expiry import SWEEP_INTERVAL, ExpirySweeper
from kvnode.pacing import PacedTask
from kvnode.replica import PendingEntry, Replica, Role
from kvnode.replication.follower import FollowerLinks
from kvnode.replication.leader import LeaderStreams
from kvnode.scan import ScanCursors, partition_items
from kvnode.storage.full_compaction import FullCompaction, store_ranges
from kvnode.storage.interface import Engine
from kvnode.storage.partition_store import PartitionStore
from kvnode.storage.records import (
    KIND_STRING,
    LogEntry,
    PartitionMeta,
    decode_value,
    encode_entry,
    expire_at_of,
    kind_of,
    value_of,
    version_of,
)
from kvnode.versions import VERSIONED_READS, VersionedReads

log = logging.getLogger(__name__)


class RequestOptions:
    """Per-request options a proxy passes with ``PX``: the write level and the read level."""

    __slots__ = ("write_level", "read_level")

    def __init__(self, write_level: str | None = None, read_level: str = "strong"):
        self.write_level = write_level
        self.read_level = read_level

    @classmethod
    def parse(cls, raw: bytes) -> RequestOptions:
        # A proxy sends one of a handful of option strings on every request: parse each once.
        options = _PARSED_OPTIONS.get(raw)
        if options is not None:
            return options
        options = cls()
        if raw in (b"-", b""):
            return options
        for item in raw.decode().split(","):
            name, _, value = item.partition("=")
            if name == "w" and value in WRITE_LEVELS:
                options.write_level = value
            elif name == "r" and value in READ_LEVELS:
                options.read_level = value
            else:
                raise CommandError(f"invalid request option {item!r}: expected w=1|quorum|all or r=strong|eventual")
        if len(_PARSED_OPTIONS) < 64:
            _PARSED_OPTIONS[raw] = options
        return options


DEFAULT_OPTIONS = RequestOptions()
_NOT_A_LIVE_STRING = object()
# Parsed options are shared, so they are never changed after parse().
_PARSED_OPTIONS: dict[bytes, RequestOptions] = {b"-": DEFAULT_OPTIONS}
TRIM_STEP = 1000


class NodeService:
    def __init__(self, reactor: IReactorTime, engine: Engine, node_id: str, *, sync: bool = False,
                 write_timeout: float = 10.0, clock: HybridClock | None = None,
                 log_retention: int = 100_000, lease_seconds: float = 1.0, writer: StorageWriter | None = None):
        self.reactor = reactor
        self.id = node_id
        self.store = PartitionStore(engine)
        self.commit = GroupCommit(reactor, engine, sync, writer)
        self.clock = clock or HybridClock()
        self.write_timeout = write_timeout
        self.log_retention = log_retention
        self.lease_seconds = lease_seconds
        self._overdue: deque[tuple[float, defer.Deferred, bool]] = deque()
        self.config: ClusterConfig | None = None
        self.replicas: dict[int, Replica] = {}
        self.live_nodes: dict[str, NodeRecord] = {}
        # False until ZooKeeper confirms our session, and again whenever it is suspended or lost: a node
        # that may have been declared dead must not act as primary.
        self.connected = False
        self.leader = LeaderStreams(self)
        self.follower = FollowerLinks(self)
        self.started_at = time.time()
        self.commands_processed = 0
        self.scan_cursors = ScanCursors()
        self.expiry = ExpirySweeper(self.store, self._writable_primaries, self._delete_expired)
        self.versions = VersionedReads(self)
        self.compactor = HistoryCompactor(self)
        # Background walks on the reactor thread, paced by how far behind they are; kvnode.main starts them.
        self.compaction_task = PacedTask(reactor, "history compaction", self.compactor.tick,
                                         lambda: self.compactor.behind, COMPACT_INTERVAL)
        self.expiry_task = PacedTask(reactor, "the sweep of expired keys", self.sweep_expired,
                                     lambda: self.expiry.behind, SWEEP_INTERVAL)
        self.full_compaction: FullCompaction | None = None

    # -- what ZooKeeper tells us -------------------------------------------------------------------

    def on_config(self, config: ClusterConfig) -> None:
        if self.config is not None and config != self.config:
            old, new = asdict(self.config), asdict(config)
            changes = ", ".join(f"{name} {old[name]} -> {new[name]}" for name in new if new[name] != old[name])
            log.info("cluster settings changed: %s", changes)
        self.config = config

    def on_session(self, connected: bool) -> None:
        if connected != self.connected:
            log.info("coordination session %s", "established" if connected else "suspended or lost: fenced")
        self.connected = connected

    def on_live_nodes(self, nodes: dict[str, NodeRecord]) -> None:
        self.live_nodes = nodes
        self.follower.on_live_nodes()

    def on_partition_state(self, state: PartitionState) -> None:
        replica = self.replica(state.partition)
        replica.on_state(state)
        if state.primary == self.id:
            if replica.role != Role.PRIMARY or replica.generation != state.generation:
                self._become_primary(replica, state)
        elif self.id in state.replicas:
            if replica.role == Role.PRIMARY:
                self._stop_being_primary(replica, f"generation {state.generation} has primary {state.primary}")
            replica.role = Role.SECONDARY
            replica.generation = state.generation
            self.follower.follow(replica.partition, state.primary, state.generation)
        else:
            if replica.role == Role.PRIMARY:
                self._stop_being_primary(replica, "this node no longer holds the partition")
            replica.role = Role.NONE
            replica.generation = state.generation
            self.follower.unfollow(replica.partition)

    def replica(self, partition: int) -> Replica:
        replica = self.replicas.get(partition)
        if replica is None:
            replica = self.replicas[partition] = Replica(partition, self.store.read_meta(partition))
        return replica

    def _become_primary(self, replica: Replica, state: PartitionState) -> None:
        log.info("partition %d: primary in generation %d from seq %d", replica.partition, state.generation,
                 replica.seq)
        self.follower.unfollow(replica.partition)
        if replica.role == Role.PRIMARY:
            replica.abandon_pending(f"generation {replica.generation} ended")
        replica.role = Role.PRIMARY
        replica.generation = state.generation
        replica.follower_acks.clear()
        if replica.meta.generation < state.generation:
            # A restarted primary already has its generation in the history; a promoted one records it.
            replica.meta = replica.meta.begin_generation(state.generation)
            meta = replica.meta
            self.commit.add(lambda batch: self.store.write_meta(batch, replica.partition, meta))

    def _stop_being_primary(self, replica: Replica, reason: str) -> None:
        log.info("partition %d: no longer primary (%s)", replica.partition, reason)
        replica.abandon_pending(reason)
        self.leader.drop_partition(replica.partition)

    # -- running commands --------------------------------------------------------------------------

    def execute(self, args: list[bytes], partition: int | None = None, generation: int | None = None,
                options: RequestOptions = DEFAULT_OPTIONS):
        """Run one data command. Returns a reply, a KVError to send as an error, or a Deferred of either."""
        self.commands_processed += 1
        name = args[0].lower()
        spec = DATA_COMMANDS.get(name)
        if spec is None:
            return unknown_command(args)
        try:
            check_arity(spec, args)
            keys = spec.keys(args)
            if partition is None:
                partition = self._partition_of(keys)
            replica = self.replicas.get(partition)
            # Reads at a version need the primary: only it knows which writes are still pending.
            self._check_route(replica, partition, generation,
                              spec.is_write or options.read_level == "strong" or name in VERSIONED_READS)
            if name == b"dbsize":
                return self.store.count_keys(partition)
            if name in VERSIONED_READS:
                return self.versions.execute(replica, args)
            if spec.is_write:
                return self._write(replica, name, args, options)
            return self._read(replica, name, args)
        except KVError as err:
            return err

    def has_lease(self, replica: Replica) -> bool:
        """May this primary act: have a majority of its replicas (itself included) been in touch lately?

        A primary that was paused or cut off may have been replaced without knowing it yet; its followers
        have moved to the new primary, so its contacts grow old and it stops serving writes and strong
        reads before a stale answer can be given. The answer holds until the contacts that make the
        majority grow old, so it is worked out again only then.
        """
        now = self.reactor.seconds()
        if now < replica.lease_until:
            return True
        replicas = replica.state.replicas
        needed = len(replicas) // 2  # followers in touch needed besides this primary
        if needed == 0:
            replica.lease_until = float("inf")
            return True
        latest: dict[str, float] = {}
        for stream in self.leader.by_partition.get(replica.partition, ()):
            if stream.follower in replicas:
                latest[stream.follower] = max(latest.get(stream.follower, 0.0), stream.conn.last_contact)
        contacts = sorted(latest.values(), reverse=True)
        if len(contacts) < needed:
            return False
        replica.lease_until = contacts[needed - 1] + self.lease_seconds
        return now < replica.lease_until

    def _partition_of(self, keys: list[bytes]) -> int:
        if self.config is None:
            raise TryAgainError(f"node {self.id} has not loaded the cluster configuration yet")
        partitions = {partition_for(key, self.config.partitions) for key in keys}
        if len(partitions) != 1:
            raise CommandError("keys of one command sent to a node directly must be in one partition; "
                               "send multi-key commands through a proxy")
        return partitions.pop()

    def _check_route(self, replica: Replica | None, partition: int, generation: int | None,
                     needs_primary: bool) -> None:
        if not self.connected:
            raise TryAgainError(f"node {self.id} has lost its ZooKeeper session and serves no writes or strong "
                                "reads until it rejoins; retry shortly")
        if replica is None or replica.state is None:
            raise TryAgainError(f"node {self.id} does not know partition {partition} yet; retry shortly")
        state = replica.state
        if generation is not None and generation > state.generation:
            raise TryAgainError(f"node {self.id} has not seen generation {generation} of partition {partition} "
                                "yet; retry shortly")
        if generation is not None and generation < state.generation:
            raise NotPrimaryError(partition, state.generation, state.primary)
        if needs_primary:
            if replica.role != Role.PRIMARY:
                raise NotPrimaryError(partition, state.generation, state.primary)
            if replica.paused_until and self.reactor.seconds() < replica.paused_until:
                raise TryAgainError(f"partition {partition} is switching primary; retry shortly")
            if not self.has_lease(replica):
                raise TryAgainError(
                    f"the primary of partition {partition} has not heard from a majority of its replicas in the "
                    f"last {self.lease_seconds:g}s, so it may have been replaced; retry shortly")
        elif replica.role == Role.NONE or replica.snapshotting:
            raise NotPrimaryError(partition, state.generation, state.primary)

    def _reader(self, replica: Replica, waits: list[PendingEntry]):
        partition, get = replica.partition, self.store.get

        def read(key: bytes) -> bytes | None:
            pending = replica.pending_keys.get(key)
            if pending is not None:
                # The key's last write is not complete: whoever sees it must not answer before it is.
                waits.append(pending[1])
                return pending[0]
            return get(partition, key)

        return read

    def _context(self, replica: Replica, waits: list[PendingEntry], version: int) -> CommandContext:
        return CommandContext(self._reader(replica, waits), _now_ms(), version, partition=replica.partition,
                              items=lambda start, reverse: partition_items(self.store, replica, start, reverse),
                              cursors=self.scan_cursors)

    def fast_get(self, partition: bytes, generation: bytes, options: bytes, key: bytes) -> bytes | None:
        """The encoded reply to ``PX partition generation options GET key``, when this is the partition's
        primary in that generation, may serve strong reads, and the key has no pending write; else None,
        and the command takes the general path (execute), which answers every other case and every error.

        The most common request, answered without the general path's parsing and checks, which cost a
        node more than the read itself.
        """
        if options != b"-" or not self.connected:
            return None
        try:
            replica = self.replicas.get(int(partition))
            if (replica is None or replica.role is not Role.PRIMARY or replica.state.generation != int(generation)
                    or key in replica.pending_keys):
                return None
        except ValueError:  # a partition or generation that is not a number: the general path says so
            return None
        now = self.reactor.seconds()
        if now >= replica.lease_until or now < replica.paused_until:
            return None  # the general path renews the lease, or says why it cannot serve
        value = self._live_string(replica, key)
        if value is _NOT_A_LIVE_STRING:
            return None
        self.commands_processed += 1
        return b"$-1\r\n" if value is None else b"$%d\r\n%b\r\n" % (len(value), value)

    def _live_string(self, replica: Replica, key: bytes):
        """The value of a key holding a live string, None for an absent key, or _NOT_A_LIVE_STRING (an expired
        key, which the general path deletes, or another kind)."""
        raw = self.store.get(replica.partition, key)
        if raw is None:
            return None
        expire_at = expire_at_of(raw)
        if kind_of(raw) == KIND_STRING and (not expire_at or expire_at > _now_ms()):
            return value_of(raw)
        return _NOT_A_LIVE_STRING

    def _read(self, replica: Replica, name: bytes, args: list[bytes]):
        if name == b"get" and args[1] not in replica.pending_keys:
            # The most common command, answered without building a context.
            value = self._live_string(replica, args[1])
            if value is not _NOT_A_LIVE_STRING:
                return value
        waits: list[PendingEntry] = []
        ctx = self._context(replica, waits, 0)
        reply = HANDLERS[name](ctx, args)
        if ctx.expired and self._writable(replica):
            # The read came across expired keys: delete them, without making the reader wait.
            self._append(replica, self.clock.now(), ctx.changes())
        if not waits:
            return reply
        return self._after(waits, reply, writing=False)

    def _write(self, replica: Replica, name: bytes, args: list[bytes], options: RequestOptions):
        waits: list[PendingEntry] = []
        ctx = self._context(replica, waits, self.clock.now())
        reply = HANDLERS[name](ctx, args)
        writes = ctx.changes()
        if not writes:
            return self._after(waits, reply, writing=False) if waits else reply
        entry = self._append(replica, ctx.version, writes, options.write_level)
        if not waits:
            return self._after_write(entry, reply)
        waits.append(entry)
        return self._after(waits, reply, writing=True)

    def _append(self, replica: Replica, version: int, writes: dict[bytes, bytes | None],
                level: str | None = None) -> PendingEntry:
        """Append one log entry on the primary and queue it for the group commit."""
        level = level or (self.config.write_level if self.config else "quorum")
        entry, pending = replica.append(version, writes, level)
        meta = replica.meta
        partition = replica.partition
        payload = encode_entry(entry)  # once, for every follower's stream
        self.commit.add(lambda batch: self.store.apply(batch, partition, entry, meta),
                        lambda: self._primary_committed(replica, entry, payload))
        self.expiry.note(partition, writes)
        self.compactor.note(partition, version)
        return pending

    def _after(self, waits: list[PendingEntry], reply, writing: bool) -> defer.Deferred:
        """The reply, once every write in ``waits`` reached its level, or an error after ``write_timeout``."""
        out: defer.Deferred = defer.Deferred()
        done = waits[0].wait() if len(waits) == 1 else defer.gatherResults([w.wait() for w in waits],
                                                                          consumeErrors=True)
        done.addCallback(lambda _: reply)
        done.addErrback(unwrap_first_error)
        done.addBoth(lambda result: out.called or out.callback(result))
        if not out.called:
            # One sweep (expire_overdue) instead of a timer per request: deadlines come in order.
            self._overdue.append((self.reactor.seconds() + self.write_timeout, out, writing))
        return out

    def _after_write(self, entry: PendingEntry, reply) -> Pending:
        """_after() for the common write, which waits for its own entry only: without Deferreds."""
        out = Pending()
        entry.on_done(lambda failure: out.resolve(reply if failure is None else failure))
        if not out.resolved:
            self._overdue.append((self.reactor.seconds() + self.write_timeout, out, True))
        return out

    def expire_overdue(self) -> None:
        """Answer the requests that waited longer than ``write_timeout``; run it periodically."""
        now = self.reactor.seconds()
        overdue = self._overdue
        while overdue and overdue[0][0] <= now:
            _, out, writing = overdue.popleft()
            if type(out) is Pending:
                if not out.resolved:
                    out.resolve(self._overdue_error(writing))
            elif not out.called:
                out.callback(self._overdue_error(writing))

    def _overdue_error(self, writing: bool) -> KVError:
        timeout = self.write_timeout
        if writing:
            return OutcomeUnknownError(
                f"the write was accepted by the primary but did not reach its write level within {timeout:.0f}s "
                "(too few replicas acknowledged, or this node's storage is behind with its compactions); it may "
                "or may not survive a failover: read the key before retrying")
        return TryAgainError(f"a key this command reads has a write that did not reach its write level within "
                             f"{timeout:.0f}s (too few replicas acknowledged, or this node's storage is behind "
                             "with its compactions); retry shortly")

    def _primary_committed(self, replica: Replica, entry: LogEntry, payload: bytes) -> None:
        replica.on_committed(entry.seq)
        if replica.role == Role.PRIMARY:
            self.leader.ship(replica, entry, payload)

    # -- replication, follower side ----------------------------------------------------------------

    def apply_replicated(self, partition: int, entry: LogEntry, on_commit) -> str | None:
        """Apply an entry from our primary. Returns None, or why it was refused."""
        replica = self.replicas.get(partition)
        if replica is None or replica.role != Role.SECONDARY:
            return f"node {self.id} is not a secondary of partition {partition}"
        if replica.snapshotting:
            return f"partition {partition} is receiving a snapshot"
        if entry.seq != replica.seq + 1:
            return f"partition {partition} expected seq {replica.seq + 1}, got {entry.seq}"
        if entry.generation < replica.meta.generation:
            return (f"partition {partition}: entry of generation {entry.generation} is older than generation "
                    f"{replica.meta.generation} already applied")
        self.clock.observe(entry.version)
        replica.meta = replica.meta.advance(entry.seq, entry.generation)
        meta = replica.meta

        def committed():
            replica.on_committed(entry.seq)
            on_commit(entry.seq)

        self.commit.add(lambda batch: self.store.apply(batch, partition, entry, meta), committed)
        self.compactor.note(partition, entry.version)
        return None

    def begin_snapshot(self, partition: int, meta: PartitionMeta) -> None:
        """Our primary sends the whole partition: forget what we hold, log included."""
        replica = self.replica(partition)
        log.info("partition %d: receiving a snapshot at seq %d", partition, meta.seq)
        replica.snapshotting = True
        replica.snapshot_meta = meta
        self.commit.add(lambda batch: self.store.drop_partition(batch, partition))

    def snapshot_data(self, partition: int, items: list[bytes]) -> None:
        def fill(batch):
            for i in range(0, len(items), 2):
                self.store.put_snapshot_row(batch, partition, items[i], items[i + 1])

        # As with entries: once promoted, this replica's versions must follow those it holds.
        if items:
            self.clock.observe(max(version_of(items[i]) for i in range(1, len(items), 2)))
        self.commit.add(fill)

    def end_snapshot(self, partition: int, on_commit) -> None:
        replica = self.replica(partition)
        meta = replica.snapshot_meta
        replica.meta = meta

        def committed():
            replica.snapshotting = False
            replica.committed_seq = meta.seq
            log.info("partition %d: snapshot installed at seq %d", partition, meta.seq)
            on_commit(meta.seq)

        self.commit.add(lambda batch: self.store.write_meta(batch, partition, meta), committed)

    def on_follower_ack(self, follower: str, partition: int, seq: int) -> None:
        replica = self.replicas.get(partition)
        if replica is not None and replica.role == Role.PRIMARY:
            replica.on_ack(follower, seq)

    # -- upkeep ------------------------------------------------------------------------------------

    def sweep_expired(self) -> int:
        """Delete some expired keys of the partitions this node is primary of (kvnode.expiry)."""
        return self.expiry.tick(_now_ms())

    def _writable(self, replica: Replica) -> bool:
        try:
            self._check_route(replica, replica.partition, None, True)
        except KVError:
            return False
        return True

    def _writable_primaries(self) -> list[int]:
        return [p for p, r in self.replicas.items() if r.role == Role.PRIMARY and self._writable(r)]

    def _delete_expired(self, partition: int, keys: list[bytes]) -> int:
        """Delete those of ``keys`` that are expired now, pending writes considered; returns how many."""
        replica = self.replicas.get(partition)
        if replica is None or not self._writable(replica):
            return 0
        ctx = self._context(replica, [], self.clock.now())
        for key in keys:
            ctx.record(key)
        if ctx.expired:
            self._append(replica, ctx.version, ctx.changes())
        return len(ctx.expired)

    def trim_logs(self) -> None:
        """Drop log entries no follower needs: keep the last ``log_retention`` entries of each partition,
        and every entry a connected follower has still to receive. A follower that falls further behind
        gets a snapshot instead."""
        for partition, replica in self.replicas.items():
            keep_from = replica.committed_seq - self.log_retention + 1
            needed = self.leader.oldest_needed_seq(partition)
            if needed is not None:
                keep_from = min(keep_from, needed)
            if keep_from <= replica.trimmed_before + TRIM_STEP:
                continue  # trim in large steps: each trim scans past the tombstones of the last
            replica.trimmed_before = keep_from
            self.commit.add(lambda batch, p=partition, upto=keep_from - 1: self.store.trim_log(batch, p, upto))

    def compact_store(self) -> int:
        """Start compacting the whole store (kvnode.storage.full_compaction); returns how many ranges.
        One at a time: a second request while one runs is refused."""
        if self.full_compaction is not None and self.full_compaction.running:
            done, total = self.full_compaction.done, len(self.full_compaction.ranges)
            raise CommandError(f"node {self.id} is already compacting its store ({done} of {total} ranges done); "
                               "see kv_full_compaction in INFO")
        ranges = store_ranges(self.store.partitions())
        self.full_compaction = FullCompaction(self.store.engine, ranges)
        log.info("compacting the store: %d ranges", len(ranges))
        return len(ranges)

    def stop_store_compaction(self) -> None:
        """On shutdown: stop a running full compaction after its current range, before the engine closes."""
        if self.full_compaction is not None and self.full_compaction.running:
            log.info("stopping the compaction of the store after its current range")
            self.full_compaction.stop()

    # -- inspection ----------------------------------------------------------------------------------

    def dump(self, partition: int) -> list:
        """The replica's position and live data: [generation, seq, key, value, ...]."""
        replica = self.replicas.get(partition)
        meta = replica.meta if replica else self.store.read_meta(partition)
        out: list = [meta.generation, replica.committed_seq if replica else meta.seq]
        now = _now_ms()
        for key, raw in self.store.iterate_data(partition):
            record = decode_value(raw)
            if record.expire_at_ms and record.expire_at_ms <= now:
                continue
            out += [key, record.value]
        return out

    def positions(self) -> dict[int, tuple[int, int]]:
        """Each replica's committed (generation, seq)."""
        return {p: (r.meta.generation_at(r.committed_seq), r.committed_seq) for p, r in self.replicas.items()}

    def position_of(self, partition: int) -> list:
        """[generation of the last committed entry, its seq, snapshotting 0/1, role] of one replica: what
        the controller compares to choose a new primary."""
        replica = self.replicas.get(partition)
        if replica is None:
            meta = self.store.read_meta(partition)
            return [meta.generation_at(meta.seq), meta.seq, 0, b"none"]
        seq = replica.committed_seq
        return [replica.meta.generation_at(seq), seq, int(replica.snapshotting), replica.role.value.encode()]

    def pause_writes(self, partition: int, generation: int, seconds: float) -> list:
        """For a planned switch of primary: refuse writes to the partition for a while, and say up to which
        seq the log goes once the writes already accepted are committed."""
        replica = self.replicas.get(partition)
        if replica is None or replica.role != Role.PRIMARY or replica.generation != generation:
            raise NotPrimaryError(partition, replica.generation if replica else 0,
                                  replica.state.primary if replica and replica.state else None)
        replica.paused_until = self.reactor.seconds() + seconds
        return [replica.generation, replica.seq]

    def roles(self) -> list:
        out: list = []
        for p in sorted(self.replicas):
            r = self.replicas[p]
            out += [p, r.role.value.encode(), r.generation, r.committed_seq]
        return out


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
