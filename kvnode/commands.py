"""What each data command does to one partition: pure functions over a CommandContext, no I/O.

A handler reads the newest values through the context and records its writes there; the node turns the
recorded writes into one log entry, so a command is atomic and is replicated as its result, never
re-executed on a secondary.
"""

from __future__ import annotations

from collections.abc import Callable

from kvcommon.errors import CommandError
from kvcommon.resp import OK
from kvnode.storage.records import KIND_STRING, decode_value, encode_value

Reader = Callable[[bytes], "bytes | None"]


class CommandContext:
    """A command's view of one partition at one moment.

    ``reader`` returns the raw value record of a key (pending writes included) or None. Expired keys
    read as absent. ``writes`` collects the command's changes: key -> raw record, or None for a delete.
    """

    def __init__(self, reader: Reader, now_ms: int, version: int):
        self._reader = reader
        self.now_ms = now_ms
        self.version = version
        self.writes: dict[bytes, bytes | None] = {}

    def get_raw(self, key: bytes) -> bytes | None:
        raw = self.writes[key] if key in self.writes else self._reader(key)
        if raw is None:
            return None
        record = decode_value(raw)
        if record.kind != KIND_STRING or (record.expire_at_ms and record.expire_at_ms <= self.now_ms):
            return None
        return raw

    def get(self, key: bytes) -> bytes | None:
        raw = self.get_raw(key)
        return None if raw is None else decode_value(raw).value

    def exists(self, key: bytes) -> bool:
        return self.get_raw(key) is not None

    def put(self, key: bytes, value: bytes, expire_at_ms: int = 0) -> None:
        self.writes[key] = encode_value(self.version, value, expire_at_ms)

    def delete(self, key: bytes) -> bool:
        """Delete a key; True if it existed."""
        existed = self.exists(key)
        if existed or self._reader(key) is not None:
            # An expired key is removed from disk too, though it counts as absent.
            self.writes[key] = None
        return existed


Handler = Callable[[CommandContext, list[bytes]], object]
HANDLERS: dict[bytes, Handler] = {}


def handler(name: str):
    def register(fn: Handler) -> Handler:
        HANDLERS[name.encode()] = fn
        return fn

    return register


@handler("get")
def get(ctx: CommandContext, args: list[bytes]):
    return ctx.get(args[1])


@handler("set")
def set_(ctx: CommandContext, args: list[bytes]):
    if len(args) != 3:
        raise CommandError("syntax error")
    ctx.put(args[1], args[2])
    return OK


@handler("del")
@handler("unlink")
def delete(ctx: CommandContext, args: list[bytes]):
    return sum(ctx.delete(key) for key in args[1:])


@handler("exists")
def exists(ctx: CommandContext, args: list[bytes]):
    return sum(ctx.exists(key) for key in args[1:])


@handler("mget")
def mget(ctx: CommandContext, args: list[bytes]):
    return [ctx.get(key) for key in args[1:]]


@handler("mset")
def mset(ctx: CommandContext, args: list[bytes]):
    for i in range(1, len(args), 2):
        ctx.put(args[i], args[i + 1])
    return OK
