"""A plugin measure that raises on one layer: the run names the plugin and the layer, keeps every
other result (its own on the other layers included) and exits non-zero."""

from __future__ import annotations

import json

from typer.testing import CliRunner

import selectivity_eval as se
from selectivity_eval.core.cli.app import app
from selectivity_eval.core.outputs.results import read_units_csv


class FailsOnWideLayers(se.Measure):
    """The highest activation; raises on layers of more than 32 units."""

    name = "fragile"
    columns = {"fragile": se.Column.VALUE}

    def compute(self, stats):
        if stats.n_units > 32:
            raise RuntimeError(f"cannot handle {stats.n_units} units")
        return {"fragile": stats.unit_max.double()}


class FragilePlugin:
    @se.hookimpl
    def register_measures(self, register):
        register(FailsOnWideLayers)


def test_a_measure_failing_on_one_layer_names_plugin_and_layer_and_keeps_the_rest(registered_plugin, write_spec, tmp_path):
    registered_plugin(FragilePlugin(), name="fragile-plugin", distribution="fragile-dist", version="0.0.1")
    spec = write_spec(
        {
            "model": "digits-cnn",
            "dataset": {"plugin": "digits", "split": "test"},
            "layers": [{"name": "conv2", "relu": True}, {"name": "fc1", "relu": True}, "fc2"],
            "measures": ["topclass", "fragile", "localist"],
            "device": "cpu",
        }
    )
    result = CliRunner().invoke(app, [str(spec), "--quiet"])
    assert result.exit_code == 1
    assert "'fragile'" in result.output and "'fragile-plugin'" in result.output and "'fc1'" in result.output
    assert "cannot handle 64 units" in result.output
    assert "conv2" not in result.output and "'fc2'" not in result.output

    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "failed"
    assert record["failures"] == [
        {"measure": "fragile", "plugin": "fragile-plugin", "layer": "fc1", "error": "RuntimeError: cannot handle 64 units"}
    ]
    assert {"plugin": "fragile-plugin", "distribution": "fragile-dist", "version": "0.0.1"} in record["plugins"]

    units = read_units_csv(tmp_path / "run" / "units.csv")
    assert {layer: len(columns["unit"]) for layer, columns in units.items()} == {"conv2": 32, "fc1": 64, "fc2": 10}
    assert all(cell == "" for cell in units["fc1"]["fragile"])  # no result where it failed ...
    assert all(cell not in ("", "nan") for cell in units["conv2"]["fragile"] + units["fc2"]["fragile"])  # ... only there
    for layer in units.values():  # the other measures are complete on every layer
        assert all(cell not in ("", "nan") for cell in layer["topclass"] + layer["localist"])

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "fragile" not in summary["fc1"]["columns"] and "fragile" in summary["fc2"]["columns"]
    assert "topclass" in summary["fc1"]["columns"] and "n_localist" in summary["fc1"]
