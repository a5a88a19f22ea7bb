"""Our side of the benchmark: a local cluster and what is measured of its processes."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from kvmeta import zk
from kvmeta.bench.resources import Watched
from kvmeta.local import LocalCluster, ProcessSpec

NODES = 3
PARTITIONS = 16
REPLICATION_FACTOR = 3
# Nodes follow a change of the cluster config through a ZooKeeper watch: milliseconds on loopback.
CONFIG_PROPAGATION_SECONDS = 1.0


def start_cluster(directory: Path, write_level: str, timeout: float = 120.0) -> LocalCluster:
    """3 nodes, replication factor 3, 16 partitions, a controller and a proxy on a free port."""
    cluster = LocalCluster(directory, nodes=NODES, partitions=PARTITIONS, replication_factor=REPLICATION_FACTOR,
                           proxy_port=0, write_level=write_level)
    try:
        cluster.up(timeout=timeout)
    except BaseException:
        cluster.down()
        raise
    return cluster


def watched(cluster: LocalCluster) -> list[Watched]:
    """The processes on the path of a request: the proxy and the nodes (not ZooKeeper, not the controller)."""
    chosen = [p for p in cluster.processes if p.role in ("proxy", "node") and p.pid]
    # The proxy first: requests pass through it before the nodes.
    return [Watched(p.id, p.role, p.pid) for p in sorted(chosen, key=lambda p: p.role != "proxy")]


def roles(cluster: LocalCluster) -> dict[str, str]:
    """What each measured process does; for a node, how many partitions it leads and follows."""
    client = zk.connect(cluster.zk_address)
    try:
        partitions = zk.read_partitions(client, cluster.paths)
    finally:
        client.stop()
        client.close()
    out = {}
    for process in watched(cluster):
        if process.role != "node":
            out[process.name] = process.role
            continue
        held = [state for state, _ in partitions.values() if process.name in state.replicas]
        primary = sum(1 for state in held if state.primary == process.name)
        out[process.name] = f"primary of {primary}, secondary of {len(held) - primary} partitions"
    return out


def set_write_level(cluster: LocalCluster, level: str) -> None:
    """Change the cluster's default write level in place (the nodes watch the config)."""
    client = zk.connect(cluster.zk_address)
    try:
        config = zk.read_config(client, cluster.paths)
        if config.write_level != level:
            client.set(cluster.paths.config, dataclasses.replace(config, write_level=level).encode())
    finally:
        client.stop()
        client.close()
    time.sleep(CONFIG_PROPAGATION_SECONDS)


def node_cache_mb(spec: ProcessSpec) -> int:
    """The LevelDB block cache a node was started with: its --cache-mb, or kvnode's default."""
    if "--cache-mb" in spec.argv:
        return int(spec.argv[spec.argv.index("--cache-mb") + 1])
    from kvnode.main import main as node_main

    return next(p.default for p in node_main.params if p.name == "cache_mb")


def disk_bytes(directory: str | Path) -> int:
    return sum(f.stat().st_size for f in Path(directory).rglob("*") if f.is_file())
