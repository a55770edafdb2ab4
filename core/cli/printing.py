"""Tables on the terminal and off it (CI logs, pipes), never cut to rich's default 80 columns."""

from __future__ import annotations

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table


def print_tables(console: Console, tables: list[Table]) -> None:
    """Print ``tables``; off a terminal (a CI log, ``| tee``) each gets its full natural width.

    Rich lays out a non-terminal console at 80 columns, which would shorten cells to ``mor…``.
    """
    for table in tables:
        if console.is_terminal:
            console.print(table)
            continue
        natural = Measurement.get(console, console.options.update(width=10_000), table).maximum
        width = console.width
        console.width = max(natural, width)
        try:
            console.print(table)
        finally:
            console.width = width
