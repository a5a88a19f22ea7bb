"""The proxy's side of ordered ranges and versioned reads (docs/ranges.md).

``KV.RANGE start end [LIMIT n] [DESC] [KEYSONLY] [ASOF version] [CURSOR c]`` pages through the keys in
``[start, end)`` across every partition, all pages of one scan at one snapshot version; ``KV.SNAPSHOT``
gives a version to read at; ``KV.GETVERSION`` and ``KV.GETASOF`` read one key on its primary.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from struct import Struct
from struct import error as StructError

from twisted.internet import defer

from kvcommon.commands import DATA_COMMANDS, check_arity, wrong_arity
from kvcommon.errors import CommandError, KVError, error_from_reply
from kvcommon.hlc import LOGICAL_BITS, LOGICAL_MASK
from kvcommon.replies import unwrap_first_error
from kvcommon.strings import word
from kvproxy.fanout import merge_page

DEFAULT_LIMIT = 100
MAX_LIMIT = 100_000

# The cursor: format, flags (bit 0: descending), snapshot version, then the last key returned.
_CURSOR = Struct(">BBQ")
_CURSOR_FORMAT = 1
_DESCENDING = 1


@dataclass(frozen=True)
class RangeRequest:
    start: bytes
    end: bytes | None  # None: no upper bound
    limit: int = DEFAULT_LIMIT
    descending: bool = False
    keys_only: bool = False
    version: int | None = None
    # The last key a previous page returned: this page goes on after it in scan order.
    after: bytes | None = None

    def bounds(self, after: bytes | None) -> tuple[bytes, bytes | None] | None:
        """The part of the range after ``after`` in scan order, or None if nothing is left."""
        start, end = self.start, self.end
        if after is not None:
            if self.descending:
                if after == b"":
                    return None  # the smallest key: nothing comes after it
                end = after if end is None else min(end, after)
            else:
                start = max(start, after + b"\x00")
        if end is not None and start >= end:
            return None
        return start, end


def parse_range(args: list[bytes]) -> RangeRequest:
    if len(args) < 3:
        raise wrong_arity("kv.range")
    request = RangeRequest(args[1], args[2] or None)
    cursor = None
    i = 3
    while i < len(args):
        option = word(args[i])
        if option == b"desc":
            request = replace(request, descending=True)
        elif option == b"keysonly":
            request = replace(request, keys_only=True)
        elif option in (b"limit", b"asof", b"cursor") and i + 1 < len(args):
            value = args[i + 1]
            i += 1
            if option == b"limit":
                request = replace(request, limit=_positive(value, "LIMIT", MAX_LIMIT))
            elif option == b"asof":
                request = replace(request, version=_positive(value, "ASOF", (1 << 63) - 1))
            elif value:
                cursor = value
        else:
            raise CommandError("syntax error")
        i += 1
    if cursor is not None:
        descending, version, after = decode_cursor(cursor)
        if descending != request.descending:
            raise CommandError("the cursor belongs to a scan in the other direction: give DESC on every page "
                               "or on none")
        if request.version is not None and request.version != version:
            raise CommandError(f"the cursor reads at version {version}, not at the ASOF version "
                               f"{request.version}")
        request = replace(request, version=version, after=after)
    return request


def _positive(raw: bytes, name: str, maximum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= maximum:
        raise CommandError(f"{name} must be an integer between 1 and {maximum}")
    return value


def encode_cursor(descending: bool, version: int, last_key: bytes) -> bytes:
    header = _CURSOR.pack(_CURSOR_FORMAT, _DESCENDING if descending else 0, version)
    return base64.urlsafe_b64encode(header + last_key)


def decode_cursor(raw: bytes) -> tuple[bool, int, bytes]:
    """``(descending, version, last key)`` of a cursor from ``encode_cursor``."""
    try:
        data = base64.urlsafe_b64decode(raw)
        fmt, flags, version = _CURSOR.unpack_from(data)
    except (binascii.Error, ValueError, StructError):
        fmt = None
    if fmt != _CURSOR_FORMAT:
        raise CommandError("invalid KV.RANGE cursor: pass back the cursor of the previous page unchanged")
    return bool(flags & _DESCENDING), version, data[_CURSOR.size:]


class RangeCommands:
    """The handlers, registered with the proxy's other local commands (kvproxy.commands)."""

    def __init__(self, service, now_ms: Callable[[], int] | None = None):
        self.service = service
        self._now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)
        self._last_snapshot = 0

    def handlers(self) -> dict:
        return {b"kv.range": self.kv_range, b"kv.snapshot": self.snapshot, b"kv.getversion": self.point_read,
                b"kv.getasof": self.point_read}

    def snapshot_version(self) -> int:
        """The current hybrid time with every logical tick of this millisecond: a version at or above that
        of every write acknowledged before now, clock skew between hosts aside (docs/ranges.md).

        Not a new version per call, as a hybrid clock's ``now`` would be: many snapshots in one millisecond
        would push it ahead of wall time until the nodes refused its versions. Never decreasing, though.
        """
        version = max((self._now_ms() << LOGICAL_BITS) | LOGICAL_MASK, self._last_snapshot)
        self._last_snapshot = version
        return version

    def snapshot(self, session, args: list[bytes]):
        if len(args) != 1:
            raise wrong_arity("kv.snapshot")
        return self.snapshot_version()

    def point_read(self, session, args: list[bytes]):
        """KV.GETVERSION, KV.GETASOF: to the key's primary whatever the read level, since only the primary
        knows which writes are still pending."""
        check_arity(DATA_COMMANDS[args[0].lower()], args)
        return self.service.send(self.service.view.partition_of(args[1]), args, b"-", readonly=True)

    def kv_range(self, session, args: list[bytes]):
        request = parse_range(args)
        if request.version is None:
            request = replace(request, version=self.snapshot_version())
        if request.bounds(request.after) is None:
            return [b"", []]
        partitions = range(self.service.view.partition_count)
        d = merge_page(partitions, lambda p, after, count: self._fetch(request, p, after, count),
                       request.limit, request.descending)
        d.addCallbacks(lambda page: self._reply(request, *page), unwrap_first_error)
        return d

    def _fetch(self, request: RangeRequest, partition: int, after: bytes | None, count: int):
        bounds = request.bounds(request.after if after is None else after)
        if bounds is None:
            return defer.succeed(([], False))
        start, end = bounds
        args = [b"KV.RANGEPART", start, b"" if end is None else end, count, int(request.descending),
                int(request.keys_only), request.version]
        d = self.service.send(partition, args, b"-", readonly=True)
        d.addCallback(_part_reply, request.keys_only)
        return d

    def _reply(self, request: RangeRequest, items: list, more: bool) -> list:
        cursor = encode_cursor(request.descending, request.version, items[-1][0]) if more and items else b""
        flat = [field for item in items for field in item]
        return [cursor, flat]


def _part_reply(reply, keys_only: bool) -> tuple[list, bool]:
    """A node's KV.RANGEPART reply as (items, more); an error reply raises it."""
    if isinstance(reply, KVError):
        raise reply
    if reply.is_error:
        raise error_from_reply(bytes(reply[1:-2]).decode("utf-8", "replace"))
    more, flat = reply.value()
    if keys_only:
        return [(key,) for key in flat], bool(more)
    return list(zip(flat[::2], flat[1::2], strict=True)), bool(more)
