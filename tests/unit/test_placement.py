from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmeta.placement import PlacementError, place_partitions


@settings(max_examples=300, deadline=None)
@given(
    partitions=st.integers(1, 300),
    node_count=st.integers(1, 12),
    rf=st.integers(1, 5),
)
def test_placement_invariants(partitions, node_count, rf):
    nodes = [f"node{i}" for i in range(node_count)]
    if node_count < rf:
        with pytest.raises(PlacementError):
            place_partitions(partitions, nodes, rf)
        return
    placement = place_partitions(partitions, nodes, rf)
    assert len(placement) == partitions
    for replicas in placement:
        assert len(replicas) == rf
        assert len(set(replicas)) == rf, "two replicas of one partition on one node"
    replicas_per_node = Counter(n for replicas in placement for n in replicas)
    primaries_per_node = Counter(replicas[0] for replicas in placement)
    loads = [replicas_per_node[n] for n in nodes]
    primaries = [primaries_per_node[n] for n in nodes]
    assert max(loads) - min(loads) <= 1
    assert max(primaries) - min(primaries) <= 1


def test_placement_is_deterministic_and_independent_of_node_order():
    nodes = ["c", "a", "b", "d"]
    assert place_partitions(32, nodes, 3) == place_partitions(32, sorted(nodes), 3)


def test_zones_are_spread_when_they_can_be():
    zones = {"a1": "a", "a2": "a", "b1": "b", "b2": "b", "c1": "c", "c2": "c"}
    for replicas in place_partitions(60, list(zones), 3, zones):
        assert len({zones[n] for n in replicas}) == 3


def test_error_says_what_to_do():
    with pytest.raises(PlacementError, match="start at least 3 nodes"):
        place_partitions(8, ["a", "b"], 3)
