"""What each data command does to one partition: pure functions over a CommandContext, no I/O.

A handler reads the newest values through the context and records its writes there; the node turns the
recorded writes into one log entry, so a command is atomic and is replicated as its result, never
re-executed on a secondary. Replies and errors are Redis's, checked in the same order as Redis checks them
(the reference is Redis 7.0; see docs/commands.md).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from fractions import Fraction

from kvcommon.errors import CommandError
from kvcommon.resp import OK, Status
from kvcommon.strings import (
    LLONG_MAX,
    LLONG_MIN,
    MAX_STRING_BYTES,
    glob_match,
    lcs_command,
    parse_ll,
    string_to_ll,
    syntax_error,
    word,
)
from kvnode import longdouble
from kvnode.storage.records import KIND_STRING, ValueRecord, decode_value, encode_value

Reader = Callable[[bytes], "bytes | None"]
# items(start, reverse): the partition's (key, raw record) pairs, pending writes included: the keys from
# ``start`` on in byte order, or from the last key down to ``start`` when ``reverse``.
Items = Callable[[bytes, bool], Iterator[tuple[bytes, bytes]]]


class CommandContext:
    """A command's view of one partition at one moment.

    ``reader`` returns the raw value record of a key (pending writes included) or None; ``items`` walks the
    partition in key order, for the commands that look at every key; ``cursors`` keeps where each SCAN
    stopped (``kvnode.scan.ScanCursors``). ``writes`` collects the command's changes: key -> raw record, or
    None for a delete.

    Expired keys read as absent. The keys found expired are in ``expired``: ``changes()`` deletes them
    along with the command's own writes, so a primary removes an expired key whenever a command touches it.
    """

    def __init__(self, reader: Reader, now_ms: int, version: int, *, partition: int = 0,
                 items: Items | None = None, cursors=None):
        self._reader = reader
        self._items = items
        self.cursors = cursors
        self.partition = partition
        self.now_ms = now_ms
        self.version = version
        self.writes: dict[bytes, bytes | None] = {}
        self.expired: set[bytes] = set()

    def record(self, key: bytes) -> ValueRecord | None:
        """The key's live record, or None if it is missing or expired."""
        if key in self.writes:
            raw = self.writes[key]
            return None if raw is None else decode_value(raw)
        raw = self._reader(key)
        return None if raw is None else self._live(key, decode_value(raw))

    def _live(self, key: bytes, record: ValueRecord) -> ValueRecord | None:
        if record.kind != KIND_STRING:
            return None
        if record.expire_at_ms and record.expire_at_ms <= self.now_ms:
            self.expired.add(key)
            return None
        return record

    def get(self, key: bytes) -> bytes | None:
        record = self.record(key)
        return None if record is None else record.value

    def exists(self, key: bytes) -> bool:
        return self.record(key) is not None

    def put(self, key: bytes, value: bytes, expire_at_ms: int = 0) -> None:
        self.writes[key] = encode_value(self.version, value, expire_at_ms)

    def delete(self, key: bytes) -> bool:
        """Delete a key; True if it existed."""
        existed = self.exists(key)
        if existed:
            self.writes[key] = None
        return existed

    def live_items(self, start: bytes = b"", reverse: bool = False) -> Iterator[tuple[bytes, ValueRecord]]:
        """The partition's live keys and records from ``start`` on (see ``Items``)."""
        for key, raw in self._items(start, reverse):
            record = self._live(key, decode_value(raw))
            if record is not None:
                yield key, record

    def changes(self) -> dict[bytes, bytes | None]:
        """What the command writes: its own writes, and deletes of the expired keys it came across."""
        for key in self.expired:
            self.writes.setdefault(key, None)
        return self.writes


Handler = Callable[[CommandContext, list[bytes]], object]
HANDLERS: dict[bytes, Handler] = {}


def handler(*names: str):
    def register(fn: Handler) -> Handler:
        for name in names:
            HANDLERS[name.encode()] = fn
        return fn

    return register


# -- strings ---------------------------------------------------------------------------------------------

@handler("get")
def get(ctx: CommandContext, args: list[bytes]):
    return ctx.get(args[1])


