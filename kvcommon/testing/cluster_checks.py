"""Checks on a running cluster that tests share: clients, replica contents, waiting for convergence."""

from __future__ import annotations

import time

import redis
from kazoo.client import KazooClient

from kvmeta import zk
from kvmeta.local import LocalCluster
from kvmeta.schema import PartitionState


def proxy_client(cluster: LocalCluster, protocol: int = 3, index: int = 0, **options) -> redis.Redis:
    host, port = cluster.proxy_addresses[index].rsplit(":", 1)
    options.setdefault("socket_timeout", 20)
    return redis.Redis(host=host, port=int(port), protocol=protocol, **options)


def node_client(cluster: LocalCluster, node_id: str) -> redis.Redis:
    spec = cluster.process(node_id)
    return redis.Redis(host=spec.host, port=spec.port, protocol=2, socket_timeout=10)


def partition_states(cluster: LocalCluster) -> dict[int, PartitionState]:
    client = KazooClient(hosts=cluster.zk_address)
    client.start(timeout=15)
    try:
        return {p: state for p, (state, _) in zk.read_partitions(client, cluster.paths).items()}
    finally:
        client.stop()
        client.close()


def replica_dump(cluster: LocalCluster, node_id: str, partition: int) -> tuple[int, dict[bytes, bytes]]:
    """A replica's committed seq and its live data, read from the node directly."""
    reply = node_client(cluster, node_id).execute_command("KV.DUMP", partition)
    seq, flat = reply[1], reply[2:]
    return seq, dict(zip(flat[::2], flat[1::2], strict=True))


def divergent_replicas(cluster: LocalCluster, nodes: set[str] | None = None) -> list[str]:
    """Replicas whose data or seq differ from their primary's; empty when every replica converged."""
    problems = []
    for partition, state in sorted(partition_states(cluster).items()):
        secondaries = [n for n in state.secondaries if nodes is None or n in nodes]
        if not secondaries:
            continue
        primary_seq, primary_data = replica_dump(cluster, state.primary, partition)
        for node_id in secondaries:
            seq, data = replica_dump(cluster, node_id, partition)
            if seq != primary_seq or data != primary_data:
                problems.append(f"partition {partition}: {node_id} at seq {seq} with {len(data)} keys, primary "
                                f"{state.primary} at seq {primary_seq} with {len(primary_data)} keys")
    return problems


def wait_until_converged(cluster: LocalCluster, timeout: float = 30.0, nodes: set[str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        problems = divergent_replicas(cluster, nodes)
        if not problems:
            return
        if time.monotonic() > deadline:
            raise AssertionError("replicas did not converge:\n" + "\n".join(problems))
        time.sleep(0.2)


def wait_until_refused(client: redis.Redis, command: tuple, message: str, timeout: float = 10.0) -> None:
    """Repeat ``command`` until the cluster refuses it with an error containing ``message``: for a change of
    the settings, which every node takes up from its own ZooKeeper watch."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.execute_command(*command)
        except redis.ResponseError as err:
            assert message in str(err), f"refused for another reason: {err}"
            return
        assert time.monotonic() < deadline, f"{command[0]} was still answered after {timeout:.0f} s"
        time.sleep(0.1)
