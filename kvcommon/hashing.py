"""Which partition a key belongs to.

The mapping is part of the on-disk and on-the-wire contract: every proxy and node must agree on it, and
changing it would strand every stored key. It is ``xxh3_64(key) mod P`` with P fixed at cluster creation.
"""

import xxhash


def partition_for(key: bytes, partition_count: int) -> int:
    return xxhash.xxh3_64_intdigest(key) % partition_count