class SetOptions:
    """The options of SET (and GETEX, which takes the expiry ones and PERSIST)."""

    __slots__ = ("nx", "xx", "get", "keepttl", "persist", "ifeq", "unit", "expire")

    def __init__(self, nx: bool = False, xx: bool = False, unit: bytes | None = None,
                 expire: bytes | None = None):
        self.nx, self.xx, self.unit, self.expire = nx, xx, unit, expire
        self.get = self.keepttl = self.persist = False
        self.ifeq: bytes | None = None


_EXPIRE_UNITS = (b"ex", b"px", b"exat", b"pxat")


def parse_set_options(args: list[bytes], first: int, for_set: bool) -> SetOptions:
    """Redis's ``parseExtendedStringArgumentsOrReply``, with IFEQ as Valkey 8.1 has it: exclusive with NX
    and XX. An expiry option may repeat (the last wins); two different ones are a syntax error."""
    opts = SetOptions()
    i = first
    while i < len(args):
        opt = word(args[i])
        has_value = i + 1 < len(args)
        conditional = opts.nx or opts.xx or opts.ifeq is not None
        if opt == b"nx" and for_set and not opts.xx and opts.ifeq is None:
            opts.nx = True
        elif opt == b"xx" and for_set and not opts.nx and opts.ifeq is None:
            opts.xx = True
        elif opt == b"ifeq" and for_set and has_value and not conditional:
            opts.ifeq = args[i + 1]
            i += 1
        elif opt == b"get" and for_set:
            opts.get = True
        elif opt == b"keepttl" and for_set and not opts.persist and opts.unit is None:
            opts.keepttl = True
        elif opt == b"persist" and not for_set and not opts.keepttl and opts.unit is None:
            opts.persist = True
        elif (opt in _EXPIRE_UNITS and has_value and not opts.keepttl and not opts.persist
              and opts.unit in (None, opt)):
            opts.unit, opts.expire = opt, args[i + 1]
            i += 1
        else:
            raise syntax_error()
        i += 1
    return opts


def invalid_expire(command: str) -> CommandError:
    return CommandError(f"invalid expire time in '{command}' command")


