"""What a report reads from a finished run, and the few files the run writes for it.

A run writes, next to ``units.csv``: ``labels.npy`` (the label of every row of the data set),
``measured.npy`` (which rows the measures used: readable, and classified correctly under
``correct_only``) and ``rows.json`` (the data set's class names and, per layer, the activation
store's ``values.npy`` that holds the layer's activations of every row). With these, the report
needs neither the model nor a forward pass.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.outputs import atomic
from selectivity_eval.core.outputs.results import read_units_csv, write_json
from selectivity_eval.core.store.residency import read_units

ROWS_FILE = "rows.json"


def record_rows(output_dir: Path, labels: np.ndarray, measured: np.ndarray, class_names, activations: dict) -> None:
    """Write labels.npy, measured.npy and rows.json for the report (called by the run after extraction)."""
    labels = np.asarray(labels)
    if labels.dtype == object:
        labels = labels.astype(str)
    atomic.write_with(output_dir / "labels.npy", lambda handle: np.save(handle, labels, allow_pickle=False))
    measured = np.asarray(measured, dtype=bool)
    atomic.write_with(output_dir / "measured.npy", lambda handle: np.save(handle, measured, allow_pickle=False))
    files = {}
    for layer, values in activations.items():
        filename = getattr(values, "filename", None)
        if filename:
            path = Path(filename).resolve()
            try:
                files[layer] = path.relative_to(output_dir.resolve()).as_posix()
            except ValueError:
                files[layer] = str(path)
    rows = {"n_rows": int(len(labels)), "class_names": [str(name) for name in class_names or []], "activations": files}
    write_json(output_dir / ROWS_FILE, rows)


@dataclass
class FinishedRun:
    """A run's outputs, read back: every per-unit column as numbers, the summary, spec and record."""

    directory: Path
    spec: dict[str, Any]
    record: dict[str, Any]
    summary: dict[str, Any]
    units: dict[str, dict[str, np.ndarray]]
    class_columns: set[str]
    labels: np.ndarray
    measured: np.ndarray
    class_names: list[str]
    activation_files: dict[str, Path]
    untrained_units: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def layers(self) -> list[str]:
        return list(self.summary)

    def activations(self, layer: str) -> np.ndarray:
        """The layer's stored activations of the measured rows (images x units), read from disk."""
        values = self._stored(layer)
        return values if self.measured.all() else values[self.measured]

    def unit_activations(self, layer: str, units: Sequence[int]) -> np.ndarray:
        """Some units' stored activations of the measured rows (images x units), read from the file
        without mapping the rest of the layer (``read_units``)."""
        block = read_units(self._stored(layer), list(units))
        return block if self.measured.all() else block[self.measured]

    def _stored(self, layer: str) -> np.ndarray:
        path = self.activation_files.get(layer)
        if path is None or not path.is_file():
            raise UserInputError(
                f"The activations of layer {layer!r} are not in {self.directory / 'activations'}; "
                "run the study again to rebuild them."
            )
        return np.load(path, mmap_mode="r")

    def column_kind(self, column: str) -> str | None:
        """The column's kind as summary.json records it (``value``, ``class``, ``count``, ``flag``)."""
        for layer in self.summary.values():
            stats = layer.get("columns", {}).get(column)
            if stats and "kind" in stats:
                return stats["kind"]
        return None

    def class_name(self, label: Any) -> str:
        """The data set's name of a label value (as units.csv or labels.npy hold it)."""
        try:
            index = int(label)
        except (TypeError, ValueError):
            return str(label)
        if 0 <= index < len(self.class_names) and str(label).lstrip("-").isdigit():
            return self.class_names[index]
        return str(label)


def _require(directory: Path, name: str) -> Path:
    path = directory / name
    if not path.is_file():
        raise UserInputError(
            f"{path} is missing: {directory} is not the output directory of a finished run "
            "(a run of this version writes units.csv, summary.json, spec.resolved.yaml, run.json, "
            "labels.npy, measured.npy and rows.json)."
        )
    return path


def numeric_units(path: Path, class_columns: set[str]) -> dict[str, dict[str, np.ndarray]]:
    """units.csv as layer -> column -> array: floats (flags as 0/1, NaN for empty cells), class columns as text."""
    layers = {}
    for layer, columns in read_units_csv(path).items():
        converted = {}
        for column, cells in columns.items():
            if column in class_columns:
                converted[column] = np.asarray(cells, dtype=object)
            else:
                converted[column] = np.asarray([_number(cell) for cell in cells], dtype=np.float64)
        layers[layer] = converted
    return layers


def _number(cell: str) -> float:
    if cell in ("true", "false"):
        return float(cell == "true")
    try:
        return float(cell)
    except ValueError:
        return math.nan


def load_finished_run(directory: Path) -> FinishedRun:
    """Read a finished run's outputs; a missing file is a UserInputError naming it."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserInputError(f"Run directory {str(directory)!r} does not exist.")
    summary = json.loads(_require(directory, "summary.json").read_text(encoding="utf-8"))
    record = json.loads(_require(directory, "run.json").read_text(encoding="utf-8"))
    spec = yaml.safe_load(_require(directory, "spec.resolved.yaml").read_text(encoding="utf-8"))
    rows = json.loads(_require(directory, ROWS_FILE).read_text(encoding="utf-8"))
    class_columns = {
        column for layer in summary.values() for column, stats in layer["columns"].items() if "n_distinct" in stats
    }
    units = numeric_units(_require(directory, "units.csv"), class_columns)
    untrained_csv = directory / "untrained" / "units.csv"
    untrained = numeric_units(untrained_csv, class_columns) if untrained_csv.is_file() else {}
    files = {layer: directory / name for layer, name in rows["activations"].items()}  # an absolute name stays
    return FinishedRun(
        directory=directory,
        spec=spec,
        record=record,
        summary=summary,
        units=units,
        class_columns=class_columns,
        labels=np.load(_require(directory, "labels.npy"), allow_pickle=False),
        measured=np.load(_require(directory, "measured.npy"), allow_pickle=False),
        class_names=rows.get("class_names", []),
        activation_files=files,
        untrained_units=untrained,
    )
