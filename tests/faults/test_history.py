"""Concurrent clients read and write a few keys while the primary of one of them is killed and restarted;
the recorded history must be linearizable, so no acknowledged write is lost or seen out of order."""

from __future__ import annotations

import itertools
import random
import threading
import time
from dataclasses import dataclass, field

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from kvcommon.hashing import partition_for
from kvcommon.testing.cluster_checks import partition_states, proxy_client
from kvcommon.testing.linearizability import HistoryRecorder, Operation, check_history
from kvmeta.local import LocalCluster

pytestmark = pytest.mark.slow

PARTITIONS = 4
KEYS = ("history:a", "history:b", "history:c")
CLIENTS = 6
CLIENT_SOCKET_TIMEOUT = 5.0
KILLS = 3
UP_BEFORE_KILL = 2.0
# A node restarted before its ZooKeeper session expires takes its partitions back without a failover:
# the killed primary stays down until another replica has been promoted, and a little longer.
FAILOVER_TIMEOUT = 15.0
DOWN_AFTER_FAILOVER = 0.5
# Each client pauses this long between operations at most: a few hundred operations per key keep the
# check quick while still overlapping every failover.
CLIENT_THINK_TIME = 0.01
MIN_ACKNOWLEDGED_WRITES = 150
MIN_ACKNOWLEDGED_READS = 150
MIN_SWAPPING_CAS = 50
RECOVERY_TIMEOUT = 30.0
CAS_PROBE_KEY = "history:cas-probe"


@dataclass
class Workload:
    recorder: HistoryRecorder = field(default_factory=HistoryRecorder)
    stop: threading.Event = field(default_factory=threading.Event)
    crashes: list[BaseException] = field(default_factory=list)


def client_connection(cluster: LocalCluster) -> redis.Redis:
    """One client's own connection. redis-py must not resend a command itself: a resent write could take
    effect twice, which the history would not show."""
    return proxy_client(cluster, protocol=2, socket_timeout=CLIENT_SOCKET_TIMEOUT,
                        socket_connect_timeout=CLIENT_SOCKET_TIMEOUT, retry=Retry(NoBackoff(), 0),
                        decode_responses=True)


class Client:
    """One client thread's operations: reads, writes of unique values and, when the store has ``SET ... IFEQ``,
    compare-and-sets from the value the client last saw (so that some of them succeed)."""

    def __init__(self, cluster: LocalCluster, index: int, workload: Workload, with_cas: bool):
        self.name = f"client-{index}"
        self.rng = random.Random(index)
        self.connection = client_connection(cluster)
        self.workload = workload
        self.recorder = workload.recorder
        self.with_cas = with_cas
        self.last_seen: dict[str, str | None] = {}

    def run(self) -> None:
        try:
            for op_number in itertools.count():
                if self.workload.stop.is_set():
                    return
                self.one_operation(self.rng.choice(KEYS), f"{self.name}-op-{op_number}")
                time.sleep(self.rng.uniform(0, CLIENT_THINK_TIME))
        except BaseException as exc:  # a bug in the test itself: reported by the main thread
            self.workload.crashes.append(exc)
        finally:
            self.connection.close()

    def one_operation(self, key: str, new_value: str) -> None:
        draw = self.rng.random()
        expected = self.last_seen.get(key)
        if draw < 0.4:
            self.read(key)
        elif draw < 0.7 or not self.with_cas or expected is None:
            self.write(key, new_value)
        else:
            self.cas(key, expected, new_value)

    def read(self, key: str) -> None:
        started = self.recorder.invoke()
        try:
            value = self.connection.get(key)
        except redis.RedisError:
            self.recorder.unknown(self.name, key, "read", started)
        else:
            self.recorder.read(self.name, key, started, value)
            self.last_seen[key] = value

    def write(self, key: str, value: str) -> None:
        started = self.recorder.invoke()
        try:
            self.connection.set(key, value)
        except redis.RedisError:
            self.recorder.unknown(self.name, key, "write", started, value)
        else:
            self.recorder.write(self.name, key, started, value)
            self.last_seen[key] = value

    def cas(self, key: str, expected: str, new: str) -> None:
        started = self.recorder.invoke()
        try:
            swapped = bool(self.connection.execute_command("SET", key, new, "IFEQ", expected))
        except redis.RedisError:
            self.recorder.unknown(self.name, key, "cas", started, (expected, new))
        else:
            self.recorder.cas(self.name, key, started, expected, new, swapped)
            if swapped:
                self.last_seen[key] = new


