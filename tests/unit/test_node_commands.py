"""The command handlers over a CommandContext, without I/O: expiry, compare-and-set, what a command writes.

The replies of every command are also compared with a real Redis's in tests/integration/test_redis_compat.py;
here the clock is in the test's hands, and the writes a command records are looked at directly.
"""

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvcommon.errors import CommandError
from kvcommon.resp import OK, Status
from kvcommon.strings import _LcsTable, glob_match, lcs_command, literal_prefix, string_to_ll
from kvnode import longdouble
from kvnode.commands import HANDLERS, CommandContext
from kvnode.scan import ScanCursors, merge_items
from kvnode.storage.records import decode_value, encode_value

NOW = 1_700_000_000_000


class Partition:
    """One partition's data in a dict, and a clock; ``run`` applies a command's changes as the node does."""

    def __init__(self):
        self.data: dict[bytes, bytes] = {}
        self.now = NOW
        self.cursors = ScanCursors()
        self.last_changes: dict[bytes, bytes | None] = {}

    def items(self, start: bytes, reverse: bool):
        return iter(sorted(((k, v) for k, v in self.data.items() if k >= start), reverse=reverse))

    def run(self, *args):
        args = [a if isinstance(a, bytes) else str(a).encode("latin-1") for a in args]
        ctx = CommandContext(self.data.get, self.now, 7, items=self.items, cursors=self.cursors)
        reply = HANDLERS[args[0].lower()](ctx, args)
        self.last_changes = ctx.changes()
        for key, raw in self.last_changes.items():
            if raw is None:
                self.data.pop(key, None)
            else:
                self.data[key] = raw
        return reply

    def expire_at(self, key: bytes) -> int:
        return decode_value(self.data[key]).expire_at_ms


@pytest.fixture
def p():
    return Partition()


# -- expiry ------------------------------------------------------------------------------------------------

def test_an_expiry_is_stored_as_an_absolute_time(p):
    p.run("SET", "k", "v", "EX", "100")
    assert p.expire_at(b"k") == NOW + 100_000
    p.now += 60_000
    assert p.run("TTL", "k") == 40
    p.run("SET", "k", "v", "KEEPTTL")
    assert p.expire_at(b"k") == NOW + 100_000, "KEEPTTL keeps the time, it does not restart the TTL"
    p.run("SET", "k", "v")
    assert p.expire_at(b"k") == 0


def test_an_expired_key_is_absent_for_every_command_and_deleted_by_the_first_that_touches_it(p):
    p.run("SET", "k", "10", "PX", "50")
    p.run("SET", "other", "x")
    p.now += 50
    for command in (("GET", "k"), ("EXISTS", "k"), ("TTL", "k"), ("STRLEN", "k"), ("TYPE", "k")):
        p.data[b"k"] = encode_value(1, b"10", NOW + 50)
        reply = p.run(*command)
        assert reply in (None, 0, -2, Status("none")), command
        assert p.last_changes == {b"k": None}, f"{command} deletes the expired key"
    p.data[b"k"] = encode_value(1, b"10", NOW + 50)
    assert p.run("KEYS", "*") == [b"other"] and b"k" not in p.data
    p.data[b"k"] = encode_value(1, b"10", NOW + 50)
    assert p.run("INCR", "k") == 1, "an expired counter starts again from 0"
    assert p.expire_at(b"k") == 0
    p.data[b"k"] = encode_value(1, b"abc", NOW + 50)
    assert p.run("SETNX", "k", "new") == 1


def test_a_past_expiry_deletes_the_key_at_once(p):
    p.run("SET", "k", "v")
    assert p.run("SET", "k", "v", "PXAT", NOW - 1) == OK
    assert b"k" not in p.data
    p.run("SET", "k", "v")
    assert p.run("EXPIRE", "k", "-1") == 1 and b"k" not in p.data
    p.run("SET", "k", "v")
    assert p.run("GETEX", "k", "EXAT", "1") == b"v" and b"k" not in p.data


def test_expire_conditions(p):
    p.run("SET", "k", "v")
    assert p.run("EXPIRE", "k", "100", "XX") == 0
    assert p.run("EXPIRE", "k", "100", "GT") == 0, "no expiry counts as infinite"
    assert p.run("EXPIRE", "k", "100", "LT") == 1
    assert p.run("EXPIRE", "k", "50", "NX") == 0
    assert p.run("EXPIRE", "k", "200", "GT") == 1 and p.expire_at(b"k") == NOW + 200_000
    assert p.run("PEXPIREAT", "k", NOW + 300_000, "LT") == 0
    assert p.run("PERSIST", "k") == 1 and p.expire_at(b"k") == 0
    with pytest.raises(CommandError, match="not compatible"):
        p.run("EXPIRE", "k", "1", "NX", "LT")
    with pytest.raises(CommandError, match="Unsupported option bad"):
        p.run("EXPIRE", "k", "1", "bad")


