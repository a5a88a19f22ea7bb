"""Progress of the long phases: a rich bar on a terminal, a few plain lines otherwise (CI logs)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

PLAIN_INTERVAL = 10.0


class ProgressReporter:
    def __init__(self, console: Console):
        self.console = console

    def say(self, message: str) -> None:
        self.console.print(message, markup=False, highlight=False, soft_wrap=True)

    @contextlib.contextmanager
    def task(self, description: str, total: float, unit: str = "") -> Iterator[Callable[[float], None]]:
        """Yields ``advance(amount)``; the bar (or a plain line every few seconds) follows it up to ``total``."""
        if self.console.is_terminal:
            columns = [
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(),
            ]
            with Progress(*columns, console=self.console, transient=True) as progress:
                task = progress.add_task(description, total=total)
                yield lambda amount: progress.advance(task, amount)
            return
        self.say(f"{description} ...")
        done = 0.0
        last = time.monotonic()

        def advance(amount: float) -> None:
            nonlocal done, last
            done += amount
            now = time.monotonic()
            if now - last >= PLAIN_INTERVAL:
                last = now
                self.say(f"  {description}: {done:,.0f} of {total:,.0f}{unit}")

        yield advance