def expire_at_ms(ctx: CommandContext, unit: bytes, raw: bytes, command: str) -> int:
    """The absolute expiry an EX/PX/EXAT/PXAT argument asks for (Redis's getExpireMillisecondsOrReply)."""
    amount = parse_ll(raw)
    seconds = unit in (b"ex", b"exat")
    if amount <= 0 or (seconds and amount > LLONG_MAX // 1000):
        raise invalid_expire(command)
    if seconds:
        amount *= 1000
    if unit in (b"ex", b"px"):
        amount += ctx.now_ms
    if amount > LLONG_MAX:
        raise invalid_expire(command)
    return amount


def set_value(ctx: CommandContext, key: bytes, value: bytes, opts: SetOptions, command: str,
              done=OK, aborted=None):
    """SET and its variants (Redis's setGenericCommand): ``done`` or ``aborted`` is the reply without GET."""
    expire = expire_at_ms(ctx, opts.unit, opts.expire, command) if opts.expire is not None else None
    # A plain SET overwrites whatever is there: reading the old value would cost every SET a lookup.
    reads_old = opts.nx or opts.xx or opts.get or opts.keepttl or opts.ifeq is not None
    old = ctx.record(key) if reads_old else None
    previous = old.value if old is not None else None
    if opts.ifeq is not None and previous != opts.ifeq:
        return previous if opts.get else aborted
    if (opts.nx and old is not None) or (opts.xx and old is None):
        return previous if opts.get else aborted
    if expire is not None and expire <= ctx.now_ms:
        # Already expired (EXAT/PXAT in the past): the key is gone at once.
        ctx.delete(key)
    elif expire is not None:
        ctx.put(key, value, expire)
    else:
        ctx.put(key, value, old.expire_at_ms if opts.keepttl and old is not None else 0)
    return previous if opts.get else done


@handler("set")
def set_(ctx: CommandContext, args: list[bytes]):
    return set_value(ctx, args[1], args[2], parse_set_options(args, 3, for_set=True), "set")


@handler("setnx")
def setnx(ctx: CommandContext, args: list[bytes]):
    return set_value(ctx, args[1], args[2], SetOptions(nx=True), "setnx", done=1, aborted=0)


@handler("setex")
def setex(ctx: CommandContext, args: list[bytes]):
    return set_value(ctx, args[1], args[3], SetOptions(unit=b"ex", expire=args[2]), "setex")


@handler("psetex")
def psetex(ctx: CommandContext, args: list[bytes]):
    return set_value(ctx, args[1], args[3], SetOptions(unit=b"px", expire=args[2]), "psetex")


@handler("getset")
def getset(ctx: CommandContext, args: list[bytes]):
    previous = ctx.get(args[1])
    ctx.put(args[1], args[2])
    return previous


@handler("getdel")
def getdel(ctx: CommandContext, args: list[bytes]):
    previous = ctx.get(args[1])
    if previous is not None:
        ctx.delete(args[1])
    return previous


@handler("getex")
def getex(ctx: CommandContext, args: list[bytes]):
    opts = parse_set_options(args, 2, for_set=False)
    key = args[1]
    record = ctx.record(key)
    if record is None:
        return None
    if opts.expire is not None:
        expire = expire_at_ms(ctx, opts.unit, opts.expire, "getex")
        if expire <= ctx.now_ms:
            ctx.delete(key)
        else:
            ctx.put(key, record.value, expire)
    elif opts.persist and record.expire_at_ms:
        ctx.put(key, record.value)
    return record.value


@handler("mget")
def mget(ctx: CommandContext, args: list[bytes]):
    return [ctx.get(key) for key in args[1:]]


@handler("mset")
def mset(ctx: CommandContext, args: list[bytes]):
    for i in range(1, len(args), 2):
        ctx.put(args[i], args[i + 1])
    return OK


@handler("msetnx")
def msetnx(ctx: CommandContext, args: list[bytes]):
    if any(ctx.exists(args[i]) for i in range(1, len(args), 2)):
        return 0
    for i in range(1, len(args), 2):
        ctx.put(args[i], args[i + 1])
    return 1


def check_length(size: int) -> None:
    if size > MAX_STRING_BYTES:
        raise CommandError("string exceeds maximum allowed size (proto-max-bulk-len)")


@handler("append")
def append(ctx: CommandContext, args: list[bytes]):
    key, suffix = args[1], args[2]
    record = ctx.record(key)
    if record is None:
        ctx.put(key, suffix)
        return len(suffix)
    check_length(len(record.value) + len(suffix))
    ctx.put(key, record.value + suffix, record.expire_at_ms)
    return len(record.value) + len(suffix)


@handler("strlen")
def strlen(ctx: CommandContext, args: list[bytes]):
    value = ctx.get(args[1])
    return 0 if value is None else len(value)


@handler("getrange", "substr")
def getrange(ctx: CommandContext, args: list[bytes]):
    start, end = parse_ll(args[2]), parse_ll(args[3])
    value = ctx.get(args[1])
    if value is None or (start < 0 and end < 0 and start > end):
        return b""
    start, end = clamp_range(start, end, len(value))
    if start > end or not value:
        return b""
    return value[start:end + 1]


def clamp_range(start: int, end: int, length: int) -> tuple[int, int]:
    """Redis's reading of an inclusive range: negative indexes count from the end, then both are clamped
    to the string (end may come out below start: an empty range)."""
    if start < 0:
        start += length
    if end < 0:
        end += length
    start, end = max(start, 0), max(end, 0)
    return start, min(end, length - 1)


@handler("setrange")
def setrange(ctx: CommandContext, args: list[bytes]):
    key, patch = args[1], args[3]
    offset = parse_ll(args[2])
    if offset < 0:
        raise CommandError("offset is out of range")
    record = ctx.record(key)
    old = record.value if record is not None else b""
    if not patch:
        return len(old)
    check_length(offset + len(patch))
    new = old[:offset].ljust(offset, b"\0") + patch + old[offset + len(patch):]
    ctx.put(key, new, record.expire_at_ms if record is not None else 0)
    return len(new)


@handler("lcs")
def lcs(ctx: CommandContext, args: list[bytes]):
    return lcs_command(ctx.get(args[1]) or b"", ctx.get(args[2]) or b"", args[3:])


# -- counters --------------------------------------------------------------------------------------------

def increment(ctx: CommandContext, key: bytes, delta: int) -> int:
    record = ctx.record(key)
    value = 0
    if record is not None:
        value = string_to_ll(record.value)
        if value is None:
            raise CommandError("value is not an integer or out of range")
    if (delta < 0 and value < 0 and delta < LLONG_MIN - value) or (
            delta > 0 and value > 0 and delta > LLONG_MAX - value):
        raise CommandError("increment or decrement would overflow")
    value += delta
    ctx.put(key, b"%d" % value, record.expire_at_ms if record is not None else 0)
    return value


@handler("incr")
def incr(ctx: CommandContext, args: list[bytes]):
    return increment(ctx, args[1], 1)


@handler("decr")
def decr(ctx: CommandContext, args: list[bytes]):
    return increment(ctx, args[1], -1)


@handler("incrby")
def incrby(ctx: CommandContext, args: list[bytes]):
    return increment(ctx, args[1], parse_ll(args[2]))


@handler("decrby")
def decrby(ctx: CommandContext, args: list[bytes]):
    delta = parse_ll(args[2])
    if delta == LLONG_MIN:
        raise CommandError("decrement would overflow")
    return increment(ctx, args[1], -delta)


@handler("incrbyfloat")
def incrbyfloat(ctx: CommandContext, args: list[bytes]):
    key = args[1]
    record = ctx.record(key)
    current = longdouble.parse(record.value) if record is not None else Fraction(0)
    delta = longdouble.parse(args[2])
    if current is None or delta is None:
        raise CommandError("value is not a valid float")
    total = longdouble.add(current, delta)
    if total is None or isinstance(total, float):
        raise CommandError("increment would produce NaN or Infinity")
    text = longdouble.format_human(total)
    ctx.put(key, text, record.expire_at_ms if record is not None else 0)
    return text


# -- bitmaps ---------------------------------------------------------------------------------------------

_BIT_OFFSET_ERROR = "bit offset is not an integer or out of range"


def bit_offset(raw: bytes) -> int:
    offset = string_to_ll(raw)
    if offset is None or offset < 0 or (offset >> 3) >= MAX_STRING_BYTES:
        raise CommandError(_BIT_OFFSET_ERROR)
    return offset


@handler("setbit")
def setbit(ctx: CommandContext, args: list[bytes]):
    key = args[1]
    offset = bit_offset(args[2])
    on = string_to_ll(args[3])
    if on not in (0, 1):
        raise CommandError("bit is not an integer or out of range")
    record = ctx.record(key)
    value = bytearray(record.value if record is not None else b"")
    byte, mask = offset >> 3, 0x80 >> (offset & 7)
    grows = byte >= len(value)
    if grows:
        value.extend(bytes(byte + 1 - len(value)))
    was = 1 if value[byte] & mask else 0
    if grows or record is None or was != on:
        value[byte] = value[byte] | mask if on else value[byte] & ~mask
        ctx.put(key, bytes(value), record.expire_at_ms if record is not None else 0)
    return was


@handler("getbit")
def getbit(ctx: CommandContext, args: list[bytes]):
    offset = bit_offset(args[2])
    value = ctx.get(args[1]) or b""
    byte = offset >> 3
    return 1 if byte < len(value) and value[byte] & (0x80 >> (offset & 7)) else 0


def _edge_masks(start: int, end: int) -> tuple[int, int, int, int]:
    """A bit range as bytes, with masks of the bits of its first and last bytes that are outside it."""
    first_mask = ~((1 << (8 - (start & 7))) - 1) & 0xFF
    last_mask = (1 << (7 - (end & 7))) - 1
    return start >> 3, end >> 3, first_mask, last_mask


def _bit_unit(raw: bytes) -> bool:
    unit = word(raw)
    if unit == b"bit":
        return True
    if unit != b"byte":
        raise syntax_error()
    return False


@handler("bitcount")
def bitcount(ctx: CommandContext, args: list[bytes]):
    value = ctx.get(args[1])
    if value is None:
        return 0
    first_mask = last_mask = 0
    if len(args) == 2:
        start, end = 0, len(value) - 1
    elif len(args) in (4, 5):
        start, end = parse_ll(args[2]), parse_ll(args[3])
        if start < 0 and end < 0 and start > end:
            return 0
        in_bits = _bit_unit(args[4]) if len(args) == 5 else False
        start, end = clamp_range(start, end, len(value) * 8 if in_bits else len(value))
        if in_bits and start <= end:
            start, end, first_mask, last_mask = _edge_masks(start, end)
    else:
        raise syntax_error()
    if start > end:
        return 0
    count = int.from_bytes(value[start:end + 1], "big").bit_count()
    return count - (value[start] & first_mask).bit_count() - (value[end] & last_mask).bit_count()


def _first_bit(data: bytes, bit: int) -> int:
    """Redis's redisBitpos: where the first ``bit`` is; -1 if there is no 1, ``len * 8`` if there is no 0."""
    skipped = len(data) - len(data.lstrip(b"\xff" if bit == 0 else b"\x00"))
    if skipped == len(data):
        return -1 if bit else len(data) * 8
    byte = data[skipped] if bit else ~data[skipped] & 0xFF
    return skipped * 8 + 8 - byte.bit_length()


@handler("bitpos")
def bitpos(ctx: CommandContext, args: list[bytes]):
    bit = parse_ll(args[2])
    if bit not in (0, 1):
        raise CommandError("The bit argument must be 1 or 0.")
    value = ctx.get(args[1])
    if value is None:
        # A missing key is an endless run of zeros.
        return -1 if bit else 0
    first_mask = last_mask = 0
    end_given = False
    if len(args) in (4, 5, 6):
        start = parse_ll(args[3])
        in_bits = _bit_unit(args[5]) if len(args) == 6 else False
        if len(args) >= 5:
            end, end_given = parse_ll(args[4]), True
        else:
            end = len(value) - 1
        start, end = clamp_range(start, end, len(value) * 8 if in_bits else len(value))
        if in_bits and start <= end:
            start, end, first_mask, last_mask = _edge_masks(start, end)
    elif len(args) == 3:
        start, end = 0, len(value) - 1
    else:
        raise syntax_error()
    if start > end:
        return -1
    pos, start, nbytes = _search_bits(value, bit, start, end, first_mask, last_mask)
    if end_given and bit == 0 and pos == nbytes * 8:
        # An explicit range does not extend into the zeros past the string.
        return -1
    return pos + start * 8 if pos != -1 else -1


def _search_bits(value: bytes, bit: int, start: int, end: int, first_mask: int,
                 last_mask: int) -> tuple[int, int, int]:
    """The search of Redis's bitposCommand, edge bytes masked: (position found relative to the byte where
    the search ended, that byte, the bytes left from there)."""
    nbytes = end - start + 1
    if first_mask:
        byte = value[start] & ~first_mask & 0xFF if bit else value[start] | first_mask
        if last_mask and nbytes == 1:
            byte = byte & ~last_mask & 0xFF if bit else byte | last_mask
        pos = _first_bit(bytes([byte]), bit)
        if nbytes == 1 or pos not in (-1, 8):
            return pos, start, nbytes
        start += 1
        nbytes -= 1
    middle = nbytes - (1 if last_mask else 0)
    if middle > 0:
        pos = _first_bit(value[start:start + middle], bit)
        if nbytes == middle or pos not in (-1, middle * 8):
            return pos, start, nbytes
        start += middle
        nbytes -= middle
    byte = value[end] & ~last_mask & 0xFF if bit else value[end] | last_mask
    return _first_bit(bytes([byte]), bit), start, nbytes


_BITOPS = {
    b"and": lambda a, b: a & b,
    b"or": lambda a, b: a | b,
    b"xor": lambda a, b: a ^ b,
}


@handler("bitop")
def bitop(ctx: CommandContext, args: list[bytes]):
    op = word(args[1])
    if op != b"not" and op not in _BITOPS:
        raise syntax_error()
    if op == b"not" and len(args) != 4:
        raise CommandError("BITOP NOT must be called with a single source key.")
    values = [ctx.get(key) or b"" for key in args[3:]]
    size = max(len(v) for v in values)
    target = args[2]
    if size == 0:
        ctx.delete(target)
        return 0
    # Shorter strings count as padded with zero bytes.
    numbers = [int.from_bytes(v.ljust(size, b"\0"), "big") for v in values]
    if op == b"not":
        result = ~numbers[0] & ((1 << (8 * size)) - 1)
    else:
        combine = _BITOPS[op]
        result = numbers[0]
        for number in numbers[1:]:
            result = combine(result, number)
    ctx.put(target, result.to_bytes(size, "big"))
    return size


# -- keys and expiry -------------------------------------------------------------------------------------

@handler("del", "unlink")
def delete(ctx: CommandContext, args: list[bytes]):
    return sum(ctx.delete(key) for key in args[1:])


@handler("exists", "touch")
def exists(ctx: CommandContext, args: list[bytes]):
    return sum(ctx.exists(key) for key in args[1:])


@handler("type")
def type_(ctx: CommandContext, args: list[bytes]):
    return Status("string" if ctx.exists(args[1]) else "none")


_EXPIRE_FLAGS = (b"nx", b"xx", b"gt", b"lt")


def expire_flags(options: list[bytes]) -> set[bytes]:
    """Redis's parseExtendedExpireArgumentsOrReply: NX, XX, GT, LT, some of them incompatible."""
    flags = set()
    for raw in options:
        flag = word(raw)
        if flag not in _EXPIRE_FLAGS:
            name = raw.partition(b"\0")[0].decode("utf-8", "replace")
            raise CommandError(f"Unsupported option {name}")
        flags.add(flag)
    if b"nx" in flags and flags & {b"xx", b"gt", b"lt"}:
        raise CommandError("NX and XX, GT or LT options at the same time are not compatible")
    if {b"gt", b"lt"} <= flags:
        raise CommandError("GT and LT options at the same time are not compatible")
    return flags


# C's LLONG_MIN / 1000 truncates toward zero.
_MIN_SECONDS = -(-LLONG_MIN // 1000)


def expire(ctx: CommandContext, args: list[bytes], relative: bool, in_seconds: bool):
    """EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT (Redis's expireGenericCommand)."""
    command = args[0].decode("utf-8", "replace").lower()
    flags = expire_flags(args[3:])
    when = parse_ll(args[2])
    if in_seconds:
        if when > LLONG_MAX // 1000 or when < _MIN_SECONDS:
            raise invalid_expire(command)
        when *= 1000
    base = ctx.now_ms if relative else 0
    if when > LLONG_MAX - base:
        raise invalid_expire(command)
    when += base
    key = args[1]
    record = ctx.record(key)
    if record is None:
        return 0
    current = record.expire_at_ms or None
    if ((b"nx" in flags and current is not None) or (b"xx" in flags and current is None)
            or (b"gt" in flags and (current is None or when <= current))
            or (b"lt" in flags and current is not None and when >= current)):
        return 0
    if when <= ctx.now_ms:
        ctx.delete(key)
    else:
        ctx.put(key, record.value, when)
    return 1


@handler("expire")
def expire_(ctx: CommandContext, args: list[bytes]):
    return expire(ctx, args, relative=True, in_seconds=True)


@handler("pexpire")
def pexpire(ctx: CommandContext, args: list[bytes]):
    return expire(ctx, args, relative=True, in_seconds=False)


@handler("expireat")
def expireat(ctx: CommandContext, args: list[bytes]):
    return expire(ctx, args, relative=False, in_seconds=True)


@handler("pexpireat")
def pexpireat(ctx: CommandContext, args: list[bytes]):
    return expire(ctx, args, relative=False, in_seconds=False)


def time_to_live(ctx: CommandContext, key: bytes, in_ms: bool, absolute: bool) -> int:
    """TTL, PTTL, EXPIRETIME, PEXPIRETIME: -2 for a missing key, -1 for one without expiry."""
    record = ctx.record(key)
    if record is None:
        return -2
    if not record.expire_at_ms:
        return -1
    ms = max(record.expire_at_ms if absolute else record.expire_at_ms - ctx.now_ms, 0)
    return ms if in_ms else (ms + 500) // 1000


@handler("ttl")
def ttl(ctx: CommandContext, args: list[bytes]):
    return time_to_live(ctx, args[1], in_ms=False, absolute=False)


@handler("pttl")
def pttl(ctx: CommandContext, args: list[bytes]):
    return time_to_live(ctx, args[1], in_ms=True, absolute=False)


@handler("expiretime")
def expiretime(ctx: CommandContext, args: list[bytes]):
    return time_to_live(ctx, args[1], in_ms=False, absolute=True)


@handler("pexpiretime")
def pexpiretime(ctx: CommandContext, args: list[bytes]):
    return time_to_live(ctx, args[1], in_ms=True, absolute=True)


@handler("persist")
def persist(ctx: CommandContext, args: list[bytes]):
    record = ctx.record(args[1])
    if record is None or not record.expire_at_ms:
        return 0
    ctx.put(args[1], record.value)
    return 1


def rename(ctx: CommandContext, args: list[bytes], nx: bool):
    source, target = args[1], args[2]
    record = ctx.record(source)
    if record is None:
        raise CommandError("no such key")
    if source == target:
        return 0 if nx else OK
    if nx and ctx.exists(target):
        return 0
    ctx.put(target, record.value, record.expire_at_ms)
    ctx.delete(source)
    return 1 if nx else OK


@handler("rename")
def rename_(ctx: CommandContext, args: list[bytes]):
    return rename(ctx, args, nx=False)


@handler("renamenx")
def renamenx(ctx: CommandContext, args: list[bytes]):
    return rename(ctx, args, nx=True)


_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


@handler("copy")
def copy(ctx: CommandContext, args: list[bytes]):
    replace = False
    i = 3
    while i < len(args):
        option = word(args[i])
        if option == b"replace":
            replace = True
        elif option == b"db" and i + 1 < len(args):
            db = parse_ll(args[i + 1])
            if not _INT_MIN <= db <= _INT_MAX:
                raise CommandError(f"value is out of range, value must between {_INT_MIN} and {_INT_MAX}")
            if db != 0:
                # One keyspace, as a Redis configured with "databases 1".
                raise CommandError("DB index is out of range")
            i += 1
        else:
            raise syntax_error()
        i += 1
    source, target = args[1], args[2]
    if source == target:
        raise CommandError("source and destination objects are the same")
    record = ctx.record(source)
    if record is None or (not replace and ctx.exists(target)):
        return 0
    ctx.put(target, record.value, record.expire_at_ms)
    return 1


# -- the whole partition ---------------------------------------------------------------------------------

@handler("keys")
def keys(ctx: CommandContext, args: list[bytes]):
    pattern = args[1]
    everything = pattern == b"*"
    return [key for key, _ in ctx.live_items() if everything or glob_match(pattern, key)]


@handler("randomkey")
def randomkey(ctx: CommandContext, args: list[bytes]):
    first = next(ctx.live_items(), None)
    if first is None:
        return None
    last = next(ctx.live_items(reverse=True))
    # LevelDB has no random access: seek to a random point between the first and last key.
    for key, _ in ctx.live_items(random_between(first[0], last[0])):
        return key
    return first[0]


def random_between(low: bytes, high: bytes) -> bytes:
    """A random byte string between ``low`` and ``high`` in byte order."""
    width = max(len(low), len(high))
    a = int.from_bytes(low.ljust(width, b"\0"), "big")
    b = int.from_bytes(high.ljust(width, b"\0"), "big")
    return random.randint(a, b).to_bytes(width, "big")


@handler("flushall", "flushdb")
def flush(ctx: CommandContext, args: list[bytes]):
    if len(args) > 2 or (len(args) == 2 and word(args[1]) not in (b"sync", b"async")):
        raise syntax_error()
    for key, _ in ctx.live_items():
        ctx.writes[key] = None
    return OK


@handler("kv.scan")
def kv_scan(ctx: CommandContext, args: list[bytes]):
    """One step of a SCAN over this partition: ``[next token (0 when done), keys]``.

    The token names the last key returned (``ctx.cursors``); the step resumes after it, so a key present
    for the whole scan is returned once it is reached. An unknown token (forgotten, or made by another
    node before a failover) restarts the partition: a key may come twice, none is missed.
    """
    token, count = int(args[1]), int(args[2])
    pattern = args[3] if len(args) > 3 and args[3] != b"*" else None
    after = ctx.cursors.position(ctx.partition, token) if token else None
    found = []
    last = None
    items = ctx.live_items(b"" if after is None else after + b"\0")
    for key, _ in items:
        last = key
        if pattern is None or glob_match(pattern, key):
            found.append(key)
        count -= 1
        if count == 0:
            break
    if last is None or next(items, None) is None:
        return [0, found]
    return [ctx.cursors.remember(ctx.partition, last), found]

