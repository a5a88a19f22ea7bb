"""A minimal blocking RESP client and a bulk key loader, both on raw sockets.

The benchmark drives Redis and the proxy alike with these, so client overhead is the same on both sides
and small: no connection pool, no reply decoding beyond hiredis.
"""

from __future__ import annotations

import itertools
import random
import selectors
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kvcommon.resp import INCOMPLETE, ErrorReply, ReplyParser, encode_command

HOST = "127.0.0.1"
RECV_SIZE = 256 * 1024
# Values are cut from random bytes: LevelDB compresses its blocks, and repeated bytes would shrink the
# stored data, and so its disk and cache footprint, far below what real values take.
_RANDOM = random.Random(0).randbytes(1 << 20)
MAX_VALUE_SIZE = len(_RANDOM) // 2


class BenchClientError(Exception):
    pass


class Connection:
    """One connection with request/response calls (and ``pipeline`` for many commands at once)."""

    def __init__(self, port: int, host: str = HOST, timeout: float = 30.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.parser = ReplyParser()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def call(self, *args: bytes | str | int) -> Any:
        self.sock.sendall(encode_command(args))
        return self.read_reply()

    def pipeline(self, commands: Iterable[tuple]) -> list[Any]:
        commands = list(commands)
        self.sock.sendall(b"".join(encode_command(c) for c in commands))
        return [self.read_reply() for _ in commands]

    def read_reply(self) -> Any:
        while True:
            reply = self.parser.next_reply()
            if reply is not INCOMPLETE:
                return reply
            data = self.sock.recv(RECV_SIZE)
            if not data:
                raise BenchClientError("the server closed the connection")
            self.parser.feed(data)


def value_for(number: int, size: int) -> bytes:
    """An incompressible value of ``size`` bytes, different for neighbouring numbers."""
    if size > MAX_VALUE_SIZE:
        raise ValueError(f"values of more than {MAX_VALUE_SIZE} bytes are not supported")
    start = number * 7919 % (len(_RANDOM) - size)
    return _RANDOM[start : start + size]


def key_name(prefix: str, number: int) -> bytes:
    """Keys as redis-benchmark names them with ``-r`` (``key:000000000042``), so its loads hit loaded keys."""
    return b"%s%012d" % (prefix.encode(), number)


class _Mset:
    """One MSET of a load: its encoded request, how many keys it writes, and how often it was sent."""

    __slots__ = ("request", "keys", "attempts")

    def __init__(self, request: bytes, keys: int):
        self.request = request
        self.keys = keys
        self.attempts = 1


# Error replies after which a loader's MSET is sent again: it was refused, or may or may not have been
# applied (the write waited too long for storage or replicas). Writing the same values again is harmless.
RETRYABLE_LOAD_ERRORS = ("UNCERTAIN", "TRYAGAIN", "CLUSTERDOWN")
LOAD_ATTEMPTS = 8
# Seconds before sending an MSET again, doubling with each attempt up to the maximum: the errors say "retry
# shortly", and a primary that lost its lease on a starved machine needs a second or two to win it back.
RETRY_DELAY = 0.1
MAX_RETRY_DELAY = 3.2


def load_keys(
    port: int,
    start: int,
    stop: int,
    value_size: int,
    *,
    prefix: str = "key:",
    batch: int = 100,
    connections: int = 4,
    depth: int = 4,
    on_progress: Callable[[int], None] | None = None,
    on_retry: Callable[[str], None] | None = None,
    host: str = HOST,
    retry_delay: float = RETRY_DELAY,
) -> int:
    """Write keys ``start`` .. ``stop - 1`` with ``value_size``-byte values, as MSETs of ``batch`` keys.

    Several connections, each with up to ``depth`` MSETs in flight, keep every node busy while the
    loader itself stays one process. An MSET answered with a retryable error (RETRYABLE_LOAD_ERRORS) is
    sent again after a pause (``retry_delay``, doubling), up to LOAD_ATTEMPTS times in all, and ``on_retry``
    hears of it. Returns the number of keys written; raises on any other error reply.
    """
    batches = (_Mset(request, count) for request, count in _batches(prefix, start, stop, batch, value_size))
    selector = selectors.DefaultSelector()
    in_flight: dict[Connection, list[_Mset]] = {}
    written = 0
    try:
        for _ in range(connections):
            conn = Connection(port, host)
            in_flight[conn] = []
            selector.register(conn.sock, selectors.EVENT_READ, conn)
            _fill(conn, in_flight[conn], batches, depth)
        while any(in_flight.values()):
            for selected, _ in selector.select(timeout=30.0):
                conn = selected.data
                data = conn.sock.recv(RECV_SIZE)
                if not data:
                    raise BenchClientError("the server closed the connection while loading")
                conn.parser.feed(data)
                done = 0
                again = []
                while (reply := conn.parser.next_reply()) is not INCOMPLETE:
                    mset = in_flight[conn].pop(0)
                    if isinstance(reply, ErrorReply):
                        if not reply.startswith(RETRYABLE_LOAD_ERRORS) or mset.attempts >= LOAD_ATTEMPTS:
                            raise BenchClientError(f"loading keys failed: {reply}")
                        time.sleep(min(MAX_RETRY_DELAY, retry_delay * 2 ** (mset.attempts - 1)))
                        mset.attempts += 1
                        again.append(mset)
                        if on_retry is not None:
                            on_retry(str(reply))
                    else:
                        done += mset.keys
                if done and on_progress is not None:
                    on_progress(done)
                written += done
                _fill(conn, in_flight[conn], itertools.chain(again, batches), depth)
    finally:
        for conn in in_flight:
            selector.unregister(conn.sock)
            conn.close()
        selector.close()
    return written


def _batches(prefix: str, start: int, stop: int, size: int, value_size: int) -> Iterator[tuple[bytes, int]]:
    for first in range(start, stop, size):
        last = min(first + size, stop)
        args: list[bytes] = [b"MSET"]
        for number in range(first, last):
            args += (key_name(prefix, number), value_for(number, value_size))
        yield encode_command(args), last - first


def _fill(conn: Connection, pending: list[_Mset], batches: Iterator[_Mset], depth: int) -> None:
    out = []
    while len(pending) < depth:
        mset = next(batches, None)
        if mset is None:
            break
        out.append(mset.request)
        pending.append(mset)
    if out:
        conn.sock.sendall(b"".join(out))
