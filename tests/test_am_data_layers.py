"""AM's data-set maxima come from the run's own pass: no second pass over the images (AMMethod.data_layers)."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from typer.testing import CliRunner

from selectivity_eval.core.cli.app import app
from selectivity_eval.plugins.am import gradient_ascent

from selectivity_eval.plugins.datasets.digits import digits_arrays
from selectivity_eval.plugins.models.digits_cnn import DigitsCNNSource

from .test_am import TINY, _digits_spec, pre_relu_maxima


@pytest.fixture(scope="module")
def digits_model():
    return DigitsCNNSource().load(seed=0)


@pytest.fixture(scope="module")
def digits_images():
    return torch.from_numpy(digits_arrays("all")[0])


def am_rows(run) -> dict[tuple[str, int], float]:
    with (run / "am.csv").open(newline="") as handle:
        return {(row["layer"], int(row["unit"])): float(row["data_max"]) for row in csv.DictReader(handle)}


def no_second_pass(*_args, **_kwargs):
    raise AssertionError("AM made a pass of its own over the data set")


def test_the_objective_is_read_in_the_runs_pass_and_stored_with_its_layers(tmp_path, monkeypatch, digits_model, digits_images):
    monkeypatch.setattr(gradient_ascent, "dataset_maxima", no_second_pass)
    layers = [{"name": "conv2", "pool": "max", "relu": True}, "fc2"]  # conv2's measured value is not AM's objective
    am = {**TINY, "units": {"top": 2, "by": "ccmas"}, "steps": 4}
    result = CliRunner().invoke(app, [str(_digits_spec(tmp_path, am, layers)), "-q"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    expected = pre_relu_maxima(digits_model, "features.2", digits_images)
    rows = am_rows(run)
    for (layer, unit), data_max in rows.items():
        if layer == "conv2":
            assert data_max == pytest.approx(float(expected[unit]), rel=1e-5)
    cache = json.loads((run / "run.json").read_text())["activation_cache"]
    assert cache == {"conv2": "miss", "fc2": "miss", "conv2.am-center": "miss"}  # fc2's measured logits are the objective
    assert not (run / "units.csv").read_text().count("am-center")  # stored, never measured
    result = CliRunner().invoke(app, [str(_digits_spec(tmp_path, am, layers)), "-q"])
    assert result.exit_code == 0, result.output
    assert set(json.loads((run / "run.json").read_text())["activation_cache"].values()) == {"hit"}
    assert am_rows(run) == rows


def test_a_method_that_asks_for_no_readings_still_gets_the_maxima_from_a_pass_of_its_own(tmp_path, monkeypatch):
    passes = []
    real = gradient_ascent.dataset_maxima
    monkeypatch.setattr(gradient_ascent.GradientAscent, "data_layers", lambda self, model, layers: [])
    monkeypatch.setattr(gradient_ascent, "dataset_maxima", lambda *a, **k: passes.append(a[2]) or real(*a, **k))
    layers = [{"name": "conv2", "pool": "max", "relu": True}]
    am = {**TINY, "units": [0, 1], "steps": 4}
    result = CliRunner().invoke(app, [str(_digits_spec(tmp_path, am, layers)), "-q"])
    assert result.exit_code == 0, result.output
    assert passes == [{"conv2": "features.2"}]
    assert all(value == value for value in am_rows(tmp_path / "run").values())  # finite, not NaN
