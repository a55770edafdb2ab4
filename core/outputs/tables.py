"""``se.load_run``: a finished run's results as pandas tables, typed by the measures' column kinds.

pandas is a core dependency rather than an extra: tables are the form results are analysed in,
and a public function that fails on import is worse than the ~60 MB pandas takes.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.measures.base import Column
from selectivity_eval.core.measures.chance import NULL_SUFFIXES
from selectivity_eval.core.report.inputs import _require

AM_KINDS = {
    "activation": Column.VALUE,
    "data_max": Column.VALUE,
    "ratio": Column.VALUE,
    "top1_class": Column.CLASS,
    "top1_probability": Column.VALUE,
    "ccmas_class": Column.CLASS,
    "top1_is_ccmas_class": Column.FLAG,
    "topclass_class": Column.CLASS,
    "top1_is_topclass_class": Column.FLAG,
}


@dataclass
class RunTables:
    """A finished run's results.

    ``units``: one row per layer and unit (``layer``: categorical in the spec's layer order with the
    spec's layer names; ``unit``: int64), then one column per measure column as in units.csv, typed by
    its kind: value columns float64, count columns int64 (float64 where a layer lacks the column),
    flag columns bool (nullable ``boolean`` where a layer lacks it), class columns categorical over
    the data set's label values (ints where the labels are integers). Chance columns
    (``<column>_null_mean``, ``_null_std``, ``_z``, ``_p``) are float64.
    ``untrained``: the same for the untrained baseline (None when the run has none).
    ``am``: am.csv, one row per maximised unit (None when the run ran no AM).
    ``summary``: summary.json as a table, one row per layer and measure column (kind, role; mean,
    median, max, nan_count; class columns: n_distinct, most_common). ``spec``: spec.resolved.yaml as a dict;
    ``record``: run.json as a dict; ``column_kinds``: measure column -> ``Column``;
    ``class_names``: label value -> the data set's name of the class; ``path``: the run's folder.
    """

    path: Path
    units: pd.DataFrame
    summary: pd.DataFrame
    spec: dict[str, Any]
    record: dict[str, Any]
    column_kinds: dict[str, Column]
    class_names: dict[Any, str] = field(default_factory=dict)
    am: pd.DataFrame | None = None
    untrained: pd.DataFrame | None = None

    @property
    def layers(self) -> list[str]:
        return list(self.units["layer"].cat.categories)

    def activations(self, layer: str) -> np.ndarray:
        """The layer's stored activations of the images the measures used (images x units)."""
        from selectivity_eval.core.report.inputs import load_finished_run

        if layer not in self.layers:
            raise UserInputError(f"The run has no layer {layer!r}; its layers: {', '.join(self.layers)}.")
        return np.asarray(load_finished_run(self.path).activations(layer))


def load_run(path: str | Path) -> RunTables:
    """Read the finished run in ``path`` (units.csv, summary.json, spec.resolved.yaml, run.json, and
    am.csv and untrained/units.csv when present) into a ``RunTables``; a missing file is an error naming it."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise UserInputError(f"Run directory {str(path)!r} does not exist.")
    spec = yaml.safe_load(_require(path, "spec.resolved.yaml").read_text(encoding="utf-8"))
    record = json.loads(_require(path, "run.json").read_text(encoding="utf-8"))
    summary_json = json.loads(_require(path, "summary.json").read_text(encoding="utf-8"))
    kinds = column_kinds(spec, summary_json)
    labels = _label_values(path)
    layers = [layer["name"] for layer in spec.get("layers", [])]
    units = read_units_table(_require(path, "units.csv"), kinds, labels, layers)
    untrained_csv = path / "untrained" / "units.csv"
    am_csv = path / "am.csv"
    return RunTables(
        path=path,
        units=units,
        summary=summary_table(summary_json),
        spec=spec,
        record=record,
        column_kinds=kinds,
        class_names=_class_names(path, labels),
        am=read_table(am_csv, AM_KINDS, labels, layers) if am_csv.is_file() else None,
        untrained=read_units_table(untrained_csv, kinds, labels, layers) if untrained_csv.is_file() else None,
    )


def column_kinds(spec: dict[str, Any], summary: dict[str, Any]) -> dict[str, Column]:
    """Each column's kind as summary.json records it; for a run written before summary.json did, from
    the registered measures the spec names (a measure not installed here: class columns from
    summary.json's class statistics; its other columns are read as they look)."""
    from selectivity_eval.core.registry.manager import get_registry

    kinds: dict[str, Column] = {}
    for layer in summary.values():
        for column, stats in layer.get("columns", {}).items():
            if "kind" in stats:
                kinds.setdefault(column, Column(stats["kind"]))
    registry = get_registry()
    for ref in spec.get("measures") or []:
        name = ref["name"] if isinstance(ref, dict) else ref
        label = ref.get("label") if isinstance(ref, dict) else None
        if name in registry.names("measure"):
            measure = registry.get("measure", name)
            for column, kind in measure.output_columns(measure, label).items():  # class attributes only
                kinds.setdefault(column, kind)
    for layer in summary.values():
        for column, stats in layer.get("columns", {}).items():
            if column not in kinds and "n_distinct" in stats:
                kinds[column] = Column.CLASS
    return kinds


def _label_values(path: Path) -> list[Any]:
    """The data set's label values, sorted (from labels.npy; empty when the run did not write it)."""
    labels_file = path / "labels.npy"
    if not labels_file.is_file():
        return []
    return [value.item() if hasattr(value, "item") else value for value in np.unique(np.load(labels_file, allow_pickle=False))]


def _class_names(path: Path, labels: list[Any]) -> dict[Any, str]:
    rows_file = path / "rows.json"
    names = json.loads(rows_file.read_text(encoding="utf-8")).get("class_names", []) if rows_file.is_file() else []
    if all(isinstance(label, (int, np.integer)) and 0 <= label < len(names) for label in labels):
        return {label: names[label] for label in labels}
    return {label: str(label) for label in labels}


def read_units_table(path: Path, kinds: dict[str, Column], labels: list[Any], layers: list[str]) -> pd.DataFrame:
    """units.csv as a DataFrame typed by ``kinds`` (chance columns float64)."""
    table_kinds = dict(kinds)
    with path.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), [])
    for column in header:
        base = next((column[: -len(s)] for s in NULL_SUFFIXES if column.endswith(s)), None)
        if base is not None and base in kinds:
            table_kinds[column] = Column.VALUE
    return read_table(path, table_kinds, labels, layers)


