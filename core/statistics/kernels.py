"""Compiled CPU kernels (numba) for the passes ``LayerStats`` makes over a chunk of activations.

Why compiled: in torch, each class statistic is its own scatter over every activation, and the
top-k candidates need a boolean mask as large as the chunk; on a CPU those passes, not the
arithmetic, dominate a layer's measures. Here the class pass reads each class's images together
and keeps its running results in cache, and the candidate pass reads only the classes whose
maximum can reach a unit's top k. At ImageNet scale the four measures then take about a third of
the time they take with torch's passes (docs/performance.md).

They give exactly what the torch code in ``layer_stats.py`` gives: maxima and minima are exact,
and each class's float64 sum (and sum of squares) adds its images in ascending image order from
zero, as ``index_add_`` does.
``stats.compiled_kernels`` decides when they are used; this module is imported only then, since
loading numba and the cached kernels takes about half a second.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numba
import numpy as np
import torch

if TYPE_CHECKING:
    from selectivity_eval.core.statistics.labels import Labels

UNITS_PER_BLOCK = 2048
"""Units a task reads of each row: long enough to stream, short enough for its sums to stay in L1/L2."""

INSERTION_SORT_MAX = 256
"""Units with at most this many candidates (typically a few more than k) rank them by insertion
sort, which beats two allocating sorts there; more, and they take ``np.argsort``'s O(n log n)."""

_launch = threading.Lock()
"""numba's default thread pool must not be entered by two threads at once (dask workers run several)."""


def _threads() -> int:
    """As many threads as torch uses (``torch.set_num_threads`` governs both), within numba's pool."""
    return max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))


def _run(kernel, *args) -> None:
    """Launch ``kernel`` on ``_threads()`` threads, leaving torch's thread count as it was.

    numba's OpenMP threading layer sets the calling thread's OpenMP thread count, which torch
    shares, to its pool's size when it starts: a process that runs torch on one thread (a dask
    worker, say) would otherwise run every later torch operation on every core.
    """
    torch_threads = torch.get_num_threads()
    with _launch:
        numba.set_num_threads(_threads())
        kernel(*args)
    if torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)


def _rows(activations: torch.Tensor) -> tuple[np.ndarray, int]:
    """The activations as one flat array and the distance between rows, so that unit ``j`` of image
    ``r`` is at ``r * stride + j``; a chunk of a wider matrix (a column slice) is read in place.

    numba compiles a flat contiguous array into vector instructions, a strided 2-D one it does not.
    """
    if activations.stride(1) != 1 and activations.shape[1] > 1:
        activations = activations.contiguous()
    n, width = activations.shape
    stride = activations.stride(0) if n > 1 else width
    return activations.as_strided(((n - 1) * stride + width,), (1,)).numpy(), stride


@numba.njit(cache=True, boundscheck=False, nogil=True)
def _keep_nan(values, stride, j0, w, images, total, high, low):  # pragma: no cover - compiled
    """A class pass's max and min need not keep a NaN, its sum does: where the sum is NaN, a
    unit whose class holds a NaN gets NaN for both."""
    for j in range(w):
        if np.isnan(total[j]):
            for image in images:
                if np.isnan(values[image * stride + j0 + j]):
                    high[j] = np.nan
                    low[j] = np.nan


