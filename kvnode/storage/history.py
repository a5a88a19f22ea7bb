"""Reading and compacting a partition's version history (the ``v`` keys of keys.py).

Every applied write leaves one history record per key it changed, keyed by the entry's version; a delete
leaves a KIND_TOMBSTONE record. Reading "as of" version ``v`` takes, for each key, the newest record with a
version at or below ``v``. These functions return raw records, tombstones included: callers decide what
is live (``is_live``).
"""

from __future__ import annotations

from collections.abc import Iterator
from struct import Struct

from kvcommon.hlc import version_ms
from kvnode.storage import keys
from kvnode.storage.interface import Engine, Snapshot
from kvnode.storage.records import KIND_TOMBSTONE, encode_value, expire_at_of, kind_of

_U64 = Struct(">Q")
_VERSION_BYTES = _U64.size
# Rows of one key a range reads one by one before it seeks past the rest (items_as_of).
JUMP_AFTER = 8


def tombstone(version: int) -> bytes:
    """The history record of a delete at ``version``."""
    return encode_value(version, b"", 0, KIND_TOMBSTONE)


def is_live(raw: bytes, version: int) -> bool:
    """Whether a record read as of ``version`` holds a value: not a delete, and not expired at the
    wall time of ``version`` (so a read as of a version answers the same whenever it runs)."""
    if kind_of(raw) == KIND_TOMBSTONE:
        return False
    expire_at = expire_at_of(raw)
    return not expire_at or expire_at > version_ms(version)


def read_as_of(engine: Engine, partition: int, user_key: bytes, version: int,
               snapshot: Snapshot | None = None) -> bytes | None:
    """The key's newest history record with a version at or below ``version``, or None."""
    prefix = keys.history_key_prefix(partition, user_key)
    start = prefix + _U64.pack(keys.MAX_VERSION - version)
    for _, raw in engine.iterate(start, keys.prefix_successor(prefix), snapshot=snapshot):
        return raw
    return None


def items_as_of(engine: Engine, partition: int, start: bytes, end: bytes | None, version: int,
                reverse: bool = False, snapshot: Snapshot | None = None,
                jump_after: int = JUMP_AFTER) -> Iterator[tuple[bytes, bytes]]:
    """``(user key, raw record)`` as of ``version`` for the keys in ``[start, end)`` (``end`` None: no
    upper bound), ascending or descending; keys without a version at or below ``version`` are left out.

    Rows are read one by one, but once ``jump_after`` rows of one key were not the answer, a new iterator
    seeks past that key's other versions: a key rewritten often costs a seek, not a walk over its history.
    Later iterators may see newer writes than the first; those are above ``version`` and never read.
    """
    low, high = keys.history_bound(partition, start), keys.history_bound(partition, end)
    # A key's version is at or below ``version`` exactly when its inverted version, the key's last 8 bytes,
    # is at or above ``~version``: comparing the bytes saves decoding every version.
    floor = _U64.pack(keys.MAX_VERSION - version)
    if reverse:
        return _descending(engine, low, high, floor, snapshot, jump_after)
    return _ascending(engine, low, high, floor, snapshot, jump_after)


def _ascending(engine, low, high, floor, snapshot, jump_after):
    # Newest version first: the first one at or below the version is the answer for its key.
    cut = -_VERSION_BYTES
    user_key = keys.user_key_of_history
    rows = engine.iterate(low, high, snapshot=snapshot)
    current, answered, run = None, False, 0
    while True:
        for key, raw in rows:
            identity = key[:cut]
            if identity != current:
                current, answered, run = identity, False, 0
            if answered or key[cut:] < floor:
                run += 1
                if run > jump_after:
                    break
                continue
            answered = True
            yield user_key(key), raw
        else:
            return
        # Past the key's remaining versions, or straight to its newest version at or below the version.
        restart = keys.prefix_successor(current) if answered else current + floor
        rows = engine.iterate(restart, high, snapshot=snapshot)
        run = 0


def _descending(engine, low, high, floor, snapshot, jump_after):
    # Each key's versions come oldest first: the answer is the last one at or below the version.
    cut = -_VERSION_BYTES
    user_key = keys.user_key_of_history
    rows = engine.iterate(low, high, reverse=True, snapshot=snapshot)
    current = found = found_key = None
    run = 0
    while True:
        for key, raw in rows:
            identity = key[:cut]
            if identity != current:
                if found is not None:
                    yield user_key(found_key), found
                current, found, run = identity, None, 0
            run += 1
            if run > jump_after:
                break
            if key[cut:] >= floor:
                found, found_key = raw, key
        else:
            if found is not None:
                yield user_key(found_key), found
            return
        # Look the key's answer up directly, then go on below the key.
        for key, raw in engine.iterate(current + floor, keys.prefix_successor(current), snapshot=snapshot):
            yield user_key(key), raw
            break
        rows = engine.iterate(low, current, reverse=True, snapshot=snapshot)
        current = found = None


def compactable(engine: Engine, partition: int, cutoff: int, resume: bytes | None,
                budget: int, jump_after: int = JUMP_AFTER) -> tuple[list[bytes], bytes | None, int]:
    """History keys of the partition that no read at ``cutoff`` or later needs, from ``resume`` (a history
    key position; None: the partition's start) on, reading about ``budget`` records.

    For each user key, every version newer than ``cutoff`` is kept, and so is the newest one at or below it
    unless it reads as absent there (a tombstone, or expired by then); older ones go. Returns the keys to
    delete, where to resume (None once the partition is done) and how many records it read. A key's
    versions are read to the end even past the budget, so a resumed pass starts at a key's newest version.

    Once ``jump_after`` versions of a key were newer than the cutoff, a new iterator seeks to its newest
    version at or below it: a key rewritten all through the retention window costs a seek, not a read of
    every version the window keeps.
    """
    start, stop = keys.partition_range(keys.HISTORY, partition)
    # A version is at or below the cutoff exactly when its inverted version, the key's last 8 bytes, is at
    # or above this (see items_as_of).
    floor = _U64.pack(keys.MAX_VERSION - cutoff)
    doomed: list[bytes] = []
    current = None
    kept_old = False
    read = newer = 0
    cut = -_VERSION_BYTES
    position = start if resume is None else resume
    while True:
        for key, raw in engine.iterate(position, stop):
            identity = key[:cut]
            if identity != current:
                if read >= budget:
                    return doomed, identity, read
                current, kept_old, newer = identity, False, 0
            read += 1
            if key[cut:] < floor:  # newer than the cutoff
                newer += 1
                if newer > jump_after:
                    break
                continue
            if kept_old:
                doomed.append(key)
            else:
                kept_old = True
                if not is_live(raw, cutoff):
                    doomed.append(key)
        else:
            return doomed, None, read
        # Straight to the key's newest version at or below the cutoff.
        position, newer = current + floor, 0
