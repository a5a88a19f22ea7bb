import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kvcommon.zkserver import pick_free_port, port_is_free
from kvmeta import local
from kvmeta.local import (
    CLUSTER_FILE,
    ClusterFile,
    LocalCluster,
    LocalClusterError,
    ProcessDiedError,
    ProcessSpec,
    cluster_from_dir,
    process_is_alive,
    process_start_ticks,
    redis_ping,
    server_command,
)

EXTERNAL_ZK = "127.0.0.1:2181"


def sample_file() -> ClusterFile:
    return ClusterFile(
        cluster="demo",
        zk="127.0.0.1:2181",
        zk_managed=False,
        partitions=16,
        replication_factor=3,
        write_level="quorum",
        processes=[
            ProcessSpec(
                role="node",
                id="node1",
                host="127.0.0.1",
                port=7001,
                argv=["kvnode", "--id", "node1"],
                log="/tmp/demo/logs/node1.log",
                pid=1234,
                start_ticks=99,
                data_dir="/tmp/demo/node1",
                env={"PYTHONUNBUFFERED": "1"},
            ),
            ProcessSpec(
                role="proxy",
                id="proxy1",
                host="127.0.0.1",
                port=6380,
                argv=["kvproxy"],
                log="/tmp/demo/logs/proxy1.log",
                fixed_port=True,
            ),
        ],
    )


# -- cluster.json


def test_cluster_file_round_trips_through_json(tmp_path):
    original = sample_file()
    assert ClusterFile.from_json(original.to_json()) == original

    path = tmp_path / CLUSTER_FILE
    original.write(path)
    assert ClusterFile.read(path) == original
    assert [p.name for p in tmp_path.iterdir()] == [CLUSTER_FILE]  # no temporary file left behind
    assert json.loads(path.read_text())["processes"][0]["argv"] == ["kvnode", "--id", "node1"]


def test_cluster_file_lookups():
    state = sample_file()
    assert state.get("proxy1").port == 6380
    assert state.get("nope") is None
    assert [p.id for p in state.by_role("node")] == ["node1"]
    assert state.ports() == {7001, 6380}
    assert state.get("node1").address == "127.0.0.1:7001"


def test_cluster_file_ignores_unknown_fields_and_refuses_newer_formats():
    raw = json.loads(sample_file().to_json())
    raw["added_later"] = True
    raw["processes"][0]["added_later"] = 1
    assert ClusterFile.from_json(json.dumps(raw)) == sample_file()

    raw["format"] = 99
    with pytest.raises(LocalClusterError, match="newer"):
        ClusterFile.from_json(json.dumps(raw))


def test_an_invalid_cluster_file_is_reported(tmp_path):
    (tmp_path / CLUSTER_FILE).write_text("{not json")
    with pytest.raises(LocalClusterError, match="not a valid cluster file"):
        ClusterFile.read(tmp_path / CLUSTER_FILE)


def test_cluster_from_dir(tmp_path):
    sample_file().write(tmp_path / CLUSTER_FILE)
    assert cluster_from_dir(tmp_path) == ("127.0.0.1:2181", "demo")
    with pytest.raises(LocalClusterError, match="kvctl local up"):
        cluster_from_dir(tmp_path / "elsewhere")


# -- ports


def test_pick_free_port_gives_a_bindable_port_not_excluded():
    port = pick_free_port()
    assert 0 < port < 65536
    assert port_is_free("127.0.0.1", port)
    assert pick_free_port(exclude={port}) != port


def test_port_is_free_is_false_while_someone_listens():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert not port_is_free("127.0.0.1", listener.getsockname()[1])


# -- planning a cluster without starting it


