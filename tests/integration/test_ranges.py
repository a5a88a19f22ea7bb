"""Ordered ranges, versions and reads as of a version, against a real cluster (docs/ranges.md)."""

import dataclasses
import threading
import time

import pytest
import redis

from kvcommon.hashing import partition_for
from kvcommon.testing.cluster_checks import proxy_client, wait_until_refused
from kvmeta import zk
from kvmeta.schema import ClusterConfig, ClusterPaths

PARTITIONS = 8


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, zookeeper):
    from kvmeta.local import LocalCluster

    local = LocalCluster(tmp_path_factory.mktemp("ranges"), nodes=3, partitions=PARTITIONS, cluster="ranges",
                         zk=zookeeper.address, proxy_port=0)
    local.up()
    yield local
    local.down()


@pytest.fixture
def r(cluster):
    return proxy_client(cluster, protocol=2)


def kv_range(r, start, end, *options):
    """One page: (next cursor, [(key, value), ...]), or keys with KEYSONLY."""
    cursor, flat = r.execute_command("KV.RANGE", start, end, *options)
    if "KEYSONLY" in options:
        return cursor, flat
    return cursor, list(zip(flat[::2], flat[1::2], strict=True))


def scan_all(r, start, end, *options):
    """Every page of a scan: the items in the order received, and the number of pages."""
    found, pages, cursor = [], 0, None
    while True:
        extra = ("CURSOR", cursor) if cursor else ()
        cursor, items = kv_range(r, start, end, *options, *extra)
        found += items
        pages += 1
        if not cursor:
            return found, pages


def test_a_range_covers_every_partition_in_key_order(r):
    data = {b"span:%03d" % i: b"v%d" % i for i in range(200)}
    assert {partition_for(k, PARTITIONS) for k in data} == set(range(PARTITIONS))
    r.mset(data)
    assert kv_range(r, "span:", "span;", "LIMIT", "1000") == (b"", sorted(data.items()))
    assert kv_range(r, "span:050", "span:100", "LIMIT", "1000") == (
        b"", [(k, data[k]) for k in sorted(data) if b"span:050" <= k < b"span:100"])
    assert kv_range(r, "span:", "span;", "LIMIT", "5", "DESC")[1] == sorted(data.items(), reverse=True)[:5]
    assert kv_range(r, "span:", "span:003", "KEYSONLY") == (b"", [b"span:000", b"span:001", b"span:002"])
    found, pages = scan_all(r, "span:", "span;", "LIMIT", "7", "DESC")
    assert found == sorted(data.items(), reverse=True) and pages == 29


def test_empty_ranges(r):
    r.set("empty:a", "x")
    assert kv_range(r, "empty:a", "empty:a") == (b"", [])
    assert kv_range(r, "empty:b", "empty:a") == (b"", [])
    assert kv_range(r, "nothing:", "nothing;", "LIMIT", "10") == (b"", [])
    assert kv_range(r, "nothing:", "nothing;", "DESC", "KEYSONLY") == (b"", [])


def test_binary_keys_sort_in_byte_order(r):
    keys = [b"\x01bin", b"\x01bin\x00", b"\x01bin\x00\x00", b"\x01bin\x00\x01", b"\x01bin\x01", b"\x01bin\xff",
            b"\x01bin\xff\x00", b"\x01bin\xff\xff", b"\x01bio"]
    r.mset({k: k[::-1] for k in keys})
    assert kv_range(r, b"\x01bin", b"\x01bip", "KEYSONLY") == (b"", keys)
    assert kv_range(r, b"\x01bin\x00", b"\x01bin\xff", "KEYSONLY", "DESC") == (b"", keys[4:0:-1])
    found, _ = scan_all(r, b"\x01", b"\x02", "LIMIT", "2")
    assert found == [(k, k[::-1]) for k in keys]
    # An empty end has no upper bound.
    assert kv_range(r, b"\x01bin\xff\xff", b"", "KEYSONLY", "LIMIT", "2")[1][0] == b"\x01bin\xff\xff"


def test_paging_through_100_000_keys_returns_each_once_and_in_order(r):
    total = 100_000
    pipe = r.pipeline(transaction=False)
    for first in range(0, total, 1000):
        pipe.mset({b"page:%06d" % i: b"%d" % i for i in range(first, first + 1000)})
    pipe.execute()
    started = time.monotonic()
    found, pages = scan_all(r, "page:", "page;", "LIMIT", "1000", "KEYSONLY")
    elapsed = time.monotonic() - started
    assert found == [b"page:%06d" % i for i in range(total)]
    assert pages == 100
    assert elapsed < 30, f"paging took {elapsed:.1f}s"
    tail, pages = scan_all(r, "page:099990", "page;", "LIMIT", "3", "DESC")
    assert [k for k, _ in tail] == [b"page:%06d" % i for i in range(total - 1, 99_989, -1)] and pages == 4


