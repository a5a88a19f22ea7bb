"""A small blocking RESP client the controller and kvctl use to ask nodes about their replicas."""

from __future__ import annotations

import socket

from kvcommon.errors import KVError
from kvcommon.resp import INCOMPLETE, ErrorReply, ReplyParser, encode_command


class NodeQueryError(KVError):
    pass


def query(host: str, port: int, args: list, timeout: float = 1.0):
    """Send one command and return its reply; raises NodeQueryError if the node cannot answer."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(encode_command(args))
            parser = ReplyParser()
            while True:
                data = sock.recv(65536)
                if not data:
                    raise NodeQueryError(f"node at {host}:{port} closed the connection")
                parser.feed(data)
                reply = parser.next_reply()
                if reply is not INCOMPLETE:
                    break
    except OSError as err:
        raise NodeQueryError(f"node at {host}:{port} did not answer: {err}") from None
    if isinstance(reply, ErrorReply):
        raise NodeQueryError(f"node at {host}:{port} answered: {reply}")
    return reply


def info_fields(text: bytes) -> dict[str, str]:
    """The ``name:value`` lines of an INFO reply (a node's, or Redis's)."""
    fields = {}
    for line in text.decode("utf-8", "replace").splitlines():
        name, colon, value = line.partition(":")
        if colon:
            fields[name] = value
    return fields
