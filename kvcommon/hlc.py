"""A hybrid logical clock: versions that are close to wall time yet strictly increase.

A version is a 64-bit integer: milliseconds since the Unix epoch in the high 48 bits and a logical counter
in the low 16. Versions from different partitions are comparable, so a cluster-wide "as of" read can name
one version for every partition.
"""

import time
from collections.abc import Callable

LOGICAL_BITS = 16
LOGICAL_MASK = (1 << LOGICAL_BITS) - 1


def version_ms(version: int) -> int:
    """The wall-clock milliseconds a version was assigned at."""
    return version >> LOGICAL_BITS


class HybridClock:
    def __init__(self, now_ms: Callable[[], int] | None = None):
        self._now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)
        self._last = 0

    def now(self) -> int:
        """A new version, greater than every version this clock has issued or observed."""
        physical = self._now_ms() << LOGICAL_BITS
        self._last = physical if physical > self._last else self._last + 1
        return self._last

    def observe(self, version: int) -> None:
        """Move past a version seen from another node, so our next version orders after it."""
        if version > self._last:
            self._last = version

    @property
    def last(self) -> int:
        return self._last
