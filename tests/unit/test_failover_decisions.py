from hypothesis import given
from hypothesis import strategies as st

from kvmeta.failover import ReplicaPosition, choose_primary, in_sync_set, repair_replicas, replicas_needed
from kvmeta.schema import PartitionState

STATE = PartitionState(3, 4, "a", ("a", "b", "c"), ("a", "b", "c"))


def pos(node, generation, seq, snapshotting=False):
    return ReplicaPosition(node, generation, seq, snapshotting)


def test_the_highest_position_is_promoted_with_the_next_generation():
    decision = choose_primary(STATE, {"b": pos("b", 4, 10), "c": pos("c", 4, 12)})
    assert decision.new_state.primary == "c"
    assert decision.new_state.generation == 5
    assert decision.new_state.generation_start == 12


def test_a_newer_generation_beats_a_longer_log():
    decision = choose_primary(STATE, {"b": pos("b", 4, 10), "c": pos("c", 3, 50)})
    assert decision.new_state.primary == "b"


def test_one_surviving_replica_of_three_is_not_enough_without_unclean():
    decision = choose_primary(STATE, {"b": pos("b", 4, 10)})
    assert decision.new_state is None and "--unclean" in decision.reason
    forced = choose_primary(STATE, {"b": pos("b", 4, 10)}, unclean=True).new_state
    assert (forced.primary, forced.replicas) == ("b", ("b",)), "it goes on with the replicas it has"


def test_a_replica_receiving_a_snapshot_is_never_promoted_nor_counted():
    decision = choose_primary(STATE, {"b": pos("b", 4, 99, snapshotting=True), "c": pos("c", 4, 1)})
    assert decision.new_state is None
    assert choose_primary(STATE, {"b": pos("b", 4, 99, True), "c": pos("c", 4, 1)}, unclean=True) \
        .new_state.primary == "c"


def test_a_planned_switch_goes_to_the_named_target():
    decision = choose_primary(STATE, {"b": pos("b", 4, 10), "c": pos("c", 4, 12)}, target="b")
    assert decision.new_state.primary == "b"


@given(st.integers(1, 7), st.data())
def test_a_quorum_acknowledged_write_survives_any_failover_that_is_allowed(replica_count, data):
    """Whatever majority acknowledged the write and whoever answers, if a primary is promoted it has it."""
    nodes = [f"n{i}" for i in range(replica_count)]
    majority = replica_count // 2 + 1
    acked_by = set(data.draw(st.permutations(nodes))[:majority])
    primary = data.draw(st.sampled_from(nodes))
    state = PartitionState(0, 2, primary, tuple(nodes), tuple(nodes))
    survivors = [n for n in nodes if n != primary and data.draw(st.booleans())]
    # Replicas with the write are at seq 10, the others behind at 9 (or a generation behind).
    answers = {n: pos(n, 2, 10) if n in acked_by else pos(n, data.draw(st.sampled_from([1, 2])), 9)
               for n in survivors}
    decision = choose_primary(state, answers)
    if decision.new_state is not None:
        assert decision.new_state.primary in acked_by
        assert len(survivors) >= replicas_needed(replica_count)


def test_in_sync_keeps_live_replicas_close_behind_the_primary():
    seqs = {"a": 100, "b": 95, "c": 10}
    assert in_sync_set(STATE, {"a", "b", "c"}, seqs, max_lag=50) == ("a", "b")
    assert in_sync_set(STATE, {"a", "c"}, {"a": 100, "b": 100, "c": 100}, max_lag=50) == ("a", "c")


def test_a_partition_short_of_replicas_gets_live_nodes_back_least_loaded_first():
    state = PartitionState(0, 5, "b", ("b",), ("b",))
    repaired = repair_replicas(state, ["a", "b", "c", "d"], 3, {"a": 4, "c": 1, "d": 2})
    assert repaired.replicas == ("b", "c", "d") and repaired.in_sync == ("b",)
    assert repair_replicas(STATE, ["a", "b", "c", "d"], 3, {}) is None


def test_equally_up_to_date_replicas_share_the_dead_primarys_partitions():
    answers = {"b": pos("b", 4, 10), "c": pos("c", 4, 10)}
    assert choose_primary(STATE, answers, primaries={"b": 3, "c": 1}).new_state.primary == "c"
    assert choose_primary(STATE, answers, primaries={"b": 0, "c": 1}).new_state.primary == "b"
    ahead = {"b": pos("b", 4, 11), "c": pos("c", 4, 10)}
    assert choose_primary(STATE, ahead, primaries={"b": 9}).new_state.primary == "b", "never at the cost of data"
