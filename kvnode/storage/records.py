"""Binary encodings of what the store keeps: value records, log entries and partition meta.

All integers are unsigned big-endian. These functions run for every read and write, so they use
precompiled ``Struct`` objects and few intermediate objects. Bytes that do not decode
raise ``CorruptionError``.
"""

from __future__ import annotations

from bisect import bisect_left
from struct import Struct
from struct import error as StructError
from typing import Final, NamedTuple

from kvnode.storage.interface import CorruptionError

# -- value records ---------------------------------------------------------------------------------

KIND_STRING = 0
# Reserved: a delete kept as a record, for reads "as of" an older version.
KIND_TOMBSTONE = 1

# kind | version | expire_at_ms, followed by the value
_VALUE_HEADER = Struct(">BQQ")
_VALUE_OFFSET = _VALUE_HEADER.size
_U64 = Struct(">Q")
_VERSION_OFFSET = 1
_EXPIRE_OFFSET = 9
_new_tuple = tuple.__new__


class ValueRecord(NamedTuple):
    """What a data key holds.

    ``version`` is the hybrid-logical-clock version the primary assigned (``kvcommon.hlc``);
    ``expire_at_ms`` is a Unix time in milliseconds, 0 for no expiry.
    """

    kind: int
    version: int
    expire_at_ms: int
    value: bytes


def encode_value(version: int, value: bytes, expire_at_ms: int = 0, kind: int = KIND_STRING) -> bytes:
    return _VALUE_HEADER.pack(kind, version, expire_at_ms) + value


def decode_value(raw: bytes) -> ValueRecord:
    try:
        kind, version, expire_at_ms = _VALUE_HEADER.unpack_from(raw)
    except StructError:
        raise CorruptionError(f"value record of {len(raw)} bytes is shorter than its header") from None
    # tuple.__new__ skips the argument handling of NamedTuple.__new__: this runs for every read.
    return _new_tuple(ValueRecord, (kind, version, expire_at_ms, raw[_VALUE_OFFSET:]))


# The helpers below read one field of a record without decoding the rest; the raw record must come from
# encode_value (they do not check its length).


def kind_of(raw: bytes) -> int:
    return raw[0]


def version_of(raw: bytes) -> int:
    return _U64.unpack_from(raw, _VERSION_OFFSET)[0]


def expire_at_of(raw: bytes) -> int:
    return _U64.unpack_from(raw, _EXPIRE_OFFSET)[0]


def value_of(raw: bytes) -> bytes:
    return raw[_VALUE_OFFSET:]


# -- log entries -----------------------------------------------------------------------------------

# generation | seq | version | number of ops
_ENTRY_HEADER = Struct(">QQQI")
# key length | record length, or _DELETED for a delete, or _IN_HISTORY for a put whose record is not
# here; followed by the key, then the record if it is here
_OP_HEADER = Struct(">II")
_OP_HEADER_SIZE = _OP_HEADER.size
_DELETED = 0xFFFFFFFF
_IN_HISTORY = 0xFFFFFFFE


