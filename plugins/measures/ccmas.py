"""Class-conditional mean activity selectivity (Morcos et al. 2018), measures.md section 3."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from selectivity_eval.core.registry.hookspecs import hookimpl
from selectivity_eval.core.measures.base import Column, Measure
from selectivity_eval.core.statistics.layer_stats import LayerStats
from selectivity_eval.schemas.params import PluginParams


class CCMASParams(PluginParams):
    others: Literal["pooled", "class_mean"] = Field(
        "pooled",
        description="mu_rest as the mean over every other image (pooled) or the mean of the other class means.",
    )
    eps: float = Field(0.0, ge=0.0, description="Added to the denominator (Leavitt & Morcos use 1e-7).")


class CCMAS(Measure):
    """(mu_max - mu_rest) / (mu_max + mu_rest): the top class mean against the rest."""

    name = "ccmas"
    Params = CCMASParams
    columns = {"ccmas_class": Column.CLASS, "ccmas": Column.VALUE}

    def compute(self, stats: LayerStats) -> dict[str, torch.Tensor]:
        means = stats.class_mean
        best = stats.top_mean_class
        best_row = best.unsqueeze(0)
        mu_max = means.gather(0, best_row).squeeze(0)
        if self.params.others == "pooled":
            rest_count = stats.n_images - stats.labels.counts[best].double()
            rest_sum = stats.total_sum - stats.class_sum.gather(0, best_row).squeeze(0)
            mu_rest = rest_sum / rest_count
        else:
            others = torch.ones_like(means, dtype=torch.bool).scatter_(0, best_row, False)
            mu_rest = torch.where(others, means, 0.0).sum(0) / (stats.n_classes - 1)
        denominator = mu_max + mu_rest + self.params.eps
        ccmas = (mu_max - mu_rest) / denominator
        ccmas = torch.where(denominator == 0, torch.nan, ccmas)
        return {"ccmas_class": best, "ccmas": ccmas}


@hookimpl
def register_measures(register):
    register(CCMAS)
