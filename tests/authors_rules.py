"""The rules of the authors' published code (Gale et al. 2019), restated for comparison tests.

Written anew from reading their functions (repository ellagale/testing_object_detectors_in_deepCNNs:
``compute_selectivity_neuron``, ``find_zhou_precision``, ``find_extent_of_top_class`` and the window
``main`` builds for it, ``compute_ccma_selectivity_neuron``), quirks included, as docs/measures.md
("Against the authors' code") describes them. Plain loops over one unit; nothing is imported from
``selectivity_eval``. Where their result depends on how ``np.argsort`` ordered tied activations,
the order is a parameter: ``ascending`` lists image indices from the lowest activation to the
highest, as their sorted lists do (default: a stable sort, which puts the lower index of a tie lower).
"""

from __future__ import annotations

import numpy as np

WINDOW_IMAGES = 1000


def ascending_order(a, ascending=None) -> list[int]:
    return list(np.argsort(np.asarray(a), kind="stable")) if ascending is None else list(ascending)


def localist(a, y) -> tuple[bool, float, int | None]:
    """compute_selectivity_neuron: (is selective, selectivity, class) from each class's extremes.

    Every class in turn: an overlap with the rest leaves the flag as it was; otherwise the class is
    "on" (above the rest, gap = own min - others' max) or "off" (below, gap = others' min - own max),
    a gap of 0 included, and the later class overwrites the earlier. A class whose maximum and gap
    are both 0 resets the flag without changing the class found. (Their code compares against
    classes 0..999 whatever the number of classes; this takes the classes present.)
    """
    classes = sorted(set(y))
    high = {c: max(v for v, label in zip(a, y) if label == c) for c in classes}
    low = {c: min(v for v, label in zip(a, y) if label == c) for c in classes}
    selective, gap, found = False, 0.0, None
    for c in classes:
        others_low = min(low[o] for o in classes if o != c)
        others_high = max(high[o] for o in classes if o != c)
        if high[c] > others_low and others_high > low[c]:
            continue
        gap = low[c] - others_high if others_low < high[c] else others_low - high[c]
        selective = True
        if high[c] == 0.0 and gap == 0.0:
            selective = False
            continue
        found = c
    return selective, gap, found


def precision(a, y, n, ascending=None) -> tuple[int, float]:
    """find_zhou_precision: the top n in ``ascending`` order, classes counted from place n upwards;
    of equal counts the class met first wins (a Counter's most_common keeps insertion order)."""
    top = ascending_order(a, ascending)[-n:]
    counts: dict = {}
    for image in top:
        counts[y[image]] = counts.get(y[image], 0) + 1
    best = max(counts.values())
    winner = next(c for c in counts if counts[c] == best)
    return winner, best / n


def window_bottom(a) -> float:
    """The lowest activation of the window ``main`` hands to find_extent_of_top_class, in the
    activations' dtype: the middle of the range, or the 1,000th highest activation when more
    than 1,000 images lie strictly above the middle."""
    values = np.asarray(a)
    low, high = values.min(), values.max()
    middle = low + (high - low) * values.dtype.type(0.5)
    if np.count_nonzero(values > middle) > WINDOW_IMAGES:
        return np.sort(values)[-WINDOW_IMAGES]
    return middle


def topclass_count(a, y, ascending=None) -> tuple[int, int]:
    """find_extent_of_top_class on the window: (class of the top image, count).

    Walks down from the highest image while the class matches; reaching the window's lowest image
    it returns the window's length without looking at that image's class.
    """
    bottom = window_bottom(a)
    window = [i for i in ascending_order(a, ascending) if a[i] >= bottom]
    length = len(window)
    top = y[window[-1]]
    for step in range(length):
        if step == length - 1:
            return top, length
        if y[window[length - 1 - step]] != top:
            return top, step
    return top, length


def ccmas(a, y) -> tuple[int, float]:
    """compute_ccma_selectivity_neuron: numpy means in the activations' dtype (float32 for theirs),
    the first class of highest mean, and a plain division (x/0 is inf, 0/0 NaN)."""
    values = np.asarray(a)
    labels = np.asarray(y)
    classes = sorted(set(labels.tolist()))
    means = [np.mean(values[labels == c]) for c in classes]
    best = int(np.argmax(means))
    mu_max = means[best]
    mu_rest = np.mean(values[labels != classes[best]])
    with np.errstate(divide="ignore", invalid="ignore"):
        return classes[best], float((mu_max - mu_rest) / (mu_max + mu_rest))
