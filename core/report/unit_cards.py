"""Unit cards: which units get one, and what each card shows (jitterplot, top images, AM image, values)."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from selectivity_eval.core.report.dataset_images import DatasetImages, top_images_grid, top_rows
from selectivity_eval.core.report.inputs import FinishedRun
from selectivity_eval.plugins.measures.precision import GALE2019_TOP_N


@dataclass
class UnitCard:
    layer: str
    unit: int
    reasons: list[str] = field(default_factory=list)
    jitterplot: Path | None = None
    top_images: Path | None = None
    am_image: Path | None = None
    values: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def choose_units(run: FinishedRun, layer: str, columns: list[str], per_measure: int, random_units: int, seed: int):
    """{unit: reasons}: the ``per_measure`` highest units by each column (NaN last, ties by lower index),
    then ``random_units`` more of the layer's other units, drawn with ``seed`` and the layer's position."""
    units = run.units.get(layer)
    if not units:  # every measure failed on this layer
        return {}
    n_units = len(units["unit"])
    chosen: dict[int, list[str]] = {}
    for column in columns:
        if column not in units:
            continue
        values = np.where(np.isnan(units[column]), -np.inf, units[column])
        for rank, unit in enumerate(np.argsort(-values, kind="stable")[:per_measure]):
            chosen.setdefault(int(unit), []).append(f"#{rank + 1} by {column}")
    others = np.array([u for u in range(n_units) if u not in chosen], dtype=np.int64)
    rng = np.random.default_rng([seed % 2**32, run.layers.index(layer)])
    for unit in rng.permutation(others)[:random_units]:
        chosen[int(unit)] = ["random"]
    return dict(sorted(chosen.items()))


def am_images(run: FinishedRun) -> dict[tuple[str, int], Path]:
    """(layer, unit) -> the AM image the run wrote for it, from am.csv."""
    path = run.directory / "am.csv"
    if not path.is_file():
        return {}
    found = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            image = run.directory / "am" / _safe(row["layer"]) / f"{row['unit']}.png"
            if not image.is_file():
                image = run.directory / "am" / row["layer"] / f"{row['unit']}.png"
            if image.is_file():
                found[(row["layer"], int(row["unit"]))] = image
    return found


def _safe(name: str) -> str:
    """A layer name as a folder name, as the AM plugin writes it."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "layer"


def precision_top_ns(run: FinishedRun) -> tuple[int, ...]:
    """The ``top_n`` of every precision measure in the spec (the lines on the jitterplots)."""
    measures = run.spec.get("measures") or []
    precision = [m for m in measures if m.get("name") == "precision"]
    found = {int(m["top_n"]) for m in precision if "top_n" in m}
    found |= {GALE2019_TOP_N for m in precision if m.get("preset") == "gale2019"}
    return tuple(sorted(found))


def format_value(run: FinishedRun, column: str, value) -> str:
    if column in run.class_columns:
        return run.class_name(value)
    if isinstance(value, float) and np.isnan(value):
        return "NaN"
    if run.column_kind(column) == "flag":
        return "yes" if value else "no"
    return f"{value:.4g}"


