"""Localist selectivity (Bowers et al. 2014; Gale et al. 2019), measures.md section 1."""

from __future__ import annotations

import torch

from selectivity_eval.core.registry.hookspecs import hookimpl
from selectivity_eval.core.measures.base import Column, Measure
from selectivity_eval.core.statistics.layer_stats import LayerStats


class Localist(Measure):
    """Gap between a unit's top class and every other class; positive means a grandmother cell."""

    name = "localist"
    columns = {
        "localist_class": Column.CLASS,
        "localist": Column.VALUE,
        "localist_norm": Column.VALUE.detail(),
        "is_localist": Column.FLAG,
        "localist_off": Column.VALUE.detail(),
    }

    def compute(self, stats: LayerStats) -> dict[str, torch.Tensor]:
        return self.compute_columns(stats, frozenset(self.columns))

    def compute_columns(self, stats: LayerStats, wanted: frozenset[str]) -> dict[str, torch.Tensor]:
        """The off-class gap takes passes of its own over (classes x units): only on request."""
        on_class = stats.top_class
        if stats.n_classes < 2:
            nan = torch.full((stats.n_units,), torch.nan, dtype=torch.float64, device=stats.device)
            return {
                "localist_class": on_class,
                "localist": nan,
                "localist_norm": nan,
                "is_localist": torch.zeros_like(on_class, dtype=torch.bool),
                "localist_off": nan,
            }
        gap = stats.class_min.gather(0, on_class.unsqueeze(0)).squeeze(0).double() - stats.runner_up_max.double()
        spread = stats.unit_max.double() - stats.unit_min.double()
        norm = torch.where(spread > 0, gap / spread, 0.0)
        out = {"localist_class": on_class, "localist": gap, "localist_norm": norm, "is_localist": gap > 0}
        if "localist_off" in wanted:
            off_class = torch.argmin(stats.class_min, dim=0)
            second_lowest_min = stats.class_min.scatter(0, off_class.unsqueeze(0), torch.inf).amin(0)
            out["localist_off"] = (
                second_lowest_min.double() - stats.class_max.gather(0, off_class.unsqueeze(0)).squeeze(0).double()
            )
        return out


@hookimpl
def register_measures(register):
    register(Localist)
