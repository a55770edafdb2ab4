"""The unit cards' drawing as it was before the raster jitterplots (commit 34aa46c), for bench_report.py.

A copy kept only to time the old path side by side with the new one: a matplotlib scatter of every
image's activation per card (a fresh figure each time), and top images decoded in full through
the data set (a float tensor per image) before being shrunk to tiles.
"""

from __future__ import annotations

import numpy as np
from matplotlib import rc_context

from selectivity_eval.core.report.dataset_images import to_image
from selectivity_eval.core.report.thumbnails import resize_to_tile
from selectivity_eval.core.report.plots import MAX_NAMED_CLASSES, OTHER_COLOUR, STYLE, TOP_COLOUR, new_figure


def old_jitterplot(values, class_ids, class_names, *, title, seed, top_n=()):
    """plots.jitterplot as of 34aa46c: one scatter point per image."""
    with rc_context(STYLE):
        figure = new_figure(5.2, 2.8, layout=None)
        axes = figure.add_axes((0.11, 0.2, 0.58, 0.7))
        n_classes = len(class_names)
        peak = values.max()
        top = int(class_ids[values == peak].min())
        in_top = class_ids == top
        x = class_ids + np.random.default_rng(seed).uniform(-0.38, 0.38, size=len(values))
        size = 10 if len(values) <= 2000 else 3
        axes.scatter(x[~in_top], values[~in_top], s=size, c=OTHER_COLOUR, alpha=0.5, linewidths=0, rasterized=True)
        axes.scatter(x[in_top], values[in_top], s=size, c=TOP_COLOUR, alpha=0.8, linewidths=0, rasterized=True,
                     label=f"top class {class_names[top]}")
        if (~in_top).any():
            lowest_top, highest_other = values[in_top].min(), values[~in_top].max()
            gap = lowest_top - highest_other
            colour = "#2ca02c" if gap > 0 else TOP_COLOUR
            word = "localist gap" if gap > 0 else "overlap"
            axes.axhspan(min(lowest_top, highest_other), max(lowest_top, highest_other), color=colour, alpha=0.15,
                         linewidth=0, label=f"{word} {gap:.3g}")
        ranked = np.sort(values)[::-1]
        for index, n in enumerate(top_n):
            k = min(n, len(values))
            axes.axhline(ranked[k - 1], color="black", linestyle=("--", ":", "-.")[index % 3], linewidth=0.8,
                         label=f"top {k} (precision)")
        if n_classes <= MAX_NAMED_CLASSES:
            axes.set_xticks(range(n_classes), class_names, rotation=90 if n_classes > 12 else 0)
        else:
            axes.set_xticks([top], [class_names[top]])
        axes.set_xlim(-0.6, n_classes - 0.4)
        axes.set_xlabel("class")
        axes.set_ylabel("activation")
        axes.set_title(title)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), markerscale=1.5)
    return figure


def old_top_images(dataset, rows):
    """The cards' top images as of 34aa46c: each item decoded in full (a float tensor), then tiled."""
    return [resize_to_tile(to_image(dataset[int(row)][0])) for row in rows]
