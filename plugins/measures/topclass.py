"""Top-class selectivity (Gale et al. 2019), measures.md section 4."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from selectivity_eval.core.registry.hookspecs import hookimpl
from selectivity_eval.core.measures.base import Column, Measure
from selectivity_eval.core.statistics.layer_stats import LayerStats
from selectivity_eval.schemas.params import PluginParams

GALE2019_WINDOW_IMAGES = 1000
"""The authors' window reaches down to the middle of the unit's range, or to its 1,000th highest
activation when more than 1,000 images lie above the middle."""


class TopClassParams(PluginParams):
    window: Literal["full", "gale2019"] = Field(
        "full",
        description=(
            "full: count down the whole ranking; gale2019: only inside the authors' window, from "
            "the middle of the unit's range (or its 1,000th highest activation) up to its maximum."
        ),
    )


class TopClass(Measure):
    """Share of the top class's images ranked before the first image of any other class."""

    name = "topclass"
    Params = TopClassParams
    columns = {
        "topclass_class": Column.CLASS,
        "topclass_count": Column.COUNT,
        "topclass": Column.VALUE,
        "topclass_tied": Column.FLAG,
    }

    def compute(self, stats: LayerStats) -> dict[str, torch.Tensor]:
        top = stats.top_class
        # Another class reaches the unit's maximum exactly when the best of all other classes does.
        shared_peak = (stats.runner_up_max == stats.unit_max) & (stats.n_classes > 1)
        # Every image above the best activation of all other classes is of the top class.
        count = stats.count_above(stats.runner_up_max)
        if self.params.window == "gale2019":
            count = torch.minimum(count, stats.count_at_or_above(gale2019_window_bottom(stats)))
        count = torch.where(shared_peak, 0, count)
        share = count.double() / stats.labels.counts[top].double()
        if stats.n_classes < 2:
            share = torch.full_like(share, torch.nan)
        return {"topclass_class": top, "topclass_count": count, "topclass": share, "topclass_tied": shared_peak}


def gale2019_window_bottom(stats: LayerStats) -> torch.Tensor:
    """(units,): the lowest activation inside the authors' window (the window holds every image at
    or above it).

    The middle of the range, ``min + (max - min) * 0.5`` in the activations' dtype as their numpy
    code computes it; where more than ``GALE2019_WINDOW_IMAGES`` images lie strictly above it, the
    ``GALE2019_WINDOW_IMAGES``-th highest activation instead (exactly; their code rebuilds it from a
    ratio of the range, which can move it by a rounding step).
    """
    low, high = stats.unit_min, stats.unit_max
    bottom = low + (high - low) * 0.5
    if stats.n_images <= GALE2019_WINDOW_IMAGES:
        return bottom
    crowded = (stats.count_above(bottom) > GALE2019_WINDOW_IMAGES).nonzero().squeeze(1)
    if crowded.numel():
        rank = stats.n_images - GALE2019_WINDOW_IMAGES + 1
        bottom[crowded] = torch.kthvalue(stats.activations[:, crowded], rank, dim=0).values
    return bottom


@hookimpl
def register_measures(register):
    register(TopClass)
