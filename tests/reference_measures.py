"""A plain, per-unit reference of the four built-in measures, written straight from docs/measures.md.

Nothing here is vectorised or clever: each unit is a Python list of floats, each measure a few loops
that follow the contract's sentences one by one. It imports nothing from ``selectivity_eval``, so the
tests compare the package against an independent reading of the contract.

Choices where the contract is silent follow the package's documented choices:
- a single class: ``localist``, ``localist_norm``, ``localist_off`` and ``topclass`` are NaN,
  ``is_localist`` is False and ``topclass_count`` is ``n_c``;
- a zero (or NaN) CCMAS denominator gives NaN; ``mu_rest`` over zero other images/classes is NaN;
- ``c_`` for ``localist_off`` is the lowest class id among the classes holding the lowest activation
  (the same rule as ``c*``).
"""

from __future__ import annotations

import math

import numpy as np

NAN = float("nan")

FOUR_MEASURES = ["localist", "precision", "ccmas", "topclass"]

COLUMNS = (
    "localist_class",
    "localist",
    "localist_norm",
    "is_localist",
    "localist_off",
    "precision_class",
    "precision",
    "precision_min",
    "precision_max",
    "precision_ties",
    "precision_tied",
    "ccmas_class",
    "ccmas",
    "topclass_class",
    "topclass_count",
    "topclass",
    "topclass_tied",
)
CLASS_COLUMNS = ("localist_class", "precision_class", "ccmas_class", "topclass_class")
FLAG_COLUMNS = ("is_localist", "precision_tied", "topclass_tied")
COUNT_COLUMNS = ("topclass_count", "precision_ties")
VALUE_COLUMNS = tuple(c for c in COLUMNS if c not in CLASS_COLUMNS + FLAG_COLUMNS + COUNT_COLUMNS)


def _ranking(a: list[float]) -> list[int]:
    """Images sorted by activation high to low, ties by ascending image index (Notation)."""
    return sorted(range(len(a)), key=lambda i: (-a[i], i))


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values) if values else NAN


def _class_of_extreme(a: list[float], y: list, extreme: float):
    """The lowest class id among the images whose activation equals ``extreme``."""
    return min(y[i] for i in range(len(a)) if a[i] == extreme)


def localist_unit(a: list[float], y: list) -> dict:
    classes = sorted(set(y))
    c_star = _class_of_extreme(a, y, max(a))
    out = {"localist_class": c_star}
    if len(classes) < 2:
        out.update(localist=NAN, localist_norm=NAN, is_localist=False, localist_off=NAN)
        return out
    on = [a[i] for i in range(len(a)) if y[i] == c_star]
    not_on = [a[i] for i in range(len(a)) if y[i] != c_star]
    gap = min(on) - max(not_on)
    spread = max(a) - min(a)
    norm = gap / spread if spread != 0 else 0.0
    c_low = _class_of_extreme(a, y, min(a))
    off = [a[i] for i in range(len(a)) if y[i] == c_low]
    not_off = [a[i] for i in range(len(a)) if y[i] != c_low]
    out.update(
        localist=gap,
        localist_norm=norm,
        is_localist=gap > 0,
        localist_off=min(not_off) - max(off),
    )
    return out


def precision_unit(a: list[float], y: list, top_n: int = 100) -> dict:
    k = min(top_n, len(a))
    top = _ranking(a)[:k]
    counts: dict = {}
    first_place: dict = {}
    for place, i in enumerate(top):
        counts[y[i]] = counts.get(y[i], 0) + 1
        first_place.setdefault(y[i], place)
    best = max(counts.values())
    # Among classes with the top count, the one appearing highest in the ranking.
    winner = min((c for c in counts if counts[c] == best), key=lambda c: first_place[c])
    lowest, highest, ties = precision_tie_bounds(a, y, k)
    if ties == 0:
        lowest = highest = counts[winner]
    return {
        "precision_class": winner,
        "precision": counts[winner] / k,
        "precision_min": lowest / k,
        "precision_max": highest / k,
        "precision_ties": ties,
        "precision_tied": lowest < highest,
    }


def precision_tie_bounds(a: list[float], y: list, k: int) -> tuple[int, int, int]:
    """Lowest and highest top-class count over every order of the images tied with the k-th value,
    and how many images share that value when they outnumber the places left for them (else 0).

    Images above the k-th value are always in; the remaining places go to tied images. The highest
    count gives one class as many as it has; the lowest hands the places out one at a time, each to
    the class that is smallest so far among those with tied images left (which never overshoots).
    """
    boundary = a[_ranking(a)[k - 1]]
    above: dict = {}
    tied: dict = {}
    for value, label in zip(a, y):
        if value > boundary:
            above[label] = above.get(label, 0) + 1
        elif value == boundary:
            tied[label] = tied.get(label, 0) + 1
    places = k - sum(above.values())
    if sum(tied.values()) <= places:
        return 0, 0, 0
    classes = set(above) | set(tied)
    highest = max(above.get(c, 0) + min(tied.get(c, 0), places) for c in classes)
    filled = {c: above.get(c, 0) for c in classes}
    left = dict(tied)
    for _ in range(places):
        c = min((c for c in left if left[c] > 0), key=lambda c: filled[c])
        filled[c] += 1
        left[c] -= 1
    return max(filled.values()), highest, sum(tied.values())


