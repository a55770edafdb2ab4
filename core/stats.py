"""Statistics shared by the measures, computed once per chunk of units and reused by all of them.

A measure never loops over units: it reads whole (classes x units) or (k x units) tensors from
``LayerStats``, which computes each statistic on first use and caches it. Third-party measures use
the same object, so a layer pays for a class maximum or a top-k ranking once, whoever asks first.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch


@dataclass(frozen=True)
class Labels:
    """Class labels of the images, coded 0..C-1 in ascending order of the original label values.

    Only classes with at least one image exist, so ``counts`` is never zero.
    """

    codes: torch.Tensor
    classes: np.ndarray
    counts: torch.Tensor

    @classmethod
    def from_array(cls, labels, device: torch.device | str = "cpu") -> Labels:
        values = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        if values.ndim != 1:
            raise ValueError(f"labels must be one-dimensional, got shape {values.shape}")
        if values.size == 0:
            raise ValueError("labels are empty: there are no images")
        classes, codes = np.unique(values, return_inverse=True)
        codes_t = torch.as_tensor(codes.astype(np.int64), device=device)
        counts = torch.bincount(codes_t, minlength=len(classes))
        return cls(codes=codes_t, classes=classes, counts=counts)

    @property
    def n_images(self) -> int:
        return int(self.codes.shape[0])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def to(self, device: torch.device | str) -> Labels:
        return Labels(self.codes.to(device), self.classes, self.counts.to(device))

    def shuffled(self, generator: torch.Generator) -> Labels:
        """The same labels assigned to the images in a random order (class sizes unchanged)."""
        order = torch.randperm(self.n_images, generator=generator).to(self.codes.device)
        return Labels(self.codes[order], self.classes, self.counts)

    def class_values(self, codes: torch.Tensor) -> np.ndarray:
        """Original label values for a tensor of class codes."""
        return self.classes[codes.detach().cpu().numpy()]


def ranked_top_indices(values: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` highest values of each column, ordered high to low.

    Equal values are ranked by ascending image index, both in which images make the top ``k``
    when a tie straddles the k-th place and in their order within it (measures.md, Notation).
    ``torch.topk`` alone guarantees neither, so its result is repaired on the few columns that need it.
    Returns a (k, units) int64 tensor.
    """
    n = values.shape[0]
    top_values, top_idx = torch.topk(values, k, dim=0, largest=True, sorted=True)
    kth = top_values[-1]
    kept_at_kth = (top_values == kth).sum(0)
    straddling = ((values == kth).sum(0) > kept_at_kth).nonzero().squeeze(1)
    if straddling.numel():
        equal = values[:, straddling] == kth[straddling]
        lower_index_first = torch.arange(n, 0, -1, device=values.device).unsqueeze(1)
        first_equal = torch.topk(torch.where(equal, lower_index_first, 0), k, dim=0).indices
        slots = kept_at_kth[straddling]
        position = torch.arange(k, device=values.device).unsqueeze(1)
        source = (position - (k - slots)).clamp(min=0)
        top_idx[:, straddling] = torch.where(
            position >= k - slots, first_equal.gather(0, source), top_idx[:, straddling]
        )
    by_index = top_idx.sort(dim=0).values
    values_by_index = values.gather(0, by_index)
    order = torch.sort(values_by_index, dim=0, descending=True, stable=True).indices
    return by_index.gather(0, order)


ROW_BLOCK_BYTES = 4 * 2**20
CANDIDATES_PER_SLOT = 8


