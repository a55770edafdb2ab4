"""Per-unit numpy references of the four measures, for the benchmarks' side-by-side timings.

``per_unit_class_loop`` works the way research scripts do (and the paper's code does): one unit at a
time, one class at a time. ``per_unit_vectorised`` is a stronger baseline: still one unit at a
time, but each unit's statistics in a few whole-array numpy calls. Both follow measures.md exactly,
ties included, and the benchmark checks them against the package on the units it times.
"""

from __future__ import annotations

import numpy as np


def _unit_from_class_stats(a, order, codes, counts, maxima, minima, sums, top_n, classes):
    n = len(a)
    c_star = int(np.argmax(maxima))
    others_max = np.max(np.delete(maxima, c_star))
    gap = minima[c_star] - others_max
    spread = a.max() - a.min()
    c_low = int(np.argmin(minima))
    k = min(top_n, n)
    top_codes = codes[order[:k]]
    top_counts = np.bincount(top_codes, minlength=len(classes))
    best = top_counts.max()
    winner = next(c for c in top_codes if top_counts[c] == best)
    means = sums / counts
    c_mean = int(np.argmax(means))
    mu_rest = (sums.sum() - sums[c_mean]) / (n - counts[c_mean])
    shared_peak = np.count_nonzero(maxima == maxima[c_star]) > 1
    count = 0 if shared_peak else int(np.count_nonzero(a > others_max))
    return {
        "localist_class": classes[c_star],
        "localist": gap,
        "localist_norm": gap / spread if spread > 0 else 0.0,
        "is_localist": gap > 0,
        "localist_off": np.min(np.delete(minima, c_low)) - maxima[c_low],
        "precision_class": classes[winner],
        "precision": best / k,
        "ccmas_class": classes[c_mean],
        "ccmas": (means[c_mean] - mu_rest) / (means[c_mean] + mu_rest),
        "topclass_class": classes[c_star],
        "topclass_count": count,
        "topclass": count / counts[c_star],
    }


def per_unit_class_loop(matrix: np.ndarray, labels: np.ndarray, units, top_n: int = 100) -> list[dict]:
    """One unit at a time, one class at a time (at least two classes)."""
    classes, codes = np.unique(labels, return_inverse=True)
    members = [np.flatnonzero(codes == c) for c in range(len(classes))]
    counts = np.array([len(m) for m in members], dtype=np.float64)
    rows = []
    for unit in units:
        a = matrix[:, unit].astype(np.float64)
        order = np.argsort(-a, kind="stable")
        maxima = np.array([a[m].max() for m in members])
        minima = np.array([a[m].min() for m in members])
        sums = np.array([a[m].sum() for m in members])
        rows.append(_unit_from_class_stats(a, order, codes, counts, maxima, minima, sums, top_n, classes))
    return rows


def per_unit_vectorised(matrix: np.ndarray, labels: np.ndarray, units, top_n: int = 100) -> list[dict]:
    """One unit at a time, each unit's class statistics in whole-array numpy calls."""
    classes, codes = np.unique(labels, return_inverse=True)
    by_class = np.argsort(codes, kind="stable")
    counts = np.bincount(codes).astype(np.float64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    rows = []
    for unit in units:
        a = matrix[:, unit].astype(np.float64)
        order = np.argsort(-a, kind="stable")
        grouped = a[by_class]
        maxima = np.maximum.reduceat(grouped, starts)
        minima = np.minimum.reduceat(grouped, starts)
        sums = np.bincount(codes, weights=a, minlength=len(classes))
        rows.append(_unit_from_class_stats(a, order, codes, counts, maxima, minima, sums, top_n, classes))
    return rows
