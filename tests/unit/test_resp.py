import math

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcommon.errors import ProtocolError, TryAgainError
from kvcommon.resp import (
    INCOMPLETE,
    NULL_ARRAY,
    OK,
    PONG,
    ErrorReply,
    Push,
    ReplyParser,
    Status,
    Verbatim,
    encode,
    encode_bulks,
    encode_command,
)

FAST = settings(max_examples=60, deadline=None)


# --- Reply encoding ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "resp2", "resp3"),
    [
        (b"abc", b"$3\r\nabc\r\n", None),
        (b"", b"$0\r\n\r\n", None),
        (bytearray(b"a\r\n"), b"$3\r\na\r\n\r\n", None),
        (memoryview(b"xyz")[1:], b"$2\r\nyz\r\n", None),
        (None, b"$-1\r\n", b"_\r\n"),
        (NULL_ARRAY, b"*-1\r\n", b"_\r\n"),
        (0, b":0\r\n", None),
        (-(2**63), b":-9223372036854775808\r\n", None),
        (True, b":1\r\n", b"#t\r\n"),
        (False, b":0\r\n", b"#f\r\n"),
        (OK, b"+OK\r\n", None),
        (PONG, b"+PONG\r\n", None),
        (Status("a\r\nb\nc"), b"+a  b c\r\n", None),
        (ErrorReply("ERR bad\r\nthing"), b"-ERR bad  thing\r\n", None),
        (TryAgainError("map\nchanging"), b"-TRYAGAIN map changing\r\n", None),
        (Verbatim("a\r\nb"), b"$4\r\na\r\nb\r\n", b"=8\r\ntxt:a\r\nb\r\n"),
        ([], b"*0\r\n", None),
        (
            [b"a", 1, None, [OK]],
            b"*4\r\n$1\r\na\r\n:1\r\n$-1\r\n*1\r\n+OK\r\n",
            b"*4\r\n$1\r\na\r\n:1\r\n_\r\n*1\r\n+OK\r\n",
        ),
        ((b"a",), b"*1\r\n$1\r\na\r\n", None),
        (
            {b"a": 1, b"b": [2]},
            b"*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n*1\r\n:2\r\n",
            b"%2\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n*1\r\n:2\r\n",
        ),
        ({b"x"}, b"*1\r\n$1\r\nx\r\n", b"~1\r\n$1\r\nx\r\n"),
        (frozenset(), b"*0\r\n", b"~0\r\n"),
        (
            Push([b"message", b"ch", b"hi"]),
            b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
            b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
        ),
    ],
)
def test_encode(reply, resp2, resp3):
    assert encode(reply) == resp2
    assert encode(reply, 2) == resp2
    assert encode(reply, 3) == (resp2 if resp3 is None else resp3)
    # Inside an array, where the fast path for common replies is not taken.
    assert encode([reply], 3) == b"*1\r\n" + (resp2 if resp3 is None else resp3)


# What redis-server 7.0 answers to ZSCORE for these scores.
@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, b"1"),
        (1.5, b"1.5"),
        (0.1, b"0.10000000000000001"),
        (1e-5, b"1.0000000000000001e-05"),
        (123456789012345678.0, b"1.2345678901234568e+17"),
        (1e20, b"1e+20"),
        (-0.0, b"-0"),
        (math.inf, b"inf"),
        (-math.inf, b"-inf"),
        (math.nan, b"nan"),
    ],
)
def test_encode_double(value, text):
    assert encode(value, 3) == b",%b\r\n" % text
    assert encode(value, 2) == b"$%d\r\n%b\r\n" % (len(text), text)


@pytest.mark.parametrize("reply", ["plain str", object(), [b"a", 1j]])
def test_encode_refuses_other_types(reply):
    with pytest.raises(TypeError):
        encode(reply)


# --- Reply parsing -------------------------------------------------------------------------------------


def test_reply_parser_waits_for_a_whole_reply():
    parser = ReplyParser()
    assert parser.next_reply() is INCOMPLETE
    parser.feed(b"*2\r\n$1\r\na\r\n:")
    assert parser.next_reply() is INCOMPLETE
    parser.feed(b"1\r\n$-1\r\n")
    assert parser.next_reply() == [b"a", 1]
    assert parser.next_reply() is None
    assert parser.next_reply() is INCOMPLETE


