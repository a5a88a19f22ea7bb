"""The key layout of a node's store, schema version 2.

::

    \\x00schema                              b"2": the layout version, checked at open
    d | partition | user key                 value record (records.encode_value): the newest value of the key
    v | partition | escaped key | 00 01 | ~version
                                             value record of one version of the key (a delete is a
                                             KIND_TOMBSTONE record): the history, for reads "as of" a version
    l | partition | seq                      log entry (records.encode_entry)
    p | partition                            partition meta (records.encode_meta)

``partition`` is 4 bytes and ``seq`` 8 bytes, both big-endian, so byte order is numeric order: the data
keys of one partition are contiguous and sorted by user key, and its log keys are sorted by seq. The
prefix byte comes first so a range scan of one kind of key never meets another kind.

History keys must sort by user key first, then newest version first. A user key may be a prefix of
another, so it is escaped and terminated as FoundationDB's tuple layer does with byte strings: 0x00 becomes
0x00 0xff and the key ends with 0x00 0x01, which sorts below any continuation of the key. ``~version`` is
``2**64 - 1 - version`` (8 bytes big-endian), so a key's newest version comes first and a seek to
``~v`` lands on the newest version at or below ``v``. The newest value stays under its ``d`` key so that
GET remains a single point read served by the bloom filter.

Schema 1 had no history; its directories are refused at open (nothing in production used it).
"""

from __future__ import annotations

from struct import Struct

from kvnode.storage.interface import Engine, StorageError, WriteBatch

SCHEMA_KEY = b"\x00schema"
SCHEMA_VERSION = 2

DATA = b"d"
HISTORY = b"v"
LOG = b"l"
META = b"p"

# prefix byte | partition
_PREFIXED_PARTITION = Struct(">cI")
# "l" | partition | seq
_LOG_KEY = Struct(">cIQ")
_PARTITION = Struct(">I")
_SEQ = Struct(">Q")
PREFIX_LENGTH = _PREFIXED_PARTITION.size

MAX_SEQ = (1 << 64) - 1
MAX_VERSION = (1 << 64) - 1

_U64 = Struct(">Q")
_TERMINATOR = b"\x00\x01"
# What follows the escaped user key in a history key: the terminator and the inverted version.
_HISTORY_SUFFIX = len(_TERMINATOR) + _U64.size


def data_key(partition: int, user_key: bytes) -> bytes:
    return _PREFIXED_PARTITION.pack(DATA, partition) + user_key


def data_prefix(partition: int) -> bytes:
    """What every data key of ``partition`` starts with."""
    return _PREFIXED_PARTITION.pack(DATA, partition)


def user_key_of(data_key: bytes) -> bytes:
    return data_key[PREFIX_LENGTH:]


def escape(user_key: bytes) -> bytes:
    """The user key with each 0x00 written 0x00 0xff: an order-preserving encoding without 0x00 0x01."""
    return user_key.replace(b"\x00", b"\x00\xff")


def history_key(partition: int, user_key: bytes, version: int) -> bytes:
    return (_PREFIXED_PARTITION.pack(HISTORY, partition) + escape(user_key) + _TERMINATOR
            + _U64.pack(MAX_VERSION - version))


def history_key_prefix(partition: int, user_key: bytes) -> bytes:
    """What every history key of one user key starts with."""
    return _PREFIXED_PARTITION.pack(HISTORY, partition) + escape(user_key) + _TERMINATOR


def history_bound(partition: int, user_key: bytes | None) -> bytes:
    """The history key position of ``user_key`` for a range bound: every version of a key ``k`` sorts
    at or after it exactly when ``k >= user_key``. None stands for the end of the partition."""
    if user_key is None:
        return partition_range(HISTORY, partition)[1]
    return _PREFIXED_PARTITION.pack(HISTORY, partition) + escape(user_key)


def split_history_key(key: bytes) -> tuple[bytes, int]:
    """``(user key, version)`` of a history key."""
    return user_key_of_history(key), MAX_VERSION - _U64.unpack_from(key, len(key) - 8)[0]


def user_key_of_history(key: bytes) -> bytes:
    return key[PREFIX_LENGTH:-_HISTORY_SUFFIX].replace(b"\x00\xff", b"\x00")


def log_key(partition: int, seq: int) -> bytes:
    return _LOG_KEY.pack(LOG, partition, seq)


def log_prefix(partition: int) -> bytes:
    """What every log key of ``partition`` starts with."""
    return _PREFIXED_PARTITION.pack(LOG, partition)


def seq_of(log_key: bytes) -> int:
    return _SEQ.unpack_from(log_key, PREFIX_LENGTH)[0]


def meta_key(partition: int) -> bytes:
    return _PREFIXED_PARTITION.pack(META, partition)


def partition_of(key: bytes) -> int:
    """The partition of a data, log or meta key."""
    return _PARTITION.unpack_from(key, 1)[0]


def partition_range(prefix_byte: bytes, partition: int) -> tuple[bytes, bytes]:
    """``(start, stop)``: the half-open key range of one kind of key (DATA, HISTORY, LOG or META) of a
    partition."""
    if len(prefix_byte) != 1:
        raise ValueError(f"a key kind is one prefix byte, not {prefix_byte!r}")
    start = _PREFIXED_PARTITION.pack(prefix_byte, partition)
    return start, prefix_successor(start)


def kind_range(prefix_byte: bytes) -> tuple[bytes, bytes]:
    """``(start, stop)``: every key of one kind, all partitions."""
    if len(prefix_byte) != 1:
        raise ValueError(f"a key kind is one prefix byte, not {prefix_byte!r}")
    return prefix_byte, prefix_successor(prefix_byte)


def prefix_successor(prefix: bytes) -> bytes:
    """The smallest key greater than every key that starts with ``prefix``.

    Trailing 0xff bytes cannot be incremented, so they are dropped first: the successor of
    ``d\\x00\\x00\\x00\\xff`` is ``d\\x00\\x00\\x01``. Every prefix used here has a byte below 0xff.
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        raise ValueError(f"{prefix!r} has no successor: every byte is 0xff")
    return stripped[:-1] + bytes((stripped[-1] + 1,))


def check_schema(engine: Engine, location: str) -> None:
    """Make sure the store at ``location`` uses this layout; mark an empty store as using it.

    ``location`` names the store in errors (the data directory).
    """
    marker = engine.get(SCHEMA_KEY)
    if marker is None:
        if next(iter(engine.keys()), None) is not None:
            raise StorageError(
                f"data directory {location} holds data but no storage schema marker; "
                "it was not written by kvnode"
            )
        batch = WriteBatch()
        batch.put(SCHEMA_KEY, str(SCHEMA_VERSION).encode())
        engine.write(batch, sync=True)
        return
    try:
        version = int(marker.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise StorageError(
            f"data directory {location} has an unreadable storage schema marker {marker!r}"
        ) from None
    if version == 1:
        raise StorageError(
            f"data directory {location} has storage schema 1, which keeps no version history; this kvnode "
            f"reads schema {SCHEMA_VERSION} and cannot convert it: move the directory away and let the node "
            "copy its partitions from their primaries"
        )
    if version != SCHEMA_VERSION:
        raise StorageError(
            f"data directory {location} has storage schema {version}; "
            f"this kvnode reads schema {SCHEMA_VERSION}"
        )
