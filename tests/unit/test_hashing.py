from hypothesis import given
from hypothesis import strategies as st

from kvcommon.hashing import hash_tag, partition_for


def test_hash_tags_follow_redis_cluster_rules():
    assert hash_tag(b"{user1000}.following") == b"user1000"
    assert hash_tag(b"foo{}{bar}") == b"foo{}{bar}", "an empty first tag means the whole key"
    assert hash_tag(b"foo{{bar}}zap") == b"{bar"
    assert hash_tag(b"foo{bar}{zap}") == b"bar"
    assert hash_tag(b"no tag") == b"no tag"
    assert hash_tag(b"{unclosed") == b"{unclosed"


@given(st.binary(min_size=1, max_size=10), st.binary(max_size=10), st.binary(max_size=10),
       st.integers(1, 4096))
def test_keys_with_one_tag_share_a_partition(tag, before, after, partitions):
    tag = tag.replace(b"}", b"").replace(b"{", b"") or b"t"
    before = before.replace(b"{", b"")
    assert partition_for(before + b"{" + tag + b"}" + after, partitions) == partition_for(tag, partitions)


def test_keys_spread_over_partitions():
    counts = [0] * 16
    for i in range(16000):
        counts[partition_for(f"key:{i}".encode(), 16)] += 1
    assert min(counts) > 800 and max(counts) < 1200
