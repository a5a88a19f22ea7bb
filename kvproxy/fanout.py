"""One page of an ordered range over hash-partitioned keys: a heap merge of every partition's sorted stream.

Keys are spread over partitions by hash, so any range may hold keys of every partition. Each partition's
primary returns its keys of the range in order; the proxy merges those streams with a heap. It asks each
partition for a small batch first, about its share of the page, and asks one partition for more only
when the merge has consumed everything buffered from it, so a page holds about ``partitions * batch``
items beyond the page itself, whatever the size of the range.

No sockets here: ``fetch`` does the I/O, so the logic is tested with in-memory partitions.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Sequence
from math import ceil

from twisted.internet import defer

Item = tuple  # (key, value), or (key,) for a key-only range
# fetch(partition, after, count): the partition's next items of the range in scan order, strictly after the
# key ``after`` (None: from the beginning of the range), at most ``count``; fires with (items, more), more
# true when the partition holds further items of the range.
Fetch = Callable[[int, "bytes | None", int], defer.Deferred]

# Items asked of each partition beyond its even share of the page: hash partitioning spreads keys evenly
# only on average, and a partition that runs short costs a round trip.
SLACK = 2


def first_batch(limit: int, partitions: int) -> int:
    return max(1, ceil(limit / max(1, partitions)) + SLACK)


class _Descending:
    """A heap key that orders byte strings backwards."""

    __slots__ = ("key",)

    def __init__(self, key: bytes):
        self.key = key

    def __lt__(self, other: _Descending) -> bool:
        return self.key > other.key


class _Stream:
    __slots__ = ("partition", "items", "more", "batch")

    def __init__(self, partition: int, items: list, more: bool, batch: int):
        self.partition = partition
        self.items = deque(items)
        self.more = more
        self.batch = batch


@defer.inlineCallbacks
def merge_page(partitions: Sequence[int], fetch: Fetch, limit: int, descending: bool = False):
    """The first ``limit`` items of the range across ``partitions``, in key order (descending if asked).

    Fires with ``(items, more)``: ``more`` is true when the range holds items after the last one returned.
    A failed fetch fails the page.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    order = _Descending if descending else bytes
    batch = first_batch(limit, len(partitions))
    replies = yield defer.gatherResults([fetch(p, None, batch) for p in partitions], consumeErrors=True)
    streams = [_Stream(p, items, more, batch) for p, (items, more) in zip(partitions, replies, strict=True)]
    heap = [(order(s.items[0][0]), s.partition, s) for s in streams if s.items]
    heapq.heapify(heap)
    out: list = []
    while heap and len(out) < limit:
        _, _, stream = heap[0]
        item = stream.items.popleft()
        out.append(item)
        if not stream.items and stream.more and len(out) < limit:
            # Its next key may be the smallest of all: the merge cannot go on without it. Grow the batch, as a
            # partition that ran out once is likely to run out again, but never beyond what the page needs.
            stream.batch = min(stream.batch * 2, limit - len(out))
            items, stream.more = yield fetch(stream.partition, item[0], stream.batch)
            stream.items.extend(items)
        if stream.items:
            heapq.heapreplace(heap, (order(stream.items[0][0]), stream.partition, stream))
        else:
            heapq.heappop(heap)
    more = bool(heap) or any(s.more for s in streams)
    return out, more
