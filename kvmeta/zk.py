"""Connecting to ZooKeeper and reading the cluster records, with errors an operator can act on."""

from __future__ import annotations

import logging
from dataclasses import replace

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError

from kvcommon.errors import KVError
from kvmeta.schema import ClusterConfig, ClusterPaths, NodeRecord, PartitionState, PositionsRecord

log = logging.getLogger(__name__)

# For the controller, proxies and kvctl: how long they may be cut off before ZooKeeper forgets them.
# Nodes choose their own (kvnode --session-timeout), shorter, since it bounds failover time.
DEFAULT_SESSION_TIMEOUT = 4.0


class CoordinationError(KVError):
    pass


def connect(address: str, timeout: float = 15.0, session_timeout: float = DEFAULT_SESSION_TIMEOUT,
            read_only: bool = False) -> KazooClient:
    client = KazooClient(hosts=address, timeout=session_timeout, read_only=read_only,
                         connection_retry={"max_tries": -1, "delay": 0.1, "max_delay": 1.0},
                         command_retry={"max_tries": 3, "delay": 0.1, "max_delay": 1.0})
    try:
        client.start(timeout=timeout)
    except KazooTimeoutError:
        client.stop()
        client.close()
        raise CoordinationError(
            f"cannot reach ZooKeeper at {address} within {timeout:.0f}s; check that it runs and the "
            "address is right (--zk HOST:PORT)"
        ) from None
    return client


def read_config(client: KazooClient, paths: ClusterPaths) -> ClusterConfig:
    return _read_config_and_version(client, paths)[0]


def _read_config_and_version(client: KazooClient, paths: ClusterPaths) -> tuple[ClusterConfig, int]:
    try:
        data, stat = client.get(paths.config)
    except NoNodeError:
        raise CoordinationError(
            f"cluster {paths.cluster!r} does not exist in ZooKeeper; create it with "
            f"`kvctl cluster create --cluster {paths.cluster} ...` (or start a local one with `kvctl local up`)"
        ) from None
    return ClusterConfig.decode(data), stat.version


def update_config(client: KazooClient, paths: ClusterPaths, **changes) -> tuple[ClusterConfig, ClusterConfig]:
    """Change settings of the cluster's config; returns (before, after). Raises ValueError for a value
    ClusterConfig refuses. The write is conditional on the version read, and retried, so a change made
    meanwhile by someone else is never overwritten. Nodes and proxies watch the config and take it up."""
    while True:
        before, version = _read_config_and_version(client, paths)
        after = replace(before, **changes)
        try:
            client.set(paths.config, after.encode(), version=version)
        except BadVersionError:
            continue
        return before, after


def _read_children(client: KazooClient, parent: str, names: list[str] | None = None):
    """(name, data, stat) of each child of ``parent`` still there when read (of ``names`` if given)."""
    for name in client.get_children(parent) if names is None else names:
        try:
            data, stat = client.get(f"{parent}/{name}")
        except NoNodeError:
            continue  # gone between the listing and the read
        yield name, data, stat


def read_live_nodes(client: KazooClient, paths: ClusterPaths, children: list[str] | None = None
                    ) -> dict[str, NodeRecord]:
    """The records of the live nodes (of ``children``, when a watch already listed them)."""
    return {name: NodeRecord.decode(data) for name, data, _ in _read_children(client, paths.nodes, children)}


def read_partitions(client: KazooClient, paths: ClusterPaths) -> dict[int, tuple[PartitionState, int]]:
    """Every partition's state with its znode version (for conditional updates)."""
    states = {}
    for _, data, stat in _read_children(client, paths.partitions):
        state = PartitionState.decode(data)
        states[state.partition] = (state, stat.version)
    return states


def read_positions(client: KazooClient, paths: ClusterPaths) -> dict[str, PositionsRecord]:
    return {name: PositionsRecord.decode(data) for name, data, _ in _read_children(client, paths.positions)}


def ensure_cluster_paths(client: KazooClient, paths: ClusterPaths) -> None:
    for path in (paths.members, paths.nodes, paths.proxies, paths.partitions, paths.positions, paths.controller,
                 paths.operations):
        client.ensure_path(path)


def create_cluster(client: KazooClient, paths: ClusterPaths, config: ClusterConfig) -> bool:
    """Write the config of a new cluster. False if it exists already with the same partition count."""
    if client.exists(paths.config):
        existing = read_config(client, paths)
        if existing.partitions != config.partitions:
            raise CoordinationError(
                f"cluster {paths.cluster!r} exists with {existing.partitions} partitions; the partition count "
                "cannot change after creation (pick another cluster name, or delete this cluster first)"
            )
        return False
    client.ensure_path(paths.base)
    client.create(paths.config, config.encode())
    ensure_cluster_paths(client, paths)
    return True