class _InHistory:
    """The record of a put that a stored log entry leaves to the history (see encode_log_record)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "IN_HISTORY"


IN_HISTORY: Final = _InHistory()

Op = tuple[bytes, bytes | None]


class LogEntry(NamedTuple):
    """One write as the primary applied it: the physical result, not the command.

    ``ops`` are ``(user_key, encoded value record)`` for a put and ``(user_key, None)`` for a delete,
    applied in order. ``version`` is the version the primary assigned to the write.
    """

    generation: int
    seq: int
    version: int
    ops: tuple[Op, ...]


def encode_entry(entry: LogEntry) -> bytes:
    """The payload of a log entry: what the log key holds and what the replication stream carries.

    The payload includes the generation and the seq although the stream message and the log key repeat
    them, so a payload can be decoded and checked on its own.
    """
    parts = [_ENTRY_HEADER.pack(entry.generation, entry.seq, entry.version, len(entry.ops))]
    append = parts.append
    pack_op = _OP_HEADER.pack
    for key, record in entry.ops:
        if record is None:
            append(pack_op(len(key), _DELETED))
            append(key)
        else:
            append(pack_op(len(key), len(record)))
            append(key)
            append(record)
    return b"".join(parts)


def encode_log_record(entry: LogEntry) -> bytes:
    """A log entry as the node stores it: without the records of its puts.

    Every put of an entry also goes to the history under (key, the entry's version), in the same batch,
    so storing the record in the log too would write each value a third time, and LevelDB would compact
    it a third time. Reading the entry back (PartitionStore.read_log) takes the records from the history.
    """
    parts = [_ENTRY_HEADER.pack(entry.generation, entry.seq, entry.version, len(entry.ops))]
    append = parts.append
    pack_op = _OP_HEADER.pack
    for key, record in entry.ops:
        append(pack_op(len(key), _DELETED if record is None else _IN_HISTORY))
        append(key)
    return b"".join(parts)


def decode_entry(raw: bytes) -> LogEntry:
    """A log entry from encode_entry, or from encode_log_record: then its puts hold IN_HISTORY."""
    unpack_op = _OP_HEADER.unpack_from
    try:
        generation, seq, version, count = _ENTRY_HEADER.unpack_from(raw)
        offset = _ENTRY_HEADER.size
        ops = []
        for _ in range(count):
            key_length, record_length = unpack_op(raw, offset)
            offset += _OP_HEADER_SIZE
            key = raw[offset : offset + key_length]
            offset += key_length
            if record_length == _DELETED:
                ops.append((key, None))
            elif record_length == _IN_HISTORY:
                ops.append((key, IN_HISTORY))
            else:
                ops.append((key, raw[offset : offset + record_length]))
                offset += record_length
    except StructError:
        raise CorruptionError(f"log entry of {len(raw)} bytes is truncated") from None
    # Slices past the end come back short, so a truncated op shows up here as well as trailing bytes.
    if offset != len(raw):
        raise CorruptionError(f"log entry of {len(raw)} bytes does not match its {count} operations")
    return LogEntry(generation, seq, version, tuple(ops))


# -- partition meta --------------------------------------------------------------------------------

History = tuple[tuple[int, int], ...]

# generation | seq, followed by (generation, start_seq) pairs of the same layout
_META_PAIR = Struct(">QQ")


class PartitionMeta(NamedTuple):
    """A replica's position in its partition's log, and where each generation began in it.

    ``seq`` is the last log entry applied (0: none). ``history`` lists ``(generation, start_seq)`` in
    increasing generation, one pair for each generation this replica took part in, like Kafka's
    leader-epoch cache. ``start_seq`` is the last seq of the previous generation, so generation g wrote
    the entries ``start_seq + 1`` up to the next pair's ``start_seq`` (or up to ``seq`` for the last
    pair). Start seqs never decrease; two equal ones mean the earlier generation wrote nothing.
    ``generation`` is the newest generation in ``history``, 0 while it is empty (generations start at
    1, so 0 never names one).
    """

    generation: int = 0
    seq: int = 0
    history: History = ()

    def begin_generation(self, generation: int, at_seq: int | None = None) -> PartitionMeta:
        """The meta once ``generation`` begins here, after entry ``at_seq`` (by default, and necessarily,
        the last applied entry: every later entry belongs to the new generation).

        A new primary calls this when it is promoted; for a secondary, ``advance`` does the same when the
        first entry of a newer generation arrives.
        """
        if at_seq is None:
            at_seq = self.seq
        if generation <= self.generation:
            raise ValueError(f"generation {generation} does not follow generation {self.generation}")
        if at_seq != self.seq:
            raise ValueError(
                f"generation {generation} must begin after the last applied seq {self.seq}, not after {at_seq}"
            )
        return PartitionMeta(generation, at_seq, (*self.history, (generation, at_seq)))

    def advance(self, seq: int, generation: int | None = None) -> PartitionMeta:
        """The meta once entry ``seq`` of ``generation`` (default: the current one) is applied.

        ``seq`` must directly follow this meta's seq, and ``generation`` must not be older than its
        generation; a newer one begins with this entry.
        """
        if seq != self.seq + 1:
            raise ValueError(f"log entry {seq} does not follow seq {self.seq}")
        if generation is None or generation == self.generation:
            return PartitionMeta(self.generation, seq, self.history)
        if generation < self.generation:
            raise ValueError(f"log entry {seq} is from generation {generation}, older than {self.generation}")
        return PartitionMeta(generation, seq, (*self.history, (generation, self.seq)))

    def generation_at(self, seq: int) -> int:
        """The generation that wrote entry ``seq``; 0 for seq 0 (no entry)."""
        return generation_of(self.history, seq)

    def at(self, seq: int) -> PartitionMeta:
        """This meta as it was when ``seq`` was the last entry applied.

        For the committed position of a replica whose in-memory meta runs ahead of the disk, and for the
        position a replica keeps after dropping the entries after ``seq``. Generations that began after
        ``seq`` are forgotten; one that began right at ``seq`` is kept.
        """
        if not 0 <= seq <= self.seq:
            raise ValueError(f"seq {seq} is not in the log, which ends at {self.seq}")
        history = tuple(pair for pair in self.history if pair[1] <= seq)
        return PartitionMeta(history[-1][0] if history else 0, seq, history)


def encode_meta(meta: PartitionMeta) -> bytes:
    pack = _META_PAIR.pack
    return b"".join([pack(meta.generation, meta.seq), *[pack(g, start) for g, start in meta.history]])


def decode_meta(raw: bytes) -> PartitionMeta:
    if not raw or len(raw) % _META_PAIR.size:
        raise CorruptionError(f"partition meta of {len(raw)} bytes has a partial field")
    generation, seq = _META_PAIR.unpack_from(raw)
    return PartitionMeta(generation, seq, tuple(_META_PAIR.iter_unpack(raw[_META_PAIR.size :])))


def generation_of(history: History, seq: int) -> int:
    """The generation that wrote entry ``seq`` according to ``history``; 0 before every generation."""
    # The last pair with start_seq < seq; among equal starts the last, since the others wrote nothing.
    index = bisect_left(history, seq, key=lambda pair: pair[1]) - 1
    return history[index][0] if index >= 0 else 0


def divergence_seq(local_history: History, local_seq: int, leader_history: History) -> int:
    """The highest seq a replica may keep when it follows a leader: its log agrees with the leader's up
    to there.

    An entry is identified by its (generation, seq): a generation has one primary, which never writes a
    seq twice. So the two logs agree at a seq exactly when both histories assign it the same generation.
    They can only start to disagree right after a start_seq of either history, so only those seqs are
    compared. Entries the leader has not written yet in its own (last) generation cannot be on the
    replica, so the replica's shorter or equal log in that generation always agrees.
    """
    boundaries = sorted({start for _, start in local_history} | {start for _, start in leader_history})
    for start in boundaries:
        if start >= local_seq:
            break
        if generation_of(local_history, start + 1) != generation_of(leader_history, start + 1):
            return start
    return local_seq
