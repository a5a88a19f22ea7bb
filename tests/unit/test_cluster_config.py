"""The cluster settings an operator can give: what ClusterConfig accepts and refuses."""

import pytest

from kvmeta.schema import MAX_RETENTION_SECONDS, ClusterConfig


def test_defaults_round_trip_through_json():
    config = ClusterConfig(16)
    assert (config.replication_factor, config.write_level, config.read_level, config.retention_seconds) == (
        3, "quorum", "strong", 3600)
    assert ClusterConfig.decode(config.encode()) == config


@pytest.mark.parametrize("retention", [1, 60, MAX_RETENTION_SECONDS])
def test_a_retention_within_bounds_is_accepted(retention):
    assert ClusterConfig(16, retention_seconds=retention).retention_seconds == retention


@pytest.mark.parametrize("retention", [0, -5, MAX_RETENTION_SECONDS + 1])
def test_a_retention_out_of_bounds_is_refused_with_the_bounds(retention):
    with pytest.raises(ValueError, match=f"between 1 and {MAX_RETENTION_SECONDS} seconds .*not {retention}"):
        ClusterConfig(16, retention_seconds=retention)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("write_level", "most", "write level must be one of 1, quorum, all"),
    ("read_level", "sometimes", "read level must be one of strong, eventual"),
    ("partitions", 0, "partition count must be between 1 and 65536"),
    ("replication_factor", 8, "replication factor must be between 1 and 7"),
])
def test_other_settings_out_of_range_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        ClusterConfig(**{"partitions": 16, field: value})