def test_reply_parser_errors():
    parser = ReplyParser()
    parser.feed(b"-ERR bad\r\n*2\r\n-WRONGTYPE no\r\n+OK\r\n")
    error = parser.next_reply()
    assert type(error) is ErrorReply and error == "ERR bad"
    nested = parser.next_reply()
    assert type(nested[0]) is ErrorReply and nested == ["WRONGTYPE no", b"OK"]


def test_reply_parser_protocol_error():
    parser = ReplyParser()
    parser.feed(b"?\r\n")
    with pytest.raises(ProtocolError, match='^Protocol error: got "\\?" as reply type byte$'):
        parser.next_reply()


# --- Hypothesis: reply round trips ---------------------------------------------------------------------

one_line_text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), max_size=20)
resp2_leaves = st.one_of(
    st.binary(max_size=40),
    st.integers(-(2**63), 2**63 - 1),
    st.none(),
    st.builds(Status, one_line_text),
    st.builds(ErrorReply, st.builds("ERR {}".format, one_line_text)),
)
resp2_replies = st.recursive(resp2_leaves, lambda children: st.lists(children, max_size=5), max_leaves=20)


def as_parsed(reply):
    """reply as ReplyParser gives it back (hiredis cannot tell a status from a bulk string)."""
    if isinstance(reply, Status):
        return reply.encode()
    if isinstance(reply, list):
        return [as_parsed(item) for item in reply]
    return reply


def parse_replies(data: bytes) -> list:
    parser = ReplyParser()
    parser.feed(data)
    replies = []
    while (reply := parser.next_reply()) is not INCOMPLETE:
        replies.append(reply)
    return replies


@FAST
@given(st.lists(resp2_replies, max_size=4))
def test_resp2_replies_round_trip(replies):
    parsed = parse_replies(b"".join(encode(reply, 2) for reply in replies))
    assert parsed == [as_parsed(reply) for reply in replies]
    for original, back in zip(replies, parsed):
        if isinstance(original, ErrorReply):
            assert type(back) is ErrorReply


resp3_replies = st.recursive(
    st.one_of(
        resp2_leaves,
        st.booleans(),
        st.floats(allow_nan=False),
        st.frozensets(st.binary(max_size=10), max_size=4),
        st.builds(Verbatim, st.text(st.characters(blacklist_categories=["Cs"]), max_size=20)),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.binary(max_size=10), children, max_size=4),
        st.builds(Push, st.lists(children, max_size=4)),
    ),
    max_leaves=20,
)


def as_parsed_resp3(reply):
    if isinstance(reply, Status | Verbatim):
        return reply.encode()
    if isinstance(reply, frozenset):
        return reply  # hiredis gives a list in wire order; compared as a set below
    if isinstance(reply, dict):
        return {key: as_parsed_resp3(value) for key, value in reply.items()}
    if isinstance(reply, list):
        items = [as_parsed_resp3(item) for item in reply]
        return Push(items) if isinstance(reply, Push) else items
    return reply


def same_resp3(parsed, expected) -> bool:
    if isinstance(expected, frozenset):
        return isinstance(parsed, list) and frozenset(parsed) == expected
    if isinstance(expected, Push) and not isinstance(parsed, hiredis.PushNotification):
        return False
    if isinstance(expected, list):
        return isinstance(parsed, list) and len(parsed) == len(expected) and all(map(same_resp3, parsed, expected))
    if isinstance(expected, dict):
        return (
            isinstance(parsed, dict)
            and parsed.keys() == expected.keys()
            and all(same_resp3(parsed[k], v) for k, v in expected.items())
        )
    return type(parsed) is type(expected) and parsed == expected


@FAST
@given(resp3_replies)
def test_resp3_replies_round_trip(reply):
    [parsed] = parse_replies(encode(reply, 3))
    assert same_resp3(parsed, as_parsed_resp3(reply))


def test_resp3_special_doubles_parse():
    inf, minus_inf, nan = parse_replies(encode(math.inf, 3) + encode(-math.inf, 3) + encode(math.nan, 3))
    assert inf == math.inf and minus_inf == -math.inf and math.isnan(nan)


def test_encode_bulks_is_encode_command_without_the_header():
    args = [b"GET", b"", b"k" * 1500]
    assert b"*3\r\n" + encode_bulks(args) == encode_command(args)
