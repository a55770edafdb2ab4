"""A jitterplot's points painted into an RGBA array with numpy, so that a card costs the same at any size.

matplotlib draws a scatter point by point: at 50,000 images a card spent most of its time there.
Here the points are counted per pixel (one ``bincount``), the counts are spread over a small disc
(the marker: a few shifted adds of the count image) and each class group becomes a colour with
alpha ``1 - (1 - a) ** coverage``, which is what drawing ``coverage`` points of opacity ``a`` on
top of each other gives. The grey points lie under the top class's red ones, as in a scatter.
The array goes into the plot with one ``imshow`` covering the axes; everything else (axes,
ticks, lines, legend) stays matplotlib. No step draws one point at a time, and nothing is random
but the jitter, which comes from the caller's seeded generator.
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import to_rgb

SUPERSAMPLE = 8  # sub-pixel samples per side when measuring how much of a pixel a marker covers


def marker_disc(diameter: float) -> np.ndarray:
    """(k, k) float weights: the share of each pixel a disc of ``diameter`` pixels covers, centred on the middle pixel."""
    radius = diameter / 2
    half = int(np.ceil(radius - 0.5)) if radius > 0.5 else 0
    side = 2 * half + 1
    steps = (np.arange(side * SUPERSAMPLE) + 0.5) / SUPERSAMPLE - side / 2  # sample positions from the disc's centre
    inside = (steps[:, None] ** 2 + steps[None, :] ** 2) <= radius**2
    return inside.reshape(side, SUPERSAMPLE, side, SUPERSAMPLE).mean(axis=(1, 3))


def pixel_positions(x: np.ndarray, y: np.ndarray, xlim, ylim, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of the pixels that hold the data points (x, y) in a ``height`` x ``width`` raster whose
    left, right, bottom and top edges are ``xlim`` and ``ylim``; row 0 is the top. Clipped to the raster."""
    columns = np.floor((np.asarray(x, np.float64) - xlim[0]) / (xlim[1] - xlim[0]) * width)
    rows = np.floor((ylim[1] - np.asarray(y, np.float64)) / (ylim[1] - ylim[0]) * height)
    return (np.clip(rows, 0, height - 1).astype(np.int64), np.clip(columns, 0, width - 1).astype(np.int64))


def coverage(rows: np.ndarray, columns: np.ndarray, shape: tuple[int, int], disc: np.ndarray) -> np.ndarray:
    """(height, width) float: how many markers cover each pixel (fractions at their edges)."""
    height, width = shape
    counts = np.bincount(rows * width + columns, minlength=height * width).reshape(height, width).astype(np.float32)
    half = disc.shape[0] // 2
    padded = np.zeros((height + 2 * half, width + 2 * half), np.float32)
    if not counts.any():
        return padded[half: half + height, half: half + width]
    for dy, dx in zip(*np.nonzero(disc)):  # at most a few dozen offsets: the marker's pixels, not the points
        padded[dy: dy + height, dx: dx + width] += np.float32(disc[dy, dx]) * counts
    return padded[half: half + height, half: half + width]


def paint(layers: list[tuple[np.ndarray, str, float]], shape: tuple[int, int]) -> np.ndarray:
    """(height, width, 4) uint8 RGBA: each (coverage, colour, alpha) drawn over the ones before it, on nothing."""
    height, width = shape
    premultiplied = np.zeros((height, width, 3), np.float32)
    alpha = np.zeros((height, width), np.float32)
    for covered, name, opacity in layers:
        a = 1 - np.exp(covered * np.float32(np.log1p(-min(opacity, 1 - 1e-6))))  # 1 - (1 - opacity) ** covered
        premultiplied *= (1 - a)[..., None]
        premultiplied += a[..., None] * np.asarray(to_rgb(name), np.float32)
        alpha = a + alpha * (1 - a)
    colour = np.divide(premultiplied, alpha[..., None], out=np.zeros_like(premultiplied), where=alpha[..., None] > 0)
    rgba = np.concatenate([colour, alpha[..., None]], axis=2)
    return np.round(rgba * 255).astype(np.uint8)


def jitter_raster(
    x: np.ndarray,
    y: np.ndarray,
    groups: list[tuple[np.ndarray, str, float]],
    xlim,
    ylim,
    shape: tuple[int, int],
    diameter: float,
) -> np.ndarray:
    """The RGBA raster of points (x, y): for each (mask, colour, alpha) in ``groups``, in order, its points as
    discs of ``diameter`` pixels. ``xlim``/``ylim`` are the data values at the raster's edges."""
    height, width = shape
    rows, columns = pixel_positions(x, y, xlim, ylim, width, height)
    disc = marker_disc(diameter)
    layers = [(coverage(rows[mask], columns[mask], shape, disc), colour, alpha) for mask, colour, alpha in groups]
    return paint(layers, shape)
