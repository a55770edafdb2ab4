"""The command line on the digits example, and bad input reported at its place, with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import selectivity_eval as se
from selectivity_eval.core.cli.app import app
from selectivity_eval.core.spec.default import default_spec_path
from selectivity_eval.core.outputs.results import read_units_csv

from .conftest import EXAMPLE_SPEC

LAYER_UNITS = {"conv1": 16, "conv2": 32, "fc1": 64, "fc2": 10}
MEASURE_COLUMNS = [
    "localist_class", "localist", "localist_norm", "is_localist", "localist_off",
    "precision_class", "precision", "precision_min", "precision_max", "precision_ties", "precision_tied",
    "ccmas_class", "ccmas", "topclass_class", "topclass_count", "topclass", "topclass_tied", "silent",
]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """The console script, in the form the user named: `selectivity-eval spec.yaml`."""
    out = tmp_path_factory.mktemp("digits") / "run"
    script = Path(sys.executable).with_name("selectivity-eval")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "selectivity_eval"]
    completed = subprocess.run(
        [*command, str(EXAMPLE_SPEC), "--output", str(out)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "120"},
    )
    return completed, out


def test_digits_example_writes_every_output(digits_run):
    completed, out = digits_run
    assert completed.returncode == 0, completed.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "activations", "labels.npy", "measured.npy", "report", "report.html", "rows.json", "run.json",
        "spec.resolved.yaml", "summary.json", "units.csv",
    ]
    units = read_units_csv(out / "units.csv")
    assert {layer: len(columns["unit"]) for layer, columns in units.items()} == LAYER_UNITS
    assert list(units["fc2"]) == ["unit", *MEASURE_COLUMNS]
    assert "Selectivity by layer" in completed.stdout and "units.csv" in completed.stdout
    assert completed.stdout.strip().splitlines()[-1] == f"Report: {out / 'report.html'}"


def test_digits_fc1_has_22_silent_units_and_the_means_leave_them_out(digits_run):
    completed, out = digits_run
    units = read_units_csv(out / "units.csv")
    summary = json.loads((out / "summary.json").read_text())
    silent = np.array([cell == "true" for cell in units["fc1"]["silent"]])
    assert silent.sum() == 22 and len(silent) == 64
    fc1 = summary["fc1"]
    assert (fc1["summary_units"], fc1["n_silent"], fc1["n_responsive"]) == ("responsive", 22, 42)
    precision = np.array([float(cell) for cell in units["fc1"]["precision"]])
    assert fc1["columns"]["precision"]["mean"] == pytest.approx(precision[~silent].mean(), rel=1e-12)
    assert fc1["columns"]["precision"]["mean"] != pytest.approx(precision.mean(), rel=1e-6)
    assert fc1["columns"]["silent"]["role"] == "detail" and fc1["columns"]["silent"]["mean"] == 22 / 64
    assert summary["conv1"]["n_silent"] == 0
    # three nearly silent conv2 units: a precision anywhere from 0.1 to 1 over the orders of their ties
    assert summary["conv2"]["n_tie_dependent"] == {"precision_tied": 3, "topclass_tied": 0}
    assert fc1["n_tie_dependent"] == {"precision_tied": 0, "topclass_tied": 0}  # the 22 silent ones left out
    assert "Silent: units whose activation never varies" in completed.stdout


def test_in_process_run_writes_the_cli_units_csv(digits_run, tmp_path):
    _, out = digits_run
    result = se.run_study(EXAMPLE_SPEC, output=tmp_path / "run")
    assert result.output_dir == tmp_path / "run" and result.failures == []
    assert (result.output_dir / "units.csv").read_bytes() == (out / "units.csv").read_bytes()
    assert result.summary == json.loads((out / "summary.json").read_text())
    assert set(result.results) == set(LAYER_UNITS)
    tables = result.tables()
    assert len(tables.units) == sum(LAYER_UNITS.values())
    assert tables.units["precision"].tolist() == [v for layer in LAYER_UNITS for v in result.results[layer]["precision"]]


def test_digits_summary_and_run_record(digits_run):
    _, out = digits_run
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary) == list(LAYER_UNITS)
    fc2 = summary["fc2"]
    assert fc2["n_units"] == 10 and "n_localist" in fc2
    assert set(fc2["columns"]["precision"]) == {"kind", "role", "mean", "median", "max", "nan_count"}
    assert fc2["columns"]["precision"]["role"] == "headline" and fc2["columns"]["localist_norm"]["role"] == "detail"
    assert fc2["columns"]["is_localist"]["kind"] == "flag"
    assert 0 < fc2["columns"]["precision"]["mean"] <= 1
    assert fc2["signed_activations"] is True and summary["fc1"]["signed_activations"] is False
    record = json.loads((out / "run.json").read_text())
    assert record["seed"] == 0 and record["device"] == "cpu" and record["status"] == "ok"
    assert {"torch", "numpy", "python"} <= set(record["versions"])
    assert record["model"]["plugin"] == "digits-cnn" and len(record["model"]["identity"]["weights_sha256"]) == 64
    assert record["dataset"]["identity"]["n_images"] == 1797
    assert set(record["timings_s"]) >= {"load", "extract", "measures"}
    resolved = yaml.safe_load((out / "spec.resolved.yaml").read_text())
    assert resolved["measures"][2] == {"name": "ccmas", "others": "pooled", "eps": 0.0}


def test_output_logit_units_are_selective_for_their_own_digit(digits_run):
    """A sanity check on real data: each trained logit unit prefers its own digit."""
    _, out = digits_run
    fc2 = read_units_csv(out / "units.csv")["fc2"]
    assert fc2["ccmas_class"] == [str(d) for d in range(10)]
    assert fc2["topclass_class"] == [str(d) for d in range(10)]


def test_embedded_default_spec_is_the_digits_example(tmp_path):
    assert default_spec_path().read_text() == EXAMPLE_SPEC.read_text()
    result = CliRunner().invoke(app, ["run", "--quiet", "--output", str(tmp_path / "default")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "default" / "units.csv").is_file()


def test_quiet_prints_nothing_on_success(write_spec, digits_spec):
    digits_spec.pop("output")
    result = CliRunner().invoke(app, [str(write_spec({**digits_spec, "layers": ["fc2"]})), "-q"])
    assert result.exit_code == 0 and result.output == ""


def test_validate_and_schema():
    runner = CliRunner()
    result = runner.invoke(app, ["validate", str(EXAMPLE_SPEC)])
    assert result.exit_code == 0 and "valid" in result.stdout
    schema = json.loads(runner.invoke(app, ["schema"]).stdout)
    assert schema["title"] == "RunSpec"
    assert {"model", "dataset", "layers", "measures", "am", "output", "device", "batch_size", "seed"} <= set(
        schema["properties"]
    )
    assert schema["additionalProperties"] is False
    assert {"type": "string"} in schema["properties"]["model"]["anyOf"]
    assert {"type": "string"} in schema["properties"]["layers"]["items"]["anyOf"]


@pytest.mark.parametrize("command", ["run", "validate"])
def test_an_unknown_kernel_mode_stops_before_any_work(monkeypatch, tmp_path, command):
    monkeypatch.setenv("SELECTIVITY_EVAL_KERNELS", "fastest")
    arguments = [command, str(EXAMPLE_SPEC)] + (["--output", str(tmp_path / "run")] if command == "run" else [])
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 2
    assert "SELECTIVITY_EVAL_KERNELS is 'fastest'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


BAD_SPECS = {
    "typo'd key": (
        "model: {plugin: digits-cnn}\ndataset: {plugin: digits}\nlayers: [fc2]\nmeasuers: [ccmas]\n",
        ["measuers", "line 4", "unknown key"],
    ),
    "typo'd plugin parameter": (
        "model: {plugin: digits-cnn}\ndataset: {plugin: digits, spilt: test}\nlayers: [fc2]\n",
        ["dataset.spilt", "line 2"],
    ),
    "bad pool": (
        "model: {plugin: digits-cnn}\ndataset: digits\nlayers:\n  - conv1\n  - fc1\n  - {name: conv2, pool: maxx}\n",
        ["layers[2].pool", "line 6"],
    ),
    "unknown plugin": (
        "model: {plugin: alexnet-typo}\ndataset: digits\nlayers: [fc2]\n",
        ["model.plugin", "alexnet-typo", "digits-cnn"],
    ),
    "unknown measure": (
        "model: digits-cnn\ndataset: digits\nlayers: [fc2]\nmeasures: [localist, ccmass]\n",
        ["measures[1].name", "ccmass"],
    ),
    "unknown layer": (
        "model: digits-cnn\ndataset: digits\nlayers: [fc2, fc9]\n",
        ["layers[1].name", "fc9", "conv1 -> features.0"],
    ),
    "missing weights file": (
        "model: {plugin: digits-cnn, weights: /no/such/weights.pt}\ndataset: digits\nlayers: [fc2]\n",
        ["/no/such/weights.pt", "model.weights"],
    ),
    "not a mapping": ("- just\n- a list\n", ["YAML mapping"]),
    "broken YAML": ("model: {plugin: digits-cnn\n", ["not valid YAML"]),
    "duplicate layer": (
        "model: digits-cnn\ndataset: digits\nlayers: [fc2, fc1, fc2]\n",
        ["layers (line 3): names the layer 'fc2' twice"],
    ),
    "no measures": ("model: digits-cnn\ndataset: digits\nlayers: [fc2]\nmeasures: []\n", ["measures"]),
    "am without a method": ("model: digits-cnn\ndataset: digits\nlayers: [fc2]\nam: {steps: 3}\n", ["am.method"]),
    "chance on an unknown column": (
        "model: digits-cnn\ndataset: digits\nlayers: [fc2]\nmeasures: [ccmas]\nchance: {columns: [ccmas, auroc]}\n",
        ["chance.columns[1]", "'auroc'"],
    ),
    "two measures with one name": (
        "model: digits-cnn\ndataset: digits\nlayers: [fc2]\nmeasures: [precision, {name: precision, top_n: 60}]\n",
        ["measures", "twice", "label"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec_exits_2_naming_the_fault_without_traceback(case, write_spec, tmp_path):
    text, expected = BAD_SPECS[case]
    spec = write_spec(text + f"output: {tmp_path / 'run'}\n" if text.startswith("model") else text)
    result = CliRunner().invoke(app, [str(spec)])
    assert result.exit_code == 2, result.output
    for fragment in expected:
        assert fragment in result.output, (fragment, result.output)
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_missing_spec_file_exits_2(tmp_path):
    result = CliRunner().invoke(app, [str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "nope.yaml" in result.output and "does not exist" in result.output


def test_debug_shows_the_traceback(tmp_path):
    result = CliRunner().invoke(app, ["run", str(tmp_path / "nope.yaml"), "--debug"])
    assert result.exit_code != 0
    assert result.exception is not None and "nope.yaml" in str(result.exception)


def test_labelled_measure_runs_twice_with_own_columns(write_spec, digits_spec, tmp_path):
    digits_spec.pop("output")
    spec = write_spec(
        {**digits_spec, "layers": ["fc2"], "measures": ["precision", {"name": "precision", "top_n": 60, "label": "precision60"}]}
    )
    result = CliRunner().invoke(app, [str(spec), "-q"])
    assert result.exit_code == 0, result.output
    header = (tmp_path / "run" / "units.csv").read_text().splitlines()[0]
    tie_columns = "{0}_min,{0}_max,{0}_ties,{0}_tied"
    assert header == (
        f"layer,unit,precision_class,precision,{tie_columns.format('precision')},"
        f"precision60_class,precision60,{tie_columns.format('precision60')},silent"
    )
