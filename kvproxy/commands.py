"""What the proxy does with each client command: answer it itself, route it, or split and merge it."""

from __future__ import annotations

import itertools
import random
import time

from twisted.internet import defer

from kvcommon.commands import DATA_COMMANDS, CommandSpec, check_arity, unknown_command, wrong_arity
from kvcommon.errors import CommandError, KVError
from kvcommon.resp import OK, PONG, ErrorReply, Status, Verbatim
from kvcommon.strings import lcs_command
from kvmeta.schema import READ_LEVELS, WRITE_LEVELS
from kvproxy import info, keyspace
from kvproxy.ranges import RangeCommands
from kvproxy.routing import reassemble, split_keys, split_pairs
from kvproxy.service import ProxyService

# The Redis version we report: clients switch features on it, and we implement the 7.2 command set we list.
REDIS_VERSION = "7.2.0"
SERVER_NAME = "kvstore"

_client_ids = itertools.count(1)
# Spellings of single-key command names kept for the hot path ("GET", "get", "Get"...): a bound, since the
# names come from clients.
MAX_SPELLINGS = 1024
# Identifies this proxy process in INFO, as Redis's run_id identifies a server process.
_RUN_ID = f"{random.getrandbits(160):040x}"


class ClientSession:
    """Per-connection state: protocol version, name, and the request options sent to nodes."""

    def __init__(self, address: str = "", read_level: str = "strong"):
        self.id = next(_client_ids)
        self.address = address
        self.protocol = 2
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.write_level: str | None = None
        self.read_level = read_level
        self.created = time.time()
        self.options = b"-"
        self.update_options()
        # False once the client has disconnected: its commands still run, but are not sent again.
        self.connected = True
        # partition -> how many commands of this client went to it: a refused command is sent again only if
        # it is still the client's latest there (ProxyService.send).
        self.sent_to: dict[int, int] = {}

    def update_options(self) -> None:
        parts = []
        if self.write_level:
            parts.append(f"w={self.write_level}")
        if self.read_level != "strong":
            parts.append(f"r={self.read_level}")
        self.options = ",".join(parts).encode() or b"-"


