"""The controller: one elected leader places partitions on nodes and assigns their primaries.

Several kvmeta processes may run; kazoo's election recipe picks one leader, the others wait. The leader
re-reads the cluster from ZooKeeper on every change it is told of (and once a second), and acts only
through version-conditional writes, so a deposed leader that still runs cannot overwrite a newer decision.
"""

from __future__ import annotations

import logging
import threading

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NodeExistsError

from kvmeta import zk
from kvmeta.placement import PlacementError, place_partitions
from kvmeta.schema import ClusterPaths, MemberRecord, PartitionState

log = logging.getLogger(__name__)


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

    # -- life cycle --------------------------------------------------------------------------------

    def run(self) -> None:
        """Block: take part in the election until stopped; lead while elected."""
        zk.read_config(self.client, self.paths)  # fail early, with a clear message, if there is no cluster
        zk.ensure_cluster_paths(self.client, self.paths)
        self.client.add_listener(self._on_session_state)
        self.client.ChildrenWatch(self.paths.nodes, self._on_children_change)
        election = self.client.Election(self.paths.controller, self.id)
        while not self._stopped.is_set():
            election.run(self._lead)

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

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
