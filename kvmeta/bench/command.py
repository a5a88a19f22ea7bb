"""``kvctl bench``: our cluster and a Redis primary with two replicas, under the same loads, in one run.

Phases (``--only`` picks some):

- ``redis-benchmark``: GET and then SET at 50 clients, pipelines of 1 and 16, on a preloaded keyspace
  (compacted, on our nodes, as an operator does after a bulk load); our SETs at ``--write-level`` and
  again at quorum. Each load runs against ours, then against Redis, so a
  change in what else the machine does hits both alike.
- ``cpu``: CPU seconds per 1 000 operations of each process. Measured during every redis-benchmark
  load; alone, it runs GET and SET with pipelines of 1 only.
- ``ycsb``: workloads A, B, C, E (ours only) and F of the YCSB-style driver, after a bulk load (and
  ``kvctl compact``, on ours).
- ``datasize``: ours alone, on a fresh cluster: load a tenth of ``--keys``, then all of them, and measure
  GET and each node's memory after each step.

Everything started is stopped on the way out, on an error and on ^C too.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import click
from rich.console import Console

from kvcommon.errors import KVError
from kvmeta.bench import ours, report
from kvmeta.bench.client import BenchClientError, load_keys
from kvmeta.bench.loads import Load, LoadError, run_redis_benchmark
from kvmeta.bench.redis_reference import RedisReference, RedisReferenceError
from kvmeta.bench.resources import CpuMeter, Watched, cpu_seconds, per_thousand, resident_split
from kvmeta.bench.ycsb import DEFAULT_SCAN_COMMAND, KEY_PREFIX, WORKLOADS, RunSpec, new_histogram, run_workload
from kvmeta.compact import compact_with_progress
from kvmeta.progress import ProgressReporter
from kvmeta.schema import WRITE_LEVELS

PHASES = ("redis-benchmark", "cpu", "ycsb", "datasize")
# Failures whose message says it all; anything else is reported with its type.
EXPECTED_ERRORS = (click.ClickException, LoadError, RedisReferenceError, BenchClientError, KVError, OSError)
CLIENTS = 50
# GET first, on the store as a bulk load and `kvctl compact` leave it. After a load of overwrites LevelDB
# moves every file a read has to look past down a level, one after another, as the reads go (its seek
# compactions): GETs measured right after the SET loads measured those compactions, about twice the CPU of
# the GETs themselves (the finding in kvnode/storage/full_compaction.py). The SET loads' own compactions
# are in their CPU, as the load waits for the nodes to be quiet again.
LOADS = (("GET", 1), ("GET", 16), ("SET", 1), ("SET", 16))
CPU_LOADS = (("GET", 1), ("SET", 1))
MB = 1024 * 1024
LOG_WIDTH = 120
# After a load LevelDB compacts for a while; a load measured meanwhile would measure the compaction too.
SETTLE_CPU = 0.3
SETTLE_TIMEOUT = 60.0
# After a data-size load: LevelDB compacts gigabytes for minutes, which a GET load must not compete with.
DATASIZE_SETTLE_TIMEOUT = 900.0
# GET loads per data-size step: the step reports their median, as a single 10 s run on a shared machine
# moved by a third from one run to the next.
DATASIZE_RUNS = 3
YCSB_OPS_TIME_LIMIT = 3600.0


@dataclass(frozen=True)
class Settings:
    seconds: float
    keyspace: int
    records: int
    ycsb_ops: int
    keys: int
    value_size: int
    datasize_value_size: int
    workers: int
    connections: int
    write_level: str
    scan_command: str
    overhead_mb: int

    @classmethod
    def choose(cls, quick: bool, keys: int | None, seconds: float | None, records: int | None, **rest) -> Settings:
        return cls(
            seconds=seconds or (2.0 if quick else 10.0),
            keyspace=10_000 if quick else 100_000,
            records=records or (10_000 if quick else 100_000),
            keys=keys or (20_000 if quick else 1_000_000),
            value_size=1024,
            datasize_value_size=100,
            **rest,
        )


@click.command("bench")
@click.option("--quick", is_flag=True, help="Small sizes and 2-second loads: a smoke run of about a minute.")
@click.option("--keys", type=click.IntRange(100), default=None,
              help="Keys of the data-size phase, measured at a tenth of it and at all of it.  [default: 1000000, "
                   "20000 with --quick; 10000000 takes half an hour or more and some 5 GB of disk]")
@click.option("--write-level", type=click.Choice(WRITE_LEVELS), default="1", show_default=True,
              help="Write level of our SET loads and YCSB runs (SET is measured at quorum too).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default="bench-results.json",
              show_default=True, help="Where to write the results as JSON.")
@click.option("--skip-redis", is_flag=True, help="Measure only our cluster.")
@click.option("--only", "phases", type=click.Choice(PHASES), multiple=True,
              help="Run only this phase (repeatable).  [default: all]")
@click.option("--seconds", type=click.FloatRange(0.5),
              help="Length of each measured load.  [default: 10, 2 with --quick]")
@click.option("--records", type=click.IntRange(100), help="YCSB records.  [default: 100000, 10000 with --quick]")
@click.option("--ycsb-ops", "ycsb_ops", type=click.IntRange(1),
              help="Run each YCSB workload for this many operations instead of --seconds.")
@click.option("--ycsb-workers", "workers", type=click.IntRange(1), default=2, show_default=True,
              help="YCSB worker processes.")
@click.option("--ycsb-connections", "connections", type=click.IntRange(1), default=8, show_default=True,
              help="Connections per YCSB worker, one request in flight on each.")
@click.option("--scan-command", default=DEFAULT_SCAN_COMMAND, show_default=True,
              help="The range scan of workload E, with {key} (first key) and {count} (how many); words as a "
                   "shell splits them, '' for an empty one.")
@click.option("--memory-overhead-mb", "overhead_mb", type=click.IntRange(0), default=128, show_default=True,
              help="Memory a node may use beyond its LevelDB cache (data-size check).")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the clusters and Redis keep data and logs.  [default: a temporary directory, removed "
                   "after a successful run]")
def bench(quick, keys, write_level, out, skip_redis, phases, seconds, records, ycsb_ops, workers, connections,
          scan_command, overhead_mb, work_dir):
    """Benchmark our cluster side by side with Redis (a primary, two replicas, AOF everysec).

    Prints tables (throughput, latency, CPU per operation, memory, the targets) and writes them as JSON.
    """
    settings = Settings.choose(quick, keys, seconds, records, ycsb_ops=ycsb_ops or 0, workers=workers,
                               connections=connections,
                               write_level=write_level, scan_command=scan_command, overhead_mb=overhead_mb)
    if "ycsb" in (phases or PHASES):
        try:
            new_histogram()
        except ImportError as exc:
            raise click.ClickException(str(exc)) from None
    # Logs (not a terminal) get wide tables rather than rich's default of 80 columns.
    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    console = Console(highlight=False, width=LOG_WIDTH if wide else None)
    directory = work_dir or Path(tempfile.mkdtemp(prefix="kvbench-"))
    run = BenchRun(settings, set(phases or PHASES), not skip_redis, directory, ProgressReporter(console))
    # SIGTERM unwinds through the cleanup as ^C does.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        results = run.run()
    except KeyboardInterrupt:
        raise click.ClickException(
            f"interrupted; everything started was stopped; data and logs are in {directory}") from None
    except Exception as exc:
        what = str(exc) if isinstance(exc, EXPECTED_ERRORS) else f"{type(exc).__name__}: {exc}"
        raise click.ClickException(f"{what}\neverything started was stopped; data and logs are in {directory}") from exc
    # Taken before anything started, the load average tells whether other work shared the machine.
    before = results["meta"]["load_average_at_start"]
    if before > (os.cpu_count() or 1) / 2:
        results["meta"]["notes"].append(
            f"Other work was running when the benchmark started (load average {before} on {os.cpu_count()} "
            "CPUs): absolute figures suffer; the ratios, measured load by load in turn, suffer less.")
    results["targets"] = report.check_targets(results)
    report.render(results, console)
    report.write_json(results, out)
    console.print(f"results written to {out}")
    if work_dir is None:
        shutil.rmtree(directory, ignore_errors=True)


class BenchRun:
    def __init__(self, settings: Settings, phases: set[str], with_redis: bool, directory: Path,
                 progress: ProgressReporter):
        self.settings = settings
        self.phases = phases
        self.with_redis = with_redis
        self.dir = directory
        self.progress = progress
        self.results: dict = {"meta": self._meta(), "redis_benchmark": [], "ycsb": [], "datasize": None}

    def run(self) -> dict:
        if self.phases & {"redis-benchmark", "cpu", "ycsb"}:
            with contextlib.ExitStack() as stack:
                redis = self._start_redis(stack) if self.with_redis else None
                cluster = self._start_cluster(stack, self.dir / "cluster")
                targets = [("ours", cluster.proxy_port, ours.watched(cluster))]
                if redis is not None:
                    targets.append(("redis", redis.port, redis.watched()))
                roles = ours.roles(cluster) | {w.name: w.role for w in (redis.watched() if redis else [])}
                self.results["meta"]["roles"] = roles
                if self.phases & {"redis-benchmark", "cpu"}:
                    self._redis_benchmark(cluster, redis, targets)
                if "ycsb" in self.phases:
                    self._ycsb(cluster, redis, targets)
        if "datasize" in self.phases:
            with contextlib.ExitStack() as stack:
                self._datasize(self._start_cluster(stack, self.dir / "datasize"))
        return self.results

    # -- starting and stopping

    def _start_redis(self, stack: contextlib.ExitStack) -> RedisReference:
        self.progress.say("starting Redis: a primary and two replicas, appendonly yes, appendfsync everysec")
        redis = RedisReference(self.dir / "redis")
        stack.callback(_uninterrupted, redis.stop)
        return redis.start()

    def _start_cluster(self, stack: contextlib.ExitStack, directory: Path):
        s = self.settings
        self.progress.say(f"starting our cluster: {ours.NODES} nodes, {ours.PARTITIONS} partitions, replication "
                          f"factor {ours.REPLICATION_FACTOR}, write level {s.write_level}")
        cluster = ours.start_cluster(directory, s.write_level)
        stack.callback(_uninterrupted, cluster.down)
        return cluster

    # -- phases

    def _redis_benchmark(self, cluster, redis, targets) -> None:
        s = self.settings
        for name, port, _ in targets:
            self._load(name, port, s.keyspace, s.value_size, "key:")
        self._compact(cluster)
        if redis is not None:
            redis.wait_in_sync()
        loads = LOADS if "redis-benchmark" in self.phases else CPU_LOADS
        for test, pipeline in loads:
            load = Load(test, pipeline, CLIENTS, s.keyspace, s.value_size)
            for name, port, processes in targets:
                level = s.write_level if name == "ours" and test == "SET" else None
                self._record_benchmark(name, port, processes, load, level)
        if s.write_level != "quorum":
            # The cluster default, for comparison with the level the SET targets are measured at.
            ours.set_write_level(cluster, "quorum")
            for test, pipeline in loads:
                if test == "SET":
                    load = Load(test, pipeline, CLIENTS, s.keyspace, s.value_size)
                    self._record_benchmark("ours", cluster.proxy_port, targets[0][2], load, "quorum")
            ours.set_write_level(cluster, s.write_level)

    def _record_benchmark(self, target: str, port: int, processes: list[Watched], load: Load,
                          write_level: str | None) -> None:
        label = f"{target}: {load.label}" + (f" w={write_level}" if write_level else "")
        rate = load.calibrate(port)
        requests = load.requests_for(rate, self.settings.seconds)
        meter = self._start_meter(processes)
        with self.progress.task(label, requests / rate, " s") as advance:
            run = run_redis_benchmark(load.argv(port, requests), on_tick=advance)
        cpu = self._stop_meter(meter)
        row = {
            "target": target, "test": load.test, "pipeline": load.pipeline, "clients": load.clients,
            "write_level": write_level, "keyspace": load.keyspace, "value_size": load.value_size,
            "requests": requests, **{k: v for k, v in asdict(run).items() if k != "test"},
            "cpu_seconds": {k: round(v, 3) for k, v in cpu.items()},
            "cpu_per_1000_ops": {k: round(v, 5) for k, v in per_thousand(cpu, requests).items()},
        }
        self.results["redis_benchmark"].append(row)
        self.progress.say(f"  {label}: {run.rps:,.0f} ops/s, p50 {run.p50_ms} ms, p99 {run.p99_ms} ms")

    def _ycsb(self, cluster, redis, targets) -> None:
        s = self.settings
        for name, port, _ in targets:
            self._load(name, port, s.records, s.value_size, KEY_PREFIX)
        self._compact(cluster)
        if redis is not None:
            redis.wait_in_sync()
        for workload in WORKLOADS:
            for name, port, processes in targets:
                if workload == "E" and name == "redis":
                    continue  # Redis has no range scan over a keyspace
                # Sized by operations, a run still stops after an hour, whatever the rate.
                seconds = YCSB_OPS_TIME_LIMIT if s.ycsb_ops else s.seconds
                spec = RunSpec(port, workload, s.records, seconds=seconds, max_ops=s.ycsb_ops, workers=s.workers,
                               connections=s.connections, value_size=s.value_size, scan_command=s.scan_command)
                meter = self._start_meter(processes)
                total, unit = (s.ycsb_ops, " ops") if s.ycsb_ops else (s.seconds, " s")
                with self.progress.task(f"{name}: YCSB {workload}", total, unit) as advance:
                    result = run_workload(spec, on_progress=advance)
                cpu = self._stop_meter(meter)
                row = {"target": name, **result.to_dict(), "write_level": s.write_level if name == "ours" else None,
                       "cpu_per_1000_ops": {k: round(v, 5) for k, v in per_thousand(cpu, result.ops).items()}}
                self.results["ycsb"].append(row)
                if result.unavailable:
                    self.progress.say(f"  {name}: YCSB {workload}: not available ({result.unavailable})")
                else:
                    every = result.latency_ms.get("ALL", {})
                    self.progress.say(f"  {name}: YCSB {workload}: {result.throughput:,.0f} ops/s, "
                                      f"p99 {every.get('p99')} ms")

    def _datasize(self, cluster) -> None:
        s = self.settings
        nodes = [p for p in cluster.processes if p.role == "node"]
        cache_mb = max(ours.node_cache_mb(p) for p in nodes)
        datasize = {"value_size": s.datasize_value_size, "clients": CLIENTS, "cache_mb": cache_mb,
                    "overhead_mb": s.overhead_mb, "steps": []}
        self.results["datasize"] = datasize
        loaded = 0
        for step in sorted({max(1, s.keys // 10), s.keys}):
            started = time.monotonic()
            retried = self._load("ours", cluster.proxy_port, step, s.datasize_value_size, "key:", start=loaded)
            load_seconds = time.monotonic() - started
            loaded = step
            self.progress.say(f"ours: waiting for the nodes' compactions after {step:,} keys ...")
            waited = time.monotonic()
            settled = self._settle([p.pid for p in nodes], DATASIZE_SETTLE_TIMEOUT)
            self.progress.say(f"  {'quiet' if settled else 'still busy'} after {time.monotonic() - waited:.0f} s")
            compact_seconds = self._compact(cluster)
            load = Load("GET", 1, CLIENTS, step, s.datasize_value_size)
            rate = load.calibrate(cluster.proxy_port)
            requests = load.requests_for(rate, s.seconds)
            runs = []
            for number in range(1, DATASIZE_RUNS + 1):
                with self.progress.task(f"ours: GET P1 over {step:,} keys, run {number} of {DATASIZE_RUNS}",
                                        requests / rate, " s") as advance:
                    runs.append(run_redis_benchmark(load.argv(cluster.proxy_port, requests), on_tick=advance))
            resident = {p.id: resident_split(p.pid) for p in nodes}
            datasize["steps"].append({
                "keys": step, "load_seconds": round(load_seconds, 1), "load_retries": retried,
                "compact_seconds": compact_seconds, "rps": _median([r.rps for r in runs]),
                "p50_ms": _median([r.p50_ms for r in runs]), "p99_ms": _median([r.p99_ms for r in runs]),
                "runs": [{"rps": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms} for r in runs],
                "own_mb": {p.id: round(resident[p.id][0] / MB, 1) for p in nodes},
                "mapped_mb": {p.id: round(resident[p.id][1] / MB, 1) for p in nodes},
                "disk_mb": {p.id: round(ours.disk_bytes(p.data_dir) / MB, 1) for p in nodes},
            })
            self.progress.say(f"  ours: GET P1 over {step:,} keys: " + "; ".join(
                f"{r.rps:,.0f} ops/s, p99 {r.p99_ms} ms" for r in runs))

    # -- helpers

    def _compact(self, cluster) -> dict[str, float]:
        """What an operator does after a bulk load (kvctl compact): without it a GET load would measure LevelDB
        reorganizing the freshly loaded levels, file by file, as the reads go (see
        kvnode/storage/full_compaction.py). Returns each node's seconds."""
        return {p.id: round(compact_with_progress(self.progress, f"ours: {p.id}", p.host, p.port), 1)
                for p in cluster.processes if p.role == "node"}

    def _load(self, target: str, port: int, count: int, value_size: int, prefix: str, start: int = 0) -> int:
        """Load the keys; returns how many MSETs had to be sent again (see load_keys)."""
        # Bigger values, smaller batches: keep each MSET about a megabyte.
        batch = max(10, min(1000, MB // max(1, value_size)))
        what = f"{target}: loading {count - start:,} keys of {value_size} B"
        retries: list[str] = []
        with self.progress.task(what, count - start, " keys") as advance:
            load_keys(port, start, count, value_size, prefix=prefix, batch=batch, on_progress=advance,
                      on_retry=retries.append)
        if retries:
            self.progress.say(f"  {target}: {len(retries)} MSETs sent again after a retryable error, the first: "
                              f"{retries[0]}")
        return len(retries)

    def _start_meter(self, processes: list[Watched]) -> CpuMeter:
        """Measure from a quiet start: what the last load left to do (compaction, an AOF rewrite) is not
        this load's."""
        self._settle([p.pid for p in processes])
        meter = CpuMeter(processes)
        meter.start()
        return meter

    def _stop_meter(self, meter: CpuMeter) -> dict[str, float]:
        """The load's CPU, including the background work it leaves behind (waited for, up to a minute)."""
        self._settle([p.pid for p in meter.processes])
        return meter.stop()

    def _settle(self, pids: list[int], timeout: float = SETTLE_TIMEOUT) -> bool:
        """Wait (up to ``timeout``) until the nodes' background work after a load has calmed down; False if it
        had not by then."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = sum(cpu_seconds(pid) for pid in pids)
            time.sleep(1.0)
            if sum(cpu_seconds(pid) for pid in pids) - before < SETTLE_CPU:
                return True
        return False

    def _meta(self) -> dict:
        return {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": platform.node(), "cpus": os.cpu_count(), "cpu_model": _cpu_model(),
            "python": platform.python_version(), "redis_server": _redis_version(),
            "settings": asdict(self.settings), "phases": sorted(self.phases), "redis": self.with_redis,
            "load_average_at_start": _load_average(),
            "notes": [
                f"The load generators (redis-benchmark, the YCSB workers) share the machine's {os.cpu_count()} "
                "CPUs with the servers.",
                "YCSB runs are closed-loop Python clients: against Redis they measure the client as much as "
                "the server.",
                "Each load starts once the servers are quiet; its CPU includes the background work it leaves "
                "(LevelDB compaction, AOF rewrites), waited for after the load.",
            ] + ([] if self.settings.write_level == "1" else [
                "The SET targets are for write level 1: run with --write-level 1 to measure them.",
            ]),
        }


def _median(values: list[float | None]) -> float | None:
    """The median of the values redis-benchmark printed (None where it printed none)."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _load_average() -> float:
    return round(os.getloadavg()[0], 2)


def _uninterrupted(stop) -> None:
    """Stop something with ^C and SIGTERM ignored meanwhile, so a second one does not leave processes behind."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _redis_version() -> str | None:
    try:
        return subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return None
