"""The Redis wire protocol (RESP2 and RESP3), without I/O: bytes in, commands or replies out.

``RequestParser`` splits what a client sends into commands, following Redis's ``networking.c`` and raising
its error texts; ``encode`` turns a reply value into bytes; ``encode_command`` and ``ReplyParser`` are the
client side, used by the proxy to talk to nodes.

Reply values are plain Python values plus a few marker types:

========================================  =============================  ================================
value                                     RESP3                          RESP2
========================================  =============================  ================================
``bytes``, ``bytearray``, ``memoryview``  bulk string ``$``              same
``Status``                                simple string ``+``            same
``ErrorReply``, any ``KVError``           error ``-``                    same
``int``                                   integer ``:``                  same
``bool``                                  boolean ``#t`` / ``#f``        integer 1 / 0
``float``                                 double ``,``                   bulk string of the same text
``None``                                  null ``_``                     null bulk string ``$-1``
``NULL_ARRAY``                            null ``_``                     null array ``*-1``
``list``, ``tuple``                       array ``*``                    same
``dict``                                  map ``%``                      flat array: k1, v1, k2, v2 ...
``set``, ``frozenset``                    set ``~``                      array
``Push``                                  push ``>``                     array
``Verbatim``                              verbatim string ``=``          bulk string
========================================  =============================  ================================
"""

import re
from collections.abc import Sequence
from typing import Any, Final

import hiredis

from kvcommon.errors import KVError, ProtocolError

__all__ = [
    "INCOMPLETE",
    "NULL_ARRAY",
    "OK",
    "PONG",
    "QUEUED",
    "ErrorReply",
    "Push",
    "Reply",
    "ReplyParser",
    "RequestParser",
    "Status",
    "Verbatim",
    "encode",
    "encode_command",
]

_CRLF: Final = b"\r\n"
_STAR: Final = ord("*")
_DOLLAR: Final = ord("$")

# --- Reply model -------------------------------------------------------------------------------------


class Status(str):
    """A simple string reply: ``+OK``."""

    __slots__ = ()


class ErrorReply(str):
    """An error reply; the text starts with the error code: ``ErrorReply("ERR unknown command")``."""

    __slots__ = ()


class Verbatim(str):
    """A verbatim string (RESP3 ``=``), for human-readable text such as INFO; RESP2 gets a bulk string.

    ``format`` is the three-letter type RESP3 sends before the text: ``txt`` or ``mkd``.
    """

    __slots__ = ()
    format = "txt"


class Push(list):
    """An out-of-band message such as a pub/sub message: RESP3 push ``>``, RESP2 array."""

    __slots__ = ()


class _NullArray:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NULL_ARRAY"


NULL_ARRAY: Final = _NullArray()
"""The null array of RESP2 (``*-1``), e.g. a timed-out BLPOP; RESP3 has a single null."""

OK: Final = Status("OK")
PONG: Final = Status("PONG")
QUEUED: Final = Status("QUEUED")

Reply = (
    bytes
    | bytearray
    | memoryview
    | Status
    | ErrorReply
    | Verbatim
    | KVError
    | int
    | float
    | None
    | _NullArray
    | list["Reply"]
    | tuple["Reply", ...]
    | dict["Reply", "Reply"]
    | set["Reply"]
    | frozenset["Reply"]
)


# --- Request parsing (server side) ---------------------------------------------------------------------


def _parse_length(token: bytes) -> int | None:
    """The integer a length line holds, or None where Redis's string2ll() refuses it.

    Stricter than int(): no '+', spaces, underscores or leading zeros, and it must fit a long long.
    """
    digits = token[1:] if token[:1] == b"-" else token
    if not digits.isdigit() or len(digits) > 19 or (digits[0] == 0x30 and len(token) > 1):
        return None
    value = int(token)
    return value if -(2**63) <= value < 2**63 else None


# Small lengths parsed in advance: most length lines are one of these, and a hit is well formed, so the hot
# path rarely needs _parse_length().
_SMALL_LENGTHS: Final = {b"%d" % n: n for n in range(1024)}


