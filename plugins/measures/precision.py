"""Precision (Zhou et al. 2015, as operationalised by Gale et al. 2019), measures.md section 2."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from selectivity_eval.core.registry.hookspecs import hookimpl
from selectivity_eval.core.measures.base import Column, Measure
from selectivity_eval.core.statistics.backend import compiled_kernels
from selectivity_eval.core.statistics.layer_stats import LayerStats
from selectivity_eval.schemas.params import PluginParams

GALE2019_TOP_N = 60
TIE_COLUMNS = frozenset({"precision_min", "precision_max", "precision_ties", "precision_tied"})


class PrecisionParams(PluginParams):
    top_n: int = Field(100, ge=1, description="Size of the top set (the papers use 100 and 60).")
    preset: Literal["none", "gale2019"] = Field(
        "none",
        description=(
            "gale2019: the setting of the authors' published tables, top_n 60, and a tie between "
            "classes' counts won by the class met first reading up from place N (their rule)."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") == "gale2019":
            if data.get("top_n", GALE2019_TOP_N) != GALE2019_TOP_N:
                raise ValueError(
                    f"preset gale2019 means top_n {GALE2019_TOP_N}; leave top_n out or drop the preset "
                    f"(got top_n {data['top_n']})"
                )
            data = {**data, "top_n": GALE2019_TOP_N}
        return data


class Precision(Measure):
    """Share of the unit's top-N images that belong to the most frequent class among them.

    Beside it, the lowest and highest precision over every order of the images tied at place N
    (equal when no tie straddles the boundary), and how many tied images compete for those places.
    """

    name = "precision"
    Params = PrecisionParams
    columns = {
        "precision_class": Column.CLASS,
        "precision": Column.VALUE,
        "precision_min": Column.VALUE.detail(),
        "precision_max": Column.VALUE.detail(),
        "precision_ties": Column.COUNT,
        "precision_tied": Column.FLAG,
    }

    def compute(self, stats: LayerStats) -> dict[str, torch.Tensor]:
        return self.compute_columns(stats, frozenset(self.columns))

    def compute_columns(self, stats: LayerStats, wanted: frozenset[str]) -> dict[str, torch.Tensor]:
        """The tie-order columns cost a pass over the tied images of each labelling: only on request."""
        k = min(self.params.top_n, stats.n_images)
        top = stats.top_indices(k)
        if compiled_kernels(stats.activations) is not None and not wanted & TIE_COLUMNS:
            from selectivity_eval.plugins.measures.precision_kernel import winning_class

            best_class, best_count = winning_class(top, stats.labels, self.params.preset == "gale2019")
            return {"precision_class": best_class, "precision": best_count.double() / k}
        top_classes = stats.labels.codes[top]
        # Runs of one class in each unit's top set sorted by class; a stable sort puts every run's
        # highest-ranked image first, so each run knows its count and its best and worst place.
        by_class, place = torch.sort(top_classes, dim=0, stable=True)
        starts = torch.ones_like(by_class, dtype=torch.bool)
        starts[1:] = by_class[1:] != by_class[:-1]
        run = torch.cumsum(starts, 0) - 1
        counts = torch.zeros_like(run).scatter_add_(0, run, torch.ones_like(run))
        first_place = torch.full_like(run, k).scatter_reduce_(0, run, place, "amin")
        if self.params.preset == "gale2019":
            last_place = torch.full_like(run, -1).scatter_reduce_(0, run, place, "amax")
            priority = counts * (k + 1) + last_place
        else:
            priority = counts * (k + 1) + (k - first_place)
        winning_run = torch.argmax(priority, dim=0, keepdim=True)
        best_count = counts.gather(0, winning_run).squeeze(0)
        out = {
            "precision_class": top_classes.gather(0, first_place.gather(0, winning_run)).squeeze(0),
            "precision": best_count.double() / k,
        }
        if wanted & TIE_COLUMNS:
            lowest, highest, ties = tie_bounds(stats, top, top_classes, best_count)
            out.update(
                precision_min=lowest.double() / k,
                precision_max=highest.double() / k,
                precision_ties=ties,
                precision_tied=lowest < highest,
            )
        return out


def tie_bounds(
    stats: LayerStats, top: torch.Tensor, top_classes: torch.Tensor, count: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per unit, the lowest and highest top-class count over every order of the images tied with
    the k-th value, and how many images share that value when they outnumber the places left.

    The images above the k-th value are in every top set; ``slots`` places go to some of the
    ``tied`` images equal to it. Where ``tied > slots``, class ``c`` gets between 0 and its ``t_c``
    tied images; the highest count gives one class all it can, the lowest spreads the places so
    that the fullest class is as small as possible (found by bisection on that size, all units at
    once). Only straddling units read their activations again. Which images are tied and above
    does not depend on the labels (``TieLayout``, shared by every labelling of the statistics).
    """
    k = top.shape[0]
    layout = stats.label_free(f"precision_ties_{k}", lambda: TieLayout(stats, top))
    straddling = layout.straddling
    lowest, highest = count.clone(), count.clone()
    if straddling.numel():
        above_counts = torch.zeros((stats.n_classes, straddling.numel()), dtype=torch.int64, device=stats.device)
        above_counts.scatter_add_(0, top_classes[:, straddling], layout.above[:, straddling].to(torch.int64))
        tied_counts = layout.tied_counts(stats)
        free = layout.slots[straddling]
        highest[straddling] = (above_counts + torch.minimum(tied_counts, free)).amax(0)
        low = above_counts.amax(0)
        high = torch.full_like(low, k)
        while bool((low < high).any()):
            size = (low + high) // 2
            placed = torch.minimum(tied_counts, (size - above_counts).clamp(min=0)).sum(0)
            fits = placed >= free
            high = torch.where(fits, size, high)
            low = torch.where(fits, low, size + 1)
        lowest[straddling] = low
    return lowest, highest, layout.ties


