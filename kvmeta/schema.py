"""The ZooKeeper layout of a cluster and the records stored in it.

Everything of one cluster lives under ``/kv/<cluster>``, so several clusters share one ensemble without
seeing each other::

    /kv/<cluster>/config              ClusterConfig (persistent)
    /kv/<cluster>/members/<id>        MemberRecord: nodes that belong to the cluster (dead != removed)
    /kv/<cluster>/nodes/<id>          NodeRecord, ephemeral: a live node and where it listens
    /kv/<cluster>/proxies/<id>        NodeRecord, ephemeral: a live proxy
    /kv/<cluster>/partitions/<p>      PartitionState, changed only by version-conditional set
    /kv/<cluster>/positions/<id>      PositionsRecord: each replica's applied (generation, seq) on a node
    /kv/<cluster>/controller          leader election among kvmeta processes
    /kv/<cluster>/operations/<name>   OperationRecord: a long operation the controller carries out step by step

Records are JSON so an operator can read them with zkCli. Partition znodes are named with zero-padded
numbers so that a sorted listing is in partition order.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Self

ROOT = "/kv"

WRITE_LEVELS = ("1", "quorum", "all")
READ_LEVELS = ("strong", "eventual")
MAX_RETENTION_SECONDS = 30 * 24 * 3600


class ClusterPaths:
    def __init__(self, cluster: str):
        if not cluster or "/" in cluster:
            raise ValueError(f"invalid cluster name {cluster!r}: use letters, digits, '-' or '_'")
        self.cluster = cluster
        self.base = f"{ROOT}/{cluster}"
        self.config = f"{self.base}/config"
        self.members = f"{self.base}/members"
        self.nodes = f"{self.base}/nodes"
        self.proxies = f"{self.base}/proxies"
        self.partitions = f"{self.base}/partitions"
        self.positions = f"{self.base}/positions"
        self.controller = f"{self.base}/controller"
        self.operations = f"{self.base}/operations"

    def member(self, node_id: str) -> str:
        return f"{self.members}/{node_id}"

    def node(self, node_id: str) -> str:
        return f"{self.nodes}/{node_id}"

    def proxy(self, proxy_id: str) -> str:
        return f"{self.proxies}/{proxy_id}"

    def partition(self, partition: int) -> str:
        return f"{self.partitions}/{partition:05d}"

    def node_positions(self, node_id: str) -> str:
        return f"{self.positions}/{node_id}"

    def operation(self, name: str) -> str:
        return f"{self.operations}/{name}"


class JsonRecord:
    """A dataclass stored in ZooKeeper as JSON of its fields."""

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> Self:
        return cls(**json.loads(data))


@dataclass(frozen=True)
class ClusterConfig(JsonRecord):
    partitions: int
    replication_factor: int = 3
    write_level: str = "quorum"
    read_level: str = "strong"
    # How long old versions and tombstones are kept for reads "as of" a version. Every write's value is
    # kept that long, so the window sets the history's disk space and much of a write's storage work.
    retention_seconds: int = 3600

    def __post_init__(self):
        if not 1 <= self.partitions <= 65536:
            raise ValueError(f"partition count must be between 1 and 65536, not {self.partitions}")
        if not 1 <= self.replication_factor <= 7:
            raise ValueError(f"replication factor must be between 1 and 7, not {self.replication_factor}")
        if self.write_level not in WRITE_LEVELS:
            raise ValueError(f"write level must be one of {', '.join(WRITE_LEVELS)}, not {self.write_level!r}")
        if self.read_level not in READ_LEVELS:
            raise ValueError(f"read level must be one of {', '.join(READ_LEVELS)}, not {self.read_level!r}")
        if not 1 <= self.retention_seconds <= MAX_RETENTION_SECONDS:
            raise ValueError(f"retention must be between 1 and {MAX_RETENTION_SECONDS} seconds (30 days), "
                             f"not {self.retention_seconds}")


@dataclass(frozen=True)
class NodeRecord(JsonRecord):
    """Where a live process listens. ``port`` speaks RESP (clients, proxies, replication)."""

    id: str
    host: str
    port: int
    pid: int = 0
    metrics_port: int = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class MemberRecord(JsonRecord):
    id: str
    zone: str = ""
    # A draining node keeps serving but the controller moves its replicas elsewhere.
    draining: bool = False


@dataclass(frozen=True)
class PartitionState(JsonRecord):
    """Who serves a partition, and in which generation.

    ``replicas`` lists every node that holds a copy, primary included; ``in_sync`` the replicas that have
    every write the primary acknowledged at level quorum or all and so may become primary.
    ``generation`` rises by one each time the primary changes; ``generation_start`` is the log sequence
    number the current generation started after, so a returning replica knows where to truncate.
    """

    partition: int
    generation: int
    primary: str | None
    replicas: tuple[str, ...]
    in_sync: tuple[str, ...]
    generation_start: int = 0
    # A replica still receiving a snapshot must never be promoted.
    snapshotting: tuple[str, ...] = field(default_factory=tuple)

    @property
    def secondaries(self) -> tuple[str, ...]:
        return tuple(r for r in self.replicas if r != self.primary)

    @classmethod
    def decode(cls, data: bytes) -> PartitionState:
        raw = json.loads(data)
        for name in ("replicas", "in_sync", "snapshotting"):
            raw[name] = tuple(raw.get(name, ()))
        return cls(**raw)


@dataclass(frozen=True)
class PositionsRecord:
    """A node's replicas and how far each has applied the log: ``{partition: (generation, seq)}``."""

    node: str
    positions: dict[int, tuple[int, int]]

    def encode(self) -> bytes:
        return json.dumps(
            {"node": self.node, "positions": {str(p): list(gs) for p, gs in self.positions.items()}},
            sort_keys=True,
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> PositionsRecord:
        raw = json.loads(data)
        return cls(raw["node"], {int(p): (gs[0], gs[1]) for p, gs in raw["positions"].items()})


@dataclass(frozen=True)
class OperationRecord(JsonRecord):
    """A requested change the controller leader carries out over several steps (a planned switch of
    primary, an unclean failover). Recorded in ZooKeeper so a controller that takes over finishes it."""

    kind: str  # "switch" or "unclean"
    partition: int
    target: str | None = None
    step: str = "requested"
    # For a switch: the generation paused and the seq the target must reach before the switch.
    generation: int = 0
    seq: int = 0
    message: str = ""

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.partition:05d}"