class RequestParser:
    """Splits one client connection's byte stream into commands.

    Both multibulk (``*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n``) and inline (``GET k\\r\\n``) commands are
    understood, mixed freely. ``feed()`` the bytes read from the socket, then call ``next_command()`` until
    it returns None.

    ``max_bulk_len`` and ``max_multibulk_len`` bound an argument's length and a command's argument count;
    ``max_inline_len`` bounds any line: an inline command or a length line.
    """

    __slots__ = (
        "_data",
        "_pos",
        "_fed",
        "_fed_len",
        "_fed_newline",
        "_args",
        "_missing",
        "_bulk_len",
        "_max_bulk_len",
        "_max_multibulk_len",
        "_max_inline_len",
    )

    def __init__(
        self,
        max_bulk_len: int = 512 * 1024 * 1024,
        max_multibulk_len: int = 1024 * 1024,
        max_inline_len: int = 64 * 1024,
    ):
        self._max_bulk_len = max_bulk_len
        self._max_multibulk_len = max_multibulk_len
        self._max_inline_len = max_inline_len
        # The bytes being parsed and where the unparsed ones start. They are bytes, not a bytearray, so that
        # an argument is a single slice. Fed chunks wait in _fed until the parser runs out of bytes.
        self._data = b""
        self._pos = 0
        self._fed: list[bytes] = []
        self._fed_len = 0
        self._fed_newline = False
        # A multibulk command received in part: the arguments read so far, how many are still to come, and
        # the length of the next one once its "$len" line has been read (-1 before).
        self._args: list[bytes] = []
        self._missing = 0
        self._bulk_len = -1

    def feed(self, data: bytes) -> None:
        """Add bytes read from the connection."""
        self._fed.append(bytes(data))
        self._fed_len += len(data)
        if not self._fed_newline:
            self._fed_newline = b"\n" in data

    def next_command(self) -> list[bytes] | None:
        """The next complete command as a list of arguments, or None if more bytes are needed.

        Raises ProtocolError, worded as Redis words it, when the stream is not RESP; the caller sends the
        error and closes the connection, as Redis does. Calling again raises the same error.
        """
        data = self._data
        pos = self._pos
        # Local names for what the loops below use most: this is the hot path of the proxy and the node.
        find = data.find
        small_length = _SMALL_LENGTHS.get
        missing = self._missing
        if missing:  # resume a command received in part
            args = self._args
            self._args = []
        while not missing:
            if pos == len(data):
                return self._need_more(pos)
            if data[pos] != _STAR:
                command, pos = self._inline_command(pos)
                if command is None:
                    return self._need_more(pos)
                if command:
                    self._pos = pos
                    return command
                continue  # blank line
            end = find(b"\r\n", pos)
            if end < 0 or end - pos > self._max_inline_len:
                self._check_line_length(pos, end, "too big mbulk count string")
                return self._need_more(pos)
            count = small_length(data[pos + 1 : end])
            if count is None or count > self._max_multibulk_len:
                count = _parse_length(data[pos + 1 : end])
                if count is None or count > self._max_multibulk_len:
                    raise ProtocolError("invalid multibulk length")
            pos = end + 2
            if count > 0:  # Redis skips "*0" and "*-1" as empty commands
                missing = count
                args = []

        bulk_len = self._bulk_len
        max_bulk_len = self._max_bulk_len
        while missing:
            if bulk_len < 0:
                end = find(b"\r\n", pos)
                if end < 0 or end - pos > self._max_inline_len:
                    self._check_line_length(pos, end, "too big bulk count string")
                    break
                if data[pos] != _DOLLAR:
                    raise ProtocolError(f"expected '$', got '{chr(data[pos])}'")
                bulk_len = small_length(data[pos + 1 : end])
                if bulk_len is None or bulk_len > max_bulk_len:
                    bulk_len = _parse_length(data[pos + 1 : end])
                    if bulk_len is None or not 0 <= bulk_len <= max_bulk_len:
                        raise ProtocolError("invalid bulk length")
                pos = end + 2
            stop = pos + bulk_len
            if stop + 2 > len(data):
                break
            args.append(data[pos:stop])
            # Like Redis, skip the two bytes after the argument without checking that they are CRLF.
            pos = stop + 2
            bulk_len = -1
            missing -= 1

        self._missing = missing
        self._bulk_len = bulk_len
        if missing:
            self._args = args
            return self._need_more(pos)
        self._pos = pos
        return args

    def at_boundary(self) -> bool:
        """True when every byte fed has been returned as commands: nothing is buffered or half read."""
        return not self._missing and self._pos == len(self._data) and not self._fed

    def _need_more(self, pos: int) -> list[bytes] | None:
        """Go on with the fed chunks where the parsed bytes run out at pos, if they can complete something.

        Joining only then keeps a large argument or a long line that arrives in many small chunks from
        being copied again on every feed().
        """
        unparsed = len(self._data) - pos + self._fed_len
        if self._bulk_len >= 0:  # in an argument: wait for all of it
            ready = unparsed >= self._bulk_len + 2
        else:  # in a line: wait for its end
            ready = self._fed_newline or unparsed > self._max_inline_len + 1
        if not (self._fed and ready):
            # Drop the parsed bytes, so that a large buffer is not held while waiting.
            self._data = self._data[pos:]
            self._pos = 0
            return None
        self._data = b"".join([self._data[pos:], *self._fed])
        self._pos = 0
        self._fed.clear()
        self._fed_len = 0
        self._fed_newline = False
        return self.next_command()

    def _check_line_length(self, pos: int, end: int, error: str) -> None:
        """Raise error if the line at pos is longer than max_inline_len; end is -1 until its end has come."""
        if end < 0:
            # Until the end has come, count all but the last byte: it may be the '\r' of a CRLF.
            end = len(self._data) - 1
        if end - pos > self._max_inline_len:
            raise ProtocolError(error)

    def _inline_command(self, pos: int) -> tuple[list[bytes] | None, int]:
        """The inline command at pos (None if its line is incomplete) and where the next command starts."""
        data = self._data
        end = data.find(b"\n", pos)  # Redis ends an inline line at '\n', with or without a '\r' before it
        line_end = end - 1 if end > pos and data[end - 1] == 0x0D else end
        if end < 0 or line_end - pos > self._max_inline_len:
            self._check_line_length(pos, line_end, "too big inline request")
            return None, pos
        return _split_inline(data[pos:line_end]), end + 1