def _nonzero_sparse(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``mask.nonzero(as_tuple=True)`` for a contiguous 2-D mask, fast when few entries are set.

    Scans the mask eight bytes at a time and expands only the words that hold a set entry.
    """
    rows, cols = mask.shape
    if cols % 8 or not mask.is_contiguous() or mask.numel() == 0:
        return mask.nonzero(as_tuple=True)
    words = mask.view(-1).view(torch.int64)
    hit_words = words.nonzero().squeeze(1)
    hit_bytes = mask.view(-1).view(-1, 8)[hit_words].nonzero()
    flat = hit_words[hit_bytes[:, 0]] * 8 + hit_bytes[:, 1]
    return flat // cols, flat % cols


ClassStatistics = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class LayerStats:
    """Lazily computed statistics of one chunk of units (images x units) under shared labels.

    The chunk is read in blocks of rows, so no statistic needs a copy of the whole chunk: one pass
    gives every class's maximum, minimum and float64 sum together; a second pass collects the few
    candidates for a top-k ranking (see ``top_indices``).
    """

    def __init__(self, activations: torch.Tensor, labels: Labels):
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
        self._row_block = max(1, ROW_BLOCK_BYTES // max(1, activations.shape[1] * activations.element_size()))

    LABEL_FREE = ("unit_max", "unit_min", "finite_units", "total_sum")

    def relabelled(self, labels: Labels, class_statistics: ClassStatistics | None = None) -> LayerStats:
        """Statistics of the same activations under other labels, sharing what labels don't change.

        The ranking (``top_indices``), each unit's extremes and its total are label-free, so chance
        baselines computed on shuffled labels reuse them instead of recomputing them; the class
        statistics of the new labels may be handed in, computed in a batch by ``class_statistics``.
        """
        other = LayerStats(self.activations, labels)
        other._topk = self._topk
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

    def row_blocks(self, contiguous: bool = True):
        """(start, block of rows, their class codes), in image order; blocks copied contiguous on request."""
        for start in range(0, self.n_images, self._row_block):
            stop = start + self._row_block
            block = self.activations[start:stop]
            yield start, block.contiguous() if contiguous else block, self.labels.codes[start:stop]

    @cached_property
    def _class_extremes_and_sums(self) -> ClassStatistics:
        return self.class_statistics([self.labels.codes])[0]

    def class_statistics(self, labellings: list[torch.Tensor]) -> list[ClassStatistics]:
        """Each class's maximum, minimum and float64 sum under several labellings, in one pass.

        Each block of rows is read once and scattered once per labelling while it is in cache,
        which is what makes many label shufflings cheap.
        """
        shape = (self.n_classes, self.n_units)
        dtype, device = self.activations.dtype, self.device
        out = [
            (
                torch.full(shape, -torch.inf, dtype=dtype, device=device),
                torch.full(shape, torch.inf, dtype=dtype, device=device),
                torch.zeros(shape, dtype=torch.float64, device=device),
            )
            for _ in labellings
        ]
        for start, block, _ in self.row_blocks():
            wide = block.to(torch.float64)
            for codes, (maxima, minima, sums) in zip(labellings, out):
                rows = codes[start : start + len(block)]
                index = rows.unsqueeze(1).expand(-1, self.n_units)
                maxima.scatter_reduce_(0, index, block, "amax")
                minima.scatter_reduce_(0, index, block, "amin")
                sums.index_add_(0, rows, wide)
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
        return self.class_max.max(0).values

    @cached_property
    def unit_min(self) -> torch.Tensor:
        """(units,): the lowest activation of each unit."""
        return self.class_min.min(0).values

    @cached_property
    def finite_units(self) -> torch.Tensor:
        """(units,) bool: units whose every activation is finite (no NaN, no infinity)."""
        return torch.isfinite(self.unit_max) & torch.isfinite(self.unit_min)

    @cached_property
    def top_class(self) -> torch.Tensor:
        """(units,): code of the class holding the highest activation, lowest code on ties."""
        return torch.argmax(self.class_max, dim=0)

    @cached_property
    def runner_up_max(self) -> torch.Tensor:
        """(units,): the highest activation of any class other than ``top_class``; -inf with one class."""
        if self.n_classes < 2:
            return torch.full((self.n_units,), -torch.inf, dtype=self.activations.dtype, device=self.device)
        return torch.topk(self.class_max, 2, dim=0).values[1]

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
                above = covered[found.unit] & (found.value > thresholds[found.unit])
                counts += torch.bincount(found.unit[above], minlength=self.n_units)
                pending &= ~covered
        rest = pending.nonzero().squeeze(1)
        if rest.numel() == self.n_units:
            for _, block, _ in self.row_blocks(contiguous=False):
                counts += (block > thresholds).sum(0)
        elif rest.numel():
            values = self.activations[:, rest]
            counts[rest] = (values > thresholds[rest]).sum(0)
        return counts

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
        per_unit = torch.where(found.fallback, 0, found.count)
        first = torch.cumsum(per_unit, 0) - per_unit
        place = torch.arange(k, device=self.device).unsqueeze(1)
        top = torch.zeros((k, self.n_units), dtype=torch.int64, device=self.device)
        good = (~found.fallback).nonzero().squeeze(1)
        if good.numel():
            top[:, good] = found.image[place + first[good].unsqueeze(0)]
        bad = found.fallback.nonzero().squeeze(1)
        if bad.numel():
            top[:, bad] = ranked_top_indices(self.activations[:, bad], k)
        return top

    def _gather_candidates(self, k: int) -> Candidates:
        """Exact top-k without a sort or a top-k over every image.

        The k-th highest class maximum is at most the k-th highest activation, so every image of
        the top k lies at or above it; typically only a few more than k do. Those candidates are
        gathered in one pass and ranked by (unit, activation descending, image). Units where that
        bound is loose (many ties at it, as in a mostly-zero ReLU unit) or undefined (non-finite
        values) are marked ``fallback`` for ``ranked_top_indices`` on just those units.
        """
        bound = torch.topk(self.class_max, k, dim=0).values[-1]
        limit = CANDIDATES_PER_SLOT * k
        count = torch.zeros(self.n_units, dtype=torch.int64, device=self.device)
        images, units, values = [], [], []
        for start, block, _ in self.row_blocks(contiguous=False):
            at_or_above = block >= bound
            over = count > limit
            if over.any():
                at_or_above[:, over] = False
            rows, cols = _nonzero_sparse(at_or_above)
            count += torch.bincount(cols, minlength=self.n_units)
            images.append(rows + start)
            units.append(cols)
            values.append(block[rows, cols])
        image, unit, value = torch.cat(images), torch.cat(units), torch.cat(values)
        fallback = (count > limit) | (count < k)
        keep = ~fallback[unit]
        image, unit, value = image[keep], unit[keep], value[keep]
        order = torch.sort(value, descending=True, stable=True).indices
        image, unit, value = image[order], unit[order], value[order]
        order = torch.sort(unit, stable=True).indices
        return Candidates(bound, image[order], unit[order], value[order], count, fallback)


@dataclass(frozen=True)
class Candidates:
    """Images at or above a per-unit bound, sorted by unit, then activation (high first), then image."""

    bound: torch.Tensor
    image: torch.Tensor
    unit: torch.Tensor
    value: torch.Tensor
    count: torch.Tensor
    fallback: torch.Tensor
