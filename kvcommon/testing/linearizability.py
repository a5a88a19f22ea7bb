"""Checking that a concurrent history of register operations is linearizable.

Tests record what their clients did (``HistoryRecorder``): each operation on a key is a ``read``, a
``write`` or a compare-and-set ``cas``, with the time it was invoked and the time it completed. An operation
whose outcome is unknown (a timeout, a dropped connection, an error that does not say the command was not
applied) has no completion time: it may take effect at any moment after its invocation, or never.

``check_history`` decides whether some total order of the operations (1) respects real time, i.e. an
operation that completed before another was invoked comes first, and (2) is a legal sequential run of a
register per key that starts absent (reads answer None). Linearizability is compositional, so each key's
sub-history is checked on its own.

The search is Wing and Gong's: repeatedly pick, among the operations that may come next, one whose result
agrees with the register, and backtrack on a dead end. Like Lowe's and Porcupine's checkers it remembers
every (set of operations linearized, register value) it has already explored, which makes the usual
histories of a correct store take linear time. Events are kept in a doubly linked list ordered by time, so
finding the candidates for the next step only walks the operations running concurrently.

When a history is not linearizable the result explains it with the shortest prefix of the history that
already cannot be linearized: the operation whose completion makes it so, the operations concurrent with
it and the ones just before it.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

Kind = Literal["read", "write", "cas"]
KINDS = ("read", "write", "cas")

# How many (linearized set, value) configurations one key may explore before the check gives up.
DEFAULT_MAX_CONFIGURATIONS = 2_000_000
CONTEXT_OPERATIONS = 4
CONCURRENT_SHOWN = 12


@dataclass(frozen=True)
class Operation:
    """One operation on one key.

    ``argument``: the value written (``write``), or ``(expected, new)`` (``cas``); None for a read.
    ``result``: the value read, None if the key was absent (``read``); whether the swap happened (``cas``);
    ignored for a write and for any operation whose outcome is unknown (``completed`` is None).
    """

    client: str
    key: Hashable
    kind: Kind
    invoked: float
    completed: float | None
    argument: Hashable = None
    result: Hashable = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"operation kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.kind == "cas" and not (isinstance(self.argument, tuple) and len(self.argument) == 2):
            raise ValueError(f"a cas takes (expected, new) as its argument, not {self.argument!r}")
        if self.completed is not None and self.completed < self.invoked:
            raise ValueError(f"{self.kind} by {self.client} completed at {self.completed} before it was invoked "
                             f"at {self.invoked}")

    @property
    def known(self) -> bool:
        return self.completed is not None

    def describe(self, origin: float = 0.0) -> str:
        if self.kind == "read":
            what = f"read() -> {self.result!r}" if self.known else "read() -> ?"
        elif self.kind == "write":
            what = f"write({self.argument!r})" + ("" if self.known else " -> ?")
        else:
            expected, new = self.argument
            what = f"cas({expected!r}, {new!r}) -> " + (repr(self.result) if self.known else "?")
        end = f"{self.completed - origin:.4f}" if self.known else "unknown outcome"
        return f"{self.client} {what} [{self.invoked - origin:.4f}, {end}]"


def read(client: str, key: Hashable, invoked: float, completed: float | None, value: Hashable) -> Operation:
    return Operation(client, key, "read", invoked, completed, result=value)


def write(client: str, key: Hashable, invoked: float, completed: float | None, value: Hashable) -> Operation:
    return Operation(client, key, "write", invoked, completed, argument=value)


def cas(client: str, key: Hashable, invoked: float, completed: float | None, expected: Hashable, new: Hashable,
        swapped: bool | None) -> Operation:
    return Operation(client, key, "cas", invoked, completed, argument=(expected, new), result=swapped)


def step(value: Hashable, op: Operation) -> tuple[bool, Hashable]:
    """The register model: whether ``op`` may run on a register holding ``value``, and the value after."""
    if op.kind == "read":
        return (not op.known or op.result == value), value
    if op.kind == "write":
        return True, op.argument
    expected, new = op.argument
    swaps = value == expected
    if op.known and bool(op.result) != swaps:
        return False, value
    return True, new if swaps else value


@dataclass
class KeyResult:
    key: Hashable
    operations: int
    linearizable: bool | None  # None: gave up after too many configurations
    explanation: str = ""
    configurations: int = 0


@dataclass
class CheckResult:
    keys: list[KeyResult] = field(default_factory=list)

    @property
    def linearizable(self) -> bool | None:
        """True if every key is, False if one is not, None if a key could not be decided."""
        if any(k.linearizable is False for k in self.keys):
            return False
        if any(k.linearizable is None for k in self.keys):
            return None
        return True

    @property
    def explanation(self) -> str:
        failing = [k for k in self.keys if k.linearizable is not True]
        if not failing:
            return f"linearizable: {sum(k.operations for k in self.keys)} operations on {len(self.keys)} keys"
        return "\n\n".join(k.explanation for k in failing)

    def __bool__(self) -> bool:
        return self.linearizable is True


def check_history(operations: Iterable[Operation], initial: Hashable = None,
                  max_configurations: int = DEFAULT_MAX_CONFIGURATIONS) -> CheckResult:
    """Check each key's sub-history; see the module documentation."""
    by_key: dict[Hashable, list[Operation]] = defaultdict(list)
    for op in operations:
        by_key[op.key].append(op)
    origin = min((op.invoked for ops in by_key.values() for op in ops), default=0.0)
    result = CheckResult()
    for ops in by_key.values():
        result.keys.append(check_key(ops, initial, max_configurations, origin))
    return result


