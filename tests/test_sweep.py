"""`selectivity-eval sweep`: a template over a grid, a run directory per combination, one summary across them."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from selectivity_eval.core.cli.app import app
from selectivity_eval.schemas.spec import RunSpec

NO_REPORT = {"report": False} if "report" in RunSpec.model_fields else {}
TEMPLATE = {
    "model": "digits-cnn",
    "dataset": {"plugin": "digits", "split": "test"},
    "layers": ["fc2"],
    "measures": ["ccmas", "topclass"],
    "batch_size": 64,
    "device": "cpu",
    **NO_REPORT,
}
GRID = {"weights": ["builtin", "none"], "layers": ["fc2", [{"name": "fc1", "relu": True}, "fc2"]]}
NAMES = ["builtin_fc2", "builtin_fc1+fc2", "none_fc2", "none_fc1+fc2"]


def write_sweep(tmp_path: Path, sweep: dict, name: str = "sweep") -> Path:
    (tmp_path / "template.yaml").write_text(yaml.safe_dump(TEMPLATE, sort_keys=False))
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"template": "template.yaml", "output": str(tmp_path / name), **sweep}))
    return path


def sweep(path: Path, *args: str):
    return CliRunner().invoke(app, ["sweep", str(path), *args])


def summary_rows(directory: Path) -> list[dict[str, str]]:
    with (directory / "sweep_summary.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_grid_of_weights_and_layers_runs_each_combination_and_summarises_them(tmp_path):
    result = sweep(write_sweep(tmp_path, {"grid": GRID}))
    assert result.exit_code == 0, result.output
    out = tmp_path / "sweep"
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(NAMES)
    for name in NAMES:
        resolved = yaml.safe_load((out / name / "spec.resolved.yaml").read_text())
        assert resolved["model"]["weights"] == name.split("_")[0]
        assert resolved["output"] == str(out / name)
    rows = summary_rows(out)
    assert [(row["run"], row["layer"]) for row in rows] == [
        ("builtin_fc2", "fc2"),
        ("builtin_fc1+fc2", "fc1"),
        ("builtin_fc1+fc2", "fc2"),
        ("none_fc2", "fc2"),
        ("none_fc1+fc2", "fc1"),
        ("none_fc1+fc2", "fc2"),
    ]
    assert list(rows[0]) == [
        "run",
        "weights",
        "layers",
        "status",
        "layer",
        "n_units",
        "n_localist",
        "ccmas_mean",
        "topclass_mean",
        "error",
    ]
    for row in rows:
        layer = json.loads((out / row["run"] / "summary.json").read_text())[row["layer"]]
        assert float(row["ccmas_mean"]) == layer["columns"]["ccmas"]["mean"]
        assert int(row["n_units"]) == layer["n_units"] and row["status"] == "ok"
    assert rows[1]["layers"] == "fc1+fc2" and rows[0]["weights"] == "builtin"
    assert float(rows[0]["ccmas_mean"]) != float(rows[3]["ccmas_mean"])  # trained and random weights differ
    assert [run["status"] for run in json.loads((out / "sweep.json").read_text())["runs"]] == ["ok"] * 4
    assert "Sweep: 4 runs" in result.stdout and "sweep_summary.csv" in result.stdout


def test_a_failing_run_is_recorded_and_the_others_complete(tmp_path):
    result = sweep(write_sweep(tmp_path, {"grid": {"layers": ["fc2", "fc9"]}}), "-q")
    assert result.exit_code == 1
    assert "run fc9 failed" in result.output and "Unknown layer" in result.output
    rows = summary_rows(tmp_path / "sweep")
    assert [(row["run"], row["status"]) for row in rows] == [("fc2", "ok"), ("fc9", "failed")]
    assert "fc9" in rows[1]["error"] and rows[1]["layer"] == ""
    assert (tmp_path / "sweep" / "fc2" / "units.csv").is_file()


def test_any_spec_key_is_an_axis_by_its_dotted_path(tmp_path):
    result = sweep(write_sweep(tmp_path, {"grid": {"dataset.split": ["train", "test"], "seed": [3]}}), "-q")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir()) == [
        "split-test_seed-3",
        "split-train_seed-3",
    ]
    resolved = yaml.safe_load((tmp_path / "sweep" / "split-train_seed-3" / "spec.resolved.yaml").read_text())
    assert resolved["dataset"]["split"] == "train" and resolved["seed"] == 3
    record = json.loads((tmp_path / "sweep" / "split-train_seed-3" / "run.json").read_text())
    assert record["dataset"]["identity"]["n_images"] == 1347


@pytest.mark.parametrize(
    ("sweep_file", "expected"),
    [
        ({"grid": {"layers": ["fc2"]}, "grdi": 1}, ["grdi", "unknown key"]),
        ({"template": "template.yaml"}, ["grid", "required"]),
        ({"grid": {"layers": []}}, ["grid", "at least one value"]),
        ({"grid": {"measures": [["ccmas", {"name": "precision", "top_n": 0}]]}}, ["[measures-", "top_n"]),
        ({"grid": {"models": ["digits-cnn", "no-such-model"]}}, ["[no-such-model] model.plugin", "Unknown model"]),
    ],
)
def test_bad_sweep_exits_2_before_any_run(tmp_path, sweep_file, expected):
    result = sweep(write_sweep(tmp_path, sweep_file))
    assert result.exit_code == 2, result.output
    for fragment in expected:
        assert fragment in result.output, (fragment, result.output)
    assert not (tmp_path / "sweep").exists()


def test_sweep_on_a_local_cluster_matches_the_local_sweep(tmp_path):
    """The sweep starts one LocalCluster (2 workers on 127.0.0.1) for all its runs, and closes it.

    The local sweep runs torch on one thread, as the workers do: then, and only then, docs/distributed.md
    promises bit-identical activations (and so results) on any machine.
    """
    pytest.importorskip("distributed")
    grid = {"weights": ["builtin", "none"], "layers": [[{"name": "fc1", "relu": True}, "fc2"]]}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert sweep(write_sweep(tmp_path, {"grid": grid}, "local"), "-q").exit_code == 0
    finally:
        torch.set_num_threads(threads)
    on_dask = {"grid": grid, "executor": {"kind": "dask", "local_cluster": {"workers": 2}}}
    result = sweep(write_sweep(tmp_path, on_dask, "dask"), "-q")
    assert result.exit_code == 0, result.output
    for name in ("builtin_fc1+fc2", "none_fc1+fc2"):
        for file in ("units.csv", "summary.json"):
            assert (tmp_path / "local" / name / file).read_bytes() == (tmp_path / "dask" / name / file).read_bytes()
        executor = json.loads((tmp_path / "dask" / name / "run.json").read_text())["executor"]
        assert executor["kind"] == "dask" and executor["local_cluster"]["workers"] == 2
        assert executor["shard_tasks"] == 8  # 450 images in shards of 64 (2 threads x 4), counted per run
    local_rows, dask_rows = summary_rows(tmp_path / "local"), summary_rows(tmp_path / "dask")
    assert local_rows == dask_rows


def test_dask_sweep_without_the_extra_exits_2_before_writing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    monkeypatch.setitem(sys.modules, "dask", None)
    on_dask = {"grid": {"layers": ["fc2"]}, "executor": {"kind": "dask", "local_cluster": {"workers": 2}}}
    result = sweep(write_sweep(tmp_path, on_dask))
    assert result.exit_code == 2 and "pip install 'selectivity-eval[dask]'" in result.output
    assert not (tmp_path / "sweep").exists()