def supports_compare_and_set(cluster: LocalCluster) -> bool:
    """Whether the store knows ``SET key value IFEQ expected`` (older versions answer a syntax error)."""
    connection = client_connection(cluster)
    try:
        connection.set(CAS_PROBE_KEY, "old")
        connection.execute_command("SET", CAS_PROBE_KEY, "new", "IFEQ", "old")
        return connection.get(CAS_PROBE_KEY) == "new"
    except redis.ResponseError:
        return False
    finally:
        connection.close()


def kill_and_restart_primary(cluster: LocalCluster, partition: int, workload: Workload) -> list[str]:
    """Kill the partition's current primary and start it again, KILLS times; the nodes killed."""
    killed = []
    try:
        for _ in range(KILLS):
            time.sleep(UP_BEFORE_KILL)
            victim = partition_states(cluster)[partition].primary
            cluster.kill(victim)
            killed.append(victim)
            wait_for_new_primary(cluster, partition, victim)
            time.sleep(DOWN_AFTER_FAILOVER)
            cluster.start(victim)
        time.sleep(UP_BEFORE_KILL)
    except BaseException as exc:
        workload.crashes.append(exc)
    return killed


def wait_for_new_primary(cluster: LocalCluster, partition: int, old_primary: str) -> None:
    """Wait until the controller has noticed the death (the node's session expired) and promoted another."""
    deadline = time.monotonic() + FAILOVER_TIMEOUT
    while partition_states(cluster)[partition].primary == old_primary:
        if time.monotonic() > deadline:
            raise AssertionError(f"partition {partition} still has {old_primary} as its primary "
                                 f"{FAILOVER_TIMEOUT:g} s after it was killed")
        time.sleep(0.2)


def final_reads(cluster: LocalCluster, recorder: HistoryRecorder) -> None:
    """Once the faults are over, every key must read as its last write: recorded as one more client."""
    connection = client_connection(cluster)
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    try:
        for key in KEYS:
            while True:
                started = recorder.invoke()
                try:
                    recorder.read("final-reader", key, started, connection.get(key))
                    break
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
    finally:
        connection.close()


def summarize(ops: list[Operation]) -> dict[str, int]:
    counts = dict.fromkeys(("acknowledged writes", "acknowledged reads", "swapping cas", "failed cas",
                            "unknown outcome"), 0)
    for op in ops:
        if not op.known:
            counts["unknown outcome"] += 1
        elif op.kind == "cas":
            counts["swapping cas" if op.result else "failed cas"] += 1
        else:
            counts[f"acknowledged {op.kind}s"] += 1
    return counts


def test_history_stays_linearizable_while_a_primary_is_killed_and_restarted(make_cluster):
    cluster = make_cluster(nodes=3, partitions=PARTITIONS, write_level="quorum")
    target = partition_for(KEYS[0].encode(), PARTITIONS)
    generation_before = partition_states(cluster)[target].generation
    workload = Workload()
    with_cas = supports_compare_and_set(cluster)
    clients = [threading.Thread(target=Client(cluster, i, workload, with_cas).run, name=f"client-{i}")
               for i in range(CLIENTS)]
    for thread in clients:
        thread.start()
    try:
        killed = kill_and_restart_primary(cluster, target, workload)
    finally:
        workload.stop.set()
        for thread in clients:
            thread.join(timeout=2 * CLIENT_SOCKET_TIMEOUT)
    assert not workload.crashes, f"a client or the fault thread failed: {workload.crashes!r}"
    assert len(killed) == KILLS
    final_reads(cluster, workload.recorder)

    ops = workload.recorder.operations
    counts = summarize(ops)
    assert counts["acknowledged writes"] >= MIN_ACKNOWLEDGED_WRITES, counts
    assert counts["acknowledged reads"] >= MIN_ACKNOWLEDGED_READS, counts
    if with_cas:
        assert counts["swapping cas"] >= MIN_SWAPPING_CAS, counts
    assert partition_states(cluster)[target].generation >= generation_before + KILLS, \
        "each kill of the primary should have made the controller promote another replica"
    result = check_history(ops)
    assert result.linearizable is True, f"{counts}\n{result.explanation}"
