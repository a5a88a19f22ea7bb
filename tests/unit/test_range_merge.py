"""The proxy's range merge and cursors, over in-memory partitions."""

import random

import pytest
from twisted.internet import defer

from kvcommon.errors import CommandError, TryAgainError
from kvcommon.hashing import partition_for
from kvproxy.fanout import first_batch, merge_page
from kvproxy.ranges import RangeCommands, RangeRequest, decode_cursor, encode_cursor, parse_range


class Partitions:
    """Sorted keys split over partitions; ``fetch`` answers as KV.RANGEPART does, and counts what it sends."""

    def __init__(self, keys, count, request: RangeRequest):
        self.request = request
        self.keys = [[] for _ in range(count)]
        for key in sorted(set(keys)):
            self.keys[partition_for(key, count)].append(key)
        self.fetches = []
        self.buffered_max = 0

    def fetch(self, partition, after, count):
        bounds = self.request.bounds(self.request.after if after is None else after)
        self.fetches.append((partition, count))
        if bounds is None:
            return defer.succeed(([], False))
        start, end = bounds
        found = [k for k in self.keys[partition] if k >= start and (end is None or k < end)]
        if self.request.descending:
            found.reverse()
        return defer.succeed(([(k, b"v" + k) for k in found[:count]], len(found) > count))


def page(partitions, request):
    result = []
    merge_page(range(len(partitions.keys)), partitions.fetch, request.limit, request.descending).addBoth(
        result.append)
    (outcome,) = result
    if isinstance(outcome, Exception) or hasattr(outcome, "raiseException"):
        outcome.raiseException()
    return outcome


def scan(keys, count, request):
    """Every page of a scan, resuming after the last key as a cursor does: the keys seen, and the pages."""
    seen, pages = [], 0
    while True:
        partitions = Partitions(keys, count, request)
        items, more = page(partitions, request)
        pages += 1
        assert len(items) <= request.limit
        seen += [k for k, _ in items]
        if not more:
            return seen, pages
        request = RangeRequest(request.start, request.end, request.limit, request.descending,
                               after=items[-1][0])


KEYS = sorted({bytes([a, b]) for a in range(0, 256, 7) for b in (0, 1, 255)} | {b"", b"\x00", b"zz"})


@pytest.mark.parametrize("count", [1, 3, 16])
@pytest.mark.parametrize("limit", [1, 5, 1000])
@pytest.mark.parametrize("descending", [False, True])
def test_paging_returns_every_key_of_the_range_once_in_order(count, limit, descending):
    start, end = b"\x00", b"\xe0"
    expected = sorted(k for k in KEYS if start <= k < end)
    if descending:
        expected.reverse()
    seen, pages = scan(KEYS, count, RangeRequest(start, end, limit, descending))
    assert seen == expected
    assert pages == max(1, -(-len(expected) // limit))


def test_an_unbounded_end_and_an_empty_range():
    seen, _ = scan(KEYS, 4, RangeRequest(b"zz", None, 10))
    assert seen == [k for k in sorted(KEYS) if k >= b"zz"]
    assert scan(KEYS, 4, RangeRequest(b"b", b"b", 10)) == ([], 1)
    assert scan(KEYS, 4, RangeRequest(b"c", b"b", 10)) == ([], 1)


def test_a_page_asks_each_partition_for_its_share_and_buffers_little():
    rng = random.Random(1)
    keys = {b"%06d" % rng.randrange(10**6) for _ in range(5000)}
    partitions = Partitions(keys, 16, RangeRequest(b"", None, 100))
    items, more = page(partitions, RangeRequest(b"", None, 100))
    assert [k for k, _ in items] == sorted(set(keys))[:100] and more
    first = first_batch(100, 16)
    assert partitions.fetches[:16] == [(p, first) for p in range(16)]
    # Refills are few, and none asks for more than the page still needs.
    assert len(partitions.fetches) - 16 <= 16
    assert sum(count for _, count in partitions.fetches) <= 16 * first + 100


def test_a_failed_partition_fails_the_page():
    def fetch(partition, after, count):
        if partition == 2:
            return defer.fail(TryAgainError("partition 2 is switching primary"))
        return defer.succeed(([(b"k%d" % partition, b"v")], False))

    failures = []
    merge_page(range(4), fetch, 10).addErrback(failures.append)
    assert failures and isinstance(failures[0].value.subFailure.value, TryAgainError)


def test_cursors_carry_direction_version_and_last_key():
    cursor = encode_cursor(True, 12345 << 16, b"\x00last\xff")
    assert decode_cursor(cursor) == (True, 12345 << 16, b"\x00last\xff")
    request = parse_range([b"KV.RANGE", b"", b"", b"LIMIT", b"5", b"DESC", b"CURSOR", cursor])
    assert request == RangeRequest(b"", None, 5, True, False, 12345 << 16, b"\x00last\xff")
    assert request.bounds(request.after) == (b"", b"\x00last\xff")
    with pytest.raises(CommandError, match="other direction"):
        parse_range([b"KV.RANGE", b"a", b"", b"CURSOR", cursor])
    with pytest.raises(CommandError, match="ASOF version"):
        parse_range([b"KV.RANGE", b"a", b"", b"DESC", b"ASOF", b"7", b"CURSOR", cursor])
    with pytest.raises(CommandError, match="invalid KV.RANGE cursor"):
        parse_range([b"KV.RANGE", b"a", b"", b"CURSOR", b"garbage!"])


@pytest.mark.parametrize("args, error", [
    ([b"LIMIT", b"0"], "LIMIT must be"),
    ([b"LIMIT", b"x"], "LIMIT must be"),
    ([b"ASOF", b"-1"], "ASOF must be"),
    ([b"LIMIT"], "syntax error"),
    ([b"BOGUS"], "syntax error"),
])
def test_bad_range_options_are_refused(args, error):
    with pytest.raises(CommandError, match=error):
        parse_range([b"KV.RANGE", b"a", b"b", *args])


def test_snapshot_versions_cover_the_whole_millisecond_and_never_go_back():
    now = [1_000]
    commands = RangeCommands(service=None, now_ms=lambda: now[0])
    first = commands.snapshot_version()
    assert first == (1_000 << 16) | 0xFFFF
    assert [commands.snapshot_version() for _ in range(1000)] == [first] * 1000, "no drift ahead of wall time"
    now[0] = 999  # the wall clock stepped back
    assert commands.snapshot_version() == first
    now[0] = 1_001
    assert commands.snapshot_version() == (1_001 << 16) | 0xFFFF