def build_cards(
    run: FinishedRun,
    layer: str,
    chosen: dict[int, list[str]],
    images: DatasetImages | None,
    am: dict[tuple[str, int], Path],
    out: Path,
    settings,
    steps,
    figures,
) -> list[UnitCard]:
    """One card per chosen unit of ``layer``, its figures written under ``out``; none for a unit with
    NaN or infinite activations.

    The chosen units' columns are read from the store in one pass, and the top images decoded here;
    the jitterplots and top-image grids are drawn by ``figures`` (``figure_pool.FigurePool``: here or
    in worker processes), which fills them into the cards, a step for each jitterplot written."""
    units = sorted(chosen)
    stored = block = None
    if units:
        stored = run.unit_activations(layer, units)  # the jitterplots take them as stored: fewer bytes to queue
        block = stored.astype(np.float64)
    rows_of_measured = np.flatnonzero(run.measured)
    class_ids, names = measured_classes(run)
    layer_index = run.layers.index(layer)
    cards = []
    for unit, reasons in chosen.items():
        card = UnitCard(layer, unit, reasons)
        column = units.index(unit)
        values = block[:, column]
        if not np.isfinite(values).all():  # its measures are all NaN: nothing to plot or rank, no card
            steps.advance()
            continue
        stem = out / _safe(layer) / f"unit{unit}"
        figures.jitterplot(stored[:, column], title=f"{layer}, unit {unit}",
                           seed=hash_seed(settings.seed, layer_index, unit), stem=stem.with_name(stem.name + "_jitter"),
                           done=_setter(card, "jitterplot", steps))
        if settings.top_images and images is not None and images.items is not None:
            top = top_rows(values, settings.top_images)
            pictures = [images.tile(int(rows_of_measured[i])) for i in top]
            captions = [f"{names[class_ids[i]]}: {values[i]:.3g}" for i in top]
            size = sum(3 * p.width * p.height for p in pictures if p is not None)
            figures.call(top_images_grid, (pictures, captions, stem.with_name(stem.name + "_top.png")), size,
                         done=_setter(card, "top_images"))
        card.am_image = am.get((layer, unit))
        columns = run.units[layer]
        card.values = {c: format_value(run, c, columns[c][unit]) for c in columns if c != "unit"}
        card.notes = unit_notes(columns, unit)
        cards.append(card)
    return cards


def _setter(card: UnitCard, name: str, steps=None):
    """Puts a figure's path (or None) into ``card``, and advances ``steps`` if given."""
    def done(path):
        setattr(card, name, path)
        if steps is not None:
            steps.advance()
    return done


def unit_notes(columns: dict, unit: int) -> list[str]:
    """What a reader must know before trusting the unit's values: silent, or tie-dependent values."""
    notes = []
    if _true(columns.get("silent"), unit):
        notes.append("silent: the same activation for every image, so its values only reflect the data set's order")
    for column in columns:
        if not column.endswith("_tied") or not _true(columns[column], unit):
            continue
        measure = column[: -len("_tied")]
        low, high = columns.get(f"{measure}_min"), columns.get(f"{measure}_max")
        if low is not None and high is not None:
            ties = int(columns[f"{measure}_ties"][unit])
            notes.append(
                f"{measure} depends on how tied activations are ordered: "
                f"{low[unit]:.4g} to {high[unit]:.4g} over all orders ({ties} tied images)"
            )
        else:
            notes.append(f"{measure}: the highest activation is shared by images of several classes")
    return notes


def _true(values, unit: int) -> bool:
    return values is not None and bool(values[unit])


def measured_classes(run: FinishedRun) -> tuple[np.ndarray, list[str]]:
    """Each measured image's class index (in sorted label order), and the classes' names."""
    labels = run.labels[run.measured]
    classes = np.unique(labels)
    return np.searchsorted(classes, labels), [run.class_name(c) for c in classes]


def unit_jitterplot(run: FinishedRun, layer: str, unit: int, seed: int, activations=None):
    """The jitterplot of a unit's activations by class, as its card shows it (``plots.jitterplot``)."""
    from selectivity_eval.core.report import plots

    class_ids, names = measured_classes(run)
    if activations is None:
        values = run.unit_activations(layer, [unit])[:, 0].astype(np.float64)
    else:
        values = np.asarray(activations[:, unit], dtype=np.float64)
    return plots.jitterplot(
        values, class_ids, names, title=f"{layer}, unit {unit}",
        seed=hash_seed(seed, run.layers.index(layer), unit), top_n=precision_top_ns(run),
    )


def hash_seed(seed: int, layer_index: int, unit: int) -> list[int]:
    return [seed % 2**32, layer_index, unit]
