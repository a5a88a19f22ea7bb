"""Our replies against a real Redis's, byte for byte, for the same command sequences, in RESP2 and RESP3.

One Redis (Debian's redis-server, the reference: 7.0) and one cluster serve the whole module. Each
scenario starts from an empty keyspace on both. Keys of multi-key commands share a {hash tag}, so they are
in one partition as those commands require; keys without a tag spread over the partitions.
"""

from __future__ import annotations

import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvcommon.hashing import partition_for
from kvmeta.local import LocalCluster
from tests.integration.reference import RawClient, RedisServer, parse

PROTOCOLS = [2, 3]
PARTITIONS = 4


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, zookeeper):
    local = LocalCluster(tmp_path_factory.mktemp("compat"), nodes=3, partitions=PARTITIONS, zk=zookeeper.address,
                         cluster=f"compat-{uuid.uuid4().hex[:8]}", proxy_port=0)
    try:
        local.up()
        yield local
    finally:
        local.down()


class Pair:
    """Connections to our proxy and to Redis that receive the same commands."""

    def __init__(self, cluster: LocalCluster, redis_server: RedisServer, protocol: int):
        host, port = cluster.proxy_addresses[0].rsplit(":", 1)
        self.ours = RawClient(host, int(port), protocol)
        self.theirs = RawClient("127.0.0.1", redis_server.port, protocol)
        self.protocol = protocol

    def run(self, *args) -> tuple[bytes, bytes]:
        return self.ours.call(*args), self.theirs.call(*args)

    def check(self, *args) -> bytes:
        """Run a command on both and assert that the replies agree; returns ours."""
        ours, theirs = self.run(*args)
        assert agree(args, ours, theirs), f"{args!r} (RESP{self.protocol}): ours {ours!r}, Redis {theirs!r}"
        return ours

    def reset(self) -> None:
        assert self.run("FLUSHALL") == (b"+OK\r\n", b"+OK\r\n")

    def close(self) -> None:
        self.ours.close()
        self.theirs.close()


# Commands whose replies depend on the moment they run: the two servers run them a few ms apart.
_CLOCK_TOLERANCE = {b"TTL": 1, b"EXPIRETIME": 1, b"PTTL": 2000, b"PEXPIRETIME": 2000}


def agree(args, ours: bytes, theirs: bytes) -> bool:
    name = str(args[0]).upper().encode()
    if ours == theirs:
        return True
    if name in _CLOCK_TOLERANCE and ours[:1] == theirs[:1] == b":":
        a, b = int(ours[1:-2]), int(theirs[1:-2])
        return (a >= 0) == (b >= 0) and abs(a - b) <= _CLOCK_TOLERANCE[name]
    if name == b"KEYS":
        return sorted(parse(ours)) == sorted(parse(theirs))
    return False


@pytest.fixture(params=PROTOCOLS, ids=["resp2", "resp3"])
def pair(request, cluster, redis_server):
    p = Pair(cluster, redis_server, request.param)
    p.reset()
    yield p
    p.close()


FUTURE_S = "4102444800"  # 2100-01-01
FUTURE_MS = "4102444800123"
BIG = "9223372036854775807"