def read_table(path: Path, kinds: dict[str, Column], labels: list[Any], layers: list[str]) -> pd.DataFrame:
    """A results CSV (``layer``, ``unit``, then columns) as a typed DataFrame; columns not in ``kinds``
    are read as they look (true/false: boolean, numbers: float64, else text)."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    table = pd.DataFrame(index=raw.index)
    order = list(dict.fromkeys([*layers, *raw["layer"]]))
    table["layer"] = pd.Categorical(raw["layer"], categories=order, ordered=True)
    table["unit"] = raw["unit"].astype(np.int64)
    for column in raw.columns[2:]:
        table[column] = typed_column(raw[column], kinds.get(column), labels)
    return table


def typed_column(cells: pd.Series, kind: Column | None, labels: list[Any]) -> pd.Series:
    """One column of cells (strings; empty where a layer lacks the column) as its kind's dtype."""
    missing = cells == ""
    if kind is None:
        present = cells[~missing]
        numeric = pd.to_numeric(present, errors="coerce").notna() | (present == "nan")
        if len(present) and present.isin(["true", "false"]).all():
            kind = Column.FLAG
        elif len(present) and numeric.all():
            kind = Column.VALUE
        else:
            return cells.where(~missing, None).astype("string")
    if kind is Column.FLAG:
        values = cells.map({"true": True, "false": False, "": pd.NA})
        return values.astype("boolean") if missing.any() else values.astype(bool)
    if kind is Column.CLASS:
        return _class_column(cells.where(~missing, None), labels)
    # Python's float() reads the shortest-repr cells units.csv holds back to the very same doubles.
    numbers = pd.Series([float(cell) if cell else np.nan for cell in cells], index=cells.index, dtype=np.float64)
    if kind is Column.COUNT and not numbers.isna().any():
        return numbers.astype(np.int64)
    return numbers


def _class_column(cells: pd.Series, labels: list[Any]) -> pd.Series:
    """Label values as a categorical over every label of the data set (ints where the labels are ints)."""
    as_text = {str(label): label for label in labels}
    present = cells.dropna()
    if as_text and present.isin(list(as_text)).all():
        return pd.Series(pd.Categorical(cells.map(as_text), categories=labels), index=cells.index)
    return cells.astype("category")


SUMMARY_STATS = ("kind", "role", "mean", "median", "max", "nan_count", "n_distinct", "most_common")


def summary_table(summary: dict[str, Any]) -> pd.DataFrame:
    """summary.json's per-column statistics, one row per layer and measure column (NaN where a
    statistic does not apply: class columns have n_distinct and most_common, the others the rest)."""
    rows = []
    for layer, entry in summary.items():
        for column, stats in entry.get("columns", {}).items():
            rows.append({"layer": layer, "column": column, **{stat: stats.get(stat) for stat in SUMMARY_STATS}})
    table = pd.DataFrame(rows, columns=["layer", "column", *SUMMARY_STATS])
    table["layer"] = pd.Categorical(table["layer"], categories=list(summary), ordered=True)
    for stat in ("mean", "median", "max"):
        table[stat] = table[stat].astype(np.float64)
    for stat in ("nan_count", "n_distinct"):
        table[stat] = table[stat].astype("Int64")
    table["most_common"] = pd.Series([row["most_common"] for row in rows], index=table.index, dtype=object)
    return table


def jitterplot(run: RunTables | str | Path, layer: str, unit: int, *, seed: int = 0):
    """A matplotlib ``Figure``: every measured image's activation of ``unit`` of ``layer``, one jittered
    column per class, the top class in colour, the localist gap shaded and precision's top-N line
    dashed (the plot of the report's unit cards). ``run``: a ``load_run`` result or a run's folder.
    Save it with ``figure.savefig(path)``; it needs no pyplot.
    """
    from selectivity_eval.core.report.inputs import load_finished_run
    from selectivity_eval.core.report.unit_cards import unit_jitterplot

    finished = load_finished_run(run.path if isinstance(run, RunTables) else Path(run).expanduser())
    if layer not in finished.layers:
        raise UserInputError(f"The run has no layer {layer!r}; its layers: {', '.join(finished.layers)}.")
    n_units = int(finished.summary[layer]["n_units"])
    if not 0 <= int(unit) < n_units:
        raise UserInputError(f"Unit {unit} is out of range: layer {layer!r} has {n_units} units (0-{n_units - 1}).")
    return unit_jitterplot(finished, layer, int(unit), seed)
