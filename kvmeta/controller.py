"""The controller: one elected leader places partitions on nodes and assigns their primaries.

Several kvmeta processes may run; kazoo's election recipe picks one leader, the others wait. The leader
re-reads the cluster from ZooKeeper on every change it is told of (and once a second), and acts only
through version-conditional writes, so a deposed leader that still runs cannot overwrite a newer decision.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from kvmeta import zk
from kvmeta.failover import ReplicaPosition, choose_primary, in_sync_set, repair_replicas
from kvmeta.nodeclient import NodeQueryError, query
from kvmeta.placement import PlacementError, place_partitions
from kvmeta.schema import ClusterPaths, MemberRecord, NodeRecord, OperationRecord, PartitionState

log = logging.getLogger(__name__)


# A replica further behind its primary than this many log entries leaves the in-sync set.
IN_SYNC_MAX_LAG = 1000
# How long a planned switch pauses writes on the old primary per attempt.
SWITCH_PAUSE_SECONDS = 5


class Controller:
    def __init__(self, client: KazooClient, cluster: str, controller_id: str, poll_interval: float = 1.0):
        self.client = client
        self.paths = ClusterPaths(cluster)
        self.id = controller_id
        self.poll_interval = poll_interval
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._is_leader = False
        self._waiting_reported = ""
        self._stuck_reported: dict[int, str] = {}

    # -- life cycle --------------------------------------------------------------------------------

    def run(self) -> None:
        """Block: take part in the election until stopped; lead while elected."""
        zk.read_config(self.client, self.paths)  # fail early, with a clear message, if there is no cluster
        zk.ensure_cluster_paths(self.client, self.paths)
        self.client.add_listener(self._on_session_state)
        self.client.ChildrenWatch(self.paths.nodes, self._on_children_change)
        self.client.ChildrenWatch(self.paths.operations, self._on_children_change)
        election = self.client.Election(self.paths.controller, self.id)
        while not self._stopped.is_set():
            election.run(self._lead)

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    @property
    def is_leader(self) -> bool:
        return self._is_leader

    def _on_session_state(self, state: KazooState) -> None:
        if state != KazooState.CONNECTED:
            self._wake.set()

    def _on_children_change(self, children) -> bool:
        self._wake.set()
        return not self._stopped.is_set()

    def _lead(self) -> None:
        log.info("controller %s is the leader of cluster %s", self.id, self.paths.cluster)
        self._is_leader = True
        try:
            while not self._stopped.is_set() and self.client.state == KazooState.CONNECTED:
                try:
                    self.reconcile()
                except Exception:
                    log.exception("reconcile failed; retrying")
                self._wake.wait(self.poll_interval)
                self._wake.clear()
        finally:
            self._is_leader = False
            log.info("controller %s is no longer the leader", self.id)

    # -- decisions ---------------------------------------------------------------------------------

    def reconcile(self) -> None:
        config = zk.read_config(self.client, self.paths)
        live = zk.read_live_nodes(self.client, self.paths)
        for node_id in live:
            self._ensure_member(node_id)
        partitions = zk.read_partitions(self.client, self.paths)
        missing = [p for p in range(config.partitions) if p not in partitions]
        if missing:
            self._assign_initial(missing, config.partitions, config.replication_factor, sorted(live))
        primaries: dict[str, int] = {}
        for state, _ in partitions.values():
            primaries[state.primary] = primaries.get(state.primary, 0) + 1
        for state, version in partitions.values():
            if state.primary is None or state.primary not in live:
                promoted = self._fail_over(state, version, live, primaries=primaries)
                if promoted:
                    primaries[promoted] = primaries.get(promoted, 0) + 1
        self._run_operations(live)
        self._repair(config.replication_factor, live)
        self._update_in_sync(live)

    def _repair(self, replication_factor: int, live: dict[str, NodeRecord]) -> None:
        partitions = zk.read_partitions(self.client, self.paths)
        load: dict[str, int] = {}
        for state, _ in partitions.values():
            for node in state.replicas:
                load[node] = load.get(node, 0) + 1
        for state, version in partitions.values():
            if state.primary not in live:
                continue
            repaired = repair_replicas(state, sorted(live), replication_factor, load)
            if repaired is not None and self._set_state(repaired, version):
                log.info("partition %d: added replicas %s", state.partition,
                         ", ".join(n for n in repaired.replicas if n not in state.replicas))

    # -- failover ----------------------------------------------------------------------------------

    def _positions(self, state: PartitionState, live: dict[str, NodeRecord],
                   exclude: str | None) -> dict[str, ReplicaPosition]:
        """Ask each live replica (but ``exclude``) for its committed position, straight from the node."""
        answers = {}
        for node in state.replicas:
            record = live.get(node)
            if node == exclude or record is None:
                continue
            try:
                generation, seq, snapshotting, _role = query(record.host, record.port,
                                                             [b"KV.POSITION", state.partition])
            except (NodeQueryError, ValueError):
                continue
            answers[node] = ReplicaPosition(node, generation, seq, bool(snapshotting))
        return answers

    def _fail_over(self, state: PartitionState, version: int, live: dict[str, NodeRecord],
                   unclean: bool = False, target: str | None = None, primaries: dict[str, int] | None = None
                   ) -> str | None:
        """Promote a new primary if that is safe; returns it, or None when the partition must wait."""
        started = time.monotonic()
        answers = self._positions(state, live, exclude=state.primary if state.primary not in live else None)
        decision = choose_primary(state, answers, unclean=unclean, target=target, primaries=primaries)
        if decision.new_state is None:
            if self._stuck_reported.get(state.partition) != decision.reason:
                log.warning("partition %d: primary %s is down and no replica can take over: %s",
                            state.partition, state.primary, decision.reason)
                self._stuck_reported[state.partition] = decision.reason
            return None
        if not self._set_state(decision.new_state, version):
            return None
        self._stuck_reported.pop(state.partition, None)
        log.info("partition %d: primary %s replaced: %s, generation %d (%.0f ms)", state.partition,
                 state.primary, decision.reason, decision.new_state.generation,
                 (time.monotonic() - started) * 1000)
        return decision.new_state.primary

    def _set_state(self, state: PartitionState, version: int) -> bool:
        """Write a partition state if nobody changed it since we read it (version-conditional)."""
        try:
            self.client.set(self.paths.partition(state.partition), state.encode(), version=version)
            return True
        except BadVersionError:
            log.info("partition %d changed while deciding; deciding again", state.partition)
            self._wake.set()
            return False

    def _update_in_sync(self, live: dict[str, NodeRecord]) -> None:
        positions = zk.read_positions(self.client, self.paths)
        for partition, (state, version) in zk.read_partitions(self.client, self.paths).items():
            if state.primary not in live:
                continue
            seqs = {node: (positions[node].positions.get(partition, (0, None))[1] if node in positions else None)
                    for node in state.replicas}
            in_sync = in_sync_set(state, set(live), seqs, IN_SYNC_MAX_LAG)
            if set(in_sync) != set(state.in_sync) and self._set_state(replace(state, in_sync=in_sync), version):
                log.info("partition %d: in-sync replicas now %s", partition, ", ".join(in_sync))

    # -- operations --------------------------------------------------------------------------------

    def _run_operations(self, live: dict[str, NodeRecord]) -> None:
        for name in sorted(self.client.get_children(self.paths.operations)):
            path = self.paths.operation(name)
            try:
                data, stat = self.client.get(path)
            except NoNodeError:
                continue
            operation = OperationRecord.decode(data)
            try:
                done, operation = self._step(operation, live)
            except NodeQueryError as err:
                done, operation = False, replace(operation, message=str(err))
            if done:
                self.client.delete(path)
            else:
                try:
                    self.client.set(path, operation.encode(), version=stat.version)
                except (BadVersionError, NoNodeError):
                    pass

    def _step(self, op: OperationRecord, live: dict[str, NodeRecord]) -> tuple[bool, OperationRecord]:
        """Advance one operation by one step; (finished, the record as it now stands)."""
        state, version = zk.read_partitions(self.client, self.paths)[op.partition]
        if op.kind == "unclean":
            if self._fail_over(state, version, live, unclean=True, target=op.target):
                return True, replace(op, step="done")
            return False, replace(op, message=self._stuck_reported.get(op.partition, "no replica reachable"))
        # A planned switch: pause writes on the primary, wait for the target to catch up, switch.
        if op.generation and state.generation > op.generation:
            return True, replace(op, step="done")
        target = op.target or self._best_secondary(state, live)
        if target is None or target not in live or target not in state.replicas:
            return False, replace(op, message=f"target {target} is not a live replica of partition {op.partition}")
        if target == state.primary:
            return True, replace(op, step="done")
        primary = live.get(state.primary)
        if primary is None:
            return False, replace(op, message="the primary is down: it is failed over automatically")
        paused_generation, seq = query(primary.host, primary.port,
                                       [b"KV.PAUSE", op.partition, state.generation, SWITCH_PAUSE_SECONDS])
        record = live[target]
        generation, target_seq, snapshotting, _ = query(record.host, record.port, [b"KV.POSITION", op.partition])
        if target_seq < seq or snapshotting:
            return False, replace(op, target=target, step="catching-up", generation=paused_generation, seq=seq,
                                  message=f"{target} at seq {target_seq} of {seq}")
        answers = {target: ReplicaPosition(target, generation, target_seq)}
        answers.update({n: p for n, p in self._positions(state, live, exclude=None).items() if n != target})
        decision = choose_primary(state, answers, target=target)
        if decision.new_state is not None and self._set_state(decision.new_state, version):
            log.info("partition %d: planned switch from %s to %s at seq %d, generation %d", op.partition,
                     state.primary, target, seq, decision.new_state.generation)
            return True, replace(op, step="done")
        return False, replace(op, target=target, step="switching", message=decision.reason)

    def _best_secondary(self, state: PartitionState, live: dict[str, NodeRecord]) -> str | None:
        answers = self._positions(state, live, exclude=state.primary)
        candidates = [p for p in answers.values() if not p.snapshotting and p.node in state.in_sync]
        return max(candidates, key=lambda p: p.key).node if candidates else None

    def _ensure_member(self, node_id: str) -> None:
        try:
            self.client.create(self.paths.member(node_id), MemberRecord(node_id).encode(), makepath=True)
        except NodeExistsError:
            pass

    def _assign_initial(self, missing: list[int], partition_count: int, rf: int, live: list[str]) -> None:
        try:
            placement = place_partitions(partition_count, live, rf)
        except PlacementError as err:
            if str(err) != self._waiting_reported:
                log.warning("waiting before placing partitions: %s", err)
                self._waiting_reported = str(err)
            return
        log.info("placing %d partitions on %s", len(missing), ", ".join(live))
        # In chunks: a ZooKeeper transaction is limited in size (jute.maxbuffer, 1 MB by default).
        for start in range(0, len(missing), 500):
            transaction = self.client.transaction()
            for p in missing[start:start + 500]:
                replicas = placement[p]
                state = PartitionState(partition=p, generation=1, primary=replicas[0], replicas=replicas,
                                       in_sync=replicas, generation_start=0)
                transaction.create(self.paths.partition(p), state.encode())
            results = transaction.commit()
            failures = [r for r in results if isinstance(r, Exception)]
            if failures and not all(isinstance(r, NodeExistsError) for r in failures):
                log.warning("placing partitions: %s", failures[0])
