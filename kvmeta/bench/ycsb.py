"""A YCSB-style driver over the Redis protocol: core workloads A, B, C, E and F.

Worker processes (a Python client needs more than one core to load a server) each run several
connections from one selector loop, one request in flight per connection: closed-loop clients, as YCSB
runs them. Keys are chosen with YCSB's scrambled zipfian generator (constant 0.99), values are 1 KB, and
latencies go into HDR histograms (microseconds) merged across workers.

Records are ``user`` + a 12-digit number, loaded in order, so a scan from a record's key has a natural
meaning (for workload E). The scan command is configurable: it is the server's own, not Redis's.
"""

from __future__ import annotations

import math
import multiprocessing
import queue
import random
import selectors
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kvcommon.resp import INCOMPLETE, ErrorReply, encode_command
from kvmeta.bench.client import RECV_SIZE, Connection, key_name, value_for

ZIPFIAN_CONSTANT = 0.99
# YCSB's scrambled generator draws from this many items, whose zeta it has precomputed, and hashes the
# draw onto the real key range: the popular keys are spread over the keyspace instead of being 0, 1, 2...
SCRAMBLED_ITEM_COUNT = 10_000_000_000
SCRAMBLED_ZETAN = 26.46902820178302

FNV_OFFSET_BASIS_64 = 0xCBF29CE484222325
FNV_PRIME_64 = 1099511628211
MASK_64 = (1 << 64) - 1

LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS = 1, 60_000_000, 3
ALL = "ALL"
# The scan from a key with no upper bound ('' is an empty argument), at most {count} keys.
DEFAULT_SCAN_COMMAND = "KV.RANGE {key} '' LIMIT {count}"
KEY_PREFIX = "user"
PROGRESS_INTERVAL = 0.1
START_TIMEOUT = 60.0


def fnvhash64(value: int) -> int:
    """FNV-1a over the 8 bytes of ``value``, low byte first, as YCSB's ``Utils.fnvhash64`` (non-negative)."""
    hashed = FNV_OFFSET_BASIS_64
    for _ in range(8):
        hashed ^= value & 0xFF
        hashed = (hashed * FNV_PRIME_64) & MASK_64
        value >>= 8
    # Java returns Math.abs of the signed 64-bit result.
    return (1 << 64) - hashed if hashed >> 63 else hashed


def zeta(items: int, theta: float) -> float:
    return math.fsum(1 / i**theta for i in range(1, items + 1))


class ZipfianGenerator:
    """YCSB's ZipfianGenerator (Gray et al., "Quickly generating billion-record synthetic databases"):
    item 0 is the most popular, item i has weight 1 / (i + 1) ** theta."""

    def __init__(self, items: int, theta: float = ZIPFIAN_CONSTANT, zetan: float | None = None,
                 rng: random.Random | None = None):
        self.items = items
        self.alpha = 1 / (1 - theta)
        self.zetan = zeta(items, theta) if zetan is None else zetan
        self.eta = (1 - (2 / items) ** (1 - theta)) / (1 - zeta(2, theta) / self.zetan)
        self.second_threshold = 1 + 0.5**theta
        self.random = (rng or random.Random()).random

    def next(self) -> int:
        u = self.random()
        uz = u * self.zetan
        if uz < 1:
            return 0
        if uz < self.second_threshold:
            return 1
        return int(self.items * (self.eta * u - self.eta + 1) ** self.alpha)


class ScrambledZipfianGenerator:
    """YCSB's ScrambledZipfianGenerator over ``0 .. items - 1``: zipfian popularity, hashed placement."""

    def __init__(self, items: int, rng: random.Random | None = None):
        self.items = items
        self.zipfian = ZipfianGenerator(SCRAMBLED_ITEM_COUNT, ZIPFIAN_CONSTANT, SCRAMBLED_ZETAN, rng)

    def next(self) -> int:
        return fnvhash64(self.zipfian.next()) % self.items


def scan_args(template: list[str], key: bytes, count: int) -> list[str]:
    """The scan command's arguments: ``template`` (shell-split words) with {key} and {count} filled in."""
    return [word.format(key=key.decode(), count=count) for word in template]


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    mix: tuple[tuple[str, float], ...]


WORKLOADS = {
    w.name: w
    for w in (
        Workload("A", "50% read, 50% update", (("READ", 0.5), ("UPDATE", 0.5))),
        Workload("B", "95% read, 5% update", (("READ", 0.95), ("UPDATE", 0.05))),
        Workload("C", "100% read", (("READ", 1.0),)),
        Workload("E", "95% scan of 1-100 keys, 5% insert", (("SCAN", 0.95), ("INSERT", 0.05))),
        Workload("F", "50% read, 50% read-modify-write (GET, SET)", (("READ", 0.5), ("READ-MODIFY-WRITE", 0.5))),
    )
}


@dataclass(frozen=True)
class RunSpec:
    """One run of a workload against ``port``; it ends after ``seconds`` or ``max_ops`` (0: no limit)."""

    port: int
    workload: str
    records: int
    seconds: float = 10.0
    max_ops: int = 0
    workers: int = 2
    connections: int = 8
    value_size: int = 1024
    scan_command: str = DEFAULT_SCAN_COMMAND
    max_scan_length: int = 100
    seed: int = 0


