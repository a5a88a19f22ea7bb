"""Request parsing: RequestParser, and FastRequestParser held to exactly the same behaviour.

Every test here runs against both parsers (the ``parser_class`` fixture); test_fast_request_parser.py
holds the fast one to the exact one on arbitrary bytes.
"""

import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcommon import resp
from kvcommon.errors import ProtocolError
from kvcommon.request_parser import FastRequestParser
from kvcommon.resp import encode, encode_command

FAST = settings(max_examples=60, deadline=None)

RequestParser = resp.RequestParser


@pytest.fixture(autouse=True, params=[resp.RequestParser, FastRequestParser], ids=["exact", "hiredis"])
def parser_class(request, monkeypatch):
    """Run each test with RequestParser meaning one parser, then the other."""
    monkeypatch.setattr(sys.modules[__name__], "RequestParser", request.param)
    return request.param


def parse(data: bytes, chunk_size: int | None = None, into: list | None = None, **limits: int) -> list:
    """Every command in data, fed to one parser chunk_size bytes at a time (all at once if None).

    Commands are also appended to into as they come, so that a caller sees those before an error.
    """
    parser = RequestParser(**limits)
    step = chunk_size or max(len(data), 1)
    commands = [] if into is None else into
    for i in range(0, len(data), step):
        parser.feed(data[i : i + step])
        while (command := parser.next_command()) is not None:
            commands.append(command)
    return commands


def parse_in_every_chunk_size(data: bytes, **limits: int) -> list[list[bytes]]:
    """The commands in data, after checking that every chunk size from 1 byte up gives the same ones."""
    whole = parse(data, **limits)
    for size in range(1, len(data)):
        assert parse(data, size, **limits) == whole, f"chunks of {size} bytes"
    return whole


def parse_until_error(data: bytes, chunk_size: int | None = None, **limits: int) -> tuple[list, str]:
    """The commands before the protocol error in data, and the error's reply text."""
    commands: list[list[bytes]] = []
    with pytest.raises(ProtocolError) as raised:
        parse(data, chunk_size, commands, **limits)
    return commands, raised.value.reply_text()


def commands(*commands: list[bytes]) -> bytes:
    return b"".join(encode_command(command) for command in commands)


# --- Request parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(commands([b"SET", b"key", b"value"]), [[b"SET", b"key", b"value"]], id="multibulk"),
        pytest.param(b"SET key value\r\n", [[b"SET", b"key", b"value"]], id="inline"),
        pytest.param(b"GET k\n", [[b"GET", b"k"]], id="inline-lf"),
        pytest.param(
            b"PING\r\n" + commands([b"GET", b"k"]) + b"ECHO x\n" + commands([b"DEL", b"a", b"b"]),
            [[b"PING"], [b"GET", b"k"], [b"ECHO", b"x"], [b"DEL", b"a", b"b"]],
            id="mixed",
        ),
        pytest.param(
            commands(*[[b"INCR", b"n%d" % i] for i in range(5)]),
            [[b"INCR", b"n%d" % i] for i in range(5)],
            id="pipelined",
        ),
        pytest.param(
            commands([b"SET", b"k\r\n", b"\r\n\x00\xff*$"]), [[b"SET", b"k\r\n", b"\r\n\x00\xff*$"]], id="binary"
        ),
        pytest.param(commands([b"SET", b"", b""]), [[b"SET", b"", b""]], id="empty-args"),
        pytest.param(b"*0\r\n*-1\r\n*-7\r\n\r\n \t\r\n\n" + commands([b"PING"]), [[b"PING"]], id="empty-commands"),
        pytest.param(commands([b"ECHO", b"v" * 1500]), [[b"ECHO", b"v" * 1500]], id="length-over-1000"),
        pytest.param(b"*1\r\n$4\r\nPINGxx", [[b"PING"]], id="bytes-after-arg-not-checked"),
    ],
)
def test_commands_in_every_chunk_size(data, expected):
    assert parse_in_every_chunk_size(data) == expected


def test_large_bulk_in_chunks():
    value = bytes(range(256)) * 400
    data = commands([b"SET", b"big", value], [b"GET", b"big"])
    for size in (1, 2, 3, 7, 1000, 4096, 16384, len(data)):
        assert parse(data, size) == [[b"SET", b"big", value], [b"GET", b"big"]]


def test_large_bulk_in_small_chunks_takes_linear_time():
    # Joining the buffer on every feed() would copy ~16 GB here and take seconds.
    value = b"v" * (4 * 1024 * 1024)
    data = commands([b"SET", b"k", value])
    started = time.perf_counter()
    assert parse(data, 512) == [[b"SET", b"k", value]]
    assert time.perf_counter() - started < 1.0


def test_partial_command_waits_for_the_rest():
    parser = RequestParser()
    parser.feed(b"*2\r\n$3\r\nGET\r\n$3\r\nke")
    assert parser.next_command() is None
    assert parser.next_command() is None
    parser.feed(b"y\r\nPING")
    assert parser.next_command() == [b"GET", b"key"]
    assert parser.next_command() is None
    parser.feed(b"\r\n")
    assert parser.next_command() == [b"PING"]
    assert parser.next_command() is None


