"""Bad input gets a Redis-style error, the proxy keeps serving, and nothing written is lost."""

import socket
import time

import pytest

from kvcommon.testing.cluster_checks import proxy_client


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory, zookeeper):
    from kvmeta.local import LocalCluster

    local = LocalCluster(tmp_path_factory.mktemp("bad-input"), nodes=3, partitions=4, cluster="bad-input",
                         zk=zookeeper.address, proxy_port=0)
    local.up()
    yield local
    local.down()


def talk(cluster, data: bytes, expect_close: bool = False, timeout: float = 5.0) -> bytes:
    """Send raw bytes to the proxy; return what it answered (until it closes or goes quiet)."""
    host, port = cluster.proxy_addresses[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        deadline = time.monotonic() + timeout
        sock.settimeout(0.5 if not expect_close else timeout)
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if not expect_close:
                    break
                continue
            if not chunk:
                break
            received += chunk
        return received


def send_and_vanish(cluster, data: bytes) -> None:
    """Send a command and close the connection at once, without reading the reply."""
    host, port = cluster.proxy_addresses[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)


def test_unknown_command_is_a_redis_error_and_the_connection_serves_on(cluster):
    reply = talk(cluster, b"*2\r\n$7\r\nFOOBARZ\r\n$1\r\na\r\n*1\r\n$4\r\nPING\r\n")
    assert reply == b"-ERR unknown command 'FOOBARZ', with args beginning with: 'a' \r\n+PONG\r\n"


def test_wrong_arity_is_reported_like_redis(cluster):
    reply = talk(cluster, b"*1\r\n$3\r\nGET\r\n*3\r\n$3\r\nGET\r\n$1\r\na\r\n$1\r\nb\r\n")
    assert reply == b"-ERR wrong number of arguments for 'get' command\r\n" * 2


def test_inline_commands_work_as_with_telnet(cluster):
    reply = talk(cluster, b'SET inline "a b"\r\nGET inline\r\nPING\r\n')
    assert reply == b"+OK\r\n$3\r\na b\r\n+PONG\r\n"


@pytest.mark.parametrize("frame,error", [
    (b"*2\r\n$3\r\nGET\r\n!1\r\na\r\n", b"-ERR Protocol error: expected '$', got '!'\r\n"),
    (b"*x\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
    (b"*1\r\n$-5\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    (b'GET "unbalanced\r\n', b"-ERR Protocol error: unbalanced quotes in request\r\n"),
])
def test_a_broken_frame_is_answered_then_the_connection_closed(cluster, frame, error):
    assert talk(cluster, b"PING\r\n" + frame, expect_close=True) == b"+PONG\r\n" + error


def test_a_bulk_over_the_limit_is_refused_without_reading_it(cluster):
    # The proxy's limit is 64 MiB by default; a client announcing more is refused at the header.
    reply = talk(cluster, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % (65 * 1024 * 1024), expect_close=True)
    assert reply == b"-ERR Protocol error: invalid bulk length\r\n"


def test_large_values_up_to_the_limit_round_trip(cluster):
    r = proxy_client(cluster)
    value = bytes(range(256)) * 4096 * 4  # 4 MiB
    r.set("large", value)
    assert r.get("large") == value


def test_a_client_that_disconnects_mid_command_loses_nothing_written(cluster):
    r = proxy_client(cluster)
    r.set("kept", "before")
    # Half a command, then gone; and a complete write followed at once by a disconnect.
    talk(cluster, b"*3\r\n$3\r\nSET\r\n$4\r\nkept\r\n$100\r\nonly part of the value")
    send_and_vanish(cluster, b"*3\r\n$3\r\nSET\r\n$4\r\nlast\r\n$5\r\nwrite\r\n")
    assert r.get("kept") == b"before"
    deadline = time.monotonic() + 5
    while r.get("last") != b"write" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert r.get("last") == b"write", "a complete command runs even if its client has gone"
    assert r.ping()


def test_select_other_databases_is_refused_like_redis_cluster(cluster):
    assert talk(cluster, b"SELECT 0\r\nSELECT 1\r\n") == b"+OK\r\n-ERR DB index is out of range\r\n"


def test_hello_negotiates_resp3_and_refuses_unknown_versions(cluster):
    reply = talk(cluster, b"HELLO 4\r\nHELLO 3\r\nGET nothing\r\n")
    assert reply.startswith(b"-NOPROTO unsupported protocol version\r\n%7\r\n")
    assert reply.endswith(b"_\r\n")
