"""Which partition a key belongs to.

The mapping is part of the on-disk and on-the-wire contract: every proxy and node must agree on it, and
changing it would strand every stored key. It is ``xxh3_64(tag) mod P`` with P fixed at cluster creation,
where the tag is the whole key unless the key holds a Redis Cluster hash tag: the bytes between the first
``{`` and the next ``}``, when there are any. Keys with one tag share a partition, so a multi-key command
on them (MSETNX, RENAME, ...) runs atomically on one primary, as in Redis Cluster.
"""

import xxhash

_hash = xxhash.xxh3_64_intdigest


def hash_tag(key: bytes) -> bytes:
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1:end]
    return key


def partition_for(key: bytes, partition_count: int) -> int:
    return _hash(hash_tag(key)) % partition_count
