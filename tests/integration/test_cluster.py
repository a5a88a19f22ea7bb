"""A real cluster (ZooKeeper, nodes, controller, proxy as processes) driven by real Redis clients."""

import json
import subprocess
import sys
import time

import pytest
import redis

from kvcommon.hashing import partition_for
from kvcommon.hlc import LOGICAL_BITS
from kvcommon.testing.cluster_checks import (
    node_client,
    partition_states,
    proxy_client,
    replica_dump,
    wait_until_converged,
    wait_until_refused,
)


@pytest.fixture
def cluster(make_cluster):
    return make_cluster(nodes=3, partitions=8)


@pytest.mark.parametrize("protocol", [2, 3])
def test_set_get_del_through_the_proxy(cluster, protocol):
    r = proxy_client(cluster, protocol=protocol)
    assert r.set("greeting", "hello") is True
    assert r.get("greeting") == b"hello"
    assert r.get("missing") is None
    assert r.exists("greeting", "missing", "greeting") == 2
    assert r.delete("greeting", "missing") == 1
    assert r.get("greeting") is None


def test_multi_key_commands_span_partitions_and_keep_the_callers_order(cluster):
    r = proxy_client(cluster)
    pairs = {f"key:{i}".encode(): f"value:{i}".encode() for i in range(50)}
    assert len({partition_for(k, 8) for k in pairs}) == 8, "the keys should cover every partition"
    assert r.mset(pairs) is True
    keys = list(pairs)[::-1] + [b"absent"]
    assert r.mget(keys) == [pairs[k] for k in keys[:-1]] + [None]
    assert r.dbsize() == 50
    assert r.delete(*keys) == 50
    assert r.dbsize() == 0


def test_binary_and_empty_keys_and_values(cluster):
    r = proxy_client(cluster)
    key = b"\x00\xff\r\n binary key"
    r.set(key, b"\r\n\x00 value")
    r.set(b"", b"")
    assert r.get(key) == b"\r\n\x00 value"
    assert r.get(b"") == b""
    assert r.mget([key, b""]) == [b"\r\n\x00 value", b""]


def test_every_replica_holds_exactly_the_primarys_data_after_a_burst(cluster):
    r = proxy_client(cluster)
    pipe = r.pipeline(transaction=False)
    for i in range(3000):
        pipe.set(f"burst:{i}", f"v{i}" * (i % 7))
        if i % 10 == 0:
            pipe.delete(f"burst:{i - 5}")
    pipe.execute()
    wait_until_converged(cluster)
    states = partition_states(cluster)
    total = sum(len(replica_dump(cluster, s.primary, p)[1]) for p, s in states.items())
    assert total == r.dbsize() == 3000 - 299


def test_killed_secondary_leaves_reads_and_writes_working_and_catches_up_when_restarted(make_cluster):
    # Four nodes, three partitions: one node holds only secondaries, so killing it needs no failover.
    cluster = make_cluster(nodes=4, partitions=3)
    r = proxy_client(cluster)
    for i in range(200):
        r.set(f"before:{i}", i)
    states = partition_states(cluster)
    primaries = {s.primary for s in states.values()}
    victim = next(n for n in cluster.node_ids if n not in primaries)
    cluster.kill(victim)
    for i in range(500):
        assert r.set(f"during:{i}", i) is True
    assert r.mget([f"before:{i}" for i in range(200)]) == [str(i).encode() for i in range(200)]
    cluster.start(victim)
    wait_until_converged(cluster)
    for partition, state in states.items():
        if victim in state.replicas:
            seq, _ = replica_dump(cluster, victim, partition)
            assert seq == replica_dump(cluster, state.primary, partition)[0]


def test_a_second_proxy_started_later_serves_the_same_data(cluster):
    r = proxy_client(cluster)
    r.mset({f"k{i}": f"v{i}" for i in range(100)})
    cluster.add_proxy()
    second = proxy_client(cluster, index=1)
    assert second.mget([f"k{i}" for i in range(100)]) == [f"v{i}".encode() for i in range(100)]
    second.set("from-second", "yes")
    assert r.get("from-second") == b"yes"


