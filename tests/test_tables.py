"""``se.load_run``: a finished run as pandas tables whose values equal the files exactly, typed by the
measures' column kinds; and ``se.jitterplot`` of one unit from the library."""

from __future__ import annotations

import csv
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import selectivity_eval as se
from selectivity_eval.core.cli.app import app
from selectivity_eval.core.measures.base import Column
from selectivity_eval.core.outputs.tables import typed_column

SPEC = {
    "model": "digits-cnn",
    "dataset": {"plugin": "digits", "split": "test"},
    "layers": [{"name": "fc1", "relu": True}, "conv2", "fc2"],  # not in module order: the spec's order counts
    "measures": ["localist", {"name": "precision", "top_n": 50}, {"name": "precision", "label": "p10", "top_n": 10},
                 "ccmas", "topclass"],
    "chance": {"permutations": 4, "seed": 0, "columns": ["precision", "topclass_count"]},
    "untrained_baseline": True,
    "am": {"method": "gradient-ascent", "layers": ["fc2"], "units": [1, 7], "steps": 2, "parameterisation": "pixel",
           "jitter": 0, "scale": [1, 1], "rotate": 0},
    "device": "cpu",
    "seed": 0,
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    spec = root / "spec.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "output": str(root / "run")}, sort_keys=False))
    result = CliRunner().invoke(app, ["run", str(spec), "--quiet"])
    assert result.exit_code == 0, result.output
    return root / "run"


def _cells(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _assert_equal_to_cells(table: pd.DataFrame, rows: list[dict[str, str]]):
    assert len(table) == len(rows) and list(table.columns) == list(rows[0])
    for column in table.columns:
        for value, row in zip(table[column], rows):
            cell = row[column]
            if isinstance(value, (bool, np.bool_)):
                assert cell == ("true" if value else "false"), (column, cell, value)
            elif isinstance(value, float) and math.isnan(value):
                assert cell in ("nan", ""), (column, cell)
            elif isinstance(value, (float, np.floating)):
                assert value == float(cell), (column, cell, value)  # exact: no rounding on the way
            else:
                assert str(value) == cell, (column, cell, value)


KIND_DTYPES = {Column.VALUE: "float64", Column.COUNT: "int64", Column.FLAG: "bool", Column.CLASS: "category"}


def test_units_round_trip_exactly_with_dtypes_from_the_column_kinds(run_dir):
    tables = se.load_run(run_dir)
    rows = _cells(run_dir / "units.csv")
    _assert_equal_to_cells(tables.units, rows)
    assert tables.layers == ["fc1", "conv2", "fc2"]
    assert tables.units.groupby("layer", observed=True).size().to_dict() == {"fc1": 64, "conv2": 32, "fc2": 10}
    assert tables.units["unit"].dtype == np.int64
    kinds = tables.column_kinds
    assert kinds["p10_class"] is Column.CLASS and kinds["p10"] is Column.VALUE and kinds["is_localist"] is Column.FLAG
    for column, kind in kinds.items():
        assert str(tables.units[column].dtype) == KIND_DTYPES[kind], column
    for column in ("precision_null_mean", "precision_null_std", "precision_z", "precision_p", "topclass_count_p"):
        assert tables.units[column].dtype == np.float64
    classes = tables.units["ccmas_class"].cat.categories
    assert list(classes) == list(range(10)) and classes.dtype == np.int64  # label values, every class
    assert tables.class_names == {label: str(label) for label in range(10)}


def test_the_other_tables_round_trip_too(run_dir):
    tables = se.load_run(run_dir)
    _assert_equal_to_cells(tables.untrained, _cells(run_dir / "untrained" / "units.csv"))
    assert dict(tables.untrained.dtypes) == dict(tables.units[tables.untrained.columns].dtypes)
    _assert_equal_to_cells(tables.am, _cells(run_dir / "am.csv"))
    assert list(tables.am["unit"]) == [1, 7] and tables.am["activation"].dtype == np.float64
    assert tables.am["top1_class"].dtype == "category" and tables.am["top1_is_ccmas_class"].dtype == bool
    summary = json.loads((run_dir / "summary.json").read_text())
    indexed = tables.summary.set_index(["layer", "column"])
    assert len(indexed) == sum(len(layer["columns"]) for layer in summary.values())
    for layer, entry in summary.items():
        for column, stats in entry["columns"].items():
            for stat, value in stats.items():
                got = indexed.loc[(layer, column), stat]
                assert (got is None and value is None) or (pd.isna(got) and value is None) or got == value
    assert tables.spec["measures"][2]["label"] == "p10" and tables.record["status"] == "ok"
    assert tables.activations("conv2").shape == (450, 32)


def test_a_folder_that_is_not_a_finished_run_is_an_error_naming_the_file(run_dir, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(run_dir, partial)
    (partial / "summary.json").unlink()
    with pytest.raises(se.UserInputError, match=r"summary.json is missing"):
        se.load_run(partial)
    with pytest.raises(se.UserInputError, match="does not exist"):
        se.load_run(tmp_path / "nowhere")
    with pytest.raises(se.UserInputError, match="no layer 'fc9'"):
        se.load_run(run_dir).activations("fc9")


def test_missing_cells_keep_their_kind_with_nullable_dtypes():
    flags = typed_column(pd.Series(["true", "", "false"]), Column.FLAG, [])
    assert str(flags.dtype) == "boolean" and flags[0] is np.True_ and flags[1] is pd.NA
    counts = typed_column(pd.Series(["3", ""]), Column.COUNT, [])
    assert counts.dtype == np.float64 and counts[0] == 3 and math.isnan(counts[1])
    classes = typed_column(pd.Series(["cat", "", "dog"]), Column.CLASS, ["cat", "dog", "eel"])
    assert list(classes.cat.categories) == ["cat", "dog", "eel"] and pd.isna(classes[1])
    guessed = typed_column(pd.Series(["0.5", "nan", ""]), None, [])
    assert guessed.dtype == np.float64 and guessed[0] == 0.5


def test_jitterplot_of_a_unit_from_the_library(run_dir):
    tables = se.load_run(run_dir)
    figure = se.jitterplot(tables, "fc1", 3)
    axes = figure.axes[0]
    assert axes.get_title() == "fc1, unit 3"
    values = tables.activations("fc1")[:, 3].astype(np.float64)
    (points,) = axes.images  # every image's point, painted into one raster over the axes
    left, right, bottom, top = points.get_extent()
    assert (left, right) == axes.get_xlim() and (bottom, top) == axes.get_ylim()
    assert bottom < values.min() and values.max() < top
    painted = np.asarray(points.get_array())[..., 3] > 0
    rows = np.flatnonzero(painted.any(axis=1))
    height = painted.shape[0]
    assert rows.min() <= (top - values.max()) / (top - bottom) * height <= rows.min() + 3  # the highest point
    assert rows.max() - 3 <= (top - values.min()) / (top - bottom) * height <= rows.max() + 1  # the lowest
    with pytest.raises(se.UserInputError, match="layer 'fc1' has 64 units"):
        se.jitterplot(run_dir, "fc1", 64)