# Redis splits inline commands with sdssplitargs(): blanks are C isspace(), but an unquoted argument ends
# only at one of " \t\r\n", so a '\v' or '\f' inside it is kept.
_BLANKS: Final = b" \t\n\r\v\f"
_ARG_END: Final = b" \t\n\r"
_QUOTES: Final = b"\"'"
_ESCAPES: Final = {ord(c): ord(e) for c, e in zip("nrtba", "\n\r\t\b\a")}
_HEX_DIGITS: Final = b"0123456789abcdefABCDEF"
# Without these, bytes.split() splits a line exactly as sdssplitargs() does.
_NEEDS_SPLITARGS: Final = re.compile(rb"[\"'\v\f]")


def _split_inline(line: bytes) -> list[bytes]:
    """Split an inline command line into arguments, with Redis's quoting rules.

    ``"..."`` understands ``\\n \\r \\t \\b \\a \\xHH`` and a backslash before any other character stands
    for that character; ``'...'`` understands only ``\\'``. A closing quote must be followed by a blank or
    the end of the line.
    """
    # Redis parses the line as a C string: it ends at the first NUL.
    line = line.partition(b"\0")[0]
    if not _NEEDS_SPLITARGS.search(line):
        return line.split()
    args = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in _BLANKS:
            i += 1
        if i == n:
            return args
        arg = bytearray()
        while i < n and line[i] not in _ARG_END:
            if line[i] in _QUOTES:
                read_quoted = _read_double_quoted if line[i] == 0x22 else _read_single_quoted
                i = read_quoted(line, i + 1, arg)
                if i < n and line[i] not in _BLANKS:
                    raise ProtocolError("unbalanced quotes in request")
                break
            arg.append(line[i])
            i += 1
        args.append(bytes(arg))


def _read_double_quoted(line: bytes, i: int, arg: bytearray) -> int:
    """Append the double-quoted text starting at i to arg; return the index after the closing quote."""
    n = len(line)
    while i < n:
        c = line[i]
        if c == 0x22:
            return i + 1
        if c == 0x5C and i + 1 < n:  # backslash
            nxt = line[i + 1]
            if nxt == 0x78 and i + 3 < n and line[i + 2] in _HEX_DIGITS and line[i + 3] in _HEX_DIGITS:
                arg.append(int(line[i + 2 : i + 4], 16))
                i += 4
            else:
                arg.append(_ESCAPES.get(nxt, nxt))
                i += 2
        else:
            arg.append(c)
            i += 1
    raise ProtocolError("unbalanced quotes in request")