def ccmas_unit(a: list[float], y: list, others: str = "pooled", eps: float = 0.0) -> dict:
    classes = sorted(set(y))
    mu = {c: _mean([a[i] for i in range(len(a)) if y[i] == c]) for c in classes}
    mu_max = max(mu.values())
    best = min(c for c in classes if mu[c] == mu_max)
    if others == "pooled":
        mu_rest = _mean([a[i] for i in range(len(a)) if y[i] != best])
    elif others == "class_mean":
        mu_rest = _mean([mu[c] for c in classes if c != best])
    else:
        raise ValueError(others)
    denominator = mu_max + mu_rest + eps
    if math.isnan(denominator) or denominator == 0:
        value = NAN
    else:
        value = (mu_max - mu_rest) / denominator
    return {"ccmas_class": best, "ccmas": value}


def topclass_unit(a: list[float], y: list) -> dict:
    classes = sorted(set(y))
    peak = max(a)
    top = _class_of_extreme(a, y, peak)
    n_top = sum(1 for c in y if c == top)
    peak_classes = {y[i] for i in range(len(a)) if a[i] == peak}
    if len(peak_classes) > 1:
        count = 0
    else:
        # Within equal activations, images of other classes come first.
        order = sorted(range(len(a)), key=lambda i: (-a[i], 0 if y[i] != top else 1, i))
        count = 0
        for i in order:
            if y[i] != top:
                break
            count += 1
    share = count / n_top if len(classes) > 1 else NAN
    return {"topclass_class": top, "topclass_count": count, "topclass": share, "topclass_tied": len(peak_classes) > 1}


def precision_gale2019_unit(a: list[float], y: list) -> dict:
    """Preset gale2019: the top 60 of the ranking; of classes with equal counts, the one met first
    reading up from place N (the authors' rule)."""
    k = min(60, len(a))
    top = _ranking(a)[:k]
    counts: dict = {}
    for i in reversed(top):
        counts[y[i]] = counts.get(y[i], 0) + 1
    best = max(counts.values())
    winner = next(c for c in counts if counts[c] == best)
    return {"precision_class": winner, "precision": best / k}


def topclass_gale2019_unit(a, y: list) -> dict:
    """Window gale2019: the count of ``topclass_unit``, walking down only while inside the authors'
    window (every image at or above ``window_bottom``, computed in the activations' dtype)."""
    from .authors_rules import window_bottom

    values = [float(v) for v in a]
    out = topclass_unit(values, y)
    if out["topclass_tied"]:
        return out
    bottom = float(window_bottom(a))
    top = out["topclass_class"]
    order = sorted(range(len(values)), key=lambda i: (-values[i], 0 if y[i] != top else 1, i))
    count = 0
    for i in order:
        if y[i] != top or values[i] < bottom:
            break
        count += 1
    n_top = sum(1 for c in y if c == top)
    out.update(topclass_count=count, topclass=count / n_top if len(set(y)) > 1 else NAN)
    return out


def reference_unit(a, y, top_n: int = 100, others: str = "pooled", eps: float = 0.0) -> dict:
    """Every column for one unit: ``a`` activations, ``y`` labels (same length)."""
    a = [float(v) for v in a]
    y = [int(v) for v in y]
    if len(a) != len(y) or not a:
        raise ValueError("need one label per activation and at least one image")
    out = {}
    out.update(localist_unit(a, y))
    out.update(precision_unit(a, y, top_n))
    out.update(ccmas_unit(a, y, others, eps))
    out.update(topclass_unit(a, y))
    return out


def reference_columns(activations, labels, top_n: int = 100, others: str = "pooled", eps: float = 0.0):
    """Every column for every unit of an (images x units) matrix, as numpy arrays of shape (units,)."""
    matrix = np.asarray(activations, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError("activations must be (images, units)")
    y = [int(v) for v in np.asarray(labels).tolist()]
    rows = [reference_unit(matrix[:, j].tolist(), y, top_n, others, eps) for j in range(matrix.shape[1])]
    out = {}
    for column in COLUMNS:
        values = [row[column] for row in rows]
        if column in CLASS_COLUMNS or column in COUNT_COLUMNS:
            out[column] = np.array(values, dtype=np.int64)
        elif column in FLAG_COLUMNS:
            out[column] = np.array(values, dtype=bool)
        else:
            out[column] = np.array(values, dtype=np.float64)
    return out
