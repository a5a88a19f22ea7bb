"""The storage layer of a node: an ordered key-value engine and the partition replicas stored in it."""

from kvnode.storage.interface import CorruptionError, Engine, Snapshot, StorageError, WriteBatch
from kvnode.storage.keys import SCHEMA_VERSION, check_schema
from kvnode.storage.leveldb import LevelDBEngine
from kvnode.storage.memory import MemoryEngine
from kvnode.storage.partition_store import PartitionStore
from kvnode.storage.records import (
    KIND_STRING,
    KIND_TOMBSTONE,
    LogEntry,
    PartitionMeta,
    ValueRecord,
    decode_entry,
    decode_meta,
    decode_value,
    divergence_seq,
    encode_entry,
    encode_meta,
    encode_value,
)

__all__ = [
    "KIND_STRING",
    "KIND_TOMBSTONE",
    "SCHEMA_VERSION",
    "CorruptionError",
    "Engine",
    "LevelDBEngine",
    "LogEntry",
    "MemoryEngine",
    "PartitionMeta",
    "PartitionStore",
    "Snapshot",
    "StorageError",
    "ValueRecord",
    "WriteBatch",
    "check_schema",
    "decode_entry",
    "decode_meta",
    "decode_value",
    "divergence_seq",
    "encode_entry",
    "encode_meta",
    "encode_value",
]
