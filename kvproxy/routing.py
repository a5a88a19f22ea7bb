"""Routing decisions from a view of the partition map: pure, no I/O.

``ClusterView`` is the proxy's copy of what ZooKeeper says (partition states and live nodes); the
functions here answer "where does this go" and "how do I split and reassemble this multi-key command".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kvcommon.hashing import partition_for
from kvmeta.schema import NodeRecord, PartitionState


@dataclass(frozen=True)
class Route:
    partition: int
    generation: int
    node: str
    host: str
    port: int


@dataclass
class ClusterView:
    partition_count: int = 0
    states: dict[int, PartitionState] = field(default_factory=dict)
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    # partition -> (state, node, route): a route is made again only when its state or node record changes.
    _routes: dict[int, tuple[PartitionState, NodeRecord, Route]] = field(default_factory=dict, repr=False,
                                                                         compare=False)

    def partition_of(self, key: bytes) -> int:
        return partition_for(key, self.partition_count)

    def primary_route(self, partition: int) -> Route | None:
        """The primary to send a write or strong read to, or None if the partition has no live primary."""
        state = self.states.get(partition)
        if state is None or state.primary is None:
            return None
        node = self.nodes.get(state.primary)
        if node is None:
            return None
        cached = self._routes.get(partition)
        if cached is not None and cached[0] is state and cached[1] is node:
            return cached[2]
        route = Route(partition, state.generation, node.id, node.host, node.port)
        self._routes[partition] = (state, node, route)
        return route

    def replica_routes(self, partition: int) -> list[Route]:
        """Every live replica that may serve an eventual read, the primary first."""
        state = self.states.get(partition)
        if state is None:
            return []
        routes = []
        for node_id in state.replicas:
            node = self.nodes.get(node_id)
            if node is not None and node_id not in state.snapshotting:
                routes.append(Route(partition, state.generation, node.id, node.host, node.port))
        routes.sort(key=lambda r: r.node != state.primary)
        return routes


def split_keys(view: ClusterView, keys: list[bytes]) -> dict[int, list[int]]:
    """Positions of the keys grouped by partition, in first-seen order."""
    groups: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(view.partition_of(key), []).append(i)
    return groups


def split_pairs(view: ClusterView, args: list[bytes]) -> dict[int, list[int]]:
    """For key-value argument lists (MSET): positions of the pairs grouped by the partition of the key."""
    groups: dict[int, list[int]] = {}
    for i in range(0, len(args), 2):
        groups.setdefault(view.partition_of(args[i]), []).append(i // 2)
    return groups


def reassemble(count: int, parts: list[tuple[list[int], list]]) -> list:
    """Put per-partition replies back in the caller's order: parts are (positions, replies) pairs."""
    out: list = [None] * count
    for positions, replies in parts:
        for position, reply in zip(positions, replies, strict=True):
            out[position] = reply
    return out
