"""Latency of KV.RANGE as a function of the partition count: a 100-key range, and a full scan.

For each partition count, starts a local cluster (3 nodes, replication factor 3), loads ``--keys`` keys
with pipelined MSET, then times ``--ranges`` random 100-key ranges (one KV.RANGE each) and one full scan
paged with ``--page`` keys per KV.RANGE. Prints a table.

    .venv/bin/python bench/range_latency.py [--keys 1000000] [--partitions 16,64,256]

The default million keys takes a while to load on a small machine (minutes per partition count); use
``--keys 100000`` for a quick look.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from kvcommon.testing.cluster_checks import proxy_client
from kvmeta.local import LocalCluster

MSET_PAIRS = 1000


def key(i: int) -> bytes:
    return b"key:%09d" % i


def load(client, count: int, value_size: int, progress: Progress, label: str) -> None:
    task = progress.add_task(f"{label}: loading", total=count)
    value = b"v" * value_size
    pipe = client.pipeline(transaction=False)
    for first in range(0, count, MSET_PAIRS):
        pipe.mset({key(i): value for i in range(first, min(first + MSET_PAIRS, count))})
        if len(pipe) == 20:
            pipe.execute()
        progress.advance(task, min(MSET_PAIRS, count - first))
    pipe.execute()
    progress.remove_task(task)


def range_latencies(client, count: int, ranges: int) -> list[float]:
    rng = random.Random(7)
    samples = []
    for _ in range(ranges):
        start = key(rng.randrange(max(1, count - 100)))
        started = time.perf_counter()
        _, items = client.execute_command("KV.RANGE", start, b"", "LIMIT", 100)
        samples.append((time.perf_counter() - started) * 1000)
        assert len(items) == 200, f"a 100-key range returned {len(items) // 2} keys"
    return samples


def full_scan(client, count: int, page: int) -> tuple[float, int]:
    started = time.perf_counter()
    seen, pages, cursor = 0, 0, None
    while True:
        extra = ("CURSOR", cursor) if cursor else ()
        cursor, items = client.execute_command("KV.RANGE", b"", b"", "LIMIT", page, *extra)
        seen += len(items) // 2
        pages += 1
        if not cursor:
            break
    assert seen == count, f"the scan returned {seen} keys of {count}"
    return time.perf_counter() - started, pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--partitions", default="16,64,256", help="comma-separated partition counts")
    parser.add_argument("--ranges", type=int, default=200, help="100-key ranges timed per partition count")
    parser.add_argument("--page", type=int, default=10_000, help="keys per page of the full scan")
    parser.add_argument("--value-size", type=int, default=16)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    console = Console()
    rows = []
    with Progress(console=console, transient=True) as progress:
        for partitions in (int(p) for p in args.partitions.split(",")):
            label = f"{partitions} partitions"
            with tempfile.TemporaryDirectory(prefix="kv-range-") as directory:
                cluster = LocalCluster(directory, nodes=3, partitions=partitions, proxy_port=0)
                progress.console.print(f"{label}: starting a local cluster")
                cluster.up()
                try:
                    client = proxy_client(cluster, protocol=2, socket_timeout=120)
                    load(client, args.keys, args.value_size, progress, label)
                    progress.console.print(f"{label}: timing")
                    samples = sorted(range_latencies(client, args.keys, args.ranges))
                    scan_seconds, pages = full_scan(client, args.keys, args.page)
                finally:
                    cluster.down()
            rows.append({
                "partitions": partitions,
                "range100_p50_ms": statistics.median(samples),
                "range100_p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
                "scan_seconds": scan_seconds, "scan_pages": pages,
                "scan_keys_per_second": args.keys / scan_seconds,
            })
    table = Table(title=f"KV.RANGE latency, {args.keys:,} keys, 3 nodes (RF 3)")
    for column in ("partitions", "100-key range p50 (ms)", "p99 (ms)", f"full scan (s, {args.page:,}/page)",
                   "scan keys/s"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(str(row["partitions"]), f"{row['range100_p50_ms']:.2f}", f"{row['range100_p99_ms']:.2f}",
                      f"{row['scan_seconds']:.1f}", f"{row['scan_keys_per_second']:,.0f}")
    console.print(table)
    if args.out:
        with open(args.out, "w") as out:
            json.dump(rows, out, indent=2)


if __name__ == "__main__":
    main()