@pytest.mark.parametrize("command", [
    ("SET", "k", "v", "EX", "0"), ("SET", "k", "v", "PX", "-5"), ("SETEX", "k", "9223372036854775807", "v"),
    ("PSETEX", "k", "9223372036854775807", "v"), ("EXPIRE", "k", "9223372036854775807"),
])
def test_invalid_expiry_times_name_the_command(p, command):
    p.run("SET", "k", "v")
    with pytest.raises(CommandError, match=f"invalid expire time in '{command[0].lower()}' command"):
        p.run(*command)


def test_a_plain_set_reads_nothing_and_its_options_read_the_old_value(p):
    p.run("SET", "k", "old", "EX", "100")
    reads = []

    def reader(key):
        reads.append(key)
        return p.data.get(key)

    def run(*args):
        ctx = CommandContext(reader, p.now, 8)
        reply = HANDLERS[b"set"](ctx, [a.encode() for a in args])
        return reply, ctx.changes()

    reply, changes = run("SET", "k", "new")
    assert reply == OK and reads == [] and decode_value(changes[b"k"]).expire_at_ms == 0, "the TTL goes too"
    for option in (["NX"], ["XX"], ["GET"], ["KEEPTTL"], ["IFEQ", "old"]):
        reads.clear()
        run("SET", "k", "new", *option)
        assert reads == [b"k"], option


# -- compare-and-set ---------------------------------------------------------------------------------------

def test_set_ifeq_sets_only_over_an_equal_value(p):
    assert p.run("SET", "k", "new", "IFEQ", "old") is None
    assert b"k" not in p.data, "a missing key never equals the comparison"
    p.run("SET", "k", "old", "EX", "100")
    assert p.run("SET", "k", "new", "IFEQ", "other") is None and p.run("GET", "k") == b"old"
    assert p.run("SET", "k", "new", "IFEQ", "old", "GET", "KEEPTTL") == b"old"
    assert p.run("GET", "k") == b"new" and p.expire_at(b"k") == NOW + 100_000
    assert p.run("SET", "k", "x", "IFEQ", "nope", "GET") == b"new", "GET answers the value even when not set"
    for bad in (["IFEQ"], ["NX", "IFEQ", "a"], ["IFEQ", "a", "XX"], ["IFEQ", "a", "IFEQ", "a"]):
        with pytest.raises(CommandError, match="syntax error"):
            p.run("SET", "k", "v", *bad)


# -- what read-modify-write commands replicate ---------------------------------------------------------------

@pytest.mark.parametrize("command,value,keeps_ttl", [
    (("INCRBY", "k", "5"), b"15", True), (("DECR", "k"), b"9", True), (("INCRBYFLOAT", "k", "0.5"), b"10.5", True),
    (("APPEND", "k", "!"), b"10!", True), (("SETRANGE", "k", "1", "x"), b"1x", True),
    (("SETBIT", "k", "15", "1"), b"11", True), (("SET", "k", "z", "GET"), b"z", False),
    (("GETSET", "k", "y"), b"y", False),
])
def test_read_modify_write_commands_record_the_resulting_value(p, command, value, keeps_ttl):
    p.run("SET", "k", "10", "PXAT", NOW + 5000)
    p.run(*command)
    [(key, raw)] = p.last_changes.items()
    record = decode_value(raw)
    assert (key, record.value, record.expire_at_ms) == (b"k", value, NOW + 5000 if keeps_ttl else 0)
    assert record.version == 7, "the record carries the primary's version for the write"


def test_setbit_writes_only_when_the_bit_changes(p):
    p.run("SET", "k", "\x01")
    assert p.run("SETBIT", "k", "7", "1") == 1 and p.last_changes == {}
    assert p.run("SETBIT", "k", "7", "0") == 1 and p.run("GET", "k") == b"\x00"


def test_counter_errors(p):
    p.run("SET", "big", "9223372036854775807")
    with pytest.raises(CommandError, match="increment or decrement would overflow"):
        p.run("INCR", "big")
    p.run("SET", "text", "12a")
    with pytest.raises(CommandError, match="value is not an integer or out of range"):
        p.run("INCR", "text")
    with pytest.raises(CommandError, match="value is not a valid float"):
        p.run("INCRBYFLOAT", "text", "1")
    p.run("SET", "f", "1e4932")
    with pytest.raises(CommandError, match="increment would produce NaN or Infinity"):
        p.run("INCRBYFLOAT", "f", "1e4932")


