"""INFO and CONFIG GET as a proxy answers them: Redis's layout and field names, for clients and tools.

Tools read a handful of fields (``redis_version``, ``role``, ``connected_clients``, ``used_memory``,
``loading``, ``db0:keys=``...); the values are this proxy's, or the cluster's where a cluster-wide number
makes sense (the keyspace). Pure: the caller gathers the numbers.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from dataclasses import dataclass

from kvcommon.strings import glob_match

# Sections in Redis's order; those INFO gives without arguments ("default").
SECTIONS = ("server", "clients", "memory", "persistence", "stats", "replication", "cpu", "modules", "errorstats",
            "cluster", "keyspace")
DEFAULT_SECTIONS = frozenset(SECTIONS)
_TITLES = {"cpu": "CPU"}


@dataclass
class ProxyFacts:
    """What INFO reports about the proxy and the cluster, gathered by the caller."""

    redis_version: str
    proxy_id: str
    port: int
    started: float
    run_id: str
    connected_clients: int
    commands_processed: int
    routing_retries: int
    partitions: int
    partitions_with_primary: int
    live_nodes: int
    keys: int | None = None  # the cluster's key count, when the keyspace section is wanted


def wanted_sections(args: list[bytes]) -> list[str]:
    """The sections ``INFO [section ...]`` asks for, in Redis's order; unknown names select nothing."""
    names = {a.decode("utf-8", "replace").lower() for a in args} or {"default"}
    if names & {"all", "everything"}:
        return list(SECTIONS)
    if "default" in names:
        names |= DEFAULT_SECTIONS
    return [s for s in SECTIONS if s in names]


def render(sections: list[str], facts: ProxyFacts) -> str:
    """The INFO text: "# Title" then "field:value" lines, sections apart by a blank line, CRLF endings."""
    parts = []
    for section in sections:
        lines = [f"# {_TITLES.get(section, section.capitalize())}"]
        lines += [f"{name}:{value}" for name, value in _FIELDS[section](facts)]
        parts.append("".join(line + "\r\n" for line in lines))
    return "\r\n".join(parts)