def test_two_clusters_on_one_zookeeper_do_not_see_each_other(make_cluster):
    first = make_cluster(nodes=3, partitions=4)
    second = make_cluster(nodes=3, partitions=4)
    a, b = proxy_client(first), proxy_client(second)
    a.set("shared-name", "first")
    b.set("shared-name", "second")
    assert a.get("shared-name") == b"first"
    assert b.get("shared-name") == b"second"
    assert a.dbsize() == b.dbsize() == 1


def test_a_node_refuses_a_route_by_an_old_generation(cluster):
    state = partition_states(cluster)[0]
    node = node_client(cluster, state.primary)
    # A new primary serves once a majority of its replicas is in touch (its lease); until then, TRYAGAIN.
    deadline = time.monotonic() + 10
    while True:
        try:
            assert node.execute_command("PX", 0, state.generation, "-", "SET", "k", "v") == b"OK"
            break
        except redis.exceptions.TryAgainError:
            assert time.monotonic() < deadline, "the primary of partition 0 did not serve within 10 s"
            time.sleep(0.05)
    with pytest.raises(redis.ResponseError, match="NOTPRIMARY"):
        node.execute_command("PX", 0, state.generation - 1, "-", "SET", "k", "v")
    with pytest.raises(redis.exceptions.TryAgainError, match="has not seen generation"):
        node.execute_command("PX", 0, state.generation + 1, "-", "SET", "k", "v")
    secondary = node_client(cluster, state.secondaries[0])
    with pytest.raises(redis.ResponseError, match="NOTPRIMARY"):
        secondary.execute_command("PX", 0, state.generation, "-", "SET", "k", "v")


def test_kvctl_status_and_locate_describe_the_cluster(cluster):
    kvctl = [sys.executable, "-m", "kvmeta.cli"]
    status = json.loads(subprocess.run(kvctl + ["status", "--dir", str(cluster.dir), "--json"],
                                       check=True, capture_output=True, text=True).stdout)
    assert {n["id"] for n in status["nodes"] if n["live"]} == {"node1", "node2", "node3"}
    assert len(status["partitions"]) == 8
    assert all(row["primary"] and len(row["replicas"]) == 3 for row in status["partitions"])
    located = json.loads(subprocess.run(kvctl + ["locate", "greeting", "--dir", str(cluster.dir), "--json"],
                                        check=True, capture_output=True, text=True).stdout)
    assert located["partition"] == partition_for(b"greeting", 8)
    assert located["primary"] == partition_states(cluster)[located["partition"]].primary
    table = subprocess.run(kvctl + ["status", "--dir", str(cluster.dir)], check=True, capture_output=True,
                           text=True).stdout
    assert "Partitions" in table and "node1" in table


def test_kvctl_compact_compacts_every_node_while_the_data_stays_readable(cluster):
    r = proxy_client(cluster)
    for round_number in range(3):  # overwrites and deletes leave LevelDB something to compact
        r.mset({f"key:{i}": f"{round_number}:{i}" * 20 for i in range(2000)})
    r.delete(*[f"key:{i}" for i in range(0, 2000, 2)])
    kvctl = [sys.executable, "-m", "kvmeta.cli"]
    done = subprocess.run(kvctl + ["compact", "--dir", str(cluster.dir)], check=True, capture_output=True,
                          text=True).stdout
    for node in ("node1", "node2", "node3"):
        assert f"{node}: store compacted in" in done
        info = node_client(cluster, node).info()
        assert info["kv_full_compaction"] == "done" and info["kv_full_compaction_ranges"] == "25/25"
        levels = info["kv_store_files_per_level"]  # redis-py splits "0,0,1,..." into a list
        assert len(levels) == 7 and sum(1 for files in levels if files) == 1, f"{node}: {levels}"
    assert r.get("key:1") == b"2:1" * 20 and r.get("key:2") is None
    refused = subprocess.run(kvctl + ["compact", "--dir", str(cluster.dir), "--node", "node9"], capture_output=True,
                             text=True)
    assert refused.returncode == 2 and "not a live node: node9" in refused.stderr