def _read_single_quoted(line: bytes, i: int, arg: bytearray) -> int:
    """Append the single-quoted text starting at i to arg; return the index after the closing quote."""
    n = len(line)
    while i < n:
        c = line[i]
        if c == 0x27:
            return i + 1
        if c == 0x5C and i + 1 < n and line[i + 1] == 0x27:
            arg.append(0x27)
            i += 2
        else:
            arg.append(c)
            i += 1
    raise ProtocolError("unbalanced quotes in request")


# --- Reply encoding ------------------------------------------------------------------------------------


def encode(reply: Reply, protocol: int = 2) -> bytes:
    """The wire form of a reply, in RESP3 if protocol is 3, else in RESP2."""
    # The replies nearly every command sends, without building a list of parts.
    cls = type(reply)
    if cls is RawReply:
        return reply if protocol != 3 else reply.as_resp3()
    if cls is bytes:
        return b"$%d\r\n%b\r\n" % (len(reply), reply)
    if cls is Status:
        return b"+%b\r\n" % _line(reply)
    if cls is int:
        return b":%d\r\n" % reply
    if reply is None:
        return b"_\r\n" if protocol == 3 else b"$-1\r\n"
    out: list[bytes] = []
    _encode_into(reply, protocol, out)
    return b"".join(out)


def _line(text: str) -> bytes:
    # A simple string or error ends at the first CRLF, so Redis replaces any \r or \n in it with a space.
    return text.replace("\r", " ").replace("\n", " ").encode()


def _encode_into(reply: Reply, protocol: int, out: list[bytes]) -> None:
    if isinstance(reply, bytes | bytearray):
        out += (b"$%d\r\n" % len(reply), reply, _CRLF)
    elif isinstance(reply, str):
        if isinstance(reply, Status):
            out.append(b"+%b\r\n" % _line(reply))
        elif isinstance(reply, ErrorReply):
            out.append(b"-%b\r\n" % _line(reply))
        elif isinstance(reply, Verbatim):
            text = reply.encode()
            if protocol == 3:
                out += (b"=%d\r\n%b:" % (len(text) + 4, reply.format.encode()), text, _CRLF)
            else:
                out += (b"$%d\r\n" % len(text), text, _CRLF)
        else:
            raise TypeError("a str reply must be a Status, ErrorReply or Verbatim; send bulk strings as bytes")
    elif isinstance(reply, list | tuple):
        if protocol == 3 and isinstance(reply, Push):
            out.append(b">%d\r\n" % len(reply))
        else:
            out.append(b"*%d\r\n" % len(reply))
        for item in reply:
            # Bulk strings inline: a flat array of values costs no call per element.
            if type(item) is bytes:
                out += (b"$%d\r\n" % len(item), item, _CRLF)
            else:
                _encode_into(item, protocol, out)
    elif reply is None:
        out.append(b"_\r\n" if protocol == 3 else b"$-1\r\n")
    elif isinstance(reply, bool):
        if protocol == 3:
            out.append(b"#t\r\n" if reply else b"#f\r\n")
        else:
            out.append(b":1\r\n" if reply else b":0\r\n")
    elif isinstance(reply, int):
        out.append(b":%d\r\n" % reply)
    elif isinstance(reply, float):
        # Redis 7.0 formats doubles with "%.17g"; Python's matches C's, inf and nan included.
        text = b"%.17g" % reply
        if protocol == 3:
            out.append(b",%b\r\n" % text)
        else:
            out.append(b"$%d\r\n%b\r\n" % (len(text), text))
    elif isinstance(reply, dict):
        out.append(b"%%%d\r\n" % len(reply) if protocol == 3 else b"*%d\r\n" % (2 * len(reply)))
        for key, value in reply.items():
            _encode_into(key, protocol, out)
            _encode_into(value, protocol, out)
    elif isinstance(reply, set | frozenset):
        out.append(b"~%d\r\n" % len(reply) if protocol == 3 else b"*%d\r\n" % len(reply))
        for item in reply:
            _encode_into(item, protocol, out)
    elif isinstance(reply, KVError):
        out.append(b"-%b\r\n" % _line(reply.reply_text()))
    elif reply is NULL_ARRAY:
        out.append(b"_\r\n" if protocol == 3 else b"*-1\r\n")
    elif isinstance(reply, memoryview):
        out += (b"$%d\r\n" % reply.nbytes, reply, _CRLF)
    else:
        raise TypeError(f"cannot encode a {type(reply).__name__} as a reply")


