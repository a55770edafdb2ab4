"""The report's figures drawn in worker processes: the same files as in one process, the same errors."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from selectivity_eval.core.report import figure_pool
from selectivity_eval.core.report.build import ReportError, build_report, report_after_run
from selectivity_eval.core.report.figure_pool import FigurePool, default_workers, main_can_be_imported
from selectivity_eval.schemas.report import ReportSpec


def copy_run(run_dir: Path, parent: Path) -> Path:
    """The run without its report, as ``parent/run`` (the page names the run's folder)."""
    return shutil.copytree(run_dir, parent / "run", ignore=shutil.ignore_patterns("report", "report.html", "rating*"))


def files(run_dir: Path) -> dict[str, str]:
    paths = [run_dir / "report.html", *sorted((run_dir / "report").rglob("*"))]
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}


def test_one_or_two_workers_write_the_same_report_byte_for_byte(report_run, tmp_path):
    one, two = copy_run(report_run[0], tmp_path / "one"), copy_run(report_run[0], tmp_path / "two")
    build_report(one, workers=1)
    build_report(two, workers=2)
    written = files(one)
    assert sum("_jitter." in name for name in written) >= 10
    assert written == files(two)


def test_every_task_hands_its_result_back_once_whatever_the_workers(tmp_path):
    from PIL import Image

    from selectivity_eval.core.report import plots
    from selectivity_eval.core.report.dataset_images import top_images_grid

    rng = np.random.default_rng(0)
    class_ids = rng.integers(0, 12, 600)
    names = [f"class {i}" for i in range(12)]
    values = [(rng.random(600) + unit * (class_ids == unit)).astype(np.float32) for unit in range(9)]
    histogram = {"ccmas": rng.random(200), "topclass": rng.random(200)}
    tiles = [Image.new("RGB", (72, 60), (40 * i, 90, 200)) for i in range(4)]
    written = {}
    for workers in (1, 2):
        out, results = tmp_path / str(workers), []
        with FigurePool(class_ids, names, (50,), ["png", "svg"], workers=workers) as figures:
            for unit in range(9):
                figures.jitterplot(values[unit], title=f"fc, unit {unit}", seed=[0, 0, unit],
                                   stem=out / f"unit{unit}_jitter", done=lambda path, u=unit: results.append((u, path)))
            promised = figures.figure(plots.layer_histograms, ("fc", histogram, {}, {}), out / "histograms_fc",
                                      done=lambda path: results.append(("histograms", path)))
            figures.call(top_images_grid, (tiles, list("abcd"), out / "top.png"), 4 * 72 * 60 * 3,
                         done=lambda path: results.append(("top", path)))
        assert promised == out / "histograms_fc.png"
        expected = {u: out / f"unit{u}_jitter.png" for u in range(9)} | {"histograms": promised, "top": out / "top.png"}
        assert len(results) == len(expected) and dict(results) == expected
        written[workers] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert len(written[1]) == 2 * 10 + 1 and written[1] == written[2]


def test_an_error_in_a_worker_fails_the_report_as_it_does_in_one_process(report_run, tmp_path):
    failures = {}
    for workers in (1, 2):
        run_dir = copy_run(report_run[0], tmp_path / str(workers))
        rows = json.loads((run_dir / "rows.json").read_text())
        rows["class_names"] = [f"$\\nosuch {name}$" for name in rows["class_names"]]  # bad mathtext: drawing fails
        (run_dir / "rows.json").write_text(json.dumps(rows))
        with pytest.raises(ReportError) as raised:
            report_after_run(run_dir, ReportSpec(), None, workers=workers)
        failures[workers] = str(raised.value).replace(str(run_dir), "RUN")
    assert "the report failed: ValueError" in failures[1]
    assert failures[1] == failures[2]


def test_a_report_with_few_cards_or_an_unguarded_script_draws_in_this_process(monkeypatch):
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))  # python -c: nothing to import again
    assert main_can_be_imported()
    assert default_workers(20, cores=8) == 1
    assert default_workers(10 * figure_pool.MIN_CARDS_PER_WORKER, cores=2) == 2
    assert default_workers(3 * figure_pool.MIN_CARDS_PER_WORKER, cores=8) == 3
    script = types.ModuleType("__main__")
    script.__file__ = "/somewhere/study.py"  # a script: a worker would run its top-level code again
    monkeypatch.setitem(sys.modules, "__main__", script)
    assert not main_can_be_imported() and default_workers(1000, cores=8) == 1
    from selectivity_eval.core.cli.app import main

    script.main = main  # the selectivity-eval command's script: main() runs only under its __name__ guard
    assert main_can_be_imported()
    module = types.ModuleType("__main__")
    module.__spec__ = types.SimpleNamespace(name="selectivity_eval.__main__")  # python -m selectivity_eval
    monkeypatch.setitem(sys.modules, "__main__", module)
    assert main_can_be_imported()
    module.__spec__ = types.SimpleNamespace(name="studies.paper")  # python -m studies.paper: imported again
    assert not main_can_be_imported()
