"""redis-benchmark runs and the parsing of what it prints.

A run is sized in requests, not seconds, so each one starts with a short calibration whose rate sets the
request count of the measured run: both servers are then measured for about the same time, however fast
each is. The calibration also warms caches and connections.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from kvmeta.bench.client import HOST

CALIBRATION_SECONDS = 1.0
MIN_REQUESTS = 1000
MAX_REQUESTS = 50_000_000
ERROR_PREFIX = "Error from server:"

# The -q line: "GET: 91996.32 requests per second, p50=0.279 msec"
_QUIET_LINE = re.compile(r"^\s*([A-Za-z_ ()\-]+?):\s*([\d.]+) requests per second(?:, p50=([\d.]+) msec)?")


class LoadError(Exception):
    pass


@dataclass(frozen=True)
class BenchmarkRun:
    """What redis-benchmark reports for one test; latencies in milliseconds, None where it prints none."""

    test: str
    rps: float
    avg_ms: float | None = None
    min_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None


def parse_output(text: str) -> list[BenchmarkRun]:
    """Parse ``--csv`` output (Redis 6.2 and later print latencies too), or ``-q`` output.

    redis-benchmark 7 stops at the first error reply and prints it ("Error from server: ..."), so a run
    with an error has no result row.
    """
    text = "\n".join(line for line in text.splitlines() if not line.startswith(ERROR_PREFIX))
    return _parse_csv(text) or _parse_quiet(text)


def _parse_csv(text: str) -> list[BenchmarkRun]:
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    if not rows:
        return []
    header = [h.strip().lower() for h in rows[0]]
    if header[:2] != ["test", "rps"]:
        # Redis before 6.2 prints no header: "test","rps" pairs only.
        header = ["test", "rps"]
    else:
        rows = rows[1:]
    runs = []
    for row in rows:
        if len(row) < 2:
            continue
        values = dict(zip(header, row))
        try:
            runs.append(BenchmarkRun(
                test=values["test"],
                rps=float(values["rps"]),
                **{f: _number(values.get(f"{f[:-3]}_latency_ms")) for f in
                   ("avg_ms", "min_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms")},
            ))
        except ValueError:
            continue
    return runs


def _parse_quiet(text: str) -> list[BenchmarkRun]:
    runs = []
    # -q rewrites its live progress with carriage returns; only the final text of each line counts.
    for line in text.replace("\r", "\n").splitlines():
        match = _QUIET_LINE.match(line)
        if match:
            runs.append(BenchmarkRun(match.group(1).strip(), float(match.group(2)), p50_ms=_number(match.group(3))))
    return runs


def _number(text: str | None) -> float | None:
    return float(text) if text not in (None, "") else None


def redis_benchmark_argv(
    port: int, test: str, requests: int, clients: int, pipeline: int, keyspace: int, value_size: int
) -> list[str]:
    return [
        "redis-benchmark", "-h", HOST, "-p", str(port), "-t", test.lower(), "-n", str(requests),
        "-c", str(clients), "-P", str(pipeline), "-r", str(keyspace), "-d", str(value_size), "--csv",
    ]


def run_redis_benchmark(argv: list[str], on_tick: Callable[[float], None] | None = None) -> BenchmarkRun:
    """Run redis-benchmark once (one test) and return its result; ``on_tick(seconds)`` while it runs."""
    if shutil.which(argv[0]) is None:
        raise LoadError(f"{argv[0]} is not installed (Debian package redis-tools)")
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = time.monotonic()
    try:
        while True:
            try:
                stdout, stderr = process.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                now = time.monotonic()
                if on_tick is not None:
                    on_tick(now - last)
                last = now
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    runs = parse_output(stdout)
    if process.returncode != 0 or not runs:
        detail = f"{stdout}\n{stderr}".strip()[-500:]
        raise LoadError(f"redis-benchmark failed (exit {process.returncode}): {detail}")
    return runs[0]


@dataclass
class Load:
    """One redis-benchmark load: a test at a client count and pipeline depth over a keyspace."""

    test: str
    pipeline: int
    clients: int = 50
    keyspace: int = 100_000
    value_size: int = 1024

    @property
    def label(self) -> str:
        return f"{self.test} P{self.pipeline}"

    def argv(self, port: int, requests: int) -> list[str]:
        return redis_benchmark_argv(port, self.test, requests, self.clients, self.pipeline, self.keyspace,
                                    self.value_size)

    def calibrate(self, port: int) -> float:
        """Requests per second of a short run, the size of the measured run's first guess."""
        requests = max(MIN_REQUESTS, self.clients * self.pipeline * 20)
        run = run_redis_benchmark(self.argv(port, requests))
        rate = run.rps
        # A calibration shorter than a second mostly measures start-up: scale it up once.
        if requests / rate < CALIBRATION_SECONDS / 4:
            requests = min(MAX_REQUESTS, int(rate * CALIBRATION_SECONDS))
            rate = run_redis_benchmark(self.argv(port, requests)).rps
        return rate

    def requests_for(self, rate: float, seconds: float) -> int:
        requests = int(rate * seconds)
        # Whole rounds of pipelines per client, so no client ends on a partial one.
        round_size = self.clients * self.pipeline
        return min(MAX_REQUESTS, max(MIN_REQUESTS, requests // round_size * round_size))
