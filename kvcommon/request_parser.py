"""Request parsing at C speed for the common case, with RequestParser's exact Redis behaviour for the rest.

Nearly every request a proxy or node reads is a run of whole multibulk commands of plain bulk strings, one
socket read at a time. hiredis splits those some twenty times faster than RequestParser. But hiredis
reads replies, not requests: it takes ``+``, ``:``, ``(`` and nested arrays inside a command, has no
limit on a bulk's length, and knows nothing of inline commands or of Redis's wording for protocol
errors.

So hiredis only proposes. A read is taken from hiredis when it parses into whole commands and walking the
read with the headers those commands imply (``*n``, then ``$len`` and the bytes for each argument) ends
exactly at its end: then the read held nothing but canonical bulk strings. Otherwise (an inline command,
a command cut by the end of the read, an element of another type, a limit exceeded, a protocol error) the
read goes to RequestParser, which keeps the connection until it stands between two commands with nothing
buffered.
"""

from __future__ import annotations

import re
from collections import deque

import hiredis

from kvcommon.resp import RequestParser

_STAR = 0x2A
# hiredis allocates an aggregate's list when it reads the header, before a single element has come, so
# "*2000000000" alone would take gigabytes. Reads with an aggregate header of three digits or more (or
# anything that looks like one, inside a value too) go to RequestParser: commands of 100 arguments or
# more are rare, and already costly enough that the parser is not what matters.
_LARGE_AGGREGATE = re.compile(rb"[*%~>|]\d{3}")


# Headers of arrays and bulks of the common sizes, made once: the check below runs for every command.
_ARRAY_HEADERS = [b"*%d\r\n" % n for n in range(100)]
_BULK_HEADERS = [b"$%d\r\n" % n for n in range(1024)]


def _is_whole_and_canonical(data: bytes, commands: list, max_bulk_len: int,
                            array_headers: list[bytes] = _ARRAY_HEADERS) -> bool:
    """True if data is exactly ``commands``, each a multibulk of bulk strings in canonical form, none
    longer than max_bulk_len, and each with fewer elements than array_headers has headers.

    Walking data with the headers the parsed commands imply checks the type byte and length line of every
    element, so a ``+PING`` that hiredis reads as ``b"PING"``, or a command hiredis left half read at the
    end, cannot pass: the walk would not end exactly at the end of data. Commands have fewer than 100
    elements here (see _LARGE_AGGREGATE).
    """
    pos = 0
    startswith = data.startswith
    bulk_headers = _BULK_HEADERS
    try:
        for command in commands:
            if type(command) is not list or not command:
                return False
            header = array_headers[len(command)]
            if not startswith(header, pos):
                return False
            pos += len(header)
            for arg in command:
                n = len(arg)
                header = bulk_headers[n] if n < 1024 else b"$%d\r\n" % n
                if not startswith(header, pos) or n > max_bulk_len:
                    return False
                pos += len(header) + n + 2
    except (TypeError, IndexError):  # an element without a length (an integer, a null), or a long array
        return False
    return pos == len(data)


class FastRequestParser:
    """A RequestParser (same arguments, same results, same errors) that lets hiredis split plain reads."""

    __slots__ = ("_exact", "_exact_mode", "_reader", "_chunks", "_ready", "_max_bulk_len", "_array_headers")

    def __init__(
        self,
        max_bulk_len: int = 512 * 1024 * 1024,
        max_multibulk_len: int = 1024 * 1024,
        max_inline_len: int = 64 * 1024,
    ):
        self._exact = RequestParser(max_bulk_len, max_multibulk_len, max_inline_len)
        self._exact_mode = False
        self._reader = hiredis.Reader()
        self._chunks: list[bytes] = []
        self._ready: deque[list[bytes]] = deque()
        self._max_bulk_len = max_bulk_len
        self._array_headers = _ARRAY_HEADERS[: max_multibulk_len + 1]

    def feed(self, data: bytes) -> None:
        """Add bytes read from the connection."""
        if self._exact_mode:
            self._exact.feed(data)
        elif data:
            self._chunks.append(data if type(data) is bytes else bytes(data))

    def next_command(self) -> list[bytes] | None:
        """The next complete command, or None if more bytes are needed; raises ProtocolError as
        RequestParser does."""
        if self._ready:
            return self._ready.popleft()
        if self._exact_mode:
            command = self._exact.next_command()
            if command is None and self._exact.at_boundary():
                self._exact_mode = False
                return self._parse_chunks() if self._chunks else None
            return command
        return self._parse_chunks() if self._chunks else None

    def _parse_chunks(self) -> list[bytes] | None:
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        if data[0] == _STAR and not _LARGE_AGGREGATE.search(data):
            # hiredis proposes; the walk over the headers its commands imply decides.
            reader = self._reader
            reader.feed(data)
            commands = []
            try:
                while (command := reader.gets()) is not False:
                    commands.append(command)
            except Exception:  # noqa: BLE001 - a protocol error, or a RESP3 map hiredis cannot build: not ours
                commands = None
            if commands and _is_whole_and_canonical(data, commands, self._max_bulk_len, self._array_headers):
                if len(commands) == 1:
                    return commands[0]
                self._ready.extend(commands)
                return self._ready.popleft()
            # The reader may hold part of data: start afresh, since RequestParser reads all of data again.
            self._reader = hiredis.Reader()
        self._exact_mode = True
        self._exact.feed(data)
        return self.next_command()