@pytest.mark.parametrize("chunk_size", [1, 2, 5, 64])
def test_caller_may_take_one_command_per_feed(chunk_size):
    # A caller applying backpressure leaves commands in the parser and feeds more before taking them.
    expected = [[b"SET", b"k%d" % i, b"v" * i] for i in range(20)] + [[b"PING"]] * 3
    data = commands(*expected[:20]) + b"*1\r\n$4\r\nPINGxx" * 3
    parser = RequestParser()
    parsed = []
    for i in range(0, len(data), chunk_size):
        parser.feed(data[i : i + chunk_size])
        if (command := parser.next_command()) is not None:
            parsed.append(command)
    while (command := parser.next_command()) is not None:
        parsed.append(command)
    assert parsed == expected


def test_command_completed_by_bytes_fed_while_commands_wait():
    parser = RequestParser()
    parser.feed(b"PING\r\nECHO a\r\n*1\r\n$4\r\nPI")
    assert parser.next_command() == [b"PING"]
    parser.feed(b"NGxx")  # no newline: this completes the last command by its length alone
    assert [parser.next_command() for _ in range(3)] == [[b"ECHO", b"a"], [b"PING"], None]


def test_feed_copies_a_reused_buffer():
    parser = RequestParser()
    buffer = bytearray(b"*1\r\n$4\r\nPI")
    parser.feed(buffer)
    buffer[:] = b"NG\r\n"
    parser.feed(buffer)
    assert parser.next_command() == [b"PING"]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"*x\r\n", "invalid multibulk length"),
        (b"*\r\n", "invalid multibulk length"),
        (b"*1 \r\n", "invalid multibulk length"),
        (b"*+1\r\n", "invalid multibulk length"),
        (b"*01\r\n", "invalid multibulk length"),
        (b"*-0\r\n", "invalid multibulk length"),
        (b"*1_0\r\n", "invalid multibulk length"),
        (b"*99999999999999999999\r\n", "invalid multibulk length"),
        (b"*1\r\n$x\r\n", "invalid bulk length"),
        (b"*1\r\n$-1\r\n", "invalid bulk length"),
        (b"*1\r\n$04\r\n", "invalid bulk length"),
        (b"*1\r\n$ 4\r\n", "invalid bulk length"),
        (b"*1\r\n$\r\n", "invalid bulk length"),
        (b"*1\r\n$536870913\r\n", "invalid bulk length"),
        (b"*1\r\n:4\r\n", "expected '$', got ':'"),
        (b"*2\r\n$1\r\na\r\n*1\r\n", "expected '$', got '*'"),
        # The '\r' of an empty line goes on the wire as a space, as it does from Redis.
        (b"*1\r\n\r\n", "expected '$', got '\r'"),
        (b'SET "a b\r\n', "unbalanced quotes in request"),
        (b"SET 'a b\r\n", "unbalanced quotes in request"),
        (b'SET "a"b\r\n', "unbalanced quotes in request"),
        (b"SET ''x\r\n", "unbalanced quotes in request"),
        (b"SET '\\\\'\r\n", "unbalanced quotes in request"),
        (b'SET "a\\"\r\n', "unbalanced quotes in request"),
        # Unterminated lines, one byte longer than the longest that a CRLF may still end.
        (b"a" * 65538, "too big inline request"),
        (b"*" + b"1" * 65537, "too big mbulk count string"),
        (b"*1\r\n$" + b"1" * 65537, "too big bulk count string"),
    ],
)
def test_protocol_errors(data, error):
    before = [[b"PING"], [b"GET", b"k"]]
    stream = b"PING\r\n" + commands([b"GET", b"k"]) + data
    sizes = range(1, len(stream) + 1) if len(stream) < 100 else (1, 1000, len(stream))
    for size in sizes:
        assert parse_until_error(stream, size) == (before, f"ERR Protocol error: {error}")


def test_error_is_raised_again():
    parser = RequestParser()
    parser.feed(b"PING\r\n*1\r\n$4\r\nPING\r\n*1\r\n:4\r\n")
    assert parser.next_command() == [b"PING"]
    assert parser.next_command() == [b"PING"]
    for _ in range(2):
        with pytest.raises(ProtocolError, match="expected '\\$', got ':'"):
            parser.next_command()


def test_error_reply_is_one_line():
    parser = RequestParser()
    parser.feed(b"*1\r\n\r\n")
    with pytest.raises(ProtocolError) as raised:
        parser.next_command()
    assert encode(raised.value) == b"-ERR Protocol error: expected '$', got ' '\r\n"


def test_max_bulk_len():
    assert parse_in_every_chunk_size(commands([b"a" * 10]), max_bulk_len=10) == [[b"a" * 10]]
    assert parse_until_error(commands([b"a" * 11]), max_bulk_len=10) == (
        [],
        "ERR Protocol error: invalid bulk length",
    )
    assert parse_until_error(b"*1\r\n$2000\r\n", max_bulk_len=1999)[1] == "ERR Protocol error: invalid bulk length"


