"""report.html from a digits run: every picture it shows exists and is an image; rebuilt without the model."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import xml.etree.ElementTree as ElementTree
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from selectivity_eval.core.cli.app import app
from selectivity_eval.core.errors import SpecError
from selectivity_eval.core.report.inputs import load_finished_run
from selectivity_eval.core.report.unit_cards import choose_units
from selectivity_eval.core.spec.loader import validate_spec
from selectivity_eval.core.cli.summary_table import main_columns

from .report_fixtures import REPORT_SPEC


class Links(HTMLParser):
    """Every img src and a href of a page, and its element ids."""

    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.ids: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "a" and "href" in attrs:
            self.links.append(attrs["href"])
        if tag in ("script", "link", "iframe") and (attrs.get("src") or attrs.get("href")):
            self.external.append(attrs.get("src") or attrs.get("href"))


def parse(path: Path) -> Links:
    links = Links()
    links.feed(path.read_text(encoding="utf-8"))
    return links


def open_image(page: Path, src: str) -> Image.Image:
    if src.startswith("data:"):
        header, data = src.split(",", 1)
        assert header.endswith(";base64")
        image = Image.open(io.BytesIO(base64.b64decode(data)))
    else:
        assert "://" not in src, src
        path = page.parent / unquote(src)
        assert path.is_file(), f"{src} does not exist"
        image = Image.open(path)
    image.load()
    return image


def test_run_prints_the_report_path_last_and_writes_what_the_report_needs(report_run):
    run_dir, output = report_run
    assert output.strip().splitlines()[-1] == f"Report: {run_dir / 'report.html'}"
    assert "Building report" in output
    for name in ("labels.npy", "measured.npy", "rows.json", "report.html", "rating.html", "rating_key.csv"):
        assert (run_dir / name).is_file(), name
    labels = np.load(run_dir / "labels.npy")
    assert labels.shape == (450,) and np.load(run_dir / "measured.npy").all()
    assert json.loads((run_dir / "run.json").read_text())["images"]["measured"] == 450


def test_every_image_the_report_shows_exists_and_is_a_valid_image(report_run):
    run_dir, _ = report_run
    page = run_dir / "report.html"
    links = parse(page)
    assert not links.external, "report.html must load nothing from elsewhere"
    assert len(links.images) > 20
    for src in links.images:
        image = open_image(page, src)
        assert image.width > 4 and image.height > 4, src
    for href in links.links:
        if href.startswith("#"):
            assert href[1:] in links.ids, href
        else:
            assert "://" not in href and (page.parent / unquote(href)).is_file(), href


def test_figures_are_written_in_each_format_and_identically_twice(tmp_path):
    from selectivity_eval.core.report import plots

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 40)
    values = rng.random(200) + (labels == 3)
    stems = []
    for name in ("a", "b"):
        figure = plots.jitterplot(values, labels, list("abcde"), title="unit", seed=[0, 1], top_n=(20,))
        stems.append(plots.save(figure, tmp_path / name, ["png", "svg"]))
    assert [p.suffix for p in stems[0]] == [".png", ".svg"]
    for first, second in zip(*stems):
        assert first.read_bytes() == second.read_bytes()
    assert ElementTree.parse(stems[0][1]).getroot().tag.endswith("svg")
    assert Image.open(stems[0][0]).size == (520, 280)


def test_figures_of_layers_whose_names_hold_a_dot_do_not_overwrite_each_other(tmp_path):
    """torchvision's layers are named like ``features.0``: the format goes after the whole name."""
    from selectivity_eval.core.report import plots

    written = []
    for layer, values in (("features.0", [0.0, 1.0]), ("features.3", [1.0, 0.0])):
        figure = plots.new_figure(2, 2)
        figure.add_subplot().plot(values)
        written += plots.save(figure, tmp_path / f"histograms_{layer}", ["png", "svg"])
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(path.name for path in written)
    assert {path.name for path in written} == {
        f"histograms_features.{n}.{fmt}" for n in (0, 3) for fmt in ("png", "svg")
    }


def test_report_has_tables_baselines_figures_am_and_one_card_per_chosen_unit(report_run):
    run_dir, _ = report_run
    text = (run_dir / "report.html").read_text(encoding="utf-8")
    links = parse(run_dir / "report.html")
    for needle in ("Trained network", "shuffled labels (mean)", "units above chance", "Untrained network",
                   "by_layer.png", "scatter_matrix.png", "histograms_fc1.png", "am/fc2/contact_sheet.png",
                   'href="rating.html"', "Reading the measures", "top_n: 50", "ccmas"):
        assert needle in text, needle
    run = load_finished_run(run_dir)
    columns = main_columns(run.summary)
    for layer in run.layers:
        chosen = choose_units(run, layer, columns, 2, 1, 0)
        assert 3 <= len(chosen) <= 2 * len(columns) + 1
        for unit in chosen:
            assert f"{layer}-{unit}" in links.ids
            assert f"report/units/{layer}/unit{unit}_jitter.png" in links.images
            assert f"report/units/{layer}/unit{unit}_top.png" in links.images
    am_cards = [src for src in links.images if src.startswith("am/fc2/") and not src.endswith("contact_sheet.png")]
    assert am_cards, "cards of units with an AM image show it"


