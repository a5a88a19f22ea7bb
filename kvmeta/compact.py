"""Driving a full compaction of a node's store (``KV.COMPACT``), for ``kvctl compact`` and the benchmark."""

from __future__ import annotations

import time
from collections.abc import Callable

from kvmeta.nodeclient import NodeQueryError, info_fields, query
from kvmeta.progress import ProgressReporter

POLL_SECONDS = 0.5


def start(host: str, port: int) -> int:
    """Start compacting the store of the node at ``host:port``; returns how many ranges it goes through.
    Raises NodeQueryError if the node refuses (one is running already) or does not answer."""
    return query(host, port, ["KV.COMPACT"])


def wait(host: str, port: int, on_progress: Callable[[int], None] | None = None) -> float:
    """Wait for the node's compaction to end; returns the seconds it took on the node.

    ``on_progress(done)`` is called with the ranges compacted so far. Raises NodeQueryError if the node stops
    answering, or reports that the compaction failed or was stopped.
    """
    while True:
        time.sleep(POLL_SECONDS)
        fields = info_fields(query(host, port, ["INFO"], timeout=5.0))
        if on_progress is not None:
            on_progress(int(fields.get("kv_full_compaction_ranges", "0/0").split("/")[0]))
        status = fields.get("kv_full_compaction", "none")
        if status == "done":
            return float(fields.get("kv_full_compaction_seconds", "0"))
        if status != "running":
            raise NodeQueryError(f"node at {host}:{port}: the compaction of its store ended as {status!r}; see "
                                 "the node's log")


def compact_with_progress(progress: ProgressReporter, name: str, host: str, port: int) -> float:
    """Compact one node's store, with a bar of the ranges done; returns the node's seconds."""
    total = start(host, port)
    with progress.task(f"{name}: compacting its store", total, " ranges") as advance:
        done = 0

        def on_progress(now_done: int) -> None:
            nonlocal done
            advance(now_done - done)
            done = now_done

        return wait(host, port, on_progress)