def test_snapshot_reads_stay_unchanged_while_writes_go_on(r):
    r.mset({b"snap:%02d" % i: b"old%d" % i for i in range(40)})
    version = r.execute_command("KV.SNAPSHOT")
    before = kv_range(r, "snap:", "snap;", "LIMIT", "100", "ASOF", version)
    cursor, first_page = kv_range(r, "snap:", "snap;", "LIMIT", "10")
    value, written_at = r.execute_command("KV.GETVERSION", "snap:05")
    assert value == b"old5" and written_at <= version
    for round_ in range(3):
        r.mset({b"snap:%02d" % i: b"new%d.%d" % (i, round_) for i in range(0, 40, 3)})
        r.delete(*(b"snap:%02d" % i for i in range(1, 40, 7)))
        r.set(b"snap:%02d+" % round_, "added")
        assert kv_range(r, "snap:", "snap;", "LIMIT", "100", "ASOF", version) == before
    assert r.execute_command("KV.GETASOF", "snap:00", version) == b"old0"
    assert r.execute_command("KV.GETASOF", "snap:01", version) == b"old1"
    assert r.get("snap:01") is None and r.get("snap:00") == b"new0.2"
    assert r.execute_command("KV.GETASOF", "snap:00", r.execute_command("KV.SNAPSHOT")) == b"new0.2"
    assert r.execute_command("KV.GETVERSION", "snap:01") is None
    # The pages of one scan all read at the version its first page chose.
    rest = []
    while cursor:
        cursor, items = kv_range(r, "snap:", "snap;", "LIMIT", "10", "CURSOR", cursor)
        rest += items
    assert first_page + rest == [(k, v) for k, v in sorted({b"snap:%02d" % i: b"old%d" % i for i in range(40)}.items())]
    now = kv_range(r, "snap:", "snap;", "LIMIT", "100")[1]
    assert (b"snap:00+", b"added") in now and len(now) == 40 - 6 + 3


def test_a_paged_snapshot_scan_is_unaffected_by_concurrent_writers(cluster, r):
    r.mset({b"busy:%04d" % i: b"0" for i in range(0, 2000, 2)})
    version = r.execute_command("KV.SNAPSHOT")
    stop = threading.Event()
    written = []

    def writer():
        w = proxy_client(cluster, protocol=2)
        n = 0
        while not stop.is_set():
            n += 1
            w.mset({b"busy:%04d" % ((n * 7 + j) % 2000): b"%d" % n for j in range(20)})
            w.delete(b"busy:%04d" % ((n * 13) % 2000))
            written.append(n)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        found, pages = scan_all(r, "busy:", "busy;", "LIMIT", "50", "ASOF", version)
    finally:
        stop.set()
        thread.join()
    assert written, "the writer wrote nothing during the scan"
    assert found == [(b"busy:%04d" % i, b"0") for i in range(0, 2000, 2)] and pages == 20


def test_expired_keys_are_absent_from_ranges(r):
    r.set("ttl:keep", "k")
    r.set("ttl:gone", "g", px=300)
    before = r.execute_command("KV.SNAPSHOT")
    assert kv_range(r, "ttl:", "ttl;", "KEYSONLY") == (b"", [b"ttl:gone", b"ttl:keep"])
    time.sleep(0.4)
    assert kv_range(r, "ttl:", "ttl;", "KEYSONLY") == (b"", [b"ttl:keep"])
    # As of a version before the expiry, the key was there.
    assert kv_range(r, "ttl:", "ttl;", "KEYSONLY", "ASOF", before) == (b"", [b"ttl:gone", b"ttl:keep"])


def test_versions_ahead_of_the_clock_and_malformed_requests_are_refused(r):
    ahead = (time.time_ns() // 1_000_000 + 60_000) << 16
    with pytest.raises(redis.ResponseError, match="ahead of this node's clock"):
        r.execute_command("KV.GETASOF", "x", ahead)
    with pytest.raises(redis.ResponseError, match="ahead of this node's clock"):
        kv_range(r, "a", "b", "ASOF", ahead)
    with pytest.raises(redis.ResponseError, match="invalid version"):
        r.execute_command("KV.GETASOF", "x", "soon")
    with pytest.raises(redis.ResponseError, match="invalid KV.RANGE cursor"):
        kv_range(r, "a", "b", "CURSOR", "nonsense")


def test_reads_older_than_the_retention_window_are_refused(cluster, r):
    r.set("old:k", "v")
    version = r.execute_command("KV.SNAPSHOT")
    client = zk.connect(cluster.zk_address)
    paths = ClusterPaths(cluster.name)
    config = zk.read_config(client, paths)
    try:
        client.set(paths.config, dataclasses.replace(config, retention_seconds=1).encode())
        wait_until_refused(r, ("KV.GETASOF", "old:k", version), "older than the retention window (1 s)")
        with pytest.raises(redis.ResponseError, match="older than the retention window"):
            kv_range(r, "old:", "old;", "ASOF", version)
        # A fresh snapshot reads fine.
        assert r.execute_command("KV.GETASOF", "old:k", r.execute_command("KV.SNAPSHOT")) == b"v"
    finally:
        client.set(paths.config, ClusterConfig.encode(config))
        client.stop()
        client.close()
