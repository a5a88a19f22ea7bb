"""FastRequestParser gives what RequestParser gives, commands and errors, whatever the bytes and their cuts."""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcommon.errors import ProtocolError
from kvcommon.request_parser import FastRequestParser, _is_whole_and_canonical
from kvcommon.resp import RequestParser, encode_command

# Pieces of streams, well formed or not, that a hypothesis-built stream strings together.
fragments = st.one_of(
    st.builds(lambda args: encode_command(args), st.lists(st.binary(max_size=12), min_size=1, max_size=4)),
    st.sampled_from([
        b"*1\r\n+PING\r\n", b"*1\r\n:1\r\n", b"*1\r\n(12\r\n", b"*1\r\n=7\r\ntxt:abc\r\n", b"*1\r\n*1\r\n$1\r\na\r\n",
        b"*0\r\n", b"*-1\r\n", b"*1\r\n$03\r\nabc\r\n", b"*01\r\n", b"*1\r\n$1\r\naXY", b"*1\n$1\na\n",
        b"PING\r\n", b"ECHO 'a b'\n", b"\r\n", b"*2\r\n$3\r\nGET\r\n", b"$1\r\na\r\n", b"*1\r\n$-1\r\n",
        b"*1\r\n$11\r\n", b"*3000000000\r\n", b"*1\r\n_\r\n", b"*1\r\n#t\r\n", b"*1\r\n,1.5\r\n", b"%1\r\n",
    ]),
    st.binary(max_size=8),
)


def outcome(parser_class, stream: bytes, cuts: list[int], **limits) -> tuple[list, str | None]:
    parser = parser_class(**limits)
    parsed: list = []
    try:
        for start, stop in zip([0, *cuts], [*cuts, len(stream)]):
            parser.feed(stream[start:stop])
            while (command := parser.next_command()) is not None:
                parsed.append(command)
    except ProtocolError as err:
        return parsed, err.reply_text()
    return parsed, None


@settings(max_examples=300, deadline=None)
@given(st.lists(fragments, max_size=8), st.data())
def test_fast_parser_matches_the_exact_one(pieces, data):
    stream = b"".join(pieces)
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(stream)), max_size=6))))
    limits = data.draw(st.sampled_from([{}, {"max_bulk_len": 5}, {"max_multibulk_len": 2}]))
    assert outcome(FastRequestParser, stream, cuts, **limits) == outcome(RequestParser, stream, cuts, **limits)


def test_fast_parser_returns_to_hiredis_after_an_inline_command():
    parser = FastRequestParser()
    parser.feed(b"PING\r\n")
    assert parser.next_command() == [b"PING"]
    assert parser.next_command() is None
    parser.feed(encode_command([b"GET", b"k"]))
    assert parser.next_command() == [b"GET", b"k"]
    assert not parser._exact_mode


@pytest.mark.parametrize("length", [0, 9, 10, 99, 100, 999, 1000, 12345])
def test_canonical_check(length):
    commands = [[b"SET", b"x" * length, b"v"], [b"GET", b"k"]]
    data = b"".join(encode_command(c) for c in commands)
    assert _is_whole_and_canonical(data, commands, 12345)
    assert not _is_whole_and_canonical(data, commands, length - 1)
    assert not _is_whole_and_canonical(data + b"*", commands, 12345)
    assert not _is_whole_and_canonical(data, [*commands[:1], [b"GET", 5]], 12345)


def test_a_huge_declared_array_allocates_nothing():
    # hiredis would build a list of two billion slots before any element came.
    parser = FastRequestParser()
    started = time.perf_counter()
    parser.feed(b"*2000000000\r\n")
    with pytest.raises(ProtocolError, match="invalid multibulk length"):
        parser.next_command()
    assert time.perf_counter() - started < 0.5
