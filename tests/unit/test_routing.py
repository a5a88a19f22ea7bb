from hypothesis import given
from hypothesis import strategies as st

from kvcommon.hashing import partition_for
from kvmeta.schema import NodeRecord, PartitionState
from kvproxy.routing import ClusterView, reassemble, split_keys, split_pairs


def make_view(partitions=8):
    nodes = {n: NodeRecord(n, "127.0.0.1", 7000 + i) for i, n in enumerate(["a", "b", "c"])}
    states = {
        p: PartitionState(p, generation=1 + p % 2, primary="abc"[p % 3], replicas=("a", "b", "c"),
                          in_sync=("a", "b", "c"))
        for p in range(partitions)
    }
    return ClusterView(partitions, states, nodes)


def test_primary_route_follows_the_state_and_the_live_nodes():
    view = make_view()
    route = view.primary_route(4)
    assert (route.node, route.generation, route.port) == ("b", 1, 7001)
    del view.nodes["b"]
    assert view.primary_route(4) is None, "a dead primary is no route"
    assert view.primary_route(99) is None


def test_replica_routes_put_the_primary_first_and_skip_snapshotting_replicas():
    view = make_view()
    state = view.states[1]
    view.states[1] = PartitionState(1, 2, "b", ("a", "b", "c"), ("a", "b"), snapshotting=("c",))
    assert [r.node for r in view.replica_routes(1)] == ["b", "a"]
    assert state.primary == "b"


def test_partition_of_is_xxh3_mod_p():
    view = make_view(16)
    assert view.partition_of(b"greeting") == partition_for(b"greeting", 16)


@given(st.lists(st.binary(max_size=8), max_size=40))
def test_split_then_reassemble_gives_back_the_callers_order(keys):
    view = make_view(8)
    groups = split_keys(view, keys)
    assert sorted(i for positions in groups.values() for i in positions) == list(range(len(keys)))
    for partition, positions in groups.items():
        assert all(view.partition_of(keys[i]) == partition for i in positions)
    # Each partition answers with its keys; the merge must restore the order of the request.
    parts = [(positions, [keys[i] for i in positions]) for positions in groups.values()]
    assert reassemble(len(keys), parts) == keys


@given(st.lists(st.tuples(st.binary(max_size=8), st.binary(max_size=4)), max_size=30))
def test_split_pairs_keeps_each_value_with_its_key(pairs):
    view = make_view(8)
    flat = [x for pair in pairs for x in pair]
    groups = split_pairs(view, flat)
    assert sorted(i for positions in groups.values() for i in positions) == list(range(len(pairs)))
    for partition, positions in groups.items():
        assert all(view.partition_of(pairs[i][0]) == partition for i in positions)
