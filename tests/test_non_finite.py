"""Non-finite values in results (issue 13, item 4): NaN units are no class in summaries, a measure's
infinity fails that measure on that layer alone, and every JSON file stays valid JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import selectivity_eval as se
from selectivity_eval.core.cli.app import app
from selectivity_eval.core.measures.base import Column
from selectivity_eval.core.outputs.results import json_safe, read_units_csv, summarise_layer, write_json
from selectivity_eval.plugins.models.digits_cnn import DigitsCNNSource
from selectivity_eval.testing import check_measure_contract, contract_data

from .report_fixtures import with_reports


def strict_json(path):
    """The file parsed as strict JSON: NaN, Infinity and -Infinity are errors."""

    def refuse(constant):
        raise ValueError(f"{path.name} holds the non-JSON constant {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


class NaNFc1Source(DigitsCNNSource):
    """The digits CNN whose fc2 outputs NaN for its first 6 of 10 units: most units have no value."""

    name = "nan-fc2-digits"

    def load(self, *, seed):
        loaded = super().load(seed=seed)

        def poison(_module, _inputs, output):
            output = output.clone()
            output[:, :6] = float("nan")
            return output

        loaded.module.classifier[3].register_forward_hook(poison)
        return loaded


class NaNModelPlugin:
    @se.hookimpl
    def register_models(self, register):
        register(NaNFc1Source)


class InfiniteOnWideLayers(se.Measure):
    """Each unit's highest activation, but +inf for odd units on layers of more than 32 units."""

    name = "maxinf"
    columns = {"maxinf": se.Column.VALUE}

    def compute(self, stats):
        values = stats.unit_max.double()
        if stats.n_units > 32:
            values[1::2] = float("inf")
        return {"maxinf": values}


class InfinitePlugin:
    @se.hookimpl
    def register_measures(self, register):
        register(InfiniteOnWideLayers)


def test_nan_is_no_class_in_a_summary_even_when_nan_units_are_the_largest_group():
    classes = np.array([3.0, np.nan, np.nan, 7.0, 3.0, np.nan, np.nan])
    labels = np.array(["cat", None, None, "dog", "dog", None, None], dtype=object)
    kinds = {"a_class": Column.CLASS, "b_class": Column.CLASS}
    summary = summarise_layer({"a_class": classes, "b_class": labels}, kinds)
    described = {"kind": "class", "role": "detail"}
    assert summary["columns"]["a_class"] == {**described, "n_distinct": 2, "most_common": 3.0, "nan_count": 4}
    assert summary["columns"]["b_class"] == {**described, "n_distinct": 2, "most_common": "dog", "nan_count": 4}
    all_nan = summarise_layer({"a_class": np.full(3, np.nan)}, {"a_class": Column.CLASS})
    assert all_nan["columns"]["a_class"] == {**described, "n_distinct": 0, "most_common": None, "nan_count": 3}


def test_json_outputs_write_non_finite_numbers_as_null_with_a_count(tmp_path):
    data = {"layer": {"mean": float("inf"), "values": [1.0, np.nan, np.float32(-np.inf)]}, "ok": np.float32(0.5)}
    write_json(tmp_path / "out.json", data)
    assert strict_json(tmp_path / "out.json") == {
        "layer": {"mean": None, "values": [1.0, None, None], "non_finite_as_null": 3},
        "ok": 0.5,
    }
    assert json_safe({"finite": [1.5, 2]}) == {"finite": [1.5, 2]}  # nothing added when nothing replaced


def test_a_run_whose_nan_units_outnumber_every_class_writes_every_output(registered_plugin, write_spec, tmp_path):
    registered_plugin(NaNModelPlugin(), name="nan-model-plugin")
    spec = write_spec(
        {
            "model": "nan-fc2-digits",
            "dataset": {"plugin": "digits", "split": "test"},
            "layers": [{"name": "fc1", "relu": True}, "fc2"],
            "measures": ["topclass", "ccmas", "localist"],
            "device": "cpu",
        }
    )
    with pytest.warns(UserWarning, match="6 of 10 units have NaN"), with_reports():
        result = CliRunner().invoke(app, [str(spec), "--quiet"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "report.html").is_file()
    summary = strict_json(tmp_path / "run" / "summary.json")
    fc2 = summary["fc2"]["columns"]
    for column in ("topclass_class", "ccmas_class"):
        assert fc2[column]["nan_count"] == 6
        assert fc2[column]["most_common"] in range(10)  # a class, never the NaN group
        assert 1 <= fc2[column]["n_distinct"] <= 4
    assert summary["fc1"]["columns"]["topclass_class"]["nan_count"] == 0
    assert strict_json(tmp_path / "run" / "run.json")["status"] == "ok"
    units = read_units_csv(tmp_path / "run" / "units.csv")
    assert units["fc2"]["topclass_class"] == ["nan"] * 6 + units["fc2"]["topclass_class"][6:]
    assert "nan" not in units["fc2"]["topclass_class"][6:]


def test_a_measure_returning_infinity_fails_on_that_layer_and_every_json_stays_valid(
    registered_plugin, write_spec, tmp_path
):
    registered_plugin(InfinitePlugin(), name="infinite-plugin", distribution="infinite-dist")
    spec = write_spec(
        {
            "model": "digits-cnn",
            "dataset": {"plugin": "digits", "split": "test"},
            "layers": [{"name": "fc1", "relu": True}, "fc2"],
            "measures": ["topclass", "maxinf"],
            "device": "cpu",
        }
    )
    with with_reports():
        result = CliRunner().invoke(app, [str(spec), "--quiet"])
    assert result.exit_code == 1, result.output
    assert "'maxinf'" in result.output and "'infinite-plugin'" in result.output and "'fc1'" in result.output
    assert "infinite for" in result.output
    run_dir = tmp_path / "run"
    record = strict_json(run_dir / "run.json")
    assert [(f["measure"], f["layer"]) for f in record["failures"]] == [("maxinf", "fc1")]
    summary = strict_json(run_dir / "summary.json")
    assert "maxinf" not in summary["fc1"]["columns"] and "maxinf" in summary["fc2"]["columns"]
    assert summary["fc1"]["columns"]["topclass"]["nan_count"] == 0
    units = read_units_csv(run_dir / "units.csv")
    assert all(cell == "" for cell in units["fc1"]["maxinf"])
    assert all(cell not in ("", "nan", "inf") for cell in units["fc2"]["maxinf"])
    assert (run_dir / "report.html").is_file()


def test_the_contract_check_catches_an_infinite_value_column():
    with pytest.raises(AssertionError, match="'maxinf'.*infinite"):
        activations, labels = contract_data(n_units=40)
        check_measure_contract(InfiniteOnWideLayers(), activations, labels)
