"""Writes gathered over one reactor turn and sent straight to the socket.

Twisted's ``transport.write`` buffers the bytes and asks the reactor to watch the socket for writability,
then sends them on the next trip through the loop: two ``epoll_ctl`` calls, an extra poll event and its
dispatch for every connection written to. A server answering tens of thousands of small requests a
second spends more on that than on the ``send`` itself.

``TurnWriter`` gathers what one turn writes to each connection and, once the turn's events are handled
(a ``callLater(0)``, which runs before the reactor polls again), sends each connection's bytes with one
``send``. Only what the kernel does not take goes to the transport's own buffer, so flow control and
producers work as before. Every write to a connection must go through the writer, or bytes could
overtake each other.

Transports that are not sockets (``StringTransport`` in unit tests) are written to at once.
"""

from __future__ import annotations


class TurnWriter:
    def __init__(self) -> None:
        self._pending: dict[object, list[bytes]] = {}
        self._scheduled = False

    def write(self, transport, data: bytes) -> None:
        chunks = self._pending.get(transport)
        if chunks is not None:
            chunks.append(data)
            return
        if getattr(transport, "socket", None) is None:
            transport.write(data)
            return
        self._pending[transport] = [data]
        if not self._scheduled:
            self._scheduled = True
            transport.reactor.callLater(0, self.flush)

    def flush(self) -> None:
        """Send everything gathered (the reactor calls this at the end of the turn)."""
        self._scheduled = False
        pending, self._pending = self._pending, {}
        for transport, chunks in pending.items():
            _send(transport, chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def flush_transport(self, transport) -> None:
        """Send what is gathered for one connection now: call before closing it."""
        chunks = self._pending.pop(transport, None)
        if chunks:
            _send(transport, b"".join(chunks))


def _send(transport, data: bytes) -> None:
    # Straight to the socket only when the transport holds nothing older and is not closing; otherwise,
    # or for what the kernel does not take, the transport's buffer keeps the order and the back-pressure.
    if (transport.connected and not transport.disconnecting and not transport.dataBuffer
            and not transport._tempDataLen):
        try:
            sent = transport.socket.send(data)
        except OSError:
            sent = 0  # a full buffer, or a broken connection the transport will notice and report
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


# One writer per process: every connection of the process flushes in the same end-of-turn call.
turn_writer = TurnWriter()