def assert_linearizable(operations: Iterable[Operation], initial: Hashable = None,
                        max_configurations: int = DEFAULT_MAX_CONFIGURATIONS) -> CheckResult:
    result = check_history(operations, initial, max_configurations)
    if not result:
        raise AssertionError(result.explanation)
    return result


def check_key(ops: Sequence[Operation], initial: Hashable = None,
              max_configurations: int = DEFAULT_MAX_CONFIGURATIONS, origin: float = 0.0) -> KeyResult:
    key = ops[0].key if ops else None
    relevant = _without_unobservable(ops)
    verdict, configurations = _search(relevant, initial, max_configurations)
    result = KeyResult(key, len(ops), verdict, configurations=configurations)
    if verdict is None:
        result.explanation = (f"key {key!r}: undecided after exploring {configurations} configurations of its "
                              f"{len(ops)} operations; check a shorter history or raise max_configurations")
    elif verdict is False:
        result.explanation = _explain(key, relevant, initial, max_configurations, origin)
    return result


def _without_unobservable(ops: Sequence[Operation]) -> list[Operation]:
    """Drop operations that cannot change the verdict, to keep the search small.

    A read of unknown outcome constrains nothing. Without any cas on the key, neither does a write of unknown
    outcome whose value no read returned: wherever it takes effect, it may as well never have.
    """
    kept = [op for op in ops if op.known or op.kind != "read"]
    if any(op.kind == "cas" for op in kept):
        return kept
    observed = {op.result for op in kept if op.kind == "read" and op.known}
    return [op for op in kept if op.known or op.kind != "write" or op.argument in observed]


def _search(ops: Sequence[Operation], initial: Hashable, max_configurations: int) -> tuple[bool | None, int]:
    """Wing and Gong's search with memoisation. Returns (verdict, configurations explored)."""
    n = len(ops)
    if n == 0:
        return True, 0
    # Numbered in invocation order, the linearized operations are mostly a prefix 0..done-1 plus a few
    # beyond: a configuration is remembered as (done, the set beyond it, value), which stays small.
    ops = sorted(ops, key=lambda op: op.invoked)
    # Entries 1..2n are calls and returns in time order; 0 is the list head. At equal times calls come
    # first: operations that touch at an instant count as concurrent. Unknown outcomes return at infinity.
    events = sorted(
        itertools.chain(
            ((op.invoked, 0, i) for i, op in enumerate(ops)),
            ((op.completed if op.known else math.inf, 1, i) for i, op in enumerate(ops)),
        )
    )
    size = 2 * n + 1
    is_call = [False] * size
    op_of = [0] * size
    match = [0] * size
    call_entry = [0] * n
    for entry, (_, is_return, i) in enumerate(events, start=1):
        is_call[entry] = not is_return
        op_of[entry] = i
        if is_return:
            match[call_entry[i]] = entry
        else:
            call_entry[i] = entry
    nxt = list(range(1, size)) + [-1]
    prev = [-1] + list(range(0, size - 1))

    def lift(entry: int) -> None:
        for e in (entry, match[entry]):
            nxt[prev[e]] = nxt[e]
            if nxt[e] != -1:
                prev[nxt[e]] = prev[e]

    def unlift(entry: int) -> None:
        for e in (match[entry], entry):
            if nxt[e] != -1:
                prev[nxt[e]] = e
            nxt[prev[e]] = e

    seen: set[tuple[int, int, Hashable]] = set()
    stack: list[tuple[int, Hashable, int]] = []
    value, linearized, done = initial, 0, 0
    entry = nxt[0]
    while True:
        if entry == -1:
            return True, len(seen)
        i = op_of[entry]
        if not is_call[entry]:
            if not ops[i].known:
                # Every operation left may never take effect: nothing more must be linearized.
                return True, len(seen)
            if not stack:
                return False, len(seen)
            entry, value, done = stack.pop()
            linearized &= ~(1 << op_of[entry])
            unlift(entry)
            entry = nxt[entry]
            continue
        ok, after = step(value, ops[i])
        if ok:
            candidate = linearized | (1 << i)
            beyond = candidate >> done
            # Skip the run of linearized operations that now starts at done.
            advanced = done + (~beyond & (beyond + 1)).bit_length() - 1
            configuration = (advanced, candidate >> advanced, after)
            if configuration not in seen:
                if len(seen) >= max_configurations:
                    return None, len(seen)
                seen.add(configuration)
                stack.append((entry, value, done))
                linearized, value, done = candidate, after, advanced
                lift(entry)
                entry = nxt[0]
                continue
        entry = nxt[entry]


