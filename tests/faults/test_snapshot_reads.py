"""Reads as of a version survive failover: the history is replicated with the writes."""

import time

import pytest
import redis

from kvcommon.testing.cluster_checks import partition_states, proxy_client, wait_until_converged

pytestmark = pytest.mark.slow

PARTITIONS = 4


def full_range(client, version):
    cursor, flat = client.execute_command("KV.RANGE", "", "", "LIMIT", 10_000, "ASOF", version)
    assert cursor == b""
    return flat


def test_a_snapshot_read_answers_the_same_after_a_primary_is_killed(make_cluster):
    cluster = make_cluster(nodes=3, partitions=PARTITIONS, write_level="quorum")
    r = proxy_client(cluster, protocol=2, socket_timeout=30)
    r.mset({b"k%03d" % i: b"old" for i in range(300)})
    version = r.execute_command("KV.SNAPSHOT")
    r.mset({b"k%03d" % i: b"new" for i in range(0, 300, 2)})
    r.delete(*(b"k%03d" % i for i in range(1, 300, 5)))
    before = full_range(r, version)
    assert before == [field for i in range(300) for field in (b"k%03d" % i, b"old")]
    victim = partition_states(cluster)[0].primary
    cluster.kill(victim)
    deadline = time.monotonic() + 30
    while True:
        try:
            after = full_range(r, version)
            break
        except redis.RedisError:
            assert time.monotonic() < deadline, "no answer after the failover"
            time.sleep(0.2)
    assert after == before
    assert r.execute_command("KV.GETASOF", "k000", version) == b"old"
    assert r.get("k000") == b"new"
    cluster.start(victim)
    wait_until_converged(cluster, timeout=60)
    assert full_range(r, version) == before
