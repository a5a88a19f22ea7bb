"""Garbage collection settings for the server processes.

A proxy or node allocates a few short-lived objects per request (argument lists, a pending reply, a
closure), so CPython's default collector (a young-generation pass every 700 allocations, and full
passes over every object the process holds, Twisted's and kazoo's included) ran thousands of times a
second under load. Reference counting frees nearly all of these objects anyway; the collector is only
for cycles. The objects that exist once the server has started live until it stops, so they are moved
out of the collector's sight (gc.freeze), and young-generation passes run every 50,000 allocations.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000


def tune_for_server() -> None:
    """Call once the process has started up, just before the reactor runs."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
