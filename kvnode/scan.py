"""Walking a partition in key order: the positions SCAN resumes from, and the items a walk sees.

A SCAN cursor must fit 64 bits but a position in a LevelDB partition is a key of any length, so the
partition's primary keeps recent positions in a bounded table and the cursor carries a random token naming
one (``kvcommon.commands.SCAN_TOKEN_BITS``). Proxies stay stateless: any proxy can continue any scan.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Iterator

from kvcommon.commands import SCAN_TOKEN_BITS
from kvnode.replica import Replica
from kvnode.storage.partition_store import PartitionStore

DEFAULT_CAPACITY = 10_000


class ScanCursors:
    """Recent scan positions by token: token -> (partition, last key returned), least recently used first.

    A forgotten token (evicted, or made by another node before a failover) is unknown: the scan restarts
    the partition, which returns keys twice but misses none, as SCAN allows. Tokens are random so that a
    token made by one node is, with overwhelming probability, unknown to another.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY):
        self.capacity = capacity
        self._positions: OrderedDict[int, tuple[int, bytes]] = OrderedDict()

    def remember(self, partition: int, last_key: bytes) -> int:
        token = 0
        while token == 0 or token in self._positions:
            token = secrets.randbits(SCAN_TOKEN_BITS)
        self._positions[token] = (partition, last_key)
        if len(self._positions) > self.capacity:
            self._positions.popitem(last=False)
        return token

    def position(self, partition: int, token: int) -> bytes | None:
        """The last key returned before ``token`` was handed out, or None to start from the beginning."""
        entry = self._positions.get(token)
        if entry is None or entry[0] != partition:
            return None
        self._positions.move_to_end(token)
        return entry[1]

    def __len__(self) -> int:
        return len(self._positions)


def partition_items(store: PartitionStore, replica: Replica, start: bytes = b"",
                    reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
    """``(key, raw record)`` of a partition from ``start`` on, in key order (descending when ``reverse``).

    On a primary, writes not yet committed are in ``replica.pending_keys`` and not on disk: they are merged
    in, a pending delete hiding the stored key.
    """
    stored = store.iterate_data(replica.partition, start, reverse=reverse)
    pending = sorted(((key, raw) for key, (raw, _) in replica.pending_keys.items() if key >= start),
                     reverse=reverse)
    return merge_items(stored, pending, reverse)


def merge_items(stored: Iterator[tuple[bytes, bytes]], pending: list[tuple[bytes, bytes | None]],
                reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
    """Merge two sorted streams of (key, raw); ``pending`` wins on equal keys, and None there deletes."""
    before = (lambda a, b: a > b) if reverse else (lambda a, b: a < b)
    i = 0
    for key, raw in stored:
        while i < len(pending) and before(pending[i][0], key):
            if pending[i][1] is not None:
                yield pending[i]
            i += 1
        if i < len(pending) and pending[i][0] == key:
            if pending[i][1] is not None:
                yield pending[i]
            i += 1
        else:
            yield key, raw
    for key, raw in pending[i:]:
        if raw is not None:
            yield key, raw
