"""Replies in request order, whether a command answers at once or later (a Deferred or a Pending).

Redis clients pipeline: they send many commands and match replies by position. A reply that is ready
while an earlier one is still pending waits its turn.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from twisted.internet import defer
from twisted.python.failure import Failure

from kvcommon.errors import KVError


class Pending:
    """A reply still to come, for one consumer: a Deferred without the chain, for the hot path.

    ``then(consumer)`` calls consumer with the result when it comes (at once if it has come);
    ``resolve(result)`` delivers it. The first result wins: later ones are ignored, so a timeout and
    the real answer may race.
    """

    __slots__ = ("result", "resolved", "_consumer")

    def __init__(self) -> None:
        self.result = None
        self.resolved = False
        self._consumer: Callable[[object], None] | None = None

    def then(self, consumer: Callable[[object], None]) -> None:
        if self.resolved:
            consumer(self.result)
        else:
            self._consumer = consumer

    def resolve(self, result) -> None:
        if self.resolved:
            return
        self.resolved = True
        self.result = result
        consumer = self._consumer
        if consumer is not None:
            self._consumer = None
            consumer(result)


class _Callback:
    """A place in the reply order that runs a function instead of writing a reply."""

    __slots__ = ("callback",)
    resolved = True

    def __init__(self, callback: Callable[[], None]):
        self.callback = callback


class OrderedReplies:
    """Writes replies in the order they were pushed, each once it has come.

    A reply still to come holds its place as the Pending it is (a Deferred is wrapped in one), so a reply
    that comes while nothing is ahead of it is written at once, and later ones follow it.
    """

    def __init__(self, write: Callable[[object], None]):
        self._write = write
        self._slots: deque[Pending | _Callback] = deque()
        self._on_resolved = self._resolved  # bound once: every Pending pushed gets it

    def push(self, reply) -> None:
        """Queue a reply: a value, a Pending or a Deferred of one."""
        if type(reply) is Pending:
            slot = reply
        elif isinstance(reply, defer.Deferred):
            slot = Pending()
            reply.addBoth(slot.resolve)
        elif not self._slots:
            self._write(reply)  # a reply ready with nothing ahead of it
            return
        else:
            slot = Pending()
            slot.resolve(reply)
        self._slots.append(slot)
        if slot.resolved:
            self._drain()
        else:
            slot.then(self._on_resolved)

    def push_callback(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once every reply pushed so far has been written."""
        self._slots.append(_Callback(callback))
        self._drain()

    def _resolved(self, _result) -> None:
        self._drain()

    def _drain(self) -> None:
        slots = self._slots
        while slots and slots[0].resolved:
            slot = slots.popleft()
            if type(slot) is _Callback:
                slot.callback()
                continue
            result = slot.result
            self._write(result.value if isinstance(result, Failure) else result)

    def __len__(self) -> int:
        return len(self._slots)


def unwrap_first_error(failure: Failure):
    """An errback for gatherResults: the KVError a failed request fired with, as a reply to send, rather than
    the FirstError around it; other failures pass on."""
    if failure.check(defer.FirstError):
        failure = failure.value.subFailure
    if failure.check(KVError):
        return failure.value
    return failure