def _server(f: ProxyFacts):
    uptime = int(time.time() - f.started)
    return [
        ("redis_version", f.redis_version), ("redis_git_sha1", "00000000"), ("redis_git_dirty", 0),
        ("redis_mode", "standalone"), ("os", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("arch_bits", 64 if sys.maxsize > 2**32 else 32), ("multiplexing_api", "epoll"),
        ("process_id", os.getpid()), ("run_id", f.run_id), ("tcp_port", f.port),
        ("server_time_usec", time.time_ns() // 1000), ("uptime_in_seconds", uptime),
        ("uptime_in_days", uptime // 86400), ("hz", 10), ("configured_hz", 10), ("executable", sys.argv[0]),
        ("config_file", ""), ("kvstore_role", "proxy"), ("kvstore_proxy_id", f.proxy_id),
    ]


def _clients(f: ProxyFacts):
    return [("connected_clients", f.connected_clients), ("cluster_connections", 0), ("maxclients", 10000),
            ("blocked_clients", 0), ("tracking_clients", 0), ("clients_in_timeout_table", 0)]


def _memory(f: ProxyFacts):
    # The proxy holds no data: these are the proxy process's own figures.
    rss = _rss_bytes()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return [("used_memory", rss), ("used_memory_human", _human(rss)), ("used_memory_rss", rss),
            ("used_memory_rss_human", _human(rss)), ("used_memory_peak", peak),
            ("used_memory_peak_human", _human(peak)),
            ("maxmemory", 0), ("maxmemory_human", "0B"), ("maxmemory_policy", "noeviction"),
            ("mem_fragmentation_ratio", "1.00"), ("mem_allocator", "libc")]


def _persistence(f: ProxyFacts):
    # Nodes commit every write to LevelDB before acknowledging it; there are no snapshots to wait for.
    return [("loading", 0), ("async_loading", 0), ("rdb_changes_since_last_save", 0), ("rdb_bgsave_in_progress", 0),
            ("rdb_last_save_time", int(f.started)), ("rdb_last_bgsave_status", "ok"), ("aof_enabled", 0),
            ("aof_rewrite_in_progress", 0), ("aof_last_bgrewrite_status", "ok"), ("aof_last_write_status", "ok")]


def _stats(f: ProxyFacts):
    return [("total_commands_processed", f.commands_processed), ("instantaneous_ops_per_sec", 0),
            ("rejected_connections", 0), ("expired_keys", 0), ("evicted_keys", 0), ("keyspace_hits", 0),
            ("keyspace_misses", 0), ("pubsub_channels", 0), ("pubsub_patterns", 0),
            ("kvstore_routing_retries", f.routing_retries)]


def _replication(f: ProxyFacts):
    # Replication inside the cluster is not Redis replication: clients see one master.
    return [("role", "master"), ("connected_slaves", 0), ("master_failover_state", "no-failover"),
            ("master_replid", f.run_id), ("master_replid2", "0" * 40), ("master_repl_offset", 0),
            ("second_repl_offset", -1), ("repl_backlog_active", 0)]


def _cpu(f: ProxyFacts):
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return [("used_cpu_sys", f"{own.ru_stime:.6f}"), ("used_cpu_user", f"{own.ru_utime:.6f}"),
            ("used_cpu_sys_children", f"{children.ru_stime:.6f}"),
            ("used_cpu_user_children", f"{children.ru_utime:.6f}")]


def _cluster(f: ProxyFacts):
    # Clients must not switch to the Redis Cluster protocol: the proxy routes for them.
    return [("cluster_enabled", 0), ("kvstore_partitions", f.partitions),
            ("kvstore_partitions_with_primary", f.partitions_with_primary), ("kvstore_live_nodes", f.live_nodes)]


def _keyspace(f: ProxyFacts):
    # Redis lists only databases with keys. Expiring keys are not counted (see docs/commands.md).
    return [("db0", f"keys={f.keys},expires=0,avg_ttl=0")] if f.keys else []


_FIELDS = {"server": _server, "clients": _clients, "memory": _memory, "persistence": _persistence,
           "stats": _stats, "replication": _replication, "cpu": _cpu, "modules": lambda f: [],
           "errorstats": lambda f: [], "cluster": _cluster, "keyspace": _keyspace}


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _human(size: int) -> str:
    """Redis's bytesToHuman: 1.50K, 12.00M ..."""
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.2f}{unit}"
    return f"{size}B"


# -- CONFIG GET ----------------------------------------------------------------------------------------------

def config_values(port: int) -> dict[bytes, bytes]:
    """The settings clients and tools ask about, with the values that describe the cluster's behaviour."""
    return {
        b"save": b"", b"appendonly": b"no", b"appendfsync": b"everysec", b"databases": b"1",
        b"maxmemory": b"0", b"maxmemory-policy": b"noeviction", b"maxmemory-samples": b"5",
        b"maxclients": b"10000", b"timeout": b"0", b"tcp-keepalive": b"300", b"port": str(port).encode(),
        b"cluster-enabled": b"no", b"notify-keyspace-events": b"", b"hz": b"10",
        b"slowlog-log-slower-than": b"10000", b"slowlog-max-len": b"128", b"lua-time-limit": b"5000",
        b"busy-reply-threshold": b"5000", b"io-threads": b"1", b"replica-read-only": b"yes",
        b"min-replicas-to-write": b"0", b"lazyfree-lazy-user-flush": b"no",
    }


_GLOB_CHARS = frozenset(b"*?[\\")


def config_get(patterns: list[bytes], port: int) -> dict[bytes, bytes]:
    """CONFIG GET: the known settings each pattern names, case-insensitively. As in Redis, a plain name
    comes back as it was asked for, and a glob pattern brings the names that match it."""
    values = config_values(port)
    reply = {}
    for pattern in patterns:
        if _GLOB_CHARS.isdisjoint(pattern):
            if pattern.lower() in values:
                reply[pattern] = values[pattern.lower()]
        else:
            reply.update((name, value) for name, value in values.items()
                         if glob_match(pattern, name, nocase=True))
    return reply