@numba.njit(parallel=True, cache=True, boundscheck=False, nogil=True)
def _class_pass(
    values, stride, width, order, starts, maxima, minima, sums, squares, second, first_at_max
):  # pragma: no cover - compiled
    for c in numba.prange(starts.shape[0] - 1):
        high = np.empty(UNITS_PER_BLOCK, values.dtype)
        low = np.empty(UNITS_PER_BLOCK, values.dtype)
        total = np.empty(UNITS_PER_BLOCK, np.float64)
        total_sq = np.empty(UNITS_PER_BLOCK, np.float64)
        runner_up = np.empty(UNITS_PER_BLOCK, values.dtype)
        at = np.empty(UNITS_PER_BLOCK, np.int64)
        for j0 in range(0, width, UNITS_PER_BLOCK):
            w = min(width - j0, UNITS_PER_BLOCK)
            high[:w] = -np.inf
            low[:w] = np.inf
            total[:w] = 0.0
            total_sq[:w] = 0.0
            runner_up[:w] = -np.inf
            at[:w] = -1
            for p in range(starts[c], starts[c + 1]):
                image = order[p]
                row = values[image * stride + j0 : image * stride + j0 + w]
                for j in range(w):
                    x = row[j]
                    peak = high[j]
                    runner_up[j] = max(runner_up[j], min(x, peak))
                    at[j] = image if x > peak else at[j]
                    high[j] = max(x, peak)
                    low[j] = min(x, low[j])
                    wide = np.float64(x)
                    total[j] += wide
                    total_sq[j] += wide * wide
            _keep_nan(values, stride, j0, w, order[starts[c] : starts[c + 1]], total, high, low)
            maxima[c, j0 : j0 + w] = high[:w]
            minima[c, j0 : j0 + w] = low[:w]
            sums[c, j0 : j0 + w] = total[:w]
            squares[c, j0 : j0 + w] = total_sq[:w]
            second[c, j0 : j0 + w] = runner_up[:w]
            first_at_max[c, j0 : j0 + w] = at[:w]


@numba.njit(parallel=True, cache=True, boundscheck=False, nogil=True)
def _light_class_pass(values, stride, width, order, starts, maxima, minima, sums):  # pragma: no cover - compiled
    for c in numba.prange(starts.shape[0] - 1):
        high = np.empty(UNITS_PER_BLOCK, values.dtype)
        low = np.empty(UNITS_PER_BLOCK, values.dtype)
        total = np.empty(UNITS_PER_BLOCK, np.float64)
        for j0 in range(0, width, UNITS_PER_BLOCK):
            w = min(width - j0, UNITS_PER_BLOCK)
            high[:w] = -np.inf
            low[:w] = np.inf
            total[:w] = 0.0
            # Four images a step, added in the same order as one at a time: four rows stream at once
            # and the running results are loaded and stored a quarter as often. The pass then takes
            # about 1.2x the time of merely reading its rows (benchmarks/bench_chance.py prints both).
            # ``peak if peak > x else x`` is ``max(x, peak)`` as _class_pass takes it, and vectorises.
            p, end = starts[c], starts[c + 1]
            while p + 3 < end:
                a, b = order[p] * stride + j0, order[p + 1] * stride + j0
                d, e = order[p + 2] * stride + j0, order[p + 3] * stride + j0
                for j in range(w):
                    x, y, z, u = values[a + j], values[b + j], values[d + j], values[e + j]
                    peak = high[j]
                    peak = peak if peak > x else x
                    peak = peak if peak > y else y
                    peak = peak if peak > z else z
                    high[j] = peak if peak > u else u
                    trough = low[j]
                    trough = trough if trough < x else x
                    trough = trough if trough < y else y
                    trough = trough if trough < z else z
                    low[j] = trough if trough < u else u
                    total[j] = (((total[j] + np.float64(x)) + np.float64(y)) + np.float64(z)) + np.float64(u)
                p += 4
            while p < end:
                a = order[p] * stride + j0
                for j in range(w):
                    x = values[a + j]
                    peak = high[j]
                    high[j] = peak if peak > x else x
                    trough = low[j]
                    low[j] = trough if trough < x else x
                    total[j] += np.float64(x)
                p += 1
            _keep_nan(values, stride, j0, w, order[starts[c] : starts[c + 1]], total, high, low)
            maxima[c, j0 : j0 + w] = high[:w]
            minima[c, j0 : j0 + w] = low[:w]
            sums[c, j0 : j0 + w] = total[:w]


