"""CPU time and resident memory of processes, read from /proc (Linux).

CPU is user + system time, so a process that sleeps costs nothing and one that spins on two threads
counts twice: what matters for sizing cores.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds ``pid`` has used so far (its threads included)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def resident_split(pid: int) -> tuple[int, int]:
    """``(own, mapped files)``: the resident bytes of ``pid``'s own memory (heap, stacks, LevelDB's caches),
    and those of files it maps. LevelDB maps its table files to read them, so a node's RSS also counts the
    pages of its data files it has touched: pages of the kernel's page cache, which it drops under memory
    pressure, not memory the node holds."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("RssAnon", "RssFile", "RssShmem"):
            fields[name] = int(value.split()[0]) * 1024
    return fields["RssAnon"] + fields.get("RssShmem", 0), fields["RssFile"]


@dataclass(frozen=True)
class Watched:
    """A process whose CPU use is measured: ``name`` as shown in the report, ``role`` what it does."""

    name: str
    role: str
    pid: int


class CpuMeter:
    """CPU seconds each watched process used between ``start()`` and ``stop()``."""

    def __init__(self, processes: list[Watched]):
        self.processes = processes
        self._before: dict[str, float] = {}

    def start(self) -> None:
        self._before = {p.name: cpu_seconds(p.pid) for p in self.processes}

    def stop(self) -> dict[str, float]:
        return {p.name: cpu_seconds(p.pid) - self._before[p.name] for p in self.processes}


def per_thousand(cpu: dict[str, float], operations: int) -> dict[str, float]:
    """CPU seconds per 1 000 operations, per process and in total (``"total"``)."""
    if operations <= 0:
        return {}
    out = {name: seconds * 1000 / operations for name, seconds in cpu.items()}
    out["total"] = sum(cpu.values()) * 1000 / operations
    return out
