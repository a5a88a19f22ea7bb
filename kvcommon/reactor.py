"""The reactor the servers run on: Twisted's epoll reactor, without a logging context per socket event.

Twisted wraps the handling of every socket event in ``log.callWithLogger``, which sets up a context that
gives Twisted's own log messages a prefix. Our processes log with the standard library and never read
that context, and under load the wrapping took some 5 % of a proxy's or a node's time. Everything else
is EPollReactor's: a handler's exception still closes its connection and is logged.
"""

from __future__ import annotations

import sys

from twisted.internet.epollreactor import EPollReactor


class ServerReactor(EPollReactor):
    def doPoll(self, timeout):
        try:
            events = self._poller.poll(-1 if timeout is None else timeout, len(self._selectables))
        except InterruptedError:
            return
        selectables = self._selectables
        handle = self._doReadOrWrite
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is not None:  # closed by an earlier event of this poll
                handle(selectable, fd, event)

    doIteration = doPoll


def install() -> None:
    """Make ServerReactor the process's reactor; call before anything imports twisted.internet.reactor."""
    if "twisted.internet.reactor" in sys.modules:
        raise RuntimeError("a reactor is already installed; install ServerReactor first")
    from twisted.internet.main import installReactor

    installReactor(ServerReactor())
