"""The results of a benchmark run: the checks against the targets, rich tables, and JSON.

``results`` is a plain dict (what the JSON file holds):

- ``meta``: when, where, options, and the processes measured with their roles;
- ``redis_benchmark``: one row per redis-benchmark run (``target`` "ours" or "redis", ``test``,
  ``pipeline``, ``write_level`` for our writes, ``rps``, latencies, ``cpu_per_1000_ops`` per process);
- ``ycsb``: one row per workload and target;
- ``datasize``: GET rate, p99 and node memory after each loading step (ours only);
- ``targets``: filled in by ``check_targets``.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

# (what, test, pipeline, write level of our row or None for reads, lowest ratio ours / Redis)
RATIO_TARGETS = (
    ("GET through the proxy, P1", "GET", 1, None, 0.5),
    ("GET through the proxy, P16", "GET", 16, None, 0.25),
    ("SET at write level 1, P1", "SET", 1, "1", 0.4),
    ("SET at write level 1, P16", "SET", 16, "1", 0.2),
)
P99_GET_LIMIT_MS = 2.0
DEGRADATION_LIMIT = 0.20

ROLES_NOTE = ("Each of our nodes is the primary of some partitions and a secondary of the others (the counts are "
              "under the table), so its CPU covers both roles.")


def find_row(rows: list[dict], target: str, test: str, pipeline: int, write_level: str | None = None) -> dict | None:
    for row in rows:
        if (row["target"], row["test"], row["pipeline"]) == (target, test, pipeline) and (
            write_level is None or row.get("write_level") == write_level
        ):
            return row
    return None


def check_targets(results: dict) -> list[dict]:
    """Every target of the issue with what was measured; ``passed`` is None when it was not measured."""
    rows = results.get("redis_benchmark") or []
    checks = []
    for what, test, pipeline, level, lowest in RATIO_TARGETS:
        ours = find_row(rows, "ours", test, pipeline, level)
        redis = find_row(rows, "redis", test, pipeline)
        ratio = ours["rps"] / redis["rps"] if ours and redis and redis["rps"] else None
        checks.append(_check(f"{what}: ours / Redis", ratio, ">=", lowest))
    get = find_row(rows, "ours", "GET", 1)
    p99 = get.get("p99_ms") if get else None
    checks.append(_check(f"p99 GET at {get['clients'] if get else 50} clients (ms)", p99, "<=", P99_GET_LIMIT_MS))
    datasize = results.get("datasize")
    if datasize and len(datasize.get("steps", [])) >= 2:
        first, last = datasize["steps"][0], datasize["steps"][-1]
        span = f"{first['keys']:,} -> {last['keys']:,} keys"
        checks.append(_check(f"GET rate drop, {span}", _drop(first["rps"], last["rps"]), "<=", DEGRADATION_LIMIT))
        checks.append(_check(f"GET p99 rise, {span}", _drop(first["p99_ms"], last["p99_ms"], rise=True), "<=",
                             DEGRADATION_LIMIT))
        limit = datasize["cache_mb"] + datasize["overhead_mb"]
        # A node's own memory: its RSS less the pages of data files LevelDB maps (see resources.py).
        worst = max(last["own_mb"].values()) if last["own_mb"] else None
        checks.append(_check(f"largest node memory at {last['keys']:,} keys (MB, RSS less mapped data files; "
                             f"cache {datasize['cache_mb']} + overhead {datasize['overhead_mb']})", worst, "<=",
                             limit))
    return checks


def _drop(before: float, after: float, rise: bool = False) -> float | None:
    """The relative fall from ``before`` to ``after`` (with ``rise``, the relative rise)."""
    if not before:
        return None
    change = (before - after) / before
    return -change if rise else change


def _check(what: str, value: float | None, op: str, limit: float) -> dict:
    passed = None if value is None else (value >= limit if op == ">=" else value <= limit)
    return {"what": what, "value": None if value is None else round(value, 4), "op": op, "limit": limit,
            "passed": passed}


def write_json(results: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")


# -- tables


def render(results: dict, console: Console) -> None:
    rows = results.get("redis_benchmark") or []
    if rows:
        console.print(_redis_benchmark_table(rows))
    if results.get("ycsb"):
        console.print(_ycsb_table(results["ycsb"]))
    cpu_rows = [r for r in rows if r.get("cpu_per_1000_ops")]
    if cpu_rows:
        for table in _cpu_tables(cpu_rows, results["meta"].get("roles", {})):
            console.print(table)
        console.print(ROLES_NOTE, style="dim")
    if results.get("datasize"):
        console.print(_datasize_table(results["datasize"]))
    if results.get("targets"):
        console.print(_targets_table(results["targets"]))
    for note in results["meta"].get("notes", []):
        console.print(note, style="dim")


def _redis_benchmark_table(rows: list[dict]) -> Table:
    table = Table(title="redis-benchmark (ops/s; latency p50 / p99 ms)")
    for column in ("load", "clients", "ours w", "ours ops/s", "ours p50 / p99", "Redis ops/s", "Redis p50 / p99",
                   "ours / Redis"):
        table.add_column(column, justify="left" if column in ("load", "ours w") else "right")
    for ours in (r for r in rows if r["target"] == "ours"):
        redis = find_row(rows, "redis", ours["test"], ours["pipeline"])
        ratio = f"{ours['rps'] / redis['rps']:.2f}" if redis and redis["rps"] else "-"
        table.add_row(f"{ours['test']} P{ours['pipeline']}", str(ours["clients"]), ours.get("write_level") or "-",
                      _rate(ours["rps"]), _p50_p99(ours), _rate(redis["rps"]) if redis else "-",
                      _p50_p99(redis) if redis else "-", ratio)
    if not any(r["target"] == "ours" for r in rows):
        for redis in rows:
            table.add_row(f"{redis['test']} P{redis['pipeline']}", str(redis["clients"]), "-", "-", "-",
                          _rate(redis["rps"]), _p50_p99(redis), "-")
    return table


def _ycsb_table(rows: list[dict]) -> Table:
    table = Table(title="YCSB (1 KB records, zipfian; ops/s; latency ms)")
    for column in ("workload", "target", "ops/s", "p50", "p99", "p999", "errors", "ours / Redis"):
        table.add_column(column, justify="left" if column in ("workload", "target") else "right")
    for row in rows:
        if not row["available"]:
            table.add_row(f"{row['workload']}: {row['description']}", row["target"], "not available", "", "", "", "",
                          "")
            continue
        every = row["latency_ms"].get("ALL", {})
        redis = next((r for r in rows if r["target"] == "redis" and r["workload"] == row["workload"]), None)
        ratio = "-"
        if row["target"] == "ours" and redis and redis["available"] and redis["throughput"]:
            ratio = f"{row['throughput'] / redis['throughput']:.2f}"
        first = row is next(r for r in rows if r["workload"] == row["workload"])
        name = f"{row['workload']}: {row['description']}" if first else ""
        table.add_row(name, row["target"], _rate(row["throughput"]),
                      _ms(every.get("p50")), _ms(every.get("p99")), _ms(every.get("p999")),
                      str(sum(row["errors"].values())), ratio)
    return table


def _cpu_tables(rows: list[dict], roles: dict[str, str]) -> list[Table]:
    """One table per target: a row per load, a column per process."""
    tables = []
    for target in dict.fromkeys(r["target"] for r in rows):
        mine = [r for r in rows if r["target"] == target]
        names = list(dict.fromkeys(n for r in mine for n in r["cpu_per_1000_ops"] if n != "total"))
        table = Table(title=f"CPU seconds per 1 000 operations, {target} (cores for 10 000 ops/s = total x 10)")
        table.add_column("load")
        for name in [*names, "total"]:
            table.add_column(name, justify="right")
        for row in mine:
            load = f"{row['test']} P{row['pipeline']}" + (f" w={row['write_level']}" if row.get("write_level") else "")
            cpu = row["cpu_per_1000_ops"]
            table.add_row(load, *(f"{cpu[n]:.4f}" if n in cpu else "-" for n in [*names, "total"]))
        described = [f"{n}: {roles[n]}" for n in names if "partitions" in roles.get(n, "")]
        if described:
            table.caption = "; ".join(described)
        tables.append(table)
    return tables


def _datasize_table(datasize: dict) -> Table:
    table = Table(title=f"Data size (ours; values of {datasize['value_size']} B; GET P1, {datasize['clients']} "
                        f"clients, uniform keys; LevelDB cache {datasize['cache_mb']} MB per node; each node's store "
                        "compacted after the load; the median of the runs at each step)")
    for column in ("keys", "load s", "compact s", "GET ops/s", "p50 ms", "p99 ms",
                   "RSS per node (MB): own + mapped files"):
        table.add_column(column, justify="left" if column.startswith("RSS") else "right")
    for step in datasize["steps"]:
        rss = ", ".join(f"{name} {mb:.0f} + {step['mapped_mb'][name]:.0f}" for name, mb in step["own_mb"].items())
        compact = step.get("compact_seconds")  # absent in results written before compaction was measured
        table.add_row(f"{step['keys']:,}", f"{step['load_seconds']:.0f}",
                      f"{sum(compact.values()):.0f}" if compact else "-", _rate(step["rps"]), _ms(step["p50_ms"]),
                      _ms(step["p99_ms"]), rss)
    return table


def _targets_table(checks: list[dict]) -> Table:
    table = Table(title="Targets")
    for column in ("target", "measured", "limit", "result"):
        table.add_column(column, justify="left" if column == "target" else "right")
    for check in checks:
        if check["passed"] is None:
            result, value = "[yellow]not measured[/]", "-"
        else:
            result = "[green]met[/]" if check["passed"] else "[red]missed[/]"
            value = f"{check['value']:.3g}"
        table.add_row(check["what"], value, f"{check['op']} {check['limit']:g}", result)
    return table


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _p50_p99(row: dict) -> str:
    return f"{_ms(row.get('p50_ms'))} / {_ms(row.get('p99_ms'))}"
