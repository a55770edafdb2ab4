"""The report's figures, drawn with matplotlib's object API on the Agg canvas (no pyplot, no global backend).

Every figure is deterministic: the jitter comes from a seeded generator, and PNG and SVG files
carry no date, so rebuilding a report gives the same files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from selectivity_eval.core.outputs import atomic
from selectivity_eval.core.report.dataset_images import PNG_COMPRESSION

STYLE = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "svg.hashsalt": "selectivity-eval",
    "svg.fonttype": "none",
}
TOP_COLOUR = "#d62728"
OTHER_COLOUR = "#8c8c8c"
LAYER_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
MAX_NAMED_CLASSES = 30


def new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    with rc_context(STYLE):
        return Figure(figsize=(width, height), dpi=100, layout=layout)


def save(figure: Figure, stem: Path, formats: list[str]) -> list[Path]:
    """Write ``stem.<format>`` for each format (PNG without the software tag, SVG without a date).

    PNGs are compressed at zlib level 1 (PNG_COMPRESSION): about as small as level 6 for these
    figures and several times faster to write. Figures are written atomically but without fsync,
    since ``selectivity-eval report`` rebuilds them (``atomic.atomic_file``'s ``durable``)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = saved_paths(stem, formats)
    with rc_context(STYLE):
        for fmt, path in zip(formats, paths):
            metadata = {"Date": None} if fmt == "svg" else {"Software": None}
            extra = {} if fmt == "svg" else {"pil_kwargs": {"compress_level": PNG_COMPRESSION}}
            atomic.write_with(path, lambda handle: figure.savefig(handle, format=fmt, metadata=metadata, **extra),
                              durable=False)
    return paths


def saved_paths(stem: Path, formats: list[str]) -> list[Path]:
    """The files ``save`` writes for ``stem``, one per format in order: the format is added to the
    name, never put in place of a dot in it (layer ``features.0``'s histograms are not
    ``histograms_features.png``, which ``features.3``'s would overwrite)."""
    return [stem.with_name(f"{stem.name}.{fmt}") for fmt in formats]


def jitterplot(
    values: np.ndarray,
    class_ids: np.ndarray,
    class_names: list[str],
    *,
    title: str,
    seed: int,
    top_n: tuple[int, ...] = (),
) -> Figure:
    """Every image's activation, one column of points per class (jittered); the top class in colour.

    The top class holds the highest activation (lowest class id on ties), as for ``localist`` and
    ``topclass``. The shaded band is the localist gap: from the highest activation outside the top
    class to the lowest inside it, green when the class sits wholly above the rest (a localist
    unit), red where the two overlap. A dashed line marks the N-th highest activation: the images
    above it are precision's top N. The points are one raster image (``jitter_raster``), so the
    figure costs the same for 200 images as for 50,000.
    """
    from selectivity_eval.core.report.jitter_figure import JitterFigure  # it builds on this module's style

    return JitterFigure(class_names).draw(values, class_ids, title=title, seed=seed, top_n=top_n)


def grid_figure(n: int, cell_w: float, cell_h: float, title: str, bottom: float = 0.45) -> tuple[Figure, list]:
    """A figure of ``n`` panels, at most four a row, with fixed margins in inches (no layout engine)."""
    wide, tall = min(n, 4), -(-n // 4)
    width, height = cell_w * wide + 0.3, cell_h * tall + 0.2
    figure = new_figure(width, height, layout=None)
    figure.subplots_adjust(left=0.55 / width, right=1 - 0.15 / width, bottom=bottom / height, top=1 - 0.55 / height,
                           wspace=0.4, hspace=0.7)
    figure.suptitle(title)
    return figure, [figure.add_subplot(tall, wide, index + 1) for index in range(n)]


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def layer_histograms(layer: str, columns: dict[str, np.ndarray], chance: dict, untrained: dict) -> Figure:
    """Per headline column, the layer's units as a histogram; means marked; untrained outlined."""
    with rc_context(STYLE):
        figure, panels = grid_figure(len(columns), 2.4, 2.0, f"{layer}: each measure over the layer's units")
        for index, ((column, values), axes) in enumerate(zip(columns.items(), panels)):
            finite = _finite(values)
            bins = int(min(30, max(5, len(finite) // 2))) if len(finite) else 5
            axes.hist(finite, bins=bins, color=LAYER_COLOURS[0], alpha=0.8, label="trained")
            if column in untrained and len(_finite(untrained[column])):
                axes.hist(_finite(untrained[column]), bins=bins, histtype="step", color="black", label="untrained")
            if len(finite):
                axes.axvline(finite.mean(), color=TOP_COLOUR, linewidth=1, label="mean")
            null = chance.get(column, {}).get("null_mean")
            if null is not None:
                axes.axvline(null, color="black", linestyle="--", linewidth=1, label="shuffled labels")
            axes.set_title(column)
            axes.xaxis.set_major_locator(MaxNLocator(4))
            axes.set_ylabel("units" if index % 4 == 0 else "")
            if index == 0:
                axes.legend()
    return figure


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given their mean rank (as Spearman's correlation needs)."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    counts = np.diff(np.r_[starts, len(values)])
    mean_rank = starts + (counts + 1) / 2
    out = np.empty(len(values))
    out[order] = np.repeat(mean_rank, counts)
    return out


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation over the pairs where both are finite (NaN with fewer than 3, or no spread)."""
    both = np.isfinite(x) & np.isfinite(y)
    if both.sum() < 3:
        return float("nan")
    rx, ry = ranks(x[both]), ranks(y[both])
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def scatter_matrix(layers: dict[str, dict[str, np.ndarray]], columns: list[str]) -> Figure:
    """Each pair of measures across units (colour: layer), titled with Spearman's rank correlation over all units.

    The lower triangle only; the diagonal holds each measure's histogram over all units.
    """
    with rc_context(STYLE):
        k = len(columns)
        figure = new_figure(1.8 * k + 1.0, 1.8 * k + 0.3, layout=None)
        figure.subplots_adjust(left=0.9 / (1.8 * k + 1.0), right=1 - 1.1 / (1.8 * k + 1.0), bottom=0.5 / (1.8 * k),
                               top=1 - 0.6 / (1.8 * k), wspace=0.35, hspace=0.45)
        figure.suptitle("Measures against each other, one point per unit (rho: Spearman's rank correlation)")
        grid = figure.add_gridspec(k, k)
        pooled = {c: np.concatenate([np.asarray(u[c], float) for u in layers.values() if c in u] or [[]]) for c in columns}
        for i, row in enumerate(columns):
            for j, col in enumerate(columns[: i + 1]):
                axes = figure.add_subplot(grid[i, j])
                if i == j:
                    axes.hist(_finite(pooled[row]), bins=20, color="#7f7f7f")
                    axes.set_title(row)
                else:
                    for index, (layer, units) in enumerate(layers.items()):
                        if row in units and col in units:
                            axes.scatter(units[col], units[row], s=5, alpha=0.7, linewidths=0, rasterized=True,
                                         color=LAYER_COLOURS[index % len(LAYER_COLOURS)], label=layer)
                    rho = spearman(pooled[row], pooled[col])
                    axes.set_title("rho n/a" if np.isnan(rho) else f"rho = {rho:.2f}")
                    if i == 1 and j == 0:
                        figure.legend(*axes.get_legend_handles_labels(), loc="upper right", title="layer", markerscale=3)
                if i == k - 1:
                    axes.set_xlabel(col)
                if j == 0 and i != j:
                    axes.set_ylabel(row)
    return figure


def depth_bars(summary: dict, columns: list[str]) -> Figure:
    """Mean of each headline column per layer, in depth order; untrained beside, shuffled labels marked."""
    with rc_context(STYLE):
        layers = list(summary)
        rotate = len(layers) > 5 or max(len(layer) for layer in layers) > 6
        figure, panels = grid_figure(len(columns), max(2.4, 0.4 * len(layers) + 1.0), 2.6 if rotate else 2.2,
                                     "Mean selectivity by layer (shallow to deep)", bottom=0.9 if rotate else 0.45)
        x = np.arange(len(layers))
        has_untrained = any("untrained" in summary[layer] for layer in layers)
        width = 0.4 if has_untrained else 0.7
        for index, (column, axes) in enumerate(zip(columns, panels)):
            means = [summary[layer]["columns"].get(column, {}).get("mean") for layer in layers]
            heights = [np.nan if m is None else m for m in means]
            axes.bar(x - (width / 2 if has_untrained else 0), heights, width, color=LAYER_COLOURS[0], label="trained")
            if has_untrained:
                untrained = [summary[layer].get("untrained", {}).get("columns", {}) for layer in layers]
                baseline = [columns_.get(column, {}).get("mean") for columns_ in untrained]
                axes.bar(x + width / 2, [np.nan if m is None else m for m in baseline], width, color="#c7c7c7",
                         label="untrained")
            null = [summary[layer].get("chance", {}).get(column, {}).get("null_mean") for layer in layers]
            if any(value is not None for value in null):
                axes.scatter(x, [np.nan if v is None else v for v in null], marker="_", s=200, color="black",
                             label="shuffled labels", zorder=3)
            axes.axhline(0, color="black", linewidth=0.5)
            axes.set_xticks(x, layers, rotation=45 if rotate else 0, ha="right" if rotate else "center")
            axes.set_title(column)
            if index == 0 and (has_untrained or any(value is not None for value in null)):
                axes.legend()
    return figure