class TieLayout:
    """The label-free part of ``tie_bounds`` for one top-k ranking: which top-set images lie above
    the k-th value, the places left for images tied with it, the units where the tied images
    outnumber those places (``straddling``) and, when they are few enough to keep, where the tied
    images of those units are."""

    def __init__(self, stats: LayerStats, top: torch.Tensor):
        k = top.shape[0]
        values = stats.activations.gather(0, top)
        kth = values[-1]
        self.above = values > kth
        n_above = self.above.sum(0)
        self.slots = k - n_above
        tied = stats.count_at_or_above(kth) - n_above
        self.ties = torch.where(tied > self.slots, tied, 0)
        self.straddling = (tied > self.slots).nonzero().squeeze(1)
        self.boundary = kth[self.straddling]
        self.tied_images: tuple[torch.Tensor, torch.Tensor] | None = None
        if self.straddling.numel() and stats.reused:
            n_tied = int(tied[self.straddling].sum())
            if n_tied <= stats.activations.numel() // 4:  # pairs of int64 no larger than the chunk
                rows, columns = [], []
                for start, block, _ in stats.row_blocks(contiguous=False):
                    row, column = (block[:, self.straddling] == self.boundary).nonzero(as_tuple=True)
                    rows.append(row + start)
                    columns.append(column)
                self.tied_images = (torch.cat(rows), torch.cat(columns))

    def tied_counts(self, stats: LayerStats) -> torch.Tensor:
        """(classes, straddling units): how many images of each class are tied at the k-th value."""
        tied_counts = torch.zeros(
            (stats.n_classes, self.straddling.numel()), dtype=torch.int64, device=stats.device
        )
        if self.tied_images is not None:
            rows, columns = self.tied_images
            tied_counts.index_put_(
                (stats.labels.codes[rows], columns), torch.ones_like(rows), accumulate=True
            )
            return tied_counts
        for _, block, codes in stats.row_blocks(contiguous=False):
            tied_counts.index_add_(0, codes, (block[:, self.straddling] == self.boundary).to(torch.int64))
        return tied_counts


@hookimpl
def register_measures(register):
    register(Precision)
