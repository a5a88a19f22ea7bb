"""The key layout of a node's store, schema version 1.

::

    \\x00schema                      b"1": the layout version, checked at open
    d | partition | user key         value record (records.encode_value): the newest value of the key
    l | partition | seq              log entry (records.encode_entry)
    p | partition                    partition meta (records.encode_meta)

``partition`` is 4 bytes and ``seq`` 8 bytes, both big-endian, so byte order is numeric order: the data
keys of one partition are contiguous and sorted by user key, and its log keys are sorted by seq. The
prefix byte comes first so a range scan of one kind of key never meets another kind.
"""

from __future__ import annotations

from struct import Struct

from kvnode.storage.interface import Engine, StorageError, WriteBatch

SCHEMA_KEY = b"\x00schema"
SCHEMA_VERSION = 1

DATA = b"d"
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


def data_key(partition: int, user_key: bytes) -> bytes:
    return _PREFIXED_PARTITION.pack(DATA, partition) + user_key


def data_prefix(partition: int) -> bytes:
    """What every data key of ``partition`` starts with."""
    return _PREFIXED_PARTITION.pack(DATA, partition)


def user_key_of(data_key: bytes) -> bytes:
    return data_key[PREFIX_LENGTH:]


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
    """``(start, stop)``: the half-open key range of one kind of key (DATA, LOG or META) of a partition."""
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
    if version != SCHEMA_VERSION:
        raise StorageError(
            f"data directory {location} has storage schema {version}; "
            f"this kvnode reads schema {SCHEMA_VERSION}"
        )
