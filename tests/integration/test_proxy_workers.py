"""A proxy with several worker processes sharing its port (SO_REUSEPORT)."""

import os
import signal
import socket
import subprocess
import time

import pytest
import redis

from kvmeta.local import server_command, server_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_proxy(cluster, port: int, workers: int, proxy_id: str = "wproxy") -> subprocess.Popen:
    argv = [*server_command("proxy"), "--zk", cluster.zk_address, "--cluster", cluster.name, "--id", proxy_id,
            "--port", str(port), "--workers", str(workers)]
    return subprocess.Popen(argv, env=server_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for_pids(port: int, wanted: int, timeout: float = 20.0) -> set[int]:
    """The process ids of the workers answering on port, once wanted of them have answered."""
    pids: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(pids) < wanted:
        try:
            with redis.Redis(host="127.0.0.1", port=port, socket_timeout=2) as r:
                pids.add(r.info("server")["process_id"])
        except redis.ConnectionError:
            time.sleep(0.1)
    return pids


def port_is_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_workers_share_the_port_serve_the_same_data_and_stop_together(make_cluster):
    cluster = make_cluster(nodes=3, partitions=4)
    port = free_port()
    proxy = start_proxy(cluster, port, workers=2)
    try:
        pids = wait_for_pids(port, 2)
        assert len(pids) == 2 and proxy.pid in pids, f"connections reached the workers {pids}"
        # What one worker writes, every worker reads: they are proxies of one cluster.
        clients = [redis.Redis(host="127.0.0.1", port=port) for _ in range(20)]
        for i, client in enumerate(clients):
            client.set(f"w:{i}", i)
        # Each client reads the key written by the client at the mirrored position.
        assert [int(c.get(f"w:{19 - i}")) for i, c in enumerate(clients)] == [19 - i for i in range(20)]
        for client in clients:
            client.close()
        proxy.send_signal(signal.SIGTERM)
        assert proxy.wait(timeout=15) == 0
        deadline = time.monotonic() + 10
        while not port_is_closed(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert port_is_closed(port), "a worker outlived the proxy that started it"
    finally:
        if proxy.poll() is None:
            proxy.kill()


def test_workers_end_when_the_first_is_killed(make_cluster):
    cluster = make_cluster(nodes=1, partitions=2, replication_factor=1)
    port = free_port()
    proxy = start_proxy(cluster, port, workers=3)
    try:
        pids = wait_for_pids(port, 3)
        assert len(pids) == 3
        proxy.kill()
        proxy.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids - {proxy.pid}):
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in pids - {proxy.pid})
    finally:
        if proxy.poll() is None:
            proxy.kill()


def test_workers_refuse_a_port_in_use(make_cluster):
    cluster = make_cluster(nodes=1, partitions=2, replication_factor=1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proxy = start_proxy(cluster, taken.getsockname()[1], workers=2)
        _, err = proxy.communicate(timeout=20)
    assert proxy.returncode != 0
    assert b"address already in use; pick another --port" in err


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child of the killed proxy is reparented and reaped by init; until then it may linger as a zombie.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