# -- multi-key commands on one partition ---------------------------------------------------------------------

def test_rename_and_copy_keep_the_expiry_and_msetnx_is_all_or_nothing(p):
    p.run("SET", "a", "1", "PX", "5000")
    assert p.run("RENAME", "a", "b") == OK and b"a" not in p.data and p.expire_at(b"b") == NOW + 5000
    assert p.run("COPY", "b", "c") == 1 and p.expire_at(b"c") == NOW + 5000
    assert p.run("RENAMENX", "b", "c") == 0
    assert p.run("MSETNX", "x", "1", "c", "2") == 0 and b"x" not in p.data
    assert p.run("MSETNX", "x", "1", "y", "2") == 1
    with pytest.raises(CommandError, match="DB index is out of range"):
        p.run("COPY", "b", "d", "DB", "1")


def test_bitop_writes_the_result_without_expiry_or_deletes_an_empty_one(p):
    p.run("SET", "a", "\xf0")
    p.run("SET", "d", "old", "PX", "5000")
    assert p.run("BITOP", "NOT", "d", "a") == 1
    assert p.run("GET", "d") == b"\x0f" and p.expire_at(b"d") == 0
    assert p.run("BITOP", "AND", "d", "missing") == 0 and b"d" not in p.data


# -- the whole partition -------------------------------------------------------------------------------------

def scan_all(p, count=3, pattern=None):
    seen, token = [], 0
    while True:
        args = ["KV.SCAN", token, count] + ([pattern] if pattern else [])
        token, keys = p.run(*args)
        seen += keys
        if token == 0:
            return seen


def test_scan_walks_the_partition_in_order_resuming_after_the_last_key(p):
    for i in range(10):
        p.run("SET", f"k{i}", "v")
    assert scan_all(p) == [f"k{i}".encode() for i in range(10)]
    assert scan_all(p, pattern="k[1-3]") == [b"k1", b"k2", b"k3"]
    token, first = p.run("KV.SCAN", 0, 4)
    assert first == [b"k0", b"k1", b"k2", b"k3"] and token
    p.run("DEL", "k1")
    p.run("SET", "a-new-key-before-the-position", "v")
    p.run("SET", "k4", "v", "PX", "1")
    p.now += 1
    _, rest = p.run("KV.SCAN", token, 100)
    assert rest == [b"k5", b"k6", b"k7", b"k8", b"k9"], "resumes after k3; the expired k4 is skipped"


def test_an_unknown_scan_token_restarts_the_partition(p):
    for i in range(5):
        p.run("SET", f"k{i}", "v")
    assert p.run("KV.SCAN", 12345, 2)[1] == [b"k0", b"k1"]
    token, _ = p.run("KV.SCAN", 0, 2)
    other = CommandContext(p.data.get, p.now, 0, partition=1, items=p.items, cursors=p.cursors)
    assert HANDLERS[b"kv.scan"](other, [b"KV.SCAN", b"%d" % token, b"2"])[1] == [b"k0", b"k1"], \
        "a token of another partition is unknown here"


def test_scan_positions_are_bounded():
    cursors = ScanCursors(capacity=2)
    tokens = [cursors.remember(0, b"k%d" % i) for i in range(3)]
    assert len(cursors) == 2
    assert cursors.position(0, tokens[0]) is None
    assert cursors.position(0, tokens[2]) == b"k2"
    assert all(0 < t < 2**47 for t in tokens)


def test_randomkey_keys_and_flushall(p):
    assert p.run("RANDOMKEY") is None
    for k in ("a", "m", "z"):
        p.run("SET", k, "v")
    p.run("SET", "expired", "v", "PX", "1")
    p.now += 1
    assert {p.run("RANDOMKEY") for _ in range(50)} <= {b"a", b"m", b"z"}
    assert p.run("KEYS", "[am]") == [b"a", b"m"]
    assert p.run("FLUSHALL") == OK and p.data == {}


@given(st.lists(st.tuples(st.binary(max_size=3), st.one_of(st.none(), st.binary(max_size=2))), max_size=8),
       st.dictionaries(st.binary(max_size=3), st.binary(max_size=2), max_size=8), st.booleans())
def test_merged_items_are_the_stored_items_overlaid_by_the_pending_writes(pending, stored, reverse):
    pending = dict(pending)
    expected = {**stored, **pending}
    expected = sorted(((k, v) for k, v in expected.items() if v is not None), reverse=reverse)
    merged = merge_items(iter(sorted(stored.items(), reverse=reverse)), sorted(pending.items(), reverse=reverse),
                         reverse)
    assert list(merged) == expected


# -- Redis's number parsing and formatting -------------------------------------------------------------------

