"""Statistics shared by the measures, computed once per chunk of units and reused by all of them.

A measure never loops over units: it reads whole (classes x units) or (k x units) tensors from
``LayerStats``, which computes each statistic on first use and caches it. Third-party measures use
the same object, so a layer pays for a class maximum or a top-k ranking once, whoever asks first.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import torch

from selectivity_eval.core.statistics.backend import compiled_kernels
from selectivity_eval.core.statistics.labels import Labels
from selectivity_eval.core.statistics.ranking import (
    Candidates,
    kth_largest,
    nonzero_sparse,
    ranked_top_indices,
    sorted_columns,
)

ROW_BLOCK_BYTES = 4 * 2**20
CANDIDATES_PER_SLOT = 8

ClassStatistics = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]
"""Each class's maximum, minimum, float64 sum and float64 sum of squares (None: not computed yet)."""


class LayerStats:
    """Lazily computed statistics of one chunk of units (images x units) under shared labels.

    No statistic needs a copy of the whole chunk: one pass gives every class's maximum, minimum,
    float64 sum and float64 sum of squares together; a second pass collects the few candidates for
    a top-k ranking (see ``top_indices``). In torch the passes read blocks of rows; on large CPU
    chunks compiled kernels make them (``compiled_kernels``), with bit-identical results.

    Per class (classes x units): ``class_max``, ``class_min``, ``class_sum``, ``class_sum_squares``,
    ``class_mean``, ``class_variance``. Per unit (units,): ``unit_max``, ``unit_min``,
    ``total_sum``, ``finite_units``, ``constant_units``, ``top_class`` (the class of the single
    highest activation, *not* of the highest mean: that is ``top_mean_class``, as CCMAS uses),
    ``top_mean_class``, ``runner_up_max``. Per ranking: ``top_indices(k)``, ``count_above(thresholds)``,
    ``count_at_or_above(thresholds)``, ``sorted_activations()``. Each docstring below says its
    exact definition.

    Made with ``reused=True`` (chance baselines: one per chunk, ``relabelled`` for each shuffling),
    the statistics keep label-free work that pays off over many labellings, such as each unit's
    sorted activations (one copy of the chunk), and share it, with ``label_free``, among all copies.
    """

    def __init__(self, activations: torch.Tensor, labels: Labels, *, reused: bool = False):
        if activations.ndim != 2:
            raise ValueError(f"activations must be (images, units), got shape {tuple(activations.shape)}")
        if activations.shape[0] != labels.n_images:
            raise ValueError(
                f"activations have {activations.shape[0]} images but labels have {labels.n_images}"
            )
        self.activations = activations
        self.labels = labels
        self._topk: dict[int, torch.Tensor] = {}
        self._candidates: dict[int, Candidates] = {}
        self._runners_up: tuple[torch.Tensor, torch.Tensor] | None = None
        self._label_free: dict[str, object] = {}
        self._tables: list = []  # the compiled class pass's tables for ``class_statistics(overwrite=True)``
        self.reused = reused
        self._row_block = max(1, ROW_BLOCK_BYTES // max(1, activations.shape[1] * activations.element_size()))

    LABEL_FREE = ("unit_max", "unit_min", "finite_units", "constant_units", "total_sum")

    def relabelled(self, labels: Labels, class_statistics: ClassStatistics | None = None) -> LayerStats:
        """Statistics of the same activations under other labels, sharing what labels don't change.

        The ranking (``top_indices``) with its candidates, each unit's extremes and its total are
        label-free, so chance baselines computed on shuffled labels reuse them instead of
        recomputing them; so is everything in ``label_free`` (each unit's sorted activations, a
        measure's own label-free work). The class statistics of the new labels may be handed in,
        computed in a batch by ``class_statistics``.
        """
        other = LayerStats(self.activations, labels, reused=self.reused)
        other._topk = self._topk
        other._candidates = self._candidates
        other._label_free = self._label_free
        if class_statistics is not None:
            other.__dict__["_class_extremes_and_sums"] = class_statistics
        for name in self.LABEL_FREE:
            if name in self.__dict__:
                other.__dict__[name] = self.__dict__[name]
        return other

    @property
    def n_images(self) -> int:
        return self.labels.n_images

    @property
    def n_units(self) -> int:
        return int(self.activations.shape[1])

    @property
    def n_classes(self) -> int:
        return self.labels.n_classes

    @property
    def device(self) -> torch.device:
        return self.activations.device

    def label_free(self, key: str, make):
        """``make()``, computed once and shared with every ``relabelled`` copy of these statistics.

        For work that depends on the activations (and the measure's parameters, which ``key`` must
        name) but not on the labels: chance baselines then do it once per chunk, not per shuffling.
        """
        if key not in self._label_free:
            self._label_free[key] = make()
        return self._label_free[key]

    def sorted_activations(self, units: slice | None = None) -> torch.Tensor:
        """(units, images): each unit's activations in ascending order (NaN last), contiguous.

        Statistics made with ``reused=True`` (those chance baselines relabel for every shuffling)
        sort the whole chunk once and keep it, one copy of the chunk, for every labelling; others
        sort only the units asked for, each time.
        """
        units = units if units is not None else slice(0, self.n_units)
        if self.reused:
            return self.label_free("sorted", lambda: sorted_columns(self.activations.detach()))[units]
        return sorted_columns(self.activations.detach()[:, units])

    def row_blocks(self, contiguous: bool = True):
        """(start, block of rows, their class codes), in image order; blocks copied contiguous on request."""
        for start in range(0, self.n_images, self._row_block):
            stop = start + self._row_block
            block = self.activations[start:stop]
            yield start, block.contiguous() if contiguous else block, self.labels.codes[start:stop]

    @cached_property
    def _class_extremes_and_sums(self) -> ClassStatistics:
        kernels = compiled_kernels(self.activations)
        if kernels is not None:
            statistics, self._runners_up = kernels.class_extremes_and_sums(self.activations, self.labels)
            return statistics
        return self.class_statistics([self.labels], squares=True)[0]

    def class_statistics(
        self, labellings: list[Labels], squares: bool = False, *, overwrite: bool = False
    ) -> list[ClassStatistics]:
        """Each class's maximum, minimum and float64 sum under several labellings (of these images),
        and with ``squares`` its float64 sum of squares (else None, computed later if a measure asks).

        The compiled pass reads each labelling's classes in turn (``class_extremes_and_sums_of``).
        In torch each block of rows is read once and scattered once per labelling while it is in
        cache, which is what makes many label shufflings cheap there.

        ``overwrite=True``: the compiled pass refills the same tables, which the next such call
        overwrites, for a caller done with each call's statistics first (chance baselines). New
        tables cost their first writes' page faults, 10-14% of the pass (bench_chance.py).
        """
        kernels = compiled_kernels(self.activations)
        if kernels is not None and not squares:
            return kernels.class_extremes_and_sums_of(self.activations, labellings, self._tables if overwrite else None)
        shape = (self.n_classes, self.n_units)
        dtype, device = self.activations.dtype, self.device
        out = [
            (
                torch.full(shape, -torch.inf, dtype=dtype, device=device),
                torch.full(shape, torch.inf, dtype=dtype, device=device),
                torch.zeros(shape, dtype=torch.float64, device=device),
                torch.zeros(shape, dtype=torch.float64, device=device) if squares else None,
            )
            for _ in labellings
        ]
        for start, block, _ in self.row_blocks():
            wide = block.to(torch.float64)
            wide_squared = wide * wide if squares else None
            for labels, (maxima, minima, sums, sums_of_squares) in zip(labellings, out):
                rows = labels.codes[start : start + len(block)]
                index = rows.unsqueeze(1).expand(-1, self.n_units)
                maxima.scatter_reduce_(0, index, block, "amax")
                minima.scatter_reduce_(0, index, block, "amin")
                sums.index_add_(0, rows, wide)
                if squares:
                    sums_of_squares.index_add_(0, rows, wide_squared)
        return out

    @property
    def class_max(self) -> torch.Tensor:
        """(classes, units): the highest activation of each class (NaN where the class has a NaN)."""
        return self._class_extremes_and_sums[0]

    @property
    def class_min(self) -> torch.Tensor:
        """(classes, units): the lowest activation of each class."""
        return self._class_extremes_and_sums[1]

    @property
    def class_sum(self) -> torch.Tensor:
        """(classes, units): the sum of activations of each class, in float64."""
        return self._class_extremes_and_sums[2]

    @property
    def class_sum_squares(self) -> torch.Tensor:
        """(classes, units): the sum of squared activations of each class, in float64.

        Made in the same pass as the sums (both paths, bit-identical); statistics relabelled with
        batch-computed class statistics that lack it compute it here, in one more pass.
        """
        statistics = self._class_extremes_and_sums
        if statistics[3] is None:
            fresh = self.class_statistics([self.labels], squares=True)[0]
            statistics = self.__dict__["_class_extremes_and_sums"] = (*statistics[:3], fresh[3])
        return statistics[3]

    @cached_property
    def class_variance(self) -> torch.Tensor:
        """(classes, units): each class's population variance (divided by its count), in float64.

        From the sums as ``E[a^2] - E[a]^2``, clamped at 0 against rounding; NaN where the class has
        a NaN. Good to about ``1e-16 * E[a^2]``: a class whose spread is tiny next to its mean loses
        digits, as any one-pass variance does.
        """
        counts = self.labels.counts.to(torch.float64).unsqueeze(1)
        return (self.class_sum_squares / counts - self.class_mean.square()).clamp(min=0.0)

    @cached_property
    def class_mean(self) -> torch.Tensor:
        """(classes, units): the mean activation of each class, in float64."""
        return self.class_sum / self.labels.counts.to(torch.float64).unsqueeze(1)

    @cached_property
    def total_sum(self) -> torch.Tensor:
        """(units,): the sum over all images, in float64."""
        return self.class_sum.sum(0)

    @cached_property
    def unit_max(self) -> torch.Tensor:
        """(units,): the highest activation of each unit."""
        return self.class_max.amax(0)

    @cached_property
    def unit_min(self) -> torch.Tensor:
        """(units,): the lowest activation of each unit."""
        return self.class_min.amin(0)

    @cached_property
    def finite_units(self) -> torch.Tensor:
        """(units,) bool: units whose every activation is finite (no NaN, no infinity)."""
        return torch.isfinite(self.unit_max) & torch.isfinite(self.unit_min)

    @cached_property
    def constant_units(self) -> torch.Tensor:
        """(units,) bool: units whose activation is the same for every image (``unit_max == unit_min``),
        such as dead ReLUs; a unit with a NaN is not constant."""
        return self.unit_max == self.unit_min

    @cached_property
    def top_class(self) -> torch.Tensor:
        """(units,): code of the class holding the single highest activation, lowest code on ties.

        Not the class of the highest mean (``argmax(class_mean)``): the two differ whenever one
        image of a class outshines a class that is stronger on average.
        """
        return self._argmax_over_classes(self.class_max)

    @cached_property
    def top_mean_class(self) -> torch.Tensor:
        """(units,): code of the class of highest mean activation (``argmax(class_mean)``), lowest
        code on ties, a class with a NaN mean counting as highest: the class CCMAS compares."""
        return self._argmax_over_classes(self.class_mean)

    def _argmax_over_classes(self, table: torch.Tensor) -> torch.Tensor:
        kernels = compiled_kernels(self.activations)
        if kernels is not None and table.shape[0] > 0:
            return kernels.argmax_over_rows(table)
        return torch.argmax(table, dim=0)

    @cached_property
    def runner_up_max(self) -> torch.Tensor:
        """(units,): the highest activation of any class other than ``top_class``; -inf with one class."""
        if self.n_classes < 2:
            return torch.full((self.n_units,), -torch.inf, dtype=self.activations.dtype, device=self.device)
        return self.class_max.scatter(0, self.top_class.unsqueeze(0), -torch.inf).amax(0)

    def count_above(self, thresholds: torch.Tensor) -> torch.Tensor:
        """(units,) int64: how many images of each unit are strictly above that unit's threshold.

        Where an earlier ``top_indices`` call's k-th value, or its candidate bound, lies at or below a
        unit's threshold, every image above the threshold is among those already found; only the
        other units' activations are read again.
        """
        counts = torch.zeros(self.n_units, dtype=torch.int64, device=self.device)
        pending = torch.ones(self.n_units, dtype=torch.bool, device=self.device)
        for top in self._topk.values():
            top_values = self.activations.gather(0, top)
            covered = pending & (top_values[-1] <= thresholds)
            if covered.any():
                counts += torch.where(covered, (top_values > thresholds).sum(0), 0)
                pending &= ~covered
        for found in self._candidates.values():
            covered = ~found.fallback & (found.bound <= thresholds) & pending
            if covered.any():
                counts += torch.where(covered, (found.value > thresholds.unsqueeze(1)).sum(1), 0)
                pending &= ~covered
        if self.reused and bool(pending.any()) and thresholds.dtype == self.activations.dtype:
            # Each unit's sorted activations, kept for every labelling, count in log(images) steps.
            usable = pending & self.finite_units & ~torch.isnan(thresholds)
            if usable.any():
                at_or_below = torch.searchsorted(self.sorted_activations(), thresholds.unsqueeze(1), right=True)
                counts += torch.where(usable, self.n_images - at_or_below.squeeze(1), 0)
                pending &= ~usable
        rest = pending.nonzero().squeeze(1)
        if rest.numel() == self.n_units:
            for _, block, _ in self.row_blocks(contiguous=False):
                counts += (block > thresholds).sum(0)
        elif rest.numel():
            values = self.activations[:, rest]
            counts[rest] = (values > thresholds[rest]).sum(0)
        return counts

    def count_at_or_above(self, thresholds: torch.Tensor) -> torch.Tensor:
        """(units,) int64: how many images of each unit are at or above that unit's threshold.

        ``count_above`` of the next float below each threshold, so it reuses the same shortcuts.
        """
        below = torch.nextafter(thresholds, torch.full_like(thresholds, -torch.inf))
        return self.count_above(below)

    def top_indices(self, k: int) -> torch.Tensor:
        """(k, units): image indices of the ranking's first ``k`` places, ties by ascending index."""
        if k not in self._topk:
            self._topk[k] = self._top_indices(k)
        return self._topk[k]

    def _top_indices(self, k: int) -> torch.Tensor:
        if self.n_classes < k:
            return ranked_top_indices(self.activations, k)
        found = self._gather_candidates(k)
        self._candidates[k] = found
        top = torch.zeros((k, self.n_units), dtype=torch.int64, device=self.device)
        good = (~found.fallback).nonzero().squeeze(1)
        if good.numel():
            top[:, good] = found.image[good, :k].T
        bad = found.fallback.nonzero().squeeze(1)
        if bad.numel():
            top[:, bad] = ranked_top_indices(self.activations[:, bad], k)
        return top

    def _gather_candidates(self, k: int) -> Candidates:
        """Exact top-k without a sort or a top-k over every image.

        The k-th highest class maximum is at most the k-th highest activation, so every image of
        the top k lies at or above it; typically only a few more than k do. Those candidates are
        gathered in one pass and ranked within each unit. Units where that bound is loose (many
        ties at it, as in a mostly-zero ReLU unit) or whose values are not all finite are marked
        ``fallback`` for ``ranked_top_indices`` on just those units.
        """
        bound = kth_largest(self.class_max, k)
        limit = CANDIDATES_PER_SLOT * k
        kernels = compiled_kernels(self.activations)
        if kernels is not None:
            found = kernels.candidates_at_or_above(
                self.activations, self.labels, self.class_max, self._runners_up, bound, limit
            )
        else:
            found = self._candidates_by_blocks(bound, limit)
        image, value, count = found
        fallback = (count > limit) | (count < k) | ~self.finite_units
        kept = torch.where(fallback, 0, count)
        slots = int(kept.max()) if kept.numel() else 0
        padding = torch.arange(slots, device=self.device) >= kept.unsqueeze(1)
        return Candidates(bound, image[:, :slots], value[:, :slots].masked_fill(padding, -torch.inf), kept, fallback)

    def _candidates_by_blocks(self, bound: torch.Tensor, limit: int):
        """``stats_kernels.candidates_at_or_above`` in torch, for devices and dtypes it does not take."""
        count = torch.zeros(self.n_units, dtype=torch.int64, device=self.device)
        images, units, values = [], [], []
        for start, block, _ in self.row_blocks(contiguous=False):
            at_or_above = block >= bound
            over = count > limit
            if over.any():
                at_or_above[:, over] = False
            rows, cols = nonzero_sparse(at_or_above)
            count += torch.bincount(cols, minlength=self.n_units)
            images.append(rows + start)
            units.append(cols)
            values.append(block[rows, cols])
        image, unit, value = torch.cat(images), torch.cat(units), torch.cat(values)
        order = torch.sort(unit, stable=True).indices
        image, unit, value = image[order], unit[order], value[order]
        taken = torch.bincount(unit, minlength=self.n_units)
        first = torch.cumsum(taken, 0) - taken
        slot = torch.arange(unit.numel(), device=self.device) - first[unit]
        keep = slot < limit
        slots = int(taken.max().clamp(max=limit)) if taken.numel() else 0
        padded_image = torch.zeros((self.n_units, slots), dtype=torch.int64, device=self.device)
        padded_value = torch.full((self.n_units, slots), -torch.inf, dtype=self.activations.dtype, device=self.device)
        padded_image[unit[keep], slot[keep]] = image[keep]
        padded_value[unit[keep], slot[keep]] = value[keep]
        by_value = torch.sort(padded_value, dim=1, descending=True, stable=True).indices
        return padded_image.gather(1, by_value), padded_value.gather(1, by_value), count