def prefix_at(ops: Sequence[Operation], moment: float) -> list[Operation]:
    """The history as it stood at ``moment``: operations invoked by then, those still running then with an
    unknown outcome."""
    prefix = []
    for op in ops:
        if op.invoked > moment:
            continue
        if op.known and op.completed > moment:
            op = replace(op, completed=None, result=None)
        prefix.append(op)
    return prefix


def shortest_failing_prefix(ops: Sequence[Operation], initial: Hashable = None,
                            max_configurations: int = DEFAULT_MAX_CONFIGURATIONS) -> tuple[float, Operation] | None:
    """The earliest completion time at which the history stops being linearizable, and the operation that
    completed then; None if the whole history is linearizable (or undecided).

    Linearizability is prefix-closed, so the non-linearizable prefixes are those from some moment on: a
    binary search over the completion times finds it.
    """
    completions = sorted({op.completed for op in ops if op.known})
    low, high = 0, len(completions) - 1
    if not completions or _search(_without_unobservable(prefix_at(ops, completions[high])), initial,
                                  max_configurations)[0] is not False:
        return None
    while low < high:
        middle = (low + high) // 2
        verdict, _ = _search(_without_unobservable(prefix_at(ops, completions[middle])), initial, max_configurations)
        if verdict is False:
            high = middle
        else:
            low = middle + 1
    moment = completions[low]
    culprit = next(op for op in ops if op.known and op.completed == moment)
    return moment, culprit


def _explain(key: Hashable, ops: Sequence[Operation], initial: Hashable, max_configurations: int,
             origin: float) -> str:
    lines = [f"key {key!r}: its {len(ops)} operations are not linearizable."]
    found = shortest_failing_prefix(ops, initial, max_configurations)
    if found is None:
        return lines[0]
    moment, culprit = found
    prefix = prefix_at(ops, moment)
    concurrent = [op for op in prefix if op is not culprit and _overlaps(op, culprit)]
    before = sorted((op for op in prefix if op.known and op.completed < culprit.invoked),
                    key=lambda op: op.completed)[-CONTEXT_OPERATIONS:]
    lines.append(f"The history up to {moment - origin:.4f} s ({len(prefix)} operations) cannot be linearized; "
                 f"without the completion of this operation it can be:")
    lines.append(f"  {culprit.describe(origin)}")
    lines.append("Operations concurrent with it (times in seconds from the start; '?' = unknown outcome):")
    concurrent.sort(key=lambda op: op.invoked)
    if len(concurrent) > CONCURRENT_SHOWN:
        lines.append(f"  ... {len(concurrent) - CONCURRENT_SHOWN} invoked earlier, then:")
    lines += [f"  {op.describe(origin)}" for op in concurrent[-CONCURRENT_SHOWN:]] or ["  (none)"]
    lines.append(f"The last {len(before)} operations that completed before it was invoked:")
    lines += [f"  {op.describe(origin)}" for op in before] or ["  (none)"]
    return "\n".join(lines)


def _overlaps(op: Operation, other: Operation) -> bool:
    op_end = op.completed if op.known else math.inf
    other_end = other.completed if other.known else math.inf
    return op.invoked <= other_end and other.invoked <= op_end


class HistoryRecorder:
    """Collects the operations of concurrent clients (thread-safe), timed with ``time.monotonic``.

    ::

        started = recorder.invoke()
        value = client.get(key)              # on an error: recorder.unknown(...)
        recorder.read(name, key, started, value)
    """

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._lock = threading.Lock()
        self._operations: list[Operation] = []

    def invoke(self) -> float:
        return self.clock()

    def read(self, client: str, key: Hashable, invoked: float, value: Hashable) -> Operation:
        return self._add(read(client, key, invoked, self.clock(), value))

    def write(self, client: str, key: Hashable, invoked: float, value: Hashable) -> Operation:
        return self._add(write(client, key, invoked, self.clock(), value))

    def cas(self, client: str, key: Hashable, invoked: float, expected: Hashable, new: Hashable,
            swapped: bool) -> Operation:
        return self._add(cas(client, key, invoked, self.clock(), expected, new, swapped))

    def unknown(self, client: str, key: Hashable, kind: Kind, invoked: float, argument: Hashable = None) -> Operation:
        """An operation whose outcome is unknown: it may have taken effect, at any time after ``invoked``."""
        return self._add(Operation(client, key, kind, invoked, None, argument=argument))

    def _add(self, op: Operation) -> Operation:
        with self._lock:
            self._operations.append(op)
        return op

    @property
    def operations(self) -> list[Operation]:
        with self._lock:
            return list(self._operations)
