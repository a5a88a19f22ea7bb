"""pytest fixtures that run real ZooKeeper servers and local clusters.

- ``zookeeper`` (session): one ZooKeeper server on a free port, shared by the whole run. Tests keep
  apart by using their own cluster name; a test that stops, restarts or pauses ZooKeeper must use a
  server of its own (``ZooKeeperServer``, or ``make_cluster(own_zookeeper=True)``).
- ``zk_client``: a connected kazoo client of that server, closed after the test.
- ``cluster_name``: a cluster name no other test uses.
- ``make_cluster(nodes=3, partitions=8, replication_factor=3, proxies=1, **options)``: starts a
  ``LocalCluster`` in the test's tmp_path on the shared ZooKeeper, waits until it serves, and stops
  it after the test whatever happens. Further options go to ``LocalCluster`` (``write_level``,
  ``controllers`` ...), plus ``own_zookeeper=True`` and ``timeout``.

When a test fails, the end of the ZooKeeper log and of every log of its clusters is added to its report.
Without ZooKeeper installed the tests that need it are skipped, saying how to install it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator

import pytest
from kazoo.client import KazooClient

from kvcommon.zkserver import ZooKeeperNotInstalled, ZooKeeperServer, find_zookeeper
from kvmeta.local import LocalCluster

__all__ = ["cluster_name", "make_cluster", "pytest_runtest_makereport", "zk_client", "zookeeper"]

REPORT_LOG_LINES = 40
ZK_CLIENT_SESSION_TIMEOUT = 5.0

_zookeeper_key = pytest.StashKey[ZooKeeperServer]()
_clusters_key = pytest.StashKey[list[LocalCluster]]()


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[ZooKeeperServer]:
    """A ZooKeeper server for the whole test run."""
    try:
        find_zookeeper()
    except ZooKeeperNotInstalled as exc:
        pytest.skip(str(exc))
    server = ZooKeeperServer(tmp_path_factory.mktemp("zookeeper"))
    pytestconfig.stash[_zookeeper_key] = server
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def zk_client(zookeeper: ZooKeeperServer) -> Iterator[KazooClient]:
    client = KazooClient(hosts=zookeeper.address, timeout=ZK_CLIENT_SESSION_TIMEOUT)
    client.start(timeout=15)
    try:
        yield client
    finally:
        client.stop()
        client.close()


@pytest.fixture
def cluster_name(request: pytest.FixtureRequest) -> str:
    """A cluster name unique to this test, recognisable in ZooKeeper and in logs."""
    readable = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")[:40]
    return f"{readable or 'test'}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_cluster(
    request: pytest.FixtureRequest, tmp_path, cluster_name: str, zookeeper: ZooKeeperServer
) -> Iterator[Callable[..., LocalCluster]]:
    clusters: list[LocalCluster] = []
    request.node.stash[_clusters_key] = clusters

    def make(
        nodes: int = 3,
        partitions: int = 8,
        replication_factor: int = 3,
        proxies: int = 1,
        *,
        own_zookeeper: bool = False,
        timeout: float = 60.0,
        **options,
    ) -> LocalCluster:
        index = len(clusters) + 1
        options.setdefault("proxy_port", 0)
        cluster = LocalCluster(
            tmp_path / f"cluster{index}",
            nodes=nodes,
            partitions=partitions,
            replication_factor=replication_factor,
            proxies=proxies,
            cluster=cluster_name if index == 1 else f"{cluster_name}-{index}",
            zk=None if own_zookeeper else zookeeper.address,
            **options,
        )
        # Registered before `up` so that a cluster which fails to start is still stopped and reported.
        clusters.append(cluster)
        cluster.up(timeout=timeout)
        return cluster

    yield make
    failures = []
    for cluster in reversed(clusters):
        try:
            cluster.down()
        except Exception as exc:
            failures.append(exc)
    if failures:
        raise failures[0]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed:
        report.sections.extend(_log_sections(item))
    return report


def _log_sections(item: pytest.Item) -> list[tuple[str, str]]:
    sections = []
    server = item.config.stash.get(_zookeeper_key, None)
    if server is not None and "zookeeper" in getattr(item, "fixturenames", ()):
        sections.append((f"zookeeper log ({server.log_path})", server.log_tail(REPORT_LOG_LINES)))
    for cluster in item.stash.get(_clusters_key, []):
        for title, text in cluster.log_tails(REPORT_LOG_LINES):
            sections.append((f"{cluster.dir.name} {title}", text or "(empty)"))
    return sections
