"""Sending a command to the partition that owns it, and retrying while the map changes.

The fast path is one lookup in the view and one pipelined request. When a node answers that it is not the
primary (``NOTPRIMARY``), not ready (``TRYAGAIN``), or cannot be reached, the command waits for the next map
change (or a short back-off) and goes again, for at most ``retry_seconds``. A write whose connection broke
after it was sent is not retried, since it may have been applied: the client is told so. Nothing is sent
again once the client that asked has disconnected, or has sent later commands to the same partition.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from twisted.internet import defer

from kvcommon.errors import ClusterDownError, KVError, OutcomeUnknownError, TryAgainError
from kvcommon.replies import Pending
from kvcommon.resp import RawReply, encode_bulks
from kvproxy.pool import NodePool, NodeUnavailable
from kvproxy.routing import ClusterView, Route

log = logging.getLogger(__name__)

RETRYABLE = (b"-NOTPRIMARY", b"-TRYAGAIN")
# Retries wake on every map change; between changes they poll at most this far apart, since a new primary
# may start serving (its followers reconnect) a moment after the map names it.
MAX_RETRY_DELAY = 0.1


def _retryable(reply: bytes) -> bool:
    return reply.startswith(RETRYABLE)


class ProxyService:
    def __init__(self, reactor, pool: NodePool, view: ClusterView | None = None, retry_seconds: float = 10.0):
        self.reactor = reactor
        self.pool = pool
        self.view = view or ClusterView()
        self.retry_seconds = retry_seconds
        self._map_waiters: list[defer.Deferred] = []
        self.commands_processed = 0
        self.retries = 0
        # The cluster's read level: where new connections start (KV.READLEVEL changes one connection's).
        self.default_read_level = "strong"
        self._px_fields: dict[tuple[int, int, bytes], bytes] = {}

    # -- the map ---------------------------------------------------------------------------------

    def map_changed(self) -> None:
        waiters, self._map_waiters = self._map_waiters, []
        for d in waiters:
            if not d.called:
                d.callback(None)

    def _map_change_or_timeout(self, seconds: float) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self._map_waiters.append(d)
        call = self.reactor.callLater(seconds, lambda: d.called or d.callback(None))
        d.addBoth(lambda r: (call.active() and call.cancel()) or r)
        return d

    def _route(self, partition: int, eventual: bool) -> Route | None:
        if eventual:
            routes = self.view.replica_routes(partition)
            return random.choice(routes) if routes else None
        return self.view.primary_route(partition)

    # -- sending ---------------------------------------------------------------------------------

    def send_one(self, partition: int, args: list[bytes], options: bytes = b"-", readonly: bool = False,
                 eventual: bool = False, client=None) -> Pending | defer.Deferred:
        """send(), for the hot path: while the route's connection is open, the request goes out without a
        Deferred, and the reply comes as a Pending. Retries take send()'s way."""
        started = self.reactor.seconds()
        route = self._route(partition, eventual)
        conn = None if route is None else self.pool.connection(route.node, route.host, route.port)
        if conn is None:
            return self.send(partition, args, options, readonly, eventual, client)
        number = _note_sent(client, partition)
        pending = Pending()
        resolve = pending.resolve

        def on_result(result):
            if type(result) is RawReply and not result.startswith(RETRYABLE):
                resolve(result)  # the common case: the node's answer
                return
            request = _Request(partition, args, options, readonly, eventual, client, number, started)
            outcome = self._after_attempt(result, request)
            if isinstance(outcome, defer.Deferred):
                outcome.addBoth(resolve)
            else:
                resolve(outcome)

        conn.send(self._px_request(route, options, args), started, on_result)
        return pending

    def _px_request(self, route: Route, options: bytes, args: list[bytes]) -> bytes:
        """``PX partition generation options *args``, encoded; the part before args is made once per route."""
        key = (route.partition, route.generation, options)
        fields = self._px_fields.get(key)
        if fields is None:
            if len(self._px_fields) > 4096:  # old generations pile up over failovers
                self._px_fields.clear()
            fields = self._px_fields[key] = encode_bulks([b"PX", b"%d" % route.partition,
                                                          b"%d" % route.generation, options])
        if len(args) == 2:  # GET key and the like: one format, without a list of parts
            name, key = args
            return b"*6\r\n%b$%d\r\n%b\r\n$%d\r\n%b\r\n" % (fields, len(name), name, len(key), key)
        return b"*%d\r\n%b%b" % (len(args) + 4, fields, encode_bulks(args))

    def send(self, partition: int, args: list, options: bytes = b"-", readonly: bool = False,
             eventual: bool = False, client=None) -> defer.Deferred:
        """Run ``args`` on the partition; fires with the node's reply as a RawReply, or a KVError.

        ``client`` is the session the command came from (a ClientSession). A refused command is not sent
        again once its client has disconnected, since nobody waits for its answer and a write sent that
        late could land after writes the client made since; nor once a later command of the client went
        to the same partition, since the two could then run out of the order the client sent them in
        (the later one at the new primary, this one after it): the client gets TRYAGAIN for it instead.
        """
        # The retry budget counts from now, when the client's request arrived, however long attempts take.
        request = _Request(partition, args, options, readonly, eventual, client, _note_sent(client, partition),
                           self.reactor.seconds())
        route = self._route(partition, eventual)
        if route is None:
            return self._retry(request, "no live primary")
        d = self.pool.request(route.node, route.host, route.port,
                              [b"PX", partition, route.generation, options, *args])
        d.addCallbacks(self._after_attempt, self._failed, callbackArgs=(request,), errbackArgs=(request,))
        return d

    def _failed(self, failure, request: _Request):
        failure.trap(NodeUnavailable)
        return self._after_attempt(failure.value, request)

    def _after_attempt(self, result, request: _Request):
        """What the first attempt's result (a reply, or NodeUnavailable) means: the answer, or the retries
        (a Deferred). A refusal is retried; so is a lost connection, unless a write may have been applied."""
        if isinstance(result, NodeUnavailable):
            if result.sent and not request.readonly:
                return _maybe_applied(result)
        elif not _retryable(result):
            return result
        return self._retry(request, str(result))

    @defer.inlineCallbacks
    def _retry(self, request: _Request, why: str):
        partition, args, options, readonly, eventual = (request.partition, request.args, request.options,
                                                        request.readonly, request.eventual)
        deadline = request.started + self.retry_seconds
        delay = 0.02
        while True:
            if (stop := _not_again(request, why)) is not None:
                return stop
            self.retries += 1
            remaining = deadline - self.reactor.seconds()
            if remaining <= 0:
                return ClusterDownError(
                    f"partition {partition} has no reachable primary after {self.retry_seconds:.0f}s ({why}); "
                    "the cluster may be failing over or short of live nodes: retry later, and check "
                    "`kvctl status`")
            yield self._map_change_or_timeout(min(delay, remaining))
            delay = min(delay * 2, MAX_RETRY_DELAY)
            if (stop := _not_again(request, why)) is not None:
                return stop
            route = self._route(partition, eventual)
            if route is None:
                why = "no live primary"
                continue
            try:
                reply = yield self.pool.request(route.node, route.host, route.port,
                                                [b"PX", partition, route.generation, options, *args])
            except NodeUnavailable as err:
                if err.sent and not readonly:
                    return _maybe_applied(err)
                why = str(err)
                continue
            if _retryable(reply):
                why = str(reply)
                continue
            return reply


