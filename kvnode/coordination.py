"""The node's link to ZooKeeper: membership, the partition map, the session state, published positions.

kazoo calls back on its own threads; every callback hops to the reactor thread with ``callFromThread``
before touching the service. Blocking kazoo calls run only on kazoo's or the thread pool's threads.
"""

from __future__ import annotations

import logging

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NodeExistsError, NoNodeError
from kazoo.recipe.watchers import ChildrenWatch, DataWatch
from twisted.internet import threads

from kvmeta import zk
from kvmeta.schema import (
    ClusterConfig,
    ClusterPaths,
    MemberRecord,
    NodeRecord,
    PartitionState,
    PositionsRecord,
)
from kvnode.service import NodeService

log = logging.getLogger(__name__)

POSITIONS_INTERVAL = 0.5


class NodeCoordinator:
    def __init__(self, reactor, client: KazooClient, cluster: str, service: NodeService, record: NodeRecord):
        self.reactor = reactor
        self.client = client
        self.paths = ClusterPaths(cluster)
        self.service = service
        self.record = record
        self._partition_watches: dict[str, DataWatch] = {}
        self._published: dict[int, tuple[int, int]] = {}
        self._stopped = False

    def start(self) -> None:
        """Blocking (call from a thread): register, then watch. Fails if the cluster does not exist."""
        config = zk.read_config(self.client, self.paths)
        self.reactor.callFromThread(self.service.on_config, config)
        zk.ensure_cluster_paths(self.client, self.paths)
        try:
            self.client.create(self.paths.member(self.record.id), MemberRecord(self.record.id).encode())
        except NodeExistsError:
            pass
        self._register()
        self.client.add_listener(self._on_state)
        DataWatch(self.client, self.paths.config, self._on_config)
        ChildrenWatch(self.client, self.paths.nodes, self._on_nodes)
        ChildrenWatch(self.client, self.paths.partitions, self._on_partitions)
        self.reactor.callFromThread(self.service.on_session, True)
        self._publish_loop()

    def stop(self) -> None:
        self._stopped = True

    def _register(self) -> None:
        path = self.paths.node(self.record.id)
        try:
            self.client.create(path, self.record.encode(), ephemeral=True)
        except NodeExistsError:
            # Our previous session's znode, not yet expired: it is ours, replace it.
            data, stat = self.client.get(path)
            if stat.ephemeralOwner != self.client.client_id[0]:
                self.client.delete(path)
                self.client.create(path, self.record.encode(), ephemeral=True)

    def _on_state(self, state: KazooState) -> None:
        if state == KazooState.CONNECTED:
            # A new session after a lost one has no ephemeral znode: register again, off kazoo's thread.
            self.reactor.callFromThread(self._reconnected)
        else:
            self.reactor.callFromThread(self.service.on_session, False)

    def _reconnected(self) -> None:
        def register():
            self._register()
            # Partition states may have changed while we were away: read them all before serving again.
            for state, _version in zk.read_partitions(self.client, self.paths).values():
                self.reactor.callFromThread(self.service.on_partition_state, state)

        d = threads.deferToThread(register)
        d.addCallback(lambda _: self.service.on_session(True))
        d.addErrback(lambda f: log.warning("re-registering after reconnect failed: %s", f.getErrorMessage()))

    def _on_config(self, data, stat) -> None:
        if data:
            self.reactor.callFromThread(self.service.on_config, ClusterConfig.decode(data))

    def _on_nodes(self, children: list[str]) -> bool:
        self.reactor.callFromThread(self.service.on_live_nodes, zk.read_live_nodes(self.client, self.paths, children))
        return not self._stopped

    def _on_partitions(self, children: list[str]) -> bool:
        for name in children:
            if name not in self._partition_watches:
                path = f"{self.paths.partitions}/{name}"
                self._partition_watches[name] = DataWatch(self.client, path, self._on_partition)
        return not self._stopped

    def _on_partition(self, data, stat) -> bool:
        if data:
            self.reactor.callFromThread(self.service.on_partition_state, PartitionState.decode(data))
        return not self._stopped

    # -- positions ---------------------------------------------------------------------------------

    def _publish_loop(self) -> None:
        if self._stopped:
            return
        self.reactor.callFromThread(self._publish)

    def _publish(self) -> None:
        """Publish our replicas' positions when they changed (from the reactor: a consistent read)."""
        positions = self.service.positions()
        if positions != self._published and self.client.state == KazooState.CONNECTED:
            self._published = positions
            data = PositionsRecord(self.record.id, positions).encode()
            path = self.paths.node_positions(self.record.id)
            threads.deferToThread(self._write_positions, path, data).addErrback(
                lambda f: log.debug("publishing positions failed: %s", f.getErrorMessage()))
        if not self._stopped:
            self.reactor.callLater(POSITIONS_INTERVAL, self._publish)

    def _write_positions(self, path: str, data: bytes) -> None:
        try:
            self.client.set(path, data)
        except NoNodeError:
            self.client.create(path, data, makepath=True)
