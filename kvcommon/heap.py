"""Giving freed heap memory back to the operating system (glibc's malloc_trim).

glibc keeps what a process frees for reuse, and on its own returns to the system only what is free at the
top of a heap. A node frees much in the middle of its heaps: LevelDB drops a 16 MB memtable of 4 KB blocks
after each flush, large requests and replication payloads come and go, and all of it lies between blocks
of the block cache that stay. ``malloc_trim(0)`` hands back every page that is wholly free.

It holds each arena's lock while it walks that arena, so the reactor waits for it: about 1.6 ms on a node
under load, and up to 43 ms right after a bulk load freed much. So it runs seldom (TRIM_INTERVAL).
"""

from __future__ import annotations

import ctypes
import ctypes.util

# Seconds between trims (kvnode.main runs them).
TRIM_INTERVAL = 30.0


def _find_malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):  # no C library found, or one without malloc_trim (not glibc)
        return None


_malloc_trim = _find_malloc_trim()


def release_free_memory() -> bool:
    """Return the heap's wholly free pages to the system; False where the C library cannot."""
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True
