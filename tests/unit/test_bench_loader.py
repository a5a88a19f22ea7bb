"""The bench's bulk loader against a scripted RESP server on a real socket: retryable errors are sent again."""

import contextlib
import socket
import threading
import time

import pytest

from kvcommon.resp import RequestParser
from kvmeta.bench.client import LOAD_ATTEMPTS, BenchClientError, load_keys


class ScriptedServer:
    """Answers each MSET with the next scripted error, then +OK; remembers the keys of the MSETs it took."""

    def __init__(self, errors):
        self.errors = list(errors)
        self.keys = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        parser = RequestParser()
        with conn, contextlib.suppress(OSError):  # the loader closes its connections when it gives up
            while data := conn.recv(65536):
                parser.feed(data)
                while (command := parser.next_command()) is not None:
                    with self.lock:
                        error = self.errors.pop(0) if self.errors else None
                        if error is None:
                            self.keys += command[1::2]
                    conn.sendall(b"-%s\r\n" % error if error else b"+OK\r\n")

    def close(self):
        self.listener.close()


@pytest.fixture
def server(request):
    server = ScriptedServer(request.param)
    yield server
    server.close()


@pytest.mark.parametrize("server", [[b"UNCERTAIN the write did not reach its write level within 10s",
                                     b"TRYAGAIN partition 3 is switching primary"]], indirect=True)
def test_a_retryable_error_sends_the_mset_again(server):
    retried = []
    written = load_keys(server.port, 0, 250, 10, batch=20, connections=2, on_retry=retried.append,
                        retry_delay=0.001)
    assert written == 250
    assert sorted(server.keys) == sorted(b"key:%012d" % i for i in range(250)), "every key once"
    assert sorted(r.split()[0] for r in retried) == ["TRYAGAIN", "UNCERTAIN"]


@pytest.mark.parametrize("server", [[b"ERR wrong number of arguments for 'mset' command"]], indirect=True)
def test_any_other_error_stops_the_load(server):
    with pytest.raises(BenchClientError, match="wrong number of arguments"):
        load_keys(server.port, 0, 100, 10, batch=20)


@pytest.mark.parametrize("server", [[b"UNCERTAIN again"] * LOAD_ATTEMPTS], indirect=True)
def test_an_mset_failing_every_attempt_stops_the_load(server):
    with pytest.raises(BenchClientError, match="UNCERTAIN again"):
        load_keys(server.port, 0, 20, 10, batch=20, connections=1, retry_delay=0.001)


@pytest.mark.parametrize("server", [[b"TRYAGAIN retry shortly", b"TRYAGAIN retry shortly"]], indirect=True)
def test_an_mset_is_sent_again_after_a_pause_that_doubles(server):
    started = time.monotonic()
    assert load_keys(server.port, 0, 20, 10, batch=20, connections=1, retry_delay=0.05) == 20
    assert time.monotonic() - started >= 0.05 + 0.1
