"""Choosing a partition's new primary: pure decisions, no I/O.

The rule that keeps acknowledged writes: a write acknowledged at level ``quorum`` is on a majority of the
partition's replicas. When the primary is gone, the controller asks the other replicas for their last
committed (generation, seq) and promotes the highest; that one holds every such write as long as the
replicas that answered intersect every majority, i.e. at least ``replicas - majority + 1`` of them did.
With fewer answers the partition waits (refusing writes) for a replica to return, unless an operator
forces an unclean failover, which may lose the writes only the missing replicas held.

A replica that is receiving a snapshot has dropped its old data: it is neither promoted nor counted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from kvmeta.schema import PartitionState


@dataclass(frozen=True)
class ReplicaPosition:
    node: str
    generation: int
    seq: int
    snapshotting: bool = False

    @property
    def key(self) -> tuple[int, int, str]:
        return (self.generation, self.seq, self.node)


@dataclass(frozen=True)
class Decision:
    new_state: PartitionState | None
    reason: str


def replicas_needed(replica_count: int) -> int:
    """How many surviving replicas must answer so that one of them holds every quorum write."""
    majority = replica_count // 2 + 1
    return replica_count - majority + 1


def choose_primary(state: PartitionState, answers: dict[str, ReplicaPosition], unclean: bool = False,
                   target: str | None = None, primaries: dict[str, int] | None = None) -> Decision:
    """The state that promotes a new primary, or None with the reason the partition must wait.

    ``answers`` are the positions of the replicas that answered (never the failed primary's).
    ``primaries`` counts the partitions each node leads: among equally up-to-date replicas the least
    loaded is chosen, so a dead node's partitions spread over the survivors.
    """
    usable = {n: pos for n, pos in answers.items() if n in state.replicas and not pos.snapshotting}
    needed = replicas_needed(len(state.replicas))
    if len(usable) < needed and not unclean:
        return Decision(None, f"{len(usable)} of the {needed} surviving replicas needed to promote one without "
                              "losing acknowledged writes are reachable; waiting for a replica to return "
                              "(or run `kvctl failover PARTITION --unclean`, which may lose writes)")
    if not usable:
        return Decision(None, "no replica that can be promoted is reachable")
    if target is not None:
        if target not in usable:
            return Decision(None, f"target {target} is not a reachable, fully copied replica")
        chosen = usable[target]
    else:
        primaries = primaries or {}
        best = max(pos.key[:2] for pos in usable.values())
        chosen = min((pos for pos in usable.values() if pos.key[:2] == best),
                     key=lambda pos: (primaries.get(pos.node, 0), pos.node))
    replicas = state.replicas
    if len(usable) < needed:
        # Unclean: the partition goes on with the replicas it has; returning nodes are added back as new
        # replicas (repair_replicas) and copy the partition from the new primary.
        replicas = tuple(n for n in state.replicas if n in usable)
    new_state = replace(
        state,
        generation=state.generation + 1,
        primary=chosen.node,
        replicas=replicas,
        # Who is in sync is re-established from positions once the new primary streams.
        in_sync=tuple(n for n in replicas if n in usable),
        generation_start=chosen.seq,
        snapshotting=(),
    )
    return Decision(new_state, f"promoted {chosen.node} at generation {chosen.generation} seq {chosen.seq}")


def in_sync_set(state: PartitionState, live: set[str], seqs: dict[str, int | None], max_lag: int) -> tuple[str, ...]:
    """Replicas that may take part in level ``all`` writes: the primary, and live replicas that are close
    behind it according to their published positions."""
    primary_seq = seqs.get(state.primary) if state.primary else None
    members = []
    for node in state.replicas:
        if node == state.primary or node in live and primary_seq is not None and seqs.get(node) is not None \
                and primary_seq - seqs[node] <= max_lag:
            members.append(node)
    return tuple(members)


def repair_replicas(state: PartitionState, live: list[str], replication_factor: int,
                    load: dict[str, int]) -> PartitionState | None:
    """A state that brings a partition short of replicas back to the replication factor with live nodes
    (the least loaded first), or None if there is nothing to add. New replicas copy the partition by
    snapshot and join the in-sync set once caught up."""
    missing = replication_factor - len(state.replicas)
    candidates = sorted((n for n in live if n not in state.replicas), key=lambda n: (load.get(n, 0), n))
    if missing <= 0 or not candidates:
        return None
    return replace(state, replicas=state.replicas + tuple(candidates[:missing]))