@dataclass
class WorkloadResult:
    workload: str
    ops: int
    seconds: float
    # Per operation type and ALL: count, p50, p99, p999, mean, max in milliseconds.
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    misses: int = 0
    unavailable: str | None = None

    @property
    def throughput(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "workload": self.workload, "description": WORKLOADS[self.workload].description,
            "available": self.unavailable is None, "unavailable": self.unavailable,
            "ops": self.ops, "seconds": round(self.seconds, 3), "throughput": round(self.throughput, 1),
            "latency_ms": self.latency_ms, "errors": self.errors, "misses": self.misses,
        }


def _hdr_histogram():
    # Imported on first use: kvctl's other commands work without the bench extra installed.
    try:
        from hdrh.histogram import HdrHistogram
    except ImportError:
        raise ImportError("the YCSB driver needs the hdrhistogram package: pip install -e '.[bench]'") from None
    return HdrHistogram


def new_histogram():
    return _hdr_histogram()(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def summarize(histogram) -> dict[str, float]:
    """Count and latency percentiles of a microsecond histogram, in milliseconds."""
    def ms(value: float) -> float:
        return round(value / 1000, 3)

    return {
        "count": histogram.get_total_count(),
        "p50": ms(histogram.get_value_at_percentile(50)),
        "p99": ms(histogram.get_value_at_percentile(99)),
        "p999": ms(histogram.get_value_at_percentile(99.9)),
        "mean": ms(histogram.get_mean_value()),
        "max": ms(histogram.get_max_value()),
    }


def merge(encoded: list[bytes]):
    merged = new_histogram()
    for item in encoded:
        merged.add(_hdr_histogram().decode(item))
    return merged


# -- the driver (parent process)


def run_workload(spec: RunSpec, on_progress: Callable[[float], None] | None = None) -> WorkloadResult:
    """Run ``spec`` in ``spec.workers`` processes.

    ``on_progress(amount)`` follows the run: operations done when it is sized by ``max_ops``, else seconds.
    """
    context = multiprocessing.get_context("spawn")
    counters = context.Array("q", spec.workers, lock=False)
    go = context.Event()
    messages = context.Queue()
    workers = [
        context.Process(target=_worker_main, args=(i, spec, counters, go, messages), daemon=True)
        for i in range(spec.workers)
    ]
    for worker in workers:
        worker.start()
    try:
        _expect(messages, workers, "ready", START_TIMEOUT)
        go.set()
        progress = _Progress(spec, counters, on_progress)
        results = {}
        while len(results) < len(workers):
            try:
                kind, index, payload = messages.get(timeout=PROGRESS_INTERVAL * 2)
            except queue.Empty:
                _check_alive(workers)
            else:
                if kind == "error":
                    raise RuntimeError(f"YCSB worker {index} failed: {payload}")
                results[index] = payload
            progress.update()
        return _combine(spec, list(results.values()))
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
            worker.join(5)


class _Progress:
    """Turns worker counters (or the clock) into increments for ``on_progress``."""

    def __init__(self, spec: RunSpec, counters, on_progress: Callable[[float], None] | None):
        self.spec = spec
        self.counters = counters
        self.on_progress = on_progress
        self.started = time.monotonic()
        self.reported = 0.0

    def update(self) -> None:
        if self.on_progress is None:
            return
        if self.spec.max_ops:
            done = float(sum(self.counters))
        else:
            done = min(time.monotonic() - self.started, self.spec.seconds)
        self.on_progress(done - self.reported)
        self.reported = done


def _expect(messages, workers, kind: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    seen = 0
    while seen < len(workers):
        try:
            got, index, payload = messages.get(timeout=0.5)
        except queue.Empty:
            _check_alive(workers)
            if time.monotonic() > deadline:
                raise RuntimeError("YCSB workers did not start in time") from None
            continue
        if got == "error":
            raise RuntimeError(f"YCSB worker {index} failed: {payload}")
        seen += got == kind


def _check_alive(workers) -> None:
    for index, worker in enumerate(workers):
        if worker.exitcode not in (None, 0):
            raise RuntimeError(f"YCSB worker {index} exited with code {worker.exitcode}")


def _combine(spec: RunSpec, parts: list[dict]) -> WorkloadResult:
    names = sorted({name for part in parts for name in part["histograms"]})
    latency = {name: summarize(merge([p["histograms"][name] for p in parts if name in p["histograms"]]))
               for name in names}
    if names:
        latency[ALL] = summarize(merge([h for p in parts for h in p["histograms"].values()]))
    errors: dict[str, int] = {}
    for part in parts:
        for name, count in part["errors"].items():
            errors[name] = errors.get(name, 0) + count
    return WorkloadResult(
        workload=spec.workload,
        ops=sum(p["ops"] for p in parts),
        seconds=max(p["elapsed"] for p in parts),
        latency_ms=latency,
        errors=errors,
        misses=sum(p["misses"] for p in parts),
        unavailable=next((p["unavailable"] for p in parts if p["unavailable"]), None),
    )


# -- a worker process


def _worker_main(index: int, spec: RunSpec, counters, go, messages) -> None:
    try:
        worker = _Worker(index, spec, counters)
        messages.put(("ready", index, None))
        if not go.wait(START_TIMEOUT):
            return
        messages.put(("done", index, worker.run()))
    except BaseException as exc:  # the parent reports it; a traceback in a child's stderr would be lost
        messages.put(("error", index, f"{type(exc).__name__}: {exc}"))


class _Worker:
    def __init__(self, index: int, spec: RunSpec, counters):
        self.index = index
        self.spec = spec
        self.counters = counters
        rng = random.Random(spec.seed * 1000 + index)
        self.random = rng.random
        self.randint = rng.randint
        self.keys = ScrambledZipfianGenerator(spec.records, rng)
        mix = WORKLOADS[spec.workload].mix
        self.ops = [name for name, _ in mix]
        self.cumulative = [sum(weight for _, weight in mix[: i + 1]) for i in range(len(mix))]
        self.scan_template = shlex.split(spec.scan_command)
        self.inserted = 0
        self.histograms = {name: new_histogram() for name in self.ops}
        self.errors: dict[str, int] = {}
        self.misses = 0
        self.unavailable: str | None = None
        self.connections = [Connection(spec.port) for _ in range(spec.connections)]

    def run(self) -> dict:
        spec = self.spec
        per_worker_limit = -(-spec.max_ops // spec.workers) if spec.max_ops else 0
        selector = selectors.DefaultSelector()
        # Per connection: [operation, commands still to send, start time].
        state: dict[Connection, list] = {}
        started = time.perf_counter()
        deadline = started + spec.seconds
        next_report = started + PROGRESS_INTERVAL
        done = 0
        for conn in self.connections:
            selector.register(conn.sock, selectors.EVENT_READ, conn)
            state[conn] = self._begin(conn)
        while state:
            for selected, _ in selector.select(timeout=PROGRESS_INTERVAL):
                conn = selected.data
                data = conn.sock.recv(RECV_SIZE)
                if not data:
                    raise ConnectionError("the server closed the connection")
                conn.parser.feed(data)
                reply = conn.parser.next_reply()
                if reply is INCOMPLETE:
                    continue
                op, remaining, t0 = state[conn]
                if isinstance(reply, ErrorReply):
                    remaining = []
                    if self._error(op, str(reply)):
                        deadline = 0.0
                elif reply is None and op in ("READ", "READ-MODIFY-WRITE"):
                    self.misses += 1
                if remaining:
                    conn.sock.sendall(remaining[0])
                    state[conn] = [op, remaining[1:], t0]
                    continue
                now = time.perf_counter()
                if not isinstance(reply, ErrorReply):
                    self.histograms[op].record_value(max(LOWEST_US, int((now - t0) * 1_000_000)))
                    done += 1
                if now < deadline and not (per_worker_limit and done >= per_worker_limit):
                    state[conn] = self._begin(conn)
                else:
                    selector.unregister(conn.sock)
                    del state[conn]
            now = time.perf_counter()
            if now >= next_report:
                self.counters[self.index] = done
                next_report = now + PROGRESS_INTERVAL
        elapsed = time.perf_counter() - started
        self.counters[self.index] = done
        for conn in self.connections:
            conn.close()
        selector.close()
        return {
            "ops": done, "elapsed": elapsed, "misses": self.misses, "errors": self.errors,
            "unavailable": self.unavailable,
            "histograms": {name: h.encode() for name, h in self.histograms.items() if h.get_total_count()},
        }

    def _begin(self, conn: Connection) -> list:
        """Choose the next operation, send its first command and return its state."""
        u = self.random()
        op = next((name for name, edge in zip(self.ops, self.cumulative) if u < edge), self.ops[-1])
        commands = self._commands(op)
        t0 = time.perf_counter()
        conn.sock.sendall(commands[0])
        return [op, commands[1:], t0]

    def _commands(self, op: str) -> list[bytes]:
        if op == "INSERT":
            # Each worker inserts its own numbers past the loaded records: no two workers collide.
            number = self.spec.records + self.index + self.spec.workers * self.inserted
            self.inserted += 1
            return [encode_command((b"SET", key_name(KEY_PREFIX, number), self._value()))]
        key = key_name(KEY_PREFIX, self.keys.next())
        if op == "READ":
            return [encode_command((b"GET", key))]
        if op == "UPDATE":
            return [encode_command((b"SET", key, self._value()))]
        if op == "READ-MODIFY-WRITE":
            return [encode_command((b"GET", key)), encode_command((b"SET", key, self._value()))]
        return [encode_command(scan_args(self.scan_template, key, self.randint(1, self.spec.max_scan_length)))]

    def _value(self) -> bytes:
        return value_for(self.randint(0, 1 << 30), self.spec.value_size)

    def _error(self, op: str, message: str) -> bool:
        """Count an error reply; True when it means the server lacks the command (stop the run)."""
        if "unknown command" in message.lower():
            self.unavailable = message
            return True
        self.errors[op] = self.errors.get(op, 0) + 1
        return False
