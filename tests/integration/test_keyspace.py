"""Expiry, SCAN and concurrent read-modify-writes on a real replicated cluster with two proxies."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from kvcommon.hashing import partition_for
from kvcommon.testing.cluster_checks import node_client, partition_states, proxy_client, wait_until_converged
from kvmeta.local import LocalCluster

PARTITIONS = 4


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, zookeeper):
    local = LocalCluster(tmp_path_factory.mktemp("keyspace"), nodes=3, partitions=PARTITIONS, proxies=2,
                         zk=zookeeper.address, cluster=f"keyspace-{uuid.uuid4().hex[:8]}", proxy_port=0)
    try:
        local.up()
        yield local
    finally:
        local.down()


@pytest.fixture
def r(cluster):
    client = proxy_client(cluster)
    client.flushall()
    return client


def on_every_replica(cluster, *command) -> dict[tuple[int, str], object]:
    """Run a read on every replica of every partition, secondaries included: {(partition, node): reply}."""
    replies = {}
    for partition, state in partition_states(cluster).items():
        for node in state.replicas:
            replies[partition, node] = node_client(cluster, node).execute_command(
                "PX", partition, state.generation, "r=eventual", *command)
    return replies


def wait_for(condition, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_expiry_is_absolute_and_the_same_on_every_replica(cluster, r):
    r.set("ttl-key", "v", px=100_000)
    wait_until_converged(cluster)
    partition = partition_for(b"ttl-key", PARTITIONS)
    times = {node: reply for (p, node), reply in on_every_replica(cluster, "PEXPIRETIME", "ttl-key").items()
             if p == partition}
    assert len(times) == 3 and len(set(times.values())) == 1, f"secondaries keep the primary's time: {times}"
    assert times.popitem()[1] == r.pexpiretime("ttl-key")


def test_expired_keys_vanish_from_every_read_path_then_from_every_replica(cluster, r):
    doomed = [f"doomed:{i}" for i in range(20)]
    kept = [f"kept:{i}" for i in range(5)]
    pipe = r.pipeline(transaction=False)
    for key in doomed:
        pipe.set(key, "v", px=1000)
    for key in kept:
        pipe.set(key, "v")
    pipe.execute()
    assert r.exists(*doomed) == 20
    time.sleep(1.1)
    assert r.mget(doomed) == [None] * 20
    assert r.exists(*doomed) == 0 and r.get(doomed[0]) is None and r.ttl(doomed[1]) == -2
    assert sorted(r.keys("*")) == sorted(k.encode() for k in kept)
    assert sorted(r.scan_iter(count=3)) == sorted(k.encode() for k in kept)
    # The sweep removes them from disk: DBSIZE counts what is stored, on the primaries and on the secondaries.
    wait_for(lambda: r.dbsize() == 5, what="the sweep to delete the expired keys")
    wait_until_converged(cluster)
    sizes = on_every_replica(cluster, "DBSIZE")
    for partition in range(PARTITIONS):
        assert len({size for (p, _), size in sizes.items() if p == partition}) == 1
    assert sum(size for size in sizes.values()) == 5 * 3


def test_read_modify_writes_replicate_their_results(cluster, r):
    r.set("f", "10.5")
    assert r.incrbyfloat("f", "0.1") == 10.6
    r.append("s", "abc")
    r.setrange("s", 5, "z")
    r.setbit("b", 3, 1)
    r.set("c", "old")
    assert r.execute_command("SET", "c", "new", "IFEQ", "old", "GET", get=True) == b"old"
    r.set("gone", "x")
    assert r.getdel("gone") == b"x"
    wait_until_converged(cluster)
    for key, value in ((b"f", b"10.6"), (b"s", b"abc\x00\x00z"), (b"b", b"\x10"), (b"c", b"new")):
        partition = partition_for(key, PARTITIONS)
        replies = {v for (p, _), v in on_every_replica(cluster, "GET", key).items() if p == partition}
        assert replies == {value}


def test_scan_returns_every_key_present_for_the_whole_scan_through_either_proxy(cluster, r):
    stable = {f"stable:{i}".encode() for i in range(300)}
    r.mset({k: b"v" for k in stable})
    clients = [proxy_client(cluster, index=0), proxy_client(cluster, index=1)]
    returned: list[bytes] = []
    cursor, step = 0, 0
    while True:
        cursor, keys = clients[step % 2].scan(cursor, count=7)
        returned += keys
        # Keys come and go while the scan runs.
        r.set(f"churn:{step}", "v")
        r.delete(f"churn:{step - 3}")
        step += 1
        if cursor == 0:
            break
    assert step > PARTITIONS, "the scan took several steps"
    assert stable <= set(returned), f"missed {sorted(stable - set(returned))[:5]}"
    assert set(returned) - stable <= {f"churn:{i}".encode() for i in range(step)}


def test_scan_with_a_hash_tag_pattern_walks_only_the_tags_partition(cluster, r):
    tag = next(t for t in (f"user{i}" for i in range(100)) if partition_for(t.encode(), PARTITIONS) < PARTITIONS - 1)
    mine = {f"{{{tag}}}:{i}".encode() for i in range(30)}
    r.mset({k: b"v" for k in mine} | {f"other:{i}": b"v" for i in range(30)})
    cursor, keys = r.scan(0, match=f"{{{tag}}}:*", count=1000)
    assert cursor == 0 and set(keys) == mine, "one step walks the whole partition and ends the scan"
    assert set(r.keys(f"{{{tag}}}:*")) == mine


def test_an_unknown_scan_cursor_restarts_its_partition_and_misses_nothing(cluster, r):
    keys = {f"k:{i}".encode() for i in range(40)}
    r.mset({k: b"v" for k in keys})
    seen = set()
    cursor = 12345  # partition 0, a token no node handed out
    while True:
        cursor, found = r.scan(cursor, count=5)
        seen |= set(found)
        if cursor == 0:
            break
    assert seen == keys


def test_randomkey_draws_from_every_partition(cluster, r):
    keys = [f"rk:{i}".encode() for i in range(40)]
    r.mset({k: "v" for k in keys})
    drawn = {r.randomkey() for _ in range(60)}
    assert drawn <= set(keys)
    # Each draw starts at a random partition: missing one in 60 draws has a chance of 4 * (3/4)**60.
    assert {partition_for(k, PARTITIONS) for k in drawn} == {partition_for(k, PARTITIONS) for k in keys}


def test_flushall_empties_every_replica(cluster, r):
    r.mset({f"fl:{i}": "v" for i in range(50)})
    assert r.flushall() is True
    assert r.dbsize() == 0
    wait_until_converged(cluster)
    assert set(on_every_replica(cluster, "DBSIZE").values()) == {0}


def test_concurrent_incr_and_compare_and_set_through_two_proxies_are_exact(cluster, r):
    clients_per_proxy, increments, swaps = 4, 60, 20
    counters, registers = ["count:0", "count:1", "count:2"], ["cas:0", "cas:1"]
    r.mset({k: 0 for k in registers})
    errors: list[BaseException] = []
    conflicts = [0]

    def worker(index: int):
        client = proxy_client(cluster, protocol=2 + index % 2, index=index % 2)
        try:
            for i in range(increments):
                client.incr(counters[(index + i) % len(counters)])
            for i in range(swaps):
                key = registers[(index + i) % len(registers)]
                while True:
                    old = client.get(key)
                    if client.execute_command("SET", key, int(old) + 1, "IFEQ", old):
                        break
                    conflicts[0] += 1
        except BaseException as err:  # reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2 * clients_per_proxy)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    workers = 2 * clients_per_proxy
    assert sum(int(v) for v in r.mget(counters)) == workers * increments
    assert sum(int(v) for v in r.mget(registers)) == workers * swaps
    wait_until_converged(cluster)
