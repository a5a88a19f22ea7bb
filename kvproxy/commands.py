"""What the proxy does with each client command: answer it itself, route it, or split and merge it."""

from __future__ import annotations

import itertools
import os
import platform
import sys
import time

from twisted.internet import defer

from kvcommon.commands import DATA_COMMANDS, CommandSpec, check_arity, unknown_command, wrong_arity
from kvcommon.errors import CommandError, KVError
from kvcommon.resp import OK, PONG, ErrorReply, Status, Verbatim
from kvmeta.schema import READ_LEVELS, WRITE_LEVELS
from kvproxy.routing import reassemble, split_keys, split_pairs
from kvproxy.service import ProxyService

# The Redis version we report: clients switch features on it, and we implement the 7.2 command set we list.
REDIS_VERSION = "7.2.0"
SERVER_NAME = "kvstore"

_client_ids = itertools.count(1)


class ClientSession:
    """Per-connection state: protocol version, name, and the request options sent to nodes."""

    def __init__(self, address: str = ""):
        self.id = next(_client_ids)
        self.address = address
        self.protocol = 2
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.write_level: str | None = None
        self.read_level = "strong"
        self.created = time.time()
        self.options = b"-"

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

    def execute(self, session: ClientSession, args: list[bytes]):
        self.service.commands_processed += 1
        name = args[0].lower()
        try:
            handler = self.local.get(name)
            if handler is not None:
                return handler(session, args)
            spec = DATA_COMMANDS.get(name)
            if spec is None:
                return unknown_command(args)
            check_arity(spec, args)
            return self._single(session, spec, args)
        except KVError as err:
            return err

    # -- routed commands ---------------------------------------------------------------------------

    def _send(self, session: ClientSession, spec: CommandSpec, partition: int, args: list[bytes]):
        readonly = not spec.is_write
        return self.service.send(partition, args, session.options, readonly=readonly,
                                 eventual=readonly and session.read_level == "eventual")

    def _single(self, session: ClientSession, spec: CommandSpec, args: list[bytes]):
        return self._send(session, spec, self.service.view.partition_of(args[1]), args)

    def mget(self, session: ClientSession, args: list[bytes]):
        spec = DATA_COMMANDS[b"mget"]
        check_arity(spec, args)
        keys = args[1:]
        groups = split_keys(self.service.view, keys)
        if len(groups) == 1:
            return self._send(session, spec, next(iter(groups)), args)
        requests = [self._send(session, spec, p, [args[0], *(keys[i] for i in positions)])
                    for p, positions in groups.items()]
        d = defer.gatherResults(requests, consumeErrors=True)
        d.addCallback(lambda replies: _first_error(replies) or reassemble(
            len(keys), [(positions, reply.value()) for positions, reply in zip(groups.values(), replies,
                                                                               strict=True)]))
        return d

    def count_keys(self, session: ClientSession, args: list[bytes]):
        """DEL, UNLINK, EXISTS: split by partition and add up the counts."""
        spec = DATA_COMMANDS[args[0].lower()]
        check_arity(spec, args)
        keys = args[1:]
        groups = split_keys(self.service.view, keys)
        if len(groups) == 1:
            return self._send(session, spec, next(iter(groups)), args)
        requests = [self._send(session, spec, p, [args[0], *(keys[i] for i in positions)])
                    for p, positions in groups.items()]
        d = defer.gatherResults(requests, consumeErrors=True)
        d.addCallback(lambda replies: _first_error(replies) or sum(reply.value() for reply in replies))
        return d

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

    def dbsize(self, session: ClientSession, args: list[bytes]):
        spec = DATA_COMMANDS[b"dbsize"]
        check_arity(spec, args)
        count = self.service.view.partition_count
        requests = [self._send(session, spec, p, args) for p in range(count)]
        d = defer.gatherResults(requests, consumeErrors=True)
        d.addCallback(lambda replies: _first_error(replies) or sum(reply.value() for reply in replies))
        return d

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
        if sub is None:
            return [_command_info(spec) for spec in DATA_COMMANDS.values()]
        if sub == b"count":
            return len(DATA_COMMANDS) + len(self.local)
        if sub == b"info":
            return [_command_info(DATA_COMMANDS[n.lower()]) if n.lower() in DATA_COMMANDS else None
                    for n in args[2:]]
        if sub == b"docs":
            return {}
        raise CommandError(f"unknown subcommand '{args[1].decode('utf-8', 'replace')}'. Try COMMAND HELP.")

    def config(self, session, args):
        if len(args) < 2:
            raise wrong_arity("config")
        if args[1].lower() != b"get" or len(args) < 3:
            raise CommandError("CONFIG supports only GET on a kvstore proxy; cluster settings are changed "
                               "with kvctl")
        known = {b"save": b"", b"appendonly": b"yes", b"databases": b"1", b"maxmemory": b"0",
                 b"cluster-enabled": b"no", b"timeout": b"0"}
        reply = {}
        for pattern in args[2:]:
            for name, value in known.items():
                if pattern.lower() == name or pattern == b"*":
                    reply[name] = value
        return reply

    def info(self, session, args):
        view = self.service.view
        primaries = sum(1 for p in range(view.partition_count) if view.primary_route(p) is not None)
        sections = {
            "Server": [
                ("redis_version", REDIS_VERSION), ("kvstore_role", "proxy"), ("kvstore_proxy_id", self.proxy_id),
                ("redis_mode", "standalone"), ("os", f"{platform.system()} {platform.release()}"),
                ("arch_bits", "64" if sys.maxsize > 2**32 else "32"), ("process_id", os.getpid()),
                ("tcp_port", self.port), ("uptime_in_seconds", int(time.time() - self.started)),
            ],
            "Clients": [("connected_clients", self.connected_clients)],
            "Stats": [("total_commands_processed", self.service.commands_processed),
                      ("kvstore_routing_retries", self.service.retries)],
            "Replication": [("role", "master"), ("connected_slaves", 0)],
            "Cluster": [("cluster_enabled", 0), ("kvstore_partitions", view.partition_count),
                        ("kvstore_partitions_with_primary", primaries), ("kvstore_live_nodes", len(view.nodes))],
        }
        wanted = {a.decode("utf-8", "replace").lower() for a in args[1:]}
        lines = []
        for title, fields in sections.items():
            if wanted and not wanted & {title.lower(), "all", "everything", "default"}:
                continue
            lines.append(f"# {title}")
            lines += [f"{name}:{value}" for name, value in fields]
            lines.append("")
        return Verbatim("\r\n".join(lines))


def _command_info(spec: CommandSpec) -> list:
    return [spec.name.encode(), spec.arity, [Status(f) for f in spec.flags], spec.first_key, spec.last_key, spec.step,
            [], [], [], []]


def _first_error(replies: list):
    """The first error among the replies of several partitions (a node's RawReply or our KVError)."""
    for reply in replies:
        if isinstance(reply, KVError) or reply.is_error:
            return reply
    return None