def test_write_and_read_levels_are_chosen_per_connection(cluster):
    r = proxy_client(cluster, single_connection_client=True)
    assert r.execute_command("KV.WRITELEVEL") == b"default"
    for level in ("1", "all", "quorum"):
        assert r.execute_command("KV.WRITELEVEL", level) == b"OK"
        r.set(f"level-{level}", level)
    assert r.execute_command("KV.READLEVEL", "eventual") == b"OK"
    deadline = time.monotonic() + 5
    while r.get("level-quorum") != b"quorum" and time.monotonic() < deadline:
        time.sleep(0.05)  # an eventual read may come from a secondary that is a moment behind
    assert r.get("level-quorum") == b"quorum"
    with pytest.raises(redis.ResponseError, match="write level must be"):
        r.execute_command("KV.WRITELEVEL", "most")
    with pytest.raises(redis.ResponseError, match="read level must be"):
        r.execute_command("KV.READLEVEL", "sometimes")


def kvctl_config(cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kvmeta.cli", "config", *args, "--dir", str(cluster.dir)],
                          capture_output=True, text=True)


def test_new_connections_start_at_the_clusters_read_level(cluster):
    changed = kvctl_config(cluster, "set", "read-level", "eventual")
    assert changed.returncode == 0 and changed.stdout.strip() == "read-level: strong -> eventual"
    deadline = time.monotonic() + 10
    level = None
    while level != b"eventual" and time.monotonic() < deadline:
        level = proxy_client(cluster, single_connection_client=True).execute_command("KV.READLEVEL")
        time.sleep(0.1)
    assert level == b"eventual"


def test_kvctl_config_changes_the_retention_window_of_a_running_cluster(cluster):
    r = proxy_client(cluster)
    r.set("kept", "v")
    two_minutes_ago = (int(time.time() * 1000) - 120_000) << LOGICAL_BITS
    assert r.execute_command("KV.GETASOF", "kept", two_minutes_ago) is None  # within the default hour
    assert json.loads(kvctl_config(cluster, "show", "--json").stdout)["retention_seconds"] == 3600

    changed = kvctl_config(cluster, "set", "retention-seconds", "60")
    assert changed.returncode == 0 and changed.stdout.strip() == "retention-seconds: 3600 -> 60"
    wait_until_refused(r, ("KV.GETASOF", "kept", two_minutes_ago), "older than the retention window (60 s)")
    assert r.execute_command("KV.GETASOF", "kept", r.execute_command("KV.SNAPSHOT")) == b"v"
    assert "retention-seconds    60" in kvctl_config(cluster, "show").stdout


def test_kvctl_config_refuses_bad_settings_and_changes_nothing(cluster):
    before = kvctl_config(cluster, "show", "--json").stdout
    for args, message in [
        (("retention-seconds", "soon"), "retention-seconds is a whole number of seconds, not 'soon'"),
        (("retention-seconds", "0"), "retention must be between 1 and 2592000 seconds (30 days), not 0"),
        (("write-level", "most"), "write level must be one of 1, quorum, all, not 'most'"),
        (("partitions", "32"), "the partition count is fixed when the cluster is created"),
        (("colour", "blue"), "'colour' is not one of 'write-level', 'read-level', 'retention-seconds'"),
    ]:
        refused = kvctl_config(cluster, "set", *args)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    assert kvctl_config(cluster, "show", "--json").stdout == before


def test_a_restarted_node_compacts_the_history_past_the_retention_window(cluster):
    r = proxy_client(cluster)
    for i in range(20):
        r.set("rewritten", i)
    assert kvctl_config(cluster, "set", "retention-seconds", "1").returncode == 0
    time.sleep(12)  # past the window and the ten seconds the cutoff trails it by (kvnode/compaction.py)
    # A node walks every partition it holds once it starts: they may hold versions of any age.
    node = cluster.node_ids[0]
    cluster.kill(node)
    cluster.start(node)
    deadline = time.monotonic() + 30
    while True:
        info = node_client(cluster, node).info()
        if info["kv_history_records_removed"] >= 19 and not info["kv_history_compaction_behind"]:
            break
        assert time.monotonic() < deadline, f"the history was not compacted: {info}"
        time.sleep(0.2)
    assert info["kv_history_records_read"] >= 20
    assert r.get("rewritten") == b"19"
