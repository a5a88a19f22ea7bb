"""SCAN and KEYS over the whole cluster, without I/O: cursors, options, and which partitions to visit.

A cursor is ``partition << SCAN_TOKEN_BITS | token``: the partition being walked and a token its primary
handed out for the position reached (``kvnode.scan``). A scan visits the partitions in order; cursor 0
starts at partition 0 and a scan ends when the last partition is done, as Redis's does. When the MATCH
pattern fixes a hash tag, only that tag's partition can hold matches, and only it is walked.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from kvcommon.commands import SCAN_TOKEN_BITS
from kvcommon.errors import CommandError
from kvcommon.hashing import partition_for
from kvcommon.strings import literal_prefix, parse_ll, syntax_error, word

TOKEN_MASK = (1 << SCAN_TOKEN_BITS) - 1
DEFAULT_COUNT = 10
_ULONG_MAX = 2**64 - 1
_C_SPACE = b" \t\n\v\f\r"
_CURSOR = re.compile(rb"([+-]?)(\d+)")


class ScanOptions(NamedTuple):
    count: int = DEFAULT_COUNT
    pattern: bytes | None = None  # None: every key
    other_type: bool = False  # TYPE names a type the store does not have: nothing matches


def parse_cursor(raw: bytes) -> int:
    """Redis's parseScanCursorOrReply: ``strtoul`` in base 10 over the whole (C) string."""
    if raw[:1] and raw[:1] in _C_SPACE:
        raise CommandError("invalid cursor")
    text = raw.partition(b"\0")[0]
    if not text:
        return 0
    m = _CURSOR.fullmatch(text)
    if m is None or int(m[2]) > _ULONG_MAX:
        raise CommandError("invalid cursor")
    value = int(m[2])
    return (-value) % (_ULONG_MAX + 1) if m[1] == b"-" else value


def parse_scan_options(args: list[bytes]) -> ScanOptions:
    """``[MATCH pattern] [COUNT count] [TYPE type]``, in any order, the last of each winning."""
    count, pattern, other_type = DEFAULT_COUNT, None, False
    i = 0
    while i < len(args):
        option = word(args[i])
        if i + 1 >= len(args) or option not in (b"count", b"match", b"type"):
            raise syntax_error()
        value = args[i + 1]
        if option == b"count":
            count = parse_ll(value)
            if count < 1:
                raise syntax_error()
        elif option == b"match":
            pattern = None if value == b"*" else value
        else:
            # Every value is a string.
            other_type = word(value) != b"string"
        i += 2
    return ScanOptions(count, pattern, other_type)


def split_cursor(cursor: int) -> tuple[int, int]:
    return cursor >> SCAN_TOKEN_BITS, cursor & TOKEN_MASK


def next_cursor(partition: int, token: int, partitions: int, only_partition: bool) -> int:
    """The cursor after a step of ``partition`` answered ``token`` (0: the partition is done)."""
    if token:
        return partition << SCAN_TOKEN_BITS | token
    if only_partition or partition + 1 >= partitions:
        return 0
    return (partition + 1) << SCAN_TOKEN_BITS


def pattern_partition(pattern: bytes | None, partitions: int) -> int | None:
    """The one partition that can hold keys matching ``pattern``, or None if any can.

    Every matching key starts with the pattern's literal prefix; when that prefix holds a whole non-empty
    ``{tag}``, it is the key's hash tag (kvcommon.hashing), so the key is in the tag's partition.
    """
    if pattern is None:
        return None
    prefix = literal_prefix(pattern)
    start = prefix.find(b"{")
    end = prefix.find(b"}", start + 1) if start >= 0 else -1
    if end <= start + 1:
        return None
    return partition_for(prefix[:end + 1], partitions)