def test_prepare_plans_every_process_with_distinct_ports(tmp_path):
    cluster = LocalCluster(tmp_path, nodes=3, partitions=8, zk=EXTERNAL_ZK, proxy_port=0, cluster="c1")
    state = cluster.prepare()

    assert [p.id for p in state.processes] == ["node1", "node2", "node3", "meta1", "proxy1"]
    assert not state.zk_managed and state.zk == EXTERNAL_ZK
    ports = [p.port for p in state.processes if p.port]
    assert len(ports) == len(set(ports)) == 4
    assert all(p.pid is None for p in state.processes)
    assert ClusterFile.read(tmp_path / CLUSTER_FILE) == state

    node = state.get("node2")
    assert node.argv[-12:] == [
        "--zk", EXTERNAL_ZK, "--cluster", "c1", "--id", "node2",
        "--host", "127.0.0.1", "--port", str(node.port), "--data-dir", str(tmp_path.resolve() / "node2"),
    ]  # fmt: skip
    assert state.get("meta1").argv[-6:] == ["--zk", EXTERNAL_ZK, "--cluster", "c1", "--id", "meta1"]
    assert state.get("proxy1").argv[-4:] == ["--host", "127.0.0.1", "--port", str(state.get("proxy1").port)]
    assert node.log == str(tmp_path.resolve() / "logs" / "node2.log")
    assert node.env["PYTHONPATH"].split(os.pathsep)[0] == str(local.PROJECT_ROOT)


def test_the_given_proxy_port_is_kept(tmp_path):
    port = pick_free_port()
    state = LocalCluster(tmp_path, zk=EXTERNAL_ZK, proxy_port=port, proxies=2).prepare()
    first, second = state.by_role("proxy")
    assert (first.port, first.fixed_port) == (port, True)
    assert second.port != port and not second.fixed_port


def test_a_recorded_cluster_refuses_contradicting_options_but_may_grow(tmp_path):
    LocalCluster(tmp_path, nodes=3, partitions=8, zk=EXTERNAL_ZK, proxy_port=0).prepare()

    with pytest.raises(LocalClusterError, match="--partitions 8"):
        LocalCluster(tmp_path, partitions=16)
    with pytest.raises(LocalClusterError, match="does not remove nodes"):
        LocalCluster(tmp_path, nodes=2)
    with pytest.raises(LocalClusterError, match="ZooKeeper"):
        LocalCluster(tmp_path, zk="127.0.0.1:1")

    grown = LocalCluster(tmp_path, nodes=4).prepare()
    assert [p.id for p in grown.by_role("node")] == ["node1", "node2", "node3", "node4"]
    assert LocalCluster(tmp_path).node_ids == ["node1", "node2", "node3", "node4"]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"nodes": 2, "replication_factor": 3}, "at least 3 nodes"),
        ({"partitions": 0}, "partition count"),
        ({"write_level": "most"}, "write level"),
        ({"cluster": "a/b"}, "invalid cluster name"),
    ],
)
def test_invalid_options_are_refused_up_front(tmp_path, options, message):
    with pytest.raises(LocalClusterError, match=message):
        LocalCluster(tmp_path, zk=EXTERNAL_ZK, **options)


