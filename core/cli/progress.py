"""Progress bars for long steps: rich in a terminal, silent with ``--quiet``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class Steps:
    """A handle on one progress bar; does nothing when the run is quiet."""

    def __init__(self, progress: Progress | None, description: str, total: int):
        self._progress = progress
        self._task = progress.add_task(description, total=total) if progress else None

    def advance(self, amount: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, amount)


class Reporter:
    """Hands out progress bars for a run; ``quiet`` turns every bar off."""

    def __init__(self, console: Console | None = None, quiet: bool = False):
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self._progress: Progress | None = None

    @contextmanager
    def live(self) -> Iterator[Reporter]:
        if self.quiet:
            yield self
            return
        columns = (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console, transient=False) as progress:
            self._progress = progress
            try:
                yield self
            finally:
                self._progress = None

    def steps(self, description: str, total: int) -> Steps:
        return Steps(self._progress, description, total)

    def say(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message)