def test_string_to_ll_is_strict():
    assert [string_to_ll(s) for s in (b"0", b"-1", b"9223372036854775807", b"-9223372036854775808")] == [
        0, -1, 2**63 - 1, -(2**63)]
    for bad in (b"", b"-0", b"007", b"+1", b" 1", b"1 ", b"9223372036854775808", b"1.0", b"\xd9\xa1"):
        assert string_to_ll(bad) is None, bad


@pytest.mark.parametrize("start,increment,result", [
    # Replies of Redis 7.0 on x86-64, where a long double has a 64-bit significand.
    (b"10.5", b"0.1", b"10.6"), (b"5003", b"1.23456789012345678901", b"5004.23456789012345691"),
    (b"0", b"-0.0", b"0"), (b"0", b"1e-20", b"0"), (b"0", b"-1e-20", b"0"), (b"1", b"0x1p-3", b"1.125"),
    (b"3.0", b"1e17", b"100000000000000003"), (b"1e308", b"1e308", b"19999999999999999999337175931169129132112019969"
     b"48311344155940959898434697376761237442002538437770786408934944501080264463042694991879211671948416288603928"
     b"37535918200039206381557326219209014213335878306791577877829121087126122536729803237260434173178506889763247"
     b"582601711514636284849020905456510092687857156096"),
])
def test_incrbyfloat_arithmetic_is_long_double(start, increment, result):
    total = longdouble.add(longdouble.parse(start), longdouble.parse(increment))
    assert longdouble.format_human(total) == result


def test_long_double_parsing_follows_strtold_and_string2ld():
    for bad in (b"", b" 1", b"1 ", b"nan", b"1e-5000", b"1e5000", b"0x", b"1e", b".", b"1,5", b"1" * 5120):
        assert longdouble.parse(bad) is None, bad
    assert longdouble.parse(b"inf") == longdouble.INFINITY
    assert longdouble.parse(b"-Infinity") == -longdouble.INFINITY
    assert longdouble.parse(b"0x10") == 16 and longdouble.parse(b".5") == Fraction(1, 2)
    assert longdouble.parse(b"1e-4950") > 0, "a subnormal is a valid result"
    assert longdouble.add(longdouble.INFINITY, -longdouble.INFINITY) is None
    # 2**64 + 1 needs 65 bits: it rounds to even.
    assert longdouble.round_to_format(Fraction(2**64 + 1)) == 2**64
    assert longdouble.round_to_format(Fraction(2**64 + 3)) == 2**64 + 4


# -- glob patterns and LCS --------------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern,string,matches", [
    (b"*", b"", True), (b"h?llo", b"hello", True), (b"h*llo", b"heeello", True), (b"h[ae]llo", b"hallo", True),
    (b"h[^e]llo", b"hello", False), (b"h[a-b]llo", b"hbllo", True), (b"h[b-a]llo", b"hallo", True),
    (b"a\\*b", b"a*b", True), (b"a\\*b", b"axb", False), (b"[a-", b"a", True), (b"user:\\", b"user:", False),
    (b"*a*b*c*", b"xaybzc", True), (b"a*", b"b", False), (b"[\\]]", b"]", True), (b"", b"", True),
])
def test_glob_match_follows_redis(pattern, string, matches):
    assert glob_match(pattern, string) is matches


def test_literal_prefix_stops_at_the_first_wildcard():
    assert literal_prefix(b"{user1}:*") == b"{user1}:"
    assert literal_prefix(b"a\\*b?") == b"a*b"


def _lcs_lengths(a: bytes, b: bytes):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = table[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(table[i - 1][j], table[i][j - 1])
    return table


@given(st.binary(max_size=12).map(lambda b: bytes(x % 3 for x in b)),
       st.binary(max_size=12).map(lambda b: bytes(x % 3 for x in b)))
def test_the_bit_parallel_lcs_table_equals_the_dynamic_programming_one(a, b):
    expected = _lcs_lengths(a, b)
    table = _LcsTable(a, b)
    # The traceback asks for lengths moving back through the table; so does this walk.
    for i in range(len(a), -1, -1):
        for j in range(len(b), -1, -1):
            assert table.length(i, j) == expected[i][j]


def test_lcs_replies():
    assert lcs_command(b"ohmytext", b"mynewtext", []) == b"mytext"
    assert lcs_command(b"ohmytext", b"mynewtext", [b"LEN"]) == 6
    assert lcs_command(b"ohmytext", b"mynewtext", [b"IDX", b"MINMATCHLEN", b"4", b"WITHMATCHLEN"]) == {
        b"matches": [[[4, 7], [5, 8], 4]], b"len": 6}
