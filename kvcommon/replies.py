"""Replies in request order, whether a command answers at once or later (a Deferred).

Redis clients pipeline: they send many commands and match replies by position. A reply that is ready
while an earlier one is still pending waits its turn.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from twisted.internet import defer
from twisted.python.failure import Failure

_WAITING = object()
_CALLBACK = object()


class OrderedReplies:
    def __init__(self, write: Callable[[object], None]):
        self._write = write
        self._slots: deque[list] = deque()

    def push(self, reply) -> None:
        if not isinstance(reply, defer.Deferred):
            if not self._slots:
                self._write(reply)
            else:
                self._slots.append([reply])
            return
        slot = [_WAITING]
        self._slots.append(slot)

        def fill(result):
            slot[0] = result.value if isinstance(result, Failure) else result
            self._drain()

        reply.addBoth(fill)

    def push_callback(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once every reply pushed so far has been written."""
        self._slots.append([_CALLBACK, callback])
        self._drain()

    def _drain(self) -> None:
        slots = self._slots
        while slots and slots[0][0] is not _WAITING:
            slot = slots.popleft()
            if slot[0] is _CALLBACK:
                slot[1]()
            else:
                self._write(slot[0])

    def __len__(self) -> int:
        return len(self._slots)