def encode_bulks(args: Sequence[bytes]) -> bytes:
    """Arguments (bytes only) as the bulk strings of a command, without the ``*n`` header."""
    out: list[bytes] = []
    for arg in args:
        out += (b"$%d\r\n" % len(arg), arg, _CRLF)
    return b"".join(out)


def encode_command(args: Sequence[bytes | str | int]) -> bytes:
    """A command as a client sends it: a multibulk of its arguments (str as UTF-8, int in decimal)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        elif not isinstance(arg, bytes | bytearray):
            raise TypeError(f"a command argument must be bytes, str or int, not {type(arg).__name__}")
        out += (b"$%d\r\n" % len(arg), arg, _CRLF)
    return b"".join(out)


# --- Reply parsing (client side) -----------------------------------------------------------------------


class _Incomplete:
    __slots__ = ()

    def __repr__(self) -> str:
        return "INCOMPLETE"


INCOMPLETE: Final = _Incomplete()
"""What ReplyParser.next_reply() returns while the next reply has not fully arrived."""


class ReplyParser:
    """Splits a server's byte stream into replies (RESP2 and RESP3), with hiredis.

    Replies come back as hiredis builds them, except that errors are ``ErrorReply``:

    - bulk strings, simple strings (hiredis cannot tell them apart: ``+OK`` is ``b"OK"``), verbatim strings
      (without their format) and big numbers are ``bytes``;
    - integers ``int``, doubles ``float``, booleans ``bool``, nulls ``None``;
    - arrays and sets ``list``, maps ``dict``, pushes ``hiredis.PushNotification`` (a ``list``).

    A reply that is not RESP raises ProtocolError; the connection cannot be used after that.
    """

    __slots__ = ("_reader",)

    def __init__(self) -> None:
        self._reader = hiredis.Reader(replyError=ErrorReply, notEnoughData=INCOMPLETE)

    def feed(self, data: bytes) -> None:
        self._reader.feed(data)

    def next_reply(self) -> Any:
        """The next complete reply, or INCOMPLETE if more bytes are needed."""
        try:
            return self._reader.gets()
        except hiredis.ProtocolError as e:
            raise ProtocolError(str(e).removeprefix("Protocol error, ")) from None


class RawReply(bytes):
    """One complete RESP2 reply exactly as a node sent it, forwarded to clients without re-encoding.

    Forwarding the bytes keeps a node's ``+OK`` a simple string (hiredis cannot tell it from a bulk
    string) and saves parsing and encoding on the proxy's hot path. ``value()`` parses it when the proxy
    must look inside, to merge the replies of several partitions.
    """

    __slots__ = ()

    @property
    def is_error(self) -> bool:
        return self[:1] == b"-"

    def value(self) -> Any:
        kind = self[:1]
        if kind == b"+":
            return Status(self[1:-2].decode("utf-8", "replace"))
        if kind == b"-":
            return ErrorReply(self[1:-2].decode("utf-8", "replace"))
        parser = ReplyParser()
        parser.feed(self)
        return parser.next_reply()

    def as_resp3(self) -> bytes:
        # RESP2 and RESP3 differ, for what nodes send, only in nulls; arrays are re-encoded whole.
        if self == b"$-1\r\n" or self == b"*-1\r\n":
            return b"_\r\n"
        if self[:1] == b"*":
            return encode(self.value(), 3)
        return bytes(self)


def reply_end(buf: bytes | bytearray, pos: int = 0) -> int:
    """Where the RESP2 reply starting at ``pos`` ends (the index after it), or -1 if it is incomplete."""
    if pos >= len(buf):
        return -1
    line_end = buf.find(b"\r\n", pos)
    if line_end < 0:
        return -1
    kind = buf[pos]
    if kind == 36:  # $ bulk string
        length = int(buf[pos + 1:line_end])
        if length < 0:
            return line_end + 2
        end = line_end + 4 + length
        return end if end <= len(buf) else -1
    if kind == 42:  # * array
        count = int(buf[pos + 1:line_end])
        end = line_end + 2
        for _ in range(count):
            end = reply_end(buf, end)
            if end < 0:
                return -1
        return end
    return line_end + 2
