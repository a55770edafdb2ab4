"""Reports in tests: off for every study a test runs, except where a test turns them on.

Building report.html takes seconds per run, which every study in the suite would pay; so a
session-wide patch skips it, and ``with_reports()`` turns it back on. ``report_run`` is one small
digits study with every section a report can have (chance levels, the untrained baseline, AM
images, SVG figures), shared by tests/test_report.py and tests/test_rating_browser.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

REPORT_SPEC = {
    "model": "digits-cnn",
    "dataset": {"plugin": "digits", "split": "test"},
    "layers": [{"name": "conv2", "relu": True}, {"name": "fc1", "relu": True}, "fc2"],
    "measures": ["localist", {"name": "precision", "top_n": 50}, "ccmas", "topclass"],
    "chance": {"permutations": 20, "seed": 0},
    "untrained_baseline": True,
    "am": {"method": "gradient-ascent", "layers": ["fc1", "fc2"], "units": {"top": 3, "by": "ccmas"}, "steps": 8,
           "lr": 0.1, "parameterisation": "pixel", "jitter": 0, "scale": [1, 1], "rotate": 0},
    "report": {"units_per_measure": 2, "random_units": 1, "seed": 0},
    "device": "cpu",
    "seed": 0,
}


@pytest.fixture(scope="session", autouse=True)
def _no_reports_unless_asked() -> Iterator[None]:
    from selectivity_eval.core.study import run as run_module

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_module, "report_after_run", lambda output_dir, report, reporter: None)
        yield


@contextmanager
def with_reports() -> Iterator[None]:
    """Studies run inside this block build their report, as outside the tests."""
    from selectivity_eval.core.report import build as report
    from selectivity_eval.core.study import run as run_module

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_module, "report_after_run", report.report_after_run)
        yield


@pytest.fixture(scope="session")
def report_run(tmp_path_factory) -> tuple[Path, str]:
    """The run directory of a small digits study with its report, and the command's output."""
    from selectivity_eval.core.cli.app import app

    root = tmp_path_factory.mktemp("report")
    spec = root / "spec.yaml"
    spec.write_text(yaml.safe_dump({**REPORT_SPEC, "output": str(root / "run")}, sort_keys=False))
    with with_reports():
        result = CliRunner().invoke(app, ["run", str(spec)], env={**os.environ, "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return root / "run", result.output
