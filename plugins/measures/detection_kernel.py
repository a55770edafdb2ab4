"""Detection's per-unit work as one compiled (numba) pass, for CPU chunks the compiled statistics take.

The torch code in ``detection.py`` gathers each unit's target-class images, sorts them and places
them in the unit's sorted activations with four ``searchsorted`` calls and a dozen whole-chunk
tensor operations; under 100 label shufflings those dominate the measure. Here each unit is one
task: its positives are gathered and sorted, and each distinct positive value is placed by a binary
search that starts where the previous one ended. Every count is an integer and every sum a sum of
half-integers, all exact in float64, so the results are bit-identical to the torch code's for
every unit whose activations are finite (others are blanked to NaN by the caller). Imported only
when ``compiled_kernels`` says the compiled passes are in use.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from selectivity_eval.core.statistics.kernels import _rows, _run


@numba.njit(cache=True, boundscheck=False, nogil=True)
def _first_at_or_above(row, value, low, high):  # pragma: no cover - compiled
    while low < high:
        middle = (low + high) >> 1
        if row[middle] < value:
            low = middle + 1
        else:
            high = middle
    return low


@numba.njit(cache=True, boundscheck=False, nogil=True)
def _first_above(row, value, low, high):  # pragma: no cover - compiled
    while low < high:
        middle = (low + high) >> 1
        if row[middle] <= value:
            low = middle + 1
        else:
            high = middle
    return low


@numba.njit(parallel=True, cache=True, boundscheck=False, nogil=True)
def _detect_pass(
    values, stride, ordered, order, starts, target, auroc, informedness, hit_rate, false_alarm
):  # pragma: no cover - compiled
    n_images = ordered.shape[1]
    for u in numba.prange(target.shape[0]):
        first = starts[target[u]]
        n_pos = starts[target[u] + 1] - first
        positives = np.empty(n_pos, values.dtype)
        for i in range(n_pos):
            positives[i] = values[order[first + i] * stride + u]
        positives.sort()
        row = ordered[u]
        pos = np.float64(n_pos)
        neg = np.float64(n_images) - pos
        if not (pos > 0 and neg > 0):
            auroc[u] = np.nan
            informedness[u] = np.nan
            hit_rate[u] = np.nan
            false_alarm[u] = np.nan
            continue
        total = 0.0
        best = -np.inf
        best_hits = 0.0
        best_alarms = 0.0
        start = 0
        i = 0
        while i < n_pos:
            value = positives[i]
            run_end = i + 1
            while run_end < n_pos and positives[run_end] == value:
                run_end += 1
            below_all = _first_at_or_above(row, value, start, n_images)
            upto_all = _first_above(row, value, below_all, n_images)
            start = upto_all
            neg_below = np.float64(below_all - i)
            neg_equal = np.float64((upto_all - below_all) - (run_end - i))
            total += (neg_below + 0.5 * neg_equal) * (run_end - i)
            pos_at_or_above = pos - i
            neg_at_or_above = neg - neg_below
            numerator = pos_at_or_above * neg - neg_at_or_above * pos
            if numerator >= best:  # the highest threshold among equally good ones
                best = numerator
                best_hits = pos_at_or_above / pos
                best_alarms = neg_at_or_above / neg
            i = run_end
        auroc[u] = total / (pos * neg)
        best_value = best / (pos * neg)
        informedness[u] = best_value if best_value > 0.0 else 0.0
        hit_rate[u] = best_hits if best_value > 0.0 else 0.0
        false_alarm[u] = best_alarms if best_value > 0.0 else 0.0


def detect(activations: torch.Tensor, ordered: torch.Tensor, labels, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """``auroc``, ``max_informedness``, ``hit_rate`` and ``false_alarm`` of each unit (column) of
    ``activations`` as a detector of its ``target`` class; ``ordered`` is (units, images), each
    unit's activations in ascending order."""
    values, stride = _rows(activations)
    order, starts = labels.grouped
    n_units = activations.shape[1]
    out = {name: np.empty(n_units, dtype=np.float64) for name in ("auroc", "max_informedness", "hit_rate", "false_alarm")}
    _run(
        _detect_pass,
        values,
        stride,
        ordered.contiguous().numpy(),
        order,
        starts,
        target.numpy(),
        out["auroc"],
        out["max_informedness"],
        out["hit_rate"],
        out["false_alarm"],
    )
    return {name: torch.from_numpy(array) for name, array in out.items()}


def warm_up() -> None:
    """Compile the pass for float32 activations (or load it from numba's cache) on a tiny chunk."""
    from selectivity_eval.core.statistics.labels import Labels

    activations = torch.tensor([[1.0], [3.0], [2.0], [2.0]])
    labels = Labels.from_array(np.array([0, 1, 0, 1]))
    detect(activations, torch.sort(activations.T, dim=1).values, labels, torch.tensor([1]))
