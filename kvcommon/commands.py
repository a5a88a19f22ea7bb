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
    # How the proxy handles the command: "single" (one key), "multi" (keys split by partition), "all"
    # (sent to every partition and merged), "proxy" (answered by the proxy itself).
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
    )
}


def check_arity(spec: CommandSpec, args: list[bytes]) -> None:
    n = len(args)
    if (spec.arity > 0 and n != spec.arity) or (spec.arity < 0 and n < -spec.arity):
        raise wrong_arity(spec.name)
    if spec.name == "mset" and n % 2 == 0:
        raise wrong_arity(spec.name)


def wrong_arity(name: str) -> CommandError:
    return CommandError(f"wrong number of arguments for '{name}' command")


def unknown_command(args: list[bytes]) -> CommandError:
    # Worded as Redis words it, which some clients match on.
    name = args[0][:128].decode("utf-8", "replace")
    rest = "".join(f"'{a[:128].decode('utf-8', 'replace')}' " for a in args[1:])
    return CommandError(f"unknown command '{name}', with args beginning with: {rest}")