@dataclass(frozen=True, slots=True)
class _Request:
    """A command on its way, as retries need it. ``number`` counts the client's commands to the partition."""

    partition: int
    args: list
    options: bytes
    readonly: bool
    eventual: bool
    client: object | None
    number: int
    started: float


def _note_sent(client, partition: int) -> int:
    """Count a command of ``client`` going to ``partition``; returns its number there."""
    if client is None:
        return 0
    number = client.sent_to.get(partition, 0) + 1
    client.sent_to[partition] = number
    return number


def _not_again(request: _Request, why: str) -> KVError | None:
    """The answer for a refused command that must not be sent again (see ProxyService.send), else None."""
    client = request.client
    if client is None:
        return None
    if not client.connected:  # nobody reads this answer; it says what happened, for logs and tests
        return OutcomeUnknownError(f"the client disconnected while partition {request.partition} was unavailable "
                                   f"({why}); the command was not sent again")
    if client.sent_to.get(request.partition) != request.number:
        return TryAgainError(
            f"partition {request.partition} could not take this command ({why}), and later commands of this "
            "connection to it were sent meanwhile; it was not sent again, so that commands run in the order "
            "they were sent: send it again")
    return None


def _maybe_applied(err: NodeUnavailable) -> OutcomeUnknownError:
    return OutcomeUnknownError(f"the connection to {err} broke after the command was sent; it may or may not "
                               "have been applied: read the key before retrying")
