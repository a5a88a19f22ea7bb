"""Time from `kill -9` of a partition's primary to the first acknowledged write on its new primary.

Starts a local cluster (3 nodes, replication factor 3, write level quorum), then for each trial: writes to
one partition in a tight loop, kills that partition's primary, measures until a write succeeds again,
restarts the killed node and waits for the cluster to converge. Prints the median and worst case.

    .venv/bin/python bench/failover_time.py [--trials 20] [--session-timeout 1.5] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import redis
from rich.progress import Progress

from kvcommon.testing.cluster_checks import partition_states, proxy_client, wait_until_converged
from kvcommon.testing.load import keys_in_partition
from kvmeta.local import LocalCluster

PARTITIONS = 8


def one_trial(cluster: LocalCluster, client: redis.Redis, partition: int) -> float:
    key = keys_in_partition(partition, PARTITIONS, 1, prefix="failover")[0]
    client.set(key, "warm")
    victim = partition_states(cluster)[partition].primary
    cluster.kill(victim)
    killed = time.monotonic()
    while True:
        try:
            client.set(key, "after")
            elapsed = time.monotonic() - killed
            break
        except redis.RedisError:
            time.sleep(0.005)
    cluster.start(victim)
    wait_until_converged(cluster, timeout=60)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--session-timeout", type=float, default=1.5,
                        help="the nodes' ZooKeeper session timeout in seconds")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    os.environ["KVNODE_SESSION_TIMEOUT"] = str(args.session_timeout)
    with tempfile.TemporaryDirectory(prefix="kv-failover-") as directory:
        cluster = LocalCluster(directory, nodes=3, partitions=PARTITIONS, proxy_port=0, write_level="quorum")
        cluster.up()
        try:
            client = proxy_client(cluster, socket_timeout=30)
            times = []
            with Progress() as progress:
                task = progress.add_task("kill -9 of a primary", total=args.trials)
                for trial in range(args.trials):
                    times.append(one_trial(cluster, client, trial % PARTITIONS))
                    progress.advance(task)
        finally:
            cluster.down()
    figures = {
        "trials": len(times), "median_s": round(statistics.median(times), 3), "worst_s": round(max(times), 3),
        "best_s": round(min(times), 3), "zookeeper_session_timeout_s": args.session_timeout,
        "times_s": [round(t, 3) for t in times],
    }
    print(f"kill -9 of a primary to the first acknowledged write on the new one, {len(times)} trials "
          f"(ZooKeeper session timeout {args.session_timeout:g} s): median {figures['median_s']:.2f} s, "
          f"worst {figures['worst_s']:.2f} s, best {figures['best_s']:.2f} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