def test_units_are_the_most_selective_by_each_measure_plus_random_ones(report_run):
    run = load_finished_run(report_run[0])
    chosen = choose_units(run, "fc1", ["ccmas", "topclass"], 3, 2, seed=5)
    best = np.argsort(-run.units["fc1"]["ccmas"], kind="stable")[:3]
    assert all("by ccmas" in " ".join(chosen[int(u)]) for u in best)
    assert sum(reasons == ["random"] for reasons in chosen.values()) == 2
    assert chosen == choose_units(run, "fc1", ["ccmas", "topclass"], 3, 2, seed=5)


def digest(root: Path) -> dict[str, str]:
    names = ["report.html", "rating.html", "rating_key.csv"]
    files = [root / n for n in names] + sorted((root / "report").rglob("*"))
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.is_file()}


def test_report_command_rebuilds_the_same_files_without_the_model(report_run, monkeypatch):
    import torch

    from selectivity_eval.plugins.models.digits_cnn import DigitsCNNSource

    run_dir, _ = report_run
    before = digest(run_dir)

    def forbidden(*args, **kwargs):
        raise AssertionError("report must not load the model or run it")

    monkeypatch.setattr(DigitsCNNSource, "load", forbidden)
    monkeypatch.setattr(torch.nn.Module, "__call__", forbidden)
    (run_dir / "report.html").unlink()
    result = CliRunner().invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == f"Report: {run_dir / 'report.html'}"
    assert digest(run_dir) == before
    quiet = CliRunner().invoke(app, ["report", str(run_dir), "--quiet"])
    assert quiet.exit_code == 0 and quiet.output == ""


def test_report_of_a_directory_that_is_not_a_run_exits_2_naming_the_missing_file(tmp_path):
    (tmp_path / "summary.json").write_text("{}")
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "run.json is missing" in result.output
    assert CliRunner().invoke(app, ["report", str(tmp_path / "nowhere")]).exit_code == 2


def test_report_block_is_checked_and_false_turns_it_off():
    spec = {key: REPORT_SPEC[key] for key in ("model", "dataset", "layers", "measures")}
    assert validate_spec(spec).report.enabled is True
    assert validate_spec({**spec, "report": False}).report.enabled is False
    with pytest.raises(SpecError) as error:
        validate_spec({**spec, "report": {"units": 3, "formats": ["png", "pdf"], "random_units": -1}})
    message = str(error.value)
    assert "report.units: unknown key (a typo?)" in message
    assert "report.formats[1]: Input should be 'png' or 'svg'" in message and "report.random_units" in message


def test_data_set_items_become_card_images_and_non_images_none():
    import torch

    from selectivity_eval.core.report.dataset_images import to_image

    assert to_image(torch.rand(1, 8, 8)).size == (8, 8)
    colour = to_image(torch.rand(3, 5, 6))
    assert colour.mode == "RGB" and colour.size == (6, 5)
    normalised = np.asarray(to_image(torch.linspace(-2, 2, 48).reshape(3, 4, 4)))
    assert normalised.min() == 0 and normalised.max() == 255
    assert to_image(Image.new("L", (7, 9))).size == (7, 9)
    assert to_image(torch.rand(8, 31)) is None  # a word list, not an image


def test_a_changed_data_set_leaves_the_cards_without_images_and_says_why(report_run, tmp_path):
    import shutil

    import yaml

    from selectivity_eval.core.report.dataset_images import DatasetImages

    copy = shutil.copytree(report_run[0], tmp_path / "run", ignore=shutil.ignore_patterns("report*", "am"))
    spec = yaml.safe_load((copy / "spec.resolved.yaml").read_text())
    assert DatasetImages(load_finished_run(copy)).image(0) is not None
    spec["dataset"]["split_seed"] = 1
    (copy / "spec.resolved.yaml").write_text(yaml.safe_dump(spec))
    images = DatasetImages(load_finished_run(copy))
    assert images.items is None and "has changed since the run" in images.reason


def test_a_failed_report_keeps_the_results_and_names_the_rebuild_command(tmp_path):
    from selectivity_eval.core.report.build import ReportError, report_after_run
    from selectivity_eval.schemas.report import ReportSpec

    assert report_after_run(tmp_path, ReportSpec(enabled=False), None) is None
    with pytest.raises(ReportError, match=f"results are written to {tmp_path}.*selectivity-eval report {tmp_path}"):
        report_after_run(tmp_path, ReportSpec(), None)


def test_unit_cards_say_silent_and_give_the_range_of_a_tie_dependent_value(tmp_path):
    from types import SimpleNamespace

    from selectivity_eval.core.report.page import card_html
    from selectivity_eval.core.report.unit_cards import UnitCard, unit_notes

    columns = {
        "precision": np.array([0.12, 0.5, 0.7]),
        "precision_min": np.array([0.1, 0.5, 0.7]),
        "precision_max": np.array([1.0, 0.5, 0.7]),
        "precision_ties": np.array([1797.0, 0.0, 0.0]),
        "precision_tied": np.array([1.0, 0.0, 0.0]),
        "topclass_tied": np.array([1.0, 0.0, 1.0]),
        "silent": np.array([1.0, 0.0, 0.0]),
    }
    silent, plain, shared_peak = (unit_notes(columns, unit) for unit in range(3))
    assert silent[0].startswith("silent:") and "0.1 to 1 over all orders (1797 tied images)" in silent[1]
    assert plain == []
    assert shared_peak == ["topclass: the highest activation is shared by images of several classes"]
    card = UnitCard("fc1", 0, ["random"], jitterplot=tmp_path / "unit0_jitter.png", notes=silent)
    html = card_html(SimpleNamespace(directory=tmp_path), card)
    assert '<p class="note">silent: the same activation for every image' in html
