"""Top-class selectivity (Gale et al. 2019), measures.md section 4."""

from __future__ import annotations

import torch

from selectivity_eval.core.registry.hookspecs import hookimpl
from selectivity_eval.core.measures.base import Column, Measure
from selectivity_eval.core.statistics.layer_stats import LayerStats


class TopClass(Measure):
    """Share of the top class's images ranked before the first image of any other class."""

    name = "topclass"
    columns = {"topclass_class": Column.CLASS, "topclass_count": Column.COUNT, "topclass": Column.VALUE}

    def compute(self, stats: LayerStats) -> dict[str, torch.Tensor]:
        top = stats.top_class
        shared_peak = (stats.class_max == stats.unit_max.unsqueeze(0)).sum(0) > 1
        # Every image above the best activation of all other classes is of the top class.
        count = stats.count_above(stats.runner_up_max)
        count = torch.where(shared_peak, 0, count)
        share = count.double() / stats.labels.counts[top].double()
        if stats.n_classes < 2:
            share = torch.full_like(share, torch.nan)
        return {"topclass_class": top, "topclass_count": count, "topclass": share}


@hookimpl
def register_measures(register):
    register(TopClass)