class Commands:
    def __init__(self, service: ProxyService, proxy_id: str, port: int):
        self.service = service
        self.proxy_id = proxy_id
        self.port = port
        self.started = time.time()
        self.connected_clients = 0
        self.local = {
            b"ping": self.ping, b"echo": self.echo, b"hello": self.hello, b"select": self.select,
            b"client": self.client, b"command": self.command, b"info": self.info, b"dbsize": self.dbsize,
            b"mget": self.mget, b"mset": self.mset, b"del": self.count_keys, b"unlink": self.count_keys,
            b"exists": self.count_keys, b"config": self.config,
            b"kv.writelevel": self.write_level, b"kv.readlevel": self.read_level,
        }
        self.local.update({
            b"touch": self.count_keys, b"scan": self.scan, b"keys": self.keys, b"randomkey": self.randomkey,
            b"flushall": self.flush, b"flushdb": self.flush, b"time": self.time,
        })
        self.local.update(RangeCommands(service).handlers())
        # Single-key commands by their name as clients spell it: name -> (arity, readonly). execute() looks a
        # command up here first, which skips the command tables and the arity check, and adds each single-key
        # command it routes the long way.
        self.single_key: dict[bytes, tuple[int, bool]] = {}

    def execute(self, session: ClientSession, args: list[bytes]):
        self.service.commands_processed += 1
        known = self.single_key.get(args[0])
        if known is not None and (len(args) == known[0] or 0 > known[0] >= -len(args)):
            return self.forward(session, args, known[1])
        name = args[0].lower()
        try:
            handler = self.local.get(name)
            if handler is not None:
                return handler(session, args)
            spec = DATA_COMMANDS.get(name)
            if spec is None or spec.routing == "internal":
                return unknown_command(args)
            check_arity(spec, args)
            if spec.routing == "same":
                return self._same_partition(session, spec, args)
            if len(self.single_key) < MAX_SPELLINGS:
                self.single_key[args[0]] = (spec.arity, not spec.is_write)
            return self.forward(session, args, not spec.is_write)
        except KVError as err:
            return err

    # -- routed commands ---------------------------------------------------------------------------

    def _send(self, session: ClientSession, spec: CommandSpec, partition: int, args: list[bytes]):
        readonly = not spec.is_write
        return self.service.send(partition, args, session.options, readonly=readonly,
                                 eventual=readonly and session.read_level == "eventual", client=session)

    def forward(self, session: ClientSession, args: list[bytes], readonly: bool):
        """Send a single-key command, as it is, to the partition of its key (args[1])."""
        service = self.service
        return service.send_one(service.view.partition_of(args[1]), args, session.options, readonly,
                                readonly and session.read_level == "eventual", session)

    def _split_by_key(self, session: ClientSession, args: list[bytes], merge):
        """Send each partition the command with its share of the keys; ``merge(groups, replies)`` combines
        the replies (the first error wins). One partition: the command goes as it is."""
        spec = DATA_COMMANDS[args[0].lower()]
        check_arity(spec, args)
        keys = args[1:]
        groups = split_keys(self.service.view, keys)
        if len(groups) == 1:
            return self._send(session, spec, next(iter(groups)), args)
        requests = [self._send(session, spec, p, [args[0], *(keys[i] for i in positions)])
                    for p, positions in groups.items()]
        d = defer.gatherResults(requests, consumeErrors=True)
        d.addCallback(lambda replies: _first_error(replies) or merge(groups, replies))
        return d

    def mget(self, session: ClientSession, args: list[bytes]):
        return self._split_by_key(session, args, lambda groups, replies: reassemble(
            len(args) - 1, [(positions, reply.value()) for positions, reply in zip(groups.values(), replies,
                                                                                   strict=True)]))

    def count_keys(self, session: ClientSession, args: list[bytes]):
        """DEL, UNLINK, EXISTS, TOUCH: split by partition and add up the counts."""
        return self._split_by_key(session, args, lambda groups, replies: sum(reply.value() for reply in replies))

    def mset(self, session: ClientSession, args: list[bytes]):
        """MSET across partitions: each partition's share is atomic; the whole is not (see docs/commands.md)."""
        spec = DATA_COMMANDS[b"mset"]
        check_arity(spec, args)
        pairs = args[1:]
        groups = split_pairs(self.service.view, pairs)
        if len(groups) == 1:
            return self._send(session, spec, next(iter(groups)), args)
        requests = []
        for p, positions in groups.items():
            part = [args[0]]
            for i in positions:
                part += (pairs[2 * i], pairs[2 * i + 1])
            requests.append(self._send(session, spec, p, part))
        d = defer.gatherResults(requests, consumeErrors=True)
        d.addCallback(lambda replies: _first_error(replies) or OK)
        return d

    def _same_partition(self, session: ClientSession, spec: CommandSpec, args: list[bytes]):
        """MSETNX, RENAME, RENAMENX, COPY, BITOP, LCS: atomic on the primary of their keys' one partition.

        Keys in different partitions are refused, as Redis Cluster refuses keys in different slots, except
        for LCS, which only reads: it reads both keys and compares them here.
        """
        partitions = {self.service.view.partition_of(key) for key in spec.keys(args)}
        if len(partitions) == 1:
            d = self._send(session, spec, partitions.pop(), args)
            return d.addCallback(_lcs_map) if spec.name == "lcs" else d
        if spec.name == "lcs":
            return self._lcs_across(session, args)
        return ErrorReply(f"CROSSSLOT keys of {spec.name.upper()} are in different partitions; put them in one "
                          "partition with a {hash tag}, e.g. {user1}:a and {user1}:b")

    def _lcs_across(self, session: ClientSession, args: list[bytes]):
        get = DATA_COMMANDS[b"get"]
        reads = [self._send(session, get, self.service.view.partition_of(key), [b"GET", key]) for key in args[1:3]]
        d = defer.gatherResults(reads, consumeErrors=True)
        d.addCallback(_lcs_of, args[3:])
        return d

    def dbsize(self, session: ClientSession, args: list[bytes]):
        spec = DATA_COMMANDS[b"dbsize"]
        check_arity(spec, args)
        count = self.service.view.partition_count
        requests = [self._send(session, spec, p, args) for p in range(count)]
        d = defer.gatherResults(requests, consumeErrors=True)
        d.addCallback(lambda replies: _first_error(replies) or sum(reply.value() for reply in replies))
        return d

    # -- the whole keyspace ----------------------------------------------------------------------------

    def _every_partition(self, session: ClientSession, args: list[bytes], partitions=None) -> defer.Deferred:
        """Send the command to each partition (all by default); fires with the list of replies."""
        spec = DATA_COMMANDS[args[0].lower()]
        check_arity(spec, args)
        if partitions is None:
            partitions = range(self.service.view.partition_count)
        return defer.gatherResults([self._send(session, spec, p, args) for p in partitions], consumeErrors=True)

    def flush(self, session: ClientSession, args: list[bytes]):
        """FLUSHALL, FLUSHDB: every partition empties itself; not atomic across partitions."""
        d = self._every_partition(session, args)
        d.addCallback(lambda replies: _first_error(replies) or OK)
        return d

    def keys(self, session: ClientSession, args: list[bytes]):
        check_arity(DATA_COMMANDS[b"keys"], args)
        pinned = keyspace.pattern_partition(args[1], self.service.view.partition_count)
        d = self._every_partition(session, args, None if pinned is None else [pinned])
        d.addCallback(lambda replies: _first_error(replies) or [key for r in replies for key in r.value()])
        return d

    def randomkey(self, session: ClientSession, args: list[bytes]):
        """A key of a random partition: the partitions are asked one at a time, in random order, until one
        has a key."""
        spec = DATA_COMMANDS[b"randomkey"]
        check_arity(spec, args)
        count = self.service.view.partition_count
        return self._first_random_key(session, spec, args, random.sample(range(count), count))

    @defer.inlineCallbacks
    def _first_random_key(self, session: ClientSession, spec: CommandSpec, args: list[bytes], order: list[int]):
        for partition in order:
            reply = yield self._send(session, spec, partition, args)
            if isinstance(reply, KVError) or reply.is_error or reply.value() is not None:
                return reply
        return None

    def scan(self, session: ClientSession, args: list[bytes]):
        """SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]: one step of one partition (kvproxy.keyspace)."""
        if len(args) < 2:
            raise wrong_arity("scan")
        cursor = keyspace.parse_cursor(args[1])
        options = keyspace.parse_scan_options(args[2:])
        partitions = self.service.view.partition_count
        partition, token = keyspace.split_cursor(cursor)
        pinned = keyspace.pattern_partition(options.pattern, partitions)
        if pinned is not None and cursor == 0:
            partition = pinned
        if options.other_type or partition >= partitions:
            return [b"0", []]
        step = [b"KV.SCAN", b"%d" % token, b"%d" % options.count]
        if options.pattern is not None:
            step.append(options.pattern)
        # Always the primary: the token names a position only the node that handed it out knows.
        d = self.service.send(partition, step, session.options, readonly=True, client=session)
        d.addCallback(_scan_reply, partition, partitions, pinned is not None)
        return d

    def time(self, session, args):
        if len(args) != 1:
            raise wrong_arity("time")
        micros = time.time_ns() // 1000
        return [b"%d" % (micros // 1_000_000), b"%d" % (micros % 1_000_000)]

    # -- answered by the proxy -------------------------------------------------------------------------

    def write_level(self, session: ClientSession, args):
        """KV.WRITELEVEL [1|quorum|all]: this connection's write level (no argument: the current one)."""
        if len(args) > 2:
            raise wrong_arity("kv.writelevel")
        if len(args) == 1:
            return (session.write_level or "default").encode()
        level = args[1].decode("utf-8", "replace").lower()
        if level not in WRITE_LEVELS and level != "default":
            raise CommandError(f"write level must be 1, quorum, all or default, not '{level}'")
        session.write_level = None if level == "default" else level
        session.update_options()
        return OK

    def read_level(self, session: ClientSession, args):
        """KV.READLEVEL [strong|eventual]: this connection's read level (no argument: the current one)."""
        if len(args) > 2:
            raise wrong_arity("kv.readlevel")
        if len(args) == 1:
            return session.read_level.encode()
        level = args[1].decode("utf-8", "replace").lower()
        if level not in READ_LEVELS:
            raise CommandError(f"read level must be strong or eventual, not '{level}'")
        session.read_level = level
        session.update_options()
        return OK

    def ping(self, session, args):
        if len(args) > 2:
            raise wrong_arity("ping")
        return PONG if len(args) == 1 else args[1]

    def echo(self, session, args):
        if len(args) != 2:
            raise wrong_arity("echo")
        return args[1]

    def select(self, session, args):
        if len(args) != 2:
            raise wrong_arity("select")
        try:
            db = int(args[1])
        except ValueError:
            raise CommandError("value is not an integer or out of range") from None
        if db != 0:
            # One keyspace per cluster, as in Redis Cluster.
            return ErrorReply("ERR DB index is out of range")
        return OK

    def hello(self, session: ClientSession, args):
        i = 1
        if len(args) > 1:
            try:
                version = int(args[1])
            except ValueError:
                raise CommandError("Protocol version is not an integer or out of range") from None
            if version not in (2, 3):
                return ErrorReply("NOPROTO unsupported protocol version")
            i = 2
            while i < len(args):
                option = args[i].lower()
                if option == b"setname" and i + 1 < len(args):
                    session.name = args[i + 1]
                    i += 2
                elif option == b"auth" and i + 2 < len(args):
                    i += 3  # no users configured: like Redis without ACLs, any credentials pass
                else:
                    raise CommandError(f"Syntax error in HELLO option '{option.decode('utf-8', 'replace')}'")
            session.protocol = version
        return {
            b"server": b"redis", b"version": REDIS_VERSION.encode(), b"proto": session.protocol, b"id": session.id,
            b"mode": b"standalone", b"role": b"master", b"modules": [],
        }

    def client(self, session: ClientSession, args):
        if len(args) < 2:
            raise wrong_arity("client")
        sub = args[1].lower()
        if sub == b"setname" and len(args) == 3:
            if any(c <= 32 or c > 126 for c in args[2]):
                raise CommandError("Client names cannot contain spaces, newlines or special characters.")
            session.name = args[2]
            return OK
        if sub == b"getname" and len(args) == 2:
            return session.name or None
        if sub == b"id" and len(args) == 2:
            return session.id
        if sub == b"setinfo" and len(args) == 4:
            attr = args[2].lower()
            if attr == b"lib-name":
                session.lib_name = args[3]
            elif attr == b"lib-ver":
                session.lib_ver = args[3]
            else:
                raise CommandError(f"Unrecognized option '{args[2].decode('utf-8', 'replace')}'")
            return OK
        if sub == b"info" and len(args) == 2:
            return Verbatim(self._client_line(session) + "\n")
        if sub in (b"setname", b"getname", b"id", b"setinfo", b"info"):
            raise CommandError(f"wrong number of arguments for 'client|{sub.decode()}' command")
        raise CommandError(f"unknown subcommand '{args[1].decode('utf-8', 'replace')}'. Try CLIENT HELP.")

    def _client_line(self, session: ClientSession) -> str:
        return (f"id={session.id} addr={session.address} name={session.name.decode('utf-8', 'replace')} "
                f"age={int(time.time() - session.created)} db=0 resp={session.protocol} "
                f"lib-name={session.lib_name.decode('utf-8', 'replace')} "
                f"lib-ver={session.lib_ver.decode('utf-8', 'replace')}")

    def command(self, session, args):
        sub = args[1].lower() if len(args) > 1 else None
        public = [spec for spec in DATA_COMMANDS.values() if spec.routing != "internal"]
        if sub is None:
            return [_command_info(spec) for spec in public]
        if sub == b"count":
            return len({spec.name.encode() for spec in public} | set(self.local))
        if sub == b"info":
            known = {spec.name.encode(): spec for spec in public}
            return [_command_info(known[n.lower()]) if n.lower() in known else None for n in args[2:]]
        if sub == b"docs":
            return {}
        raise CommandError(f"unknown subcommand '{args[1].decode('utf-8', 'replace')}'. Try COMMAND HELP.")

    def config(self, session, args):
        if len(args) < 2:
            raise wrong_arity("config")
        sub = args[1].lower()
        if sub == b"get":
            if len(args) < 3:
                raise wrong_arity("config|get")
            return info.config_get(args[2:], self.port)
        if sub in (b"set", b"rewrite", b"resetstat"):
            raise CommandError("CONFIG supports only GET on a kvstore proxy; cluster settings are changed "
                               "with kvctl")
        raise CommandError(f"unknown subcommand '{args[1].decode('utf-8', 'replace')}'. Try CONFIG HELP.")

    def info(self, session, args):
        sections = info.wanted_sections(args[1:])
        view = self.service.view
        facts = info.ProxyFacts(
            redis_version=REDIS_VERSION, proxy_id=self.proxy_id, port=self.port, started=self.started,
            run_id=_RUN_ID, connected_clients=self.connected_clients,
            commands_processed=self.service.commands_processed, routing_retries=self.service.retries,
            partitions=view.partition_count,
            partitions_with_primary=sum(1 for p in range(view.partition_count) if view.primary_route(p)),
            live_nodes=len(view.nodes))
        if "keyspace" not in sections:
            return Verbatim(info.render(sections, facts))

        def with_keys(total):
            if not isinstance(total, int):
                return total  # an error
            facts.keys = total
            return Verbatim(info.render(sections, facts))

        return self.dbsize(session, [b"DBSIZE"]).addCallback(with_keys)


def _command_info(spec: CommandSpec) -> list:
    return [spec.name.encode(), spec.arity, [Status(f) for f in spec.flags], spec.first_key, spec.last_key, spec.step,
            [], [], [], []]


def _first_error(replies: list):
    """The first error among the replies of several partitions (a node's RawReply or our KVError)."""
    for reply in replies:
        if isinstance(reply, KVError) or reply.is_error:
            return reply
    return None


def _scan_reply(reply, partition: int, partitions: int, only_partition: bool):
    """A node's ``[token, keys]`` for one step of a partition, as SCAN's ``[cursor, keys]``."""
    if isinstance(reply, KVError) or reply.is_error:
        return reply
    token, keys = reply.value()
    return [b"%d" % keyspace.next_cursor(partition, token, partitions, only_partition), keys]


def _lcs_map(reply):
    """A node's LCS IDX reply is a flat array, nodes speaking RESP2: make it the map RESP3 clients get."""
    if isinstance(reply, KVError) or not reply.startswith(b"*"):
        return reply
    flat = reply.value()
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _lcs_of(replies: list, options: list[bytes]):
    """LCS of two keys read from different partitions."""
    error = _first_error(replies)
    if error is not None:
        return error
    first, second = (reply.value() or b"" for reply in replies)
    try:
        return lcs_command(first, second, options)
    except KVError as err:
        return err
