"""Steady write load for fault tests: record every acknowledged write, then check none was lost."""

from __future__ import annotations

import threading
import time

import redis

from kvcommon.hashing import partition_for


def keys_in_partition(partition: int, partition_count: int, count: int, prefix: str = "key") -> list[str]:
    keys, i = [], 0
    while len(keys) < count:
        key = f"{prefix}:{i}"
        if partition_for(key.encode(), partition_count) == partition:
            keys.append(key)
        i += 1
    return keys


class Writer(threading.Thread):
    """Overwrites its keys in turn with increasing values; remembers the last acknowledged value of each."""

    def __init__(self, client: redis.Redis, keys: list[str], name: str):
        super().__init__(name=name, daemon=True)
        self.client = client
        self.keys = keys
        self.acknowledged: dict[str, str] = {}
        self.errors: list[str] = []
        self.successes: list[float] = []  # monotonic times of acknowledged writes
        self._halt = threading.Event()

    def run(self) -> None:
        i = 0
        while not self._halt.is_set():
            key = self.keys[i % len(self.keys)]
            value = f"{self.name}-{i}"
            try:
                self.client.set(key, value)
            except redis.RedisError as err:
                # Unknown outcome: the write may or may not have been applied. Drop what we knew of the key,
                # since its value is now either the old or this one.
                self.acknowledged.pop(key, None)
                self.errors.append(str(err))
                time.sleep(0.05)
            else:
                self.acknowledged[key] = value
                self.successes.append(time.monotonic())
            i += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)

    def first_success_after(self, moment: float) -> float | None:
        later = [t for t in self.successes if t > moment]
        return later[0] - moment if later else None


def lost_writes(client: redis.Redis, writers: list[Writer]) -> list[str]:
    """Acknowledged writes whose value is not what a read returns now."""
    lost = []
    for writer in writers:
        keys = list(writer.acknowledged)
        for key, value in zip(keys, client.mget(keys), strict=True):
            if value is None or value.decode() != writer.acknowledged[key]:
                lost.append(f"{key}: acknowledged {writer.acknowledged[key]!r}, read {value!r}")
    return lost
