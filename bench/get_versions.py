"""Does keeping a version history slow GET? The node's GET path timed over two LevelDB stores.

Both stores hold the same keys with the same newest values under their ``d`` keys, written as the node
writes them (data, log entry and meta per write, several writes per key). One also holds the history
(``v`` keys, schema 2); the other is laid out as schema 1 was, without it. GET reads the ``d`` key in both,
so any difference comes from the history's extra data in LevelDB (files, cache, bloom filters).

    .venv/bin/python bench/get_versions.py --keys 500000 --versions 3
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time

import click
from twisted.internet import task

from kvmeta.schema import ClusterConfig, PartitionState
from kvnode.service import NodeService
from kvnode.storage import LevelDBEngine, LogEntry, PartitionMeta, PartitionStore, WriteBatch, encode_value, keys
from kvnode.storage.records import encode_entry, encode_meta

BATCH = 1000


def fill(engine, count: int, versions: int, value_size: int, history: bool) -> None:
    store = PartitionStore(engine)
    meta = PartitionMeta().begin_generation(1)
    value = b"x" * value_size
    version = 1 << 40
    for _ in range(versions):
        for first in range(0, count, BATCH):
            batch = WriteBatch()
            for i in range(first, min(first + BATCH, count)):
                version += 1
                meta = meta.advance(meta.seq + 1)
                entry = LogEntry(1, meta.seq, version, ((b"key:%09d" % i, encode_value(version, value)),))
                if history:
                    store.apply(batch, 0, entry, meta)
                else:  # schema 1's apply: data, log entry, meta
                    batch.put(keys.data_key(0, entry.ops[0][0]), entry.ops[0][1])
                    batch.put(keys.log_key(0, entry.seq), encode_entry(entry))
                    batch.put(keys.meta_key(0), encode_meta(meta))
            engine.write(batch)


def node(engine) -> NodeService:
    service = NodeService(task.Clock(), engine, "n1")
    service.on_config(ClusterConfig(1, 1, write_level="1"))
    service.on_session(True)
    service.on_partition_state(PartitionState(0, 1, "n1", ("n1",), ("n1",)))
    return service


def time_gets(service: NodeService, names: list[bytes]) -> list[float]:
    execute = service.execute
    clock = time.perf_counter_ns
    samples = []
    for name in names:
        started = clock()
        execute([b"GET", name], 0, 1)
        samples.append((clock() - started) / 1000)
    return samples


@click.command()
@click.option("--keys", "count", default=500_000, show_default=True)
@click.option("--versions", default=3, show_default=True, help="writes per key")
@click.option("--value-size", default=100, show_default=True)
@click.option("--reads", default=200_000, show_default=True)
@click.option("--rounds", default=3, show_default=True, help="timed rounds per store, alternating")
def main(count, versions, value_size, reads, rounds):
    with tempfile.TemporaryDirectory() as tmp:
        services = {}
        for layout in ("without history", "with history"):
            engine = LevelDBEngine(f"{tmp}/{layout.replace(' ', '-')}")
            started = time.monotonic()
            fill(engine, count, versions, value_size, history=layout == "with history")
            size = engine.approximate_size(b"", b"\xff") / 2**20
            click.echo(f"{layout}: loaded in {time.monotonic() - started:.0f}s, about {size:.0f} MiB on disk")
            services[layout] = node(engine)
        rng = random.Random(1)
        hits = [b"key:%09d" % rng.randrange(count) for _ in range(reads)]
        misses = [b"nokey:%09d" % rng.randrange(count) for _ in range(reads)]
        results: dict[tuple[str, str], list[float]] = {}
        for _ in range(rounds):
            for layout, service in services.items():
                for kind, names in (("hit", hits), ("miss", misses)):
                    results.setdefault((layout, kind), []).extend(time_gets(service, names))
        click.echo(f"GET through NodeService.execute, {reads} reads x {rounds} rounds each (microseconds):")
        click.echo(f"{'store':<18}{'key':<6}{'mean':>8}{'p50':>8}{'p99':>8}")
        for (layout, kind), samples in results.items():
            samples.sort()
            click.echo(f"{layout:<18}{kind:<6}{statistics.fmean(samples):8.2f}{samples[len(samples) // 2]:8.2f}"
                       f"{samples[int(len(samples) * 0.99)]:8.2f}")


if __name__ == "__main__":
    main()