def test_server_command_prefers_an_installed_console_script(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    command = server_command("node")
    assert command[:2] == [str(tmp_path / "python"), "-c"]
    assert "from kvnode.main import main" in command[2]

    script = tmp_path / "kvnode"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert server_command("node") == [str(script)]


# -- processes: start, stop, kill, pause, reload


def sleeper_cluster(directory: Path, *extra: ProcessSpec) -> LocalCluster:
    """A cluster file whose 'controller' just sleeps: process management without real servers."""
    directory.mkdir(parents=True, exist_ok=True)
    state = ClusterFile(
        cluster="t",
        zk=EXTERNAL_ZK,
        zk_managed=False,
        partitions=1,
        replication_factor=1,
        write_level="1",
        processes=[
            ProcessSpec(
                role="controller",
                id="meta1",
                host="127.0.0.1",
                port=None,
                argv=[sys.executable, "-c", "import time; time.sleep(120)"],
                log=str(directory / "logs" / "meta1.log"),
            ),
            *extra,
        ],
    )
    state.write(directory / CLUSTER_FILE)
    return LocalCluster.load(directory)


def is_zombie_or_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def test_start_and_stop_record_the_pid_and_leave_no_zombie(tmp_path):
    cluster = sleeper_cluster(tmp_path)
    spec = cluster.start("meta1")
    pid = spec.pid
    assert cluster.is_running("meta1")
    assert ClusterFile.read(tmp_path / CLUSTER_FILE).get("meta1").pid == pid
    assert process_start_ticks(pid) == spec.start_ticks or spec.start_ticks is None
    assert os.getpgid(pid) == pid  # detached into its own session

    cluster.stop("meta1")
    assert not cluster.is_running("meta1")
    assert ClusterFile.read(tmp_path / CLUSTER_FILE).get("meta1").pid is None
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped
    assert "starting meta1" in cluster.log_tail("meta1")


def test_kill_and_start_again(tmp_path):
    cluster = sleeper_cluster(tmp_path)
    first = cluster.start("meta1").pid
    cluster.stop("meta1", kill=True)
    assert not cluster.is_running("meta1")
    second = cluster.start("meta1").pid
    assert second != first and cluster.is_running("meta1")
    cluster.down()


def test_a_paused_process_still_stops(tmp_path):
    cluster = sleeper_cluster(tmp_path)
    cluster.start("meta1")
    cluster.pause("meta1")
    cluster.resume("meta1")
    cluster.pause("meta1")
    cluster.stop("meta1", grace=5)
    assert not cluster.is_running("meta1")
    with pytest.raises(LocalClusterError, match="not running"):
        cluster.pause("meta1")


def test_a_reloaded_cluster_manages_processes_it_did_not_start(tmp_path):
    first = sleeper_cluster(tmp_path)
    pid = first.start("meta1").pid

    again = LocalCluster.load(tmp_path)
    assert again.is_running("meta1")
    assert again.down() == ["meta1"]
    assert is_zombie_or_gone(pid) or not process_is_alive(pid)
    assert not first.is_running("meta1")
    assert again.down() == []  # idempotent


def test_down_without_a_cluster_does_nothing(tmp_path):
    assert LocalCluster(tmp_path, zk=EXTERNAL_ZK).down() == []


def test_a_process_that_dies_at_start_is_reported_with_its_log(tmp_path):
    failing = ProcessSpec(
        role="proxy",
        id="proxy1",
        host="127.0.0.1",
        port=pick_free_port(),
        argv=[sys.executable, "-c", "import sys; sys.exit('port 6380 is in use')"],
        log=str(tmp_path / "logs" / "proxy1.log"),
    )
    cluster = sleeper_cluster(tmp_path, failing)
    with pytest.raises(ProcessDiedError) as caught:
        cluster.start("proxy1", timeout=10)
    assert caught.value.returncode == 1
    assert "proxy1 (proxy) exited with code 1" in str(caught.value)
    assert "port 6380 is in use" in str(caught.value)


def test_unknown_process_ids_are_reported(tmp_path):
    cluster = sleeper_cluster(tmp_path)
    with pytest.raises(LocalClusterError, match="it has meta1"):
        cluster.stop("node9")


def test_process_is_alive_tells_a_reused_pid_and_reaps_zombies():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ticks = process_start_ticks(child.pid)
        assert process_is_alive(child.pid, ticks)
        if ticks is not None:
            assert not process_is_alive(child.pid, ticks + 1)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while process_is_alive(child.pid, ticks):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with pytest.raises(ChildProcessError):
            os.waitpid(child.pid, os.WNOHANG)
    finally:
        child.kill()
        child.wait()


def test_a_child_that_dies_between_the_looks_is_still_reaped(monkeypatch):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # The first look (waitpid) saw it running; by the look at /proc it had died.
        real_waitpid, looks = os.waitpid, []

        def first_look_sees_it_running(pid, options):
            looks.append(pid)
            return (0, 0) if len(looks) == 1 else real_waitpid(pid, options)

        monkeypatch.setattr(os, "waitpid", first_look_sees_it_running)
        assert not process_is_alive(child.pid)
        monkeypatch.undo()
        with pytest.raises(ChildProcessError):
            os.waitpid(child.pid, os.WNOHANG)
    finally:
        child.kill()
        child.wait()


# -- readiness probes


def test_redis_ping():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def answer_once():
            conn, _ = listener.accept()
            with conn:
                conn.recv(64)
                conn.sendall(b"+PONG\r\n")

        thread = threading.Thread(target=answer_once)
        thread.start()
        assert redis_ping("127.0.0.1", port)
        thread.join()
    assert not redis_ping("127.0.0.1", port, timeout=0.5)
