"""A sweep's combined results: ``sweep_summary.csv`` and a terminal table, one row per run and layer.

Each row names the run, its grid values, the layer and its unit and localist counts, then the mean
over the layer's units of every headline column (as the run's own table shows them), and with
``chance:`` the mean under shuffled labels and the number of units above chance. A failed run gets
one row with its error.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from selectivity_eval.core.cli.summary_table import main_columns
from selectivity_eval.core.outputs import atomic


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def summary_rows(result) -> tuple[list[str], list[dict[str, Any]]]:
    """The header and the rows of the sweep summary."""
    summaries = [outcome.summary for outcome in result.outcomes if outcome.summary]
    headline: list[str] = []
    for summary in summaries:
        headline.extend(column for column in main_columns(summary) if column not in headline)
    axes: list[str] = []
    for outcome in result.outcomes:
        axes.extend(axis for axis in outcome.run.labels if axis not in axes)
    chance = any(layer.get("chance") for summary in summaries for layer in summary.values())
    header = ["run", *axes, "status", "layer", "n_units", "n_localist"]
    for column in headline:
        header.append(f"{column}_mean")
        if chance:
            header.extend([f"{column}_null_mean", f"{column}_n_above_chance"])
    header.append("error")
    rows = []
    for outcome in result.outcomes:
        base = {"run": outcome.run.name, **outcome.run.labels, "status": outcome.status, "error": outcome.error}
        if not outcome.summary:
            rows.append(base)
            continue
        for layer, stats in outcome.summary.items():
            row = {**base, "layer": layer, "n_units": stats["n_units"], "n_localist": stats.get("n_localist")}
            for column in headline:
                row[f"{column}_mean"] = stats["columns"].get(column, {}).get("mean")
                entry = stats.get("chance", {}).get(column, {})
                row[f"{column}_null_mean"] = entry.get("null_mean")
                row[f"{column}_n_above_chance"] = entry.get("n_above_chance")
            rows.append(row)
    return header, rows


def write_sweep_summary(path: Path, result) -> None:
    header, rows = summary_rows(result)
    with atomic.atomic_file(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow([_cell(row.get(column)) for column in header])


def sweep_table(result) -> Table:
    """Runs and layers as rows, each headline column's mean as a column."""
    header, rows = summary_rows(result)
    means = [column for column in header if column.endswith("_mean") and not column.endswith("_null_mean")]
    failed = len(result.failed)
    title = f"Sweep: {len(result.outcomes)} runs" + (f", {failed} failed" if failed else "") + " (means over units)"
    table = Table(title=title)
    for column in ("run", "layer", "units", "localist units"):
        table.add_column(column, justify="right" if column in ("units", "localist units") else "left")
    for column in means:
        table.add_column(column.removesuffix("_mean"), justify="right")
    for row in rows:
        if row.get("layer") is None:
            table.add_row(escape(row["run"]), "[red]failed[/]", "", "", *["" for _ in means])
            continue
        numbers = ["-" if row.get(c) is None else f"{row[c]:.3f}" for c in means]
        localist = row.get("n_localist")
        table.add_row(
            escape(row["run"]),
            escape(row["layer"]),
            str(row["n_units"]),
            "-" if localist is None else str(localist),
            *numbers,
        )
    return table
