"""Where each partition's replicas live: pure functions, no ZooKeeper.

Rules: a partition's replicas are on distinct nodes, in distinct zones when zones are known and balanced;
replica counts per node differ by at most one, and so do primary counts. Decisions are deterministic for
the same input, so two controllers computing a placement agree.

Replica slots are dealt to the nodes in turn, as cards are dealt: partition p takes the next
``replication_factor`` nodes of a cyclic order. Consecutive nodes in that order are distinct (and, with
the nodes interleaved by zone, in distinct zones), and dealing in turn keeps the counts within one.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence


class PlacementError(ValueError):
    pass


def zone_interleaved(nodes: Sequence[str], zones: Mapping[str, str]) -> list[str]:
    """The nodes in an order where neighbours are in different zones as far as the zones allow."""
    by_zone: dict[str, list[str]] = defaultdict(list)
    for node in sorted(set(nodes)):
        by_zone[zones.get(node, "")].append(node)
    columns = sorted(by_zone.values(), key=lambda members: (-len(members), members[0]))
    if not columns:
        return []
    return [column[i] for i in range(len(columns[0])) for column in columns if i < len(column)]


def place_partitions(
    partition_count: int,
    nodes: Sequence[str],
    replication_factor: int,
    zones: Mapping[str, str] | None = None,
) -> list[tuple[str, ...]]:
    """Replica lists for partitions 0..P-1, each with its primary first."""
    order = zone_interleaved(nodes, zones or {})
    if len(order) < replication_factor:
        raise PlacementError(
            f"{len(order)} live node(s) cannot hold {replication_factor} replicas of each partition; "
            f"start at least {replication_factor} nodes or create the cluster with a lower replication factor"
        )
    primary_load: Counter[str] = Counter()
    placement = []
    for partition in range(partition_count):
        first = partition * replication_factor
        replicas = [order[(first + i) % len(order)] for i in range(replication_factor)]
        primary = min(replicas, key=lambda n: (primary_load[n], replicas.index(n)))
        primary_load[primary] += 1
        placement.append((primary, *[n for n in replicas if n != primary]))
    return placement
