"""Build a run's report from its outputs alone: figures, unit cards, report.html and rating.html.

``build_report(RUN_DIR)`` reads units.csv, summary.json, spec.resolved.yaml, run.json, labels.npy,
measured.npy, rows.json and the activation store's ``.npy`` files; it never loads the model. The
data set plugin is loaded without a transform only to show each card's top images. It writes:

- ``report.html``, with its figures under ``report/`` (relative paths: keep the run directory
  together, since the page also shows ``am/`` images);
- ``rating.html`` and ``rating_key.csv`` when the run made AM images.

The spec's ``report:`` block (in spec.resolved.yaml) chooses the units and formats. A run builds
the report at its end; ``selectivity-eval report RUN_DIR`` rebuilds the same files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from selectivity_eval.core.errors import SelectivityEvalError
from selectivity_eval.core.outputs import atomic
from selectivity_eval.core.cli.progress import Reporter
from selectivity_eval.core.report.rating_page import PAGE_FILE, write_rating_page
from selectivity_eval.core.report.page import render_report
from selectivity_eval.core.report.dataset_images import DatasetImages
from selectivity_eval.core.report.inputs import FinishedRun, load_finished_run
from selectivity_eval.core.report.unit_cards import (
    _safe, am_images, build_cards, choose_units, measured_classes, precision_top_ns,
)
from selectivity_eval.core.cli.summary_table import main_columns
from selectivity_eval.schemas.report import ReportSpec

REPORT_FILE = "report.html"
FIGURES_DIR = "report"


class ReportError(SelectivityEvalError):
    """The run's results are written, but its report could not be built."""


def scatter_columns(columns: list[str], run: FinishedRun) -> list[str]:
    """The headline columns, with ``localist_norm`` for ``localist`` (comparable across layers)."""
    has_norm = all("localist_norm" in units for units in run.units.values())
    return ["localist_norm" if column == "localist" and has_norm else column for column in columns]


def build_report(directory: Path, reporter: Reporter | None = None, workers: int | None = None) -> Path:
    """Build (or rebuild) the report of the finished run in ``directory``; returns report.html's path.

    ``workers``: the processes that draw the figures (1: this one; None: a worker per core for a report
    with enough cards, ``figure_pool.default_workers``). The files are the same for any number."""
    from selectivity_eval.core.report.figure_pool import FigurePool, default_workers  # imports matplotlib

    directory = Path(directory)
    reporter = reporter or Reporter(quiet=True)
    run = load_finished_run(directory)
    settings = ReportSpec.model_validate(run.spec.get("report") or {})
    columns = main_columns(run.summary)
    out = directory / FIGURES_DIR
    if out.is_dir():
        shutil.rmtree(out)
    out.mkdir()
    chosen = {
        layer: choose_units(run, layer, columns, settings.units_per_measure, settings.random_units, settings.seed)
        for layer in run.layers
    }
    am = am_images(run)
    n_cards = sum(len(units) for units in chosen.values())
    workers = default_workers(n_cards) if workers is None else workers
    class_ids, names = measured_classes(run)
    with reporter.live():
        steps = reporter.steps("Building report", 3 + len(run.layers) + n_cards)
        with FigurePool(class_ids, names, precision_top_ns(run), settings.formats, workers) as figures:
            overview, histograms = overview_figures(run, columns, out, steps, figures)
            images = DatasetImages(run) if settings.top_images and n_cards else None
            cards = {
                layer: build_cards(run, layer, units, images, am, out / "units", settings, steps, figures)
                for layer, units in chosen.items()
            }
        sheets = {layer: directory / "am" / _safe(layer) / "contact_sheet.png" for layer in run.layers}
        sheets = {layer: path for layer, path in sheets.items() if path.is_file()}
        rating = write_rating_page(directory, am, settings.seed)
        ratings_file = directory / "ratings.json"
        ratings = json.loads(ratings_file.read_text(encoding="utf-8")) if ratings_file.is_file() else None
        note = ""
        if images is not None and images.reason:
            note = f"No data set images: the data set could not be loaded ({images.reason})."
        html = render_report(
            run, columns, overview, histograms, sheets, cards, PAGE_FILE if rating else None, ratings, note
        )
        path = directory / REPORT_FILE
        atomic.write_text(path, html)
        steps.advance()
    return path


def overview_figures(run: FinishedRun, columns: list[str], out: Path, steps, figures):
    """The figures above the cards, handed to ``figures`` (``figure_pool.FigurePool``): means by layer, the
    scatter matrix, each layer's histograms. Returns ([(path, caption)], {layer: histograms' path})."""
    from selectivity_eval.core.report import plots  # matplotlib: imported only when a report is built

    def advance(path):
        steps.advance()

    overview = []
    if columns:
        path = figures.figure(plots.depth_bars, (run.summary, columns), out / "by_layer", advance)
        overview.append((path, "Mean of each measure by layer, shallow to deep; grey: the untrained network; "
                               "black ticks: shuffled labels (where measured)."))
    else:
        steps.advance()
    pairs = [c for c in scatter_columns(columns, run) if any(c in units for units in run.units.values())]
    if len(pairs) >= 2:
        layers = {layer: run.units.get(layer, {}) for layer in run.layers}
        path = figures.figure(plots.scatter_matrix, (layers, pairs), out / "scatter_matrix", advance)
        overview.append((path, "Each measure against each other, one point per unit: points far from a "
                               "monotone band are units the two measures judge differently."))
    else:
        steps.advance()
    histograms = {}
    for layer in run.layers:
        layer_columns = {c: values for c, values in run.units.get(layer, {}).items() if c in columns}
        if layer_columns:
            arguments = (layer, layer_columns, run.summary[layer].get("chance", {}), run.untrained_units.get(layer, {}))
            histograms[layer] = figures.figure(plots.layer_histograms, arguments, out / f"histograms_{_safe(layer)}",
                                               advance)
        else:
            steps.advance()
    return overview, histograms


def report_after_run(output_dir: Path, report: ReportSpec, reporter: Reporter | None,
                     workers: int | None = None) -> Path | None:
    """The run's last step: the report when ``report.enabled``; a failure names the rebuild command."""
    if not report.enabled:
        return None
    try:
        return build_report(output_dir, reporter, workers)
    except Exception as error:
        raise ReportError(
            f"The results are written to {output_dir}, but the report failed: {type(error).__name__}: {error}. "
            f"Rebuild it with `selectivity-eval report {output_dir}` (add --debug for the traceback)."
        ) from error