@numba.njit(parallel=True, cache=True, boundscheck=False, nogil=True)
def _argmax_pass(table, block, best):  # pragma: no cover - compiled
    rows, width = table.shape
    for b in numba.prange((width + block - 1) // block):
        j0 = b * block
        j1 = min(width, j0 + block)
        peak = table[0, j0:j1].copy()
        at = np.zeros(j1 - j0, np.int64)
        for r in range(1, rows):
            row = table[r, j0:j1]
            for j in range(j1 - j0):
                x = row[j]
                better = x > peak[j] or (np.isnan(x) and not np.isnan(peak[j]))
                peak[j] = x if better else peak[j]
                at[j] = r if better else at[j]
        best[j0:j1] = at


@numba.njit(parallel=True, cache=True, boundscheck=False, nogil=True)
def _candidate_pass(
    values, stride, width, order, starts, maxima, second, first_at_max, bound, limit, block, insertion_sort_max,
    image, value, count,
):  # pragma: no cover - compiled
    for b in numba.prange((width + block - 1) // block):
        j0 = b * block
        j1 = min(width, j0 + block)
        reread = np.empty(j1 - j0, np.int64)
        for c in range(starts.shape[0] - 1):
            n_reread = 0
            for j in range(j0, j1):
                if maxima[c, j] >= bound[j]:
                    if second[c, j] >= bound[j]:
                        reread[n_reread] = j
                        n_reread += 1
                    else:
                        slot = count[j]
                        if slot < limit:
                            image[j, slot] = first_at_max[c, j]
                            value[j, slot] = maxima[c, j]
                        count[j] = slot + 1
            for p in range(starts[c], starts[c + 1]):
                base = order[p] * stride
                for t in range(n_reread):
                    j = reread[t]
                    x = values[base + j]
                    if x >= bound[j]:
                        slot = count[j]
                        if slot < limit:
                            image[j, slot] = order[p]
                            value[j, slot] = x
                        count[j] = slot + 1
        for j in range(j0, j1):
            if count[j] > limit:
                continue  # ranked from all its images instead (``fallback``)
            if count[j] <= insertion_sort_max:
                _insertion_sort(image[j], value[j], count[j])
            else:
                by_image = np.argsort(image[j, : count[j]])
                images = image[j, : count[j]][by_image]
                values_ = value[j, : count[j]][by_image]
                by_value = np.argsort(-values_, kind="mergesort")
                image[j, : count[j]] = images[by_value]
                value[j, : count[j]] = values_[by_value]


@numba.njit(cache=True, boundscheck=False, nogil=True)
def _insertion_sort(image, value, found):  # pragma: no cover - compiled
    """Rank the first ``found`` entries by activation (high first), then image index."""
    for end in range(1, found):
        x = value[end]
        at = image[end]
        slot = end
        while slot > 0 and (value[slot - 1] < x or (value[slot - 1] == x and image[slot - 1] > at)):
            value[slot] = value[slot - 1]
            image[slot] = image[slot - 1]
            slot -= 1
        value[slot] = x
        image[slot] = at


def class_extremes_and_sums(activations: torch.Tensor, labels: Labels):
    """Each class's maximum, minimum (NaN where the class has a NaN), float64 sum and float64 sum of
    squares, in one pass; with them, for ``candidates_at_or_above``, each class's second-highest
    activation (equal to the maximum when two images share it) and the first image holding the maximum.
    """
    values, stride = _rows(activations)
    width = activations.shape[1]
    order, starts = labels.grouped
    shape = (labels.n_classes, width)
    maxima = np.empty(shape, dtype=values.dtype)
    minima = np.empty(shape, dtype=values.dtype)
    sums = np.empty(shape, dtype=np.float64)
    squares = np.empty(shape, dtype=np.float64)
    second = np.empty(shape, dtype=values.dtype)
    first_at_max = np.empty(shape, dtype=np.int64)
    _run(_class_pass, values, stride, width, order, starts, maxima, minima, sums, squares, second, first_at_max)
    statistics = tuple(torch.from_numpy(array) for array in (maxima, minima, sums, squares))
    return statistics, (torch.from_numpy(second), torch.from_numpy(first_at_max))


def class_extremes_and_sums_of(activations: torch.Tensor, labellings: list[Labels], tables: list | None = None):
    """Each class's maximum, minimum and float64 sum under each labelling, bit-identical to
    ``class_extremes_and_sums`` but without its sums of squares and what the candidate pass needs.

    For label shufflings, whose ranking is shared and whose measures rarely ask for variances.
    Returns one (maxima, minima, sums, None) per labelling, each (classes, units). ``tables``: a
    list the caller keeps, whose (maxima, minima, sums) numpy arrays are filled again, one per
    labelling, instead of new ones (those missing, or of another shape or type, are made and kept there);
    the pass writes every entry, so what a table held before never shows.
    """
    values, stride = _rows(activations)
    width = activations.shape[1]
    out = []
    for index, labels in enumerate(labellings):
        order, starts = labels.grouped
        shape = (labels.n_classes, width)
        kept = tables[index] if tables is not None and index < len(tables) else None
        if kept is None or kept[0].shape != shape or kept[0].dtype != values.dtype:
            kept = np.empty(shape, dtype=values.dtype), np.empty(shape, dtype=values.dtype), np.empty(shape, np.float64)
            if tables is not None:
                tables[index : index + 1] = [kept]
        maxima, minima, sums = kept
        _run(_light_class_pass, values, stride, width, order, starts, maxima, minima, sums)
        out.append((torch.from_numpy(maxima), torch.from_numpy(minima), torch.from_numpy(sums), None))
    return out


def argmax_over_rows(table: torch.Tensor) -> torch.Tensor:
    """``torch.argmax(table, dim=0)`` of a contiguous (rows, columns) table: the first row holding
    each column's highest value, a NaN counting as highest. torch reduces across rows several times
    slower; here each row is read in turn, a block of columns per thread."""
    values = table.contiguous().numpy()
    best = np.empty(values.shape[1], dtype=np.int64)
    block = max(256, -(-values.shape[1] // _threads()))
    _run(_argmax_pass, values, block, best)
    return torch.from_numpy(best)


def candidates_at_or_above(
    activations: torch.Tensor,
    labels: Labels,
    class_max: torch.Tensor,
    runners_up: tuple[torch.Tensor, torch.Tensor] | None,
    bound: torch.Tensor,
    limit: int,
):
    """Per unit, up to ``limit`` images whose activation is at or above the unit's bound, with their
    values, and how many there are in all (which may exceed ``limit``).

    Only classes whose maximum reaches the bound can hold one, about k of them per unit. Where the
    class's second-highest activation stays below the bound (``runners_up`` from the class pass),
    its first image at the maximum is the only one, and nothing is read; only the other classes'
    images are. Without ``runners_up`` every such class is read. Returns (image (units, limit)
    int64, value (units, limit), count (units,) int64), each unit's candidates ranked (activation
    high to low, then image index); slots past a unit's count are undefined. NaN activations are
    never candidates.
    """
    values, stride = _rows(activations)
    width = activations.shape[1]
    order, starts = labels.grouped
    maxima = class_max.numpy()
    second, first_at_max = (maxima, np.zeros_like(maxima, dtype=np.int64)) if runners_up is None else (
        runners_up[0].numpy(),
        runners_up[1].numpy(),
    )
    block = min(UNITS_PER_BLOCK, max(64, -(-width // _threads())))
    image = np.empty((width, limit), dtype=np.int64)
    value = np.empty((width, limit), dtype=values.dtype)
    count = np.zeros(width, dtype=np.int64)
    _run(
        _candidate_pass,
        values,
        stride,
        width,
        order,
        starts,
        maxima,
        second,
        first_at_max,
        bound.numpy(),
        limit,
        block,
        INSERTION_SORT_MAX,
        image,
        value,
        count,
    )
    return torch.from_numpy(image), torch.from_numpy(value), torch.from_numpy(count)


def warm_up() -> None:
    """Compile every pass for float32 activations (or load them from numba's cache) on a tiny chunk,
    and the argmax sweep for the float32 maxima and the float64 means it is given.

    The first call after an install compiles for several seconds; a run calls this on a thread
    while it extracts, so the measures find the kernels ready (``backend.prepare_kernels``).
    """
    from selectivity_eval.core.statistics.labels import Labels

    activations = torch.arange(12, dtype=torch.float32).reshape(6, 2)
    labels = Labels.from_array(np.array([0, 0, 1, 1, 2, 2]), activations.device)
    (maxima, _minima, _sums, _squares), runners_up = class_extremes_and_sums(activations, labels)
    candidates_at_or_above(activations, labels, maxima, runners_up, maxima.amin(0), 4)
    class_extremes_and_sums_of(activations, [labels])
    argmax_over_rows(maxima)
    argmax_over_rows(maxima.double())
