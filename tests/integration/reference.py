"""A real Redis to compare with, and a client that returns replies as the exact bytes a server sent."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """Debian's redis-server on a free port, without persistence, in ``directory``."""

    def __init__(self, directory: Path):
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.skip("redis-server is not installed (make system-packages installs it)")
        self.port = free_port()
        self.process = subprocess.Popen(
            [executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                RawClient("127.0.0.1", self.port).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class RawClient:
    """Sends commands and returns each reply as the bytes the server sent, RESP2 or RESP3 (after HELLO 3)."""

    def __init__(self, host: str, port: int, protocol: int = 2, timeout: float = 20):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""
        if protocol == 3:
            self.call("HELLO", "3")

    def call(self, *args) -> bytes:
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            # Text arguments stand for bytes: "\xff" is the byte 0xff.
            arg = arg if isinstance(arg, bytes) else str(arg).encode("latin-1")
            parts += [b"$%d\r\n" % len(arg), arg, b"\r\n"]
        self.sock.sendall(b"".join(parts))
        while (end := reply_end(self.buffer)) < 0:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buffer += chunk
        reply, self.buffer = self.buffer[:end], self.buffer[end:]
        return reply

    def close(self) -> None:
        self.sock.close()


_AGGREGATES = {ord("*"): 1, ord("~"): 1, ord(">"): 1, ord("%"): 2, ord("|"): 2}
_BLOBS = frozenset(b"$=!")


def reply_end(buf: bytes, pos: int = 0) -> int:
    """Where the RESP2/RESP3 reply at ``pos`` ends, or -1 if it has not fully arrived."""
    line_end = buf.find(b"\r\n", pos)
    if line_end < 0:
        return -1
    kind, header = buf[pos], buf[pos + 1:line_end]
    end = line_end + 2
    if kind in _BLOBS:
        length = int(header)
        if length < 0:
            return end
        end += length + 2
        return end if end <= len(buf) else -1
    if kind in _AGGREGATES:
        count = int(header)
        for _ in range(max(count, 0) * _AGGREGATES[kind]):
            end = reply_end(buf, end)
            if end < 0:
                return -1
    return end


def parse(raw: bytes):
    """A reply as Python values, kinds kept apart: ("+", text), ("-", text), ints, bytes, None, lists, dicts."""
    value, _ = _parse(raw, 0)
    return value


def _parse(buf: bytes, pos: int):
    line_end = buf.find(b"\r\n", pos)
    kind, header = chr(buf[pos]), buf[pos + 1:line_end]
    end = line_end + 2
    if kind in "$=!":
        length = int(header)
        if length < 0:
            return None, end
        skip = 4 if kind == "=" else 0  # a verbatim string starts with its format: "txt:"
        return buf[end + skip:end + length], end + length + 2
    if kind in "*~>%":
        count = int(header)
        if count < 0:
            return None, end
        items = []
        for _ in range(count * (2 if kind == "%" else 1)):
            item, end = _parse(buf, end)
            items.append(item)
        if kind == "%":
            return {_hashable(k): v for k, v in zip(items[::2], items[1::2])}, end
        return items, end
    if kind == ":":
        return int(header), end
    if kind == "_":
        return None, end
    if kind in "+-":
        return (kind, header.decode("utf-8", "replace")), end
    return (kind, header), end


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value
