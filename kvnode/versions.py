"""Reads at a version on a partition's primary: KV.GETVERSION, KV.GETASOF and KV.RANGEPART (docs/ranges.md).

A read "as of" version ``v`` must see exactly the writes with a version at or below ``v``. The primary
assigns versions from its hybrid clock as it appends entries, so before reading it

1. makes its clock observe ``v``: every write appended from then on gets a version above ``v``;
2. waits until every appended entry with a version at or below ``v`` has reached its write level, which
   also puts it on disk;

and then reads the history on disk. Versions too far ahead of the clock are refused (a client that asks
for one would otherwise push the partition's clock ahead of wall time); versions older than the retention
window are refused because compaction may have removed what they need (``kvnode.compaction``).
"""

from __future__ import annotations

import time

from kvcommon.errors import CommandError, KVError
from kvcommon.hlc import LOGICAL_BITS, version_ms
from kvnode.replica import Replica
from kvnode.storage.history import is_live, items_as_of, read_as_of
from kvnode.storage.records import KIND_STRING, decode_value, value_of

# The commands this module answers; the node routes them here, always to the primary.
VERSIONED_READS = frozenset((b"kv.getversion", b"kv.getasof", b"kv.rangepart"))
# How far ahead of the node's clock a requested version may be. A version from KV.SNAPSHOT or KV.RANGE
# comes from a proxy's clock, so this only has to cover clock skew between hosts.
MAX_FUTURE_MS = 1000
MAX_VERSION = (1 << 63) - 1


def parse_version(raw: bytes) -> int:
    try:
        version = int(raw)
    except ValueError:
        version = -1
    if not 0 < version <= MAX_VERSION:
        raise CommandError(f"invalid version {raw[:40].decode('utf-8', 'replace')!r}: expected a positive "
                           "integer as given by KV.SNAPSHOT or KV.GETVERSION")
    return version


class VersionedReads:
    def __init__(self, service):
        self.service = service

    def execute(self, replica: Replica, args: list[bytes]):
        """Run one of VERSIONED_READS on the partition's primary: a reply, a KVError, or a Deferred."""
        name = args[0].lower()
        if name == b"kv.getversion":
            return self._get_version(replica, args[1])
        if name == b"kv.getasof":
            version = parse_version(args[2])
            return self._at(replica, version, lambda: self._get_as_of(replica, args[1], version))
        if len(args) != 7:
            raise CommandError("wrong number of arguments for 'kv.rangepart' command")
        start, end, limit, desc, keys_only, version = args[1:]
        try:
            limit = int(limit)
        except ValueError:
            limit = 0
        if limit < 1:
            raise CommandError("KV.RANGEPART limit must be a positive integer")
        version = parse_version(version)
        return self._at(replica, version, lambda: self._range(
            replica, start, end or None, limit, desc == b"1", keys_only == b"1", version))

    # -- the safety rule -------------------------------------------------------------------------------

    def check_version(self, version: int, now_ms: int) -> None:
        """Refuse versions ahead of the clock or older than the retention window."""
        ahead = version_ms(version) - now_ms
        if ahead > MAX_FUTURE_MS:
            raise CommandError(f"version {version} is {ahead} ms ahead of this node's clock; use a version "
                               "from KV.SNAPSHOT")
        retention = self.retention_seconds()
        oldest_ms = now_ms - retention * 1000
        if version_ms(version) < oldest_ms:
            raise CommandError(
                f"version {version} is older than the retention window ({retention} s): history before "
                f"version {oldest_ms << LOGICAL_BITS} has been compacted")

    def retention_seconds(self) -> int:
        config = self.service.config
        if config is None:
            raise CommandError("the node has not loaded the cluster configuration yet")
        return config.retention_seconds

    def _at(self, replica: Replica, version: int, read):
        """``read()`` once the partition has applied every write at or below ``version``."""
        self.check_version(version, _now_ms())
        self.service.clock.observe(version)
        waits = replica.pending_up_to(version)
        if not waits:
            return read()
        d = self.service._after(waits, None, writing=False)
        d.addCallback(lambda failed: failed if isinstance(failed, KVError) else read())
        return d

    # -- the reads -------------------------------------------------------------------------------------

    def _get_version(self, replica: Replica, key: bytes):
        """The newest value and its version, pending writes included (waiting for them, as GET does)."""
        waits = []
        raw = self.service._reader(replica, waits)(key)
        reply = None
        if raw is not None:
            record = decode_value(raw)
            if record.kind == KIND_STRING and not (record.expire_at_ms and record.expire_at_ms <= _now_ms()):
                reply = [record.value, record.version]
        return self.service._after(waits, reply, writing=False) if waits else reply

    def _get_as_of(self, replica: Replica, key: bytes, version: int) -> bytes | None:
        raw = read_as_of(self.service.store.engine, replica.partition, key, version)
        return value_of(raw) if raw is not None and is_live(raw, version) else None

    def _range(self, replica: Replica, start: bytes, end: bytes | None, limit: int, desc: bool,
               keys_only: bool, version: int) -> list:
        """``[more, items]``: the first ``limit`` live keys of ``[start, end)`` as of ``version``, with
        their values unless ``keys_only``; ``more`` is 1 if the range holds further keys."""
        items: list[bytes] = []
        found = 0
        for key, raw in items_as_of(self.service.store.engine, replica.partition, start, end, version, desc):
            if not is_live(raw, version):
                continue
            if found == limit:
                return [1, items]
            found += 1
            items.append(key)
            if not keys_only:
                items.append(value_of(raw))
        return [0, items]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
