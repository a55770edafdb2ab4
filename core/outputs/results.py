"""What a run writes: units.csv, summary.json, spec.resolved.yaml and run.json."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from selectivity_eval.core.measures.base import Column, Role
from selectivity_eval.schemas.spec import RunSpec

LayerResults = dict[str, np.ndarray]


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, allow_nan=False, default=str) + "\n", encoding="utf-8")


def write_resolved_spec(path: Path, spec: RunSpec) -> None:
    data = spec.model_dump(mode="json", exclude_none=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def csv_cell(value: Any, missing: str = "nan") -> str:
    """One value as a CSV cell: booleans as true/false, floats round-trip exactly, NaN as "nan"."""
    if value is None:
        return missing
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        return "nan" if math.isnan(value) else repr(float(value))
    return str(value.item() if hasattr(value, "item") else value)


def write_units_csv(path: Path, results: dict[str, LayerResults]) -> None:
    """One row per layer x unit, one column per measure column (empty where a layer lacks it)."""
    columns: list[str] = []
    for layer_results in results.values():
        columns.extend(c for c in layer_results if c not in columns)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["layer", "unit", *columns])
        for layer, layer_results in results.items():
            n_units = len(next(iter(layer_results.values()))) if layer_results else 0
            for unit in range(n_units):
                row = [layer, unit]
                row.extend(csv_cell(layer_results[c][unit]) if c in layer_results else "" for c in columns)
                writer.writerow(row)


def read_units_csv(path: Path) -> dict[str, dict[str, list[str]]]:
    """units.csv back as layer -> column -> list of cells (strings), for tests and reports."""
    layers: dict[str, dict[str, list[str]]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            layer = layers.setdefault(row.pop("layer"), {})
            for column, cell in row.items():
                layer.setdefault(column, []).append(cell)
    return layers


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def summarise_layer(
    results: LayerResults, kinds: dict[str, Column], roles: dict[str, Role] | None = None
) -> dict[str, Any]:
    """Per column: its kind and role; mean, median, max and NaN count (class columns: distinct and
    most common class). A column no measure declares (chance levels, say) is a detail value column."""
    summary: dict[str, Any] = {"n_units": 0, "columns": {}}
    roles = roles or {}
    for column, values in results.items():
        summary["n_units"] = int(len(values))
        kind = kinds.get(column, Column.VALUE)
        role = roles.get(column, kind.default_role if column in kinds else Role.DETAIL)
        described = {"kind": kind.value, "role": role.value}
        if kind is Column.CLASS:
            classes, counts = np.unique(values, return_counts=True)
            summary["columns"][column] = {
                **described,
                "n_distinct": int(len(classes)),
                "most_common": classes[np.argmax(counts)].item() if len(classes) else None,
            }
            continue
        numbers = values.astype(np.float64)
        finite = numbers[~np.isnan(numbers)]
        summary["columns"][column] = {
            **described,
            "mean": _finite_or_none(finite.mean()) if finite.size else None,
            "median": _finite_or_none(float(np.median(finite))) if finite.size else None,
            "max": _finite_or_none(finite.max()) if finite.size else None,
            "nan_count": int(numbers.size - finite.size),
        }
    if "is_localist" in results:
        summary["n_localist"] = int(np.count_nonzero(results["is_localist"]))
    return summary
