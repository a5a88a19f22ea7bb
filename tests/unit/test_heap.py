"""Freed heap memory goes back to the system: a real glibc heap, fragmented as a node's is."""

import ctypes
import ctypes.util
from pathlib import Path

import pytest

from kvcommon import heap

BLOCK = 4096 + 64  # a LevelDB arena block and its header: not served by mmap, so it lives in the heap
BLOCKS = 12_000  # about 50 MB


def own_memory_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise AssertionError("no RssAnon in /proc/self/status")


@pytest.mark.skipif(heap._malloc_trim is None, reason="the C library has no malloc_trim (not glibc)")
def test_memory_freed_between_blocks_still_in_use_goes_back_to_the_system():
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(BLOCK) for _ in range(BLOCKS)]
    kept = []
    try:
        for block in blocks:
            ctypes.memset(block, 1, BLOCK)  # touched: resident
        # Free nine blocks in ten: what stays pins the heap's top, so glibc returns nothing on its own.
        for i, block in enumerate(blocks):
            if i % 10 == 9:
                kept.append(block)
            else:
                libc.free(block)
        before = own_memory_kb()
        assert heap.release_free_memory()
        after = own_memory_kb()
        assert before - after > 20_000, f"own memory {before} kB before the trim, {after} kB after"
    finally:
        for block in kept:
            libc.free(block)
