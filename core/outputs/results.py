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
from selectivity_eval.core.outputs import atomic
from selectivity_eval.core.store.residency import row_blocks
from selectivity_eval.schemas.spec import RunSpec

LayerResults = dict[str, np.ndarray]


NON_FINITE_KEY = "non_finite_as_null"


def write_json(path: Path, data: Any) -> None:
    atomic.write_text(path, json.dumps(json_safe(data), indent=2, allow_nan=False, default=str) + "\n")


def json_safe(data: Any) -> Any:
    """``data`` with every NaN or infinite number as null, so the file stays valid JSON.

    numpy scalars and arrays become plain numbers and lists. A mapping that held non-finite
    numbers (in its values or in lists among them) gets ``non_finite_as_null``, how many there
    were, so a null that was NaN or infinity is never mistaken for a value that was never there.
    """
    if isinstance(data, dict):
        cleaned: dict[Any, Any] = {}
        count = 0
        for key, value in data.items():
            cleaned[key], replaced = _json_value(value)
            count += replaced
        if count:
            cleaned[NON_FINITE_KEY] = cleaned.get(NON_FINITE_KEY, 0) + count
        return cleaned
    return _json_value(data)[0]


def _json_value(value: Any) -> tuple[Any, int]:
    """A value made JSON-safe, and how many non-finite numbers it held outside nested mappings."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return (value, 0) if math.isfinite(value) else (None, 1)
    if isinstance(value, dict):
        return json_safe(value), 0
    if isinstance(value, (list, tuple)):
        items = [_json_value(item) for item in value]
        return [item for item, _ in items], sum(count for _, count in items)
    return value, 0


def write_resolved_spec(path: Path, spec: RunSpec) -> None:
    data = spec.model_dump(mode="json", exclude_none=True)
    atomic.write_text(path, yaml.safe_dump(data, sort_keys=False))


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
    with atomic.atomic_file(path, "w", newline="", encoding="utf-8") as handle:
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
    return float(value) if math.isfinite(value) else None


def _missing(values: np.ndarray) -> np.ndarray:
    """Cells with no value: NaN in a float column, None or NaN in an object column."""
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind == "O":
        return np.array([v is None or (isinstance(v, float) and math.isnan(v)) for v in values], dtype=bool)
    return np.zeros(values.shape, dtype=bool)


SILENT_COLUMN = "silent"
TIED_SUFFIX = "_tied"
SUMMARY_UNITS = ("responsive", "all")


def silent_units(matrix: Any) -> np.ndarray:
    """(units,) bool: units whose activation is the same for every image (a unit with a NaN is not)."""
    matrix = matrix if isinstance(matrix, np.ndarray) else np.asarray(matrix)
    if matrix.shape[0] == 0:
        return np.zeros(matrix.shape[1], dtype=bool)
    highest = lowest = None
    for _, block in row_blocks(matrix):  # a stored layer is read from its file, not mapped whole
        top, bottom = block.max(axis=0), block.min(axis=0)
        highest = top if highest is None else np.maximum(highest, top)
        lowest = bottom if lowest is None else np.minimum(lowest, bottom)
    return highest == lowest


def summarise_layer(
    results: LayerResults,
    kinds: dict[str, Column],
    roles: dict[str, Role] | None = None,
    units: str = "responsive",
) -> dict[str, Any]:
    """Per column: its kind and role; mean, median, max and NaN count (class columns: distinct and
    most common class). A column no measure declares (chance levels, say) is a detail value column.

    NaN (a unit with non-finite activations) is no class: class columns count it apart.

    With a ``silent`` column (see ``silent_units``) and ``units="responsive"``, every column is
    summarised over the responsive units only: a constant unit's values reflect only how the data
    set is ordered. ``n_silent`` and ``n_responsive`` stand beside, and ``units="all"`` keeps every
    unit. ``n_tie_dependent`` counts, per ``*_tied`` flag column, the summarised units whose value
    depends on how tied activations are ordered.
    """
    if units not in SUMMARY_UNITS:
        raise ValueError(f"units must be one of {SUMMARY_UNITS}, got {units!r}")
    summary: dict[str, Any] = {"n_units": 0, "columns": {}}
    roles = roles or {}
    n_units = len(next(iter(results.values()))) if results else 0
    included = np.ones(n_units, dtype=bool)
    if SILENT_COLUMN in results:
        silent = np.asarray(results[SILENT_COLUMN], dtype=bool)
        summary.update(summary_units=units, n_silent=int(silent.sum()), n_responsive=int((~silent).sum()))
        if units == "responsive":
            included = ~silent
    for column, values in results.items():
        summary["n_units"] = int(len(values))
        if column != SILENT_COLUMN:
            values = values[included]
        kind = kinds.get(column, Column.VALUE)
        role = roles.get(column, kind.default_role if column in kinds else Role.DETAIL)
        described = {"kind": kind.value, "role": role.value}
        if kind is Column.CLASS:
            missing = _missing(values)
            present = values[~missing]
            if present.dtype.kind == "O" and present.size:
                present = np.array(present.tolist())  # back to the labels' own dtype for np.unique
            classes, counts = np.unique(present, return_counts=True)
            summary["columns"][column] = {
                **described,
                "n_distinct": int(len(classes)),
                "most_common": classes[np.argmax(counts)].item() if len(classes) else None,
                "nan_count": int(missing.sum()),
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
        summary["n_localist"] = int(np.count_nonzero(results["is_localist"][included]))
    tied = {
        column: int(np.count_nonzero(np.asarray(values, dtype=bool)[included]))
        for column, values in results.items()
        if column.endswith(TIED_SUFFIX) and kinds.get(column) is Column.FLAG
    }
    if tied:
        summary["n_tie_dependent"] = tied
    return summary