def test_max_multibulk_len():
    assert parse_in_every_chunk_size(commands([b"a"] * 3), max_multibulk_len=3) == [[b"a"] * 3]
    assert parse_until_error(b"*4\r\n", max_multibulk_len=3) == ([], "ERR Protocol error: invalid multibulk length")
    assert parse_until_error(b"*1048577\r\n") == ([], "ERR Protocol error: invalid multibulk length")


@pytest.mark.parametrize(
    ("longest", "expected", "too_long", "error"),
    [
        (b"ECHO " + b"a" * 11, [[b"ECHO", b"a" * 11]], b"ECHO " + b"a" * 12, "too big inline request"),
        (b"*-" + b"1" * 14, [], b"*-" + b"1" * 15, "too big mbulk count string"),
        (b"*1\r\n$" + b"1" * 15, [], b"*1\r\n$" + b"1" * 16, "too big bulk count string"),
    ],
)
def test_max_inline_len(longest, expected, too_long, error):
    # A line may hold max_inline_len bytes before its CRLF, whatever the chunks and whether or not its end
    # has come yet.
    limits = {"max_inline_len": 16, "max_bulk_len": 10**18}
    assert parse_in_every_chunk_size(longest + b"\r\n", **limits) == expected
    for tail in (b"\r\n", b"\n", b"\r", b"x"):
        for size in range(1, len(too_long) + 3):
            assert parse_until_error(too_long + tail, size, **limits) == ([], f"ERR Protocol error: {error}")


# Each line was sent to redis-server 7.0 (RPUSH l <line>, then LRANGE l 0 -1) to find what it makes of it.
@pytest.mark.parametrize(
    ("line", "args"),
    [
        (b'set "a b" \'c\\\'d\' "\\x41"', [b"set", b"a b", b"c'd", b"A"]),
        (b'"\\x41\\x4a\\xff\\X41"', [b"AJ\xffX41"]),
        (b'"\\x4" "\\x4g" "\\xZZ"', [b"x4", b"x4g", b"xZZ"]),
        (b'"\\"" "a\\tb\\bc\\a" "\\r\\n" "\\q" "\\\\"', [b'"', b"a\tb\bc\a", b"\r\n", b"q", b"\\"]),
        (b"'\\\\x' 'a\\b' 'a\"b'", [b"\\\\x", b"a\\b", b'a"b']),
        (b"a\"b c\" x'y z' \"\" ''", [b"ab c", b"xy z", b"", b""]),
        (b"\\x41 a\\b", [b"\\x41", b"a\\b"]),
        (b"a\x0bb \x0bc d\x0c", [b"a\x0bb", b"c", b"d\x0c"]),
        (b"\"x\"\x0b 'y'\t", [b"x", b"y"]),
        (b"a\rb\tc", [b"a", b"b", b"c"]),
        (b"  a   b  \r", [b"a", b"b"]),
        # Redis reads the line as a C string, which ends at a NUL. (Redis itself never runs such a line: its
        # search for the '\n' stops at the NUL too, so it waits until the line is too big.)
        (b"a b\x00c d", [b"a", b"b"]),
    ],
)
def test_inline_quoting_as_redis(line, args):
    assert parse_in_every_chunk_size(b"RPUSH l " + line + b"\r\n") == [[b"RPUSH", b"l", *args]]


def inline_quoted(arg: bytes) -> bytes:
    """arg as a double-quoted inline argument, with every byte but letters and digits written as \\xHH."""
    escaped = (bytes([b]) if bytes([b]).isalnum() else b"\\x%02x" % b for b in arg)
    return b'"' + b"".join(escaped) + b'"'


# --- Hypothesis: request round trips ------------------------------------------------------------------

args_lists = st.lists(st.binary(max_size=40), min_size=1, max_size=6)


@FAST
@given(st.lists(args_lists, max_size=5), st.data())
def test_encode_command_round_trips_whatever_the_cuts(command_list, data):
    stream = commands(*command_list)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    parser = RequestParser()
    parsed = []
    for start, stop in zip([0, *cuts], [*cuts, len(stream)]):
        parser.feed(stream[start:stop])
        while (command := parser.next_command()) is not None:
            parsed.append(command)
    assert parsed == command_list


@FAST
@given(args_lists)
def test_quoted_inline_round_trips(args):
    line = b" ".join(inline_quoted(arg) for arg in args) + b"\r\n"
    assert parse(line) == [args]


@FAST
@given(st.lists(st.one_of(st.text(), st.integers(-(2**63), 2**63 - 1), st.binary()), min_size=1, max_size=6))
def test_encode_command_accepts_str_and_int(args):
    as_bytes = [a.encode() if isinstance(a, str) else b"%d" % a if isinstance(a, int) else a for a in args]
    assert parse(encode_command(args)) == [as_bytes]


def test_encode_command_refuses_other_types():
    with pytest.raises(TypeError, match="float"):
        encode_command([b"INCRBYFLOAT", b"k", 1.5])
