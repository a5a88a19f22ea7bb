"""The table of data commands: arity and where the keys are, as Redis's COMMAND INFO describes them.

Both the proxy (to route and split) and the node (to check arity) read it, so the two never disagree.
Arity follows Redis: a positive number is the exact argument count including the command name, a
negative one the minimum.
"""

from __future__ import annotations

from dataclasses import dataclass

from kvcommon.errors import CommandError


@dataclass(frozen=True)
class CommandSpec:
    name: str
    arity: int
    flags: tuple[str, ...]
    first_key: int = 1
    last_key: int = 1
    step: int = 1
    # How the proxy handles the command: "single" (one key), "multi" (keys split by partition), "same"
    # (keys must share a partition: the command is atomic on its primary), "all" (sent to every partition
    # and merged), "proxy" (answered by the proxy itself), "internal" (sent by proxies to nodes only).
    routing: str = "single"

    @property
    def is_write(self) -> bool:
        return "write" in self.flags

    def keys(self, args: list[bytes]) -> list[bytes]:
        if self.first_key == 0:
            return []
        last = self.last_key if self.last_key >= 0 else len(args) + self.last_key
        return args[self.first_key:last + 1:self.step]


def _spec(name, arity, flags, first=1, last=1, step=1, routing="single"):
    return CommandSpec(name, arity, tuple(flags.split()), first, last, step, routing)


DATA_COMMANDS: dict[bytes, CommandSpec] = {
    spec.name.encode(): spec
    for spec in (
        _spec("get", 2, "readonly fast"),
        _spec("set", -3, "write denyoom"),
        _spec("del", -2, "write", 1, -1, 1, "multi"),
        _spec("unlink", -2, "write fast", 1, -1, 1, "multi"),
        _spec("exists", -2, "readonly fast", 1, -1, 1, "multi"),
        _spec("mget", -2, "readonly fast", 1, -1, 1, "multi"),
        _spec("mset", -3, "write denyoom", 1, -1, 2, "multi"),
        _spec("dbsize", 1, "readonly fast", 0, 0, 0, "all"),
        # strings
        _spec("setnx", 3, "write denyoom fast"),
        _spec("setex", 4, "write denyoom"),
        _spec("psetex", 4, "write denyoom"),
        _spec("getset", 3, "write denyoom fast"),
        _spec("getdel", 2, "write fast"),
        _spec("getex", -2, "write fast"),
        _spec("msetnx", -3, "write denyoom", 1, -1, 2, "same"),
        _spec("append", 3, "write denyoom fast"),
        _spec("strlen", 2, "readonly fast"),
        _spec("getrange", 4, "readonly"),
        _spec("substr", 4, "readonly"),
        _spec("setrange", 4, "write denyoom"),
        _spec("lcs", -3, "readonly", 1, 2, 1, "same"),
        _spec("incr", 2, "write denyoom fast"),
        _spec("decr", 2, "write denyoom fast"),
        _spec("incrby", 3, "write denyoom fast"),
        _spec("decrby", 3, "write denyoom fast"),
        _spec("incrbyfloat", 3, "write denyoom fast"),
        # bitmaps
        _spec("setbit", 4, "write denyoom"),
        _spec("getbit", 3, "readonly fast"),
        _spec("bitcount", -2, "readonly"),
        _spec("bitpos", -3, "readonly"),
        _spec("bitop", -4, "write denyoom", 2, -1, 1, "same"),
        # keys and expiry
        _spec("expire", -3, "write fast"),
        _spec("pexpire", -3, "write fast"),
        _spec("expireat", -3, "write fast"),
        _spec("pexpireat", -3, "write fast"),
        _spec("ttl", 2, "readonly fast"),
        _spec("pttl", 2, "readonly fast"),
        _spec("expiretime", 2, "readonly fast"),
        _spec("pexpiretime", 2, "readonly fast"),
        _spec("persist", 2, "write fast"),
        _spec("type", 2, "readonly fast"),
        _spec("touch", -2, "readonly fast", 1, -1, 1, "multi"),
        _spec("copy", -3, "write denyoom", 1, 2, 1, "same"),
        _spec("rename", 3, "write", 1, 2, 1, "same"),
        _spec("renamenx", 3, "write fast", 1, 2, 1, "same"),
        # the whole keyspace
        _spec("keys", 2, "readonly", 0, 0, 0, "all"),
        _spec("randomkey", 1, "readonly", 0, 0, 0, "all"),
        _spec("flushall", -1, "write", 0, 0, 0, "all"),
        _spec("flushdb", -1, "write", 0, 0, 0, "all"),
        # KV.SCAN <token> <count> [<pattern>]: one step of a SCAN over one partition (kvnode/scan.py)
        _spec("kv.scan", -3, "readonly", 0, 0, 0, "internal"),
        # Versions and reads "as of" a version (docs/ranges.md); always answered by the primary.
        _spec("kv.getversion", 2, "readonly fast"),
        _spec("kv.getasof", 3, "readonly"),
        # KV.RANGEPART <start> <end> <limit> <desc> <keysonly> <version>: one partition's share of KV.RANGE
        _spec("kv.rangepart", 7, "readonly", 0, 0, 0, "internal"),
    )
}

# A SCAN cursor is partition << SCAN_TOKEN_BITS | token, where the token names the position the partition's
# primary keeps for the scan (0: the partition's start). 16 bits of partition and 47 of token keep cursors
# below 2**63 for clients that parse them as signed 64-bit integers.
SCAN_TOKEN_BITS = 47


def check_arity(spec: CommandSpec, args: list[bytes]) -> None:
    n = len(args)
    if (spec.arity > 0 and n != spec.arity) or (spec.arity < 0 and n < -spec.arity):
        raise wrong_arity(spec.name)
    if spec.name in ("mset", "msetnx") and n % 2 == 0:
        raise wrong_arity(spec.name)


def wrong_arity(name: str) -> CommandError:
    return CommandError(f"wrong number of arguments for '{name}' command")


def unknown_command(args: list[bytes]) -> CommandError:
    # Worded as Redis words it, which some clients match on.
    name = args[0][:128].decode("utf-8", "replace")
    rest = "".join(f"'{a[:128].decode('utf-8', 'replace')}' " for a in args[1:])
    return CommandError(f"unknown command '{name}', with args beginning with: {rest}")
