"""The hot path of two or more commits, measured in alternating runs on this machine.

On a shared machine absolute figures drift by half from one minute to the next, so a change is judged by
runs of the old and the new code taken in turn: round 1 runs every commit once, round 2 again, and so on.
Each run starts a fresh local cluster (3 nodes, 16 partitions, one proxy, write level 1) from a checkout of
the commit, loads it, and runs redis-benchmark GET and SET at 50 clients with pipelines of 1 and 16.
It prints, for each run and load, the rate, p99 and CPU microseconds per operation of the proxy and of
the nodes together.

    .venv/bin/python bench/compare_commits.py [--rounds 2] [--value-size 100] [REV ...]   (default HEAD~1 HEAD)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
PORT = 7399
LOADS = (("get", 1, 60_000), ("get", 16, 200_000), ("set", 1, 30_000), ("set", 16, 60_000))
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def kvctl(checkout: Path, *args: str) -> None:
    # The checkout's code comes first on the path (python -m puts the working directory there), and the
    # servers the cluster starts import from where kvctl was imported: the commit being measured.
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    subprocess.run([sys.executable, "-m", "kvmeta.cli", *args], env=env, cwd=checkout, check=True,
                   capture_output=True)


def run_load(test: str, pipeline: int, requests: int, value_size: int, pids: dict[str, list[int]]) -> dict:
    before = {role: sum(cpu_seconds(p) for p in group) for role, group in pids.items()}
    out = subprocess.run(["redis-benchmark", "-p", str(PORT), "-t", test, "-P", str(pipeline), "-n", str(requests),
                          "-c", "50", "-d", str(value_size), "-r", "100000", "--csv"],
                         check=True, capture_output=True, text=True).stdout
    fields = [f.strip('"') for f in out.strip().splitlines()[-1].split(",")]
    cpu = {role: sum(cpu_seconds(p) for p in group) - before[role] for role, group in pids.items()}
    return {"load": f"{test.upper()} P{pipeline}", "rps": float(fields[1]), "p99_ms": float(fields[6]),
            **{f"{role}_us": round(seconds * 1e6 / requests, 1) for role, seconds in cpu.items()}}


def measure(checkout: Path, work: Path, value_size: int) -> list[dict]:
    directory = work / "cluster"
    kvctl(checkout, "local", "up", "--dir", str(directory), "--proxy-port", str(PORT), "--write-level", "1")
    try:
        processes = json.loads((directory / "cluster.json").read_text())["processes"]
        pids = {role: [p["pid"] for p in processes if p["role"] == role] for role in ("proxy", "node")}
        subprocess.run(["redis-benchmark", "-p", str(PORT), "-t", "set", "-n", "20000", "-d", str(value_size),
                        "-r", "100000", "-q"], check=True, capture_output=True)
        return [run_load(test, pipeline, requests, value_size, pids) for test, pipeline, requests in LOADS]
    finally:
        kvctl(checkout, "local", "down", "--dir", str(directory))
        subprocess.run(["rm", "-rf", str(directory)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revs", nargs="*", default=["HEAD~1", "HEAD"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--value-size", type=int, default=100)
    args = parser.parse_args()
    console = Console()
    rows = []
    with tempfile.TemporaryDirectory(prefix="kvstore-compare-") as tmp:
        work = Path(tmp)
        checkouts = {}
        for rev in args.revs:
            checkouts[rev] = work / f"rev{len(checkouts)}"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(checkouts[rev]), rev],
                           check=True)
        try:
            for round_number in range(1, args.rounds + 1):
                for rev, checkout in checkouts.items():
                    console.print(f"round {round_number} of {args.rounds}: {rev} ...")
                    for row in measure(checkout, work, args.value_size):
                        rows.append({"round": round_number, "rev": rev, **row})
        finally:
            for checkout in checkouts.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(checkout)], check=False)
    table = Table(title=f"Alternating runs, {args.value_size}-byte values, 50 clients")
    for column in ("round", "rev", "load", "ops/s", "p99 ms", "proxy µs/op", "nodes µs/op"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(str(r["round"]), r["rev"], r["load"], f"{r['rps']:,.0f}", f"{r['p99_ms']:.1f}",
                      f"{r['proxy_us']:.0f}", f"{r['node_us']:.0f}")
    console.print(table)


if __name__ == "__main__":
    main()
