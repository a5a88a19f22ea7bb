import socket

import pytest
from kazoo.client import KazooClient

from kvcommon import zkserver
from kvcommon.zkserver import (
    ZooKeeperNotInstalled,
    ZooKeeperServer,
    find_zookeeper,
    four_letter_word,
    is_serving,
)


@pytest.fixture
def server(tmp_path):
    try:
        find_zookeeper()
    except ZooKeeperNotInstalled as exc:
        pytest.skip(str(exc))
    server = ZooKeeperServer(tmp_path / "zk")
    yield server
    server.stop()


def connect(address: str, timeout: float = 4.0) -> KazooClient:
    client = KazooClient(hosts=address, timeout=timeout)
    client.start(timeout=15)
    return client


def test_start_serves_clients_and_stop_ends_the_process(server):
    server.start()
    assert server.running
    assert server.address == f"127.0.0.1:{server.port}"
    assert server.argv[-1] == str(server.config_path)
    assert four_letter_word(server.host, server.port, "ruok") == "imok"

    client = connect(server.address)
    try:
        client.create("/greeting", b"hello")
        assert client.get("/greeting")[0] == b"hello"
    finally:
        client.stop()
        client.close()

    server.stop()
    assert not server.running
    assert not is_serving(server.host, server.port, timeout=0.5)
    with pytest.raises(OSError), socket.create_connection((server.host, server.port), timeout=1):
        pass
    assert server.log_path.exists()
    assert "ZooKeeper" in server.log_path.read_text()


def test_restart_keeps_data_and_port(server):
    server.start()
    port, first_pid = server.port, server.pid
    client = connect(server.address)
    try:
        client.create("/kept/across/restart", b"1", makepath=True)
    finally:
        client.stop()
        client.close()

    server.restart()
    assert server.port == port
    assert server.pid != first_pid

    client = connect(server.address)
    try:
        assert client.get("/kept/across/restart")[0] == b"1"
    finally:
        client.stop()
        client.close()


def test_session_timeouts_of_a_few_seconds_are_allowed(server):
    server.start()
    assert server.min_session_timeout_ms <= 2000
    assert server.max_session_timeout_ms >= 4000
    config = server.config_path.read_text()
    assert f"minSessionTimeout={server.min_session_timeout_ms}\n" in config
    client = connect(server.address, timeout=2.0)
    try:
        # The timeout the server granted: nothing larger than what the client asked for.
        assert client._session_timeout == 2000
    finally:
        client.stop()
        client.close()


def test_pause_stops_answering_until_resumed(server):
    server.start()
    server.pause()
    try:
        assert not is_serving(server.host, server.port, timeout=0.5)
    finally:
        server.resume()
    assert is_serving(server.host, server.port)


def test_stop_of_a_paused_server_and_a_second_stop_are_fine(server):
    server.start()
    server.pause()
    server.stop(grace=5)
    assert not server.running
    server.stop()
    server.kill()


def test_kill_then_start_again(server):
    server.start()
    server.kill()
    assert not server.running
    server.start()
    assert is_serving(server.host, server.port)


def test_shared_fixtures_give_a_connected_client(zookeeper, zk_client, cluster_name):
    assert zookeeper.running
    path = f"/kv/{cluster_name}/probe"
    zk_client.create(path, b"x", makepath=True)
    assert zk_client.exists(path)


def test_a_missing_install_says_how_to_fix_it(monkeypatch, tmp_path):
    monkeypatch.delenv("ZOOKEEPER_HOME", raising=False)
    monkeypatch.setattr(zkserver, "SYSTEM_JAR_DIR", tmp_path)
    with pytest.raises(ZooKeeperNotInstalled, match="make setup.*apt-get install zookeeper"):
        find_zookeeper()


def test_missing_java_says_how_to_fix_it(monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ZooKeeperNotInstalled, match="java"):
        find_zookeeper()


def test_a_failing_test_reports_the_end_of_the_zookeeper_log(pytester, zookeeper):
    pytester.makeconftest('pytest_plugins = ["kvcommon.testing.harness"]')
    pytester.makepyfile(
        """
        def test_fails(zk_client):
            assert zk_client.exists("/zookeeper")
            assert False, "on purpose"

        def test_passes(zk_client):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*- zookeeper log (*zookeeper.log) -*", "*binding to port*"])
