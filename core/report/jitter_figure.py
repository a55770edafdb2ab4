"""The jitterplot figure: matplotlib axes, lines and legend around a raster of the points, reusable across units.

A card's jitterplot used to be a fresh figure with a scatter of every image. Now the points are
one RGBA image (``jitter_raster``) shown with ``imshow`` over exactly the axes' pixels, and a
``JitterFigure`` is made once per layer: for each unit, ``draw`` swaps the image, the limits, the
title, the band, the precision lines and the legend, and the caller saves it. A reused figure
gives the same bytes as a fresh one (tests/test_report_speed.py checks it).

The title is pinned at the top of the axes (``set_title(y=1.0)``), which skips matplotlib's search
for its place, about a tenth of a card's drawing time. The search lifts a title only over x tick
labels at the top (these axes have none) or over a y offset text (``1e-7``) it overlaps; so a unit
whose y axis shows an offset text is drawn in a second figure that places its title as matplotlib
does, and every card is the same as with the search.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from selectivity_eval.core.report.jitter_raster import jitter_raster
from selectivity_eval.core.report.plots import MAX_NAMED_CLASSES, OTHER_COLOUR, STYLE, TOP_COLOUR, new_figure

WIDTH_IN, HEIGHT_IN, DPI = 5.2, 2.8, 100
AXES_PX = (57, 56, 302, 196)  # left, bottom, width, height in whole pixels, so the raster maps 1:1 onto them
JITTER = 0.38
MARGIN = 0.05  # matplotlib's default data margin, kept from the scatter version
LINE_STYLES = ("--", ":", "-.")


def marker_size(n_points: int) -> float:
    """The marker's area in points squared, as the scatter had it."""
    return 10.0 if n_points <= 2000 else 3.0


def value_limits(values: np.ndarray) -> tuple[float, float]:
    """The y limits: the values' range with a 5% margin each side (a single value widened first)."""
    low, high = float(values.min()), float(values.max())
    if high - low <= 1e-12 * max(abs(low), abs(high), 1e-300):  # one value (a silent unit): widen it as matplotlib does
        low, high = (-0.05, 0.05) if high == 0 else (low - 0.05 * abs(low), high + 0.05 * abs(high))
    pad = (high - low) * MARGIN
    return low - pad, high + pad


def top_class(values: np.ndarray, class_ids: np.ndarray) -> int:
    """The class of the highest activation; the lowest class id among the images that share it."""
    return int(class_ids[values == values.max()].min())


def nth_highest(values: np.ndarray, n: int) -> float:
    """The ``n``-th highest value (the last one inside precision's top N), without sorting everything."""
    k = min(n, len(values))
    return float(np.partition(values, len(values) - k)[len(values) - k])


class JitterFigure:
    """One jitterplot figure for a set of classes, redrawn for each unit by ``draw``."""

    def __init__(self, class_names: list[str], pin_title: bool = True):
        self.class_names = list(class_names)
        self.pin_title = pin_title
        self._placing: JitterFigure | None = None  # for units whose y axis has an offset text
        n_classes = len(self.class_names)
        self.xlim = (-0.6, n_classes - 0.4)
        width_px, height_px = WIDTH_IN * DPI, HEIGHT_IN * DPI
        left, bottom, width, height = AXES_PX
        self.shape = (height, width)
        with rc_context(STYLE):
            self.figure: Figure = new_figure(WIDTH_IN, HEIGHT_IN, layout=None)
            self.axes = self.figure.add_axes((left / width_px, bottom / height_px, width / width_px, height / height_px))
            self.image = self.axes.imshow(np.zeros((height, width, 4), np.uint8), origin="upper", aspect="auto",
                                          interpolation="nearest", extent=(*self.xlim, 0, 1))
            if n_classes <= MAX_NAMED_CLASSES:
                self.axes.set_xticks(range(n_classes), self.class_names, rotation=90 if n_classes > 12 else 0)
            self.axes.set_xlim(*self.xlim)
            self.axes.set_xlabel("class")
            self.axes.set_ylabel("activation")
        self.marks: list = []  # the band and lines of the unit last drawn

    def draw(self, values: np.ndarray, class_ids: np.ndarray, *, title: str, seed, top_n: tuple[int, ...] = ()) -> Figure:
        """The unit's jitterplot in this figure (returned); see ``plots.jitterplot`` for what it shows."""
        values = np.asarray(values, dtype=np.float64)
        class_ids = np.asarray(class_ids)
        ylim = value_limits(values)
        if self.pin_title and self._has_offset_text(ylim):
            if self._placing is None:
                self._placing = JitterFigure(self.class_names, pin_title=False)
            return self._placing.draw(values, class_ids, title=title, seed=seed, top_n=top_n)
        for artist in self.marks:
            artist.remove()
        self.marks = []
        top = top_class(values, class_ids)
        in_top = class_ids == top
        x = class_ids + np.random.default_rng(seed).uniform(-JITTER, JITTER, size=len(values))
        size = marker_size(len(values))
        diameter = math.sqrt(size) * DPI / 72  # points to pixels
        groups = [(~in_top, OTHER_COLOUR, 0.5), (in_top, TOP_COLOUR, 0.8)]
        with rc_context(STYLE):
            self.image.set_data(jitter_raster(x, values, groups, self.xlim, ylim, self.shape, diameter))
            self.image.set_extent((*self.xlim, *ylim))
            self.axes.set_xlim(*self.xlim)
            self.axes.set_ylim(*ylim)
            handles = [Line2D([], [], linestyle="", marker="o", markersize=math.sqrt(size), markeredgewidth=0,
                              color=TOP_COLOUR, alpha=0.8)]
            labels = [f"top class {self.class_names[top]}"]
            if (~in_top).any():
                lowest_top, highest_other = values[in_top].min(), values[~in_top].max()
                gap = lowest_top - highest_other
                colour = "#2ca02c" if gap > 0 else TOP_COLOUR
                band = self.axes.axhspan(min(lowest_top, highest_other), max(lowest_top, highest_other), color=colour,
                                         alpha=0.15, linewidth=0)
                self.marks.append(band)
                handles.append(Patch(color=colour, alpha=0.15, linewidth=0))
                labels.append(f"{'localist gap' if gap > 0 else 'overlap'} {gap:.3g}")
            for index, n in enumerate(top_n):
                line = self.axes.axhline(nth_highest(values, n), color="black", linewidth=0.8,
                                         linestyle=LINE_STYLES[index % len(LINE_STYLES)])
                self.marks.append(line)
                handles.append(line)
                labels.append(f"top {min(n, len(values))} (precision)")
            if len(self.class_names) > MAX_NAMED_CLASSES:
                self.axes.set_xticks([top], [self.class_names[top]])
            self.axes.set_ylim(*ylim)  # the band and lines must not move the limits
            self.axes.set_title(title, y=1.0 if self.pin_title else None)
            self.axes.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), markerscale=1.5)
        return self.figure

    def _has_offset_text(self, ylim) -> bool:
        """Whether the y axis will show an offset text (``1e-7``, ``+1e3``) over ``ylim``: the tick values
        and the formatter as drawing will compute them, without laying out any text."""
        with rc_context(STYLE):
            self.axes.set_ylim(*ylim)
            formatter = self.axes.yaxis.get_major_formatter()
            formatter.set_locs(self.axes.yaxis.get_majorticklocs())
            return bool(formatter.get_offset())
