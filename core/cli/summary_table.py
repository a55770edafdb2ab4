"""The terminal's summary of a run: one row per layer, each measure's mean beside its chance level."""

from __future__ import annotations

from rich.table import Table



def main_columns(summary: dict) -> list[str]:
    """The headline columns (as each measure declares them), in the order they first appear.

    A numeric column in a summary written before columns had roles counts as headline.
    """
    columns: list[str] = []
    for layer in summary.values():
        for column, stats in layer["columns"].items():
            headline = stats.get("role", "headline" if "mean" in stats else "detail") == "headline"
            if headline and "mean" in stats and column not in columns:
                columns.append(column)
    return columns


def summary_table(summary: dict, title: str) -> Table:
    """Layers as rows; units, localist units and the mean of each headline column, with chance levels."""
    columns = main_columns(summary)
    table = Table(title=title)
    table.add_column("layer")
    table.add_column("units", justify="right")
    table.add_column("localist units", justify="right")
    for column in columns:
        table.add_column(column, justify="right")
    any_chance = False
    for name, layer in summary.items():
        means = [_number(layer["columns"].get(column, {}).get("mean")) for column in columns]
        table.add_row(name, str(layer["n_units"]), str(layer.get("n_localist", "-")), *means)
        chance = layer.get("chance", {})
        if chance:
            any_chance = True
            table.add_row(
                "  shuffled labels", "", "", *[_number(chance.get(c, {}).get("null_mean")) for c in columns], style="dim"
            )
            table.add_row(
                "  above chance",
                "",
                "",
                *[str(chance[c]["n_above_chance"]) if c in chance else "" for c in columns],
                style="dim",
            )
    notes = []
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

