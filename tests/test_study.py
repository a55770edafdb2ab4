"""The paper's whole study, small: the generated ImageNet-validation layout and the paper's spec through the CLI.

The same generator and spec as ``benchmarks/bench_study.py`` (tests/study_layout.py), at 200
images of 10 classes and small image files, with few label shufflings and a short AM, so that it
takes seconds: every stage runs, every output and every file the report refers to exists. Then
kill and resume: a run killed with SIGKILL in the middle of extraction (at an item chosen in
advance, not at a time) is rerun and gives the uninterrupted run's units.csv byte for byte,
without reading again the images it had finished.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import yaml

from .study_layout import PAPER_LAYERS, imagenet_val_layout, study_spec

CLI = [sys.executable, "-c", "from selectivity_eval.core.cli.app import main; main()"]
ALEXNET_UNITS = {"conv1": 64, "conv2": 192, "conv3": 384, "conv4": 256, "conv5": 256, "fc6": 4096, "fc7": 4096,
                 "fc8": 1000}


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return imagenet_val_layout(tmp_path_factory.mktemp("layout"), 200, 10, sides=(64, 96))


def run_cli(spec: dict, path: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return subprocess.run([*CLI, "run", str(path), "--quiet"], capture_output=True, text=True, env=env, timeout=600)


class References(HTMLParser):
    def __init__(self):
        super().__init__()
        self.files: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            target = attrs.get(key)
            if target and not target.startswith(("#", "data:")):
                self.files.append(target)


def test_the_layout_is_what_imagenet_val_reads(layout):
    images, devkit = layout
    names = sorted(path.name for path in images.iterdir())
    assert names[0] == "ILSVRC2012_val_00000001.JPEG" and len(names) == 200
    from selectivity_eval.plugins.datasets.imagenet_val import ImageNetVal

    loaded = ImageNetVal({"root": str(images), "devkit": str(devkit)}).load(seed=0)
    counts = np.bincount(loaded.labels, minlength=1000)
    assert (counts > 0).sum() == 10 and set(counts[counts > 0]) == {20}
    assert loaded.identity["ground_truth"] == "ILSVRC2012_validation_ground_truth.txt"
    assert imagenet_val_layout(images.parent.parent, 200, 10, sides=(64, 96)) == layout  # cached: not rewritten


def test_the_small_study_runs_every_stage_and_its_report_refers_only_to_files_that_exist(layout, tmp_path):
    images, devkit = layout
    output = tmp_path / "run"
    spec = study_spec(images, devkit, output, permutations=2, am_units=2, am_steps=4, am_size=64, workers=0,
                      report={"units_per_measure": 1, "random_units": 1, "top_images": 4})
    done = run_cli(spec, tmp_path / "spec.yaml")
    assert done.returncode == 0, done.stderr

    record = json.loads((output / "run.json").read_text())
    assert set(record["timings_s"]) >= {"load", "extract", "measures", "am"}
    # conv5 is measured after the ReLU, max-pooled: AM's objective (its centre, before the ReLU) is read in the same pass
    assert record["activation_cache"] == {**{layer: "miss" for layer in PAPER_LAYERS}, "conv5.am-center": "miss"}
    assert record["images"]["measured"] == 200 and record["layers"] == ALEXNET_UNITS
    header, *rows = (output / "units.csv").read_text().splitlines()
    columns = header.split(",")
    for column in ("localist", "precision", "ccmas", "topclass", "auroc", "max_informedness", "ccmas_p"):
        assert column in columns
    assert len(rows) == sum(ALEXNET_UNITS.values())
    am = (output / "am.csv").read_text().splitlines()
    assert len(am) == 1 + 2 * 2 and {line.split(",")[0] for line in am[1:]} == {"conv5", "fc8"}

    parser = References()
    parser.feed((output / "report.html").read_text())
    assert any(target.startswith("am/") for target in parser.files) and "rating.html" in parser.files
    missing = [target for target in parser.files if not (output / unquote(target)).is_file()]
    assert not missing and not [target for target in parser.files if "://" in target], missing[:5]
    assert len((output / "rating_key.csv").read_text().splitlines()) == 1 + 2 * 2  # the rating page's AM images


@pytest.fixture
def gated_plugin(tmp_path):
    """``gated-imagenet-val`` as an installed distribution, on the PYTHONPATH of the runs started here."""
    root = tmp_path / "plugin"
    root.mkdir()
    (root / "se_gated_imagenet_plugin.py").write_text(Path(__file__).with_name("gated_imagenet_plugin.py").read_text())
    info = root / "se_gated_imagenet_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: se-gated-imagenet-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[selectivity_eval]\nse_gated = se_gated_imagenet_plugin\n")
    env = dict(os.environ, SELECTIVITY_EVAL_CHECKPOINT_SECONDS="0")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return env


def gated_spec(layout, output: Path, gate: Path) -> dict:
    images, devkit = layout
    spec = study_spec(images, devkit, output, permutations=0, am_units=0, report=False, workers=0, batch_size=20)
    spec["dataset"].update(plugin="gated-imagenet-val", gate_dir=str(gate), limit_per_class=10)
    return spec


def reads(gate: Path, pid: int) -> list[int]:
    return [int(line) for line in (gate / f"reads-{pid}.txt").read_text().split()]


def test_a_run_killed_mid_extraction_resumes_after_its_last_checkpoint_and_gives_identical_results(
    layout, gated_plugin, tmp_path
):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    gate_a, gate_b = tmp_path / "gate-a", tmp_path / "gate-b"
    gate_a.mkdir()
    gate_b.mkdir()
    done = run_cli(gated_spec(layout, whole, gate_a), tmp_path / "whole.yaml", gated_plugin)
    assert done.returncode == 0, done.stderr

    block_at = 60  # 100 images in batches of 20: killed while reading the fourth batch
    (gate_b / "block").write_text(str(block_at))
    spec_path = tmp_path / "resumed.yaml"
    spec_path.write_text(yaml.safe_dump(gated_spec(layout, resumed, gate_b), sort_keys=False))
    killed = subprocess.Popen([*CLI, "run", str(spec_path), "--quiet"], env=gated_plugin,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not (gate_b / "blocked").exists():
            assert killed.poll() is None, killed.stderr.read().decode()
            try:
                killed.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert not (resumed / "units.csv").exists()
    progress = [json.loads(path.read_text()) for path in (resumed / "activations").glob("*/progress.json")]
    assert [entry["rows_done"] for entry in progress] == [block_at] * len(PAPER_LAYERS)
    assert reads(gate_b, killed.pid) == list(range(block_at + 1))

    (gate_b / "block").unlink()
    rerun = subprocess.run([*CLI, "run", str(spec_path), "--quiet"], env=gated_plugin, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert (resumed / "units.csv").read_bytes() == (whole / "units.csv").read_bytes()
    record = json.loads((resumed / "run.json").read_text())
    assert record["activation_cache"] == {layer: f"resumed at image {block_at}" for layer in PAPER_LAYERS}
    (rerun_log,) = [path for path in gate_b.glob("reads-*.txt") if path.name != f"reads-{killed.pid}.txt"]
    assert sorted(int(line) for line in rerun_log.read_text().split()) == list(range(block_at, 100))


def test_the_gale2019_example_spec_validates_with_its_files_in_place(tmp_path, monkeypatch):
    """examples/gale2019/spec.yaml as a user runs it, with stand-ins for ImageNet and the weights file.

    The weights file's name promises a sha256 prefix that no stand-in can have, so the stand-in
    (random AlexNet weights of the right shapes) gets its own name; validate reads the data set's
    labels, so a small generated layout stands in for ImageNet at the example's own paths.
    """
    import torch
    import torchvision
    from typer.testing import CliRunner

    from selectivity_eval.core.cli.app import app

    example = Path(__file__).resolve().parent.parent / "examples" / "gale2019" / "spec.yaml"
    spec = yaml.safe_load(example.read_text())
    assert spec["model"]["weights"] == "weights/alexnet-owt-7be5be79.pth"
    assert [layer["name"] if isinstance(layer, dict) else layer for layer in spec["layers"]] == PAPER_LAYERS
    assert spec["am"]["layers"] == ["conv5", "fc6", "fc8"] and spec["chance"]["permutations"] == 100
    monkeypatch.chdir(tmp_path)
    images, devkit = imagenet_val_layout(tmp_path / "generated", 20, 10, sides=(64, 96))
    Path("imagenet").mkdir()
    images.rename(spec["dataset"]["root"])
    devkit.rename(spec["dataset"]["devkit"])
    Path("weights").mkdir()
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), "weights/alexnet-stand-in.pth")
    spec["model"]["weights"] = "weights/alexnet-stand-in.pth"
    Path("spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    result = CliRunner().invoke(app, ["validate", "spec.yaml"])
    assert result.exit_code == 0, result.output
    assert "valid (8 layers, 7 measures)" in result.output  # five measures, precision and topclass twice
