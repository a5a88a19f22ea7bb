"""The proxy's copy of the partition map, kept current by ZooKeeper watches.

Watches fire on kazoo's threads; each update hops to the reactor before it touches the view. A proxy that
loses ZooKeeper keeps routing by the map it has: the nodes fence stale routes by generation.
"""

from __future__ import annotations

import logging
import os

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NodeExistsError
from kazoo.recipe.watchers import ChildrenWatch, DataWatch

from kvmeta import zk
from kvmeta.schema import ClusterConfig, ClusterPaths, NodeRecord, PartitionState
from kvproxy.service import ProxyService

log = logging.getLogger(__name__)


class MapWatcher:
    def __init__(self, reactor, client: KazooClient, cluster: str, service: ProxyService, record: NodeRecord):
        self.reactor = reactor
        self.client = client
        self.paths = ClusterPaths(cluster)
        self.service = service
        self.record = record
        self._watched: set[str] = set()
        self._stopped = False

    def start(self) -> None:
        """Blocking: read the config, register, and start the watches."""
        config = zk.read_config(self.client, self.paths)
        self.service.view.partition_count = config.partitions
        self.service.default_read_level = config.read_level
        zk.ensure_cluster_paths(self.client, self.paths)
        self._register()
        self.client.add_listener(self._on_state)
        DataWatch(self.client, self.paths.config, self._on_config)
        ChildrenWatch(self.client, self.paths.nodes, self._on_nodes)
        ChildrenWatch(self.client, self.paths.partitions, self._on_partitions)

    def stop(self) -> None:
        self._stopped = True

    def _register(self) -> None:
        try:
            self.client.create(self.paths.proxy(self.record.id), self.record.encode(), ephemeral=True)
        except NodeExistsError:
            pass

    def _on_state(self, state) -> None:
        if state == KazooState.CONNECTED:
            self.client.handler.spawn(self._reregister)
        else:
            log.warning("ZooKeeper connection %s: routing by the last known map", state.lower())

    def _reregister(self) -> None:
        try:
            self._register()
        except Exception as err:
            log.warning("re-registering the proxy failed: %s", err)

    def _on_config(self, data, stat) -> None:
        if data:
            read_level = ClusterConfig.decode(data).read_level
            self.reactor.callFromThread(setattr, self.service, "default_read_level", read_level)

    def _on_nodes(self, children: list[str]) -> bool:
        self.reactor.callFromThread(self._set_nodes, zk.read_live_nodes(self.client, self.paths, children))
        return not self._stopped

    def _set_nodes(self, nodes: dict[str, NodeRecord]) -> None:
        self.service.view.nodes = nodes
        self.service.map_changed()

    def _on_partitions(self, children: list[str]) -> bool:
        for name in children:
            if name not in self._watched:
                self._watched.add(name)
                DataWatch(self.client, f"{self.paths.partitions}/{name}", self._on_partition)
        return not self._stopped

    def _on_partition(self, data, stat) -> bool:
        if data:
            self.reactor.callFromThread(self._set_partition, PartitionState.decode(data))
        return not self._stopped

    def _set_partition(self, state: PartitionState) -> None:
        self.service.view.states[state.partition] = state
        self.service.map_changed()


def proxy_record(proxy_id: str, host: str, port: int) -> NodeRecord:
    return NodeRecord(proxy_id, host, port, pid=os.getpid())
