"""Logging set-up shared by the server processes: one line per event on stderr, with the process name."""

import logging
import sys


def setup_logging(process: str, level: str = "INFO") -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s {process} %(levelname)s %(name)s: %(message)s",
    )
    # kazoo logs every reconnect attempt at INFO/WARNING; keep its noise to real problems.
    logging.getLogger("kazoo.client").setLevel(logging.WARNING)
