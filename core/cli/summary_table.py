"""The terminal's summary of a run: one row per layer, each measure's mean beside its chance level."""

from __future__ import annotations

from rich.table import Table

from selectivity_eval.core.outputs.results import TIED_SUFFIX as TIED


def main_columns(summary: dict) -> list[str]:
    """The headline columns (as each measure declares them), in the order they first appear.

    A numeric column in a summary written before columns had roles counts as headline.
    """
    columns: list[str] = []
    for layer in summary.values():
        for column, stats in layer["columns"].items():
            if stats.get("role", "headline") == "headline" and "mean" in stats and column not in columns:
                columns.append(column)
    return columns


def summary_table(summary: dict, title: str) -> Table:
    """Layers as rows; units, silent units, localist units and the mean of each headline column
    (over the units ``summary_units`` names), with chance levels."""
    columns = main_columns(summary)
    with_silent = any("n_silent" in layer for layer in summary.values())
    table = Table(title=title)
    table.add_column("layer")
    table.add_column("units", justify="right")
    if with_silent:
        table.add_column("silent", justify="right")
    table.add_column("localist units", justify="right")
    for column in columns:
        table.add_column(column, justify="right")
    blank = [""] * (3 if with_silent else 2)
    any_chance = False
    for name, layer in summary.items():
        means = [_number(layer["columns"].get(column, {}).get("mean")) for column in columns]
        silent = [str(layer.get("n_silent", "-"))] if with_silent else []
        table.add_row(name, str(layer["n_units"]), *silent, str(layer.get("n_localist", "-")), *means)
        chance = layer.get("chance", {})
        if chance:
            any_chance = True
            table.add_row(
                "  shuffled labels",
                *blank,
                *[_number(chance.get(c, {}).get("null_mean")) for c in columns],
                style="dim",
            )
            table.add_row(
                "  above chance",
                *blank,
                *[str(chance[c]["n_above_chance"]) if c in chance else "" for c in columns],
                style="dim",
            )
    notes = []
    if with_silent:
        over = next(layer.get("summary_units") for layer in summary.values() if "n_silent" in layer)
        notes.append(
            "Silent: units whose activation never varies (dead ReLUs); "
            + ("means leave them out." if over == "responsive" else "means include them (summary_units: all).")
        )
    tied = [
        f"{name}: {', '.join(f'{column[: -len(TIED)]} {n}' for column, n in layer['n_tie_dependent'].items() if n)}"
        for name, layer in summary.items()
        if any(layer.get("n_tie_dependent", {}).values())
    ]
    if tied:
        notes.append("Units whose value depends on how tied activations are ordered: " + "; ".join(tied) + ".")
    if any_chance:
        first = next(c for layer in summary.values() for c in layer.get("chance", {}).values())
        notes.append(
            f"Shuffled labels: means over {first['permutations']} label shufflings; units above chance at "
            f"alpha {first['alpha']} with the {first['correction']} correction."
        )
    signed = [name for name, layer in summary.items() if layer.get("signed_activations")]
    if signed:
        notes.append(
            f"{', '.join(signed)}: signed activations (e.g. logits), so ccmas can fall outside [0, 1]; "
            "values are reported as computed, not clipped."
        )
    if notes:
        table.caption = "\n".join(notes)
    return table


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def summary_tables(summary: dict) -> list[Table]:
    """The trained network's table, and the untrained baseline's when the run measured one."""
    tables = [summary_table(summary, "Selectivity by layer (means over units)")]
    untrained = {name: layer["untrained"] for name, layer in summary.items() if "untrained" in layer}
    if untrained:
        tables.append(summary_table(untrained, "Untrained network, same layers (means over units)"))
    return tables

