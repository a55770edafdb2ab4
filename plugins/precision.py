"""Precision (Zhou et al. 2015, as operationalised by Gale et al. 2019), measures.md section 2."""

from __future__ import annotations

import torch
from pydantic import Field

from selectivity_eval.core.hookspecs import hookimpl
from selectivity_eval.core.measure import Column, Measure
from selectivity_eval.core.stats import LayerStats
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
        shape = (stats.n_classes, stats.n_units)
        counts = torch.zeros(shape, dtype=torch.int64, device=stats.device)
        counts.scatter_add_(0, top_classes, torch.ones_like(top_classes))
        place = torch.arange(k, device=stats.device).unsqueeze(1).expand_as(top_classes)
        first_place = torch.full(shape, k, dtype=torch.int64, device=stats.device)
        first_place.scatter_reduce_(0, top_classes, place, "amin")
        most_then_earliest = counts * (k + 1) + (k - first_place)
        winner = torch.argmax(most_then_earliest, dim=0)
        return {
            "precision_class": winner,
            "precision": counts.gather(0, winner.unsqueeze(0)).squeeze(0).double() / k,
        }


@hookimpl
def register_measures(register):
    register(Precision)
