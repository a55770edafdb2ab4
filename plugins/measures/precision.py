"""Precision (Zhou et al. 2015, as operationalised by Gale et al. 2019), measures.md section 2."""

from __future__ import annotations

import torch
from pydantic import Field

from selectivity_eval.core.registry.hookspecs import hookimpl
from selectivity_eval.core.measures.base import Column, Measure
from selectivity_eval.core.statistics.layer_stats import LayerStats
from selectivity_eval.schemas.params import PluginParams


class PrecisionParams(PluginParams):
    top_n: int = Field(100, ge=1, description="Size of the top set (the papers use 100 and 60).")


class Precision(Measure):
    """Share of the unit's top-N images that belong to the most frequent class among them."""

    name = "precision"
    Params = PrecisionParams
    columns = {"precision_class": Column.CLASS, "precision": Column.VALUE}

    def compute(self, stats: LayerStats) -> dict[str, torch.Tensor]:
        k = min(self.params.top_n, stats.n_images)
        top_classes = stats.labels.codes[stats.top_indices(k)]
        # Runs of one class in each unit's top set sorted by class; a stable sort puts every run's
        # highest-ranked image first, so each run knows its count and its best place.
        by_class, place = torch.sort(top_classes, dim=0, stable=True)
        starts = torch.ones_like(by_class, dtype=torch.bool)
        starts[1:] = by_class[1:] != by_class[:-1]
        run = torch.cumsum(starts, 0) - 1
        counts = torch.zeros_like(run).scatter_add_(0, run, torch.ones_like(run))
        first_place = torch.full_like(run, k).scatter_reduce_(0, run, place, "amin")
        most_then_earliest = counts * (k + 1) + (k - first_place)
        winning_run = torch.argmax(most_then_earliest, dim=0, keepdim=True)
        return {
            "precision_class": top_classes.gather(0, first_place.gather(0, winning_run)).squeeze(0),
            "precision": counts.gather(0, winning_run).squeeze(0).double() / k,
        }


@hookimpl
def register_measures(register):
    register(Precision)