SCENARIOS = {
    "set": [
        ("SET", "k", "v"), ("GET", "k"), ("SET", "k", "w", "GET"), ("SET", "k", "x", "NX"), ("GET", "k"),
        ("SET", "k", "x", "XX", "GET"), ("SET", "n", "x", "XX"), ("SET", "n", "x", "NX", "GET"), ("GET", "n"),
        ("SET", "n", "y", "NX", "GET"), ("SET", "k", "v", "EX", "100"), ("TTL", "k"), ("SET", "k", "v", "KEEPTTL"),
        ("TTL", "k"), ("SET", "k", "v"), ("TTL", "k"), ("SET", "k", "v", "PX", "100000"), ("PTTL", "k"),
        ("SET", "k", "v", "EXAT", FUTURE_S), ("EXPIRETIME", "k"), ("SET", "k", "v", "PXAT", FUTURE_MS),
        ("PEXPIRETIME", "k"), ("SET", "k", "v", "EXAT", "1"), ("GET", "k"), ("EXISTS", "k"),
        ("SET", "k", "v", "ex", "10", "EX", "20"), ("TTL", "k"), ("SET", "k", "v", "nx", "nx"),
        ("SET", "k", "v2", "get", "get", "xx"), ("SET", "k", "v", "EX", "0"), ("SET", "k", "v", "EX", "-1"),
        ("SET", "k", "v", "EX", "abc"), ("SET", "k", "v", "EX", BIG), ("SET", "k", "v", "PX", BIG),
        ("SET", "k", "v", "EXAT", "9223372036854776"), ("SET", "k", "v", "NX", "XX"),
        ("SET", "k", "v", "EX", "10", "PX", "10"), ("SET", "k", "v", "KEEPTTL", "EX", "10"), ("SET", "k", "v", "EX"),
        ("SET", "k", "v", "foo"), ("SET", "k"), ("SET", "k", "v", "EX", "1.5"), ("SET", "k", "v", "PERSIST"),
        ("SET", "", ""), ("GET", ""), ("GET", "k", "x"),
    ],
    "setnx-setex-psetex": [
        ("SETNX", "k", "1"), ("SETNX", "k", "2"), ("GET", "k"), ("SETEX", "k", "100", "v"), ("TTL", "k"),
        ("SETEX", "k", "0", "v"), ("SETEX", "k", "-5", "v"), ("SETEX", "k", "x", "v"), ("SETEX", "k", BIG, "v"),
        ("PSETEX", "k", "100000", "w"), ("PTTL", "k"), ("GET", "k"), ("PSETEX", "k", "0", "w"), ("SETNX", "k"),
        ("SETEX", "k", "10"),
    ],
    "getset-getdel-getex": [
        ("GETSET", "k", "1"), ("GETSET", "k", "2"), ("SET", "t", "v", "EX", "100"), ("GETSET", "t", "w"),
        ("TTL", "t"), ("GETDEL", "k"), ("GETDEL", "k"), ("EXISTS", "k"), ("GETEX", "missing"),
        ("GETEX", "missing", "EX", "-1"), ("SET", "k", "v"), ("GETEX", "k"), ("GETEX", "k", "EX", "100"),
        ("TTL", "k"), ("GETEX", "k", "PERSIST"), ("TTL", "k"), ("GETEX", "k", "PX", "200000"), ("PTTL", "k"),
        ("GETEX", "k", "EXAT", FUTURE_S), ("EXPIRETIME", "k"), ("GETEX", "k", "PXAT", FUTURE_MS),
        ("PEXPIRETIME", "k"), ("GETEX", "k", "EX", "0"), ("GETEX", "k", "EX", "abc"),
        ("GETEX", "k", "EX", "10", "PERSIST"), ("GETEX", "k", "PERSIST", "PERSIST"), ("GETEX", "k", "KEEPTTL"),
        ("GETEX", "k", "NX"), ("GETEX", "k", "GET"), ("GETEX", "k", "EXAT", "1"), ("EXISTS", "k"),
    ],
    "msetnx-mset-mget": [
        ("MSETNX", "{t}a", "1", "{t}b", "2"), ("MGET", "{t}a", "{t}b", "{t}c"), ("MSETNX", "{t}c", "3", "{t}a", "9"),
        ("MGET", "{t}a", "{t}c"), ("MSETNX", "{t}c", "1", "{t}c", "2"), ("GET", "{t}c"), ("MSETNX", "{t}a"),
        ("MSETNX", "{t}a", "1", "{t}b"), ("MSET", "{t}a", "x", "b", "y", "c", "z"), ("MGET", "{t}a", "b", "c", "d"),
        ("MSET", "a"),
    ],
    "append-strlen": [
        ("APPEND", "k", "hello"), ("APPEND", "k", " world"), ("GET", "k"), ("STRLEN", "k"), ("STRLEN", "missing"),
        ("SET", "t", "v", "EX", "100"), ("APPEND", "t", "w"), ("TTL", "t"), ("APPEND", "e", ""), ("EXISTS", "e"),
        ("APPEND", "k"), ("STRLEN", "k", "k"),
    ],
    "getrange-substr": [
        ("SET", "k", "Hello World"), ("GETRANGE", "k", "0", "4"), ("GETRANGE", "k", "-5", "-1"),
        ("GETRANGE", "k", "0", "-100"), ("GETRANGE", "k", "-1", "-5"), ("GETRANGE", "k", "5", "2"),
        ("GETRANGE", "k", "100", "200"), ("GETRANGE", "k", "-100", "100"), ("GETRANGE", "k", "a", "1"),
        ("GETRANGE", "k", "1", "b"), ("GETRANGE", "missing", "0", "-1"), ("GETRANGE", "missing", "x", "y"),
        ("SUBSTR", "k", "2", "5"), ("SUBSTR", "k", "-3", "-1"), ("SET", "e", ""), ("GETRANGE", "e", "0", "-1"),
        ("GETRANGE", "k", "0"), ("GETRANGE", "k", "0", BIG), ("GETRANGE", "k", "-9223372036854775808", "3"),
    ],
    "setrange": [
        ("SETRANGE", "k", "0", "hello"), ("SETRANGE", "k", "3", "XYZW"), ("GET", "k"), ("SETRANGE", "k", "10", "!"),
        ("GET", "k"), ("SETRANGE", "k", "2", ""), ("SETRANGE", "n", "5", ""), ("EXISTS", "n"),
        ("SETRANGE", "n", "3", "x"), ("GET", "n"), ("SETRANGE", "k", "-1", "x"), ("SETRANGE", "k", "a", "x"),
        ("SETRANGE", "k", "536870912", "x"), ("SETRANGE", "k", "536870911", "xx"), ("SETRANGE", "z", "536870912", ""),
        ("SET", "t", "abc", "EX", "100"), ("SETRANGE", "t", "1", "Z"), ("TTL", "t"), ("SETRANGE", "k", "1"),
    ],
    "incr-decr": [
        ("INCR", "n"), ("INCR", "n"), ("DECR", "n"), ("INCRBY", "n", "10"), ("DECRBY", "n", "-5"),
        ("INCRBY", "n", "-100"), ("GET", "n"), ("SET", "s", "abc"), ("INCR", "s"), ("SET", "s", "007"), ("INCR", "s"),
        ("SET", "s", " 1"), ("INCR", "s"), ("SET", "s", "+1"), ("INCR", "s"), ("SET", "s", "-0"), ("DECR", "s"),
        ("SET", "s", "1.5"), ("INCRBY", "s", "1"), ("SET", "m", BIG), ("INCR", "m"), ("DECRBY", "m", "-1"),
        ("SET", "m", "-9223372036854775808"), ("DECR", "m"), ("INCRBY", "m", "-1"), ("INCRBY", "n", "abc"),
        ("INCRBY", "n", "9223372036854775808"), ("DECRBY", "x", "-9223372036854775808"),
        ("INCRBY", "y", "-9223372036854775808"), ("GET", "y"), ("SET", "t", "5", "EX", "100"), ("INCR", "t"),
        ("TTL", "t"), ("INCRBY", "n"), ("INCR", "n", "1"), ("SET", "big", "99999999999999999999"), ("INCR", "big"),
        ("SET", "e", ""), ("INCR", "e"),
    ],
    "incrbyfloat": [
        ("INCRBYFLOAT", "f", "10.5"), ("INCRBYFLOAT", "f", "0.1"), ("INCRBYFLOAT", "f", "-5"),
        ("INCRBYFLOAT", "f", "5.0e3"), ("INCRBYFLOAT", "f", "1.23456789012345678901"), ("GET", "f"),
        ("INCRBYFLOAT", "f", "abc"), ("INCRBYFLOAT", "f", " 1"), ("INCRBYFLOAT", "f", "1 "),
        ("INCRBYFLOAT", "f", "inf"), ("INCRBYFLOAT", "f", "-inf"), ("INCRBYFLOAT", "f", "nan"),
        ("INCRBYFLOAT", "f", "0x10"), ("INCRBYFLOAT", "f", "1e-5000"), ("INCRBYFLOAT", "f", ""),
        ("SET", "g", "1e308"), ("INCRBYFLOAT", "g", "1e308"), ("INCRBYFLOAT", "g", "1e4000"),
        ("INCRBYFLOAT", "g", "1e4933"), ("SET", "z", "0"), ("INCRBYFLOAT", "z", "-0.0"),
        ("INCRBYFLOAT", "z", "1e-20"), ("INCRBYFLOAT", "z", "-1e-20"), ("INCRBYFLOAT", "z", "1e-4950"),
        ("SET", "s", "x"), ("INCRBYFLOAT", "s", "1"), ("SET", "t", "1.5", "EX", "100"), ("INCRBYFLOAT", "t", "2.25"),
        ("TTL", "t"), ("INCRBYFLOAT", "t"), ("SET", "p", "3.0"), ("INCRBYFLOAT", "p", "1e17"),
        ("INCRBYFLOAT", "p", "0.3"), ("INCRBYFLOAT", "p", "1E2"), ("INCRBYFLOAT", "q", ".5"),
        ("INCRBYFLOAT", "q", "5."), ("INCRBYFLOAT", "q", "."), ("INCRBYFLOAT", "q", "1e"),
        ("INCRBYFLOAT", "q", "0x1p-3"), ("INCRBYFLOAT", "q", "INFINITY"), ("INCRBYFLOAT", "q", "-1e-30"),
    ],
    "lcs": [
        ("MSET", "{t}a", "ohmytext", "{t}b", "mynewtext"), ("LCS", "{t}a", "{t}b"), ("LCS", "{t}a", "{t}b", "LEN"),
        ("LCS", "{t}a", "{t}b", "IDX"), ("LCS", "{t}a", "{t}b", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN"),
        ("LCS", "{t}a", "{t}b", "IDX", "WITHMATCHLEN"), ("LCS", "{t}a", "{t}b", "LEN", "IDX"),
        ("LCS", "{t}a", "{t}b", "foo"), ("LCS", "{t}a", "{t}b", "MINMATCHLEN"),
        ("LCS", "{t}a", "{t}b", "MINMATCHLEN", "x"), ("LCS", "{t}a", "{t}missing"),
        ("LCS", "{t}a", "{t}missing", "IDX"), ("LCS", "{t}a", "{t}b", "IDX", "MINMATCHLEN", "-3"),
        ("LCS", "{t}a", "{t}a", "IDX"), ("LCS", "{t}a"),
    ],
    "setbit-getbit": [
        ("SETBIT", "b", "7", "1"), ("GET", "b"), ("SETBIT", "b", "7", "1"), ("SETBIT", "b", "7", "0"),
        ("SETBIT", "b", "100", "1"), ("STRLEN", "b"), ("GETBIT", "b", "100"), ("GETBIT", "b", "99"),
        ("GETBIT", "b", "100000"), ("GETBIT", "missing", "0"), ("SETBIT", "b", "-1", "1"), ("SETBIT", "b", "x", "1"),
        ("SETBIT", "b", "4294967296", "1"), ("SETBIT", "b", "1", "2"), ("SETBIT", "b", "1", "-1"),
        ("SETBIT", "b", "1", "01"), ("GETBIT", "b", "x"), ("GETBIT", "b", "-1"), ("GETBIT", "missing", "4294967296"),
        ("SETBIT", "c", "0", "0"), ("GET", "c"), ("SET", "t", "a", "EX", "100"), ("SETBIT", "t", "0", "1"),
        ("TTL", "t"), ("SETBIT", "b", "1"),
    ],
    "bitcount": [
        ("SET", "k", "foobar"), ("BITCOUNT", "k"), ("BITCOUNT", "k", "0", "0"), ("BITCOUNT", "k", "1", "1"),
        ("BITCOUNT", "k", "1", "1", "BYTE"), ("BITCOUNT", "k", "5", "30", "BIT"), ("BITCOUNT", "k", "-1", "-2"),
        ("BITCOUNT", "k", "-2", "-1", "bit"), ("BITCOUNT", "k", "0", "-1", "BIT"), ("BITCOUNT", "k", "1"),
        ("BITCOUNT", "k", "1", "1", "foo"), ("BITCOUNT", "k", "x", "1"), ("BITCOUNT", "k", "-1", "-2", "foo"),
        ("BITCOUNT", "k", "0", "1", "bit", "x"), ("BITCOUNT", "missing", "a", "b"), ("BITCOUNT", "missing"),
        ("SET", "e", ""), ("BITCOUNT", "e"), ("BITCOUNT", "e", "0", "-1", "BIT"), ("BITCOUNT", "k", "3", "1"),
        ("BITCOUNT", "k", "0", BIG, "BIT"), ("BITCOUNT", "k", "-100", "100"),
    ],
    "bitpos": [
        ("SET", "k", "\xff\xf0\x00"), ("BITPOS", "k", "0"), ("BITPOS", "k", "1"), ("BITPOS", "k", "0", "1"),
        ("BITPOS", "k", "1", "2"), ("BITPOS", "k", "0", "2", "-1"), ("BITPOS", "k", "1", "2", "-1"),
        ("BITPOS", "k", "1", "7", "15", "BIT"), ("BITPOS", "k", "0", "8", "15", "BIT"),
        ("BITPOS", "k", "0", "0", "7", "bit"), ("BITPOS", "k", "0", "0", "-1", "BYTE"),
        ("BITPOS", "k", "1", "20", "-1", "BIT"), ("BITPOS", "k", "2"), ("BITPOS", "k", "x"),
        ("BITPOS", "k", "1", "x"), ("BITPOS", "k", "1", "0", "x"), ("BITPOS", "k", "1", "0", "0", "foo"),
        ("BITPOS", "k", "1", "0", "0", "bit", "x"), ("BITPOS", "missing", "0"), ("BITPOS", "missing", "1"),
        ("BITPOS", "missing", "1", "x"), ("SET", "e", ""), ("BITPOS", "e", "0"), ("BITPOS", "e", "1"),
        ("SET", "z", "\x00\x00"), ("BITPOS", "z", "1"), ("BITPOS", "z", "0", "-1"), ("SET", "o", "\xff\xff"),
        ("BITPOS", "o", "0"), ("BITPOS", "o", "0", "0"), ("BITPOS", "o", "0", "0", "-1"),
        ("BITPOS", "o", "0", "3", "12", "BIT"), ("BITPOS", "k", "1", "-3", "-2", "bit"),
        ("BITPOS", "k", "0", "5", "3"),
    ],
    "bitop": [
        ("MSET", "{t}a", "\xff\x0f", "{t}b", "\x0f"), ("BITOP", "AND", "{t}d", "{t}a", "{t}b"), ("GET", "{t}d"),
        ("BITOP", "or", "{t}d", "{t}a", "{t}b"), ("GET", "{t}d"), ("BITOP", "XOR", "{t}d", "{t}a", "{t}b", "{t}x"),
        ("GET", "{t}d"), ("BITOP", "NOT", "{t}d", "{t}a"), ("GET", "{t}d"), ("BITOP", "NOT", "{t}d", "{t}a", "{t}b"),
        ("BITOP", "foo", "{t}d", "{t}a"), ("BITOP", "AND", "{t}d"), ("SET", "{t}e", "x", "EX", "100"),
        ("BITOP", "AND", "{t}e", "{t}a"), ("TTL", "{t}e"), ("BITOP", "NOT", "{t}e", "{t}missing"), ("EXISTS", "{t}e"),
        ("BITOP", "AND", "{t}d", "{t}missing", "{t}a"), ("GET", "{t}d"),
    ],
    "expire": [
        ("SET", "k", "v"), ("EXPIRE", "k", "100"), ("TTL", "k"), ("EXPIRE", "k", "200", "NX"),
        ("EXPIRE", "k", "200", "XX"), ("TTL", "k"), ("EXPIRE", "k", "100", "GT"), ("EXPIRE", "k", "300", "GT"),
        ("TTL", "k"), ("EXPIRE", "k", "400", "LT"), ("EXPIRE", "k", "50", "LT"), ("TTL", "k"), ("PERSIST", "k"),
        ("EXPIRE", "k", "10", "XX"), ("EXPIRE", "k", "10", "GT"), ("EXPIRE", "k", "10", "LT"), ("TTL", "k"),
        ("EXPIRE", "k", "10", "NX", "XX"), ("EXPIRE", "k", "10", "GT", "LT"), ("EXPIRE", "k", "10", "NX", "GT"),
        ("EXPIRE", "k", "10", "foo"), ("EXPIRE", "k", "abc", "foo"), ("EXPIRE", "k", "abc"), ("EXPIRE", "k", BIG),
        ("EXPIRE", "k", "-9223372036854775808"), ("PEXPIRE", "k", BIG), ("PEXPIRE", "k", "9223372036854775000"),
        ("EXPIREAT", "k", "9223372036854775"), ("EXPIRETIME", "k"), ("PEXPIREAT", "k", BIG), ("PEXPIRETIME", "k"),
        ("EXPIRE", "missing", "10"), ("EXPIRE", "missing", "abc"), ("EXPIRE", "k", "10", "nx", "nx"),
        ("PEXPIRE", "k", "100000"), ("PTTL", "k"), ("EXPIREAT", "k", FUTURE_S), ("EXPIRETIME", "k"),
        ("PEXPIREAT", "k", FUTURE_MS), ("PEXPIRETIME", "k"), ("EXPIRE", "k", "0"), ("EXISTS", "k"), ("SET", "k", "v"),
        ("EXPIRE", "k", "-1"), ("GET", "k"), ("SET", "k", "v"), ("EXPIREAT", "k", "1"), ("TTL", "k"), ("EXPIRE", "k"),
    ],
    "ttl-persist-type-touch": [
        ("TTL", "missing"), ("PTTL", "missing"), ("EXPIRETIME", "missing"), ("PEXPIRETIME", "missing"),
        ("SET", "k", "v"), ("TTL", "k"), ("PTTL", "k"), ("EXPIRETIME", "k"), ("PEXPIRETIME", "k"), ("PERSIST", "k"),
        ("PERSIST", "missing"), ("TYPE", "k"), ("TYPE", "missing"), ("TOUCH", "k", "missing", "k"), ("SET", "j", "v"),
        ("TOUCH", "k", "j", "x", "y", "z"), ("TTL", "k", "j"), ("TYPE",), ("TOUCH",),
        ("EXISTS", "k", "j", "k", "missing"), ("UNLINK", "k", "missing"), ("DEL", "j", "j"), ("EXISTS", "k", "j"),
    ],
    "rename-copy": [
        ("SET", "{t}a", "1"), ("RENAME", "{t}a", "{t}b"), ("GET", "{t}b"), ("EXISTS", "{t}a"),
        ("RENAME", "{t}a", "{t}b"), ("RENAME", "{t}b", "{t}b"), ("RENAMENX", "{t}b", "{t}b"),
        ("RENAME", "{t}missing", "{t}missing"), ("SET", "{t}c", "2", "EX", "100"), ("RENAME", "{t}c", "{t}d"),
        ("TTL", "{t}d"), ("RENAMENX", "{t}d", "{t}b"), ("RENAMENX", "{t}d", "{t}e"),
        ("RENAMENX", "{t}missing", "{t}x"), ("MGET", "{t}b", "{t}d", "{t}e"), ("COPY", "{t}b", "{t}f"),
        ("COPY", "{t}b", "{t}f"), ("COPY", "{t}e", "{t}f", "REPLACE"), ("GET", "{t}f"), ("TTL", "{t}f"),
        ("COPY", "{t}b", "{t}b"), ("COPY", "{t}missing", "{t}g"), ("COPY", "{t}b", "{t}g", "DB"),
        ("COPY", "{t}b", "{t}g", "DB", "x"), ("COPY", "{t}b", "{t}g", "DB", "0"), ("COPY", "{t}b", "{t}h", "foo"),
        ("COPY", "{t}b", "{t}h", "DB", "99999999999"), ("COPY", "{t}b"), ("RENAME", "{t}b"),
    ],
    "keys-flush": [
        ("MSET", "user:1", "a", "user:2", "b", "user:10", "c", "job", "d", "a*b", "e", "{t}x", "f"), ("KEYS", "*"),
        ("KEYS", "user:?"), ("KEYS", "user:*"), ("KEYS", "[ja]*"), ("KEYS", "[^u]*"), ("KEYS", "a\\*b"),
        ("KEYS", "user:[0-1]*"), ("KEYS", "nothing*"), ("KEYS", "{t}*"), ("KEYS", "[a-"), ("KEYS", "user:\\"),
        ("KEYS",), ("DBSIZE",), ("FLUSHDB", "foo"), ("FLUSHALL", "SYNC", "x"), ("FLUSHDB", "ASYNC"), ("DBSIZE",),
        ("SET", "k", "v"), ("FLUSHALL", "sync"), ("KEYS", "*"), ("RANDOMKEY",), ("DBSIZE",),
    ],
    "config-get": [
        ("CONFIG", "GET", "maxmemory-policy"), ("CONFIG", "GET", "maxmemory"), ("CONFIG", "GET", "appendonly"),
        ("CONFIG", "GET", "save"), ("CONFIG", "GET", "TIMEOUT"), ("CONFIG", "GET", "nosuch*"),
        ("CONFIG", "GET", "cluster-enable?"),
    ],
    "errors": [
        ("NOSUCHCOMMAND", "a", "b"), ("GET",), ("INCR", "a", "b"), ("SCAN",), ("SCAN", "abc"), ("SCAN", " 1"),
        ("SCAN", "18446744073709551616"), ("SCAN", "0", "COUNT", "0"), ("SCAN", "0", "COUNT", "x"),
        ("SCAN", "0", "MATCH"), ("SCAN", "0", "foo", "bar"), ("CONFIG",), ("CONFIG", "GET"), ("CONFIG", "foo"),
        ("TIME", "x"), ("RANDOMKEY", "x"), ("INFO", "nosuchsection"),
    ],
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_each_command_answers_as_redis_does(pair, scenario):
    for command in SCENARIOS[scenario]:
        pair.check(*command)


# -- random command sequences ----------------------------------------------------------------------------

# Few keys, so that commands meet each other's results.
TAGGED = ["{t}a", "{t}b"]
KEYS = [*TAGGED, "x"]
VALUES = ["", "0", "1", "-1", "10", "3.5", "abc", "\x00\xff", "1e3", " 1", BIG, "-9223372036854775808", "0x10",
          "hello world", "\xff\xf0\x00\x0f"]
INTS = ["0", "1", "2", "-1", "-2", "3", "7", "8", "15", "100", "-100", "x", BIG, "-9223372036854775808"]
TTLS = ["100", "1000", "100000", "0", "-1", "abc"]
AT_S = ["1", FUTURE_S, "0", "-5"]
AT_MS = ["1", FUTURE_MS, "0"]

key = st.sampled_from(KEYS)
tagged = st.sampled_from(TAGGED)
value = st.sampled_from(VALUES)
integer = st.sampled_from(INTS)


def _options(*choices):
    return st.lists(st.one_of(*choices), max_size=3).map(lambda parts: [w for part in parts for w in part])


_expiry = st.one_of(
    st.tuples(st.sampled_from(["EX", "PX"]), st.sampled_from(TTLS)),
    st.tuples(st.just("EXAT"), st.sampled_from(AT_S)),
    st.tuples(st.just("PXAT"), st.sampled_from(AT_MS)),
)
_set_options = _options(st.sampled_from([("NX",), ("XX",), ("GET",), ("KEEPTTL",), ("foo",)]), _expiry)
_getex_options = _options(st.sampled_from([("PERSIST",), ("GET",)]), _expiry)
_expire_options = st.lists(st.sampled_from(["NX", "XX", "GT", "LT", "bad"]), max_size=2)
_unit = st.sampled_from([[], ["BIT"], ["BYTE"], ["bits"]])


def _cmd(*parts):
    return st.tuples(*[p if isinstance(p, st.SearchStrategy) else st.just(p) for p in parts]).map(
        lambda t: [w for part in t for w in (part if isinstance(part, list) else [part])])


COMMANDS = st.one_of(
    _cmd("SET", key, value, _set_options), _cmd("GET", key), _cmd("SETNX", key, value),
    _cmd("SETEX", key, st.sampled_from(TTLS), value), _cmd("PSETEX", key, st.sampled_from(TTLS), value),
    _cmd("GETSET", key, value), _cmd("GETDEL", key), _cmd("GETEX", key, _getex_options),
    _cmd("MSETNX", tagged, value, tagged, value), _cmd("MGET", key, key, key), _cmd("APPEND", key, value),
    _cmd("STRLEN", key), _cmd(st.sampled_from(["GETRANGE", "SUBSTR"]), key, integer, integer),
    _cmd("SETRANGE", key, st.sampled_from(["0", "1", "3", "10", "-1", "x"]), value),
    _cmd("LCS", tagged, tagged, st.lists(st.sampled_from(["LEN", "IDX", "WITHMATCHLEN", "MINMATCHLEN", "2"]),
                                         max_size=3)),
    _cmd(st.sampled_from(["INCR", "DECR"]), key), _cmd(st.sampled_from(["INCRBY", "DECRBY"]), key, integer),
    _cmd("INCRBYFLOAT", key, st.sampled_from(VALUES + ["0.1", "-2.5", "1e308", "inf", "5e-3"])),
    _cmd("SETBIT", key, st.sampled_from(["0", "1", "7", "8", "15", "23", "-1", "x"]), st.sampled_from(["0", "1", "2"])),
    _cmd("GETBIT", key, integer), _cmd("BITCOUNT", key, st.sampled_from([[], ["0"], ["0", "-1"], ["1", "2"],
                                                                        ["-2", "-1"], ["3", "20"], ["x", "1"]]), _unit),
    _cmd("BITPOS", key, st.sampled_from(["0", "1", "2"]), st.sampled_from([[], ["0"], ["1"], ["-1"], ["0", "-1"],
                                                                         ["1", "2"], ["3", "20"], ["-2", "-1"]]),
         _unit),
    _cmd("BITOP", st.sampled_from(["AND", "OR", "XOR", "NOT", "bad"]), tagged,
         st.lists(tagged, min_size=1, max_size=3)),
    _cmd(st.sampled_from(["EXPIRE", "PEXPIRE"]), key, st.sampled_from(TTLS), _expire_options),
    _cmd("EXPIREAT", key, st.sampled_from(AT_S), _expire_options),
    _cmd("PEXPIREAT", key, st.sampled_from(AT_MS), _expire_options),
    _cmd(st.sampled_from(["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME", "PERSIST", "TYPE"]), key),
    _cmd(st.sampled_from(["TOUCH", "EXISTS", "DEL", "UNLINK"]), st.lists(key, min_size=1, max_size=3)),
    _cmd(st.sampled_from(["RENAME", "RENAMENX"]), tagged, tagged),
    _cmd("COPY", tagged, tagged, st.sampled_from([[], ["REPLACE"], ["DB", "0"], ["bad"]])),
    _cmd("KEYS", st.sampled_from(["*", "{t}*", "?", "[xy]", "*a*"])),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(protocol=st.sampled_from(PROTOCOLS), initial=st.dictionaries(key, value),
       commands=st.lists(COMMANDS, min_size=1, max_size=15))
def test_random_command_sequences_answer_as_redis_does(cluster, redis_server, protocol, initial, commands):
    pair = Pair(cluster, redis_server, protocol)
    try:
        pair.run("DEL", *KEYS)
        for k, v in initial.items():
            pair.run("SET", k, v)
        for command in commands:
            pair.check(*command)
        # The resulting values and expiry times agree too.
        for k in KEYS:
            pair.check("GET", k)
            pair.check("PEXPIRETIME", k)
    finally:
        pair.close()


# -- SET IFEQ (compare-and-set) ----------------------------------------------------------------------------

# Redis 7.0 has no IFEQ: the reference runs SET in a script that compares first, as Valkey 8.1 defines it.
_IFEQ_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[1] then
  if ARGV[2] == '1' then return current end
  return nil
end
return redis.call('SET', KEYS[1], unpack(ARGV, 3))
"""


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(protocol=st.sampled_from(PROTOCOLS), steps=st.lists(st.tuples(
    key, value, value, st.booleans(),
    st.sampled_from([[], ["EX", "100"], ["PX", "100000"], ["EXAT", FUTURE_S], ["PXAT", "1"], ["KEEPTTL"]])),
    min_size=1, max_size=8))
def test_set_ifeq_sets_only_when_the_value_is_the_comparison(cluster, redis_server, protocol, steps):
    pair = Pair(cluster, redis_server, protocol)
    try:
        pair.run("DEL", *KEYS)
        pair.run("MSET", "x", "1", "{t}a", "abc")
        for k, new, comparison, with_get, expiry in steps:
            get = ["GET"] if with_get else []
            ours = pair.ours.call("SET", k, new, "IFEQ", comparison, *get, *expiry)
            theirs = pair.theirs.call("EVAL", _IFEQ_SCRIPT, "1", k, comparison, "1" if with_get else "0",
                                      new, *get, *expiry)
            assert ours == theirs, (k, new, comparison, with_get, expiry)
            pair.check("GET", k)
            pair.check("PEXPIRETIME", k)
    finally:
        pair.close()


def test_set_ifeq_options_are_checked_as_valkey_does(pair):
    client = pair.ours
    null = b"$-1\r\n" if pair.protocol == 2 else b"_\r\n"
    assert client.call("SET", "k", "v", "IFEQ", "x") == null, "no key: nothing to compare with"
    assert client.call("SET", "k", "v") == b"+OK\r\n"
    assert client.call("SET", "k", "w", "IFEQ", "v") == b"+OK\r\n"
    assert client.call("SET", "k", "z", "IFEQ", "v", "GET") == b"$1\r\nw\r\n"
    assert client.call("GET", "k") == b"$1\r\nw\r\n"
    for bad in (["IFEQ"], ["IFEQ", "w", "NX"], ["XX", "IFEQ", "w"], ["IFEQ", "w", "IFEQ", "w"]):
        assert client.call("SET", "k", "v", *bad) == b"-ERR syntax error\r\n", bad


# -- commands whose replies vary between runs ----------------------------------------------------------------

def test_keys_and_scan_list_every_key_once_a_scan_ends(pair):
    names = [f"key:{i}" for i in range(60)] + [f"{{tag}}:{i}" for i in range(10)]
    pair.run("MSET", *[w for n in names for w in (n, n)])
    for pattern in ("*", "key:1*", "{tag}:*", "nothing"):
        ours = sorted(parse(pair.check("KEYS", pattern)))
        seen = []
        cursor = b"0"
        for _ in range(1000):
            cursor, keys = parse(pair.ours.call("SCAN", cursor, "MATCH", pattern, "COUNT", "7"))
            seen += keys
            if cursor == b"0":
                break
        assert sorted(set(seen)) == ours
    type_scan = parse(pair.ours.call("SCAN", "0", "TYPE", "hash"))
    assert type_scan == [b"0", []]


def test_randomkey_time_config_and_info(pair):
    null = b"$-1\r\n" if pair.protocol == 2 else b"_\r\n"
    assert pair.ours.call("RANDOMKEY") == null
    pair.run("MSET", "a", "1", "b", "2", "c", "3")
    assert {parse(pair.ours.call("RANDOMKEY")) for _ in range(30)} <= {b"a", b"b", b"c"}
    seconds, micros = parse(pair.ours.call("TIME"))
    assert abs(int(seconds) - time.time()) < 5 and 0 <= int(micros) < 1_000_000
    config = parse(pair.ours.call("CONFIG", "GET", "maxmemory*", "DATABASES"))
    config = dict(zip(config[::2], config[1::2])) if isinstance(config, list) else config
    assert config[b"maxmemory-policy"] == b"noeviction" and config[b"DATABASES"] == b"1", "a plain name as asked"
    text = parse(pair.ours.call("INFO")).decode()
    for field in ("redis_version:", "arch_bits:", "os:", "connected_clients:", "used_memory:", "loading:0",
                  "total_commands_processed:", "role:master", "cluster_enabled:0", "db0:keys=3,expires=0"):
        assert field in text, field
    assert [line for line in text.split("\r\n") if line.startswith("#")] == [
        "# Server", "# Clients", "# Memory", "# Persistence", "# Stats", "# Replication", "# CPU", "# Modules",
        "# Errorstats", "# Cluster", "# Keyspace"]
    only = parse(pair.ours.call("INFO", "server", "KEYSPACE")).decode()
    assert only.startswith("# Server\r\n") and "\r\n\r\n# Keyspace\r\ndb0:keys=3" in only and "# Clients" not in only


# -- keys in different partitions ------------------------------------------------------------------------------

def test_multi_key_commands_across_partitions(pair):
    assert partition_for(b"left", PARTITIONS) != partition_for(b"right", PARTITIONS)
    pair.run("MSET", "left", "ohmytext", "right", "mynewtext")
    for command in (("MSETNX", "left", "1", "right", "2"), ("RENAME", "left", "right"),
                    ("RENAMENX", "left", "right"), ("COPY", "left", "right"), ("BITOP", "AND", "left", "right")):
        reply = pair.ours.call(*command)
        assert reply.startswith(b"-CROSSSLOT keys of " + command[0].encode() + b" are in different partitions")
        assert b"{hash tag}" in reply
    # LCS only reads: it works across partitions and answers as Redis does.
    for options in ([], ["LEN"], ["IDX"], ["IDX", "MINMATCHLEN", "2", "WITHMATCHLEN"], ["bad"]):
        pair.check("LCS", "left", "right", *options)
