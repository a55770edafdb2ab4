"""A real third-party distribution, installed with pip, end to end: examples/plugin-sparseness.

CI (.ci/run) installs it beside selectivity-eval; without it these tests are skipped
(`pip install ./examples/plugin-sparseness`).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from importlib import metadata

import pytest
import yaml

from selectivity_eval.core.registry.manager import LOAD_PLUGINS_ENV

from .conftest import REPO

DISTRIBUTION = "selectivity-eval-sparseness"
try:
    VERSION = metadata.version(DISTRIBUTION)
except metadata.PackageNotFoundError:
    VERSION = None

pytestmark = pytest.mark.skipif(VERSION is None, reason=f"{DISTRIBUTION} is not installed (.ci/run installs it)")


def cli(*args, cwd):
    """``selectivity-eval ARGS`` in a fresh process, with every installed plugin autoloaded."""
    env = {key: value for key, value in os.environ.items() if key != LOAD_PLUGINS_ENV}
    return subprocess.run(
        [sys.executable, "-m", "selectivity_eval", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_plugins_json_lists_the_installed_measure_with_distribution_and_version(tmp_path):
    result = cli("plugins", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [row for row in json.loads(result.stdout) if row["distribution"] == DISTRIBUTION]
    assert rows == [
        {
            "name": "sparseness",
            "kind": "measure",
            "distribution": DISTRIBUTION,
            "version": VERSION,
            "plugin": "sparseness",
            "description": rows[0]["description"],
        }
    ]
    assert rows[0]["description"].startswith("Lifetime sparseness")


def test_a_spec_uses_the_installed_measure(tmp_path):
    spec = {
        "model": "digits-cnn",
        "dataset": {"plugin": "digits", "split": "test"},
        "layers": [{"name": "fc1", "relu": True}, "fc2"],
        "measures": ["sparseness", {"name": "sparseness", "label": "sparseness_clip", "negatives": "clip"}, "topclass"],
        "output": "run",
        "device": "cpu",
        "report": {"enabled": False},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    result = cli("spec.yaml", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "run" / "units.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[2:] == [
        "sparseness", "sparseness_clip", "topclass_class", "topclass_count", "topclass", "topclass_tied", "silent"
    ]
    fc1 = [float(row["sparseness"]) for row in rows if row["layer"] == "fc1"]
    assert len(fc1) == 64 and all(0 <= value <= 1 for value in fc1 if value == value)
    # fc2 holds signed logits: NaN by default, clipped at 0 on request
    assert all(row["sparseness"] == "nan" for row in rows if row["layer"] == "fc2")
    assert all(0 < float(row["sparseness_clip"]) <= 1 for row in rows if row["layer"] == "fc2")
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert {"plugin": "sparseness", "distribution": DISTRIBUTION, "version": VERSION} in record["plugins"]
    assert record["status"] == "ok"


def test_the_example_plugins_own_tests_pass_with_the_shipped_fixtures(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != LOAD_PLUGINS_ENV}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(REPO / "examples" / "plugin-sparseness")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "skipped" not in result.stdout
