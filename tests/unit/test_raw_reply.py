"""Replies the proxy forwards as bytes: finding their ends in a stream, and converting them for RESP3."""

from hypothesis import given
from hypothesis import strategies as st

from kvcommon.resp import ErrorReply, RawReply, Status, encode, reply_end

values = st.recursive(
    st.one_of(st.binary(max_size=20), st.none(), st.integers(-(2**63), 2**63 - 1),
              st.text(max_size=10).map(lambda t: Status(t.replace("\r", "").replace("\n", ""))),
              st.text(max_size=10).map(lambda t: ErrorReply("ERR " + t.replace("\r", "").replace("\n", "")))),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=20,
)


@given(st.lists(values, min_size=1, max_size=5), st.integers(0, 200))
def test_reply_end_splits_a_stream_into_its_replies_whatever_arrived(replies, cut):
    stream = b"".join(encode(r, 2) for r in replies)
    cut = min(cut, len(stream))
    pos, found = 0, []
    while (end := reply_end(stream[:cut], pos)) > 0:
        found.append(stream[pos:end])
        pos = end
    complete = []
    pos = 0
    for r in replies:
        raw = encode(r, 2)
        if pos + len(raw) <= cut:
            complete.append(raw)
        pos += len(raw)
    assert found == complete


@given(values)
def test_raw_replies_keep_their_meaning(reply):
    raw = RawReply(encode(reply, 2))
    assert encode(raw, 2) == encode(reply, 2), "RESP2 clients get the node's bytes unchanged"
    if not isinstance(reply, list):
        assert encode(raw, 3) == encode(reply, 3)


def test_a_status_stays_a_status_and_errors_are_recognised():
    assert encode(RawReply(b"+OK\r\n"), 3) == b"+OK\r\n"
    assert RawReply(b"+OK\r\n").value() == Status("OK")
    assert RawReply(b"-NOTPRIMARY partition 1\r\n").is_error
    assert not RawReply(b"$2\r\nOK\r\n").is_error
    assert encode(RawReply(b"*2\r\n$1\r\na\r\n$-1\r\n"), 3) == b"*2\r\n$1\r\na\r\n_\r\n"


@given(st.lists(values, min_size=1, max_size=6), st.lists(st.integers(1, 40), max_size=20))
def test_a_node_connection_hands_each_reply_to_its_request_however_the_stream_is_cut(replies, sizes):
    from twisted.internet.testing import StringTransport

    from kvproxy.pool import NodeConnection

    conn = NodeConnection("a")
    conn.transport = StringTransport()
    got = []
    for _ in replies:
        conn.send(b"", 0.0, got.append)
    stream = b"".join(encode(r, 2) for r in replies)
    pos = 0
    for size in [*sizes, len(stream)]:  # reads of the given sizes, then the rest
        conn.dataReceived(stream[pos:pos + size])
        pos += size
    assert got == [encode(r, 2) for r in replies]
    assert all(type(reply) is RawReply for reply in got)
    assert not conn.waiting and not conn.buffer
